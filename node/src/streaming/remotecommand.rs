//! One remote-command session (`exec`) over the WebSocket channel protocol (`v5.channel.k8s.io`
//! or `v4.channel.k8s.io`): every binary message starts with its channel byte; stdin (0) and
//! resize (4) come in, stdout (1) and stderr (2) go out, and the session ends with a
//! `metav1.Status` on the error channel (3) carrying the exit code, then a close. With v5 the
//! client closes stdin by sending `[255, 0]`.
//!
//! The states of a session: *starting* (the process is spawned, on a pseudo-terminal with
//! `tty`), *running* (input pumped in, output pumped out, until the process exits or the client
//! goes away, which kills the process group), *draining* (output left in the pipes is sent, for
//! at most [`DRAIN`]), *ended* (status written, socket closed).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use apimachinery::streaming::{
    CLOSE, ERROR, PROTOCOL_V5, RESIZE, STDERR, STDIN, STDOUT, TerminalSize, exit_status,
    failure_status,
};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::tty;

/// How long output still in flight is forwarded after the process exited.
const DRAIN: Duration = Duration::from_secs(2);

/// A command to run in a container's context.
#[derive(Clone, Debug)]
pub struct ExecSpec {
    /// What the user asked to run.
    pub command: Vec<String>,
    /// Put before `command` (entering the pod's network namespace).
    pub prefix: Vec<String>,
    /// The container's environment.
    pub env: Vec<(String, String)>,
    /// The container's working directory.
    pub cwd: PathBuf,
    /// Whether the client sends standard input.
    pub stdin: bool,
    /// Whether the client wants standard output.
    pub stdout: bool,
    /// Whether the client wants standard error.
    pub stderr: bool,
    /// Whether the process gets a terminal.
    pub tty: bool,
}

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// A started process and its ends.
struct Running {
    child: tokio::process::Child,
    stdin: Option<Writer>,
    outputs: Vec<(u8, Reader)>,
    terminal: Option<std::os::fd::OwnedFd>,
}

fn start(spec: &ExecSpec) -> std::io::Result<Running> {
    let mut argv: Vec<String> = spec.prefix.clone();
    if spec.tty {
        argv.extend(tty::SESSION_LEADER.iter().map(|s| s.to_string()));
    }
    argv.extend(spec.command.iter().cloned());
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command given"))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .kill_on_drop(true);
    if spec.tty {
        if !spec.env.iter().any(|(k, _)| k == "TERM") {
            cmd.env("TERM", "xterm");
        }
        let pty = tty::open()?;
        cmd.stdin(Stdio::from(pty.slave.try_clone()?))
            .stdout(Stdio::from(pty.slave.try_clone()?))
            .stderr(Stdio::from(pty.slave));
        let child = cmd.spawn()?;
        // The command held the terminal side's descriptors: without them, reads of the
        // controlling side end (EIO) once the process and its children are gone.
        drop(cmd);
        let read = tokio::fs::File::from_std(std::fs::File::from(pty.master.try_clone()?));
        let write = tokio::fs::File::from_std(std::fs::File::from(pty.master.try_clone()?));
        return Ok(Running {
            child,
            stdin: spec.stdin.then(|| Box::new(write) as Writer),
            outputs: if spec.stdout {
                vec![(STDOUT, Box::new(read) as Reader)]
            } else {
                Vec::new()
            },
            terminal: Some(pty.master),
        });
    }
    let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    cmd.stdin(piped(spec.stdin))
        .stdout(piped(spec.stdout))
        .stderr(piped(spec.stderr))
        .process_group(0);
    let mut child = cmd.spawn()?;
    let mut outputs: Vec<(u8, Reader)> = Vec::new();
    if let Some(o) = child.stdout.take() {
        outputs.push((STDOUT, Box::new(o)));
    }
    if let Some(e) = child.stderr.take() {
        outputs.push((STDERR, Box::new(e)));
    }
    Ok(Running {
        stdin: child.stdin.take().map(|s| Box::new(s) as Writer),
        child,
        outputs,
        terminal: None,
    })
}

/// A task sending what goes into the returned channel, then a normal closure (1000:
/// client-go reads a close without a code as an error) once every sender is dropped.
pub(super) fn writer(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
) -> (mpsc::Sender<Message>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let task = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let close = CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(close))).await;
        let _ = sink.close().await;
    });
    (tx, task)
}

/// A message on `channel`.
pub(super) fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

async fn pump(channel: u8, mut from: Reader, to: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            // EIO from a terminal whose last user went away is its end of file.
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.send(frame(channel, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn input(
    mut from: futures::stream::SplitStream<WebSocket>,
    mut stdin: Option<Writer>,
    terminal: Option<std::os::fd::OwnedFd>,
    v5: bool,
) {
    while let Some(Ok(message)) = from.next().await {
        let data = match message {
            Message::Binary(b) => b,
            Message::Close(_) => break,
            _ => continue,
        };
        let Some((&channel, payload)) = data.split_first() else {
            continue;
        };
        match channel {
            STDIN => {
                if let Some(w) = &mut stdin
                    && (w.write_all(payload).await.is_err() || w.flush().await.is_err())
                {
                    stdin = None;
                }
            }
            RESIZE => {
                if let (Some(t), Ok(size)) =
                    (&terminal, serde_json::from_slice::<TerminalSize>(payload))
                {
                    let _ = tty::resize(t, size.width, size.height);
                }
            }
            CLOSE if v5 && payload.first() == Some(&STDIN) => {
                if let Some(mut w) = stdin.take() {
                    let _ = w.shutdown().await;
                }
            }
            _ => {}
        }
    }
}

/// Runs `spec` for the client on `socket`, which negotiated `protocol`.
pub async fn run(socket: WebSocket, spec: ExecSpec, protocol: String) {
    let (sink, stream) = socket.split();
    let (tx, writer) = writer(sink);
    let status = match start(&spec) {
        Err(e) => failure_status(&format!(
            "cannot exec {:?} in the container: {e}",
            spec.command.join(" ")
        )),
        Ok(running) => session(running, stream, &spec, &protocol, &tx).await,
    };
    let _ = tx.send(frame(ERROR, status.to_string().as_bytes())).await;
    drop(tx);
    let _ = writer.await;
}

async fn session(
    running: Running,
    stream: futures::stream::SplitStream<WebSocket>,
    spec: &ExecSpec,
    protocol: &str,
    tx: &mpsc::Sender<Message>,
) -> serde_json::Value {
    let Running {
        mut child,
        stdin,
        outputs,
        terminal,
    } = running;
    let pid = child.id().map(|p| p as i32).unwrap_or(0);
    let pumps: Vec<_> = outputs
        .into_iter()
        .map(|(channel, r)| tokio::spawn(pump(channel, r, tx.clone())))
        .collect();
    // Ends when the client goes away.
    let mut input = tokio::spawn(input(stream, stdin, terminal, protocol == PROTOCOL_V5));
    let kill = || {
        if pid > 0 {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    };
    let exited = tokio::select! {
        status = child.wait() => status.ok(),
        _ = &mut input => {
            kill();
            let _ = child.wait().await;
            None
        }
    };
    kill();
    input.abort();
    let _ = tokio::time::timeout(DRAIN, futures::future::join_all(pumps)).await;
    match exited {
        Some(status) => {
            let code = status.code().unwrap_or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                128 + status.signal().unwrap_or(0)
            });
            exit_status(&spec.command, code)
        }
        None => failure_status("the client went away"),
    }
}
