//! `[[latent_pool]]`: build machines started on demand. Builders name a pool in their
//! `workers` list like any worker.

use crate::latent::template;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use toml::Spanned;

/// One pool of latent instances.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatentPoolConfig {
    pub name: Spanned<String>,
    /// `local` (a process group per instance).
    pub driver: Spanned<String>,
    /// Instances at once, counting those starting and stopping: a hard cap.
    #[serde(default = "one")]
    pub max_instances: usize,
    /// Builds one instance runs at once.
    #[serde(default = "one")]
    pub max_builds: usize,
    /// Instances kept running without demand.
    #[serde(default)]
    pub min_instances: usize,
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
    /// Where instances reach the master (`host:port`); default: `pb_listen`, with an
    /// unspecified address replaced by 127.0.0.1.
    pub master_address: Option<String>,
    /// The boot script template (`{{master}}`, `{{name}}`, `{{password}}`, `{{pool}}`,
    /// `{{master_host}}`, `{{master_port}}`); default: the driver's.
    pub boot_script: Option<String>,
    /// Local driver: the venv holding `buildbot-worker` and `twistd` (`{{venv}}`).
    pub venv: Option<PathBuf>,
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

impl LatentPoolConfig {
    /// The template this pool boots its instances with.
    pub fn template(&self) -> String {
        self.boot_script
            .clone()
            .unwrap_or_else(|| template::LOCAL_DEFAULT.to_owned())
    }
}

/// Checks pools; returns their names for the builders' `workers` lists.
pub fn check<'a>(
    pools: &'a [LatentPoolConfig],
    workers: &HashSet<&str>,
    at: &mut impl FnMut(Range<usize>, String),
) -> HashSet<&'a str> {
    let mut names = HashSet::new();
    for p in pools {
        let name = p.name.get_ref();
        if !names.insert(name.as_str()) || workers.contains(name.as_str()) {
            at(
                p.name.span(),
                format!("latent pool {name:?}: the name is already used"),
            );
        }
        if p.driver.get_ref() != "local" {
            at(
                p.driver.span(),
                format!(
                    "latent pool {name:?}: unknown driver {:?} (known: local)",
                    p.driver.get_ref()
                ),
            );
        }
        if p.max_instances == 0 || p.max_builds == 0 {
            at(
                p.name.span(),
                format!("latent pool {name:?}: max_instances and max_builds must be at least 1"),
            );
        }
        if p.min_instances > p.max_instances {
            at(
                p.name.span(),
                format!("latent pool {name:?}: min_instances is above max_instances"),
            );
        }
        let mut vars: BTreeMap<&str, String> = template::VARIABLES
            .iter()
            .map(|v| (*v, String::new()))
            .collect();
        vars.insert("venv", String::new());
        if let Err(e) = template::render(&p.template(), &vars) {
            at(p.name.span(), format!("latent pool {name:?}: {e}"));
        }
        if p.boot_script.is_none() && p.venv.is_none() {
            at(
                p.name.span(),
                format!(
                    "latent pool {name:?}: the local driver's default boot script needs `venv`"
                ),
            );
        }
    }
    names
}
