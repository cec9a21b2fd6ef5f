//! Changes end to end: a real `buildbot sendchange` over PB, JSON and GitHub/GitLab
//! push payloads over HTTP (signed, with tokens; refused when not, or when replayed),
//! branch and file filters, tree-stable timers surviving a master crash, and a
//! periodic scheduler across restarts — with builds on a real buildbot-worker 4.3.0.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::changes::{github_signature, post_raw, sendchange, sent, try_post_raw};
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
properties = { repository = "https://trusted.example/docs.git" }

[[builder.step]]
command = "echo docs"
"#;

fn start(name: &str, extra: &str) -> (MasterProcess, RunningWorker) {
    start_with(name, extra, &[])
}

/// [`start`], with `files` (name, content) written beside the config first.
fn start_with(name: &str, extra: &str, files: &[(&str, &str)]) -> (MasterProcess, RunningWorker) {
    let dir = test_dir(name);
    write_files(&dir.join("master"), files);
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

fn write_files(dir: &std::path::Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).expect("master dir");
    for (name, content) in files {
        std::fs::write(dir.join(name), content).expect("write file");
    }
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
    let (master, _worker) = start_with(
        "changes-http",
        r#"
[hooks.github]
secret_file = "github.secret"

[hooks.gitlab]
token = "gitlab-token"

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
        &[("github.secret", "gh-secret\n")],
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
    let push = push.to_string();
    let signature = github_signature(b"gh-secret", push.as_bytes());
    let (status, answer) = post_raw(
        &master.api,
        "/api/hooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "d-1"),
            ("X-Hub-Signature-256", &signature),
        ],
        push.as_bytes(),
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
        &[
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Token", "gitlab-token"),
        ],
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
    // The builder's own property wins over the one from the hook.
    let build_id = docs["builds"][0]["id"].as_i64().expect("build id");
    let build = master.get(&format!("/api/builds/{build_id}"));
    assert_eq!(
        build["properties"]["repository"],
        json!(["https://trusted.example/docs.git", "builder"]),
        "{build}"
    );
    assert_eq!(build["properties"]["branch"], json!(["dev", "request"]));
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
        ("/api/hooks/github", b"{not json"),
    ] {
        let signature = github_signature(b"gh-secret", body);
        let (status, answer) = post_raw(
            &master.api,
            path,
            &[("X-Hub-Signature-256", &signature)],
            body,
        );
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
    let ping = br#"{"zen": "Keep it logically awesome."}"#;
    let (status, answer) = post_raw(
        &master.api,
        "/api/hooks/github",
        &[
            ("X-GitHub-Event", "ping"),
            ("X-Hub-Signature-256", &github_signature(b"gh-secret", ping)),
        ],
        ping,
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

const HOOK_SECRET: &str = "It's a Secret to Everybody";

#[test]
fn the_test_signature_matches_github_s_example() {
    // GitHub's documented example, also computed with Python's hmac module.
    assert_eq!(
        github_signature(HOOK_SECRET.as_bytes(), b"Hello, World!"),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
}

fn change_count(master: &MasterProcess) -> usize {
    master
        .get("/api/changes?limit=1000")
        .as_array()
        .map_or(0, Vec::len)
}

fn github_push(after: &str) -> Vec<u8> {
    json!({
        "ref": "refs/heads/main", "after": after,
        "repository": {"html_url": "https://github.com/o/r", "full_name": "o/r"},
        "head_commit": {"id": after, "message": "m", "author": {"name": "Ann"},
                        "added": ["src/a.rs"], "modified": [], "removed": []},
        "commits": [{"id": after, "added": ["src/a.rs"], "modified": [], "removed": []}]
    })
    .to_string()
    .into_bytes()
}

fn post_github(
    master: &MasterProcess,
    body: &[u8],
    delivery: &str,
    sig: Option<&str>,
) -> (u16, Value) {
    let mut headers = vec![("X-GitHub-Event", "push"), ("X-GitHub-Delivery", delivery)];
    if let Some(sig) = sig {
        headers.push(("X-Hub-Signature-256", sig));
    }
    post_raw(&master.api, "/api/hooks/github", &headers, body)
}

#[test]
fn hooks_refuse_unsigned_wrong_and_replayed_deliveries() {
    let dir = test_dir("changes-hooks-verified");
    write_files(
        &dir.join("master"),
        &[("github.secret", &format!("{HOOK_SECRET}\n"))],
    );
    let master = MasterProcess::start(
        &dir.join("master"),
        "",
        &format!(
            "{WORKERS_AND_BUILDERS}\n{}",
            r#"
[hooks.github]
secret_file = "github.secret"

[hooks.gitlab]
token = "gl-token-1234"
"#
        ),
    );
    let secret = HOOK_SECRET.as_bytes();

    // A correctly signed push makes a change.
    let push = github_push("a1");
    let good = github_signature(secret, &push);
    let (status, answer) = post_github(&master, &push, "d-1", Some(&good));
    assert_eq!(status, 200, "{answer}");
    let id = answer["change_id"].as_i64().expect("change id");
    let change = master.get(&format!("/api/changes/{id}"));
    assert_eq!(
        (&change["source"], &change["revision"]),
        (&json!("github"), &json!("a1"))
    );

    // Missing, malformed and wrong signatures: 401, nothing stored.
    let other = github_push("a2");
    let wrong_secret = github_signature(b"not the secret", &other);
    let other_body = github_signature(secret, &push);
    let upper_prefix = good.replace("sha256=", "SHA256=");
    for (i, sig) in [
        None,
        Some(""),
        Some("sha256="),
        Some("sha256=0123"),
        Some(&good[7..]),
        Some(upper_prefix.as_str()),
        Some("sha1=0123456789012345678901234567890123456789"),
        Some(wrong_secret.as_str()),
        Some(other_body.as_str()),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, answer) = post_github(&master, &other, &format!("bad-{i}"), sig);
        assert_eq!(status, 401, "{sig:?}: {answer}");
    }
    assert_eq!(change_count(&master), 1);
    // Refused deliveries are not remembered: the same id, signed, is taken.
    let (status, answer) = post_github(
        &master,
        &other,
        "bad-0",
        Some(&github_signature(secret, &other)),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(change_count(&master), 2);

    // Replays: the same delivery, its body under a new id, another body under its id.
    let (status, answer) = post_github(&master, &push, "d-1", Some(&good));
    assert_eq!(status, 409, "{answer}");
    let (status, answer) = post_github(&master, &push, "d-2", Some(&good));
    assert_eq!(status, 409, "{answer}");
    let third = github_push("a3");
    let (status, answer) = post_github(
        &master,
        &third,
        "d-1",
        Some(&github_signature(secret, &third)),
    );
    assert_eq!(status, 409, "{answer}");
    assert_eq!(change_count(&master), 2);
    // A delivery refused for its content may be sent again once fixed.
    let bad_json = b"{not json";
    let (status, _) = post_github(
        &master,
        bad_json,
        "d-4",
        Some(&github_signature(secret, bad_json)),
    );
    assert_eq!(status, 400);
    let (status, answer) = post_github(
        &master,
        &third,
        "d-4",
        Some(&github_signature(secret, &third)),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(change_count(&master), 3);

    // GitLab: the right token makes a change, a wrong or missing one is refused, and a
    // repeated event UUID is a replay.
    let gitlab = json!({
        "object_kind": "push", "ref": "refs/heads/main", "after": "b1", "checkout_sha": "b1",
        "user_name": "Bo", "project": {"path_with_namespace": "g/p"},
        "commits": [{"id": "b1", "message": "m", "added": ["x"], "modified": [], "removed": []}]
    })
    .to_string();
    let post_gitlab = |token: Option<&str>, uuid: &str| {
        let mut headers = vec![
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Event-UUID", uuid),
        ];
        if let Some(t) = token {
            headers.push(("X-Gitlab-Token", t));
        }
        post_raw(
            &master.api,
            "/api/hooks/gitlab",
            &headers,
            gitlab.as_bytes(),
        )
    };
    for token in [
        None,
        Some(""),
        Some("gl-token-123"),
        Some("gl-token-12345"),
        Some("GL-TOKEN-1234"),
    ] {
        let (status, answer) = post_gitlab(token, "u-0");
        assert_eq!(status, 401, "{token:?}: {answer}");
    }
    assert_eq!(change_count(&master), 3);
    let (status, answer) = post_gitlab(Some("gl-token-1234"), "u-1");
    assert_eq!(status, 200, "{answer}");
    let id = answer["change_id"].as_i64().expect("change id");
    assert_eq!(
        master.get(&format!("/api/changes/{id}"))["source"],
        "gitlab"
    );
    let (status, answer) = post_gitlab(Some("gl-token-1234"), "u-1");
    assert_eq!(status, 409, "{answer}");
    // Without an event UUID there is nothing to remember.
    let (status, _) = post_raw(
        &master.api,
        "/api/hooks/gitlab",
        &[("X-Gitlab-Token", "gl-token-1234")],
        gitlab.as_bytes(),
    );
    assert_eq!(status, 200);
    assert_eq!(change_count(&master), 5);

    // Refusals are logged with the peer; never the secret, a token or a signature.
    let log = master.log();
    assert!(
        log.lines()
            .any(|l| l.contains("GitHub hook refused") && l.contains("127.0.0.1")),
        "{log}"
    );
    assert!(
        log.contains("GitLab hook refused: wrong X-Gitlab-Token"),
        "{log}"
    );
    assert!(log.contains("was already taken"), "{log}");
    for secret in [HOOK_SECRET, "gl-token-123", &wrong_secret[7..], &good[7..]] {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
}

#[test]
fn hooks_are_off_unless_configured_and_insecure_only_on_purpose() {
    let dir = test_dir("changes-hooks-off");
    let master = MasterProcess::start(
        &dir.join("master"),
        "",
        &format!("{WORKERS_AND_BUILDERS}\n[hooks.github]\ninsecure = true\n"),
    );
    // GitLab is not configured: 404, however the delivery is dressed.
    let (status, answer) = post_raw(
        &master.api,
        "/api/hooks/gitlab",
        &[("X-Gitlab-Token", "anything")],
        br#"{"object_kind": "push", "ref": "refs/heads/main", "after": "c1"}"#,
    );
    assert_eq!(status, 404, "{answer}");
    // GitHub is insecure on purpose: unsigned pushes are taken, replays still refused.
    let push = github_push("c2");
    let (status, answer) = post_github(&master, &push, "i-1", None);
    assert_eq!(status, 200, "{answer}");
    let (status, _) = post_github(&master, &push, "i-1", None);
    assert_eq!(status, 409);
    assert_eq!(change_count(&master), 1);
    assert!(
        master.log().contains("[hooks.github] insecure = true"),
        "the start warns: {}",
        master.log()
    );
    drop(master);

    // Neither configured: both are off.
    let master = MasterProcess::start(&dir.join("master2"), "", WORKERS_AND_BUILDERS);
    let push = github_push("c3");
    let sig = github_signature(b"", &push);
    for path in ["/api/hooks/github", "/api/hooks/gitlab"] {
        let (status, _) = post_raw(&master.api, path, &[("X-Hub-Signature-256", &sig)], &push);
        assert_eq!(status, 404, "{path}");
    }
    assert_eq!(change_count(&master), 0);
}

fn pbmaster(args: &[&str], config: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pbmaster"))
        .args(args)
        .arg(config)
        .output()
        .expect("pbmaster runs")
}

#[test]
fn check_refuses_a_hook_without_a_secret_and_warns_when_insecure() {
    let dir = test_dir("changes-hooks-check");
    std::fs::create_dir_all(&dir).expect("dir");
    let write = |name: &str, hooks: &str| {
        let path = dir.join(name);
        std::fs::write(&path, format!("[master]\ndata_dir = \"d\"\n\n{hooks}")).expect("write");
        path
    };
    let check = |path: &std::path::Path| {
        let out = pbmaster(&["check", "--config"], path);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, err) = check(&write("none.toml", "[hooks.github]\n"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("line 4") && err.contains("[hooks.github] needs one of secret"),
        "{err}"
    );
    let (code, err) = check(&write("gitlab.toml", "[hooks.gitlab]\ninsecure = false\n"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("[hooks.gitlab] needs one of token"), "{err}");

    let (code, err) = check(&write("insecure.toml", "[hooks.github]\ninsecure = true\n"));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning: [hooks.github] insecure = true"),
        "{err}"
    );

    let (code, err) = check(&write(
        "secret.toml",
        "[hooks.github]\nsecret_env = \"PBMASTER_HOOK_SECRET\"\n[hooks.gitlab]\ntoken_file = \"missing.token\"\n",
    ));
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("warning: [hooks"), "{err}");
    // The master reads the secrets when it starts, and refuses to start without them.
    let out = pbmaster(&["start", "--config"], &dir.join("secret.toml"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("[hooks.github]") && err.contains("PBMASTER_HOOK_SECRET"),
        "{err}"
    );
}
