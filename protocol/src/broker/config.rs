//! What a broker is told at creation: its side, its bounds and its timers.

use crate::jelly::Value;
use crate::Limits;
use bytes::Bytes;
use std::fmt;
use std::time::Duration;

/// Which end of the TCP connection this broker is. The listener offers the dialects
/// and serves logins on its root object; the connector chooses a dialect and logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The end that accepted the TCP connection: offers dialects, serves logins.
    Listener,
    /// The end that opened the TCP connection: chooses a dialect, logs in.
    Connector,
}

/// A call the broker makes on the peer's mind (the object the peer passed with its
/// login) to learn that it is alive. Buildbot's master calls `print(message=...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Keepalive {
    /// Between probes, from the login on.
    pub interval: Duration,
    /// How long the peer may stay silent once a probe is out before it is declared
    /// dead. Any input counts as a sign of life, not only the probe's answer.
    pub timeout: Duration,
    /// The method called on the mind.
    pub method: Bytes,
    /// Its keyword arguments.
    pub kwargs: Vec<(Value, Value)>,
}

/// Bounds and timers of one connection.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// Which end of the connection the broker is.
    pub side: Side,
    /// Bounds on what the peer may make the decoder buffer or build.
    pub limits: Limits,
    /// Objects handed out at once (Twisted's broker allows 1024).
    pub max_objects: usize,
    /// Calls to the peer awaiting answers; reaching it closes the connection, since a
    /// peer that never answers would otherwise make the caller's state grow forever.
    pub max_pending: usize,
    /// Refused requests that count against the peer (e.g. over the object bound)
    /// before the connection is closed.
    pub max_violations: u32,
    /// Login challenges outstanding at once on a listener (default 1): each holds a
    /// name, and a real client asks for one at a time.
    pub max_challenges: usize,
    /// Bytes in a login name; real names are short, and each challenge keeps one.
    pub max_login_name: usize,
    /// Refused logins on one connection before it is closed: guessing passwords costs
    /// a new connection every few tries.
    pub max_login_failures: u32,
    /// A listener closes a connection that has not logged in this long after it
    /// began, so idle sockets cannot hold the admission limit.
    pub login_timeout: Option<Duration>,
    /// Liveness probes once logged in (listener only; needs the peer's mind).
    pub keepalive: Option<Keepalive>,
}

impl BrokerConfig {
    /// Twisted's bounds where it has them, and conservative ones where it has none.
    pub fn new(side: Side) -> BrokerConfig {
        BrokerConfig {
            side,
            limits: Limits::default(),
            max_objects: 1024,
            max_pending: 4096,
            max_violations: 3,
            max_challenges: 1,
            max_login_name: 1024,
            max_login_failures: 3,
            login_timeout: Some(Duration::from_secs(30)),
            keepalive: None,
        }
    }
}

/// Where login challenges come from: it fills the buffer with unpredictable bytes,
/// or answers false when it cannot (the broker then closes the connection rather
/// than send a guessable challenge). Tests pass a deterministic source.
pub trait Entropy: Send {
    /// Fills `buf` with unpredictable bytes; false if none are available.
    fn fill(&mut self, buf: &mut [u8]) -> bool;
}

impl<F: FnMut(&mut [u8]) -> bool + Send> Entropy for F {
    fn fill(&mut self, buf: &mut [u8]) -> bool {
        self(buf)
    }
}

/// The broker's entropy source, printable.
pub(super) struct Source(pub(super) Box<dyn Entropy>);

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Entropy")
    }
}
