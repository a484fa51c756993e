//! `[alerts]`: where the coordinator's monitor sends alerts — a generic webhook (the alert's
//! JSON as it is), Slack and Discord — through the built-in nodes' own code
//! (HTTPRequestNode, SlackAlertNode, DiscordAlertNode: one HTTP client, their formatting), so
//! an alert looks the same whether a workflow or the engine raised it. The URLs are secrets:
//! never logged, and errors name the sink, not the URL.

use std::sync::Arc;

use async_trait::async_trait;
use kora_coordinator::AlertSink;
use kora_model::{Map, Value};
use kora_nodes::{NodeContext, Registry};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `[alerts]`.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// POSTed the alert's JSON (`kind`, `state`, `severity`, `subject`, `message`, and the run
    /// or workflow); `KORA_ALERTS__WEBHOOK_URL`.
    pub webhook_url: String,
    /// A Slack incoming webhook.
    pub slack_webhook_url: String,
    /// A Discord webhook.
    pub discord_webhook_url: String,
}

impl std::fmt::Debug for AlertsConfig {
    /// Which sinks are set, never their URLs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertsConfig")
            .field("webhook_url", &!self.webhook_url.is_empty())
            .field("slack_webhook_url", &!self.slack_webhook_url.is_empty())
            .field("discord_webhook_url", &!self.discord_webhook_url.is_empty())
            .finish()
    }
}

impl AlertsConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (key, url) in [
            ("webhook_url", &self.webhook_url),
            ("slack_webhook_url", &self.slack_webhook_url),
            ("discord_webhook_url", &self.discord_webhook_url),
        ] {
            if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("alerts.{key} must be an http:// or https:// URL"));
            }
        }
        Ok(())
    }

    /// The sinks configured, or `None` when there are none.
    pub fn sink(&self, nodes: &Arc<Registry>) -> Option<Arc<dyn AlertSink>> {
        if self.webhook_url.is_empty()
            && self.slack_webhook_url.is_empty()
            && self.discord_webhook_url.is_empty()
        {
            return None;
        }
        Some(Arc::new(NodeSinks {
            cfg: self.clone(),
            nodes: Arc::clone(nodes),
        }))
    }
}

struct NodeSinks {
    cfg: AlertsConfig,
    nodes: Arc<Registry>,
}

impl NodeSinks {
    async fn run(&self, sink: &str, node_type: &str, input: Value) -> Result<(), String> {
        let node = self
            .nodes
            .get(node_type)
            .ok_or_else(|| format!("alert sink {sink}: node type {node_type} is missing"))?;
        let Value::Object(input) = input else {
            return Err(format!("alert sink {sink}: bad input"));
        };
        let ctx = NodeContext {
            run_id: "kora-monitor".into(),
            node_id: format!("alerts.{sink}"),
            attempt: 1,
            ..NodeContext::default()
        };
        let out: Map = node
            .run(&ctx, input)
            .await
            .map_err(|e| format!("alert sink {sink}: {}", e.error_type()))?;
        let status = out
            .get("status_code")
            .and_then(Value::as_u64)
            .unwrap_or(200);
        if !(200..300).contains(&status) {
            return Err(format!("alert sink {sink}: HTTP {status}"));
        }
        Ok(())
    }
}

#[async_trait]
impl AlertSink for NodeSinks {
    async fn send(&self, alert: &Value) -> Result<(), String> {
        let mut errors = Vec::new();
        if !self.cfg.webhook_url.is_empty() {
            let input = json!({"url": self.cfg.webhook_url, "method": "POST", "json_data": alert,
                               "timeout": 10, "response_format": "text"});
            if let Err(e) = self.run("webhook", "HTTPRequestNode", input).await {
                errors.push(e);
            }
        }
        let state = alert["state"].as_str().unwrap_or("firing");
        let kind = alert["kind"].as_str().unwrap_or("alert");
        let alert_type = if state == "resolved" {
            "success"
        } else {
            alert["severity"].as_str().unwrap_or("warning")
        };
        let title = format!("Kora: {kind} {state}");
        let context: Map = alert
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, v)| !matches!(k.as_str(), "message" | "in_flight") && !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (sink, node_type, url) in [
            ("slack", "SlackAlertNode", &self.cfg.slack_webhook_url),
            ("discord", "DiscordAlertNode", &self.cfg.discord_webhook_url),
        ] {
            if url.is_empty() {
                continue;
            }
            let input = json!({"webhook_url": url, "title": title, "message": alert["message"],
                               "alert_type": alert_type, "context": context});
            if let Err(e) = self.run(sink, node_type, input).await {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}
