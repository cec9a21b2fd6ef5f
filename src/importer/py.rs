//! Reading the helper's description of Python values: plain JSON for `None`, numbers,
//! strings and lists; an object with `"$t"` for everything else (dicts, renderables,
//! recorded buildbot objects, callables).

use serde_json::{Map, Value as Json};

/// The `"$t"` of a described object, if it is one.
pub fn tag(v: &Json) -> Option<&str> {
    v.get("$t").and_then(Json::as_str)
}

/// The class name of a recorded object or step.
pub fn class(v: &Json) -> &str {
    v.get("class").and_then(Json::as_str).unwrap_or("?")
}

/// Whether the object's class is buildbot's own (not a subclass in the config).
pub fn is_buildbot(v: &Json) -> bool {
    v.get("module")
        .and_then(Json::as_str)
        .is_some_and(|m| m.starts_with("buildbot."))
}

/// The recorded constructor arguments, by parameter name.
pub fn kwargs(v: &Json) -> Map<String, Json> {
    v.get("kwargs")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default()
}

/// A Python dict's items, or `None` if `v` is not a dict.
pub fn dict_items(v: &Json) -> Option<Vec<(Json, Json)>> {
    if tag(v) != Some("dict") {
        return None;
    }
    let items = v.get("items")?.as_array()?;
    Some(
        items
            .iter()
            .filter_map(|pair| {
                let pair = pair.as_array()?;
                Some((pair.first()?.clone(), pair.get(1)?.clone()))
            })
            .collect(),
    )
}

/// A dict whose keys are strings (or numbers), as a map.
pub fn dict(v: &Json) -> Option<Map<String, Json>> {
    dict_items(v).map(|items| items.into_iter().map(|(k, v)| (plain_key(&k), v)).collect())
}

fn plain_key(k: &Json) -> String {
    match k {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A short Python-like rendering for messages: never a value that may be secret is
/// passed here.
pub fn show(v: &Json) -> String {
    let text = match tag(v) {
        Some("obj") | Some("step") => format!("{}(...)", class(v)),
        Some("callable") | Some("renderer") => v
            .get("repr")
            .and_then(Json::as_str)
            .unwrap_or("?")
            .to_string(),
        Some("object") => v
            .get("repr")
            .and_then(Json::as_str)
            .unwrap_or("?")
            .to_string(),
        Some("dict") => "{...}".to_string(),
        Some(t) => format!("{t}(...)"),
        None => match v {
            Json::Array(items) => {
                let shown: Vec<String> = items.iter().map(show).collect();
                format!("[{}]", shown.join(", "))
            }
            other => other.to_string(),
        },
    };
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(80).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// Python truthiness of a plain value; `None` for objects (renderables, callables).
pub fn truthy(v: &Json) -> Option<bool> {
    match v {
        Json::Null => Some(false),
        Json::Bool(b) => Some(*b),
        Json::Number(n) => Some(n.as_f64() != Some(0.0)),
        Json::String(s) => Some(!s.is_empty()),
        Json::Array(a) => Some(!a.is_empty()),
        Json::Object(_) => dict_items(v).map(|i| !i.is_empty()),
    }
}
