//! The master's own lifecycle with a real worker: draining on SIGTERM, a second
//! SIGTERM, and a second login under an attached worker's name.

mod support;

use std::time::Duration;
use support::master::{tail, test_dir, MasterProcess};
use support::wait;
use support::workers::{Generation, RunningWorker, WorkerOptions};

const LONG: Duration = Duration::from_secs(60);

const BODY: &str = r#"
[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "short"
workers = ["w1"]

[[builder.step]]
command = "sleep 2; echo done"

[[builder]]
name = "endless"
workers = ["w1"]

[[builder.step]]
command = "sleep 120"
"#;

#[test]
fn sigterm_lets_running_builds_finish_and_starts_no_new_ones() {
    let dir = test_dir("drain");
    let mut master = MasterProcess::start(&dir.join("master"), "shutdown_grace = 30", BODY);
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let _worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let running = master.force("short");
    master.wait_running_build(running, LONG);
    // Queued behind it (max_builds is 1): must not start once draining.
    let queued = master.force("short");
    master.signal_term();
    let status = master.wait_exit(LONG);
    assert!(status.success(), "{}", tail(&master.log(), 30));
    let log = master.log();
    assert!(
        log.contains("connection closed: master stopping"),
        "the worker's connection is closed, not dropped: {}",
        tail(&log, 30)
    );
    assert!(!log.contains("stopping anyway"), "{}", tail(&log, 30));
    let stopped_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    master.restart();
    let r = master.get(&format!("/api/buildrequests/{running}"));
    assert_eq!(r["result"], "success", "the running build finished: {r}");
    // The restarted master may start it at once: only a build started before the
    // stop would be wrong.
    let q = master.get(&format!("/api/buildrequests/{queued}"));
    let early = q["builds"].as_array().map_or(0, |builds| {
        builds
            .iter()
            .filter(|b| b["started_at"].as_f64().is_some_and(|t| t < stopped_at))
            .count()
    });
    assert_eq!(early, 0, "no build started while draining: {q}");
    // After the restart the queued request runs.
    let q = master.wait_request(queued, LONG);
    assert_eq!(q["result"], "success");
}

#[test]
fn builds_past_the_grace_period_are_interrupted_and_retried_later() {
    let dir = test_dir("drain-grace");
    let mut master = MasterProcess::start(&dir.join("master"), "shutdown_grace = 1", BODY);
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let req = master.force("endless");
    let build = master.wait_running_build(req, LONG);
    assert!(
        worker.wait_for_command("sleep", LONG),
        "the command did not start:\n{}",
        worker.log()
    );
    let status = master.terminate(LONG);
    assert!(status.success());
    master.restart();
    let b = master.get(&format!("/api/builds/{}", build["id"]));
    assert_eq!(b["result"], "retry", "interrupted by the shutdown: {b}");
    let r = master.get(&format!("/api/buildrequests/{req}"));
    assert_eq!(
        r["complete"], false,
        "its request waits for another run: {r}"
    );
}

#[test]
fn second_sigterm_stops_at_once() {
    let dir = test_dir("drain-twice");
    let mut master = MasterProcess::start(&dir.join("master"), "shutdown_grace = 600", BODY);
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let _worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let req = master.force("endless");
    master.wait_running_build(req, LONG);
    master.signal_term();
    // Two signals before the master has taken the first would count as one.
    wait::until("the master to start draining", LONG, || {
        master.log().contains("stop requested: draining")
    });
    let status = master.terminate(Duration::from_secs(20));
    assert!(status.success(), "{}", tail(&master.log(), 30));
    let log = master.log();
    assert!(
        !log.contains("stopping anyway"),
        "closing the connections ends the running build's task: {}",
        tail(&log, 30)
    );
}

#[test]
fn a_second_login_is_refused_while_the_first_lives_and_replaces_it_when_dead() {
    let dir = test_dir("duplicate");
    let master = MasterProcess::start(&dir.join("master"), "", BODY);
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let mut first =
        RunningWorker::start(Generation::Worker4, &dir.join("first"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let attached_at = master.get("/api/workers")[0]["connected_at"].clone();
    let mut second =
        RunningWorker::start(Generation::Worker4, &dir.join("second"), &opts).expect("worker");
    let deadline = std::time::Instant::now() + LONG;
    while master.log().matches("refusing a second login").count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            tail(&master.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        second.is_running(),
        "the refused worker keeps retrying:\n{}",
        second.log()
    );
    assert_eq!(
        master.get("/api/workers")[0]["connected_at"],
        attached_at,
        "the first stays attached"
    );
    first.kill();
    master.wait_for("/api/workers", LONG, "the second worker to attach", |v| {
        v[0]["state"] == "attached" && v[0]["connected_at"] != attached_at
    });
    let r = master.wait_request(master.force("short"), LONG);
    assert_eq!(r["result"], "success");
}

#[test]
fn a_worker_asking_to_shut_down_finishes_its_build_and_is_told_to_stop() {
    let dir = test_dir("worker-shutdown");
    let master = MasterProcess::start(&dir.join("master"), "", BODY);
    let mut opts = WorkerOptions::new("w1", "pass", master.pb);
    opts.extra_create_args
        .push("--allow-shutdown=signal".into());
    let mut worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let running = master.force("short");
    master.wait_running_build(running, LONG);
    let queued = master.force("short");
    // SIGHUP makes the worker call shutdown() on its perspective.
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &worker.pid().to_string()])
        .status();
    let r = master.wait_request(running, LONG);
    assert_eq!(r["result"], "success", "the running build finishes: {r}");
    assert!(
        worker.wait_timeout(LONG).is_some(),
        "the master told the worker to stop:\n{}",
        worker.log()
    );
    let q = master.get(&format!("/api/buildrequests/{queued}"));
    assert_eq!(
        q["builds"].as_array().map(Vec::len),
        Some(0),
        "no new build on a worker shutting down: {q}"
    );
}
