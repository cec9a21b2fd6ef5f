//! The transfer root: the one folder master-side transfer paths (`master_src`,
//! `master_dest`) live in, `data_dir/files`. It holds neither the database nor the
//! logs, so a path that came from outside cannot reach them.
//!
//! A path is checked after interpolation: it must be relative, name something, and
//! have no `..` component. It is then walked from the root one component at a time
//! with `symlink_metadata`, and any symbolic link on the way (or at the end) is
//! refused, so nothing below the root can lead out of it. The root itself is the
//! administrator's: it may be a link to another disk. Folders that are missing are
//! created only after the check, one at a time, so a refused path leaves nothing.
//! Files are opened without following a link (`O_NOFOLLOW`), new files are created
//! exclusively (`create_new`) under a name of their own, then renamed into place.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// The transfer root's folder in `data_dir`.
pub const ROOT_DIR: &str = "files";

/// The folder master-side transfer paths resolve in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRoot {
    dir: PathBuf,
}

/// A file to write: its folder (checked, and created if it was missing) and its name.
/// Nothing is at the path, or a regular file that the new one will replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub dir: PathBuf,
    pub name: OsString,
}

impl Target {
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// A sibling that nothing else names: `.NAME.RANDOM.EXT`, for a part file or an
    /// archive on its way.
    pub fn sibling(&self, ext: &str) -> Target {
        let mut random = [0u8; 8];
        // Without randomness the process id and time still keep builds apart; the
        // name is created exclusively in any case.
        if getrandom::fill(&mut random).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            random = (t ^ u64::from(std::process::id())).to_le_bytes();
        }
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let mut name = OsString::from(".");
        name.push(&self.name);
        name.push(format!(".{hex}.{ext}"));
        Target {
            dir: self.dir.clone(),
            name,
        }
    }
}

impl TransferRoot {
    pub fn new(dir: PathBuf) -> TransferRoot {
        TransferRoot { dir }
    }

    /// `data_dir/files`.
    pub fn in_data_dir(data_dir: &Path) -> TransferRoot {
        TransferRoot::new(data_dir.join(ROOT_DIR))
    }

    /// Opens the file at `p` for reading: a regular file, reached through real folders.
    pub fn open_file(&self, p: &str) -> Result<File, String> {
        let parts = self.parts(p)?;
        let (name, folders) = parts.split_last().ok_or_else(|| no_name(p))?;
        let dir = descend(&self.dir, folders, false).map_err(|e| e.explain(&subject(p)))?;
        let path = dir.join(name);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => return Err(link(&subject(p), &path_of(&parts))),
            Ok(m) if !m.is_file() => {
                return Err(format!("master path {p:?} is not a regular file"))
            }
            Ok(_) => {}
            Err(e) => return Err(format!("cannot open master path {p:?}: {e}")),
        }
        // Non-blocking so that a file swapped for a FIFO cannot hang the open.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => link(&subject(p), &path_of(&parts)),
                _ => format!("cannot open master path {p:?}: {e}"),
            })?;
        match file.metadata() {
            Ok(m) if m.is_file() => Ok(file),
            Ok(_) => Err(format!("master path {p:?} is not a regular file")),
            Err(e) => Err(format!("cannot open master path {p:?}: {e}")),
        }
    }

    /// Where a file at `p` is written: its folders are created as needed; a link or a
    /// folder at `p` is refused.
    pub fn file_target(&self, p: &str) -> Result<Target, String> {
        let target = self.target(p)?;
        match fs::symlink_metadata(target.path()) {
            Ok(m) if m.is_dir() => Err(format!("master path {p:?} is a directory")),
            _ => Ok(target),
        }
    }

    /// Where a directory upload to `p` is unpacked: a folder, or nothing yet.
    pub fn dir_target(&self, p: &str) -> Result<Target, String> {
        let target = self.target(p)?;
        match fs::symlink_metadata(target.path()) {
            Ok(m) if !m.is_dir() => Err(format!("master path {p:?} is not a directory")),
            _ => Ok(target),
        }
    }

    /// `p`'s folder, created as needed, and its last component, which is not a link.
    fn target(&self, p: &str) -> Result<Target, String> {
        let parts = self.parts(p)?;
        let (name, folders) = parts.split_last().ok_or_else(|| no_name(p))?;
        // Every folder that exists is checked before anything is created (past a
        // missing one, nothing exists).
        match descend(&self.dir, folders, false) {
            Ok(_) | Err(Walk::Missing(_)) => {}
            Err(e) => return Err(e.explain(&subject(p))),
        }
        fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create the transfer root: {e}"))?;
        let dir = descend(&self.dir, folders, true).map_err(|e| e.explain(&subject(p)))?;
        let target = Target {
            dir,
            name: name.to_os_string(),
        };
        match fs::symlink_metadata(target.path()) {
            Ok(m) if m.file_type().is_symlink() => Err(link(&subject(p), &path_of(&parts))),
            _ => Ok(target),
        }
    }

    /// The components of `p`, or why it cannot be under the root.
    fn parts<'p>(&self, p: &'p str) -> Result<Vec<&'p OsStr>, String> {
        let path = Path::new(p);
        if path.is_absolute() {
            return Err(format!(
                "master path {p:?} is absolute; master paths are relative to the transfer root {}",
                self.dir.display()
            ));
        }
        relative_parts(path).map_err(|why| format!("master path {p:?} {why}"))
    }
}

/// The normal components of a relative path (`.` dropped); refuses `..` and a path
/// that names nothing.
pub fn relative_parts(path: &Path) -> Result<Vec<&OsStr>, String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(name) => parts.push(name),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err("has a \"..\" component: it must stay inside its root".into())
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("is absolute: it must be relative to its root".into())
            }
        }
    }
    if parts.is_empty() {
        return Err("names nothing".into());
    }
    Ok(parts)
}

/// Why a walk stopped, with the components up to the one at fault.
#[derive(Debug)]
pub enum Walk {
    Link(PathBuf),
    NotADirectory(PathBuf),
    Missing(PathBuf),
    Io(PathBuf, io::Error),
}

impl Walk {
    /// The reason, for `subject` (`master path "x"`, `archive entry "y"`).
    pub fn explain(&self, subject: &str) -> String {
        match self {
            Walk::Link(at) => link(subject, at),
            Walk::NotADirectory(at) => format!("{subject}: {:?} is not a directory", at.display()),
            Walk::Missing(at) => format!("{subject}: {:?} does not exist", at.display()),
            Walk::Io(at, e) => format!("{subject}: {:?}: {e}", at.display()),
        }
    }
}

/// Walks `parts` down from `base`, each one a real folder (not a link). With `create`,
/// a missing folder is made (never through a link: `create_dir` does not follow one)
/// and checked again; without, a missing one stops the walk.
pub fn descend(base: &Path, parts: &[&OsStr], create: bool) -> Result<PathBuf, Walk> {
    let mut dir = base.to_path_buf();
    let mut rel = PathBuf::new();
    for part in parts {
        dir.push(part);
        rel.push(part);
        let meta = match fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                match fs::create_dir(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Walk::Io(rel, e)),
                }
                fs::symlink_metadata(&dir).map_err(|e| Walk::Io(rel.clone(), e))?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Walk::Missing(rel)),
            Err(e) => return Err(Walk::Io(rel, e)),
            Ok(m) => m,
        };
        if meta.file_type().is_symlink() {
            return Err(Walk::Link(rel));
        }
        if !meta.is_dir() {
            return Err(Walk::NotADirectory(rel));
        }
    }
    Ok(dir)
}

/// Creates `path` for writing, exclusively: an existing file or link there is an
/// error, and a link is never followed.
pub fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

fn path_of(parts: &[&OsStr]) -> PathBuf {
    parts.iter().collect()
}

/// `subject: "at" is a symbolic link; ...`.
pub fn link(subject: &str, at: &Path) -> String {
    format!(
        "{subject}: {:?} is a symbolic link; links under the transfer root are not followed",
        at.display()
    )
}

fn subject(p: &str) -> String {
    format!("master path {p:?}")
}

fn no_name(p: &str) -> String {
    format!("master path {p:?} names nothing")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fresh folder with a transfer root in it and a secret next to the root.
    fn setup(name: &str) -> (PathBuf, TransferRoot) {
        let d = std::env::temp_dir().join(format!("pbmaster-root-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("files")).unwrap();
        fs::write(d.join("secret"), "secret").unwrap();
        (d.clone(), TransferRoot::in_data_dir(&d))
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn accepts_relative_paths_and_creates_their_folders() {
        let (d, root) = setup("ok");
        let t = root.file_target("out/./1/back.bin").unwrap();
        assert_eq!(t.dir, d.join("files/out/1"));
        assert_eq!(t.name, "back.bin");
        assert!(d.join("files/out/1").is_dir());
        fs::write(t.path(), "x").unwrap();
        assert!(root.open_file("out/1/back.bin").is_ok());
        assert!(root.dir_target("out/tree").is_ok());
    }

    #[test]
    fn rejects_absolute_paths_and_parent_components() {
        let (d, root) = setup("lexical");
        for p in [
            "/etc/passwd",
            "../secret",
            "a/../../secret",
            "a/..",
            "",
            ".",
            "./",
        ] {
            assert!(root.file_target(p).is_err(), "{p:?}");
            assert!(root.open_file(p).is_err(), "{p:?}");
        }
        let e = root.open_file("/etc/passwd").unwrap_err();
        assert!(e.contains("is absolute"), "{e}");
        let e = root.file_target("../pbmaster.sqlite").unwrap_err();
        assert!(e.contains("\"..\""), "{e}");
        assert!(entries(&d.join("files")).is_empty(), "nothing created");
        assert_eq!(fs::read_to_string(d.join("secret")).unwrap(), "secret");
    }

    #[test]
    fn rejects_a_link_in_the_middle() {
        let (d, root) = setup("middle");
        symlink(&d, d.join("files/up")).unwrap();
        let e = root.open_file("up/secret").unwrap_err();
        assert!(e.contains("\"up\" is a symbolic link"), "{e}");
        let e = root.file_target("up/new/file").unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(!d.join("new").exists(), "nothing created through the link");
        // A link further down, below folders that do not exist yet: refused before
        // any folder is made.
        fs::create_dir(d.join("files/a")).unwrap();
        symlink("/", d.join("files/a/b")).unwrap();
        assert!(root.file_target("a/b/c/d").is_err());
        assert_eq!(entries(&d.join("files/a")), vec!["b"]);
    }

    #[test]
    fn rejects_a_link_as_the_last_component() {
        let (d, root) = setup("last");
        symlink(d.join("secret"), d.join("files/f")).unwrap();
        let e = root.open_file("f").unwrap_err();
        assert!(e.contains("\"f\" is a symbolic link"), "{e}");
        assert!(root.file_target("f").is_err());
        assert!(root.dir_target("f").is_err());
        symlink(&d, d.join("files/dir")).unwrap();
        assert!(root.dir_target("dir").is_err());
        assert_eq!(fs::read_to_string(d.join("secret")).unwrap(), "secret");
    }

    #[test]
    fn rejects_what_is_not_a_regular_file() {
        let (d, root) = setup("kinds");
        fs::create_dir(d.join("files/dir")).unwrap();
        assert!(root
            .open_file("dir")
            .unwrap_err()
            .contains("not a regular file"));
        assert!(root
            .file_target("dir")
            .unwrap_err()
            .contains("is a directory"));
        fs::write(d.join("files/plain"), "x").unwrap();
        assert!(root.dir_target("plain").is_err());
        assert!(root
            .file_target("plain/x")
            .unwrap_err()
            .contains("not a directory"));
    }

    #[test]
    fn exclusive_creation_does_not_follow_a_planted_link() {
        let (d, root) = setup("part");
        let t = root.file_target("f").unwrap();
        let part = t.sibling("part");
        assert!(part.name.to_string_lossy().starts_with(".f."));
        assert_ne!(part, t.sibling("part"), "each part file has its own name");
        symlink(d.join("secret"), part.path()).unwrap();
        let e = create_exclusive(&part.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        symlink(d.join("absent"), d.join("files/dangling")).unwrap();
        assert!(create_exclusive(&d.join("files/dangling")).is_err());
        assert!(
            !d.join("absent").exists(),
            "a dangling link is not created through"
        );
        assert_eq!(fs::read_to_string(d.join("secret")).unwrap(), "secret");
    }
}
