//! The master's TOML configuration. The file is read with the place of every value
//! ([`file`]), each section is checked and turned into the types the rest of the
//! master runs on — names resolved, kinds as enums, patterns compiled — and every
//! problem is reported with its line and column. Nothing outside this module parses
//! a config string again.

mod api;
mod builders;
mod change_sources;
mod changes;
mod cluster;
mod current;
mod error;
mod file;
mod hooks;
mod latent;
mod latent_docker;
mod latent_ec2;
mod limits;
mod load;
mod master;
mod password;
mod properties;
mod reporters;
mod retention;
mod schedulers;
mod secrets;
mod steps;
mod store;
mod users;
mod workers;

pub use api::{token_digest, ApiConfig, PublicRead, Role, Roles, TokenSecret};
pub use builders::BuilderConfig;
pub use change_sources::{check_name as check_change_source_name, check_repo, GitPollerConfig};
pub use changes::ChangeLogin;
pub use cluster::ClusterConfig;
pub use current::Current;
pub use hooks::{HookAuth, HooksConfig};
#[cfg(feature = "ec2")]
pub use latent::Ec2Volume;
pub use latent::{DockerSettings, Ec2Settings, IdleStop, LatentDriver, LatentPoolConfig};
pub use limits::Limits;
pub use load::{load, parse};
pub use master::{LogFormat, MasterConfig, PbTls};
pub use reporters::{EmailSettings, ReportEvent, ReporterConfig, ReporterKind, SmtpSecurity};
pub use retention::Retention;
pub use schedulers::{SchedulerConfig, SchedulerKind};
pub use secrets::{valid_name as valid_secret_name, SecretsConfig};
pub use steps::*;
pub use store::StoreConfig;
pub use users::{hash_password, verify_password};
pub use workers::WorkerConfig;

/// The whole configuration, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub master: MasterConfig,
    pub workers: Vec<WorkerConfig>,
    pub builders: Vec<BuilderConfig>,
    pub schedulers: Vec<SchedulerConfig>,
    /// The change source's PB login, if `[changes]` names a user.
    pub changes: Option<ChangeLogin>,
    /// `[[change_source]]`: git repositories polled for new commits.
    pub change_sources: Vec<GitPollerConfig>,
    pub latent_pools: Vec<LatentPoolConfig>,
    /// The GitHub and GitLab push webhooks; each is off unless configured.
    pub hooks: HooksConfig,
    /// `[api]` and the API tokens.
    pub api: ApiConfig,
    /// `[secrets]`.
    pub secrets: SecretsConfig,
    /// `[limits]`.
    pub limits: Limits,
    /// `[retention]`.
    pub retention: Retention,
    /// `[store]`: `None` is SQLite in `data_dir`.
    pub store: Option<StoreConfig>,
    /// `[[reporter]]`.
    pub reporters: Vec<ReporterConfig>,
    /// `[cluster]`: set when masters share one PostgreSQL database.
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// What is allowed but unsafe: `pbmaster check` prints it, `start` logs it.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = self.hooks.warnings();
        warnings.extend(self.api.warnings.iter().map(|w| w.to_string()));
        warnings
    }
}
