//! Property values from TOML as the JSON values builds carry.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A TOML value as JSON; dates become their text.
pub(super) fn json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(json).collect()),
        toml::Value::Table(t) => json_map(t.iter()),
    }
}

/// A table of TOML values as a JSON object.
pub(super) fn json_object(table: &BTreeMap<String, toml::Value>) -> Map<String, Value> {
    table.iter().map(|(k, v)| (k.clone(), json(v))).collect()
}

fn json_map<'a>(entries: impl Iterator<Item = (&'a String, &'a toml::Value)>) -> Value {
    Value::Object(entries.map(|(k, v)| (k.clone(), json(v))).collect())
}
