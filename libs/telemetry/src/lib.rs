//! Logging, tracing and metrics for every Switchboard service.
//!
//! - [`init`] installs the global `tracing` subscriber: an `EnvFilter`
//!   (`RUST_LOG`), a text or JSON `fmt` layer and an OpenTelemetry layer, and
//!   sets the W3C trace-context propagator. Spans are exported over OTLP/gRPC
//!   only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; without it trace ids are
//!   still created and propagated, so logs and tests can correlate.
//! - [`grpc`] carries the trace context through tonic: a server span factory
//!   for `Server::builder().trace_fn` and a client interceptor.
//! - [`nats`] carries it through NATS headers.
//! - [`http`] serves `/metrics` (Prometheus text), `/healthz` and `/readyz`.

pub mod grpc;
pub mod nats;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use sb_config::{LogFormat, TelemetryArgs};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` does not parse.
    #[error("invalid RUST_LOG filter {filter:?}: {source}")]
    Filter {
        /// The filter as given.
        filter: String,
        /// What the parser said.
        source: tracing_subscriber::filter::ParseError,
    },
    /// The OTLP exporter could not be built (bad endpoint URL).
    #[error("build the OTLP span exporter for {endpoint}: {source}")]
    Exporter {
        /// `OTEL_EXPORTER_OTLP_ENDPOINT` as given.
        endpoint: String,
        /// What the exporter builder said.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// Another global subscriber is already installed.
    #[error("install the tracing subscriber: {0}")]
    Install(#[from] tracing_subscriber::util::TryInitError),
}

/// Handle on the installed telemetry; call [`Telemetry::shutdown`] last in
/// `main` so buffered spans are flushed.
#[must_use = "call shutdown() at the end of main to flush spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the span exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("flush traces at shutdown: {error}");
        }
    }
}

/// Installs logging and tracing for `service` (the default `service.name`).
pub fn init(service: &'static str, args: &TelemetryArgs) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_new(&args.log_filter)
        .map_err(|source| TelemetryError::Filter { filter: args.log_filter.clone(), source })?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let provider = if args.sdk_disabled {
        None
    } else {
        let service_name = args.service_name.clone().unwrap_or_else(|| format!("sb-{service}"));
        let resource = opentelemetry_sdk::Resource::builder().with_service_name(service_name).build();
        let mut builder = SdkTracerProvider::builder().with_resource(resource);
        if let Some(endpoint) = args.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
            use opentelemetry_otlp::WithExportConfig as _;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|source| TelemetryError::Exporter { endpoint: endpoint.to_owned(), source })?;
            builder = builder.with_batch_exporter(exporter);
        }
        let provider = builder.build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        Some(provider)
    };
    let otel_layer = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service)));

    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    match args.log_format {
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer()).try_init()?,
        LogFormat::Json => registry.with(tracing_subscriber::fmt::layer().json().flatten_event(true)).try_init()?,
    }
    Ok(Telemetry { provider })
}

/// Installs test logging once per process. Spans are always recorded (so
/// trace context propagates in tests); log lines print only when `TEST_LOG`
/// is set, filtered by `RUST_LOG` (default `info`). Safe to call from every test.
pub fn init_for_tests() {
    use tracing_subscriber::Layer as _;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let otel_layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("tests"))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
        let fmt_layer = std::env::var_os("TEST_LOG").is_some().then(|| {
            let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
            tracing_subscriber::fmt::layer().with_test_writer().with_filter(filter)
        });
        let _ = tracing_subscriber::registry().with(otel_layer).with(fmt_layer).try_init();
    });
}
