//! The process runtime: a CRI v1 runtime (RuntimeService and ImageService) where a container
//! is a host process (its own process group) and a pod sandbox a directory (and, with pod
//! networking, a network namespace). Images are recorded, never pulled: every image is
//! "present" and its id is its reference.
//!
//! What a container's process gets:
//! - `command` then `args` as its argv (the first word looked up on the container's `PATH`);
//! - the container's environment on top of `PATH` (the runtime's), `HOSTNAME` (the pod's name),
//!   `HOME`, and `GITPLANE_ROOT`, `GITPLANE_POD_DIR`;
//! - a *root* directory, `$GITPLANE_ROOT` (`<sandbox>/roots/<container>`), in which every
//!   volume mount appears at its `mountPath` as a symbolic link to the volume's directory (a
//!   mount at `/etc/config` is `$GITPLANE_ROOT/etc/config`);
//! - as working directory: `workingDir` when it exists on the host, otherwise that path under
//!   `$GITPLANE_ROOT` (created); without `workingDir`, `$GITPLANE_ROOT`;
//! - stdout and stderr into its log file; stdin from `/dev/null`;
//! - with pod networking, the pod's network namespace (started through `ip netns exec`).
//!
//! When the main process exits, the rest of its process group is killed (a container's pid
//! namespace would end the same way), so nothing it started outlives it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apimachinery::matching::map_matches;
use apimachinery::streaming::{STDERR, STDOUT};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, BufReader};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::api::{
    self, image_service_server::ImageService, runtime_service_server::RuntimeService,
};
use super::cgroup::Cgroups;
use super::logs::{LogWriter, MAX_LINE};
use super::network::Network;
use super::{Config, Error, NetworkMode};
use crate::streaming::{AttachSpec, Console, ExecSpec, PortForwardSpec, Session, Streams};

/// The process runtime; serve it with [`super::serve`].
#[derive(Clone, Debug)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    state: Mutex<State>,
    network: Option<Network>,
    cgroups: Option<Cgroups>,
    streams: Streams,
}

#[derive(Debug, Default)]
struct State {
    sandboxes: HashMap<String, Sandbox>,
    containers: HashMap<String, Container>,
}

#[derive(Debug, Clone)]
struct Sandbox {
    id: String,
    config: api::PodSandboxConfig,
    created_at: i64,
    ready: bool,
    dir: PathBuf,
    ip: String,
    netns: String,
    veth: String,
}

#[derive(Debug, Clone)]
struct Container {
    sandbox: String,
    status: api::ContainerStatus,
    config: api::ContainerConfig,
    /// Turns true when the process has exited and been reaped.
    exited: Option<watch::Receiver<bool>>,
    root: PathBuf,
    /// Process id (and process group id) of the main process; 0 when not running.
    pid: i32,
    /// Its standard streams for attach, while it runs.
    console: Option<Arc<Console>>,
}

fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match e {
            Error::NotFound(_) => Status::not_found(e.to_string()),
            Error::Invalid(_) => Status::invalid_argument(e.to_string()),
            _ => Status::internal(e.to_string()),
        }
    }
}

impl ProcessRuntime {
    /// The sandbox, config and root of a running container (exec's context).
    fn running(&self, id: &str) -> Result<(Sandbox, api::ContainerConfig, PathBuf), Status> {
        let s = self.state()?;
        let c = s
            .containers
            .get(id)
            .ok_or_else(|| Status::not_found(format!("container {id}")))?;
        if c.status.state != api::ContainerState::ContainerRunning as i32 {
            return Err(Status::failed_precondition(format!(
                "container {id} is not running"
            )));
        }
        let sb = s
            .sandboxes
            .get(&c.sandbox)
            .ok_or_else(|| Status::not_found(format!("sandbox {}", c.sandbox)))?
            .clone();
        Ok((sb, c.config.clone(), c.root.clone()))
    }

    /// Sets the runtime up: its directory, the bridge when pod networking is on, cgroups.
    pub fn new(config: Config) -> Result<ProcessRuntime, Error> {
        std::fs::create_dir_all(config.root.join("pods")).map_err(|e| Error::Io {
            path: config.root.clone(),
            source: e,
        })?;
        let network = match &config.network {
            NetworkMode::Host => None,
            NetworkMode::Bridge { cidr, seed } => Some(Network::setup(cidr.as_deref(), seed)?),
        };
        let cgroups = Cgroups::detect();
        Ok(ProcessRuntime {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State::default()),
                network,
                cgroups,
                streams: Streams::default(),
            }),
        })
    }

    /// The streaming sessions (exec) this runtime hands out; [`super::serve`] serves them.
    pub fn streams(&self) -> &Streams {
        &self.inner.streams
    }

    /// The pod CIDR when pods get their own network.
    pub fn pod_cidr(&self) -> Option<String> {
        self.inner.network.as_ref().map(Network::cidr)
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, State>, Error> {
        self.inner.state.lock().map_err(|_| Error::Poisoned)
    }

    /// Stops every container and removes every sandbox and the bridge (for a runtime that
    /// shuts down with its processes).
    pub async fn shutdown(&self, grace: Duration) {
        let ids: Vec<String> = match self.state() {
            Ok(s) => s.sandboxes.keys().cloned().collect(),
            Err(_) => return,
        };
        futures::future::join_all(ids.iter().map(|id| self.remove_sandbox(id, grace))).await;
        if let Some(n) = &self.inner.network {
            n.teardown();
        }
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), Error> {
        let (pid, exited) = {
            let s = self.state()?;
            let c = s
                .containers
                .get(id)
                .ok_or_else(|| Error::NotFound(format!("container {id}")))?;
            (c.pid, c.exited.clone())
        };
        let Some(mut exited) = exited else {
            return Ok(());
        };
        if *exited.borrow() || pid <= 0 {
            return Ok(());
        }
        let group = Pid::from_raw(pid);
        let _ = killpg(group, Signal::SIGTERM);
        if tokio::time::timeout(grace, exited.wait_for(|e| *e))
            .await
            .is_err()
        {
            let _ = killpg(group, Signal::SIGKILL);
            let _ = exited.wait_for(|e| *e).await;
        }
        Ok(())
    }

    async fn remove_sandbox(&self, id: &str, grace: Duration) {
        let containers: Vec<String> = match self.state() {
            Ok(s) => s
                .containers
                .iter()
                .filter(|(_, c)| c.sandbox == id)
                .map(|(k, _)| k.clone())
                .collect(),
            Err(_) => return,
        };
        futures::future::join_all(containers.iter().map(|c| self.stop_container(c, grace))).await;
        let sandbox = match self.state() {
            Ok(mut s) => {
                for c in &containers {
                    s.containers.remove(c);
                }
                s.sandboxes.remove(id)
            }
            Err(_) => return,
        };
        if let Some(sb) = sandbox {
            self.release_network(&sb);
            let _ = std::fs::remove_dir_all(&sb.dir);
        }
        if let Some(cg) = &self.inner.cgroups {
            for c in &containers {
                cg.remove(c);
            }
        }
    }

    fn release_network(&self, sb: &Sandbox) {
        if let Some(n) = &self.inner.network
            && !sb.netns.is_empty()
        {
            n.remove_pod(&sb.netns, &sb.veth, &sb.ip);
        }
    }

    fn sandbox_status(sb: &Sandbox) -> api::PodSandboxStatus {
        api::PodSandboxStatus {
            id: sb.id.clone(),
            metadata: sb.config.metadata.clone(),
            state: if sb.ready {
                api::PodSandboxState::SandboxReady
            } else {
                api::PodSandboxState::SandboxNotready
            } as i32,
            created_at: sb.created_at,
            network: Some(api::PodSandboxNetworkStatus {
                ip: sb.ip.clone(),
                additional_ips: Vec::new(),
            }),
            labels: sb.config.labels.clone(),
            annotations: sb.config.annotations.clone(),
            runtime_handler: "process".into(),
            ..Default::default()
        }
    }

    /// Whether the sandbox asks for the node's network namespace (`hostNetwork`).
    fn host_network(config: &api::PodSandboxConfig) -> bool {
        config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|c| c.namespace_options.as_ref())
            .is_some_and(|n| n.network == api::NamespaceMode::Node as i32)
    }

    /// The process's argv: `command` then `args`, as CRI hands them over.
    fn argv(config: &api::ContainerConfig) -> Vec<String> {
        config
            .command
            .iter()
            .chain(config.args.iter())
            .cloned()
            .collect()
    }

    /// Memory limit in bytes and CPU in millicores (0: none) of the container's resources.
    fn limits(config: &api::ContainerConfig) -> Option<(i64, i64)> {
        let r = config.linux.as_ref()?.resources.as_ref()?;
        let cpu = if r.cpu_period > 0 && r.cpu_quota > 0 {
            r.cpu_quota * 1000 / r.cpu_period
        } else {
            0
        };
        Some((r.memory_limit_in_bytes, cpu))
    }

    /// CRI stats of the running containers `filter` selects: cumulative CPU and the working
    /// set, from the container's cgroup v2 when it has one, else from its process group in
    /// `/proc` (see [`crate::usage`]).
    fn stats(
        &self,
        filter: &api::ContainerStatsFilter,
    ) -> Result<Vec<api::ContainerStats>, Status> {
        let running: Vec<(api::ContainerStatus, i32)> = {
            let s = self.state()?;
            s.containers
                .values()
                .filter(|c| c.pid > 0)
                .filter(|c| filter.id.is_empty() || c.status.id == filter.id)
                .filter(|c| filter.pod_sandbox_id.is_empty() || c.sandbox == filter.pod_sandbox_id)
                .filter(|c| map_matches(&filter.label_selector, &c.status.labels))
                .map(|c| (c.status.clone(), c.pid))
                .collect()
        };
        let groups = crate::usage::ProcessGroups::read();
        let skip_leader = self.inner.config.shim.is_some();
        let now = now_ns();
        let value = |value| Some(api::UInt64Value { value });
        Ok(running
            .into_iter()
            .map(|(status, pid)| {
                let reading = self
                    .inner
                    .cgroups
                    .as_ref()
                    .and_then(|cg| crate::usage::cgroup_v2(&cg.dir(&status.id)))
                    .unwrap_or_else(|| groups.group(pid, skip_leader));
                api::ContainerStats {
                    attributes: Some(api::ContainerAttributes {
                        id: status.id,
                        metadata: status.metadata,
                        labels: status.labels,
                        annotations: status.annotations,
                    }),
                    cpu: Some(api::CpuUsage {
                        timestamp: now,
                        usage_core_nano_seconds: value(reading.cpu_nanos),
                        usage_nano_cores: None,
                    }),
                    memory: Some(api::MemoryUsage {
                        timestamp: now,
                        working_set_bytes: value(reading.working_set),
                        ..Default::default()
                    }),
                    writable_layer: None,
                    swap: None,
                }
            })
            .collect())
    }

    fn list_item(c: &Container) -> api::Container {
        api::Container {
            id: c.status.id.clone(),
            pod_sandbox_id: c.sandbox.clone(),
            metadata: c.status.metadata.clone(),
            image: c.status.image.clone(),
            image_ref: c.status.image_ref.clone(),
            state: c.status.state,
            created_at: c.status.created_at,
            labels: c.status.labels.clone(),
            annotations: c.status.annotations.clone(),
            image_id: c.status.image_id.clone(),
        }
    }

    /// The environment, working directory and argv prefix shared by a container's process and
    /// the commands exec'd in it.
    fn context(
        sb: &Sandbox,
        config: &api::ContainerConfig,
        root: &Path,
    ) -> (Vec<(String, String)>, PathBuf, Vec<String>) {
        let mut env = vec![
            (
                "PATH".to_string(),
                std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            ),
            ("HOME".to_string(), root.to_string_lossy().into_owned()),
            (
                "HOSTNAME".to_string(),
                if sb.config.hostname.is_empty() {
                    sb.config
                        .metadata
                        .as_ref()
                        .map(|m| m.name.clone())
                        .unwrap_or_default()
                } else {
                    sb.config.hostname.clone()
                },
            ),
            (
                "GITPLANE_ROOT".to_string(),
                root.to_string_lossy().into_owned(),
            ),
            (
                "GITPLANE_POD_DIR".to_string(),
                sb.dir.to_string_lossy().into_owned(),
            ),
        ];
        for kv in &config.envs {
            env.retain(|(k, _)| k != &kv.key);
            env.push((kv.key.clone(), kv.value.clone()));
        }
        let cwd = if config.working_dir.is_empty() {
            root.to_path_buf()
        } else if Path::new(&config.working_dir).is_dir() {
            PathBuf::from(&config.working_dir)
        } else {
            let p = root.join(config.working_dir.trim_start_matches('/'));
            let _ = std::fs::create_dir_all(&p);
            p
        };
        let prefix = if sb.netns.is_empty() {
            Vec::new()
        } else {
            vec![
                "ip".to_string(),
                "netns".into(),
                "exec".into(),
                sb.netns.clone(),
            ]
        };
        (env, cwd, prefix)
    }

    fn command(
        env: &[(String, String)],
        cwd: &Path,
        prefix: &[String],
        argv: &[String],
    ) -> Result<tokio::process::Command, Error> {
        let full: Vec<&String> = prefix.iter().chain(argv.iter()).collect();
        let (program, args) = full
            .split_first()
            .ok_or_else(|| Error::Invalid("the container has no command".into()))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .stdin(Stdio::null())
            .process_group(0);
        Ok(cmd)
    }

    /// Makes every mount appear at its path under the container's root.
    fn lay_out_root(root: &Path, mounts: &[api::Mount]) -> Result<(), Error> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(root).map_err(io(root))?;
        for m in mounts {
            let rel = m.container_path.trim_start_matches('/');
            if rel.is_empty() {
                continue;
            }
            let link = root.join(rel);
            if let Some(parent) = link.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&m.host_path, &link).map_err(io(&link))?;
        }
        Ok(())
    }

    fn start(&self, id: &str) -> Result<(), Error> {
        let (sb, config, root) = {
            let s = self.state()?;
            let c = s
                .containers
                .get(id)
                .ok_or_else(|| Error::NotFound(format!("container {id}")))?;
            if c.status.state != api::ContainerState::ContainerCreated as i32 {
                return Err(Error::Invalid(format!(
                    "container {id} was already started"
                )));
            }
            let sb = s
                .sandboxes
                .get(&c.sandbox)
                .ok_or_else(|| Error::NotFound(format!("sandbox {}", c.sandbox)))?
                .clone();
            (sb, c.config.clone(), c.root.clone())
        };
        let cgroup = self.inner.cgroups.as_ref().and_then(|cg| {
            let (memory, cpu) = Self::limits(&config)?;
            cg.create(id, memory, cpu)
        });
        let shim = self.inner.config.shim.as_deref();
        let spawned = (|| {
            Self::lay_out_root(&root, &config.mounts)?;
            let (env, cwd, mut prefix) = Self::context(&sb, &config, &root);
            let argv = Self::argv(&config);
            if let Some(shim) = shim {
                // The shim's own start error would be a container exit: say now what is missing.
                let program = argv.first().map(String::as_str).unwrap_or_default();
                if prefix.is_empty() && !on_path(program, &env) {
                    return Err(Error::Start(format!(
                        "{program}: No such file or directory (os error 2)"
                    )));
                }
                prefix.splice(0..0, shim_prefix(shim, cgroup.as_deref()));
            }
            let mut cmd = Self::command(&env, &cwd, &prefix, &argv)?;
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            if config.stdin {
                // Kept open for attach; closed when an attached client closes it (stdinOnce).
                cmd.stdin(Stdio::piped());
            }
            let program = argv.first().cloned().unwrap_or_default();
            cmd.spawn()
                .map_err(|e| Error::Start(format!("{program}: {e}")))
        })();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let mut s = self.state()?;
                if let Some(c) = s.containers.get_mut(id) {
                    let now = now_ns();
                    c.status.state = api::ContainerState::ContainerExited as i32;
                    c.status.started_at = now;
                    c.status.finished_at = now;
                    c.status.exit_code = 128;
                    c.status.reason = "StartError".into();
                    c.status.message = e.to_string();
                    let (_, rx) = watch::channel(true);
                    c.exited = Some(rx);
                }
                return Err(e);
            }
        };
        let pid = child.id().unwrap_or(0);
        if let Some(dir) = &cgroup
            && shim.is_none()
        {
            Cgroups::join(dir, pid);
        }
        let log_path = PathBuf::from(&sb.config.log_directory).join(&config.log_path);
        let writer = LogWriter::open(
            &log_path,
            self.inner.config.log_max_size,
            self.inner.config.log_max_files,
        )
        .map_err(|e| Error::Io {
            path: log_path.clone(),
            source: e,
        });
        let writer = Arc::new(Mutex::new(writer.ok()));
        let (tee, _) = tokio::sync::broadcast::channel(256);
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let tee = (tee.clone(), STDOUT);
            readers.push(tokio::spawn(copy_log(out, "stdout", writer.clone(), tee)));
        }
        if let Some(err) = child.stderr.take() {
            let tee = (tee.clone(), STDERR);
            readers.push(tokio::spawn(copy_log(err, "stderr", writer.clone(), tee)));
        }
        let (exit_tx, exit_rx) = watch::channel(None);
        let console = Arc::new(Console {
            stdin: tokio::sync::Mutex::new(child.stdin.take()),
            output: Mutex::new(Some(tee)),
            exit: exit_rx,
        });
        let (tx, rx) = watch::channel(false);
        {
            let mut s = self.state()?;
            if let Some(c) = s.containers.get_mut(id) {
                c.status.state = api::ContainerState::ContainerRunning as i32;
                c.status.started_at = now_ns();
                c.pid = pid as i32;
                c.exited = Some(rx);
                c.console = Some(console.clone());
            }
        }
        let this = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let status = child.wait().await;
            // Whatever the main process left behind in its group goes with it.
            if pid > 0 {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            for r in readers {
                let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
            }
            console
                .output
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            let code = match &status {
                Ok(s) => s
                    .code()
                    .or_else(|| {
                        std::os::unix::process::ExitStatusExt::signal(s).map(|sig| 128 + sig)
                    })
                    .unwrap_or(255),
                Err(_) => 255,
            };
            let _ = exit_tx.send(Some(code));
            if let Ok(mut s) = this.state()
                && let Some(c) = s.containers.get_mut(&id)
            {
                c.status.state = api::ContainerState::ContainerExited as i32;
                c.status.finished_at = now_ns();
                c.status.exit_code = code;
                c.status.reason = if code == 0 { "Completed" } else { "Error" }.into();
                c.pid = 0;
                c.console = None;
            }
            if let Some(cg) = &this.inner.cgroups {
                cg.remove(&id);
            }
            let _ = tx.send(true);
        });
        Ok(())
    }
}

/// The argv prefix that starts a container through `shim` (a `gitplane` binary), joining
/// `cgroup` first when given.
fn shim_prefix(shim: &Path, cgroup: Option<&Path>) -> Vec<String> {
    let mut prefix = vec![
        shim.to_string_lossy().into_owned(),
        "shim".into(),
        "--parent".into(),
        std::process::id().to_string(),
    ];
    if let Some(dir) = cgroup {
        prefix.extend(["--cgroup".into(), dir.to_string_lossy().into_owned()]);
    }
    prefix.push("--".into());
    prefix
}

/// Whether `program` can be started: a path that exists, or a name found on the `PATH` of
/// `env`.
fn on_path(program: &str, env: &[(String, String)]) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    std::env::split_paths(path).any(|dir| dir.join(program).is_file())
}

/// Copies a stream into the log, line by line (pieces of at most [`MAX_LINE`]).
/// Copies a container's output into its log, line by line, and to attached clients (`tee`:
/// the channel and its stream number).
async fn copy_log(
    stream: impl AsyncRead + Unpin,
    name: &'static str,
    writer: Arc<Mutex<Option<LogWriter>>>,
    tee: (tokio::sync::broadcast::Sender<(u8, bytes::Bytes)>, u8),
) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_LINE as u64);
        match tokio::io::AsyncBufReadExt::read_until(&mut limited, b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if tee.0.receiver_count() > 0 {
            let _ = tee.0.send((tee.1, bytes::Bytes::copy_from_slice(&line)));
        }
        let full = line.last() == Some(&b'\n');
        if full {
            line.pop();
        }
        if let Ok(mut w) = writer.lock()
            && let Some(w) = w.as_mut()
        {
            w.write(name, full, &line);
        }
    }
}

use tokio::io::AsyncReadExt as _;

type Res<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl RuntimeService for ProcessRuntime {
    async fn version(&self, _: Request<api::VersionRequest>) -> Res<api::VersionResponse> {
        Ok(Response::new(api::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "process".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<api::RunPodSandboxRequest>,
    ) -> Res<api::RunPodSandboxResponse> {
        let config = req
            .into_inner()
            .config
            .ok_or_else(|| Status::invalid_argument("config is required"))?;
        let id = new_id();
        let dir = self.inner.config.root.join("pods").join(&id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Status::internal(format!("{}: {e}", dir.display())))?;
        let mut sb = Sandbox {
            id: id.clone(),
            config,
            created_at: now_ns(),
            ready: true,
            dir,
            ip: String::new(),
            netns: String::new(),
            veth: String::new(),
        };
        if let Some(n) = &self.inner.network
            && !Self::host_network(&sb.config)
        {
            let netns = n.netns_name(&id);
            let veth = format!("gv{}", &id[..12]);
            let ip = tokio::task::block_in_place(|| n.add_pod(&netns, &veth));
            match ip {
                Ok(ip) => {
                    sb.ip = ip;
                    sb.netns = netns;
                    sb.veth = veth;
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&sb.dir);
                    return Err(e.into());
                }
            }
        }
        self.state()?.sandboxes.insert(id.clone(), sb);
        Ok(Response::new(api::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<api::StopPodSandboxRequest>,
    ) -> Res<api::StopPodSandboxResponse> {
        let id = req.into_inner().pod_sandbox_id;
        let containers: Vec<String> = self
            .state()?
            .containers
            .iter()
            .filter(|(_, c)| c.sandbox == id)
            .map(|(k, _)| k.clone())
            .collect();
        futures::future::join_all(
            containers
                .iter()
                .map(|c| self.stop_container(c, Duration::ZERO)),
        )
        .await;
        let sb = {
            let mut s = self.state()?;
            s.sandboxes.get_mut(&id).map(|sb| {
                sb.ready = false;
                sb.clone()
            })
        };
        if let Some(sb) = sb {
            tokio::task::block_in_place(|| self.release_network(&sb));
            if let Ok(mut s) = self.state()
                && let Some(sb) = s.sandboxes.get_mut(&id)
            {
                sb.netns.clear();
                sb.veth.clear();
            }
        }
        Ok(Response::new(api::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<api::RemovePodSandboxRequest>,
    ) -> Res<api::RemovePodSandboxResponse> {
        let id = req.into_inner().pod_sandbox_id;
        self.remove_sandbox(&id, Duration::ZERO).await;
        Ok(Response::new(api::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<api::PodSandboxStatusRequest>,
    ) -> Res<api::PodSandboxStatusResponse> {
        let req = req.into_inner();
        let id = req.pod_sandbox_id;
        let s = self.state()?;
        let sb = s
            .sandboxes
            .get(&id)
            .ok_or_else(|| Status::not_found(format!("sandbox {id}")))?;
        // Verbose: the network namespace's path, where containerd's CRI plugin puts it
        // (`info` → `runtimeSpec.linux.namespaces`), so the agent finds it the same way.
        let info = if req.verbose && !sb.netns.is_empty() {
            let spec = serde_json::json!({"runtimeSpec": {"linux": {"namespaces": [
                {"type": "network", "path": format!("/var/run/netns/{}", sb.netns)},
            ]}}});
            [("info".to_string(), spec.to_string())].into()
        } else {
            Default::default()
        };
        Ok(Response::new(api::PodSandboxStatusResponse {
            status: Some(Self::sandbox_status(sb)),
            info,
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<api::ListPodSandboxRequest>,
    ) -> Res<api::ListPodSandboxResponse> {
        let filter = req.into_inner().filter.unwrap_or_default();
        let s = self.state()?;
        let items = s
            .sandboxes
            .values()
            .filter(|sb| filter.id.is_empty() || sb.id == filter.id)
            .filter(|sb| map_matches(&filter.label_selector, &sb.config.labels))
            .map(Self::sandbox_status)
            .filter(|st| filter.state.as_ref().is_none_or(|f| f.state == st.state))
            .map(|st| api::PodSandbox {
                id: st.id,
                metadata: st.metadata,
                state: st.state,
                created_at: st.created_at,
                labels: st.labels,
                annotations: st.annotations,
                runtime_handler: st.runtime_handler,
            })
            .collect();
        Ok(Response::new(api::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        req: Request<api::CreateContainerRequest>,
    ) -> Res<api::CreateContainerResponse> {
        let req = req.into_inner();
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("config is required"))?;
        let mut s = self.state()?;
        let sb = s
            .sandboxes
            .get(&req.pod_sandbox_id)
            .ok_or_else(|| Status::not_found(format!("sandbox {}", req.pod_sandbox_id)))?;
        if !sb.ready {
            return Err(Status::failed_precondition(format!(
                "sandbox {} is stopped",
                sb.id
            )));
        }
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        if Self::argv(&config).is_empty() {
            return Err(Status::invalid_argument(format!(
                "container {name:?} has no command: the process runtime runs host programs and has no image entrypoint; set command"
            )));
        }
        let image = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let id = new_id();
        let root = sb.dir.join("roots").join(&name);
        let log_path = PathBuf::from(&sb.config.log_directory).join(&config.log_path);
        let status = api::ContainerStatus {
            id: id.clone(),
            metadata: config.metadata.clone(),
            state: api::ContainerState::ContainerCreated as i32,
            created_at: now_ns(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            log_path: log_path.to_string_lossy().into_owned(),
            image: config.image.clone(),
            image_ref: image.clone(),
            image_id: image,
            ..Default::default()
        };
        s.containers.insert(
            id.clone(),
            Container {
                sandbox: req.pod_sandbox_id,
                status,
                config,
                exited: None,
                root,
                pid: 0,
                console: None,
            },
        );
        Ok(Response::new(api::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        req: Request<api::StartContainerRequest>,
    ) -> Res<api::StartContainerResponse> {
        self.start(&req.into_inner().container_id)?;
        Ok(Response::new(api::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<api::StopContainerRequest>,
    ) -> Res<api::StopContainerResponse> {
        let req = req.into_inner();
        let grace = Duration::from_secs(req.timeout.max(0) as u64);
        ProcessRuntime::stop_container(self, &req.container_id, grace).await?;
        Ok(Response::new(api::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<api::RemoveContainerRequest>,
    ) -> Res<api::RemoveContainerResponse> {
        let id = req.into_inner().container_id;
        match ProcessRuntime::stop_container(self, &id, Duration::ZERO).await {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.state()?.containers.remove(&id);
        Ok(Response::new(api::RemoveContainerResponse {}))
    }

    async fn container_status(
        &self,
        req: Request<api::ContainerStatusRequest>,
    ) -> Res<api::ContainerStatusResponse> {
        let id = req.into_inner().container_id;
        let s = self.state()?;
        let c = s
            .containers
            .get(&id)
            .ok_or_else(|| Status::not_found(format!("container {id}")))?;
        Ok(Response::new(api::ContainerStatusResponse {
            status: Some(c.status.clone()),
            ..Default::default()
        }))
    }

    async fn list_containers(
        &self,
        req: Request<api::ListContainersRequest>,
    ) -> Res<api::ListContainersResponse> {
        let filter = req.into_inner().filter.unwrap_or_default();
        let s = self.state()?;
        let containers = s
            .containers
            .values()
            .filter(|c| filter.id.is_empty() || c.status.id == filter.id)
            .filter(|c| filter.pod_sandbox_id.is_empty() || c.sandbox == filter.pod_sandbox_id)
            .filter(|c| map_matches(&filter.label_selector, &c.status.labels))
            .filter(|c| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|f| f.state == c.status.state)
            })
            .map(Self::list_item)
            .collect();
        Ok(Response::new(api::ListContainersResponse { containers }))
    }

    async fn exec_sync(&self, req: Request<api::ExecSyncRequest>) -> Res<api::ExecSyncResponse> {
        let req = req.into_inner();
        let (sb, config, root) = self.running(&req.container_id)?;
        let (env, cwd, prefix) = Self::context(&sb, &config, &root);
        let mut cmd = Self::command(&env, &cwd, &prefix, &req.cmd)?;
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| Status::unknown(format!("exec {:?}: {e}", req.cmd)))?;
        let pid = child.id().unwrap_or(0) as i32;
        let output = child.wait_with_output();
        let result = if req.timeout > 0 {
            tokio::time::timeout(Duration::from_secs(req.timeout as u64), output).await
        } else {
            Ok(output.await)
        };
        if pid > 0 {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        match result {
            Ok(Ok(out)) => Ok(Response::new(api::ExecSyncResponse {
                stdout: out.stdout,
                stderr: out.stderr,
                exit_code: out.status.code().unwrap_or(255),
            })),
            Ok(Err(e)) => Err(Status::unknown(format!("exec {:?}: {e}", req.cmd))),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "exec {:?} timed out after {}s",
                req.cmd, req.timeout
            ))),
        }
    }

    async fn update_container_resources(
        &self,
        _: Request<api::UpdateContainerResourcesRequest>,
    ) -> Res<api::UpdateContainerResourcesResponse> {
        Err(unimplemented("UpdateContainerResources"))
    }

    async fn reopen_container_log(
        &self,
        _: Request<api::ReopenContainerLogRequest>,
    ) -> Res<api::ReopenContainerLogResponse> {
        Err(unimplemented("ReopenContainerLog"))
    }

    async fn exec(&self, req: Request<api::ExecRequest>) -> Res<api::ExecResponse> {
        let req = req.into_inner();
        if req.cmd.is_empty() {
            return Err(Status::invalid_argument("exec needs a command"));
        }
        if !(req.stdout || req.stderr || req.stdin) {
            return Err(Status::invalid_argument(
                "one of stdin, stdout or stderr must be requested",
            ));
        }
        let (sb, config, root) = self.running(&req.container_id)?;
        let (env, cwd, prefix) = Self::context(&sb, &config, &root);
        let spec = ExecSpec {
            command: req.cmd,
            prefix,
            env,
            cwd,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr && !req.tty,
            tty: req.tty,
        };
        let url = self
            .inner
            .streams
            .register(Session::Exec(spec))
            .ok_or_else(|| Status::unavailable("the streaming server is not listening yet"))?;
        Ok(Response::new(api::ExecResponse { url }))
    }

    /// A session joining the running container's standard streams.
    async fn attach(&self, req: Request<api::AttachRequest>) -> Res<api::AttachResponse> {
        let req = req.into_inner();
        let (console, stdin_once, has_stdin) = {
            let s = self.state()?;
            let c = s
                .containers
                .get(&req.container_id)
                .ok_or_else(|| Status::not_found(format!("container {}", req.container_id)))?;
            let console = c.console.clone().ok_or_else(|| {
                Status::failed_precondition(format!(
                    "container {} is not running",
                    req.container_id
                ))
            })?;
            (console, c.config.stdin_once, c.config.stdin)
        };
        if req.stdin && !has_stdin {
            return Err(Status::invalid_argument(
                "stdin was requested, but the container's spec does not set stdin: true",
            ));
        }
        let spec = AttachSpec {
            console,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr && !req.tty,
            tty: req.tty,
            stdin_once,
        };
        let url = self
            .inner
            .streams
            .register(Session::Attach(spec))
            .ok_or_else(|| Status::unavailable("the streaming server is not listening yet"))?;
        Ok(Response::new(api::AttachResponse { url }))
    }

    /// A session connecting to the pod's address: its network namespace's IP, or loopback
    /// when the pod shares the host's network.
    async fn port_forward(
        &self,
        req: Request<api::PortForwardRequest>,
    ) -> Res<api::PortForwardResponse> {
        let id = req.into_inner().pod_sandbox_id;
        let (ip, meta) = {
            let s = self.state()?;
            let sb = s
                .sandboxes
                .get(&id)
                .ok_or_else(|| Status::not_found(format!("sandbox {id}")))?;
            (
                sb.ip.clone(),
                sb.config.metadata.clone().unwrap_or_default(),
            )
        };
        let address = if ip.is_empty() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            ip.parse()
                .map_err(|e| Status::internal(format!("sandbox {id} address {ip}: {e}")))?
        };
        let spec = PortForwardSpec {
            pod: format!("{}/{}", meta.namespace, meta.name),
            address,
        };
        let url = self
            .inner
            .streams
            .register(Session::PortForward(spec))
            .ok_or_else(|| Status::unavailable("the streaming server is not listening yet"))?;
        Ok(Response::new(api::PortForwardResponse { url }))
    }

    async fn container_stats(
        &self,
        req: Request<api::ContainerStatsRequest>,
    ) -> Res<api::ContainerStatsResponse> {
        let id = req.into_inner().container_id;
        let filter = api::ContainerStatsFilter {
            id: id.clone(),
            ..Default::default()
        };
        let stats = self
            .stats(&filter)?
            .pop()
            .ok_or_else(|| Status::not_found(format!("container {id} is not running")))?;
        Ok(Response::new(api::ContainerStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_container_stats(
        &self,
        req: Request<api::ListContainerStatsRequest>,
    ) -> Res<api::ListContainerStatsResponse> {
        let filter = req.into_inner().filter.unwrap_or_default();
        Ok(Response::new(api::ListContainerStatsResponse {
            stats: self.stats(&filter)?,
        }))
    }

    async fn pod_sandbox_stats(
        &self,
        _: Request<api::PodSandboxStatsRequest>,
    ) -> Res<api::PodSandboxStatsResponse> {
        Err(unimplemented("PodSandboxStats"))
    }

    async fn list_pod_sandbox_stats(
        &self,
        _: Request<api::ListPodSandboxStatsRequest>,
    ) -> Res<api::ListPodSandboxStatsResponse> {
        Err(unimplemented("ListPodSandboxStats"))
    }

    async fn checkpoint_container(
        &self,
        _: Request<api::CheckpointContainerRequest>,
    ) -> Res<api::CheckpointContainerResponse> {
        Err(unimplemented("CheckpointContainer"))
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<api::ListMetricDescriptorsRequest>,
    ) -> Res<api::ListMetricDescriptorsResponse> {
        Err(unimplemented("ListMetricDescriptors"))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<api::ListPodSandboxMetricsRequest>,
    ) -> Res<api::ListPodSandboxMetricsResponse> {
        Err(unimplemented("ListPodSandboxMetrics"))
    }

    async fn runtime_config(
        &self,
        _: Request<api::RuntimeConfigRequest>,
    ) -> Res<api::RuntimeConfigResponse> {
        Err(unimplemented("RuntimeConfig"))
    }

    async fn update_runtime_config(
        &self,
        _: Request<api::UpdateRuntimeConfigRequest>,
    ) -> Res<api::UpdateRuntimeConfigResponse> {
        Ok(Response::new(api::UpdateRuntimeConfigResponse {}))
    }

    async fn status(&self, _: Request<api::StatusRequest>) -> Res<api::StatusResponse> {
        let ready = |kind: &str| api::RuntimeCondition {
            r#type: kind.into(),
            status: true,
            ..Default::default()
        };
        Ok(Response::new(api::StatusResponse {
            status: Some(api::RuntimeStatus {
                conditions: vec![ready("RuntimeReady"), ready("NetworkReady")],
            }),
            ..Default::default()
        }))
    }

    type GetContainerEventsStream =
        futures::stream::Empty<Result<api::ContainerEventResponse, Status>>;

    async fn get_container_events(
        &self,
        _: Request<api::GetEventsRequest>,
    ) -> Res<Self::GetContainerEventsStream> {
        Err(unimplemented("GetContainerEvents"))
    }
}

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("the process runtime does not implement {rpc}"))
}

/// Images of the process runtime: every reference is present, its id the reference itself.
#[tonic::async_trait]
impl ImageService for ProcessRuntime {
    async fn list_images(
        &self,
        _: Request<api::ListImagesRequest>,
    ) -> Res<api::ListImagesResponse> {
        Ok(Response::new(api::ListImagesResponse::default()))
    }

    async fn image_status(
        &self,
        req: Request<api::ImageStatusRequest>,
    ) -> Res<api::ImageStatusResponse> {
        let spec = req.into_inner().image.unwrap_or_default();
        Ok(Response::new(api::ImageStatusResponse {
            image: Some(api::Image {
                id: spec.image.clone(),
                repo_tags: vec![spec.image.clone()],
                spec: Some(spec),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn pull_image(&self, req: Request<api::PullImageRequest>) -> Res<api::PullImageResponse> {
        let image = req.into_inner().image.unwrap_or_default().image;
        Ok(Response::new(api::PullImageResponse { image_ref: image }))
    }

    async fn remove_image(
        &self,
        _: Request<api::RemoveImageRequest>,
    ) -> Res<api::RemoveImageResponse> {
        Ok(Response::new(api::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _: Request<api::ImageFsInfoRequest>,
    ) -> Res<api::ImageFsInfoResponse> {
        Ok(Response::new(api::ImageFsInfoResponse::default()))
    }
}
