//! Chart values: layering (chart defaults < value files < inline values < `--set`) and the
//! `--set key.path=value` syntax.

use serde_json::{Map, Value};

/// A `--set` expression that cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("--set {expression}: {message}")]
pub struct SetError {
    /// The expression as given.
    pub expression: String,
    /// What is wrong with it.
    pub message: String,
}

/// Merges `overlay` into `base`: maps merge key by key, anything else replaces, `null` deletes.
pub fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(existing) = b.get_mut(k) {
                    merge(existing, v);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Splits at unescaped `sep`, keeping escapes for the next stage.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                let last = out.last_mut().expect("never empty");
                last.push('\\');
                last.push(next);
            }
        } else if c == sep {
            out.push(String::new());
        } else {
            out.last_mut().expect("never empty").push(c);
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// How Helm types a `--set` value: integers, booleans and `null`; everything else is a string.
fn typed(raw: &str) -> Value {
    match raw {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" => Value::Null,
        _ => {
            let digits = raw.strip_prefix('-').unwrap_or(raw);
            let leading_zero = digits.len() > 1 && digits.starts_with('0');
            match raw.parse::<i64>() {
                Ok(n) if !leading_zero => Value::from(n),
                _ => Value::String(raw.to_string()),
            }
        }
    }
}

/// One step of a key path: a map key, optionally indexed into a list (`a[0]`).
enum Step {
    Key(String),
    Index(usize),
}

fn parse_path(expression: &str, path: &str) -> Result<Vec<Step>, SetError> {
    let err = |message: &str| SetError {
        expression: expression.to_string(),
        message: message.to_string(),
    };
    let mut steps = Vec::new();
    for part in split_unescaped(path, '.') {
        let mut rest = part.as_str();
        let key_end = rest.find('[').unwrap_or(rest.len());
        let key = unescape(&rest[..key_end]);
        if key.is_empty() {
            return Err(err("empty key in path"));
        }
        steps.push(Step::Key(key));
        rest = &rest[key_end..];
        while let Some(inner) = rest.strip_prefix('[') {
            let close = inner.find(']').ok_or_else(|| err("unclosed ["))?;
            let index = inner[..close]
                .parse::<usize>()
                .map_err(|_| err("list index must be a non-negative integer"))?;
            steps.push(Step::Index(index));
            rest = &inner[close + 1..];
        }
        if !rest.is_empty() {
            return Err(err("unexpected text after ]"));
        }
    }
    Ok(steps)
}

fn set_path(node: &mut Value, steps: &[Step], value: Value) {
    let Some((first, rest)) = steps.split_first() else {
        *node = value;
        return;
    };
    match first {
        Step::Key(k) => {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            let map = node.as_object_mut().expect("just made an object");
            let child = map.entry(k.clone()).or_insert(Value::Null);
            if rest.is_empty() && value.is_null() {
                map.remove(k);
            } else {
                set_path(child, rest, value);
            }
        }
        Step::Index(i) => {
            if !node.is_array() {
                *node = Value::Array(Vec::new());
            }
            let list = node.as_array_mut().expect("just made a list");
            while list.len() <= *i {
                list.push(Value::Null);
            }
            set_path(&mut list[*i], rest, value);
        }
    }
}

/// Applies one `--set` argument (`a.b=1,c[0]=x`) to `values`.
pub fn apply_set(values: &mut Value, expression: &str) -> Result<(), SetError> {
    for assignment in split_unescaped(expression, ',') {
        if assignment.is_empty() {
            continue;
        }
        let Some((path, raw)) = assignment.split_once('=') else {
            return Err(SetError {
                expression: expression.to_string(),
                message: format!("{assignment}: expected key=value"),
            });
        };
        let steps = parse_path(expression, path)?;
        set_path(values, &steps, typed(&unescape(raw)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(start: Value, set: &str, expected: Result<Value, &str>) {
        let mut values = start;
        let got = apply_set(&mut values, set)
            .map(|_| values)
            .map_err(|e| e.to_string());
        match expected {
            Ok(v) => assert_eq!(got, Ok(v), "{set}"),
            Err(m) => assert!(got.as_ref().is_err_and(|e| e.contains(m)), "{set}: {got:?}"),
        }
    }

    #[test]
    fn set_expressions_write_typed_values_at_paths() {
        check(json!({}), "a.b=1", Ok(json!({"a": {"b": 1}})));
        check(
            json!({"a": {"c": 2}}),
            "a.b=x,d=true",
            Ok(json!({"a": {"b": "x", "c": 2}, "d": true})),
        );
        check(json!({}), "l[1]=x", Ok(json!({"l": [null, "x"]})));
        check(json!({}), r"a\.b=007", Ok(json!({"a.b": "007"})));
        check(json!({"a": 1}), "a=null", Ok(json!({})));
        check(json!({}), "novalue", Err("expected key=value"));
        check(json!({}), "a[x]=1", Err("list index"));
    }

    #[test]
    fn merging_layers_maps_and_replaces_the_rest() {
        let mut base = json!({"a": {"b": 1, "c": [1]}, "d": 1});
        merge(&mut base, &json!({"a": {"c": [2], "e": 3}, "d": null}));
        assert_eq!(base, json!({"a": {"b": 1, "c": [2], "e": 3}}));
    }
}
