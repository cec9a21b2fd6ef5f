//! The one place schedulers meet the real clock: a task that sleeps until the next
//! wake-up time the coordinator publishes, then sends it a message.

use crate::store::now;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Longest single sleep: the wall clock may be set while we sleep on the monotonic
/// one, so the target is checked again at least this often.
const MAX_SLEEP: f64 = 60.0;

/// Runs until either channel closes. `wake` holds the next wake-up (seconds since
/// the epoch) or `None`; the coordinator replaces it after every wake-up, which is
/// what lets this task wait again.
pub async fn run<M>(
    mut wake: watch::Receiver<Option<f64>>,
    tx: mpsc::Sender<M>,
    message: impl Fn() -> M,
) {
    loop {
        let target = *wake.borrow_and_update();
        let Some(target) = target else {
            if wake.changed().await.is_err() {
                return;
            }
            continue;
        };
        let wait = (target - now()).clamp(0.0, MAX_SLEEP);
        let wait = if wait.is_nan() { MAX_SLEEP } else { wait };
        tokio::select! {
            changed = wake.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(Duration::from_secs_f64(wait)) => {
                if now() >= target {
                    if tx.send(message()).await.is_err() {
                        return;
                    }
                    if wake.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
