//! The node agent's CRI channel, timed: every call to the runtime (RuntimeService and
//! ImageService) is recorded in `kubelet_runtime_operations_duration_seconds` and, when it
//! fails, `kubelet_runtime_operations_errors_total`, by method (`run_pod_sandbox`, ...), as the
//! kubelet's instrumented runtime service does. A call is timed to its response's head (the
//! whole of a unary call; a failed call answers with its `grpc-status` there).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http;
use tonic::body::Body;
use tonic::transport::Channel;

/// A [`Channel`] whose calls are timed.
#[derive(Clone, Debug)]
pub struct Timed(pub Channel);

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, tonic::transport::Error>> + Send>>;

impl tower::Service<http::Request<Body>> for Timed {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path().to_string();
        let started = Instant::now();
        let call = self.0.call(request);
        Box::pin(async move {
            let result = call.await;
            let failed = match &result {
                Err(_) => true,
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .is_some_and(|s| s.as_bytes() != b"0"),
            };
            telemetry::kubelet::metrics().operation(&path, started.elapsed(), failed);
            result
        })
    }
}
