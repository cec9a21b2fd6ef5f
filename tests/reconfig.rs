//! Reconfiguring a running master with a real buildbot-worker attached: SIGHUP
//! removes a builder while its build runs, adds another and changes a scheduler,
//! without the worker logging in again; `pbmaster reconfig` refuses a broken config
//! (saying where it is wrong) and a caller without a token.

mod support;

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use support::changes::post_raw;
use support::master::{test_dir, MasterProcess, API_TOKEN};
use support::workers::{Generation, RunningWorker, WorkerOptions};

const LONG: Duration = Duration::from_secs(60);

/// w1 runs two builds at once; `a` runs until `release` exists; `on-main` builds
/// `b` for changes on main.
fn body(release: &Path) -> String {
    format!(
        r#"
[[worker]]
name = "w1"
password = "pass"
max_builds = 2

[[builder]]
name = "a"
workers = ["w1"]
[[builder.step]]
command = "while [ ! -e '{}' ]; do sleep 0.1; done; echo a-released"

[[builder]]
name = "b"
workers = ["w1"]
[[builder.step]]
command = "echo b-ran"

[[scheduler]]
name = "on-main"
kind = "changes"
branch = "main"
builders = ["b"]
"#,
        release.display()
    )
}

/// `a` removed, `c` added, `on-main` building `c` instead of `b`.
const NEW_BODY: &str = r#"
[[worker]]
name = "w1"
password = "pass"
max_builds = 2

[[builder]]
name = "b"
workers = ["w1"]
[[builder.step]]
command = "echo b-ran"

[[builder]]
name = "c"
workers = ["w1"]
[[builder.step]]
command = "echo c-ran"

[[scheduler]]
name = "on-main"
kind = "changes"
branch = "main"
builders = ["c"]
"#;

fn pbmaster(api: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pbmaster"));
    cmd.args(args)
        .env("PBMASTER_API", api)
        .env_remove("PBMASTER_TOKEN")
        .env_remove("PBMASTER_TOKEN_FILE");
    if let Some(t) = token {
        cmd.env("PBMASTER_TOKEN", t);
    }
    cmd.output().expect("pbmaster runs")
}

fn builder_names(master: &MasterProcess) -> Vec<String> {
    let mut names: Vec<String> = master
        .get("/api/builders")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// The worker's connection as the API records it: its peer address and when it
/// attached.
fn connection(master: &MasterProcess) -> (Value, Value) {
    let workers = master.get("/api/workers");
    let w = workers
        .as_array()
        .and_then(|l| l.iter().find(|w| w["name"] == "w1"))
        .cloned()
        .expect("w1 listed");
    assert_eq!(w["state"], "attached", "{w}");
    (w["peer"].clone(), w["connected_at"].clone())
}

fn result_of(master: &MasterProcess, request: i64) -> Value {
    master.wait_request(request, LONG)["result"].clone()
}

#[test]
fn sighup_swaps_builders_and_schedulers_under_a_running_build_and_a_bad_config_is_refused() {
    let dir = test_dir("reconfig");
    let release = dir.join("release-a");
    let mut master = MasterProcess::start(&dir.join("master"), "", &body(&release));
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let _worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let before = connection(&master);

    let a = master.force("a");
    let running = master.wait_running_build(a, LONG);

    master.rewrite_config("", NEW_BODY);
    master.signal_hup();
    master.wait_for("/api/builders", LONG, "builder c to exist", |v| {
        v.as_array()
            .is_some_and(|l| l.iter().any(|b| b["name"] == "c"))
    });
    assert_eq!(builder_names(&master), ["b", "c"]);

    // The new builder builds while the removed one's build still runs.
    let c = master.force("c");
    assert_eq!(result_of(&master, c), "success");
    let a_build = master.get(&format!("/api/builds/{}", running["id"]));
    assert!(a_build["finished_at"].is_null(), "a still runs: {a_build}");
    // The changed scheduler builds `c` for a change on main.
    let change = master.post("/api/changes", json!({"author": "dev", "branch": "main"}))
        ["change_id"]
        .as_i64()
        .expect("change id");
    let built = master.wait_for(
        &format!("/api/changes/{change}"),
        LONG,
        "the change to be built",
        |v| {
            v["requests"]
                .as_array()
                .is_some_and(|r| !r.is_empty() && r.iter().all(|r| r["complete"] == true))
        },
    );
    let builders: Vec<&str> = built["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["builder"].as_str())
        .collect();
    assert_eq!(builders, ["c"], "{built}");

    // The removed builder's build ends as it would have.
    std::fs::write(&release, "").expect("release a");
    assert_eq!(result_of(&master, a), "success");
    let log = master.output(running["id"].as_i64().expect("id"), 1, "stdout");
    assert!(log.contains("a-released"), "{log}");
    assert_eq!(
        connection(&master),
        before,
        "the same connection throughout"
    );
    assert_eq!(
        master.log().matches("worker attached").count(),
        1,
        "no second login"
    );
    let (status, forced) = post_raw(&master.api, "/api/builders/a/force", &[], b"{}");
    assert_eq!(status, 400, "a is gone: {forced}");

    // A broken config is refused, saying where; the running one stays.
    let broken = NEW_BODY.replace(
        "workers = [\"w1\"]\n[[builder.step]]\ncommand = \"echo c-ran\"",
        "workers = [\"nobody\"]\n[[builder.step]]\ncommand = \"echo c-ran\"",
    );
    assert_ne!(broken, NEW_BODY);
    master.rewrite_config("", &broken);
    let out = pbmaster(&master.api, Some(API_TOKEN), &["reconfig"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("refused"), "{err}");
    assert!(
        err.contains("master.toml: line ") && err.contains("worker \"nobody\" is not defined"),
        "{err}"
    );
    assert_eq!(builder_names(&master), ["b", "c"]);
    let c = master.force("c");
    assert_eq!(
        result_of(&master, c),
        "success",
        "the previous config builds"
    );

    // Without a token nothing is read again.
    master.rewrite_config("shutdown_grace = 7", NEW_BODY);
    let out = pbmaster(&master.api, None, &["reconfig"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("needs a token"), "{err}");
    let (status, _) = post_raw(
        &master.api,
        "/api/reconfig",
        &[("authorization", "Bearer wrong-token-0123456789")],
        b"{}",
    );
    assert_eq!(status, 401);
    // With one, a setting bound at start is reported, not applied.
    let out = pbmaster(&master.api, Some(API_TOKEN), &["reconfig"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("[master] shutdown_grace changed: needs a restart"),
        "{text}"
    );
    assert_eq!(connection(&master), before, "still the same connection");
}

#[test]
fn an_added_worker_attaches_and_a_changed_password_counts_from_the_next_login() {
    let dir = test_dir("reconfig-workers");
    let mut master = MasterProcess::start(&dir.join("master"), "", NEW_BODY);
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let mut w1 = RunningWorker::start(Generation::Worker4, &dir.join("w1"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let before = connection(&master);

    let added = format!(
        "{}\n[[worker]]\nname = \"w2\"\npassword = \"pass2\"\n\n\
         [[builder]]\nname = \"d\"\nworkers = [\"w2\"]\n[[builder.step]]\ncommand = \"echo d-ran\"\n",
        NEW_BODY.replacen("password = \"pass\"", "password = \"changed\"", 1)
    );
    master.rewrite_config("", &added);
    let out = pbmaster(&master.api, Some(API_TOKEN), &["reconfig"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("workers added: w2") && text.contains("workers changed: w1"),
        "{text}"
    );
    assert_eq!(
        connection(&master),
        before,
        "w1 stays attached with its old password"
    );

    let w2_opts = WorkerOptions::new("w2", "pass2", master.pb);
    let _w2 = RunningWorker::start(Generation::Worker4, &dir.join("w2"), &w2_opts).expect("w2");
    master.wait_attached("w2", LONG);
    let d = master.force("d");
    assert_eq!(result_of(&master, d), "success");

    // w1 comes back: the new password lets it in.
    w1.kill();
    let changed = WorkerOptions::new("w1", "changed", master.pb);
    let _w1 = RunningWorker::start(Generation::Worker4, &dir.join("w1"), &changed).expect("w1");
    master.wait_for("/api/workers", LONG, "w1 to attach again", |v| {
        v.as_array()
            .into_iter()
            .flatten()
            .any(|w| w["name"] == "w1" && w["state"] == "attached" && w["connected_at"] != before.1)
    });
    let c = master.force("c");
    assert_eq!(result_of(&master, c), "success");
}
