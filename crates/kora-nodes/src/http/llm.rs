//! LLMAgentNode: OpenAI-compatible chat completions.

use std::sync::Arc;

use async_trait::async_trait;
use kora_model::catalog::{NodeTypeInfo, ParamInfo, ParamKind};
use kora_model::value::py_str;
use kora_model::{Map, Value};
use serde_json::json;

use crate::builtin::{info, input_error};
use crate::{Node, NodeContext, NodeError};

use super::Http;
use super::client::request;

pub(crate) struct LlmAgent {
    info: NodeTypeInfo,
    http: Arc<Http>,
}

impl LlmAgent {
    pub(super) fn new(http: Arc<Http>) -> Self {
        LlmAgent {
            info: info(
                "LLMAgentNode",
                "Asks an OpenAI-compatible chat-completions API (OpenAI, vLLM, Ollama, LiteLLM, ...) and outputs the reply.",
                vec![
                    ParamInfo::required("model", "the model name").kind(ParamKind::String),
                    ParamInfo::optional("base_url", "the API's base URL (…/v1)")
                        .kind(ParamKind::String)
                        .default("https://api.openai.com/v1"),
                    ParamInfo::optional("api_key", "bearer token (use a secret reference)")
                        .kind(ParamKind::String),
                    ParamInfo::optional("messages", "the conversation: [{role, content}]")
                        .kind(ParamKind::List),
                    ParamInfo::optional("prompt", "a user message appended to messages")
                        .kind(ParamKind::String),
                    ParamInfo::optional("system_prompt", "a system message put first")
                        .kind(ParamKind::String),
                    ParamInfo::optional(
                        "generation_config",
                        "temperature, max_tokens, top_p, stop, seed, ... passed through",
                    )
                    .kind(ParamKind::Map),
                    ParamInfo::optional(
                        "provider",
                        "informational; any OpenAI-compatible server works",
                    )
                    .kind(ParamKind::String)
                    .default("openai"),
                    ParamInfo::optional("conversation_id", "echoed in the output")
                        .kind(ParamKind::String),
                    ParamInfo::optional("timeout", "seconds for the call")
                        .kind(ParamKind::Seconds)
                        .default("120"),
                ],
                vec![
                    "success",
                    "response",
                    "usage",
                    "conversation_id",
                    "metadata",
                ],
            ),
            http,
        }
    }
}

#[async_trait]
impl Node for LlmAgent {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "LLMAgentNode";
        let model = match input.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            _ => {
                return Err(input_error(
                    NODE,
                    "required parameter 'model' must be a model name",
                ));
            }
        };
        let base = input
            .get("base_url")
            .and_then(Value::as_str)
            .unwrap_or("https://api.openai.com/v1");
        let mut messages: Vec<Value> = Vec::new();
        if let Some(s) = input.get("system_prompt").and_then(Value::as_str) {
            messages.push(json!({"role": "system", "content": s}));
        }
        match input.get("messages") {
            Some(Value::Array(a)) => {
                for (i, m) in a.iter().enumerate() {
                    if m.get("role").and_then(Value::as_str).is_none() || m.get("content").is_none()
                    {
                        return Err(input_error(
                            NODE,
                            format!("messages[{i}] must be {{\"role\", \"content\"}}, found {m}"),
                        ));
                    }
                    messages.push(m.clone());
                }
            }
            Some(Value::Null) | None => {}
            Some(other) => {
                return Err(input_error(
                    NODE,
                    format!("messages must be a list, found {other}"),
                ));
            }
        }
        if let Some(p) = input.get("prompt").filter(|p| !p.is_null()) {
            messages.push(json!({"role": "user", "content": py_str(p)}));
        }
        if !messages.iter().any(|m| m["role"] != "system") {
            return Err(input_error(NODE, "nothing to ask: give messages or prompt"));
        }
        let mut body = json!({"model": model, "messages": messages});
        if let Some(Value::Object(g)) = input.get("generation_config") {
            for (k, v) in g {
                body[k] = v.clone();
            }
        }
        let mut req_input = Map::new();
        req_input.insert("method".into(), Value::String("POST".into()));
        req_input.insert("json_data".into(), body);
        req_input.insert("response_format".into(), Value::String("json".into()));
        req_input.insert(
            "timeout".into(),
            input.get("timeout").cloned().unwrap_or(Value::from(120)),
        );
        if let Some(k) = input
            .get("api_key")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
        {
            req_input.insert("auth_type".into(), Value::String("bearer".into()));
            req_input.insert("auth_token".into(), Value::String(k.into()));
        }
        let url = format!("{}/chat/completions", base.trim_end_matches('/'));
        let resp = self
            .http
            .send(NODE, &request(NODE, &req_input, url)?)
            .await?;
        let api_error = || {
            resp.content
                .get("error")
                .and_then(|e| e.get("message").or(Some(e)))
                .map_or_else(|| py_str(&resp.content), py_str)
        };
        match resp.status {
            200..=299 => {}
            408 | 409 | 429 | 500..=599 => {
                return Err(NodeError::retryable(
                    "LLMError",
                    format!("{NODE}: the API answered {}: {}", resp.status, api_error()),
                )
                .retry_after(resp.retry_after()));
            }
            s => {
                return Err(NodeError::permanent(
                    "LLMError",
                    format!("{NODE}: the API refused the request ({s}): {}", api_error()),
                ));
            }
        }
        let choice = resp
            .content
            .get("choices")
            .and_then(|c| c.get(0))
            .cloned()
            .unwrap_or(Value::Null);
        let Some(message) = choice.get("message") else {
            return Err(NodeError::permanent(
                "LLMError",
                format!(
                    "{NODE}: the reply has no choices[0].message: {}",
                    resp.content
                ),
            ));
        };
        let mut response = json!({
            "content": message.get("content").cloned().unwrap_or(Value::Null),
            "role": message.get("role").cloned().unwrap_or(Value::String("assistant".into())),
            "finish_reason": choice.get("finish_reason").cloned().unwrap_or(Value::Null),
        });
        if let Some(t) = message.get("tool_calls") {
            response["tool_calls"] = t.clone();
        }
        let mut out = Map::new();
        out.insert("success".into(), Value::Bool(true));
        out.insert("response".into(), response);
        out.insert(
            "usage".into(),
            resp.content.get("usage").cloned().unwrap_or(json!({})),
        );
        out.insert(
            "conversation_id".into(),
            input
                .get("conversation_id")
                .cloned()
                .unwrap_or_else(|| Value::String(format!("{}:{}", ctx.run_id, ctx.node_id))),
        );
        out.insert(
            "metadata".into(),
            json!({"model": resp.content.get("model").cloned().unwrap_or(Value::String(model)), "id": resp.content.get("id"),
                   "provider": input.get("provider").cloned().unwrap_or(Value::String("openai".into())),
                   "latency_ms": resp.elapsed_ms}),
        );
        Ok(out)
    }
}
