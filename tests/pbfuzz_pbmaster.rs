//! `pbfuzz run` (buildbot-worker profile: table, random and replayed cases) against
//! pbmaster, for a bounded time, while a real buildbot-worker 4.3.0 stays attached and
//! builds: the master must survive every case, still log a worker in afterwards, and
//! finish the real worker's builds. Where pbmaster and Twisted differ (BENCHMARKS.md),
//! pbmaster's side is checked.

#[path = "support/loadgen.rs"]
mod loadgen_support;
mod support;

use loadgen_support::Loadgen;
use std::time::Duration;
use support::master::{test_dir, MasterProcess};
use support::workers::{Generation, RunningWorker, WorkerOptions};

const BODY: &str = r#"
[[worker]]
name = "w1"
password = "pass"

[[worker]]
name = "mut-0"
password = "mutpass"

[[builder]]
name = "chatty"
workers = ["w1"]

[[builder.step]]
name = "count"
command = "for i in $(seq 1 40); do echo line $i; sleep 0.1; done"
"#;

#[test]
fn pbmaster_survives_every_mutation_while_a_real_worker_builds() {
    let dir = test_dir("pbfuzz-pbmaster");
    let master = MasterProcess::start(&dir.join("master"), "", BODY);
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let mut worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", Duration::from_secs(60));
    let request = master.force("chatty");
    master.wait_running_build(request, Duration::from_secs(60));

    let pb = master.pb.to_string();
    let session = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/sessions/worker-4.3.0"
    );
    let mut fuzz = Loadgen::start_pbfuzz(
        &dir,
        "pbfuzz",
        &[
            "run",
            "--profile",
            "buildbot-worker",
            "--address",
            &pb,
            "--user",
            "mut-0",
            "--password",
            "mutpass",
            "--reply-timeout",
            "2",
            "--budget",
            "90",
            "--random",
            "40",
            "--replay",
            session,
            "--replay-cases",
            "20",
            "--seed",
            "1",
            // Minimizing is tested elsewhere; here it would only add minutes.
            "--no-minimize",
        ],
    );
    let summary = fuzz.finish(Duration::from_secs(400));
    let lines = fuzz.lines();
    let cases: Vec<_> = lines.iter().filter(|l| l["event"] == "case").collect();
    assert!(!cases.is_empty(), "no case ran: {summary}");
    for c in &cases {
        assert_ne!(c["outcome"], "died", "{c}");
        assert_ne!(c["outcome"], "login_failed", "{c}\n{}", master.log());
    }
    assert_eq!(summary["event"], "summary", "{summary}");
    assert_eq!(summary["healthy_after"], true, "{summary}");
    let outcome = |name: &str| {
        cases
            .iter()
            .find(|c| c["case"] == name)
            .map(|c| c["outcome"].clone())
    };
    assert_eq!(outcome("valid/call"), Some("answered".into()));
    // Forbidden jelly closes the connection (Twisted fails the call and serves on).
    assert_eq!(outcome("jelly/class"), Some("dropped".into()));
    // An answer to no request is ignored (Twisted drops the connection).
    assert_eq!(outcome("unknown/answer-id"), Some("answered".into()));
    // Over the 4 MiB per-message bound: dropped (buildbot buffers it and stalls).
    assert_eq!(outcome("flood/64MiB-of-strings"), Some("dropped".into()));

    // The real worker's build went on undisturbed, and the worker still builds.
    let r = master.wait_request(request, Duration::from_secs(120));
    assert_eq!(r["result"], "success", "{r}");
    let build = r["builds"][0]["id"].as_i64().expect("build");
    assert_eq!(master.output(build, 1, "stdout").lines().count(), 40);
    let again = master.wait_request(master.force("chatty"), Duration::from_secs(60));
    assert_eq!(again["result"], "success", "{again}");
    assert!(worker.is_running());
}
