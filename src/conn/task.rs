//! The connection task: moves bytes between a socket and a [`Broker`], sleeps until
//! the broker's next deadline, and hands the broker's events to the [`Endpoint`].
//! Everything PB decides is the broker's; this file only does I/O.

use super::endpoint::Endpoint;
use super::handle::ConnHandle;
use super::stream::PbStream;
use super::throttle::LoginThrottle;
use bytes::BytesMut;
use pbwire::broker::{Broker, BrokerConfig, Event, Keepalive, Side};
use pbwire::jelly::Value;
use pbwire::Limits;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use super::endpoint::{Auth, ConnEvent, LocalObject, Role};

/// Bounds and timers of every connection.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    pub limits: Limits,
    /// Between the master's keepalive calls once a worker has logged in.
    pub keepalive_interval: Duration,
    /// How long the peer may stay silent after a keepalive call.
    pub keepalive_timeout: Duration,
    /// How long a connection may stay without a login attempt.
    pub login_timeout: Duration,
    /// How long one write may wait for the peer to read: a peer that stops reading is
    /// closed rather than kept forever.
    pub write_timeout: Duration,
    /// Refused logins across connections.
    pub throttle: Arc<LoginThrottle>,
    /// Objects handed out at once (Twisted's broker allows 1024).
    pub max_objects: usize,
    /// Calls to the peer awaiting answers.
    pub max_pending: usize,
    /// Refused requests (e.g. over the object limit) before the connection is closed.
    pub max_violations: u32,
}

impl Default for ConnConfig {
    fn default() -> Self {
        ConnConfig {
            limits: Limits {
                max_message_bytes: 4 << 20,
                max_message_elements: 1 << 18,
                ..Limits::default()
            },
            keepalive_interval: Duration::from_secs(300),
            keepalive_timeout: Duration::from_secs(60),
            login_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
            throttle: Arc::default(),
            max_objects: 1024,
            max_pending: 4096,
            max_violations: 3,
        }
    }
}

impl ConnConfig {
    /// The broker's configuration: a listener whose keepalive is buildbot's,
    /// `print(message="keepalive")` on the worker's bot.
    fn broker(&self) -> BrokerConfig {
        BrokerConfig {
            limits: self.limits,
            max_objects: self.max_objects,
            max_pending: self.max_pending,
            max_violations: self.max_violations,
            login_timeout: Some(self.login_timeout),
            keepalive: Some(Keepalive {
                interval: self.keepalive_interval,
                timeout: self.keepalive_timeout,
                method: "print".into(),
                kwargs: vec![(Value::text("message"), Value::text("keepalive"))],
            }),
            ..BrokerConfig::new(Side::Listener)
        }
    }
}

/// The first read buffer of a connection: most messages are small, and idle
/// connections are many. It grows with what arrives.
const INITIAL_READ_CAPACITY: usize = 1024;

/// A connection as the listener admitted it.
#[derive(Debug)]
pub struct Accepted<S> {
    pub stream: S,
    pub peer: SocketAddr,
    pub id: u64,
    /// When it was accepted: the login deadline counts from here, so time spent in a
    /// TLS handshake is part of it.
    pub at: Instant,
}

/// How long closing may wait to send a TLS close_notify to a peer that reads nothing.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs one connection until it closes.
pub async fn serve<S: PbStream>(
    accepted: Accepted<S>,
    config: Arc<ConnConfig>,
    auth: Arc<dyn Auth>,
    events: mpsc::Sender<ConnEvent>,
    shutdown: CancellationToken,
) {
    let Accepted {
        mut stream,
        peer,
        id,
        at,
    } = accepted;
    let (tx, rx) = mpsc::channel(256);
    let handle = ConnHandle { id, peer, tx };
    let entropy = |buf: &mut [u8]| getrandom::fill(buf).is_ok();
    let mut broker = Broker::new(config.broker(), at.into_std(), entropy);
    broker.receive_buffer().reserve(INITIAL_READ_CAPACITY);
    let throttle = config.throttle.clone();
    let mut endpoint = Endpoint::new(handle, broker, auth, throttle, events);
    let reason = run(
        &mut stream,
        &mut endpoint,
        rx,
        config.write_timeout,
        shutdown,
    )
    .await;
    info!(peer = %peer, worker = endpoint.login_name().unwrap_or("-"), "connection closed: {reason}");
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, stream.shutdown()).await;
    Box::pin(endpoint.closed(reason)).await;
}

async fn run<S: PbStream>(
    stream: &mut S,
    endpoint: &mut Endpoint,
    mut requests: mpsc::Receiver<super::handle::Request>,
    write_timeout: Duration,
    shutdown: CancellationToken,
) -> String {
    loop {
        let mut closed = None;
        while let Some(event) = endpoint.broker.poll_event() {
            match event {
                Event::Closed(reason) => {
                    let (kind, violation) = crate::metrics::close_kind(&reason);
                    crate::metrics::metrics().connection_closed(kind, violation);
                    closed = Some(reason.to_string());
                }
                // Boxed: its state would otherwise sit in every idle connection's task.
                event => Box::pin(endpoint.on_event(event)).await,
            }
        }
        if let Some(bytes) = endpoint.broker.poll_transmit() {
            // TLS keeps what the socket did not take until a flush.
            let write = async {
                stream.write_all(&bytes).await?;
                stream.flush().await
            };
            match tokio::time::timeout(write_timeout, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return io_closed(format!("write failed: {e}")),
                Err(_) => return io_closed(format!("the peer read nothing for {write_timeout:?}")),
            }
        }
        if let Some(reason) = closed {
            return reason;
        }
        let deadline = endpoint.broker.poll_timeout().map(Instant::from_std);
        let refusal = endpoint.refusal_due();
        let buffer = endpoint.broker.receive_buffer();
        make_room(buffer);
        tokio::select! {
            read = stream.read_buf(buffer) => match read {
                Ok(0) => endpoint.broker.handle_eof(),
                Ok(n) => {
                    quick_ack(stream.tcp());
                    endpoint.broker.handle_received(Instant::now().into_std());
                    // A short read that left nothing: the peer is not streaming.
                    if n < INITIAL_READ_CAPACITY && endpoint.broker.receive_buffer().is_empty() {
                        endpoint.broker.release_memory();
                    }
                }
                // A TLS peer that closes without close_notify: to PB, whose messages
                // carry their own length, an end like any other.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    endpoint.broker.handle_eof();
                }
                Err(e) => return io_closed(format!("read failed: {e}")),
            },
            request = requests.recv() => match request {
                Some(request) => endpoint.on_request(request),
                None => endpoint.broker.close("master dropped the connection"),
            },
            _ = sleep_until(deadline), if deadline.is_some() => {
                endpoint.broker.handle_timeout(Instant::now().into_std());
            }
            _ = sleep_until(refusal), if refusal.is_some() => endpoint.send_deferred_refusal(),
            _ = shutdown.cancelled() => endpoint.broker.close("master stopping"),
        }
    }
}

/// A connection whose socket failed: counted as closed by `io`.
fn io_closed(why: String) -> String {
    crate::metrics::metrics().connection_closed("io", false);
    why
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d).await;
    }
}

/// Grows a full read buffer by what it holds (at least the initial capacity), so a
/// large message takes few reads and an idle connection stays small.
fn make_room(buffer: &mut BytesMut) {
    if buffer.capacity() == buffer.len() {
        buffer.reserve(buffer.len().max(INITIAL_READ_CAPACITY));
    }
}

/// Acknowledges what was read at once. Python workers do not set TCP_NODELAY, so each
/// of their small writes after the first waits for the master's ACK; Linux delays
/// that ACK by up to 40 ms unless quick-ack mode is re-armed after every read.
#[cfg(target_os = "linux")]
fn quick_ack(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
}

#[cfg(not(target_os = "linux"))]
fn quick_ack(_stream: &TcpStream) {}
