//! File-system commands on the worker (mkdir, rmdir, rm, cpdir, stat, glob, listdir),
//! with the argument names each worker generation takes. Paths are relative to the
//! builder's directory on the worker.

use crate::config::StepKind;
use crate::worker::CommandVersion;
use pbwire::jelly::Value;
use std::collections::BTreeMap;

/// A command name and its arguments, ready for `startCommand`.
#[derive(Debug, Clone, PartialEq)]
pub struct FsCommand {
    pub name: &'static str,
    pub args: Vec<(Value, Value)>,
}

/// Rendered path arguments of a file-system step.
#[derive(Debug, Clone, Default)]
pub struct FsPaths {
    pub dir: Option<String>,
    pub path: Option<String>,
    pub from_dir: Option<String>,
    pub to_dir: Option<String>,
    pub file: Option<String>,
}

/// The command for `kind`, or why the worker cannot run it.
pub fn fs_command(
    kind: StepKind,
    p: &FsPaths,
    commands: &BTreeMap<String, String>,
) -> Result<FsCommand, String> {
    let t = |s: &str| Value::text(s);
    let s = |o: &Option<String>| t(o.as_deref().unwrap_or_default());
    let version = |name: &str| commands.get(name).map(|v| CommandVersion::parse(v));
    let (name, args) = match kind {
        StepKind::Mkdir => (
            "mkdir",
            vec![(t("dir"), s(&p.dir)), (t("logEnviron"), Value::Bool(false))],
        ),
        StepKind::Rmdir => (
            "rmdir",
            vec![(t("dir"), s(&p.dir)), (t("logEnviron"), Value::Bool(false))],
        ),
        // rmfile came with command version 3.1; before it, rmdir removes files too.
        StepKind::Rm if version("rmfile").is_some() => (
            "rmfile",
            vec![
                (t("path"), s(&p.path)),
                (t("logEnviron"), Value::Bool(false)),
            ],
        ),
        StepKind::Rm => (
            "rmdir",
            vec![
                (t("dir"), s(&p.path)),
                (t("logEnviron"), Value::Bool(false)),
            ],
        ),
        StepKind::Cpdir => (
            "cpdir",
            vec![
                (t("fromdir"), s(&p.from_dir)),
                (t("todir"), s(&p.to_dir)),
                (t("logEnviron"), Value::Bool(false)),
            ],
        ),
        StepKind::Stat => ("stat", vec![(t("file"), s(&p.file))]),
        StepKind::Glob => ("glob", vec![(t("path"), s(&p.path))]),
        StepKind::Listdir => ("listdir", vec![(t("dir"), s(&p.dir))]),
        other => return Err(format!("{other:?} is not a file-system command")),
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
        let p = FsPaths {
            path: Some("out/x.txt".into()),
            ..FsPaths::default()
        };
        let new = fs_command(
            StepKind::Rm,
            &p,
            &commands(&[("rmfile", "3.3"), ("rmdir", "3.3")]),
        )
        .unwrap();
        assert_eq!(new.name, "rmfile");
        let old = fs_command(StepKind::Rm, &p, &commands(&[("rmdir", "2.16")])).unwrap();
        assert_eq!(old.name, "rmdir");
        assert_eq!(old.args[0], (Value::text("dir"), Value::text("out/x.txt")));
    }

    #[test]
    fn unknown_commands_are_refused() {
        let p = FsPaths {
            path: Some("*.o".into()),
            ..FsPaths::default()
        };
        let e = fs_command(StepKind::Glob, &p, &commands(&[("shell", "2.16")])).unwrap_err();
        assert!(e.contains("glob"), "{e}");
    }
}
