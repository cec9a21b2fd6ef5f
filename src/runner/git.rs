//! The git step: a checkout made of ordinary commands on the worker (stat, rmdir and
//! `git` argv commands), as current buildbot does it, so every worker generation can
//! run it. Sets `got_revision`.
//!
//! The repository URL, branch and revision often come from outside (a change, a forced
//! build), so they are checked before anything runs: a value that starts with `-`
//! (git would read it as an option) or holds a control character is refused. In every
//! git argv a `--` ends the options before them, so git reads them as a repository,
//! a refspec or a revision whatever they say.

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
    let checked = check_value("repo_url", &repo)
        .and_then(|()| check_value("branch", &branch))
        .and_then(|()| {
            revision
                .as_deref()
                .map_or(Ok(()), |r| check_value("property \"revision\"", r))
        });
    if let Err(why) = checked {
        return StepOutcome::exception(why);
    }
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
    let plan = plan(clone_exists, &repo, &branch, revision.as_deref());
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
    let cmd = ShellCommand::argv(&workdir, &["git", "rev-parse", "--verify", "HEAD"], timeout);
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

/// The git commands of a checkout. `--` ends the options before every value that may
/// come from outside: `clone [--branch B] -- REPO .`, `fetch -f -t -- REPO BRANCH`, and
/// after the revision (`reset --hard FETCH_HEAD --`, `checkout -f REV --`) so that git
/// takes it as a revision, never a path.
fn plan<'a>(
    clone_exists: bool,
    repo: &'a str,
    branch: &'a str,
    revision: Option<&'a str>,
) -> Vec<Vec<&'a str>> {
    let mut plan = Vec::new();
    if clone_exists {
        plan.push(vec!["git", "fetch", "-f", "-t", "--", repo, branch]);
        plan.push(vec!["git", "reset", "--hard", "FETCH_HEAD", "--"]);
    } else if branch == "HEAD" {
        plan.push(vec!["git", "clone", "--", repo, "."]);
    } else {
        plan.push(vec!["git", "clone", "--branch", branch, "--", repo, "."]);
    }
    if let Some(rev) = revision {
        plan.push(vec!["git", "checkout", "-f", rev, "--"]);
    }
    plan
}

/// Refuses a repository URL, branch or revision that git could mistake for an option
/// or that holds a control character (a newline, an escape).
fn check_value(what: &str, value: &str) -> Result<(), String> {
    let shown: String = value.chars().take(80).collect();
    if value.is_empty() {
        return Err(format!("git: {what} is empty"));
    }
    if value.starts_with('-') {
        return Err(format!(
            "git: {what} {shown:?} starts with \"-\": git would take it as an option"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("git: {what} {shown:?} holds a control character"));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outside_value_follows_a_double_dash() {
        let fresh = plan(false, "https://e.invalid/r.git", "main", Some("abc123"));
        assert_eq!(
            fresh,
            vec![
                vec![
                    "git",
                    "clone",
                    "--branch",
                    "main",
                    "--",
                    "https://e.invalid/r.git",
                    "."
                ],
                vec!["git", "checkout", "-f", "abc123", "--"],
            ]
        );
        assert_eq!(
            plan(false, "r", "HEAD", None),
            vec![vec!["git", "clone", "--", "r", "."]]
        );
        assert_eq!(
            plan(true, "r", "dev", None),
            vec![
                vec!["git", "fetch", "-f", "-t", "--", "r", "dev"],
                vec!["git", "reset", "--hard", "FETCH_HEAD", "--"],
            ]
        );
    }

    #[test]
    fn rejects_options_control_characters_and_empty_values() {
        assert_eq!(check_value("branch", "release/1.x"), Ok(()));
        assert_eq!(check_value("repo_url", "git@e.invalid:a/b-c.git"), Ok(()));
        let e = check_value("branch", "--upload-pack=touch PWNED").unwrap_err();
        assert_eq!(
            e,
            "git: branch \"--upload-pack=touch PWNED\" starts with \"-\": git would take it as an option"
        );
        assert!(check_value("property \"revision\"", "-b")
            .unwrap_err()
            .contains("property \"revision\""));
        assert!(check_value("branch", "main\n--evil")
            .unwrap_err()
            .contains("control character"));
        assert!(check_value("repo_url", "r\u{1b}[2J").is_err());
        assert!(check_value("branch", "").unwrap_err().contains("empty"));
    }
}
