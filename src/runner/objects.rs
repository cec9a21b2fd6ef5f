//! The master-side objects of a transfer, answering the worker's calls: a writer that
//! fills a file (or a tar archive) and a reader that serves one.

use super::root::{create_exclusive, Target};
use crate::conn::LocalObject;
use bytes::Bytes;
use pbwire::jelly::{Failure, Value};
use std::fs::{self, File, FileTimes};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

/// What the step learns from its object once the command is over.
#[derive(Debug, Clone, Default)]
pub struct TransferState {
    pub bytes: u64,
    /// More than `max_size` was offered; the rest was dropped.
    pub truncated: bool,
    pub closed: bool,
    pub error: Option<String>,
}

type Shared = Arc<Mutex<TransferState>>;

fn update(state: &Shared, f: impl FnOnce(&mut TransferState)) {
    if let Ok(mut s) = state.lock() {
        f(&mut s);
    }
}

fn failure(why: String) -> Failure {
    Failure {
        type_name: "builtins.OSError".into(),
        value: why,
        parents: [
            "builtins.OSError",
            "builtins.Exception",
            "builtins.BaseException",
            "builtins.object",
        ]
        .map(String::from)
        .to_vec(),
        traceback: None,
    }
}

/// Receives a file: `write(data)`, `close()` (or `unpack()` for directories), then
/// optionally `utime((atime, mtime))`. Writes go to a hidden part file of its own,
/// created exclusively next to the destination and renamed into place on close, so a
/// failed upload never leaves a half file at the destination and no link is followed.
#[derive(Debug)]
pub struct FileWriter {
    dest: PathBuf,
    part: PathBuf,
    /// The part file, until it is closed.
    file: Option<File>,
    /// The file once renamed into place: `utime` sets its times through this handle,
    /// not by its name.
    done: Option<File>,
    max_size: Option<u64>,
    mode: Option<u32>,
    state: Shared,
}

impl FileWriter {
    /// A writer for `dest`, whose folder the transfer root checked.
    pub fn new(
        dest: &Target,
        max_size: Option<u64>,
        mode: Option<u32>,
        state: Shared,
    ) -> Result<FileWriter, String> {
        let part = dest.sibling("part").path();
        let file = create_exclusive(&part)
            .map_err(|e| format!("cannot create {}: {e}", part.display()))?;
        Ok(FileWriter {
            dest: dest.path(),
            part,
            file: Some(file),
            done: None,
            max_size,
            mode,
            state,
        })
    }

    pub fn state(&self) -> Shared {
        self.state.clone()
    }

    fn write(&mut self, data: &[u8]) -> Result<(), String> {
        let file = self.file.as_mut().ok_or("write after close")?;
        let written = self.state.lock().map(|s| s.bytes).unwrap_or(0);
        let room = self
            .max_size
            .map_or(data.len() as u64, |m| m.saturating_sub(written));
        let take = (data.len() as u64).min(room) as usize;
        file.write_all(&data[..take])
            .map_err(|e| format!("write {}: {e}", self.part.display()))?;
        update(&self.state, |s| {
            s.bytes += take as u64;
            s.truncated |= take < data.len();
        });
        Ok(())
    }

    fn close(&mut self) -> Result<(), String> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let result = self.finish(&file);
        if result.is_err() {
            let _ = fs::remove_file(&self.part);
        } else {
            self.done = Some(file);
            update(&self.state, |s| s.closed = true);
        }
        result
    }

    fn finish(&self, file: &File) -> Result<(), String> {
        file.sync_all()
            .map_err(|e| format!("sync {}: {e}", self.part.display()))?;
        if let Some(mode) = self.mode {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))
                .map_err(|e| format!("chmod: {e}"))?;
        }
        // rename replaces the name at the destination; it never follows a link there.
        fs::rename(&self.part, &self.dest)
            .map_err(|e| format!("rename to {}: {e}", self.dest.display()))
    }

    fn utime(&self, times: &Value) -> Result<(), String> {
        let secs = |v: &Value| match v {
            Value::Float(f) if f.is_finite() && *f >= 0.0 => Some(*f),
            Value::Int(i) => i.to_i64().filter(|v| *v >= 0).map(|v| v as f64),
            _ => None,
        };
        let (Some(atime), Some(mtime)) = (
            times.as_seq().and_then(|t| t.first()).and_then(secs),
            times.as_seq().and_then(|t| t.get(1)).and_then(secs),
        ) else {
            return Err("utime takes (atime, mtime)".into());
        };
        let at = |s: f64| UNIX_EPOCH + Duration::from_secs_f64(s.min(1e11));
        let file = self
            .done
            .as_ref()
            .or(self.file.as_ref())
            .ok_or("utime: no file")?;
        file.set_times(
            FileTimes::new()
                .set_accessed(at(atime))
                .set_modified(at(mtime)),
        )
        .map_err(|e| format!("utime: {e}"))
    }
}

impl LocalObject for FileWriter {
    fn call(&mut self, method: &str, args: &[Value]) -> Result<Value, Failure> {
        let result = match method {
            "write" => match args.first().and_then(Value::as_bytes) {
                Some(data) => {
                    let data = data.to_vec();
                    self.write(&data)
                }
                None => Err("write takes bytes".into()),
            },
            "close" | "unpack" => self.close(),
            "utime" => self.utime(args.first().unwrap_or(&Value::None)),
            other => return Err(crate::conn::no_such_method(other)),
        };
        result.map(|()| Value::None).map_err(|e| {
            update(&self.state, |s| {
                s.error.get_or_insert_with(|| e.clone());
            });
            failure(e)
        })
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.part);
        }
    }
}

/// Serves a file or a string: `read(n)` returns up to n bytes, `b''` at the end.
#[derive(Debug)]
pub struct FileReader {
    source: Source,
    state: Shared,
}

#[derive(Debug)]
enum Source {
    File(File),
    Bytes(Bytes),
}

/// The most a single `read` returns: the wire's string limit.
const MAX_READ: usize = 640 * 1024;

impl FileReader {
    /// Serves `file`, opened through the transfer root.
    pub fn from_file(file: File, state: Shared) -> FileReader {
        FileReader {
            source: Source::File(file),
            state,
        }
    }

    pub fn from_bytes(data: Vec<u8>, state: Shared) -> FileReader {
        FileReader {
            source: Source::Bytes(Bytes::from(data)),
            state,
        }
    }

    pub fn state(&self) -> Shared {
        self.state.clone()
    }

    fn read(&mut self, n: usize) -> Result<Bytes, String> {
        let n = n.min(MAX_READ);
        let out = match &mut self.source {
            Source::Bytes(b) => b.split_to(n.min(b.len())),
            Source::File(f) => {
                let mut buf = Vec::with_capacity(n);
                Read::by_ref(f)
                    .take(n as u64)
                    .read_to_end(&mut buf)
                    .map_err(|e| format!("read: {e}"))?;
                Bytes::from(buf)
            }
        };
        update(&self.state, |s| s.bytes += out.len() as u64);
        Ok(out)
    }
}

impl LocalObject for FileReader {
    fn call(&mut self, method: &str, args: &[Value]) -> Result<Value, Failure> {
        match method {
            "read" => {
                let n = args
                    .first()
                    .and_then(Value::as_i64)
                    .filter(|n| *n >= 0)
                    .unwrap_or(0) as usize;
                self.read(n).map(Value::Bytes).map_err(failure)
            }
            "close" => {
                update(&self.state, |s| s.closed = true);
                Ok(Value::None)
            }
            other => Err(crate::conn::no_such_method(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("pbmaster-objects-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn target(dir: &std::path::Path, name: &str) -> Target {
        Target {
            dir: dir.to_path_buf(),
            name: name.into(),
        }
    }

    #[test]
    fn writer_truncates_at_max_size_and_renames_on_close() {
        let d = tmp("writer");
        fs::create_dir(d.join("out")).unwrap();
        let state = Shared::default();
        let dest = target(&d.join("out"), "f.bin");
        let mut w = FileWriter::new(&dest, Some(5), Some(0o600), state.clone()).unwrap();
        w.call("write", &[Value::bytes(&b"abc"[..])]).unwrap();
        assert!(
            !d.join("out/f.bin").exists(),
            "nothing at the destination before close"
        );
        w.call("write", &[Value::bytes(&b"defg"[..])]).unwrap();
        w.call("close", &[]).unwrap();
        w.call(
            "utime",
            &[Value::Tuple(vec![Value::Float(1e9), Value::Float(1.5e9)])],
        )
        .unwrap();
        assert_eq!(fs::read(d.join("out/f.bin")).unwrap(), b"abcde");
        let s = state.lock().unwrap().clone();
        assert!(s.truncated && s.closed);
        let meta = fs::metadata(d.join("out/f.bin")).unwrap();
        assert_eq!(
            meta.modified().unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_500_000_000)
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            fs::read_dir(d.join("out")).unwrap().count(),
            1,
            "no part file left"
        );
    }

    #[test]
    fn the_destination_link_is_replaced_not_followed() {
        let d = tmp("destlink");
        fs::write(d.join("secret"), "secret").unwrap();
        fs::create_dir(d.join("out")).unwrap();
        std::os::unix::fs::symlink(d.join("secret"), d.join("out/f")).unwrap();
        let mut w =
            FileWriter::new(&target(&d.join("out"), "f"), None, None, Shared::default()).unwrap();
        w.call("write", &[Value::bytes(&b"new"[..])]).unwrap();
        w.call("close", &[]).unwrap();
        assert_eq!(fs::read_to_string(d.join("secret")).unwrap(), "secret");
        assert!(!fs::symlink_metadata(d.join("out/f"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn an_unclosed_writer_leaves_nothing_behind() {
        let d = tmp("unclosed");
        let w = FileWriter::new(&target(&d, "f"), None, None, Shared::default()).unwrap();
        drop(w);
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0);
    }

    #[test]
    fn reader_serves_blocks_then_empty() {
        let mut r = FileReader::from_bytes(b"hello world".to_vec(), Shared::default());
        assert_eq!(
            r.call("read", &[Value::int(5)]).unwrap(),
            Value::bytes(&b"hello"[..])
        );
        assert_eq!(
            r.call("read", &[Value::int(100)]).unwrap(),
            Value::bytes(&b" world"[..])
        );
        assert_eq!(
            r.call("read", &[Value::int(100)]).unwrap(),
            Value::bytes(&b""[..])
        );
        assert!(r.call("frobnicate", &[]).is_err());
    }
}
