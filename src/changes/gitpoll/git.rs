//! Running the `git` binary for the poller: argv entries, never a shell; no prompt,
//! no hooks, no helper transports; a time limit and a cap on what it may print. git
//! runs in its own process group, so that ssh or a credential helper it started goes
//! with it when it is stopped.

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
    run_bounded(dir, args, timeout, MAX_OUTPUT).await
}

/// [`run`] with a chosen cap on standard output.
async fn run_bounded(
    dir: Option<&Path>,
    args: &[&str],
    timeout: Duration,
    max_output: usize,
) -> Result<Vec<u8>, String> {
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
    .process_group(0)
    .kill_on_drop(true);
    let what = args.first().copied().unwrap_or("git");
    let mut group = Group(cmd.spawn().map_err(|e| format!("cannot run git: {e}"))?);
    let child = &mut group.0;
    let mut stdout = child.stdout.take().ok_or("git has no stdout")?;
    let mut stderr = child.stderr.take().ok_or("git has no stderr")?;
    let work = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let read_out = async {
            (&mut stdout)
                .take(max_output as u64 + 1)
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
        if out.len() > max_output {
            return Err(format!("git {what} printed more than {max_output} bytes"));
        }
        let status = child.wait().await.map_err(|e| format!("git {what}: {e}"))?;
        if !status.success() {
            let err = String::from_utf8_lossy(&err);
            return Err(format!("git {what} failed ({status}): {}", err.trim()));
        }
        Ok(out)
    };
    let result = tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "git {what} took longer than {} s",
                timeout.as_secs()
            ))
        });
    drop(group);
    result
}

/// git and what it started: killed together when dropped before git was reaped (timed
/// out, printed too much, or the poll was abandoned). Until git is reaped its group id
/// cannot be another's.
struct Group(tokio::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let (Ok(None), Some(pid)) = (self.0.try_wait(), self.0.id()) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
        }
        // kill_on_drop reaps git itself.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// True while a process whose command line contains `marker` exists.
    fn running(marker: &str) -> bool {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
            })
    }

    #[tokio::test]
    async fn output_over_the_cap_is_refused() {
        let e = run_bounded(None, &["--version"], Duration::from_secs(30), 4)
            .await
            .unwrap_err();
        assert!(e.contains("more than 4 bytes"), "{e}");
        let out = run(None, &["--version"], Duration::from_secs(30))
            .await
            .unwrap();
        assert!(out.starts_with(b"git version"));
    }

    #[tokio::test]
    async fn a_hanging_git_is_stopped_with_what_it_started() {
        // The "ssh" git starts sleeps; the marker tells it apart.
        let marker = format!("{}.{}", 300, std::process::id());
        let ssh = format!("core.sshCommand=sleep {marker};:");
        let args = ["-c", &ssh, "ls-remote", "--", "ssh://example.invalid/x.git"];
        let e = run(None, &args, Duration::from_secs(2)).await.unwrap_err();
        assert!(e.contains("took longer than 2 s"), "{e}");
        // SIGKILL went to the whole group: wait for the sleep to be gone.
        let mut tries = 0;
        while running(&format!("sleep {marker}")) {
            tries += 1;
            assert!(tries < 600, "the process git started outlived it");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn a_failing_command_says_why() {
        let e = run(
            None,
            &["ls-remote", "--", "/nonexistent/repo"],
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
        assert!(e.starts_with("git ls-remote failed"), "{e}");
    }
}
