//! A pool's budget of cloud API calls: a token bucket refilled at a steady rate, so
//! a pool in trouble (retries, many instances at once) slows down instead of
//! hammering the API and getting throttled harder.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct CallBudget {
    per_second: f64,
    capacity: f64,
    state: Mutex<(f64, Instant)>,
}

impl CallBudget {
    /// `calls` a minute, with bursts of up to a tenth of that (at least 5).
    pub fn per_minute(calls: u32) -> CallBudget {
        let per_second = f64::from(calls.max(1)) / 60.0;
        let capacity = (f64::from(calls) / 10.0).max(5.0);
        CallBudget {
            per_second,
            capacity,
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    /// Takes one call, or says how long until one is available.
    fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *state;
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second))
        }
    }

    /// Waits for one call's worth of budget.
    pub async fn take(&self) {
        while let Err(wait) = self.try_take(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_paces() {
        // 60 a minute: a burst of 6, then one a second.
        let b = CallBudget::per_minute(60);
        let t = Instant::now();
        for _ in 0..6 {
            assert!(b.try_take(t).is_ok());
        }
        let wait = b.try_take(t).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert!(b.try_take(t + Duration::from_secs(1)).is_ok());
        assert!(b.try_take(t + Duration::from_secs(1)).is_err());
    }
}
