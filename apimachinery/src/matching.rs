//! Matching objects against the structured selectors of the API: label maps (a Service's
//! selector, a pod's `nodeSelector`, a runtime's label filter), `LabelSelector`s (workloads,
//! pod affinity, topology spread), `NodeSelector` terms (node affinity) and tolerations against
//! taints. One matcher of each, used by the scheduler, the controllers and the node.
//!
//! The string syntax of label selectors (`a=b,c in (d)`) is [`crate::selector`]'s.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// Something with labels to look up (`BTreeMap` as objects keep them, `HashMap` as CRI does).
pub trait Labels {
    /// The value of the label `key`.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for HashMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// Whether `labels` carry every `key=value` of a label map (a Service's selector, a
/// `nodeSelector`). An empty map matches everything; callers that treat it as "nothing" (a
/// Service without selector) check that first.
pub fn map_matches<'a>(
    selector: impl IntoIterator<Item = (&'a String, &'a String)>,
    labels: &impl Labels,
) -> bool {
    selector
        .into_iter()
        .all(|(k, v)| labels.label(k) == Some(v.as_str()))
}

/// Whether `labels` match a `LabelSelector`. An empty selector matches everything; a missing
/// one (`None` at the call site) matches nothing, as in Kubernetes.
pub fn selector_matches(selector: &LabelSelector, labels: &impl Labels) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(|m| map_matches(m, labels))
        && selector
            .match_expressions
            .iter()
            .flatten()
            .all(|e| expression_matches(e, labels))
}

fn expression_matches(e: &LabelSelectorRequirement, labels: &impl Labels) -> bool {
    let values = e.values.as_deref().unwrap_or_default();
    let value = labels.label(&e.key);
    let listed = |v: &str| values.iter().any(|x| x == v);
    match e.operator.as_str() {
        "In" => value.is_some_and(listed),
        "NotIn" => value.is_none_or(|v| !listed(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

/// Whether a node's labels match a `NodeSelector`: any of its terms (ORed); an empty term list
/// matches nothing.
pub fn node_selector_matches(
    selector: &NodeSelector,
    labels: &impl Labels,
    node_name: &str,
) -> bool {
    selector
        .node_selector_terms
        .iter()
        .any(|t| node_selector_term_matches(t, labels, node_name))
}

/// Whether a node matches one term (its requirements ANDed). A term with no requirements
/// matches nothing. `matchFields` supports `metadata.name`, the only field Kubernetes allows.
pub fn node_selector_term_matches(
    term: &NodeSelectorTerm,
    labels: &impl Labels,
    node_name: &str,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| node_requirement_matches(r, labels.label(&r.key)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && node_requirement_matches(r, Some(node_name)))
}

fn node_requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let listed = |v: &str| values.iter().any(|x| x == v);
    match r.operator.as_str() {
        "In" => value.is_some_and(listed),
        "NotIn" => value.is_none_or(|v| !listed(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a toleration tolerates a taint (Kubernetes' `ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn check(selector: serde_json::Value, pairs: &[(&str, &str)], expected: bool) {
        let l = labels(pairs);
        let name = l.get("name").map_or("", String::as_str);
        let got = if selector.get("nodeSelectorTerms").is_some() {
            let s: NodeSelector = serde_json::from_value(selector.clone()).unwrap();
            node_selector_matches(&s, &l, name)
        } else if selector.get("matchLabels").is_some()
            || selector.get("matchExpressions").is_some()
            || selector.as_object().is_some_and(|o| o.is_empty())
        {
            let s: LabelSelector = serde_json::from_value(selector.clone()).unwrap();
            selector_matches(&s, &l)
        } else {
            let m: BTreeMap<String, String> = serde_json::from_value(selector.clone()).unwrap();
            let hashed: HashMap<String, String> = l.clone().into_iter().collect();
            assert_eq!(map_matches(&m, &hashed), map_matches(&m, &l), "{selector}");
            map_matches(&m, &l)
        };
        assert_eq!(got, expected, "{selector} on {l:?}");
    }

    #[test]
    fn label_maps_need_every_pair() {
        check(json!({"app": "web"}), &[("app", "web"), ("x", "y")], true);
        check(json!({"app": "web"}), &[("app", "db")], false);
        check(json!({"app": "web", "tier": "a"}), &[("app", "web")], false);
        check(json!({"app": ""}), &[], false);
    }

    #[test]
    fn label_selectors_match_as_kubernetes_does() {
        check(json!({}), &[], true);
        check(
            json!({"matchLabels": {"app": "web"}}),
            &[("app", "web")],
            true,
        );
        check(
            json!({"matchLabels": {"app": "web"}}),
            &[("app", "db")],
            false,
        );
        let in_expr =
            json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]});
        check(in_expr.clone(), &[("tier", "b")], true);
        check(in_expr, &[], false);
        let not_in =
            json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]});
        check(not_in.clone(), &[], true);
        check(not_in, &[("tier", "a")], false);
        check(
            json!({"matchExpressions": [{"key": "x", "operator": "Exists"}]}),
            &[("x", "")],
            true,
        );
        check(
            json!({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}),
            &[("x", "1")],
            false,
        );
        check(
            json!({"matchExpressions": [{"key": "x", "operator": "Sometimes"}]}),
            &[("x", "1")],
            false,
        );
    }

    #[test]
    fn node_selector_terms_are_ored_and_requirements_anded() {
        let s = json!({"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                                  {"key": "disk", "operator": "Exists"}]},
            {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]}
        ]});
        check(s.clone(), &[("zone", "a"), ("disk", "ssd")], true);
        check(s.clone(), &[("zone", "a")], false);
        check(s.clone(), &[("cores", "16")], true);
        check(s.clone(), &[("cores", "8")], false);
        check(s, &[("cores", "many")], false);
        check(
            json!({"nodeSelectorTerms": [{"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["8"]}]}]}),
            &[("cores", "4")],
            true,
        );
        check(json!({"nodeSelectorTerms": [{}]}), &[("a", "b")], false);
        check(json!({"nodeSelectorTerms": []}), &[("a", "b")], false);
        check(
            json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}),
            &[("name", "n1")],
            true,
        );
        check(
            json!({"nodeSelectorTerms": [{"matchFields": [{"key": "spec.x", "operator": "In", "values": ["n1"]}]}]}),
            &[("name", "n1")],
            false,
        );
    }

    fn check_toleration(toleration: serde_json::Value, taint: serde_json::Value, expected: bool) {
        let t: Toleration = serde_json::from_value(toleration.clone()).unwrap();
        let taint_: Taint = serde_json::from_value(taint.clone()).unwrap();
        assert_eq!(tolerates(&t, &taint_), expected, "{toleration} ~ {taint}");
    }

    #[test]
    fn tolerations_tolerate_taints_as_kubernetes_does() {
        let gpu = json!({"key": "gpu", "value": "true", "effect": "NoSchedule"});
        check_toleration(
            json!({"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}),
            gpu.clone(),
            true,
        );
        // Operator defaults to Equal; an empty effect tolerates every effect.
        check_toleration(json!({"key": "gpu", "value": "true"}), gpu.clone(), true);
        check_toleration(json!({"key": "gpu", "value": "false"}), gpu.clone(), false);
        check_toleration(
            json!({"key": "gpu", "value": "true", "effect": "NoExecute"}),
            gpu.clone(),
            false,
        );
        check_toleration(
            json!({"key": "gpu", "operator": "Exists"}),
            gpu.clone(),
            true,
        );
        // An empty key with Exists tolerates everything; with Equal nothing.
        check_toleration(json!({"operator": "Exists"}), gpu.clone(), true);
        check_toleration(
            json!({"operator": "Equal", "value": "true"}),
            gpu.clone(),
            false,
        );
        check_toleration(json!({"key": "gpu", "operator": "Gt"}), gpu, false);
        check_toleration(
            json!({"key": "drain", "operator": "Equal"}),
            json!({"key": "drain", "effect": "NoExecute"}),
            true,
        );
    }
}
