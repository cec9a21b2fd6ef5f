//! One instance's watcher: launches it (or takes an adopted one) and polls the
//! cloud's view of it while it starts.

use super::{LatentMsg, Msg};
use crate::latent::driver::{CloudState, Driver, LaunchSpec};
use crate::model::Phase;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::warn;

/// Launches one instance and watches the cloud's view of it while it starts, so an
/// instance that dies while booting is noticed before `missing_timeout`.
pub(super) struct Watcher {
    pub(super) driver: Arc<dyn Driver>,
    pub(super) tx: mpsc::Sender<Msg>,
    pub(super) pool: String,
    pub(super) id: i64,
    pub(super) launch_timeout: Duration,
    pub(super) poll: Duration,
}

/// How a watcher begins: by launching, or with an instance that already exists (one
/// adopted after a master restart).
pub(super) enum Start {
    Launch(LaunchSpec),
    Adopt(String),
}

impl Watcher {
    pub(super) async fn run(self, start: Start, mut phase: watch::Receiver<Phase>) {
        let (pool, id) = (self.pool.clone(), self.id);
        let send = |m: LatentMsg| {
            let tx = self.tx.clone();
            async move {
                let _ = tx.send(Msg::Latent(m)).await;
            }
        };
        let cloud_id = match start {
            Start::Adopt(cloud_id) => cloud_id,
            Start::Launch(spec) => {
                let launched =
                    tokio::time::timeout(self.launch_timeout, self.driver.launch(&spec)).await;
                let cloud_id = match launched {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        return send(LatentMsg::LaunchFailed {
                            pool,
                            id,
                            why: format!("launch failed: {e}"),
                            permanent: !e.transient,
                        })
                        .await
                    }
                    Err(_) => {
                        let why = format!(
                            "launching took longer than {} s",
                            self.launch_timeout.as_secs()
                        );
                        return send(LatentMsg::LaunchFailed {
                            pool,
                            id,
                            why,
                            permanent: false,
                        })
                        .await;
                    }
                };
                send(LatentMsg::Launched {
                    pool: pool.clone(),
                    id,
                    cloud_id: cloud_id.clone(),
                })
                .await;
                cloud_id
            }
        };
        let mut reported_running = false;
        loop {
            let now_phase = *phase.borrow();
            if !matches!(
                now_phase,
                Phase::Launching | Phase::Booting | Phase::Connecting | Phase::Attaching
            ) {
                return;
            }
            match self.driver.state(&cloud_id).await {
                Ok(CloudState::Running) if !reported_running => {
                    reported_running = true;
                    send(LatentMsg::Running {
                        pool: pool.clone(),
                        id,
                    })
                    .await;
                }
                Ok(CloudState::Gone(why)) => return send(LatentMsg::Gone { pool, id, why }).await,
                Ok(_) => {}
                Err(e) => warn!(pool = %pool, "looking at {cloud_id}: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                changed = phase.changed() => if changed.is_err() { return },
            }
        }
    }
}
