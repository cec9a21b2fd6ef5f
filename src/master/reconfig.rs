//! What a reconfiguration changes: the one place that compares the running config
//! with a newly loaded one. Named items (workers, builders, schedulers, latent pools,
//! reporters) are added, removed or changed; the `[api]`, `[hooks]` and `[changes]`
//! logins are swapped whole; settings that are bound at start (listen addresses, the
//! data folder, TLS files, `[secrets]`, `[retention]`, `[[change_source]]`, the log and
//! disk `[limits]`) are only
//! reported as needing a restart, and [`Diff::effective`] keeps their running values so nothing is applied
//! half-way.

use crate::config::{Config, LatentPoolConfig, Limits, MasterConfig, WorkerConfig};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Debug;

/// Names added, removed and changed in one kind of item, each list sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Changes {
    /// Compares two lists of items by name; `same` says whether two items with the
    /// same name are alike.
    fn between<T>(old: &[T], new: &[T], name: fn(&T) -> &str, same: fn(&T, &T) -> bool) -> Self {
        let old: BTreeMap<&str, &T> = old.iter().map(|t| (name(t), t)).collect();
        let new: BTreeMap<&str, &T> = new.iter().map(|t| (name(t), t)).collect();
        let mut c = Changes::default();
        for (n, item) in &new {
            match old.get(n) {
                None => c.added.push((*n).to_owned()),
                Some(was) if !same(was, item) => c.changed.push((*n).to_owned()),
                Some(_) => {}
            }
        }
        c.removed = old
            .keys()
            .filter(|n| !new.contains_key(*n))
            .map(|n| (*n).to_owned())
            .collect();
        c
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The difference between the running config and a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub workers: Changes,
    pub builders: Changes,
    pub schedulers: Changes,
    pub latent_pools: Changes,
    /// Pools whose driver settings changed (a subset of `latent_pools.changed`): their
    /// instances were started by the old driver.
    pub pool_drivers: Vec<String>,
    pub reporters: Changes,
    /// `[api]`, its tokens or its users changed.
    pub api: bool,
    /// `[hooks]` changed.
    pub hooks: bool,
    /// `[changes]` (the change source's login) changed.
    pub change_source: bool,
    /// Settings that changed but are bound at start: `[master] pb_listen`, ...
    pub needs_restart: Vec<String>,
}

/// Two values alike as far as every field goes. Config types carry compiled
/// patterns (which have no equality of their own) but print every field with
/// `Debug`; secrets there print as placeholders, and are compared where they matter
/// (worker passwords) by [`same_worker`].
fn same_debug<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

fn same_worker(a: &WorkerConfig, b: &WorkerConfig) -> bool {
    a.max_builds == b.max_builds && a.password == b.password
}

fn same_pool_driver(a: &LatentPoolConfig, b: &LatentPoolConfig) -> bool {
    same_debug(&a.driver, &b.driver)
}

/// `[master]` keys that differ (all are bound at start).
fn master_keys(a: &MasterConfig, b: &MasterConfig) -> Vec<String> {
    let keys: [(&str, bool); 10] = [
        ("pb_listen", a.pb_listen != b.pb_listen),
        ("http_listen", a.http_listen != b.http_listen),
        ("data_dir", a.data_dir != b.data_dir),
        ("max_connections", a.max_connections != b.max_connections),
        (
            "keepalive_interval",
            a.keepalive_interval != b.keepalive_interval,
        ),
        (
            "keepalive_timeout",
            a.keepalive_timeout != b.keepalive_timeout,
        ),
        ("shutdown_grace", a.shutdown_grace != b.shutdown_grace),
        ("login_timeout", a.login_timeout != b.login_timeout),
        ("pb_tls", a.pb_tls != b.pb_tls),
        ("log_format", a.log_format != b.log_format),
    ];
    keys.iter()
        .filter(|(_, differs)| *differs)
        .map(|(k, _)| format!("[master] {k}"))
        .collect()
}

/// `[limits]` keys bound at start that differ. `max_time` and `upload_max_size` are
/// not among them: they are the defaults of steps, which carry them, so they apply
/// to builds started from now on.
fn limit_keys(a: &Limits, b: &Limits) -> Vec<String> {
    let keys = [
        ("log_max_size", a.log_max_size != b.log_max_size),
        ("log_tail_size", a.log_tail_size != b.log_tail_size),
        ("min_free_disk", a.min_free_disk != b.min_free_disk),
    ];
    keys.iter()
        .filter(|(_, differs)| *differs)
        .map(|(k, _)| format!("[limits] {k}"))
        .collect()
}

impl Diff {
    /// What applying `new` over `old` changes.
    pub fn between(old: &Config, new: &Config) -> Diff {
        let mut needs_restart = master_keys(&old.master, &new.master);
        if !same_debug(&old.secrets, &new.secrets) {
            needs_restart.push("[secrets]".into());
        }
        needs_restart.extend(limit_keys(&old.limits, &new.limits));
        if old.retention != new.retention {
            needs_restart.push("[retention]".into());
        }
        if old.store != new.store {
            needs_restart.push("[store]".into());
        }
        if old.cluster != new.cluster {
            needs_restart.push("[cluster]".into());
        }
        // Pollers run from start to stop, each with its mirror and remembered heads.
        if old.change_sources != new.change_sources {
            needs_restart.push("[[change_source]]".into());
        }
        let latent_pools = Changes::between(
            &old.latent_pools,
            &new.latent_pools,
            |p| &p.name,
            same_debug,
        );
        let pool_drivers = latent_pools
            .changed
            .iter()
            .filter(|n| {
                let find = |c: &Config| c.latent_pools.iter().find(|p| &p.name == *n).cloned();
                matches!((find(old), find(new)), (Some(a), Some(b)) if !same_pool_driver(&a, &b))
            })
            .cloned()
            .collect();
        Diff {
            workers: Changes::between(&old.workers, &new.workers, |w| &w.name, same_worker),
            builders: Changes::between(&old.builders, &new.builders, |b| &b.name, same_debug),
            schedulers: Changes::between(&old.schedulers, &new.schedulers, |s| &s.name, same_debug),
            latent_pools,
            pool_drivers,
            reporters: Changes::between(&old.reporters, &new.reporters, |r| &r.name, |a, b| a == b),
            api: !same_api(old, new),
            hooks: !same_debug(&old.hooks, &new.hooks),
            change_source: !same_debug(&old.changes, &new.changes)
                || old.changes.as_ref().map(|c| &c.password)
                    != new.changes.as_ref().map(|c| &c.password),
            needs_restart,
        }
    }

    /// `new` with the running values of what needs a restart: what is applied.
    pub fn effective(old: &Config, new: &Config) -> Config {
        let mut config = new.clone();
        config.master = old.master.clone();
        config.secrets = old.secrets.clone();
        config.retention = old.retention;
        config.store = old.store.clone();
        config.cluster = old.cluster.clone();
        config.change_sources = old.change_sources.clone();
        config.limits = Limits {
            max_time: new.limits.max_time,
            upload_max_size: new.limits.upload_max_size,
            ..old.limits
        };
        config
    }

    /// Whether nothing applies (settings needing a restart aside).
    pub fn is_empty(&self) -> bool {
        [
            &self.workers,
            &self.builders,
            &self.schedulers,
            &self.latent_pools,
            &self.reporters,
        ]
        .iter()
        .all(|c| c.is_empty())
            && !self.api
            && !self.hooks
            && !self.change_source
    }

    /// One line per kind of change, for the log and the command's output.
    pub fn summary(&self) -> Vec<String> {
        if self.is_empty() && self.needs_restart.is_empty() {
            return vec!["no change".into()];
        }
        let mut lines = Vec::new();
        for (kind, c) in [
            ("workers", &self.workers),
            ("builders", &self.builders),
            ("schedulers", &self.schedulers),
            ("latent pools", &self.latent_pools),
            ("reporters", &self.reporters),
        ] {
            for (how, names) in [
                ("added", &c.added),
                ("removed", &c.removed),
                ("changed", &c.changed),
            ] {
                if !names.is_empty() {
                    lines.push(format!("{kind} {how}: {}", names.join(", ")));
                }
            }
        }
        for (what, changed) in [
            ("[api] and its tokens and users", self.api),
            ("[hooks]", self.hooks),
            ("[changes]", self.change_source),
        ] {
            if changed {
                lines.push(format!("{what} changed"));
            }
        }
        for setting in &self.needs_restart {
            lines.push(format!(
                "{setting} changed: needs a restart (ignored until then)"
            ));
        }
        lines
    }
}

/// `[api]` alike: settings, tokens (by name, roles and where the secret comes from)
/// and users (with their password hashes).
fn same_api(old: &Config, new: &Config) -> bool {
    let (a, b) = (&old.api, &new.api);
    a.users == b.users
        && a.public_read == b.public_read
        && a.hosts == b.hosts
        && a.origins == b.origins
        && a.secure_cookie == b.secure_cookie
        && a.tokens.len() == b.tokens.len()
        && a.tokens
            .iter()
            .zip(&b.tokens)
            .all(|(x, y)| x.name == y.name && x.roles == y.roles && x.secret == y.secret)
}

#[cfg(test)]
mod tests;
