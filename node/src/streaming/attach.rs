//! One attach session (`kubectl attach`, `kubectl debug -it`, `kubectl run -i`) over the
//! WebSocket channel protocol of [`super::remotecommand`]: the client joins a running
//! container's [`Console`] instead of starting a process. Standard input (0) goes to the
//! container's stdin when its spec has `stdin: true`; its stdout (1) and stderr (2) come back
//! from the moment the client joins (what was written before is in the log); v5's stdin close
//! closes the container's stdin when the spec has `stdinOnce`.
//!
//! The states of a session: *attached* (input and output pumped) until the container exits
//! (then its exit code as a `metav1.Status` on the error channel) or the client goes away (the
//! container keeps running); *ended* (socket closed).

use std::sync::Arc;

use apimachinery::streaming::{CLOSE, ERROR, PROTOCOL_V5, STDERR, STDIN, STDOUT, exit_status};
use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, broadcast, watch};

use super::remotecommand::frame;

/// A running container's standard streams, as attach sessions share them.
#[derive(Debug)]
pub struct Console {
    /// The container's stdin (`stdin: true`), until closed.
    pub stdin: Mutex<Option<tokio::process::ChildStdin>>,
    /// Every line the container writes, with its channel (stdout 1, stderr 2); `None` once
    /// its output has ended.
    pub output: std::sync::Mutex<Option<broadcast::Sender<(u8, Bytes)>>>,
    /// The exit code, once the container has exited.
    pub exit: watch::Receiver<Option<i32>>,
}

/// What an attach session joins.
#[derive(Clone, Debug)]
pub struct AttachSpec {
    /// The container's console.
    pub console: Arc<Console>,
    /// Whether the client sends standard input.
    pub stdin: bool,
    /// Whether the client wants standard output.
    pub stdout: bool,
    /// Whether the client wants standard error.
    pub stderr: bool,
    /// The client uses a terminal: stderr comes on stdout's channel.
    pub tty: bool,
    /// The container's stdin closes when the client closes its stdin.
    pub stdin_once: bool,
}

/// Joins the container of `spec` for the client on `socket`, which negotiated `protocol`.
pub async fn run(socket: WebSocket, spec: AttachSpec, protocol: String) {
    let (sink, mut stream) = socket.split();
    let (tx, writer) = super::remotecommand::writer(sink);
    let output = spec
        .console
        .output
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(broadcast::Sender::subscribe);
    let out = tx.clone();
    let (want_out, want_err, tty) = (spec.stdout, spec.stderr, spec.tty);
    let pump = tokio::spawn(async move {
        let Some(mut output) = output else {
            return;
        };
        loop {
            match output.recv().await {
                Ok((channel, bytes)) => {
                    let channel = if tty { STDOUT } else { channel };
                    let wanted = (channel == STDOUT && want_out) || (channel == STDERR && want_err);
                    if wanted && out.send(frame(channel, &bytes)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let console = spec.console.clone();
    let v5 = protocol == PROTOCOL_V5;
    let input = async {
        while let Some(Ok(message)) = stream.next().await {
            let data = match message {
                Message::Binary(b) => b,
                Message::Close(_) => return,
                _ => continue,
            };
            let Some((&channel, payload)) = data.split_first() else {
                continue;
            };
            match channel {
                STDIN if spec.stdin => {
                    let mut stdin = console.stdin.lock().await;
                    if let Some(w) = stdin.as_mut()
                        && (w.write_all(payload).await.is_err() || w.flush().await.is_err())
                    {
                        *stdin = None;
                    }
                }
                CLOSE if v5 && payload.first() == Some(&STDIN) && spec.stdin_once => {
                    if let Some(mut w) = console.stdin.lock().await.take() {
                        let _ = w.shutdown().await;
                    }
                }
                _ => {}
            }
        }
    };
    let mut exit = spec.console.exit.clone();
    let exited = tokio::select! {
        code = exit.wait_for(Option::is_some) => code.ok().and_then(|c| *c),
        _ = input => None,
    };
    if let Some(code) = exited {
        // Output still in flight reaches the client before the status.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), pump).await;
        let status = exit_status(&[], code);
        let _ = tx.send(frame(ERROR, status.to_string().as_bytes())).await;
    } else {
        pump.abort();
    }
    drop(tx);
    let _ = writer.await;
}
