//! Ingress classes, as the API server (DefaultIngressClass admission, the class created at
//! start) and the built-in ingress controller (which Ingresses it serves) both read them.

use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::Value;

/// The IngressClass created at start, served by the built-in controller.
pub const GITPLANE_CLASS: &str = "gitplane";
/// `spec.controller` of the classes the built-in controller serves.
pub const GITPLANE_CONTROLLER: &str = "gitplane.dev/ingress";
/// The annotation that makes an IngressClass the default one.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The class annotation of Ingresses written before `spec.ingressClassName` (deprecated, still
/// honoured by controllers).
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// The default IngressClass among `classes` (JSON objects): the newest annotated
/// [`DEFAULT_CLASS_ANNOTATION`]` = "true"`, as Kubernetes' DefaultIngressClass admission picks
/// it (ties broken by name).
pub fn default_class(classes: &[Value]) -> Option<String> {
    crate::object::newest_annotated(classes, DEFAULT_CLASS_ANNOTATION)
}

/// Whether an Ingress (JSON) names a class, in `spec.ingressClassName` or the legacy annotation.
pub fn has_class(ingress: &Value) -> bool {
    ingress
        .pointer("/spec/ingressClassName")
        .is_some_and(|c| !c.is_null())
        || ingress
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
            .is_some()
}

/// The names of the classes whose `spec.controller` is `controller`.
pub fn classes_of(classes: &[IngressClass], controller: &str) -> BTreeSet<String> {
    classes
        .iter()
        .filter(|c| c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(controller))
        .filter_map(|c| c.metadata.name.clone())
        .collect()
}

/// Whether a controller owning the classes `ours` serves this Ingress: its class
/// (`spec.ingressClassName`, else the legacy annotation) is one of them, or it names none.
pub fn serves(ingress: &Ingress, ours: &BTreeSet<String>) -> bool {
    let class = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| {
            ingress
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
                .map(String::as_str)
        });
    class.is_none_or(|c| ours.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_default(classes: Value, expected: Option<&str>) {
        let classes: Vec<Value> = classes.as_array().unwrap().clone();
        assert_eq!(default_class(&classes).as_deref(), expected, "{classes:?}");
    }

    #[test]
    fn the_newest_annotated_class_is_the_default() {
        let default = |name: &str, created: &str, flag: &str| {
            json!({"metadata": {"name": name, "creationTimestamp": created,
                                "annotations": {DEFAULT_CLASS_ANNOTATION: flag}}})
        };
        check_default(json!([]), None);
        check_default(json!([{"metadata": {"name": "nginx"}}]), None);
        check_default(
            json!([default("nginx", "2024-01-01T00:00:00Z", "false")]),
            None,
        );
        check_default(
            json!([
                default("gitplane", "2024-01-01T00:00:00Z", "true"),
                default("nginx", "2025-01-01T00:00:00Z", "true"),
            ]),
            Some("nginx"),
        );
        check_default(
            json!([
                default("b", "2024-01-01T00:00:00Z", "true"),
                default("a", "2024-01-01T00:00:00Z", "true"),
            ]),
            Some("a"),
        );
    }

    fn check_serves(ingress: Value, expected: bool) {
        let classes: Vec<IngressClass> = serde_json::from_value(json!([
            {"metadata": {"name": "gitplane"}, "spec": {"controller": GITPLANE_CONTROLLER}},
            {"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}},
        ]))
        .unwrap();
        let ours = classes_of(&classes, GITPLANE_CONTROLLER);
        assert_eq!(ours, BTreeSet::from(["gitplane".to_string()]));
        assert_eq!(has_class(&ingress), ingress != json!({"metadata": {}}));
        let ingress: Ingress = serde_json::from_value(ingress.clone()).unwrap();
        assert_eq!(serves(&ingress, &ours), expected, "{ingress:?}");
    }

    #[test]
    fn the_controller_serves_its_classes_and_ingresses_without_one() {
        check_serves(json!({"metadata": {}}), true);
        check_serves(
            json!({"metadata": {}, "spec": {"ingressClassName": "gitplane"}}),
            true,
        );
        check_serves(
            json!({"metadata": {}, "spec": {"ingressClassName": "nginx"}}),
            false,
        );
        check_serves(
            json!({"metadata": {"annotations": {LEGACY_CLASS_ANNOTATION: "gitplane"}}}),
            true,
        );
        check_serves(
            json!({"metadata": {"annotations": {LEGACY_CLASS_ANNOTATION: "nginx"}}}),
            false,
        );
    }
}
