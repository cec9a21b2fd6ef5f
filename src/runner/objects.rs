//! The master-side objects of a transfer, answering the worker's calls: a writer that
//! fills a file (or a tar archive) and a reader that serves one.

use crate::config::Compression;
use crate::conn::LocalObject;
use bytes::Bytes;
use pbwire::jelly::{Failure, Value};
use std::fs::{self, File, FileTimes};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
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
/// optionally `utime((atime, mtime))`. Writes go to a hidden part file that is renamed
/// into place on close, so a failed upload never leaves a half file at the destination.
#[derive(Debug)]
pub struct FileWriter {
    dest: PathBuf,
    part: PathBuf,
    file: Option<File>,
    max_size: Option<u64>,
    mode: Option<u32>,
    state: Shared,
}

impl FileWriter {
    pub fn new(
        dest: PathBuf,
        max_size: Option<u64>,
        mode: Option<u32>,
        state: Shared,
    ) -> Result<FileWriter, String> {
        let dir = dest.parent().map(Path::to_path_buf).unwrap_or_default();
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let part = dir.join(format!(".{name}.part"));
        let file =
            File::create(&part).map_err(|e| format!("cannot create {}: {e}", part.display()))?;
        Ok(FileWriter {
            dest,
            part,
            file: Some(file),
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
        file.sync_all()
            .map_err(|e| format!("sync {}: {e}", self.part.display()))?;
        drop(file);
        if let Some(mode) = self.mode {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&self.part, fs::Permissions::from_mode(mode))
                .map_err(|e| format!("chmod: {e}"))?;
        }
        fs::rename(&self.part, &self.dest)
            .map_err(|e| format!("rename to {}: {e}", self.dest.display()))?;
        update(&self.state, |s| s.closed = true);
        Ok(())
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
        let file = File::options()
            .write(true)
            .open(&self.dest)
            .map_err(|e| format!("utime: {e}"))?;
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
    pub fn open(path: &Path, state: Shared) -> Result<FileReader, String> {
        let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(FileReader {
            source: Source::File(file),
            state,
        })
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

/// Unpacks an uploaded tar archive into `dest` and removes it. Entries that would land
/// outside `dest` are refused, and the unpacked size is capped at `limit` bytes so a
/// small compressed stream cannot fill the disk.
pub fn extract_tar(
    archive: &Path,
    dest: &Path,
    compression: Compression,
    limit: u64,
) -> Result<(), String> {
    let file = File::open(archive).map_err(|e| format!("cannot open the uploaded archive: {e}"))?;
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(file)),
        Compression::Bzip2 => Box::new(bzip2::read::BzDecoder::new(file)),
    };
    fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let mut tar = tar::Archive::new(reader);
    let mut total = 0u64;
    let result = (|| {
        for entry in tar.entries().map_err(|e| format!("bad archive: {e}"))? {
            let mut entry = entry.map_err(|e| format!("bad archive: {e}"))?;
            total = total.saturating_add(entry.size());
            if total > limit {
                return Err(format!("archive unpacks to more than {limit} bytes"));
            }
            let inside = entry.unpack_in(dest).map_err(|e| format!("unpack: {e}"))?;
            if !inside {
                return Err("archive entry points outside the destination".into());
            }
        }
        Ok(())
    })();
    let _ = fs::remove_file(archive);
    result
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

    #[test]
    fn writer_truncates_at_max_size_and_renames_on_close() {
        let d = tmp("writer");
        let state = Shared::default();
        let mut w =
            FileWriter::new(d.join("out/f.bin"), Some(5), Some(0o600), state.clone()).unwrap();
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
    }

    #[test]
    fn an_unclosed_writer_leaves_nothing_behind() {
        let d = tmp("unclosed");
        let w = FileWriter::new(d.join("f"), None, None, Shared::default()).unwrap();
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

    #[test]
    fn tar_entries_cannot_escape_and_size_is_capped() {
        let d = tmp("tar");
        let archive = d.join("a.tar");
        let mut b = tar::Builder::new(File::create(&archive).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "ok/file.txt", &b"data"[..]).unwrap();
        b.finish().unwrap();
        drop(b);
        extract_tar(&archive, &d.join("dest"), Compression::None, 100).unwrap();
        assert_eq!(fs::read(d.join("dest/ok/file.txt")).unwrap(), b"data");
        assert!(!archive.exists());

        let mut b = tar::Builder::new(File::create(&archive).unwrap());
        b.append_data(&mut h, "big.txt", &b"data"[..]).unwrap();
        b.finish().unwrap();
        drop(b);
        assert!(extract_tar(&archive, &d.join("dest2"), Compression::None, 3).is_err());
    }
}
