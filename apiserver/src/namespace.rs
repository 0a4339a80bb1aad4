//! Deleting a namespace: everything in it goes, then the namespace.
//!
//! A namespace being deleted is marked Terminating (new content is refused) and a background
//! task deletes every namespaced object in it through the normal delete path (so finalizers and
//! graceful deletion still apply), waits until nothing is left, and then removes the namespace.

use std::sync::Arc;
use std::time::Duration;

use apimachinery::object::ObjectExt;

use crate::handlers::write;
use crate::state::ApiState;

/// Starts emptying and then removing a Terminating namespace.
pub fn finalize_in_background(state: Arc<ApiState>, namespace: String) {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(50);
        loop {
            match empty_once(&state, &namespace).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%namespace, error = %e, "emptying namespace failed; retrying")
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        let registry = state.registry();
        let Some(info) = registry.by_resource("", "v1", "namespaces") else {
            return;
        };
        let _ = write::update_with(
            &state,
            &info,
            None,
            &namespace,
            crate::strategy::UpdateScope::Main,
            false,
            |ns| {
                let mut ns = ns.clone();
                ns["spec"]["finalizers"] = serde_json::json!([]);
                Ok(ns)
            },
        )
        .await;
    });
}

/// Deletes what is left in the namespace; `Ok(true)` once it is empty.
async fn empty_once(
    state: &Arc<ApiState>,
    namespace: &str,
) -> Result<bool, apimachinery::status::StatusError> {
    state.sync_cache().await?;
    let registry = state.registry();
    let mut empty = true;
    for info in registry.iter().filter(|i| i.namespaced) {
        let (snapshot, _) = state
            .cache
            .list(&info.namespace_prefix(namespace), None, 0, |_| true);
        for obj in snapshot.objects {
            empty = false;
            if obj.object.path("metadata.deletionTimestamp").is_some() {
                continue;
            }
            let name = obj.object.name().unwrap_or("").to_string();
            let opts = crate::handlers::delete::DeleteOptions::default();
            match crate::handlers::delete::delete_object(state, info, Some(namespace), &name, &opts)
                .await
            {
                Ok(_) => {}
                Err(e) if e.code() == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(empty)
}
