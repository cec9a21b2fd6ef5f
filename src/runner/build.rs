//! Runs one build on one attached worker: the ping, `startBuild`, then each step in
//! order — skipped when its condition fails or the build halted (unless it always
//! runs), its arguments interpolated from the build's properties.

use super::command::{run_command, CommandEnd};
use super::fs::{fs_command, FsPaths};
use super::git::run_git;
use super::properties::{condition_holds, Properties};
use super::shell::ShellCommand;
use crate::config::{BuilderConfig, StepConfig, StepKind};
use crate::model::BuildResult;
use crate::store::{BuildRow, Store};
use crate::worker::Attached;
use serde_json::Value as Json;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::info;

/// Everything a build needs.
#[derive(Debug)]
pub struct BuildJob {
    pub store: Store,
    pub build: BuildRow,
    pub builder: Arc<BuilderConfig>,
    pub worker: Attached,
    /// The worker's object for this builder.
    pub wfb: i64,
    /// The build's starting properties (builder, request, build number, worker...).
    pub properties: Properties,
    /// `Some(reason)` once someone asked to stop the build.
    pub stop: watch::Receiver<Option<String>>,
    /// Command ids are unique across the master, as buildbot's are.
    pub command_ids: Arc<AtomicU64>,
    /// Deadline of the short calls (ping, startBuild).
    pub rpc_timeout: Duration,
    /// Where relative master-side paths of transfers point (the data folder).
    pub files_dir: Arc<PathBuf>,
}

/// How a build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutcome {
    pub result: BuildResult,
    pub reason: Option<String>,
}

/// How one step ended.
#[derive(Debug)]
pub struct StepOutcome {
    pub result: BuildResult,
    pub rc: Option<i64>,
    pub reason: Option<String>,
}

impl StepOutcome {
    pub fn exception(reason: impl Into<String>) -> StepOutcome {
        StepOutcome {
            result: BuildResult::Exception,
            rc: None,
            reason: Some(reason.into()),
        }
    }

    fn success() -> StepOutcome {
        StepOutcome {
            result: BuildResult::Success,
            rc: Some(0),
            reason: None,
        }
    }

    /// For a command that did not end by itself: the worker was lost (retry), the build
    /// was stopped (cancelled), or the worker raised (exception).
    pub fn abnormal(end: &CommandEnd) -> Option<StepOutcome> {
        if let Some(why) = &end.lost {
            return Some(StepOutcome {
                result: BuildResult::Retry,
                rc: None,
                reason: Some(why.clone()),
            });
        }
        if end.interrupted {
            return Some(StepOutcome {
                result: BuildResult::Cancelled,
                rc: end.rc,
                reason: end.failure_reason.clone(),
            });
        }
        end.failure
            .as_ref()
            .map(|f| StepOutcome::exception(format!("{}: {}", f.type_name, f.value)))
    }

    /// A finished command's result from its exit code: `decode_rc` first, then 0 is
    /// success and anything else failure.
    fn from_rc(end: &CommandEnd, step: &StepConfig) -> StepOutcome {
        if let Some(o) = StepOutcome::abnormal(end) {
            return o;
        }
        let Some(code) = end.rc else {
            return StepOutcome::exception("command ended without an exit code");
        };
        let decoded = step
            .decode_rc
            .as_ref()
            .and_then(|m| m.get(&code.to_string()))
            .and_then(|r| r.get_ref().parse().ok());
        let result = decoded.unwrap_or(if code == 0 {
            BuildResult::Success
        } else {
            BuildResult::Failure
        });
        let reason = end
            .failure_reason
            .clone()
            .or_else(|| (code != 0).then(|| format!("exit code {code}")));
        StepOutcome {
            result,
            rc: Some(code),
            reason,
        }
    }
}

/// Runs the build and records its steps; the caller finishes it in the store.
pub async fn run_build(mut job: BuildJob) -> BuildOutcome {
    let conn = job.worker.conn.clone();
    if let Err(e) = conn.print(job.worker.mind, "ping", job.rpc_timeout).await {
        return BuildOutcome {
            result: BuildResult::Retry,
            reason: Some(format!("worker did not answer the ping: {e}")),
        };
    }
    if let Err(e) = conn
        .call_timeout(job.rpc_timeout, job.wfb, "startBuild", vec![], vec![])
        .await
    {
        return BuildOutcome {
            result: BuildResult::Retry,
            reason: Some(format!("startBuild failed: {e}")),
        };
    }
    let mut props = std::mem::take(&mut job.properties);
    let _ = job
        .store
        .set_build_properties(job.build.id, &props.to_json());
    let mut result = BuildResult::Success;
    let mut reason = None;
    let mut halted = false;
    let builder = job.builder.clone();
    for (i, step) in builder.steps.iter().map(|s| s.get_ref()).enumerate() {
        let number = i as i64 + 1;
        let name = step.display_name(i + 1);
        let _ = job.store.start_step(job.build.id, number, &name);
        if let Some(why) = job.stop.borrow().clone() {
            let _ = job.store.finish_step(
                job.build.id,
                number,
                BuildResult::Cancelled,
                None,
                Some(&why),
            );
            return BuildOutcome {
                result: BuildResult::Cancelled,
                reason: Some(why),
            };
        }
        let outcome = if halted && !step.always_run {
            StepOutcome {
                result: BuildResult::Skipped,
                rc: None,
                reason: Some("an earlier step halted the build".into()),
            }
        } else {
            match step.do_step_if.as_deref().map(|c| props.render(c)) {
                Some(Err(e)) => StepOutcome::exception(format!("do_step_if: {e}")),
                Some(Ok(c)) if !condition_holds(&c) => StepOutcome {
                    result: BuildResult::Skipped,
                    rc: None,
                    reason: Some(format!("condition {c:?} is false")),
                },
                _ => run_step(&mut job, &mut props, step, number).await,
            }
        };
        let _ = job.store.finish_step(
            job.build.id,
            number,
            outcome.result,
            outcome.rc,
            outcome.reason.as_deref(),
        );
        let _ = job
            .store
            .set_build_properties(job.build.id, &props.to_json());
        info!(build = job.build.id, step = number, result = %outcome.result, "step finished");
        let contribution = match outcome.result {
            BuildResult::Failure if step.flunk_on_failure => BuildResult::Failure,
            BuildResult::Failure if step.warn_on_failure => BuildResult::Warnings,
            BuildResult::Failure => BuildResult::Success,
            other => other,
        };
        if !matches!(contribution, BuildResult::Success | BuildResult::Skipped) && reason.is_none()
        {
            reason = Some(format!(
                "step {name:?}: {}",
                outcome.reason.as_deref().unwrap_or(outcome.result.name())
            ));
        }
        result = result.worst(contribution);
        match outcome.result {
            // Nothing more can run on a lost worker or a stopped build.
            BuildResult::Retry | BuildResult::Cancelled => return BuildOutcome { result, reason },
            BuildResult::Exception => halted = true,
            BuildResult::Failure if step.halt_on_failure => halted = true,
            _ => {}
        }
    }
    BuildOutcome { result, reason }
}

/// Runs one step of whatever kind.
async fn run_step(
    job: &mut BuildJob,
    props: &mut Properties,
    step: &StepConfig,
    number: i64,
) -> StepOutcome {
    match step.kind {
        StepKind::Shell => {
            let cmd = match ShellCommand::from_step(step, props) {
                Ok(c) => c,
                Err(e) => return StepOutcome::exception(e.to_string()),
            };
            let args = cmd.args(&job.worker.commands);
            let end = run_command(job, number, "shell", args, step.property.is_some()).await;
            let outcome = StepOutcome::from_rc(&end, step);
            if let (BuildResult::Success | BuildResult::Warnings, Some(name)) =
                (outcome.result, &step.property)
            {
                match property_from_output(step, &end.stdout) {
                    Ok(value) => props.set(name, Json::String(value), "step"),
                    Err(e) => return StepOutcome::exception(e),
                }
            }
            outcome
        }
        StepKind::Mkdir
        | StepKind::Rmdir
        | StepKind::Rm
        | StepKind::Cpdir
        | StepKind::Stat
        | StepKind::Glob
        | StepKind::Listdir => run_fs(job, props, step, number).await,
        StepKind::SetProperty => {
            let value = match &step.value {
                Some(toml::Value::String(s)) => match props.render(s) {
                    Ok(v) => Json::String(v),
                    Err(e) => return StepOutcome::exception(e.to_string()),
                },
                Some(other) => serde_json::to_value(other).unwrap_or(Json::Null),
                None => Json::Null,
            };
            if let Some(name) = &step.property {
                props.set(name, value, "step");
            }
            StepOutcome::success()
        }
        StepKind::Git => run_git(job, props, step, number).await,
        StepKind::Upload
        | StepKind::Download
        | StepKind::StringDownload
        | StepKind::DirectoryUpload => {
            super::transfer::run_transfer(job, props, step, number).await
        }
    }
}

/// A file-system command; `stat`, `glob` and `listdir` results go to `property`.
async fn run_fs(
    job: &mut BuildJob,
    props: &mut Properties,
    step: &StepConfig,
    number: i64,
) -> StepOutcome {
    let render = |o: &Option<String>| o.as_deref().map(|s| props.render(s)).transpose();
    let paths = match (
        render(&step.dir),
        render(&step.path),
        render(&step.from_dir),
        render(&step.to_dir),
        render(&step.file),
    ) {
        (Ok(dir), Ok(path), Ok(from_dir), Ok(to_dir), Ok(file)) => FsPaths {
            dir,
            path,
            from_dir,
            to_dir,
            file,
        },
        (Err(e), ..)
        | (_, Err(e), ..)
        | (_, _, Err(e), ..)
        | (_, _, _, Err(e), _)
        | (.., Err(e)) => return StepOutcome::exception(e.to_string()),
    };
    let command = match fs_command(step.kind, &paths, &job.worker.commands) {
        Ok(c) => c,
        Err(e) => return StepOutcome::exception(e),
    };
    let end = run_command(job, number, command.name, command.args, false).await;
    let outcome = StepOutcome::from_rc(&end, step);
    if outcome.result == BuildResult::Success {
        if let Some(name) = &step.property {
            let value = match (&end.stat, &end.files) {
                (Some(stat), _) => Json::from(stat.clone()),
                (_, Some(files)) => Json::from(files.clone()),
                _ => Json::Null,
            };
            props.set(name, value, "step");
        }
    }
    outcome
}

/// The property a shell step sets from its stdout (`property_from`).
fn property_from_output(step: &StepConfig, stdout: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(stdout);
    let how = step
        .property_from
        .as_ref()
        .map_or("stripped", |s| s.get_ref().as_str());
    match how {
        "stdout" => Ok(text.into_owned()),
        "stripped" => Ok(text.trim().to_owned()),
        other => {
            let pattern = other
                .strip_prefix("regex:")
                .ok_or_else(|| format!("unknown property_from {other:?}"))?;
            let re = regex::Regex::new(pattern).map_err(|e| format!("property_from: {e}"))?;
            let caps = re
                .captures(&text)
                .ok_or_else(|| format!("output does not match {pattern:?}"))?;
            Ok(caps
                .get(1)
                .or_else(|| caps.get(0))
                .map_or("", |m| m.as_str())
                .to_owned())
        }
    }
}

/// The properties every build starts with.
pub fn initial_properties(
    builder: &BuilderConfig,
    request: &Json,
    number: i64,
    worker: &str,
) -> Properties {
    let mut p = Properties::default();
    for (k, v) in &builder.properties {
        p.set(k, serde_json::to_value(v).unwrap_or(Json::Null), "builder");
    }
    if let Json::Object(m) = request {
        for (k, v) in m {
            p.set(k, v.clone(), "request");
        }
    }
    p.set(
        "buildername",
        Json::String(builder.name.get_ref().clone()),
        "build",
    );
    p.set("buildnumber", Json::from(number), "build");
    p.set("workername", Json::String(worker.to_owned()), "build");
    p
}
