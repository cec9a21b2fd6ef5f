//! Waiting for something observable to happen, rather than sleeping for a time that
//! is hoped to be long enough.

use std::time::{Duration, Instant};

/// Polls `cond` until it holds; panics naming `what` after `timeout`.
pub fn until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
