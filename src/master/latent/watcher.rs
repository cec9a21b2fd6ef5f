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
        WatchStart::Launch(spec) => {
            let launched = tokio::time::timeout(launch_timeout, driver.launch(&spec)).await;
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
                    let why = format!("launching took longer than {} s", launch_timeout.as_secs());
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
            Ok(_) => {}
            Err(e) => warn!(pool = %pool, "looking at {cloud_id}: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            changed = phase.changed() => if changed.is_err() { return },
        }
    }
}
