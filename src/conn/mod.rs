//! One PB connection: a [`pbwire::broker::Broker`] (negotiation, login, object
//! table, calls both ways, keepalives) driven by one task that owns the socket; the
//! master's objects and callers live beside it. Everything else talks to the task
//! through a [`ConnHandle`] over a bounded channel.
//!
//! The task never waits on a call it made: answers arrive as messages and complete
//! the caller's future. So the attach handshake (calls to the worker) runs while the
//! worker's `respond` call is still unanswered, as buildbot requires.

mod endpoint;
mod handle;
mod stream;
mod task;
mod throttle;

pub(crate) use handle::Request;
pub use handle::{CallError, ConnHandle, ObjectCall};
pub use pbwire::pb::failures::{no_such_method, pb_error, unauthorized};
pub use task::{serve, Accepted, Auth, ConnConfig, ConnEvent, LocalObject, Role};
pub(crate) use throttle::printable;
