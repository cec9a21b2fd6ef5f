//! Command-line interface.

mod wire;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pbmaster",
    version,
    about = "A Perspective Broker build master for buildbot workers"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect and produce raw PB byte streams.
    #[command(subcommand)]
    Wire(wire::WireCommand),
}

impl Cli {
    pub fn run(self) -> Result<(), Box<dyn std::error::Error>> {
        match self.command {
            Command::Wire(w) => w.run(),
        }
    }
}
