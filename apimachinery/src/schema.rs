//! Structural OpenAPI v3 schemas of CustomResourceDefinitions: pruning unknown fields,
//! defaulting from the schema and validating custom resources, in that order, as
//! kube-apiserver's apiextensions server does.
//!
//! Supported: `type` (with `nullable`, `x-kubernetes-int-or-string`), `properties`,
//! `additionalProperties`, `items`, `required`, `enum`, `pattern`, `minimum`/`maximum` (and
//! their exclusive forms), `multipleOf`, `minLength`/`maxLength`, `minItems`/`maxItems`,
//! `minProperties`/`maxProperties`, `x-kubernetes-list-type: set`, `allOf`/`anyOf`/`oneOf`/`not`
//! value checks, `x-kubernetes-preserve-unknown-fields`, `x-kubernetes-embedded-resource` and
//! `default`. Not supported: `format` checks and CEL (`x-kubernetes-validations`).

use serde_json::{Map, Value};

use crate::status::FieldError;

/// Whether unknown fields are kept below this schema node.
fn preserves(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
}

fn props(schema: &Value) -> Option<&Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}

fn additional(schema: &Value) -> Option<&Value> {
    schema.get("additionalProperties").filter(|v| v.is_object())
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Removes the fields the schema does not know (unless preserved) and returns their paths, as
/// `fieldValidation` reports them (`spec.foo`). The root keeps `apiVersion`, `kind` and
/// `metadata`.
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_at(schema, obj, "", true, &mut pruned);
    pruned
}

fn prune_at(schema: &Value, v: &mut Value, path: &str, meta: bool, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let keep_meta =
                meta || schema.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true));
            let known = props(schema);
            let extra = additional(schema);
            let preserve = preserves(schema);
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if keep_meta && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child_path = join(path, &k);
                let child_schema = known.and_then(|p| p.get(&k)).or(extra);
                match child_schema {
                    Some(s) => {
                        if let Some(child) = m.get_mut(&k) {
                            prune_at(s, child, &child_path, false, out);
                        }
                    }
                    None if preserve => {}
                    None => {
                        m.remove(&k);
                        out.push(child_path);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_at(s, item, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

/// Fills in the schema's `default`s for absent fields (and for `null` where the field is not
/// nullable), at every level present in the object.
pub fn default(schema: &Value, obj: &mut Value) {
    match obj {
        Value::Object(m) => {
            if let Some(known) = props(schema) {
                for (k, s) in known {
                    let nullable = s.get("nullable") == Some(&Value::Bool(true));
                    let missing = match m.get(k) {
                        None => true,
                        Some(Value::Null) => !nullable,
                        Some(_) => false,
                    };
                    if missing && let Some(d) = s.get("default") {
                        m.insert(k.clone(), d.clone());
                    }
                    if let Some(child) = m.get_mut(k) {
                        default(s, child);
                    }
                }
            } else if let Some(s) = additional(schema) {
                for child in m.values_mut() {
                    default(s, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for item in items {
                    default(s, item);
                }
            }
        }
        _ => {}
    }
}

/// Problems with an object under its schema, every one of them, with field paths.
pub fn validate(schema: &Value, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(m) = obj.as_object() {
        // The root's apiVersion, kind and metadata are checked by the server, not the schema.
        let mut rest = m.clone();
        for k in ["apiVersion", "kind", "metadata"] {
            rest.remove(k);
        }
        let mut root = schema.clone();
        if let Some(p) = root.get_mut("properties").and_then(Value::as_object_mut) {
            p.remove("metadata");
            p.remove("apiVersion");
            p.remove("kind");
        }
        if let Some(r) = root.get_mut("required").and_then(Value::as_array_mut) {
            r.retain(|f| !matches!(f.as_str(), Some("apiVersion" | "kind" | "metadata")));
        }
        check(&root, &Value::Object(rest), "", &mut errs);
    }
    errs
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(schema: &Value, v: &Value) -> bool {
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if int_or_string {
        return matches!(type_name(v), "integer" | "string");
    }
    match schema.get("type").and_then(Value::as_str) {
        None | Some("") => true,
        Some("number") => v.is_number(),
        Some("integer") => {
            type_name(v) == "integer"
                || v.as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
        }
        Some(t) => type_name(v) == t,
    }
}

fn num(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

fn count(schema: &Value, key: &str) -> Option<usize> {
    schema
        .get(key)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
}

fn show(path: &str) -> &str {
    if path.is_empty() { "<root>" } else { path }
}

fn check(schema: &Value, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if v.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) && schema.get("type").is_some() {
            let t = schema.get("type").and_then(Value::as_str).unwrap_or("");
            errs.push(FieldError::invalid_value(
                show(path),
                &Value::from("null"),
                format!("{} in body must be of type {t}: \"null\"", show(path)),
            ));
        }
        return;
    }
    if !type_ok(schema, v) {
        let t = if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
            "integer or string"
        } else {
            schema.get("type").and_then(Value::as_str).unwrap_or("")
        };
        let got = type_name(v);
        errs.push(FieldError::invalid_value(
            show(path),
            &Value::from(got),
            format!("{} in body must be of type {t}: \"{got}\"", show(path)),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let names: Vec<String> = allowed
            .iter()
            .map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_string))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        errs.push(FieldError::not_supported(show(path), v, &refs));
    }
    let p = show(path);
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            let exclusive = |k: &str| schema.get(k) == Some(&Value::Bool(true));
            if let Some(min) = num(schema, "minimum") {
                if exclusive("exclusiveMinimum") && x <= min {
                    errs.push(FieldError::invalid_value(
                        p,
                        v,
                        format!("{p} in body should be greater than {min}"),
                    ));
                } else if x < min {
                    errs.push(FieldError::invalid_value(
                        p,
                        v,
                        format!("{p} in body should be greater than or equal to {min}"),
                    ));
                }
            }
            if let Some(max) = num(schema, "maximum") {
                if exclusive("exclusiveMaximum") && x >= max {
                    errs.push(FieldError::invalid_value(
                        p,
                        v,
                        format!("{p} in body should be less than {max}"),
                    ));
                } else if x > max {
                    errs.push(FieldError::invalid_value(
                        p,
                        v,
                        format!("{p} in body should be less than or equal to {max}"),
                    ));
                }
            }
            if let Some(m) = num(schema, "multipleOf")
                && m > 0.0
                && (x / m).fract() != 0.0
            {
                errs.push(FieldError::invalid_value(
                    p,
                    v,
                    format!("{p} in body should be a multiple of {m}"),
                ));
            }
        }
        Value::String(s) => {
            let len = s.chars().count();
            if let Some(min) = count(schema, "minLength")
                && len < min
            {
                errs.push(FieldError::invalid_value(
                    p,
                    v,
                    format!("{p} in body should be at least {min} chars long"),
                ));
            }
            if let Some(max) = count(schema, "maxLength")
                && len > max
            {
                errs.push(FieldError::too_long(p, max));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(pattern) {
                    Ok(re) if !re.is_match(s) => errs.push(FieldError::invalid_value(
                        p,
                        v,
                        format!("{p} in body should match '{pattern}'"),
                    )),
                    Ok(_) => {}
                    Err(_) => errs.push(FieldError::invalid_value(
                        p,
                        v,
                        format!(
                            "the schema's pattern '{pattern}' is not a valid regular expression"
                        ),
                    )),
                }
            }
        }
        Value::Array(items) => {
            if let Some(min) = count(schema, "minItems")
                && items.len() < min
            {
                errs.push(FieldError::invalid_value(
                    p,
                    &Value::from(items.len()),
                    format!("{p} in body should have at least {min} items"),
                ));
            }
            if let Some(max) = count(schema, "maxItems")
                && items.len() > max
            {
                errs.push(FieldError::too_many(p, items.len(), max));
            }
            if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        errs.push(FieldError::duplicate(format!("{path}[{i}]"), item));
                    }
                }
            }
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(s, item, &format!("{path}[{i}]"), errs);
                }
            }
        }
        Value::Object(m) => {
            if let Some(min) = count(schema, "minProperties")
                && m.len() < min
            {
                errs.push(FieldError::invalid_value(
                    p,
                    &Value::from(m.len()),
                    format!("{p} in body should have at least {min} properties"),
                ));
            }
            if let Some(max) = count(schema, "maxProperties")
                && m.len() > max
            {
                errs.push(FieldError::too_many(p, m.len(), max));
            }
            for r in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(r) = r.as_str()
                    && !m.contains_key(r)
                {
                    errs.push(FieldError::required(join(path, r)));
                }
            }
            let known = props(schema);
            let extra = additional(schema);
            for (k, child) in m {
                if let Some(s) = known.and_then(|p| p.get(k)).or(extra) {
                    check(s, child, &join(path, k), errs);
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
    combinators(schema, v, path, errs);
}

/// `allOf`, `anyOf`, `oneOf` and `not`: value checks only (structural schemas forbid types and
/// properties that are not also in the main schema).
fn combinators(schema: &Value, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let p = show(path);
    let passes = |s: &Value| {
        let mut e = Vec::new();
        check(s, v, path, &mut e);
        e
    };
    for s in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        errs.extend(passes(s));
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array)
        && !any.is_empty()
        && !any.iter().any(|s| passes(s).is_empty())
    {
        errs.push(FieldError::invalid_value(
            p,
            v,
            format!("{p} in body must match at least one schema (anyOf)"),
        ));
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array)
        && !one.is_empty()
        && one.iter().filter(|s| passes(s).is_empty()).count() != 1
    {
        errs.push(FieldError::invalid_value(
            p,
            v,
            format!("{p} in body must match exactly one schema (oneOf)"),
        ));
    }
    if let Some(not) = schema.get("not")
        && passes(not).is_empty()
    {
        errs.push(FieldError::invalid_value(
            p,
            v,
            format!("{p} in body should not match the schema (not)"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["image"], "properties": {
                "image": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 5, "default": 1},
                "mode": {"type": "string", "enum": ["fast", "slow"]},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "minLength": 1}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "note": {"type": "string", "nullable": true},
                "port": {"x-kubernetes-int-or-string": true}
            }}
        }})
    }

    fn check(obj: Value, expected: &[&str]) {
        let got: Vec<String> = validate(&schema(), &obj)
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        assert_eq!(got, expected, "{obj}");
    }

    #[test]
    fn custom_resources_are_validated_against_their_schema() {
        check(
            json!({"apiVersion": "x/v1", "kind": "W", "metadata": {}, "spec": {"image": "abc", "replicas": 2, "mode": "fast", "tags": ["a"], "labels": {"a": "b"}, "note": null, "port": "http"}}),
            &[],
        );
        check(
            json!({"spec": {"replicas": "two", "mode": "medium", "tags": ["a", "", "c"], "labels": {"a": 1}, "port": true}}),
            &[
                "spec.image: Required value",
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
                "spec.mode: Unsupported value: \"medium\": supported values: \"fast\", \"slow\"",
                "spec.tags: Too many: 3: must have at most 2 items",
                "spec.tags[1]: Invalid value: \"\": spec.tags[1] in body should be at least 1 chars long",
                "spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\"",
                "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer or string: \"boolean\"",
            ],
        );
        check(
            json!({"spec": {"image": "ABCDEFGHIJ", "replicas": 9}}),
            &[
                "spec.image: Too long: may not be more than 8 bytes",
                "spec.image: Invalid value: \"ABCDEFGHIJ\": spec.image in body should match '^[a-z]+$'",
                "spec.replicas: Invalid value: 9: spec.replicas in body should be less than or equal to 5",
            ],
        );
    }

    #[test]
    fn unknown_fields_are_pruned_unless_preserved_and_defaults_filled() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
            "spec": {"image": "a", "foo": 1, "extra": {"anything": [1]}, "tags": ["x"]}, "bar": true});
        let pruned = prune(&schema(), &mut obj);
        assert_eq!(pruned, vec!["spec.foo", "bar"]);
        default(&schema(), &mut obj);
        assert_eq!(
            obj,
            json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
                "spec": {"image": "a", "extra": {"anything": [1]}, "tags": ["x"], "replicas": 1}})
        );
    }
}
