//! Running the `git` binary for the poller: argv entries, never a shell; no prompt,
//! no hooks, no helper transports; a time limit and a cap on what it may print.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Most bytes of standard output read from one git command (ls-remote of a
/// repository with many branches stays far below).
pub const MAX_OUTPUT: usize = 16 * 1024 * 1024;
/// Most bytes of standard error kept for the error message.
const MAX_STDERR: usize = 4096;

/// Transports git may use: `ext::` and `fd::` run or reach local programs.
const ALLOWED_PROTOCOLS: &str = "file:git:http:https:ssh";

/// Runs `git ARGS` in `dir` (if any) and returns its standard output, or why not.
pub async fn run(dir: Option<&Path>, args: &[&str], timeout: Duration) -> Result<Vec<u8>, String> {
    let mut cmd = Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    cmd.args([
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "protocol.ext.allow=never",
    ])
    .args(args)
    .env("GIT_TERMINAL_PROMPT", "0")
    .env("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS)
    .env("GIT_ASKPASS", "true")
    .env("SSH_ASKPASS", "true")
    .env("SSH_ASKPASS_REQUIRE", "never")
    .env("LC_ALL", "C")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let what = args.first().copied().unwrap_or("git");
    let mut child = cmd.spawn().map_err(|e| format!("cannot run git: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("git has no stdout")?;
    let mut stderr = child.stderr.take().ok_or("git has no stderr")?;
    let work = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let read_out = async {
            (&mut stdout)
                .take(MAX_OUTPUT as u64 + 1)
                .read_to_end(&mut out)
                .await
        };
        let read_err = async {
            (&mut stderr)
                .take(MAX_STDERR as u64)
                .read_to_end(&mut err)
                .await
        };
        let (o, _) = tokio::join!(read_out, read_err);
        o.map_err(|e| format!("git {what}: {e}"))?;
        if out.len() > MAX_OUTPUT {
            return Err(format!("git {what} printed more than {MAX_OUTPUT} bytes"));
        }
        let status = child.wait().await.map_err(|e| format!("git {what}: {e}"))?;
        if !status.success() {
            let err = String::from_utf8_lossy(&err);
            return Err(format!("git {what} failed ({status}): {}", err.trim()));
        }
        Ok(out)
    };
    // On time-out or oversize the child is dropped, which kills it.
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("git {what} took longer than {} s", timeout.as_secs()))?
}
