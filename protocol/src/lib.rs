//! `pbwire`: Twisted's Perspective Broker wire protocol, sans IO.
//!
//! # Layout
//!
//! - [`banana`]: bytes ⇄ [`banana::Element`] trees; streaming decoder with limits,
//!   the `pb` vocabulary, dialect negotiation.
//! - [`jelly`]: elements ⇄ [`jelly::Value`]s (None, booleans, integers, text, bytes,
//!   containers, references, remote references, copyable instances such as failures),
//!   with PB's security rules.
//! - [`pb`]: values ⇄ [`pb::Message`]s (message, answer, error, decref, ...).
//! - [`broker`]: one connection as a state machine: negotiation, login, object table,
//!   calls both ways, timers. Bytes and `now` in; bytes, events and deadlines out.
//! - [`login`]: the cred challenge/response.
//! - [`notation`]: the readable s-expression text form of elements, used by the wire
//!   inspector and the fixtures.
//! - [`Limits`]: every bound the decoders enforce.
//!
//! Nothing here opens a socket, spawns a task or reads a clock; a caller feeds bytes in
//! and takes bytes out. The optional `codec` feature adds a `tokio_util::codec` adapter.

#![forbid(unsafe_code)]

pub mod banana;
pub mod broker;
#[cfg(feature = "codec")]
pub mod codec;
mod integer;
pub mod jelly;
mod limits;
pub mod login;
pub mod notation;
pub mod pb;

pub use integer::Integer;
pub use limits::{Limits, DEPTH_CEILING};
