//! `[[change_source]]` as written.

use serde::Deserialize;
use toml::Spanned;

/// `[[change_source]]`: something the master asks for changes (only `kind = "git"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeSourceTable {
    pub name: Spanned<String>,
    pub kind: Spanned<String>,
    /// A URL or a path git can fetch from.
    pub repo: Spanned<String>,
    /// Branches to follow; every branch without it.
    pub branches: Option<Spanned<Vec<Spanned<String>>>>,
    /// Seconds between polls.
    pub interval: Option<Spanned<u64>>,
    /// Seconds one git command may take.
    pub timeout: Option<Spanned<u64>>,
    /// The `project` of the changes.
    pub project: Option<String>,
}
