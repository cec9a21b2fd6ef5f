//! The load generator's mutation mode against pbmaster, for a bounded time, while a
//! real buildbot-worker 4.3.0 stays attached and builds: the master must survive every
//! case, still log a worker in afterwards, and finish the real worker's builds.

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
    let dir = test_dir("loadgen-mutation");
    let master = MasterProcess::start(&dir.join("master"), "", BODY);
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let mut worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", Duration::from_secs(60));
    let request = master.force("chatty");
    master.wait_running_build(request, Duration::from_secs(60));

    let pb = master.pb.to_string();
    let mut gen = Loadgen::start(
        &dir,
        "mutate",
        &[
            "mutate",
            "--master",
            &pb,
            "--prefix",
            "mut",
            "--password",
            "mutpass",
            "--reply-timeout",
            "2",
            "--budget",
            "90",
            "--random-cases",
            "40",
        ],
    );
    let summary = gen.finish(Duration::from_secs(400));
    let cases: Vec<_> = gen
        .lines()
        .into_iter()
        .filter(|l| l["event"] == "case")
        .collect();
    assert!(!cases.is_empty(), "no case ran: {summary}");
    for c in &cases {
        assert_ne!(c["outcome"], "died", "{c}");
        assert_ne!(c["outcome"], "login_failed", "{c}\n{}", master.log());
    }
    assert_eq!(summary["event"], "summary", "{summary}");
    assert_eq!(summary["healthy_after"], true, "{summary}");
    let valid = cases.iter().find(|c| c["case"] == "valid/keepalive");
    assert_eq!(valid.map(|c| &c["outcome"]), Some(&"answered".into()));

    // The real worker's build went on undisturbed, and the worker still builds.
    let r = master.wait_request(request, Duration::from_secs(120));
    assert_eq!(r["result"], "success", "{r}");
    let build = r["builds"][0]["id"].as_i64().expect("build");
    assert_eq!(master.output(build, 1, "stdout").lines().count(), 40);
    let again = master.wait_request(master.force("chatty"), Duration::from_secs(60));
    assert_eq!(again["result"], "success", "{again}");
    assert!(worker.is_running());
}
