//! Warm pools and recycling: `min_instances` kept ready (the idle timer never takes
//! the pool below it), and instances replaced after `max_uses` builds or `max_age`
//! seconds, so a long-lived machine's leftovers (disk, caches, leaks) stay bounded.
//! A worn-out instance drains: it finishes what it runs, takes nothing more, then
//! stops; planning starts its replacement if the demand or the minimum asks.

use super::LatentMsg;
use crate::master::Master;
use crate::model::Phase;
use std::time::Duration;

impl Master {
    /// Why the instance is due for replacement, if it is.
    pub(super) fn worn_out(&self, pool: &str, id: i64) -> Option<String> {
        let p = self.pools.get(pool)?;
        let i = p.instances.get(&id)?;
        if let Some(max) = p.config.max_uses.filter(|m| i.uses >= *m) {
            return Some(format!(
                "recycled after {} builds (max_uses = {max})",
                i.uses
            ));
        }
        let max = p
            .config
            .max_age
            .filter(|m| self.now - i.born >= *m as f64)?;
        Some(format!("recycled after {max} s (max_age)"))
    }

    /// Retires a worn-out instance that takes builds: stopped if it runs none,
    /// otherwise draining until they are done. Whether it was.
    pub(super) fn retire_if_worn(&mut self, pool: &str, id: i64) -> bool {
        let Some(why) = self.worn_out(pool, id) else {
            return false;
        };
        let Some(i) = self.pools.get(pool).and_then(|p| p.instances.get(&id)) else {
            return false;
        };
        match i.phase {
            Phase::Ready | Phase::Idle => self.stop_instance(pool, id, &why),
            Phase::Building => self.transition(pool, id, Phase::Draining, Some(&why)),
            _ => return false,
        }
        true
    }

    /// Whether stopping this idle instance would leave the pool with fewer than
    /// `min_instances` that take (or will take) builds.
    pub(super) fn keeps_warm(&self, pool: &str, id: i64) -> bool {
        let Some(p) = self.pools.get(pool) else {
            return false;
        };
        let usable = p
            .instances
            .values()
            .filter(|i| {
                i.phase.is_counted()
                    && !matches!(i.phase, Phase::Draining | Phase::Stopping | Phase::Parking)
            })
            .count();
        p.instances.contains_key(&id) && usable <= p.config.min_instances
    }

    /// Stops an instance for being idle, unless the warm minimum keeps it.
    pub(super) fn idle_stop(&mut self, pool: &str, id: i64, why: &str) {
        if self.keeps_warm(pool, id) {
            return;
        }
        if self.may_park(pool, id) {
            self.park(pool, id, why);
        } else {
            self.stop_instance(pool, id, why);
        }
    }

    /// Arms the `max_age` check of a new (or adopted) instance.
    pub(super) fn arm_retirement(&mut self, pool: &str, id: i64) {
        let Some(p) = self.pools.get(pool) else {
            return;
        };
        let (Some(max), Some(i)) = (p.config.max_age, p.instances.get(&id)) else {
            return;
        };
        let due = (i.born + max as f64 - self.now).max(0.0);
        let pool = pool.to_owned();
        self.after(Duration::from_secs_f64(due), LatentMsg::Retire { pool, id });
    }
}
