//! The `local` driver: an instance is the boot script run as a local process group in
//! a fresh directory; terminating it kills the group. It makes latent pools usable
//! without a cloud, and tests every part of the machinery but the cloud API.

use super::driver::{CloudState, Driver, DriverError, DriverFuture, LaunchSpec};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// Instances under `dir`, one folder each; the boot script sees `PBMASTER_POOL` and
/// `PBMASTER_INSTANCE` in its environment.
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
            Ok(id)
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
            signal_group(cloud_id, "TERM").await;
            if let Some(mut child) = child {
                if tokio::time::timeout(TERM_GRACE, child.wait())
                    .await
                    .is_err()
                {
                    signal_group(cloud_id, "KILL").await;
                    let _ = child.wait().await;
                }
            }
            // Whatever the script left in its group.
            signal_group(cloud_id, "KILL").await;
            Ok(())
        })
    }
}
