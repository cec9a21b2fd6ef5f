//! Command-line interface: the master itself, a client of its HTTP API, and the wire
//! inspector.

mod client;
mod wire;

use crate::config::LogFormat;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Run the master.
    Start {
        #[arg(long)]
        config: PathBuf,
        /// `text` for people, `json` (one object a line) for log shippers; wins over
        /// `[master] log_format` (default: text).
        #[arg(long, value_enum, env = "PBMASTER_LOG_FORMAT")]
        log_format: Option<LogFormat>,
    },
    /// Check a config file and report every error with its location.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Translate a buildbot master.cfg (a master directory or the file) into pbmaster
    /// TOML, running the config with the real buildbot package from a venv.
    ImportBuildbot {
        /// The buildbot master directory, or its config file.
        #[arg(required_unless_present = "setup")]
        path: Option<PathBuf>,
        /// Write the TOML here (and the passwords it refers to under secrets/ next to
        /// it) instead of to stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The venv with buildbot (default: pbmaster/buildbot-venv in the user's data
        /// folder, created on first use).
        #[arg(long)]
        venv: Option<PathBuf>,
        /// Only create the venv.
        #[arg(long)]
        setup: bool,
        /// The Python that creates the venv.
        #[arg(long, default_value = "python3")]
        python: String,
    },
    /// Read a password (one line) from standard input and print its Argon2id hash,
    /// for an `[[api_user]]`'s `password_hash`.
    HashPassword,
    #[command(flatten)]
    Client(client::ClientCommand),
    /// Inspect and produce raw PB byte streams.
    #[command(subcommand)]
    Wire(wire::WireCommand),
}

impl Cli {
    pub fn run(self) -> Result<ExitCode, Box<dyn std::error::Error>> {
        match self.command {
            Command::Start { config, log_format } => {
                // The file's choice when none is given here (a file that does not
                // load is reported once logging is set up).
                let format = log_format
                    .or_else(|| {
                        crate::config::load(&config)
                            .ok()
                            .map(|c| c.master.log_format)
                    })
                    .unwrap_or_default();
                init_logging(format);
                let runtime = tokio::runtime::Runtime::new()?;
                runtime.block_on(crate::run::start(&config))?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Check { config } => match crate::config::load(&config) {
                Ok(c) => {
                    for w in c.warnings() {
                        eprintln!("{}: warning: {w}", config.display());
                    }
                    // Variables and files may differ where the master runs: a warning.
                    for t in &c.api.tokens {
                        if let Err(e) = t.secret.digest() {
                            eprintln!(
                                "{}: warning: api token {:?}: {e} (the master does not start without it)",
                                config.display(),
                                t.name
                            );
                        }
                    }
                    if let Some(tls) = &c.master.pb_tls {
                        if let Err(e) = crate::tls::acceptor(tls) {
                            eprintln!(
                                "{}: warning: {e} (the master does not start without it)",
                                config.display()
                            );
                        }
                    }
                    println!(
                        "{}: ok ({} workers, {} builders)",
                        config.display(),
                        c.workers.len(),
                        c.builders.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{}: {e}", config.display());
                    }
                    Ok(ExitCode::FAILURE)
                }
            },
            Command::HashPassword => {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                let password = line.trim_end_matches(['\n', '\r']);
                if password.len() < 12 {
                    eprintln!("a password of at least 12 characters, please");
                    return Ok(ExitCode::FAILURE);
                }
                println!("{}", crate::config::hash_password(password)?);
                Ok(ExitCode::SUCCESS)
            }
            Command::ImportBuildbot {
                path,
                output,
                venv,
                setup,
                python,
            } => {
                let venv = venv
                    .or_else(crate::importer::default_venv)
                    .ok_or("no venv: pass --venv DIR (no HOME to put one under)")?;
                if setup || !crate::importer::venv_ready(&venv) {
                    crate::importer::setup_venv(&venv, &python)?;
                }
                let Some(path) = path else {
                    return Ok(ExitCode::SUCCESS);
                };
                crate::importer::run(&path, output.as_deref(), &venv)?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Client(c) => c.run(),
            Command::Wire(w) => w.run().map(|()| ExitCode::SUCCESS),
        }
    }
}

/// `RUST_LOG` picks levels (default: info).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}
