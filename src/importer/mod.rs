//! `pbmaster import-buildbot`: turns a buildbot master.cfg into pbmaster TOML. The
//! config is executed by the real buildbot package (in a venv pbmaster manages), as
//! the buildbot master would; a helper script describes `BuildmasterConfig` as JSON,
//! and the rest happens here. What cannot be translated is listed on stderr with its
//! place and left in the output as `# TODO(import): ...`.

mod doc;
mod docker;
mod latent;
mod poller;
mod py;
mod render;
mod schedule;
mod schedulers;
mod steps;
mod translate;
mod venv;
mod workers;

pub use translate::{translate, Translation};
pub use venv::{default_venv, ready as venv_ready, setup_venv};

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The helper run inside the venv's Python.
const HELPER: &str = include_str!("helper.py");

/// The most JSON the helper may print.
const MAX_DESCRIPTION: u64 = 64 * 1024 * 1024;

/// Runs the helper on `path` (a master directory or its config file) and returns the
/// description of `BuildmasterConfig`.
pub fn describe(venv: &Path, path: &Path) -> Result<serde_json::Value, String> {
    let (basedir, file) = if path.is_dir() {
        (path.to_path_buf(), "master.cfg".to_string())
    } else {
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .ok_or_else(|| format!("{}: not a file name", path.display()))?
            .to_string();
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        (dir.to_path_buf(), file)
    };
    let basedir = basedir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", basedir.display()))?;
    if !basedir.join(&file).is_file() {
        return Err(format!(
            "{}: no such config file",
            basedir.join(&file).display()
        ));
    }
    let python = venv.join("bin/python");
    let mut child = Command::new(&python)
        .args(["-I", "-"])
        .arg(&basedir)
        .arg(&file)
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(HELPER.as_bytes())
            .map_err(|e| format!("the helper's stdin: {e}"))?;
    }
    let mut out = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        stdout
            .take(MAX_DESCRIPTION + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("the helper's output: {e}"))?;
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!(
            "buildbot could not load {} (see above)",
            basedir.join(&file).display()
        ));
    }
    if out.len() as u64 > MAX_DESCRIPTION {
        return Err("the config's description is larger than 64 MiB".into());
    }
    serde_json::from_slice(&out).map_err(|e| format!("the helper's output is not JSON: {e}"))
}

/// The whole command: prints TODOs and the summary on stderr, writes the TOML to
/// `out` (and the secrets it refers to next to it) or to stdout.
pub fn run(path: &Path, out: Option<&Path>, venv: &Path) -> Result<usize, String> {
    let description = describe(venv, path)?;
    for w in description["warnings"].as_array().into_iter().flatten() {
        eprintln!("buildbot: {}", w.as_str().unwrap_or("?"));
    }
    let config = description["config"]
        .as_object()
        .ok_or("the helper gave no config")?;
    let t = translate(config);
    let preamble = vec![
        format!(
            "Imported from {} by `pbmaster import-buildbot`.",
            path.display()
        ),
        "Check it with `pbmaster check --config FILE`; TODO(import) marks what was not translated."
            .to_string(),
    ];
    let text = t.doc.render(&preamble);
    for todo in &t.todos {
        eprintln!("TODO: {}: {}", todo.location, todo.what);
    }
    match out {
        Some(file) => {
            let dir = file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            write_secrets(dir, &t)?;
            std::fs::write(file, text).map_err(|e| format!("{}: {e}", file.display()))?;
        }
        None => {
            if !t.secret_files.is_empty() {
                eprintln!(
                    "note: passwords were not written ({} files the output refers to); use -o FILE to write them next to it",
                    t.secret_files.len()
                );
            }
            print!("{text}");
        }
    }
    eprintln!("{} translated, {} TODO", t.translated, t.todos.len());
    Ok(t.todos.len())
}

/// Writes each secret to its file under `dir` (folder 0700, files 0600).
fn write_secrets(dir: &Path, t: &Translation) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    for (rel, value) in &t.secret_files {
        let path: PathBuf = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        f.write_all(value.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
