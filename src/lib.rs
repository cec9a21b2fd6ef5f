//! `pbmaster`: a build master that unmodified buildbot workers attach to over
//! Perspective Broker. The binary is [`cli`]; [`testing`] runs the coordinator in
//! process, with scripted workers and no sockets.
//!
//! # Layout
//!
//! - `conn`: one task per PB connection (negotiation, object table, login, calls).
//! - `server`: the PB listener with its admission limit; `tls`: its optional TLS;
//!   `accept`: accepting on either listener, backing off when it fails; `nofile`: the
//!   open-file limit.
//! - `worker`: buildbot's worker RPCs, typed; the attach handshake per generation.
//! - `master`: the coordinator: attached workers, the queue, dispatch, draining.
//! - `runner`: runs a build's steps as remote commands.
//! - `latent`: on-demand instances: planning, drivers, credentials.
//! - `store`: durable state in SQLite; `janitor`: compresses finished logs and
//!   deletes what outlived the `[retention]` horizons.
//! - `api`: the HTTP JSON API; `cli`: the command line (including the wire inspector).
//! - `reporters`: GitHub and GitLab commit statuses, mail, JSON pushes, delivered from
//!   the store's outbox with retries.
//! - `changes`: changes from sendchange, JSON and push hooks; `scheduler`: what turns
//!   time and changes into build requests.
//! - `config`: the TOML configuration, checked and turned into the types the rest uses;
//!   `reload`: reading it again into a running master (SIGHUP, `pbmaster reconfig`).
//! - `testing`: the in-process harness.
//! - `model`: types shared by config, store, scheduler, runner and latent, so that none
//!   of them depends on another both ways.
//!
//! The protocol itself lives in the `pbwire` crate (`protocol/`).

mod accept;
mod api;
mod changes;
pub mod cli;
mod cluster;
mod config;
mod conn;
mod events;
mod importer;
mod janitor;
mod latent;
mod master;
mod metrics;
mod model;
mod nofile;
mod reload;
mod reporters;
mod run;
mod runner;
mod scheduler;
mod secrets;
mod server;
mod store;
pub mod testing;
mod tls;
mod web;
mod worker;
