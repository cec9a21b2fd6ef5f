//! `pbmaster`: a build master that unmodified buildbot workers attach to over
//! Perspective Broker.
//!
//! # Layout
//!
//! - `conn`: one task per PB connection (negotiation, object table, login, calls).
//! - `server`: the PB listener with its admission limit; `accept`: accepting on
//!   either listener, backing off when it fails; `nofile`: the open-file limit.
//! - `worker`: buildbot's worker RPCs, typed; the attach handshake per generation.
//! - `master`: the coordinator: attached workers, the queue, dispatch, draining.
//! - `build`: a build's steps as remote commands; results.
//! - `latent`: on-demand instances: state machine, planning, drivers, credentials.
//! - `store`: durable state in SQLite.
//! - `api`: the HTTP JSON API; `cli`: the command line (including the wire inspector).
//! - `changes`: changes from sendchange, JSON and push hooks; `scheduler`: what turns
//!   time and changes into build requests.
//! - `config`: the TOML configuration.
//!
//! The protocol itself lives in the `pbwire` crate (`protocol/`).

mod accept;
mod api;
mod build;
mod changes;
mod cli;
mod config;
mod conn;
mod latent;
mod master;
mod nofile;
mod run;
mod scheduler;
mod server;
mod store;
mod worker;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::Cli::parse().run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pbmaster: {e}");
            ExitCode::FAILURE
        }
    }
}
