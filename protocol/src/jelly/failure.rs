//! Twisted failures as they travel: `CopyableFailure` state, read from either Python
//! generation and written in the shape each generation accepts.

use super::{Copyable, Value, COPYABLE_FAILURE};
use bytes::Bytes;

/// The parts of a remote failure a master needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failure {
    /// Qualified exception class, e.g. `twisted.cred.error.UnauthorizedLogin`.
    pub type_name: String,
    /// `str(exception)`.
    pub value: String,
    /// The class and its bases, qualified; receivers match on these (`failure.check`).
    pub parents: Vec<String>,
    /// Formatted traceback, when the sender shared it.
    pub traceback: Option<String>,
}

/// Which receiver a failure is shaped for (see the protocol reference §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureStyle {
    /// Python 3 Twisted (≥ 24.7 needs text keys, a `parents` key and a text `value`).
    Python3,
    /// Python 2 Twisted: a text `value` breaks its traceback printing, so bytes.
    Python2,
}

impl Failure {
    /// Reads a failure from a `CopyableFailure` value (keys and values may be bytes or
    /// text). `None` if the value is not a failure.
    pub fn from_value(v: &Value) -> Option<Failure> {
        let Value::Copyable(c) = v else { return None };
        if c.class.as_ref() != COPYABLE_FAILURE.as_bytes() {
            return None;
        }
        let state = &c.state;
        let text = |k: &str| {
            state
                .get(k)
                .and_then(|v| v.as_str_lossy())
                .map(|s| s.into_owned())
        };
        let parents = state
            .get("parents")
            .and_then(Value::as_seq)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|p| p.as_str_lossy().map(|s| s.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Some(Failure {
            type_name: text("type").unwrap_or_default(),
            value: text("value").unwrap_or_default(),
            parents,
            traceback: text("traceback"),
        })
    }

    /// Whether the failure is, or derives from, the qualified class `name`.
    pub fn check(&self, name: &str) -> bool {
        self.type_name == name || self.parents.iter().any(|p| p == name)
    }

    /// The failure as a `CopyableFailure` value that `style`'s receivers accept.
    pub fn to_value(&self, style: FailureStyle) -> Value {
        let key = |k: &'static str| match style {
            FailureStyle::Python3 => Value::text(k),
            FailureStyle::Python2 => Value::Bytes(Bytes::from_static(k.as_bytes())),
        };
        let text = |s: &str| match style {
            FailureStyle::Python3 => Value::text(s),
            FailureStyle::Python2 => Value::Bytes(Bytes::copy_from_slice(s.as_bytes())),
        };
        let traceback = self
            .traceback
            .clone()
            .unwrap_or_else(|| "Traceback unavailable\n".to_owned());
        let state = Value::Dict(vec![
            (
                key("type"),
                Value::Bytes(Bytes::copy_from_slice(self.type_name.as_bytes())),
            ),
            (key("value"), text(&self.value)),
            (
                key("parents"),
                Value::List(self.parents.iter().map(|p| text(p)).collect()),
            ),
            (key("traceback"), text(&traceback)),
            (key("frames"), Value::List(vec![])),
            (key("stack"), Value::List(vec![])),
            (key("tb"), Value::None),
            (key("count"), Value::int(0)),
            (key("captureVars"), Value::Bool(false)),
            (key("unsafeTracebacks"), Value::Bool(false)),
        ]);
        Value::Copyable(Box::new(Copyable {
            class: Bytes::from_static(COPYABLE_FAILURE.as_bytes()),
            state,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_it_writes_in_both_styles() {
        let f = Failure {
            type_name: "twisted.cred.error.UnauthorizedLogin".into(),
            value: String::new(),
            parents: vec![
                "twisted.cred.error.UnauthorizedLogin".into(),
                "builtins.Exception".into(),
            ],
            traceback: None,
        };
        for style in [FailureStyle::Python3, FailureStyle::Python2] {
            let back = Failure::from_value(&f.to_value(style)).unwrap();
            assert!(back.check("twisted.cred.error.UnauthorizedLogin"));
            assert_eq!(back.type_name, f.type_name);
            assert_eq!(back.parents, f.parents);
        }
    }

    #[test]
    fn ignores_other_values() {
        assert_eq!(Failure::from_value(&Value::None), None);
    }
}
