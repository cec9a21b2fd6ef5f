//! The PB listener: admission limit, one task per connection.

use crate::conn::{self, Auth, ConnConfig};
use crate::master::Msg;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Accepts connections until `shutdown` fires. A permit is taken before `accept`, so
/// past `max_connections` new peers wait in the kernel's backlog instead of costing
/// memory here.
pub async fn serve(
    listener: TcpListener,
    max_connections: usize,
    config: Arc<ConnConfig>,
    auth: Arc<dyn Auth>,
    master: mpsc::Sender<Msg>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let ids = AtomicU64::new(1);
    let (events_tx, mut events_rx) = mpsc::channel(1024);
    // Connection events go to the coordinator in order.
    let forward = tokio::spawn(async move {
        while let Some(event) = events_rx.recv().await {
            if master.send(Msg::Conn(event)).await.is_err() {
                break;
            }
        }
    });
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!("accept failed: {e}");
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        debug!(peer = %peer, "connection accepted");
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let (config, auth, events) = (config.clone(), auth.clone(), events_tx.clone());
        tokio::spawn(async move {
            conn::serve(stream, peer, id, config, auth, events).await;
            drop(permit);
        });
    }
    // Open connections keep the forwarder alive until they close.
    drop((events_tx, forward));
}
