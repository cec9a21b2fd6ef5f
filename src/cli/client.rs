//! CLI commands that talk to a running master's HTTP API.

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub struct Api {
    /// The master's API (also `PBMASTER_API`).
    #[arg(
        long,
        env = "PBMASTER_API",
        default_value = "http://127.0.0.1:8010",
        global = true
    )]
    api: String,
    /// An API token. Others on this machine can see a command line: prefer
    /// --token-file, or `PBMASTER_TOKEN` (used when neither option is given).
    #[arg(long, global = true)]
    token: Option<String>,
    /// A file holding the API token (without either option: `PBMASTER_TOKEN`, then
    /// the file `PBMASTER_TOKEN_FILE` names).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A token must not reach a log.
        f.debug_struct("Api")
            .field("api", &self.api)
            .field("token", &self.token.as_ref().map(|_| ".."))
            .field("token_file", &self.token_file)
            .finish()
    }
}

/// The API with the token to present, if any.
struct Client {
    base: String,
    token: Option<String>,
}

fn read_token(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))
}

impl Api {
    /// The token: --token, else --token-file, else `PBMASTER_TOKEN`, else the file
    /// `PBMASTER_TOKEN_FILE` names; an unreadable file is an error. The command line
    /// comes first, so one call can use another token than the environment's.
    fn client(&self) -> Result<Client, Box<dyn std::error::Error>> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(path)) => Some(read_token(path)?),
            (None, None) => match (var("PBMASTER_TOKEN"), var("PBMASTER_TOKEN_FILE")) {
                (Some(t), _) => Some(t.into_string().map_err(|_| "PBMASTER_TOKEN is not UTF-8")?),
                (None, Some(path)) => Some(read_token(Path::new(&path))?),
                (None, None) => None,
            },
        };
        let token = token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        Ok(Client {
            base: self.api.trim_end_matches('/').to_owned(),
            token,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Queue a build; with --wait, wait for its result (exit 0 for success or
    /// warnings, 1 otherwise).
    Force {
        builder: String,
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        reason: Option<String>,
        /// A property, NAME=VALUE (repeatable).
        #[arg(short = 'p', long = "property")]
        properties: Vec<String>,
        #[command(flatten)]
        api: Api,
    },
    /// List recent builds.
    Builds {
        #[arg(long)]
        builder: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[command(flatten)]
        api: Api,
    },
    /// Print a step's log (invalid UTF-8 shown with replacement characters).
    Log {
        build: i64,
        step: i64,
        #[arg(long, default_value = "stdio")]
        log: String,
        /// Keep printing until the step ends.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        api: Api,
    },
    /// Stop a running build.
    Stop {
        build: i64,
        #[command(flatten)]
        api: Api,
    },
    /// List workers with their state and version.
    Workers {
        #[command(flatten)]
        api: Api,
    },
    /// Make the master read its config file again and apply it without a restart
    /// (exit 1, with every error, if it refused it).
    Reconfig {
        #[command(flatten)]
        api: Api,
    },
    /// List latent instances: pool, phase, type, market, uptime, builds run, cost,
    /// and why one failed or was stopped.
    Instances {
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[command(flatten)]
        api: Api,
    },
}

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

impl Client {
    /// Answers of any status are returned; the token goes in a bearer header.
    fn request<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        let req = req.config().http_status_as_error(false).build();
        match &self.token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    /// A GET whose answer is returned whatever its status.
    fn get_raw(&self, path: &str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        self.request(ureq::get(&format!("{}{path}", self.base)))
            .call()
    }

    fn get(&self, path: &str) -> Result<Value, Box<dyn std::error::Error>> {
        self.answer(self.get_raw(path)?)
    }

    fn post(&self, path: &str, body: Value) -> Result<Value, Box<dyn std::error::Error>> {
        let req = self.request(ureq::post(&format!("{}{path}", self.base)));
        self.answer(req.send_json(body)?)
    }

    /// The JSON of a successful answer, or an error saying why the request failed.
    fn answer(
        &self,
        mut resp: ureq::http::Response<ureq::Body>,
    ) -> Result<Value, Box<dyn std::error::Error>> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.body_mut().read_json()?);
        }
        let body: Value = resp.body_mut().read_json().unwrap_or_default();
        Err(self
            .refusal(
                status.as_u16(),
                body["error"].as_str().unwrap_or("request failed"),
            )
            .into())
    }

    /// What to tell the user about an error answer: for a missing or refused
    /// credential, how to give one.
    fn refusal(&self, status: u16, error: &str) -> String {
        match (status, &self.token) {
            (401, None) => format!(
                "the API needs a token ({error}): give --token-file FILE, or set \
                 PBMASTER_TOKEN or PBMASTER_TOKEN_FILE"
            ),
            (401, Some(_)) => format!("the API refused the token: {error}"),
            (403, _) | (429, _) | (415, _) => format!("refused ({status}): {error}"),
            _ => error.to_owned(),
        }
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

impl ClientCommand {
    pub fn run(self) -> CliResult {
        match self {
            ClientCommand::Force {
                builder,
                wait,
                reason,
                properties,
                api,
            } => {
                let mut props = serde_json::Map::new();
                for p in properties {
                    let (k, v) = p
                        .split_once('=')
                        .ok_or_else(|| format!("property {p:?} is not NAME=VALUE"))?;
                    props.insert(k.to_owned(), Value::String(v.to_owned()));
                }
                let body = json!({ "reason": reason, "properties": props });
                let api = api.client()?;
                let answer = api.post(&format!("/api/builders/{builder}/force"), body)?;
                let id = answer["request_id"]
                    .as_i64()
                    .ok_or("no request id in the answer")?;
                println!("request {id} queued for {builder}");
                if !wait {
                    return Ok(ExitCode::SUCCESS);
                }
                // Short builds are answered quickly; long ones are not polled hard.
                let mut pause = Duration::from_millis(10);
                loop {
                    let r = api.get(&format!("/api/buildrequests/{id}"))?;
                    if r["complete"].as_bool() == Some(true) {
                        let result = s(&r["result"]);
                        let build = r["builds"]
                            .as_array()
                            .and_then(|b| b.last())
                            .map(|b| s(&b["id"]))
                            .unwrap_or_default();
                        println!("request {id}: build {build}: {result}");
                        let ok = matches!(result.as_str(), "success" | "warnings");
                        return Ok(if ok {
                            ExitCode::SUCCESS
                        } else {
                            ExitCode::FAILURE
                        });
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
            }
            ClientCommand::Builds {
                builder,
                limit,
                api,
            } => {
                let q = builder.map(|b| format!("&builder={b}")).unwrap_or_default();
                let builds = api
                    .client()?
                    .get(&format!("/api/builds?limit={limit}{q}"))?;
                println!(
                    "{:>6}  {:<20} {:>5}  {:<16} {:<10} reason",
                    "build", "builder", "num", "worker", "result"
                );
                for b in builds.as_array().into_iter().flatten() {
                    let result = if b["finished_at"].is_null() {
                        "running".to_owned()
                    } else {
                        s(&b["result"])
                    };
                    println!(
                        "{:>6}  {:<20} {:>5}  {:<16} {:<10} {}",
                        s(&b["id"]),
                        s(&b["builder"]),
                        s(&b["number"]),
                        s(&b["worker"]),
                        result,
                        b["reason"].as_str().unwrap_or("")
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            ClientCommand::Log {
                build,
                step,
                log,
                follow,
                api,
            } => {
                let api = api.client()?;
                let resp = api.get_raw(&format!(
                    "/api/builds/{build}/steps/{step}/logs/{log}?follow={follow}"
                ))?;
                if !resp.status().is_success() {
                    return api.answer(resp).map(|_| ExitCode::FAILURE);
                }
                let mut reader = resp.into_body().into_reader();
                let mut out = std::io::stdout().lock();
                let mut buf = vec![0u8; 64 * 1024];
                let mut pending = Vec::new();
                loop {
                    let n = reader.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    // Print up to the last complete UTF-8 sequence; the rest waits.
                    let cut = utf8_boundary(&pending);
                    out.write_all(String::from_utf8_lossy(&pending[..cut]).as_bytes())?;
                    out.flush()?;
                    pending.drain(..cut);
                }
                out.write_all(String::from_utf8_lossy(&pending).as_bytes())?;
                Ok(ExitCode::SUCCESS)
            }
            ClientCommand::Reconfig { api } => reconfig(&api.client()?),
            ClientCommand::Stop { build, api } => {
                api.client()?
                    .post(&format!("/api/builds/{build}/stop"), json!({}))?;
                println!("stopping build {build}");
                Ok(ExitCode::SUCCESS)
            }
            ClientCommand::Instances { limit, api } => {
                let api = api.client()?;
                let pools = api.get("/api/latent/pools")?;
                for p in pools.as_array().into_iter().flatten() {
                    let waiting = p["waiting"]
                        .as_str()
                        .map(|w| format!("; requests wait: {w}"))
                        .unwrap_or_default();
                    println!(
                        "pool {} ({}): {}/{} live{waiting}",
                        s(&p["name"]),
                        s(&p["driver"]),
                        p["live"],
                        p["max_instances"]
                    );
                    if let Some(f) = p["last_failure"].as_str() {
                        println!("  last failure: {f}");
                    }
                }
                let list = api.get(&format!("/api/latent?limit={limit}"))?;
                println!(
                    "{:<20} {:<16} {:<10} {:<12} {:<9} {:>8} {:>6} {:>10}  why",
                    "instance", "pool", "phase", "type", "market", "uptime", "builds", "cost"
                );
                for i in list.as_array().into_iter().flatten() {
                    print_instance(i);
                }
                Ok(ExitCode::SUCCESS)
            }
            ClientCommand::Workers { api } => {
                let workers = api.client()?.get("/api/workers")?;
                println!("{:<20} {:<16} {:<20} peer", "worker", "state", "version");
                for w in workers.as_array().into_iter().flatten() {
                    println!(
                        "{:<20} {:<16} {:<20} {}",
                        s(&w["name"]),
                        s(&w["state"]),
                        s(&w["version"]),
                        s(&w["peer"])
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// One line of `pbmaster instances`: what it is, how long it ran, what it did and
/// cost, and why it failed or was stopped.
fn print_instance(i: &Value) {
    let acc = &i["accounting"];
    // The type is the end of the placement (`subnet/type`).
    let kind = i["placement"]
        .as_str()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_owned())
        .unwrap_or_else(|| "-".into());
    let cost = acc["cost"]
        .as_f64()
        .map_or_else(|| "-".into(), |c| format!("{c:.6}"));
    let why = match (i["failure_phase"].as_str(), i["failure_reason"].as_str()) {
        (Some(p), Some(r)) => format!("failed in {p}: {r}"),
        _ => i["stop_reason"].as_str().unwrap_or("").to_owned(),
    };
    println!(
        "{:<20} {:<16} {:<10} {:<12} {:<9} {:>8} {:>6} {:>10}  {why}",
        s(&i["name"]),
        s(&i["pool"]),
        s(&i["phase"]),
        kind,
        s(&i["market"]),
        duration(acc["instance_seconds"].as_f64().unwrap_or(0.0)),
        s(&acc["builds_run"]),
        cost,
    );
}

/// `42s`, `3m05s`, `2h07m`.
fn duration(seconds: f64) -> String {
    let t = seconds.max(0.0).round() as u64;
    match t {
        0..60 => format!("{t}s"),
        60..3600 => format!("{}m{:02}s", t / 60, t % 60),
        _ => format!("{}h{:02}m", t / 3600, t % 3600 / 60),
    }
}

/// `POST /api/reconfig`: prints what changed, or why the config was refused.
fn reconfig(api: &Client) -> CliResult {
    let req = api.request(ureq::post(&format!("{}/api/reconfig", api.base)));
    let mut resp = req.send_json(json!({}))?;
    let status = resp.status().as_u16();
    let body: Value = resp.body_mut().read_json().unwrap_or_default();
    let lines = |key: &str| -> Vec<String> {
        body[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    match status {
        200 => {
            for w in lines("warnings") {
                eprintln!("warning: {w}");
            }
            println!("reconfigured:");
            for line in lines("changes") {
                println!("  {line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        422 => {
            eprintln!("{}", s(&body["error"]));
            for e in lines("errors") {
                eprintln!("  {e}");
            }
            Ok(ExitCode::FAILURE)
        }
        _ => {
            let error = body["error"].as_str().unwrap_or("request failed");
            eprintln!("{}", api.refusal(status, error));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The length of the longest prefix that does not end inside a UTF-8 sequence.
fn utf8_boundary(b: &[u8]) -> usize {
    let start = b.len().saturating_sub(3);
    for i in (start..b.len()).rev() {
        let c = b[i];
        if c & 0xc0 != 0x80 {
            let need = if c >= 0xf0 {
                4
            } else if c >= 0xe0 {
                3
            } else if c >= 0xc0 {
                2
            } else {
                1
            };
            return if b.len() - i >= need { b.len() } else { i };
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_are_short_and_readable() {
        assert_eq!(duration(0.4), "0s");
        assert_eq!(duration(59.0), "59s");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(7620.0), "2h07m");
        assert_eq!(duration(-1.0), "0s");
    }
}
