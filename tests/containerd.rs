//! Real containers: `gitplane up --runtime containerd` with a containerd it starts, images built
//! from Debian's busybox-static by scripts/build-test-image.sh and pushed with skopeo to a
//! docker-registry each test starts on a free loopback port, the real kubectl, and the CRI API
//! to look at what containerd runs. Needs containerd, runc, containernetworking-plugins,
//! docker-registry, skopeo, busybox-static and apache2-utils (scripts/test.sh installs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::{Server, eventually, free_port, pod_json, pod_ready as ready};
use node::runtime::{self, api};
use serde_json::Value;

const INSTALL: &str = "apt-get update && apt-get install -y containerd runc containernetworking-plugins docker-registry skopeo busybox-static apache2-utils";

fn need(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "{program} is not installed; install with: {INSTALL}");
}

/// The OCI layouts of scripts/build-test-image.sh, built once per test run.
fn images() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        for p in [
            "skopeo",
            "docker-registry",
            "containerd",
            "runc",
            "htpasswd",
        ] {
            need(p);
        }
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("containerd-images");
        let status = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/build-test-image.sh"
            ))
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .expect("run scripts/build-test-image.sh");
        assert!(status.success(), "scripts/build-test-image.sh failed");
        out
    })
}

/// A docker-registry on a free loopback port, with the test images pushed; killed on drop.
struct Registry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// `auth`: user and password of an htpasswd-protected registry.
    fn start(auth: Option<(&str, &str)>) -> Registry {
        let images = images();
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: gitplane\n    path: {}\n",
                file.display()
            ));
        }
        let file = dir.path().join("config.yml");
        std::fs::write(&file, config).expect("write registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = Registry {
            child,
            host: host.clone(),
            _dir: dir,
        };
        eventually("the registry to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(&host).ok()
        });
        for name in ["busybox", "pause", "hello"] {
            let mut cmd = Command::new("skopeo");
            cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
            if let Some((user, password)) = auth {
                cmd.arg("--dest-creds").arg(format!("{user}:{password}"));
            }
            let status = cmd
                .arg(format!("oci:{}:1", images.join(name).display()))
                .arg(format!("docker://{host}/gitplane/{name}:1"))
                .status()
                .expect("skopeo");
            assert!(status.success(), "skopeo copy {name} to {host} failed");
        }
        registry
    }

    fn image(&self, name: &str) -> String {
        format!("{}/gitplane/{name}:1", self.host)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `gitplane up --runtime containerd`, stopped cleanly on drop (its containerd with it).
struct Up(Option<Server>);

impl std::ops::Deref for Up {
    type Target = Server;
    fn deref(&self) -> &Server {
        self.0.as_ref().expect("server")
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(s) = self.0.as_mut() {
            s.stop();
        }
    }
}

fn containerd_args(sandbox: &Registry, insecure: &[&Registry]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--runtime",
        "containerd",
        "--node-name",
        "local",
        "--sandbox-image",
    ]
    .map(String::from)
    .to_vec();
    args.push(sandbox.image("pause"));
    for r in insecure {
        args.push("--insecure-registry".into());
        args.push(r.host.clone());
    }
    args
}

fn up(args: &[String]) -> Up {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Up(Some(Server::start_with(&args)))
}

fn wait_pod(s: &Server, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    common::wait_pod(s, name, what, Duration::from_secs(90), f)
}

fn socket(s: &Server) -> PathBuf {
    s.data_dir
        .join("nodes/local/containerd/containerd.sock")
        .canonicalize()
        .expect("the containerd socket")
}

/// Sandboxes and containers containerd has for the pod with `uid`.
fn cri_objects(socket: &Path, uid: &str) -> (usize, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        let cri = runtime::connect(socket, Duration::from_secs(10))
            .await
            .expect("connect to containerd");
        let selector: std::collections::HashMap<String, String> =
            [("io.kubernetes.pod.uid".to_string(), uid.to_string())].into();
        let sandboxes = cri
            .runtime
            .clone()
            .list_pod_sandbox(api::ListPodSandboxRequest {
                filter: Some(api::PodSandboxFilter {
                    label_selector: selector.clone(),
                    ..Default::default()
                }),
            })
            .await
            .expect("ListPodSandbox")
            .into_inner()
            .items
            .len();
        let containers = cri
            .runtime
            .clone()
            .list_containers(api::ListContainersRequest {
                filter: Some(api::ContainerFilter {
                    label_selector: selector,
                    ..Default::default()
                }),
            })
            .await
            .expect("ListContainers")
            .into_inner()
            .containers
            .len();
        (sandboxes, containers)
    })
}

fn http_get(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.contains("200 OK").then_some(out)
}

#[test]
fn a_deployment_of_a_built_image_serves_http_and_its_pods_run_as_the_kubelet_runs_them() {
    let registry = Registry::start(None);
    let s = up(&containerd_args(&registry, &[&registry]));
    let image = registry.image("busybox");
    let node_port = 30000 + free_port() % 2700;
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 1\n  \
             selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    \
             spec:\n      containers:\n      - name: httpd\n        image: {image}\n        \
             readinessProbe: {{exec: {{command: [cat, /www/index.html]}}, periodSeconds: 1}}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  type: NodePort\n  \
             selector: {{app: web}}\n  ports: [{{port: 80, nodePort: {node_port}}}]\n\
             ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: unready, labels: {{app: web}}}}\nspec:\n  \
             containers:\n  - name: httpd\n    image: {image}\n    \
             readinessProbe: {{exec: {{command: [cat, /missing]}}, periodSeconds: 1}}\n"
        ),
    );
    // The image's entrypoint (httpd) runs; the exec probe makes it Ready and an endpoint.
    let web = eventually("a Ready web pod", Duration::from_secs(120), || {
        let out = s.ok(&["get", "pods", "-l", "app=web", "-o", "json"]);
        let list: Value = serde_json::from_str(&out).ok()?;
        list["items"]
            .as_array()?
            .iter()
            .find(|p| p["metadata"]["name"] != "unready" && ready(p))
            .cloned()
    });
    let status = &web["status"]["containerStatuses"][0];
    assert!(
        status["containerID"]
            .as_str()
            .is_some_and(|c| c.starts_with("containerd://")),
        "{status}"
    );
    assert!(
        status["imageID"]
            .as_str()
            .is_some_and(|i| i.contains("/gitplane/busybox@sha256:")),
        "{status}"
    );
    let pod_ip = web["status"]["podIP"].as_str().unwrap_or_default();
    assert!(pod_ip.starts_with("10.89."), "{web}");
    let body = eventually(
        "an answer through the NodePort",
        Duration::from_secs(30),
        || http_get(&format!("127.0.0.1:{node_port}")),
    );
    assert!(
        body.contains("hello from a gitplane test container"),
        "{body}"
    );
    // The pod whose probe fails is Running but never an endpoint.
    let unready = wait_pod(&s, "unready", "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    assert!(!ready(&unready), "{unready}");
    let eps: Value = serde_json::from_str(&s.ok(&["get", "endpoints", "web", "-o", "json"]))
        .expect("endpoints json");
    let addresses = eps["subsets"][0]["addresses"].to_string();
    assert!(addresses.contains(pod_ip), "{eps}");
    let unready_ip = unready["status"]["podIP"].as_str().unwrap_or("none");
    assert!(!addresses.contains(unready_ip), "{eps}");

    // command/args override the image's entrypoint and cmd; logs come from the CRI log file.
    s.ok(&[
        "run",
        "talk",
        &format!("--image={image}"),
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "echo hello from talk; echo to stderr >&2",
    ]);
    wait_pod(&s, "talk", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    let logs = s.ok(&["logs", "talk"]);
    assert!(logs.contains("hello from talk\n"), "{logs}");
    assert!(logs.contains("to stderr\n"), "{logs}");

    // A memory limit is enforced by runc: the container is OOMKilled.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: hog}}\nspec:\n  restartPolicy: Never\n  \
             containers:\n  - name: hog\n    image: {image}\n    \
             command: [sh, -c, 'a=xxxxxxxxxxxxxxxx; while true; do a=$a$a; done']\n    \
             resources: {{limits: {{memory: 16Mi}}}}\n"
        ),
    );
    let hog = wait_pod(&s, "hog", "Failed", |p| p["status"]["phase"] == "Failed");
    let terminated = &hog["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["reason"], "OOMKilled", "{hog}");
    assert_eq!(terminated["exitCode"], 137, "{hog}");

    // A wrong tag: ErrImagePull, then ImagePullBackOff, with the kubelet's events.
    s.ok(&[
        "run",
        "missing",
        &format!("--image={}/gitplane/busybox:nope", registry.host),
    ]);
    wait_pod(&s, "missing", "ImagePullBackOff", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff"
    });
    let events = eventually("the pull events", Duration::from_secs(30), || {
        let e = s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=missing",
        ]);
        (e.contains("Failed to pull image") && e.contains("Back-off pulling image")).then_some(e)
    });
    assert!(events.contains("ErrImagePull"), "{events}");
    assert!(events.contains("Pulling"), "{events}");

    // Deleting a pod removes its containers and sandbox from containerd.
    let talk_uid = pod_json(&s, "talk").expect("talk")["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let sock = socket(&s);
    assert_eq!(cri_objects(&sock, &talk_uid).0, 1);
    s.ok(&[
        "delete",
        "pod",
        "talk",
        "hog",
        "missing",
        "unready",
        "--wait=true",
    ]);
    assert_eq!(cri_objects(&sock, &talk_uid), (0, 0));
}

#[test]
fn killing_and_restarting_the_node_keeps_the_running_containers() {
    let registry = Registry::start(None);
    let args = containerd_args(&registry, &[&registry]);
    let s = up(&args);
    s.ok(&[
        "run",
        "keep",
        &format!("--image={}", registry.image("busybox")),
    ]);
    let before = wait_pod(&s, "keep", "Running", |p| p["status"]["phase"] == "Running");
    let id = before["status"]["containerStatuses"][0]["containerID"].clone();
    let uid = before["metadata"]["uid"].as_str().expect("uid").to_string();
    // The log server's port: a new agent registers the Node with its own.
    let port = |s: &Server| -> Option<u64> {
        let node: Value =
            serde_json::from_str(&s.ok(&["get", "node", "local", "-o", "json"])).ok()?;
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64()
    };
    let old_port = port(&s);
    let mut s = s;
    let (dir, tmp) = s.0.take().expect("server").into_data();
    // The containerd the killed server started keeps running; the new one adopts it.
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Up(Some(Server::start_in_with(&dir, &args)));
    // The pod's status is still the killed agent's: wait for the new agent to register
    // before reading it (and before stopping the server, which then stops its containerd).
    eventually(
        "the new agent to register the node",
        Duration::from_secs(60),
        || port(&s).filter(|p| Some(*p) != old_port),
    );
    let after = wait_pod(
        &s,
        "keep",
        "Running again, reported by the new agent",
        |p| p["status"]["phase"] == "Running" && ready(p),
    );
    assert_eq!(after["status"]["containerStatuses"][0]["containerID"], id);
    assert_eq!(after["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(cri_objects(&socket(&s), &uid), (1, 1));
    // The new agent's log server answers.
    s.ok(&["logs", "keep"]);
    // A clean stop of the new server stops the containerd it adopted.
    drop(s);
    let pid = std::fs::read_to_string(dir.join("nodes/local/containerd/containerd.pid"))
        .expect("containerd.pid");
    eventually(
        "the adopted containerd to stop",
        Duration::from_secs(30),
        || {
            let cmdline =
                std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
            (!String::from_utf8_lossy(&cmdline).contains("containerd")).then_some(())
        },
    );
    drop(tmp);
}

#[test]
fn an_image_in_a_registry_with_htpasswd_is_pulled_with_the_pods_image_pull_secret() {
    let open = Registry::start(None);
    let private = Registry::start(Some(("gitplane", "s3cret")));
    let s = up(&containerd_args(&open, &[&open, &private]));
    let image = private.image("busybox");
    s.ok(&["run", "nosecret", &format!("--image={image}")]);
    wait_pod(&s, "nosecret", "a pull error without credentials", |p| {
        let reason = &p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"];
        reason == "ErrImagePull" || reason == "ImagePullBackOff"
    });
    s.ok(&[
        "create",
        "secret",
        "docker-registry",
        "pull",
        &format!("--docker-server={}", private.host),
        "--docker-username=gitplane",
        "--docker-password=s3cret",
    ]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: withsecret}}\nspec:\n  \
             imagePullSecrets: [{{name: pull}}]\n  containers:\n  - name: c\n    image: {image}\n"
        ),
    );
    wait_pod(&s, "withsecret", "Running", |p| {
        p["status"]["phase"] == "Running"
    });
}

#[test]
fn a_pod_reads_its_service_account_token_ca_and_namespace_from_the_projected_volume() {
    let registry = Registry::start(None);
    let s = up(&containerd_args(&registry, &[&registry]));
    let image = registry.image("busybox");
    s.ok(&["create", "serviceaccount", "robot"]);
    // ServiceAccount admission: the kube-api-access volume, unless the pod opts out.
    let opted_out: Value = serde_json::from_str(&s.ok_stdin(
        &["create", "--dry-run=server", "-o", "json", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: quiet}}\nspec:\n  \
             automountServiceAccountToken: false\n  containers: [{{name: c, image: {image}}}]\n"
        ),
    ))
    .expect("pod json");
    assert!(opted_out["spec"]["volumes"].is_null(), "{opted_out}");
    const DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: reader}}\nspec:\n  \
             serviceAccountName: robot\n  restartPolicy: Never\n  containers:\n  - name: c\n    \
             image: {image}\n    command: [sh, -c, 'cat {DIR}/token; echo; echo ---; \
             cat {DIR}/namespace; echo; echo ---; cat {DIR}/ca.crt']\n"
        ),
    );
    let pod = wait_pod(&s, "reader", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    let volume = &pod["spec"]["volumes"][0];
    assert!(
        volume["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("kube-api-access-")),
        "{pod}"
    );
    assert_eq!(
        volume["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
        3607
    );
    let logs = s.ok(&["logs", "reader"]);
    let parts: Vec<&str> = logs.split("\n---\n").collect();
    assert_eq!(parts.len(), 3, "{logs}");
    assert_eq!(parts[1], "default", "{logs}");
    let ca = std::fs::read_to_string(s.data_dir.join("pki/ca.crt")).expect("cluster CA");
    assert_eq!(parts[2].trim(), ca.trim(), "ca.crt is the cluster CA");
    // The token authenticates as the pod's ServiceAccount.
    let review: Value = serde_json::from_str(
        &s.ok_stdin(
            &["create", "-o", "json", "-f", "-"],
            &serde_json::json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": parts[0].trim()},
            })
            .to_string(),
        ),
    )
    .expect("TokenReview json");
    assert_eq!(review["status"]["authenticated"], true, "{review}");
    assert_eq!(
        review["status"]["user"]["username"], "system:serviceaccount:default:robot",
        "{review}"
    );
}

/// The images containerd has: (id, repo tags).
fn cri_images(socket: &Path) -> Vec<(String, Vec<String>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        let cri = runtime::connect(socket, Duration::from_secs(10))
            .await
            .expect("connect to containerd");
        cri.images
            .clone()
            .list_images(api::ListImagesRequest { filter: None })
            .await
            .expect("ListImages")
            .into_inner()
            .images
            .into_iter()
            .map(|i| (i.id, i.repo_tags))
            .collect()
    })
}

/// Pulls `image` through CRI, as `crictl pull` does.
fn cri_pull(socket: &Path, image: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        let cri = runtime::connect(socket, Duration::from_secs(10))
            .await
            .expect("connect to containerd");
        cri.images
            .clone()
            .pull_image(api::PullImageRequest {
                image: Some(api::ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("PullImage");
    })
}

#[test]
fn image_gc_removes_an_unused_image_keeps_used_ones_and_says_when_it_cannot_free_enough() {
    let registry = Registry::start(None);
    let mut args = containerd_args(&registry, &[&registry]);
    // Collect at 1% usage, down to 0%: always, and never enough. An image is 10 s old before
    // it may go (the kubelet's 2 minutes, shorter): never between a pod's pull and its
    // container's creation.
    args.extend(
        [
            "--image-gc-high-threshold",
            "1",
            "--image-gc-low-threshold",
            "0",
            "--minimum-image-ttl-duration",
            "10s",
            "--image-gc-period",
            "1s",
        ]
        .map(String::from),
    );
    let s = up(&args);
    let busybox = registry.image("busybox");
    s.ok(&["run", "keep", &format!("--image={busybox}")]);
    wait_pod(&s, "keep", "Running", |p| p["status"]["phase"] == "Running");
    let sock = socket(&s);
    let hello = registry.image("hello");
    cri_pull(&sock, &hello);
    let has = |images: &[(String, Vec<String>)], name: &str| {
        images
            .iter()
            .any(|(_, tags)| tags.iter().any(|t| t == name))
    };
    let images = eventually(
        "the unused image to be collected",
        Duration::from_secs(60),
        || {
            let images = cri_images(&sock);
            (!has(&images, &hello)).then_some(images)
        },
    );
    assert!(has(&images, &busybox), "the image in use stays: {images:?}");
    assert!(
        has(&images, &registry.image("pause")),
        "the sandbox image stays: {images:?}"
    );
    let events = eventually(
        "the image GC failure events",
        Duration::from_secs(60),
        || {
            let e = s.ok(&[
                "get",
                "events",
                "--field-selector",
                "involvedObject.kind=Node,involvedObject.name=local",
            ]);
            (e.contains("ImageGCFailed") && e.contains("FreeDiskSpaceFailed")).then_some(e)
        },
    );
    assert!(
        events.contains("Failed to garbage collect required amount of images"),
        "{events}"
    );
    let pod = wait_pod(&s, "keep", "still Running", |p| {
        p["status"]["phase"] == "Running"
    });
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `kubectl port-forward ARGS` in the background; killed when dropped.
struct Forward(Child);

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn exec_attach_cp_and_port_forward_reach_containerd_containers() {
    let registry = Registry::start(None);
    let s = up(&containerd_args(&registry, &[&registry]));
    let image = registry.image("busybox");
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  \
             containers: [{{name: httpd, image: {image}}}]\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {{name: echo}}\nspec:\n  restartPolicy: Never\n  \
             containers:\n  - name: echo\n    image: {image}\n    stdin: true\n    stdinOnce: true\n    \
             command: [sh, -c, 'while read line; do echo \"got $line\"; done; echo bye >&2']\n"
        ),
    );
    wait_pod(&s, "web", "Running", |p| p["status"]["phase"] == "Running");

    // exec: the command runs in the container, its exit code is kubectl's; stdin reaches it.
    let out = s.kubectl(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "cat /www/index.html; exit 3",
    ]);
    assert_eq!(
        text(&out.stdout),
        "hello from a gitplane test container\n",
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = s.kubectl_stdin(
        &[
            "exec",
            "-i",
            "web",
            "--",
            "sh",
            "-c",
            "tr a-z A-Z; echo end",
        ],
        Some("hello stdin\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "HELLO STDIN\nend\n");

    // cp (tar through exec) into the container's file system and back out.
    let dir = tempfile::tempdir().expect("temp dir");
    let local = dir.path().join("in.txt");
    std::fs::write(&local, "copied in\n").expect("write file");
    s.ok(&["cp", local.to_str().expect("utf-8"), "web:/tmp/in.txt"]);
    assert_eq!(
        s.ok(&["exec", "web", "--", "cat", "/tmp/in.txt"]),
        "copied in\n"
    );
    let back = dir.path().join("back.txt");
    s.ok(&["cp", "web:/www/index.html", back.to_str().expect("utf-8")]);
    assert_eq!(
        std::fs::read_to_string(&back).expect("copied out"),
        "hello from a gitplane test container\n"
    );

    // port-forward: the pod's httpd on port 80 answers on a local port.
    let local_port = free_port();
    let _forward = Forward(
        common::kubectl_command()
            .arg("--kubeconfig")
            .arg(s.kubeconfig())
            .args(["port-forward", "pod/web", &format!("{local_port}:80")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl port-forward"),
    );
    let body = eventually(
        "an answer through port-forward",
        Duration::from_secs(30),
        || http_get(&format!("127.0.0.1:{local_port}")),
    );
    assert!(
        body.contains("hello from a gitplane test container"),
        "{body}"
    );

    // attach: what is typed reaches the container; closing stdin (stdinOnce) ends it.
    wait_pod(&s, "echo", "Running", |p| p["status"]["phase"] == "Running");
    let out = s.kubectl_stdin(
        &["attach", "-i", "echo"],
        Some("hello attach\nsecond line\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("got hello attach\ngot second line\n"),
        "{}",
        text(&out.stdout)
    );
}
