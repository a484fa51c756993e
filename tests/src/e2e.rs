//! The embedded engine end to end: Kailash conformance, shapes of graphs, poison messages,
//! duplicate submissions, and the SQLite ledger.

use std::sync::Arc;
use std::time::Duration;

use kora_broker::Outbound;
use kora_cli::embedded::{Engine, EngineConfig};
use kora_cli::input;
use kora_model::{Map, Value, WorkflowSpec};
use kora_nodes::NodesConfig;
use serde_json::json;

use crate::{compare, reference_cases, workflow_file};

fn engine_config(data_root: &std::path::Path) -> EngineConfig {
    EngineConfig {
        nodes: NodesConfig {
            data_root: data_root.to_path_buf(),
            python_workers: 2,
            ..NodesConfig::default()
        },
        ..EngineConfig::default()
    }
}

fn spec(v: Value) -> WorkflowSpec {
    kora_model::load::from_value(&v)
        .expect("test workflow loads")
        .0
}

async fn run_case(dir: &std::path::Path) -> Vec<String> {
    let file = workflow_file(dir).expect("workflow file");
    let (wf, _) = input::load_workflow(&file, &kora_model::Limits::default()).expect("loads");
    let params_file = dir.join("params.json");
    let params = if params_file.exists() {
        input::load_params(params_file.to_str(), &kora_model::Limits::default()).expect("params")
    } else {
        Map::new()
    };
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let engine = Engine::start(engine_config(dir))
        .await
        .expect("engine starts");
    let report = tokio::time::timeout(Duration::from_secs(60), engine.run(wf, params))
        .await
        .expect("finishes")
        .expect("runs");
    engine.shutdown().await.unwrap();
    compare(&expected, &report.status, &Value::Object(report.results))
}

/// `kora run` gives what the Kailash SDK gave for every example and conformance case.
#[tokio::test]
async fn kora_matches_kailash_on_every_reference_case() {
    let cases = reference_cases();
    assert!(cases.len() >= 16, "reference cases found: {}", cases.len());
    let mut failures = Vec::new();
    for dir in &cases {
        for d in run_case(dir).await {
            failures.push(format!("{}: {d}", dir.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "differences from Kailash:\n{}",
        failures.join("\n")
    );
}

/// The comparison itself can fail: a wrong result is reported.
#[test]
fn comparison_detects_differences() {
    let expected =
        json!({"status": "succeeded", "results": {"a": {"result": 1}, "b": {"failed": true}}});
    assert!(
        compare(
            &expected,
            "succeeded",
            &json!({"a": {"result": 1}, "b": {"failed": true, "error": "x"}})
        )
        .is_empty()
    );
    assert_eq!(
        compare(
            &expected,
            "succeeded",
            &json!({"a": {"result": 2}, "b": {"failed": true}})
        )
        .len(),
        1
    );
    assert_eq!(
        compare(&expected, "failed", &json!({"a": {"result": 1}, "b": null})).len(),
        2
    );
}

#[tokio::test]
async fn wide_fan_out_and_long_chain_complete() {
    let engine = Engine::start(engine_config(std::path::Path::new(".")))
        .await
        .unwrap();
    let n = 2000;
    let mut nodes = vec![json!({"id": "root", "type": "NoOpNode", "config": {"data": 1}})];
    let mut conns = vec![];
    for i in 0..n {
        nodes.push(json!({"id": format!("n{i}"), "type": "NoOpNode"}));
        conns.push(
            json!({"source": "root", "output": "data", "target": format!("n{i}"), "input": "data"}),
        );
    }
    let r = engine
        .run(
            spec(json!({"nodes": nodes, "connections": conns})),
            Map::new(),
        )
        .await
        .unwrap();
    assert!(r.succeeded());
    assert_eq!(r.results.len(), n + 1);
    assert!(r.results.values().all(|v| v["data"] == json!(1)));

    let mut nodes = vec![json!({"id": "c0", "type": "NoOpNode", "config": {"data": "x"}})];
    let mut conns = vec![];
    for i in 1..500 {
        nodes.push(json!({"id": format!("c{i}"), "type": "NoOpNode"}));
        conns.push(json!({"source": format!("c{}", i - 1), "output": "data", "target": format!("c{i}"), "input": "data"}));
    }
    let r = engine
        .run(
            spec(json!({"nodes": nodes, "connections": conns})),
            Map::new(),
        )
        .await
        .unwrap();
    assert!(r.succeeded());
    assert_eq!(r.results["c499"], json!({"data": "x"}));
    assert_eq!(engine.metrics.fenced_total(), 0);
    engine.shutdown().await.unwrap();
}

/// A malformed message on any subject is dead-lettered with a reason and the engine goes on.
#[tokio::test]
async fn poison_messages_are_dead_lettered_and_do_not_stop_the_engine() {
    let engine = Engine::start(engine_config(std::path::Path::new(".")))
        .await
        .unwrap();
    let s = &engine.subjects;
    for subject in [
        s.run_submit(),
        s.task("default"),
        s.ledger_result(),
        s.ledger_admit(),
    ] {
        engine
            .broker
            .publish(Outbound::new(subject, &b"\xc1 not msgpack"[..]))
            .await
            .unwrap();
    }
    let r = engine
        .run(
            spec(json!({"nodes": [{"id": "a", "type": "NoOpNode", "config": {"data": 5}}]})),
            Map::new(),
        )
        .await
        .unwrap();
    assert!(r.succeeded(), "the engine keeps working after poison");
    let dlq = s.stream_dlq();
    let mut reasons = Vec::new();
    for _ in 0..50 {
        let info = engine.broker.stream_info(&dlq).await.unwrap();
        if info.messages >= 4 {
            for seq in 1..=info.last_sequence {
                if let Some(m) = engine.broker.get_message(&dlq, seq).await.unwrap() {
                    let reason = m
                        .headers
                        .iter()
                        .find(|(k, _)| k == "Kora-Reason")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    reasons.push(format!("{} <- {}", m.subject, reason));
                }
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons.iter().all(|r| r.contains("undecodable")),
        "{reasons:?}"
    );
    engine.shutdown().await.unwrap();
}

/// Publishing the same run request twice (a retry after a lost ack) makes one run.
#[tokio::test]
async fn duplicate_submissions_make_one_run() {
    let engine = Engine::start(engine_config(std::path::Path::new(".")))
        .await
        .unwrap();
    let wf = spec(json!({"nodes": [{"id": "a", "type": "NoOpNode", "config": {"data": 1}}]}));
    let id = uuid::Uuid::now_v7().to_string();
    for _ in 0..3 {
        let submission = kora_client::Submission {
            run_id: id.clone(),
            ..kora_client::Submission::new(wf.clone(), Map::new())
        };
        kora_client::runs::submit(engine.broker.as_ref(), &engine.subjects, submission)
            .await
            .unwrap();
    }
    let r = engine
        .run_with_id(wf, Map::new(), id.clone())
        .await
        .unwrap();
    assert!(r.succeeded());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(engine.metrics.runs_started.get(), 1);
    assert_eq!(engine.store.attempts(&id).await.unwrap().len(), 1);
    engine.shutdown().await.unwrap();
}

/// An invalid workflow submitted directly (not through `kora run`'s own check) is recorded as
/// a rejected run with every problem, visible to the submitter.
#[tokio::test]
async fn invalid_submissions_are_rejected_with_reasons() {
    let engine = Engine::start(engine_config(std::path::Path::new(".")))
        .await
        .unwrap();
    let wf = spec(
        json!({"nodes": [{"id": "a", "type": "NoSuchNode"}, {"id": "b", "type": "CSVReaderNode"}]}),
    );
    let r = engine.run(wf, Map::new()).await.unwrap();
    assert_eq!(r.status, "rejected");
    let problems = r.error.unwrap()["problems"].to_string();
    assert!(
        problems.contains("node 'a', field 'type': unknown node type 'NoSuchNode'"),
        "{problems}"
    );
    let rec = engine.store.run(&r.run_id).await.unwrap().unwrap();
    assert_eq!(rec.status, kora_store::RunStatus::Rejected);
    engine.shutdown().await.unwrap();
}

/// With `sqlite:PATH` the ledger outlives the process: runs, attempts and events are there.
#[tokio::test]
async fn sqlite_ledger_keeps_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let cfg = EngineConfig {
        store: format!("sqlite:{}", path.display()),
        ..engine_config(std::path::Path::new("."))
    };
    let engine = Engine::start(cfg).await.unwrap();
    let wf = spec(
        json!({"nodes": [{"id": "a", "type": "NoOpNode", "config": {"data": 2}}, {"id": "b", "type": "NoOpNode"}],
        "connections": [{"source": "a", "output": "data", "target": "b", "input": "data"}]}),
    );
    let r = engine.run(wf, Map::new()).await.unwrap();
    engine.shutdown().await.unwrap();
    let store: Arc<dyn kora_store::Store> = kora_store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    let rec = store.run(&r.run_id).await.unwrap().expect("run kept");
    assert_eq!(rec.status, kora_store::RunStatus::Succeeded);
    let attempts = store.attempts(&r.run_id).await.unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| a.node_id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    let kinds: Vec<&str> = store
        .events(&r.run_id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind.as_str())
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    assert_eq!(kinds.first(), Some(&"run_accepted"));
    assert_eq!(kinds.last(), Some(&"run_succeeded"));
}

/// A node the worker does not have fails cleanly; a Python node that crashes its interpreter
/// fails only that node.
#[tokio::test]
async fn failures_inside_workers_are_contained() {
    let engine = Engine::start(engine_config(std::path::Path::new(".")))
        .await
        .unwrap();
    let wf = spec(json!({"nodes": [
        {"id": "crash", "type": "PythonCodeNode", "config": {"code": "import os\nos._exit(1)"}},
        {"id": "fine", "type": "PythonCodeNode", "config": {"code": "result = 'still here'"}}]}));
    let r = engine.run(wf, Map::new()).await.unwrap();
    assert!(r.succeeded(), "a failed leaf is recorded; the run goes on");
    assert_eq!(r.results["crash"]["failed"], json!(true));
    assert_eq!(r.results["fine"]["result"], json!("still here"));
    engine.shutdown().await.unwrap();
}

/// Data too large for a message fails its node with a reason; the run does not hang.
#[tokio::test]
async fn oversized_inputs_and_outputs_fail_the_node_not_the_engine() {
    let cfg = EngineConfig {
        max_message_bytes: 64 << 10,
        ..engine_config(std::path::Path::new("."))
    };
    let engine = Engine::start(cfg).await.unwrap();
    let wf = spec(json!({"nodes": [
        {"id": "half", "type": "PythonCodeNode", "config": {"code": "result = 'x' * 40000"}},
        {"id": "other_half", "type": "PythonCodeNode", "config": {"code": "result = 'x' * 40000"}},
        {"id": "twice", "type": "PythonCodeNode", "config": {"code": "result = len(a) + len(b)"}},
        {"id": "huge", "type": "PythonCodeNode", "config": {"code": "result = 'y' * 100000"}}],
        "connections": [
            {"source": "half", "output": "result", "target": "twice", "input": "a"},
            {"source": "other_half", "output": "result", "target": "twice", "input": "b"}]}));
    let r = tokio::time::timeout(Duration::from_secs(30), engine.run(wf, Map::new()))
        .await
        .expect("no hang")
        .unwrap();
    assert!(
        r.succeeded(),
        "both failures are leaves: recorded, the run goes on: {:?}",
        r.error
    );
    assert_eq!(
        r.results["half"]["result"].as_str().map(str::len),
        Some(40000)
    );
    assert_eq!(
        r.results["twice"]["error_type"],
        json!("TaskTooLarge"),
        "{}",
        r.results["twice"]
    );
    assert!(
        r.results["twice"]["error"]
            .as_str()
            .unwrap()
            .contains("pass large data by reference")
    );
    assert_eq!(
        r.results["huge"]["error_type"],
        json!("OutputTooLarge"),
        "{}",
        r.results["huge"]
    );
    engine.shutdown().await.unwrap();
}

/// A node failing retryably succeeds on its third attempt: every attempt is in the ledger with
/// its error, each retry came no sooner than the policy's delay (200 ms, then 400 ms; no jitter)
/// and not much later, and upstream nodes ran once. A permanent failure is not retried.
#[tokio::test]
async fn flaky_node_is_retried_within_its_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let cfg = EngineConfig {
        store: format!("sqlite:{}", path.display()),
        ..engine_config(std::path::Path::new("."))
    };
    let engine = Engine::start(cfg).await.unwrap();
    let retry =
        json!({"max_attempts": 5, "initial_delay_ms": 200, "multiplier": 2.0, "jitter": false});
    let wf = spec(json!({"kora": 1, "nodes": [
        {"id": "up", "type": "NoOpNode", "config": {"data": 1}},
        {"id": "flaky", "type": "FailNode", "config": {"succeed_on_attempt": 3, "retryable": true}, "retry": retry},
        {"id": "broken", "type": "FailNode", "config": {"retryable": false}, "retry": retry}],
        "connections": [
            {"source": "up", "output": "data", "target": "flaky", "input": "data"},
            {"source": "up", "output": "data", "target": "broken", "input": "data"}]}));
    let r = tokio::time::timeout(Duration::from_secs(30), engine.run(wf, Map::new()))
        .await
        .expect("finishes")
        .unwrap();
    engine.shutdown().await.unwrap();
    assert!(r.succeeded(), "{:?}", r.error);
    assert_eq!(r.results["broken"]["failed"], json!(true), "a failed leaf");
    let store: Arc<dyn kora_store::Store> = kora_store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    let attempts = store.attempts(&r.run_id).await.unwrap();
    let of = |node: &str| -> Vec<&kora_store::AttemptRecord> {
        let mut v: Vec<_> = attempts.iter().filter(|a| a.node_id == node).collect();
        v.sort_by_key(|a| a.attempt);
        v
    };
    assert_eq!(of("up").len(), 1, "upstream ran once");
    assert_eq!(of("broken").len(), 1, "a permanent error is not retried");
    let flaky = of("flaky");
    let statuses: Vec<_> = flaky.iter().map(|a| (a.attempt, a.status)).collect();
    use kora_store::AttemptStatus::{Failed, Succeeded};
    assert_eq!(statuses, [(1, Failed), (2, Failed), (3, Succeeded)]);
    for a in &flaky[..2] {
        assert!(
            a.error.as_deref().unwrap_or("").contains("FailNode failed"),
            "each failed attempt keeps its error: {:?}",
            a.error
        );
    }
    for (i, want) in [(1, 200), (2, 400)] {
        let gap = flaky[i].finished_ms.unwrap() - flaky[i - 1].finished_ms.unwrap();
        assert!(
            (want..want + 1500).contains(&gap),
            "attempt {} finished {gap} ms after attempt {}; the delay is {want} ms",
            i + 1,
            i
        );
    }
    let retrying: Vec<_> = store
        .events(&r.run_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kora_model::wire::EventKind::NodeRetrying)
        .map(|e| e.detail.unwrap()["delay_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(retrying, [200, 400]);
}

/// A node past its `timeout_secs` is stopped on the worker and its attempt fails with a
/// retryable TimeoutError, so its retry policy applies; the run does not wait for the sleep.
#[tokio::test]
async fn a_node_past_its_timeout_is_stopped_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let cfg = EngineConfig {
        store: format!("sqlite:{}", path.display()),
        ..engine_config(std::path::Path::new("."))
    };
    let engine = Engine::start(cfg).await.unwrap();
    let wf = spec(json!({"kora": 1, "nodes": [
        {"id": "stuck", "type": "PythonCodeNode", "config": {"code": "import time\ntime.sleep(30)\nresult = 1"},
         "timeout_secs": 0.5, "retry": {"max_attempts": 2, "initial_delay_ms": 100, "jitter": false}}]}));
    let t = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(20), engine.run(wf, Map::new()))
        .await
        .expect("finishes long before the sleep")
        .unwrap();
    let took = t.elapsed();
    engine.shutdown().await.unwrap();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(r.results["stuck"]["error_type"], json!("TimeoutError"));
    let store: Arc<dyn kora_store::Store> = kora_store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    let attempts = store.attempts(&r.run_id).await.unwrap();
    let types: Vec<_> = attempts
        .iter()
        .map(|a| (a.attempt, a.error_type.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        types,
        [
            (1, "TimeoutError".to_string()),
            (2, "TimeoutError".to_string())
        ]
    );
}

/// A per-key concurrency limit: runs of one key never overlap, the extra ones are queued (in
/// the ledger, with a `run_queued` event) and start as slots free; another key is not held up.
#[tokio::test]
async fn a_per_key_concurrency_limit_queues_the_extra_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let cfg = EngineConfig {
        store: format!("sqlite:{}", path.display()),
        ..engine_config(std::path::Path::new("."))
    };
    let engine = Engine::start(cfg).await.unwrap();
    let wf = spec(
        json!({"kora": 1, "id": "per-customer", "name": "per-customer",
        "concurrency": {"limit": 1, "key": "work.customer"},
        "nodes": [{"id": "work", "type": "PythonCodeNode", "config": {"code":
            "import time\nt0 = time.time()\ntime.sleep(0.6)\nresult = {'start': t0, 'end': time.time(), 'customer': customer}"}}]}),
    );
    let params = |c: &str| {
        json!({"work": {"customer": c}})
            .as_object()
            .unwrap()
            .clone()
    };
    let runs = async {
        tokio::join!(
            engine.run(wf.clone(), params("A")),
            engine.run(wf.clone(), params("A")),
            engine.run(wf.clone(), params("A")),
            engine.run(wf.clone(), params("B")),
        )
    };
    let (a1, a2, a3, b1) = tokio::time::timeout(Duration::from_secs(60), runs)
        .await
        .expect("all finish");
    let reports = [a1.unwrap(), a2.unwrap(), a3.unwrap(), b1.unwrap()];
    engine.shutdown().await.unwrap();
    let span = |r: &kora_client::runs::RunReport| {
        let o = &r.results["work"]["result"];
        (o["start"].as_f64().unwrap(), o["end"].as_f64().unwrap())
    };
    for r in &reports {
        assert!(r.succeeded(), "{r:?}");
    }
    let mut a: Vec<(f64, f64)> = reports[..3].iter().map(span).collect();
    a.sort_by(|x, y| x.0.total_cmp(&y.0));
    for w in a.windows(2) {
        assert!(w[1].0 >= w[0].1, "runs of key A overlapped: {a:?}");
    }
    let b = span(&reports[3]);
    assert!(b.0 < a[2].0, "key B waited behind key A: B {b:?}, A {a:?}");
    let store = kora_store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    let mut queued = 0;
    for r in &reports {
        let kinds: Vec<_> = store
            .events(&r.run_id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        if kinds.contains(&kora_model::wire::EventKind::RunQueued) {
            queued += 1;
            assert!(kinds.contains(&kora_model::wire::EventKind::RunStarted));
        }
    }
    assert_eq!(queued, 2, "two of the three A runs waited");
}

/// A run past its `deadline_secs` fails with DeadlineExceeded and its running task is
/// stopped: the run does not wait for the node.
#[tokio::test]
async fn a_run_past_its_deadline_fails_and_stops_its_tasks() {
    let engine = Engine::start(engine_config(std::path::Path::new(".")))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("finished");
    let code = format!(
        "import time\ntime.sleep(8)\nopen({:?}, 'w').write('done')\nresult = 1",
        marker.display().to_string()
    );
    let wf = spec(
        json!({"kora": 1, "name": "slow", "deadline_secs": 1.0, "nodes": [
        {"id": "stuck", "type": "PythonCodeNode", "config": {"code": code}}]}),
    );
    let t = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(20), engine.run(wf, Map::new()))
        .await
        .expect("ends long before the sleep")
        .unwrap();
    let took = t.elapsed();
    assert_eq!(r.status, "failed", "{r:?}");
    let error = r.error.clone().unwrap_or_default().to_string();
    assert!(error.contains("DeadlineExceeded"), "{error}");
    assert!(took < Duration::from_secs(6), "took {took:?}");
    // The node was stopped: it never got past its sleep (8 s from the start).
    tokio::time::sleep(Duration::from_secs(9).saturating_sub(t.elapsed())).await;
    engine.shutdown().await.unwrap();
    assert!(!marker.exists(), "the node ran on after the deadline");
}

/// A queue's rate limit spaces its tasks: ten independent nodes on a queue limited to 5 a
/// second (burst 1) start 200 ms apart, so the run takes about two seconds instead of a few
/// milliseconds; the held tasks are counted.
#[tokio::test]
async fn a_queue_rate_limit_spaces_its_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let cfg = EngineConfig {
        store: format!("sqlite:{}", path.display()),
        rate_limits: [(
            "default".to_string(),
            kora_coordinator::RateLimit {
                per_sec: 5.0,
                burst: 1,
            },
        )]
        .into(),
        ..engine_config(std::path::Path::new("."))
    };
    let engine = Engine::start(cfg).await.unwrap();
    let nodes: Vec<Value> = (0..10)
        .map(|i| json!({"id": format!("n{i}"), "type": "NoOpNode"}))
        .collect();
    let wf = spec(json!({"kora": 1, "name": "paced", "nodes": nodes}));
    let t = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(30), engine.run(wf, Map::new()))
        .await
        .expect("finishes")
        .unwrap();
    let took = t.elapsed();
    let paced = engine.metrics.tasks_paced.get();
    let store = Arc::clone(&engine.store);
    engine.shutdown().await.unwrap();
    assert!(r.succeeded(), "{r:?}");
    assert!(took >= Duration::from_millis(1700), "took only {took:?}");
    assert_eq!(paced, 9, "all but the first waited for their slot");
    let mut starts: Vec<u64> = store
        .attempts(&r.run_id)
        .await
        .unwrap()
        .iter()
        .map(|a| a.dispatched_ms)
        .collect();
    starts.sort_unstable();
    for w in starts.windows(2) {
        let gap = w[1] - w[0];
        assert!((199..=201).contains(&gap), "slots 200 ms apart: {starts:?}");
    }
}

/// A parent run that ends (here: past its deadline) cancels the child runs of its running
/// WorkflowNodes; the child's task is stopped.
#[tokio::test]
async fn a_parent_that_ends_cancels_its_running_child_runs() {
    let engine = Engine::start(engine_config(std::path::Path::new(".")))
        .await
        .unwrap();
    let wf = spec(
        json!({"kora": 1, "name": "parent", "deadline_secs": 1.0, "nodes": [
        {"id": "sub", "type": "WorkflowNode", "config": {"workflow": {"kora": 1, "name": "slow-child", "nodes": [
            {"id": "wait", "type": "PythonCodeNode", "config": {"code": "import time\ntime.sleep(30)\nresult = 1"}},
            {"id": "tail", "type": "NoOpNode"}],
            "connections": [{"source": "wait", "output": "result", "target": "tail", "input": "data"}]}}}]}),
    );
    let r = tokio::time::timeout(Duration::from_secs(20), engine.run(wf, Map::new()))
        .await
        .expect("the parent ends at its deadline")
        .unwrap();
    assert_eq!(r.status, "failed", "{r:?}");
    let child = loop {
        let runs = engine
            .store
            .runs(&kora_store::RunFilter::default())
            .await
            .unwrap();
        let child = runs
            .into_iter()
            .find(|x| x.parent.is_some())
            .expect("the child run is in the ledger");
        if child.status.is_final() {
            break child;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    engine.shutdown().await.unwrap();
    assert_eq!(child.status, kora_store::RunStatus::Cancelled, "{child:?}");
    assert!(
        child.error.unwrap_or_default().contains(&r.run_id),
        "cancelled by its parent"
    );
}

/// A node's own word on when to try again is kept: a webhook answers 429 with
/// `Retry-After: 2`, the alert node fails retryably with that wait, and the coordinator sends
/// the next attempt no sooner than 2 s later (its policy alone would wait 100 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_from_the_node_delays_the_next_attempt() {
    let (url, seen) = kora_nodes::testing::server_with_headers(Arc::new(|_, n| {
        if n == 0 {
            (
                429,
                vec![("retry-after", "2".to_string())],
                "slow down".into(),
            )
        } else {
            (
                200,
                vec![("content-type", "text/plain".into())],
                "ok".into(),
            )
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let engine = Engine::start(EngineConfig {
        store: format!("sqlite:{}", path.display()),
        ..engine_config(std::path::Path::new("."))
    })
    .await
    .unwrap();
    let retry = json!({"max_attempts": 3, "initial_delay_ms": 100, "jitter": false});
    let wf = spec(json!({"kora": 1, "nodes": [
        {"id": "alert", "type": "WebhookAlertNode", "retry": retry,
         "config": {"url": format!("{url}/hook"), "message": "disk full"}}]}));
    let r = tokio::time::timeout(Duration::from_secs(30), engine.run(wf, Map::new()))
        .await
        .expect("finishes")
        .unwrap();
    engine.shutdown().await.unwrap();
    assert!(r.succeeded(), "{:?}", r.error);
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "one refused post, one delivered");
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(
        gap >= Duration::from_millis(1900),
        "the second attempt waited for Retry-After: {gap:?}"
    );
    let store = kora_store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    let attempts = store.attempts(&r.run_id).await.unwrap();
    let first = attempts.iter().find(|a| a.attempt == 1).unwrap();
    let second = attempts.iter().find(|a| a.attempt == 2).unwrap();
    assert!(
        second.dispatched_ms >= first.finished_ms.unwrap() + 1_900,
        "the retry row is dated when it is due: {} then {}",
        first.finished_ms.unwrap(),
        second.dispatched_ms
    );
}
