//! Trace context in message headers: the W3C `traceparent` a message carries (the Extractor
//! side), and spans made from it through the OpenTelemetry API (the Injector side is the
//! header a span's context becomes). Roles call [`span`] with explicit times; nothing is made
//! unless the process exports traces ([`enable`]), so an embedded run pays nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use kora_model::trace::{TRACEPARENT, TraceParent};
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
};
use opentelemetry::{Context, KeyValue};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns span making on (the process installed an exporter).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether spans are made.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The trace context a message carries, if any.
pub fn parent_of(headers: &[(String, String)]) -> Option<TraceParent> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(TRACEPARENT))
        .and_then(|(_, v)| TraceParent::parse(v))
}

fn context_of(t: &TraceParent) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(t.trace_id),
        SpanId::from_bytes(t.span_id),
        if t.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        true,
        TraceState::default(),
    )
}

/// A span to make: under `parent` (or, without one, a root with `ids`' trace and span id).
pub struct SpanSpec {
    pub name: String,
    pub parent: Option<TraceParent>,
    /// For a root: its trace id and span id.
    pub ids: Option<TraceParent>,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<KeyValue>,
    pub links: Vec<TraceParent>,
    /// An error message: the span's status is error.
    pub error: Option<String>,
}

impl SpanSpec {
    pub fn new(name: impl Into<String>, start: SystemTime, end: SystemTime) -> Self {
        SpanSpec {
            name: name.into(),
            parent: None,
            ids: None,
            start,
            end,
            attributes: Vec::new(),
            links: Vec::new(),
            error: None,
        }
    }
    pub fn parent(mut self, p: Option<TraceParent>) -> Self {
        self.parent = p;
        self
    }
    pub fn attr(mut self, k: &'static str, v: impl Into<opentelemetry::Value>) -> Self {
        self.attributes.push(KeyValue::new(k, v));
        self
    }
}

/// Makes and ends the span (when enabled); its context, for children and headers.
pub fn span(s: SpanSpec) -> Option<TraceParent> {
    if !enabled() {
        return None;
    }
    let tracer = opentelemetry::global::tracer("kora");
    let mut b = tracer
        .span_builder(s.name)
        .with_start_time(s.start)
        .with_attributes(s.attributes)
        .with_links(
            s.links
                .iter()
                .map(|l| Link::with_context(context_of(l)))
                .collect(),
        );
    let cx = match (&s.parent, &s.ids) {
        (Some(p), _) => Context::new().with_remote_span_context(context_of(p)),
        (None, Some(ids)) => {
            b = b
                .with_trace_id(TraceId::from_bytes(ids.trace_id))
                .with_span_id(SpanId::from_bytes(ids.span_id));
            Context::new()
        }
        (None, None) => Context::new(),
    };
    let mut span = tracer.build_with_context(b, &cx);
    if let Some(e) = s.error {
        span.set_status(opentelemetry::trace::Status::error(e));
    }
    let sc = span.span_context().clone();
    span.end_with_timestamp(s.end);
    sc.is_valid().then(|| TraceParent {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        sampled: sc.is_sampled(),
    })
}

/// A time in ms since the epoch as a `SystemTime`.
pub fn at_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms)
}
