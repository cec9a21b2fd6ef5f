//! `[[latent_pool]]` as written.

use crate::config::{DockerSettings, Ec2Settings};
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

/// One pool of latent instances.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolTable {
    pub name: Spanned<String>,
    /// `local` (a process group per instance), `ec2` (cargo feature `ec2`) or
    /// `docker` (cargo feature `docker`).
    pub driver: Spanned<String>,
    /// Instances at once, counting those starting and stopping: a hard cap.
    #[serde(default = "one")]
    pub max_instances: usize,
    /// Builds one instance runs at once.
    #[serde(default = "one")]
    pub max_builds: usize,
    /// Instances kept ready without demand (a warm pool); the idle timer never stops
    /// the pool below it.
    #[serde(default)]
    pub min_instances: usize,
    /// Builds an instance runs before it is replaced (drains, then stops).
    pub max_uses: Option<u32>,
    /// Seconds after which an instance is replaced (drains, then stops).
    pub max_age: Option<u64>,
    /// Seconds an instance stays after its last build: 0 stops it at once, a negative
    /// value never.
    #[serde(default = "default_idle")]
    pub build_wait_timeout: i64,
    /// Seconds for the launch call.
    #[serde(default = "default_launch")]
    pub launch_timeout: u64,
    /// Seconds from launch until the cloud says the instance runs.
    #[serde(default = "default_boot")]
    pub boot_timeout: u64,
    /// Seconds from running until its worker logs in.
    #[serde(default = "default_missing")]
    pub missing_timeout: u64,
    /// Seconds for the attach handshake.
    #[serde(default = "default_attach")]
    pub attach_timeout: u64,
    /// Seconds between looks at the cloud's view of a starting instance.
    #[serde(default = "default_poll")]
    pub poll_interval: u64,
    /// Seconds between sweeps that terminate any instance the cloud has under this
    /// master's tag but no live instance of the pool accounts for (drivers that can
    /// list their instances).
    #[serde(default = "default_sweep")]
    pub sweep_interval: u64,
    /// Where instances reach the master (`host:port`); default: `pb_listen`, with an
    /// unspecified address replaced by 127.0.0.1.
    pub master_address: Option<String>,
    /// The boot script template (`{{master}}`, `{{name}}`, `{{password}}`, `{{pool}}`,
    /// `{{master_host}}`, `{{master_port}}`); default: the driver's.
    pub boot_script: Option<String>,
    /// Local driver: the venv holding `buildbot-worker` and `twistd` (`{{venv}}`).
    pub venv: Option<PathBuf>,
    /// Local driver: the master's environment variables an instance gets (default
    /// PATH, HOME, USER, LOGNAME, LANG, LC_ALL, TZ, TMPDIR).
    pub pass_env: Option<Vec<String>>,
    /// Substantiations that may fail for one build request before its build ends
    /// with the last failure's phase and reason.
    #[serde(default = "default_attempts")]
    pub substantiation_attempts: u32,
    /// Times a build may run again after its instance was lost under it (died, was
    /// killed, lost its connection); the next loss ends its request in `exception`.
    #[serde(default = "default_lost_retries")]
    pub lost_build_retries: u32,
    /// What an idle instance's end is: `terminate` (the default) or `stop` (kept
    /// stopped, its disk warm, and started again for the next demand; ec2 only).
    pub idle_action: Option<String>,
    /// Stopped instances kept at most (`idle_action = "stop"`); default
    /// `max_instances`. They do not count under `max_instances`.
    pub max_stopped: Option<usize>,
    /// What an instance costs per hour (any currency), for the cost of each build;
    /// `ec2.prices` may set it per instance type.
    pub price_per_hour: Option<f64>,
    /// The market of the instance started again for a build that a spot
    /// interruption ended: `on-demand` (the default: the build is not interrupted
    /// twice) or `spot` (the pool's usual market).
    pub on_interruption: Option<String>,
    /// The `ec2` driver's settings.
    pub ec2: Option<Ec2Settings>,
    /// The `docker` driver's settings.
    pub docker: Option<DockerSettings>,
}

fn default_attempts() -> u32 {
    3
}
fn default_lost_retries() -> u32 {
    2
}

fn one() -> usize {
    1
}
fn default_idle() -> i64 {
    600
}
fn default_launch() -> u64 {
    120
}
fn default_boot() -> u64 {
    600
}
fn default_missing() -> u64 {
    600
}
fn default_attach() -> u64 {
    120
}
fn default_poll() -> u64 {
    5
}
fn default_sweep() -> u64 {
    300
}
