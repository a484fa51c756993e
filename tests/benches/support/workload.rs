//! Workloads the benchmarks drive through a running installation: chain and fan-out
//! workflows, running one and waiting, timing a chain's hops, reading a process's memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kora_broker::{Broker, ConsumerConfig};
use kora_model::subjects::Subjects;
use kora_model::{Map, WorkflowSpec};
use serde_json::json;

/// A process's resident memory (`VmRSS`) or its peak (`VmHWM`), in MiB.
pub(crate) fn rss_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

pub(crate) fn spec(v: serde_json::Value) -> WorkflowSpec {
    kora_model::load::from_value(&v).expect("bench workflow").0
}

pub(crate) fn chain_spec(n: usize) -> WorkflowSpec {
    let mut nodes = vec![json!({"id": "n0", "type": "NoOpNode", "config": {"data": 0}})];
    let mut conns = Vec::new();
    for i in 1..n {
        nodes.push(json!({"id": format!("n{i}"), "type": "NoOpNode"}));
        conns.push(json!({"source": format!("n{}", i - 1), "output": "data", "target": format!("n{i}"), "input": "data"}));
    }
    spec(json!({"nodes": nodes, "connections": conns}))
}

pub(crate) fn fanout_spec(n: usize) -> WorkflowSpec {
    let mut nodes = vec![json!({"id": "root", "type": "NoOpNode", "config": {"data": 1}})];
    let mut conns = Vec::new();
    for i in 0..n {
        nodes.push(json!({"id": format!("n{i}"), "type": "NoOpNode"}));
        conns.push(
            json!({"source": "root", "output": "data", "target": format!("n{i}"), "input": "data"}),
        );
    }
    spec(json!({"nodes": nodes, "connections": conns}))
}

/// One chain run: its total time (s) and the interval between consecutive node completions as
/// a client sees them on the run's node events (ms): one hop each — result recorded, next task
/// dispatched, executed, its result recorded and announced.
pub(crate) async fn run_chain(
    broker: &Arc<dyn Broker>,
    subjects: &Subjects,
    wf: WorkflowSpec,
) -> (f64, Vec<f64>) {
    let run_id = uuid::Uuid::now_v7().to_string();
    let from = kora_client::runs::events_position(broker.as_ref(), subjects)
        .await
        .expect("events");
    let durable = format!("hops-{run_id}");
    broker
        .ensure_consumer(
            &subjects.stream_events(),
            &ConsumerConfig {
                filter_subject: Some(subjects.node_events(&run_id)),
                start_sequence: Some(from),
                ..ConsumerConfig::new(&durable)
            },
        )
        .await
        .expect("events consumer");
    let consumer = broker
        .consumer(&subjects.stream_events(), &durable)
        .await
        .expect("consumer");
    let nodes = wf.nodes.len();
    let watcher = tokio::spawn(async move {
        let mut seen: Vec<(Instant, usize)> = Vec::with_capacity(nodes);
        while seen.iter().map(|s| s.1).sum::<usize>() < nodes {
            let Ok(batch) = consumer.fetch(64, Duration::from_secs(10)).await else {
                break;
            };
            if batch.is_empty() {
                break;
            }
            // Completions that arrive together share the interval since the previous arrival
            // (never counted as zero-length hops).
            // Each message holds the node events of one ledger commit.
            let mut completed = 0;
            for d in batch {
                if let Ok(m) = kora_model::wire::decode::<kora_model::wire::NodeEvents>(&d.payload)
                {
                    completed += m.events.len();
                }
                let _ = d.ack().await;
            }
            seen.push((Instant::now(), completed));
        }
        seen
    });
    let t = run_one_id(broker, subjects, wf, run_id).await;
    let seen = watcher.await.expect("watcher");
    let _ = broker
        .delete_consumer(&subjects.stream_events(), &durable)
        .await;
    let hops = seen
        .windows(2)
        .flat_map(|w| {
            let each = (w[1].0 - w[0].0).as_secs_f64() * 1000.0 / w[1].1 as f64;
            std::iter::repeat_n(each, w[1].1)
        })
        .collect();
    (t, hops)
}

/// Submits and waits; returns seconds from submit to the terminal event.
pub(crate) async fn run_one(
    broker: &Arc<dyn Broker>,
    subjects: &Subjects,
    wf: WorkflowSpec,
) -> f64 {
    run_one_id(broker, subjects, wf, uuid::Uuid::now_v7().to_string()).await
}

pub(crate) async fn run_one_id(
    broker: &Arc<dyn Broker>,
    subjects: &Subjects,
    wf: WorkflowSpec,
    run_id: String,
) -> f64 {
    let from = kora_client::runs::events_position(broker.as_ref(), subjects)
        .await
        .expect("events");
    let t = Instant::now();
    let submission = kora_client::Submission {
        run_id: run_id.clone(),
        ..kora_client::Submission::new(wf, Map::new())
    };
    kora_client::runs::submit(broker.as_ref(), subjects, submission)
        .await
        .expect("submit");
    let end = kora_client::runs::wait(
        broker,
        subjects,
        &run_id,
        from,
        Some(Duration::from_secs(300)),
    )
    .await
    .expect("finished");
    assert_eq!(
        end.kind,
        kora_model::wire::EventKind::RunSucceeded,
        "{:?}",
        end.detail
    );
    t.elapsed().as_secs_f64()
}
