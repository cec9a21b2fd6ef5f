//! The `local` driver: an instance is the boot script run as a local process group in
//! a fresh directory; terminating it kills the group. It makes latent pools usable
//! without a cloud, and tests every part of the machinery but the cloud API.
//!
//! A process group id is only a number, reused once the group is gone: before any
//! signal the driver checks that a process of the group still carries the launch's
//! token in its environment (`PBMASTER_LAUNCH`, recorded in the instance's folder so
//! a restarted master can check too), and leaves alone a group that does not.

use super::driver::{CloudState, Driver, DriverError, DriverFuture, LaunchSpec};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// Instances under `dir`, one folder each; the boot script sees `PBMASTER_POOL`,
/// `PBMASTER_INSTANCE` and `PBMASTER_LAUNCH` in its environment.
#[derive(Debug)]
pub struct LocalDriver {
    dir: PathBuf,
    /// The master's environment variables an instance gets (nothing else of it).
    pass_env: Vec<String>,
    children: Mutex<HashMap<String, Child>>,
    /// Client token → instance id, for idempotent launches.
    tokens: Mutex<HashMap<String, String>>,
}

/// How long a terminated instance gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// The file in an instance's folder that says which group and token it launched as.
const LAUNCH_FILE: &str = "launch";

impl LocalDriver {
    pub fn new(dir: PathBuf, pass_env: Vec<String>) -> LocalDriver {
        LocalDriver {
            dir,
            pass_env,
            children: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn children(&self) -> std::sync::MutexGuard<'_, HashMap<String, Child>> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token the group `pgid` was launched with: known since the launch, or read
    /// back from the instance folders (after a restart).
    fn token_of(&self, pgid: &str) -> Option<String> {
        let known = self
            .tokens()
            .iter()
            .find(|(_, id)| id.as_str() == pgid)
            .map(|(token, _)| token.clone());
        known.or_else(|| {
            std::fs::read_dir(&self.dir).ok()?.flatten().find_map(|e| {
                let text = std::fs::read_to_string(e.path().join(LAUNCH_FILE)).ok()?;
                let (id, token) = text.trim().split_once(' ')?;
                (id == pgid).then(|| token.to_owned())
            })
        })
    }
}

/// Whether a live (not zombie) process of group `pgid` has `PBMASTER_LAUNCH=token`
/// in its environment: the group is still the instance that launch made.
fn group_is_ours(pgid: &str, token: &str) -> bool {
    groups_with_token(token).iter().any(|g| g == pgid)
}

/// The process groups with a live (not zombie) process that has
/// `PBMASTER_LAUNCH=token` in its environment.
fn groups_with_token(token: &str) -> Vec<String> {
    let wanted = format!("PBMASTER_LAUNCH={token}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut groups: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // pid (comm) state ppid pgrp ...: split after the last ')'.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            if fields.len() < 3 || fields[0] == "Z" {
                return None;
            }
            let env = std::fs::read(e.path().join("environ")).ok()?;
            env.split(|b| *b == 0)
                .any(|var| var == wanted.as_bytes())
                .then(|| fields[2].to_owned())
        })
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

/// Sends `signal` to the process group `pgid` (the instance and everything it started).
async fn signal_group(pgid: &str, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), "--".into(), format!("-{pgid}")])
        .stderr(Stdio::null())
        .status()
        .await;
}

impl Driver for LocalDriver {
    fn launch<'a>(&'a self, spec: &'a LaunchSpec) -> DriverFuture<'a, String> {
        Box::pin(async move {
            // A retried launch with the same token finds the first instance.
            if let Some(id) = self.tokens().get(&spec.client_token) {
                return Ok(id.clone());
            }
            let dir = self.dir.join(&spec.name);
            let fail = |what: &str, e: std::io::Error| {
                DriverError::permanent(format!("{what} {}: {e}", dir.display()))
            };
            // The boot script holds the instance's password: its folder and it are
            // the master user's alone.
            tokio::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .await
                .map_err(|e| fail("cannot create", e))?;
            let script = dir.join("boot.sh");
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&script)
                .await
                .map_err(|e| fail("cannot write to", e))?;
            // Flushed before the script runs: a tokio file finishes its writes in the
            // background, and `sh` would read a script cut short.
            file.write_all(spec.user_data.as_bytes())
                .await
                .map_err(|e| fail("cannot write to", e))?;
            file.flush().await.map_err(|e| fail("cannot write to", e))?;
            drop(file);
            let log = std::fs::File::create(dir.join("boot.log"))
                .map_err(|e| fail("cannot create a log in", e))?;
            let passed = self
                .pass_env
                .iter()
                .filter_map(|name| std::env::var_os(name).map(|v| (name, v)));
            let child = Command::new("sh")
                .env_clear()
                .envs(passed)
                .arg("boot.sh")
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| fail("log", e))?)
                .stderr(log)
                .env("PBMASTER_POOL", &spec.pool)
                .env("PBMASTER_INSTANCE", &spec.name)
                .env("PBMASTER_LAUNCH", &spec.client_token)
                .process_group(0)
                .kill_on_drop(false)
                .spawn()
                .map_err(|e| fail("cannot start the boot script in", e))?;
            let id = child
                .id()
                .map(|p| p.to_string())
                .ok_or_else(|| DriverError::permanent("boot script exited at once"))?;
            self.children().insert(id.clone(), child);
            self.tokens().insert(spec.client_token.clone(), id.clone());
            let record = format!("{id} {}\n", spec.client_token);
            if let Err(e) = std::fs::write(dir.join(LAUNCH_FILE), record) {
                // Without it a restarted master cannot tell the group is its own, and
                // leaves it: better than killing a stranger.
                tracing::warn!(instance = %spec.name, "cannot record the launch: {e}");
            }
            Ok(id)
        })
    }

    /// A group is found by the token in its environment, whoever launched it.
    fn ends_by_token(&self) -> bool {
        true
    }

    /// A master that stopped between starting the boot script and recording its
    /// group leaves the group running: found again by the token in its environment.
    fn end_launch<'a>(&'a self, client_token: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            for pgid in groups_with_token(client_token) {
                self.tokens().insert(client_token.to_owned(), pgid.clone());
                self.terminate(&pgid).await?;
            }
            Ok(())
        })
    }

    fn state<'a>(&'a self, cloud_id: &'a str) -> DriverFuture<'a, CloudState> {
        Box::pin(async move {
            let mut children = self.children();
            let Some(child) = children.get_mut(cloud_id) else {
                return Ok(CloudState::Gone("no such local instance".into()));
            };
            Ok(match child.try_wait() {
                Ok(None) => CloudState::Running,
                Ok(Some(status)) => CloudState::Gone(format!("boot script ended: {status}")),
                Err(e) => CloudState::Gone(format!("cannot check the process: {e}")),
            })
        })
    }

    fn terminate<'a>(&'a self, cloud_id: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let child = self.children().remove(cloud_id);
            let Some(token) = self.token_of(cloud_id) else {
                // Never launched from this folder: nothing of ours to end.
                return Ok(());
            };
            let ours = || group_is_ours(cloud_id, &token);
            if ours() {
                signal_group(cloud_id, "TERM").await;
            }
            match child {
                Some(mut child) => {
                    if tokio::time::timeout(TERM_GRACE, child.wait())
                        .await
                        .is_err()
                    {
                        signal_group(cloud_id, "KILL").await;
                        let _ = child.wait().await;
                    }
                }
                // Not our child (a restart): watch the group instead.
                None => {
                    let deadline = tokio::time::Instant::now() + TERM_GRACE;
                    while ours() && tokio::time::Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            // Whatever the script left in its group.
            if ours() {
                signal_group(cloud_id, "KILL").await;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    fn folder(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pbmaster-local-{name}-{}-{}",
            std::process::id(),
            crate::store::now()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[tokio::test]
    async fn a_recorded_group_now_someone_elses_is_left_alone() {
        let dir = folder("reused");
        // A stranger now has the group id a recorded instance had.
        let mut stranger = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("sleep");
        let pgid = stranger.id().to_string();
        std::fs::create_dir_all(dir.join("pool-1")).expect("dir");
        std::fs::write(
            dir.join("pool-1").join(LAUNCH_FILE),
            format!("{pgid} pool-1-tok\n"),
        )
        .expect("record");
        let restarted = LocalDriver::new(dir.clone(), vec![]);
        restarted.terminate(&pgid).await.expect("terminate");
        assert!(
            stranger.try_wait().expect("wait").is_none(),
            "the stranger still runs"
        );
        let _ = stranger.kill();
        let _ = stranger.wait();
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_launch_whose_group_was_never_recorded_is_found_by_its_token() {
        let dir = folder("unrecorded");
        let first = LocalDriver::new(dir.clone(), vec!["PATH".into()]);
        let spec = LaunchSpec {
            name: "pool-1".into(),
            pool: "pool".into(),
            user_data: "sleep 30 & sleep 30\n".into(),
            client_token: "pool-1-unrecorded".into(),
            on_demand: false,
        };
        let pgid = first.launch(&spec).await.expect("launch");
        let started = std::time::Instant::now();
        while !group_is_ours(&pgid, "pool-1-unrecorded") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the group starts"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The master died before it recorded the group: no launch file either.
        std::fs::remove_file(dir.join("pool-1").join(LAUNCH_FILE)).expect("forget");
        let restarted = LocalDriver::new(dir.clone(), vec![]);
        restarted
            .end_launch("pool-1-other")
            .await
            .expect("no such launch");
        assert!(
            group_is_ours(&pgid, "pool-1-unrecorded"),
            "another token ends nothing"
        );
        restarted
            .end_launch("pool-1-unrecorded")
            .await
            .expect("end");
        assert!(groups_with_token("pool-1-unrecorded").is_empty());
        assert!(matches!(
            first.state(&pgid).await.expect("state"),
            CloudState::Gone(_)
        ));
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn after_a_restart_a_group_still_ours_is_ended() {
        let dir = folder("restart");
        let first = LocalDriver::new(dir.clone(), vec!["PATH".into()]);
        let spec = LaunchSpec {
            name: "pool-1".into(),
            pool: "pool".into(),
            user_data: "sleep 30\n".into(),
            client_token: "pool-1-abc".into(),
            on_demand: false,
        };
        let pgid = first.launch(&spec).await.expect("launch");
        let started = std::time::Instant::now();
        while !group_is_ours(&pgid, "pool-1-abc") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the group starts"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let restarted = LocalDriver::new(dir.clone(), vec![]);
        restarted.terminate(&pgid).await.expect("terminate");
        assert!(!group_is_ours(&pgid, "pool-1-abc"));
        assert!(matches!(
            first.state(&pgid).await.expect("state"),
            CloudState::Gone(_)
        ));
        std::fs::remove_dir_all(dir).ok();
    }
}
