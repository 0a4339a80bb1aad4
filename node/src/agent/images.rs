//! Images as the kubelet handles them: `imagePullPolicy` (its default from the tag), registry
//! credentials from `imagePullSecrets` (docker config JSON Secrets → CRI `AuthConfig`), and the
//! pull through the CRI ImageService with the kubelet's waiting reasons (`ErrImagePull`,
//! `ImagePullBackOff`, `ErrImageNeverPull`) and back-off (10 s doubling to 5 min).

use std::time::Duration;

use apimachinery::event::EventType;
use base64::Engine as _;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::Api;
use tokio::time::Instant;

use crate::runtime::{ImageClient, api};

const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// When an image is pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Before every container start.
    Always,
    /// When the runtime does not have it.
    IfNotPresent,
    /// Never: the image must be present.
    Never,
}

/// The container's pull policy; without one, `Always` for `:latest` or no tag (and no digest),
/// else `IfNotPresent` (as the API server's defaulting does).
pub fn pull_policy(container: &Container) -> PullPolicy {
    match container.image_pull_policy.as_deref() {
        Some("Always") => PullPolicy::Always,
        Some("Never") => PullPolicy::Never,
        Some("IfNotPresent") => PullPolicy::IfNotPresent,
        _ => {
            let image = container.image.as_deref().unwrap_or_default();
            let (name, _) = image.split_once('@').unwrap_or((image, ""));
            let last = name.rsplit('/').next().unwrap_or(name);
            match last.split_once(':') {
                _ if image.contains('@') => PullPolicy::IfNotPresent,
                Some((_, "latest")) | None => PullPolicy::Always,
                Some(_) => PullPolicy::IfNotPresent,
            }
        }
    }
}

/// The registry host of an image reference, as docker config keys name it (`docker.io` for
/// Docker Hub's short names).
pub fn registry(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".into(),
    }
}

/// The credentials for `host` in a docker config JSON (`{"auths": {HOST: {...}}}`; keys may
/// be URLs such as `https://index.docker.io/v1/`).
pub fn credentials(config: &serde_json::Value, host: &str) -> Option<api::AuthConfig> {
    let auths = config.get("auths").unwrap_or(config).as_object()?;
    let normalize = |k: &str| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let k = k.split('/').next().unwrap_or(k);
        match k {
            "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
            k => k.to_string(),
        }
    };
    let (_, entry) = auths.iter().find(|(k, _)| normalize(k) == host)?;
    let field = |f: &str| entry.get(f).and_then(|v| v.as_str()).unwrap_or_default();
    let (mut username, mut password) =
        (field("username").to_string(), field("password").to_string());
    let auth = field("auth");
    if username.is_empty()
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(auth)
        && let Ok(decoded) = String::from_utf8(decoded)
        && let Some((u, p)) = decoded.split_once(':')
    {
        username = u.to_string();
        password = p.to_string();
    }
    Some(api::AuthConfig {
        username,
        password,
        auth: auth.to_string(),
        // Empty: containerd parses a non-empty one as a URL, and `host:port` is not one; the
        // credentials are only ever sent for the image's own registry.
        server_address: String::new(),
        identity_token: field("identitytoken").to_string(),
        registry_token: field("registrytoken").to_string(),
    })
}

/// Why a container's image is not there (a waiting reason and message, as the kubelet
/// reports them).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct ImageError {
    /// `ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`, `InvalidImageName`.
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

/// An event the pull produced (type, reason, message), for the worker to record.
pub type Event = (EventType, &'static str, String);

/// The pull back-off of one container.
#[derive(Debug, Default)]
pub struct Backoff {
    delay: Duration,
    not_before: Option<Instant>,
}

/// Makes sure the runtime has the container's image; returns its id (the CRI image ref) and
/// the events to record.
pub async fn ensure(
    images: &ImageClient,
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    backoff: &mut Backoff,
    events: &mut Vec<Event>,
) -> Result<String, ImageError> {
    let image = container.image.clone().unwrap_or_default();
    if image.trim().is_empty() {
        return Err(ImageError {
            reason: "InvalidImageName",
            message: format!("container {:?}: image is required", container.name),
        });
    }
    let mut rt = images.clone();
    let spec = api::ImageSpec {
        image: image.clone(),
        user_specified_image: image.clone(),
        ..Default::default()
    };
    let present = match rt
        .image_status(api::ImageStatusRequest {
            image: Some(spec.clone()),
            verbose: false,
        })
        .await
    {
        Ok(r) => r.into_inner().image.map(|i| i.id),
        Err(e) if runtime_unavailable(&e) => return Err(unavailable(&e)),
        Err(_) => None,
    };
    let policy = pull_policy(container);
    match (policy, present) {
        (PullPolicy::Never, None) => {
            let message =
                format!("Container image {image:?} is not present with pull policy of Never");
            events.push((EventType::Warning, "ErrImageNeverPull", message.clone()));
            return Err(ImageError {
                reason: "ErrImageNeverPull",
                message,
            });
        }
        (PullPolicy::Never | PullPolicy::IfNotPresent, Some(id)) => {
            events.push((
                EventType::Normal,
                "Pulled",
                format!("Container image {image:?} already present on machine"),
            ));
            return Ok(id);
        }
        _ => {}
    }
    let now = Instant::now();
    if let Some(t) = backoff.not_before
        && now < t
    {
        let message = format!("Back-off pulling image {image:?}");
        events.push((EventType::Normal, "BackOff", message.clone()));
        return Err(ImageError {
            reason: "ImagePullBackOff",
            message,
        });
    }
    events.push((
        EventType::Normal,
        "Pulling",
        format!("Pulling image {image:?}"),
    ));
    let auth = auth(client, pod, &registry(&image)).await;
    let started = Instant::now();
    let pulled = rt
        .pull_image(api::PullImageRequest {
            image: Some(spec),
            auth,
            sandbox_config: None,
        })
        .await;
    match pulled {
        Ok(r) => {
            backoff.delay = Duration::ZERO;
            backoff.not_before = None;
            events.push((
                EventType::Normal,
                "Pulled",
                format!(
                    "Successfully pulled image {image:?} in {:.3}s",
                    started.elapsed().as_secs_f64()
                ),
            ));
            Ok(r.into_inner().image_ref)
        }
        // The runtime itself is gone (killed, restarting): not the image's fault, so no
        // back-off; the pod is tried again as soon as the runtime answers.
        Err(e) if runtime_unavailable(&e) => Err(unavailable(&e)),
        Err(e) => {
            backoff.delay = if backoff.delay.is_zero() {
                INITIAL_BACKOFF
            } else {
                (backoff.delay * 2).min(MAX_BACKOFF)
            };
            backoff.not_before = Some(Instant::now() + backoff.delay);
            let message = format!("Failed to pull image {image:?}: {}", e.message());
            events.push((EventType::Warning, "Failed", message.clone()));
            events.push((EventType::Warning, "Failed", "Error: ErrImagePull".into()));
            Err(ImageError {
                reason: "ErrImagePull",
                message,
            })
        }
    }
}

/// Whether a CRI call failed because the runtime did not answer at all (its socket gone or
/// refusing), rather than because of what was asked.
pub fn runtime_unavailable(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable
}

/// The waiting reason of a container while its runtime does not answer.
fn unavailable(status: &tonic::Status) -> ImageError {
    ImageError {
        reason: "ContainerCreating",
        message: format!("the container runtime is unavailable: {}", status.message()),
    }
}

/// The first credentials for `host` among the pod's `imagePullSecrets` (unreadable or
/// malformed Secrets are passed over, as the kubelet does).
async fn auth(client: &kube::Client, pod: &Pod, host: &str) -> Option<api::AuthConfig> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let refs = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default();
    for r in refs {
        let Ok(Some(secret)) = secrets.get_opt(&r.name).await else {
            continue;
        };
        let data = secret.data.unwrap_or_default();
        let Some(bytes) = data
            .get(".dockerconfigjson")
            .or_else(|| data.get(".dockercfg"))
        else {
            continue;
        };
        let Ok(config) = serde_json::from_slice::<serde_json::Value>(&bytes.0) else {
            continue;
        };
        if let Some(a) = credentials(&config, host) {
            return Some(a);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_pull_policy_follows_the_tag() {
        let check = |image: &str, expected: PullPolicy| {
            let c = Container {
                image: Some(image.into()),
                ..Default::default()
            };
            assert_eq!(pull_policy(&c), expected, "{image}");
        };
        check("nginx", PullPolicy::Always);
        check("nginx:latest", PullPolicy::Always);
        check("nginx:1.27", PullPolicy::IfNotPresent);
        check("127.0.0.1:5000/busybox", PullPolicy::Always);
        check("127.0.0.1:5000/busybox:1", PullPolicy::IfNotPresent);
        check("busybox@sha256:abc", PullPolicy::IfNotPresent);
    }

    #[test]
    fn registries_are_named_as_docker_config_keys_name_them() {
        let check = |image: &str, expected: &str| assert_eq!(registry(image), expected, "{image}");
        check("nginx", "docker.io");
        check("library/nginx:1", "docker.io");
        check("127.0.0.1:5000/busybox:1", "127.0.0.1:5000");
        check("ghcr.io/a/b", "ghcr.io");
        check("localhost/x", "localhost");
    }

    #[test]
    fn credentials_come_from_username_and_password_or_auth() {
        let config = serde_json::json!({"auths": {
            "127.0.0.1:5000": {"auth": "dTpw"},
            "https://index.docker.io/v1/": {"username": "a", "password": "b"},
        }});
        let local = credentials(&config, "127.0.0.1:5000").expect("local");
        assert_eq!(
            (local.username.as_str(), local.password.as_str()),
            ("u", "p")
        );
        let hub = credentials(&config, "docker.io").expect("hub");
        assert_eq!((hub.username.as_str(), hub.password.as_str()), ("a", "b"));
        assert!(credentials(&config, "ghcr.io").is_none());
    }
}
