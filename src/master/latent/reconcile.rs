//! Reconciling pools with their clouds: after a restart (adopt what both know,
//! terminate what only the cloud has under this master's tag) and periodically while
//! running (terminate what no live instance accounts for).

use super::watcher::{Start, Watcher};
use super::{LatentMsg, Master, Msg, WorkerSlot};
use crate::latent::driver::OwnedInstance;
use crate::model::{Instance, Phase};
use crate::store::latent::InstanceRow;
use crate::store::now;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

impl Master {
    /// After a restart, each pool is reconciled with its cloud: an instance both the
    /// database and the cloud know is adopted (its worker may log in again with the
    /// same one-time credentials); one the cloud has under this master's tag but the
    /// database does not know, or cannot be adopted, is terminated. A driver that
    /// cannot list its instances gets every recorded one terminated.
    pub(in crate::master) async fn recover_latent(&mut self) {
        let live = match self.store.live_instances() {
            Ok(l) => l,
            Err(e) => return warn!("cannot read latent instances: {e}"),
        };
        let names: Vec<String> = self.pools.keys().cloned().collect();
        for pool in names {
            let driver = self.pools[&pool].driver.clone();
            let rows: Vec<InstanceRow> = live.iter().filter(|r| r.pool == pool).cloned().collect();
            let cloud = match driver.owned().await {
                Ok(c) => c,
                Err(e) => {
                    warn!(pool = %pool, "cannot list the pool's instances ({e}); terminating the recorded ones");
                    None
                }
            };
            let Some(cloud) = cloud else {
                for row in rows {
                    if let Some(cloud_id) = &row.cloud_id {
                        if let Err(e) = driver.terminate(cloud_id).await {
                            warn!(pool = %pool, "terminate {cloud_id} after restart: {e}");
                        }
                    }
                    self.record_stopped(&row, "terminated after a master restart");
                }
                continue;
            };
            let mut claimed = BTreeSet::new();
            for row in rows {
                let found = cloud.iter().find(|c| {
                    c.name.as_deref() == Some(row.name.as_str())
                        || Some(&c.cloud_id) == row.cloud_id.as_ref()
                });
                match (found, &row.password) {
                    (Some(c), Some(password)) => {
                        claimed.insert(c.cloud_id.clone());
                        self.adopt(&pool, &row, &c.cloud_id, password);
                    }
                    (Some(c), None) => {
                        claimed.insert(c.cloud_id.clone());
                        if let Err(e) = driver.terminate(&c.cloud_id).await {
                            warn!(pool = %pool, "terminate {}: {e}", c.cloud_id);
                        }
                        self.record_stopped(&row, "terminated after a master restart");
                    }
                    (None, _) => self.record_stopped(&row, "gone while the master was down"),
                }
            }
            for c in cloud.iter().filter(|c| !claimed.contains(&c.cloud_id)) {
                warn!(pool = %pool, cloud_id = %c.cloud_id, "terminating an instance of this master that the database does not know");
                if let Err(e) = driver.terminate(&c.cloud_id).await {
                    warn!(pool = %pool, "terminate {}: {e}", c.cloud_id);
                }
            }
        }
    }

    /// Starts each pool's periodic sweep (a no-op for drivers that cannot list).
    pub(in crate::master) fn start_sweeps(&self) {
        for (name, p) in &self.pools {
            let (driver, tx, pool) = (p.driver.clone(), self.tx.clone(), name.clone());
            let every = Duration::from_secs(p.config.sweep_interval.max(1));
            self.tasks.spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = tx.closed() => return,
                    }
                    match driver.owned().await {
                        Ok(Some(owned)) => {
                            let msg = Msg::Latent(LatentMsg::Swept {
                                pool: pool.clone(),
                                owned,
                            });
                            if tx.send(msg).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => return,
                        Err(e) => warn!(pool = %pool, "sweep: cannot list instances: {e}"),
                    }
                }
            });
        }
    }

    /// Terminates what the cloud has under this master's tag that no live instance
    /// accounts for (by cloud id, or by name while its launch answer is on its way): a
    /// duplicate from a launch that failed ambiguously, or one that outlived its stop.
    pub(super) fn sweep(&mut self, pool: &str, owned: Vec<OwnedInstance>) {
        let Some(p) = self.pools.get(pool) else {
            return;
        };
        let accounted = |o: &OwnedInstance| {
            p.instances.values().any(|i| {
                i.phase.is_live()
                    && (i.cloud_id.as_deref() == Some(o.cloud_id.as_str())
                        || (i.cloud_id.is_none() && o.name.as_deref() == Some(i.name.as_str())))
            })
        };
        for o in owned.into_iter().filter(|o| !accounted(o)) {
            warn!(pool, cloud_id = %o.cloud_id, name = o.name.as_deref().unwrap_or("?"), "sweep: terminating an instance no live instance accounts for");
            let (driver, pool) = (p.driver.clone(), pool.to_owned());
            self.tasks.spawn(async move {
                if let Err(e) = driver.terminate(&o.cloud_id).await {
                    warn!(pool = %pool, "sweep: terminate {}: {e}", o.cloud_id);
                }
            });
        }
    }

    fn record_stopped(&self, row: &InstanceRow, why: &str) {
        let mut i = Instance::new(row.id, &row.pool, &row.name, now());
        i.cloud_id = row.cloud_id.clone();
        i.phase = Phase::Stopping;
        let _ = i.advance(Phase::Stopped, now());
        let _ = self.store.record_phase(&i, Some(why));
        info!(pool = %row.pool, instance = %row.name, "{why}");
    }

    /// Takes an instance from before the restart back: booting again from the
    /// master's view, so it goes through connecting and attaching with every timeout.
    fn adopt(&mut self, pool: &str, row: &InstanceRow, cloud_id: &str, password: &str) {
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        let mut i = Instance::new(row.id, pool, &row.name, now());
        i.cloud_id = Some(cloud_id.to_owned());
        i.phase = Phase::Booting;
        if let Err(e) = self
            .store
            .record_phase(&i, Some("adopted after a master restart"))
        {
            warn!(pool, instance = %row.name, "cannot record the adoption: {e}");
        }
        info!(pool, instance = %row.name, cloud_id, "adopted an instance from before the restart");
        p.instances.insert(row.id, i);
        p.passwords.insert(row.id, password.to_owned());
        let (phase_tx, phase_rx) = watch::channel(Phase::Booting);
        p.phases.insert(row.id, phase_tx);
        self.workers
            .insert(row.name.clone(), WorkerSlot::new(p.config.max_builds));
        let watcher = Watcher {
            driver: p.driver.clone(),
            tx: self.tx.clone(),
            pool: pool.to_owned(),
            id: row.id,
            launch_timeout: Duration::from_secs(p.config.launch_timeout),
            poll: Duration::from_secs(p.config.poll_interval.max(1)),
        };
        let limit = p.config.boot_timeout;
        self.tasks
            .spawn(watcher.run(Start::Adopt(cloud_id.to_owned()), phase_rx));
        self.deadline(pool, row.id, limit);
    }
}
