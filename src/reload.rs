//! Reconfiguring a running master (SIGHUP, `POST /api/reconfig`): the config file it
//! was started with is read again and checked; everything it names from outside
//! (passwords, tokens) is read before anything changes; then the coordinator applies
//! it (see `master/apply.rs`), and only once it has do the API's tokens and users,
//! the logins, the webhooks and the reporters switch to it. A config with errors, or
//! one the coordinator cannot apply now, is refused whole and the running one stays.
//! Reconfigurations run one at a time.

use crate::api::{Guard, GuardSettings};
use crate::config::{self, Config, Current};
use crate::master::{ConfigAuth, Diff, Msg};
use crate::reporters::Outbox;
use crate::secrets::Secrets;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};
use tracing::{error, info, warn};

/// What a reconfiguration needs to reach.
#[derive(Debug)]
pub struct Reloader {
    /// The config file the master was started with.
    pub path: PathBuf,
    /// The config in force, as the API reads it.
    pub current: Arc<Current>,
    pub auth: Arc<ConfigAuth>,
    pub guard: Arc<Guard>,
    pub outbox: Outbox,
    /// Read at start (`[secrets]` needs a restart): reporters are checked against it.
    pub secrets: Arc<Secrets>,
    pub master: mpsc::Sender<Msg>,
    /// Held for a whole reconfiguration, so that two never interleave.
    pub serial: Mutex<()>,
}

/// What a reconfiguration that went through did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub diff: Diff,
    /// Warnings about the new config (as `pbmaster check` prints them).
    pub warnings: Vec<String>,
}

impl Reloader {
    /// Reads the file again and applies it, or says why not (each error with its
    /// place in the file when it has one).
    pub async fn reconfigure(&self) -> Result<Applied, Vec<String>> {
        let _one_at_a_time = self.serial.lock().await;
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|e| vec![format!("cannot read the config: {e}")])?;
        let new = loaded.map_err(|errors| {
            errors
                .iter()
                .map(|e| format!("{}: {e}", self.path.display()))
                .collect::<Vec<_>>()
        })?;
        let old = self.current.get();
        let diff = Diff::between(&old, &new);
        let effective = Arc::new(Diff::effective(&old, &new));
        let (secrets, check) = (self.secrets.clone(), effective.clone());
        let (auth, guard) = tokio::task::spawn_blocking(move || prepare(&check, &secrets))
            .await
            .map_err(|e| vec![format!("cannot read the config's files: {e}")])??;
        let (reply, answer) = oneshot::channel();
        let msg = Msg::Reconfig {
            config: effective.clone(),
            diff: Arc::new(diff.clone()),
            reply,
        };
        let stopped = || vec!["the master is stopping".to_owned()];
        self.master.send(msg).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())??;
        self.auth.replace(auth);
        self.guard.install(guard);
        self.outbox.set_reporters(&effective.reporters);
        let warnings = effective.warnings();
        self.current.set(effective);
        Ok(Applied { diff, warnings })
    }

    /// [`Reloader::reconfigure`] on SIGHUP: what happened goes to the log.
    pub async fn on_signal(&self) {
        info!("SIGHUP: reading {} again", self.path.display());
        match self.reconfigure().await {
            Ok(applied) => {
                for w in &applied.warnings {
                    warn!("{w}");
                }
                for line in applied.diff.summary() {
                    info!("reconfig: {line}");
                }
            }
            Err(errors) => {
                for e in &errors {
                    error!("reconfig refused: {e}");
                }
                error!("the configuration was refused; the running one stays");
            }
        }
    }
}

/// Everything the config names from outside, read now: the logins' passwords, the
/// API's tokens, the webhooks' secrets, the secrets reporters use.
fn prepare(config: &Config, secrets: &Secrets) -> Result<(ConfigAuth, GuardSettings), Vec<String>> {
    let mut errors = Vec::new();
    let auth = ConfigAuth::from_config(config).map_err(|e| errors.push(e));
    let guard = GuardSettings::from_config(&config.api).map_err(|e| errors.push(e));
    if let Err(e) = config.hooks.read_secrets() {
        errors.push(e);
    }
    if let Err(e) = Outbox::check_secrets(&config.reporters, secrets) {
        errors.push(e);
    }
    match (auth, guard) {
        (Ok(auth), Ok(guard)) if errors.is_empty() => Ok((auth, guard)),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests;
