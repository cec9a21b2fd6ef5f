//! Runs the `pbmaster-loadgen` binary (simulated workers) or the `pbfuzz` binary (the
//! PB fuzz client) as a process, with its JSON output in a file so a test can read
//! the final report.
//!
//! Each test crate uses only part of it; it needs the crate's `mod support;`.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The `pbmaster-loadgen` binary (another workspace member), built once per test
/// process.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build)
}

fn build() -> PathBuf {
    crate::support::cargo_build::build(&["-p", "pbmaster-loadgen"]).join("pbmaster-loadgen")
}

/// The `pbfuzz` binary (another workspace member), built once per test process.
pub fn pbfuzz_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        crate::support::cargo_build::build(&["-p", "pbfuzz", "--bin", "pbfuzz"]).join("pbfuzz")
    })
}

/// A running load generator (or fuzz client). Dropping it kills it.
pub struct Loadgen {
    child: Option<Child>,
    out: PathBuf,
}

impl Loadgen {
    /// Starts `pbmaster-loadgen ARGS`, its stdout (JSON lines) in `dir/NAME.out` and
    /// stderr in `dir/NAME.err`.
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Loadgen {
        Loadgen::start_binary(binary(), dir, name, args)
    }

    /// Starts `pbfuzz ARGS` the same way.
    pub fn start_pbfuzz(dir: &Path, name: &str, args: &[&str]) -> Loadgen {
        Loadgen::start_binary(pbfuzz_binary(), dir, name, args)
    }

    fn start_binary(binary: &Path, dir: &Path, name: &str, args: &[&str]) -> Loadgen {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("loadgen stdout"))
            .stderr(std::fs::File::create(err).expect("loadgen stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", binary.display()));
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
