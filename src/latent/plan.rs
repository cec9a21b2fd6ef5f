//! How many instances a pool should start: a pure function of its config, its
//! instances and the demand, so the hard cap can be checked at every instant.

use crate::model::{Instance, Phase};

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

/// The decision for one pool at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Instances to start now.
    pub start: usize,
    /// Why requests still wait, if they do.
    pub waiting: Option<String>,
}

/// `demand`: queued requests this pool could serve that no instance has taken.
/// `blocked`: why the pool may not start anything now (quarantine), if so.
pub fn plan(
    limits: PoolLimits,
    instances: &[Instance],
    demand: usize,
    blocked: Option<&str>,
) -> Plan {
    let live = instances.iter().filter(|i| i.phase.is_live()).count();
    let per = limits.max_builds.max(1);
    // Room on instances that are starting or free; draining ones take nothing.
    let coming: usize = instances
        .iter()
        .map(|i| match i.phase {
            p if p.is_starting() => per,
            Phase::Ready | Phase::Idle | Phase::Building => per.saturating_sub(i.builds),
            _ => 0,
        })
        .sum();
    let unmet = demand.saturating_sub(coming);
    let wanted = unmet
        .div_ceil(per)
        .max(limits.min_instances.saturating_sub(live));
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

    fn at(phase: Phase) -> Instance {
        let mut i = Instance::new(0, "p", "p-0", 0.0);
        i.phase = phase;
        i
    }

    #[test]
    fn a_flood_starts_up_to_the_cap_in_one_go() {
        assert_eq!(
            plan(limits(3), &[], 5, None),
            Plan {
                start: 3,
                waiting: Some("pool at its cap of 3 instances".into())
            }
        );
        assert_eq!(plan(limits(10), &[], 5, None).start, 5);
    }

    #[test]
    fn starting_and_stopping_instances_count_against_the_cap() {
        let live = [at(Phase::Booting), at(Phase::Stopping), at(Phase::Draining)];
        assert_eq!(plan(limits(3), &live, 5, None).start, 0);
        assert_eq!(plan(limits(4), &live, 5, None).start, 1);
    }

    #[test]
    fn starting_and_free_instances_cover_demand() {
        let have = [at(Phase::Connecting), at(Phase::Idle)];
        assert_eq!(plan(limits(9), &have, 2, None).start, 0);
        assert_eq!(plan(limits(9), &have, 3, None).start, 1);
        let two_builds = PoolLimits {
            max_instances: 9,
            max_builds: 2,
            min_instances: 0,
        };
        assert_eq!(plan(two_builds, &[], 5, None).start, 3);
    }

    #[test]
    fn quarantine_and_warm_minimum() {
        let p = plan(limits(3), &[], 2, Some("3 failures in a row"));
        assert_eq!(p.start, 0);
        assert!(p.waiting.is_some_and(|w| w.contains("quarantined")));
        let warm = PoolLimits {
            max_instances: 3,
            max_builds: 1,
            min_instances: 2,
        };
        assert_eq!(plan(warm, &[at(Phase::Idle)], 0, None).start, 1);
    }
}
