//! One instance's watcher: launches it (or takes an adopted one) and polls the
//! cloud's view of it while it starts.

use super::LatentMsg;
use crate::latent::driver::CloudState;
use crate::master::effect::{InstanceWatch, WatchStart};
use crate::master::Msg;
use crate::model::Phase;
use tokio::sync::mpsc;
use tracing::warn;

/// Launches one instance (or takes an adopted one) and watches the cloud's view of
/// it while it starts, so an instance that dies while booting is noticed before
/// `missing_timeout`. Ends once the instance is past starting.
pub async fn run(w: InstanceWatch, tx: mpsc::Sender<Msg>) {
    let InstanceWatch {
        driver,
        pool,
        id,
        start,
        launch_timeout,
        poll,
        mut phase,
    } = w;
    let send = |m: LatentMsg| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(Msg::Latent(m)).await;
        }
    };
    let cloud_id = match start {
        WatchStart::Adopt(cloud_id) => cloud_id,
        WatchStart::Resume {
            cloud_id,
            user_data,
        } => {
            let restarted =
                tokio::time::timeout(launch_timeout, driver.restart(&cloud_id, &user_data)).await;
            let failed = match restarted {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some((format!("starting it again failed: {e}"), e.code)),
                Err(_) => Some((
                    format!(
                        "starting it again took longer than {} s",
                        launch_timeout.as_secs()
                    ),
                    None,
                )),
            };
            if let Some((why, code)) = failed {
                return send(LatentMsg::LaunchFailed {
                    pool,
                    id,
                    why,
                    permanent: false,
                    code,
                })
                .await;
            }
            send(LatentMsg::Launched {
                pool: pool.clone(),
                id,
                cloud_id: cloud_id.clone(),
                placement: None,
                market: None,
            })
            .await;
            cloud_id
        }
        WatchStart::Launch(spec) => {
            let launched = tokio::time::timeout(launch_timeout, driver.launch_placed(&spec)).await;
            let launched = match launched {
                Ok(Ok(l)) => l,
                Ok(Err(e)) => {
                    return send(LatentMsg::LaunchFailed {
                        pool,
                        id,
                        why: format!("launch failed: {e}"),
                        permanent: !e.transient,
                        code: e.code,
                    })
                    .await
                }
                Err(_) => {
                    let why = format!("launching took longer than {} s", launch_timeout.as_secs());
                    return send(LatentMsg::LaunchFailed {
                        pool,
                        id,
                        why,
                        permanent: false,
                        code: None,
                    })
                    .await;
                }
            };
            let cloud_id = launched.cloud_id.clone();
            send(LatentMsg::Launched {
                pool: pool.clone(),
                id,
                cloud_id: launched.cloud_id,
                placement: launched.placement,
                market: launched.market,
            })
            .await;
            cloud_id
        }
    };
    let mut reported_running = false;
    loop {
        let now_phase = *phase.borrow();
        let starting = matches!(
            now_phase,
            Phase::Launching | Phase::Booting | Phase::Connecting | Phase::Attaching
        );
        // Past starting, only a cloud that may end instances on its own is watched,
        // and less often: its end is an interruption, not a crash of the worker.
        let live = matches!(
            now_phase,
            Phase::Ready | Phase::Building | Phase::Idle | Phase::Draining
        );
        if !(starting || live && driver.watches_live()) {
            return;
        }
        match driver.state(&cloud_id).await {
            Ok(CloudState::Running) if !reported_running => {
                reported_running = true;
                send(LatentMsg::Running {
                    pool: pool.clone(),
                    id,
                })
                .await;
            }
            Ok(CloudState::Gone(why)) => return send(LatentMsg::Gone { pool, id, why }).await,
            // The instance is stopped at once; its end is the master's doing then.
            Ok(CloudState::Ending(why)) => return send(LatentMsg::Ending { pool, id, why }).await,
            Ok(_) => {}
            Err(e) => warn!(pool = %pool, "looking at {cloud_id}: {e}"),
        }
        let wait = if starting {
            poll
        } else {
            poll * LIVE_POLL_FACTOR
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = phase.changed() => if changed.is_err() { return },
        }
    }
}

/// A ready instance is looked at this many times less often than a starting one.
const LIVE_POLL_FACTOR: u32 = 3;
