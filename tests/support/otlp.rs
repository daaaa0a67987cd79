//! A minimal in-process OTLP/gRPC receiver (traces and metrics) built from
//! the opentelemetry-proto types: it records every span and counts metric
//! export requests. Shared by the telemetry tests and
//! `examples/otlp_receiver.rs`.
#![allow(dead_code)]

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What the receiver has seen.
#[derive(Default)]
pub struct Received {
    /// (service.name of the resource, span).
    pub spans: Mutex<Vec<(String, Span)>>,
    pub metric_requests: AtomicU64,
    pub span_count: AtomicU64,
}

#[derive(Clone)]
struct Recv(Arc<Received>, bool);

#[tonic::async_trait]
impl TraceService for Recv {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let req = req.into_inner();
        let mut n = 0;
        let mut keep = Vec::new();
        for rs in req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| {
                    r.attributes
                        .iter()
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| kv.value.as_ref())
                        .and_then(|v| match &v.value {
                            Some(Value::StringValue(s)) => Some(s.clone()),
                            _ => None,
                        })
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    n += 1;
                    if self.1 {
                        keep.push((service.clone(), s));
                    }
                }
            }
        }
        self.0.span_count.fetch_add(n, Ordering::SeqCst);
        self.0.spans.lock().unwrap().extend(keep);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Recv {
    async fn export(
        &self,
        _req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.metric_requests.fetch_add(1, Ordering::SeqCst);
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

/// Starts a receiver on a free loopback port (call inside a tokio runtime).
/// `keep_spans = false` only counts them.
pub async fn start(keep_spans: bool) -> (SocketAddr, Arc<Received>) {
    start_on("127.0.0.1:0", keep_spans).await
}

/// Starts a receiver on `bind`.
pub async fn start_on(bind: &str, keep_spans: bool) -> (SocketAddr, Arc<Received>) {
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Received::default());
    let r = Recv(received.clone(), keep_spans);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(r.clone()))
            .add_service(MetricsServiceServer::new(r))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (addr, received)
}

/// A span's attributes as strings.
pub fn attrs(s: &Span) -> BTreeMap<String, String> {
    s.attributes
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}
