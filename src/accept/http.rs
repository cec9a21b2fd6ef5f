//! The HTTP API's listener for `axum::serve`.

use super::{accept, AcceptBackoff};
use std::io;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};

/// Accepts with [`accept`]'s back-off and warnings, where axum's own listener pauses
/// a fixed second after each error and, without axum's `tracing` feature, says nothing.
#[derive(Debug)]
pub struct HttpListener {
    listener: TcpListener,
    backoff: AcceptBackoff,
}

impl HttpListener {
    pub fn new(listener: TcpListener) -> HttpListener {
        HttpListener {
            listener,
            backoff: AcceptBackoff::default(),
        }
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        accept(&self.listener, &mut self.backoff, "http").await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}
