//! Security nodes: ThreatDetectionNode (rules over events given as input) and AuditLogNode
//! (an entry in the ledger's audit log, written with the node's outcome, and in the log).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use kora_model::catalog::{NodeTypeInfo, ParamInfo, ParamKind};
use kora_model::value::py_str;
use kora_model::{Map, Value};
use serde_json::json;

use crate::builtin::{info, input_error};
use crate::{Node, NodeContext, NodeError};

pub(crate) fn all() -> Vec<Arc<dyn Node>> {
    vec![Arc::new(ThreatDetection::new()), Arc::new(AuditLog::new())]
}

const RULES: &[&str] = &[
    "brute_force",
    "rate_spike",
    "sql_injection",
    "path_traversal",
];

pub(crate) struct ThreatDetection {
    info: NodeTypeInfo,
}

impl ThreatDetection {
    fn new() -> Self {
        ThreatDetection {
            info: info(
                "ThreatDetectionNode",
                "Finds brute-force logins, request-rate spikes, SQL-injection and path-traversal attempts in a list of events.",
                vec![
                    ParamInfo::required("events", "events: {timestamp, source_ip or ip, user_id or user, event_type or type (login_failed, request, ...), path, query, payload}")
                        .kind(ParamKind::List),
                    ParamInfo::optional("time_window", "seconds over which failures and requests are counted").kind(ParamKind::Seconds).default("300"),
                    ParamInfo::optional("brute_force_threshold", "failed logins from one source within the window").kind(ParamKind::Integer).default("5"),
                    ParamInfo::optional("rate_threshold", "requests from one source within the window").kind(ParamKind::Integer).default("100"),
                    ParamInfo::optional("detection_rules", "which rules run").kind(ParamKind::List).default("all four"),
                    ParamInfo::optional("context", "echoed in the analysis").kind(ParamKind::Map),
                ],
                vec!["success", "threats", "analysis", "stats", "timestamp"],
            ),
        }
    }
}

fn field<'a>(e: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .find_map(|n| e.get(*n).filter(|v| !v.is_null()))
}

fn text(e: &Value, names: &[&str]) -> String {
    field(e, names).map(py_str).unwrap_or_default()
}

/// Seconds since the epoch of an event's time (a number, or ISO 8601), if it has one.
fn seconds(e: &Value) -> Option<f64> {
    match field(e, &["timestamp", "time", "ts"])? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_millis() as f64 / 1000.0)
            .or_else(|_| {
                chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                    .map(|d| d.and_utc().timestamp_millis() as f64 / 1000.0)
            })
            .ok(),
        _ => None,
    }
}

/// `%xx` decoded, lower-cased, `+` as space: how an attack string is compared.
fn normalise(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(
                std::str::from_utf8(&b[i + 1..(i + 3).min(b.len())]).unwrap_or("zz"),
                16,
            )
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    let once = String::from_utf8_lossy(&out).to_ascii_lowercase();
    // Double encoding (%252e) is decoded once more.
    if once.contains('%') && once != s.to_ascii_lowercase() {
        normalise(&once)
    } else {
        once
    }
}

const SQLI: &[&str] = &[
    "' or '1'='1",
    "' or 1=1",
    "\" or 1=1",
    " or 1=1--",
    "union select",
    "union all select",
    "; drop table",
    ";drop table",
    "'; --",
    "' --",
    "sleep(",
    "benchmark(",
    "pg_sleep(",
    "waitfor delay",
    "xp_cmdshell",
    "information_schema",
    "load_file(",
    "into outfile",
    "' and '1'='1",
    "/**/",
];
const TRAVERSAL: &[&str] = &[
    "../",
    "..\\",
    "/etc/passwd",
    "/etc/shadow",
    "boot.ini",
    "win.ini",
    "/proc/self/",
];

fn matches(hay: &str, patterns: &[&str]) -> Option<String> {
    patterns
        .iter()
        .find(|p| hay.contains(*p))
        .map(|p| (*p).to_string())
}

#[async_trait]
impl Node for ThreatDetection {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "ThreatDetectionNode";
        let Some(Value::Array(events)) = input.get("events") else {
            return Err(input_error(
                NODE,
                "required parameter 'events' must be a list of event maps",
            ));
        };
        let window = input
            .get("time_window")
            .and_then(Value::as_f64)
            .unwrap_or(300.0)
            .max(1.0);
        let brute = input
            .get("brute_force_threshold")
            .and_then(Value::as_u64)
            .unwrap_or(5)
            .max(1);
        let rate = input
            .get("rate_threshold")
            .and_then(Value::as_u64)
            .unwrap_or(100)
            .max(1);
        let rules: Vec<String> = match input.get("detection_rules") {
            Some(Value::Array(a)) => a.iter().map(py_str).collect(),
            _ => RULES.iter().map(|r| (*r).to_string()).collect(),
        };
        if let Some(bad) = rules.iter().find(|r| !RULES.contains(&r.as_str())) {
            return Err(input_error(
                NODE,
                format!(
                    "detection_rules: unknown rule {bad:?}; the rules are {}",
                    RULES.join(", ")
                ),
            ));
        }
        let on = |r: &str| rules.iter().any(|x| x == r);
        let mut threats = Vec::new();
        // Failed logins and requests per source, with their times.
        let mut failures: HashMap<String, Vec<f64>> = HashMap::new();
        let mut requests: HashMap<String, Vec<f64>> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            if !e.is_object() {
                return Err(input_error(
                    NODE,
                    format!("events[{i}] must be a map, found {e}"),
                ));
            }
            let source = {
                let ip = text(e, &["source_ip", "ip", "client_ip", "remote_addr"]);
                if ip.is_empty() {
                    text(e, &["user_id", "user", "username"])
                } else {
                    ip
                }
            };
            let kind = text(e, &["event_type", "type", "action"]).to_ascii_lowercase();
            let t = seconds(e).unwrap_or(i as f64);
            let failed_login = kind.contains("login")
                && (kind.contains("fail")
                    || text(e, &["status", "outcome", "result"])
                        .to_ascii_lowercase()
                        .contains("fail"));
            if failed_login {
                failures.entry(source.clone()).or_default().push(t);
            }
            requests.entry(source.clone()).or_default().push(t);
            let hay = normalise(
                &[
                    text(e, &["path", "url", "uri"]),
                    text(e, &["query", "query_string", "params"]),
                    text(e, &["payload", "body", "data", "input"]),
                ]
                .join(" "),
            );
            if on("sql_injection")
                && let Some(p) = matches(&hay, SQLI)
            {
                threats.push(json!({"type": "sql_injection", "severity": "high", "source": source, "event_index": i, "indicator": p,
                    "description": format!("SQL-injection pattern {p:?} in the request")}));
            }
            if on("path_traversal")
                && let Some(p) = matches(&hay, TRAVERSAL)
            {
                threats.push(json!({"type": "path_traversal", "severity": "high", "source": source, "event_index": i, "indicator": p,
                    "description": format!("path-traversal pattern {p:?} in the request")}));
            }
        }
        // Most events from one source inside any window of `window` seconds.
        let peak = |times: &mut Vec<f64>| -> (usize, f64) {
            times.sort_by(f64::total_cmp);
            let (mut best, mut at, mut lo) = (0, 0.0, 0);
            for hi in 0..times.len() {
                while times[hi] - times[lo] > window {
                    lo += 1;
                }
                if hi - lo + 1 > best {
                    best = hi - lo + 1;
                    at = times[lo];
                }
            }
            (best, at)
        };
        let mut sorted: BTreeMap<String, Vec<f64>> = failures.into_iter().collect();
        if on("brute_force") {
            for (source, times) in &mut sorted {
                let (n, at) = peak(times);
                if n as u64 >= brute {
                    threats.push(json!({"type": "brute_force", "severity": if n as u64 >= brute * 2 { "critical" } else { "high" },
                        "source": source, "count": n, "window_start": at,
                        "description": format!("{n} failed logins from {source} within {window}s (threshold {brute})")}));
                }
            }
        }
        let mut per_source: BTreeMap<String, Vec<f64>> = requests.into_iter().collect();
        let mut busiest = 0;
        if on("rate_spike") {
            for (source, times) in &mut per_source {
                let (n, at) = peak(times);
                busiest = busiest.max(n);
                if n as u64 > rate {
                    threats.push(json!({"type": "rate_spike", "severity": "medium", "source": source, "count": n, "window_start": at,
                        "description": format!("{n} requests from {source} within {window}s (threshold {rate})")}));
                }
            }
        }
        let mut by_type = Map::new();
        for t in &threats {
            let k = t["type"].as_str().unwrap_or_default().to_string();
            let c = by_type.entry(k).or_insert(Value::from(0));
            *c = Value::from(c.as_u64().unwrap_or(0) + 1);
        }
        let order = ["low", "medium", "high", "critical"];
        let highest = threats
            .iter()
            .filter_map(|t| t["severity"].as_str())
            .max_by_key(|s| order.iter().position(|o| o == s))
            .unwrap_or("none")
            .to_string();
        let mut out = Map::new();
        out.insert("success".into(), Value::Bool(true));
        out.insert(
            "analysis".into(),
            json!({"total_events": events.len(), "threats_found": threats.len(), "threats_by_type": by_type,
                   "highest_severity": highest, "sources": per_source.len(), "context": input.get("context")}),
        );
        out.insert(
            "stats".into(),
            json!({"rules": rules, "time_window": window, "busiest_source_requests": busiest}),
        );
        out.insert("threats".into(), Value::Array(threats));
        out.insert(
            "timestamp".into(),
            json!(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64())
            ),
        );
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------

pub(crate) struct AuditLog {
    info: NodeTypeInfo,
}

impl AuditLog {
    fn new() -> Self {
        AuditLog {
            info: info(
                "AuditLogNode",
                "Records an audit entry: in the ledger's audit log (written with the node's outcome, once) and in the worker's log. Config and inputs both count (inputs win).",
                vec![
                    ParamInfo::required(
                        "event_type",
                        "what happened, e.g. user_login, data_export",
                    )
                    .kind(ParamKind::String),
                    ParamInfo::required("message", "the entry's text").kind(ParamKind::String),
                    ParamInfo::optional("user_id", "who did it").kind(ParamKind::String),
                    ParamInfo::optional("event_data", "details").with_aliases(&["data"]),
                    ParamInfo::optional("log_level", "level of the log line")
                        .kind(ParamKind::OneOf(&[
                            "debug", "info", "warning", "error", "critical",
                        ]))
                        .default("info"),
                ],
                vec!["audit_entry", "logged", "log_level", "timestamp"],
            ),
        }
    }
}

#[async_trait]
impl Node for AuditLog {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "AuditLogNode";
        let req = |k: &str| match input.get(k) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(v) if !v.is_null() => Ok(py_str(v)),
            _ => Err(input_error(
                NODE,
                format!("required parameter '{k}' is missing"),
            )),
        };
        let event_type = req("event_type")?;
        let message = req("message")?;
        let level = input
            .get("log_level")
            .and_then(Value::as_str)
            .unwrap_or("info")
            .to_ascii_lowercase();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let entry = json!({
            "event_type": event_type,
            "message": message,
            "user_id": input.get("user_id").cloned().unwrap_or(Value::Null),
            "data": input.get("event_data").or_else(|| input.get("data")).cloned().unwrap_or(Value::Null),
            "log_level": level,
            "timestamp": now,
            "run_id": ctx.run_id,
            "node_id": ctx.node_id,
        });
        match level.as_str() {
            "error" | "critical" => {
                tracing::error!(target: "kora::audit", run_id = %ctx.run_id, node_id = %ctx.node_id, %event_type, %message, "audit")
            }
            "warning" => {
                tracing::warn!(target: "kora::audit", run_id = %ctx.run_id, node_id = %ctx.node_id, %event_type, %message, "audit")
            }
            _ => {
                tracing::info!(target: "kora::audit", run_id = %ctx.run_id, node_id = %ctx.node_id, %event_type, %message, "audit")
            }
        }
        ctx.audit(entry.clone());
        let mut out = Map::new();
        out.insert("audit_entry".into(), entry);
        out.insert("logged".into(), Value::Bool(true));
        out.insert("log_level".into(), Value::String(level));
        out.insert("timestamp".into(), json!(now));
        Ok(out)
    }
}
