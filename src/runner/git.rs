//! The git step: a checkout made of ordinary commands on the worker (stat, rmdir and
//! `git` argv commands), as current buildbot does it, so every worker generation can
//! run it. Sets `got_revision`.

use super::build::{BuildJob, StepOutcome};
use super::command::run_command;
use super::fs::{fs_command, FsOp};
use super::properties::Properties;
use super::shell::ShellCommand;
use crate::config::{GitMode, GitStep};
use crate::model::BuildResult;
use serde_json::Value as Json;

/// Runs the checkout for step `number`.
pub async fn run_git(
    job: &mut BuildJob,
    props: &mut Properties,
    step: &GitStep,
    number: i64,
) -> StepOutcome {
    let render = |s: &str| props.render(s);
    let (repo, branch, workdir) = match (
        render(&step.repo_url),
        render(step.branch.as_deref().unwrap_or("HEAD")),
        render(&step.workdir),
    ) {
        (Ok(r), Ok(b), Ok(w)) => (r, b, w),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return StepOutcome::exception(e.to_string())
        }
    };
    let revision = props
        .get("revision")
        .map(super::properties::display)
        .filter(|r| !r.is_empty());
    let full = step.mode == GitMode::Full;
    let timeout = step.timeout;
    let commands = job.worker.commands.clone();

    if full {
        let p = FsOp::Rmdir {
            dir: workdir.clone(),
        };
        if let Err(outcome) = fs(job, number, &p, &commands).await {
            return outcome;
        }
    }
    let clone_exists = !full && {
        let p = FsOp::Stat {
            file: format!("{workdir}/.git"),
        };
        match fs_command(&p, &commands) {
            Ok(c) => {
                let end = run_command(job, number, c.name, c.args, false).await;
                if let Some(o) = StepOutcome::abnormal(&end) {
                    return o;
                }
                end.rc == Some(0)
            }
            Err(e) => return StepOutcome::exception(e),
        }
    };
    let mut plan: Vec<Vec<&str>> = Vec::new();
    if clone_exists {
        plan.push(vec!["git", "fetch", "-f", "-t", &repo, &branch]);
        plan.push(vec!["git", "reset", "--hard", "FETCH_HEAD"]);
    } else if branch == "HEAD" {
        plan.push(vec!["git", "clone", &repo, "."]);
    } else {
        plan.push(vec!["git", "clone", "--branch", &branch, &repo, "."]);
    }
    if let Some(rev) = &revision {
        plan.push(vec!["git", "checkout", "-f", rev]);
    }
    for argv in plan {
        let cmd = ShellCommand::argv(&workdir, &argv, timeout);
        let end = run_command(job, number, "shell", cmd.args(&commands), false).await;
        if let Some(o) = StepOutcome::abnormal(&end) {
            return o;
        }
        if end.rc != Some(0) {
            return StepOutcome {
                result: BuildResult::Failure,
                rc: end.rc,
                reason: Some(format!("{} failed", argv[..2].join(" "))),
            };
        }
    }
    let cmd = ShellCommand::argv(&workdir, &["git", "rev-parse", "HEAD"], timeout);
    let end = run_command(job, number, "shell", cmd.args(&commands), true).await;
    if let Some(o) = StepOutcome::abnormal(&end) {
        return o;
    }
    let got = String::from_utf8_lossy(&end.stdout).trim().to_owned();
    if end.rc != Some(0) || got.is_empty() {
        return StepOutcome {
            result: BuildResult::Failure,
            rc: end.rc,
            reason: Some("git rev-parse failed".into()),
        };
    }
    props.set("got_revision", Json::String(got), "git");
    StepOutcome {
        result: BuildResult::Success,
        rc: Some(0),
        reason: None,
    }
}

async fn fs(
    job: &mut BuildJob,
    number: i64,
    op: &FsOp,
    commands: &std::collections::BTreeMap<String, String>,
) -> Result<(), StepOutcome> {
    let c = fs_command(op, commands).map_err(StepOutcome::exception)?;
    let end = run_command(job, number, c.name, c.args, false).await;
    if let Some(o) = StepOutcome::abnormal(&end) {
        return Err(o);
    }
    match end.rc {
        Some(0) => Ok(()),
        rc => Err(StepOutcome {
            result: BuildResult::Failure,
            rc,
            reason: Some(format!("{} failed", c.name)),
        }),
    }
}
