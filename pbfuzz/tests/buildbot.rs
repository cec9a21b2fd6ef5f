//! `pbfuzz run` against the buildbot 4.3.0 master (the `buildbot-master` peer venv,
//! `bench/buildbot/master.cfg`), on the cases where it and pbmaster differ
//! (BENCHMARKS.md; tests/pbfuzz_pbmaster.rs checks pbmaster's side): Twisted fails a
//! call with forbidden jelly and serves on, drops the connection for an answer to no
//! request, buffers 64 MiB in one message and stalls; both stall on a list header
//! whose elements never come, which is minimized.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}

/// The daemonized master; stopped (SIGTERM, then SIGKILL) when dropped.
struct Master {
    pid: u32,
}

impl Drop for Master {
    fn drop(&mut self) {
        let pid = self.pid.to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..300 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
    }
}

fn start_master(dir: &Path, port: u16) -> Master {
    let venv = root().join(".peers/buildbot-master");
    assert!(
        venv.join(".done").is_file(),
        "peer venv {} is missing; install it with: scripts/install-peers.sh buildbot-master",
        venv.display()
    );
    let buildbot = venv.join("bin/buildbot");
    let master = dir.join("master");
    let status = Command::new(&buildbot)
        .args(["create-master", "-q"])
        .arg(&master)
        .env_remove("PYTHONPATH")
        .status()
        .expect("buildbot create-master");
    assert!(status.success());
    std::fs::copy(
        root().join("bench/buildbot/master.cfg"),
        master.join("master.cfg"),
    )
    .expect("master.cfg");
    let spec = master.join("spec.json");
    std::fs::write(
        &spec,
        r#"{"password": "pass", "workers": ["mut-0"],
            "builders": [{"name": "idle", "workers": ["mut-0"], "command": "true"}]}"#,
    )
    .expect("spec");
    // `buildbot start` daemonizes and returns once the master logged that it runs.
    let out = Command::new(&buildbot)
        .arg("start")
        .arg(&master)
        .env_remove("PYTHONPATH")
        .env("BENCH_SPEC", &spec)
        .env("BENCH_PB_PORT", port.to_string())
        .env("BENCH_FORCE_PORT", free_port().to_string())
        .stdin(Stdio::null())
        .output()
        .expect("buildbot start");
    let pid = std::fs::read_to_string(master.join("twistd.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok());
    let log = std::fs::read_to_string(master.join("twistd.log")).unwrap_or_default();
    match pid {
        Some(pid) if out.status.success() => Master { pid },
        _ => panic!(
            "the buildbot master did not start: {}\n{log}",
            String::from_utf8_lossy(&out.stdout)
        ),
    }
}

#[test]
fn buildbot_differs_from_pbmaster_where_benchmarks_say() {
    let dir = std::env::temp_dir().join(format!("pbfuzz-buildbot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = free_port();
    let master = start_master(&dir, port);
    let address = format!("127.0.0.1:{port}");
    let pid = master.pid.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_pbfuzz"))
        .args(["run", "--profile", "buildbot-worker", "--address", &address])
        .args(["--user", "mut-0", "--password", "pass", "--pid", &pid])
        .args([
            "--reply-timeout",
            "2",
            "--random",
            "0",
            "--minimize-tests",
            "40",
        ])
        .args([
            "--only",
            "valid/call,jelly/class,unknown/answer-id,banana/list-640K-header-only,flood/64MiB",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("pbfuzz runs");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(out.status.success(), "{lines:#?}");
    let case = |name: &str| {
        lines
            .iter()
            .find(|l| l["event"] == "case" && l["case"] == name)
            .unwrap_or_else(|| panic!("no case {name}: {lines:#?}"))
    };
    assert_eq!(case("valid/call")["outcome"], "answered");
    let class = case("jelly/class");
    assert_eq!(class["outcome"], "answered", "{class}");
    assert_eq!(
        class["reply"]["error"],
        "twisted.spread.jelly.InsecureJelly"
    );
    assert_eq!(case("unknown/answer-id")["outcome"], "dropped");
    assert_eq!(case("flood/64MiB-of-strings")["outcome"], "stalled");
    assert_eq!(case("banana/list-640K-header-only")["outcome"], "stalled");
    let minimized: Vec<_> = lines.iter().filter(|l| l["event"] == "minimized").collect();
    assert_eq!(minimized.len(), 2, "{lines:#?}");
    for m in minimized {
        assert!(
            m["len"].as_u64().is_some_and(|n| (1..=2).contains(&n)),
            "{m}"
        );
    }
    let summary = lines.last().expect("summary");
    assert_eq!(summary["healthy_after"], true, "{summary}");
    drop(master);
    let _ = std::fs::remove_dir_all(&dir);
}
