//! One PB connection: dialect negotiation, the object table, calls in both directions,
//! the cred login, keepalives. One task per connection owns the socket; everything
//! else talks to it through a [`ConnHandle`] over a bounded channel.
//!
//! The task never waits on a call it made: answers arrive as messages and complete
//! the caller's future. So the attach handshake (calls to the worker) runs while the
//! worker's `respond` call is still unanswered, as buildbot requires.

mod failures;
mod handle;
mod task;

pub use failures::{no_such_method, pb_error, unauthorized};
pub use handle::{CallError, ConnHandle};
pub use task::{serve, Auth, ConnConfig, ConnEvent, LocalObject, Role};
