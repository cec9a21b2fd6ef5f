//! Unpacks a directory upload's tar stream into its folder under the transfer root.
//!
//! The archive comes from the worker, so it is read twice: first to check every entry
//! (only files and folders, paths inside the destination, at most [`MAX_ENTRIES`]
//! entries and `limit` bytes unpacked), and only then to write them, so an archive
//! that breaks a rule leaves nothing. Links (symbolic or hard), devices and FIFOs are
//! refused rather than recreated. Each file is written to a part file of its own,
//! created exclusively, and renamed into place; no link already in the destination is
//! followed (meeting one stops the unpacking there).

use super::root::{create_exclusive, descend, link, Target, Walk};
use crate::config::Compression;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path};
use std::time::{Duration, UNIX_EPOCH};
use tar::EntryType;

/// Most entries one directory upload may hold: each costs a few system calls and an
/// inode, whatever its size.
pub const MAX_ENTRIES: u64 = 100_000;

/// Why an archive was not unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnpackError {
    /// An entry breaks the rules on what a directory upload holds and where it goes
    /// (a link, a `..`, a link on the way): the step ends in `exception`.
    Refused(String),
    /// Too large, unreadable, or refused by the file system: the step fails.
    Failed(String),
}

impl UnpackError {
    pub fn reason(&self) -> &str {
        match self {
            UnpackError::Refused(r) | UnpackError::Failed(r) => r,
        }
    }
}

type Result<T, E = UnpackError> = std::result::Result<T, E>;

fn failed(why: String) -> UnpackError {
    UnpackError::Failed(why)
}

/// A walk that met a link was refused; any other stop is a failure.
fn walk_error(e: Walk, subject: &str) -> UnpackError {
    match e {
        Walk::Link(_) => UnpackError::Refused(e.explain(subject)),
        other => UnpackError::Failed(other.explain(subject)),
    }
}

/// Unpacks `archive` into `dest` (created if missing), then removes the archive.
pub fn extract_tar(
    archive: &Path,
    dest: &Target,
    compression: Compression,
    limit: u64,
) -> Result<()> {
    extract_at_most(archive, dest, compression, limit, MAX_ENTRIES)
}

fn extract_at_most(
    archive: &Path,
    dest: &Target,
    compression: Compression,
    limit: u64,
    max_entries: u64,
) -> Result<()> {
    let result = check(archive, compression, limit, max_entries)
        .and_then(|()| unpack(archive, dest, compression));
    let _ = fs::remove_file(archive);
    result
}

type Archive = tar::Archive<Box<dyn Read>>;

fn open(archive: &Path, compression: Compression) -> Result<Archive> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(archive)
        .map_err(|e| failed(format!("cannot open the uploaded archive: {e}")))?;
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(file)),
        Compression::Bzip2 => Box::new(bzip2::read::BzDecoder::new(file)),
    };
    Ok(tar::Archive::new(reader))
}

/// What an entry becomes.
enum Kind {
    File,
    Folder,
    /// Metadata for the archive as a whole.
    Ignored,
}

fn kind(path: &Path, t: EntryType) -> Result<Kind> {
    let what = match t {
        EntryType::Regular | EntryType::Continuous => return Ok(Kind::File),
        EntryType::Directory => return Ok(Kind::Folder),
        EntryType::XGlobalHeader => return Ok(Kind::Ignored),
        EntryType::Symlink => "a symbolic link",
        EntryType::Link => "a hard link",
        EntryType::Char | EntryType::Block => "a device",
        EntryType::Fifo => "a FIFO",
        _ => "of an unknown type",
    };
    Err(UnpackError::Refused(format!(
        "archive entry {:?} is {what}; a directory upload holds only files and folders",
        path.display()
    )))
}

/// An entry's path as components under the destination. A leading `/` is dropped,
/// as tar does (the worker names the top folder `/`); `..` is refused.
fn parts(path: &Path) -> Result<Vec<&OsStr>> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(name) => parts.push(name),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(UnpackError::Refused(format!(
                    "archive entry {:?} has a \"..\" component: it must stay inside the destination",
                    path.display()
                )))
            }
        }
    }
    Ok(parts)
}

/// Reads the whole archive and refuses it if any entry breaks the rules.
fn check(archive: &Path, compression: Compression, limit: u64, max_entries: u64) -> Result<()> {
    let mut tar = open(archive, compression)?;
    let mut count = 0u64;
    let mut total = 0u64;
    for entry in tar.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        count += 1;
        if count > max_entries {
            return Err(failed(format!(
                "the archive has more than {max_entries} entries"
            )));
        }
        let path = entry.path().map_err(bad)?.into_owned();
        let kind = kind(&path, entry.header().entry_type())?;
        let parts = parts(&path)?;
        if matches!(kind, Kind::File) {
            if parts.is_empty() {
                return Err(UnpackError::Refused(format!(
                    "archive entry {:?} names no file",
                    path.display()
                )));
            }
            total = total.saturating_add(entry.size());
            if total > limit {
                return Err(failed(format!(
                    "archive unpacks to more than {limit} bytes"
                )));
            }
        }
    }
    Ok(())
}

fn bad(e: io::Error) -> UnpackError {
    failed(format!("bad archive: {e}"))
}

/// Writes the checked archive's folders and files under `dest`.
fn unpack(archive: &Path, dest: &Target, compression: Compression) -> Result<()> {
    let top = descend(&dest.dir, &[dest.name.as_os_str()], true)
        .map_err(|e| walk_error(e, &format!("master path {:?}", dest.path().display())))?;
    let mut tar = open(archive, compression)?;
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let subject = format!("archive entry {:?}", path.display());
        let parts = parts(&path)?;
        match kind(&path, entry.header().entry_type())? {
            Kind::Ignored => {}
            Kind::Folder => {
                descend(&top, &parts, true).map_err(|e| walk_error(e, &subject))?;
            }
            Kind::File => {
                let Some((name, folders)) = parts.split_last() else {
                    continue; // refused by the check
                };
                let dir = descend(&top, folders, true).map_err(|e| walk_error(e, &subject))?;
                let target = Target {
                    dir,
                    name: name.to_os_string(),
                };
                write_file(&mut entry, &target, &subject)?;
            }
        }
    }
    Ok(())
}

/// One file: into a fresh part file, then renamed over whatever regular file was there.
fn write_file(entry: &mut tar::Entry<Box<dyn Read>>, target: &Target, subject: &str) -> Result<()> {
    match fs::symlink_metadata(target.path()) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(UnpackError::Refused(link(subject, Path::new(&target.name))))
        }
        Ok(m) if m.is_dir() => return Err(failed(format!("{subject}: a folder is in the way"))),
        _ => {}
    }
    let part = target.sibling("part").path();
    let mut file = create_exclusive(&part)
        .map_err(|e| failed(format!("{subject}: cannot create a part file: {e}")))?;
    let result = fill(entry, &mut file)
        .and_then(|()| fs::rename(&part, target.path()))
        .map_err(|e| failed(format!("{subject}: {e}")));
    if result.is_err() {
        let _ = fs::remove_file(&part);
    }
    result
}

fn fill(entry: &mut tar::Entry<Box<dyn Read>>, file: &mut File) -> io::Result<()> {
    io::copy(entry, file)?;
    let header = entry.header();
    if let Ok(mode) = header.mode() {
        file.set_permissions(fs::Permissions::from_mode(mode & 0o777))?;
    }
    if let Ok(mtime) = header.mtime() {
        file.set_modified(UNIX_EPOCH + Duration::from_secs(mtime.min(100_000_000_000)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pbmaster-unpack-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn header(t: EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(t);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    /// An archive of `(path, type)`; files hold "data".
    fn archive(d: &Path, entries: &[(&str, EntryType)]) -> PathBuf {
        let path = d.join("a.tar");
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        for (name, t) in entries {
            match t {
                EntryType::Regular => {
                    let mut h = header(*t, 4);
                    b.append_data(&mut h, name, &b"data"[..]).unwrap();
                }
                EntryType::Symlink | EntryType::Link => {
                    let mut h = header(*t, 0);
                    b.append_link(&mut h, name, "/etc/passwd").unwrap();
                }
                // The worker names its top folder "/", which tar::Builder refuses.
                _ if name.starts_with('/') => {
                    let mut h = header(*t, 0);
                    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                    h.set_cksum();
                    b.append(&h, io::empty()).unwrap();
                }
                _ => {
                    let mut h = header(*t, 0);
                    b.append_data(&mut h, name, io::empty()).unwrap();
                }
            }
        }
        b.finish().unwrap();
        path
    }

    fn dest(d: &Path) -> Target {
        Target {
            dir: d.to_path_buf(),
            name: "dest".into(),
        }
    }

    #[test]
    fn unpacks_files_and_folders_over_an_earlier_upload() {
        let d = tmp("ok");
        let entries = [
            ("/", EntryType::Directory),
            ("ok", EntryType::Directory),
            ("ok/file.txt", EntryType::Regular),
            ("top.txt", EntryType::Regular),
        ];
        for _ in 0..2 {
            let a = archive(&d, &entries);
            extract_tar(&a, &dest(&d), Compression::None, 100).unwrap();
            assert!(!a.exists(), "the archive is removed");
        }
        assert_eq!(fs::read(d.join("dest/ok/file.txt")).unwrap(), b"data");
        assert_eq!(fs::read(d.join("dest/top.txt")).unwrap(), b"data");
        assert_eq!(
            fs::read_dir(d.join("dest/ok")).unwrap().count(),
            1,
            "no part files"
        );
    }

    #[test]
    fn rejects_links_and_special_files_leaving_nothing() {
        for t in [EntryType::Symlink, EntryType::Link, EntryType::Fifo] {
            let d = tmp("links");
            let a = archive(&d, &[("first.txt", EntryType::Regular), ("x", t)]);
            let e = extract_tar(&a, &dest(&d), Compression::None, 100).unwrap_err();
            assert!(matches!(e, UnpackError::Refused(_)), "{e:?}");
            let e = e.reason();
            assert!(e.contains("archive entry \"x\" is a"), "{e}");
            assert!(!d.join("dest").exists(), "nothing unpacked for {t:?}");
            assert!(!a.exists());
        }
    }

    #[test]
    fn rejects_parent_components_and_oversize() {
        let d = tmp("escape");
        let a = archive(&d, &[("ok.txt", EntryType::Regular)]);
        // tar::Builder refuses "..", so the name is written into the header directly.
        let mut bytes = fs::read(&a).unwrap();
        bytes[..6].copy_from_slice(b"../x\0\0");
        let mut h = tar::Header::from_byte_slice(&bytes[..512]).clone();
        h.set_cksum();
        bytes[..512].copy_from_slice(h.as_bytes());
        fs::write(&a, &bytes).unwrap();
        let e = extract_tar(&a, &dest(&d), Compression::None, 100).unwrap_err();
        assert!(
            matches!(&e, UnpackError::Refused(r) if r.contains("\"..\"")),
            "{e:?}"
        );
        assert!(!d.join("dest").exists() && !d.join("x").exists());

        let a = archive(&d, &[("a", EntryType::Regular), ("b", EntryType::Regular)]);
        let e = extract_tar(&a, &dest(&d), Compression::None, 7).unwrap_err();
        assert!(
            matches!(&e, UnpackError::Failed(r) if r.contains("more than 7 bytes")),
            "{e:?}"
        );
        assert!(!d.join("dest").exists());
    }

    #[test]
    fn rejects_too_many_entries() {
        let d = tmp("many");
        let entries = [("a", EntryType::Directory); 4];
        let a = archive(&d, &entries);
        let e = extract_at_most(&a, &dest(&d), Compression::None, 100, 3).unwrap_err();
        assert!(e.reason().contains("more than 3 entries"), "{e:?}");
        assert!(!d.join("dest").exists());
        let a = archive(&d, &entries[..3]);
        extract_at_most(&a, &dest(&d), Compression::None, 100, 3).unwrap();
    }

    #[test]
    fn does_not_follow_links_already_in_the_destination() {
        let d = tmp("planted");
        fs::create_dir_all(d.join("dest")).unwrap();
        fs::create_dir_all(d.join("outside")).unwrap();
        symlink(d.join("outside"), d.join("dest/sub")).unwrap();
        symlink(d.join("outside/f"), d.join("dest/f")).unwrap();
        let a = archive(&d, &[("sub/x", EntryType::Regular)]);
        let e = extract_tar(&a, &dest(&d), Compression::None, 100).unwrap_err();
        assert!(
            matches!(&e, UnpackError::Refused(r) if r.contains("symbolic link")),
            "{e:?}"
        );
        let a = archive(&d, &[("f", EntryType::Regular)]);
        let e = extract_tar(&a, &dest(&d), Compression::None, 100).unwrap_err();
        assert!(
            matches!(&e, UnpackError::Refused(r) if r.contains("symbolic link")),
            "{e:?}"
        );
        assert_eq!(fs::read_dir(d.join("outside")).unwrap().count(), 0);
    }
}
