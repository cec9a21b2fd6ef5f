//! `[[scheduler]]` and `[changes]` as written.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::Spanned;

/// `[[scheduler]]`: one flat table for every kind; `config::schedulers` reports
/// options that belong to another kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerTable {
    pub name: Spanned<String>,
    pub kind: Spanned<String>,
    pub builders: Vec<Spanned<String>>,
    #[serde(default)]
    pub properties: BTreeMap<String, toml::Value>,
    pub interval: Option<Spanned<u64>>,
    pub cron: Option<Spanned<String>>,
    /// The IANA zone a nightly cron's times are read in; UTC without it.
    pub timezone: Option<Spanned<String>>,
    pub branch: Option<Spanned<String>>,
    pub branch_regex: Option<Spanned<String>>,
    #[serde(default)]
    pub files: Vec<Spanned<String>>,
    pub tree_stable_timer: Option<Spanned<u64>>,
}

/// `[changes]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangesTable {
    pub pb_user: Option<Spanned<String>>,
    pub pb_password: Option<String>,
    pub pb_password_env: Option<String>,
    pub pb_password_file: Option<PathBuf>,
}
