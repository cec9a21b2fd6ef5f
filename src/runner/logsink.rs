//! Where a command's log output goes on its way to the store: the master's secrets
//! are hidden (a secret cut between two updates too), and each log is bounded — past
//! `log_max_size` its middle is dropped, and at the end a marker says how much, then
//! the last `log_tail_size` bytes follow (buildbot's head-and-tail rule). A log the
//! store cannot take ends the step instead of being lost quietly.

use crate::config::Limits;
use crate::secrets::{RedactStream, Secrets};
use crate::store::{Channel, LogWriter};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// One command's logs.
pub struct LogSink {
    secrets: Arc<Secrets>,
    limits: Limits,
    streams: HashMap<(String, Channel), RedactStream>,
    sizes: BTreeMap<String, LogSize>,
    /// The first error the store gave.
    failed: Option<String>,
}

/// How much of one log was written, and its tail once it is past the limit.
#[derive(Default)]
struct LogSize {
    written: u64,
    dropped: u64,
    tail: VecDeque<(Channel, Vec<u8>)>,
    tail_bytes: u64,
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSink")
            .field("logs", &self.sizes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl LogSink {
    pub fn new(secrets: Arc<Secrets>, limits: Limits) -> LogSink {
        LogSink {
            secrets,
            limits,
            streams: HashMap::new(),
            sizes: BTreeMap::new(),
            failed: None,
        }
    }

    /// Output of `log` on `channel`.
    pub fn append(&mut self, logs: &mut LogWriter, log: &str, channel: Channel, data: &[u8]) {
        crate::metrics::metrics().log_bytes(data.len());
        let ready = if self.secrets.is_empty() {
            Cow::Borrowed(data)
        } else {
            let key = (log.to_owned(), channel);
            self.streams
                .entry(key)
                .or_default()
                .push(&self.secrets, data)
        };
        self.bounded(logs, log, channel, &ready);
    }

    /// Writes what fits under the limit; keeps the rest's tail.
    fn bounded(&mut self, logs: &mut LogWriter, log: &str, channel: Channel, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let max = self.limits.log_max_size;
        let size = self.sizes.entry(log.to_owned()).or_default();
        let room = max.saturating_sub(size.written) as usize;
        let (head, rest) = data.split_at(room.min(data.len()));
        size.written += head.len() as u64;
        if !rest.is_empty() {
            size.dropped += rest.len() as u64;
            keep_tail(size, channel, rest, self.limits.log_tail_size);
        }
        if !head.is_empty() {
            self.write(logs, log, channel, head);
        }
    }

    fn write(&mut self, logs: &mut LogWriter, log: &str, channel: Channel, data: &[u8]) {
        if let Err(e) = logs.append(log, channel, data) {
            self.failed
                .get_or_insert_with(|| format!("the master cannot store the log: {e}"));
        }
    }

    /// The command has ended: what redaction held back is written, and each log past
    /// its limit gets its marker and tail. Returns the logs that were cut.
    pub fn finish(&mut self, logs: &mut LogWriter) -> Vec<String> {
        for ((log, channel), mut stream) in std::mem::take(&mut self.streams) {
            let rest = stream.finish(&self.secrets);
            self.bounded(logs, &log, channel, &rest);
        }
        let mut cut = Vec::new();
        for (log, size) in std::mem::take(&mut self.sizes) {
            if size.dropped == 0 {
                continue;
            }
            let kept: u64 = size.tail_bytes;
            let marker = format!(
                "\n[pbmaster: this log passed log_max_size = {} bytes: {} bytes were dropped; \
                 the last {kept} follow]\n",
                self.limits.log_max_size,
                size.dropped - kept
            );
            self.write(logs, &log, Channel::Header, marker.as_bytes());
            for (channel, piece) in &size.tail {
                self.write(logs, &log, *channel, piece);
            }
            cut.push(log);
        }
        cut
    }

    /// Why the logs could not all be stored, if they could not.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }
}

/// Appends `data` to the tail, dropping the oldest bytes beyond `limit`.
fn keep_tail(size: &mut LogSize, channel: Channel, data: &[u8], limit: u64) {
    let limit = limit as usize;
    let data = &data[data.len().saturating_sub(limit)..];
    size.tail.push_back((channel, data.to_vec()));
    size.tail_bytes += data.len() as u64;
    while size.tail_bytes as usize > limit {
        let Some((_, front)) = size.tail.front_mut() else {
            break;
        };
        let excess = (size.tail_bytes as usize - limit).min(front.len());
        front.drain(..excess);
        size.tail_bytes -= excess as u64;
        if front.is_empty() {
            size.tail.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "pbmaster-logsink-{}-{}",
            std::process::id(),
            crate::store::now()
        ));
        (Store::open(&dir).expect("store"), dir)
    }

    fn read(store: &Store, log: &str) -> Vec<(Channel, Vec<u8>)> {
        let chunks = store.log_chunks(1, 1, log, 0).expect("read");
        let mut out: Vec<(Channel, Vec<u8>)> = Vec::new();
        for c in chunks {
            match out.last_mut() {
                Some((ch, bytes)) if *ch == c.channel => bytes.extend(c.data),
                _ => out.push((c.channel, c.data)),
            }
        }
        out
    }

    #[test]
    fn a_log_past_its_limit_keeps_its_head_a_marker_and_its_tail() {
        let (store, dir) = store();
        let limits = Limits {
            log_max_size: 10,
            log_tail_size: 4,
            ..Limits::default()
        };
        let mut sink = LogSink::new(Arc::default(), limits);
        let mut logs = LogWriter::new(&store, 1, 1);
        sink.append(&mut logs, "stdio", Channel::Stdout, b"0123456");
        sink.append(&mut logs, "stdio", Channel::Stderr, b"789abc");
        sink.append(&mut logs, "stdio", Channel::Stdout, b"defgh");
        sink.append(&mut logs, "other", Channel::Stdout, b"short");
        assert_eq!(sink.finish(&mut logs), ["stdio"]);
        drop(logs);
        let stdio = read(&store, "stdio");
        assert_eq!(stdio[0], (Channel::Stdout, b"0123456".to_vec()));
        assert_eq!(stdio[1], (Channel::Stderr, b"789".to_vec()), "the head");
        let (channel, marker) = &stdio[2];
        assert_eq!(*channel, Channel::Header);
        let marker = String::from_utf8_lossy(marker);
        assert!(marker.contains("4 bytes were dropped"), "{marker}");
        assert_eq!(stdio[3], (Channel::Stdout, b"efgh".to_vec()), "the tail");
        assert_eq!(stdio.len(), 4);
        assert_eq!(
            read(&store, "other"),
            [(Channel::Stdout, b"short".to_vec())]
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn the_tail_keeps_channels_in_order() {
        let mut size = LogSize::default();
        keep_tail(&mut size, Channel::Stdout, b"abc", 5);
        keep_tail(&mut size, Channel::Stderr, b"de", 5);
        keep_tail(&mut size, Channel::Stdout, b"fg", 5);
        let tail: Vec<_> = size.tail.iter().cloned().collect();
        assert_eq!(
            tail,
            [
                (Channel::Stdout, b"c".to_vec()),
                (Channel::Stderr, b"de".to_vec()),
                (Channel::Stdout, b"fg".to_vec())
            ]
        );
        keep_tail(&mut size, Channel::Stderr, b"0123456789", 5);
        assert_eq!(size.tail_bytes, 5);
        assert_eq!(size.tail.len(), 1);
    }
}
