//! Signature checks run on their own thread: each costs about as much as a small storage
//! operation, and the driver and the socket loops must not wait for them.

use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;

use fibergun::sea::rules::SignatureCheck;
use fibergun::VerifyId;

/// Starts the verifier thread. Checks sent on the returned channel are run in order, and each
/// batch's results (one per check) are passed to `done`. The thread ends when the channel closes.
pub fn spawn<F>(done: F) -> (Sender<(VerifyId, Vec<SignatureCheck>)>, JoinHandle<()>)
where
    F: Fn(VerifyId, Vec<bool>) + Send + 'static,
{
    let (tx, rx) = channel::<(VerifyId, Vec<SignatureCheck>)>();
    let handle = std::thread::Builder::new()
        .name("fibergun-verify".into())
        .spawn(move || {
            while let Ok((id, checks)) = rx.recv() {
                done(id, checks.iter().map(SignatureCheck::holds).collect());
            }
        })
        .expect("spawning the verifier thread");
    (tx, handle)
}
