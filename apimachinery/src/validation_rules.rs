//! CRD validation rules (`x-kubernetes-validations`): CEL rules on the nodes of a structural
//! schema, checked when a CRD is written (they must compile) and evaluated on every write of a
//! custom resource, as kube-apiserver's apiextensions server does.
//!
//! A rule sees `self`, the value at its schema node; a *transition rule* also names `oldSelf`,
//! the stored value at the same place, and runs only on updates where that value exists (items
//! of `listType: map` lists are matched by their keys, map values by their key, other list
//! items not at all). A failed rule is reported at its node's path (plus its `fieldPath`) with
//! its `reason` (default `FieldValueInvalid`): `spec.replicas: Invalid value: "integer":
//! MESSAGE`, MESSAGE being `messageExpression`'s result, or `message`, or `failed rule: RULE`.

use serde_json::Value;

use crate::cel::{self, Activation};
use crate::status::FieldError;

/// Which rules run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rules {
    /// The rules that do not name `oldSelf` (on creates and updates).
    Plain,
    /// The transition rules, those naming `oldSelf` (on updates).
    Transition,
}

const VARIABLES: &[&str] = &["self", "oldSelf"];

const REASONS: &[&str] = &[
    "FieldValueInvalid",
    "FieldValueForbidden",
    "FieldValueRequired",
    "FieldValueDuplicate",
];

/// Problems with the rules of a CRD schema (at `path`, such as
/// `spec.versions[0].schema.openAPIV3Schema`): rules and message expressions that do not
/// compile, unknown reasons, field paths that are not paths.
pub fn check_schema(schema: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    walk_schema(schema, path, &mut errs);
    errs
}

fn walk_schema(schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for (i, rule) in rules_of(schema).iter().enumerate() {
        let at = format!("{path}.x-kubernetes-validations[{i}]");
        let Some(text) = rule.get("rule").and_then(Value::as_str) else {
            errs.push(FieldError::required(format!("{at}.rule")));
            continue;
        };
        if let Err(e) = cel::compile(text, VARIABLES) {
            errs.push(FieldError::invalid(format!("{at}.rule"), text, e));
        }
        if let Some(m) = rule.get("messageExpression").and_then(Value::as_str)
            && let Err(e) = cel::compile(m, VARIABLES)
        {
            errs.push(FieldError::invalid(format!("{at}.messageExpression"), m, e));
        }
        if let Some(r) = rule.get("reason").and_then(Value::as_str)
            && !REASONS.contains(&r)
        {
            errs.push(FieldError::not_supported(
                format!("{at}.reason"),
                &Value::from(r),
                REASONS,
            ));
        }
        if let Some(p) = rule.get("fieldPath").and_then(Value::as_str)
            && !valid_field_path(p)
        {
            errs.push(FieldError::invalid(
                format!("{at}.fieldPath"),
                p,
                "fieldPath must be a valid path starting with '.'",
            ));
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, s) in props {
            walk_schema(s, &format!("{path}.properties[{name}]"), errs);
        }
    }
    if let Some(items) = schema.get("items").filter(|v| v.is_object()) {
        walk_schema(items, &format!("{path}.items"), errs);
    }
    if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        walk_schema(extra, &format!("{path}.additionalProperties"), errs);
    }
}

/// `.spec.replicas`, `.ports[0]`, `['a.b']`: a path below the rule's node.
fn valid_field_path(p: &str) -> bool {
    p.starts_with(['.', '['])
        && !p.ends_with('.')
        && !p.contains("..")
        && p.chars().all(|c| !c.is_whitespace() || c == ' ')
}

fn rules_of(schema: &Value) -> &[Value] {
    schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Evaluates the rules of `which` kind under `schema` against `obj` (and, for transition
/// rules, `old`), returning every failure.
pub fn validate(schema: &Value, obj: &Value, old: Option<&Value>, which: Rules) -> Vec<FieldError> {
    let mut errs = Vec::new();
    walk(schema, obj, old, "", which, &mut errs);
    errs
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn walk(
    schema: &Value,
    obj: &Value,
    old: Option<&Value>,
    path: &str,
    which: Rules,
    errs: &mut Vec<FieldError>,
) {
    if obj.is_null() {
        return;
    }
    for rule in rules_of(schema) {
        evaluate(schema, rule, obj, old, path, which, errs);
    }
    match obj {
        Value::Object(fields) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|v| v.is_object());
            for (name, value) in fields {
                let Some(s) = props.and_then(|p| p.get(name)).or(extra) else {
                    continue;
                };
                let before = old.and_then(|o| o.get(name));
                walk(s, value, before, &join(path, name), which, errs);
            }
        }
        Value::Array(items) => {
            let Some(s) = schema.get("items").filter(|v| v.is_object()) else {
                return;
            };
            let keys: Vec<&str> = match schema.get("x-kubernetes-list-type").and_then(Value::as_str)
            {
                Some("map") => schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|k| k.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            for (i, item) in items.iter().enumerate() {
                let before = if keys.is_empty() {
                    None
                } else {
                    old.and_then(Value::as_array).and_then(|olds| {
                        olds.iter()
                            .find(|o| keys.iter().all(|k| o.get(k) == item.get(k)))
                    })
                };
                walk(s, item, before, &format!("{path}[{i}]"), which, errs);
            }
        }
        _ => {}
    }
}

fn schema_type(schema: &Value, obj: &Value) -> &'static str {
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => "object",
        Some("array") => "array",
        Some("string") => "string",
        Some("integer") => "integer",
        Some("number") => "number",
        Some("boolean") => "boolean",
        _ => match obj {
            Value::Object(_) => "object",
            Value::Array(_) => "array",
            Value::String(_) => "string",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_f64() => "number",
            _ => "integer",
        },
    }
}

fn evaluate(
    schema: &Value,
    rule: &Value,
    obj: &Value,
    old: Option<&Value>,
    path: &str,
    which: Rules,
    errs: &mut Vec<FieldError>,
) {
    let Some(text) = rule.get("rule").and_then(Value::as_str) else {
        return;
    };
    let program = match cel::compile(text, VARIABLES) {
        Ok(p) => p,
        // The CRD was checked when written; a rule that no longer compiles is reported.
        Err(e) => {
            errs.push(FieldError::invalid(at(path), schema_type(schema, obj), e));
            return;
        }
    };
    let transition = program.references("oldSelf");
    match (which, transition) {
        (Rules::Plain, true) | (Rules::Transition, false) => return,
        (Rules::Transition, true) if old.is_none() => return,
        _ => {}
    }
    let activation = Activation::new()
        .bind("self", Some(obj))
        .bind("oldSelf", old);
    let failed = match cel::evaluate_bool(&program, &activation) {
        Ok(true) => return,
        Ok(false) => message(rule, text, &activation),
        Err(e) => format!("{text}: {e}"),
    };
    let mut field = path.to_string();
    if let Some(p) = rule.get("fieldPath").and_then(Value::as_str) {
        field = format!("{path}{p}").trim_start_matches('.').to_string();
    }
    let field = at(&field);
    let kind = schema_type(schema, obj);
    errs.push(match rule.get("reason").and_then(Value::as_str) {
        Some("FieldValueForbidden") => FieldError::forbidden(field, failed),
        Some("FieldValueRequired") => FieldError::required_because(field, failed),
        Some("FieldValueDuplicate") => FieldError {
            field,
            reason: "FieldValueDuplicate".into(),
            message: format!("Duplicate value: \"{kind}\""),
        },
        _ => FieldError::invalid(field, kind, failed),
    });
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "<root>".to_string()
    } else {
        path.to_string()
    }
}

/// The message of a failed rule: `messageExpression`'s non-empty result, else `message`, else
/// `failed rule: RULE`.
fn message(rule: &Value, text: &str, activation: &Activation) -> String {
    if let Some(m) = rule.get("messageExpression").and_then(Value::as_str)
        && let Ok(p) = cel::compile(m, VARIABLES)
        && let Ok(s) = cel::evaluate_string(&p, activation)
        && !s.trim().is_empty()
    {
        return s;
    }
    match rule.get("message").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => format!("failed rule: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.replicas <= self.max", "messageExpression": "'replicas ' + string(self.replicas) + ' over ' + string(self.max)", "fieldPath": ".replicas"},
                ],
                "properties": {
                    "replicas": {"type": "integer", "x-kubernetes-validations": [
                        {"rule": "self >= oldSelf", "message": "replicas may not decrease"},
                    ]},
                    "max": {"type": "integer"},
                    "name": {"type": "string", "x-kubernetes-validations": [
                        {"rule": "self.startsWith('a')"},
                        {"rule": "self.size() < 10", "reason": "FieldValueForbidden", "message": "too long"},
                    ]},
                },
            }},
        })
    }

    fn check(obj: Value, old: Option<Value>, which: Rules, expected: &[&str]) {
        let errs = validate(&schema(), &obj, old.as_ref(), which);
        let got: Vec<String> = errs
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn plain_rules_see_self_at_their_node() {
        check(
            json!({"spec": {"replicas": 3, "max": 5, "name": "abc"}}),
            None,
            Rules::Plain,
            &[],
        );
        check(
            json!({"spec": {"replicas": 7, "max": 5, "name": "bcdefghijkl"}}),
            None,
            Rules::Plain,
            &[
                "spec.replicas: Invalid value: \"object\": replicas 7 over 5",
                "spec.name: Invalid value: \"string\": failed rule: self.startsWith('a')",
                "spec.name: Forbidden: too long",
            ],
        );
    }

    #[test]
    fn transition_rules_run_only_against_an_old_value() {
        let new = json!({"spec": {"replicas": 2, "max": 5, "name": "a"}});
        check(new.clone(), None, Rules::Transition, &[]);
        check(
            new.clone(),
            Some(json!({"spec": {"replicas": 3}})),
            Rules::Transition,
            &["spec.replicas: Invalid value: \"integer\": replicas may not decrease"],
        );
        check(
            new.clone(),
            Some(json!({"spec": {"replicas": 1}})),
            Rules::Transition,
            &[],
        );
        check(new, Some(json!({"spec": {}})), Rules::Transition, &[]);
    }

    #[test]
    fn bad_rules_are_found_in_the_schema() {
        let schema = json!({"type": "object", "properties": {"spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.replicas >"},
                {"rule": "other > 1"},
                {"rule": "self.a", "reason": "Nope", "fieldPath": "a.b"},
            ],
        }}});
        let errs = check_schema(&schema, "spec.versions[0].schema.openAPIV3Schema");
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        let at =
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations";
        assert_eq!(
            fields,
            [
                format!("{at}[0].rule"),
                format!("{at}[1].rule"),
                format!("{at}[2].reason"),
                format!("{at}[2].fieldPath"),
            ]
        );
        assert!(
            errs[1].message.contains("undeclared reference to 'other'"),
            "{}",
            errs[1].message
        );
    }
}
