use super::*;
use crate::config::parse;

const BASE: &str = r#"
[master]
data_dir = "/d"
pb_listen = "127.0.0.1:9989"

[[worker]]
name = "w1"
password = "p1"

[[worker]]
name = "w2"
password = "p2"

[[builder]]
name = "a"
workers = ["w1"]
[[builder.step]]
command = "echo a"

[[builder]]
name = "b"
workers = ["w1", "w2"]
[[builder.step]]
command = "echo b"

[[scheduler]]
name = "every"
kind = "periodic"
interval = 60
builders = ["a"]
"#;

fn config(edits: &[(&str, &str)]) -> Config {
    let mut text = BASE.to_owned();
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} is in the config");
        text = text.replacen(from, to, 1);
    }
    parse(&text).unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn the_same_config_changes_nothing() {
    let d = Diff::between(&config(&[]), &config(&[]));
    assert!(d.is_empty(), "{d:?}");
    assert!(d.needs_restart.is_empty());
    assert_eq!(d.summary(), ["no change"]);
}

#[test]
fn builders_are_added_removed_and_changed_by_name() {
    let new = config(&[
        ("name = \"a\"\nworkers", "name = \"c\"\nworkers"),
        ("builders = [\"a\"]", "builders = [\"c\"]"),
        ("echo b", "echo b2"),
    ]);
    let d = Diff::between(&config(&[]), &new);
    assert_eq!(d.builders.added, ["c"]);
    assert_eq!(d.builders.removed, ["a"]);
    assert_eq!(
        d.builders.changed,
        ["b"],
        "a changed step is a changed builder"
    );
    assert_eq!(d.schedulers.changed, ["every"], "its builder list changed");
    assert!(d.workers.is_empty());
    assert!(d.summary().contains(&"builders removed: a".to_owned()));
}

#[test]
fn a_worker_changes_with_its_password_or_max_builds_only() {
    let old = config(&[]);
    let d = Diff::between(
        &old,
        &config(&[("password = \"p2\"", "password = \"new\"")]),
    );
    assert_eq!(d.workers.changed, ["w2"]);
    let d = Diff::between(
        &old,
        &config(&[("password = \"p1\"", "password = \"p1\"\nmax_builds = 3")]),
    );
    assert_eq!(d.workers.changed, ["w1"]);
    let d = Diff::between(
        &old,
        &config(&[(
            "password = \"p1\"",
            "password_env = \"PBMASTER_RECONFIG_PW\"",
        )]),
    );
    assert_eq!(d.workers.changed, ["w1"], "another source is a change");
}

#[test]
fn a_changed_schedule_is_a_changed_scheduler() {
    let d = Diff::between(&config(&[]), &config(&[("interval = 60", "interval = 30")]));
    assert_eq!(d.schedulers.changed, ["every"]);
    assert!(d.builders.is_empty());
}

#[test]
fn settings_bound_at_start_need_a_restart_and_keep_their_running_values() {
    let old = config(&[]);
    let new = config(&[
        ("127.0.0.1:9989", "127.0.0.1:9990"),
        (
            "data_dir = \"/d\"",
            "data_dir = \"/elsewhere\"\nshutdown_grace = 5",
        ),
        (
            "[[worker]]",
            "[limits]\nlog_max_size = 2000000\nmax_time = 100\n\n[retention]\nlogs = \"30d\"\n\n\
             [store]\nurl = \"postgres://pb@db/pb\"\npassword_env = \"PB_DB\"\n\n\
             [[change_source]]\nname = \"app\"\nkind = \"git\"\nrepo = \"/srv/app.git\"\n\n[[worker]]",
        ),
    ]);
    let d = Diff::between(&old, &new);
    assert_eq!(
        d.needs_restart,
        [
            "[master] pb_listen",
            "[master] data_dir",
            "[master] shutdown_grace",
            "[limits] log_max_size",
            "[retention]",
            "[store]",
            "[[change_source]]"
        ]
    );
    // A step's default max_time is the step's: it applies to new builds.
    assert_eq!(d.builders.changed, ["a", "b"]);
    assert!(d.workers.is_empty() && d.schedulers.is_empty(), "{d:?}");
    let applied = Diff::effective(&old, &new);
    assert_eq!(applied.master.pb_listen, "127.0.0.1:9989");
    assert_eq!(applied.master.data_dir, old.master.data_dir);
    assert_eq!(applied.limits.log_max_size, old.limits.log_max_size);
    assert_eq!(applied.limits.max_time, 100);
    assert_eq!(applied.retention, old.retention);
    assert_eq!(
        applied.store, None,
        "the running store stays until a restart"
    );
    assert!(
        applied.change_sources.is_empty(),
        "pollers start with the master"
    );
    assert!(Diff::between(&old, &applied).needs_restart.is_empty());
    let summary = d.summary().join("\n");
    assert!(
        summary.contains("[master] pb_listen changed: needs a restart"),
        "{summary}"
    );
}

#[test]
fn a_pool_whose_driver_changes_is_named_apart() {
    let pool =
        "\n[[latent_pool]]\nname = \"p\"\ndriver = \"local\"\nvenv = \"/v1\"\nmax_instances = 2\n";
    let old = config(&[("[[builder]]", &format!("{pool}\n[[builder]]"))]);
    let bigger = config(&[(
        "[[builder]]",
        &format!(
            "{}\n[[builder]]",
            pool.replace("max_instances = 2", "max_instances = 3")
        ),
    )]);
    let d = Diff::between(&old, &bigger);
    assert_eq!(d.latent_pools.changed, ["p"]);
    assert!(d.pool_drivers.is_empty(), "the driver is the same");
    let moved = config(&[(
        "[[builder]]",
        &format!("{}\n[[builder]]", pool.replace("/v1", "/v2")),
    )]);
    let d = Diff::between(&old, &moved);
    assert_eq!(d.pool_drivers, ["p"]);
    let d = Diff::between(&old, &config(&[]));
    assert_eq!(d.latent_pools.removed, ["p"]);
}

#[test]
fn api_tokens_and_hooks_are_compared_whole() {
    let old = config(&[]);
    let token = "\n[[api_token]]\nname = \"t\"\nroles = [\"admin\"]\ntoken_env = \"PBMASTER_RECONFIG_TOKEN\"\n";
    let d = Diff::between(
        &old,
        &config(&[("[[worker]]", &format!("{token}\n[[worker]]"))]),
    );
    assert!(d.api && !d.hooks, "{d:?}");
    let hook = "\n[hooks.github]\nsecret_env = \"PBMASTER_RECONFIG_HOOK\"\n";
    let d = Diff::between(
        &old,
        &config(&[("[[worker]]", &format!("{hook}\n[[worker]]"))]),
    );
    assert!(d.hooks && !d.api, "{d:?}");
}
