//! Operating the master: `/healthz` and `/readyz` open to anyone, `/readyz` failing
//! while the master drains; `/metrics` behind the read role, its counts checked
//! against builds a real buildbot-worker 4.3.0 ran, a refused login and a peer that
//! breaks the protocol; `--log-format json`.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::master::{bearer, test_dir, MasterProcess};
use support::wait;
use support::workers::{Generation, RunningWorker, WorkerOptions};

const LONG: Duration = Duration::from_secs(60);

/// Status and body text of a GET, with `Authorization` if given.
fn get(api: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut req = ureq::get(&format!("{api}{path}"))
        .config()
        .http_status_as_error(false)
        .build();
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let mut resp = req.call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}

/// The value of the sample line `name{labels}` (exactly), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn scrape(master: &MasterProcess) -> String {
    let (status, text) = get(&master.api, "/metrics", Some(&bearer()));
    assert_eq!(status, 200, "{text}");
    text
}

#[test]
fn probes_and_metrics_follow_real_builds() {
    let body = r#"
[api]
public_read = "none"

[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "ok"
workers = ["w1"]
[[builder.step]]
command = "echo some output"

[[builder]]
name = "bad"
workers = ["w1"]
[[builder.step]]
command = "exit 3"

[[builder]]
name = "slow"
workers = ["w1"]
[[builder.step]]
command = "sleep 4"
"#;
    let dir = test_dir("observe");
    let mut master = MasterProcess::start(&dir.join("master"), "", body);

    // Probes need no credential; metrics do.
    assert_eq!(get(&master.api, "/healthz", None), (200, "ok\n".into()));
    assert_eq!(get(&master.api, "/readyz", None), (200, "ready\n".into()));
    assert_eq!(get(&master.api, "/metrics", None).0, 401);

    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let _worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let before = scrape(&master);
    assert_eq!(
        sample(&before, "pbmaster_workers_attached{version=\"4.3.0\"}"),
        Some(1.0),
        "{before}"
    );
    let builds: Vec<i64> = ["ok", "ok", "bad"]
        .iter()
        .map(|b| master.force(b))
        .collect();
    for r in builds {
        master.wait_request(r, LONG);
    }
    let text = scrape(&master);
    let expect = [
        ("pbmaster_builds_started_total{builder=\"ok\"}", 2.0),
        ("pbmaster_builds_started_total{builder=\"bad\"}", 1.0),
        (
            "pbmaster_builds_finished_total{builder=\"ok\",result=\"success\"}",
            2.0,
        ),
        (
            "pbmaster_builds_finished_total{builder=\"bad\",result=\"failure\"}",
            1.0,
        ),
        ("pbmaster_build_duration_seconds_count{builder=\"ok\"}", 2.0),
        (
            "pbmaster_build_queue_wait_seconds_count{builder=\"ok\"}",
            2.0,
        ),
        ("pbmaster_steps_finished_total{result=\"success\"}", 2.0),
        ("pbmaster_steps_finished_total{result=\"failure\"}", 1.0),
        ("pbmaster_pb_connections_open", 1.0),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, series), Some(value), "{series}:\n{text}");
    }
    let logged = sample(&text, "pbmaster_log_bytes_total").unwrap_or(0.0);
    assert!(
        logged >= "some output\n".len() as f64 * 2.0,
        "log bytes {logged}:\n{text}"
    );

    // A wrong password and a peer speaking garbage are counted.
    let wrong = WorkerOptions::new("w1", "wrong", master.pb);
    let mut intruder =
        RunningWorker::start(Generation::Worker4, &dir.join("intruder"), &wrong).expect("worker");
    wait::until("a refused login to be counted", LONG, || {
        sample(&scrape(&master), "pbmaster_pb_login_failures_total").unwrap_or(0.0) >= 1.0
    });
    intruder.kill();
    let mut garbage = std::net::TcpStream::connect(master.pb).expect("connect");
    // A banana type byte that does not exist.
    let _ = garbage.write_all(&[0x01, 0xff, 0x01, 0xff]);
    wait::until("a protocol violation to be counted", LONG, || {
        sample(&scrape(&master), "pbmaster_pb_protocol_violations_total").unwrap_or(0.0) >= 1.0
    });
    let text = scrape(&master);
    assert!(
        sample(&text, "pbmaster_pb_connections_total").unwrap_or(0.0) >= 3.0,
        "{text}"
    );

    // Draining: not ready, and it says why; still alive.
    let slow = master.force("slow");
    master.wait_running_build(slow, LONG);
    master.signal_term();
    wait::until("readyz to fail while draining", LONG, || {
        let (status, why) = get(&master.api, "/readyz", None);
        status == 503 && why.contains("draining")
    });
    assert_eq!(get(&master.api, "/healthz", None).0, 200);
    master.wait_exit(LONG);
}

/// The master's log when started with `[master] log_format = key` and
/// `--log-format flag` (either absent with `None`), up to its serving.
fn master_log(name: &str, key: Option<&str>, flag: Option<&str>) -> String {
    let dir = test_dir(name);
    let pb = support::master::free_port();
    let http = support::master::free_port();
    let key = key.map_or(String::new(), |k| format!("log_format = \"{k}\"\n"));
    std::fs::write(
        dir.join("master.toml"),
        format!(
            "[master]\npb_listen = \"127.0.0.1:{pb}\"\nhttp_listen = \"127.0.0.1:{http}\"\n\
             data_dir = \"data\"\n{key}"
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.join("master.log")).expect("log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_pbmaster"));
    command.arg("start");
    if let Some(flag) = flag {
        command.args(["--log-format", flag]);
    }
    let mut child = command
        .arg("--config")
        .arg(dir.join("master.toml"))
        .env("RUST_LOG", "info")
        .env_remove("PBMASTER_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("pbmaster starts");
    let api = format!("http://127.0.0.1:{http}");
    wait::until("the master to serve", LONG, || {
        ureq::get(&format!("{api}/healthz")).call().is_ok()
    });
    let _ = child.kill();
    let _ = child.wait();
    std::fs::read_to_string(dir.join("master.log")).expect("log")
}

/// The `listening` line of a log in JSON lines (every line must be JSON).
fn json_listening(text: &str) -> serde_json::Value {
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    lines
        .into_iter()
        .find(|l| l["fields"]["message"] == "listening")
        .unwrap_or_else(|| panic!("no listening line:\n{text}"))
}

#[test]
fn logs_as_json_lines() {
    let text = master_log("json-logs", None, Some("json"));
    let listening = json_listening(&text);
    assert_eq!(listening["level"], "INFO");
    assert!(listening["fields"]["http"]
        .as_str()
        .is_some_and(|a| a.starts_with("127.0.0.1:")));
    assert!(listening["timestamp"].is_string(), "{listening}");

    // The config's key, when no flag is given; the flag wins over the key.
    json_listening(&master_log("json-logs-key", Some("json"), None));
    let text = master_log("json-logs-flag-wins", Some("json"), Some("text"));
    assert!(text.contains("listening"), "{text}");
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()),
        "text lines: {text}"
    );
}
