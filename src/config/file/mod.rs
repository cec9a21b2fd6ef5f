//! The configuration as written in TOML, with the place of each value a check may
//! find wrong, so errors name their line and column. Only `config` sees these tables;
//! it turns them into the types the master runs on.

mod change_source;
mod hooks;
mod latent;
mod reporter;
mod scheduler;
mod step;

pub use change_source::ChangeSourceTable;
pub use hooks::HooksTable;
pub use latent::PoolTable;
pub use reporter::ReporterTable;
pub use scheduler::{ChangesTable, SchedulerTable};
pub use step::{StepKind, StepTable};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTable {
    pub master: MasterTable,
    #[serde(default, rename = "worker")]
    pub workers: Vec<WorkerTable>,
    #[serde(default, rename = "builder")]
    pub builders: Vec<BuilderTable>,
    #[serde(default, rename = "scheduler")]
    pub schedulers: Vec<SchedulerTable>,
    /// `[[change_source]]`: repositories polled for new commits.
    #[serde(default, rename = "change_source")]
    pub change_sources: Vec<ChangeSourceTable>,
    /// `[changes]`: who may send changes over PB.
    pub changes: Option<ChangesTable>,
    #[serde(default, rename = "latent_pool")]
    pub latent_pools: Vec<PoolTable>,
    /// `[hooks.github]`, `[hooks.gitlab]`: push webhooks, off unless present.
    pub hooks: Option<HooksTable>,
    /// `[api]`: who may read the HTTP API, and the names browsers may reach it by.
    pub api: Option<ApiTable>,
    /// `[[api_token]]`: the credentials writes (and closed reads) need.
    #[serde(default, rename = "api_token")]
    pub api_tokens: Vec<ApiTokenTable>,
    /// `[[api_user]]`: who may log in to the API with a password.
    #[serde(default, rename = "api_user")]
    pub api_users: Vec<ApiUserTable>,
    /// `[secrets]`: where `%(secret:NAME)s` values come from.
    pub secrets: Option<SecretsTable>,
    /// `[limits]`: log, upload, time and disk bounds.
    pub limits: Option<LimitsTable>,
    /// `[retention]`: how long builds and logs are kept.
    pub retention: Option<RetentionTable>,
    /// `[cluster]`: this master's name among masters sharing one database.
    pub cluster: Option<ClusterTable>,
    /// `[store]`: a PostgreSQL database instead of SQLite in `data_dir`.
    pub store: Option<StoreTable>,
    /// `[[reporter]]`: services told about builds (commit statuses, mail, pushes).
    #[serde(default, rename = "reporter")]
    pub reporters: Vec<ReporterTable>,
}

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreTable {
    pub url: Spanned<String>,
    pub password_file: Option<Spanned<PathBuf>>,
    pub password_env: Option<Spanned<String>>,
}

/// `[limits]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsTable {
    pub log_max_size: Option<Spanned<u64>>,
    pub log_tail_size: Option<Spanned<u64>>,
    pub upload_max_size: Option<Spanned<u64>>,
    pub max_time: Option<Spanned<u64>>,
    pub min_free_disk: Option<Spanned<u64>>,
}

/// `[cluster]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTable {
    pub name: Spanned<String>,
    pub lease: Option<Spanned<String>>,
}

/// `[retention]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionTable {
    pub builds: Option<Spanned<String>>,
    pub logs: Option<Spanned<String>>,
    pub compress_logs: Option<bool>,
    pub interval: Option<Spanned<String>>,
}

/// `[[api_user]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiUserTable {
    pub name: Spanned<String>,
    pub roles: Spanned<Vec<Spanned<String>>>,
    pub password_hash: Spanned<String>,
}

/// `[secrets]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsTable {
    /// A folder: each file in it is one secret, named by the file.
    pub dir: Option<PathBuf>,
    /// Secret name → environment variable.
    #[serde(default)]
    pub env: BTreeMap<Spanned<String>, String>,
}

/// `[api]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTable {
    pub public_read: Option<Spanned<String>>,
    /// Session cookies only over HTTPS (behind a TLS proxy).
    pub secure_cookie: Option<bool>,
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    #[serde(default)]
    pub origins: Vec<Spanned<String>>,
}

/// `[[api_token]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenTable {
    pub name: Spanned<String>,
    pub roles: Spanned<Vec<Spanned<String>>>,
    pub token: Option<Spanned<LiteralToken>>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

/// A token written in the file: kept out of `Debug` output.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct LiteralToken(pub String);

impl std::fmt::Debug for LiteralToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiteralToken(..)")
    }
}

/// `[master]`; absent addresses take their defaults in `config::master`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterTable {
    pub pb_listen: Option<Spanned<String>>,
    pub http_listen: Option<Spanned<String>>,
    pub data_dir: PathBuf,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_keepalive_interval")]
    pub keepalive_interval: u64,
    #[serde(default = "default_keepalive_timeout")]
    pub keepalive_timeout: u64,
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: u64,
    #[serde(default = "default_login_timeout")]
    pub login_timeout: u64,
    /// TLS on the PB port; plain TCP without it.
    pub pb_tls: Option<Spanned<PbTlsTable>>,
    /// `text` or `json`; `--log-format` wins over it.
    pub log_format: Option<Spanned<String>>,
}

/// `[master] pb_tls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PbTlsTable {
    /// PEM: the server certificate, then any intermediates.
    pub cert_file: Spanned<PathBuf>,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Spanned<PathBuf>,
}

fn default_max_connections() -> usize {
    1000
}
fn default_keepalive_interval() -> u64 {
    300
}
fn default_keepalive_timeout() -> u64 {
    60
}
fn default_shutdown_grace() -> u64 {
    60
}
fn default_login_timeout() -> u64 {
    30
}

/// `[[worker]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerTable {
    pub name: Spanned<String>,
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    #[serde(default = "one")]
    pub max_builds: usize,
}

fn one() -> usize {
    1
}

/// `[[builder]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuilderTable {
    pub name: Spanned<String>,
    pub workers: Vec<Spanned<String>>,
    pub builddir: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, toml::Value>,
    #[serde(default, rename = "step")]
    pub steps: Vec<Spanned<StepTable>>,
}
