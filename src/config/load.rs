//! Reading a config: the TOML with its spans, then every section checked and turned
//! into runtime types, with every problem collected.

use super::api::api;
use super::builders::builder;
use super::change_sources::change_sources;
use super::changes::login;
use super::cluster::cluster;
use super::error::{position, ConfigError, Problems};
use super::file::FileTable;
use super::hooks::hooks;
use super::latent::{instance_name_clashes, pool, LatentDriver};
use super::limits::limits;
use super::master::master;
use super::reporters::reporters;
use super::retention::retention;
use super::schedulers::scheduler;
use super::secrets::secrets;
use super::store::store;
use super::workers::worker;
use super::Config;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Reads and checks a config file. Relative paths in it are made relative to the
/// file's folder.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            location: None,
            message: format!("cannot read {}: {e}", path.display()),
        }]
    })?;
    let mut config = parse(&text)?;
    resolve_paths(&mut config, path.parent().unwrap_or(Path::new(".")));
    Ok(config)
}

/// Makes relative paths relative to `base`, and absolute where they are handed to
/// instances and subprocesses.
fn resolve_paths(config: &mut Config, base: &Path) {
    let absolute = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
        if let Ok(abs) = std::path::absolute(&*p) {
            *p = abs;
        }
    };
    absolute(&mut config.master.data_dir);
    if let Some(tls) = &mut config.master.pb_tls {
        tls.resolve_paths(base);
    }
    for p in &mut config.latent_pools {
        if let LatentDriver::Local { venv: Some(v), .. } = &mut p.driver {
            absolute(v);
        }
    }
    for w in &mut config.workers {
        w.password.resolve_paths(base);
    }
    if let Some(c) = &mut config.changes {
        c.password.resolve_paths(base);
    }
    for c in &mut config.change_sources {
        c.resolve_paths(base);
    }
    config.hooks.resolve_paths(base);
    for t in &mut config.api.tokens {
        t.secret.resolve_paths(base);
    }
    config.secrets.resolve_paths(base);
    if let Some(s) = &mut config.store {
        s.resolve_paths(base);
    }
    for r in &mut config.reporters {
        r.resolve_paths(base);
    }
}

/// Parses and checks config text.
pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    let file: FileTable = toml::from_str(text).map_err(|e| {
        vec![ConfigError {
            location: e.span().map(|s| position(text, s.start)),
            message: e.message().to_owned(),
        }]
    })?;
    let mut problems = Problems::new(text);
    let config = config(&file, &mut problems);
    problems.finish(config)
}

/// Every section in the file's order; names are checked across sections.
fn config(file: &FileTable, problems: &mut Problems) -> Option<Config> {
    let master = master(&file.master, problems);
    // Worker and pool names: builders may name latent pools as workers.
    let mut names = HashSet::new();
    let mut workers = Vec::new();
    for w in &file.workers {
        if !names.insert(w.name.get_ref().as_str()) {
            problems.at(
                w.name.span(),
                format!("worker {:?} is defined twice", w.name.get_ref()),
            );
        }
        workers.push(worker(w, problems));
    }
    let mut pools = Vec::new();
    for p in &file.latent_pools {
        if !names.insert(p.name.get_ref().as_str()) {
            problems.at(
                p.name.span(),
                format!(
                    "latent pool {:?}: the name is already used",
                    p.name.get_ref()
                ),
            );
        }
        pools.push(pool(p, problems));
    }
    instance_name_clashes(file, problems);
    let mut builder_names = HashSet::new();
    let mut builders = Vec::new();
    for b in &file.builders {
        if !builder_names.insert(b.name.get_ref().as_str()) {
            problems.at(
                b.name.span(),
                format!("builder {:?} is defined twice", b.name.get_ref()),
            );
        }
        builders.push(builder(b, &names, problems));
    }
    let mut scheduler_names = HashSet::new();
    let mut schedulers = Vec::new();
    for s in &file.schedulers {
        if !scheduler_names.insert(s.name.get_ref().as_str()) {
            problems.at(
                s.name.span(),
                format!("scheduler {:?} is defined twice", s.name.get_ref()),
            );
        }
        schedulers.push(scheduler(s, &builder_names, problems));
    }
    let changes = file
        .changes
        .as_ref()
        .and_then(|c| login(c, &names, problems));
    let change_sources = change_sources(&file.change_sources, problems);
    let hooks = file
        .hooks
        .as_ref()
        .map(|h| hooks(h, problems))
        .unwrap_or_default();
    let api = api(
        file.api.as_ref(),
        &file.api_tokens,
        &file.api_users,
        &master,
        problems,
    );
    let secrets = secrets(file.secrets.as_ref(), problems);
    let limits = limits(file.limits.as_ref(), problems);
    let retention = retention(file.retention.as_ref(), problems);
    let cluster = cluster(file.cluster.as_ref(), file.store.is_some(), problems);
    let store = store(file.store.as_ref(), problems);
    let reporters = reporters(&file.reporters, &builder_names, problems);
    let mut builders: Vec<_> = builders.into_iter().collect::<Option<_>>()?;
    limits.fill_step_defaults(&mut builders);
    Some(Config {
        master,
        workers: workers.into_iter().collect::<Option<_>>()?,
        builders,
        schedulers: schedulers.into_iter().collect::<Option<_>>()?,
        changes,
        change_sources: change_sources?,
        latent_pools: pools.into_iter().collect::<Option<_>>()?,
        hooks,
        api,
        secrets,
        limits,
        retention,
        store,
        reporters,
        cluster,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[master]
data_dir = "data"

[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "b1"
workers = ["w1"]

[[builder.step]]
command = "echo hi"

[[scheduler]]
name = "force"
kind = "force"
builders = ["b1"]
"#;

    #[test]
    fn accepts_a_minimal_config() {
        let c = parse(GOOD).unwrap();
        let crate::config::Step::Shell(shell) = &c.builders[0].steps[0].action else {
            panic!("a shell step: {:?}", c.builders[0].steps[0]);
        };
        assert_eq!(shell.workdir, "build");
        assert_eq!(c.master.pb_listen, "0.0.0.0:9989");
    }

    #[test]
    fn reports_every_error_with_its_line() {
        let bad = GOOD
            .replace("workers = [\"w1\"]", "workers = [\"w9\"]")
            .replace("builders = [\"b1\"]", "builders = [\"nope\"]");
        let errors = parse(&bad).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].location, Some((11, 12)));
        assert!(errors[0].message.contains("\"w9\" is not defined"));
        assert!(errors[1].message.contains("no builder \"nope\""));
    }

    #[test]
    fn checks_each_step_kind_s_keys() {
        let bad = GOOD.replace(
            "command = \"echo hi\"",
            "command = \"echo hi\"\n\n[[builder.step]]\nkind = \"upload\"\nworker_src = \"a\"\ndir = \"x\"\nmode = \"9\"",
        );
        let errors = parse(&bad).unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
        assert!(
            text.iter().any(|m| m.contains("needs `master_dest`")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|m| m.contains("`dir` does not apply")),
            "{text:?}"
        );
        assert!(text.iter().any(|m| m.contains("not octal")), "{text:?}");
        assert!(errors.iter().all(|e| e.location.is_some()));
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let errors = parse("[master]\ndata_dir = \n").unwrap_err();
        assert_eq!(errors[0].location.map(|l| l.0), Some(2));
        let errors = parse(&GOOD.replace("command", "comand")).unwrap_err();
        assert!(errors[0].message.contains("comand"), "{errors:?}");
    }

    #[test]
    fn pb_tls_is_off_by_default_and_its_files_are_relative_to_the_config() {
        assert_eq!(parse(GOOD).unwrap().master.pb_tls, None);
        let text = GOOD.replace(
            "data_dir = \"data\"",
            "data_dir = \"data\"\npb_tls = { cert_file = \"tls/cert.pem\", key_file = \"/etc/k.pem\" }",
        );
        let mut c = parse(&text).unwrap();
        resolve_paths(&mut c, Path::new("/srv/ci"));
        let tls = c.master.pb_tls.expect("pb_tls");
        assert_eq!(tls.cert_file, Path::new("/srv/ci/tls/cert.pem"));
        assert_eq!(tls.key_file, Path::new("/etc/k.pem"));
        assert_eq!(tls.line, 4);
    }

    #[test]
    fn a_bad_pb_tls_setting_is_reported_with_its_line() {
        let with = |setting: &str| {
            parse(&GOOD.replace(
                "data_dir = \"data\"",
                &format!("data_dir = \"data\"\npb_tls = {setting}"),
            ))
            .unwrap_err()
        };
        let e = with("{ cert_file = \"c.pem\" }");
        assert_eq!(e[0].location.map(|l| l.0), Some(4), "{e:?}");
        assert!(e[0].message.contains("key_file"), "{e:?}");
        let e = with("{ cert_file = \"c.pem\", key_file = \"k.pem\", ca = \"x\" }");
        assert_eq!(e[0].location.map(|l| l.0), Some(4), "{e:?}");
        let e = with("{ cert_file = \"\", key_file = \"k.pem\" }");
        assert_eq!(e[0].location, Some((4, 24)), "{e:?}");
        assert!(e[0].message.contains("pb_tls.cert_file is empty"), "{e:?}");
        let e = with("true");
        assert_eq!(e[0].location.map(|l| l.0), Some(4), "{e:?}");
    }

    #[test]
    fn checks_ec2_pools() {
        let pool = "\n[[latent_pool]]\nname = \"cloud\"\ndriver = \"ec2\"\n\n[latent_pool.ec2]\nregion = \"us-east-1\"\ninstance_type = \"t3.micro\"\nami_name = \"x-*\"\ntags = { \"pbmaster:pool\" = \"no\" }\n";
        let errors = parse(&format!("{GOOD}{pool}")).unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
        assert!(
            text.iter().any(|m| m.contains("needs ec2.ami_owners")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|m| m.contains("need `master_address`")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|m| m.contains("the master's own")),
            "{text:?}"
        );
        assert_eq!(
            text.iter().any(|m| m.contains("without the `ec2` feature")),
            !cfg!(feature = "ec2"),
            "{text:?}"
        );
        let good = pool
            .replace(
                "tags = { \"pbmaster:pool\" = \"no\" }",
                "ami_owners = [\"self\"]",
            )
            .replace(
                "driver = \"ec2\"",
                "driver = \"ec2\"\nmaster_address = \"ci:9989\"",
            );
        let result = parse(&format!("{GOOD}{good}"));
        assert_eq!(result.is_ok(), cfg!(feature = "ec2"), "{result:?}");
    }
}
