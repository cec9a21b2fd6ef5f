//! Build requests, builds and steps.

use super::sql::{args, write, Backend, Db, Row};
use super::{now, Store, StoreError, StoreResult};
use crate::model::BuildResult;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct RequestRow {
    pub id: i64,
    pub builder: String,
    pub reason: String,
    pub properties: serde_json::Value,
    pub submitted_at: f64,
    /// `None` while queued or building.
    pub result: Option<BuildResult>,
    pub complete: bool,
    /// The master that queued it, in an installation of several: its latent pools
    /// start instances for it (one master's, not every master's).
    pub master: Option<String>,
}

/// What came of starting a build of a queued request.
#[derive(Debug, Clone)]
pub enum Claim {
    Started(BuildRow),
    /// The request is complete or being built (by another master).
    Gone,
    /// Another master holds it or the builder's numbering for a moment.
    Busy,
}

impl Claim {
    /// The build started, for tests that start one where nothing can compete.
    #[cfg(test)]
    pub fn started(self) -> BuildRow {
        match self {
            Claim::Started(b) => b,
            other => panic!("no build started: {other:?}"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildRow {
    pub id: i64,
    pub request_id: i64,
    pub builder: String,
    pub number: i64,
    pub worker: String,
    pub started_at: f64,
    pub finished_at: Option<f64>,
    pub result: Option<BuildResult>,
    pub reason: Option<String>,
    /// `{name: [value, source]}`.
    pub properties: serde_json::Value,
    /// Its share of its latent instance's cost, idle time included, once the
    /// instance has ended (and if its pool has a price).
    pub cost: Option<f64>,
    /// The master it runs (or ran) on, in an installation of several.
    pub master: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    pub build_id: i64,
    pub number: i64,
    pub name: String,
    pub started_at: f64,
    pub finished_at: Option<f64>,
    pub result: Option<BuildResult>,
    pub rc: Option<i64>,
    pub reason: Option<String>,
    /// When the step's logs were deleted by the retention policy, if they were.
    pub logs_expired_at: Option<f64>,
}

/// One change to a build's record. The runner collects the ones that happen together
/// and commits them in one transaction before it acts on them
/// ([`Store::record_build`]); the last ones go with the build's end
/// ([`Store::finish_build`]).
#[derive(Debug, Clone, PartialEq)]
pub enum BuildWrite {
    /// The build's properties now (`{name: [value, source]}`).
    Properties(serde_json::Value),
    StepStarted {
        number: i64,
        name: String,
        at: f64,
    },
    StepFinished {
        number: i64,
        at: f64,
        result: BuildResult,
        rc: Option<i64>,
        reason: Option<String>,
    },
}

/// A new build of `builder` for a request: the builder's next number.
fn insert_build(
    tx: &Db,
    request_id: i64,
    builder: &str,
    worker: &str,
    t: f64,
    master: Option<&str>,
) -> StoreResult<BuildRow> {
    let number: i64 = tx.query_row(
        "SELECT COALESCE(MAX(number), 0) + 1 FROM builds WHERE builder = ?1",
        args![builder],
        |r| r.get(0),
    )?;
    let id = tx.insert(
        "INSERT INTO builds (request_id, builder, number, worker, started_at, master) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        args![request_id, builder, number, worker, t, master],
    )?;
    Ok(BuildRow {
        id,
        request_id,
        builder: builder.to_owned(),
        number,
        worker: worker.to_owned(),
        started_at: t,
        finished_at: None,
        result: None,
        reason: None,
        properties: serde_json::json!({}),
        cost: None,
        master: master.map(str::to_owned),
    })
}

fn apply(tx: &Db, build_id: i64, writes: &[BuildWrite]) -> StoreResult<()> {
    for write in writes {
        match write {
            BuildWrite::Properties(properties) => {
                tx.execute(
                    "UPDATE builds SET properties = ?2 WHERE id = ?1",
                    args![build_id, properties.to_string()],
                )?;
            }
            BuildWrite::StepStarted { number, name, at } => {
                tx.execute(
                    "INSERT INTO steps (build_id, number, name, started_at) VALUES (?1, ?2, ?3, ?4)",
                    args![build_id, number, name, at],
                )?;
            }
            BuildWrite::StepFinished {
                number,
                at,
                result,
                rc,
                reason,
            } => {
                let n = tx.execute(
                    "UPDATE steps SET finished_at = ?3, result = ?4, rc = ?5, reason = ?6
                     WHERE build_id = ?1 AND number = ?2",
                    args![build_id, number, at, result, rc, reason],
                )?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!(
                        "step {number} of build {build_id}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Ends a build; anything but `retry` completes its request.
fn end_build(
    tx: &Db,
    build_id: i64,
    t: f64,
    result: BuildResult,
    reason: Option<&str>,
) -> StoreResult<()> {
    let n = tx.execute(
        "UPDATE builds SET finished_at = ?2, result = ?3, reason = ?4 WHERE id = ?1",
        args![build_id, t, result, reason],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("build {build_id}")));
    }
    if result != BuildResult::Retry {
        tx.execute(
            "UPDATE requests SET complete = 1, result = ?2 WHERE id = (SELECT request_id FROM builds WHERE id = ?1)",
            args![build_id, result],
        )?;
    }
    Ok(())
}

impl Store {
    pub fn add_request(
        &self,
        builder: &str,
        reason: &str,
        properties: &serde_json::Value,
    ) -> StoreResult<i64> {
        self.db().insert(
            "INSERT INTO requests (builder, reason, properties, submitted_at, master) VALUES (?1, ?2, ?3, ?4, ?5)",
            args![builder, reason, properties.to_string(), now(), self.member()],
        )
    }

    /// Requests not complete and not being built, oldest first.
    pub fn queued_requests(&self) -> StoreResult<Vec<RequestRow>> {
        self.requests_where(
            "complete = 0 AND id NOT IN (SELECT request_id FROM builds WHERE finished_at IS NULL) ORDER BY id",
            args![],
        )
    }

    /// Those of `ids` that are queued (not complete, not being built), oldest first.
    pub fn queued_among(&self, ids: &[i64]) -> StoreResult<Vec<RequestRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        self.requests_where(
            &format!(
                "id IN ({}) AND complete = 0
                 AND id NOT IN (SELECT request_id FROM builds WHERE finished_at IS NULL) ORDER BY id",
                list.join(", ")
            ),
            args![],
        )
    }

    pub fn requests(&self, limit: i64) -> StoreResult<Vec<RequestRow>> {
        self.requests_where(
            "1 = 1 ORDER BY id DESC LIMIT ?1",
            args![limit.clamp(1, 10_000)],
        )
    }

    pub fn request(&self, id: i64) -> StoreResult<Option<RequestRow>> {
        Ok(self.requests_where("id = ?1", args![id])?.pop())
    }

    fn requests_where(
        &self,
        condition: &str,
        args: &[&dyn super::sql::Arg],
    ) -> StoreResult<Vec<RequestRow>> {
        self.db().query_map(
            &format!(
                "SELECT id, builder, reason, properties, submitted_at, result, complete, master FROM requests WHERE {condition}"
            ),
            args,
            |r| {
                Ok(RequestRow {
                    id: r.get(0)?,
                    builder: r.get(1)?,
                    reason: r.get(2)?,
                    properties: r.json(3)?,
                    submitted_at: r.get(4)?,
                    result: r.get(5)?,
                    complete: r.get(6)?,
                    master: r.get(7)?,
                })
            },
        )
    }

    /// Starts a build of a queued request on `worker`, unless the request is no
    /// longer queued (another master started or ended it: [`Claim::Gone`]) or
    /// another master is claiming it or numbering a build of the same builder right
    /// now ([`Claim::Busy`]: try again shortly). On PostgreSQL the request's row
    /// stays locked until the transaction commits, so no two masters start it.
    pub fn start_build(&self, request_id: i64, builder: &str, worker: &str) -> StoreResult<Claim> {
        let db = self.db();
        let tx = write(&db)?;
        let postgres = tx.backend() == Backend::Postgres;
        let lock = if postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let Some(complete) = tx.query_opt(
            &format!("SELECT complete FROM requests WHERE id = ?1{lock}"),
            args![request_id],
            |r| r.get::<bool>(0),
        )?
        else {
            return Ok(Claim::Busy);
        };
        let running = tx.exists(
            "SELECT 1 FROM builds WHERE request_id = ?1 AND finished_at IS NULL",
            args![request_id],
        )?;
        if complete || running {
            return Ok(Claim::Gone);
        }
        // Build numbers are the builder's next: one master at a time numbers a
        // builder's build (waiting could deadlock two wake-ups, so it does not wait).
        if postgres
            && !tx.query_row(
                "SELECT pg_try_advisory_xact_lock(hashtext('pbmaster build number ' || ?1))",
                args![builder],
                |r| r.get::<bool>(0),
            )?
        {
            return Ok(Claim::Busy);
        }
        let build = insert_build(&tx, request_id, builder, worker, now(), self.member())?;
        tx.commit()?;
        Ok(Claim::Started(build))
    }

    /// Commits what happened to a build together, in order, in one transaction.
    pub fn record_build(&self, build_id: i64, writes: &[BuildWrite]) -> StoreResult<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let db = self.db();
        let tx = write(&db)?;
        if self.ended_elsewhere(&tx, build_id)? {
            return Ok(());
        }
        apply(&tx, build_id, writes)?;
        tx.commit()
    }

    /// Whether another master has ended the build (it took this one over while it
    /// could not renew its lease): then nothing more is recorded for it here.
    fn ended_elsewhere(&self, tx: &Db, build_id: i64) -> StoreResult<bool> {
        if self.member().is_none() {
            return Ok(false);
        }
        let ended = tx.exists(
            "SELECT 1 FROM builds WHERE id = ?1 AND finished_at IS NOT NULL",
            args![build_id],
        )?;
        if ended {
            tracing::warn!(
                build = build_id,
                "the build was ended by another master; not recorded"
            );
        }
        Ok(ended)
    }

    /// Ends a build after `writes` (its last step's end, say), in one transaction. A
    /// `retry` leaves its request queued; anything else completes it.
    pub fn finish_build(
        &self,
        build_id: i64,
        writes: &[BuildWrite],
        result: BuildResult,
        reason: Option<&str>,
    ) -> StoreResult<()> {
        let plain = self.log_stays_plain(build_id);
        let db = self.db();
        let tx = write(&db)?;
        if self.ended_elsewhere(&tx, build_id)? {
            return Ok(());
        }
        apply(&tx, build_id, writes)?;
        let t = now();
        end_build(&tx, build_id, t, result, reason)?;
        if plain {
            tx.execute(
                "UPDATE builds SET logs_packed_at = ?2 WHERE id = ?1",
                args![build_id, t],
            )?;
        }
        tx.commit()
    }

    /// A request that ends without running (no worker could be started for it): a
    /// build on `worker` made and ended with `result` at once, in one transaction.
    pub fn fail_request(
        &self,
        request_id: i64,
        builder: &str,
        worker: &str,
        result: BuildResult,
        reason: &str,
    ) -> StoreResult<BuildRow> {
        let db = self.db();
        let tx = write(&db)?;
        let t = now();
        let mut build = insert_build(&tx, request_id, builder, worker, t, self.member())?;
        end_build(&tx, build.id, t, result, Some(reason))?;
        tx.commit()?;
        build.finished_at = Some(t);
        build.result = Some(result);
        build.reason = Some(reason.to_owned());
        Ok(build)
    }

    pub fn builds(&self, builder: Option<&str>, limit: i64) -> StoreResult<Vec<BuildRow>> {
        self.db().query_map(
            &format!(
                "{BUILD_COLUMNS} WHERE (CAST(?1 AS TEXT) IS NULL OR builder = ?1) ORDER BY id DESC LIMIT ?2"
            ),
            args![builder, limit.clamp(1, 10_000)],
            build_row,
        )
    }

    /// A page of builds (of one builder, or all), newest first, from where `at`
    /// says: at most `limit` (1 to 1,000).
    pub fn builds_page(
        &self,
        builder: Option<&str>,
        at: Keyset,
        limit: i64,
    ) -> StoreResult<Vec<BuildRow>> {
        let limit = limit.clamp(1, 1000);
        let db = self.db();
        let rows = match at {
            Keyset::Newest => {
                drop(db);
                return self.builds(builder, limit);
            }
            Keyset::Before(id) => db.query_map(
                &format!(
                    "{BUILD_COLUMNS} WHERE (CAST(?1 AS TEXT) IS NULL OR builder = ?1) AND id < ?2 ORDER BY id DESC LIMIT ?3"
                ),
                args![builder, id, limit],
                build_row,
            )?,
            Keyset::After(id) => {
                let mut rows = db.query_map(
                    &format!(
                        "{BUILD_COLUMNS} WHERE (CAST(?1 AS TEXT) IS NULL OR builder = ?1) AND id > ?2 ORDER BY id ASC LIMIT ?3"
                    ),
                    args![builder, id, limit],
                    build_row,
                )?;
                rows.reverse();
                rows
            }
        };
        Ok(rows)
    }

    pub fn build(&self, id: i64) -> StoreResult<Option<BuildRow>> {
        self.db().query_opt(
            &format!("{BUILD_COLUMNS} WHERE id = ?1"),
            args![id],
            build_row,
        )
    }

    pub fn builds_of_request(&self, request_id: i64) -> StoreResult<Vec<BuildRow>> {
        self.db().query_map(
            &format!("{BUILD_COLUMNS} WHERE request_id = ?1 ORDER BY id"),
            args![request_id],
            build_row,
        )
    }

    pub fn steps(&self, build_id: i64) -> StoreResult<Vec<StepRow>> {
        self.db().query_map(
            "SELECT build_id, number, name, started_at, finished_at, result, rc, reason, logs_expired_at FROM steps
             WHERE build_id = ?1 ORDER BY number",
            args![build_id],
            |r| {
                Ok(StepRow {
                    build_id: r.get(0)?,
                    number: r.get(1)?,
                    name: r.get(2)?,
                    started_at: r.get(3)?,
                    finished_at: r.get(4)?,
                    result: r.get(5)?,
                    rc: r.get(6)?,
                    reason: r.get(7)?,
                    logs_expired_at: r.get(8)?,
                })
            },
        )
    }
}

/// Where a page of builds starts: the newest, older than a build, or the oldest
/// newer than a build (a page back towards the newest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyset {
    Newest,
    Before(i64),
    After(i64),
}

const BUILD_COLUMNS: &str = "SELECT id, request_id, builder, number, worker, started_at, finished_at, result, reason, properties, cost, master FROM builds";

fn build_row(r: &Row) -> StoreResult<BuildRow> {
    Ok(BuildRow {
        id: r.get(0)?,
        request_id: r.get(1)?,
        builder: r.get(2)?,
        number: r.get(3)?,
        worker: r.get(4)?,
        started_at: r.get(5)?,
        finished_at: r.get(6)?,
        result: r.get(7)?,
        reason: r.get(8)?,
        properties: r.json(9)?,
        cost: r.get(10)?,
        master: r.get(11)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Channel, LogWriter};

    fn temp() -> (Store, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("pbmaster-store-{}-{}", std::process::id(), now()));
        (Store::open(&dir).unwrap(), dir)
    }

    #[test]
    fn a_running_build_is_retried_after_restart() {
        let (store, dir) = temp();
        let r1 = store
            .add_request("b1", "force", &serde_json::json!({}))
            .unwrap();
        let r2 = store
            .add_request("b1", "force", &serde_json::json!({}))
            .unwrap();
        let build = store.start_build(r1, "b1", "w1").unwrap().started();
        store
            .record_build(build.id, &[started(1, "compile")])
            .unwrap();
        LogWriter::new(&store, build.id, 1)
            .append("stdio", Channel::Stdout, b"\xffraw")
            .unwrap();
        assert_eq!(
            store
                .queued_requests()
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>(),
            vec![r2]
        );
        drop(store);
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.recover().unwrap(), 1);
        let queued: Vec<i64> = store
            .queued_requests()
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(queued, vec![r1, r2], "nothing lost, order kept");
        assert_eq!(
            store.build(build.id).unwrap().unwrap().result,
            Some(BuildResult::Retry)
        );
        let log = store.log_chunks(build.id, 1, "stdio", 0).unwrap();
        assert_eq!(log[0].data, b"\xffraw", "bytes kept exactly");
        let again = store.start_build(r1, "b1", "w1").unwrap().started();
        assert_eq!(again.number, 2);
        store
            .finish_build(again.id, &[], BuildResult::Success, None)
            .unwrap();
        assert!(store.request(r1).unwrap().unwrap().complete);
        std::fs::remove_dir_all(dir).ok();
    }

    fn started(number: i64, name: &str) -> BuildWrite {
        BuildWrite::StepStarted {
            number,
            name: name.into(),
            at: number as f64,
        }
    }

    fn finished(number: i64, result: BuildResult) -> BuildWrite {
        BuildWrite::StepFinished {
            number,
            at: number as f64 + 0.5,
            result,
            rc: Some(0),
            reason: None,
        }
    }

    #[test]
    fn a_build_is_recorded_in_groups_and_ends_with_its_last_step() {
        let (store, dir) = temp();
        let r = store
            .add_request("b1", "force", &serde_json::json!({}))
            .unwrap();
        let build = store.start_build(r, "b1", "w1").unwrap().started();
        let props = |n: i64| BuildWrite::Properties(serde_json::json!({"n": [n, "step"]}));
        store
            .record_build(build.id, &[props(0), started(1, "one")])
            .unwrap();
        let steps = store.steps(build.id).unwrap();
        assert_eq!((steps.len(), steps[0].finished_at), (1, None));
        store
            .record_build(
                build.id,
                &[
                    finished(1, BuildResult::Success),
                    props(1),
                    started(2, "two"),
                ],
            )
            .unwrap();
        store
            .finish_build(
                build.id,
                &[finished(2, BuildResult::Warnings), props(2)],
                BuildResult::Warnings,
                None,
            )
            .unwrap();
        let steps = store.steps(build.id).unwrap();
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.started_at, s.finished_at, s.result))
                .collect::<Vec<_>>(),
            [
                (1.0, Some(1.5), Some(BuildResult::Success)),
                (2.0, Some(2.5), Some(BuildResult::Warnings))
            ],
            "each step at the time it happened"
        );
        let row = store.build(build.id).unwrap().unwrap();
        assert_eq!(row.result, Some(BuildResult::Warnings));
        assert_eq!(row.properties, serde_json::json!({"n": [2, "step"]}));
        let request = store.request(r).unwrap().unwrap();
        assert_eq!(
            (request.complete, request.result),
            (true, Some(BuildResult::Warnings))
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_group_that_fails_leaves_nothing_behind() {
        let (store, dir) = temp();
        let r = store
            .add_request("b1", "force", &serde_json::json!({}))
            .unwrap();
        let build = store.start_build(r, "b1", "w1").unwrap().started();
        let e = store
            .record_build(
                build.id,
                &[started(1, "one"), finished(2, BuildResult::Success)],
            )
            .expect_err("step 2 never started");
        assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
        assert!(store.steps(build.id).unwrap().is_empty());
        let e = store
            .finish_build(
                build.id,
                &[finished(1, BuildResult::Success)],
                BuildResult::Success,
                None,
            )
            .expect_err("step 1 never started");
        assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
        assert_eq!(store.build(build.id).unwrap().unwrap().finished_at, None);
        assert!(!store.request(r).unwrap().unwrap().complete);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_request_that_cannot_run_fails_with_one_ended_build() {
        let (store, dir) = temp();
        let r = store
            .add_request("b1", "force", &serde_json::json!({}))
            .unwrap();
        let build = store
            .fail_request(r, "b1", "pool-1", BuildResult::Exception, "no instance")
            .unwrap();
        assert_eq!(
            store.build(build.id).unwrap().unwrap().result,
            Some(BuildResult::Exception)
        );
        assert_eq!(store.builds_of_request(r).unwrap().len(), 1);
        assert!(store.request(r).unwrap().unwrap().complete);
        assert!(store.queued_requests().unwrap().is_empty());
        std::fs::remove_dir_all(dir).ok();
    }
}
