//! DefaultIngressClass admission: an Ingress created without a class (no
//! `spec.ingressClassName`, no `kubernetes.io/ingress.class` annotation) gets the default
//! IngressClass, as Kubernetes' DefaultIngressClass plugin does; with no default class it keeps
//! none. The class `gitplane` of the built-in ingress controller (the service proxy's) is
//! created at start as the default ([`ensure_gitplane_class`]).

use apimachinery::ingress::{
    DEFAULT_CLASS_ANNOTATION, GITPLANE_CLASS, GITPLANE_CONTROLLER, default_class, has_class,
};
use apimachinery::registry::ResourceInfo;
use serde_json::{Value, json};

use crate::state::{ApiState, encode};
use crate::storage::StorageError;
use crate::strategy;

/// Gives a new Ingress without a class the default IngressClass.
pub fn default_ingress_class(state: &ApiState, info: &ResourceInfo, obj: &mut Value) {
    if info.custom
        || (info.group.as_str(), info.kind.as_str()) != ("networking.k8s.io", "Ingress")
        || has_class(obj)
    {
        return;
    }
    let Some(classes) = state
        .registry()
        .by_resource("networking.k8s.io", "v1", "ingressclasses")
    else {
        return;
    };
    let (snapshot, _) = state.cache().list(&classes.key_prefix(), None, 0, |_| true);
    let classes: Vec<Value> = snapshot.objects.iter().map(|o| o.object.clone()).collect();
    let Some(name) = default_class(&classes) else {
        return;
    };
    if let Some(obj) = obj.as_object_mut() {
        let spec = obj.entry("spec").or_insert_with(|| json!({}));
        if let Some(spec) = spec.as_object_mut() {
            spec.insert("ingressClassName".into(), name.into());
        }
    }
}

/// Creates the IngressClass `gitplane` (default, controller `gitplane.dev/ingress`) when it does
/// not exist; one a user changed or deleted-and-recreated is left as it is.
pub async fn ensure_gitplane_class(state: &ApiState) -> Result<(), StorageError> {
    let Some(info) = state
        .registry()
        .by_resource("networking.k8s.io", "v1", "ingressclasses")
    else {
        return Ok(());
    };
    let mut class = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {
            "name": GITPLANE_CLASS,
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"},
        },
        "spec": {"controller": GITPLANE_CONTROLLER},
    });
    if strategy::prepare_create(&info, &mut class).is_err() {
        return Ok(());
    }
    match state
        .store()
        .create(&info.key(None, GITPLANE_CLASS), encode(&class))
        .await
    {
        Ok(_) | Err(StorageError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
