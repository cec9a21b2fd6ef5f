//! `[retention]` with a real buildbot-worker 4.3.0: finished logs are compressed on
//! disk and read back byte for byte through the API and the web pages; past short
//! horizons, old logs and builds are deleted (and say so) while a running build is
//! left alone.

mod support;

use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use support::http::{request, EventStream};
use support::master::{bearer, test_dir, MasterProcess};
use support::wait;
use support::workers::{Generation, RunningWorker, WorkerOptions};

const LONG: Duration = Duration::from_secs(90);

/// A chatty two-step builder (megabytes of stdout, some stderr, bytes that are not
/// ASCII) and a builder whose build runs until stopped.
const BUILDERS: &str = r#"
[[worker]]
name = "w1"
password = "pass"
max_builds = 2

[[builder]]
name = "chatty"
workers = ["w1"]

[[builder.step]]
name = "counts"
command = "seq 1 300000; seq 1 2000 | sed s/^/warning:/ >&2; printf '\\377\\376 raw\\n'"

[[builder.step]]
name = "more"
command = "seq 1000000 1050000"

[[builder]]
name = "slow"
workers = ["w1"]

[[builder.step]]
name = "waits"
command = "echo started; exec sleep 600"
"#;

fn body(retention: &str) -> String {
    format!("{BUILDERS}\n[retention]\n{retention}\n")
}

/// A GET with the admin token, whatever the status.
fn get(master: &MasterProcess, path: &str) -> support::http::Answer {
    let auth = bearer();
    request(&master.api, "GET", path, &[("Authorization", &auth)], b"")
}

fn log_files(master: &MasterProcess, build: i64) -> (PathBuf, PathBuf) {
    let dir = master
        .dir
        .join("data/logs")
        .join((build / 1000).to_string());
    (
        dir.join(format!("{build}.log")),
        dir.join(format!("{build}.log.zst")),
    )
}

/// The live log stream of a finished log to its end, from its start or after the
/// event `last` (as a reconnecting browser asks); each event and its first event's id.
fn live(master: &MasterProcess, path: &str, last: Option<&str>) -> (Vec<u8>, Option<String>) {
    let auth = bearer();
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(id) = last {
        headers.push(("Last-Event-ID", id));
    }
    let mut stream = EventStream::open(&master.api, path, &headers);
    assert_eq!(stream.status, 200, "{path}");
    let (mut out, mut first) = (Vec::new(), None);
    loop {
        let e = stream.until("the end of the log", |_| true);
        first.get_or_insert(e.id.clone().unwrap_or_default());
        out.extend_from_slice(format!("{} {:?} {}\n", e.event, e.id, e.data).as_bytes());
        if e.event == "end" {
            return (out, first);
        }
    }
}

/// Everything a reader can get of a finished build's logs: raw downloads (whole and
/// by channel), the web log pages (the second through its link) and the live
/// stream (whole, and from its first event on).
fn every_view(master: &MasterProcess, build: i64) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for step in [1, 2] {
        for query in ["", "?channel=stdout", "?channel=stderr", "?channel=header"] {
            let path = format!("/api/builds/{build}/steps/{step}/logs/stdio{query}");
            let bytes = master.get_bytes(&path);
            out.push((path, bytes));
        }
        let path = format!("/builds/{build}/steps/{step}/logs/stdio");
        let page = get(master, &path);
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        let next = page
            .text
            .split("class=\"next\" href=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(|link| link.replace("&amp;", "&"));
        out.push((path, page.text.into_bytes()));
        if let Some(next) = next {
            let page = get(master, &next);
            assert_eq!(page.status, 200, "{next}");
            out.push((next, page.text.into_bytes()));
        }
        let path = format!("/api/builds/{build}/steps/{step}/logs/stdio/live");
        let (whole, first) = live(master, &path, None);
        out.push((path.clone(), whole));
        let (rest, _) = live(master, &path, first.as_deref());
        out.push((format!("{path} after {first:?}"), rest));
    }
    out
}

fn run_chatty(master: &MasterProcess) -> i64 {
    let request = master.wait_request(master.force("chatty"), LONG);
    assert_eq!(request["builds"][0]["result"], "success", "{request}");
    request["builds"][0]["id"].as_i64().expect("build")
}

#[test]
fn finished_logs_are_compressed_and_read_back_byte_identical() {
    let dir = test_dir("retention-compress");
    let mut master = MasterProcess::start(&dir.join("master"), "", &body("compress_logs = false"));
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let _worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let build = run_chatty(&master);
    let (plain, packed) = log_files(&master, build);
    if support::postgres::from_env().is_some() {
        // On PostgreSQL the bytes are in the database (which compresses large values
        // itself): no file, nothing to pack, and the same bytes after a restart.
        assert!(!plain.exists() && !packed.exists());
        let before = every_view(&master, build);
        assert!(
            before.iter().any(|(p, _)| p.contains("from=")),
            "a second page"
        );
        master.set_body(&body(""));
        master.restart();
        assert!(before == every_view(&master, build), "the same bytes");
        return;
    }
    let plain_size = std::fs::metadata(&plain).expect("a plain log file").len();
    assert!(!packed.exists());
    let before = every_view(&master, build);
    let stdout = &before[1].1;
    let expected: String = (1..=300000).map(|n| format!("{n}\n")).collect();
    assert!(stdout.starts_with(expected.as_bytes()), "the output itself");
    // The worker sends what is not UTF-8 as U+FFFD: multi-byte characters then.
    assert!(stdout.ends_with(" raw\n".as_bytes()), "the last line");
    assert!(
        before.iter().any(|(p, _)| p.contains("from=")),
        "a second page"
    );

    // The same store, compressing: the build left plain is compressed at start.
    master.set_body(&body(""));
    master.restart();
    wait::until("the log to be compressed", LONG, || {
        packed.exists() && !plain.exists()
    });
    let packed_size = std::fs::metadata(&packed).expect("compressed").len();
    assert!(
        packed_size * 4 < plain_size,
        "{plain_size} bytes compressed to {packed_size}"
    );
    let after = every_view(&master, build);
    assert_eq!(before.len(), after.len());
    for ((path, a), (_, b)) in before.iter().zip(&after) {
        assert!(
            a == b,
            "{path}: {} bytes before, {} after",
            a.len(),
            b.len()
        );
    }

    // A build that finishes now is compressed as it ends, and reads the same.
    master.wait_attached("w1", LONG);
    let second = run_chatty(&master);
    let (plain, packed) = log_files(&master, second);
    wait::until("the new build's log to be compressed", LONG, || {
        packed.exists() && !plain.exists()
    });
    let stdout = master.get_bytes(&format!(
        "/api/builds/{second}/steps/1/logs/stdio?channel=stdout"
    ));
    assert!(stdout.starts_with(expected.as_bytes()));
    wait::until("both compressions to be counted", LONG, || {
        get(&master, "/metrics")
            .text
            .contains("pbmaster_logs_compressed_total 2")
    });
}

#[test]
fn old_logs_and_builds_expire_while_a_running_build_is_untouched() {
    let dir = test_dir("retention-expire");
    let master = MasterProcess::start(
        &dir.join("master"),
        "",
        &body("logs = \"2s\"\nbuilds = \"5s\""),
    );
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let _worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let first_request = master.force("chatty");
    master.wait_request(first_request, LONG);
    let first = master.get(&format!("/api/buildrequests/{first_request}"))["builds"][0]["id"]
        .as_i64()
        .expect("build");
    let newest = run_chatty(&master);
    let slow_request = master.force("slow");
    let running = master.wait_running_build(slow_request, LONG)["id"]
        .as_i64()
        .expect("running build");
    wait::until("the running build's output", LONG, || {
        master.output(running, 1, "stdout") == "started\n"
    });

    // Logs expire first: the steps say so, and every reader shows why.
    let expired = master.wait_for(
        &format!("/api/builds/{newest}"),
        LONG,
        "the newest build's logs to expire",
        |b| b["steps"][0]["logs_expired_at"].is_number(),
    );
    assert_eq!(expired["steps"][0]["logs"], serde_json::json!(["stdio"]));
    let raw = master.get_bytes(&format!("/api/builds/{newest}/steps/1/logs/stdio"));
    let raw = String::from_utf8_lossy(&raw).into_owned();
    assert!(raw.contains("this log was deleted"), "{raw}");
    let page = get(&master, &format!("/builds/{newest}/steps/1/logs/stdio"));
    assert_eq!(page.status, 200);
    assert!(page.text.contains("this log was deleted"), "{}", page.text);
    let (plain, packed) = log_files(&master, newest);
    assert!(!plain.exists() && !packed.exists());

    // Then the older build goes with its request; the newest of its builder stays,
    // so build numbers go on.
    wait::until("the first build to be deleted", LONG, || {
        get(&master, &format!("/api/builds/{first}")).status == 404
    });
    assert_eq!(
        get(&master, &format!("/api/buildrequests/{first_request}")).status,
        404
    );
    assert_eq!(get(&master, &format!("/api/builds/{newest}")).status, 200);

    // The running build, older than both horizons by now, is untouched.
    let build: Value = master.get(&format!("/api/builds/{running}"));
    assert!(build["finished_at"].is_null(), "{build}");
    assert!(build["steps"][0]["logs_expired_at"].is_null(), "{build}");
    assert_eq!(master.output(running, 1, "stdout"), "started\n");
    // Its bytes are in a file on SQLite (in the database on PostgreSQL).
    if support::postgres::from_env().is_none() {
        assert!(log_files(&master, running).0.exists());
    }
    // Counted and logged once the round's transactions are committed.
    for counter in [
        "pbmaster_builds_expired_total 1",
        "pbmaster_requests_expired_total 1",
    ] {
        wait::until(counter, LONG, || {
            get(&master, "/metrics").text.contains(counter)
        });
    }
    wait::until("the round's log line", LONG, || {
        master
            .log()
            .contains("retention: expired builds and logs deleted")
    });
    master.post(
        &format!("/api/builds/{running}/stop"),
        serde_json::json!({}),
    );
    master.wait_request(slow_request, LONG);
}
