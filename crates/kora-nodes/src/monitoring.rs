//! Monitoring nodes: HealthCheckNode (http, database, redis, nats and tcp checks; parallel,
//! fail_fast, retries) and MetricsCollectorNode (system and process metrics through `sysinfo`,
//! as JSON or Prometheus text).

use kora_model::error_type;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kora_model::catalog::{NodeTypeInfo, ParamInfo, ParamKind};
use kora_model::value::py_str;
use kora_model::{Map, Value};
use serde_json::json;
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::builtin::{info, input_error};
use crate::http::Http;
use crate::{Node, NodeContext, NodeError};

pub(crate) fn all(http: &Arc<Http>) -> Vec<Arc<dyn Node>> {
    vec![
        Arc::new(HealthCheck::new(Arc::clone(http))),
        Arc::new(MetricsCollector::new()),
    ]
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub(crate) struct HealthCheck {
    info: NodeTypeInfo,
    http: Arc<Http>,
}

impl HealthCheck {
    fn new(http: Arc<Http>) -> Self {
        HealthCheck {
            info: info(
                "HealthCheckNode",
                "Checks services (http, database, redis, nats, tcp) and reports each one's status and latency, and an overall status.",
                vec![
                    ParamInfo::required(
                        "services",
                        "[{name, type: http|database|redis|nats|tcp, url, expected_status?}]",
                    )
                    .kind(ParamKind::List),
                    ParamInfo::optional("timeout", "seconds per check")
                        .kind(ParamKind::Seconds)
                        .default("5"),
                    ParamInfo::optional("parallel", "check all services at once")
                        .kind(ParamKind::Bool)
                        .default("true"),
                    ParamInfo::optional(
                        "fail_fast",
                        "stop at the first unhealthy service (sequential checks)",
                    )
                    .kind(ParamKind::Bool)
                    .default("false"),
                    ParamInfo::optional("retries", "more tries for a failing check")
                        .kind(ParamKind::Integer)
                        .default("0"),
                    ParamInfo::optional("retry_delay", "seconds between tries")
                        .kind(ParamKind::Seconds)
                        .default("0.5"),
                ],
                vec![
                    "overall_status",
                    "services",
                    "healthy_count",
                    "unhealthy_count",
                    "total_latency",
                    "timestamp",
                ],
            ),
            http,
        }
    }

    /// One check of one service: `Ok(detail)` when healthy.
    async fn probe(&self, svc: &Value, timeout: Duration) -> Result<Map, String> {
        let kind = svc
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("http")
            .to_ascii_lowercase();
        let url = svc
            .get("url")
            .or_else(|| svc.get("connection_string"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let work = async {
            match kind.as_str() {
                "http" => {
                    let mut req = Map::new();
                    req.insert("timeout".into(), json!(timeout.as_secs_f64()));
                    let r = crate::http::request("HealthCheckNode", &req, url.to_string())
                        .map_err(|e| e.to_string())?;
                    let resp = self
                        .http
                        .send("HealthCheckNode", &r)
                        .await
                        .map_err(|e| e.to_string())?;
                    let expected = svc.get("expected_status").and_then(Value::as_u64);
                    let ok = match expected {
                        Some(s) => u64::from(resp.status) == s,
                        None => resp.status < 400,
                    };
                    let mut m = Map::new();
                    m.insert("status_code".into(), json!(resp.status));
                    if ok {
                        Ok(m)
                    } else {
                        Err(format!("HTTP {}", resp.status))
                    }
                }
                "database" | "postgresql" | "postgres" | "mysql" | "sqlite" => {
                    if url.starts_with("postgres") {
                        let mut c = sqlx::PgConnection::connect(url)
                            .await
                            .map_err(|e| e.to_string())?;
                        sqlx::query("SELECT 1")
                            .execute(&mut c)
                            .await
                            .map_err(|e| e.to_string())?;
                        let _ = c.close().await;
                    } else if url.starts_with("mysql") || url.starts_with("mariadb") {
                        let mut c = sqlx::MySqlConnection::connect(&url.replacen(
                            "mariadb://",
                            "mysql://",
                            1,
                        ))
                        .await
                        .map_err(|e| e.to_string())?;
                        sqlx::query("SELECT 1")
                            .execute(&mut c)
                            .await
                            .map_err(|e| e.to_string())?;
                        let _ = c.close().await;
                    } else {
                        return Err(format!(
                            "database url must be postgresql:// or mysql://, found {url:?}"
                        ));
                    }
                    Ok(Map::new())
                }
                "redis" => {
                    let client =
                        deadpool_redis::redis::Client::open(url).map_err(|e| e.to_string())?;
                    let mut c = client
                        .get_multiplexed_async_connection()
                        .await
                        .map_err(|e| e.to_string())?;
                    let pong: String = deadpool_redis::redis::cmd("PING")
                        .query_async(&mut c)
                        .await
                        .map_err(|e| e.to_string())?;
                    if pong == "PONG" {
                        Ok(Map::new())
                    } else {
                        Err(format!("PING answered {pong:?}"))
                    }
                }
                "nats" => {
                    let addr = url.trim_start_matches("nats://");
                    let sock = tokio::net::TcpStream::connect(addr)
                        .await
                        .map_err(|e| e.to_string())?;
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let first = lines
                        .next_line()
                        .await
                        .map_err(|e| e.to_string())?
                        .unwrap_or_default();
                    if !first.starts_with("INFO") {
                        return Err(format!("not a NATS server: {first:?}"));
                    }
                    let info: Value = serde_json::from_str(first.trim_start_matches("INFO").trim())
                        .unwrap_or(Value::Null);
                    w.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
                        .await
                        .map_err(|e| e.to_string())?;
                    loop {
                        let l = lines
                            .next_line()
                            .await
                            .map_err(|e| e.to_string())?
                            .unwrap_or_default();
                        if l.starts_with("PONG") {
                            break;
                        }
                        if l.starts_with("-ERR") || l.is_empty() {
                            return Err(l);
                        }
                    }
                    let mut m = Map::new();
                    m.insert(
                        "version".into(),
                        info.get("version").cloned().unwrap_or(Value::Null),
                    );
                    m.insert(
                        "jetstream".into(),
                        info.get("jetstream").cloned().unwrap_or(Value::Bool(false)),
                    );
                    Ok(m)
                }
                "tcp" => {
                    tokio::net::TcpStream::connect(url.trim_start_matches("tcp://"))
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(Map::new())
                }
                other => Err(format!(
                    "unknown check type {other:?}: use http, database, redis, nats or tcp"
                )),
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:.1}s", timeout.as_secs_f64())),
        }
    }

    async fn check(
        &self,
        svc: &Value,
        timeout: Duration,
        retries: u64,
        delay: Duration,
    ) -> (String, Value) {
        let name = svc
            .get("name")
            .map(py_str)
            .unwrap_or_else(|| svc.get("url").map(py_str).unwrap_or_default());
        let started = Instant::now();
        let mut tries = 0;
        let result = loop {
            tries += 1;
            match self.probe(svc, timeout).await {
                Ok(m) => break Ok(m),
                Err(e) if tries > retries => break Err(e),
                Err(_) => tokio::time::sleep(delay).await,
            }
        };
        let latency = (started.elapsed().as_secs_f64() * 1e5).round() / 100.0;
        let v = match result {
            Ok(mut m) => {
                m.insert("status".into(), json!("healthy"));
                m.insert("latency_ms".into(), json!(latency));
                m.insert("attempts".into(), json!(tries));
                Value::Object(m)
            }
            Err(e) => {
                json!({"status": "unhealthy", "latency_ms": latency, "attempts": tries, "error": e})
            }
        };
        (name, v)
    }
}

#[async_trait]
impl Node for HealthCheck {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "HealthCheckNode";
        let Some(Value::Array(services)) = input.get("services") else {
            return Err(input_error(
                NODE,
                "required parameter 'services' must be a list of {name, type, url}",
            ));
        };
        for (i, s) in services.iter().enumerate() {
            if s.get("url")
                .or_else(|| s.get("connection_string"))
                .and_then(Value::as_str)
                .is_none()
            {
                return Err(input_error(NODE, format!("services[{i}] needs a url")));
            }
        }
        // Checked (a negative, non-finite or non-numeric value is refused, naming the field),
        // then held to what a health check sensibly waits.
        let timeout = crate::params::seconds_or(NODE, &input, "timeout", 5.0)?
            .clamp(Duration::from_millis(10), Duration::from_secs(600));
        let retries = input
            .get("retries")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(10);
        let delay = crate::params::seconds_or(NODE, &input, "retry_delay", 0.5)?
            .min(Duration::from_secs(60));
        let parallel = input
            .get("parallel")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let fail_fast = input
            .get("fail_fast")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let started = Instant::now();
        let results: Vec<(String, Value)> = if parallel && !fail_fast {
            futures::future::join_all(
                services
                    .iter()
                    .map(|s| self.check(s, timeout, retries, delay)),
            )
            .await
        } else {
            let mut out = Vec::new();
            for s in services {
                let r = self.check(s, timeout, retries, delay).await;
                let bad = r.1["status"] != "healthy";
                out.push(r);
                if bad && fail_fast {
                    break;
                }
            }
            out
        };
        let healthy = results
            .iter()
            .filter(|(_, v)| v["status"] == "healthy")
            .count();
        let unhealthy = results.len() - healthy;
        let overall = if unhealthy == 0 && results.len() == services.len() {
            "healthy"
        } else if healthy == 0 {
            "unhealthy"
        } else {
            "degraded"
        };
        let mut out = Map::new();
        out.insert("overall_status".into(), json!(overall));
        out.insert(
            "services".into(),
            Value::Object(results.into_iter().collect()),
        );
        out.insert("healthy_count".into(), json!(healthy));
        out.insert("unhealthy_count".into(), json!(unhealthy));
        out.insert(
            "total_latency".into(),
            json!((started.elapsed().as_secs_f64() * 1e5).round() / 100.0),
        );
        out.insert("timestamp".into(), json!(now_secs()));
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------

pub(crate) struct MetricsCollector {
    info: NodeTypeInfo,
}

impl MetricsCollector {
    fn new() -> Self {
        MetricsCollector {
            info: info(
                "MetricsCollectorNode",
                "Collects system (cpu, memory, disk, network) and process metrics, plus custom ones, as JSON or Prometheus text.",
                vec![
                    ParamInfo::optional(
                        "metric_types",
                        "system.cpu, system.memory, system.disk, system.network",
                    )
                    .kind(ParamKind::List)
                    .default("all four"),
                    ParamInfo::optional("include_process", "metrics of the worker process")
                        .kind(ParamKind::Bool)
                        .default("true"),
                    ParamInfo::optional(
                        "custom_metrics",
                        "[{name, value, type: gauge|counter, labels?, help?}]",
                    )
                    .kind(ParamKind::List),
                    ParamInfo::optional("labels", "labels added to every metric")
                        .kind(ParamKind::Map),
                    ParamInfo::optional("format", "json or prometheus")
                        .kind(ParamKind::OneOf(&["json", "prometheus"]))
                        .default("json"),
                ],
                vec![
                    "metrics",
                    "metric_count",
                    "collection_time",
                    "timestamp",
                    "format",
                ],
            ),
        }
    }
}

struct Metric {
    name: String,
    value: f64,
    kind: &'static str,
    help: String,
    labels: Vec<(String, String)>,
}

fn gauge(name: &str, value: f64, help: &str) -> Metric {
    Metric {
        name: name.into(),
        value,
        kind: "gauge",
        help: help.into(),
        labels: Vec::new(),
    }
}

fn prom_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn prom_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[async_trait]
impl Node for MetricsCollector {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "MetricsCollectorNode";
        const KINDS: &[&str] = &[
            "system.cpu",
            "system.memory",
            "system.disk",
            "system.network",
        ];
        let kinds: Vec<String> = match input.get("metric_types") {
            Some(Value::Array(a)) => a.iter().map(py_str).collect(),
            _ => KINDS.iter().map(|k| (*k).to_string()).collect(),
        };
        if let Some(bad) = kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
            return Err(input_error(
                NODE,
                format!(
                    "metric_types: unknown type {bad:?}; use {}",
                    KINDS.join(", ")
                ),
            ));
        }
        let format = input
            .get("format")
            .and_then(Value::as_str)
            .unwrap_or("json")
            .to_ascii_lowercase();
        if format != "json" && format != "prometheus" {
            return Err(input_error(
                NODE,
                format!("format must be json or prometheus, found {format:?}"),
            ));
        }
        let process = input
            .get("include_process")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let started = Instant::now();
        let want = |k: &str| kinds.iter().any(|x| x == k);
        let (cpu, mem, disk, net) = (
            want("system.cpu"),
            want("system.memory"),
            want("system.disk"),
            want("system.network"),
        );
        // sysinfo reads /proc and sleeps for a CPU sample: off the async threads.
        let mut metrics = tokio::task::spawn_blocking(move || {
            use sysinfo::{Disks, Networks, ProcessesToUpdate, System};
            let mut out = Vec::new();
            let mut sys = System::new();
            if cpu || process {
                sys.refresh_cpu_usage();
                // A blocking-pool thread (spawn_blocking), not an async worker.
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
                sys.refresh_cpu_usage();
            }
            if cpu {
                out.push(gauge(
                    "system_cpu_usage_percent",
                    f64::from(sys.global_cpu_usage()),
                    "CPU use over a short sample, all cores.",
                ));
                out.push(gauge(
                    "system_cpu_count",
                    sys.cpus().len() as f64,
                    "Logical CPUs.",
                ));
                let l = System::load_average();
                out.push(gauge(
                    "system_load_average_1m",
                    l.one,
                    "Load average over one minute.",
                ));
            }
            if mem {
                sys.refresh_memory();
                let (total, used) = (sys.total_memory() as f64, sys.used_memory() as f64);
                out.push(gauge(
                    "system_memory_total_bytes",
                    total,
                    "Physical memory.",
                ));
                out.push(gauge(
                    "system_memory_used_bytes",
                    used,
                    "Physical memory in use.",
                ));
                out.push(gauge(
                    "system_memory_usage_percent",
                    if total > 0.0 {
                        used / total * 100.0
                    } else {
                        0.0
                    },
                    "Physical memory in use, percent.",
                ));
            }
            if disk {
                for d in Disks::new_with_refreshed_list().list() {
                    let mount = d.mount_point().display().to_string();
                    let (total, free) = (d.total_space() as f64, d.available_space() as f64);
                    let mut m = gauge(
                        "system_disk_usage_percent",
                        if total > 0.0 {
                            (total - free) / total * 100.0
                        } else {
                            0.0
                        },
                        "Disk space in use, percent.",
                    );
                    m.labels.push(("mount".into(), mount.clone()));
                    out.push(m);
                    let mut m = gauge("system_disk_free_bytes", free, "Disk space available.");
                    m.labels.push(("mount".into(), mount));
                    out.push(m);
                }
            }
            if net {
                for (iface, data) in Networks::new_with_refreshed_list().list() {
                    for (name, v, help) in [
                        (
                            "system_network_received_bytes_total",
                            data.total_received() as f64,
                            "Bytes received since boot.",
                        ),
                        (
                            "system_network_transmitted_bytes_total",
                            data.total_transmitted() as f64,
                            "Bytes sent since boot.",
                        ),
                    ] {
                        out.push(Metric {
                            name: name.into(),
                            value: v,
                            kind: "counter",
                            help: help.into(),
                            labels: vec![("interface".into(), iface.clone())],
                        });
                    }
                }
            }
            if process && let Ok(pid) = sysinfo::get_current_pid() {
                sys.refresh_processes(ProcessesToUpdate::Some(&[pid]), true);
                if let Some(p) = sys.process(pid) {
                    out.push(gauge(
                        "process_resident_memory_bytes",
                        p.memory() as f64,
                        "Resident memory of the worker process.",
                    ));
                    out.push(gauge(
                        "process_cpu_usage_percent",
                        f64::from(p.cpu_usage()),
                        "CPU use of the worker process.",
                    ));
                }
            }
            out.push(gauge(
                "system_uptime_seconds",
                System::uptime() as f64,
                "Seconds since boot.",
            ));
            out
        })
        .await
        .map_err(|e| NodeError::retryable(error_type::RUNTIME, format!("{NODE}: {e}")))?;
        if let Some(Value::Array(custom)) = input.get("custom_metrics") {
            for (i, c) in custom.iter().enumerate() {
                let (Some(name), Some(value)) = (
                    c.get("name").and_then(Value::as_str),
                    c.get("value").and_then(Value::as_f64),
                ) else {
                    return Err(input_error(
                        NODE,
                        format!("custom_metrics[{i}] needs a name and a numeric value, found {c}"),
                    ));
                };
                let kind = if c.get("type").and_then(Value::as_str) == Some("counter") {
                    "counter"
                } else {
                    "gauge"
                };
                let labels = match c.get("labels") {
                    Some(Value::Object(l)) => {
                        l.iter().map(|(k, v)| (k.clone(), py_str(v))).collect()
                    }
                    _ => Vec::new(),
                };
                metrics.push(Metric {
                    name: name.into(),
                    value,
                    kind,
                    help: c
                        .get("help")
                        .and_then(Value::as_str)
                        .unwrap_or("A custom metric.")
                        .into(),
                    labels,
                });
            }
        }
        if let Some(Value::Object(common)) = input.get("labels") {
            for m in &mut metrics {
                for (k, v) in common {
                    m.labels.push((k.clone(), py_str(v)));
                }
            }
        }
        let count = metrics.len();
        let rendered = if format == "prometheus" {
            let mut text = String::new();
            let mut described = std::collections::HashSet::new();
            for m in &metrics {
                let name = prom_name(&m.name);
                if described.insert(name.clone()) {
                    text.push_str(&format!(
                        "# HELP {name} {}\n# TYPE {name} {}\n",
                        m.help, m.kind
                    ));
                }
                let labels = if m.labels.is_empty() {
                    String::new()
                } else {
                    format!(
                        "{{{}}}",
                        m.labels
                            .iter()
                            .map(|(k, v)| format!("{}=\"{}\"", prom_name(k), prom_label(v)))
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                };
                text.push_str(&format!("{name}{labels} {}\n", m.value));
            }
            Value::String(text)
        } else {
            Value::Array(
                metrics
                    .iter()
                    .map(|m| json!({"name": m.name, "value": m.value, "type": m.kind, "labels": m.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()}))
                    .collect(),
            )
        };
        let mut out = Map::new();
        out.insert("metrics".into(), rendered);
        out.insert("metric_count".into(), json!(count));
        out.insert(
            "collection_time".into(),
            json!(started.elapsed().as_secs_f64()),
        );
        out.insert("timestamp".into(), json!(now_secs()));
        out.insert("format".into(), json!(format));
        Ok(out)
    }
}
