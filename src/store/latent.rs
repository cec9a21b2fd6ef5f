//! Latent instances and every transition they made, recorded before the master acts,
//! so that after a crash it knows which instances it may have launched.

use super::{now, write, Store, StoreError, StoreResult};
use crate::model::{Instance, Phase};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS latent_instances (
    id INTEGER PRIMARY KEY,
    pool TEXT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    phase TEXT NOT NULL,
    since REAL NOT NULL,
    cloud_id TEXT,
    client_token TEXT NOT NULL,
    failure_phase TEXT,
    failure_reason TEXT,
    -- The one-time password, kept so a restarted master can adopt the instance.
    password TEXT
);
CREATE TABLE IF NOT EXISTS latent_transitions (
    seq INTEGER PRIMARY KEY,
    instance_id INTEGER NOT NULL REFERENCES latent_instances(id),
    phase TEXT NOT NULL,
    at REAL NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS latent_transitions_instance ON latent_transitions(instance_id, seq);
CREATE TABLE IF NOT EXISTS master_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// An instance as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceRow {
    pub id: i64,
    pub pool: String,
    pub name: String,
    pub phase: Phase,
    pub since: f64,
    pub cloud_id: Option<String>,
    pub failure_phase: Option<Phase>,
    pub failure_reason: Option<String>,
    #[serde(skip)]
    pub password: Option<String>,
    /// `[[phase, at, detail], ...]`, oldest first.
    pub transitions: Vec<(Phase, f64, Option<String>)>,
}

impl Store {
    /// Records the intent to start an instance (before any cloud call); returns its id.
    pub fn add_instance(
        &self,
        pool: &str,
        name: &str,
        client_token: &str,
        password: &str,
    ) -> StoreResult<i64> {
        let mut db = self.db();
        let tx = write(&mut db)?;
        let t = now();
        tx.execute(
            "INSERT INTO latent_instances (pool, name, phase, since, client_token, password)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![pool, name, Phase::Requested, t, client_token, password],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO latent_transitions (instance_id, phase, at) VALUES (?1, ?2, ?3)",
            params![id, Phase::Requested, t],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Records a transition (and the failure, for `failed`). An instance that has
    /// ended loses its one-time password: nothing may log in with it again.
    pub fn record_phase(&self, instance: &Instance, detail: Option<&str>) -> StoreResult<()> {
        let mut db = self.db();
        let tx = write(&mut db)?;
        let (fphase, freason) = match &instance.failure {
            Some((p, why)) => (Some(*p), Some(why.as_str())),
            None => (None, None),
        };
        let n = tx.execute(
            "UPDATE latent_instances SET phase = ?2, since = ?3, cloud_id = ?4, failure_phase = ?5, failure_reason = ?6,
             password = CASE WHEN ?7 THEN password END
             WHERE id = ?1",
            params![instance.id, instance.phase, instance.since, instance.cloud_id, fphase, freason, instance.phase.is_live()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "latent instance {}",
                instance.id
            )));
        }
        tx.execute(
            "INSERT INTO latent_transitions (instance_id, phase, at, detail) VALUES (?1, ?2, ?3, ?4)",
            params![instance.id, instance.phase, instance.since, detail.or(freason)],
        )?;
        tx.commit()
    }

    /// Instances not stopped or failed: after a restart, the ones to reconcile.
    pub fn live_instances(&self) -> StoreResult<Vec<InstanceRow>> {
        self.instances_where("phase NOT IN ('stopped', 'failed')", 100_000)
    }

    /// The newest instances, with their transitions.
    pub fn instances(&self, limit: i64) -> StoreResult<Vec<InstanceRow>> {
        self.instances_where("1", limit.clamp(1, 10_000))
    }

    fn instances_where(&self, condition: &str, limit: i64) -> StoreResult<Vec<InstanceRow>> {
        let db = self.db();
        let mut q = db.prepare(&format!(
            "SELECT id, pool, name, phase, since, cloud_id, failure_phase, failure_reason, password
             FROM latent_instances
             WHERE {condition} ORDER BY id DESC LIMIT {limit}"
        ))?;
        let mut rows: Vec<InstanceRow> = q
            .query_map([], |r| {
                Ok(InstanceRow {
                    id: r.get(0)?,
                    pool: r.get(1)?,
                    name: r.get(2)?,
                    phase: r.get(3)?,
                    since: r.get(4)?,
                    cloud_id: r.get(5)?,
                    failure_phase: r.get(6)?,
                    failure_reason: r.get(7)?,
                    password: r.get(8)?,
                    transitions: Vec::new(),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut t = db.prepare(
            "SELECT phase, at, detail FROM latent_transitions WHERE instance_id = ?1 ORDER BY seq",
        )?;
        for row in &mut rows {
            row.transitions = t
                .query_map(params![row.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
        }
        Ok(rows)
    }

    /// This master's identity, made once with its database: cloud instances are tagged
    /// with it, and a master touches no instance tagged with another id.
    pub fn master_id(&self) -> StoreResult<String> {
        let db = self.db();
        let known: Option<String> = db
            .query_row(
                "SELECT value FROM master_meta WHERE key = 'master_id'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = known {
            return Ok(id);
        }
        let mut raw = [0u8; 8];
        getrandom::fill(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        db.execute(
            "INSERT INTO master_meta (key, value) VALUES ('master_id', ?1)",
            params![id],
        )?;
        Ok(id)
    }

    /// The next serial number for a pool's instance names.
    pub fn instance_count(&self) -> StoreResult<i64> {
        Ok(self.db().query_row(
            "SELECT COALESCE(MAX(id), 0) FROM latent_instances",
            [],
            |r| r.get(0),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_instance_keeps_no_password() {
        let dir =
            std::env::temp_dir().join(format!("pbmaster-latent-{}-{}", std::process::id(), now()));
        let store = Store::open(&dir).unwrap();
        let id = store.add_instance("p", "p-1", "tok", "s3cret-pw").unwrap();
        let mut i = Instance::new(id, "p", "p-1", now());
        i.advance(Phase::Launching, now()).unwrap();
        store.record_phase(&i, None).unwrap();
        let live = store.live_instances().unwrap();
        assert_eq!(
            live[0].password.as_deref(),
            Some("s3cret-pw"),
            "kept while live"
        );
        i.advance(Phase::Stopping, now()).unwrap();
        i.advance(Phase::Stopped, now()).unwrap();
        store.record_phase(&i, None).unwrap();
        let all = store.instances(10).unwrap();
        assert_eq!(all[0].password, None, "wiped once stopped");
        std::fs::remove_dir_all(dir).ok();
    }
}
