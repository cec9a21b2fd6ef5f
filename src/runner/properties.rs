//! Build properties and their interpolation into step arguments.
//!
//! `%(prop:NAME)s` is replaced by the property's value; `%(prop:NAME:-DEFAULT)s` uses
//! DEFAULT when it is not set; `%%` is a literal `%`. A property that is not set and has
//! no default is an error, never an empty string.

use serde_json::{Map, Value};
use std::fmt;

/// A build's properties: name → value, with where each came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties {
    values: Map<String, Value>,
    sources: Map<String, Value>,
}

/// A template that cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    Missing(String),
    Malformed(String),
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::Missing(name) => write!(f, "property {name:?} is not set"),
            RenderError::Malformed(why) => write!(f, "bad interpolation: {why}"),
        }
    }
}

impl Properties {
    pub fn set(&mut self, name: &str, value: Value, source: &str) {
        self.values.insert(name.to_owned(), value);
        self.sources
            .insert(name.to_owned(), Value::String(source.to_owned()));
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// `{name: [value, source]}`, as buildbot's API shows properties.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        for (k, v) in &self.values {
            let source = self.sources.get(k).cloned().unwrap_or(Value::Null);
            out.insert(k.clone(), Value::Array(vec![v.clone(), source]));
        }
        Value::Object(out)
    }

    /// Replaces every `%(prop:...)s` in `template`.
    pub fn render(&self, template: &str) -> Result<String, RenderError> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(i) = rest.find('%') {
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            if let Some(after) = rest.strip_prefix("%%") {
                out.push('%');
                rest = after;
                continue;
            }
            let Some(body) = rest.strip_prefix("%(") else {
                out.push('%');
                rest = &rest[1..];
                continue;
            };
            let end = body.find(")s").ok_or_else(|| {
                RenderError::Malformed(format!("unterminated {:?}", truncate(rest)))
            })?;
            out.push_str(&self.lookup(&body[..end])?);
            rest = &body[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn lookup(&self, spec: &str) -> Result<String, RenderError> {
        let Some(spec) = spec.strip_prefix("prop:") else {
            return Err(RenderError::Malformed(format!(
                "unknown source in %({spec})s (use prop:NAME)"
            )));
        };
        let (name, default) = match spec.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (spec, None),
        };
        match (self.values.get(name), default) {
            (Some(v), _) => Ok(display(v)),
            (None, Some(d)) => Ok(d.to_owned()),
            (None, None) => Err(RenderError::Missing(name.to_owned())),
        }
    }
}

/// How a property reads inside a string: strings bare, lists space-separated, other
/// values as JSON.
pub fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(items) => items.iter().map(display).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Evaluates a `do_step_if` condition after interpolation: `A == B`, `A != B`, or a
/// bare value that holds unless it is empty, `0` or `false`.
pub fn condition_holds(rendered: &str) -> bool {
    if let Some((a, b)) = rendered.split_once("!=") {
        return a.trim() != b.trim();
    }
    if let Some((a, b)) = rendered.split_once("==") {
        return a.trim() == b.trim();
    }
    !matches!(rendered.trim(), "" | "0" | "false" | "False")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props() -> Properties {
        let mut p = Properties::default();
        p.set("branch", json!("main"), "force");
        p.set("buildnumber", json!(7), "build");
        p.set("files", json!(["a", "b"]), "step");
        p
    }

    #[test]
    fn renders_properties_and_defaults() {
        let p = props();
        assert_eq!(
            p.render("git checkout %(prop:branch)s").unwrap(),
            "git checkout main"
        );
        assert_eq!(
            p.render("#%(prop:buildnumber)s: %(prop:files)s").unwrap(),
            "#7: a b"
        );
        assert_eq!(p.render("%(prop:missing:-fallback)s").unwrap(), "fallback");
        assert_eq!(p.render("100%% and 5% ok").unwrap(), "100% and 5% ok");
    }

    #[test]
    fn a_missing_property_is_an_error_not_an_empty_string() {
        assert_eq!(
            props().render("x %(prop:revision)s"),
            Err(RenderError::Missing("revision".into()))
        );
        assert!(matches!(
            props().render("%(prop:branch"),
            Err(RenderError::Malformed(_))
        ));
        assert!(matches!(
            props().render("%(kw:x)s"),
            Err(RenderError::Malformed(_))
        ));
    }

    #[test]
    fn conditions() {
        assert!(condition_holds("main == main"));
        assert!(!condition_holds("dev == main"));
        assert!(condition_holds("dev != main"));
        assert!(!condition_holds("false"));
        assert!(!condition_holds(""));
        assert!(condition_holds("yes"));
    }
}
