//! The git poller: follows branches of a repository by running `git` every interval
//! and hands the coordinator a change per new commit, as the webhooks do.
//!
//! Each poll lists the remote heads (`git ls-remote`), fetches the branches that
//! moved into a bare mirror under the data folder, and describes the commits that
//! are new (`git rev-list NEW --not OLD`). The changes and the heads the poll saw are
//! stored in one transaction, so a restart neither replays nor skips commits. The
//! first poll of a repository only records its heads. A force-push whose new head
//! brings no commit that was not already seen gives one change for the new head.
//! Every failure is logged and the next interval tries again.
//!
//! # Layout
//! - [`parse`]: ref names, git output and the plan of a poll, without running git.
//! - [`git`]: running git with a time limit and bounded output.

pub mod git;
pub mod parse;

use super::{truncate, NewChange, MAX_COMMENTS, MAX_FILES, MAX_PATH, MAX_SHORT};
use crate::config::GitPollerConfig;
use crate::master::{Msg, Refusal};
use crate::store::Store;
use parse::Step;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Most commits one branch contributes to one poll: a push of a long history gives
/// changes for its newest commits only.
pub const MAX_COMMITS: usize = 200;

/// The heads and changes of one poll.
type Polled = (BTreeMap<String, String>, Vec<NewChange>);

/// One repository followed.
#[derive(Debug)]
pub struct GitPoller {
    config: GitPollerConfig,
    mirror: PathBuf,
    /// The repository as it may be shown (no credentials).
    public: String,
}

/// What became of a poll handed to the coordinator.
enum Delivered {
    /// Stored: the next poll starts from these heads.
    Stored(BTreeMap<String, String>),
    /// The stored heads were not the ones the poll started from: another master
    /// polling the same repository stored first.
    Stale,
    Failed,
}

impl GitPoller {
    /// A poller keeping its mirror under `data_dir`.
    pub fn new(config: GitPollerConfig, data_dir: &Path) -> GitPoller {
        let mirror = data_dir
            .join("gitpoller")
            .join(format!("{}.git", config.name));
        let public = parse::public_repo(&config.repo);
        GitPoller {
            config,
            mirror,
            public,
        }
    }

    /// Polls every interval until `stop`, handing what it finds to `master`.
    pub async fn run(self, store: Store, master: mpsc::Sender<Msg>, stop: CancellationToken) {
        let name = self.config.name.clone();
        info!(poller = %name, repo = %self.public, branches = ?self.config.branches,
              interval = self.config.interval.as_secs(), "git poller started");
        let mut last: Option<Option<BTreeMap<String, String>>> = None;
        loop {
            if last.is_none() {
                let store = store.clone();
                let n = name.clone();
                match tokio::task::spawn_blocking(move || store.poller_heads(&n)).await {
                    Ok(Ok(heads)) => last = Some(heads),
                    Ok(Err(e)) => warn!(poller = %name, "cannot read the last heads: {e}"),
                    Err(e) => warn!(poller = %name, "cannot read the last heads: {e}"),
                }
            }
            if let Some(seen) = &last {
                // Stopping abandons a poll; its git processes go with it.
                let polled = tokio::select! {
                    _ = stop.cancelled() => return,
                    polled = self.poll(seen.as_ref()) => polled,
                };
                match polled {
                    // Nothing moved: nothing to store.
                    Ok((heads, changes)) if changes.is_empty() && seen.as_ref() == Some(&heads) => {
                    }
                    Ok(polled) => match self.deliver(&master, seen.clone(), polled).await {
                        Delivered::Stored(heads) => last = Some(Some(heads)),
                        // Another master stored a poll first: start from its heads.
                        Delivered::Stale => last = None,
                        Delivered::Failed => {}
                    },
                    Err(e) => {
                        warn!(poller = %name, "poll failed: {}", e.replace(&self.config.repo, &self.public))
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.config.interval) => {}
            }
        }
    }

    /// Hands a poll that started from the heads `seen` to the coordinator.
    async fn deliver(
        &self,
        master: &mpsc::Sender<Msg>,
        seen: Option<BTreeMap<String, String>>,
        (heads, changes): Polled,
    ) -> Delivered {
        let name = &self.config.name;
        let count = changes.len();
        let (reply, answer) = oneshot::channel();
        let msg = Msg::Polled {
            poller: name.clone(),
            seen,
            heads: heads.clone(),
            changes,
            reply,
        };
        if master.send(msg).await.is_err() {
            return Delivered::Failed;
        }
        match answer.await {
            Ok(Ok(Some(n))) => {
                if n > 0 {
                    info!(poller = %name, changes = count, "new commits");
                }
                Delivered::Stored(heads)
            }
            Ok(Ok(None)) => Delivered::Stale,
            Ok(Err(Refusal::Invalid(e))) => {
                warn!(poller = %name, "changes refused: {e}");
                Delivered::Failed
            }
            Ok(Err(Refusal::Store(e))) => {
                warn!(poller = %name, "cannot store the poll: {e}");
                Delivered::Failed
            }
            Err(_) => Delivered::Failed,
        }
    }

    /// One poll: the heads now, and the changes since `last`.
    async fn poll(&self, last: Option<&BTreeMap<String, String>>) -> Result<Polled, String> {
        let timeout = self.config.timeout;
        let repo = self.config.repo.as_str();
        let out = git::run(None, &["ls-remote", "--heads", "--", repo], timeout).await?;
        let (mut heads, skipped) = parse::heads(&String::from_utf8_lossy(&out));
        if skipped > 0 {
            warn!(poller = %self.config.name, skipped, "refs with unusable names or revisions ignored");
        }
        if let Some(wanted) = &self.config.branches {
            heads.retain(|b, _| wanted.contains(b));
        }
        // The first poll brings every branch into the mirror (a later new branch is
        // compared with them); later ones only the branches that moved.
        let wanted: Vec<String> = match last {
            None => heads.keys().cloned().collect(),
            Some(_) => parse::plan(last, &heads).into_keys().collect(),
        };
        if wanted.is_empty() {
            return Ok((heads, Vec::new()));
        }
        self.fetch(wanted.iter()).await?;
        // The mirror's heads: a branch may have moved again since the listing.
        let out = git::run(
            Some(&self.mirror),
            &[
                "for-each-ref",
                "--format=%(objectname)\t%(refname)",
                "refs/heads/",
            ],
            timeout,
        )
        .await?;
        let (fetched, _) = parse::heads(&String::from_utf8_lossy(&out));
        for branch in &wanted {
            if let Some(rev) = fetched.get(branch) {
                heads.insert(branch.clone(), rev.clone());
            }
        }
        let mut changes = Vec::new();
        for (branch, step) in parse::plan(last, &heads) {
            for rev in self.commits(&step).await? {
                changes.push(self.change(&branch, &rev).await?);
            }
        }
        Ok((heads, changes))
    }

    /// Brings `branches` into the mirror, creating it if needed.
    async fn fetch(&self, branches: impl Iterator<Item = &String>) -> Result<(), String> {
        let timeout = self.config.timeout;
        if !self.mirror.join("HEAD").exists() {
            if let Some(parent) = self.mirror.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            let path = self.mirror.to_string_lossy();
            git::run(None, &["init", "--quiet", "--bare", "--", &path], timeout).await?;
        }
        let specs: Vec<String> = branches
            .map(|b| format!("+refs/heads/{b}:refs/heads/{b}"))
            .collect();
        let mut args = vec!["fetch", "--quiet", "--no-tags", "--", &self.config.repo];
        args.extend(specs.iter().map(String::as_str));
        git::run(Some(&self.mirror), &args, timeout).await?;
        Ok(())
    }

    /// The new commits of a branch, oldest first.
    async fn commits(&self, step: &Step) -> Result<Vec<String>, String> {
        let Step::Log { new, not } = step;
        let mut known = Vec::new();
        for rev in not {
            let object = format!("{rev}^{{commit}}");
            let exists = git::run(
                Some(&self.mirror),
                &["cat-file", "-e", &object],
                self.config.timeout,
            )
            .await;
            if exists.is_ok() {
                known.push(rev.as_str());
            }
        }
        if known.is_empty() && !not.is_empty() {
            // What was seen before is gone from the mirror: the new head alone.
            return Ok(vec![new.clone()]);
        }
        let max = format!("--max-count={MAX_COMMITS}");
        let mut args = vec!["rev-list", "--reverse", &max, new.as_str(), "--not"];
        args.extend(known);
        args.push("--");
        let out = git::run(Some(&self.mirror), &args, self.config.timeout).await?;
        let revs = parse::revisions(&String::from_utf8_lossy(&out));
        if revs.len() == MAX_COMMITS {
            warn!(poller = %self.config.name, "more than {MAX_COMMITS} new commits: changes for the newest only");
        }
        // A force-push to an older commit, or a new branch at a known one.
        Ok(if revs.is_empty() {
            vec![new.clone()]
        } else {
            revs
        })
    }

    /// The change for one commit of `branch`.
    async fn change(&self, branch: &str, rev: &str) -> Result<NewChange, String> {
        let timeout = self.config.timeout;
        let shown = git::run(
            Some(&self.mirror),
            &["show", "-s", "--format=%an <%ae>%x00%ct%x00%B", rev, "--"],
            timeout,
        )
        .await?;
        let commit = parse::commit(&shown)?;
        let listed = git::run(
            Some(&self.mirror),
            &[
                "diff-tree",
                "-r",
                "--root",
                "--no-commit-id",
                "--name-only",
                "-z",
                rev,
                "--",
            ],
            timeout,
        )
        .await?;
        let mut files = parse::files(&listed);
        files.retain(|f| f.len() <= MAX_PATH);
        files.truncate(MAX_FILES);
        Ok(NewChange {
            author: truncate(&commit.author, MAX_SHORT),
            files,
            comments: truncate(&commit.comments, MAX_COMMENTS),
            branch: Some(branch.to_owned()),
            revision: Some(rev.to_owned()),
            repository: truncate(&self.public, MAX_SHORT),
            project: truncate(&self.config.project, MAX_SHORT),
            when: Some(commit.when),
            ..NewChange::default()
        })
    }
}
