//! The `pbmaster` command; everything it does lives in the library.

use clap::Parser;
use pbmaster::cli::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    match Cli::parse().run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pbmaster: {e}");
            ExitCode::FAILURE
        }
    }
}
