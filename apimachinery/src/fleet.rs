//! Fleets: the clusters an Application may be synced into (registered as Secrets in Argo CD's
//! layout) and gitplane's `ApplicationSet` CRD, which generates Applications.
//!
//! A cluster Secret lives in [`NAMESPACE`], carries the label [`LABEL_SECRET_TYPE`]`=cluster`
//! and holds either Argo CD's fields (`name`, `server`, `config`: a JSON object with
//! `bearerToken` and/or `tlsClientConfig{certData,keyData,caData,insecure,serverName}`) or a
//! `kubeconfig` (with an optional `context`). The syncer (`reconciler::gitops::destinations`)
//! reads them; `gitplane cluster add` writes them. The local cluster is never registered: it is
//! [`IN_CLUSTER_NAME`] / [`IN_CLUSTER_SERVER`].

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

/// Namespace of cluster Secrets.
pub const NAMESPACE: &str = "gitplane-system";
/// Label that marks a Secret as a cluster (value [`SECRET_TYPE_CLUSTER`]).
pub const LABEL_SECRET_TYPE: &str = "gitplane.io/secret-type";
/// Value of [`LABEL_SECRET_TYPE`] for clusters.
pub const SECRET_TYPE_CLUSTER: &str = "cluster";
/// The name of the local cluster (the API server gitplane itself runs on).
pub const IN_CLUSTER_NAME: &str = "in-cluster";
/// The server of the local cluster, as Argo CD spells it.
pub const IN_CLUSTER_SERVER: &str = "https://kubernetes.default.svc";

/// Kind of ApplicationSets.
pub const APPLICATIONSET_KIND: &str = "ApplicationSet";
/// Plural resource name of ApplicationSets.
pub const APPLICATIONSET_PLURAL: &str = "applicationsets";

/// Why a cluster Secret cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecretError {
    /// A field is missing.
    #[error("cluster secret {secret:?}: {field}: Required value")]
    Missing {
        /// The Secret.
        secret: String,
        /// The data key.
        field: &'static str,
    },
    /// A field does not read.
    #[error("cluster secret {secret:?}: {field}: {message}")]
    Invalid {
        /// The Secret.
        secret: String,
        /// The data key.
        field: &'static str,
        /// Why.
        message: String,
    },
}

/// `config` of an Argo CD cluster Secret.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterConfig {
    /// A bearer token.
    pub bearer_token: String,
    /// Client certificate, CA, verification.
    pub tls_client_config: TlsClientConfig,
}

/// `config.tlsClientConfig`: PEM data, base64-encoded as Argo CD stores it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsClientConfig {
    /// Client certificate (base64 of PEM).
    pub cert_data: String,
    /// Its key (base64 of PEM).
    pub key_data: String,
    /// The CA that signs the server's certificate (base64 of PEM).
    pub ca_data: String,
    /// Skip verifying the server's certificate.
    pub insecure: bool,
    /// The name to verify the server's certificate for.
    pub server_name: String,
}

/// How a cluster is reached.
#[derive(Clone, Debug, PartialEq)]
pub enum Access {
    /// Argo CD's `config`.
    Config(ClusterConfig),
    /// A kubeconfig and the context to use (`None`: its current context).
    Kubeconfig {
        /// Its text.
        text: String,
        /// `context`.
        context: Option<String>,
    },
}

/// A registered cluster, as its Secret says.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSecret {
    /// The Secret's name.
    pub secret: String,
    /// `name` (default: the Secret's name).
    pub name: String,
    /// `server`; empty for a kubeconfig Secret without one (its context's server then).
    pub server: String,
    /// The Secret's labels (what the `clusters` generator selects on).
    pub labels: BTreeMap<String, String>,
    /// The Secret's annotations.
    pub annotations: BTreeMap<String, String>,
    /// How the cluster is reached.
    pub access: Access,
}

impl ClusterSecret {
    /// Reads a Secret object (`data` base64, or `stringData`).
    pub fn from_secret(secret: &Value) -> Result<ClusterSecret, SecretError> {
        let meta = |f: &str| -> BTreeMap<String, String> {
            secret
                .pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default()
        };
        let secret_name = secret
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut data: BTreeMap<String, String> = BTreeMap::new();
        if let Some(d) = secret.get("data").and_then(Value::as_object) {
            for (k, v) in d {
                let decoded = v
                    .as_str()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .and_then(|b| String::from_utf8(b).ok());
                if let Some(text) = decoded {
                    data.insert(k.clone(), text);
                }
            }
        }
        if let Some(d) = secret.get("stringData").and_then(Value::as_object) {
            for (k, v) in d {
                if let Some(s) = v.as_str() {
                    data.insert(k.clone(), s.to_string());
                }
            }
        }
        let field = |k: &str| {
            data.get(k)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let access = match (field("config"), data.get("kubeconfig")) {
            (_, Some(text)) if !text.trim().is_empty() => Access::Kubeconfig {
                text: text.clone(),
                context: field("context"),
            },
            (Some(config), _) => {
                let c: ClusterConfig =
                    serde_json::from_str(&config).map_err(|e| SecretError::Invalid {
                        secret: secret_name.clone(),
                        field: "config",
                        message: e.to_string(),
                    })?;
                Access::Config(c)
            }
            (None, _) => {
                return Err(SecretError::Missing {
                    secret: secret_name,
                    field: "config",
                });
            }
        };
        let server = field("server").unwrap_or_default();
        if server.is_empty() && matches!(access, Access::Config(_)) {
            return Err(SecretError::Missing {
                secret: secret_name,
                field: "server",
            });
        }
        Ok(ClusterSecret {
            name: field("name").unwrap_or_else(|| secret_name.clone()),
            secret: secret_name,
            server,
            labels: meta("labels"),
            annotations: meta("annotations"),
            access,
        })
    }
}

/// A kubeconfig (as JSON, which every kubeconfig reader accepts) for Argo CD's `config` of the
/// cluster at `server`.
pub fn kubeconfig_of(server: &str, config: &ClusterConfig) -> Value {
    let tls = &config.tls_client_config;
    let mut cluster = json!({"server": server});
    if !tls.ca_data.is_empty() {
        cluster["certificate-authority-data"] = json!(tls.ca_data);
    }
    if tls.insecure {
        cluster["insecure-skip-tls-verify"] = json!(true);
    }
    if !tls.server_name.is_empty() {
        cluster["tls-server-name"] = json!(tls.server_name);
    }
    let mut user = json!({});
    if !config.bearer_token.is_empty() {
        user["token"] = json!(config.bearer_token);
    }
    if !tls.cert_data.is_empty() {
        user["client-certificate-data"] = json!(tls.cert_data);
    }
    if !tls.key_data.is_empty() {
        user["client-key-data"] = json!(tls.key_data);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "cluster", "context": {"cluster": "cluster", "user": "user"}}],
        "current-context": "cluster",
    })
}

/// A cluster Secret named `secret` for the cluster `name` at `server`, reached with `config`
/// (Argo CD's layout, so Argo CD tooling reads it too).
pub fn cluster_secret(
    secret: &str,
    name: &str,
    server: &str,
    bearer_token: &str,
    ca_pem: &str,
) -> Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut tls = json!({"insecure": false});
    if !ca_pem.is_empty() {
        tls["caData"] = json!(b64(ca_pem));
    }
    let config = json!({"bearerToken": bearer_token, "tlsClientConfig": tls});
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret,
            "namespace": NAMESPACE,
            "labels": {LABEL_SECRET_TYPE: SECRET_TYPE_CLUSTER},
        },
        "type": "Opaque",
        "data": {
            "name": b64(name),
            "server": b64(server),
            "config": b64(&config.to_string()),
        },
    })
}

/// The CustomResourceDefinition of ApplicationSets (group `gitplane.io`, cluster-scoped like
/// Applications).
pub fn applicationset_crd() -> Value {
    use crate::application::{GROUP, VERSION};
    let free = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{APPLICATIONSET_PLURAL}.{GROUP}")},
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {"plural": APPLICATIONSET_PLURAL, "singular": "applicationset",
                      "kind": APPLICATIONSET_KIND, "listKind": "ApplicationSetList",
                      "shortNames": ["appset", "appsets"]},
            "versions": [{
                "name": VERSION,
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": free, "status": free},
                }},
                "additionalPrinterColumns": [
                    {"name": "Applications", "type": "integer",
                     "jsonPath": ".status.applicationCount"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(secret: Value, expected: Result<(&str, &str), &str>) {
        match (ClusterSecret::from_secret(&secret), expected) {
            (Ok(c), Ok((name, server))) => {
                assert_eq!((c.name.as_str(), c.server.as_str()), (name, server));
            }
            (Err(e), Err(message)) => assert_eq!(e.to_string(), message),
            (got, want) => panic!("{got:?} != {want:?}"),
        }
    }

    #[test]
    fn cluster_secrets_read_in_argo_cd_layout_or_as_kubeconfigs() {
        let written = cluster_secret("east", "east", "https://127.0.0.1:1", "tok", "CA");
        check(written.clone(), Ok(("east", "https://127.0.0.1:1")));
        let c = ClusterSecret::from_secret(&written).unwrap();
        let Access::Config(config) = &c.access else {
            panic!("config access")
        };
        assert_eq!(config.bearer_token, "tok");
        assert_eq!(c.labels[LABEL_SECRET_TYPE], SECRET_TYPE_CLUSTER);
        let kc = kubeconfig_of(&c.server, config);
        assert_eq!(kc["users"][0]["user"]["token"], "tok");
        check(
            json!({"metadata": {"name": "s"}, "stringData": {"kubeconfig": "apiVersion: v1"}}),
            Ok(("s", "")),
        );
        check(
            json!({"metadata": {"name": "s"}, "stringData": {"name": "x"}}),
            Err("cluster secret \"s\": config: Required value"),
        );
        check(
            json!({"metadata": {"name": "s"}, "stringData": {"config": "{}"}}),
            Err("cluster secret \"s\": server: Required value"),
        );
        check(
            json!({"metadata": {"name": "s"}, "stringData": {"server": "https://x", "config": "{"}}),
            Err("cluster secret \"s\": config: EOF while parsing an object at line 1 column 1"),
        );
    }
}
