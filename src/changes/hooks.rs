//! Push payloads from GitHub and GitLab webhooks, each turned into one change for the
//! whole push: the pushed ref's branch, the new head revision, every file the pushed
//! commits touched, the head commit's message and author.
//!
//! Only the fields used are read, each optional, so a payload with extra or missing
//! fields still works. Long messages and file lists are trimmed, not refused.

use super::{truncate, NewChange, MAX_COMMENTS, MAX_FILES, MAX_PATH, MAX_REVLINK, MAX_SHORT};
use serde::Deserialize;
use std::collections::HashSet;

/// What a hook delivery amounts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Hook {
    Change(Box<NewChange>),
    /// Nothing to build (a ping, a deleted branch, another event); the text says why.
    Ignored(String),
}

/// An all-zero revision: the ref was created from nothing or deleted.
fn is_null_revision(rev: &str) -> bool {
    !rev.is_empty() && rev.bytes().all(|b| b == b'0')
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Person {
    name: Option<String>,
    email: Option<String>,
    username: Option<String>,
}

impl Person {
    /// `Name <email>`, as buildbot shows authors.
    fn display(&self) -> Option<String> {
        let name = self.name.as_deref().or(self.username.as_deref())?;
        Some(match &self.email {
            Some(e) if !e.is_empty() => format!("{name} <{e}>"),
            _ => name.to_owned(),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Commit {
    id: String,
    message: String,
    url: String,
    author: Person,
    added: Vec<String>,
    modified: Vec<String>,
    removed: Vec<String>,
}

/// Every file the commits touched, in order, once each.
fn files_of<'a>(commits: impl Iterator<Item = &'a Commit>) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for c in commits {
        for f in c.added.iter().chain(&c.modified).chain(&c.removed) {
            if out.len() >= MAX_FILES {
                return out;
            }
            if f.len() <= MAX_PATH && seen.insert(f.as_str()) {
                out.push(f.clone());
            }
        }
    }
    out
}

/// `refs/heads/x` → (`x`, None); `refs/tags/v1` → (`v1`, Some("tag")).
fn branch_of(r: &str) -> (String, Option<String>) {
    if let Some(b) = r.strip_prefix("refs/heads/") {
        (b.to_owned(), None)
    } else if let Some(t) = r.strip_prefix("refs/tags/") {
        (t.to_owned(), Some("tag".to_owned()))
    } else {
        (r.to_owned(), None)
    }
}

fn short(s: &str) -> String {
    truncate(s, MAX_SHORT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GitHubRepo {
    html_url: Option<String>,
    url: Option<String>,
    full_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GitHubPush {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    deleted: bool,
    compare: Option<String>,
    repository: GitHubRepo,
    pusher: Person,
    head_commit: Option<Commit>,
    commits: Vec<Commit>,
}

/// A GitHub delivery; `event` is the `X-GitHub-Event` header (a push when absent).
pub fn github(event: Option<&str>, body: serde_json::Value) -> Result<Hook, String> {
    match event {
        None | Some("push") => {}
        Some(other) => return Ok(Hook::Ignored(format!("{other} events start no builds"))),
    }
    let p: GitHubPush =
        serde_json::from_value(body).map_err(|e| format!("not a GitHub push: {e}"))?;
    if p.git_ref.is_empty() {
        return Err("not a GitHub push: no ref".into());
    }
    if p.deleted || is_null_revision(&p.after) {
        return Ok(Hook::Ignored(format!("{} was deleted", p.git_ref)));
    }
    let (branch, category) = branch_of(&p.git_ref);
    let head = p.head_commit.as_ref();
    let author = head
        .and_then(|c| c.author.display())
        .or_else(|| p.pusher.display())
        .unwrap_or_default();
    let repository = p
        .repository
        .html_url
        .or(p.repository.url)
        .unwrap_or_default();
    let revlink = head
        .map(|c| c.url.clone())
        .filter(|u| !u.is_empty())
        .or(p.compare)
        .unwrap_or_default();
    let mut files = files_of(p.commits.iter());
    if files.is_empty() {
        files = files_of(head.into_iter());
    }
    let change = NewChange {
        author: short(&author),
        files,
        comments: truncate(head.map_or("", |c| c.message.as_str()), MAX_COMMENTS),
        branch: Some(short(&branch)),
        revision: Some(short(&p.after)),
        repository: short(&repository),
        project: short(p.repository.full_name.as_deref().unwrap_or("")),
        category,
        revlink: truncate(&revlink, MAX_REVLINK),
        ..NewChange::default()
    };
    change.check()?;
    Ok(Hook::Change(Box::new(change)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GitLabProject {
    web_url: Option<String>,
    git_http_url: Option<String>,
    path_with_namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GitLabRepo {
    homepage: Option<String>,
    git_http_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GitLabPush {
    object_kind: String,
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    checkout_sha: Option<String>,
    user_name: Option<String>,
    user_username: Option<String>,
    user_email: Option<String>,
    project: GitLabProject,
    repository: GitLabRepo,
    commits: Vec<Commit>,
}

/// A GitLab delivery (`object_kind` `push` or `tag_push`); other kinds are ignored.
pub fn gitlab(body: serde_json::Value) -> Result<Hook, String> {
    let p: GitLabPush =
        serde_json::from_value(body).map_err(|e| format!("not a GitLab push: {e}"))?;
    if p.object_kind != "push" && p.object_kind != "tag_push" {
        return Ok(Hook::Ignored(format!(
            "{:?} events start no builds",
            p.object_kind
        )));
    }
    if p.git_ref.is_empty() {
        return Err("not a GitLab push: no ref".into());
    }
    let revision = p.checkout_sha.filter(|s| !s.is_empty()).unwrap_or(p.after);
    if revision.is_empty() || is_null_revision(&revision) {
        return Ok(Hook::Ignored(format!("{} was deleted", p.git_ref)));
    }
    let (branch, category) = branch_of(&p.git_ref);
    let head = p
        .commits
        .iter()
        .find(|c| c.id == revision)
        .or(p.commits.last());
    let pusher = Person {
        name: p.user_name,
        email: p.user_email,
        username: p.user_username,
    };
    let author = head
        .and_then(|c| c.author.display())
        .or_else(|| pusher.display())
        .unwrap_or_default();
    let repository = p
        .project
        .web_url
        .or(p.repository.homepage)
        .or(p.project.git_http_url)
        .or(p.repository.git_http_url)
        .unwrap_or_default();
    let change = NewChange {
        author: short(&author),
        files: files_of(p.commits.iter()),
        comments: truncate(head.map_or("", |c| c.message.as_str()), MAX_COMMENTS),
        branch: Some(short(&branch)),
        revision: Some(short(&revision)),
        repository: short(&repository),
        project: short(p.project.path_with_namespace.as_deref().unwrap_or("")),
        category,
        revlink: truncate(head.map_or("", |c| c.url.as_str()), MAX_REVLINK),
        ..NewChange::default()
    };
    change.check()?;
    Ok(Hook::Change(Box::new(change)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(h: Hook) -> NewChange {
        match h {
            Hook::Change(c) => *c,
            Hook::Ignored(why) => panic!("ignored: {why}"),
        }
    }

    #[test]
    fn github_push_becomes_one_change() {
        let c = change(
            github(
                Some("push"),
                json!({
                    "ref": "refs/heads/main", "after": "abc123", "deleted": false,
                    "repository": {"html_url": "https://github.com/o/r", "full_name": "o/r"},
                    "pusher": {"name": "pusher", "email": "p@x"},
                    "head_commit": {"id": "abc123", "message": "second", "url": "https://github.com/o/r/commit/abc123",
                                    "author": {"name": "Ann", "email": "ann@x"}, "added": [], "modified": ["b"], "removed": []},
                    "commits": [
                        {"id": "1", "message": "first", "added": ["a"], "modified": ["b"], "removed": []},
                        {"id": "abc123", "message": "second", "added": [], "modified": ["b"], "removed": ["c"]}
                    ]
                }),
            )
            .unwrap(),
        );
        assert_eq!(c.branch.as_deref(), Some("main"));
        assert_eq!(c.revision.as_deref(), Some("abc123"));
        assert_eq!(c.files, ["a", "b", "c"]);
        assert_eq!(c.author, "Ann <ann@x>");
        assert_eq!(c.comments, "second");
        assert_eq!(c.repository, "https://github.com/o/r");
        assert_eq!(c.project, "o/r");
    }

    #[test]
    fn github_pings_deletions_and_tags() {
        assert!(matches!(
            github(Some("ping"), json!({})).unwrap(),
            Hook::Ignored(_)
        ));
        let deleted = json!({"ref": "refs/heads/x", "after": "0000000000", "deleted": true});
        assert!(matches!(github(None, deleted).unwrap(), Hook::Ignored(_)));
        let tag = change(github(None, json!({"ref": "refs/tags/v1", "after": "f00"})).unwrap());
        assert_eq!(tag.branch.as_deref(), Some("v1"));
        assert_eq!(tag.category.as_deref(), Some("tag"));
        assert!(github(None, json!({"ref": 5})).is_err());
        assert!(github(None, json!({"after": "x"})).is_err());
    }

    #[test]
    fn gitlab_push_becomes_one_change() {
        let c = change(
            gitlab(json!({
                "object_kind": "push", "ref": "refs/heads/dev", "after": "def", "checkout_sha": "def",
                "user_name": "Bo", "user_email": "bo@x",
                "project": {"web_url": "https://gitlab.com/g/p", "path_with_namespace": "g/p"},
                "commits": [
                    {"id": "def", "message": "msg", "url": "https://gitlab.com/g/p/-/commit/def",
                     "author": {"name": "Cy", "email": "cy@x"}, "added": ["n"], "modified": [], "removed": []}
                ]
            }))
            .unwrap(),
        );
        assert_eq!(c.branch.as_deref(), Some("dev"));
        assert_eq!(c.revision.as_deref(), Some("def"));
        assert_eq!(c.author, "Cy <cy@x>");
        assert_eq!(c.files, ["n"]);
        assert_eq!(c.project, "g/p");
        assert!(matches!(
            gitlab(json!({"object_kind": "issue"})).unwrap(),
            Hook::Ignored(_)
        ));
    }

    #[test]
    fn hook_file_lists_are_bounded() {
        let files: Vec<String> = (0..MAX_FILES + 50).map(|i| format!("f{i}")).collect();
        let c = change(
            github(
                None,
                json!({"ref": "refs/heads/m", "after": "1", "commits": [{"added": files}]}),
            )
            .unwrap(),
        );
        assert_eq!(c.files.len(), MAX_FILES);
    }
}
