//! Several masters over one real PostgreSQL 15 server, with real buildbot-worker 4.3.0
//! workers on each: requests forced through every master run exactly once, each
//! master shows the whole installation (logs of builds elsewhere included), a stop
//! reaches the master running the build, a worker attached to one master is refused
//! by another, a killed master is taken over (its builds run again elsewhere, its
//! latent instance ended), and a timed scheduler fires once for all of them.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};
use support::master::{tail, test_dir, MasterProcess};
use support::postgres::{fresh_database, store_section_for, Cluster};
use support::wait;
use support::workers::{Generation, RunningWorker, WorkerOptions};

const LONG: Duration = Duration::from_secs(120);

const WORKERS: &str = r#"
[[worker]]
name = "w1"
password = "pw"

[[worker]]
name = "w2"
password = "pw"
"#;

/// A database of the test's cluster: its URL and password.
type Database = (String, String);

/// A master of the installation on `db`: `[store]`, `[cluster]`, `body`.
fn start_master(db: &Database, dir: &Path, name: &str, body: &str) -> MasterProcess {
    let store = store_section_for(&db.0, &db.1, dir);
    let cluster = format!("[cluster]\nname = \"{name}\"\nlease = \"3s\"\n");
    MasterProcess::start(dir, "", &format!("{store}\n{cluster}\n{body}"))
}

fn worker(dir: &Path, name: &str, master: &MasterProcess) -> RunningWorker {
    let opts = WorkerOptions::new(name, "pw", master.pb);
    RunningWorker::start(Generation::Worker4, &dir.join(name), &opts).expect("worker starts")
}

fn list(v: Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// Every build of `builder`, as one master's API shows them.
fn builds(master: &MasterProcess, builder: &str) -> Vec<Value> {
    list(master.get(&format!("/api/builds?builder={builder}&limit=5000")))
}

#[test]
fn two_masters_run_each_request_once_and_show_the_whole_installation() {
    let dir = test_dir("cluster-two");
    let pg = Cluster::start();
    let db = fresh_database(&pg.admin_url);
    let body = format!(
        r#"{WORKERS}
[[builder]]
name = "quick"
workers = ["w1", "w2"]

[[builder.step]]
command = "true"

[[builder]]
name = "hello"
workers = ["w2"]

[[builder.step]]
command = "echo hello from %(prop:workername)s"

[[builder]]
name = "long"
workers = ["w2"]

[[builder.step]]
command = "sleep 60"
"#
    );
    let m1 = start_master(&db, &dir.join("m1"), "m1", &body);
    let m2 = start_master(&db, &dir.join("m2"), "m2", &body);
    let mut w1 = worker(&dir, "w1", &m1);
    let w2 = worker(&dir, "w2", &m2);
    m1.wait_attached("w1", LONG);
    m2.wait_attached("w2", LONG);

    // 500 requests, half through each master's API, at once.
    let (through_m1, through_m2) = std::thread::scope(|s| {
        let a = s.spawn(|| (0..250).map(|_| m1.force("quick")).collect::<Vec<_>>());
        let b = s.spawn(|| (0..250).map(|_| m2.force("quick")).collect::<Vec<_>>());
        (a.join().expect("m1 forces"), b.join().expect("m2 forces"))
    });
    let all: BTreeSet<i64> = through_m1.iter().chain(&through_m2).copied().collect();
    assert_eq!(all.len(), 500, "500 distinct requests");
    wait::until("500 requests to complete", Duration::from_secs(600), || {
        let done = list(m1.get("/api/buildrequests?limit=1000"))
            .iter()
            .filter(|r| r["complete"] == true && all.contains(&r["id"].as_i64().unwrap_or(0)))
            .count();
        done == 500
    });
    let quick = builds(&m2, "quick");
    assert_eq!(quick.len(), 500, "one build per request, seen from m2");
    let mut per_request: BTreeMap<i64, usize> = BTreeMap::new();
    for b in &quick {
        *per_request
            .entry(b["request_id"].as_i64().expect("id"))
            .or_default() += 1;
        assert_eq!(b["result"], "success", "{b}");
    }
    assert!(per_request.values().all(|n| *n == 1), "each ran once");
    let numbers: BTreeSet<i64> = quick.iter().filter_map(|b| b["number"].as_i64()).collect();
    assert_eq!(numbers.len(), 500, "build numbers are not reused");
    assert_eq!(builds(&m1, "quick").len(), 500, "m1 shows the same");
    // Requests forced through one master ran on the other master's worker too.
    let ran_on = |ids: &[i64], worker: &str| {
        quick
            .iter()
            .filter(|b| ids.contains(&b["request_id"].as_i64().unwrap_or(0)))
            .filter(|b| b["worker"] == worker)
            .count()
    };
    assert!(
        ran_on(&through_m1, "w2") > 0,
        "m1's requests reach m2's worker"
    );
    assert!(
        ran_on(&through_m2, "w1") > 0,
        "m2's requests reach m1's worker"
    );
    for b in &quick {
        let expected = if b["worker"] == "w1" { "m1" } else { "m2" };
        assert_eq!(b["master"], expected, "{b}");
    }

    // A log of a build that ran on m2, read through m1.
    let r = m1.wait_request(m1.force("hello"), LONG);
    assert_eq!(r["result"], "success", "{r}");
    let build = r["builds"][0]["id"].as_i64().expect("build");
    assert_eq!(m1.output(build, 1, "stdout").trim(), "hello from w2");

    // Stopped through m1 while it runs on m2.
    let request = m1.force("long");
    let running = m1.wait_running_build(request, LONG);
    assert_eq!(running["master"], "m2", "{running}");
    assert!(w2.wait_for_command("sleep", LONG), "{}", w2.log());
    m1.post(
        &format!("/api/builds/{}/stop", running["id"]),
        serde_json::json!({}),
    );
    let r = m1.wait_request(request, LONG);
    assert_eq!(r["result"], "cancelled", "{r}");

    // w1 is attached to m1: the same name is refused at m2 while m1 lives.
    let opts = WorkerOptions::new("w1", "pw", m2.pb);
    let mut twin =
        RunningWorker::start(Generation::Worker4, &dir.join("twin"), &opts).expect("twin starts");
    wait::until("m2 to refuse the second w1", LONG, || {
        m2.log().contains("attached to another master")
    });
    twin.kill();
    let w = list(m2.get("/api/workers"));
    let w1_row = w.iter().find(|w| w["name"] == "w1").expect("w1");
    assert_eq!(w1_row["state"], "attached", "{w1_row}");

    let masters = list(m2.get("/api/masters"));
    let names: Vec<_> = masters
        .iter()
        .map(|m| (m["name"].clone(), m["state"].clone()))
        .collect();
    assert_eq!(
        names,
        [("m1".into(), "alive".into()), ("m2".into(), "alive".into())],
        "{masters:?}"
    );
    w1.kill();
}

/// Processes whose working folder is under `dir`: what a local instance left running.
fn processes_under(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd"))
                .map(|cwd| cwd.starts_with(dir))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn a_killed_master_is_taken_over_and_its_work_runs_elsewhere() {
    let dir = test_dir("cluster-takeover");
    let pg = Cluster::start();
    let db = fresh_database(&pg.admin_url);
    let venv = Generation::Worker4.venv();
    let body = format!(
        r#"{WORKERS}
[[latent_pool]]
name = "pool"
driver = "local"
venv = "{venv}"
poll_interval = 1

[[builder]]
name = "slow"
workers = ["w1", "w2"]

[[builder.step]]
command = "if [ -e {marker} ]; then echo second run; else touch {marker}; sleep 600; fi"

[[builder]]
name = "cloudy"
workers = ["pool"]

[[builder.step]]
command = "sleep 600"
"#,
        venv = venv.display(),
        marker = dir.join("ran-once").display(),
    );
    let mut m1 = start_master(&db, &dir.join("m1"), "m1", &body);
    let m2 = start_master(&db, &dir.join("m2"), "m2", &body);
    let m3 = start_master(&db, &dir.join("m3"), "m3", &body);
    let mut w1 = worker(&dir, "w1", &m1);
    m1.wait_attached("w1", LONG);

    // Forced through m3, which has no worker: it runs on w1, at m1.
    let slow = m3.force("slow");
    let first = m3.wait_running_build(slow, LONG);
    assert_eq!(
        (first["worker"].as_str(), first["master"].as_str()),
        (Some("w1"), Some("m1"))
    );
    assert!(w1.wait_for_command("sleep", LONG), "{}", w1.log());
    // A latent instance of m1's, building.
    let cloudy = m1.force("cloudy");
    let on_instance = m1.wait_running_build(cloudy, LONG);
    assert_eq!(on_instance["master"], "m1", "{on_instance}");
    let m1_instances = dir.join("m1/data/latent");
    assert!(
        !processes_under(&m1_instances).is_empty(),
        "the instance runs"
    );
    let mut w2 = worker(&dir, "w2", &m2);
    m2.wait_attached("w2", LONG);

    m1.kill();
    let killed = Instant::now();
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    // Its build ends retry and runs again on w2, at m2.
    let r = m2.wait_for(
        &format!("/api/buildrequests/{slow}"),
        LONG,
        "a second build",
        |r| r["builds"].as_array().is_some_and(|b| b.len() == 2),
    );
    let seen_running = killed.elapsed();
    assert_eq!(r["builds"][0]["result"], "retry", "{r}");
    assert_eq!(r["builds"][1]["worker"], "w2", "{r}");
    assert_eq!(r["builds"][1]["master"], "m2", "{r}");
    let restarted_after = r["builds"][1]["started_at"].as_f64().expect("started") - killed_at;
    eprintln!(
        "kill -9 to the request running again elsewhere: {restarted_after:.2} s (seen after {:.2} s)",
        seen_running.as_secs_f64()
    );
    let r = m2.wait_request(slow, LONG);
    assert_eq!(r["result"], "success", "{r}");
    assert_eq!(
        m2.output(r["builds"][1]["id"].as_i64().unwrap(), 1, "stdout")
            .trim(),
        "second run"
    );

    // Whoever took m1 over ended its instance: nothing of it runs any more.
    wait::until("m1's instance to be ended", LONG, || {
        processes_under(&m1_instances).is_empty()
    });
    let masters = list(m2.get("/api/masters"));
    let gone = masters.iter().find(|m| m["name"] == "m1").expect("m1");
    assert_eq!(gone["state"], "gone", "{masters:?}");
    let taker = gone["taken_over_by"].as_str().expect("a taker").to_owned();
    assert!(taker == "m2" || taker == "m3", "{gone}");
    let taker_log = if taker == "m2" { m2.log() } else { m3.log() };
    assert!(
        taker_log.contains("took over a master"),
        "{}",
        tail(&taker_log, 40)
    );
    // Its latent request is the taker's now, and runs on an instance of the taker.
    let r = m2.wait_for(
        &format!("/api/buildrequests/{cloudy}"),
        LONG,
        "a second build",
        |r| {
            r["builds"]
                .as_array()
                .is_some_and(|b| b.len() == 2 && b[1]["finished_at"].is_null())
        },
    );
    assert_eq!(r["builds"][0]["result"], "retry", "{r}");
    assert_eq!(r["builds"][1]["master"], taker.as_str(), "{r}");
    let stop = format!("/api/builds/{}/stop", r["builds"][1]["id"]);
    m3.post(&stop, serde_json::json!({}));
    m2.wait_request(cloudy, LONG);
    w1.kill();
    w2.kill();
    drop(m3);
    drop(m2);
    assert!(processes_under(&dir).is_empty(), "no instance is left");
}

#[test]
fn a_master_frozen_past_its_lease_is_taken_over_and_stops_when_it_wakes() {
    let dir = test_dir("cluster-frozen");
    let pg = Cluster::start();
    let db = fresh_database(&pg.admin_url);
    let body = format!(
        r#"{WORKERS}
[[builder]]
name = "slow"
workers = ["w1", "w2"]

[[builder.step]]
command = "sleep 5"
"#
    );
    let mut m1 = start_master(&db, &dir.join("m1"), "m1", &body);
    let m2 = start_master(&db, &dir.join("m2"), "m2", &body);
    let mut w1 = worker(&dir, "w1", &m1);
    m1.wait_attached("w1", LONG);
    let request = m2.force("slow");
    let first = m2.wait_running_build(request, LONG);
    assert_eq!(first["master"], "m1", "{first}");
    // As if its network were cut: it neither renews nor answers.
    m1.signal("STOP");
    let mut w2 = worker(&dir, "w2", &m2);
    m2.wait_for("/api/masters", LONG, "m1 to be taken over", |v| {
        list(v.clone())
            .iter()
            .any(|m| m["name"] == "m1" && m["state"] == "gone")
    });
    let r = m2.wait_request(request, LONG);
    assert_eq!(r["result"], "success", "{r}");
    assert_eq!(r["builds"][0]["result"], "retry", "{r}");
    assert_eq!(r["builds"][1]["master"], "m2", "{r}");
    // Woken, it learns at its next renewal that it was taken over, and stops.
    m1.signal("CONT");
    let status = m1.wait_exit(LONG);
    assert_eq!(status.code(), Some(3), "{}", tail(&m1.log(), 20));
    assert!(
        m1.log().contains("another master took this one over"),
        "{}",
        tail(&m1.log(), 20)
    );
    // Nothing it did after waking changed what m2 recorded.
    let after = m2.get(&format!("/api/buildrequests/{request}"));
    assert_eq!(after["builds"], r["builds"], "{after}");
    assert_eq!(after["result"], "success", "{after}");
    w1.kill();
    w2.kill();
}

#[test]
fn a_timed_scheduler_fires_once_for_the_installation() {
    let dir = test_dir("cluster-timed");
    let pg = Cluster::start();
    let db = fresh_database(&pg.admin_url);
    let body = format!(
        r#"{WORKERS}
[[builder]]
name = "tick"
workers = ["w1"]

[[builder.step]]
command = "true"

[[scheduler]]
name = "every-two-seconds"
kind = "periodic"
builders = ["tick"]
interval = 2
"#
    );
    let m1 = start_master(&db, &dir.join("m1"), "m1", &body);
    let m2 = start_master(&db, &dir.join("m2"), "m2", &body);
    // Both run the scheduler; each of its times makes one request.
    wait::until("six firings", LONG, || {
        list(m1.get("/api/buildrequests?limit=100")).len() >= 6
    });
    let mut times: Vec<f64> = list(m2.get("/api/buildrequests?limit=100"))
        .iter()
        .filter_map(|r| r["submitted_at"].as_f64())
        .collect();
    times.sort_by(f64::total_cmp);
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] > 1.0,
            "two firings {:.3} s apart: {times:?}\n{}\n{}",
            pair[1] - pair[0],
            tail(&m1.log(), 20),
            tail(&m2.log(), 20)
        );
    }
}
