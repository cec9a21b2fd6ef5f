//! `[secrets]`: where the values of `%(secret:NAME)s` come from. They are read at
//! start (see `crate::secrets`); here only names and places are checked.

use super::error::Problems;
use super::file::SecretsTable;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `[secrets]`, checked.
#[derive(Debug, Clone, Default)]
pub struct SecretsConfig {
    /// Each regular file in this folder is a secret named by the file.
    pub dir: Option<PathBuf>,
    /// Secret name → the environment variable holding it.
    pub env: BTreeMap<String, String>,
}

/// Whether `name` may name a secret (and a file in the secrets folder).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

pub(super) fn secrets(table: Option<&SecretsTable>, problems: &mut Problems) -> SecretsConfig {
    let Some(table) = table else {
        return SecretsConfig::default();
    };
    let mut env = BTreeMap::new();
    for (name, var) in &table.env {
        if !valid_name(name.get_ref()) {
            problems.at(
                name.span(),
                format!(
                    "secret name {:?}: letters, digits, '_', '-' and '.' only",
                    name.get_ref()
                ),
            );
        }
        env.insert(name.get_ref().clone(), var.clone());
    }
    SecretsConfig {
        dir: table.dir.clone(),
        env,
    }
}

impl SecretsConfig {
    /// Makes a relative folder relative to `base` (the config file's folder).
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        if let Some(dir) = &mut self.dir {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
    }
}
