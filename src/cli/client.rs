//! CLI commands that talk to a running master's HTTP API.

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct Api {
    /// The master's API (also `PBMASTER_API`).
    #[arg(
        long,
        env = "PBMASTER_API",
        default_value = "http://127.0.0.1:8010",
        global = true
    )]
    api: String,
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
    /// List latent instances with their phase (and, when failed, where and why).
    Instances {
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[command(flatten)]
        api: Api,
    },
}

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

fn get(api: &Api, path: &str) -> Result<Value, Box<dyn std::error::Error>> {
    let mut resp = ureq::get(&format!("{}{path}", api.api))
        .config()
        .http_status_as_error(false)
        .build()
        .call()?;
    let status = resp.status();
    let body: Value = resp.body_mut().read_json()?;
    if !status.is_success() {
        return Err(body["error"].as_str().unwrap_or("request failed").into());
    }
    Ok(body)
}

fn post(api: &Api, path: &str, body: Value) -> Result<Value, Box<dyn std::error::Error>> {
    let mut resp = ureq::post(&format!("{}{path}", api.api))
        .config()
        .http_status_as_error(false)
        .build()
        .send_json(body)?;
    let status = resp.status();
    let body: Value = resp.body_mut().read_json()?;
    if !status.is_success() {
        return Err(body["error"].as_str().unwrap_or("request failed").into());
    }
    Ok(body)
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
                let answer = post(&api, &format!("/api/builders/{builder}/force"), body)?;
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
                    let r = get(&api, &format!("/api/buildrequests/{id}"))?;
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
                let builds = get(&api, &format!("/api/builds?limit={limit}{q}"))?;
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
                let url = format!(
                    "{}/api/builds/{build}/steps/{step}/logs/{log}?follow={follow}",
                    api.api
                );
                let mut resp = ureq::get(&url)
                    .config()
                    .http_status_as_error(false)
                    .build()
                    .call()?;
                if !resp.status().is_success() {
                    let body: Value = resp.body_mut().read_json().unwrap_or_default();
                    return Err(body["error"].as_str().unwrap_or("request failed").into());
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
            ClientCommand::Stop { build, api } => {
                post(&api, &format!("/api/builds/{build}/stop"), json!({}))?;
                println!("stopping build {build}");
                Ok(ExitCode::SUCCESS)
            }
            ClientCommand::Instances { limit, api } => {
                let pools = get(&api, "/api/latent/pools")?;
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
                let list = get(&api, &format!("/api/latent?limit={limit}"))?;
                println!("{:<20} {:<16} {:<11} failure", "instance", "pool", "phase");
                for i in list.as_array().into_iter().flatten() {
                    let failure = match (i["failure_phase"].as_str(), i["failure_reason"].as_str())
                    {
                        (Some(p), Some(r)) => format!("in {p}: {r}"),
                        _ => String::new(),
                    };
                    println!(
                        "{:<20} {:<16} {:<11} {failure}",
                        s(&i["name"]),
                        s(&i["pool"]),
                        s(&i["phase"])
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            ClientCommand::Workers { api } => {
                let workers = get(&api, "/api/workers")?;
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
