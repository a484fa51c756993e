//! Traces across processes: a scheduler, a coordinator and workers in separate processes
//! export OTLP/HTTP (JSON) to a receiver the test runs. One run is one trace (its id derived
//! from the run id): a root span linked to the submitter's `traceparent`, the scheduler's
//! admission under it, a span per node attempt under it (with its queue wait and execution),
//! and the coordinator's recording under each attempt. A task redelivered after its worker is
//! killed keeps the trace.

#![allow(clippy::unwrap_used)]

use super::monitor::Receiver;
use super::support::*;

/// Every span received: `(service, span)`.
fn spans(r: &Receiver) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for body in r.all() {
        for rs in body["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or("")
                .to_string();
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    out.push((service.clone(), s.clone()));
                }
            }
        }
    }
    out
}

fn attr<'a>(span: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits until `ok` accepts the spans of trace `trace_id`.
async fn wait_spans(
    r: &Receiver,
    trace_id: &str,
    limit: Duration,
    ok: impl Fn(&[(String, serde_json::Value)]) -> bool,
) -> Vec<(String, serde_json::Value)> {
    let started = Instant::now();
    loop {
        let mine: Vec<(String, serde_json::Value)> = spans(r)
            .into_iter()
            .filter(|(_, s)| {
                s["traceId"]
                    .as_str()
                    .is_some_and(|t| t.eq_ignore_ascii_case(trace_id))
            })
            .collect();
        if ok(&mine) || started.elapsed() > limit {
            return mine;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn named<'a>(
    spans: &'a [(String, serde_json::Value)],
    name: &str,
) -> Vec<&'a (String, serde_json::Value)> {
    spans
        .iter()
        .filter(|(_, s)| s["name"].as_str().is_some_and(|n| n.starts_with(name)))
        .collect()
}

#[tokio::test]
async fn one_trace_per_run_across_processes() {
    let collector = Receiver::start().await;
    let endpoint = collector.url();
    let Some(mut d) = Deployment::new(&[
        ("KORA_TASKS__ACK_WAIT", "2s"),
        ("KORA_WORKER__HEARTBEAT", "1s"),
    ])
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The scheduler and workers take the endpoint from the environment, the coordinator from
    // its configuration file.
    let traced = [("KORA_TRACING__OTLP_ENDPOINT", endpoint.as_str())];
    let config = dir.path().join("kora.toml");
    std::fs::write(
        &config,
        format!("[tracing]\notlp_endpoint = \"{endpoint}\"\n"),
    )
    .unwrap();
    d.serve_env("scheduler", &[], &traced);
    d.serve("coordinator", &["--config", config.to_str().unwrap()]);
    let first_worker = d.serve_env("worker", &[], &traced);
    let chain = dir.path().join("chain.json");
    std::fs::write(
        &chain,
        serde_json::json!({"kora": 1, "id": "traced", "name": "traced", "nodes": [
            {"id": "a", "type": "PythonCodeNode", "config": {"code": "result = 1"}},
            {"id": "b", "type": "NoOpNode"}],
         "connections": [{"source": "a", "output": "result", "target": "b", "input": "data"}]})
        .to_string(),
    )
    .unwrap();
    // The submitter's own trace context, as a tracing-aware script passes it.
    let caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let o = d
        .command()
        .env("TRACEPARENT", caller)
        .args([
            "submit",
            chain.to_str().unwrap(),
            "--wait",
            "--timeout",
            "60",
        ])
        .output()
        .unwrap();
    let out: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(out["status"], "succeeded", "{out}");
    let run_id = out["run_id"].as_str().unwrap().to_string();
    let trace_id = kora_model::trace::run_trace_hex(&run_id);
    let root_id = hex(&kora_model::trace::run_root_span_id(&run_id));

    let got = wait_spans(&collector, &trace_id, Duration::from_secs(20), |s| {
        named(s, "kora.record").len() >= 2
            && !named(s, "kora.run").is_empty()
            && named(s, "kora.node").len() >= 2
            && named(s, "kora.execute").len() >= 2
    })
    .await;
    let root = named(&got, "kora.run");
    assert_eq!(root.len(), 1, "one root span: {got:#?}");
    let (root_service, root) = root[0];
    assert_eq!(root_service, "kora-coordinator");
    assert_eq!(root["spanId"].as_str().unwrap().to_lowercase(), root_id);
    assert!(
        root["parentSpanId"].as_str().unwrap_or("").is_empty(),
        "the root has no parent: {root}"
    );
    assert_eq!(
        root["links"][0]["traceId"].as_str().unwrap().to_lowercase(),
        "0af7651916cd43dd8448eb211c80319c",
        "linked to the caller's trace: {root}"
    );
    let admit = named(&got, "kora.admit");
    assert_eq!(admit.len(), 1, "{got:#?}");
    assert_eq!(admit[0].0, "kora-scheduler");
    assert_eq!(
        admit[0].1["parentSpanId"].as_str().unwrap().to_lowercase(),
        root_id
    );
    let nodes = named(&got, "kora.node");
    assert_eq!(nodes.len(), 2, "a span per node attempt: {got:#?}");
    for (service, node) in &nodes {
        assert_eq!(service, "kora-worker");
        assert_eq!(
            node["parentSpanId"].as_str().unwrap().to_lowercase(),
            root_id
        );
        let id = node["spanId"].as_str().unwrap();
        for child in ["kora.queue_wait", "kora.execute"] {
            assert_eq!(
                got.iter()
                    .filter(|(_, s)| s["name"] == child && s["parentSpanId"] == id)
                    .count(),
                1,
                "{child} under {node}"
            );
        }
        // Recorded by the coordinator, under the attempt's span (its context came back in
        // the result message's header).
        assert_eq!(
            got.iter()
                .filter(|(svc, s)| svc == "kora-coordinator"
                    && s["name"] == "kora.record"
                    && s["parentSpanId"] == id)
                .count(),
            1,
            "recording under {node}: {got:#?}"
        );
        assert_eq!(attr(node, "kora.run_id").unwrap()["stringValue"], run_id);
    }

    // A task whose worker is killed mid-run is redelivered to another; its span is in the
    // same trace, under the same root, and says it was a second delivery.
    let slow = dir.path().join("slow.json");
    std::fs::write(
        &slow,
        serde_json::json!({"kora": 1, "id": "slow", "name": "slow", "nodes": [
            {"id": "s", "type": "PythonCodeNode", "config": {"code": "import time\ntime.sleep(3)\nresult = 1"}}]})
        .to_string(),
    )
    .unwrap();
    let slow_run = d.submit(&slow);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.procs[first_worker].kill().unwrap();
    d.procs[first_worker].wait().unwrap();
    d.serve_env("worker", &[], &traced);
    assert_eq!(
        d.wait_finished(&slow_run, Duration::from_secs(30)).await["status"],
        "succeeded"
    );
    let slow_trace = kora_model::trace::run_trace_hex(&slow_run);
    let slow_root = hex(&kora_model::trace::run_root_span_id(&slow_run));
    let got = wait_spans(&collector, &slow_trace, Duration::from_secs(20), |s| {
        !named(s, "kora.record").is_empty() && !named(s, "kora.node").is_empty()
    })
    .await;
    let nodes = named(&got, "kora.node");
    assert_eq!(
        nodes.len(),
        1,
        "the killed worker exported nothing: {got:#?}"
    );
    let node = &nodes[0].1;
    assert_eq!(
        node["parentSpanId"].as_str().unwrap().to_lowercase(),
        slow_root
    );
    assert_eq!(
        attr(node, "kora.delivery").unwrap()["intValue"]
            .to_string()
            .trim_matches('"'),
        "2",
        "{node}"
    );
    d.finish().await;
}
