//! A shared byte budget for inbound frames: socket readers take bytes from it before handing a
//! frame to the driver, and the driver gives them back once the frame is handled. So however many
//! clients send at once, frames waiting for the driver never hold more than the budget.

use std::sync::Mutex;

use event_listener::{Event, EventListener, Listener};

/// Bytes of frames in flight between the sockets and the driver.
#[derive(Debug)]
pub struct ByteBudget {
    used: Mutex<usize>,
    max: usize,
    freed: Event,
}

impl ByteBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> ByteBudget {
        ByteBudget {
            used: Mutex::new(0),
            max: max.max(1),
            freed: Event::new(),
        }
    }

    /// Waits until `bytes` fit, then takes them. A frame bigger than the whole budget takes all of
    /// it (it was already bounded by the frame limit). Returns what was taken, for `release`.
    pub async fn acquire(&self, bytes: usize) -> usize {
        loop {
            match self.take_or_listen(bytes) {
                Ok(taken) => return taken,
                Err(freed) => freed.await,
            }
        }
    }

    /// [`ByteBudget::acquire`] for threads: blocks the calling thread until `bytes` fit.
    pub fn acquire_blocking(&self, bytes: usize) -> usize {
        loop {
            match self.take_or_listen(bytes) {
                Ok(taken) => return taken,
                Err(freed) => freed.wait(),
            }
        }
    }

    /// Takes `bytes` (capped at the whole budget) if they fit; otherwise a listener for the next
    /// release. Checks again after listening: bytes may have been released in between.
    fn take_or_listen(&self, bytes: usize) -> Result<usize, EventListener> {
        let bytes = bytes.min(self.max);
        if self.try_take(bytes) {
            return Ok(bytes);
        }
        let listener = self.freed.listen();
        if self.try_take(bytes) {
            return Ok(bytes);
        }
        Err(listener)
    }

    fn try_take(&self, bytes: usize) -> bool {
        let mut used = self.used.lock().expect("the budget lock is never poisoned");
        if *used + bytes <= self.max {
            *used += bytes;
            true
        } else {
            false
        }
    }

    /// Gives back bytes taken by `acquire`.
    pub fn release(&self, bytes: usize) {
        let mut used = self.used.lock().expect("the budget lock is never poisoned");
        *used = used.saturating_sub(bytes);
        drop(used);
        self.freed.notify(usize::MAX);
    }

    /// Bytes currently taken.
    pub fn used(&self) -> usize {
        *self.used.lock().expect("the budget lock is never poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn waits_until_bytes_are_released() {
        let budget = Arc::new(ByteBudget::new(100));
        assert_eq!(budget.acquire_blocking(60), 60);
        let b = budget.clone();
        let waiter = std::thread::spawn(move || b.acquire_blocking(60));
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(budget.used(), 60, "the second frame must wait");
        budget.release(60);
        assert_eq!(waiter.join().unwrap(), 60);
        budget.release(60);
        // A frame bigger than the whole budget takes all of it.
        assert_eq!(budget.acquire_blocking(500), 100);
        assert_eq!(budget.used(), 100);
    }

    #[test]
    fn async_waiters_wake_on_release() {
        let budget = Arc::new(ByteBudget::new(10));
        assert_eq!(budget.acquire_blocking(10), 10);
        let b = budget.clone();
        let waiter = std::thread::spawn(move || block_on(b.acquire(5)));
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(budget.used(), 10);
        budget.release(10);
        assert_eq!(waiter.join().unwrap(), 5);
    }

    /// Polls a future to completion on this thread, parking between wake-ups.
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Wake, Waker};
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            match f.as_mut().poll(&mut cx) {
                Poll::Ready(v) => return v,
                Poll::Pending => std::thread::park(),
            }
        }
    }
}
