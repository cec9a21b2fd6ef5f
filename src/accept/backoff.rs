//! How long to wait after a failed `accept` before trying again.
//!
//! An accept that fails for want of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) fails
//! again at once until something is freed: retrying at once would spin a core and
//! flood the log, while a fixed long pause would leave connections waiting after the
//! shortage is over.

use std::time::Duration;

/// The pause after the first failure in a row.
const FIRST: Duration = Duration::from_millis(5);
/// The longest pause.
const LONGEST: Duration = Duration::from_secs(1);

/// Pauses that double from 5 ms up to 1 s over failures in a row; a success starts
/// over.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// The pause after the next failure; `None` after a success.
    next: Option<Duration>,
}

impl AcceptBackoff {
    /// An accept failed: how long to wait before the next one.
    pub fn failed(&mut self) -> Duration {
        let pause = self.next.unwrap_or(FIRST);
        self.next = Some((pause * 2).min(LONGEST));
        pause
    }

    /// An accept succeeded: the next failure waits the shortest pause again.
    pub fn succeeded(&mut self) {
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(backoff: &mut AcceptBackoff, failures: usize) -> Vec<u128> {
        (0..failures)
            .map(|_| backoff.failed().as_millis())
            .collect()
    }

    #[test]
    fn doubles_from_5_ms_up_to_1_s() {
        let mut backoff = AcceptBackoff::default();
        assert_eq!(
            millis(&mut backoff, 11),
            [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]
        );
    }

    #[test]
    fn a_success_starts_over() {
        let mut backoff = AcceptBackoff::default();
        millis(&mut backoff, 4);
        backoff.succeeded();
        assert_eq!(millis(&mut backoff, 3), [5, 10, 20]);
    }
}
