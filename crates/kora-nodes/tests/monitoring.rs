//! Monitoring nodes against the machine's services and a loopback HTTP server.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use kora_nodes::testing::{Seen, server};
use kora_nodes::testing::{registry, run_node as run};
use serde_json::{Value, json};

fn reg() -> kora_nodes::Registry {
    registry(std::path::Path::new("."))
}

#[tokio::test]
async fn health_checks_each_kind_of_service() {
    let (base, _) = server(Arc::new(|req: &Seen, _| {
        if req.target == "/down" {
            (503, "text/plain", "no".into())
        } else {
            (200, "text/plain", "ok".into())
        }
    }))
    .await;
    let r = reg();
    let o = run(
        &r,
        "HealthCheckNode",
        json!({"services": [
            {"name": "web", "type": "http", "url": format!("{base}/health")},
            {"name": "pg", "type": "database", "url": "postgresql://postgres@127.0.0.1:5432/test"},
            {"name": "maria", "type": "database", "url": "mysql://root@127.0.0.1:3306/test"},
            {"name": "cache", "type": "redis", "url": "redis://127.0.0.1:6379"},
            {"name": "bus", "type": "nats", "url": "nats://127.0.0.1:4222"}],
          "timeout": 5}),
    )
    .await
    .unwrap();
    assert_eq!(o["overall_status"], "healthy", "{o:?}");
    assert_eq!(o["healthy_count"], 5);
    assert_eq!(o["services"]["web"]["status_code"], 200);
    assert_eq!(o["services"]["bus"]["jetstream"], true);
    // One down, one refusing: degraded, with reasons; retries are counted.
    let o = run(
        &r,
        "HealthCheckNode",
        json!({"services": [
            {"name": "web", "type": "http", "url": format!("{base}/health")},
            {"name": "down", "type": "http", "url": format!("{base}/down")},
            {"name": "gone", "type": "tcp", "url": "127.0.0.1:9"}],
          "retries": 1, "retry_delay": 0.01, "timeout": 2}),
    )
    .await
    .unwrap();
    assert_eq!(o["overall_status"], "degraded");
    assert_eq!(o["unhealthy_count"], 2);
    assert_eq!(o["services"]["down"]["error"], "HTTP 503");
    assert_eq!(o["services"]["gone"]["attempts"], 2);
    // fail_fast stops at the first unhealthy one.
    let o = run(
        &r,
        "HealthCheckNode",
        json!({"services": [
            {"name": "gone", "type": "tcp", "url": "127.0.0.1:9"},
            {"name": "web", "type": "http", "url": format!("{base}/health")}],
          "fail_fast": true}),
    )
    .await
    .unwrap();
    assert_eq!(o["overall_status"], "unhealthy");
    assert!(o["services"].get("web").is_none(), "{o:?}");
}

/// Durations from user input never panic: a negative or non-numeric one is refused naming the
/// field, a huge one is held to the node's ceiling.
#[tokio::test]
async fn health_check_durations_are_checked_not_trusted() {
    let r = reg();
    let svc = json!([{"name": "gone", "type": "tcp", "url": "127.0.0.1:9"}]);
    for (field, bad) in [
        ("timeout", json!(-1)),
        ("retry_delay", json!(-0.5)),
        ("timeout", json!("soon")),
        ("timeout", json!(1e300)),
    ] {
        let e = run(&r, "HealthCheckNode", json!({"services": svc, field: bad}))
            .await
            .unwrap_err();
        assert!(e.to_string().contains(field), "{field}: {e}");
    }
    // Within the accepted range but past the ceiling: held to it, and the check still runs.
    let o = run(
        &r,
        "HealthCheckNode",
        json!({"services": svc, "timeout": 1e6, "retry_delay": 1e6}),
    )
    .await
    .unwrap();
    assert_eq!(o["overall_status"], "unhealthy", "{o:?}");
}

#[tokio::test]
async fn metrics_come_as_json_or_prometheus_text() {
    let r = reg();
    let o = run(
        &r,
        "MetricsCollectorNode",
        json!({"metric_types": ["system.cpu", "system.memory"], "labels": {"host": "w1"},
               "custom_metrics": [{"name": "orders_total", "value": 42, "type": "counter"}]}),
    )
    .await
    .unwrap();
    let metrics = o["metrics"].as_array().unwrap();
    let get = |n: &str| {
        metrics
            .iter()
            .find(|m| m["name"] == n)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert!(get("system_memory_total_bytes")["value"].as_f64().unwrap() > 1e8);
    let cpu = get("system_cpu_usage_percent")["value"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&cpu), "{cpu}");
    assert!(
        get("process_resident_memory_bytes")["value"]
            .as_f64()
            .unwrap()
            > 1e6
    );
    assert_eq!(get("orders_total")["labels"]["host"], "w1");
    assert!(
        get("system_disk_free_bytes").is_null(),
        "only the types asked for"
    );
    let o = run(
        &r,
        "MetricsCollectorNode",
        json!({"format": "prometheus", "include_process": false}),
    )
    .await
    .unwrap();
    let text = o["metrics"].as_str().unwrap();
    assert!(
        text.contains("# TYPE system_memory_used_bytes gauge"),
        "{text}"
    );
    assert!(
        text.contains("system_disk_free_bytes{mount=\"/\"}"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE system_network_received_bytes_total counter"),
        "{text}"
    );
    let e = run(&r, "MetricsCollectorNode", json!({"metric_types": ["gpu"]}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unknown type \"gpu\""), "{e}");
}
