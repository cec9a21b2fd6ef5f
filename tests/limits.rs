//! `[limits]` with a real buildbot-worker 4.3.0: a log past `log_max_size` keeps its
//! head, a marker and its tail (and the step says so); a master whose disk is under
//! `min_free_disk` starts no build.

mod support;

use std::time::{Duration, Instant};
use support::master::{test_dir, MasterProcess};
use support::workers::{Generation, RunningWorker, WorkerOptions};

const LONG: Duration = Duration::from_secs(60);

const BODY: &str = r#"
[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "chatty"
workers = ["w1"]

[[builder.step]]
name = "counts"
command = "seq 1 100000"
"#;

#[test]
fn a_log_past_its_limit_keeps_head_marker_and_tail() {
    let dir = test_dir("log-limit");
    let limits = "[limits]\nlog_max_size = 20000\nlog_tail_size = 3000\n";
    let master = MasterProcess::start(&dir.join("master"), limits, BODY);
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let _worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let request = master.wait_request(master.force("chatty"), LONG);
    let id = request["builds"][0]["id"].as_i64().expect("build");
    let build = master.get(&format!("/api/builds/{id}"));
    let step = &build["steps"][0];
    assert_eq!(step["result"], "success", "{build}");
    assert!(
        step["reason"]
            .as_str()
            .is_some_and(|r| r.contains("stdio") && r.contains("log_max_size")),
        "the step says its log was cut: {step}"
    );
    // The whole log (every channel, in order): 20,000 bytes, the marker, 3,000.
    let whole = master.get_bytes(&format!("/api/builds/{id}/steps/1/logs/stdio"));
    let whole = String::from_utf8_lossy(&whole).into_owned();
    let start = whole
        .find("\n[pbmaster: this log passed")
        .expect("a marker");
    let end = start + whole[start + 1..].find('\n').expect("marker end") + 2;
    assert_eq!(start, 20000, "the head: {}", &whole[..200]);
    assert_eq!(whole.len() - end, 3000, "the tail");
    let dropped = whole[start..end].to_owned();
    // The command's output: its head and its tail, each exact.
    let full: String = (1..=100000).map(|n| format!("{n}\n")).collect();
    let stdout = master.output(id, 1, "stdout");
    assert!(stdout.len() < 23000, "{}", stdout.len());
    let head_end = full
        .bytes()
        .zip(stdout.bytes())
        .position(|(a, b)| a != b)
        .expect("output was dropped");
    assert!(head_end > 10000, "a head of the output: {head_end}");
    assert!(full.ends_with(&stdout[head_end..]), "then its tail");
    let missing = full.len() - stdout.len();
    assert!(dropped.contains(" bytes were dropped"), "{dropped}");
    assert!(missing > 70000, "{missing}");
}

#[test]
fn no_build_starts_while_the_disk_is_under_its_floor() {
    let dir = test_dir("disk-floor");
    // More free space than any disk has.
    let limits = "[limits]\nmin_free_disk = 4611686018427387904\n";
    let master = MasterProcess::start(&dir.join("master"), limits, BODY);
    let deadline = Instant::now() + LONG;
    while !master.log().contains("starting none") {
        assert!(Instant::now() < deadline, "{}", master.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let request = master.force("chatty");
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let _worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    // Attaching dispatches in the same step; nothing may have started.
    let r = master.get(&format!("/api/buildrequests/{request}"));
    assert!(r["builds"].as_array().is_none_or(|b| b.is_empty()), "{r}");
    assert!(
        master.log().contains("under min_free_disk"),
        "{}",
        master.log()
    );
}
