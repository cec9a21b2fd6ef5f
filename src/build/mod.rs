//! Builds: a request becomes a build on one worker; each step is a remote command.

mod command;
mod fs;
mod git;
mod objects;
mod properties;
mod result;
mod runner;
mod shell;
mod transfer;

pub use result::BuildResult;
pub use runner::{initial_properties, run_build, BuildJob, BuildOutcome};
