//! Changes end to end: a real `buildbot sendchange` over PB, JSON and GitHub/GitLab
//! push payloads over HTTP, branch and file filters, tree-stable timers surviving a
//! master crash, and a periodic scheduler across restarts — with builds on a real
//! buildbot-worker 4.3.0.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::changes::{post_raw, sendchange, sent, try_post_raw};
use support::master::{test_dir, MasterProcess};
use support::workers::{Generation, RunningWorker, WorkerOptions};

const LONG: Duration = Duration::from_secs(90);

const WORKERS_AND_BUILDERS: &str = r#"
[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "main-build"
workers = ["w1"]

[[builder.step]]
command = "echo building"

[[builder]]
name = "docs-build"
workers = ["w1"]

[[builder.step]]
command = "echo docs"
"#;

fn start(name: &str, extra: &str) -> (MasterProcess, RunningWorker) {
    let dir = test_dir(name);
    let master = MasterProcess::start(
        &dir.join("master"),
        "",
        &format!("{WORKERS_AND_BUILDERS}\n{extra}"),
    );
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    (master, worker)
}

/// Waits until change `id` has caused requests and all of them are complete.
fn wait_change_built(master: &MasterProcess, id: i64) -> Value {
    master.wait_for(
        &format!("/api/changes/{id}"),
        LONG,
        &format!("change {id} to be built"),
        |v| {
            v["requests"]
                .as_array()
                .is_some_and(|r| !r.is_empty() && r.iter().all(|r| r["complete"] == true))
        },
    )
}

/// Returns once the coordinator has handled a message, hence finished starting its
/// schedulers (it restores them before taking any): a change no scheduler takes.
fn barrier(master: &MasterProcess) {
    master.post(
        "/api/changes",
        json!({"author": "barrier", "branch": "no-scheduler-takes-this"}),
    );
}

fn builders_of(change: &Value) -> Vec<String> {
    let mut b: Vec<String> = change["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["builder"].as_str().unwrap_or_default().to_owned())
        .collect();
    b.sort();
    b
}

fn request_ids(change: &Value) -> Vec<i64> {
    change["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_i64().or_else(|| r["id"].as_i64()))
        .collect()
}

#[test]
fn buildbot_sendchange_over_pb_triggers_a_build() {
    let (master, _worker) = start(
        "changes-pb",
        r#"
[changes]
pb_user = "change"
pb_password = "changepw"

[[scheduler]]
name = "on-main"
kind = "changes"
branch = "main"
builders = ["main-build"]
properties = { origin = "sendchange" }
"#,
    );
    let out = sendchange(
        master.pb,
        "change:changepw",
        &[
            "--branch",
            "main",
            "--revision",
            "1234abcd",
            "--who",
            "Alice <alice@example.org>",
            "--comments",
            "fix the frobnicator",
            "--repository",
            "https://example.org/repo.git",
            "--project",
            "frob",
            "--property",
            "ticket:42",
            "src/frob.c",
            "doc/frob.md",
        ],
    );
    assert!(
        out.status.success() && sent(&out),
        "sendchange failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let changes = master.get("/api/changes");
    let change = &changes[0];
    assert_eq!(change["author"], "Alice <alice@example.org>");
    assert_eq!(change["branch"], "main");
    assert_eq!(change["revision"], "1234abcd");
    assert_eq!(change["comments"], "fix the frobnicator");
    assert_eq!(change["files"], json!(["src/frob.c", "doc/frob.md"]));
    assert_eq!(change["properties"]["ticket"], "42");
    assert_eq!(change["source"], "pb");

    let id = change["id"].as_i64().expect("change id");
    let built = wait_change_built(&master, id);
    assert_eq!(builders_of(&built), ["main-build"]);
    let request = &built["requests"][0];
    assert_eq!(request["result"], "success", "{built}");
    let props = &request["properties"];
    assert_eq!(props["branch"], "main");
    assert_eq!(props["revision"], "1234abcd");
    assert_eq!(props["repository"], "https://example.org/repo.git");
    assert_eq!(props["project"], "frob");
    assert_eq!(props["scheduler"], "on-main");
    assert_eq!(props["origin"], "sendchange");
    assert!(
        request["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("on-main"),
        "{request}"
    );
    let req_id = request["id"].as_i64().expect("request id");
    assert_eq!(
        master.get(&format!("/api/buildrequests/{req_id}"))["changes"],
        json!([id])
    );

    // A wrong password is refused, and nothing is stored.
    let refused = sendchange(master.pb, "change:wrong", &["--who", "mallory", "x"]);
    assert!(
        !sent(&refused),
        "a wrong password must not deliver a change"
    );
    // A change on another branch is stored but starts nothing.
    let other = sendchange(
        master.pb,
        "change:changepw",
        &["--branch", "feature", "--who", "bob", "f.c"],
    );
    assert!(sent(&other));
    let changes = master.get("/api/changes");
    assert_eq!(changes.as_array().map(Vec::len), Some(2), "{changes}");
    assert_eq!(changes[0]["branch"], "feature");
    assert_eq!(changes[0]["requests"], json!([]));
}

#[test]
fn http_json_and_push_hooks_follow_branch_and_file_filters() {
    let (master, _worker) = start(
        "changes-http",
        r#"
[[scheduler]]
name = "main-code"
kind = "changes"
branch = "main"
files = ["src/**", "Cargo.toml"]
builders = ["main-build"]

[[scheduler]]
name = "docs"
kind = "changes"
branch_regex = "main|dev"
files = ["docs/**/*.md"]
builders = ["docs-build"]
"#,
    );
    // JSON change on main touching code: main-build only.
    let code = master.post(
        "/api/changes",
        json!({"author": "carol", "branch": "main", "revision": "r1", "files": ["src/lib.rs"]}),
    )["change_id"]
        .as_i64()
        .expect("change id");
    // GitHub push to dev touching docs: docs-build only.
    let push = json!({
        "ref": "refs/heads/dev", "after": "feedbeef", "deleted": false,
        "repository": {"html_url": "https://github.com/o/r", "full_name": "o/r"},
        "pusher": {"name": "dave", "email": "dave@example.org"},
        "head_commit": {"id": "feedbeef", "message": "document it", "url": "https://github.com/o/r/commit/feedbeef",
                        "author": {"name": "Dave", "email": "dave@example.org"},
                        "added": ["docs/guide/intro.md"], "modified": [], "removed": []},
        "commits": [{"id": "feedbeef", "message": "document it", "added": ["docs/guide/intro.md"], "modified": [], "removed": []}]
    });
    let (status, answer) = post_raw(
        &master.api,
        "/api/hooks/github",
        &[("X-GitHub-Event", "push")],
        push.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    let docs = answer["change_id"].as_i64().expect("change id");
    // GitLab push to main touching both: both builders.
    let gitlab = json!({
        "object_kind": "push", "ref": "refs/heads/main", "after": "0a1b2c", "checkout_sha": "0a1b2c",
        "user_name": "Erin", "user_email": "erin@example.org",
        "project": {"web_url": "https://gitlab.example.org/g/p", "path_with_namespace": "g/p"},
        "commits": [{"id": "0a1b2c", "message": "both", "author": {"name": "Erin", "email": "erin@example.org"},
                     "added": [], "modified": ["Cargo.toml", "docs/x.md"], "removed": []}]
    });
    let (status, answer) = post_raw(
        &master.api,
        "/api/hooks/gitlab",
        &[("X-Gitlab-Event", "Push Hook")],
        gitlab.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    let both = answer["change_id"].as_i64().expect("change id");

    // Filtered out entirely: dev touching code; a feature branch touching docs.
    let none1 = master.post(
        "/api/changes",
        json!({"author": "f", "branch": "dev", "files": ["src/lib.rs"]}),
    )["change_id"]
        .as_i64()
        .expect("id");
    let none2 = master.post(
        "/api/changes",
        json!({"author": "f", "branch": "feature", "files": ["docs/a.md"]}),
    )["change_id"]
        .as_i64()
        .expect("id");

    let code = wait_change_built(&master, code);
    assert_eq!(builders_of(&code), ["main-build"]);
    assert_eq!(code["requests"][0]["result"], "success");
    let docs = wait_change_built(&master, docs);
    assert_eq!(builders_of(&docs), ["docs-build"]);
    assert_eq!(docs["source"], "github");
    assert_eq!(docs["author"], "Dave <dave@example.org>");
    assert_eq!(docs["requests"][0]["properties"]["branch"], "dev");
    assert_eq!(docs["requests"][0]["properties"]["revision"], "feedbeef");
    assert_eq!(
        docs["requests"][0]["properties"]["repository"],
        "https://github.com/o/r"
    );
    let both = wait_change_built(&master, both);
    assert_eq!(builders_of(&both), ["docs-build", "main-build"]);
    assert!(both["builds"].as_array().is_some_and(|b| b.len() == 2));
    for id in [none1, none2] {
        let c = master.get(&format!("/api/changes/{id}"));
        assert_eq!(c["requests"], json!([]), "{c}");
    }

    // Bad input is refused with 400 and stores nothing.
    let before = master
        .get("/api/changes?limit=1000")
        .as_array()
        .map(Vec::len);
    for (path, body) in [
        ("/api/changes", &b"{not json"[..]),
        ("/api/changes", br#"{"files": "not a list"}"#),
        ("/api/hooks/github", br#"{"ref": 7}"#),
    ] {
        let (status, answer) = post_raw(&master.api, path, &[], body);
        assert_eq!(status, 400, "{path}: {answer}");
    }
    let huge = json!({"author": "x", "comments": "c".repeat(2 << 20)});
    let refused = try_post_raw(
        &master.api,
        "/api/changes",
        &[],
        huge.to_string().as_bytes(),
    );
    // Either answered 413, or the connection closed before the whole body was sent.
    assert!(
        refused.as_ref().map_or(true, |(status, _)| *status == 413),
        "bodies are bounded: {refused:?}"
    );
    let (status, answer) = post_raw(
        &master.api,
        "/api/hooks/github",
        &[("X-GitHub-Event", "ping")],
        b"{}",
    );
    assert_eq!((status, answer["ignored"].is_string()), (200, true));
    let after = master
        .get("/api/changes?limit=1000")
        .as_array()
        .map(Vec::len);
    assert_eq!(before, after);
}

#[test]
fn a_master_crash_during_a_tree_stable_timer_loses_no_change() {
    let (mut master, _worker) = start(
        "changes-stable",
        r#"
[[scheduler]]
name = "stable"
kind = "changes"
branch = "main"
tree_stable_timer = 10
builders = ["main-build"]
"#,
    );
    let post = |rev: &str| {
        master.post(
            "/api/changes",
            json!({"author": "gus", "branch": "main", "revision": rev, "files": ["a"]}),
        )["change_id"]
            .as_i64()
            .expect("change id")
    };
    let first = post("r1");
    let second = post("r2");
    // Both are stored and held by the timer; nothing has been requested yet.
    for id in [first, second] {
        let c = master.get(&format!("/api/changes/{id}"));
        assert_eq!(c["held_by"], json!(["stable"]), "{c}");
        assert_eq!(c["requests"], json!([]), "{c}");
    }

    master.kill();
    master.restart();
    barrier(&master);
    assert!(
        master.log().contains("2 held change(s) reloaded"),
        "the restarted master reloads the held changes"
    );

    let built = wait_change_built(&master, second);
    assert_eq!(builders_of(&built), ["main-build"]);
    let request = &built["requests"][0];
    assert_eq!(request["result"], "success", "{built}");
    assert_eq!(
        request["properties"]["revision"], "r2",
        "the newest change's"
    );
    assert!(request["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("2 change(s)"));
    // One request for both changes, no duplicates.
    let first = master.get(&format!("/api/changes/{first}"));
    assert_eq!(request_ids(&first), request_ids(&built));
    assert_eq!(first["held_by"], json!([]));
    let all = master.get("/api/buildrequests");
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
}

#[test]
fn a_periodic_scheduler_fires_once_at_first_start_and_not_again_on_restart() {
    let dir = test_dir("changes-periodic");
    let mut master = MasterProcess::start(
        &dir.join("master"),
        "",
        &format!(
            "{WORKERS_AND_BUILDERS}\n{}",
            r#"
[[scheduler]]
name = "hourly"
kind = "periodic"
interval = 3600
builders = ["main-build"]
properties = { cadence = "hourly" }
"#
        ),
    );
    let requests = master.wait_for("/api/buildrequests", LONG, "the first firing", |v| {
        v.as_array().is_some_and(|a| !a.is_empty())
    });
    assert_eq!(requests.as_array().map(Vec::len), Some(1), "{requests}");
    assert_eq!(requests[0]["properties"]["scheduler"], "hourly");
    assert_eq!(requests[0]["properties"]["cadence"], "hourly");
    master.kill();
    master.restart();
    barrier(&master);
    let requests = master.get("/api/buildrequests");
    assert_eq!(
        requests.as_array().map(Vec::len),
        Some(1),
        "not fired again: {requests}"
    );
}
