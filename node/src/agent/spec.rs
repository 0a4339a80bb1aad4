//! From a pod spec to what the runtime needs: the environment (service links, `envFrom`, `env`
//! with `valueFrom`), `$(VAR)` expansion in command and args, and the volume directories
//! (emptyDir, configMap, secret, hostPath, persistentVolumeClaim, downwardAPI, projected — with
//! service account tokens from the TokenRequest API, refreshed as the kubelet's token manager
//! does) with their mounts.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Pod, ProjectedVolumeSource, Secret, Service, ServiceAccount,
};
use kube::Api;
use kube::api::{ListParams, PostParams};

use crate::runtime::api;

/// Why a container cannot be started yet (`CreateContainerConfigError` and friends).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SpecError {
    /// The waiting reason to report.
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

fn config_error(message: String) -> SpecError {
    SpecError {
        reason: "CreateContainerConfigError",
        message,
    }
}

/// Expands `$(VAR)` from `env` as Kubernetes does: `$$` is a literal `$`, unknown references
/// stay as written.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('(')
            && let Some(end) = r.find(')')
        {
            let name = &r[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Kubernetes' service environment variables for `services` (docker-link style included).
pub fn service_env(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = svc
            .metadata
            .name
            .clone()
            .unwrap_or_default()
            .to_uppercase()
            .replace('-', "_");
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        out.push((format!("{name}_SERVICE_HOST"), ip.clone()));
        out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(pn) = p.name.as_ref().filter(|n| !n.is_empty()) {
                out.push((
                    format!(
                        "{name}_SERVICE_PORT_{}",
                        pn.to_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                ));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        out.push((
            format!("{name}_PORT"),
            format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port),
        ));
        for p in &ports {
            let pr = proto(p);
            let prefix = format!("{name}_PORT_{}_{}", p.port, pr.to_uppercase());
            out.push((
                prefix.clone(),
                format!("{}://{ip}:{}", pr.to_lowercase(), p.port),
            ));
            out.push((format!("{prefix}_PROTO"), pr.to_lowercase()));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.clone()));
        }
    }
    out
}

/// The value of a `fieldRef` path.
pub fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let map_key = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(|k| {
                map.as_ref()
                    .and_then(|m| m.get(k))
                    .cloned()
                    .unwrap_or_default()
            })
    };
    if let Some(v) = map_key("metadata.labels['", &meta.labels) {
        return Some(v);
    }
    if let Some(v) = map_key("metadata.annotations['", &meta.annotations) {
        return Some(v);
    }
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let render_map = |m: &Option<BTreeMap<String, String>>| {
        m.as_ref()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => render_map(&meta.labels),
        "metadata.annotations" => render_map(&meta.annotations),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.podIPs" => status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|ips| {
                ips.iter()
                    .map(|i| i.ip.clone())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        _ => return None,
    })
}

/// Reads API objects the spec refers to.
pub struct Lookup {
    /// The client.
    pub client: kube::Client,
    /// The pod's namespace.
    pub namespace: String,
}

impl Lookup {
    async fn config_map(&self, name: &str) -> Result<Option<ConfigMap>, SpecError> {
        Api::<ConfigMap>::namespaced(self.client.clone(), &self.namespace)
            .get_opt(name)
            .await
            .map_err(|e| config_error(format!("configmap {name:?}: {e}")))
    }

    async fn secret(&self, name: &str) -> Result<Option<Secret>, SpecError> {
        Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
            .get_opt(name)
            .await
            .map_err(|e| config_error(format!("secret {name:?}: {e}")))
    }

    async fn services(&self, namespace: &str) -> Vec<Service> {
        Api::<Service>::namespaced(self.client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    }
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in s.string_data.clone().unwrap_or_default() {
        out.insert(k, v.into_bytes());
    }
    out
}

fn config_map_data(c: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = c
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in c.binary_data.clone().unwrap_or_default() {
        out.insert(k, v.0);
    }
    out
}

/// The container's environment, in Kubernetes' order of precedence (service links, then
/// `envFrom`, then `env`, later ones winning).
pub async fn environment(
    pod: &Pod,
    container: &Container,
    lookup: &Lookup,
) -> Result<Vec<(String, String)>, SpecError> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        env.retain(|(x, _)| *x != k);
        env.push((k, v));
    };
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut services = Vec::new();
    if links {
        services = lookup.services(&lookup.namespace).await;
        services.retain(|s| s.metadata.name.as_deref() != Some("kubernetes"));
    }
    let kubernetes: Vec<Service> = Api::<Service>::namespaced(lookup.client.clone(), "default")
        .get_opt("kubernetes")
        .await
        .ok()
        .flatten()
        .into_iter()
        .collect();
    for (k, v) in service_env(&services) {
        set(&mut env, k, v);
    }
    for (k, v) in service_env(&kubernetes) {
        if links || k == "KUBERNETES_SERVICE_HOST" || k == "KUBERNETES_SERVICE_PORT" {
            set(&mut env, k, v);
        }
    }
    for from in container.env_from.clone().unwrap_or_default() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &from.config_map_ref {
            match lookup.config_map(&r.name).await? {
                Some(c) => config_map_data(&c),
                None if r.optional == Some(true) => BTreeMap::new(),
                None => return Err(config_error(format!("configmap {:?} not found", r.name))),
            }
        } else if let Some(r) = &from.secret_ref {
            match lookup.secret(&r.name).await? {
                Some(s) => secret_data(&s),
                None if r.optional == Some(true) => BTreeMap::new(),
                None => return Err(config_error(format!("secret {:?} not found", r.name))),
            }
        } else {
            BTreeMap::new()
        };
        for (k, v) in data {
            set(
                &mut env,
                format!("{prefix}{k}"),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
    }
    for e in container.env.clone().unwrap_or_default() {
        let value = if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                field_value(pod, &f.field_path).ok_or_else(|| {
                    config_error(format!(
                        "env {}: unsupported fieldRef {:?}",
                        e.name, f.field_path
                    ))
                })?
            } else if let Some(r) = &from.config_map_key_ref {
                let cm = lookup.config_map(&r.name).await?;
                match cm.and_then(|c| config_map_data(&c).remove(&r.key)) {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(config_error(format!(
                            "env {}: key {:?} of configmap {:?} not found",
                            e.name, r.key, r.name
                        )));
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let s = lookup.secret(&r.name).await?;
                match s.and_then(|s| secret_data(&s).remove(&r.key)) {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(config_error(format!(
                            "env {}: key {:?} of secret {:?} not found",
                            e.name, r.key, r.name
                        )));
                    }
                }
            } else if let Some(r) = &from.resource_field_ref {
                resource_value(container, &r.resource)
            } else {
                String::new()
            }
        } else {
            expand(e.value.as_deref().unwrap_or(""), &env)
        };
        set(&mut env, e.name.clone(), value);
    }
    Ok(env)
}

fn resource_value(container: &Container, resource: &str) -> String {
    let (kind, name) = resource.split_once('.').unwrap_or(("", resource));
    let r = container.resources.as_ref();
    let map = match kind {
        "limits" => r.and_then(|r| r.limits.as_ref()),
        "requests" => r.and_then(|r| r.requests.as_ref()),
        _ => None,
    };
    map.and_then(|m| m.get(name))
        .map(|q| q.0.clone())
        .unwrap_or_default()
}

/// CPU period (µs) of CFS quotas, as the kubelet sets it.
const CPU_PERIOD: i64 = 100_000;

/// A container's resources as CRI `LinuxContainerResources`, the way the kubelet computes them:
/// memory limit in bytes, CPU limit as a CFS quota over a 100 ms period, CPU request as shares
/// (1024 per CPU, at least 2) (0: none).
pub fn limits(container: &Container) -> api::LinuxContainerResources {
    let r = container.resources.as_ref();
    let get =
        |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
         k: &str| {
            m.and_then(|l| l.get(k))
                .and_then(|q| apimachinery::quantity::parse(&q.0))
        };
    let limits = r.and_then(|r| r.limits.as_ref());
    let requests = r.and_then(|r| r.requests.as_ref());
    let cpu_limit = get(limits, "cpu");
    let cpu_request = get(requests, "cpu").or(cpu_limit);
    api::LinuxContainerResources {
        memory_limit_in_bytes: get(limits, "memory").unwrap_or(0.0) as i64,
        cpu_period: if cpu_limit.is_some() { CPU_PERIOD } else { 0 },
        cpu_quota: cpu_limit
            .map(|c| ((c * CPU_PERIOD as f64).round() as i64).max(1000))
            .unwrap_or(0),
        cpu_shares: cpu_request
            .map(|c| ((c * 1024.0).round() as i64).max(2))
            .unwrap_or(2),
        ..Default::default()
    }
}

fn write_file(dir: &Path, rel: &str, data: &[u8], mode: i32) -> Result<(), SpecError> {
    let path = dir.join(rel.trim_start_matches('/'));
    if rel.split('/').any(|p| p == "..") {
        return Err(SpecError {
            reason: "CreateContainerConfigError",
            message: format!("volume file path {rel:?} must not contain '..'"),
        });
    }
    let io = |e: std::io::Error| SpecError {
        reason: "CreateContainerConfigError",
        message: format!("{}: {e}", path.display()),
    };
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(io)?;
    }
    std::fs::write(&path, data).map_err(io)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode as u32 & 0o7777))
        .map_err(io)
}

fn write_items(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<k8s_openapi::api::core::v1::KeyToPath>>,
    mode: i32,
) -> Result<(), SpecError> {
    match items {
        Some(items) => {
            for it in items {
                let Some(v) = data.get(&it.key) else {
                    return Err(SpecError {
                        reason: "CreateContainerConfigError",
                        message: format!("key {:?} not found", it.key),
                    });
                };
                write_file(dir, &it.path, v, it.mode.unwrap_or(mode))?;
            }
        }
        None => {
            for (k, v) in data {
                write_file(dir, k, v, mode)?;
            }
        }
    }
    Ok(())
}

/// A token older than this is refreshed whatever its lifetime, as the kubelet does.
const TOKEN_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// When the kubelet's token manager replaces a token that lives `ttl`: at 80% of its
/// lifetime, or after 24 hours.
pub fn token_refresh_after(ttl: Duration) -> Duration {
    (ttl * 4 / 5).min(TOKEN_MAX_AGE)
}

/// The pod's volumes: each one's host path, and when the earliest service account token among
/// them is due for a refresh ([`refresh_tokens`]).
#[derive(Debug, Default)]
pub struct Volumes {
    /// Host path by volume name.
    pub paths: BTreeMap<String, PathBuf>,
    /// When a token is due for a refresh (from now), if any volume holds one.
    pub refresh: Option<Duration>,
}

fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Asks the TokenRequest API for a token of the pod's ServiceAccount, bound to the pod, for
/// `audience` (the API server's when empty), living `seconds`; returns it and its lifetime.
async fn request_token(
    pod: &Pod,
    lookup: &Lookup,
    audience: &str,
    seconds: i64,
) -> Result<(String, Duration), String> {
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: if audience.is_empty() {
                Vec::new()
            } else {
                vec![audience.to_string()]
            },
            expiration_seconds: Some(seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    };
    let answer: TokenRequest =
        Api::<ServiceAccount>::namespaced(lookup.client.clone(), &lookup.namespace)
            .create_subresource("token", &account, &PostParams::default(), &request)
            .await
            .map_err(|e| format!("failed to fetch token for serviceaccount {account:?}: {e}"))?;
    let status = answer
        .status
        .ok_or_else(|| format!("serviceaccount {account:?}: the TokenRequest has no status"))?;
    let lifetime = answer.spec.expiration_seconds.unwrap_or(seconds).max(0) as u64;
    Ok((status.token, Duration::from_secs(lifetime)))
}

/// Replaces `dir/rel` at once (a new file renamed over it), so a container reading the file
/// through its bind mount never sees it half written.
fn replace_file(dir: &Path, rel: &str, data: &[u8], mode: i32) -> Result<(), SpecError> {
    let tmp = format!("{}.tmp", rel.trim_start_matches('/'));
    write_file(dir, &tmp, data, mode)?;
    let (from, to) = (dir.join(&tmp), dir.join(rel.trim_start_matches('/')));
    std::fs::rename(&from, &to).map_err(|e| SpecError {
        reason: "CreateContainerConfigError",
        message: format!("{}: {e}", to.display()),
    })
}

/// Writes the files of projected volume `name` into `path` (only its service account tokens
/// when `tokens_only`: a refresh); returns when its earliest token is due for a refresh.
async fn projected(
    pod: &Pod,
    name: &str,
    source: &ProjectedVolumeSource,
    path: &Path,
    lookup: &Lookup,
    tokens_only: bool,
) -> Result<Option<Duration>, SpecError> {
    let mode = source.default_mode.unwrap_or(0o644);
    let mount_error = |message: String| SpecError {
        reason: "ContainerCreating",
        message: format!("MountVolume.SetUp failed for volume {name:?}: {message}"),
    };
    let mut refresh = None;
    for p in source.sources.iter().flatten() {
        if let Some(t) = &p.service_account_token {
            let (token, ttl) = request_token(
                pod,
                lookup,
                t.audience.as_deref().unwrap_or(""),
                t.expiration_seconds.unwrap_or(3600),
            )
            .await
            .map_err(mount_error)?;
            replace_file(path, &t.path, token.as_bytes(), mode)?;
            refresh = earliest(refresh, Some(token_refresh_after(ttl)));
            continue;
        }
        if tokens_only {
            continue;
        }
        if let Some(c) = &p.config_map {
            match lookup.config_map(&c.name).await? {
                Some(cm) => write_items(path, &config_map_data(&cm), c.items.as_ref(), mode)?,
                None if c.optional == Some(true) => {}
                None => {
                    return Err(mount_error(format!("configmap {:?} not found", c.name)));
                }
            }
        } else if let Some(s) = &p.secret {
            match lookup.secret(&s.name).await? {
                Some(sec) => write_items(path, &secret_data(&sec), s.items.as_ref(), mode)?,
                None if s.optional == Some(true) => {}
                None => return Err(mount_error(format!("secret {:?} not found", s.name))),
            }
        } else if let Some(d) = &p.downward_api {
            for it in d.items.iter().flatten() {
                let value = match &it.field_ref {
                    Some(f) => field_value(pod, &f.field_path).unwrap_or_default(),
                    None => String::new(),
                };
                write_file(path, &it.path, value.as_bytes(), it.mode.unwrap_or(mode))?;
            }
        }
    }
    Ok(refresh)
}

/// Requests new tokens for the service account token sources of the pod's projected volumes
/// under `dir` and replaces their files; returns when the earliest is due again.
pub async fn refresh_tokens(
    pod: &Pod,
    dir: &Path,
    lookup: &Lookup,
) -> Result<Option<Duration>, SpecError> {
    let mut refresh = None;
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(p) = &v.projected {
            let due = projected(pod, &v.name, p, &dir.join(&v.name), lookup, true).await?;
            refresh = earliest(refresh, due);
        }
    }
    Ok(refresh)
}

/// Creates (or refreshes) every volume of the pod under `dir` (`<dir>/<volume name>`) and
/// returns each volume's host path.
pub async fn volumes(pod: &Pod, dir: &Path, lookup: &Lookup) -> Result<Volumes, SpecError> {
    let mut out = BTreeMap::new();
    let mut refresh = None;
    let mount_error = |message: String| SpecError {
        reason: "ContainerCreating",
        message,
    };
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default()
    {
        let path = dir.join(&v.name);
        let mk = |p: &Path| {
            std::fs::create_dir_all(p).map_err(|e| mount_error(format!("{}: {e}", p.display())))
        };
        if let Some(h) = &v.host_path {
            let p = PathBuf::from(&h.path);
            match h.type_.as_deref() {
                Some("DirectoryOrCreate") => mk(&p)?,
                Some("Directory") if !p.is_dir() => {
                    return Err(mount_error(format!(
                        "volume {}: hostPath {} is not a directory",
                        v.name, h.path
                    )));
                }
                _ => {}
            }
            out.insert(v.name.clone(), p);
            continue;
        }
        if let Some(c) = &v.persistent_volume_claim {
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .unwrap_or_default();
            let p =
                super::storage::claim_path(&lookup.client, &lookup.namespace, &c.claim_name, node)
                    .await
                    .map_err(|m| mount_error(super::storage::not_ready(&v.name, m)))?;
            out.insert(v.name.clone(), p);
            continue;
        }
        if v.empty_dir.is_some() {
            mk(&path)?;
        } else if let Some(c) = &v.config_map {
            let _ = std::fs::remove_dir_all(&path);
            mk(&path)?;
            match lookup.config_map(&c.name).await? {
                Some(cm) => write_items(
                    &path,
                    &config_map_data(&cm),
                    c.items.as_ref(),
                    c.default_mode.unwrap_or(0o644),
                )?,
                None if c.optional == Some(true) => {}
                None => {
                    return Err(mount_error(format!(
                        "MountVolume.SetUp failed for volume {:?}: configmap {:?} not found",
                        v.name, c.name
                    )));
                }
            }
        } else if let Some(s) = &v.secret {
            let _ = std::fs::remove_dir_all(&path);
            mk(&path)?;
            let name = s.secret_name.clone().unwrap_or_default();
            match lookup.secret(&name).await? {
                Some(sec) => write_items(
                    &path,
                    &secret_data(&sec),
                    s.items.as_ref(),
                    s.default_mode.unwrap_or(0o644),
                )?,
                None if s.optional == Some(true) => {}
                None => {
                    return Err(mount_error(format!(
                        "MountVolume.SetUp failed for volume {:?}: secret {name:?} not found",
                        v.name
                    )));
                }
            }
        } else if let Some(p) = &v.projected {
            let _ = std::fs::remove_dir_all(&path);
            mk(&path)?;
            let due = projected(pod, &v.name, p, &path, lookup, false).await?;
            refresh = earliest(refresh, due);
        } else if let Some(d) = &v.downward_api {
            mk(&path)?;
            for it in d.items.clone().unwrap_or_default() {
                let value = match &it.field_ref {
                    Some(f) => field_value(pod, &f.field_path).unwrap_or_default(),
                    None => String::new(),
                };
                write_file(
                    &path,
                    &it.path,
                    value.as_bytes(),
                    it.mode.or(d.default_mode).unwrap_or(0o644),
                )?;
            }
        } else {
            return Err(mount_error(format!(
                "volume {}: only emptyDir, configMap, secret, hostPath, persistentVolumeClaim, downwardAPI and projected volumes are supported",
                v.name
            )));
        }
        out.insert(v.name.clone(), path);
    }
    Ok(Volumes {
        paths: out,
        refresh,
    })
}

/// The runtime mounts of a container.
pub fn mounts(container: &Container, volumes: &BTreeMap<String, PathBuf>) -> Vec<api::Mount> {
    container
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| {
            let base = volumes.get(&m.name)?;
            let host = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => base.join(sub),
                None => base.clone(),
            };
            Some(api::Mount {
                container_path: m.mount_path,
                host_path: host.to_string_lossy().into_owned(),
                readonly: m.read_only.unwrap_or(false),
                ..Default::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_references_expand_like_kubernetes() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "x y".to_string()),
        ];
        let cases = [
            ("$(A)", "1"),
            ("pre-$(B)-post", "pre-x y-post"),
            ("$$(A)", "$(A)"),
            ("$(MISSING)", "$(MISSING)"),
            ("$A", "$A"),
            ("$(A", "$(A"),
            ("cost: $$5", "cost: $5"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &env), want, "{input}");
        }
    }

    #[test]
    fn tokens_are_refreshed_at_four_fifths_of_their_lifetime_or_after_a_day() {
        // (lifetime in seconds, refresh after in milliseconds)
        let cases = [
            (3607, 2_885_600),
            (600, 480_000),
            (3600 * 24 * 365, 86_400_000),
            (0, 0),
        ];
        for (ttl, want) in cases {
            assert_eq!(
                token_refresh_after(Duration::from_secs(ttl)),
                Duration::from_millis(want),
                "{ttl}"
            );
        }
    }

    #[test]
    fn quantities_parse_to_numbers() {
        let cases = [
            ("100m", Some(0.1)),
            ("2", Some(2.0)),
            ("64Mi", Some(67108864.0)),
            ("1G", Some(1e9)),
            ("x", None),
        ];
        for (q, want) in cases {
            assert_eq!(apimachinery::quantity::parse(q), want, "{q}");
        }
    }

    #[test]
    fn services_become_environment_variables() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "my-db"},
            "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": "sql", "port": 5432, "protocol": "TCP"}]},
        }))
        .expect("a service");
        let env: BTreeMap<String, String> = service_env(&[svc]).into_iter().collect();
        let want = [
            ("MY_DB_SERVICE_HOST", "10.96.0.5"),
            ("MY_DB_SERVICE_PORT", "5432"),
            ("MY_DB_SERVICE_PORT_SQL", "5432"),
            ("MY_DB_PORT", "tcp://10.96.0.5:5432"),
            ("MY_DB_PORT_5432_TCP", "tcp://10.96.0.5:5432"),
            ("MY_DB_PORT_5432_TCP_PROTO", "tcp"),
            ("MY_DB_PORT_5432_TCP_PORT", "5432"),
            ("MY_DB_PORT_5432_TCP_ADDR", "10.96.0.5"),
        ];
        for (k, v) in want {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert_eq!(env.len(), want.len());
    }
}
