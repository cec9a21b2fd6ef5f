//! WAL checkpoints on a thread of their own.
//!
//! SQLite's automatic checkpoint runs inside whichever commit crosses the WAL's size
//! threshold: that commit then copies a thousand pages into the database file and
//! syncs it. With many short builds that commit is the coordinator's, and every
//! request waiting on that wake-up waits for the copy too. So the store's
//! connections never checkpoint, and this thread does, passively (it takes no lock a
//! writer needs), a few times a second while the log has frames to copy. SQLite
//! still checkpoints when the last connection closes.

use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;
use tracing::warn;

/// Between checkpoints: short enough that a busy master's log stays a few MB.
const PERIOD: Duration = Duration::from_millis(250);

/// Once a checkpoint has emptied the log, the next writer starts it from the top
/// and the file is cut back to this size.
pub const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// The checkpointing thread; stopped and joined when dropped.
#[derive(Debug)]
pub struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` through a connection of its own.
    pub fn start(path: &Path) -> rusqlite::Result<Checkpointer> {
        let db = Connection::open(path)?;
        db.busy_timeout(Duration::from_secs(5))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || loop {
                match stopped.recv_timeout(PERIOD) {
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(e) = checkpoint(&db) {
                            warn!("store: WAL checkpoint failed: {e}");
                        }
                    }
                    // Asked to stop, or the store is gone.
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// One passive checkpoint; returns the log's frames and those copied.
pub fn checkpoint(db: &Connection) -> rusqlite::Result<(i64, i64)> {
    db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn db_size(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("pbmaster.sqlite")).map_or(0, |m| m.len())
    }

    #[test]
    fn commits_leave_the_log_to_the_checkpointer_which_copies_it() {
        let dir = std::env::temp_dir().join(format!("pbmaster-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pbmaster.sqlite");
        let db = super::super::writer(&path).expect("writer");
        let db = db.as_sqlite().expect("SQLite");
        db.execute_batch(
            "CREATE TABLE filler (x BLOB); INSERT INTO filler VALUES (zeroblob(8000000));",
        )
        .unwrap();
        // The commit copied nothing into the database file: it is all in the log.
        assert!(db_size(&dir) < 1_000_000, "{} bytes", db_size(&dir));

        let checkpointer = Checkpointer::start(&path).expect("checkpointer");
        let deadline = Instant::now() + Duration::from_secs(30);
        while db_size(&dir) < 8_000_000 {
            assert!(Instant::now() < deadline, "never checkpointed");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(checkpointer);
        let (log, copied) = checkpoint(db).unwrap();
        assert_eq!(copied, log, "all copied");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
