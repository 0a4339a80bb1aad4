//! Claiming children, as Kubernetes' `ControllerRefManager`: an owner adopts the orphans its
//! selector matches (it becomes their controller) and releases the children that stopped
//! matching. Both are merge patches conditional on the child's resourceVersion, so a child
//! changed meanwhile is left for the next sync. Used by the ReplicaSet controller (pods) and
//! the Deployment controller (ReplicaSets).

use std::fmt::Debug;

use kube::api::Patch;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Context, Error, api_error, controller_ref, key_of};

/// Makes `owner` the controller of the orphan `child`; `None` if the child changed or went
/// meanwhile.
pub async fn adopt<O, K>(ctx: &Context, owner: &O, child: &K) -> Result<Option<K>, Error>
where
    O: Resource<DynamicType = ()>,
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let mut refs = child.meta().owner_references.clone().unwrap_or_default();
    refs.push(controller_ref(owner));
    let patch = json!({"metadata": {
        "ownerReferences": refs,
        "resourceVersion": child.resource_version(),
    }});
    patch_child(ctx, child, patch, "adopting").await
}

/// Removes the owner with `owner_uid` from the owner references of `child`.
pub async fn release<K>(ctx: &Context, child: &K, owner_uid: &str) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let refs: Vec<_> = child
        .meta()
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.uid != owner_uid)
        .collect();
    let patch = json!({"metadata": {
        "ownerReferences": refs,
        "resourceVersion": child.resource_version(),
    }});
    patch_child(ctx, child, patch, "releasing")
        .await
        .map(|_| ())
}

async fn patch_child<K>(
    ctx: &Context,
    child: &K,
    patch: serde_json::Value,
    what: &str,
) -> Result<Option<K>, Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api = Api::<K>::namespaced(ctx.client.clone(), &child.namespace().unwrap_or_default());
    match api
        .patch(&child.name_any(), &ctx.patch_params(), &Patch::Merge(patch))
        .await
    {
        Ok(c) => Ok(Some(c)),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
        Err(e) => Err(api_error(format!(
            "{what} {} {}",
            K::kind(&()).to_lowercase(),
            key_of(child)
        ))(e)),
    }
}
