//! What a connection task reads and writes: plain TCP, or TLS over TCP. Either way
//! the TCP socket underneath stays reachable for its options.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A PB connection's byte stream.
pub trait PbStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The TCP socket the bytes travel on.
    fn tcp(&self) -> &TcpStream;
}

impl PbStream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl PbStream for TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}
