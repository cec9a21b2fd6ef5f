//! Command-line options. Every knob of the simulated workers is here so a harness can
//! drive the same binary against any PB master.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;

/// Simulated buildbot workers (and a PB fuzzer) for load-testing a PB master.
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
    /// After a valid login, send structure-aware mutated messages and report, per case,
    /// whether the server answered, dropped the connection, stalled or died.
    Mutate(MutateArgs),
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

#[derive(Debug, Clone, Args)]
pub struct MutateArgs {
    #[command(flatten)]
    pub target: Target,
    /// Worker index whose name (PREFIX-INDEX) logs in before each case.
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// Seconds to wait for a reply before calling a case "stalled".
    #[arg(long, default_value_t = 3.0)]
    pub reply_timeout: f64,
    /// Stop starting new cases after this many seconds in all.
    #[arg(long, default_value_t = 300.0)]
    pub budget: f64,
    /// Only run cases whose name contains this text.
    #[arg(long)]
    pub only: Option<String>,
    /// Seed for the randomised cases.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Randomised mutations of valid messages, on top of the fixed cases.
    #[arg(long, default_value_t = 50)]
    pub random_cases: usize,
    /// The server's process id, to tell "died" from "dropped" (optional: without it,
    /// a server that refuses new connections counts as died).
    #[arg(long)]
    pub pid: Option<u32>,
    /// List the cases and exit.
    #[arg(long)]
    pub list: bool,
}
