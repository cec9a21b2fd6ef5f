//! Runs the `pbmaster-loadgen` binary as a process: simulated workers or the mutation
//! mode, with its JSON output in a file so a test can read the final report.
//!
//! Each test crate uses only part of it.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The `pbmaster-loadgen` binary, built once per test process. It belongs to another
/// workspace member, and Cargo sets `CARGO_BIN_EXE_*` only for the binaries of the
/// test's own package, so it is built here with `cargo build -p pbmaster-loadgen`
/// (a no-op when it is up to date) into the target directory and profile this test
/// was built with; `cargo test` and `cargo test --workspace` alike then run the
/// current source.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build)
}

fn build() -> PathBuf {
    // This test runs as TARGET_DIR[/TRIPLE]/PROFILE_DIR/deps/NAME-HASH.
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test's profile directory");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("no profile in {}", exe.display()),
    };
    let above = profile_dir.parent().expect("the target directory");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args([
            "build",
            "--quiet",
            "-p",
            "pbmaster-loadgen",
            "--profile",
            profile,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    // Cargo tags the root of a target directory; a cross build adds a TRIPLE level.
    if above.join("CACHEDIR.TAG").exists() {
        cargo.arg("--target-dir").arg(above);
    } else {
        let root = above.parent().expect("the target directory");
        let triple = above.file_name().expect("a target triple");
        cargo
            .arg("--target-dir")
            .arg(root)
            .arg("--target")
            .arg(triple);
    }
    let out = cargo.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build -p pbmaster-loadgen failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    profile_dir.join("pbmaster-loadgen")
}

/// A running load generator. Dropping it kills it.
pub struct Loadgen {
    child: Option<Child>,
    out: PathBuf,
}

impl Loadgen {
    /// Starts `pbmaster-loadgen ARGS`, its stdout (JSON lines) in `dir/NAME.out` and
    /// stderr in `dir/NAME.err`.
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Loadgen {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let child = Command::new(binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("loadgen stdout"))
            .stderr(std::fs::File::create(err).expect("loadgen stderr"))
            .spawn()
            .expect("pbmaster-loadgen starts");
        Loadgen {
            child: Some(child),
            out,
        }
    }

    /// The JSON lines printed so far.
    pub fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for the process to exit by itself (killing it after `timeout`); returns
    /// its last JSON line, the report.
    pub fn finish(&mut self, timeout: Duration) -> Value {
        let mut child = self.child.take().expect("loadgen running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.lines().pop().unwrap_or(Value::Null)
    }

    /// Asks it to stop (SIGTERM) and returns its final report.
    pub fn stop(&mut self, timeout: Duration) -> Value {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        self.finish(timeout)
    }
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
