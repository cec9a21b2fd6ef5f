//! The configuration as written in TOML.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::Spanned;

#[cfg(feature = "ec2")]
pub use super::latent::Ec2Settings;
pub use super::latent::LatentPoolConfig;
pub use super::schedulers::{ChangesConfig, SchedulerConfig};
pub use super::steps::{CommandLine, StepConfig, StepKind};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub master: MasterConfig,
    #[serde(default, rename = "worker")]
    pub workers: Vec<WorkerConfig>,
    #[serde(default, rename = "builder")]
    pub builders: Vec<BuilderConfig>,
    #[serde(default, rename = "scheduler")]
    pub schedulers: Vec<SchedulerConfig>,
    /// `[changes]`: who may send changes over PB.
    pub changes: Option<ChangesConfig>,
    #[serde(default, rename = "latent_pool")]
    pub latent_pools: Vec<LatentPoolConfig>,
}

/// `[master]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterConfig {
    /// Where workers connect (PB).
    #[serde(default = "default_pb_listen")]
    pub pb_listen: String,
    /// The HTTP JSON API, used by the CLI.
    #[serde(default = "default_http_listen")]
    pub http_listen: String,
    /// Database and build data; relative to the config file's folder.
    pub data_dir: PathBuf,
    /// Connections admitted at once; further ones wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds between the master's keepalive calls to each worker.
    #[serde(default = "default_keepalive_interval")]
    pub keepalive_interval: u64,
    /// Seconds a worker may stay silent after a keepalive call before its connection
    /// is declared dead.
    #[serde(default = "default_keepalive_timeout")]
    pub keepalive_timeout: u64,
    /// Seconds running builds get to finish after SIGTERM before they are interrupted.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: u64,
}

fn default_pb_listen() -> String {
    "0.0.0.0:9989".into()
}
fn default_http_listen() -> String {
    "127.0.0.1:8010".into()
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

/// `[[worker]]`: a worker allowed to log in. Exactly one password source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    pub name: Spanned<String>,
    pub password: Option<String>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// Builds this worker runs at once (default 1).
    #[serde(default = "one")]
    pub max_builds: usize,
}

fn one() -> usize {
    1
}

/// `[[builder]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuilderConfig {
    pub name: Spanned<String>,
    /// Workers that may run this builder.
    pub workers: Vec<Spanned<String>>,
    /// Directory under the worker's base directory (default: the builder name).
    pub builddir: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, toml::Value>,
    #[serde(default, rename = "step")]
    pub steps: Vec<Spanned<StepConfig>>,
}
