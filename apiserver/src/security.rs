//! The outer request pipeline's settings: authentication, authorization, audit and the
//! in-flight limits, in the order requests meet them (authn → impersonation → max-in-flight →
//! audit → authz; the stages run in [`crate::handlers::pipeline`]); and the check that RBAC
//! writes grant nothing their author does not hold.

use std::sync::Arc;

use apimachinery::status::StatusError;
use axum::http::Method;

use crate::audit::Auditor;
use crate::authn::{Authenticator, UserInfo};
use crate::handlers::ApiRequest;
use crate::inflight::Limits;
use crate::rbac::{Authorizer, Mode};
use crate::state::ApiState;

/// How the server authenticates, authorizes, audits and limits requests.
#[derive(Debug, Default)]
pub struct Security {
    /// Authentication.
    pub authn: Authenticator,
    /// Authorization.
    pub authz: Authorizer,
    /// The audit log, when one is configured.
    pub audit: Option<Arc<Auditor>>,
    /// In-flight limits.
    pub inflight: Limits,
    /// The TLS client configuration for node agents (`pods/log`, `pods/exec`): the cluster
    /// CA's certificate for `kube-apiserver-kubelet-client` ([`crate::node_client`]).
    pub node_client: Option<Arc<rustls::ClientConfig>>,
}

impl Security {
    /// No authentication (every request is an administrator's), no authorization, no audit, no
    /// limits: the benchmarks' in-process server and unit tests.
    pub fn disabled() -> Security {
        Security {
            authn: Authenticator::disabled(),
            authz: Authorizer {
                mode: Mode::AlwaysAllow,
            },
            audit: None,
            inflight: Limits::default(),
            node_client: None,
        }
    }
}

/// Refuses a create, update or patch of an RBAC object that would grant permissions its author
/// does not hold ([`crate::rbac::escalation`]). A patch is judged on the patched object as of
/// the cache; a body that does not parse is left to the verb's handler to refuse.
pub fn check_rbac_write(
    state: &ApiState,
    user: &UserInfo,
    req: &ApiRequest,
) -> Result<(), StatusError> {
    if req.info.group != "rbac.authorization.k8s.io" || req.path.subresource.is_some() {
        return Ok(());
    }
    let security = state.security();
    if security.authz.mode == Mode::AlwaysAllow || user.in_group(crate::authn::MASTERS) {
        return Ok(());
    }
    let object = match req.method {
        Method::POST | Method::PUT => match req.json_body() {
            Ok(o) => o,
            Err(_) => return Ok(()),
        },
        Method::PATCH if crate::handlers::apply::is_apply(req) => {
            let current = state
                .cache()
                .get(&req.info.key(req.namespace(), req.name()));
            match crate::handlers::apply::preview(req, current.as_ref().map(|c| &c.object)) {
                Some(o) => o,
                None => return Ok(()),
            }
        }
        Method::PATCH => {
            let Some(current) = state
                .cache()
                .get(&req.info.key(req.namespace(), req.name()))
            else {
                return Ok(());
            };
            let (Ok(kind), Ok(doc)) = (crate::handlers::patch_type(req), req.json_body()) else {
                return Ok(());
            };
            match crate::handlers::apply_patch(req, kind, &current.object, &doc) {
                Ok(o) => o,
                Err(_) => return Ok(()),
            }
        }
        _ => return Ok(()),
    };
    crate::rbac::escalation::check(
        state,
        &security.authz,
        user,
        &req.info.plural,
        req.namespace().unwrap_or(""),
        &object,
    )
}
