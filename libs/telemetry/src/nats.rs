//! W3C trace context through NATS message headers.
//!
//! Publishers call [`inject`] on the headers they send (the `sb-events`
//! publish helpers do); consumers open one span per message with
//! [`consumer_span`], parented to the producer's context.

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct NatsInjector<'a>(&'a mut HeaderMap);

impl Injector for NatsInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct NatsExtractor<'a>(&'a HeaderMap);

impl Extractor for NatsExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

/// Adds the current span's trace context (`traceparent`, `tracestate`) to `headers`.
pub fn inject(headers: &mut HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut NatsInjector(headers));
    });
}

/// Returns the trace context carried by `headers` (empty when there is none).
pub fn extract(headers: Option<&HeaderMap>) -> opentelemetry::Context {
    match headers {
        Some(headers) => {
            opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&NatsExtractor(headers)))
        }
        None => opentelemetry::Context::new(),
    }
}

/// Opens the consumer span for one NATS message on `subject`, parented to the
/// producer's trace context. `name` is static (e.g. `"messaging.store"`).
pub fn consumer_span(name: &'static str, subject: &str, headers: Option<&HeaderMap>) -> tracing::Span {
    let span = tracing::info_span!(
        "nats.consume",
        otel.name = name,
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.destination = subject,
    );
    let _ = span.set_parent(extract(headers));
    span
}

/// The current span's W3C trace context as text (`traceparent`,
/// `tracestate`), for a message that travels inside a batch and so cannot
/// carry its own headers.
pub fn current_trace_fields() -> (Option<String>, Option<String>) {
    let context = tracing::Span::current().context();
    let mut fields = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut fields);
    });
    (fields.remove("traceparent"), fields.remove("tracestate"))
}

/// As [`consumer_span`], parented to a context carried as text (see
/// [`current_trace_fields`]).
pub fn consumer_span_from_fields(
    name: &'static str,
    subject: &str,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "nats.consume",
        otel.name = name,
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.destination = subject,
    );
    let mut fields = std::collections::HashMap::new();
    if let Some(traceparent) = traceparent {
        fields.insert("traceparent".to_owned(), traceparent.to_owned());
    }
    if let Some(tracestate) = tracestate {
        fields.insert("tracestate".to_owned(), tracestate.to_owned());
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&fields));
    let _ = span.set_parent(parent);
    span
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt as _;

    #[test]
    fn headers_round_trip_the_trace() {
        crate::init_for_tests();
        let producer = tracing::info_span!("producer");
        let mut headers = HeaderMap::new();
        producer.in_scope(|| inject(&mut headers));
        assert!(headers.get("traceparent").is_some());
        let consumer = consumer_span("test", "sb.test", Some(&headers));
        assert_eq!(
            consumer.context().span().span_context().trace_id(),
            producer.context().span().span_context().trace_id()
        );
    }

    #[test]
    fn text_fields_round_trip_the_trace() {
        crate::init_for_tests();
        let producer = tracing::info_span!("producer");
        let (traceparent, tracestate) = producer.in_scope(current_trace_fields);
        assert!(traceparent.is_some());
        let consumer = consumer_span_from_fields("test", "sb.test", traceparent.as_deref(), tracestate.as_deref());
        assert_eq!(
            consumer.context().span().span_context().trace_id(),
            producer.context().span().span_context().trace_id()
        );
    }
}
