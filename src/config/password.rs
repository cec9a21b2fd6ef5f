//! Where a password comes from: the config itself, an environment variable, or a
//! file read at start.

use std::fmt;
use std::path::{Path, PathBuf};

/// Exactly one of a login's three password keys.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordSource {
    Value(String),
    /// The name of an environment variable.
    Env(String),
    /// A file holding the password (its trailing newline ignored).
    File(PathBuf),
}

impl fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Configs end up in logs; passwords must not.
            PasswordSource::Value(_) => f.write_str("Value(..)"),
            PasswordSource::Env(var) => write!(f, "Env({var:?})"),
            PasswordSource::File(path) => write!(f, "File({path:?})"),
        }
    }
}

impl PasswordSource {
    /// The source when exactly one of the keys is set.
    pub(super) fn one_of(
        value: &Option<String>,
        env: &Option<String>,
        file: &Option<PathBuf>,
    ) -> Option<PasswordSource> {
        match (value, env, file) {
            (Some(v), None, None) => Some(PasswordSource::Value(v.clone())),
            (None, Some(var), None) => Some(PasswordSource::Env(var.clone())),
            (None, None, Some(path)) => Some(PasswordSource::File(path.clone())),
            _ => None,
        }
    }

    /// The password; an unset variable or an unreadable file is an error.
    pub fn read(&self) -> Result<String, String> {
        match self {
            PasswordSource::Value(v) => Ok(v.clone()),
            PasswordSource::Env(var) => {
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))
            }
            PasswordSource::File(path) => Ok(std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_owned()),
        }
    }

    /// Makes a relative file relative to `base` (the config file's folder).
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        if let PasswordSource::File(path) = self {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }
}
