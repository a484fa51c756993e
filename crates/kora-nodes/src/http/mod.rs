//! Nodes that call HTTP services: HTTPRequestNode, RESTClientNode, RateLimitedAPINode, the
//! alert nodes (Webhook, Slack, Discord) and LLMAgentNode (OpenAI-compatible chat completions).
//!
//! One pooled client per worker. RateLimitedAPINode's token buckets and the alert nodes' rate
//! limits live in the worker and are shared by its tasks (each worker process limits itself;
//! for an installation-wide limit, route the nodes to a queue with a rate limit).

mod alert;
mod client;
mod llm;
mod rate_limited;
mod request;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kora_model::error_type;

use crate::{Node, NodeError};

use alert::{Alert, AlertKind};
pub(crate) use client::request;
use llm::LlmAgent;
use rate_limited::RateLimitedApi;
use request::{HttpRequest, RestClient};

/// What the HTTP nodes of one worker share.
pub(crate) struct Http {
    /// Made when the first request is sent: building one reads and parses the system's root
    /// certificates (about 38 M instructions each, callgrind), which a run without HTTP nodes
    /// need not pay.
    client: std::sync::OnceLock<reqwest::Client>,
    insecure: std::sync::OnceLock<reqwest::Client>,
    /// RateLimitedAPINode's buckets by key, with the quota each was made for.
    #[allow(clippy::type_complexity)]
    buckets: Mutex<HashMap<String, (governor::Quota, Arc<governor::DefaultDirectRateLimiter>)>>,
    alerts: Mutex<HashMap<String, AlertWindow>>,
}

#[derive(Default)]
pub(super) struct AlertWindow {
    sent: Vec<Instant>,
    quiet_until: Option<Instant>,
}

impl Http {
    pub(crate) fn new() -> Arc<Http> {
        Arc::new(Http {
            client: std::sync::OnceLock::new(),
            insecure: std::sync::OnceLock::new(),
            buckets: Mutex::new(HashMap::new()),
            alerts: Mutex::new(HashMap::new()),
        })
    }

    /// The pooled client; `verify`: check servers' TLS certificates.
    fn client(&self, verify: bool) -> &reqwest::Client {
        let cell = if verify { &self.client } else { &self.insecure };
        cell.get_or_init(|| {
            reqwest::Client::builder()
                .user_agent(concat!("kora/", env!("CARGO_PKG_VERSION")))
                .pool_max_idle_per_host(16)
                .danger_accept_invalid_certs(!verify)
                .build()
                .unwrap_or_default()
        })
    }

    /// Takes a token from `key`'s bucket (`rate` a second, up to `burst` at once; governor's
    /// GCRA): waits for one when `wait`, else fails with a retryable `RateLimited` that says
    /// when to try again. A key given another rate starts a new bucket.
    async fn take_token(
        &self,
        key: &str,
        rate: f64,
        burst: u32,
        wait: bool,
    ) -> Result<(), NodeError> {
        let quota = Duration::try_from_secs_f64(1.0 / rate)
            .ok()
            .and_then(governor::Quota::with_period)
            .map(|q| q.allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)))
            .ok_or_else(|| {
                NodeError::permanent(
                    error_type::VALUE,
                    format!("rate limit of {rate}/s cannot be kept"),
                )
            })?;
        let limiter = {
            let mut b = self
                .buckets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = b
                .entry(key.to_string())
                .or_insert_with(|| (quota, Arc::new(governor::RateLimiter::direct(quota))));
            if entry.0 != quota {
                *entry = (quota, Arc::new(governor::RateLimiter::direct(quota)));
            }
            Arc::clone(&entry.1)
        };
        loop {
            let Err(not_until) = limiter.check() else {
                return Ok(());
            };
            let delay = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            if !wait {
                return Err(NodeError::retryable(
                    "RateLimited",
                    format!(
                        "rate limit of {rate}/s for {key:?} reached; next token in {} ms",
                        delay.as_millis()
                    ),
                )
                .retry_after(Some(delay)));
            }
            tokio::time::sleep(delay).await;
        }
    }
}

pub(crate) fn all(http: &Arc<Http>) -> Vec<Arc<dyn Node>> {
    vec![
        Arc::new(HttpRequest::new(Arc::clone(http))),
        Arc::new(RestClient::new(Arc::clone(http))),
        Arc::new(RateLimitedApi::new(Arc::clone(http))),
        Arc::new(Alert::new(Arc::clone(http), AlertKind::Webhook)),
        Arc::new(Alert::new(Arc::clone(http), AlertKind::Slack)),
        Arc::new(Alert::new(Arc::clone(http), AlertKind::Discord)),
        Arc::new(LlmAgent::new(Arc::clone(http))),
    ]
}
