//! Log bytes: appended to one file per build under `data_dir/logs`, indexed in SQLite.
//!
//! As SQLite blobs every byte was written twice (WAL, then checkpoint) a page at a
//! time, which capped ingest far below what the network delivers. Now the bytes are
//! written once, to a plain file, as they arrive; `log_chunks` rows say which log and
//! channel each piece belongs to and where it lies. A [`LogWriter`] records its
//! pieces in one transaction at most [`FLUSH_INTERVAL`] after writing them (adjacent
//! pieces of one log and channel become one row) and when its command ends, before
//! the step is recorded as finished. Readers see what is recorded; a crash loses at
//! most the last interval's pieces. Rows of older databases keep their bytes inline.
//!
//! On PostgreSQL the bytes are kept inline, in `log_chunks.data`: every master of an
//! installation then serves every log without a shared file system, and the server
//! compresses large values itself.
//! Once the build ends the file may be compressed (see [`super::retention`]): the
//! rows' offsets are into the uncompressed bytes either way.

use super::packed::PackedLog;
use super::sql::{args, write};
use super::{Channel, LogChunk, Store, StoreResult};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long written bytes may wait before their rows are committed.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Pieces are merged into rows of at most this many bytes, so a read stays bounded.
const MAX_ROW: u64 = 1 << 20;
/// A read returns about this many bytes at most (always at least one row).
const READ_BUDGET: u64 = 16 << 20;

/// Where a piece's bytes lie.
#[derive(Debug)]
struct Piece {
    log: String,
    channel: Channel,
    offset: u64,
    len: u64,
    /// The bytes themselves, when they go into the database (PostgreSQL).
    inline: Option<Vec<u8>>,
}

/// Appends one command's logs to its build's file and records them. Steps, and the
/// commands within a step, run one after another, so a build has one writer at a
/// time.
#[derive(Debug)]
pub struct LogWriter {
    store: Store,
    build_id: i64,
    step: i64,
    /// The open file and the offset of its end.
    file: Option<(File, u64)>,
    pending: Vec<Piece>,
    /// When the oldest pending piece was written.
    since: Option<Instant>,
}

impl Store {
    pub(super) fn log_file(&self, build_id: i64) -> PathBuf {
        // A thousand builds per folder keeps folders small.
        self.logs_dir
            .join((build_id / 1000).to_string())
            .join(format!("{build_id}.log"))
    }

    /// The build's log file once compressed (see [`super::packed`]).
    pub(super) fn packed_file(&self, build_id: i64) -> PathBuf {
        self.log_file(build_id).with_extension("log.zst")
    }

    /// The build's log bytes, compressed or not; `None` when there are none. The
    /// compressed file is looked for first and again last: it appears (renamed
    /// whole) before the plain file goes, so one of the two is always found, and an
    /// open plain file stays readable after it is removed.
    fn open_log(&self, build_id: i64) -> Option<LogSource> {
        let packed = self.packed_file(build_id);
        let try_packed = || match PackedLog::open(&packed) {
            Ok(p) => Some(LogSource::Packed(p)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(build = build_id, "cannot read {}: {e}", packed.display());
                None
            }
        };
        try_packed()
            .or_else(|| {
                File::open(self.log_file(build_id))
                    .ok()
                    .map(LogSource::Plain)
            })
            .or_else(try_packed)
    }

    /// Chunks of a log after sequence `after` (0 for the start), in order; about
    /// [`READ_BUDGET`] bytes at most, so callers ask again from the last one's `seq`.
    pub fn log_chunks(
        &self,
        build_id: i64,
        step: i64,
        log: &str,
        after: i64,
    ) -> StoreResult<Vec<LogChunk>> {
        self.log_chunks_within(build_id, step, log, after, READ_BUDGET)
    }

    /// [`Store::log_chunks`], about `budget` bytes at most (at least one chunk): for
    /// readers that hold what they read while a slow client takes it.
    pub fn log_chunks_within(
        &self,
        build_id: i64,
        step: i64,
        log: &str,
        after: i64,
        budget: u64,
    ) -> StoreResult<Vec<LogChunk>> {
        // seq, channel, inline bytes, file offset and length.
        type Row = (i64, Channel, Vec<u8>, Option<i64>, Option<i64>);
        let rows: Vec<Row> = {
            let (mut out, mut bytes) = (Vec::new(), 0u64);
            self.db().query_while(
                "SELECT seq, channel, data, file_offset, file_len FROM log_chunks
                 WHERE build_id = ?1 AND step = ?2 AND log = ?3 AND seq > ?4 ORDER BY seq",
                args![build_id, step, log, after],
                |r| {
                    let row: Row = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
                    bytes += row.4.map_or(row.2.len() as u64, |n| n.max(0) as u64);
                    out.push(row);
                    Ok(bytes < budget)
                },
            )?;
            out
        };
        // The file is read without holding the database.
        let mut file: Option<Option<LogSource>> = None;
        let mut chunks = Vec::with_capacity(rows.len());
        for (seq, channel, inline, offset, len) in rows {
            let (Some(offset), Some(len)) = (offset, len) else {
                chunks.push(LogChunk {
                    seq,
                    channel,
                    data: inline,
                });
                continue;
            };
            let f = file.get_or_insert_with(|| self.open_log(build_id));
            let len = u64::try_from(len).unwrap_or(0);
            let offset = offset.max(0) as u64;
            let data = match f {
                Some(LogSource::Plain(f)) => read_piece(f, offset, len)?,
                Some(LogSource::Packed(p)) => p.read_at(offset, len)?,
                None => Vec::new(),
            };
            let lost = len - data.len() as u64;
            chunks.push(LogChunk { seq, channel, data });
            if lost > 0 {
                // A crash can leave an index row past what reached the disk: what
                // is there is served, and the gap is named.
                let note = format!("\n[pbmaster: {lost} bytes of this log were lost]\n");
                chunks.push(LogChunk {
                    seq,
                    channel: Channel::Header,
                    data: note.into_bytes(),
                });
            }
        }
        Ok(chunks)
    }

    /// Names of a step's logs.
    pub fn log_names(&self, build_id: i64, step: i64) -> StoreResult<Vec<String>> {
        self.db().query_map(
            "SELECT DISTINCT log FROM log_chunks WHERE build_id = ?1 AND step = ?2 ORDER BY log",
            args![build_id, step],
            |r| r.get(0),
        )
    }
}

/// Where a build's log bytes are read from.
#[derive(Debug)]
enum LogSource {
    Plain(File),
    Packed(PackedLog),
}

/// Up to `len` bytes at `offset`: fewer if the file ends first.
fn read_piece(file: &File, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut data = vec![0; usize::try_from(len).unwrap_or(0)];
    let mut got = 0;
    while got < data.len() {
        match file.read_at(&mut data[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    data.truncate(got);
    Ok(data)
}

impl LogWriter {
    pub fn new(store: &Store, build_id: i64, step: i64) -> LogWriter {
        LogWriter {
            store: store.clone(),
            build_id,
            step,
            file: None,
            pending: Vec::new(),
            since: None,
        }
    }

    /// Appends bytes to a log, exactly as received; they are recorded by a later
    /// [`flush`](Self::flush).
    pub fn append(&mut self, log: &str, channel: Channel, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.store.is_postgres() {
            self.append_inline(log, channel, data);
            return Ok(());
        }
        let (file, end) = match &mut self.file {
            Some(open) => open,
            None => {
                let path = self.store.log_file(self.build_id);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                // Readers take the compressed file over a plain one: bytes written
                // beside it would be read from the wrong place. Only a build that
                // has ended is compressed, so nothing should write any more.
                if self.store.packed_file(self.build_id).exists() {
                    return Err(std::io::Error::other(
                        "the build's logs are compressed: it has ended",
                    ));
                }
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                let end = file.metadata()?.len();
                self.file.insert((file, end))
            }
        };
        if let Err(e) = file.write_all(data) {
            // Part may have been written: find the end again next time.
            self.file = None;
            return Err(e);
        }
        let offset = *end;
        let len = data.len() as u64;
        *end += len;
        match self.pending.last_mut() {
            Some(p)
                if p.log == log
                    && p.channel == channel
                    && p.offset + p.len == offset
                    && p.len + len <= MAX_ROW =>
            {
                p.len += len
            }
            _ => self.pending.push(Piece {
                log: log.to_owned(),
                channel,
                offset,
                len,
                inline: None,
            }),
        }
        self.since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// [`LogWriter::append`] of bytes kept in the database.
    fn append_inline(&mut self, log: &str, channel: Channel, data: &[u8]) {
        for part in data.chunks(MAX_ROW as usize) {
            match self.pending.last_mut() {
                Some(Piece {
                    log: l,
                    channel: c,
                    inline: Some(bytes),
                    ..
                }) if l == log && *c == channel && (bytes.len() + part.len()) as u64 <= MAX_ROW => {
                    bytes.extend_from_slice(part)
                }
                _ => self.pending.push(Piece {
                    log: log.to_owned(),
                    channel,
                    offset: 0,
                    len: 0,
                    inline: Some(part.to_vec()),
                }),
            }
        }
        self.since.get_or_insert_with(Instant::now);
    }

    /// When pending pieces are due to be recorded; `None` when nothing is pending.
    pub fn flush_due(&self) -> Option<Instant> {
        self.since.map(|t| t + FLUSH_INTERVAL)
    }

    /// Records the pending pieces, in one transaction, on a blocking thread. Pieces
    /// that could not be recorded stay pending for the next try.
    /// With `durable`, the file's bytes reach the disk before their rows commit (a
    /// command's last flush, before its step is recorded finished).
    pub async fn flush(&mut self, durable: bool) -> StoreResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let file = match (&self.file, durable) {
            (Some((f, _)), true) => Some(f.try_clone()?),
            _ => None,
        };
        let pending = std::mem::take(&mut self.pending);
        let (build, step) = (self.build_id, self.step);
        let (pending, recorded) = self
            .store
            .off_thread(move |st| {
                let synced = file.map_or(Ok(()), |f| f.sync_data());
                let recorded = match synced {
                    Ok(()) => st.insert_pieces(build, step, &pending),
                    Err(e) => Err(e.into()),
                };
                Ok((pending, recorded))
            })
            .await?;
        self.settle(pending, recorded)
    }

    /// [`LogWriter::flush`], blocking the caller.
    fn flush_here(&mut self) -> StoreResult<()> {
        let pending = std::mem::take(&mut self.pending);
        let recorded = self.store.insert_pieces(self.build_id, self.step, &pending);
        self.settle(pending, recorded)
    }

    fn settle(&mut self, pending: Vec<Piece>, recorded: StoreResult<()>) -> StoreResult<()> {
        match recorded {
            Ok(()) => {
                self.since = None;
                Ok(())
            }
            Err(e) => {
                self.pending = pending;
                Err(e)
            }
        }
    }
}

impl Store {
    fn insert_pieces(&self, build_id: i64, step: i64, pieces: &[Piece]) -> StoreResult<()> {
        if pieces.is_empty() {
            return Ok(());
        }
        let db = self.db();
        let tx = write(&db)?;
        let empty: &[u8] = &[];
        for p in pieces {
            if let Some(bytes) = &p.inline {
                tx.execute(
                    "INSERT INTO log_chunks (build_id, step, log, channel, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                    args![build_id, step, p.log, p.channel, bytes],
                )?;
                continue;
            }
            tx.execute(
                "INSERT INTO log_chunks (build_id, step, log, channel, data, file_offset, file_len)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                args![
                    build_id,
                    step,
                    p.log,
                    p.channel,
                    empty,
                    p.offset as i64,
                    p.len as i64
                ],
            )?;
        }
        tx.commit()
    }
}

impl Drop for LogWriter {
    /// Pieces written by a command that was abandoned are still recorded.
    fn drop(&mut self) {
        if let Err(e) = self.flush_here() {
            tracing::warn!(build = self.build_id, "cannot record log pieces: {e}");
        }
    }
}

/// A log's chunks from the first on, for tests on either database.
#[cfg(test)]
pub(super) fn read_whole_log(
    store: &Store,
    build: i64,
    step: i64,
    log: &str,
) -> Vec<(Channel, Vec<u8>)> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let chunks = store.log_chunks(build, step, log, after).expect("read");
        let Some(last) = chunks.last() else { break };
        after = last.seq;
        out.extend(chunks.into_iter().map(|c| (c.channel, c.data)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> (Store, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "pbmaster-logs-{}-{}",
            std::process::id(),
            super::super::now()
        ));
        (Store::open(&dir).expect("store"), dir)
    }

    fn read_all(store: &Store, build: i64, step: i64, log: &str) -> Vec<(Channel, Vec<u8>)> {
        read_whole_log(store, build, step, log)
    }

    fn rows(store: &Store) -> i64 {
        store
            .db()
            .query_row("SELECT COUNT(*) FROM log_chunks", args![], |r| r.get(0))
            .expect("count")
    }

    #[test]
    fn bytes_read_back_exactly_once_flushed_with_adjacent_pieces_merged() {
        let (store, dir) = temp();
        let mut w = LogWriter::new(&store, 7, 1);
        assert!(w.flush_due().is_none());
        w.append("stdio", Channel::Header, b"$ make\n")
            .expect("write");
        w.append("stdio", Channel::Stdout, b"\xffraw ")
            .expect("write");
        w.append("stdio", Channel::Stdout, b"bytes\n")
            .expect("write");
        w.append("stdio", Channel::Stderr, b"warning\n")
            .expect("write");
        w.append("test.log", Channel::Stdout, b"ok\n")
            .expect("write");
        w.append("stdio", Channel::Stdout, b"").expect("nothing");
        w.append("stdio", Channel::Stdout, b"done\n")
            .expect("write");
        assert!(w.flush_due().is_some());
        assert!(
            read_all(&store, 7, 1, "stdio").is_empty(),
            "not yet recorded"
        );
        w.flush_here().expect("flush");
        assert!(w.flush_due().is_none());
        assert_eq!(
            rows(&store),
            5,
            "the two adjacent stdout pieces share a row"
        );
        assert_eq!(
            read_all(&store, 7, 1, "stdio"),
            [
                (Channel::Header, b"$ make\n".to_vec()),
                (Channel::Stdout, b"\xffraw bytes\n".to_vec()),
                (Channel::Stderr, b"warning\n".to_vec()),
                (Channel::Stdout, b"done\n".to_vec()),
            ]
        );
        assert_eq!(
            read_all(&store, 7, 1, "test.log"),
            [(Channel::Stdout, b"ok\n".to_vec())]
        );
        assert_eq!(store.log_names(7, 1).expect("names"), ["stdio", "test.log"]);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn nothing_is_appended_to_a_build_whose_logs_are_compressed() {
        let (store, dir) = temp();
        let mut w = LogWriter::new(&store, 5, 1);
        w.append("stdio", Channel::Stdout, b"before\n")
            .expect("write");
        drop(w);
        std::fs::rename(store.log_file(5), store.packed_file(5)).expect("rename");
        let mut late = LogWriter::new(&store, 5, 2);
        assert!(late.append("stdio", Channel::Stdout, b"late\n").is_err());
        assert!(!store.log_file(5).exists());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn later_steps_append_to_the_same_build_file() {
        let (store, dir) = temp();
        for step in 1..=3 {
            let mut w = LogWriter::new(&store, 1234, step);
            w.append(
                "stdio",
                Channel::Stdout,
                format!("step {step}\n").as_bytes(),
            )
            .expect("write");
            // Dropping records what is pending.
        }
        for step in 1..=3 {
            assert_eq!(
                read_all(&store, 1234, step, "stdio"),
                [(Channel::Stdout, format!("step {step}\n").into_bytes())]
            );
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn large_logs_come_back_in_bounded_reads_and_in_order() {
        let (store, dir) = temp();
        let mut w = LogWriter::new(&store, 3, 1);
        let piece: Vec<u8> = (0..=255u8).cycle().take(600_000).collect();
        let mut expected = Vec::new();
        for i in 0..60u8 {
            let mut p = piece.clone();
            p[0] = i;
            w.append("stdio", Channel::Stdout, &p).expect("write");
            expected.extend_from_slice(&p);
        }
        w.flush_here().expect("flush");
        let first = store.log_chunks(3, 1, "stdio", 0).expect("read");
        let first_bytes: usize = first.iter().map(|c| c.data.len()).sum();
        assert!(
            first_bytes < expected.len(),
            "one read does not return it all"
        );
        assert!(first.iter().all(|c| c.data.len() as u64 <= MAX_ROW));
        let got: Vec<u8> = read_all(&store, 3, 1, "stdio")
            .into_iter()
            .flat_map(|(_, d)| d)
            .collect();
        assert!(got == expected, "every byte back, in order");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn rows_with_inline_bytes_from_older_databases_still_read() {
        let (store, dir) = temp();
        store
            .db()
            .execute(
                "INSERT INTO log_chunks (build_id, step, log, channel, data) VALUES (9, 1, 'stdio', 1, ?1)",
                args![vec![0u8, 0xff, b'\n']],
            )
            .expect("old row");
        let mut w = LogWriter::new(&store, 9, 1);
        w.append("stdio", Channel::Stdout, b"new\n").expect("write");
        w.flush_here().expect("flush");
        assert_eq!(
            read_all(&store, 9, 1, "stdio"),
            [
                (Channel::Stderr, vec![0, 0xff, b'\n']),
                (Channel::Stdout, b"new\n".to_vec())
            ]
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn rows_past_the_end_of_a_cut_file_serve_what_is_there_and_say_so() {
        let (store, dir) = temp();
        let mut w = LogWriter::new(&store, 9, 1);
        w.append("stdio", Channel::Stdout, b"kept bytes|")
            .expect("write");
        w.flush_here().expect("flush");
        w.append("stdio", Channel::Stderr, b"lost bytes")
            .expect("write");
        w.flush_here().expect("flush");
        drop(w);
        store.sync().expect("sync");
        // As after a power loss: the index survived, the file's tail did not.
        let file = store.log_file(9);
        let f = OpenOptions::new().write(true).open(&file).expect("open");
        f.set_len(15).expect("cut");
        let got = read_all(&store, 9, 1, "stdio");
        assert_eq!(got[0], (Channel::Stdout, b"kept bytes|".to_vec()));
        assert_eq!(got[1], (Channel::Stderr, b"lost".to_vec()));
        let (channel, note) = &got[2];
        assert_eq!(*channel, Channel::Header);
        assert!(String::from_utf8_lossy(note).contains("6 bytes of this log were lost"));
        std::fs::remove_file(&file).expect("remove");
        let got = read_all(&store, 9, 1, "stdio");
        assert_eq!(
            got.len(),
            4,
            "a missing file loses everything, said per row: {got:?}"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
