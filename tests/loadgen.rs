//! Simulated workers from `pbmaster-loadgen` attach to pbmaster in numbers and each
//! completes a build, with the output it sent stored by the master.

#[path = "support/loadgen.rs"]
mod loadgen_support;
mod support;

use loadgen_support::Loadgen;
use std::fmt::Write;
use std::time::Duration;
use support::master::{test_dir, MasterProcess};

const WORKERS: usize = 50;
/// Stdout bytes each simulated command sends, over several `update` calls.
const STDOUT_BYTES: usize = 5000;

fn config() -> String {
    let mut body = String::new();
    for i in 0..WORKERS {
        let _ = write!(
            body,
            "[[worker]]\nname = \"sim-{i}\"\npassword = \"pass\"\n\n"
        );
    }
    for i in 0..WORKERS {
        let _ = write!(
            body,
            "[[builder]]\nname = \"b-{i}\"\nworkers = [\"sim-{i}\"]\n\
             [[builder.step]]\nname = \"echo\"\ncommand = \"true\"\n\n"
        );
    }
    body
}

#[test]
fn fifty_simulated_workers_attach_and_each_completes_a_build() {
    let dir = test_dir("loadgen");
    let master = MasterProcess::start(&dir.join("master"), "", &config());
    let pb = master.pb.to_string();
    let stdout = STDOUT_BYTES.to_string();
    let mut gen = Loadgen::start(
        &dir,
        "workers",
        &[
            "workers",
            "--master",
            &pb,
            "-n",
            "50",
            "--prefix",
            "sim",
            "--password",
            "pass",
            "--stdout-bytes",
            &stdout,
            "--chunk-bytes",
            "1024",
        ],
    );
    master.wait_for(
        "/api/workers",
        Duration::from_secs(120),
        "50 workers attached",
        |v| {
            v.as_array()
                .is_some_and(|ws| ws.iter().filter(|w| w["state"] == "attached").count() == WORKERS)
        },
    );

    let requests: Vec<i64> = (0..WORKERS)
        .map(|i| master.force(&format!("b-{i}")))
        .collect();
    for (i, id) in requests.into_iter().enumerate() {
        let r = master.wait_request(id, Duration::from_secs(120));
        assert_eq!(r["result"], "success", "{r}");
        let build = &r["builds"][0];
        assert_eq!(build["worker"], format!("sim-{i}"), "{r}");
        let out = master.output(build["id"].as_i64().expect("build id"), 1, "stdout");
        assert_eq!(out.len(), STDOUT_BYTES, "build of b-{i}");
    }

    let report = gen.stop(Duration::from_secs(30));
    assert_eq!(report["attached"], WORKERS, "{report}");
    assert_eq!(report["commands_completed"], WORKERS, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
}
