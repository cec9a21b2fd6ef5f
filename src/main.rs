//! `pbmaster`: a build master that unmodified buildbot workers attach to over
//! Perspective Broker.
//!
//! # Layout
//!
//! - `cli`: the command line; `cli::wire` is the wire inspector (`pbmaster wire ...`).
//!
//! The protocol itself lives in the `pbwire` crate (`protocol/`).

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pbmaster: {e}");
            ExitCode::FAILURE
        }
    }
}
