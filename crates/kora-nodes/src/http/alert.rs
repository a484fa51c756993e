//! The alert nodes (Webhook, Slack, Discord): templates, levels, and a rate limit with cooldown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kora_model::catalog::{NodeTypeInfo, ParamInfo, ParamKind};
use kora_model::value::py_str;
use kora_model::{Map, Value};
use serde_json::json;

use crate::builtin::info;
use crate::{Node, NodeContext, NodeError};

use super::Http;
use super::client::{host_of, request, url_param};

#[derive(Clone, Copy, PartialEq)]
pub(super) enum AlertKind {
    Webhook,
    Slack,
    Discord,
}

pub(crate) struct Alert {
    info: NodeTypeInfo,
    http: Arc<Http>,
    kind: AlertKind,
}

pub(super) fn alert_params(url_name: &'static str) -> Vec<ParamInfo> {
    vec![
        ParamInfo::required(url_name, "where the alert is posted (use a secret reference)").kind(ParamKind::String),
        ParamInfo::optional("title", "the alert's title").kind(ParamKind::String).default("Kora alert"),
        ParamInfo::optional("message", "the alert's text").kind(ParamKind::String),
        ParamInfo::optional("message_template", "text with {name} placeholders filled from context, the inputs, title, alert_type, severity and timestamp")
            .kind(ParamKind::String),
        ParamInfo::optional("alert_templates", "a template per alert_type (over message_template)").kind(ParamKind::Map),
        ParamInfo::optional("alert_type", "success, warning, error, critical or info").kind(ParamKind::String).default("info"),
        ParamInfo::optional("severity", "shown in the alert; defaults to alert_type").kind(ParamKind::String),
        ParamInfo::optional("context", "details shown as fields").kind(ParamKind::Map),
        ParamInfo::optional("alert_levels", "send only alerts whose alert_type or severity is listed").kind(ParamKind::List),
        ParamInfo::optional("rate_limit", "{max_alerts_per_minute, cooldown_seconds}: past the maximum, alerts are suppressed for the cooldown")
            .kind(ParamKind::Map),
        ParamInfo::optional("timeout", "seconds for the post").kind(ParamKind::Seconds).default("10"),
    ]
}

impl Alert {
    pub(super) fn new(http: Arc<Http>, kind: AlertKind) -> Self {
        let (name, description, mut params) = match kind {
            AlertKind::Webhook => (
                "WebhookAlertNode",
                "Posts an alert as JSON ({title, message, alert_type, severity, context, timestamp}) to any URL.",
                {
                    let mut p = alert_params("url");
                    p.push(ParamInfo::optional("headers", "request headers").kind(ParamKind::Map));
                    p.push(
                        ParamInfo::optional("method", "POST or PUT")
                            .kind(ParamKind::OneOf(&["POST", "PUT"]))
                            .default("POST"),
                    );
                    p
                },
            ),
            AlertKind::Slack => (
                "SlackAlertNode",
                "Posts an alert to a Slack incoming webhook (text plus a colored attachment with context fields).",
                {
                    let mut p = alert_params("webhook_url");
                    p.push(
                        ParamInfo::optional("channel", "channel override").kind(ParamKind::String),
                    );
                    p.push(ParamInfo::optional("username", "sender name").kind(ParamKind::String));
                    p.push(
                        ParamInfo::optional("icon_emoji", "sender icon, e.g. :rotating_light:")
                            .kind(ParamKind::String),
                    );
                    p
                },
            ),
            AlertKind::Discord => (
                "DiscordAlertNode",
                "Posts an alert to a Discord webhook as an embed (accepts 200 and 204).",
                {
                    let mut p = alert_params("webhook_url");
                    p.push(ParamInfo::optional("username", "sender name").kind(ParamKind::String));
                    p.push(
                        ParamInfo::optional("embed", "send an embed; false sends plain text")
                            .kind(ParamKind::Bool)
                            .default("true"),
                    );
                    p.push(
                        ParamInfo::optional(
                            "color",
                            "embed color as an integer; defaults by alert_type",
                        )
                        .kind(ParamKind::Integer),
                    );
                    p.push(
                        ParamInfo::optional(
                            "fields",
                            "extra embed fields: [{name, value, inline}]",
                        )
                        .kind(ParamKind::List),
                    );
                    p.push(
                        ParamInfo::optional("mentions", "user ids, @here or @everyone to mention")
                            .kind(ParamKind::List),
                    );
                    p.push(
                        ParamInfo::optional("thread_id", "post into this thread")
                            .kind(ParamKind::String),
                    );
                    p.push(
                        ParamInfo::optional("footer_text", "embed footer").kind(ParamKind::String),
                    );
                    p
                },
            ),
        };
        params.sort_by_key(|p| !p.required);
        let mut i = info(
            name,
            description,
            params,
            vec!["success", "sent", "status_code", "message", "suppressed"],
        );
        i.open_inputs = true;
        Alert {
            info: i,
            http,
            kind,
        }
    }
}

/// Python `str.format`-style filling of `{name}` from `vars`; unknown names stay as written.
pub(super) fn fill(template: &str, vars: &Map) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open].replace("}}", "}"));
        let after = &rest[open + 1..];
        if let Some(stripped) = after.strip_prefix('{') {
            out.push('{');
            rest = stripped;
            continue;
        }
        match after.find('}') {
            Some(close) => {
                let key = &after[..close];
                match vars.get(key) {
                    Some(v) => out.push_str(&py_str(v)),
                    None => out.push_str(&rest[open..open + close + 2]),
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(&rest.replace("}}", "}"));
    out
}

pub(super) fn color_of(alert_type: &str) -> (u32, &'static str) {
    match alert_type.to_ascii_lowercase().as_str() {
        "success" => (0x2E_CC71, "good"),
        "warning" => (0xF1_C40F, "warning"),
        "error" => (0xE7_4C3C, "danger"),
        "critical" => (0x99_2D22, "danger"),
        _ => (0x34_98DB, "#3498db"),
    }
}

#[async_trait]
impl Node for Alert {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        let node = self.info.name;
        let url_key = if self.kind == AlertKind::Webhook {
            "url"
        } else {
            "webhook_url"
        };
        let url = url_param(node, &input, url_key)?;
        let alert_type = input
            .get("alert_type")
            .and_then(Value::as_str)
            .unwrap_or("info")
            .to_string();
        let severity = input
            .get("severity")
            .and_then(Value::as_str)
            .unwrap_or(&alert_type)
            .to_string();
        let title = input
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("Kora alert")
            .to_string();
        let context = match input.get("context") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        let timestamp = chrono_now();
        // Template variables: the inputs, then the context, then the alert's own fields.
        let mut vars = input.clone();
        vars.extend(context.clone());
        for (k, v) in [
            ("title", &title),
            ("alert_type", &alert_type),
            ("severity", &severity),
            ("timestamp", &timestamp),
        ] {
            vars.insert(k.into(), Value::String(v.clone()));
        }
        let template = input
            .get("alert_templates")
            .and_then(|t| t.get(&alert_type))
            .and_then(Value::as_str)
            .or_else(|| input.get("message_template").and_then(Value::as_str))
            .or_else(|| input.get("message").and_then(Value::as_str))
            .unwrap_or("{title}");
        let message = fill(template, &vars);
        let skipped = |reason: &str| {
            let mut out = Map::new();
            out.insert("success".into(), Value::Bool(true));
            out.insert("sent".into(), Value::Bool(false));
            out.insert("suppressed".into(), Value::String(reason.into()));
            out.insert("message".into(), Value::String(message.clone()));
            out
        };
        if let Some(Value::Array(levels)) = input.get("alert_levels")
            && !levels
                .iter()
                .filter_map(Value::as_str)
                .any(|l| l.eq_ignore_ascii_case(&alert_type) || l.eq_ignore_ascii_case(&severity))
        {
            return Ok(skipped("alert_levels"));
        }
        if let Some(Value::Object(rl)) = input.get("rate_limit") {
            let max = rl
                .get("max_alerts_per_minute")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            let cooldown = crate::params::seconds_or(node, rl, "cooldown_seconds", 0.0)?;
            let key = format!("{}|{}|{}", node, ctx.node_id, host_of(&url));
            let mut w = self
                .http
                .alerts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let win = w.entry(key).or_default();
            let now = Instant::now();
            if win.quiet_until.is_some_and(|t| now < t) {
                return Ok(skipped("cooldown"));
            }
            win.sent
                .retain(|t| now.duration_since(*t) < Duration::from_secs(60));
            if u64::try_from(win.sent.len()).unwrap_or(u64::MAX) >= max {
                win.quiet_until = now.checked_add(cooldown);
                return Ok(skipped("rate_limit"));
            }
            win.sent.push(now);
        }
        let (color, slack_color) = color_of(&alert_type);
        let fields: Vec<(String, String)> = context
            .iter()
            .map(|(k, v)| (k.clone(), py_str(v)))
            .collect();
        let (url, body) = match self.kind {
            AlertKind::Webhook => (
                url,
                json!({"title": title, "message": message, "alert_type": alert_type, "severity": severity,
                       "context": context, "timestamp": timestamp, "source": "kora", "run_id": ctx.run_id, "node_id": ctx.node_id}),
            ),
            AlertKind::Slack => {
                let mut b = json!({
                    "text": format!("*{title}*\n{message}"),
                    "attachments": [{"color": slack_color, "title": title, "text": message, "ts": now_secs(),
                        "fields": fields.iter().map(|(k, v)| json!({"title": k, "value": v, "short": v.len() < 40})).collect::<Vec<_>>()}],
                });
                for k in ["channel", "username", "icon_emoji"] {
                    if let Some(v) = input.get(k).filter(|v| !v.is_null()) {
                        b[k] = v.clone();
                    }
                }
                (url, b)
            }
            AlertKind::Discord => {
                let mentions: Vec<String> = match input.get("mentions") {
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|m| {
                            let m = py_str(m);
                            if m.starts_with('@') {
                                m
                            } else {
                                format!("<@{m}>")
                            }
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let prefix = if mentions.is_empty() {
                    String::new()
                } else {
                    format!("{} ", mentions.join(" "))
                };
                let embed = input.get("embed").and_then(Value::as_bool).unwrap_or(true);
                let mut b = if embed {
                    let mut f: Vec<Value> = fields
                        .iter()
                        .map(|(k, v)| json!({"name": k, "value": v, "inline": v.len() < 40}))
                        .collect();
                    if let Some(Value::Array(extra)) = input.get("fields") {
                        f.extend(extra.iter().cloned());
                    }
                    let mut e = json!({"title": title, "description": message,
                        "color": input.get("color").and_then(Value::as_u64).unwrap_or(u64::from(color)),
                        "fields": f, "timestamp": timestamp});
                    if let Some(t) = input.get("footer_text").and_then(Value::as_str) {
                        e["footer"] = json!({"text": t});
                    }
                    json!({"content": prefix.trim_end(), "embeds": [e]})
                } else {
                    json!({"content": format!("{prefix}**{title}**\n{message}")})
                };
                if let Some(u) = input.get("username").filter(|v| !v.is_null()) {
                    b["username"] = u.clone();
                }
                let url = match input.get("thread_id").map(py_str).filter(|t| !t.is_empty()) {
                    Some(t) => format!(
                        "{url}{}thread_id={t}",
                        if url.contains('?') { '&' } else { '?' }
                    ),
                    None => url,
                };
                (url, b)
            }
        };
        let mut req_input = Map::new();
        req_input.insert(
            "method".into(),
            input
                .get("method")
                .cloned()
                .unwrap_or(Value::String("POST".into())),
        );
        req_input.insert("json_data".into(), body);
        if let Some(h) = input.get("headers") {
            req_input.insert("headers".into(), h.clone());
        }
        req_input.insert(
            "timeout".into(),
            input.get("timeout").cloned().unwrap_or(Value::from(10)),
        );
        let resp = self
            .http
            .send(node, &request(node, &req_input, url)?)
            .await?;
        match resp.status {
            200..=299 => {}
            429 | 500..=599 => {
                return Err(NodeError::retryable(
                    "AlertDeliveryError",
                    format!(
                        "{node}: the webhook answered {}; the alert was not delivered",
                        resp.status
                    ),
                )
                .retry_after(resp.retry_after()));
            }
            s => {
                return Err(NodeError::permanent(
                    "AlertDeliveryError",
                    format!(
                        "{node}: the webhook refused the alert with {s}: {}",
                        py_str(&resp.content)
                    ),
                ));
            }
        }
        let mut out = Map::new();
        out.insert("success".into(), Value::Bool(true));
        out.insert("sent".into(), Value::Bool(true));
        out.insert("status_code".into(), Value::from(resp.status));
        out.insert("message".into(), Value::String(message));
        out.insert("suppressed".into(), Value::Null);
        Ok(out)
    }
}

pub(super) fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Now as ISO 8601 UTC, e.g. 2026-12-01T03:04:05Z.
pub(super) fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_like_str_format() {
        let vars: Map = json!({"severity": "high", "n": 3})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            fill("{severity}: {n} left {{x}} {missing}", &vars),
            "high: 3 left {x} {missing}"
        );
    }
}
