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
use std::sync::{Arc, OnceLock};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// A span's trace context, kept so later work joins the same trace without
/// keeping the span itself open (a span ends when its last handle drops):
/// e.g. the connect step that runs after a connect's span ended.
#[derive(Clone, Debug)]
pub struct TraceLink(opentelemetry::Context);

impl TraceLink {
    /// The trace context of `span`.
    pub fn of(span: &tracing::Span) -> Self {
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        Self(span.context())
    }

    /// Makes `span` a child of the linked span.
    pub fn parent(&self, span: &tracing::Span) {
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let _ = span.set_parent(self.0.clone());
    }

    /// The current span's context, if it belongs to a trace: `None` outside
    /// any span or with tracing off, so work that outlives its caller (an
    /// event queued for a background task) continues a trace only where
    /// there is one and never starts its own.
    pub fn current() -> Option<Self> {
        Self::from_context(tracing_opentelemetry::OpenTelemetrySpanExt::context(&tracing::Span::current()))
    }

    /// `context` if it names a valid span.
    pub(crate) fn from_context(context: opentelemetry::Context) -> Option<Self> {
        use opentelemetry::trace::TraceContextExt as _;
        context.span().span_context().is_valid().then_some(Self(context))
    }
}

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

/// The `service.name` of `service`'s spans unless `OTEL_SERVICE_NAME` says
/// otherwise: `switchboard-edge`, `switchboard-auth`, ….
pub fn default_service_name(service: &str) -> String {
    format!("switchboard-{service}")
}

/// The OpenTelemetry layer every service and test installs: no source-code
/// (`code.*`), thread or busy/idle attributes on spans, since they point into
/// the cargo registry and say nothing an operator can use (docs/tracing.md).
fn otel_layer<S>(
    tracer: opentelemetry_sdk::trace::SdkTracer,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
}

/// Installs logging and tracing for `service` (`service.name` is
/// [`default_service_name`] unless `OTEL_SERVICE_NAME` is set).
pub fn init(service: &'static str, args: &TelemetryArgs) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_new(&args.log_filter)
        .map_err(|source| TelemetryError::Filter { filter: args.log_filter.clone(), source })?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let provider = if args.sdk_disabled {
        None
    } else {
        let service_name = args.service_name.clone().unwrap_or_else(|| default_service_name(service));
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
    // RUST_LOG filters the log lines only: spans are recorded at INFO
    // whatever it says, so `RUST_LOG=warn` does not switch tracing off.
    let otel_layer = provider
        .as_ref()
        .map(|p| otel_layer(p.tracer(service)).with_filter(tracing_subscriber::filter::LevelFilter::INFO));

    let registry = tracing_subscriber::registry().with(otel_layer);
    match args.log_format {
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer().with_filter(filter)).try_init()?,
        LogFormat::Json => registry.with(json_layer(std::io::stdout).with_filter(filter)).try_init()?,
    }
    Ok(Telemetry { provider })
}

/// A JSON event format that begins each line with the `trace_id` and
/// `span_id` of the span it was logged in (when there is one), so a log line
/// leads to its trace: `{"trace_id":"4bf9…","span_id":"00f0…","timestamp":…}`.
/// The span's OpenTelemetry context is read through the subscriber, which
/// [`DispatchCapture`] (installed with it) hands over at registration.
struct TraceIds<F> {
    inner: F,
    dispatch: Arc<OnceLock<tracing::dispatcher::WeakDispatch>>,
}

/// The layer that gives [`TraceIds`] the subscriber it formats for.
struct DispatchCapture(Arc<OnceLock<tracing::dispatcher::WeakDispatch>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for DispatchCapture {
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.0.set(subscriber.downgrade());
    }
}

/// The JSON log layer: [`TraceIds`] and its [`DispatchCapture`].
fn json_layer<S, W>(writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    let dispatch = Arc::new(OnceLock::new());
    let format =
        TraceIds { inner: tracing_subscriber::fmt::format().json().flatten_event(true), dispatch: dispatch.clone() };
    tracing_subscriber::fmt::layer()
        .event_format(format)
        .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
        .with_writer(writer)
        .and_then(DispatchCapture(dispatch))
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for TraceIds<F>
where
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    N: for<'writer> tracing_subscriber::fmt::FormatFields<'writer> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use opentelemetry::trace::TraceContextExt as _;
        let mut line = String::new();
        self.inner.format_event(ctx, tracing_subscriber::fmt::format::Writer::new(&mut line), event)?;
        let span = event.parent().cloned().or_else(|| ctx.current_span().id().cloned());
        let context = span
            .zip(self.dispatch.get().and_then(tracing::dispatcher::WeakDispatch::upgrade))
            .and_then(|(span, dispatch)| tracing_opentelemetry::get_otel_context(&span, &dispatch));
        let span_context = context.map(|context| context.span().span_context().clone());
        match (line.strip_prefix('{'), span_context) {
            (Some(rest), Some(span_context)) if span_context.is_valid() => write!(
                writer,
                "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",{rest}",
                span_context.trace_id(),
                span_context.span_id()
            ),
            _ => writer.write_str(&line),
        }
    }
}

/// Installs test logging once per process. Spans are always recorded (so
/// trace context propagates in tests); log lines print only when `TEST_LOG`
/// is set, filtered by `RUST_LOG` (default `info`). Safe to call from every test.
pub fn init_for_tests() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let otel_layer =
            otel_layer(provider.tracer("tests")).with_filter(tracing_subscriber::filter::LevelFilter::INFO);
        let fmt_layer = std::env::var_os("TEST_LOG").is_some().then(|| {
            let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
            tracing_subscriber::fmt::layer().with_test_writer().with_filter(filter)
        });
        let _ = tracing_subscriber::registry().with(otel_layer).with(fmt_layer).try_init();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt as _;
    use std::sync::Mutex;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lines lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_the_trace_and_span_of_their_span() {
        let lines = Lines::default();
        let provider = SdkTracerProvider::builder().build();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry()
            .with(otel_layer(provider.tracer("test")))
            .with(json_layer(move || writer.clone()));
        let (trace_id, span_id) = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside any span");
            let span = tracing::info_span!("work");
            let ids = span.in_scope(|| {
                tracing::info!(rows = 3, "inside");
                let context = tracing::Span::current().context();
                let span_context = context.span().span_context().clone();
                (span_context.trace_id().to_string(), span_context.span_id().to_string())
            });
            drop(span);
            ids
        });
        let text = String::from_utf8(lines.0.lock().expect("lines lock").clone()).expect("utf-8");
        let parsed: Vec<serde_json::Value> =
            text.lines().map(|line| serde_json::from_str(line).expect("each line is JSON")).collect();
        assert_eq!(parsed.len(), 2, "{text}");
        assert!(parsed[0].get("trace_id").is_none(), "no trace outside a span: {}", parsed[0]);
        assert_eq!(parsed[1]["trace_id"], trace_id.as_str());
        assert_eq!(parsed[1]["span_id"], span_id.as_str());
        assert_eq!(parsed[1]["rows"], 3);
        assert_eq!(parsed[1]["message"], "inside");
    }
}
