//! `POST /api/changes`: a change as a JSON object, with buildbot's field names
//! (`author` or `who`, `when_timestamp` or `when`).

use super::NewChange;
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Deserialize)]
struct Body {
    #[serde(default, alias = "who")]
    author: String,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    comments: String,
    branch: Option<String>,
    revision: Option<String>,
    #[serde(default)]
    properties: Map<String, Value>,
    #[serde(default)]
    repository: String,
    #[serde(default)]
    project: String,
    category: Option<String>,
    #[serde(alias = "when_timestamp")]
    when: Option<f64>,
    #[serde(default)]
    revlink: String,
    #[serde(default)]
    codebase: String,
}

/// Builds a change from a JSON value; the error says which field is wrong.
pub fn from_json(value: Value) -> Result<NewChange, String> {
    let b: Body = serde_json::from_value(value).map_err(|e| format!("bad change: {e}"))?;
    let change = NewChange {
        author: b.author,
        files: b.files,
        comments: b.comments,
        branch: b.branch,
        revision: b.revision,
        properties: b.properties,
        repository: b.repository,
        project: b.project,
        category: b.category,
        when: b.when,
        revlink: b.revlink,
        codebase: b.codebase,
    };
    change.check()?;
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_buildbot_names_and_aliases() {
        let c = from_json(json!({
            "who": "carol", "branch": "dev", "revision": "r1", "files": ["src/a.rs"],
            "properties": {"x": 1}, "when_timestamp": 1700000000.5
        }))
        .unwrap();
        assert_eq!(c.author, "carol");
        assert_eq!(c.when, Some(1_700_000_000.5));
        assert_eq!(c.properties["x"], 1);
    }

    #[test]
    fn refuses_wrong_types_and_oversized_fields() {
        assert!(from_json(json!({"files": "a"})).is_err());
        assert!(from_json(json!([1])).is_err());
        assert!(from_json(json!({"branch": "b".repeat(5000)})).is_err());
    }
}
