//! W3C trace context through gRPC: [`server_span`] for
//! `Server::builder().trace_fn(..)` makes each request's span a child of the
//! caller's `traceparent`; [`router`] starts a server with it and with the
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

/// Opens the server span of one gRPC request, parented to the caller's
/// `traceparent` header when there is one.
pub fn server_span<B>(request: &http::Request<B>) -> tracing::Span {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    let span = tracing::info_span!(
        "grpc.request",
        otel.name = %request.uri().path(),
        otel.kind = "server",
        rpc.system = "grpc",
    );
    let _ = span.set_parent(parent);
    span
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
) -> tonic::transport::server::Router {
    tonic::transport::Server::builder()
        .trace_fn(server_span)
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
