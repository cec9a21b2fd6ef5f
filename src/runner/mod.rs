//! Builds: a request becomes a build on one worker; each step is a remote command.

mod build;
mod command;
mod fs;
mod git;
mod logsink;
mod objects;
mod properties;
#[cfg(test)]
mod record_tests;
mod root;
mod shell;
mod transfer;
mod unpack;

pub use build::{initial_properties, run_build, BuildJob, BuildOutcome};
pub use properties::Properties;
