//! File-system commands on the worker (mkdir, rmdir, rm, cpdir, stat, glob, listdir),
//! with the argument names each worker generation takes. Paths are relative to the
//! builder's directory on the worker.

use super::properties::Properties;
use crate::config::Step;
use crate::worker::CommandVersion;
use pbwire::jelly::Value;
use std::collections::BTreeMap;

/// A command name and its arguments, ready for `startCommand`.
#[derive(Debug, Clone, PartialEq)]
pub struct FsCommand {
    pub name: &'static str,
    pub args: Vec<(Value, Value)>,
}

/// A file-system command with its paths rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsOp {
    Mkdir {
        dir: String,
    },
    Rmdir {
        dir: String,
    },
    /// One file.
    Rm {
        path: String,
    },
    Cpdir {
        from_dir: String,
        to_dir: String,
    },
    Stat {
        file: String,
    },
    Glob {
        path: String,
    },
    Listdir {
        dir: String,
    },
}

/// A file-system step's command, rendered from the build's properties, and the
/// property its result goes to.
pub fn fs_op<'s>(step: &'s Step, props: &Properties) -> Result<(FsOp, Option<&'s str>), String> {
    let render = |s: &str| props.render(s).map_err(|e| e.to_string());
    Ok(match step {
        Step::Mkdir(s) => (
            FsOp::Mkdir {
                dir: render(&s.dir)?,
            },
            None,
        ),
        Step::Rmdir(s) => (
            FsOp::Rmdir {
                dir: render(&s.dir)?,
            },
            None,
        ),
        Step::Rm(s) => (
            FsOp::Rm {
                path: render(&s.path)?,
            },
            None,
        ),
        Step::Cpdir(s) => (
            FsOp::Cpdir {
                from_dir: render(&s.from_dir)?,
                to_dir: render(&s.to_dir)?,
            },
            None,
        ),
        Step::Stat(s) => (
            FsOp::Stat {
                file: render(&s.file)?,
            },
            s.property.as_deref(),
        ),
        Step::Glob(s) => (
            FsOp::Glob {
                path: render(&s.path)?,
            },
            s.property.as_deref(),
        ),
        Step::Listdir(s) => (
            FsOp::Listdir {
                dir: render(&s.dir)?,
            },
            s.property.as_deref(),
        ),
        _ => return Err("not a file-system step".into()),
    })
}

/// The command for `op`, or why the worker cannot run it.
pub fn fs_command(op: &FsOp, commands: &BTreeMap<String, String>) -> Result<FsCommand, String> {
    let t = |s: &str| Value::text(s);
    let version = |name: &str| commands.get(name).map(|v| CommandVersion::parse(v));
    let quiet = || (t("logEnviron"), Value::Bool(false));
    let (name, args) = match op {
        FsOp::Mkdir { dir } => ("mkdir", vec![(t("dir"), t(dir)), quiet()]),
        FsOp::Rmdir { dir } => ("rmdir", vec![(t("dir"), t(dir)), quiet()]),
        // rmfile came with command version 3.1; before it, rmdir removes files too.
        FsOp::Rm { path } if version("rmfile").is_some() => {
            ("rmfile", vec![(t("path"), t(path)), quiet()])
        }
        FsOp::Rm { path } => ("rmdir", vec![(t("dir"), t(path)), quiet()]),
        FsOp::Cpdir { from_dir, to_dir } => (
            "cpdir",
            vec![
                (t("fromdir"), t(from_dir)),
                (t("todir"), t(to_dir)),
                quiet(),
            ],
        ),
        FsOp::Stat { file } => ("stat", vec![(t("file"), t(file))]),
        FsOp::Glob { path } => ("glob", vec![(t("path"), t(path))]),
        FsOp::Listdir { dir } => ("listdir", vec![(t("dir"), t(dir))]),
    };
    if version(name).is_none() {
        return Err(format!(
            "worker is too old: it does not know the {name} command"
        ));
    }
    Ok(FsCommand { name, args })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rm_falls_back_to_rmdir_on_old_workers() {
        let p = FsOp::Rm {
            path: "out/x.txt".into(),
        };
        let new = fs_command(&p, &commands(&[("rmfile", "3.3"), ("rmdir", "3.3")])).unwrap();
        assert_eq!(new.name, "rmfile");
        let old = fs_command(&p, &commands(&[("rmdir", "2.16")])).unwrap();
        assert_eq!(old.name, "rmdir");
        assert_eq!(old.args[0], (Value::text("dir"), Value::text("out/x.txt")));
    }

    #[test]
    fn unknown_commands_are_refused() {
        let p = FsOp::Glob { path: "*.o".into() };
        let e = fs_command(&p, &commands(&[("shell", "2.16")])).unwrap_err();
        assert!(e.contains("glob"), "{e}");
    }
}
