//! A connection writer's mailbox: the frames the driver queues, a close, or a kill. It holds no
//! memory while empty, so an idle connection costs only what it must (a channel would keep its
//! first block of slots, about 1.2 KiB, for as long as the connection lives, and an event listener
//! allocates).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Mutex;
use std::task::{Poll, Waker};

/// What a connection's writer task is asked to do.
#[derive(Debug)]
pub enum Outgoing {
    /// Send this text frame.
    Frame(String),
    /// Close the socket, with this reason.
    Close(String),
    /// Send a WebSocket ping (keepalive).
    Ping,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Outgoing>,
    /// No more will be queued: the writer ends once it has sent what is there.
    closed: bool,
    /// End at once, dropping what is queued.
    killed: bool,
    /// The writer, waiting for something to be queued, a close or a kill.
    writer: Option<Waker>,
    /// The task waiting for a kill. Kept apart from `writer`, so that a frame always wakes the
    /// writer.
    kill_watcher: Option<Waker>,
}

/// Frames on their way from the driver to one connection's writer. One task writes
/// ([`Mailbox::next_batch`]) and one watches for a kill ([`Mailbox::killed`]): each has one waker
/// slot, which costs no memory of its own (an event listener would allocate, per connection).
#[derive(Debug, Default)]
pub struct Mailbox {
    state: Mutex<State>,
}

/// Keeps `waker` in `slot` unless it already holds one that wakes the same task.
fn remember(slot: &mut Option<Waker>, waker: &Waker) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
        *slot = Some(waker.clone());
    }
}

impl Mailbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues something for the writer.
    pub fn push(&self, out: Outgoing) {
        let mut state = self.lock();
        if state.killed || state.closed {
            return;
        }
        state.queue.push_back(out);
        let writer = state.writer.take();
        drop(state);
        if let Some(writer) = writer {
            writer.wake();
        }
    }

    /// Nothing more will be queued.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let writer = state.writer.take();
        drop(state);
        if let Some(writer) = writer {
            writer.wake();
        }
    }

    /// Ends the writer at once (see [`Mailbox::killed`]).
    pub fn kill(&self) {
        let mut state = self.lock();
        state.killed = true;
        state.queue = VecDeque::new();
        let wakers = [state.writer.take(), state.kill_watcher.take()];
        drop(state);
        wakers.into_iter().flatten().for_each(Waker::wake);
    }

    /// Waits for what is queued and takes up to `max` of it, oldest first. `None` once killed,
    /// or closed with nothing left.
    pub async fn next_batch(&self, max: usize) -> Option<Vec<Outgoing>> {
        poll_fn(|cx| {
            let mut state = self.lock();
            if state.killed {
                return Poll::Ready(None);
            }
            if !state.queue.is_empty() {
                let n = state.queue.len().min(max);
                let batch = state.queue.drain(..n).collect();
                if state.queue.is_empty() {
                    // Give the memory back: most connections are idle most of the time.
                    state.queue = VecDeque::new();
                }
                return Poll::Ready(Some(batch));
            }
            if state.closed {
                return Poll::Ready(None);
            }
            remember(&mut state.writer, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Completes when the mailbox is killed.
    pub async fn killed(&self) {
        poll_fn(|cx| {
            let mut state = self.lock();
            if state.killed {
                return Poll::Ready(());
            }
            remember(&mut state.kill_watcher, cx.waker());
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::{Mailbox, Outgoing};

    fn texts(batch: Option<Vec<Outgoing>>) -> Vec<String> {
        batch
            .unwrap_or_default()
            .into_iter()
            .map(|o| match o {
                Outgoing::Frame(t) => t,
                Outgoing::Close(r) => format!("close {r}"),
                Outgoing::Ping => "ping".into(),
            })
            .collect()
    }

    #[test]
    fn batches_in_order_then_ends_when_closed_and_empty() {
        let m = Mailbox::default();
        for i in 0..5 {
            m.push(Outgoing::Frame(i.to_string()));
        }
        smol::block_on(async {
            assert_eq!(texts(m.next_batch(3).await), ["0", "1", "2"]);
            m.push(Outgoing::Close("bye".into()));
            m.close();
            m.push(Outgoing::Frame("late".into()));
            assert_eq!(texts(m.next_batch(10).await), ["3", "4", "close bye"]);
            assert!(m.next_batch(10).await.is_none());
        });
    }

    #[test]
    fn a_frame_wakes_the_writer_even_while_a_kill_is_awaited() {
        let m = std::sync::Arc::new(Mailbox::default());
        let watcher = {
            let m = m.clone();
            std::thread::spawn(move || smol::block_on(m.killed()))
        };
        let writer = {
            let m = m.clone();
            std::thread::spawn(move || texts(smol::block_on(m.next_batch(8))))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        m.push(Outgoing::Frame("hello".into()));
        assert_eq!(writer.join().unwrap(), ["hello"]);
        m.kill();
        watcher.join().unwrap();
    }

    #[test]
    fn a_kill_wakes_a_waiting_writer_and_drops_the_queue() {
        let m = std::sync::Arc::new(Mailbox::default());
        let waiter = {
            let m = m.clone();
            std::thread::spawn(move || smol::block_on(m.next_batch(8)).is_none())
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        m.kill();
        assert!(waiter.join().unwrap());
        m.push(Outgoing::Frame("x".into()));
        smol::block_on(async {
            m.killed().await;
            assert!(m.next_batch(8).await.is_none());
        });
    }
}
