//! The command line against a running master: `check`, `force --wait` (its exit
//! status follows the result), `builds`, `workers`, `log` and `log --follow`; and
//! `start` refusing an open-file limit that cannot be raised far enough.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::master::{test_dir, MasterProcess, API_TOKEN};
use support::workers::{Generation, RunningWorker, WorkerOptions};

const BODY: &str = r#"
[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "good"
workers = ["w1"]
[[builder.step]]
command = "echo all good"

[[builder]]
name = "bad"
workers = ["w1"]
[[builder.step]]
command = "exit 7"

[[builder]]
name = "slow"
workers = ["w1"]
[[builder.step]]
command = "for i in 1 2 3 4 5; do echo tick $i; sleep 0.5; done"
"#;

fn pbmaster(api: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pbmaster"))
        .args(args)
        .env("PBMASTER_API", api)
        .env("PBMASTER_TOKEN", API_TOKEN)
        .output()
        .expect("pbmaster runs")
}

#[test]
fn check_reports_every_error_with_its_location() {
    let dir = test_dir("cli-check");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[master]\ndata_dir = \"d\"\n\n[[worker]]\nname = \"w1\"\n\n[[builder]]\nname = \"b\"\nworkers = [\"w2\"]\n[[builder.step]]\ncommand = \"true\"\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_pbmaster"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("line 5, column 8") && err.contains("needs exactly one of password"),
        "{err}"
    );
    assert!(
        err.contains("line 9, column 12") && err.contains("\"w2\" is not defined"),
        "{err}"
    );
}

#[test]
fn start_refuses_a_hard_open_file_limit_below_what_the_master_needs() {
    let dir = test_dir("cli-nofile");
    let path = dir.join("master.toml");
    std::fs::write(
        &path,
        "[master]\npb_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
         data_dir = \"d\"\nmax_connections = 1000\n",
    )
    .expect("write");
    // `ulimit -n` lowers the soft and the hard limit for the master it then runs.
    let out = Command::new("sh")
        .args(["-c", "ulimit -n 100 && exec \"$0\" start --config \"$1\""])
        .arg(env!("CARGO_BIN_EXE_pbmaster"))
        .arg(&path)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // 1000 connections + 128 for HTTP clients + 16 for the database + 64 more.
    assert!(
        err.contains("needs up to 1208 open files")
            && err.contains("hard limit is 100")
            && err.contains("ulimit -Hn 1208")
            && err.contains("LimitNOFILE=1208"),
        "{err}"
    );
}

#[test]
fn force_builds_logs_and_workers() {
    let dir = test_dir("cli");
    let master = MasterProcess::start(&dir.join("master"), "", BODY);
    let _worker = RunningWorker::start(
        Generation::Worker4,
        &dir.join("worker"),
        &WorkerOptions::new("w1", "pass", master.pb),
    )
    .expect("worker");
    master.wait_attached("w1", Duration::from_secs(60));
    let api = master.api.as_str();

    let out = pbmaster(api, &["force", "good", "--wait"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": success"));
    let out = pbmaster(api, &["force", "bad", "--wait"]);
    assert_eq!(out.status.code(), Some(1), "failure exits non-zero");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": failure"));

    let builds = String::from_utf8_lossy(&pbmaster(api, &["builds"]).stdout).into_owned();
    assert!(
        builds.contains("good") && builds.contains("bad") && builds.contains("failure"),
        "{builds}"
    );
    let workers = String::from_utf8_lossy(&pbmaster(api, &["workers"]).stdout).into_owned();
    assert!(
        workers.contains("w1") && workers.contains("attached") && workers.contains("4.3.0"),
        "{workers}"
    );
    let log = String::from_utf8_lossy(&pbmaster(api, &["log", "1", "1"]).stdout).into_owned();
    assert!(log.contains("all good"), "{log}");

    // --follow prints lines while the step runs and ends with it.
    let out = pbmaster(api, &["force", "slow"]);
    assert!(out.status.success());
    let build = master.wait_running_build(3, Duration::from_secs(60));
    let id = build["id"].as_i64().expect("id").to_string();
    let mut follow = Command::new(env!("CARGO_BIN_EXE_pbmaster"))
        .args(["log", &id, "1", "--follow"])
        .env("PBMASTER_API", api)
        .stdout(Stdio::piped())
        .spawn()
        .expect("follow");
    let lines: Vec<String> = BufReader::new(follow.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.starts_with("tick"))
        .collect();
    assert!(follow.wait().expect("exits").success());
    assert_eq!(lines, ["tick 1", "tick 2", "tick 3", "tick 4", "tick 5"]);
    let r = master.get("/api/buildrequests/3");
    assert_eq!(r["complete"], true, "follow ended with the step: {r}");
}
