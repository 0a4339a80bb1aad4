//! `values.schema.json`: the JSON-schema subset charts use (`type`, `properties`, `required`,
//! `enum`, `minimum`/`maximum`, `pattern`, `items`, `additionalProperties`).

use serde_json::Value;

/// One way the values break the schema: the value's path (`image.tag`) and the problem.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    /// Dotted path of the offending value; empty for the whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(v: &Value, wanted: &str) -> bool {
    let actual = type_name(v);
    actual == wanted || (wanted == "number" && actual == "integer")
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Checks `value` against `schema`, collecting every violation.
pub fn validate(schema: &Value, value: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    check(schema, value, "", &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn check(schema: &Value, value: &Value, path: &str, out: &mut Vec<Violation>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    let mut fail = |message: String| {
        out.push(Violation {
            path: path.to_string(),
            message,
        })
    };
    if let Some(t) = schema.get("type") {
        let wanted: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !wanted.is_empty() && !wanted.iter().any(|w| has_type(value, w)) {
            fail(format!(
                "expected {}, found {}",
                wanted.join(" or "),
                type_name(value)
            ));
            return;
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        fail(format!("must be one of {}, found {value}", list.join(", ")));
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            fail(format!("must be at least {min}, found {value}"));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            fail(format!("must be at most {max}, found {value}"));
        }
    }
    if let (Some(s), Some(pattern)) = (
        value.as_str(),
        schema.get("pattern").and_then(Value::as_str),
    ) {
        match regex::Regex::new(pattern) {
            Ok(re) if !re.is_match(s) => {
                fail(format!("{s:?} does not match the pattern {pattern:?}"))
            }
            Ok(_) => {}
            Err(_) => fail(format!(
                "the schema's pattern {pattern:?} is not a valid regular expression"
            )),
        }
    }
    if let Value::Object(map) = value {
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(required)) = schema.get("required") {
            for key in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(key) {
                    out.push(Violation {
                        path: join(path, key),
                        message: "is required".into(),
                    });
                }
            }
        }
        for (key, child) in map {
            let child_path = join(path, key);
            match properties.and_then(|p| p.get(key)) {
                Some(s) => check(s, child, &child_path, out),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => out.push(Violation {
                        path: child_path,
                        message: "is not allowed here (additionalProperties is false)".into(),
                    }),
                    Some(s @ Value::Object(_)) => check(s, child, &child_path, out),
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(item_schema, item, &format!("{path}[{i}]"), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_case(schema: Value, value: Value, expected: &[(&str, &str)]) {
        let got: Vec<(String, String)> = validate(&schema, &value)
            .into_iter()
            .map(|v| (v.path, v.message))
            .collect();
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .collect();
        assert_eq!(got, expected, "{value}");
    }

    #[test]
    fn values_are_checked_against_the_schema_subset() {
        let schema = json!({
            "type": "object",
            "required": ["image"],
            "additionalProperties": false,
            "properties": {
                "image": {"type": "string", "pattern": "^[a-z./:0-9-]+$"},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                "mode": {"enum": ["a", "b"]},
                "ports": {"type": "array", "items": {"type": "integer"}},
            }
        });
        check_case(
            schema.clone(),
            json!({"image": "web:1", "replicas": 3, "ports": [80]}),
            &[],
        );
        check_case(
            schema.clone(),
            json!({"replicas": "3", "mode": "c", "ports": [80, "x"], "extra": 1}),
            &[
                (
                    "extra",
                    "is not allowed here (additionalProperties is false)",
                ),
                ("image", "is required"),
                ("mode", "must be one of \"a\", \"b\", found \"c\""),
                ("ports[1]", "expected integer, found string"),
                ("replicas", "expected integer, found string"),
            ],
        );
        check_case(
            schema,
            json!({"image": "Web!", "replicas": 0}),
            &[
                (
                    "image",
                    "\"Web!\" does not match the pattern \"^[a-z./:0-9-]+$\"",
                ),
                ("replicas", "must be at least 1, found 0"),
            ],
        );
    }
}
