//! Accepting connections without spinning when `accept` fails, for both listeners.

mod backoff;
mod http;

pub use backoff::AcceptBackoff;
pub use http::HttpListener;

use std::io;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

/// Accepts the next connection on `listener` (named `what` in the log). An error that
/// concerns one connection only (reset or aborted before it was accepted) is skipped
/// at once; any other, typically running out of file descriptors, pauses as
/// `backoff` says, with one warning per pause.
pub async fn accept(
    listener: &TcpListener,
    backoff: &mut AcceptBackoff,
    what: &str,
) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                backoff.succeeded();
                return accepted;
            }
            Err(e) if concerns_one_connection(&e) => {
                debug!(listener = what, "a connection went away before accept: {e}");
            }
            Err(e) => {
                let pause = backoff.failed();
                warn!(
                    listener = what,
                    "accept failed: {e}; trying again in {} ms",
                    pause.as_millis()
                );
                tokio::time::sleep(pause).await;
            }
        }
    }
}

fn concerns_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}
