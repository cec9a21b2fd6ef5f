//! Command-line options. Every knob of the simulated workers is here so a harness can
//! drive the same binary against any PB master.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;

/// Simulated buildbot workers for load-testing a PB master.
#[derive(Debug, Parser)]
#[command(name = "pbmaster-loadgen", version)]
pub struct Cli {
    #[command(subcommand)]
    pub mode: Mode,
}

#[derive(Debug, Subcommand)]
pub enum Mode {
    /// Attach N simulated workers, answer the master's calls, run its commands in a
    /// simulated way; report attach times, commands, latencies and errors as JSON.
    Workers(WorkersArgs),
    /// Log in with a wrong password ATTEMPTS times from this address, CONCURRENCY at
    /// once, each on a new connection closed right after its response; report the
    /// rate as JSON.
    Flood(FloodArgs),
}

#[derive(Debug, Clone, Args)]
pub struct FloodArgs {
    /// The master's PB address.
    #[arg(long, default_value = "127.0.0.1:9989")]
    pub master: SocketAddr,
    /// The worker name to log in as.
    #[arg(long)]
    pub name: String,
    /// The (wrong) password to respond with.
    #[arg(long)]
    pub password: String,
    #[arg(long, default_value_t = 10000)]
    pub attempts: usize,
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
}

/// Where and as whom to connect.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The master's PB address (loopback).
    #[arg(long, default_value = "127.0.0.1:9989")]
    pub master: SocketAddr,
    /// Worker names are PREFIX-0 .. PREFIX-(N-1).
    #[arg(long, default_value = "sim")]
    pub prefix: String,
    /// The password of every simulated worker.
    #[arg(long, default_value = "pass")]
    pub password: String,
}

#[derive(Debug, Clone, Args)]
pub struct WorkersArgs {
    #[command(flatten)]
    pub target: Target,
    /// Number of simulated workers (connections).
    #[arg(short = 'n', long, default_value_t = 1)]
    pub count: usize,
    /// First worker index (names PREFIX-FIRST ..).
    #[arg(long, default_value_t = 0)]
    pub first: usize,
    /// Stop this long after all workers attached (seconds); without it, run until
    /// SIGINT/SIGTERM (or until --duration ends when driving builds).
    #[arg(long)]
    pub hold: Option<f64>,
    /// Give up waiting for all workers to attach after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    pub attach_timeout: f64,
    /// Stdout bytes each simulated command prints in all.
    #[arg(long, default_value_t = 0)]
    pub stdout_bytes: u64,
    /// Bytes of stdout text per `update` call (a real 4.x worker flushes ~64 KiB).
    #[arg(long, default_value_t = 65536)]
    pub chunk_bytes: usize,
    /// Stdout bytes per second per command; 0 sends as fast as the master reads.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Exit code each simulated command reports.
    #[arg(long, default_value_t = 0)]
    pub rc: i64,
    /// Call the avatar's keepalive() this often (seconds); 0 never.
    #[arg(long, default_value_t = 0)]
    pub keepalive: u64,
    /// Reconnect after a refused or lost connection (as real workers do).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub reconnect: bool,
    /// Force builds back to back: POST to this URL ({builder} is replaced by the
    /// worker's first builder), wait for the build's first command, run it, repeat.
    #[arg(long)]
    pub force_url: Option<String>,
    /// How long to force builds back to back (seconds).
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Seconds each worker waits after a build before forcing the next (0: back to
    /// back, a closed loop that saturates the master; more: a load it can keep up
    /// with, so latency is the master's own).
    #[arg(long, default_value_t = 0.0)]
    pub pause: f64,
    /// Print one JSON line per event (attach, command) to stderr.
    #[arg(long)]
    pub verbose: bool,
}
