//! Values from outside stay data, with a real buildbot-worker 4.3.0: forced properties
//! holding shell syntax are echoed literally from a shell command (and reach argv, env,
//! set_property and do_step_if unchanged); a git branch or revision that git would read
//! as an option ends the step in exception before anything runs; master-side transfer
//! paths cannot leave the transfer root (data_dir/files), nor follow a link; properties
//! over the bounds are refused where they enter.

mod support;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::changes::post_raw;
use support::master::{test_dir, MasterProcess};
use support::workers::{Generation, RunningWorker, WorkerOptions};

const LONG: Duration = Duration::from_secs(90);

fn config(repo: &Path) -> String {
    format!(
        r#"
[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "echo"
workers = ["w1"]
properties = {{ arith = "$((6 * 7))" }}

[[builder.step]]
name = "shell string"
command = "echo [%(prop:x)s] [%(prop:y)s] [%(prop:q)s]; echo raw=%(raw:arith)s"

[[builder.step]]
name = "argv and env"
command = ["sh", "-c", "printf '%s|%s\\n' \"$1\" \"$X\"", "sh", "%(prop:x)s"]
env = {{ X = "%(prop:y)s" }}

[[builder.step]]
name = "set"
kind = "set_property"
property = "copy"
value = "%(prop:y)s"

[[builder.step]]
name = "condition"
command = "echo compared"
do_step_if = "%(prop:copy)s == $(touch PWNED2)"

[[builder]]
name = "checkout"
workers = ["w1"]

[[builder.step]]
name = "git"
kind = "git"
repo_url = "{repo}"
branch = "%(prop:branch)s"

[[builder]]
name = "upload"
workers = ["w1"]

[[builder.step]]
command = "echo payload > out.txt"

[[builder.step]]
name = "upload"
kind = "upload"
worker_src = "out.txt"
master_dest = "%(prop:dest)s"

[[builder]]
name = "download"
workers = ["w1"]

[[builder.step]]
name = "download"
kind = "download"
master_src = "%(prop:f)s"
worker_dest = "got.txt"

[[builder]]
name = "tree"
workers = ["w1"]

[[builder.step]]
command = "rm -rf tree && mkdir tree && echo a > tree/a.txt && ln -s /etc/passwd tree/link"

[[builder.step]]
name = "directory upload"
kind = "directory_upload"
worker_src = "tree"
master_dest = "tree"

[[builder]]
name = "big-output"
workers = ["w1"]

[[builder.step]]
name = "capture"
# Short lines: the worker splits (and cuts) lines over 4 KiB.
command = "seq 1 20000"
property = "big"
"#,
        repo = repo.display()
    )
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A repository with one commit on `main`; returns its path and the commit.
fn make_repo(dir: &Path) -> (PathBuf, String) {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).expect("repo dir");
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "checked out\n").expect("write");
    git(&repo, &["add", "README"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let head = git(&repo, &["rev-parse", "HEAD"]);
    (repo, head)
}

/// Every file under `dir` whose name starts with PWNED.
fn pwned(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with("PWNED") {
                found.push(path.clone());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    found
}

fn force(master: &MasterProcess, builder: &str, properties: Value) -> Value {
    let id = master.post(
        &format!("/api/builders/{builder}/force"),
        json!({ "properties": properties }),
    )["request_id"]
        .as_i64()
        .expect("request id");
    let r = master.wait_request(id, LONG);
    master.get(&format!("/api/builds/{}", r["builds"][0]["id"]))
}

fn step<'a>(build: &'a Value, name: &str) -> &'a Value {
    build["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step {name:?} in {build}"))
}

fn reason(build: &Value, name: &str) -> String {
    step(build, name)["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn outside_values_stay_data() {
    let dir = test_dir("inject");
    let (repo, head) = make_repo(&dir);
    let master = MasterProcess::start(&dir.join("master"), "", &config(&repo));
    let data = dir.join("master/data");
    let worker = RunningWorker::start(
        Generation::Worker4,
        &dir.join("worker"),
        &WorkerOptions::new("w1", "pass", master.pb),
    )
    .expect("worker");
    master.wait_attached("w1", LONG);

    // Shell syntax in forced properties (through the command line) is echoed.
    let out = Command::new(env!("CARGO_BIN_EXE_pbmaster"))
        .args(["force", "echo", "--wait"])
        .args(["-p", "x=x; touch PWNED", "-p", "y=$(touch PWNED2)"])
        .args(["-p", "q=it's `touch PWNED3` \"q\"\n"])
        .env("PBMASTER_API", &master.api)
        .env("PBMASTER_TOKEN", support::master::API_TOKEN)
        .output()
        .expect("pbmaster runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}\n{}", worker.log());
    let builds = master.get("/api/builds?builder=echo");
    let id = builds[0]["id"].as_i64().expect("build");
    let build = master.get(&format!("/api/builds/{id}"));
    assert_eq!(
        master.output(id, 1, "stdout"),
        "[x; touch PWNED] [$(touch PWNED2)] [it's `touch PWNED3` \"q\"\n]\nraw=42\n",
        "{build}"
    );
    assert_eq!(
        master.output(id, 2, "stdout"),
        "x; touch PWNED|$(touch PWNED2)\n"
    );
    assert_eq!(build["properties"]["copy"][0], "$(touch PWNED2)");
    assert_eq!(step(&build, "condition")["result"], "success", "{build}");
    assert_eq!(
        pwned(worker.basedir()),
        Vec::<PathBuf>::new(),
        "nothing ran"
    );

    // A good checkout of a revision (clone --branch B -- R ., checkout -f REV --).
    let build = force(
        &master,
        "checkout",
        json!({"branch": "main", "revision": head}),
    );
    assert_eq!(build["result"], "success", "{build}");
    assert_eq!(build["properties"]["got_revision"][0], head.as_str());
    // A branch or revision that reads as an option: refused, nothing runs.
    for props in [
        json!({"branch": "--upload-pack=touch PWNED"}),
        json!({"branch": "main", "revision": "--output=PWNED"}),
        json!({"branch": "main\n--upload-pack=touch PWNED"}),
    ] {
        let build = force(&master, "checkout", props.clone());
        assert_eq!(build["result"], "exception", "{props}: {build}");
        let why = reason(&build, "git");
        assert!(
            why.contains("starts with \"-\"") || why.contains("control character"),
            "{why}"
        );
        assert_eq!(
            step(&build, "git")["logs"],
            json!([]),
            "no command ran: {build}"
        );
    }
    assert_eq!(pwned(worker.basedir()), Vec::<PathBuf>::new());

    // Uploads land in the transfer root and nowhere else.
    let build = force(&master, "upload", json!({"dest": "out/ok.txt"}));
    assert_eq!(build["result"], "success", "{build}");
    assert_eq!(
        std::fs::read_to_string(data.join("files/out/ok.txt")).expect("uploaded"),
        "payload\n"
    );
    let db = data.join("pbmaster.sqlite");
    let outside = dir.join("outside.txt");
    for dest in [
        "../pbmaster.sqlite".to_owned(),
        outside.display().to_string(),
    ] {
        let build = force(&master, "upload", json!({ "dest": dest }));
        assert_eq!(build["result"], "exception", "{build}");
        let why = reason(&build, "upload");
        assert!(
            why.contains("\"..\" component") || why.contains("is absolute"),
            "{why}"
        );
    }
    // On PostgreSQL there is no database file beside the transfer root to harm,
    // and none may have been written there.
    if support::postgres::from_env().is_some() {
        assert!(!db.exists(), "nothing written where SQLite would be");
    } else {
        let header = std::fs::read(&db).expect("database");
        assert!(header.starts_with(b"SQLite format 3\0"), "database intact");
    }
    assert!(!outside.exists());
    let builds = master.get("/api/builds?builder=upload");
    assert_eq!(builds.as_array().map(Vec::len), Some(3), "{builds}");
    let names: Vec<String> = std::fs::read_dir(data.join("files"))
        .expect("root")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["out"], "nothing else in the root");

    // Downloads read only from the transfer root, never through a link.
    std::os::unix::fs::symlink("/etc/passwd", data.join("files/link")).expect("link");
    for (f, why) in [
        ("/etc/passwd", "is absolute"),
        ("../pbmaster.sqlite", "\"..\" component"),
        ("link", "symbolic link"),
    ] {
        let build = force(&master, "download", json!({ "f": f }));
        assert_eq!(build["result"], "exception", "{build}");
        assert!(reason(&build, "download").contains(why), "{build}");
        assert!(
            !worker.basedir().join("download/build/got.txt").exists(),
            "nothing sent for {f}"
        );
    }

    // A directory upload with a link in it is refused and leaves nothing.
    let build = force(&master, "tree", json!({}));
    assert_eq!(build["result"], "exception", "{build}");
    assert!(
        reason(&build, "directory upload").contains("is a symbolic link"),
        "{build}"
    );
    assert!(!data.join("files/tree").exists());

    // Bounds where properties enter: a force over them is refused...
    let big = "x".repeat(64 * 1024 + 1);
    let body = serde_json::to_vec(&json!({"properties": {"big": big}})).expect("json");
    let (status, answer) = post_raw(&master.api, "/api/builders/echo/force", &[], &body);
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("\"big\"") && e.contains("65536")),
        "{answer}"
    );
    // ...and so is a worker's output that would set one.
    let build = force(&master, "big-output", json!({}));
    assert_eq!(build["result"], "exception", "{build}");
    assert!(reason(&build, "capture").contains("65536"), "{build}");
    assert!(build["properties"]["big"].is_null());
}
