//! `[[latent_pool]]`: build machines started on demand. Builders name a pool in their
//! `workers` list like any worker.

use crate::model::boot_script as template;
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
    /// `local` (a process group per instance) or `ec2` (cargo feature `ec2`).
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
    /// Substantiations that may fail for one build request before its build ends
    /// with the last failure's phase and reason.
    #[serde(default = "default_attempts")]
    pub substantiation_attempts: u32,
    /// The `ec2` driver's settings.
    pub ec2: Option<Ec2Settings>,
}

/// `[latent_pool.ec2]`: where and what to launch.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(not(feature = "ec2"), allow(dead_code))]
#[serde(deny_unknown_fields)]
pub struct Ec2Settings {
    pub region: String,
    /// Any EC2-compatible API; default: the region's AWS endpoint.
    pub endpoint_url: Option<String>,
    /// A credentials profile from the shared AWS files; default: the standard chain
    /// (environment, shared files, web identity, container, instance metadata).
    pub profile: Option<String>,
    /// The image by id ...
    pub ami: Option<String>,
    /// ... or the newest image whose name matches this pattern (`*` wildcards) ...
    pub ami_name: Option<String>,
    /// ... among these owners (account ids, `amazon`, `self`).
    #[serde(default)]
    pub ami_owners: Vec<String>,
    pub instance_type: String,
    pub subnet_id: Option<String>,
    #[serde(default)]
    pub security_group_ids: Vec<String>,
    pub key_name: Option<String>,
    /// An instance profile name, or its ARN.
    pub instance_profile: Option<String>,
    /// Size of the root volume, GiB; default: the image's.
    pub volume_size: Option<i32>,
    /// Extra tags on the instance and its volumes.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Ask for a spot instance, falling back to on-demand when there is no capacity.
    #[serde(default)]
    pub spot: bool,
    /// The most to pay per hour for a spot instance (USD); default: the on-demand price.
    pub spot_max_price: Option<String>,
    /// API calls the pool may make per minute, retries included.
    #[serde(default = "default_calls")]
    pub calls_per_minute: u32,
}

fn default_calls() -> u32 {
    120
}
fn default_attempts() -> u32 {
    3
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

impl LatentPoolConfig {
    /// The template this pool boots its instances with.
    pub fn template(&self) -> String {
        let default = match self.driver.get_ref().as_str() {
            "ec2" => template::EC2_DEFAULT,
            _ => template::LOCAL_DEFAULT,
        };
        self.boot_script
            .clone()
            .unwrap_or_else(|| default.to_owned())
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
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            at(
                p.name.span(),
                format!("latent pool {name:?}: use letters, digits, '-', '_' and '.' only"),
            );
        }
        match p.driver.get_ref().as_str() {
            "local" => check_local(p, at),
            "ec2" => check_ec2(p, at),
            other => at(
                p.driver.span(),
                format!("latent pool {name:?}: unknown driver {other:?} (known: local, ec2)"),
            ),
        }
        if p.substantiation_attempts == 0 {
            at(
                p.name.span(),
                format!("latent pool {name:?}: substantiation_attempts must be at least 1"),
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
    }
    names
}

fn check_local(p: &LatentPoolConfig, at: &mut impl FnMut(Range<usize>, String)) {
    let name = p.name.get_ref();
    if p.boot_script.is_none() && p.venv.is_none() {
        at(
            p.name.span(),
            format!("latent pool {name:?}: the local driver's default boot script needs `venv`"),
        );
    }
    if p.ec2.is_some() {
        at(
            p.name.span(),
            format!("latent pool {name:?}: [latent_pool.ec2] is for the ec2 driver"),
        );
    }
}

fn check_ec2(p: &LatentPoolConfig, at: &mut impl FnMut(Range<usize>, String)) {
    let name = p.name.get_ref();
    let mut fail = |why: &str| at(p.name.span(), format!("latent pool {name:?}: {why}"));
    if !cfg!(feature = "ec2") {
        fail("this pbmaster was built without the `ec2` feature (cargo build --features ec2)");
    }
    let Some(ec2) = &p.ec2 else {
        return fail("the ec2 driver needs a [latent_pool.ec2] table");
    };
    if ec2.ami.is_some() == ec2.ami_name.is_some() {
        fail("set exactly one of ec2.ami and ec2.ami_name");
    }
    if ec2.ami_name.is_some() && ec2.ami_owners.is_empty() {
        fail("ec2.ami_name needs ec2.ami_owners (anyone can publish an image by any name)");
    }
    if p.master_address.is_none() {
        fail("ec2 instances need `master_address`, the address they reach the master at");
    }
    if p.venv.is_some() {
        fail("`venv` is for the local driver");
    }
    if ec2.volume_size.is_some_and(|v| v < 1) {
        fail("ec2.volume_size is in GiB and must be at least 1");
    }
    if ec2.calls_per_minute == 0 {
        fail("ec2.calls_per_minute must be at least 1");
    }
    if ec2.tags.keys().any(|k| k.starts_with("pbmaster:")) {
        fail("tags starting with `pbmaster:` are the master's own");
    }
}
