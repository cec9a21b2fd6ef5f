//! Worker and change-source passwords from the configuration, resolved once at start.

use crate::config::Config;
use crate::conn::{Auth, Role};
use std::collections::HashMap;

/// Name → password, read from the config's values, environment variables or files.
#[derive(Clone)]
pub struct ConfigAuth {
    passwords: HashMap<String, (Vec<u8>, Role)>,
}

impl std::fmt::Debug for ConfigAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConfigAuth({} workers)", self.passwords.len())
    }
}

impl ConfigAuth {
    /// Resolves every worker's password; an unset variable or unreadable file is an error.
    pub fn from_config(config: &Config) -> Result<ConfigAuth, String> {
        let mut passwords = HashMap::new();
        for w in &config.workers {
            let name = w.name.get_ref();
            let pw = if let Some(p) = &w.password {
                p.clone()
            } else if let Some(var) = &w.password_env {
                std::env::var(var).map_err(|_| {
                    format!("worker {name:?}: environment variable {var} is not set")
                })?
            } else if let Some(file) = &w.password_file {
                std::fs::read_to_string(file)
                    .map_err(|e| format!("worker {name:?}: cannot read {}: {e}", file.display()))?
                    .trim_end_matches(['\n', '\r'])
                    .to_owned()
            } else {
                return Err(format!("worker {name:?} has no password"));
            };
            passwords.insert(name.clone(), (pw.into_bytes(), Role::Worker));
        }
        let change_source = config.changes.as_ref().map(|c| c.pb_login()).transpose()?;
        if let Some((user, pw)) = change_source.flatten() {
            passwords.insert(user, (pw.into_bytes(), Role::ChangeSource));
        }
        Ok(ConfigAuth { passwords })
    }
}

impl Auth for ConfigAuth {
    fn lookup(&self, name: &str) -> Option<(Vec<u8>, Role)> {
        self.passwords.get(name).cloned()
    }
}
