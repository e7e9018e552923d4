//! An OTLP trace collector in-process: a tonic server of the OTLP trace
//! service that keeps every span it receives with its process's
//! `service.name` and `service.instance.id`. The tracing test exports real
//! processes' spans to it; the `otlp-sink` binary runs it for benchmarks.

use std::net::SocketAddr;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use parking_lot::Mutex;

/// One span as the collector received it, with its process's resource.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `service.name` of the process that sent it.
    pub service: String,
    /// `service.instance.id` of that process (empty when not set).
    pub instance: String,
    /// The span.
    pub span: Span,
}

impl Seen {
    /// The span's name.
    pub fn name(&self) -> &str {
        &self.span.name
    }

    /// An attribute's value as text.
    pub fn attribute(&self, key: &str) -> Option<String> {
        attribute(&self.span.attributes, key)
    }

    /// The trace id.
    pub fn trace(&self) -> &[u8] {
        &self.span.trace_id
    }
}

/// The value of attribute `key` among `attributes`, as text.
pub fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).map(text)
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// The in-process OTLP collector.
#[derive(Clone, Default)]
pub struct Collector {
    spans: Arc<Mutex<Vec<Seen>>>,
    /// Keep only a count (a benchmark's sink).
    count_only: bool,
    received: Arc<std::sync::atomic::AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans.resource.map(|r| r.attributes).unwrap_or_default();
            let service = attribute(&resource, "service.name").unwrap_or_default();
            let instance = attribute(&resource, "service.instance.id").unwrap_or_default();
            for scope in resource_spans.scope_spans {
                self.received.fetch_add(scope.spans.len() as u64, std::sync::atomic::Ordering::Relaxed);
                if self.count_only {
                    continue;
                }
                for span in scope.spans {
                    spans.push(Seen { service: service.clone(), instance: instance.clone(), span });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Collector {
    /// Starts a collector that keeps every span, on a free port of 127.0.0.1.
    pub async fn start() -> (Self, SocketAddr) {
        Self::serve(Self::default(), "127.0.0.1:0").await
    }

    /// Starts a collector on `addr` that only counts what it receives.
    pub async fn start_counting(addr: &str) -> (Self, SocketAddr) {
        Self::serve(Self { count_only: true, ..Self::default() }, addr).await
    }

    async fn serve(collector: Self, addr: &str) -> (Self, SocketAddr) {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind the collector");
        let addr = listener.local_addr().expect("collector address");
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream_of(listener))
                .await
                .expect("the collector serves");
        });
        (collector, addr)
    }

    /// Every span kept so far.
    pub fn all(&self) -> Vec<Seen> {
        self.spans.lock().clone()
    }

    /// How many spans arrived.
    pub fn received(&self) -> u64 {
        self.received.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn tokio_stream_of(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}
