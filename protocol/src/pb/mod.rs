//! PB messages: the top-level expressions of a connection after negotiation.
//!
//! Each is a list whose first element names it. The positional arguments and the
//! keyword dictionary of a `message` are two separate jelly expressions (reference ids
//! restart in each), as are an answer's result and an error's failure.

pub mod failures;
mod message;
mod session;

pub use message::{decode, decode_ref, encode, Call, Message, ObjectId, PbError, PbErrorKind};
pub use session::{Session, SessionErrorKind, SessionFull};

/// The PB protocol version every Twisted release examined sends and expects.
pub const PROTOCOL_VERSION: i64 = 6;
