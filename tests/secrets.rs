//! Secrets with a real buildbot-worker 4.3.0: `%(secret:NAME)s` reaches the worker's
//! command, and the value appears nowhere the master keeps or serves — not in any
//! log channel (the header that echoes the command, output cut between two updates),
//! not in properties, not in the API, not in the master's own log, not anywhere in
//! its data folder.

mod support;

use std::path::Path;
use std::time::Duration;
use support::master::{test_dir, MasterProcess};
use support::workers::{Generation, RunningWorker, WorkerOptions};

const LONG: Duration = Duration::from_secs(60);
const FILE_SECRET: &str = "tok-5f3a9c1e77d0";
const ENV_SECRET: &str = "env-secret-8b21c4";

/// A check the worker runs: the value it got has this md5 (the test knows it without
/// the config holding the value).
fn md5_prefix(s: &str) -> String {
    let digest = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .expect("md5sum");
    String::from_utf8_lossy(&digest.stdout)[..12].to_owned()
}

fn body() -> String {
    format!(
        r#"
[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "uses-secrets"
workers = ["w1"]

[[builder.step]]
name = "got it"
command = "test \"$(printf %%s %(secret:deploy_token)s | md5sum | cut -c1-12)\" = {file_md5} && test \"$(printf %%s %(secret:from_env)s | md5sum | cut -c1-12)\" = {env_md5}"

[[builder.step]]
name = "prints it"
command = "echo token=%(secret:deploy_token)s; echo %(secret:from_env)s >&2"

[[builder.step]]
name = "prints it in two pieces"
command = "printf %%s %(secret:deploy_token)s | cut -c1-7 | tr -d '\\n'; sleep 0.5; printf %%s %(secret:deploy_token)s | cut -c8-"

[[builder.step]]
name = "captures it"
command = "echo %(secret:deploy_token)s"
property = "captured"

[[builder.step]]
kind = "set_property"
property = "copied"
value = "x-%(secret:from_env)s-x"

[[builder.step]]
name = "an unknown one"
command = "echo %(secret:nope)s"
"#,
        file_md5 = md5_prefix(FILE_SECRET),
        env_md5 = md5_prefix(ENV_SECRET),
    )
}

/// Every file under `dir` whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

#[test]
fn secrets_reach_the_worker_and_nothing_the_master_keeps() {
    let dir = test_dir("secrets");
    let master_dir = dir.join("master");
    std::fs::create_dir_all(master_dir.join("secrets")).expect("secrets dir");
    std::fs::write(
        master_dir.join("secrets/deploy_token"),
        format!("{FILE_SECRET}\n"),
    )
    .expect("secret file");
    // The env secret is passed to the master process by the test's environment.
    std::env::set_var("PBMASTER_TEST_SECRET", ENV_SECRET);
    let extra = "[secrets]\ndir = \"secrets\"\nenv = { from_env = \"PBMASTER_TEST_SECRET\" }\n";
    let master = MasterProcess::start(&master_dir, extra, &body());
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let _worker =
        RunningWorker::start(Generation::Worker4, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);
    let request = master.wait_request(master.force("uses-secrets"), LONG);
    let id = request["builds"][0]["id"].as_i64().expect("build");
    let build = master.get(&format!("/api/builds/{id}"));
    let steps = build["steps"].as_array().cloned().unwrap_or_default();
    let results: Vec<&str> = steps.iter().filter_map(|s| s["result"].as_str()).collect();
    assert_eq!(
        results,
        [
            "success",
            "success",
            "success",
            "success",
            "success",
            "exception"
        ],
        "{build}"
    );
    assert!(
        steps[5]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("nope") && r.contains("not defined")),
        "{build}"
    );

    // What the API serves: logs (every channel), properties.
    let stdout = master.output(id, 2, "stdout");
    assert_eq!(stdout.trim(), "token=<secret:deploy_token>", "{stdout:?}");
    let stderr = master.output(id, 2, "stderr");
    assert_eq!(stderr.trim(), "<secret:from_env>");
    let header = master.output(id, 2, "header");
    assert!(
        header.contains("echo token=") && header.contains("<secret:deploy_token>"),
        "the header echoes the command, redacted: {header}"
    );
    let split = master.output(id, 3, "stdout");
    assert_eq!(split.trim(), "<secret:deploy_token>", "{split:?}");
    let props = &build["properties"];
    assert_eq!(props["captured"][0], "<secret:deploy_token>", "{props}");
    assert_eq!(props["copied"][0], "x-<secret:from_env>-x", "{props}");
    for secret in [FILE_SECRET, ENV_SECRET] {
        assert!(!build.to_string().contains(secret), "{build}");
        let all_logs: String = (1..=6)
            .map(|s| {
                String::from_utf8_lossy(
                    &master.get_bytes(&format!("/api/builds/{id}/steps/{s}/logs/stdio")),
                )
                .into_owned()
            })
            .collect();
        assert!(!all_logs.contains(secret), "a log holds {secret}");
        let workers = master.get("/api/workers").to_string();
        assert!(!workers.contains(secret), "{workers}");
    }

    // What the master keeps: its log, its database, its log files.
    drop(master);
    for secret in [FILE_SECRET, ENV_SECRET] {
        let log = std::fs::read_to_string(master_dir.join("master.log")).unwrap_or_default();
        assert!(!log.contains(secret), "the master's log holds {secret}");
        let holding = files_holding(&master_dir.join("data"), secret.as_bytes());
        assert!(holding.is_empty(), "{holding:?} hold {secret}");
    }
}
