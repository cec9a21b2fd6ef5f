//! `pbfuzz`: a fuzz client for any Perspective Broker server.
//!
//! A target is described by a [`profile::Profile`]: its address, the login (name,
//! password, whether to pass a mind), how to answer its calls ([`persona`]), the call
//! the cases mutate and probe with, and a script of valid calls that reach deeper code
//! before each case. Each [`cases::Case`] logs in afresh, sends its bytes, then the
//! probe, and [`run`] classifies what the target did as answered, dropped, stalled or
//! died, reporting the exact bytes; a case that died or stalled is shrunk by
//! [`minimize`] to the shortest bytes that still do. Cases come from a table, from
//! seeded random edits, and from [`replay`]ed recorded sessions; one seed makes the
//! same cases and bytes again.
//!
//! The protocol is pbwire's: its broker logs in and answers, its notation and encoder
//! make the cases' valid parts.

pub mod cases;
pub mod conn;
pub mod minimize;
pub mod mutate;
pub mod persona;
pub mod profile;
pub mod replay;
pub mod run;
pub mod wire;
