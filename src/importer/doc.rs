//! The TOML the importer writes: tables in order, each with the TODO comments that
//! belong to it, and commented-out text for what could not be translated.

use std::fmt::Write;

/// One output item.
#[derive(Debug)]
pub enum Item {
    /// `[header]` or `[[header]]` with its keys, after its TODO comments.
    Table {
        header: String,
        todos: Vec<String>,
        entries: Vec<(String, toml::Value)>,
    },
    /// Comment lines only (untranslated objects, notes).
    Comment(Vec<String>),
}

/// The whole output file.
#[derive(Debug, Default)]
pub struct Doc {
    pub items: Vec<Item>,
}

impl Doc {
    pub fn table(&mut self, header: &str, todos: Vec<String>, entries: Vec<(String, toml::Value)>) {
        self.items.push(Item::Table {
            header: header.to_string(),
            todos,
            entries,
        });
    }

    pub fn comment(&mut self, lines: Vec<String>) {
        self.items.push(Item::Comment(lines));
    }

    /// The TOML text.
    pub fn render(&self, preamble: &[String]) -> String {
        let mut out = String::new();
        for line in preamble {
            comment_line(&mut out, "", line);
        }
        for item in &self.items {
            out.push('\n');
            match item {
                Item::Comment(lines) => {
                    for l in lines {
                        comment_line(&mut out, "", l);
                    }
                }
                Item::Table {
                    header,
                    todos,
                    entries,
                } => {
                    for t in todos {
                        comment_line(&mut out, "TODO(import): ", t);
                    }
                    let _ = writeln!(out, "{header}");
                    for (k, v) in entries {
                        let _ = writeln!(out, "{} = {}", key(k), value(v));
                    }
                }
            }
        }
        out
    }
}

/// A comment, one `#` line per line of text (control characters shown escaped).
fn comment_line(out: &mut String, prefix: &str, text: &str) {
    for (i, line) in text.lines().enumerate() {
        let clean: String = line
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        let lead = if i == 0 { prefix } else { "  " };
        let _ = writeln!(out, "# {lead}{clean}");
    }
    if text.is_empty() {
        let _ = writeln!(out, "#");
    }
}

/// A key, quoted unless it is bare.
pub fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        toml::Value::String(k.to_string()).to_string()
    }
}

/// A value on one line (inline tables and arrays).
fn value(v: &toml::Value) -> String {
    match v {
        toml::Value::Table(t) => {
            let inner: Vec<String> = t
                .iter()
                .map(|(k, v)| format!("{} = {}", key(k), value(v)))
                .collect();
            if inner.is_empty() {
                "{}".to_string()
            } else {
                format!("{{ {} }}", inner.join(", "))
            }
        }
        toml::Value::Array(a) => {
            let inner: Vec<String> = a.iter().map(value).collect();
            format!("[{}]", inner.join(", "))
        }
        toml::Value::String(s) => basic_string(s),
        other => other.to_string(),
    }
}

/// A basic string on one line: newlines and other control characters escaped.
fn basic_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_parses_back_with_the_same_values() {
        let mut doc = Doc::default();
        doc.table(
            "[[builder]]",
            Vec::new(),
            vec![("name".into(), toml::Value::String("b".into()))],
        );
        let mut env = toml::map::Map::new();
        env.insert("A B".into(), toml::Value::String("x\ny\"z".into()));
        doc.table(
            "[[builder.step]]",
            vec!["first\nsecond\u{7}".into()],
            vec![
                (
                    "command".into(),
                    toml::Value::String("echo '%%' \\ \t".into()),
                ),
                ("env".into(), toml::Value::Table(env)),
                ("n".into(), toml::Value::Integer(3)),
            ],
        );
        let text = doc.render(&["head".into()]);
        assert!(
            text.contains("# TODO(import): first\n#   second?\n"),
            "{text}"
        );
        let parsed: toml::Table = text.parse().unwrap();
        let step = &parsed["builder"][0]["step"][0];
        assert_eq!(step["command"].as_str(), Some("echo '%%' \\ \t"));
        assert_eq!(step["env"]["A B"].as_str(), Some("x\ny\"z"));
    }
}
