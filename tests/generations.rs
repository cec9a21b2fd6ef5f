//! Every worker generation against the real master, over loopback: login (a wrong
//! password is retried until the config allows it), builds with stdout, stderr and a
//! non-zero exit, argv with env and workdir, a timeout, an interrupt from the API, a
//! worker killed mid-build, and a master restart with queued requests.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::master::{tail, test_dir, MasterProcess};
use support::wait;
use support::workers::{Generation, RunningWorker, WorkerOptions};

const LONG: Duration = Duration::from_secs(60);

fn body(password: &str) -> String {
    format!(
        r#"
[[worker]]
name = "w1"
password = "{password}"

[[builder]]
name = "outputs"
workers = ["w1"]

[[builder.step]]
name = "mixed"
command = "echo to-stdout; echo to-stderr >&2; exit 3"

[[builder]]
name = "argv"
workers = ["w1"]

[[builder.step]]
name = "env and workdir"
command = ["sh", "-c", "echo \"$GREETING from $(basename $(pwd))\""]
env = {{ GREETING = "hello" }}
workdir = "sub/dir"

[[builder]]
name = "timeout"
workers = ["w1"]

[[builder.step]]
name = "silent"
command = "sleep 60"
timeout = 1

[[builder]]
name = "long"
workers = ["w1"]

[[builder.step]]
name = "sleep"
command = "sleep 60"

[[builder]]
name = "once"
workers = ["w1"]

[[builder.step]]
name = "slow the first time"
command = "if [ -e ../marker ]; then echo second run; else touch ../marker; sleep 60; fi"

[[builder]]
name = "bytes"
workers = ["w1"]

[[builder.step]]
name = "not utf-8"
command = "printf 'caf\\303\\251 \\377\\n'"

[[builder]]
name = "quick"
workers = ["w1"]

[[builder.step]]
name = "true"
command = "true"
"#
    )
}

fn result(request: &Value) -> String {
    request["result"].as_str().unwrap_or("?").to_owned()
}

fn last_build(request: &Value) -> i64 {
    request["builds"]
        .as_array()
        .and_then(|b| b.last())
        .and_then(|b| b["id"].as_i64())
        .expect("a build")
}

fn run_generation(generation: Generation) {
    let dir = test_dir(&format!("generation-{}", generation.peer_name()));
    // The master knows a different password than the worker has.
    let mut master = MasterProcess::start(&dir.join("master"), "", &body("not-the-password"));
    let opts = WorkerOptions::new("w1", "sekrit", master.pb);
    let mut worker =
        RunningWorker::start(generation, &dir.join("worker"), &opts).expect("worker starts");

    // Refused, and the worker keeps trying (it does not exit).
    let deadline = std::time::Instant::now() + LONG;
    while master.log().matches("login refused").count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no retried login:\n{}",
            tail(&master.log(), 40)
        );
        assert!(
            worker.is_running(),
            "worker exited after a refused login:\n{}",
            worker.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Once the config has its password, it attaches.
    master.set_body(&body("sekrit"));
    master.restart();
    let w = master.wait_attached("w1", LONG);
    let me = w
        .as_array()
        .and_then(|a| a.iter().find(|w| w["name"] == "w1").cloned())
        .expect("w1");
    assert!(me["version"].is_string(), "version reported: {me}");

    // stdout, stderr and a non-zero exit, kept apart.
    let r = master.wait_request(master.force("outputs"), LONG);
    assert_eq!(result(&r), "failure", "{r}");
    let b = last_build(&r);
    assert_eq!(master.output(b, 1, "stdout").trim(), "to-stdout");
    assert_eq!(master.output(b, 1, "stderr").trim(), "to-stderr");
    let build = master.get(&format!("/api/builds/{b}"));
    assert_eq!(build["steps"][0]["rc"], 3, "{build}");

    // argv with env and workdir.
    let r = master.wait_request(master.force("argv"), LONG);
    assert_eq!(result(&r), "success", "{r}");
    assert_eq!(
        master.output(last_build(&r), 1, "stdout").trim(),
        "hello from dir"
    );

    // Output that is not UTF-8 is stored as the worker sent it, and is no error: the
    // Python 2 slave sends the raw byte, Python 3 workers a replacement character.
    let r = master.wait_request(master.force("bytes"), LONG);
    assert_eq!(result(&r), "success", "{r}");
    let raw = master.get_bytes(&format!(
        "/api/builds/{}/steps/1/logs/stdio?channel=stdout",
        last_build(&r)
    ));
    let expected: &[u8] = if generation == Generation::Slave08 {
        b"caf\xc3\xa9 \xff\n"
    } else {
        "café \u{fffd}\n".as_bytes()
    };
    assert_eq!(raw, expected, "{}", String::from_utf8_lossy(&raw));

    // The worker kills a command that is silent past its timeout.
    let r = master.wait_request(master.force("timeout"), LONG);
    assert_eq!(result(&r), "failure", "{r}");

    // An interrupt from the API cancels the running command.
    let req = master.force("long");
    let running = master.wait_running_build(req, LONG);
    let id = running["id"].as_i64().expect("id");
    master.wait_for(
        &format!("/api/builds/{id}"),
        LONG,
        "the step to start",
        |b| b["steps"].as_array().is_some_and(|s| !s.is_empty()),
    );
    assert!(
        worker.wait_for_command("sleep", LONG),
        "the command did not start:\n{}",
        worker.log()
    );
    master.post(&format!("/api/builds/{id}/stop"), serde_json::json!({}));
    let r = master.wait_request(req, LONG);
    assert_eq!(result(&r), "cancelled", "{r}");

    // A worker killed mid-build: the build ends as retry, and the request runs again
    // once the worker is back.
    let req = master.force("once");
    master.wait_running_build(req, LONG);
    let marker = dir.join("worker/once/marker");
    wait::until("the first run to touch its marker", LONG, || {
        marker.exists()
    });
    worker.kill();
    master.wait_for(
        &format!("/api/buildrequests/{req}"),
        LONG,
        "the build to end as retry",
        |r| {
            r["builds"]
                .as_array()
                .is_some_and(|b| b.iter().any(|b| b["result"] == "retry"))
        },
    );
    let mut worker =
        RunningWorker::start(generation, &dir.join("worker"), &opts).expect("worker restarts");
    let r = master.wait_request(req, LONG);
    assert_eq!(result(&r), "success", "{r}");
    assert_eq!(
        master.output(last_build(&r), 1, "stdout").trim(),
        "second run"
    );

    // Requests queued while no worker is there survive a master crash and all run.
    worker.terminate();
    master.wait_for("/api/workers", LONG, "the worker to detach", |v| {
        v.as_array()
            .into_iter()
            .flatten()
            .any(|w| w["name"] == "w1" && w["state"] != "attached")
    });
    let queued: Vec<i64> = (0..3).map(|_| master.force("quick")).collect();
    master.kill();
    master.restart();
    let _worker =
        RunningWorker::start(generation, &dir.join("worker"), &opts).expect("worker restarts");
    for id in queued {
        let r = master.wait_request(id, LONG);
        assert_eq!(result(&r), "success", "{r}");
    }
}

#[test]
fn buildbot_worker_4_3_0() {
    run_generation(Generation::Worker4);
}

#[test]
fn buildbot_worker_2_10_5() {
    run_generation(Generation::Worker2);
}

#[test]
fn buildbot_worker_0_9_15() {
    run_generation(Generation::Worker09);
}

#[test]
fn buildslave_0_8_14() {
    run_generation(Generation::Slave08);
}
