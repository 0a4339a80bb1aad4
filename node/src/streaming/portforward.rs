//! Port-forward sessions (`kubectl port-forward`), as the kubelet's streaming server serves
//! them: a plain SPDY/3.1 upgrade (`Upgrade: SPDY/3.1`, `X-Stream-Protocol-Version:
//! portforward.k8s.io`; the API server unwraps kubectl's WebSocket tunnel into this), then,
//! per forwarded connection, the client opens an `error` and a `data` stream carrying the
//! same `requestid` and the `port`. The server connects to the pod's address on that port and
//! copies bytes both ways; a failure is written on the error stream.
//!
//! A pair of streams is *waiting* (one of its two streams is open), *forwarding* (connected
//! to the pod) and *done*: when the pod closes its side (or the client resets the data
//! stream) the server ends the data stream, then the error stream, which is what kubectl
//! waits for before it closes the local connection.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::proxy::refusal;
use super::spdy::{Frame, FrameReader, FrameWriter, header, status};

/// The stream protocol of port-forward over SPDY (`X-Stream-Protocol-Version`).
pub const PROTOCOL: &str = "portforward.k8s.io";

/// The header naming the stream protocol.
pub const PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// The largest DATA frame sent.
const CHUNK: usize = 32 << 10;

/// What a port-forward session reaches.
#[derive(Clone, Debug)]
pub struct PortForwardSpec {
    /// `namespace/name` of the pod, for messages.
    pub pod: String,
    /// The pod's address: its network namespace's IP, or loopback.
    pub address: IpAddr,
}

/// Whether `headers` ask for an upgrade to SPDY/3.1.
pub fn is_spdy(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("SPDY/3.1"))
        })
}

/// Answers an SPDY upgrade with 101 and serves the session on the upgraded connection.
pub fn upgrade(mut req: Request<Body>, spec: PortForwardSpec) -> Response<Body> {
    if !is_spdy(req.headers()) {
        return refusal(
            StatusCode::BAD_REQUEST,
            "port-forward is served over an SPDY/3.1 upgrade (the API server unwraps the \
             WebSocket tunnel SPDY/3.1+portforward.k8s.io)",
        );
    }
    let offered: Vec<String> = req
        .headers()
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect();
    if !offered.is_empty() && !offered.iter().any(|p| p == PROTOCOL) {
        return refusal(
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, \
                 server accepts [\"{PROTOCOL}\"]"
            ),
        );
    }
    let upgraded = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgraded.await {
            Ok(io) => serve(TokioIo::new(io), spec).await,
            Err(e) => tracing::debug!(error = %e, "port-forward upgrade failed"),
        }
    });
    let mut answer = Response::new(Body::empty());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = answer.headers_mut();
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("SPDY/3.1"),
    );
    h.insert(PROTOCOL_HEADER, header::HeaderValue::from_static(PROTOCOL));
    answer
}

/// A data stream's way to its forward: bytes from the client (dropped at the client's FIN)
/// and the cancellation of a reset.
struct Inbound {
    bytes: Option<mpsc::Sender<Bytes>>,
    reset: CancellationToken,
}

/// The two streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<(u32, Option<String>, mpsc::Receiver<Bytes>)>,
}

/// Serves one SPDY connection until the client closes it or sends GOAWAY.
pub async fn serve<IO>(io: IO, spec: PortForwardSpec)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let mut frames = FramedRead::new(read, FrameReader::default());
    let (out, mut queue) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(async move {
        let mut sink = FramedWrite::new(write, FrameWriter::default());
        while let Some(frame) = queue.recv().await {
            if let Err(e) = sink.send(frame).await {
                tracing::debug!(error = %e, "port-forward: writing a frame failed");
                return;
            }
        }
    });
    let ended = CancellationToken::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut inbound: HashMap<u32, Inbound> = HashMap::new();
    while let Some(frame) = frames.next().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, pod = %spec.pod, "port-forward connection failed");
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream, headers, ..
            } => {
                let kind = header(&headers, "streamtype");
                let Some(id) = header(&headers, "requestid").map(str::to_string) else {
                    let _ = out
                        .send(Frame::RstStream {
                            stream,
                            status: status::PROTOCOL_ERROR,
                        })
                        .await;
                    continue;
                };
                let pair = match kind {
                    Some("error") => {
                        let pair = pairs.entry(id.clone()).or_default();
                        pair.error = Some(stream);
                        pair
                    }
                    Some("data") => {
                        let (tx, rx) = mpsc::channel(16);
                        let reset = ended.child_token();
                        inbound.insert(
                            stream,
                            Inbound {
                                bytes: Some(tx),
                                reset,
                            },
                        );
                        let port = header(&headers, "port").map(str::to_string);
                        let pair = pairs.entry(id.clone()).or_default();
                        pair.data = Some((stream, port, rx));
                        pair
                    }
                    _ => {
                        let _ = out
                            .send(Frame::RstStream {
                                stream,
                                status: status::PROTOCOL_ERROR,
                            })
                            .await;
                        continue;
                    }
                };
                let _ = out
                    .send(Frame::SynReply {
                        stream,
                        fin: false,
                        headers: Vec::new(),
                    })
                    .await;
                if pair.error.is_some() && pair.data.is_some() {
                    let Some(Pair {
                        error: Some(error),
                        data: Some((data, port, rx)),
                    }) = pairs.remove(&id)
                    else {
                        continue;
                    };
                    let reset = inbound
                        .get(&data)
                        .map(|i| i.reset.clone())
                        .unwrap_or_else(|| ended.child_token());
                    let streams = Streams {
                        error,
                        data,
                        out: out.clone(),
                    };
                    tokio::spawn(forward(spec.clone(), port, streams, rx, reset));
                }
            }
            Frame::Data { stream, fin, data } => {
                let Some(entry) = inbound.get_mut(&stream) else {
                    continue;
                };
                if !data.is_empty()
                    && let Some(tx) = &entry.bytes
                    && tx.send(data).await.is_err()
                {
                    entry.bytes = None;
                }
                if fin {
                    entry.bytes = None;
                }
            }
            Frame::RstStream { stream, .. } => {
                if let Some(entry) = inbound.remove(&stream) {
                    entry.reset.cancel();
                }
            }
            Frame::Ping { id } => {
                let _ = out.send(Frame::Ping { id }).await;
            }
            Frame::GoAway { .. } => break,
            Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. } => {}
        }
    }
    ended.cancel();
    drop(out);
    let _ = writer.await;
}

/// The two streams of a forward and the way to write on them.
struct Streams {
    error: u32,
    data: u32,
    out: mpsc::Sender<Frame>,
}

impl Streams {
    async fn send(&self, stream: u32, fin: bool, data: Bytes) -> bool {
        self.out
            .send(Frame::Data { stream, fin, data })
            .await
            .is_ok()
    }
}

/// Connects to the pod's `port` and copies until the pod closes its side or the client
/// resets the stream; then ends the data stream and the error stream (with the failure on
/// it, if any).
async fn forward(
    spec: PortForwardSpec,
    port: Option<String>,
    streams: Streams,
    mut inbound: mpsc::Receiver<Bytes>,
    reset: CancellationToken,
) {
    let failure = async {
        let number = port
            .as_deref()
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid port {:?} in the port-forward request", port))?;
        let conn = tokio::net::TcpStream::connect((spec.address, number))
            .await
            .map_err(|e| {
                format!(
                    "error forwarding port {number} to pod {} at {}: {e}",
                    spec.pod, spec.address
                )
            })?;
        let (mut from_pod, mut to_pod) = conn.into_split();
        let up = tokio::spawn(async move {
            while let Some(bytes) = inbound.recv().await {
                if to_pod.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            let _ = to_pod.shutdown().await;
        });
        let down = async {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match from_pod.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let chunk = Bytes::copy_from_slice(&buf[..n]);
                        if !streams.send(streams.data, false, chunk).await {
                            return;
                        }
                    }
                }
            }
        };
        tokio::select! {
            _ = down => {}
            _ = reset.cancelled() => {}
        }
        up.abort();
        Ok::<(), String>(())
    }
    .await
    .err();
    streams.send(streams.data, true, Bytes::new()).await;
    if let Some(message) = failure {
        tracing::debug!(pod = %spec.pod, %message, "port-forward failed");
        streams
            .send(streams.error, false, Bytes::from(message))
            .await;
    }
    streams.send(streams.error, true, Bytes::new()).await;
}
