//! A shared byte budget for inbound frames: socket readers take bytes from it before handing a
//! frame to the driver, and the driver gives them back once the frame is handled. So however many
//! clients send at once, frames waiting for the driver never hold more than the budget.

use std::sync::Mutex;

use event_listener::Event;

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
        let bytes = bytes.min(self.max);
        loop {
            if self.try_take(bytes) {
                return bytes;
            }
            let listener = self.freed.listen();
            // Check again: bytes may have been released between the try and the listen.
            if self.try_take(bytes) {
                return bytes;
            }
            listener.await;
        }
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
        smol::block_on(async {
            assert_eq!(budget.acquire(60).await, 60);
            let b = budget.clone();
            let waiter = smol::spawn(async move { b.acquire(60).await });
            smol::Timer::after(std::time::Duration::from_millis(20)).await;
            assert_eq!(budget.used(), 60, "the second frame must wait");
            budget.release(60);
            assert_eq!(waiter.await, 60);
            budget.release(60);
            // A frame bigger than the whole budget takes all of it.
            assert_eq!(budget.acquire(500).await, 100);
            assert_eq!(budget.used(), 100);
        });
    }
}
