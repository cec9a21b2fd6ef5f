//! Bounds on properties that come from outside the configuration: a forced build's
//! `-p NAME=VALUE`, a change's (or a hook's) properties, and what a worker's output
//! sets (`property` of a shell step, `stat`, `glob`, `listdir`). They are checked where
//! they enter, so a build never starts with, or stores, a value over them.

use serde_json::{Map, Value};

/// Longest property name. Names are looked up, never run, but they are stored and
/// shown with every build.
pub const MAX_NAME: usize = 256;

/// Largest value: a string's bytes, or the JSON text of anything else. A branch,
/// a revision, a version string or a list of files is far smaller; a value this large
/// would be copied into every command that names it.
pub const MAX_VALUE: usize = 64 * 1024;

/// Most properties in one forced build or change.
pub const MAX_COUNT: usize = 256;

/// The size a value is counted at against [`MAX_VALUE`].
pub fn value_size(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len(),
        other => other.to_string().len(),
    }
}

/// Whether `name` may name a property: not empty, at most [`MAX_NAME`] bytes, no
/// control characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a property name is empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "property name {:?}... is longer than {MAX_NAME} bytes",
            short(name)
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("property name {name:?} holds a control character"));
    }
    Ok(())
}

/// Whether one property from outside is within the bounds.
pub fn check(name: &str, value: &Value) -> Result<(), String> {
    check_name(name)?;
    let size = value_size(value);
    if size > MAX_VALUE {
        return Err(format!(
            "property {name:?} is {size} bytes, more than the {MAX_VALUE} a value may hold"
        ));
    }
    Ok(())
}

/// Whether a set of properties from outside is within the bounds.
pub fn check_all(properties: &Map<String, Value>) -> Result<(), String> {
    if properties.len() > MAX_COUNT {
        return Err(format!(
            "{} properties, more than the {MAX_COUNT} allowed",
            properties.len()
        ));
    }
    properties.iter().try_for_each(|(k, v)| check(k, v))
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_ordinary_properties() {
        let ok = json!({"branch": "main", "n": 7, "files": ["a", "b"], "x; $(id)": "`id`"});
        assert_eq!(check_all(ok.as_object().unwrap()), Ok(()));
        assert_eq!(check("v", &json!("x".repeat(MAX_VALUE))), Ok(()));
    }

    #[test]
    fn rejects_values_over_the_bound() {
        let e = check("big", &json!("x".repeat(MAX_VALUE + 1))).unwrap_err();
        assert_eq!(
            e,
            "property \"big\" is 65537 bytes, more than the 65536 a value may hold"
        );
        let list = json!(vec!["abcdefgh"; MAX_VALUE / 8]);
        assert!(check("list", &list).unwrap_err().contains("\"list\""));
    }

    #[test]
    fn rejects_bad_names_and_too_many() {
        assert!(check("", &json!(1)).is_err());
        assert!(check(&"n".repeat(MAX_NAME + 1), &json!(1)).is_err());
        assert!(check("a\nb", &json!(1)).unwrap_err().contains("control"));
        let many: Map<String, Value> = (0..=MAX_COUNT).map(|i| (i.to_string(), json!(i))).collect();
        assert!(check_all(&many).unwrap_err().contains("257 properties"));
    }
}
