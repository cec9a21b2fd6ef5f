//! `pbfuzz run`: the cases against one target, one JSON line each, then a summary.
//! `pbfuzz compare A B`: the cases whose outcome differs between two runs.

use clap::{Args, Parser, Subcommand};
use pbfuzz::cases::{self, Ctx};
use pbfuzz::profile::Profile;
use pbfuzz::replay::Recording;
use pbfuzz::run::{self, Options};
use serde_json::{json, Value as Json};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// A fuzz client for Perspective Broker servers.
#[derive(Debug, Parser)]
#[command(name = "pbfuzz", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the cases against a target; one JSON line per case, then a summary.
    Run(RunArgs),
    /// Print the cases whose outcome differs between two runs' output files.
    Compare { a: PathBuf, b: PathBuf },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// A preset (buildbot-worker, twisted-echo, anonymous) or a TOML profile file.
    #[arg(long, default_value = "buildbot-worker")]
    profile: String,
    /// The target's address (overrides the profile's).
    #[arg(long)]
    address: Option<std::net::SocketAddr>,
    /// Login name (overrides the profile's).
    #[arg(long)]
    user: Option<String>,
    /// Login password (overrides the profile's).
    #[arg(long)]
    password: Option<String>,
    /// Seed for everything random: the same seed makes the same cases and bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Random edits of valid messages, after the table.
    #[arg(long, default_value_t = 50)]
    random: usize,
    /// Leave the fixed table out.
    #[arg(long)]
    no_table: bool,
    /// A recorded session folder (w2m.bin, m2w.bin) to replay with mutations; repeatable.
    #[arg(long)]
    replay: Vec<PathBuf>,
    /// Replay cases per recorded session.
    #[arg(long, default_value_t = 30)]
    replay_cases: usize,
    /// Only cases whose name contains this text (or one of several, comma-separated).
    #[arg(long)]
    only: Option<String>,
    /// Seconds to wait for the probe's answer before calling a case stalled.
    #[arg(long, default_value_t = 3.0)]
    reply_timeout: f64,
    /// Stop starting cases after this many seconds.
    #[arg(long, default_value_t = 300.0)]
    budget: f64,
    /// The target's process id, to tell died from dropped.
    #[arg(long)]
    pid: Option<u32>,
    /// Shell command that starts the target again after it died (run in the
    /// background; the target must accept connections within 60 s).
    #[arg(long)]
    restart_cmd: Option<String>,
    /// Do not minimize cases that died or stalled.
    #[arg(long)]
    no_minimize: bool,
    /// Seconds spent minimizing one case at most.
    #[arg(long, default_value_t = 120.0)]
    minimize_time: f64,
    /// Connections spent minimizing one case at most.
    #[arg(long, default_value_t = 500)]
    minimize_tests: usize,
    /// List the case names and exit.
    #[arg(long)]
    list: bool,
    /// Print each case's bytes for an example session (avatar 1, request 3), without
    /// connecting.
    #[arg(long)]
    dry_run: bool,
}

fn emit(value: &Json) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => run_command(args),
        Command::Compare { a, b } => compare(&a, &b),
    }
}

fn run_command(args: RunArgs) -> ExitCode {
    let mut profile = match Profile::find(&args.profile) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    if let Some(a) = args.address {
        profile.address = a;
    }
    if let Some(login) = &mut profile.login {
        if let Some(u) = &args.user {
            login.username.clone_from(u);
        }
        if let Some(p) = &args.password {
            login.password.clone_from(p);
        }
    }
    let mut recordings = Vec::new();
    for dir in &args.replay {
        match Recording::load(dir) {
            Ok(r) => recordings.push(Arc::new(r)),
            Err(e) => return fail(&e),
        }
    }
    let cases: Vec<_> = cases::all(
        args.seed,
        !args.no_table,
        args.random,
        &recordings,
        args.replay_cases,
    )
    .into_iter()
    .filter(|c| {
        args.only
            .as_deref()
            .is_none_or(|o| o.split(',').any(|part| c.name.contains(part)))
    })
    .collect();
    if args.list {
        for c in &cases {
            println!("{}", c.name);
        }
        return ExitCode::SUCCESS;
    }
    if args.dry_run {
        let ctx = Ctx::example(&profile.call.method);
        for c in &cases {
            let p = c.build(&ctx);
            emit(
                &json!({"event": "case", "case": c.name, "len": p.len(), "bytes": run::bytes_json(&p)}),
            );
        }
        return ExitCode::SUCCESS;
    }
    let mut opts = Options::new(profile);
    opts.reply_timeout = Duration::from_secs_f64(args.reply_timeout.max(0.05));
    opts.budget = Duration::from_secs_f64(args.budget.max(0.0));
    opts.pid = args.pid;
    opts.restart_cmd = args.restart_cmd;
    opts.minimize = !args.no_minimize;
    opts.minimize_time = Duration::from_secs_f64(args.minimize_time.max(0.0));
    opts.minimize_tests = args.minimize_tests;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("no runtime: {e}")),
    };
    emit(
        &json!({"event": "start", "seed": args.seed, "address": opts.profile.address.to_string(), "cases": cases.len()}),
    );
    let summary = runtime.block_on(run::run(&opts, &cases, &mut |line| emit(&line)));
    if summary.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn fail(why: &str) -> ExitCode {
    eprintln!("pbfuzz: {why}");
    ExitCode::from(2)
}

/// case name → (outcome, the case's line) from one run's output.
fn outcomes(path: &PathBuf) -> Result<Vec<(String, Json)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .filter(|j| j["event"] == "case" && j["outcome"].is_string())
        .filter_map(|j| Some((j["case"].as_str()?.to_owned(), j)))
        .collect())
}

fn compare(a: &PathBuf, b: &PathBuf) -> ExitCode {
    let (ra, rb) = match (outcomes(a), outcomes(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => return fail(&e),
    };
    let theirs: std::collections::HashMap<_, _> = rb.into_iter().collect();
    let (mut same, mut differ, mut skipped) = (0, 0, 0);
    for (name, x) in &ra {
        let Some(y) = theirs.get(name) else { continue };
        // A seeded case is the same case only with the same bytes (the session's ids
        // and the profile's method go into them); a table case is compared by name.
        if (name.starts_with("random/") || name.starts_with("replay/")) && x["bytes"] != y["bytes"]
        {
            skipped += 1;
            continue;
        }
        if x["outcome"] == y["outcome"] {
            same += 1;
            continue;
        }
        differ += 1;
        emit(&json!({
            "event": "differs", "case": name,
            "a": x["outcome"], "b": y["outcome"],
            "a_reply": x.get("reply"), "b_reply": y.get("reply"),
            "bytes": x["bytes"],
        }));
    }
    emit(&json!({"event": "compared", "same": same, "differ": differ, "not_compared": skipped}));
    ExitCode::SUCCESS
}
