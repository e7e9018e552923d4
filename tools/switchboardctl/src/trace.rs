//! W3C trace context for the CLI's calls, so an admin action can be found
//! in Jaeger: `--trace` starts a trace of its own (its id is printed on
//! stderr); `TRACEPARENT` / `TRACESTATE`, the OpenTelemetry environment
//! carriers, continue a caller's (a deploy script's span). Every request
//! then carries `traceparent`, and each service's server span is a child of
//! it (docs/tracing.md). The CLI exports no spans itself.

use tonic::metadata::{Ascii, MetadataValue};

use crate::error::CliError;

/// The trace context every request of this invocation carries.
#[derive(Debug, Clone)]
pub struct TraceContext {
    trace_id: String,
    traceparent: MetadataValue<Ascii>,
    tracestate: Option<MetadataValue<Ascii>>,
}

impl TraceContext {
    /// The context of this invocation: a new trace with `start`
    /// (`--trace`), else `TRACEPARENT` / `TRACESTATE` if set, else none.
    pub fn resolve(start: bool) -> Result<Option<Self>, CliError> {
        if start {
            return Ok(Some(Self::start()));
        }
        match std::env::var("TRACEPARENT") {
            Ok(traceparent) if !traceparent.trim().is_empty() => {
                let tracestate = std::env::var("TRACESTATE").ok().filter(|state| !state.trim().is_empty());
                Self::parse(traceparent.trim(), tracestate.as_deref().map(str::trim)).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// A new sampled trace with a random trace id.
    pub fn start() -> Self {
        let trace_id = uuid::Uuid::now_v7().simple().to_string();
        let span_id = &uuid::Uuid::now_v7().simple().to_string()[16..];
        let traceparent = format!("00-{trace_id}-{span_id}-01");
        Self::parse(&traceparent, None).expect("a generated traceparent is well formed")
    }

    /// A context from W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`) and
    /// `tracestate` text.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Result<Self, CliError> {
        let invalid = |why: &str| {
            CliError::Usage(format!(
                "TRACEPARENT {traceparent:?} is not a W3C traceparent ({why}); expected 00-<32 hex>-<16 hex>-<2 hex>"
            ))
        };
        let parts: Vec<&str> = traceparent.split('-').collect();
        let [version, trace_id, span_id, flags] = parts.as_slice() else {
            return Err(invalid("it needs four parts"));
        };
        let hex = |text: &str, len: usize| {
            text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if *version != "00" {
            return Err(invalid("the version must be 00"));
        }
        if !hex(trace_id, 32) || trace_id.bytes().all(|b| b == b'0') {
            return Err(invalid("the trace id must be 32 lowercase hex digits, not all zero"));
        }
        if !hex(span_id, 16) || span_id.bytes().all(|b| b == b'0') {
            return Err(invalid("the parent id must be 16 lowercase hex digits, not all zero"));
        }
        if !hex(flags, 2) {
            return Err(invalid("the flags must be 2 hex digits"));
        }
        let traceparent = traceparent.parse().map_err(|_| invalid("not a header value"))?;
        let tracestate = match tracestate {
            Some(state) => Some(
                state
                    .parse()
                    .map_err(|_| CliError::Usage("TRACESTATE contains characters a header cannot carry".to_owned()))?,
            ),
            None => None,
        };
        Ok(Self { trace_id: (*trace_id).to_owned(), traceparent, tracestate })
    }

    /// The trace id (32 hex digits), as Jaeger's search box takes it.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// Adds `traceparent` (and `tracestate`) to `request`.
    pub fn apply<T>(&self, request: &mut tonic::Request<T>) {
        request.metadata_mut().insert("traceparent", self.traceparent.clone());
        if let Some(state) = &self.tracestate {
            request.metadata_mut().insert("tracestate", state.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_trace_is_a_valid_sampled_traceparent() {
        let context = TraceContext::start();
        let mut request = tonic::Request::new(());
        context.apply(&mut request);
        let traceparent = request.metadata().get("traceparent").unwrap().to_str().unwrap().to_owned();
        assert!(TraceContext::parse(&traceparent, None).is_ok());
        assert!(traceparent.starts_with(&format!("00-{}-", context.trace_id())));
        assert!(traceparent.ends_with("-01"));
        assert_ne!(TraceContext::start().trace_id(), context.trace_id());
    }

    #[test]
    fn malformed_traceparents_are_refused_with_the_variable_named() {
        for bad in [
            "",
            "00-abc-def-01",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
        ] {
            let error = TraceContext::parse(bad, None).unwrap_err().to_string();
            assert!(error.contains("TRACEPARENT"), "{bad}: {error}");
        }
        let good = TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", Some("k=v")).unwrap();
        let mut request = tonic::Request::new(());
        good.apply(&mut request);
        assert_eq!(request.metadata().get("tracestate").unwrap(), "k=v");
        assert_eq!(good.trace_id(), "0af7651916cd43dd8448eb211c80319c");
    }
}
