//! `vars`: `$(NAME)` references in kustomize's var reference fields (container commands,
//! args, env values, …) replaced by a field of a named object, once every name is final.

use super::fieldpath;
use super::fields::{self, FieldSpec};
use super::{Ctx, Error, Resource};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// An entry of `vars`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Var {
    pub name: String,
    pub objref: ObjRef,
    pub fieldref: FieldRef,
}

/// The object a var reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ObjRef {
    pub api_version: String,
    pub group: String,
    pub version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

impl ObjRef {
    /// Group and version, from `apiVersion` when it is given.
    fn group_version(&self) -> (String, String) {
        if self.api_version.is_empty() {
            return (self.group.clone(), self.version.clone());
        }
        match self.api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (self.group.clone(), self.api_version.clone()),
        }
    }
}

/// The field a var reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldRef {
    #[serde(rename = "fieldPath")]
    pub field_path: String,
}

impl Var {
    fn field_path(&self) -> &str {
        if self.fieldref.field_path.is_empty() {
            "metadata.name"
        } else {
            &self.fieldref.field_path
        }
    }
}

/// Records the vars of one kustomization on the objects they read (by any name those objects
/// have had), after its transformers ran; `all` collects every var of the build.
pub(crate) fn merge(
    ctx: &Ctx,
    resources: &mut [Resource],
    all: &mut Vec<Var>,
) -> Result<(), Error> {
    for var in &ctx.k.vars {
        let invalid = |message: String| ctx.invalid("vars", Some(&var.name), message);
        if all.iter().any(|v| v.name == var.name) {
            return Err(invalid(format!("var '{}' already encountered", var.name)));
        }
        let (group, version) = var.objref.group_version();
        let o = &var.objref;
        let namespaced_match =
            !o.namespace.is_empty() || super::transform::is_cluster_scoped(&o.kind);
        let want_ns = super::effective_namespace(&o.kind, &o.namespace);
        let matched: Vec<usize> = resources
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.group() == group
                    && apimachinery::registry::split_api_version(r.api_version()).1 == version
                    && r.kind() == o.kind
                    && r.all_names()
                        .any(|(name, ns)| name == o.name && (!namespaced_match || ns == want_ns))
            })
            .map(|(i, _)| i)
            .collect();
        match matched[..] {
            [] => {}
            [i] => resources[i].ref_vars.push(var.name.clone()),
            _ => {
                return Err(invalid(format!(
                    "found {} resId matches for var {} (unable to disambiguate)",
                    matched.len(),
                    var.name
                )));
            }
        }
        all.push(var.clone());
    }
    Ok(())
}

/// Replaces `$(NAME)` in the var reference fields of every object.
pub(crate) fn resolve(
    resources: &mut [Resource],
    vars: &[Var],
    specs: &[FieldSpec],
) -> Result<(), String> {
    if vars.is_empty() {
        return Ok(());
    }
    let mut values = BTreeMap::new();
    let mut sorted: Vec<&Var> = vars.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for var in sorted {
        let Some(r) = resources.iter().find(|r| r.ref_vars.contains(&var.name)) else {
            return Err(format!(
                "var '{}' cannot be mapped to a field in the set of known resources",
                var.name
            ));
        };
        let parts = fieldpath::parse_source(var.field_path())
            .map_err(|e| format!("var '{}': {e}", var.name))?;
        let value = fieldpath::lookup(&r.value, &parts)
            .ok()
            .flatten()
            .ok_or_else(|| {
                format!(
                    "field specified in var '{}' ({}) not found in {}",
                    var.name,
                    var.field_path(),
                    r.id()
                )
            })?;
        let value = match value {
            Value::Null => Value::String(String::new()),
            v => v.clone(),
        };
        values.insert(var.name.clone(), value);
    }
    for r in resources.iter_mut() {
        for spec in specs {
            if !spec.selects(r.api_version(), r.kind()) {
                continue;
            }
            fields::visit(
                &mut r.value,
                &fields::segments(&spec.path),
                false,
                &mut |node| substitute(node, &values),
            );
        }
    }
    Ok(())
}

/// Expands the strings of a field: a string, or the string values of a map.
fn substitute(node: &mut Value, values: &BTreeMap<String, Value>) {
    match node {
        Value::String(s) => *node = expand(s, values),
        Value::Object(map) => {
            for v in map.values_mut() {
                if let Value::String(s) = v {
                    *v = expand(s, values);
                }
            }
        }
        _ => {}
    }
}

/// Kubernetes' `$(VAR)` expansion: `$$` escapes, unknown vars stay, and a string that is one
/// reference takes the type of the value (a number stays a number).
pub(crate) fn expand(input: &str, values: &BTreeMap<String, Value>) -> Value {
    let mapped = |name: &str| -> Option<&Value> {
        values.get(name).filter(|v| !v.is_object() && !v.is_array())
    };
    if let Some(name) = input.strip_prefix("$(").and_then(|s| s.strip_suffix(')'))
        && !name.contains(')')
        && let Some(v) = mapped(name)
    {
        return v.clone();
    }
    let bytes = input.as_bytes();
    let mut out = String::new();
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(end) => {
                        let name = &rest[1..end];
                        match mapped(name) {
                            Some(v) => out.push_str(&fieldpath::scalar_text(v).unwrap_or_default()),
                            None => out.push_str(&format!("$({name})")),
                        }
                        end + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    let c = rest.chars().next().unwrap_or_default();
                    out.push('$');
                    out.push(c);
                    c.len_utf8()
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint.min(input.len())..]);
    Value::String(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let values: BTreeMap<String, Value> = [
            ("SVC".to_string(), json!("web")),
            ("PORT".to_string(), json!(8080)),
            ("MAP".to_string(), json!({"a": 1})),
        ]
        .into_iter()
        .collect();
        let table: &[(&str, Value)] = &[
            ("$(SVC)", json!("web")),
            ("$(PORT)", json!(8080)),
            ("http://$(SVC):$(PORT)/", json!("http://web:8080/")),
            ("$$(SVC)", json!("$(SVC)")),
            ("$(NOPE) and $(SVC)", json!("$(NOPE) and web")),
            ("$(MAP)", json!("$(MAP)")),
            ("cost $5", json!("cost $5")),
            ("open $(SVC", json!("open $(SVC")),
            ("end $", json!("end $")),
            ("", json!("")),
        ];
        for (input, expected) in table {
            assert_eq!(&expand(input, &values), expected, "{input}");
        }
    }
}
