//! The PB listener: admission limit, optional TLS, one task per connection; and how
//! the master's listening sockets are opened.

use crate::accept::{accept, AcceptBackoff};
use crate::conn::{self, Accepted, Auth, ConnConfig};
use crate::master::Msg;
use crate::tls;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

/// Connections the kernel queues for `accept` per listener. The usual default (128)
/// overflows when thousands of workers connect at once, e.g. after a master restart:
/// a connection whose final ACK is dropped looks open to the worker, which then waits
/// for its own timeout before trying again. Linux caps it at `net.core.somaxconn`.
pub const BACKLOG: u32 = 4096;

/// Listens on `addr` (an `ip:port`, or a name resolving to some) with SO_REUSEADDR,
/// so a restarted master can bind while old connections linger in TIME_WAIT, and a
/// [`BACKLOG`]-deep accept queue.
pub async fn listen(addr: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        match listen_on(a) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address")))
}

fn listen_on(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The PB port.
pub struct PbListener {
    pub tcp: TcpListener,
    /// Connections admitted at once.
    pub max_connections: usize,
    /// Every connection starts with a TLS handshake; plain PB without it.
    pub tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for PbListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PbListener")
            .field("tcp", &self.tcp)
            .field("max_connections", &self.max_connections)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Accepts connections until `shutdown` fires, which also closes every connection;
/// they all run on `tasks`. A permit is taken before `accept`, so
/// past `max_connections` new peers wait in the kernel's backlog instead of costing
/// memory here; a TLS handshake runs under that permit and within the login deadline.
/// A failing accept (out of descriptors) backs off rather than spins.
pub async fn serve(
    listener: PbListener,
    config: Arc<ConnConfig>,
    auth: Arc<dyn Auth>,
    master: mpsc::Sender<Msg>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let PbListener {
        tcp: listener,
        max_connections,
        tls,
    } = listener;
    let permits = Arc::new(Semaphore::new(max_connections));
    let ids = AtomicU64::new(1);
    let mut backoff = AcceptBackoff::default();
    let (events_tx, mut events_rx) = mpsc::channel(1024);
    // Connection events go to the coordinator in order.
    let forward = tasks.spawn(async move {
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
            accepted = accept(&listener, &mut backoff, "pb") => accepted,
            _ = shutdown.cancelled() => break,
        };
        debug!(peer = %peer, "connection accepted");
        crate::metrics::metrics().connection_opened();
        let at = Instant::now();
        // Set before any TLS handshake, whose small messages it speeds up too.
        let _ = stream.set_nodelay(true);
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let (config, auth, events) = (config.clone(), auth.clone(), events_tx.clone());
        let (stop, tls) = (shutdown.clone(), tls.clone());
        tasks.spawn(async move {
            match tls {
                None => {
                    let accepted = Accepted {
                        stream,
                        peer,
                        id,
                        at,
                    };
                    conn::serve(accepted, config, auth, events, stop).await;
                }
                // Boxed: a TLS connection's state (rustls's) is large, and plain
                // connections' tasks would otherwise be sized for it.
                Some(tls) => {
                    Box::pin(async move {
                        let deadline = at + config.login_timeout;
                        let handshake = tls::handshake(&tls, stream, peer, deadline, &stop);
                        if let Some(stream) = handshake.await {
                            let accepted = Accepted {
                                stream,
                                peer,
                                id,
                                at,
                            };
                            conn::serve(accepted, config, auth, events, stop).await;
                        }
                    })
                    .await
                }
            }
            crate::metrics::metrics().connection_ended();
            drop(permit);
        });
    }
    // Open connections keep the forwarder alive until they close.
    drop((events_tx, forward));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listens_and_refuses_a_second_listener_on_the_same_port() {
        let first = listen("127.0.0.1:0").await.expect("listen");
        let addr = first.local_addr().expect("address");
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (_, peer) = first.accept().await.expect("accept");
        assert_eq!(peer, client.local_addr().expect("client address"));
        // SO_REUSEADDR does not let two masters share a port.
        assert!(listen(&addr.to_string()).await.is_err());
    }

    #[tokio::test]
    async fn an_unparsable_address_is_an_error() {
        assert!(listen("not an address").await.is_err());
    }
}
