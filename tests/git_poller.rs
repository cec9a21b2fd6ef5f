//! The git poller end to end: real `git` against local repositories in a temp folder,
//! a master polling them, builds on a real buildbot-worker 4.x, a restart that must
//! not replay, a force-push, and hostile URLs and branch names refused at check.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::master::{test_dir, MasterProcess};
use support::workers::{Generation, RunningWorker, WorkerOptions};

const LONG: Duration = Duration::from_secs(90);

/// Runs git in `dir` with a fixed identity; panics on failure; returns stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Ann Author")
        .env("GIT_AUTHOR_EMAIL", "ann@example.org")
        .env("GIT_COMMITTER_NAME", "Ann Author")
        .env("GIT_COMMITTER_EMAIL", "ann@example.org")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .stdin(Stdio::null())
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Commits `file` with `content` on the current branch; returns the revision.
fn commit(repo: &Path, file: &str, content: &str, message: &str) -> String {
    let path = repo.join(file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("folder");
    }
    std::fs::write(path, content).expect("write file");
    git(repo, &["add", "--", file]);
    git(repo, &["commit", "-q", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}

fn poller_config(repo: &Path, branches: &str) -> String {
    format!(
        r#"
[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "main-build"
workers = ["w1"]

[[builder.step]]
command = "echo building"

[[change_source]]
name = "app"
kind = "git"
repo = "{}"
{branches}
interval = 1
project = "app"

[[scheduler]]
name = "on-main"
kind = "changes"
branch = "main"
builders = ["main-build"]
"#,
        repo.display()
    )
}

/// The changes the master stored, newest first.
fn changes(master: &MasterProcess) -> Vec<Value> {
    master
        .get("/api/changes")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until a change with `revision` is stored and returns it.
fn wait_change(master: &MasterProcess, revision: &str) -> Value {
    let list = master.wait_for(
        "/api/changes",
        LONG,
        &format!("a change for {revision}"),
        |v| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|c| c["revision"] == revision))
        },
    );
    list.as_array()
        .and_then(|a| a.iter().find(|c| c["revision"] == revision).cloned())
        .expect("change")
}

/// Waits until the change with `id` has requests, all complete; returns it.
fn wait_built(master: &MasterProcess, id: i64) -> Value {
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

/// Waits until the master has recorded a poll: its mirror holds `revision`.
fn wait_mirrored(master: &MasterProcess, revision: &str) {
    let mirror = master.dir.join("data/gitpoller/app.git");
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let found = Command::new("git")
            .arg("-C")
            .arg(&mirror)
            .args(["cat-file", "-e", &format!("{revision}^{{commit}}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the mirror never got {revision}:\n{}",
            master.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn commits_on_two_branches_build_the_followed_one_and_a_restart_does_not_replay() {
    let dir = test_dir("git-poller");
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).expect("repo dir");
    git(&repo, &["init", "-q", "-b", "main"]);
    let base = commit(&repo, "README", "hello\n", "initial");
    git(&repo, &["branch", "dev"]);

    let mut master = MasterProcess::start(
        &dir.join("master"),
        "",
        &poller_config(&repo, "branches = [\"main\", \"dev\"]"),
    );
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let _worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    // The first poll records the heads and makes no change for existing history.
    wait_mirrored(&master, &base);

    // Two commits on main, one on dev.
    let m1 = commit(&repo, "src/a.c", "int a;\n", "main: add a");
    let m2 = commit(&repo, "src/b.c", "int b;\n", "main: add b\n\nwith a body");
    git(&repo, &["checkout", "-q", "dev"]);
    let d1 = commit(&repo, "docs/dev.md", "dev\n", "dev: docs");
    git(&repo, &["checkout", "-q", "main"]);

    let c2 = wait_change(&master, &m2);
    let c1 = wait_change(&master, &m1);
    let cd = wait_change(&master, &d1);
    assert_eq!(c1["branch"], "main");
    assert_eq!(c1["author"], "Ann Author <ann@example.org>");
    assert_eq!(c1["files"], serde_json::json!(["src/a.c"]));
    assert_eq!(c1["comments"], "main: add a");
    assert_eq!(c2["comments"], "main: add b\n\nwith a body");
    assert_eq!(c1["project"], "app");
    assert_eq!(c1["repository"], repo.display().to_string());
    assert_eq!(c1["source"], "gitpoller");
    assert_eq!(cd["branch"], "dev");
    assert_eq!(cd["files"], serde_json::json!(["docs/dev.md"]));
    assert!(
        c1["id"].as_i64() < c2["id"].as_i64(),
        "oldest commit first: {c1} {c2}"
    );
    assert!(
        changes(&master).iter().all(|c| c["revision"] != base),
        "the history before the first poll makes no change"
    );

    // The single-branch scheduler builds main's changes, not dev's.
    for c in [&c1, &c2] {
        let built = wait_built(&master, c["id"].as_i64().expect("id"));
        let request = &built["requests"][0];
        assert_eq!(request["result"], "success", "{built}");
        assert_eq!(request["builder"], "main-build");
    }
    let dev = master.get(&format!("/api/changes/{}", cd["id"]));
    assert_eq!(dev["requests"], serde_json::json!([]), "{dev}");
    let stored = changes(&master).len();
    assert_eq!(stored, 3);

    // A restart neither replays nor skips: a commit made while the master is down
    // is the only new change.
    master.kill();
    let m3 = commit(&repo, "src/c.c", "int c;\n", "main: add c");
    master.restart();
    let c3 = wait_change(&master, &m3);
    wait_built(&master, c3["id"].as_i64().expect("id"));
    assert_eq!(changes(&master).len(), stored + 1, "{:?}", changes(&master));

    // A force-push back to an older commit gives one change for the new head.
    git(&repo, &["reset", "-q", "--hard", &m1]);
    let forced = master.wait_for("/api/changes", LONG, "a change for the forced head", |v| {
        v.as_array()
            .is_some_and(|a| a.len() == stored + 2 && a[0]["revision"] == m1.as_str())
    });
    assert_eq!(forced[0]["branch"], "main");
}

#[test]
fn every_branch_is_followed_without_a_list() {
    let dir = test_dir("git-poller-all");
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).expect("repo dir");
    git(&repo, &["init", "-q", "-b", "main"]);
    let base = commit(&repo, "README", "hello\n", "initial");

    let master = MasterProcess::start(&dir.join("master"), "", &poller_config(&repo, ""));
    wait_mirrored(&master, &base);
    // A new branch brings only the commits no followed branch had.
    git(&repo, &["checkout", "-q", "-b", "topic/x"]);
    let t1 = commit(&repo, "t.txt", "t\n", "topic work");
    let c = wait_change(&master, &t1);
    assert_eq!(c["branch"], "topic/x");
    assert_eq!(changes(&master).len(), 1, "{:?}", changes(&master));
}

#[test]
fn hostile_urls_and_branch_names_are_refused_at_check() {
    let dir = test_dir("git-poller-check");
    let marker = dir.join("pwned");
    for (repo, branches) in [
        (
            format!("--upload-pack=touch {}", marker.display()),
            "[\"main\"]",
        ),
        (
            format!("ext::sh -c touch% {}", marker.display()),
            "[\"main\"]",
        ),
        ("/srv/git/app.git".to_owned(), "[\"--output=/tmp/x\"]"),
        ("/srv/git/app.git".to_owned(), "[\"main..HEAD\"]"),
    ] {
        let path = dir.join("master.toml");
        std::fs::write(
            &path,
            format!(
                "[master]\ndata_dir = \"data\"\n\n[[change_source]]\nname = \"app\"\nkind = \"git\"\nrepo = {repo:?}\nbranches = {branches}\n"
            ),
        )
        .expect("config");
        let out = Command::new(env!("CARGO_BIN_EXE_pbmaster"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .expect("pbmaster check runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success(),
            "{repo} {branches} accepted: {stdout}"
        );
        assert!(
            stderr.contains("change source \"app\"") || stdout.contains("change source \"app\""),
            "{stderr}{stdout}"
        );
    }
    assert!(!marker.exists(), "nothing was run");
}
