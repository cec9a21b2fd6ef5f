//! The venv holding buildbot for the importer: made once, with every package pinned
//! (the same set as the buildbot 4.3.0 master the tests compare against).

use std::path::{Path, PathBuf};
use std::process::Command;

/// buildbot 4.3.0 and what it needs, pinned.
pub const BUILDBOT_PINS: &[&str] = &[
    "buildbot==4.3.0",
    "Twisted==26.10.0",
    "alembic==1.20.1",
    "attrs==26.1.0",
    "autobahn==26.10.2",
    "Automat==25.4.16",
    "cbor2==6.3.0",
    "cffi==2.1.1",
    "constantly==23.10.4",
    "croniter==7.0.0",
    "cryptography==50.0.2",
    "hyperlink==21.0.0",
    "idna==3.20",
    "Incremental==24.11.0",
    "Jinja2==3.1.6",
    "Mako==1.4.3",
    "MarkupSafe==3.0.4",
    "msgpack==1.2.4",
    "multipart==2.0.1",
    "packaging==26.4",
    "pycparser==3.12",
    "PyJWT==2.15.1",
    "pyOpenSSL==26.4.0",
    "python-dateutil==4.0.0",
    "PyYAML==6.0.4",
    "service-identity==26.1.0",
    "SQLAlchemy==2.1.9",
    "treq==26.7.0",
    "txaio==26.6.1",
    "typing_extensions==4.16.0",
    "tzdata==2026.6",
    "ujson==6.1.0",
    "unidiff==1.0.1",
    "zope.interface==8.7",
];

/// `$XDG_DATA_HOME/pbmaster/buildbot-venv`, else `~/.local/share/pbmaster/buildbot-venv`.
pub fn default_venv() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(data.join("pbmaster/buildbot-venv"))
}

/// Whether `venv` already has buildbot.
pub fn ready(venv: &Path) -> bool {
    venv.join("bin/python").is_file() && venv.join("bin/buildbot").is_file()
}

/// Creates the venv with `python` (python3 ≥ 3.9) and installs the pins.
pub fn setup_venv(venv: &Path, python: &str) -> Result<(), String> {
    eprintln!(
        "creating {} with buildbot 4.3.0 (pinned) ...",
        venv.display()
    );
    let run = |cmd: &mut Command| -> Result<(), String> {
        let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{cmd:?} failed ({status})"))
        }
    };
    run(Command::new(python).args(["-m", "venv"]).arg(venv))?;
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "--no-deps"])
        .args(BUILDBOT_PINS))?;
    Ok(())
}
