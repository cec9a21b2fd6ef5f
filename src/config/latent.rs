//! `[[latent_pool]]`: build machines started on demand. Builders name a pool in their
//! `workers` list like any worker.

use super::error::Problems;
use super::file::{FileTable, PoolTable};
pub use super::latent_docker::DockerSettings;
pub use super::latent_ec2::Ec2Volume;
use crate::model::boot_script::{self, BootScript};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One pool of latent instances.
#[derive(Debug, Clone)]
pub struct LatentPoolConfig {
    pub name: String,
    pub driver: LatentDriver,
    /// Instances at once, counting those starting and stopping: a hard cap.
    pub max_instances: usize,
    /// Builds one instance runs at once.
    pub max_builds: usize,
    /// Instances kept ready without demand; the idle timer never stops the pool below it.
    pub min_instances: usize,
    /// Builds an instance runs before it drains and is replaced.
    pub max_uses: Option<u32>,
    /// Seconds after which an instance drains and is replaced.
    pub max_age: Option<u64>,
    /// What an instance does once its last build is done.
    pub idle_stop: IdleStop,
    /// Seconds for the launch call.
    pub launch_timeout: u64,
    /// Seconds from launch until the cloud says the instance runs.
    pub boot_timeout: u64,
    /// Seconds from running until its worker logs in.
    pub missing_timeout: u64,
    /// Seconds for the attach handshake.
    pub attach_timeout: u64,
    /// Seconds between looks at the cloud's view of a starting instance.
    pub poll_interval: u64,
    /// Seconds between sweeps for instances the cloud has under this master's tag but
    /// no live instance of the pool accounts for.
    pub sweep_interval: u64,
    /// Where instances reach the master (`host:port`); default: `pb_listen`, with an
    /// unspecified address replaced by 127.0.0.1.
    pub master_address: Option<String>,
    /// The configured boot script, or the driver's default.
    pub boot_script: BootScript,
    /// Substantiations that may fail for one build request before its build ends
    /// with the last failure's phase and reason.
    pub substantiation_attempts: u32,
    /// Times a build may run again after its instance was lost under it.
    pub lost_build_retries: u32,
    /// What an instance costs per hour, if known.
    pub price_per_hour: Option<f64>,
    /// Stopped instances kept for the next demand (`idle_action = "stop"`); 0 when
    /// idle instances are terminated.
    pub max_stopped: usize,
    /// A build that an interruption ended runs again on an on-demand instance
    /// (`on_interruption = "on-demand"`, the default), not on the spot market.
    pub on_demand_after_interruption: bool,
}

impl LatentPoolConfig {
    /// The price per hour of an instance placed at `placement` (`subnet/type`): the
    /// instance type's own price if the driver's settings give one, else the pool's.
    pub fn price_for(&self, placement: Option<&str>) -> Option<f64> {
        self.driver.price_of(placement).or(self.price_per_hour)
    }
}

/// Where a pool's instances come from.
#[derive(Debug, Clone)]
pub enum LatentDriver {
    /// A process group per instance, in the data folder.
    Local {
        /// The venv holding `buildbot-worker` and `twistd` (`{{venv}}`); absolute
        /// once loaded from a file.
        venv: Option<PathBuf>,
        /// Environment variables an instance gets from the master's environment;
        /// nothing else of it (cloud keys, passwords) reaches the boot script.
        pass_env: Vec<String>,
    },
    /// The EC2 API; without the cargo feature `ec2`, ec2 pools are a config error.
    #[cfg(feature = "ec2")]
    Ec2(Box<Ec2Settings>),
    /// A container per instance; without the cargo feature `docker`, docker pools are
    /// a config error.
    #[cfg(feature = "docker")]
    Docker(Box<DockerSettings>),
}

impl LatentDriver {
    /// The name as configured.
    pub fn name(&self) -> &'static str {
        match self {
            LatentDriver::Local { .. } => "local",
            #[cfg(feature = "ec2")]
            LatentDriver::Ec2(_) => "ec2",
            #[cfg(feature = "docker")]
            LatentDriver::Docker(_) => "docker",
        }
    }

    /// The price per hour the driver's settings give the instance type of
    /// `placement` (`subnet/type` or `type`).
    pub fn price_of(&self, placement: Option<&str>) -> Option<f64> {
        match self {
            LatentDriver::Local { .. } => {
                let _ = placement;
                None
            }
            #[cfg(feature = "ec2")]
            LatentDriver::Ec2(s) => {
                let placed = placement?;
                let kind = placed.rsplit('/').next().unwrap_or(placed);
                s.prices.get(kind).copied()
            }
            #[cfg(feature = "docker")]
            LatentDriver::Docker(_) => None,
        }
    }

    /// The local driver's venv.
    pub fn venv(&self) -> Option<&Path> {
        match self {
            LatentDriver::Local { venv, .. } => venv.as_deref(),
            #[cfg(feature = "ec2")]
            LatentDriver::Ec2(_) => None,
            #[cfg(feature = "docker")]
            LatentDriver::Docker(_) => None,
        }
    }
}

/// `build_wait_timeout`: 0 stops an instance after each build, a negative value never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleStop {
    AfterEachBuild,
    /// After this many idle seconds.
    After(u64),
    Never,
}

impl IdleStop {
    fn from_seconds(seconds: i64) -> IdleStop {
        match u64::try_from(seconds) {
            Ok(0) => IdleStop::AfterEachBuild,
            Ok(s) => IdleStop::After(s),
            Err(_) => IdleStop::Never,
        }
    }
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
    /// The instance type ...
    pub instance_type: Option<String>,
    /// ... or several, in order of preference: a launch the cloud has no capacity
    /// for tries the next one (in each subnet) before waiting.
    #[serde(default)]
    pub instance_types: Vec<String>,
    pub subnet_id: Option<String>,
    /// Several subnets (availability zones), tried in turn like `instance_types`.
    #[serde(default)]
    pub subnet_ids: Vec<String>,
    /// `true`: each launch starts at the next choice in turn (spreading instances
    /// over zones and types) instead of always at the first.
    #[serde(default)]
    pub spread: bool,
    /// Price per hour by instance type, for the cost of builds (over the pool's
    /// `price_per_hour`).
    #[serde(default)]
    pub prices: BTreeMap<String, f64>,
    #[serde(default)]
    pub security_group_ids: Vec<String>,
    pub key_name: Option<String>,
    /// An instance profile name, or its ARN.
    pub instance_profile: Option<String>,
    /// Seconds between lookups of `ami_name` (a newly published image is used by
    /// new instances); 0: found once. Default: an hour.
    pub ami_refresh: Option<u64>,
    /// Only images of this architecture (`x86_64`, `arm64`, ...) match `ami_name`.
    pub architecture: Option<String>,
    /// Size of the root volume, GiB; default: the image's.
    pub volume_size: Option<i32>,
    /// The root volume's EBS type (`gp3`, ...); default: the image's.
    pub volume_type: Option<String>,
    /// Encrypt the root volume (with `volume_kms_key_id`, or the account's EBS key).
    #[serde(default)]
    pub volume_encrypted: bool,
    pub volume_kms_key_id: Option<String>,
    /// Volumes beside the root one, deleted with the instance.
    #[serde(default)]
    pub volumes: Vec<Ec2Volume>,
    /// `true` or `false` asks for a public address or none; default: the subnet's
    /// setting.
    pub public_ip: Option<bool>,
    /// A placement group to launch into.
    pub placement_group: Option<String>,
    /// Extra tags on the instance and its volumes.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Ask for a spot instance, falling back to on-demand when there is no capacity.
    #[serde(default)]
    pub spot: bool,
    /// `"spot"` or `"on-demand"` (the default): `market = "spot"` is `spot = true`.
    pub market: Option<String>,
    /// The most to pay per hour for a spot instance (USD); default: the on-demand price.
    pub spot_max_price: Option<String>,
    /// API calls the pool may make per minute, retries included.
    #[serde(default = "default_calls")]
    pub calls_per_minute: u32,
}

fn default_calls() -> u32 {
    120
}

/// A `[[worker]]` named as an instance of a pool may be (`POOL-N`) could not log in
/// while that instance lives, and would be taken for it: refused.
pub(super) fn instance_name_clashes(file: &FileTable, problems: &mut Problems) {
    for w in &file.workers {
        let name = w.name.get_ref();
        let clash = file.latent_pools.iter().find(|p| {
            name.strip_prefix(p.name.get_ref().as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
        if let Some(p) = clash {
            problems.at(
                w.name.span(),
                format!(
                    "worker {name:?}: latent pool {:?} names its instances {}-N; rename the worker",
                    p.name.get_ref(),
                    p.name.get_ref()
                ),
            );
        }
    }
}

/// One `[[latent_pool]]`; its name is checked against the others by the caller.
/// `None` when it is wrong (the problems say why).
pub(super) fn pool(p: &PoolTable, problems: &mut Problems) -> Option<LatentPoolConfig> {
    let name = p.name.get_ref();
    let mut fail = |why: &str| problems.at(p.name.span(), format!("latent pool {name:?}: {why}"));
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        fail("use letters, digits, '-', '_' and '.' only");
    }
    // The driver's name decides its checks and its default boot script.
    let (driver, default_script) = match p.driver.get_ref().as_str() {
        "local" => (local(p, &mut fail), boot_script::LOCAL_DEFAULT),
        "ec2" => (ec2(p, &mut fail), boot_script::EC2_DEFAULT),
        "docker" => (docker(p, &mut fail), boot_script::DOCKER_DEFAULT),
        other => {
            problems.at(
                p.driver.span(),
                format!(
                    "latent pool {name:?}: unknown driver {other:?} (known: local, ec2, docker)"
                ),
            );
            (None, boot_script::LOCAL_DEFAULT)
        }
    };
    let mut fail = |why: &str| problems.at(p.name.span(), format!("latent pool {name:?}: {why}"));
    if p.substantiation_attempts == 0 {
        fail("substantiation_attempts must be at least 1");
    }
    if p.max_instances == 0 || p.max_builds == 0 {
        fail("max_instances and max_builds must be at least 1");
    }
    if p.min_instances > p.max_instances {
        fail("min_instances is above max_instances");
    }
    if p.price_per_hour
        .is_some_and(|x| !(x.is_finite() && x >= 0.0))
    {
        fail("price_per_hour must be a number, 0 or more");
    }
    if p.max_uses == Some(0) || p.max_age == Some(0) {
        fail("max_uses and max_age must be at least 1 (leave them out for no limit)");
    }
    let keep_stopped = match p.idle_action.as_deref() {
        None | Some("terminate") => Some(0),
        Some("stop") if p.driver.get_ref() != "ec2" => {
            fail("idle_action = \"stop\" needs a driver that can stop instances (ec2)");
            None
        }
        Some("stop")
            if p.ec2
                .as_ref()
                .is_some_and(|e| e.spot || e.market.as_deref() == Some("spot")) =>
        {
            fail("idle_action = \"stop\": one-time spot instances cannot be stopped");
            None
        }
        Some("stop") => Some(p.max_stopped.unwrap_or(p.max_instances)),
        Some(other) => {
            fail(&format!(
                "idle_action is \"terminate\" or \"stop\", not {other:?}"
            ));
            None
        }
    };
    let on_demand_after_interruption = match p.on_interruption.as_deref() {
        None | Some("on-demand") => true,
        Some("spot") => false,
        Some(other) => {
            fail(&format!(
                "on_interruption is \"on-demand\" or \"spot\", not {other:?}"
            ));
            true
        }
    };
    let boot_script = BootScript::parse(p.boot_script.as_deref().unwrap_or(default_script))
        .map_err(|e| fail(&e))
        .ok();
    Some(LatentPoolConfig {
        name: name.clone(),
        driver: driver?,
        max_instances: p.max_instances,
        max_builds: p.max_builds,
        min_instances: p.min_instances,
        max_uses: p.max_uses,
        max_age: p.max_age,
        idle_stop: IdleStop::from_seconds(p.build_wait_timeout),
        launch_timeout: p.launch_timeout,
        boot_timeout: p.boot_timeout,
        missing_timeout: p.missing_timeout,
        attach_timeout: p.attach_timeout,
        poll_interval: p.poll_interval,
        sweep_interval: p.sweep_interval,
        master_address: p.master_address.clone(),
        boot_script: boot_script?,
        substantiation_attempts: p.substantiation_attempts,
        lost_build_retries: p.lost_build_retries,
        price_per_hour: p.price_per_hour,
        max_stopped: keep_stopped?,
        on_demand_after_interruption,
    })
}

/// What a local instance gets of the master's environment unless `pass_env` says.
pub const DEFAULT_PASS_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR",
];

fn local(p: &PoolTable, fail: &mut impl FnMut(&str)) -> Option<LatentDriver> {
    let mut right = true;
    if p.boot_script.is_none() && p.venv.is_none() {
        fail("the local driver's default boot script needs `venv`");
        right = false;
    }
    if p.ec2.is_some() || p.docker.is_some() {
        fail("[latent_pool.ec2] and [latent_pool.docker] are for other drivers");
        right = false;
    }
    let pass_env = p
        .pass_env
        .clone()
        .unwrap_or_else(|| DEFAULT_PASS_ENV.iter().map(|v| v.to_string()).collect());
    right.then(|| LatentDriver::Local {
        venv: p.venv.clone(),
        pass_env,
    })
}

fn ec2(p: &PoolTable, fail: &mut impl FnMut(&str)) -> Option<LatentDriver> {
    let mut right = true;
    let mut wrong = |why: &str| {
        fail(why);
        right = false;
    };
    if !cfg!(feature = "ec2") {
        wrong("this pbmaster was built without the `ec2` feature (cargo build --features ec2)");
    }
    let Some(ec2) = &p.ec2 else {
        wrong("the ec2 driver needs a [latent_pool.ec2] table");
        return None;
    };
    if ec2.ami.is_some() == ec2.ami_name.is_some() {
        wrong("set exactly one of ec2.ami and ec2.ami_name");
    }
    if ec2.ami_name.is_some() && ec2.ami_owners.is_empty() {
        wrong("ec2.ami_name needs ec2.ami_owners (anyone can publish an image by any name)");
    }
    if p.master_address.is_none() {
        wrong("ec2 instances need `master_address`, the address they reach the master at");
    }
    if p.venv.is_some() {
        wrong("`venv` is for the local driver");
    }
    if ec2.volume_size.is_some_and(|v| v < 1) {
        wrong("ec2.volume_size is in GiB and must be at least 1");
    }
    if ec2.instance_type.is_some() != ec2.instance_types.is_empty() {
        wrong("set exactly one of ec2.instance_type and ec2.instance_types");
    }
    if ec2.subnet_id.is_some() && !ec2.subnet_ids.is_empty() {
        wrong("set at most one of ec2.subnet_id and ec2.subnet_ids");
    }
    if ec2.prices.values().any(|x| !(x.is_finite() && *x >= 0.0)) {
        wrong("ec2.prices must be numbers, 0 or more");
    }
    match ec2.market.as_deref() {
        None | Some("spot") | Some("on-demand") => {}
        Some(other) => wrong(&format!(
            "ec2.market is \"spot\" or \"on-demand\", not {other:?}"
        )),
    }
    if ec2.calls_per_minute == 0 {
        wrong("ec2.calls_per_minute must be at least 1");
    }
    if ec2.tags.keys().any(|k| k.starts_with("pbmaster:")) {
        wrong("tags starting with `pbmaster:` are the master's own");
    }
    super::latent_ec2::check(ec2, &mut wrong);
    right.then(|| ec2_driver(ec2)).flatten()
}

#[cfg(feature = "ec2")]
fn ec2_driver(settings: &Ec2Settings) -> Option<LatentDriver> {
    Some(LatentDriver::Ec2(Box::new(settings.clone())))
}

/// Never reached: without the feature, an ec2 pool is already reported.
#[cfg(not(feature = "ec2"))]
fn ec2_driver(_: &Ec2Settings) -> Option<LatentDriver> {
    None
}

fn docker(p: &PoolTable, fail: &mut impl FnMut(&str)) -> Option<LatentDriver> {
    docker_driver(super::latent_docker::check(p, fail)?)
}

#[cfg(feature = "docker")]
fn docker_driver(settings: DockerSettings) -> Option<LatentDriver> {
    Some(LatentDriver::Docker(Box::new(settings)))
}

/// Never reached: without the feature, a docker pool is already reported.
#[cfg(not(feature = "docker"))]
fn docker_driver(_: DockerSettings) -> Option<LatentDriver> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const BASE: &str = "[master]\ndata_dir = \"d\"\n[[builder]]\nname = \"b\"\nworkers = [\"pool\"]\n[[builder.step]]\ncommand = \"true\"\n";

    fn pools(pool: &str) -> Result<Vec<LatentPoolConfig>, Vec<String>> {
        parse(&format!("{BASE}[[latent_pool]]\nname = \"pool\"\n{pool}"))
            .map(|c| c.latent_pools)
            .map_err(|e| e.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn a_local_pool_gets_its_driver_idle_rule_and_boot_script() {
        let p = pools("driver = \"local\"\nvenv = \"/v\"\nbuild_wait_timeout = 0\n").unwrap();
        assert_eq!(p[0].driver.name(), "local");
        assert_eq!(p[0].driver.venv(), Some(Path::new("/v")));
        assert_eq!(p[0].idle_stop, IdleStop::AfterEachBuild);
        let vars = boot_script::BootVars {
            venv: "/v".into(),
            ..Default::default()
        };
        assert!(p[0].boot_script.render(&vars).contains("/v/bin/twistd"));
        let p = pools("driver = \"local\"\nvenv = \"/v\"\nbuild_wait_timeout = -1\n").unwrap();
        assert_eq!(p[0].idle_stop, IdleStop::Never);
        let p = pools("driver = \"local\"\nvenv = \"/v\"\n").unwrap();
        assert_eq!(p[0].idle_stop, IdleStop::After(600));
    }

    #[test]
    fn a_boot_script_with_an_unknown_variable_is_one_error() {
        let e = pools("driver = \"local\"\nboot_script = \"run {{nope}}\"\n").unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("unknown variable {{nope}}"), "{e:?}");
        assert!(e[0].starts_with("line 9,"), "{e:?}");
    }

    #[test]
    fn a_worker_named_like_an_instance_is_refused() {
        let body = format!(
            "{BASE}[[worker]]\nname = \"pool-3\"\npassword = \"pw\"\n[[worker]]\nname = \"pool-x\"\npassword = \"pw\"\n[[latent_pool]]\nname = \"pool\"\ndriver = \"local\"\nvenv = \"/v\"\n"
        );
        let e: Vec<String> = parse(&body)
            .map(|_| ())
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("worker \"pool-3\"") && e[0].contains("pool-N"),
            "{e:?}"
        );
    }

    #[test]
    fn an_unknown_driver_is_reported_at_the_driver() {
        let e = pools("driver = \"cloud9\"\n").unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("line 10,") && e[0].contains("unknown driver"),
            "{e:?}"
        );
    }
}
