//! Retention in the store: compressing a finished build's log file, deleting the
//! logs of builds older than one horizon and the builds older than another. Each
//! call does a small batch in a transaction of its own, so the janitor never holds
//! the write lock for long; files are removed before the rows that point at them, so
//! a crash in between leaves rows whose bytes read as lost, and the next call
//! finishes the job.

use super::packed;
use super::sql::{args, write};
use super::{now, Channel, Store, StoreResult};
use std::fs::File;
use std::path::Path;

/// Log files smaller than this stay as they are: a file system gives them one block
/// whatever their size, so compressing them would cost a zstd context and three
/// syncs for no space at all (most logs of short builds are this small).
pub const PACK_AT_LEAST: u64 = 4096;

/// What compressing one build's logs did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Packed {
    /// Bytes of the plain file (0: there was none).
    pub raw: u64,
    /// Bytes of the compressed file.
    pub stored: u64,
}

/// What one batch of expiry did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Builds whose logs were deleted (with the build or alone).
    pub logs: u64,
    pub builds: u64,
    pub requests: u64,
    /// Bytes of logs removed: files, and bytes kept in the database.
    pub bytes: u64,
}

/// The line an expired log reads as: every reader (API, raw download, web page)
/// shows it instead of failing.
pub const EXPIRED_NOTE: &str =
    "[pbmaster: this log was deleted: the retention policy keeps logs for a limited time]\n";

impl Store {
    /// Finished builds after `after` whose logs are not compressed yet, oldest
    /// first.
    pub fn builds_to_pack(&self, after: i64, limit: i64) -> StoreResult<Vec<i64>> {
        self.db().query_map(
            "SELECT id FROM builds WHERE logs_packed_at IS NULL AND logs_expired_at IS NULL
             AND finished_at IS NOT NULL AND id > ?1 ORDER BY id LIMIT ?2",
            args![after, limit],
            |r| r.get(0),
        )
    }

    /// Compresses a finished build's log file (one under [`PACK_AT_LEAST`] bytes is
    /// only marked, and read plain from then on). Each step leaves a readable log if
    /// the master stops there: the compressed file is written beside, synced and
    /// renamed into place (readers prefer it from then on), then the plain file is
    /// removed, then the build is marked. Done again after a crash, it starts over
    /// from the plain file, or only marks the build if that is already gone.
    pub fn pack_logs(&self, build_id: i64) -> StoreResult<Packed> {
        let (plain, packed) = (self.log_file(build_id), self.packed_file(build_id));
        let mut done = Packed::default();
        match File::open(&plain) {
            Ok(src) if src.metadata()?.len() < PACK_AT_LEAST => {
                done.raw = src.metadata()?.len();
                done.stored = done.raw;
            }
            Ok(mut src) => {
                done.raw = src.metadata()?.len();
                let tmp = packed.with_extension("zst.tmp");
                let mut out = File::create(&tmp)?;
                done.stored = match packed::pack(&mut src, &mut out) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(e.into());
                    }
                };
                std::fs::rename(&tmp, &packed)?;
                sync_dir(&packed)?;
                std::fs::remove_file(&plain)?;
                sync_dir(&plain)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        self.mark_packed(build_id)?;
        Ok(done)
    }

    /// Whether a build's log file is done with as it is (under [`PACK_AT_LEAST`]
    /// bytes, or none): its end marks it so, in the same transaction, and the
    /// janitor never looks at it (most builds of a busy master are short).
    pub(super) fn log_stays_plain(&self, build_id: i64) -> bool {
        match std::fs::metadata(self.log_file(build_id)) {
            Ok(m) => m.len() < PACK_AT_LEAST,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }

    fn mark_packed(&self, build_id: i64) -> StoreResult<()> {
        let db = self.db();
        let tx = write(&db)?;
        tx.execute(
            "UPDATE builds SET logs_packed_at = ?2 WHERE id = ?1",
            args![build_id, now()],
        )?;
        tx.commit()
    }

    /// Deletes the logs of up to `limit` builds that finished before `before`: their
    /// files go, each log keeps one row saying it expired, and the steps are marked.
    pub fn expire_logs(&self, before: f64, limit: i64) -> StoreResult<Swept> {
        let ids: Vec<i64> = self.db().query_map(
            "SELECT id FROM builds WHERE finished_at < ?1 AND logs_expired_at IS NULL
             ORDER BY finished_at LIMIT ?2",
            args![before, limit],
            |r| r.get(0),
        )?;
        let mut swept = Swept::default();
        for &id in &ids {
            swept.bytes += self.remove_log_files(id)?;
        }
        let t = now();
        let db = self.db();
        let tx = write(&db)?;
        for &id in &ids {
            let logs: Vec<(i64, String)> = tx.query_map(
                "SELECT DISTINCT step, log FROM log_chunks WHERE build_id = ?1 ORDER BY step, log",
                args![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            // Bytes kept in the database (PostgreSQL, rows of older databases).
            let inline: i64 = tx.query_row(
                "SELECT CAST(COALESCE(SUM(LENGTH(data)), 0) AS BIGINT) FROM log_chunks WHERE build_id = ?1",
                args![id],
                |r| r.get(0),
            )?;
            swept.bytes += inline.max(0) as u64;
            tx.execute("DELETE FROM log_chunks WHERE build_id = ?1", args![id])?;
            for (step, log) in logs {
                tx.execute(
                    "INSERT INTO log_chunks (build_id, step, log, channel, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                    args![id, step, log, Channel::Header, EXPIRED_NOTE.as_bytes()],
                )?;
            }
            tx.execute(
                "UPDATE steps SET logs_expired_at = ?2 WHERE build_id = ?1",
                args![id, t],
            )?;
            tx.execute(
                "UPDATE builds SET logs_expired_at = ?2 WHERE id = ?1",
                args![id, t],
            )?;
        }
        tx.commit()?;
        swept.logs = ids.len() as u64;
        Ok(swept)
    }

    /// Deletes up to `limit` builds that finished before `before`, with their steps
    /// and logs, and their requests once no build of theirs is left. Never a running
    /// build, nor one whose request is queued again, nor one with reports still to
    /// send, nor the newest build of a builder (its number is where the next build's
    /// number comes from).
    pub fn delete_builds(&self, before: f64, limit: i64) -> StoreResult<Swept> {
        let found: Vec<(i64, i64, bool)> = self.db().query_map(
                "SELECT b.id, b.request_id, CASE WHEN b.logs_expired_at IS NULL THEN 1 ELSE 0 END FROM builds b
                 JOIN requests r ON r.id = b.request_id
                 WHERE b.finished_at < ?1 AND r.complete = 1
                 AND b.number < (SELECT MAX(number) FROM builds x WHERE x.builder = b.builder)
                 AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.build_id = b.id AND o.done = 0)
                 ORDER BY b.finished_at LIMIT ?2",
                args![before, limit],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let mut swept = Swept::default();
        for &(id, _, _) in &found {
            swept.bytes += self.remove_log_files(id)?;
        }
        let db = self.db();
        let tx = write(&db)?;
        for &(id, request, had_logs) in &found {
            for sql in [
                "DELETE FROM log_chunks WHERE build_id = ?1",
                "DELETE FROM steps WHERE build_id = ?1",
                "DELETE FROM outbox WHERE build_id = ?1",
                "DELETE FROM builds WHERE id = ?1",
            ] {
                tx.execute(sql, args![id])?;
            }
            swept.builds += 1;
            swept.logs += u64::from(had_logs);
            let left = tx.exists("SELECT 1 FROM builds WHERE request_id = ?1", args![request])?;
            if !left {
                tx.execute(
                    "DELETE FROM request_changes WHERE request_id = ?1",
                    args![request],
                )?;
                swept.requests += tx.execute(
                    "DELETE FROM requests WHERE id = ?1 AND complete = 1",
                    args![request],
                )? as u64;
            }
        }
        tx.commit()?;
        Ok(swept)
    }

    /// Removes a build's log files, plain, compressed and half-written; their bytes.
    fn remove_log_files(&self, build_id: i64) -> StoreResult<u64> {
        let packed = self.packed_file(build_id);
        let mut bytes = 0;
        for path in [
            self.log_file(build_id),
            packed.with_extension("zst.tmp"),
            packed,
        ] {
            match std::fs::metadata(&path) {
                Ok(m) => {
                    std::fs::remove_file(&path)?;
                    bytes += m.len();
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(bytes)
    }
}

/// Makes a rename or removal in `path`'s folder survive a power loss.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
