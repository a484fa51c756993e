//! Observability of a running installation: every role's `/metrics` holds its families after
//! real runs, a real Prometheus scrapes them and answers PromQL over them (schedule-to-start
//! p99, a queue's backlog), the shipped alert rules load and evaluate on that data, and
//! `/readyz` reports the roles ready.

#![allow(clippy::unwrap_used)]

use super::support::*;

/// A real Prometheus server the test owns: its own port and data directory, killed when
/// dropped.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl Prometheus {
    /// `None` outside CI when Prometheus is not installed.
    fn start(targets: &[&str]) -> Option<Prometheus> {
        if Command::new("prometheus")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var("CI").is_err(),
                "prometheus is not installed; CI must not skip (apt-get install -y prometheus)"
            );
            eprintln!("skipping: prometheus is not installed");
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "kora-prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            root().join("deploy/prometheus/kora-alerts.yml"),
            dir.join("kora-alerts.yml"),
        )
        .unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - kora-alerts.yml\nscrape_configs:\n  - job_name: kora\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap();
        Some(Prometheus { child, dir, addr })
    }

    /// An instant PromQL query's result vector.
    fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        self.answer(promql)["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// An instant PromQL query's whole answer (`status`, `data`, `error`).
    fn answer(&self, promql: &str) -> serde_json::Value {
        let (_, body) = get10(
            &self.addr,
            &format!("/api/v1/query?query={}", percent_encode(promql)),
        );
        serde_json::from_str(&body).unwrap_or_default()
    }

    /// Polls `promql` until `ok` accepts its result or `limit` passes.
    async fn wait_for(
        &self,
        promql: &str,
        limit: Duration,
        ok: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let started = Instant::now();
        loop {
            let r = if std::net::TcpStream::connect(&self.addr).is_ok() {
                self.query(promql)
            } else {
                Vec::new()
            };
            if ok(&r) || started.elapsed() > limit {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A GET in HTTP/1.0, so the answer is never chunked (Prometheus chunks large ones).
fn get10(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A line of `/metrics` text starting with `prefix` (a name and its labels), as a number.
fn sample(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The families each role must export after a run.
const COORDINATOR_FAMILIES: &[&str] = &[
    "kora_runs_started_total",
    "kora_runs_finished_total{",
    "kora_run_duration_seconds_bucket{",
    "kora_tasks_dispatched_total",
    "kora_results_recorded_total",
    "kora_ledger_commit_seconds_bucket{",
    "kora_ledger_batch_messages_bucket{",
    "kora_queue_tasks{",
    "kora_queue_oldest_waiting_seconds{",
    "kora_runs_live{",
    "kora_ledger_connections{",
    "kora_monitor_sampled_at_seconds",
    "kora_scheduler_requests_total{",
    "kora_scheduler_admission_delay_seconds_bucket{",
    "kora_publish_seconds_bucket{",
    "kora_gateway_requests_total{",
    "kora_gateway_auth_failures_total{",
];
const WORKER_FAMILIES: &[&str] = &[
    "kora_node_execution_seconds_bucket{",
    "kora_schedule_to_start_seconds_bucket{",
    "kora_node_attempts_total{",
    "kora_worker_slots{",
    "kora_python_interpreters{",
    "kora_worker_result_publish_seconds_bucket{",
    "kora_publish_seconds_bucket{",
];

#[tokio::test]
async fn every_role_exports_metrics_that_prometheus_scrapes() {
    let Some(mut d) = Deployment::new(&[("KORA_COORDINATOR__SAMPLE_INTERVAL", "500ms")]).await
    else {
        return;
    };
    let control = format!("127.0.0.1:{}", free_port());
    let worker = format!("127.0.0.1:{}", free_port());
    let Some(prom) = Prometheus::start(&[&control, &worker]) else {
        return;
    };
    d.serve(
        "scheduler,coordinator,gateway",
        &["--metrics-addr", &control],
    );
    d.serve("worker", &["--metrics-addr", &worker]);
    // Prometheus is up and scraping both processes before anything runs, so rates see the
    // runs happen.
    let up = prom
        .wait_for("sum(up{job=\"kora\"})", Duration::from_secs(60), |r| {
            r.first().is_some_and(|s| value(s) == 2.0)
        })
        .await;
    assert!(
        up.first().is_some_and(|s| value(s) == 2.0),
        "Prometheus does not scrape both processes: {up:?}\n{}",
        prom.log()
    );
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("workflow.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "id": "observed", "name": "observed", "nodes": [
            {"id": "p", "type": "PythonCodeNode", "config": {"code": "result = 41 + 1"}},
            {"id": "n", "type": "NoOpNode"}
        ], "connections": [{"source": "p", "output": "result", "target": "n", "input": "data"}]})
        .to_string(),
    )
    .unwrap();
    // A node on a queue no worker serves: its task waits there.
    let stranded = dir.path().join("stranded.json");
    std::fs::write(
        &stranded,
        serde_json::json!({"kora": 1, "id": "stranded", "name": "stranded", "nodes": [
            {"id": "s", "type": "NoOpNode", "config": {"queue": "nobody"}}
        ]})
        .to_string(),
    )
    .unwrap();
    // A request without a credential: the gateway counts it in the same process's metrics.
    let gateway = d.gateway.trim_start_matches("http://").to_string();
    assert_eq!(http_get(&gateway, "/v1/runs").0, 401);
    for _ in 0..3 {
        let out = d.submit_wait(&wf, None);
        assert_eq!(out["status"], "succeeded", "{out}");
    }
    let stuck_run = d.submit(&stranded);

    // The coordinator's sampler sees the stranded task (and the live run) within a second.
    let started = Instant::now();
    let control_text = loop {
        let (status, body) = http_get(&control, "/metrics");
        assert_eq!(status, 200, "{body}");
        let waiting = sample(
            &body,
            "kora_queue_tasks{queue=\"nobody\",state=\"waiting\"}",
        );
        if waiting == Some(1.0) || started.elapsed() > Duration::from_secs(30) {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for f in COORDINATOR_FAMILIES {
        assert!(control_text.contains(f), "no {f} in:\n{control_text}");
    }
    assert_eq!(
        sample(
            &control_text,
            "kora_queue_tasks{queue=\"nobody\",state=\"waiting\"}"
        ),
        Some(1.0),
        "{control_text}"
    );
    assert_eq!(
        sample(
            &control_text,
            "kora_runs_finished_total{tenant=\"default\",workflow=\"observed\",status=\"succeeded\"}"
        ),
        Some(3.0),
        "{control_text}"
    );
    assert_eq!(
        sample(
            &control_text,
            "kora_run_duration_seconds_count{tenant=\"default\",workflow=\"observed\"}"
        ),
        Some(3.0),
        "{control_text}"
    );
    assert_eq!(
        sample(
            &control_text,
            "kora_runs_live{tenant=\"default\",workflow=\"stranded\",status=\"running\"}"
        ),
        Some(1.0),
        "{control_text}"
    );
    assert_eq!(
        sample(
            &control_text,
            "kora_scheduler_requests_total{outcome=\"admitted\"}"
        ),
        Some(4.0),
        "{control_text}"
    );
    // The stranded task has waited (the gauge counts from its publish).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, later) = http_get(&control, "/metrics");
    let age = sample(
        &later,
        "kora_queue_oldest_waiting_seconds{queue=\"nobody\"}",
    )
    .unwrap();
    assert!(age >= 1.0, "oldest waiting task is {age}s old:\n{later}");

    let (status, worker_text) = http_get(&worker, "/metrics");
    assert_eq!(status, 200);
    for f in WORKER_FAMILIES {
        assert!(worker_text.contains(f), "no {f} in:\n{worker_text}");
    }
    assert_eq!(
        sample(
            &worker_text,
            "kora_node_attempts_total{node_type=\"PythonCodeNode\",queue=\"default\",outcome=\"succeeded\"}"
        ),
        Some(3.0),
        "{worker_text}"
    );
    assert_eq!(
        sample(
            &worker_text,
            "kora_schedule_to_start_seconds_count{queue=\"default\"}"
        ),
        Some(6.0),
        "{worker_text}"
    );
    assert_eq!(
        sample(
            &worker_text,
            "kora_worker_slots{queue=\"default\",state=\"busy\"}"
        ),
        Some(0.0),
        "{worker_text}"
    );
    assert_eq!(
        sample(&worker_text, "kora_python_interpreters{state=\"idle\"}"),
        Some(1.0),
        "one interpreter started and waits: {worker_text}"
    );

    // Both endpoints parse with Prometheus's own parser (promtool reads the text format).
    for (name, body) in [("coordinator", &control_text), ("worker", &worker_text)] {
        let mut lint = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        lint.stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = lint.wait_with_output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !said.contains("error while linting") && !said.contains("parse"),
            "promtool cannot parse the {name}'s metrics: {said}"
        );
    }

    // PromQL over what Prometheus scraped: the schedule-to-start p99 per queue, and the
    // backlog of the queue nobody serves.
    let p99 = prom
        .wait_for(
            "histogram_quantile(0.99, sum by (queue, le) (rate(kora_schedule_to_start_seconds_bucket[1m])))",
            Duration::from_secs(30),
            |r| r.iter().any(|s| s["metric"]["queue"] == "default" && value(s).is_finite()),
        )
        .await;
    let default_p99 = p99
        .iter()
        .find(|s| s["metric"]["queue"] == "default")
        .map(value);
    assert!(
        default_p99.is_some_and(|v| v.is_finite() && v > 0.0 && v < 5.0),
        "schedule-to-start p99 by queue: {p99:?}"
    );
    let backlog = prom
        .wait_for(
            "max by (queue) (kora_queue_tasks{state=\"waiting\"})",
            Duration::from_secs(30),
            |r| {
                r.iter()
                    .any(|s| s["metric"]["queue"] == "nobody" && value(s) == 1.0)
            },
        )
        .await;
    assert!(
        backlog
            .iter()
            .any(|s| s["metric"]["queue"] == "nobody" && value(s) == 1.0),
        "backlog by queue: {backlog:?}"
    );
    // The shipped rules load and evaluate on this data without error; the queue with no
    // worker is already pending as KoraQueueNoWorkers (it fires after 5 minutes).
    let (status, rules) = get10(&prom.addr, "/api/v1/rules");
    assert_eq!(status, 200, "{rules}");
    let rules: serde_json::Value = serde_json::from_str(&rules).unwrap();
    let mut loaded = 0;
    for g in rules["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            loaded += 1;
            assert_eq!(r["health"], "ok", "rule {} failed: {r}", r["name"]);
        }
    }
    assert!(loaded >= 10, "{loaded} rules loaded");
    let pending = prom
        .wait_for(
            "ALERTS{alertname=\"KoraQueueNoWorkers\"}",
            Duration::from_secs(20),
            |r| !r.is_empty(),
        )
        .await;
    assert!(
        pending
            .iter()
            .any(|s| s["metric"]["queue"] == "nobody" && s["metric"]["alertstate"] == "pending"),
        "KoraQueueNoWorkers is not pending for queue nobody: {pending:?}"
    );

    // Every panel of the shipped Grafana dashboards: its PromQL (with the dashboard's variables
    // at "All" and Grafana's rate interval at 1m) runs on this Prometheus. What each shows is
    // printed (the dashboards' picture when Grafana itself is not at hand).
    let mut with_data = Vec::new();
    for file in ["kora-fleet.json", "kora-runs.json", "kora-queues.json"] {
        let dash: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root().join("deploy/grafana").join(file)).unwrap(),
        )
        .unwrap();
        for panel in dash["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$__rate_interval", "1m")
                    .replace("$workflow", ".*")
                    .replace("$queue", ".*");
                let a = prom.answer(&expr);
                assert_eq!(
                    a["status"], "success",
                    "{file} / {}: {expr}: {a}",
                    panel["title"]
                );
                let shown: Vec<String> = a["data"]["result"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| format!("{} = {}", s["metric"], s["value"][1]))
                    .collect();
                eprintln!(
                    "panel {file} / {} [{}]: {}",
                    panel["title"],
                    target["legendFormat"],
                    shown.join("; ")
                );
                if !shown.is_empty() {
                    with_data.push(format!("{file}/{}", panel["title"]));
                }
            }
        }
    }
    for must in [
        "kora-runs.json/\"Runs finished per second\"",
        "kora-queues.json/\"Tasks waiting\"",
        "kora-queues.json/\"Schedule-to-start p50 / p99 / p99.9\"",
        "kora-fleet.json/\"Processes up\"",
        "kora-fleet.json/\"Worker slots\"",
    ] {
        assert!(
            with_data.iter().any(|p| p == must),
            "{must} shows nothing: {with_data:?}"
        );
    }

    // `kora top --once --format json`: the same picture from the ledger and JetStream.
    let o = d.kora(&["top", "--once", "--format", "json"]);
    let top: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    let observed = top["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["workflow"] == "observed")
        .unwrap_or_else(|| panic!("{top:#}"));
    assert_eq!(observed["finished"], 3, "{top:#}");
    assert_eq!(observed["succeeded"], 3, "{top:#}");
    let (p50, p99) = (
        observed["p50_secs"].as_f64().unwrap(),
        observed["p99_secs"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99 && p99 < 30.0, "{top:#}");
    let nobody = top["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "nobody")
        .unwrap_or_else(|| panic!("{top:#}"));
    assert_eq!(
        (&nobody["waiting"], &nobody["bound"]),
        (&serde_json::json!(1), &serde_json::json!(false)),
        "{top:#}"
    );
    assert!(
        nobody["oldest_waiting_secs"].as_f64().unwrap() >= 1.0,
        "{top:#}"
    );
    assert!(
        top["live"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["workflow"] == "stranded" && l["running"] == 1),
        "{top:#}"
    );
    assert!(
        top["workers"].as_array().is_some_and(|w| !w.is_empty()),
        "{top:#}"
    );

    // Readiness: NATS, the ledger and each role's consumer answer.
    for addr in [&control, &worker] {
        let (status, body) = http_get(addr, "/readyz");
        assert_eq!(status, 200, "{addr}: {body}");
        assert!(body.contains("\"ok\":true"), "{body}");
    }
    // The stranded run is cancelled so nothing is left running.
    d.kora(&["runs", "cancel", &stuck_run]);
    d.finish().await;
}
