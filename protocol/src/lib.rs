//! `pbwire`: Twisted's Perspective Broker wire protocol, sans IO.
//!
//! Perspective Broker (PB) is Twisted's remote-object protocol: each side of a TCP
//! connection can call methods on objects the other side handed out, passing
//! structured values, and gets back an answer or a failure. It is layered: banana
//! frames bytes into typed elements, jelly turns elements into values, and PB gives
//! values meaning as calls, answers, errors and reference counts. This crate implements
//! every layer, plus a state machine for a whole connection, without doing any I/O.
//!
//! # Layout
//!
//! - [`banana`]: bytes ⇄ [`banana::Element`] trees, or decoded expressions read in
//!   place ([`banana::ElementRef`]); streaming decoder with limits, the `pb`
//!   vocabulary, dialect negotiation.
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
//! The crate's `examples/` hold a client and a server driving a [`broker::Broker`]
//! over blocking `std::net` sockets.
//!
//! # Banana: bytes ⇄ elements
//!
//! The decoder is streaming: it takes whatever bytes have arrived and returns a
//! top-level element once one is complete. [`Decoder::decode_ref`](banana::Decoder::decode_ref)
//! returns it without building a tree, and [`pb::decode_ref`] reads a message from
//! that directly: the cheaper path, which the broker takes.
//!
//! ```
//! use bytes::BytesMut;
//! use pbwire::banana::{self, Decoder, Element};
//! use pbwire::{notation, Limits};
//!
//! let element = Element::List(vec![Element::int(42), Element::Bytes("hi".into())]);
//! let wire = banana::encode_to_vec(&element)?;
//! assert_eq!(wire, b"\x02\x80\x2a\x81\x02\x82hi");
//! assert_eq!(notation::to_string(&element), "(42 b'hi')");
//!
//! let mut decoder = Decoder::new(Limits::default());
//! let mut received = BytesMut::from(&wire[..5]);
//! assert_eq!(decoder.decode(&mut received)?, None); // needs more bytes
//! received.extend_from_slice(&wire[5..]);
//! assert_eq!(decoder.decode(&mut received)?, Some(element));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Jelly: elements ⇄ values
//!
//! ```
//! use pbwire::banana::Dialect;
//! use pbwire::jelly::{self, JellyErrorKind, Value};
//! use pbwire::notation;
//!
//! let value = Value::Dict(vec![
//!     (Value::text("size"), Value::int(42)),
//!     (Value::text("tags"), Value::List(vec![Value::bytes(&b"a"[..]), Value::None])),
//! ]);
//! let element = jelly::encode(&value, Dialect::Pb)?;
//! assert_eq!(
//!     notation::to_string(&element),
//!     r#"(dictionary ((b'unicode' "size") 42) ((b'unicode' "tags") (list b'a' (None))))"#
//! );
//! assert_eq!(jelly::decode(&element)?, value);
//!
//! // PB's security rules: a peer cannot make the receiver load a class.
//! let hostile = &notation::parse("(class b'os.system')")?[0];
//! assert_eq!(jelly::decode(hostile).unwrap_err().kind, JellyErrorKind::Forbidden);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # PB: values ⇄ messages
//!
//! The first bytes a buildbot worker sends once the `pb` dialect is chosen: its PB
//! version, then a call to the listener's root object asking to log in as `w1`.
//!
//! ```
//! use bytes::BytesMut;
//! use pbwire::banana::{Decoder, Dialect};
//! use pbwire::jelly::{Security, Value};
//! use pbwire::pb::{self, Message, ObjectId};
//! use pbwire::Limits;
//!
//! let mut received = BytesMut::from(
//!     &b"\x02\x80\x13\x87\x06\x81\x07\x80\x1a\x87\x01\x81\x04\x82root\x14\x87\x01\x81\
//!        \x02\x80\x0b\x87\x02\x82w1\x01\x80\x05\x87"[..],
//! );
//! let mut decoder = Decoder::new(Limits::default());
//! decoder.set_dialect(Dialect::Pb);
//! let security = Security::default();
//! let mut next = || -> Result<Message, Box<dyn std::error::Error>> {
//!     let element = decoder.decode(&mut received)?.ok_or("incomplete")?;
//!     Ok(pb::decode(&element, &security)?)
//! };
//! assert_eq!(next()?, Message::Version(pb::PROTOCOL_VERSION));
//! let Message::Call(call) = next()? else { panic!("not a call") };
//! assert_eq!(call.object, ObjectId::Root);
//! assert_eq!(&call.method[..], b"login");
//! assert_eq!(call.args, [Value::bytes(&b"w1"[..])]);
//! assert!(call.answer_required);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Broker: a whole connection
//!
//! Two brokers in memory, a listener and a connector, with the bytes each queues handed
//! to the other: the connector logs in, calls `add` on its avatar and gets the sum.
//! With real sockets the loop is the same (see the [`broker`] module's calling order).
//!
//! ```
//! use pbwire::broker::{Broker, BrokerConfig, Event, Side};
//! use pbwire::jelly::Value;
//! use pbwire::pb::ObjectId;
//! use std::time::Instant;
//!
//! /// Hands what each side queued to the other until both are quiet.
//! fn exchange(a: &mut Broker, b: &mut Broker, now: Instant) {
//!     let mut moved = true;
//!     while moved {
//!         moved = false;
//!         while let Some(bytes) = a.poll_transmit() {
//!             b.handle_input(&bytes, now);
//!             moved = true;
//!         }
//!         while let Some(bytes) = b.poll_transmit() {
//!             a.handle_input(&bytes, now);
//!             moved = true;
//!         }
//!     }
//! }
//!
//! let now = Instant::now();
//! // Login challenges must be unpredictable: draw them from the OS in real use.
//! let entropy = |buf: &mut [u8]| {
//!     buf.fill(7);
//!     true
//! };
//! let mut server = Broker::new(BrokerConfig::new(Side::Listener), now, entropy);
//! // A connector never makes challenges.
//! let mut client = Broker::new(BrokerConfig::new(Side::Connector), now, |_: &mut [u8]| false);
//! client.login("alice", b"secret", None)?;
//! exchange(&mut client, &mut server, now);
//!
//! let Some(Event::Login(attempt)) = server.poll_event() else { panic!("no login") };
//! assert!(attempt.verify(b"secret"));
//! let avatar = server.accept_login(attempt.id, now)?;
//! exchange(&mut client, &mut server, now);
//! assert_eq!(client.poll_event(), Some(Event::LoggedIn { avatar }));
//!
//! let args = vec![Value::int(2), Value::int(3)];
//! let request = client.call(ObjectId::Id(avatar), "add", args, vec![])?;
//! exchange(&mut client, &mut server, now);
//! let Some(Event::Call(call)) = server.poll_event() else { panic!("no call") };
//! assert_eq!(&call.method[..], b"add");
//! let sum: i64 = call.args.iter().filter_map(Value::as_i64).sum();
//! server.answer(call.request_id, Ok(Value::int(sum)))?;
//! exchange(&mut client, &mut server, now);
//! assert_eq!(
//!     client.poll_event(),
//!     Some(Event::Answer { request_id: request, result: Ok(Value::int(5)) })
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

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

/// The README's example, compiled with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
