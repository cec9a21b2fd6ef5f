//! Mutation mode (placeholder until the cases land).

use crate::cli::MutateArgs;
use std::process::ExitCode;

pub async fn run(_args: MutateArgs) -> ExitCode {
    ExitCode::FAILURE
}
