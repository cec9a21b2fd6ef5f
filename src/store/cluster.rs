//! Several masters on one database: each master's row and lease, and taking over the
//! work of one whose lease ran out.
//!
//! A master joins under its configured name with a fresh incarnation (a random id of
//! this process) and renews its lease every few seconds. Renewing checks the
//! incarnation, so a master that was taken over (or replaced by a second process of
//! the same name) learns it at its next renewal and stops. A master whose lease is
//! over is taken over by whichever live master locks its row first (`FOR UPDATE SKIP
//! LOCKED` on PostgreSQL): in one transaction its running builds end `retry` (their
//! requests are queued again for everyone), its workers are marked disconnected, and
//! its live latent instances pass to the taker, which ends them.

use super::latent::InstanceRow;
use super::sql::{args, write, Backend, Db};
#[cfg(test)]
use super::Claim;
use super::{now, Store, StoreResult};
use crate::model::{BuildResult, WorkerState};
use serde::Serialize;

/// The masters' table and who runs what: each running build, attached worker and
/// live instance names its master.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS masters (
    name TEXT PRIMARY KEY,
    -- Tags this master's cloud instances (see Store::master_id).
    master_id TEXT NOT NULL,
    incarnation TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at REAL NOT NULL,
    lease_until REAL NOT NULL,
    pb_listen TEXT NOT NULL,
    http_listen TEXT NOT NULL,
    -- The machine and data folder it runs from (see Store::join_cluster).
    home TEXT NOT NULL,
    taken_over_by TEXT,
    taken_over_at REAL
);
";

/// Migration 2: the masters' table, and columns naming the master of a request, a
/// build, a worker's connection and an instance (`NULL` for a master alone on
/// SQLite, and in rows from before).
pub(super) fn migrate(db: &Db) -> StoreResult<()> {
    db.execute_batch(&super::schema::ddl(SCHEMA, db.backend()))?;
    for table in ["requests", "builds", "workers"] {
        super::schema::add_column(db, table, "master", "TEXT")?;
    }
    super::schema::add_column(db, "latent_instances", "owner", "TEXT")?;
    db.execute_batch(
        "CREATE INDEX IF NOT EXISTS builds_running_master ON builds(master) WHERE finished_at IS NULL",
    )
}

/// The notification channel of an installation.
pub const CHANNEL: &str = "pbmaster";

/// A master of the installation as recorded.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MasterRow {
    pub name: String,
    /// `alive` (renewing its lease), `stopped` (left cleanly) or `gone` (taken over).
    pub state: String,
    pub started_at: f64,
    pub lease_until: f64,
    pub pb_listen: String,
    pub http_listen: String,
    pub taken_over_by: Option<String>,
}

/// What joining found.
#[derive(Debug, Clone, PartialEq)]
pub enum Join {
    /// Joined; the master's id for tagging cloud instances.
    Joined { master_id: String },
    /// Another process holds this name's lease for `left` seconds more.
    Held { left: f64 },
}

/// The database's clock in seconds since the epoch: leases are written and compared
/// on one clock, whatever the masters' clocks say.
fn clock(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
        Backend::Sqlite => "((julianday('now') - 2440587.5) * 86400.0)",
    }
}

/// What a takeover did.
#[derive(Debug, Clone, Default)]
pub struct TakenOver {
    /// Builds ended `retry`.
    pub builds: usize,
    /// Workers marked disconnected.
    pub workers: usize,
    /// Live instances now owned by the taker (to be ended by it).
    pub instances: Vec<InstanceRow>,
}

/// Where a worker is attached, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerHome {
    pub master: String,
    /// Whether that master's lease still runs.
    pub alive: bool,
}

impl Store {
    /// Joins as `name` for `lease` seconds, unless a live process holds the name.
    /// A previous incarnation whose lease ran out is this master restarted: its
    /// builds are closed by [`Store::recover`], which the caller runs next. So is
    /// one whose lease still runs but that ran from this machine and data folder:
    /// the caller holds the folder's lock, so that process is gone (a master
    /// restarted after a crash need not wait out its old lease).
    pub fn join_cluster(
        &self,
        name: &str,
        incarnation: &str,
        lease: f64,
        pb_listen: &str,
        http_listen: &str,
    ) -> StoreResult<Join> {
        let db = self.db();
        let tx = write(&db)?;
        let t = now();
        let clock = clock(tx.backend());
        let home = self.home();
        let held: Option<(String, f64, Option<String>, String)> = tx.query_opt(
            &format!(
                "SELECT state, lease_until - {clock}, master_id, home FROM masters WHERE name = ?1"
            ),
            args![name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        if let Some((state, left, _, there)) = &held {
            if state == "alive" && *left > 0.0 && *there != home {
                return Ok(Join::Held { left: *left });
            }
        }
        let master_id = match held.and_then(|(_, _, id, _)| id) {
            Some(id) => id,
            None => super::latent::new_id()?,
        };
        tx.execute(
            &format!(
                "INSERT INTO masters (name, master_id, incarnation, state, started_at, lease_until, pb_listen, http_listen, home)
                 VALUES (?1, ?2, ?3, 'alive', ?4, {clock} + ?5, ?6, ?7, ?8)
                 ON CONFLICT(name) DO UPDATE SET incarnation = ?3, state = 'alive', started_at = ?4,
                 lease_until = {clock} + ?5, pb_listen = ?6, http_listen = ?7, home = ?8,
                 taken_over_by = NULL, taken_over_at = NULL"
            ),
            args![name, master_id, incarnation, t, lease, pb_listen, http_listen, home],
        )?;
        tx.commit()?;
        Ok(Join::Joined { master_id })
    }

    /// Extends this incarnation's lease to `lease` seconds from now; false if the row
    /// is no longer this incarnation's (taken over, or the name started elsewhere).
    pub fn renew_lease(&self, name: &str, incarnation: &str, lease: f64) -> StoreResult<bool> {
        let db = self.db();
        let clock = clock(db.backend());
        let n = db.execute(
            &format!(
                "UPDATE masters SET lease_until = {clock} + ?3
                 WHERE name = ?1 AND incarnation = ?2 AND state = 'alive'"
            ),
            args![name, incarnation, lease],
        )?;
        Ok(n == 1)
    }

    /// Tells every master listening (see `crate::cluster::listen`); sent when the
    /// transaction commits. Nothing to do on SQLite, which has one master.
    pub fn notify(&self, notice: &str) -> StoreResult<()> {
        let db = self.db();
        if db.backend() == Backend::Postgres {
            db.execute(&format!("SELECT pg_notify('{CHANNEL}', ?1)"), args![notice])?;
        }
        Ok(())
    }

    /// Leaves cleanly (the master stopped with nothing running). The requests it
    /// queued that still wait become everyone's: any master's pools may start
    /// instances for them.
    pub fn leave_cluster(&self, name: &str, incarnation: &str) -> StoreResult<()> {
        let db = self.db();
        let tx = write(&db)?;
        let left = tx.execute(
            "UPDATE masters SET state = 'stopped', lease_until = ?3 WHERE name = ?1 AND incarnation = ?2",
            args![name, incarnation, now()],
        )?;
        if left == 1 {
            tx.execute(
                "UPDATE requests SET master = NULL WHERE master = ?1 AND complete = 0",
                args![name],
            )?;
        }
        tx.commit()
    }

    /// Masters whose lease ran out and that nobody has taken over yet.
    pub fn expired_masters(&self) -> StoreResult<Vec<String>> {
        let db = self.db();
        let clock = clock(db.backend());
        db.query_map(
            &format!(
                "SELECT name FROM masters WHERE state = 'alive' AND lease_until < {clock} ORDER BY name"
            ),
            args![],
            |r| r.get(0),
        )
    }

    /// Takes over `dead` as `taker`, in one transaction; `None` if another master
    /// has it (or it renewed meanwhile).
    pub fn take_over(&self, dead: &str, taker: &str) -> StoreResult<Option<TakenOver>> {
        let db = self.db();
        let tx = write(&db)?;
        let t = now();
        // Two masters may see the same expired lease: the row lock decides, and the
        // one that waits for it skips (SQLite writers are one at a time already).
        let lock = match tx.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let clock = clock(tx.backend());
        let locked = tx.exists(
            &format!(
                "SELECT name FROM masters WHERE name = ?1 AND state = 'alive' AND lease_until < {clock}{lock}"
            ),
            args![dead],
        )?;
        if !locked {
            return Ok(None);
        }
        tx.execute(
            "UPDATE masters SET state = 'gone', taken_over_by = ?2, taken_over_at = ?3 WHERE name = ?1",
            args![dead, taker, t],
        )?;
        let why = format!("master {dead} stopped answering; its build runs again");
        tx.execute(
            "UPDATE steps SET finished_at = ?2, result = ?3, reason = ?4
             WHERE finished_at IS NULL
             AND build_id IN (SELECT id FROM builds WHERE finished_at IS NULL AND master = ?1)",
            args![dead, t, BuildResult::Retry, why],
        )?;
        let builds = tx.execute(
            "UPDATE builds SET finished_at = ?2, result = ?3, reason = ?4
             WHERE finished_at IS NULL AND master = ?1",
            args![dead, t, BuildResult::Retry, why],
        )?;
        let workers = tx.execute(
            "UPDATE workers SET state = ?2, disconnected_at = ?3 WHERE master = ?1 AND state != ?2",
            args![dead, WorkerState::Disconnected, t],
        )?;
        // Its latent pools' demand becomes the taker's.
        tx.execute(
            "UPDATE requests SET master = ?2 WHERE master = ?1 AND complete = 0",
            args![dead, taker],
        )?;
        let moved: Vec<i64> = tx.query_map(
            "SELECT id FROM latent_instances WHERE owner = ?1 AND phase NOT IN ('stopped', 'failed')",
            args![dead],
            |r| r.get(0),
        )?;
        tx.execute(
            "UPDATE latent_instances SET owner = ?2 WHERE owner = ?1 AND phase NOT IN ('stopped', 'failed')",
            args![dead, taker],
        )?;
        tx.commit()?;
        drop(db);
        let instances = self
            .live_instances()?
            .into_iter()
            .filter(|i| moved.contains(&i.id))
            .collect();
        Ok(Some(TakenOver {
            builds,
            workers,
            instances,
        }))
    }

    /// Every master that ever joined, by name.
    pub fn masters(&self) -> StoreResult<Vec<MasterRow>> {
        self.db().query_map(
            "SELECT name, state, started_at, lease_until, pb_listen, http_listen, taken_over_by
             FROM masters ORDER BY name",
            args![],
            |r| {
                Ok(MasterRow {
                    name: r.get(0)?,
                    state: r.get(1)?,
                    started_at: r.get(2)?,
                    lease_until: r.get(3)?,
                    pb_listen: r.get(4)?,
                    http_listen: r.get(5)?,
                    taken_over_by: r.get(6)?,
                })
            },
        )
    }

    /// The master a running build runs on; `None` if it is not running.
    pub fn build_master(&self, build_id: i64) -> StoreResult<Option<String>> {
        Ok(self
            .db()
            .query_opt(
                "SELECT master FROM builds WHERE id = ?1 AND finished_at IS NULL",
                args![build_id],
                |r| r.get::<Option<String>>(0),
            )?
            .flatten())
    }

    /// Where `worker` is attached or attaching, if anywhere.
    pub fn worker_home(&self, worker: &str) -> StoreResult<Option<WorkerHome>> {
        let db = self.db();
        let clock = clock(db.backend());
        db.query_opt(
            &format!(
                "SELECT w.master, m.state = 'alive' AND m.lease_until >= {clock}
                 FROM workers w JOIN masters m ON m.name = w.master
                 WHERE w.name = ?1 AND w.state != ?2"
            ),
            args![worker, WorkerState::Disconnected],
            |r| {
                Ok(WorkerHome {
                    master: r.get(0)?,
                    alive: r.get(1)?,
                })
            },
        )
    }
}

/// A connection that hears the other masters' notices (see `crate::cluster::listen`).
pub struct Listener {
    db: super::sql::Db,
}

impl Listener {
    /// The notices that arrived, waiting up to `timeout` for the first.
    pub fn wait(&mut self, timeout: std::time::Duration) -> StoreResult<Vec<String>> {
        self.db.notifications(timeout)
    }
}

impl Store {
    /// Whether other masters may share this database (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        self.db().backend() == Backend::Postgres
    }

    /// A new connection to the same database, for a thread of its own.
    fn connect(&self) -> StoreResult<super::sql::Db> {
        let own = self.own_connection()?;
        let db = std::sync::Arc::try_unwrap(own.db)
            .map_err(|_| super::sql::internal("a new connection is shared already"))?;
        Ok(db.into_inner().unwrap_or_else(|p| p.into_inner()))
    }

    /// A connection of its own listening for the installation's notices.
    pub fn listener(&self) -> StoreResult<Listener> {
        let db = self.connect()?;
        db.execute_batch(&format!("LISTEN {CHANNEL}"))?;
        Ok(Listener { db })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two masters' handles on one database file.
    fn two(dir: &std::path::Path) -> (Store, Store) {
        let mut a = Store::open(dir).expect("store");
        let mut b = Store::open(dir).expect("store");
        a.set_member("a");
        b.set_member("b");
        (a, b)
    }

    fn temp() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("pbmaster-cluster-{}-{}", std::process::id(), now()))
    }

    #[test]
    fn a_restart_from_the_same_folder_replaces_the_old_incarnation() {
        let dir = temp();
        let (a, _) = two(&dir);
        let Join::Joined { master_id } = a.join_cluster("a", "1", 30.0, "pb", "http").unwrap()
        else {
            panic!("joins")
        };
        assert!(a.renew_lease("a", "1", 30.0).unwrap());
        // Killed and started again from the same folder (whose lock it holds): its
        // old lease still runs, but no process can hold it any more.
        assert_eq!(
            a.join_cluster("a", "2", 30.0, "pb", "http").unwrap(),
            Join::Joined { master_id }
        );
        assert!(!a.renew_lease("a", "1", 30.0).unwrap(), "replaced");
        assert!(a.renew_lease("a", "2", 30.0).unwrap());
        // Leaving, it hands the requests it queued to every master.
        let r = a
            .add_request("b1", "force", &serde_json::json!({}))
            .unwrap();
        assert_eq!(a.request(r).unwrap().unwrap().master.as_deref(), Some("a"));
        a.leave_cluster("a", "2").unwrap();
        assert_eq!(a.request(r).unwrap().unwrap().master, None);
        assert_eq!(a.masters().unwrap()[0].state, "stopped");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_master_whose_lease_ran_out_is_taken_over_once() {
        let dir = temp();
        let (a, b) = two(&dir);
        a.join_cluster("a", "1", -1.0, "pb-a", "http-a").unwrap();
        b.join_cluster("b", "1", 30.0, "pb-b", "http-b").unwrap();
        let r = a
            .add_request("b1", "force", &serde_json::json!({}))
            .unwrap();
        let other = b
            .add_request("b1", "force", &serde_json::json!({}))
            .unwrap();
        let build = a.start_build(r, "b1", "w1").unwrap().started();
        b.start_build(other, "b1", "w2").unwrap().started();
        a.worker_connected("w1", "peer", None, &serde_json::json!({}))
            .unwrap();
        let instance = a.add_instance("pool", "pool-1", "token", "pw").unwrap();
        assert_eq!(b.build_master(build.id).unwrap().as_deref(), Some("a"));
        let home = b.worker_home("w1").unwrap().expect("attached");
        assert_eq!((home.master.as_str(), home.alive), ("a", false));
        assert_eq!(b.expired_masters().unwrap(), vec!["a".to_owned()]);

        let taken = b.take_over("a", "b").unwrap().expect("taken over");
        assert_eq!((taken.builds, taken.workers), (1, 1));
        let ids: Vec<i64> = taken.instances.iter().map(|i| i.id).collect();
        assert_eq!(ids, vec![instance]);
        assert_eq!(taken.instances[0].owner.as_deref(), Some("b"));
        let queued: Vec<i64> = b.queued_requests().unwrap().iter().map(|q| q.id).collect();
        assert_eq!(
            queued,
            vec![r],
            "its request runs again; b's own build is untouched"
        );
        assert!(b.take_over("a", "b").unwrap().is_none(), "once");
        assert!(b.expired_masters().unwrap().is_empty());
        assert!(
            !a.renew_lease("a", "1", 30.0).unwrap(),
            "a learns it was taken over"
        );
        let masters = b.masters().unwrap();
        assert_eq!(masters[0].state, "gone");
        assert_eq!(masters[0].taken_over_by.as_deref(), Some("b"));
        // b's live instances are its own and the one it took.
        assert_eq!(b.live_instances().unwrap().len(), 1);
        assert!(a.live_instances().unwrap().is_empty());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_build_ended_by_a_takeover_is_not_recorded_again_by_its_master() {
        let dir = temp();
        let (a, b) = two(&dir);
        a.join_cluster("a", "1", -1.0, "pb", "http").unwrap();
        let r = a
            .add_request("b1", "force", &serde_json::json!({}))
            .unwrap();
        let build = a.start_build(r, "b1", "w1").unwrap().started();
        b.take_over("a", "b").unwrap().expect("taken over");
        // a wakes and reports the end of its build: too late.
        a.finish_build(build.id, &[], BuildResult::Success, None)
            .unwrap();
        let row = b.build(build.id).unwrap().expect("build");
        assert_eq!(row.result, Some(BuildResult::Retry));
        assert!(!b.request(r).unwrap().expect("request").complete);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_request_started_elsewhere_is_not_started_again() {
        let dir = temp();
        let (a, b) = two(&dir);
        let r = a
            .add_request("b1", "force", &serde_json::json!({}))
            .unwrap();
        let build = b.start_build(r, "b1", "w2").unwrap().started();
        assert!(matches!(a.start_build(r, "b1", "w1").unwrap(), Claim::Gone));
        b.finish_build(build.id, &[], BuildResult::Success, None)
            .unwrap();
        assert!(matches!(a.start_build(r, "b1", "w1").unwrap(), Claim::Gone));
        std::fs::remove_dir_all(dir).ok();
    }
}
