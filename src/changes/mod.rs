//! Changes: what a version-control system tells the master about a new revision.
//!
//! A [`NewChange`] arrives from one of five places, each with its own constructor:
//! `buildbot sendchange` over PB ([`pb`]), a JSON body ([`json`]), GitHub or GitLab
//! push payloads ([`hooks`], taken only when [`verify`] finds them signed or carrying
//! the configured token), and the master's own polls of git repositories ([`gitpoll`]). Every field comes from the network, so [`NewChange::check`]
//! bounds each one before anything is stored.

pub mod gitpoll;
pub mod hooks;
pub mod json;
pub mod pb;
pub mod verify;

use serde::Serialize;
use serde_json::{Map, Value};

/// Longest branch, revision, author, repository, project, category or codebase.
pub const MAX_SHORT: usize = 1024;
/// Longest revision link (a URL).
pub const MAX_REVLINK: usize = 4096;
/// Longest commit message.
pub const MAX_COMMENTS: usize = 64 * 1024;
/// Most files in one change.
pub const MAX_FILES: usize = 10_000;
/// Longest file path.
pub const MAX_PATH: usize = 4096;
/// Largest property set, as JSON text.
pub const MAX_PROPERTIES: usize = 64 * 1024;

/// A change as received, before it has an id.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NewChange {
    /// Who made the change (buildbot's `author`, sent as `who` by sendchange).
    pub author: String,
    pub files: Vec<String>,
    pub comments: String,
    pub branch: Option<String>,
    pub revision: Option<String>,
    pub properties: Map<String, Value>,
    pub repository: String,
    pub project: String,
    pub category: Option<String>,
    /// When the change was made (seconds since the epoch); the receiving time if unset.
    pub when: Option<f64>,
    pub revlink: String,
    pub codebase: String,
}

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Pb,
    Http,
    GitHub,
    GitLab,
    GitPoller,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Pb => "pb",
            Source::Http => "http",
            Source::GitHub => "github",
            Source::GitLab => "gitlab",
            Source::GitPoller => "gitpoller",
        }
    }
}

/// A stored change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub id: i64,
    /// When the master stored it; tree-stable timers count from here.
    pub received_at: f64,
    pub source: String,
    #[serde(flatten)]
    pub change: NewChange,
}

impl NewChange {
    /// Rejects anything over the bounds, and timestamps that are not plausible.
    pub fn check(&self) -> Result<(), String> {
        let short = [
            ("author", Some(&self.author)),
            ("branch", self.branch.as_ref()),
            ("revision", self.revision.as_ref()),
            ("repository", Some(&self.repository)),
            ("project", Some(&self.project)),
            ("category", self.category.as_ref()),
            ("codebase", Some(&self.codebase)),
        ];
        for (name, value) in short {
            if value.is_some_and(|v| v.len() > MAX_SHORT) {
                return Err(format!("{name} is longer than {MAX_SHORT} bytes"));
            }
        }
        if self.revlink.len() > MAX_REVLINK {
            return Err(format!("revlink is longer than {MAX_REVLINK} bytes"));
        }
        if self.comments.len() > MAX_COMMENTS {
            return Err(format!("comments are longer than {MAX_COMMENTS} bytes"));
        }
        if self.files.len() > MAX_FILES {
            return Err(format!("more than {MAX_FILES} files"));
        }
        if self.files.iter().any(|f| f.len() > MAX_PATH) {
            return Err(format!("a file path is longer than {MAX_PATH} bytes"));
        }
        if Value::Object(self.properties.clone()).to_string().len() > MAX_PROPERTIES {
            return Err(format!("properties are larger than {MAX_PROPERTIES} bytes"));
        }
        crate::model::property::check_all(&self.properties)?;
        if let Some(when) = self.when {
            // Up to the year 5138: beyond that a timestamp is a mistake or an attack.
            if !(0.0..1e11).contains(&when) {
                return Err(format!("when {when} is not a plausible timestamp"));
            }
        }
        Ok(())
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary (hook payloads are trimmed
/// rather than refused: a long commit message is no reason to lose a push).
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced() {
        let ok = NewChange {
            author: "me".into(),
            files: vec!["a.c".into()],
            ..NewChange::default()
        };
        assert!(ok.check().is_ok());
        let long = NewChange {
            branch: Some("b".repeat(MAX_SHORT + 1)),
            ..ok.clone()
        };
        assert!(long.check().unwrap_err().contains("branch"));
        let many = NewChange {
            files: vec!["f".into(); MAX_FILES + 1],
            ..ok.clone()
        };
        assert!(many.check().is_err());
        let name = NewChange {
            properties: serde_json::json!({"a\nb": 1})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ..ok.clone()
        };
        assert!(name.check().unwrap_err().contains("control character"));
        let when = NewChange {
            when: Some(f64::NAN),
            ..ok
        };
        assert!(when.check().is_err());
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
