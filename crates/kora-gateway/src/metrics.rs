//! The gateway's metrics, in the process's registry: requests by route, method and status;
//! their latency by route; refused credentials by reason; rate-limited requests; audit writes
//! that failed.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's template (`/v1/runs/{run_id}`), never the raw path.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

fn latency() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

pub struct GatewayMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub auth_failures: Family<ReasonLabels, Counter>,
    pub rate_limited: Counter,
    pub audit_failures: Counter,
}

impl GatewayMetrics {
    pub fn registered(registry: &mut Registry) -> Self {
        let m = GatewayMetrics::unregistered();
        registry.register(
            "gateway_requests",
            "HTTP requests answered, by route template, method and status.",
            m.requests.clone(),
        );
        registry.register(
            "gateway_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            m.latency.clone(),
        );
        registry.register(
            "gateway_auth_failures",
            "Requests refused as unauthenticated, by reason (missing, malformed, unknown_key, wrong_secret, expired, revoked, jwt_*).",
            m.auth_failures.clone(),
        );
        registry.register(
            "gateway_rate_limited",
            "Requests answered 429 (a rate limit or a tenant quota).",
            m.rate_limited.clone(),
        );
        registry.register(
            "gateway_audit_failures",
            "Audit entries that could not be written to the ledger.",
            m.audit_failures.clone(),
        );
        m
    }

    /// Metrics kept but not exported (a gateway built without the process's registry).
    pub fn unregistered() -> Self {
        GatewayMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency),
            auth_failures: Family::default(),
            rate_limited: Counter::default(),
            audit_failures: Counter::default(),
        }
    }

    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }
}
