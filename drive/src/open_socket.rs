//! Counting sockets whose tasks or threads are still running, so that a relay shutting down can
//! give their writers a moment to send the last frames.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts one socket as open for as long as it lives.
pub struct OpenSocket<'a>(&'a AtomicUsize);

impl<'a> OpenSocket<'a> {
    /// Counts a socket in `count`.
    pub fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        OpenSocket(count)
    }
}

impl Drop for OpenSocket<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits (sleeping this thread) until no socket is counted in `count`, at most `timeout`.
pub fn wait_closed(count: &AtomicUsize, timeout: std::time::Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while count.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
