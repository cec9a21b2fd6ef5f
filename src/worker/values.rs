//! Jelly values from workers as JSON, for storage and the API.

use pbwire::jelly::Value;
use serde_json::{Map, Value as Json};

/// A readable JSON form: strings of either Python generation become JSON strings
/// (bytes that are not UTF-8 with replacement characters), containers nest, anything
/// else is described.
pub fn value_to_json(v: &Value) -> Json {
    value_to_json_at(v, 0)
}

fn value_to_json_at(v: &Value, depth: usize) -> Json {
    if depth > 32 {
        return Json::String("…".into());
    }
    match v {
        Value::None => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => i
            .to_i64()
            .map(Json::from)
            .unwrap_or_else(|| Json::String(i.to_string())),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Value::Bytes(_) | Value::Text(_) => {
            Json::String(v.as_str_lossy().unwrap_or_default().into_owned())
        }
        Value::List(items) | Value::Tuple(items) | Value::Set(items) | Value::FrozenSet(items) => {
            Json::Array(
                items
                    .iter()
                    .map(|i| value_to_json_at(i, depth + 1))
                    .collect(),
            )
        }
        Value::Dict(pairs) => {
            let mut m = Map::new();
            for (k, val) in pairs {
                let key = k
                    .as_str_lossy()
                    .map(|s| s.into_owned())
                    .unwrap_or_else(|| format!("{k:?}"));
                m.insert(key, value_to_json_at(val, depth + 1));
            }
            Json::Object(m)
        }
        Value::Reference(_, inner) => value_to_json_at(inner, depth + 1),
        other => Json::String(format!("{other:?}")),
    }
}
