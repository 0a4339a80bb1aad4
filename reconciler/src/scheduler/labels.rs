//! Matching labels against the structured selectors of pod specs: `LabelSelector` (pod
//! affinity, topology spread) and `NodeSelectorTerm` (node affinity).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// Whether `labels` match a `LabelSelector`. An empty selector matches everything; a missing
/// one (`None` at the call site) matches nothing, as in Kubernetes.
pub fn selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
        && selector
            .match_expressions
            .iter()
            .flatten()
            .all(|e| expression_matches(e, labels))
}

fn expression_matches(e: &LabelSelectorRequirement, labels: &Labels) -> bool {
    let values = e.values.as_deref().unwrap_or_default();
    let value = labels.get(&e.key);
    match e.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

/// Whether a node's labels match a `NodeSelector`: any of its terms (ORed); an empty term list
/// matches nothing.
pub fn node_selector_matches(selector: &NodeSelector, labels: &Labels, node_name: &str) -> bool {
    selector
        .node_selector_terms
        .iter()
        .any(|t| node_selector_term_matches(t, labels, node_name))
}

/// Whether a node matches one term (its requirements ANDed). A term with no requirements
/// matches nothing. `matchFields` supports `metadata.name`, the only field Kubernetes allows.
pub fn node_selector_term_matches(
    term: &NodeSelectorTerm,
    labels: &Labels,
    node_name: &str,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| node_requirement_matches(r, labels.get(&r.key).map(String::as_str)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn check(selector: serde_json::Value, pairs: &[(&str, &str)], expected: bool) {
        let l = labels(pairs);
        if selector.get("nodeSelectorTerms").is_some() {
            let s: NodeSelector = serde_json::from_value(selector.clone()).unwrap();
            assert_eq!(
                node_selector_matches(&s, &l, l.get("name").map_or("", String::as_str)),
                expected,
                "{selector} on {l:?}"
            );
        } else {
            let s: LabelSelector = serde_json::from_value(selector.clone()).unwrap();
            assert_eq!(selector_matches(&s, &l), expected, "{selector} on {l:?}");
        }
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
        check(json!({"nodeSelectorTerms": [{}]}), &[("a", "b")], false);
        check(
            json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}),
            &[("name", "n1")],
            true,
        );
    }
}
