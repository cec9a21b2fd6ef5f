//! Schedulers driven by the clock: periodic (every N seconds) and nightly (cron).
//!
//! Each keeps `since`, the time up to which it has acted: its last firing, or when it
//! was first armed. The next firing follows from `since` alone, so storing `since` is
//! enough for a restart neither to fire twice nor to skip. A firing missed while the
//! master was down happens once at start, not once per missed time.

use crate::model::cron::Cron;

/// When a timed scheduler fires.
#[derive(Debug, Clone)]
pub enum Rule {
    Every(f64),
    Cron(Cron),
}

impl Rule {
    /// The first firing time after `since`.
    pub fn next_after(&self, since: f64) -> Option<f64> {
        match self {
            Rule::Every(interval) => Some(since + interval),
            Rule::Cron(cron) => cron.next_after(since.floor() as i64).map(|t| t as f64),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Rule::Every(interval) => format!("periodic, every {interval} s"),
            Rule::Cron(cron) => format!("nightly, cron \"{cron}\" in {}", cron.zone()),
        }
    }
}

/// A timed scheduler's state.
#[derive(Debug, Clone)]
pub struct Timed {
    pub rule: Rule,
    since: Option<f64>,
}

impl Timed {
    pub fn new(rule: Rule) -> Timed {
        Timed { rule, since: None }
    }

    /// Takes the stored `since`, or arms a scheduler that has none: a periodic one is
    /// due at once (as buildbot's is), a nightly one waits for its next time. Returns
    /// the `since` to store.
    pub fn arm(&mut self, stored: Option<f64>, now: f64) -> f64 {
        let since = stored.unwrap_or(match self.rule {
            Rule::Every(interval) => now - interval,
            Rule::Cron(_) => now,
        });
        self.since = Some(since);
        since
    }

    /// When it fires next; `None` before [`Timed::arm`] or for a cron with no future match.
    pub fn next_fire(&self) -> Option<f64> {
        self.rule.next_after(self.since?)
    }

    /// True when due at `now`; it is then considered fired at `now`.
    pub fn fire_if_due(&mut self, now: f64) -> bool {
        match self.next_fire() {
            Some(t) if now >= t => {
                self.since = Some(now);
                true
            }
            _ => false,
        }
    }

    pub fn since(&self) -> Option<f64> {
        self.since
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cron::zone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> f64 {
        crate::model::cron::utc_seconds(y, mo, d, h, mi) as f64
    }

    #[test]
    fn periodic_fires_at_start_then_every_interval() {
        let mut p = Timed::new(Rule::Every(600.0));
        let t0 = 1_000_000.0;
        assert_eq!(p.arm(None, t0), t0 - 600.0);
        assert!(p.fire_if_due(t0), "first start: fires at once");
        assert_eq!(p.next_fire(), Some(t0 + 600.0));
        assert!(!p.fire_if_due(t0 + 599.0));
        assert!(p.fire_if_due(t0 + 600.0));
        // Woken late: the next one counts from the actual firing.
        assert!(p.fire_if_due(t0 + 1300.0));
        assert_eq!(p.next_fire(), Some(t0 + 1900.0));
    }

    #[test]
    fn periodic_restart_neither_repeats_nor_skips() {
        let t0 = 1_000_000.0;
        let mut before = Timed::new(Rule::Every(600.0));
        before.arm(None, t0);
        assert!(before.fire_if_due(t0));
        let stored = before.since();

        // Restarted 100 s later: not due again until the interval has passed.
        let mut after = Timed::new(Rule::Every(600.0));
        after.arm(stored, t0 + 100.0);
        assert!(!after.fire_if_due(t0 + 100.0));
        assert_eq!(after.next_fire(), Some(t0 + 600.0));

        // Restarted after being down across three intervals: fires once, not three times.
        let mut late = Timed::new(Rule::Every(600.0));
        late.arm(stored, t0 + 2000.0);
        assert!(late.fire_if_due(t0 + 2000.0));
        assert!(!late.fire_if_due(t0 + 2000.0));
    }

    #[test]
    fn nightly_waits_for_its_time_and_survives_restarts() {
        let rule = || Rule::Cron(Cron::parse("0 2 * * *").unwrap());
        let mut n = Timed::new(rule());
        let start = utc(2024, 2, 28, 23, 0);
        let stored = n.arm(None, start);
        assert_eq!(stored, start, "armed, not fired");
        assert!(!n.fire_if_due(start));
        assert_eq!(n.next_fire(), Some(utc(2024, 2, 29, 2, 0)));

        // The master restarts at 02:30 having missed 02:00: it fires once at start.
        let mut n = Timed::new(rule());
        n.arm(Some(stored), utc(2024, 2, 29, 2, 30));
        assert!(n.fire_if_due(utc(2024, 2, 29, 2, 30)));
        assert_eq!(n.next_fire(), Some(utc(2024, 3, 1, 2, 0)));

        // Restarted right after firing: the same night is not fired again.
        let fired = n.since();
        let mut n = Timed::new(rule());
        n.arm(fired, utc(2024, 2, 29, 2, 31));
        assert!(!n.fire_if_due(utc(2024, 2, 29, 23, 59)));
        assert!(n.fire_if_due(utc(2024, 3, 1, 2, 0)));
    }

    #[test]
    fn nightly_in_a_zone_fires_once_across_the_autumn_change() {
        // Berlin, 2024-10-27: 02:30 happens twice (00:30 and 01:30 UTC).
        let berlin = zone("Europe/Berlin").unwrap();
        let rule = || Rule::Cron(Cron::parse_in("30 2 * * *", berlin.clone()).unwrap());
        let mut n = Timed::new(rule());
        n.arm(None, utc(2024, 10, 26, 12, 0));
        assert!(n.fire_if_due(utc(2024, 10, 27, 0, 30)));
        // Restarted during the repeated hour: the second 02:30 does not fire.
        let mut n = Timed::new(rule());
        n.arm(Some(utc(2024, 10, 27, 0, 30)), utc(2024, 10, 27, 1, 0));
        assert!(!n.fire_if_due(utc(2024, 10, 27, 1, 45)));
        assert_eq!(n.next_fire(), Some(utc(2024, 10, 28, 1, 30)));
    }
}
