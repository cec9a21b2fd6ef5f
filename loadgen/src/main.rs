//! `pbmaster-loadgen`: simulated buildbot workers for load-testing a PB master
//! (pbmaster or the Python buildbot master). Malformed messages are `pbfuzz`'s job;
//! the workers answer the master as its buildbot-worker persona does.
//!
//! Speaks only through `pbwire`; every byte from the server is untrusted.

mod cli;
mod command;
mod driver;
mod flood;
mod http;
mod link;
mod nofile;
mod stats;
mod worker;

use clap::Parser;
use cli::{Cli, Mode, WorkersArgs};
use stats::Stats;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Each connection is one descriptor; leave room for the rest.
    let connections = match &cli.mode {
        Mode::Workers(args) => args.count,
        Mode::Flood(args) => args.concurrency,
    };
    nofile::raise(connections as u64 + 64);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pbmaster-loadgen: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.mode {
            Mode::Workers(args) => workers(args).await,
            Mode::Flood(args) => flood::run(args).await,
        }
    })
}

/// One JSON line on stdout, flushed at once so a harness can react to it.
fn emit(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

async fn workers(args: WorkersArgs) -> ExitCode {
    let stats = Arc::new(Stats::new(args.count));
    let drive = args.force_url.clone().map(|url| {
        (
            url,
            Instant::now() + Duration::from_secs_f64(args.duration.max(0.0)),
            Duration::from_secs_f64(args.pause.max(0.0)),
        )
    });
    let config = Arc::new(worker::Config {
        master: args.target.master,
        password: args.target.password.clone(),
        behaviour: Arc::new(command::Behaviour {
            stdout_bytes: args.stdout_bytes,
            chunk_bytes: args.chunk_bytes,
            rate: args.rate,
            rc: args.rc,
        }),
        keepalive: Duration::from_secs(args.keepalive),
        reconnect: args.reconnect,
        drive,
        verbose: args.verbose,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for i in args.first..args.first + args.count {
        let name = format!("{}-{i}", args.target.prefix);
        tasks.spawn(worker::run(name, config.clone(), stats.clone()));
    }

    let all = stats.all_attached.notified();
    let attach_wait = Duration::from_secs_f64(args.attach_timeout.max(0.0));
    let all_attached = stats.attached() == args.count
        || tokio::time::timeout(attach_wait, all).await.is_ok()
        || stats.attached() == args.count;
    emit(&serde_json::json!({
        "event": if all_attached { "all_attached" } else { "attach_timeout" },
        "attached": stats.attached(),
        "t": stats.elapsed(),
    }));

    if all_attached {
        if args.force_url.is_some() {
            // Each driver stops forcing when its time is up and its last build's
            // command has completed; the workers stay attached for --hold more.
            let grace = Duration::from_secs_f64(args.duration.max(0.0)) + Duration::from_secs(150);
            let _ = tokio::time::timeout(grace, async {
                while stats.drivers_done.load(std::sync::atomic::Ordering::SeqCst) < args.count {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
            tokio::time::sleep(Duration::from_secs_f64(args.hold.unwrap_or(0.0).max(0.0))).await;
        } else if let Some(hold) = args.hold {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(hold.max(0.0))) => {}
                _ = stop_signal() => {}
            }
        } else {
            stop_signal().await;
        }
    }
    tasks.abort_all();
    let mut report = stats.report();
    report["event"] = "report".into();
    emit(&report);
    if all_attached {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
