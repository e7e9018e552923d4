//! W3C trace context through gRPC: [`server_span`] for
//! `Server::builder().trace_fn(..)` makes each request's span a child of the
//! caller's `traceparent` (health checks and reflection get none) and
//! [`StatusLayer`] records its status code; [`client_span`] is a call's
//! client span; [`router`] starts a server with it and with the
//! health and reflection services every Switchboard gRPC server carries;
//! [`inject`] is a client interceptor that adds the current span's context
//! to outgoing requests:
//!
//! ```ignore
//! let client = AuthServiceClient::with_interceptor(channel, sb_telemetry::grpc::inject);
//! ```

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Whether requests to `path` get no span: health checks and reflection,
/// which would otherwise fill a tracing backend with one trace per probe.
pub fn is_untraced(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

/// Opens the server span of one gRPC request, parented to the caller's
/// `traceparent` header when there is one, named after the fully qualified
/// method (`switchboard.auth.v1.AuthService/VerifyToken`) as the
/// OpenTelemetry RPC conventions name it. Health and reflection requests get
/// none ([`is_untraced`]). [`StatusLayer`] records the status code; a
/// handler may record `switchboard.user.id` and `switchboard.auth.result`
/// (auth's VerifyToken and Login do).
pub fn server_span<B>(request: &http::Request<B>) -> tracing::Span {
    let path = request.uri().path();
    if is_untraced(path) {
        return tracing::Span::none();
    }
    let method = path.trim_start_matches('/');
    let (service, name) = method.split_once('/').unwrap_or((method, ""));
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = name,
        rpc.grpc.status_code = tracing::field::Empty,
        switchboard.user.id = tracing::field::Empty,
        switchboard.auth.result = tracing::field::Empty,
    );
    let _ = span.set_parent(parent);
    span
}

/// Opens the client span of one call to `method` (fully qualified, e.g.
/// `switchboard.auth.v1.AuthService/VerifyToken`); enter it around the call
/// so [`inject`] sends its context, and end it with [`record_status`].
pub fn client_span(method: &'static str) -> tracing::Span {
    let (service, name) = method.split_once('/').unwrap_or((method, ""));
    tracing::info_span!(
        "grpc.client",
        otel.name = method,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = name,
        rpc.grpc.status_code = tracing::field::Empty,
    )
}

/// Records a call's outcome on its span ([`server_span`], [`client_span`]):
/// `rpc.grpc.status_code` and, for a failure, the span status.
pub fn record_status(span: &tracing::Span, code: tonic::Code) {
    span.record("rpc.grpc.status_code", code as i32);
    if code != tonic::Code::Ok {
        span.record("otel.status_code", "error");
    }
}

/// The router [`router`] returns: tonic's, with [`StatusLayer`].
pub type Router =
    tonic::transport::server::Router<tower::layer::util::Stack<StatusLayer, tower::layer::util::Identity>>;

/// A tower layer for the gRPC server that records each response's status on
/// the request's span (the current span while tonic polls the response). A unary call
/// that fails answers with `grpc-status` in its headers; one that succeeds
/// sends it in the trailers, after this layer saw the headers, so a response
/// without the header is recorded as `OK`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatusLayer;

impl<S> tower::Layer<S> for StatusLayer {
    type Service = StatusService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StatusService { inner }
    }
}

/// The service of [`StatusLayer`].
#[derive(Debug, Clone)]
pub struct StatusService<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for StatusService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            // tonic enters the request's span while it polls this future.
            let span = tracing::Span::current();
            let response = future.await?;
            if !span.is_none() {
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32);
                record_status(&span, code);
            }
            Ok(response)
        })
    }
}

/// The reflection services of one server, in both protocol versions:
/// `grpc.reflection.v1` (grpcurl, Postman) and `grpc.reflection.v1alpha`
/// (Python grpcio's reflection client, `grpc_cli`, older grpcurl and several
/// GUI clients, which get UNIMPLEMENTED without it).
pub struct Reflection<V1, V1Alpha> {
    /// `grpc.reflection.v1.ServerReflection`.
    pub v1: tonic_reflection::server::v1::ServerReflectionServer<V1>,
    /// `grpc.reflection.v1alpha.ServerReflection`.
    pub v1alpha: tonic_reflection::server::v1alpha::ServerReflectionServer<V1Alpha>,
}

/// Starts the gRPC server every Switchboard service runs: one [`server_span`]
/// per request, tonic-health's `health` service and both `reflection`
/// services. The caller adds its own services and serves the router on its
/// pre-bound listener (`serve_with_incoming_shutdown`).
pub fn router(
    health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    reflection: Reflection<
        impl tonic_reflection::server::v1::ServerReflection,
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
) -> Router {
    tonic::transport::Server::builder()
        .trace_fn(server_span)
        .layer(StatusLayer)
        .add_service(health)
        .add_service(reflection.v1)
        .add_service(reflection.v1alpha)
}

/// Builds the reflection services (v1 and v1alpha) for one Switchboard
/// server: they list `services` (e.g. `switchboard.auth.v1.AuthService`,
/// described in `descriptor_set`), `grpc.health.v1.Health` and the two
/// reflection services themselves — what the server really serves, so
/// `grpcurl list` tells the truth.
pub fn reflection(
    descriptor_set: &'static [u8],
    services: &[&'static str],
) -> Result<
    Reflection<
        impl tonic_reflection::server::v1::ServerReflection,
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
    tonic_reflection::server::Error,
> {
    let builder = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(descriptor_set)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // Both versions' descriptors in both, so each resolves every listed name.
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection");
        for service in services {
            builder = builder.with_service_name(*service);
        }
        builder
    };
    Ok(Reflection { v1: builder().build_v1()?, v1alpha: builder().build_v1alpha()? })
}

/// Client interceptor: adds the current span's trace context to the request.
#[allow(clippy::result_large_err)] // tonic's Interceptor signature
pub fn inject(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(request.metadata_mut()));
    });
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt as _;

    #[test]
    fn client_context_round_trips_into_server_span() {
        crate::init_for_tests();
        let outer = tracing::info_span!("caller");
        let _entered = outer.enter();
        let request = inject(tonic::Request::new(())).expect("inject never fails");
        let traceparent = request.metadata().get("traceparent").expect("traceparent set").to_str().unwrap().to_owned();

        let mut http_request = http::Request::new(());
        http_request.headers_mut().insert("traceparent", traceparent.parse().unwrap());
        let server = server_span(&http_request);
        let caller_trace = outer.context().span().span_context().trace_id();
        assert_eq!(server.context().span().span_context().trace_id(), caller_trace);
    }
}
