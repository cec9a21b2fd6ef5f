//! Shell step options and scheduling with real buildbot-worker 4.3.0 processes:
//! logfiles, decode_rc, halt/flunk/warn, maxTime, several builds at once, max_builds,
//! and a worker that stops answering keepalives.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::master::{test_dir, MasterProcess};
use support::workers::{Generation, RunningWorker, WorkerOptions};

const LONG: Duration = Duration::from_secs(60);

fn steps(build: &Value) -> Vec<Value> {
    build["steps"].as_array().cloned().unwrap_or_default()
}

#[test]
fn step_options_decide_results() {
    let body = r#"
[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "options"
workers = ["w1"]

[[builder.step]]
name = "logfile"
command = "echo from-a-file > out.log; sleep 1"
logfiles = { result = "out.log" }

[[builder.step]]
name = "warns"
command = "exit 1"
decode_rc = { "1" = "warnings" }

[[builder.step]]
name = "fails quietly"
command = "exit 2"
flunk_on_failure = false
warn_on_failure = true

[[builder.step]]
name = "too long"
command = "while true; do echo tick; sleep 0.2; done"
max_time = 2

[[builder.step]]
name = "halts"
command = "exit 5"
halt_on_failure = true

[[builder.step]]
name = "never runs"
command = "echo unreachable"
"#;
    let dir = test_dir("step-options");
    let master = MasterProcess::start(&dir.join("master"), "", body);
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let _worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let r = master.wait_request(master.force("options"), LONG);
    let id = r["builds"][0]["id"].as_i64().expect("build");
    let build = master.get(&format!("/api/builds/{id}"));
    let s = steps(&build);
    assert_eq!(s.len(), 6, "{build}");
    assert_eq!(
        s[5]["result"], "skipped",
        "the step after a halting failure does not run: {build}"
    );
    assert!(s[5]["logs"].as_array().is_some_and(|l| l.is_empty()));
    assert_eq!(s[0]["result"], "success");
    assert!(
        s[0]["logs"]
            .as_array()
            .is_some_and(|l| l.iter().any(|n| n == "result")),
        "{build}"
    );
    let file_log = master.get_bytes(&format!("/api/builds/{id}/steps/1/logs/result"));
    assert_eq!(String::from_utf8_lossy(&file_log).trim(), "from-a-file");
    assert_eq!(s[1]["result"], "warnings");
    assert_eq!(s[2]["result"], "failure");
    assert_eq!(s[3]["result"], "failure", "killed at max_time: {}", s[3]);
    assert_eq!(s[4]["result"], "failure");
    assert_eq!(s[4]["rc"], 5);
    assert_eq!(
        build["result"], "failure",
        "halting step flunks the build: {build}"
    );
}

fn overlap(a: &Value, b: &Value) -> bool {
    let (s1, e1) = (
        a["started_at"].as_f64().unwrap_or(0.0),
        a["finished_at"].as_f64().unwrap_or(0.0),
    );
    let (s2, e2) = (
        b["started_at"].as_f64().unwrap_or(0.0),
        b["finished_at"].as_f64().unwrap_or(0.0),
    );
    s1 < e2 && s2 < e1
}

#[test]
fn builds_run_at_once_on_different_workers_and_max_builds_holds() {
    let body = r#"
[[worker]]
name = "a"
password = "pass"

[[worker]]
name = "b"
password = "pass"
max_builds = 2

[[builder]]
name = "x"
workers = ["a", "b"]

[[builder.step]]
command = "sleep 3"

[[builder]]
name = "y"
workers = ["a", "b"]

[[builder.step]]
command = "sleep 3"
"#;
    let dir = test_dir("concurrency");
    let master = MasterProcess::start(&dir.join("master"), "", body);
    let _a = RunningWorker::start(
        Generation::Worker4,
        &dir.join("a"),
        &WorkerOptions::new("a", "pass", master.pb),
    )
    .expect("worker a");
    let _b = RunningWorker::start(
        Generation::Worker4,
        &dir.join("b"),
        &WorkerOptions::new("b", "pass", master.pb),
    )
    .expect("worker b");
    master.wait_attached("a", LONG);
    master.wait_attached("b", LONG);
    let requests: Vec<i64> = ["x", "y", "x", "y"]
        .iter()
        .map(|b| master.force(b))
        .collect();
    let builds: Vec<Value> = requests
        .iter()
        .map(|&r| master.wait_request(r, LONG)["builds"][0].clone())
        .collect();
    for b in &builds {
        assert_eq!(b["result"], "success", "{b}");
    }
    let at_once = |w: &str| {
        let mine: Vec<&Value> = builds.iter().filter(|b| b["worker"] == w).collect();
        let mut pairs = 0;
        for (i, p) in mine.iter().enumerate() {
            for q in &mine[i + 1..] {
                if overlap(p, q) {
                    assert_ne!(
                        p["builder"], q["builder"],
                        "one build per builder per worker at a time"
                    );
                    pairs += 1;
                }
            }
        }
        pairs
    };
    assert_eq!(
        at_once("a"),
        0,
        "a (max_builds 1) never ran two at once: {builds:?}"
    );
    assert!(
        at_once("b") >= 1,
        "b (max_builds 2) ran two at once: {builds:?}"
    );
    let together = builds.iter().filter(|b| overlap(b, &builds[0])).count();
    assert!(together >= 3, "three slots were busy together: {builds:?}");
}

#[test]
fn a_worker_that_stops_answering_keepalives_is_dropped() {
    let body = r#"
[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "quick"
workers = ["w1"]

[[builder.step]]
command = "true"
"#;
    let dir = test_dir("keepalive");
    let master = MasterProcess::start(
        &dir.join("master"),
        "keepalive_interval = 1\nkeepalive_timeout = 2",
        body,
    );
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let pid = worker.pid().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status();
    master.wait_for(
        "/api/workers",
        LONG,
        "the frozen worker to be dropped",
        |v| v[0]["state"] == "disconnected",
    );
    assert!(
        master.log().contains("no answer to a keepalive"),
        "{}",
        master.log()
    );
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    master.wait_attached("w1", LONG);
    let r = master.wait_request(master.force("quick"), LONG);
    assert_eq!(r["result"], "success");
}
