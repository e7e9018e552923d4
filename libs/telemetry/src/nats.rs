//! W3C trace context through NATS message headers.
//!
//! Publishers open a [`producer_span`] (`send <subject template>`) and
//! [`inject_span`] its context into the headers they send (the `sb-events`
//! publish helpers do); consumers open one span per message with
//! [`consumer_span`] (`process <subject template>`), parented to the
//! producer's. Names and attributes follow the OpenTelemetry messaging
//! conventions (docs/tracing.md).

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

/// The subjects whose last token names an instance (a room, a user, an
/// edge, a hashed email), by their two tokens before it, and the placeholder
/// a span's destination shows instead (docs/subjects.md).
const VARIABLE_SUBJECTS: &[(&str, &str, &str)] = &[
    ("msg", "room", "{room}"),
    ("msg", "user", "{user}"),
    ("msg", "batch", "{edge}"),
    ("deliver", "room", "{room}"),
    ("deliver", "user", "{user}"),
    ("deliver", "edge", "{edge}"),
    ("presence", "ev", "{edge}"),
    ("presence", "hb", "{edge}"),
    ("auth", "login", "{key}"),
    ("control", "edge", "{edge}"),
];

/// `subject` as a span names its destination: the instance token replaced
/// by a placeholder (`sb.deliver.room.lobby` → `sb.deliver.room.{room}`), so
/// there is one span name per kind of subject, never one per room or user,
/// and no user id or room name in a span name.
pub fn destination_template(subject: &str) -> String {
    let mut tokens = subject.rsplitn(4, '.');
    let (Some(_instance), Some(second), Some(first)) = (tokens.next(), tokens.next(), tokens.next()) else {
        return subject.to_owned();
    };
    match VARIABLE_SUBJECTS.iter().find(|(a, b, _)| *a == first && *b == second) {
        Some((_, _, placeholder)) => {
            let cut = subject.rfind('.').map_or(0, |dot| dot + 1);
            format!("{}{placeholder}", &subject[..cut])
        }
        None => subject.to_owned(),
    }
}

/// Opens the consumer span for one NATS message on `subject`, parented to the
/// producer's trace context: named `process <subject template>`, with the
/// OpenTelemetry messaging attributes. `handler` (e.g. `"messaging.store"`)
/// says which of ours handled it. Callers may record
/// `messaging.message.id` and `switchboard.sockets` on it.
pub fn consumer_span(handler: &'static str, subject: &str, headers: Option<&HeaderMap>) -> tracing::Span {
    let span = new_consumer_span(handler, subject);
    let _ = span.set_parent(extract(headers));
    span
}

fn new_consumer_span(handler: &'static str, subject: &str) -> tracing::Span {
    let destination = destination_template(subject);
    tracing::info_span!(
        "nats.process",
        otel.name = %format_args!("process {destination}"),
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %destination,
        messaging.message.id = tracing::field::Empty,
        switchboard.handler = handler,
        switchboard.sockets = tracing::field::Empty,
    )
}

/// The trace context `headers` carry, if any: a consumer that should trace
/// only what arrives inside a trace (presence's applier, which otherwise
/// would start a trace per event) opens its span with [`consumer_span_in`]
/// only then.
pub fn traced(headers: Option<&HeaderMap>) -> Option<crate::TraceLink> {
    headers.and_then(|headers| crate::TraceLink::from_context(extract(Some(headers))))
}

/// As [`consumer_span`], parented to `parent` (see [`traced`]).
pub fn consumer_span_in(parent: &crate::TraceLink, handler: &'static str, subject: &str) -> tracing::Span {
    let span = new_consumer_span(handler, subject);
    parent.parent(&span);
    span
}

/// As [`producer_span`], parented to `parent` rather than to the current
/// span: for a publish made by a background task on behalf of work that
/// happened elsewhere (an event the presence reporter publishes for a
/// connect; a transition presence announces for a join).
pub fn producer_span_in(parent: &crate::TraceLink, subject: &str, message_id: Option<&str>) -> tracing::Span {
    let span = new_producer_span(&destination_template(subject), message_id, false);
    parent.parent(&span);
    span
}

/// Opens the producer span of one publish to `subject` (a child of the
/// current span): named `send <subject template>`. Instrument the publish
/// with it and pass it to [`inject_span`], so the message carries its
/// context. Outside any span (a heartbeat, a timer) there is no trace to
/// continue and it returns `Span::none()`: a background publish starts no
/// trace of its own.
pub fn producer_span(subject: &str, message_id: Option<&str>) -> tracing::Span {
    if tracing::Span::current().is_none() {
        return tracing::Span::none();
    }
    producer_span_to(&destination_template(subject), message_id)
}

/// As [`producer_span`], for a caller that knows the destination's template
/// already (the edge's ingest, once per accepted message).
pub fn producer_span_to(destination: &str, message_id: Option<&str>) -> tracing::Span {
    if tracing::Span::current().is_none() {
        return tracing::Span::none();
    }
    new_producer_span(destination, message_id, true)
}

/// The producer span: a child of the current span, or of none (to be
/// parented explicitly) when `in_current` is false.
fn new_producer_span(destination: &str, message_id: Option<&str>, in_current: bool) -> tracing::Span {
    let parent = if in_current { tracing::Span::current().id() } else { None };
    tracing::info_span!(
        parent: parent,
        "nats.send",
        otel.name = %format_args!("send {destination}"),
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = %destination,
        messaging.message.id = message_id,
        otel.status_code = tracing::field::Empty,
    )
}

/// Adds `span`'s trace context (`traceparent`, `tracestate`) to `headers`.
pub fn inject_span(span: &tracing::Span, headers: &mut HeaderMap) {
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut NatsInjector(headers));
    });
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
    handler: &'static str,
    subject: &str,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> tracing::Span {
    let span = new_consumer_span(handler, subject);
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
    fn destinations_name_the_kind_of_subject_not_the_instance() {
        for (subject, template) in [
            ("sb.deliver.room.lobby", "sb.deliver.room.{room}"),
            ("acme.prod.msg.user.alice", "acme.prod.msg.user.{user}"),
            ("sb.msg.batch.edge-1", "sb.msg.batch.{edge}"),
            ("sb.deliver.edge.e1", "sb.deliver.edge.{edge}"),
            ("sb.presence.ev.e1", "sb.presence.ev.{edge}"),
            ("sb.msg.all", "sb.msg.all"),
            ("sb.presence.query", "sb.presence.query"),
            ("sb.deliver.presence", "sb.deliver.presence"),
            ("room", "room"),
        ] {
            assert_eq!(destination_template(subject), template, "{subject}");
        }
    }

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
    fn only_traced_headers_give_a_link_and_linked_spans_join_the_trace() {
        crate::init_for_tests();
        assert!(traced(None).is_none());
        assert!(traced(Some(&HeaderMap::new())).is_none(), "no traceparent, no trace to continue");
        let producer = tracing::info_span!("producer");
        let mut headers = HeaderMap::new();
        producer.in_scope(|| inject(&mut headers));
        let link = traced(Some(&headers)).expect("a traceparent is a trace");
        let trace = producer.context().span().span_context().trace_id();
        let consumer = consumer_span_in(&link, "test", "sb.presence.ev.e1");
        assert_eq!(consumer.context().span().span_context().trace_id(), trace);
        // Published later by a task running in no span (or another one).
        let other = tracing::info_span!("unrelated");
        let send = other.in_scope(|| producer_span_in(&link, "sb.deliver.room.lobby", None));
        assert_eq!(send.context().span().span_context().trace_id(), trace);
        assert!(crate::TraceLink::current().is_none(), "outside any span there is no trace");
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
