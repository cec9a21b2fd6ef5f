//! Builds: a request becomes a build on one worker; each step is a remote command.

mod result;
mod runner;
mod shell;

pub use result::BuildResult;
pub use runner::{run_build, BuildJob, BuildOutcome};
pub use shell::shell_args;
