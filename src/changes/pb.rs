//! The dictionary `buildbot sendchange` passes to `addChange`.
//!
//! Python 3 clients send text, Python 2 ones bytes, for keys and values alike; both are
//! accepted (bytes that are not UTF-8 are decoded with replacement characters, as
//! buildbot does). Older clients say `who` and `when`, newer ones may say `author` and
//! `when_timestamp`. Unknown keys are ignored.

use super::NewChange;
use pbwire::jelly::Value;
use serde_json::{Map, Value as Json};

/// Most keys accepted in the change dictionary (sendchange sends 13).
const MAX_KEYS: usize = 64;
/// Most properties.
const MAX_PROPERTIES: usize = 256;

/// Builds a change from `addChange`'s argument.
pub fn from_pb(value: &Value) -> Result<NewChange, String> {
    let Value::Dict(pairs) = unwrap(value) else {
        return Err("a change must be a dictionary".into());
    };
    if pairs.len() > MAX_KEYS {
        return Err(format!("a change has at most {MAX_KEYS} keys"));
    }
    let mut change = NewChange::default();
    for (key, value) in pairs {
        let Some(key) = unwrap(key).as_str_lossy() else {
            return Err("change keys must be strings".into());
        };
        let value = unwrap(value);
        match &*key {
            "who" | "author" => change.author = text(&key, value)?.unwrap_or_default(),
            "comments" => change.comments = text(&key, value)?.unwrap_or_default(),
            "branch" => change.branch = text(&key, value)?,
            "revision" => change.revision = text(&key, value)?,
            "repository" => change.repository = text(&key, value)?.unwrap_or_default(),
            "project" => change.project = text(&key, value)?.unwrap_or_default(),
            "category" => change.category = text(&key, value)?,
            "revlink" => change.revlink = text(&key, value)?.unwrap_or_default(),
            "codebase" => change.codebase = text(&key, value)?.unwrap_or_default(),
            "when" | "when_timestamp" => change.when = number(&key, value)?,
            "files" => change.files = files(value)?,
            "properties" => change.properties = properties(value)?,
            _ => {}
        }
    }
    change.check()?;
    Ok(change)
}

/// A shared object's first occurrence carries its value; the wrapper adds nothing here.
fn unwrap(value: &Value) -> &Value {
    match value {
        Value::Reference(_, inner) => unwrap(inner),
        other => other,
    }
}

/// A string field; `None` stays unset. Revisions sometimes travel as numbers.
fn text(key: &str, value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::None => Ok(None),
        Value::Int(i) => Ok(Some(i.to_string())),
        v => v
            .as_str_lossy()
            .map(|s| Some(s.into_owned()))
            .ok_or_else(|| format!("{key} must be a string")),
    }
}

fn number(key: &str, value: &Value) -> Result<Option<f64>, String> {
    match value {
        Value::None => Ok(None),
        Value::Float(f) => Ok(Some(*f)),
        Value::Int(i) => i
            .to_i64()
            .map(|i| Some(i as f64))
            .ok_or_else(|| format!("{key} is out of range")),
        _ => Err(format!("{key} must be a number")),
    }
}

fn files(value: &Value) -> Result<Vec<String>, String> {
    if matches!(value, Value::None) {
        return Ok(Vec::new());
    }
    let items = value.as_seq().ok_or("files must be a list")?;
    if items.len() > super::MAX_FILES {
        return Err(format!("more than {} files", super::MAX_FILES));
    }
    items
        .iter()
        .map(|f| {
            unwrap(f)
                .as_str_lossy()
                .map(|s| s.into_owned())
                .ok_or_else(|| "files must be strings".to_owned())
        })
        .collect()
}

fn properties(value: &Value) -> Result<Map<String, Json>, String> {
    let pairs = match value {
        Value::None => return Ok(Map::new()),
        Value::Dict(pairs) => pairs,
        _ => return Err("properties must be a dictionary".into()),
    };
    if pairs.len() > MAX_PROPERTIES {
        return Err(format!("at most {MAX_PROPERTIES} properties"));
    }
    let mut out = Map::new();
    for (k, v) in pairs {
        let name = unwrap(k)
            .as_str_lossy()
            .ok_or("property names must be strings")?;
        out.insert(name.into_owned(), json(v)?);
    }
    Ok(out)
}

/// Deepest nesting of a property value.
const MAX_DEPTH: usize = 16;

/// A property value as JSON. The budget on nodes and the depth bound keep a hostile
/// value's cost bounded whatever its shape.
fn json(value: &Value) -> Result<Json, String> {
    let mut budget = 10_000usize;
    to_json(value, &mut budget, 0)
}

fn to_json(value: &Value, budget: &mut usize, depth: usize) -> Result<Json, String> {
    *budget = budget
        .checked_sub(1)
        .ok_or("a property value is too large")?;
    if depth > MAX_DEPTH {
        return Err("a property value is nested too deeply".into());
    }
    Ok(match unwrap(value) {
        Value::None => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => match i.to_i64() {
            Some(i) => Json::from(i),
            None => Json::String(i.to_string()),
        },
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        v @ (Value::Bytes(_) | Value::Text(_)) => {
            Json::String(v.as_str_lossy().unwrap_or_default().into_owned())
        }
        Value::List(items) | Value::Tuple(items) => Json::Array(
            items
                .iter()
                .map(|i| to_json(i, budget, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Dict(pairs) => {
            let mut out = Map::new();
            for (k, v) in pairs {
                let k = unwrap(k)
                    .as_str_lossy()
                    .ok_or("property keys must be strings")?;
                out.insert(k.into_owned(), to_json(v, budget, depth + 1)?);
            }
            Json::Object(out)
        }
        other => return Err(format!("unsupported property value {}", kind(other))),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Set(_) | Value::FrozenSet(_) => "set",
        Value::Dereference(_) => "reference",
        Value::Remote(_) | Value::Local(_) => "object reference",
        _ => "type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(pairs: Vec<(Value, Value)>) -> Value {
        Value::Dict(pairs)
    }

    #[test]
    fn reads_what_sendchange_sends() {
        let v = dict(vec![
            (Value::text("project"), Value::text("")),
            (Value::text("repository"), Value::text("git://r")),
            (Value::text("who"), Value::text("alice")),
            (
                Value::text("files"),
                Value::List(vec![Value::text("a.c"), Value::text("doc/x.md")]),
            ),
            (Value::text("comments"), Value::text("fix")),
            (Value::text("branch"), Value::text("main")),
            (Value::text("revision"), Value::text("abc")),
            (Value::text("category"), Value::None),
            (Value::text("when"), Value::None),
            (
                Value::text("properties"),
                dict(vec![(Value::text("k"), Value::text("v"))]),
            ),
            (Value::text("revlink"), Value::text("")),
            (Value::text("src"), Value::None),
        ]);
        let c = from_pb(&v).unwrap();
        assert_eq!(c.author, "alice");
        assert_eq!(c.files, ["a.c", "doc/x.md"]);
        assert_eq!(c.branch.as_deref(), Some("main"));
        assert_eq!(c.category, None);
        assert_eq!(c.properties["k"], "v");
        assert_eq!(c.repository, "git://r");
    }

    #[test]
    fn accepts_python2_bytes_and_new_names() {
        let v = dict(vec![
            (Value::bytes(&b"author"[..]), Value::bytes(&b"bob\xff"[..])),
            (
                Value::bytes(&b"when_timestamp"[..]),
                Value::int(1_700_000_000),
            ),
            (Value::bytes(&b"revision"[..]), Value::int(42)),
            (
                Value::bytes(&b"files"[..]),
                Value::Tuple(vec![Value::bytes(&b"x"[..])]),
            ),
        ]);
        let c = from_pb(&v).unwrap();
        assert_eq!(c.author, "bob\u{fffd}");
        assert_eq!(c.when, Some(1_700_000_000.0));
        assert_eq!(c.revision.as_deref(), Some("42"));
        assert_eq!(c.files, ["x"]);
    }

    #[test]
    fn refuses_malformed_changes() {
        assert!(from_pb(&Value::text("nope")).is_err());
        let bad_files = dict(vec![(Value::text("files"), Value::int(3))]);
        assert!(from_pb(&bad_files).unwrap_err().contains("files"));
        let bad_when = dict(vec![(Value::text("when"), Value::text("soon"))]);
        assert!(from_pb(&bad_when).is_err());
        let remote = dict(vec![(
            Value::text("properties"),
            dict(vec![(Value::text("p"), Value::Remote(1))]),
        )]);
        assert!(from_pb(&remote).is_err());
        let huge = dict(vec![(
            Value::text("comments"),
            Value::text("x".repeat(super::super::MAX_COMMENTS + 1)),
        )]);
        assert!(from_pb(&huge).is_err());
    }

    #[test]
    fn property_values_are_bounded() {
        let mut deep = Value::None;
        for _ in 0..40 {
            deep = Value::List(vec![deep]);
        }
        assert!(json(&deep).is_err());
        let wide = Value::List(vec![Value::int(1); 20_000]);
        assert!(json(&wide).is_err());
        let fine = Value::List(vec![Value::text("a"), Value::Bool(true), Value::Float(1.5)]);
        assert_eq!(json(&fine).unwrap(), serde_json::json!(["a", true, 1.5]));
    }
}
