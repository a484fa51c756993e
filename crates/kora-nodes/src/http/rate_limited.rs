//! RateLimitedAPINode: a request behind the worker's token bucket for its key.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use kora_model::catalog::{NodeTypeInfo, ParamInfo, ParamKind};
use kora_model::{Map, Value};
use serde_json::json;

use crate::builtin::info;
use crate::{Node, NodeContext, NodeError};

use super::Http;
use super::client::{host_of, num, request, request_params, url_param};

pub(crate) struct RateLimitedApi {
    info: NodeTypeInfo,
    http: Arc<Http>,
}

impl RateLimitedApi {
    pub(super) fn new(http: Arc<Http>) -> Self {
        let mut params = vec![
            ParamInfo::required("url", "the URL, http:// or https://").kind(ParamKind::String),
            ParamInfo::required("requests_per_second", "the bucket's refill rate")
                .kind(ParamKind::Number),
            ParamInfo::optional("burst_size", "requests allowed at once after a quiet spell")
                .kind(ParamKind::Integer)
                .default("1"),
            ParamInfo::optional(
                "rate_limit_key",
                "the bucket: nodes sharing a key share the limit",
            )
            .kind(ParamKind::String)
            .default("the URL's host"),
            ParamInfo::optional(
                "wait_on_rate_limit",
                "wait for a token; false fails at once with a retryable RateLimited",
            )
            .kind(ParamKind::Bool)
            .default("true"),
        ];
        params.extend(request_params());
        RateLimitedApi {
            info: info(
                "RateLimitedAPINode",
                "HTTPRequestNode behind a token bucket shared by every task of the worker.",
                params,
                vec!["response", "status_code", "success", "rate_limit"],
            ),
            http,
        }
    }
}

#[async_trait]
impl Node for RateLimitedApi {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "RateLimitedAPINode";
        let url = url_param(NODE, &input, "url")?;
        let rate = crate::params::rate(NODE, &input, "requests_per_second")?;
        let burst = num(&input, "burst_size", 1.0).clamp(1.0, 1e6) as u32;
        let key = input
            .get("rate_limit_key")
            .and_then(Value::as_str)
            .map_or_else(|| host_of(&url), String::from);
        let wait = input
            .get("wait_on_rate_limit")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let req = request(NODE, &input, url)?;
        let queued = Instant::now();
        self.http.take_token(&key, rate, burst, wait).await?;
        let waited = queued.elapsed().as_secs_f64() * 1000.0;
        let mut out = self.http.send(NODE, &req).await?.output();
        out.insert(
            "rate_limit".into(),
            json!({"key": key, "requests_per_second": rate, "burst_size": burst, "waited_ms": (waited * 100.0).round() / 100.0}),
        );
        Ok(out)
    }
}
