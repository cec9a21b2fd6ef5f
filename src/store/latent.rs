//! Latent instances and every transition they made, recorded before the master acts,
//! so that after a crash it knows which instances it may have launched.

use super::sql::{args, write, Db};
use super::{now, Store, StoreError, StoreResult};
use crate::model::accounting::{account, Accounting};
use crate::model::{Instance, Phase};
use serde::Serialize;
use tracing::warn;

/// A fresh master id: 16 hex digits.
pub(super) fn new_id() -> StoreResult<String> {
    let mut raw = [0u8; 8];
    getrandom::fill(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

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
-- An instance's builds, for its accounting.
CREATE INDEX IF NOT EXISTS builds_worker ON builds(worker);
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
    /// The launch's idempotency token (also in a local instance's environment).
    #[serde(skip)]
    pub client_token: String,
    /// Builds it started.
    pub uses: u32,
    /// Where the cloud put it (`subnet/type`), when the pool offers choices.
    pub placement: Option<String>,
    /// The market it runs on (`spot`, `on-demand`), for clouds that have markets.
    pub market: Option<String>,
    /// The master that runs it, in an installation of several.
    pub owner: Option<String>,
    /// Why it was stopped (the detail of its move to `stopping`): idle, drained, an
    /// interruption notice...
    pub stop_reason: Option<String>,
    /// `[[phase, at, detail], ...]`, oldest first.
    pub transitions: Vec<(Phase, f64, Option<String>)>,
    /// Its times, builds and cost.
    pub accounting: Accounting,
}

/// An instance has ended: its cost is known, and each of its builds' records gets
/// its share (idle time included, see [`crate::model::accounting::shares`]). Nothing
/// without a price.
fn charge_builds(tx: &Db, id: i64, name: &str) -> StoreResult<()> {
    let price: Option<f64> = tx.query_row(
        "SELECT price_per_hour FROM latent_instances WHERE id = ?1",
        args![id],
        |r| r.get(0),
    )?;
    if price.is_none() {
        return Ok(());
    }
    let transitions: Vec<(Phase, f64, Option<String>)> = tx.query_map(
        "SELECT phase, at, detail FROM latent_transitions WHERE instance_id = ?1 ORDER BY seq",
        args![id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let builds: Vec<_> = tx.query_map(
        "SELECT id, builder, number, started_at, finished_at FROM builds WHERE worker = ?1 ORDER BY id",
        args![name],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    let accounting = account(&transitions, &builds, price, now());
    for b in &accounting.builds {
        tx.execute(
            "UPDATE builds SET cost = ?2 WHERE id = ?1",
            args![b.id, b.share],
        )?;
    }
    Ok(())
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
        let db = self.db();
        let tx = write(&db)?;
        let t = now();
        let id = tx.insert(
            "INSERT INTO latent_instances (pool, name, phase, since, client_token, password, owner)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            args![
                pool,
                name,
                Phase::Requested,
                t,
                client_token,
                password,
                self.member()
            ],
        )?;
        tx.execute(
            "INSERT INTO latent_transitions (instance_id, phase, at) VALUES (?1, ?2, ?3)",
            args![id, Phase::Requested, t],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Records a transition (and the failure, for `failed`). An instance that has
    /// ended loses its one-time password: nothing may log in with it again.
    pub fn record_phase(&self, instance: &Instance, detail: Option<&str>) -> StoreResult<()> {
        let db = self.db();
        let tx = write(&db)?;
        let (fphase, freason) = match &instance.failure {
            Some((p, why)) => (Some(*p), Some(why.as_str())),
            None => (None, None),
        };
        let n = tx.execute(
            "UPDATE latent_instances SET phase = ?2, since = ?3, cloud_id = ?4, failure_phase = ?5, failure_reason = ?6,
             password = CASE WHEN ?7 THEN password END, uses = ?8,
             placement = COALESCE(?9, placement), price_per_hour = COALESCE(?10, price_per_hour),
             market = COALESCE(?11, market)
             WHERE id = ?1",
            args![instance.id, instance.phase, instance.since, instance.cloud_id, fphase, freason, instance.phase.is_live(),
                instance.uses, instance.placement, instance.price_per_hour, instance.market],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "latent instance {}",
                instance.id
            )));
        }
        tx.execute(
            "INSERT INTO latent_transitions (instance_id, phase, at, detail) VALUES (?1, ?2, ?3, ?4)",
            args![instance.id, instance.phase, instance.since, detail.or(freason)],
        )?;
        if matches!(instance.phase, Phase::Stopped | Phase::Failed) {
            charge_builds(&tx, instance.id, &instance.name)?;
        }
        tx.commit()
    }

    /// A new one-time password for a stopped instance started again.
    pub fn set_instance_password(&self, id: i64, password: &str) -> StoreResult<()> {
        let db = self.db();
        let tx = write(&db)?;
        tx.execute(
            "UPDATE latent_instances SET password = ?2 WHERE id = ?1",
            args![id, password],
        )?;
        tx.commit()
    }

    /// Instances not stopped or failed: after a restart, the ones to reconcile.
    pub fn live_instances(&self) -> StoreResult<Vec<InstanceRow>> {
        match self.member() {
            // In an installation, this master's alone: the others' are theirs.
            Some(me) => {
                let mine = format!("owner = '{}' AND ", me.replace('\'', "''"));
                self.instances_where(
                    &format!("{mine}phase NOT IN ('stopped', 'failed')"),
                    100_000,
                )
            }
            None => self.instances_where("phase NOT IN ('stopped', 'failed')", 100_000),
        }
    }

    /// The newest instances, with their transitions.
    pub fn instances(&self, limit: i64) -> StoreResult<Vec<InstanceRow>> {
        self.instances_where("1 = 1", limit.clamp(1, 10_000))
    }

    fn instances_where(&self, condition: &str, limit: i64) -> StoreResult<Vec<InstanceRow>> {
        let db = self.db();
        let mut rows: Vec<InstanceRow> = db.query_map(
            &format!(
                "SELECT id, pool, name, phase, since, cloud_id, failure_phase, failure_reason, password,
                 client_token, uses, placement, price_per_hour, market, owner
                 FROM latent_instances
                 WHERE {condition} ORDER BY id DESC LIMIT ?1"
            ),
            args![limit],
            |r| {
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
                    client_token: r.get(9)?,
                    uses: r.get(10)?,
                    placement: r.get(11)?,
                    market: r.get(13)?,
                    owner: r.get(14)?,
                    stop_reason: None,
                    transitions: Vec::new(),
                    accounting: Accounting {
                        price_per_hour: r.get(12)?,
                        ..Accounting::default()
                    },
                })
            },
        )?;
        let at = now();
        for row in &mut rows {
            row.transitions = db.query_map(
                "SELECT phase, at, detail FROM latent_transitions WHERE instance_id = ?1 ORDER BY seq",
                args![row.id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let builds: Vec<_> = db.query_map(
                "SELECT id, builder, number, started_at, finished_at FROM builds WHERE worker = ?1 ORDER BY id",
                args![row.name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?;
            row.stop_reason = row
                .transitions
                .iter()
                .find(|(p, _, _)| *p == Phase::Stopping)
                .and_then(|(_, _, d)| d.clone());
            row.accounting = account(&row.transitions, &builds, row.accounting.price_per_hour, at);
        }
        Ok(rows)
    }

    /// This master's identity: cloud instances are tagged with it, and a master
    /// touches no instance tagged with another id. It is made with the database and
    /// bound to where the database lives (this machine, this folder): a copy of the
    /// database started elsewhere must not act as the same master, or each one's
    /// reconciling and sweeps would end the other's instances. So a database found
    /// away from its home takes a new id, and the instances it recorded as live are
    /// left to the master they belong to (recorded as failed, untouched).
    pub fn master_id(&self) -> StoreResult<String> {
        let home = self.home();
        let id = self.meta("master_id")?;
        let recorded = self.meta("master_home")?;
        match (id, recorded) {
            (Some(id), Some(h)) if h == home => Ok(id),
            // Made before identities had a home: this is it.
            (Some(id), None) => {
                self.set_meta("master_home", &home)?;
                Ok(id)
            }
            (old, recorded) => {
                let id = new_id()?;
                if let (Some(old), Some(there)) = (old, recorded) {
                    let left = self.leave_instances(&format!(
                        "left to master {old} at {there}: this database was copied or moved to {home}"
                    ))?;
                    warn!(
                        "this database belongs to master {old} at {there}, not here ({home}): \
                         a copy or a move; this master takes the id {id} and leaves the \
                         {left} instance(s) recorded as live to the other (end them there, or \
                         by hand if it is gone)"
                    );
                }
                self.set_meta("master_id", &id)?;
                self.set_meta("master_home", &home)?;
                Ok(id)
            }
        }
    }

    /// Holds the data folder for this process: a second master on the same folder
    /// would share its identity and end its instances. Released when the process ends.
    pub fn lock_folder(&self) -> StoreResult<()> {
        static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
        let Some(dir) = self.path.parent() else {
            return Ok(());
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("pbmaster.lock"))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| {
                std::io::Error::other(format!(
                    "{}: another master uses this data folder ({e})",
                    dir.display()
                ))
            },
        )?;
        HELD.lock().unwrap_or_else(|p| p.into_inner()).push(file);
        Ok(())
    }

    /// This machine and the database's folder.
    pub(super) fn home(&self) -> String {
        let machine = ["/etc/machine-id", "/proc/sys/kernel/hostname"]
            .iter()
            .find_map(|f| {
                let text = std::fs::read_to_string(f).ok()?;
                let text = text.trim();
                (!text.is_empty()).then(|| text.to_owned())
            })
            .unwrap_or_default();
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        format!("{machine}:{}", dir.display())
    }

    fn meta(&self, key: &str) -> StoreResult<Option<String>> {
        self.db().query_opt(
            "SELECT value FROM master_meta WHERE key = ?1",
            args![key],
            |r| r.get(0),
        )
    }

    fn set_meta(&self, key: &str, value: &str) -> StoreResult<()> {
        self.db().execute(
            "INSERT INTO master_meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            args![key, value],
        )?;
        Ok(())
    }

    /// Records every live instance as failed with `why`, without touching it; how many.
    fn leave_instances(&self, why: &str) -> StoreResult<usize> {
        let db = self.db();
        let tx = write(&db)?;
        let t = now();
        tx.execute(
            "INSERT INTO latent_transitions (instance_id, phase, at, detail)
             SELECT id, 'failed', ?1, ?2 FROM latent_instances WHERE phase NOT IN ('stopped', 'failed')",
            args![t, why],
        )?;
        let n = tx.execute(
            "UPDATE latent_instances SET failure_phase = phase, failure_reason = ?2, phase = 'failed',
             since = ?1, password = NULL WHERE phase NOT IN ('stopped', 'failed')",
            args![t, why],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// The pool of the instance named `name`, if this database ever recorded one.
    pub fn instance_pool(&self, name: &str) -> StoreResult<Option<String>> {
        self.db().query_opt(
            "SELECT pool FROM latent_instances WHERE name = ?1",
            args![name],
            |r| r.get(0),
        )
    }

    /// The next serial number for a pool's instance names.
    pub fn instance_count(&self) -> StoreResult<i64> {
        self.db().query_row(
            "SELECT COALESCE(MAX(id), 0) FROM latent_instances",
            args![],
            |r| r.get(0),
        )
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

    #[test]
    fn a_copied_database_takes_a_new_identity_and_leaves_the_instances_alone() {
        let base = std::env::temp_dir().join(format!(
            "pbmaster-identity-{}-{}",
            std::process::id(),
            now()
        ));
        let (home, copy) = (base.join("home"), base.join("copy"));
        let store = Store::open(&home).unwrap();
        let id = store.master_id().unwrap();
        assert_eq!(store.master_id().unwrap(), id, "stable at home");
        let row = store.add_instance("p", "p-1", "tok", "pw").unwrap();
        let mut i = Instance::new(row, "p", "p-1", now());
        i.advance(Phase::Launching, now()).unwrap();
        store.record_phase(&i, None).unwrap();
        drop(store);
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::copy(home.join("pbmaster.sqlite"), copy.join("pbmaster.sqlite")).unwrap();

        let copied = Store::open(&copy).unwrap();
        let other = copied.master_id().unwrap();
        assert_ne!(other, id, "a copy is another master");
        assert_eq!(copied.master_id().unwrap(), other, "and stays so");
        assert!(copied.live_instances().unwrap().is_empty(), "left alone");
        let left = &copied.instances(10).unwrap()[0];
        assert_eq!(left.phase, Phase::Failed);
        assert!(
            left.failure_reason
                .as_deref()
                .is_some_and(|r| r.contains(&id)),
            "{left:?}"
        );

        let original = Store::open(&home).unwrap();
        assert_eq!(
            original.master_id().unwrap(),
            id,
            "the original is unchanged"
        );
        assert_eq!(original.live_instances().unwrap().len(), 1);
        std::fs::remove_dir_all(base).ok();
    }

    #[test]
    fn a_second_master_on_the_same_folder_is_refused() {
        let dir =
            std::env::temp_dir().join(format!("pbmaster-lock-{}-{}", std::process::id(), now()));
        let first = Store::open(&dir).unwrap();
        first.lock_folder().unwrap();
        let second = Store::open(&dir).unwrap();
        let e = second.lock_folder().unwrap_err().to_string();
        assert!(e.contains("another master"), "{e}");
        std::fs::remove_dir_all(dir).ok();
    }
}
