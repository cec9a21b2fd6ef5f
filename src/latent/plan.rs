//! How many instances a pool should start: a pure function of its config, its
//! instances and the demand, so the hard cap can be checked at every instant.

use crate::model::Phase;
use std::collections::{BTreeMap, BTreeSet};

/// The pool's numbers that planning needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Instances at once, counting those starting and stopping.
    pub max_instances: usize,
    /// Builds one instance runs at once.
    pub max_builds: usize,
    /// Instances kept even without demand.
    pub min_instances: usize,
}

/// An instance as planning sees it: its phase and the builders it runs a build of.
/// A worker runs one build per builder at a time, so an instance's room for a
/// builder is not `max_builds` but one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub phase: Phase,
    pub busy: BTreeSet<String>,
}

/// The decision for one pool at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Instances to start now.
    pub start: usize,
    /// Why requests still wait, if they do.
    pub waiting: Option<String>,
}

/// `demand`: queued requests this pool could serve that no instance has taken, by
/// builder. `blocked`: why the pool may not start anything now (quarantine), if so.
pub fn plan(
    limits: PoolLimits,
    seats: &[Seat],
    demand: &BTreeMap<String, usize>,
    blocked: Option<&str>,
) -> Plan {
    let live = seats.iter().filter(|s| s.phase.is_counted()).count();
    let per = limits.max_builds.max(1);
    let unmet = unmet(per, seats, demand);
    // A new instance takes one build of each builder, `per` in all.
    let for_demand = unmet
        .values()
        .copied()
        .max()
        .unwrap_or(0)
        .max(unmet.values().sum::<usize>().div_ceil(per));
    // The warm minimum counts only instances that will take builds: one draining to be
    // recycled is replaced.
    let usable = seats
        .iter()
        .filter(|s| {
            s.phase.is_counted()
                && !matches!(s.phase, Phase::Draining | Phase::Stopping | Phase::Parking)
        })
        .count();
    let wanted = for_demand.max(limits.min_instances.saturating_sub(usable));
    let room = limits.max_instances.saturating_sub(live);
    if wanted == 0 {
        return Plan {
            start: 0,
            waiting: None,
        };
    }
    if let Some(why) = blocked {
        return Plan {
            start: 0,
            waiting: Some(format!("pool is quarantined: {why}")),
        };
    }
    let start = wanted.min(room);
    let waiting =
        (start < wanted).then(|| format!("pool at its cap of {} instances", limits.max_instances));
    Plan { start, waiting }
}

/// The demand left once instances starting or free have taken what they can: each
/// at most one build per builder and `per` in all (draining ones take nothing). The
/// builders with most waiting go first, so the count is never too low.
fn unmet(per: usize, seats: &[Seat], demand: &BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    let mut rooms: Vec<(usize, &BTreeSet<String>)> = seats
        .iter()
        .filter_map(|s| match s.phase {
            p if p.is_starting() => Some((per, &s.busy)),
            Phase::Ready | Phase::Idle | Phase::Building => {
                Some((per.saturating_sub(s.busy.len()), &s.busy))
            }
            _ => None,
        })
        .collect();
    let mut order: Vec<(&String, usize)> = demand.iter().map(|(b, n)| (b, *n)).collect();
    order.sort_by_key(|(b, n)| (std::cmp::Reverse(*n), (*b).clone()));
    let mut left = BTreeMap::new();
    for (builder, mut n) in order {
        for (free, busy) in rooms.iter_mut() {
            if n == 0 {
                break;
            }
            if *free > 0 && !busy.contains(builder) {
                *free -= 1;
                n -= 1;
            }
        }
        if n > 0 {
            left.insert(builder.clone(), n);
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_instances: usize) -> PoolLimits {
        PoolLimits {
            max_instances,
            max_builds: 1,
            min_instances: 0,
        }
    }

    fn at(phase: Phase) -> Seat {
        Seat {
            phase,
            busy: BTreeSet::new(),
        }
    }

    fn one(n: usize) -> BTreeMap<String, usize> {
        BTreeMap::from([("b".to_owned(), n)])
    }

    #[test]
    fn a_flood_starts_up_to_the_cap_in_one_go() {
        assert_eq!(
            plan(limits(3), &[], &one(5), None),
            Plan {
                start: 3,
                waiting: Some("pool at its cap of 3 instances".into())
            }
        );
        assert_eq!(plan(limits(10), &[], &one(5), None).start, 5);
    }

    #[test]
    fn starting_and_stopping_instances_count_against_the_cap() {
        let live = [at(Phase::Booting), at(Phase::Stopping), at(Phase::Draining)];
        assert_eq!(plan(limits(3), &live, &one(5), None).start, 0);
        assert_eq!(plan(limits(4), &live, &one(5), None).start, 1);
    }

    #[test]
    fn starting_and_free_instances_cover_demand() {
        let have = [at(Phase::Connecting), at(Phase::Idle)];
        assert_eq!(plan(limits(9), &have, &one(2), None).start, 0);
        assert_eq!(plan(limits(9), &have, &one(3), None).start, 1);
    }

    #[test]
    fn an_instance_takes_one_build_per_builder_whatever_its_max_builds() {
        let two_builds = PoolLimits {
            max_instances: 9,
            max_builds: 2,
            min_instances: 0,
        };
        // One builder: five requests need five instances, not three.
        assert_eq!(plan(two_builds, &[], &one(5), None).start, 5);
        // Two builders share an instance: three and two need three.
        let both = BTreeMap::from([("a".to_owned(), 3), ("b".to_owned(), 2)]);
        assert_eq!(plan(two_builds, &[], &both, None).start, 3);
        // A busy instance has room only for the builders it does not run.
        let busy = Seat {
            phase: Phase::Building,
            busy: BTreeSet::from(["b".to_owned()]),
        };
        assert_eq!(
            plan(two_builds, std::slice::from_ref(&busy), &one(1), None).start,
            1
        );
        let other = BTreeMap::from([("a".to_owned(), 1)]);
        assert_eq!(plan(two_builds, &[busy], &other, None).start, 0);
    }

    #[test]
    fn quarantine_and_warm_minimum() {
        let p = plan(limits(3), &[], &one(2), Some("3 failures in a row"));
        assert_eq!(p.start, 0);
        assert!(p.waiting.is_some_and(|w| w.contains("quarantined")));
        let warm = PoolLimits {
            max_instances: 3,
            max_builds: 1,
            min_instances: 2,
        };
        assert_eq!(plan(warm, &[at(Phase::Idle)], &one(0), None).start, 1);
        // One draining to be recycled is replaced, under the cap.
        let recycling = [at(Phase::Idle), at(Phase::Draining)];
        assert_eq!(plan(warm, &recycling, &one(0), None).start, 1);
    }
}
