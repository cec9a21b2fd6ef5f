//! `[latent_pool.docker]`: what the `docker` driver runs, and its checks.

use super::file::PoolTable;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The Docker Engine socket when `host` is not set.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Label keys the driver sets itself; a user label may not use the prefix.
pub const LABEL_PREFIX: &str = "pbmaster.";

/// `[latent_pool.docker]`: one container per instance.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(not(feature = "docker"), allow(dead_code))]
#[serde(deny_unknown_fields)]
pub struct DockerSettings {
    /// The image every instance runs (already present on the daemon: it is never
    /// pulled).
    pub image: String,
    /// The daemon's socket, `unix:///path`.
    #[serde(default = "default_host")]
    pub host: String,
    /// Boot through the image's cloud-init, with the boot script as NoCloud user
    /// data; `false` runs the boot script with `/bin/sh` instead.
    #[serde(default = "yes")]
    pub cloud_init: bool,
    /// The container's network mode (`host`, `bridge`, a network's name); default:
    /// the daemon's.
    pub network: Option<String>,
    /// Memory limit in MiB.
    pub memory_mb: Option<u64>,
    /// CPU limit, in CPUs (`1.5`).
    pub cpus: Option<f64>,
    /// Bind mounts, `HOST_PATH:CONTAINER_PATH[:ro]`.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Environment variables of the container (and so of its boot script).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Extra labels on every container.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_host() -> String {
    DEFAULT_DOCKER_HOST.to_owned()
}

fn yes() -> bool {
    true
}

#[cfg_attr(not(feature = "docker"), allow(dead_code))]
impl DockerSettings {
    /// The socket's path.
    pub fn socket_path(&self) -> &str {
        self.host.strip_prefix("unix://").unwrap_or(&self.host)
    }
}

/// Checks a docker pool's table; `Some` settings when all is right.
pub(super) fn check(p: &PoolTable, fail: &mut impl FnMut(&str)) -> Option<DockerSettings> {
    let mut right = true;
    let mut wrong = |why: &str| {
        fail(why);
        right = false;
    };
    if !cfg!(feature = "docker") {
        wrong(
            "this pbmaster was built without the `docker` feature (cargo build --features docker)",
        );
    }
    let Some(d) = &p.docker else {
        wrong("the docker driver needs a [latent_pool.docker] table");
        return None;
    };
    if p.ec2.is_some() || p.venv.is_some() {
        wrong("[latent_pool.ec2] and `venv` are for other drivers");
    }
    if d.image.trim().is_empty() {
        wrong("docker.image is empty");
    }
    if !d.host.starts_with("unix:///") {
        wrong("docker.host must be a unix socket, unix:///path");
    }
    if d.network.as_deref() != Some("host") && p.master_address.is_none() {
        wrong("docker instances need `master_address` unless docker.network = \"host\"");
    }
    if d.cpus.is_some_and(|c| !(c > 0.0 && c <= 1024.0)) {
        wrong("docker.cpus must be above 0");
    }
    if d.memory_mb == Some(0) {
        wrong("docker.memory_mb must be at least 1");
    }
    for v in &d.volumes {
        if let Err(e) = volume(v) {
            wrong(&format!("docker.volumes: {v:?}: {e}"));
        }
    }
    if let Some(k) = d.env.keys().find(|k| !env_name(k)) {
        wrong(&format!("docker.env: {k:?} is not a variable name"));
    }
    if d.labels.keys().any(|k| k.starts_with(LABEL_PREFIX)) {
        wrong("docker.labels starting with `pbmaster.` are the master's own");
    }
    right.then(|| d.clone())
}

/// A bind mount's parts: both paths absolute, an optional `ro` or `rw`.
fn volume(v: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, inside) = match parts.as_slice() {
        [h, c] => (h, c),
        [h, c, "ro" | "rw"] => (h, c),
        _ => return Err("write HOST_PATH:CONTAINER_PATH, optionally :ro or :rw"),
    };
    if !host.starts_with('/') || !inside.starts_with('/') {
        return Err("both paths must be absolute");
    }
    Ok(())
}

fn env_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const BASE: &str = "[master]\ndata_dir = \"d\"\n[[builder]]\nname = \"b\"\nworkers = [\"pool\"]\n[[builder.step]]\ncommand = \"true\"\n[[latent_pool]]\nname = \"pool\"\ndriver = \"docker\"\n";

    fn problems(pool: &str) -> Vec<String> {
        match parse(&format!("{BASE}{pool}")) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_docker_pool_is_checked() {
        let e = problems("");
        assert!(
            e.iter()
                .any(|m| m.contains("needs a [latent_pool.docker] table")),
            "{e:?}"
        );
        let e = problems("[latent_pool.docker]\nimage = \"i\"\n");
        assert!(
            e.iter().any(|m| m.contains("need `master_address`")),
            "{e:?}"
        );
        let e = problems(
            "[latent_pool.docker]\nimage = \"i\"\nnetwork = \"host\"\nhost = \"tcp://x:2375\"\ncpus = 0.0\nvolumes = [\"rel:/x\"]\nenv = { \"A-B\" = \"1\" }\nlabels = { \"pbmaster.master\" = \"x\" }\n",
        );
        for wanted in [
            "unix socket",
            "docker.cpus",
            "docker.volumes",
            "not a variable name",
            "the master's own",
        ] {
            assert!(e.iter().any(|m| m.contains(wanted)), "{wanted}: {e:?}");
        }
        let ok = problems("[latent_pool.docker]\nimage = \"i\"\nnetwork = \"host\"\n");
        assert_eq!(ok.is_empty(), cfg!(feature = "docker"), "{ok:?}");
    }

    #[test]
    fn volumes_and_variable_names_are_checked() {
        assert!(volume("/a:/b").is_ok());
        assert!(volume("/a:/b:ro").is_ok());
        assert!(volume("a:/b").is_err());
        assert!(volume("/a:/b:rx").is_err());
        assert!(volume("/a").is_err());
        assert!(env_name("PIP_NO_INDEX"));
        assert!(!env_name("1X"));
        assert!(!env_name("A=B"));
        assert!(!env_name(""));
    }
}
