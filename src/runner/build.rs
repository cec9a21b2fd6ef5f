//! Runs one build on one attached worker: the ping, `startBuild`, then each step in
//! order — skipped when its condition fails or the build halted (unless it always
//! runs), its arguments interpolated from the build's properties.

use super::command::{run_command, CommandEnd};
use super::fs::{fs_command, fs_op};
use super::git::run_git;
use super::properties::{condition_holds, Properties};
use super::shell::ShellCommand;
use crate::config::{
    BuilderConfig, DecodeRc, Limits, PropertySource, SetPropertyStep, ShellStep, Step,
};
use crate::events::Event;
use crate::model::BuildResult;
use crate::secrets::Secrets;
use crate::store::{now, BuildRow, BuildWrite, Store, StoreResult};
use crate::worker::Attached;
use serde_json::Value as Json;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

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
    /// The data folder: master-side transfer paths resolve in its `files` folder,
    /// the transfer root (see `runner/root.rs`).
    pub files_dir: Arc<PathBuf>,
    /// For `%(secret:NAME)s`, and hidden from logs, properties and reasons.
    pub secrets: Arc<Secrets>,
    /// Log bounds.
    pub limits: Limits,
    /// Open pages are told of steps and log bytes once they are recorded.
    pub events: crate::events::Events,
    /// The current step's start, still being committed (see [`Recording`]).
    pub recording: Option<Recording>,
}

/// A step's start being committed on a blocking thread while the step begins: a
/// shell step's command goes to the worker meanwhile (the worker takes milliseconds
/// to start it), and nothing the command sends is read before the commit is done,
/// so its logs always belong to a recorded step.
#[derive(Debug)]
pub struct Recording {
    state: RecordState,
    /// Told to open pages once committed.
    events: Vec<Event>,
}

#[derive(Debug)]
enum RecordState {
    Running(tokio::task::JoinHandle<StoreResult<()>>),
    Done(Result<(), String>),
}

impl Recording {
    /// Waits for the commit, then tells open pages what it recorded (once); whether
    /// it succeeded.
    pub async fn wait(&mut self, pages: &crate::events::Events) -> bool {
        if let RecordState::Running(task) = &mut self.state {
            let result = match task.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if result.is_ok() {
                std::mem::take(&mut self.events)
                    .into_iter()
                    .for_each(|e| pages.send(e));
            }
            self.state = RecordState::Done(result);
        }
        matches!(self.state, RecordState::Done(Ok(())))
    }
}

/// How a build ended.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildOutcome {
    pub result: BuildResult,
    pub reason: Option<String>,
    /// What is left to record (the last step's end, the properties): the coordinator
    /// commits it with the build's end, in one transaction.
    pub writes: Vec<BuildWrite>,
}

impl BuildOutcome {
    fn new(result: BuildResult, reason: Option<String>, writes: Vec<BuildWrite>) -> BuildOutcome {
        BuildOutcome {
            result,
            reason,
            writes,
        }
    }
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
        if let Some(why) = &end.store_failure {
            return Some(StepOutcome::exception(why.clone()));
        }
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
    fn from_rc(end: &CommandEnd, decode_rc: &DecodeRc) -> StepOutcome {
        if let Some(o) = StepOutcome::abnormal(end) {
            return o;
        }
        let Some(code) = end.rc else {
            return StepOutcome::exception("command ended without an exit code");
        };
        let result = decode_rc.result(code);
        let reason = end
            .failure_reason
            .clone()
            .or_else(|| (code != 0).then(|| format!("exit code {code}")))
            .or_else(|| {
                (!end.truncated.is_empty())
                    .then(|| format!("log {} cut at log_max_size", end.truncated.join(", ")))
            });
        StepOutcome {
            result,
            rc: Some(code),
            reason,
        }
    }
}

/// Runs the build and records its steps; the caller finishes it in the store.
///
/// What happens together is recorded together, in one transaction, before the
/// build acts on it: the properties with the first step's start, a step's end with
/// the next one's start (and skipped steps in between), with the properties when
/// a step changed them. The last step's end is left in the outcome, for the
/// build's end.
pub async fn run_build(mut job: BuildJob) -> BuildOutcome {
    let conn = job.worker.conn.clone();
    // Both calls go out at once: one round trip to the worker instead of two (the
    // worker answers in order, and a dead one answers neither).
    let (ping, start) = tokio::join!(
        conn.print(job.worker.mind, "ping", job.rpc_timeout),
        conn.call_timeout(job.rpc_timeout, job.wfb, "startBuild", vec![], vec![]),
    );
    if let Err(e) = ping {
        let why = format!("worker did not answer the ping: {e}");
        return BuildOutcome::new(BuildResult::Retry, Some(why), Vec::new());
    }
    if let Err(e) = start {
        let why = format!("startBuild failed: {e}");
        return BuildOutcome::new(BuildResult::Retry, Some(why), Vec::new());
    }
    let mut props = std::mem::take(&mut job.properties);
    props.use_secrets(job.secrets.clone());
    let mut recorded = props.to_json();
    let mut writes = vec![BuildWrite::Properties(recorded.clone())];
    let mut result = BuildResult::Success;
    let mut reason = None;
    let mut halted = false;
    let builder = job.builder.clone();
    for (i, step) in builder.steps.iter().enumerate() {
        let number = i as i64 + 1;
        let name = &step.name;
        writes.push(BuildWrite::StepStarted {
            number,
            name: name.clone(),
            at: now(),
        });
        if let Some(why) = job.stop.borrow().clone() {
            writes.push(step_finished(
                number,
                &StepOutcome {
                    result: BuildResult::Cancelled,
                    rc: None,
                    reason: Some(why.clone()),
                },
            ));
            return BuildOutcome::new(BuildResult::Cancelled, Some(why), writes);
        }
        let mut outcome = if halted && !step.always_run {
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
                _ => {
                    job.recording = begin_record(&job, &mut writes);
                    // Only a shell step's command may go out before the commit ends.
                    if !matches!(step.action, Step::Shell(_)) {
                        if let Err(failed) = finish_record(&mut job).await {
                            return failed;
                        }
                    }
                    let outcome = run_step(&mut job, &mut props, &step.action, number).await;
                    if let Err(failed) = finish_record(&mut job).await {
                        return failed;
                    }
                    outcome
                }
            }
        };
        // A reason may quote a rendered command or the worker's words.
        if let Some(why) = &outcome.reason {
            outcome.reason = Some(job.secrets.redact_str(why).into_owned());
        }
        writes.push(step_finished(number, &outcome));
        let now_props = props.to_json();
        if now_props != recorded {
            recorded = now_props;
            writes.push(BuildWrite::Properties(recorded.clone()));
        }
        info!(build = job.build.id, step = number, result = %outcome.result, "step finished");
        crate::metrics::metrics().step_finished(&outcome.result.to_string());
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
            BuildResult::Retry | BuildResult::Cancelled => {
                return BuildOutcome::new(result, reason, writes)
            }
            BuildResult::Exception => halted = true,
            BuildResult::Failure if step.halt_on_failure => halted = true,
            _ => {}
        }
    }
    BuildOutcome::new(result, reason, writes)
}

fn step_finished(number: i64, outcome: &StepOutcome) -> BuildWrite {
    BuildWrite::StepFinished {
        number,
        at: now(),
        result: outcome.result,
        rc: outcome.rc,
        reason: outcome.reason.clone(),
    }
}

/// Starts committing the build's pending writes on a blocking thread.
fn begin_record(job: &BuildJob, writes: &mut Vec<BuildWrite>) -> Option<Recording> {
    if writes.is_empty() {
        return None;
    }
    let (build, batch) = (job.build.id, std::mem::take(writes));
    let events: Vec<Event> = batch
        .iter()
        .filter_map(|w| match w {
            BuildWrite::StepStarted { number, name, .. } => Some(Event::StepStarted {
                build,
                step: *number,
                name: name.clone(),
            }),
            BuildWrite::StepFinished { number, result, .. } => Some(Event::StepFinished {
                build,
                step: *number,
                result: result.to_string(),
            }),
            _ => None,
        })
        .collect();
    let store = job.store.clone();
    let task = tokio::task::spawn_blocking(move || store.record_build(build, &batch));
    Some(Recording {
        state: RecordState::Running(task),
        events,
    })
}

/// Waits for the writes [`begin_record`] started, then tells open pages; a build
/// that cannot be recorded goes no further (the log says why).
async fn finish_record(job: &mut BuildJob) -> Result<(), BuildOutcome> {
    let Some(mut recording) = job.recording.take() else {
        return Ok(());
    };
    if recording.wait(&job.events).await {
        return Ok(());
    }
    if let RecordState::Done(Err(e)) = &recording.state {
        warn!(build = job.build.id, "cannot record the build: {e}");
    }
    Err(BuildOutcome::new(
        BuildResult::Exception,
        Some("the master cannot record the build".into()),
        Vec::new(),
    ))
}

/// Runs one step of whatever kind.
async fn run_step(
    job: &mut BuildJob,
    props: &mut Properties,
    step: &Step,
    number: i64,
) -> StepOutcome {
    match step {
        Step::Shell(shell) => run_shell(job, props, shell, number).await,
        Step::Mkdir(_)
        | Step::Rmdir(_)
        | Step::Rm(_)
        | Step::Cpdir(_)
        | Step::Stat(_)
        | Step::Glob(_)
        | Step::Listdir(_) => run_fs(job, props, step, number).await,
        Step::SetProperty(set) => set_property(props, set),
        Step::Git(git) => run_git(job, props, git, number).await,
        Step::Upload(_)
        | Step::Download(_)
        | Step::StringDownload(_)
        | Step::DirectoryUpload(_) => super::transfer::run_transfer(job, props, step, number).await,
    }
}

/// A command; with `property`, its stdout sets the property.
async fn run_shell(
    job: &mut BuildJob,
    props: &mut Properties,
    step: &ShellStep,
    number: i64,
) -> StepOutcome {
    let cmd = match ShellCommand::from_step(step, props) {
        Ok(c) => c,
        Err(e) => return StepOutcome::exception(e.to_string()),
    };
    let args = cmd.args(&job.worker.commands);
    let end = run_command(job, number, "shell", args, step.property.is_some()).await;
    let outcome = StepOutcome::from_rc(&end, &step.decode_rc);
    if let (BuildResult::Success | BuildResult::Warnings, Some(property)) =
        (outcome.result, &step.property)
    {
        let value = property_from_output(&property.from, &end.stdout).map(Json::String);
        match value.and_then(|v| from_worker(&property.name, v)) {
            Ok(value) => props.set(&property.name, value, "step"),
            Err(e) => return StepOutcome::exception(e),
        }
    }
    outcome
}

fn set_property(props: &mut Properties, step: &SetPropertyStep) -> StepOutcome {
    let value = match &step.value {
        Json::String(s) => match props.render(s) {
            Ok(v) => Json::String(v),
            Err(e) => return StepOutcome::exception(e.to_string()),
        },
        other => other.clone(),
    };
    props.set(&step.property, value, "step");
    StepOutcome::success()
}

/// A file-system command; `stat`, `glob` and `listdir` results go to `property`.
async fn run_fs(
    job: &mut BuildJob,
    props: &mut Properties,
    step: &Step,
    number: i64,
) -> StepOutcome {
    let (op, property) = match fs_op(step, props) {
        Ok(found) => found,
        Err(e) => return StepOutcome::exception(e),
    };
    let command = match fs_command(&op, &job.worker.commands) {
        Ok(c) => c,
        Err(e) => return StepOutcome::exception(e),
    };
    let end = run_command(job, number, command.name, command.args, false).await;
    let outcome = StepOutcome::from_rc(&end, &DecodeRc::default());
    if outcome.result == BuildResult::Success {
        if let Some(name) = property {
            let value = match (&end.stat, &end.files) {
                (Some(stat), _) => Json::from(stat.clone()),
                (_, Some(files)) => Json::from(files.clone()),
                _ => Json::Null,
            };
            match from_worker(name, value) {
                Ok(value) => props.set(name, value, "step"),
                Err(e) => return StepOutcome::exception(e),
            }
        }
    }
    outcome
}

/// A property the worker's output sets, if it is within the bounds on values from
/// outside ([`crate::model::property`]).
fn from_worker(name: &str, value: Json) -> Result<Json, String> {
    crate::model::property::check(name, &value)
        .map(|()| value)
        .map_err(|e| format!("the worker's output cannot set it: {e}"))
}

/// The property a shell step sets from its stdout.
fn property_from_output(from: &PropertySource, stdout: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(stdout);
    match from {
        PropertySource::Stdout => Ok(text.into_owned()),
        PropertySource::Stripped => Ok(text.trim().to_owned()),
        PropertySource::Regex(re) => {
            let caps = re
                .captures(&text)
                .ok_or_else(|| format!("output does not match {:?}", re.as_str()))?;
            Ok(caps
                .get(1)
                .or_else(|| caps.get(0))
                .map_or("", |m| m.as_str())
                .to_owned())
        }
    }
}

/// The properties every build starts with: the request's (from changes, hooks,
/// schedulers, forces), then the builder's, which win over a request's of the same name
/// — as in buildbot, what the config sets cannot be replaced from outside.
pub fn initial_properties(
    builder: &BuilderConfig,
    request: &Json,
    number: i64,
    worker: &str,
) -> Properties {
    let mut p = Properties::default();
    if let Json::Object(m) = request {
        for (k, v) in m {
            p.set(k, v.clone(), "request");
        }
    }
    for (k, v) in &builder.properties {
        p.set(k, v.clone(), "builder");
    }
    p.set("buildername", Json::String(builder.name.clone()), "build");
    p.set("buildnumber", Json::from(number), "build");
    p.set("workername", Json::String(worker.to_owned()), "build");
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builder_properties_win_over_the_request_s() {
        let config = crate::config::parse(
            "[master]\ndata_dir = \"d\"\n[[worker]]\nname = \"w\"\npassword = \"p\"\n\
             [[builder]]\nname = \"b\"\nworkers = [\"w\"]\n\
             properties = { repository = \"https://trusted.example/r.git\", flavour = \"release\" }\n\
             [[builder.step]]\ncommand = \"true\"\n",
        )
        .expect("config");
        let request = json!({
            "repository": "https://evil.example/r.git",
            "branch": "dev",
            "buildername": "spoofed",
        });
        let p = initial_properties(&config.builders[0], &request, 7, "w");
        let shown = p.to_json();
        assert_eq!(
            shown["repository"],
            json!(["https://trusted.example/r.git", "builder"])
        );
        assert_eq!(shown["flavour"], json!(["release", "builder"]));
        assert_eq!(shown["branch"], json!(["dev", "request"]));
        assert_eq!(shown["buildername"], json!(["b", "build"]));
    }
}
