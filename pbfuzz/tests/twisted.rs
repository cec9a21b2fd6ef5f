//! `pbfuzz run` against a plain Twisted PB service (`tests/support/twisted_pb.py
//! server` in the `twisted-py3` peer venv: a cred portal with alice/secret whose
//! avatar echoes), through a TOML profile with a script: it survives every case,
//! fails a call with forbidden jelly and keeps serving, drops the connection for an
//! answer to a request it never made, and stalls on a list header whose elements never
//! come, which the minimizer shrinks to a byte or two.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Twisted server; killed when dropped.
struct Twisted(Child);

impl Drop for Twisted {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_twisted(log: &Path) -> (Twisted, u16) {
    let venv = root().join(".peers/twisted-py3");
    assert!(
        venv.join(".done").is_file(),
        "peer venv {} is missing; install it with: scripts/install-peers.sh twisted-py3",
        venv.display()
    );
    let mut child = Command::new(venv.join("bin/python"))
        .arg(root().join("tests/support/twisted_pb.py"))
        .arg("server")
        .env_remove("PYTHONPATH")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // Held open by the child handle: the server exits when it closes.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("twisted log"))
        .spawn()
        .expect("start twisted_pb.py");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let twisted = Twisted(child);
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("twisted prints its port");
    let port = line
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .expect("port N");
    (twisted, port)
}

/// Runs `pbfuzz run ARGS`; its JSON lines.
fn pbfuzz(args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_pbfuzz"))
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("pbfuzz runs");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        out.status.success(),
        "pbfuzz failed: {}\n{lines:#?}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines
}

fn case<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["event"] == "case" && l["case"] == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

#[test]
fn twisted_pb_survives_the_cases_and_its_stall_is_minimized() {
    let dir = std::env::temp_dir().join(format!("pbfuzz-twisted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (_twisted, port) = start_twisted(&dir.join("twisted.log"));
    let profile = dir.join("echo.toml");
    std::fs::write(
        &profile,
        format!(
            "address = '127.0.0.1:{port}'\nusername = 'alice'\npassword = 'secret'\n\
             [call]\nmethod = 'echo'\nargs = \"1 (b'unicode' \\\"two\\\")\"\n\
             [[script]]\nmethod = 'whoami'\n"
        ),
    )
    .expect("profile");
    let profile = profile.to_string_lossy().into_owned();
    let session = root().join("fixtures/sessions/worker-4.3.0");
    let session = session.to_string_lossy().into_owned();

    let lines = pbfuzz(&[
        "--profile",
        &profile,
        "--reply-timeout",
        "1",
        "--random",
        "20",
        "--replay",
        &session,
        "--replay-cases",
        "10",
        "--seed",
        "5",
        "--no-minimize",
    ]);
    let cases: Vec<_> = lines.iter().filter(|l| l["event"] == "case").collect();
    assert_eq!(cases.len(), 88 + 20 + 10);
    for c in &cases {
        assert!(
            c["outcome"] != "died" && c["outcome"] != "login_failed",
            "{c}"
        );
        assert!(c["bytes"].is_array(), "{c}");
    }
    let summary = lines.last().expect("summary");
    assert_eq!(summary["event"], "summary", "{summary}");
    assert_eq!(summary["healthy_after"], true);
    assert!(summary["cases_per_second"]
        .as_f64()
        .is_some_and(|r| r > 0.0));

    assert_eq!(case(&lines, "valid/call")["outcome"], "answered");
    // Twisted fails the call and keeps serving.
    let class = case(&lines, "jelly/class");
    assert_eq!(class["outcome"], "answered", "{class}");
    assert_eq!(
        class["reply"]["error"], "twisted.spread.jelly.InsecureJelly",
        "{class}"
    );
    // An answer to no request: a KeyError in Twisted's broker, which drops the line.
    assert_eq!(case(&lines, "unknown/answer-id")["outcome"], "dropped");
    assert_eq!(
        case(&lines, "banana/list-640K-header-only")["outcome"],
        "stalled"
    );

    let lines = pbfuzz(&[
        "--profile",
        &profile,
        "--reply-timeout",
        "1",
        "--random",
        "0",
        "--only",
        "banana/list-640K-header-only",
        "--minimize-tests",
        "60",
    ]);
    let m = lines
        .iter()
        .find(|l| l["event"] == "minimized")
        .unwrap_or_else(|| panic!("nothing minimized: {lines:#?}"));
    assert_eq!(m["outcome"], "stalled", "{m}");
    // A prefix digit or a header: whatever promises bytes the probe cannot complete.
    assert!(
        m["len"].as_u64().is_some_and(|n| (1..=2).contains(&n)),
        "{m}"
    );
    assert_eq!(m["original_len"], 4, "{m}");
    let _ = std::fs::remove_dir_all(&dir);
}
