//! Renderables to pbmaster interpolation: `Interpolate`, `WithProperties`, `Property`
//! and `Secret` become `%(prop:NAME)s`, `%(prop:NAME:-DEFAULT)s` and
//! `%(secret:NAME)s`; literal text has its `%` doubled, since pbmaster interpolates
//! every string. What has no equivalent is an error naming it, for a TODO.

use super::py::{dict, show, tag};
use serde_json::Value as Json;

/// A translated string: the text, and whether an interpolation sits inside shell
/// quotes in it (pbmaster quotes values itself in a command string).
#[derive(Debug, Default)]
pub struct Text {
    pub text: String,
    pub quoted_interpolation: bool,
}

/// A value as a pbmaster string, or why it cannot be one.
pub fn text(v: &Json) -> Result<Text, String> {
    match v {
        Json::String(s) => Ok(Text {
            text: literal(s),
            quoted_interpolation: false,
        }),
        Json::Number(n) => Ok(Text {
            text: n.to_string(),
            quoted_interpolation: false,
        }),
        Json::Bool(b) => Ok(Text {
            text: if *b { "True" } else { "False" }.to_string(),
            quoted_interpolation: false,
        }),
        _ => match tag(v) {
            Some("interpolate") => interpolate(v),
            Some("withproperties") => with_properties(v),
            Some("property") => property(v).map(|text| Text {
                text,
                quoted_interpolation: false,
            }),
            Some("secret") => match v.get("name") {
                Some(Json::String(name)) => Ok(Text {
                    text: format!("%(secret:{name})s"),
                    quoted_interpolation: false,
                }),
                _ => Err(format!("a secret with a computed name: {}", show(v))),
            },
            _ => Err(format!("{} has no pbmaster equivalent", show(v))),
        },
    }
}

/// Just the string (for keys where quoting does not matter).
pub fn string(v: &Json) -> Result<String, String> {
    text(v).map(|t| t.text)
}

/// Literal text: every `%` doubled.
pub fn literal(s: &str) -> String {
    s.replace('%', "%%")
}

fn property(v: &Json) -> Result<String, String> {
    let Some(Json::String(name)) = v.get("name") else {
        return Err(format!("a property with a computed name: {}", show(v)));
    };
    match v.get("default") {
        None | Some(Json::Null) => Ok(format!("%(prop:{name})s")),
        Some(Json::String(d)) if !d.contains(')') => Ok(format!("%(prop:{name}:-{})s", literal(d))),
        Some(other) => Err(format!(
            "Property({name:?}) with default {} (pbmaster's defaults are plain strings)",
            show(other)
        )),
    }
}

/// `Interpolate`: `%(prop:…)s`, `%(secret:…)s`, `%(kw:…)s` with a literal keyword.
fn interpolate(v: &Json) -> Result<Text, String> {
    let Some(Json::String(fmt)) = v.get("fmt") else {
        return Err("Interpolate with a computed format".to_string());
    };
    if v.get("args")
        .and_then(Json::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return Err(format!(
            "Interpolate({fmt:?}, ...) with positional arguments"
        ));
    }
    let kwargs = v.get("kwargs").cloned().unwrap_or(Json::Null);
    translate_format(fmt, |key| {
        let (kind, rest) = key.split_once(':').unwrap_or((key, ""));
        match kind {
            "prop" | "secret" => {
                let (name, modifier) = split_modifier(rest);
                if name.is_empty() {
                    return Err(format!("%({key})s"));
                }
                match modifier {
                    None => Ok(format!("%({kind}:{name})s")),
                    Some(('-', default)) if kind == "prop" => {
                        Ok(format!("%(prop:{name}:-{})s", literal(default)))
                    }
                    Some(_) => Err(format!("%({key})s (pbmaster knows only the :- default)")),
                }
            }
            "kw" => match kwargs.get(rest) {
                Some(Json::String(s)) => Ok(literal(s)),
                Some(Json::Number(n)) => Ok(n.to_string()),
                _ => Err(format!(
                    "%({key})s (a keyword that is not a literal string)"
                )),
            },
            _ => Err(format!("%({key})s")),
        }
    })
    .map_err(|what| format!("Interpolate({fmt:?}): {what} has no pbmaster equivalent"))
}

/// `WithProperties`: `%(NAME)s`, `%(NAME:-DEFAULT)s`, and `%s` with property names.
fn with_properties(v: &Json) -> Result<Text, String> {
    let Some(Json::String(fmt)) = v.get("fmt") else {
        return Err("WithProperties with a computed format".to_string());
    };
    if v.get("lambda_subs")
        .and_then(Json::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return Err(format!("WithProperties({fmt:?}) with functions"));
    }
    let args: Vec<&Json> = v
        .get("args")
        .and_then(Json::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if !args.is_empty() {
        // Positional: each `%s` is the property named by the next argument.
        let mut names = args.into_iter();
        let mut out = Text::default();
        let mut rest = fmt.as_str();
        while let Some(at) = rest.find('%') {
            out.text.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('%') {
                out.text.push_str("%%");
                rest = tail;
            } else if let Some(tail) = after.strip_prefix('s') {
                match names.next() {
                    Some(Json::String(name)) => out.text.push_str(&format!("%(prop:{name})s")),
                    _ => return Err(format!("WithProperties({fmt:?}): its arguments")),
                }
                rest = tail;
            } else {
                return Err(format!("WithProperties({fmt:?}): a format other than %s"));
            }
        }
        out.text.push_str(rest);
        return Ok(out);
    }
    translate_format(fmt, |key| {
        let (name, modifier) = split_modifier(key);
        match modifier {
            None => Ok(format!("%(prop:{name})s")),
            Some(('-', default)) => Ok(format!("%(prop:{name}:-{})s", literal(default))),
            Some(_) => Err(format!("%({key})s")),
        }
    })
    .map_err(|what| format!("WithProperties({fmt:?}): {what} has no pbmaster equivalent"))
}

/// `NAME:-DEFAULT` → (NAME, Some(('-', DEFAULT))); also `:~`, `:+`, `:?`.
fn split_modifier(key: &str) -> (&str, Option<(char, &str)>) {
    match key.find(':') {
        Some(at) => {
            let name = &key[..at];
            let rest = &key[at + 1..];
            let mut chars = rest.chars();
            match chars.next() {
                Some(c) => (name, Some((c, chars.as_str()))),
                None => (name, Some((' ', ""))),
            }
        }
        None => (key, None),
    }
}

/// A Python `%(key)s` format: literal parts escaped, each key through `one`. Also
/// notes whether an interpolation sits inside shell quotes.
fn translate_format(
    fmt: &str,
    mut one: impl FnMut(&str) -> Result<String, String>,
) -> Result<Text, String> {
    let mut out = Text::default();
    let mut quote: Option<char> = None;
    let mut rest = fmt;
    loop {
        let Some(at) = rest.find('%') else {
            track_quotes(rest, &mut quote);
            out.text.push_str(rest);
            return Ok(out);
        };
        track_quotes(&rest[..at], &mut quote);
        out.text.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('%') {
            out.text.push_str("%%");
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('(') else {
            return Err(format!(
                "a positional %{}",
                after.chars().next().unwrap_or(' ')
            ));
        };
        let Some(close) = body.find(")s") else {
            return Err("a format other than %(...)s".to_string());
        };
        let key = &body[..close];
        out.text.push_str(&one(key)?);
        if quote.is_some() {
            out.quoted_interpolation = true;
        }
        rest = &body[close + 2..];
    }
}

/// Follows `'` and `"` quoting through literal shell text.
fn track_quotes(text: &str, quote: &mut Option<char>) {
    let mut escaped = false;
    for c in text.chars() {
        match (*quote, c) {
            (Some('"'), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (None, '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (None, '\'' | '"') if !escaped => *quote = Some(c),
            (Some(q), c) if c == q && !escaped => *quote = None,
            _ => {}
        }
        escaped = false;
    }
}

/// A string-to-string dict (env): keys literal, values translated.
pub fn string_map(v: &Json) -> Result<toml::Table, String> {
    let map = dict(v).ok_or_else(|| format!("{} is not a dict", show(v)))?;
    let mut out = toml::Table::new();
    for (k, v) in map {
        let value = match &v {
            Json::Array(items) => {
                // buildbot joins a list value with the platform's path separator.
                let parts: Result<Vec<String>, String> = items.iter().map(string).collect();
                parts?.join(":")
            }
            other => string(other)?,
        };
        out.insert(k, toml::Value::String(value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn interp(fmt: &str) -> Json {
        json!({"$t": "interpolate", "fmt": fmt, "args": [], "kwargs": {}})
    }

    #[test]
    fn interpolate_maps_props_secrets_and_defaults() {
        let t = text(&interp(
            "make %(prop:target)s -j%(prop:jobs:-2)s %% %(secret:tok)s",
        ))
        .unwrap();
        assert_eq!(
            t.text,
            "make %(prop:target)s -j%(prop:jobs:-2)s %% %(secret:tok)s"
        );
        assert!(!t.quoted_interpolation);
        assert!(
            text(&interp("echo \"%(prop:x)s\""))
                .unwrap()
                .quoted_interpolation
        );
        assert!(
            !text(&interp("echo \"a\" %(prop:x)s"))
                .unwrap()
                .quoted_interpolation
        );
    }

    #[test]
    fn what_has_no_equivalent_is_an_error() {
        for fmt in [
            "%(src::branch)s",
            "%(prop:x:+y)s",
            "%(worker:os)s",
            "%(prop:x:~d)s",
            "%s",
        ] {
            assert!(text(&interp(fmt)).is_err(), "{fmt}");
        }
    }

    #[test]
    fn literals_double_percent_and_with_properties_maps_names() {
        assert_eq!(string(&json!("date +%s")).unwrap(), "date +%%s");
        let wp = json!({"$t": "withproperties", "fmt": "v=%(version)s %(x:-d)s", "args": [], "lambda_subs": []});
        assert_eq!(string(&wp).unwrap(), "v=%(prop:version)s %(prop:x:-d)s");
        let pos =
            json!({"$t": "withproperties", "fmt": "%s-%s", "args": ["a", "b"], "lambda_subs": []});
        assert_eq!(string(&pos).unwrap(), "%(prop:a)s-%(prop:b)s");
    }
}
