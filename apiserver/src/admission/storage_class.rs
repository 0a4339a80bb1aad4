//! DefaultStorageClass admission: a PersistentVolumeClaim created without `storageClassName`
//! gets the default StorageClass (the newest annotated
//! `storageclass.kubernetes.io/is-default-class: "true"`), as Kubernetes' DefaultStorageClass
//! plugin does. A claim naming `""` asks for a volume without a class and is left alone; with
//! no default class the claim keeps none. The default class `local-path` is created at start
//! ([`ensure_local_path`]).

use apimachinery::registry::ResourceInfo;
use apimachinery::volume::{
    DEFAULT_CLASS_ANNOTATION, LOCAL_PATH_CLASS, LOCAL_PATH_PROVISIONER, default_class,
};
use serde_json::{Value, json};

use crate::state::{ApiState, encode};
use crate::storage::StorageError;
use crate::strategy;

/// Gives a new claim without `storageClassName` the default StorageClass.
pub fn default_storage_class(state: &ApiState, info: &ResourceInfo, obj: &mut Value) {
    if info.custom || (info.group.as_str(), info.kind.as_str()) != ("", "PersistentVolumeClaim") {
        return;
    }
    if obj
        .pointer("/spec/storageClassName")
        .is_some_and(|c| !c.is_null())
    {
        return;
    }
    let Some(classes) = state
        .registry()
        .by_resource("storage.k8s.io", "v1", "storageclasses")
    else {
        return;
    };
    let (snapshot, _) = state.cache().list(&classes.key_prefix(), None, 0, |_| true);
    let classes: Vec<Value> = snapshot.objects.iter().map(|o| o.object.clone()).collect();
    if let (Some(name), Some(spec)) = (
        default_class(&classes),
        obj.get_mut("spec").and_then(Value::as_object_mut),
    ) {
        spec.insert("storageClassName".into(), name.into());
    }
}

/// Creates the StorageClass `local-path` (default, `WaitForFirstConsumer`, reclaim `Delete`)
/// when it does not exist; one a user changed or deleted-and-recreated is left as it is.
pub async fn ensure_local_path(state: &ApiState) -> Result<(), StorageError> {
    let Some(info) = state
        .registry()
        .by_resource("storage.k8s.io", "v1", "storageclasses")
    else {
        return Ok(());
    };
    let mut class = json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": LOCAL_PATH_CLASS,
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"},
        },
        "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": false,
    });
    if strategy::prepare_create(&info, &mut class).is_err() {
        return Ok(());
    }
    match state
        .store()
        .create(&info.key(None, LOCAL_PATH_CLASS), encode(&class))
        .await
    {
        Ok(_) | Err(StorageError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
