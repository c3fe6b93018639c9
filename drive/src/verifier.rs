//! Signature checks run on their own threads: each costs about as much as a small storage
//! operation (a P-256 verification, some 200 µs), and the driver and the socket loops must not
//! wait for them. Several threads share one queue, so a burst of signed writes uses the cores.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use fibergun::sea::rules::SignatureCheck;
use fibergun::VerifyId;

/// The verifier threads.
pub struct Verifiers {
    threads: Vec<JoinHandle<()>>,
}

impl Verifiers {
    /// Waits for every thread to end (they end once the channel closes).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts `threads` verifier threads (at least one). Each batch of checks sent on the returned
/// channel is run by one of them, and its results (one per check, in order) are passed to `done`.
/// Batches may finish out of order; the core matches them by id.
pub fn spawn<F>(threads: usize, done: F) -> (Sender<(VerifyId, Vec<SignatureCheck>)>, Verifiers)
where
    F: Fn(VerifyId, Vec<bool>) + Clone + Send + 'static,
{
    let (tx, rx) = channel::<(VerifyId, Vec<SignatureCheck>)>();
    let rx = Arc::new(Mutex::new(rx));
    let threads = (0..threads.max(1))
        .map(|i| {
            let (rx, done) = (rx.clone(), done.clone());
            std::thread::Builder::new()
                .name(format!("fibergun-verify-{i}"))
                .spawn(move || run(&rx, done))
                .expect("spawning a verifier thread")
        })
        .collect();
    (tx, Verifiers { threads })
}

fn run<F: Fn(VerifyId, Vec<bool>)>(rx: &Mutex<Receiver<(VerifyId, Vec<SignatureCheck>)>>, done: F) {
    loop {
        // Hold the lock only to take a batch, not while checking it.
        let next = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((id, checks)) = next else {
            return;
        };
        done(id, checks.iter().map(SignatureCheck::holds).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fibergun::sea::{field_text, KeyPair};
    use serde_json::json;

    #[test]
    fn every_batch_is_answered_once_with_one_result_per_check() {
        let pair = KeyPair::from_private("rSRdCZ2OxJ1NT2VZ14drp-GWZLw1O50eCW0s41EAhVk").unwrap();
        let text = field_text("~a.b", "k", &json!("v"), 1.0);
        let good = SignatureCheck {
            signer: pair.public().as_str().to_owned(),
            texts: vec![text.clone()],
            signature: pair.sign(&text),
            refusal: "Unverified data.",
        };
        let bad = SignatureCheck {
            texts: vec![format!("{text} ")],
            ..good.clone()
        };
        let (results_tx, results_rx) = channel();
        let (tx, verifiers) = spawn(3, move |id, results| {
            let _ = results_tx.send((id, results));
        });
        for i in 0..20u64 {
            let checks = if i % 2 == 0 {
                vec![good.clone()]
            } else {
                vec![good.clone(), bad.clone()]
            };
            tx.send((VerifyId(i), checks)).unwrap();
        }
        drop(tx);
        verifiers.join();
        let mut answers: Vec<(VerifyId, Vec<bool>)> = results_rx.iter().collect();
        answers.sort_by_key(|(id, _)| *id);
        assert_eq!(answers.len(), 20);
        for (id, results) in answers {
            let expected = if id.0 % 2 == 0 {
                vec![true]
            } else {
                vec![true, false]
            };
            assert_eq!(results, expected, "batch {}", id.0);
        }
    }
}
