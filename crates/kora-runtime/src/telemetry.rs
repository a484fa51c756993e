//! Tracing set-up: human-readable or JSON lines on stderr, filtered by `KORA_LOG` (or
//! `RUST_LOG`), so stdout stays clean for command output; and, when an OTLP endpoint is set,
//! OpenTelemetry spans exported over OTLP/HTTP with JSON bodies.
//!
//! The endpoint comes from the environment, as OpenTelemetry's own settings do:
//! `KORA_TRACING__OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` (a collector's base URL;
//! `/v1/traces` is appended), or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL); or, for
//! `kora serve`, from `tracing.otlp_endpoint` in its configuration file ([`export_to`]). Unset,
//! nothing is exported and the roles' spans cost a no-op call each.

use std::time::Duration;

use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_subscriber::EnvFilter;

/// `[tracing]`: where spans go. The environment is read when the process starts (as
/// OpenTelemetry's own settings are); a value from a configuration file is applied once the
/// file is loaded (`kora serve`), and the environment wins when both are set.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// An OTLP/HTTP collector's base URL (`/v1/traces` is appended); empty exports nothing.
    pub otlp_endpoint: String,
}

/// Keeps the span exporter alive; dropping it flushes what is buffered.
#[must_use = "dropping it stops exporting spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Where spans go, from the environment (see the module docs); `None` exports nothing.
pub fn otlp_traces_url(env: impl Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(full) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").filter(|v| !v.is_empty()) {
        return Some(full);
    }
    let base = env("KORA_TRACING__OTLP_ENDPOINT")
        .filter(|v| !v.is_empty())
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|v| !v.is_empty()))?;
    Some(format!("{}/v1/traces", base.trim_end_matches('/')))
}

/// Installs the global subscriber once (later calls are no-ops), and the span exporter when
/// an endpoint is set. `service` names this process in the traces.
pub fn init(default_level: &str, json: bool, service: &str) -> Telemetry {
    let filter = std::env::var("KORA_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .map_or_else(|| EnvFilter::new(default_level), EnvFilter::new);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
    let provider =
        otlp_traces_url(|k| std::env::var(k).ok()).and_then(|url| provider(url, service));
    Telemetry { provider }
}

/// Starts exporting spans to the collector at `base` (`/v1/traces` is appended): what
/// `tracing.otlp_endpoint` in a configuration file asks for, read after the process started.
/// The exporter's blocking HTTP client is made on a thread of its own, so this may be called
/// inside an async runtime; drop the result outside one (or on a plain thread).
pub fn export_to(base: &str, service: &str) -> Telemetry {
    let url = format!("{}/v1/traces", base.trim_end_matches('/'));
    let service = service.to_string();
    let provider = std::thread::spawn(move || provider(url, &service))
        .join()
        .unwrap_or(None);
    Telemetry { provider }
}

fn provider(url: String, service: &str) -> Option<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(url.clone())
        .with_timeout(Duration::from_secs(5))
        .build();
    let exporter = match exporter {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "cannot export traces; continuing without");
            return None;
        }
    };
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_millis(500))
                .build(),
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_string())
        .with_attribute(opentelemetry::KeyValue::new(
            "process.pid",
            i64::from(std::process::id()),
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    tracing::info!(%url, "exporting traces over OTLP/HTTP");
    Some(provider)
}

#[cfg(test)]
mod tests {
    use super::otlp_traces_url;

    #[test]
    fn the_endpoint_comes_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(otlp_traces_url(env(&[])), None);
        assert_eq!(
            otlp_traces_url(env(&[("KORA_TRACING__OTLP_ENDPOINT", "http://c:4318/")])),
            Some("http://c:4318/v1/traces".into())
        );
        assert_eq!(
            otlp_traces_url(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://o:4318")])),
            Some("http://o:4318/v1/traces".into())
        );
        assert_eq!(
            otlp_traces_url(env(&[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t/x"),
                ("KORA_TRACING__OTLP_ENDPOINT", "http://c:4318")
            ])),
            Some("http://t/x".into())
        );
    }
}
