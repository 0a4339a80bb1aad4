//! Admission: what happens to a write between decoding and storage, in Kubernetes' order.
//!
//! 1. decode and check against the type or schema (`handlers::ApiRequest::check_typed`: unknown
//!    fields, pruning, schema defaults);
//! 2. server-set fields and built-in defaulting (`strategy`, `defaults`);
//! 3. to 6. [`admit`], the one admission chain of creates, updates and patches: built-in
//!    mutating admission ([`service_account`], DefaultStorageClass in [`storage_class`],
//!    DefaultIngressClass in [`ingress_class`] and LimitRanger in [`quota`], creates only; the
//!    NetworkPolicy warning of [`network_policy`]),
//!    mutating webhooks, validation (`validate`: built-in kinds, CRD schemas;
//!    `validate::update` for updates), ValidatingAdmissionPolicies ([`policy`]), validating
//!    webhooks; then ResourceQuota ([`quota`],
//!    charged by the create handler);
//! 7. NamespaceLifecycle (`handlers::write::check_namespace`) and storage.

/// Where Kubernetes mounts a pod's service account token, CA and namespace.
pub const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The lifetime the kubelet asks for the token of the default `kube-api-access-*` volume.
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// ServiceAccount admission, as Kubernetes' plugin: a pod created without a service account
/// runs as `default`; unless the pod or its ServiceAccount sets
/// `automountServiceAccountToken: false` (and when this server issues tokens), it gets the
/// projected volume `kube-api-access-<random>` (a bound token from the TokenRequest API,
/// `ca.crt` from the ConfigMap `kube-root-ca.crt`, `namespace` from the downward API), mounted
/// read-only at [`SERVICE_ACCOUNT_MOUNT`] in every container and init container that mounts
/// nothing there. Unlike Kubernetes, a pod naming a ServiceAccount that does not exist (yet) is
/// not refused: its node retries the token until the account is there.
pub fn service_account(
    state: &ApiState,
    info: &apimachinery::registry::ResourceInfo,
    obj: &mut serde_json::Value,
) {
    if info.custom || (info.group.as_str(), info.kind.as_str()) != ("", "Pod") {
        return;
    }
    let namespace = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let Some(spec) = obj
        .get_mut("spec")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    let name = spec
        .get("serviceAccountName")
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| {
            spec.get("serviceAccount")
                .and_then(serde_json::Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), name.clone().into());
    spec.insert("serviceAccount".into(), name.clone().into());
    let issues = state
        .security()
        .authn
        .service_accounts
        .as_ref()
        .is_some_and(|k| k.can_issue());
    let automount = match spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
    {
        Some(set) => set,
        None => state
            .registry()
            .by_resource("", "v1", "serviceaccounts")
            .and_then(|sa| state.cache().get(&sa.key(Some(&namespace), &name)))
            .and_then(|sa| {
                sa.object
                    .get("automountServiceAccountToken")
                    .and_then(Value::as_bool)
            })
            .unwrap_or(true),
    };
    if issues && automount {
        mount_token(spec);
    }
}

/// Adds the `kube-api-access-*` volume and its mounts to a pod spec (see [`service_account`]).
fn mount_token(spec: &mut serde_json::Map<String, Value>) {
    let mounts_there = |c: &Value| {
        c.get("volumeMounts")
            .and_then(Value::as_array)
            .is_some_and(|m| {
                m.iter().any(|m| {
                    m.get("mountPath").and_then(Value::as_str) == Some(SERVICE_ACCOUNT_MOUNT)
                })
            })
    };
    let containers = ["initContainers", "containers"];
    let all_mount = containers.iter().all(|k| {
        spec.get(*k)
            .and_then(Value::as_array)
            .is_none_or(|cs| cs.iter().all(mounts_there))
    });
    if all_mount {
        return;
    }
    let volume = crate::strategy::generate_name("kube-api-access-");
    for k in containers {
        let Some(cs) = spec.get_mut(k).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs.iter_mut().filter(|c| !mounts_there(c)) {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c
                .entry("volumeMounts")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Some(m) = mounts.as_array_mut() {
                m.push(serde_json::json!({
                    "name": volume,
                    "readOnly": true,
                    "mountPath": SERVICE_ACCOUNT_MOUNT,
                }));
            }
        }
    }
    let volumes = spec
        .entry("volumes")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(v) = volumes.as_array_mut() {
        v.push(serde_json::json!({
            "name": volume,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ],
            },
        }));
    }
}

pub mod client;
pub mod ingress_class;
pub mod network_policy;
pub mod policy;
pub mod quota;
pub mod storage_class;
pub mod webhook;

use apimachinery::object::ObjectExt;
use apimachinery::status::StatusError;
use serde_json::Value;

use crate::handlers::ApiRequest;
use crate::state::ApiState;
pub use webhook::{Operation, Phase, UserInfo};

/// The user a request is made as (after authentication and impersonation), as webhooks see it.
pub fn user(req: &ApiRequest) -> UserInfo {
    UserInfo {
        username: req.user.name.clone(),
        groups: req.user.groups.clone(),
    }
}

fn attributes<'a>(
    req: &'a ApiRequest,
    operation: Operation,
    name: &'a str,
) -> webhook::Attributes<'a> {
    webhook::Attributes {
        info: &req.info,
        operation,
        subresource: req.path.subresource.as_deref(),
        namespace: req.namespace(),
        name,
        dry_run: req.params.dry_run().unwrap_or(false),
        user: user(req),
    }
}

/// Admits a create (`old` is `None`) or an update of `obj`: built-in mutating admission, then
/// for client requests (`req`) mutating webhooks, then validation, then for client requests
/// validating webhooks. The server's own writes (finalization, scale) pass no `req`.
pub async fn admit(
    state: &ApiState,
    req: Option<&ApiRequest>,
    info: &apimachinery::registry::ResourceInfo,
    old: Option<&Value>,
    obj: &mut Value,
) -> Result<(), StatusError> {
    let operation = match old {
        None => Operation::Create,
        Some(_) => Operation::Update,
    };
    if old.is_none() {
        service_account(state, info, obj);
        storage_class::default_storage_class(state, info, obj);
        ingress_class::default_ingress_class(state, info, obj);
        if let Some(req) = req {
            quota::limit_ranges(state, info, req.namespace(), obj)?;
            requestor(info, req, obj);
            network_policy::warn_unenforced(state, info, req);
        }
    }
    if let Some(req) = req {
        mutate(state, req, operation, old, obj).await?;
    }
    let mut errs = crate::strategy::validate_meta(info, obj);
    errs.extend(crate::validate::object(info, obj));
    if old.is_none() && !info.custom {
        errs.extend(apimachinery::kind_validation::validate_create(
            &info.gvk(),
            obj,
        ));
    }
    if let Some(old) = old {
        errs.extend(crate::validate::update(info, old, obj));
    }
    crate::strategy::invalid_if_any(info, obj, errs)?;
    if let Some(req) = req {
        validate(state, req, operation, old, Some(obj)).await?;
    }
    Ok(())
}

/// A CertificateSigningRequest records who asked for it (`spec.username`, `uid`, `groups`), as
/// Kubernetes' CSR strategy sets them from the requesting user whatever the body says.
fn requestor(info: &apimachinery::registry::ResourceInfo, req: &ApiRequest, obj: &mut Value) {
    if info.group != "certificates.k8s.io" || info.kind != "CertificateSigningRequest" {
        return;
    }
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        let user = &req.user;
        spec.insert("username".into(), Value::from(user.name.clone()));
        if user.uid.is_empty() {
            spec.remove("uid");
        } else {
            spec.insert("uid".into(), Value::from(user.uid.clone()));
        }
        spec.insert("groups".into(), Value::from(user.groups.clone()));
    }
}

/// Mutating admission webhooks for a create or update. A changed object is decoded again
/// (unknown fields dropped, wrong types refused) and defaulted again, as Kubernetes does with a
/// patched object.
async fn mutate(
    state: &ApiState,
    req: &ApiRequest,
    operation: Operation,
    old: Option<&Value>,
    obj: &mut Value,
) -> Result<(), StatusError> {
    let name = obj.name().unwrap_or(req.name()).to_string();
    let attrs = attributes(req, operation, &name);
    let mut warnings = Vec::new();
    let result = webhook::mutate(state, &attrs, old, Some(obj), &mut warnings).await;
    warnings.into_iter().for_each(|w| req.warn(w));
    if result? {
        let patched = std::mem::take(obj);
        *obj = req.check_typed_as(patched, crate::handlers::FieldValidation::Ignore)?;
        crate::defaults::apply(&req.info, obj);
    }
    Ok(())
}

/// ValidatingAdmissionPolicies ([`policy`]) then validating admission webhooks for a create,
/// update or delete (`obj` is `None` for deletes).
async fn validate(
    state: &ApiState,
    req: &ApiRequest,
    operation: Operation,
    old: Option<&Value>,
    obj: Option<&Value>,
) -> Result<(), StatusError> {
    let name = obj
        .or(old)
        .and_then(|o| o.name())
        .unwrap_or(req.name())
        .to_string();
    let attrs = attributes(req, operation, &name);
    let mut warnings = Vec::new();
    let result = match policy::run(state, &attrs, old, obj, &mut warnings) {
        Ok(()) => webhook::validate(state, &attrs, old, obj, &mut warnings).await,
        Err(e) => Err(e),
    };
    warnings.into_iter().for_each(|w| req.warn(w));
    result
}

/// Admission of a delete: mutating webhooks (whose patches are ignored) then validating ones,
/// with the stored object as `oldObject`.
pub async fn delete(state: &ApiState, req: &ApiRequest, old: &Value) -> Result<(), StatusError> {
    let attrs = attributes(req, Operation::Delete, req.name());
    let mut warnings = Vec::new();
    let result = async {
        webhook::mutate(state, &attrs, Some(old), None, &mut warnings).await?;
        policy::run(state, &attrs, Some(old), None, &mut warnings)?;
        webhook::validate(state, &attrs, Some(old), None, &mut warnings).await
    }
    .await;
    warnings.into_iter().for_each(|w| req.warn(w));
    result
}
