//! Buildbot's worker-side RPCs, typed: the attach handshake for every worker
//! generation, and what the master learns from it.

mod attach;
mod values;
mod versions;

pub use attach::{attach, set_builder_list, Attached, CommandTables};
pub use versions::CommandVersion;
