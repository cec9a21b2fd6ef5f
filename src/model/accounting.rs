//! What a latent instance cost: its time in the cloud from launch to end, the part
//! of it its builds used, the idle rest, and with a price per hour the money of each.
//! Computed from the recorded transitions and builds, so it needs no counter of its
//! own kept in step and holds after a restart.

use super::Phase;
use serde::Serialize;

/// One build an instance ran, as the accounting sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildTime {
    pub id: i64,
    pub builder: String,
    pub number: i64,
    /// Seconds it held the instance (until now, or the instance's end, if unfinished).
    pub seconds: f64,
    /// Its share of the instance's price (its own seconds; idle time is apart).
    pub cost: Option<f64>,
    /// Its share of the instance's whole cost, idle time included: what the build
    /// record keeps (see [`shares`]).
    pub share: Option<f64>,
}

/// An instance's times and cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Accounting {
    pub launched_at: Option<f64>,
    pub ready_at: Option<f64>,
    pub ended_at: Option<f64>,
    /// Seconds from asking for it to its worker attached.
    pub time_to_ready: Option<f64>,
    /// Seconds from the launch call to its end (or now): what a cloud bills.
    pub instance_seconds: f64,
    pub builds_run: usize,
    /// Seconds builds ran on it (builds at once are each counted).
    pub busy_seconds: f64,
    /// Instance seconds no build used.
    pub idle_seconds: f64,
    /// The price per hour it was launched at, if the pool sets one.
    pub price_per_hour: Option<f64>,
    pub cost: Option<f64>,
    pub idle_cost: Option<f64>,
    /// The whole cost over the builds run, idle time included.
    pub cost_per_build: Option<f64>,
    pub builds: Vec<BuildTime>,
}

/// A build as recorded: id, builder, number, started, finished.
pub type BuildSpan = (i64, String, i64, f64, Option<f64>);

/// The accounting of an instance with `transitions` (oldest first) that ran `builds`,
/// at `price` per hour, seen at `now`.
pub fn account(
    transitions: &[(Phase, f64, Option<String>)],
    builds: &[BuildSpan],
    price: Option<f64>,
    now: f64,
) -> Accounting {
    let first = |want: &[Phase]| {
        transitions
            .iter()
            .find(|(p, _, _)| want.contains(p))
            .map(|(_, at, _)| *at)
    };
    let born = transitions.first().map(|(_, at, _)| *at);
    let launched_at = first(&[Phase::Launching]);
    let ready_at = first(&[Phase::Ready]);
    let ended_at = first(&[Phase::Stopped, Phase::Failed]);
    let end = ended_at.unwrap_or(now);
    let instance_seconds = launched_at.map_or(0.0, |l| (end - l).max(0.0));
    let money = |seconds: f64| price.map(|p| seconds * p / 3600.0);
    let builds: Vec<BuildTime> = builds
        .iter()
        .map(|(id, builder, number, started, finished)| {
            let seconds = (finished.unwrap_or(end).min(end) - started).max(0.0);
            BuildTime {
                id: *id,
                builder: builder.clone(),
                number: *number,
                seconds,
                cost: money(seconds),
                share: None,
            }
        })
        .collect();
    let busy_seconds: f64 = builds.iter().map(|b| b.seconds).sum();
    let idle_seconds = (instance_seconds - busy_seconds).max(0.0);
    let cost = money(instance_seconds);
    let mut builds = builds;
    if let Some(cost) = cost {
        let seconds: Vec<f64> = builds.iter().map(|b| b.seconds).collect();
        for (b, share) in builds.iter_mut().zip(shares(cost, &seconds)) {
            b.share = Some(share);
        }
    }
    Accounting {
        launched_at,
        ready_at,
        ended_at,
        time_to_ready: ready_at.zip(born).map(|(r, b)| r - b),
        instance_seconds,
        builds_run: builds.len(),
        busy_seconds,
        idle_seconds,
        price_per_hour: price,
        cost,
        idle_cost: money(idle_seconds),
        cost_per_build: cost
            .filter(|_| !builds.is_empty())
            .map(|c| c / builds.len() as f64),
        builds,
    }
}

/// An instance's whole `cost` shared over its builds, each by the `seconds` it held
/// the instance: the idle time (booting, waiting for builds, shutting down) is paid by
/// the builds in the same proportion as the busy time, so the shares add up to the
/// cost. Builds that took no time at all share it equally.
pub fn shares(cost: f64, seconds: &[f64]) -> Vec<f64> {
    let total: f64 = seconds.iter().sum();
    if total > 0.0 {
        seconds.iter().map(|s| cost * s / total).collect()
    } else {
        let n = seconds.len().max(1) as f64;
        seconds.iter().map(|_| cost / n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn life() -> Vec<(Phase, f64, Option<String>)> {
        [
            (Phase::Requested, 100.0),
            (Phase::Launching, 100.0),
            (Phase::Booting, 110.0),
            (Phase::Connecting, 130.0),
            (Phase::Attaching, 140.0),
            (Phase::Ready, 145.0),
            (Phase::Building, 150.0),
            (Phase::Idle, 250.0),
            (Phase::Stopping, 460.0),
            (Phase::Stopped, 460.0),
        ]
        .into_iter()
        .map(|(p, t)| (p, t, None))
        .collect()
    }

    #[test]
    fn builds_pay_their_time_and_idle_time_is_apart() {
        let builds = vec![
            (1, "b".to_owned(), 1, 150.0, Some(200.0)),
            (2, "b".to_owned(), 2, 200.0, Some(250.0)),
        ];
        // 360 s at 3.60 an hour: 0.36 in all, 0.05 per 50 s build, 0.26 idle.
        let a = account(&life(), &builds, Some(3.6), 1000.0);
        assert_eq!(a.instance_seconds, 360.0);
        assert_eq!(a.time_to_ready, Some(45.0));
        assert_eq!((a.busy_seconds, a.idle_seconds), (100.0, 260.0));
        let close = |x: Option<f64>, y: f64| x.is_some_and(|x| (x - y).abs() < 1e-9);
        assert!(close(a.cost, 0.36), "{a:?}");
        assert!(close(a.builds[0].cost, 0.05), "{a:?}");
        assert!(close(a.idle_cost, 0.26), "{a:?}");
        assert!(close(a.cost_per_build, 0.18), "{a:?}");
        // Equal builds share the whole 0.36 equally, idle time included.
        assert!(close(a.builds[0].share, 0.18), "{a:?}");
        assert!(close(a.builds[1].share, 0.18), "{a:?}");
    }

    #[test]
    fn shares_follow_the_build_time_and_add_up_to_the_cost() {
        let s = shares(1.2, &[10.0, 30.0, 0.0]);
        assert_eq!(s.len(), 3);
        assert!(
            (s[0] - 0.3).abs() < 1e-12 && (s[1] - 0.9).abs() < 1e-12,
            "{s:?}"
        );
        assert_eq!(s[2], 0.0);
        assert!((s.iter().sum::<f64>() - 1.2).abs() < 1e-12);
        let s = shares(1.0, &[0.0, 0.0]);
        assert_eq!(s, vec![0.5, 0.5]);
        assert!(shares(1.0, &[]).is_empty());
    }

    #[test]
    fn a_live_instance_counts_until_now_and_without_a_price_has_no_cost() {
        let mut t = life();
        t.truncate(7);
        let builds = vec![(1, "b".to_owned(), 1, 150.0, None)];
        let a = account(&t, &builds, None, 400.0);
        assert_eq!(a.ended_at, None);
        assert_eq!(a.instance_seconds, 300.0);
        assert_eq!(a.busy_seconds, 250.0);
        assert_eq!((a.cost, a.cost_per_build), (None, None));
    }

    #[test]
    fn an_instance_never_launched_cost_nothing() {
        let t = vec![(Phase::Requested, 1.0, None), (Phase::Stopped, 2.0, None)];
        let a = account(&t, &[], Some(1.0), 10.0);
        assert_eq!(a.instance_seconds, 0.0);
        assert_eq!(a.cost, Some(0.0));
        assert_eq!(a.cost_per_build, None);
    }
}
