//! `make bench` (second part): the distributed engine on NATS JetStream and PostgreSQL,
//! against the raw JetStream task round trip measured in the same run with the same client.
//!
//! - raw sequential: publish a task (await the ack) -> a worker pulls it, publishes a result
//!   (await the ack), acks -> a collector pulls the result, acks. p50 and p99 over 1,000.
//! - raw in flight: the same with 1,000 tasks outstanding: round trips per second.
//! - kora chain: a 100-node NoOp chain, one run at a time: per-hop p50 and p99, a hop being the
//!   interval between consecutive node completions seen by a client on the run's node events.
//!   `KORA_BENCH_ONLY=chain` or `=fanout` runs the raw figures and that one scenario.
//! - kora fan-out: a 10,000-node NoOp fan-out with one worker and the PostgreSQL ledger: nodes/s.
//!
//! Needs NATS on 127.0.0.1:4222 and PostgreSQL on 127.0.0.1:5432 (`make services-up`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kora_broker::nats::{JetStreamBroker, NatsConfig};
use kora_broker::{Broker, ConsumerConfig, Outbound, Retention, StreamConfig};
use kora_cli::serve::{Role, ServeConfig, serve};
use kora_model::subjects::Subjects;
use kora_model::{Map, WorkflowSpec};
use serde_json::json;
use sqlx::Connection;

const NATS: &str = "nats://127.0.0.1:4222";
const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn connect(name: &str) -> JetStreamBroker {
    JetStreamBroker::connect(&NatsConfig {
        url: NATS.into(),
        name: name.into(),
        ..NatsConfig::default()
    })
    .await
    .expect("NATS on 127.0.0.1:4222")
}

async fn run() {
    let tag = format!(
        "b{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() % 1_000_000)
    );
    println!(
        "\nkora distributed benchmark: NATS 127.0.0.1:4222 ({}), PostgreSQL 15, multi-thread runtime (2 threads)",
        server_version().await
    );
    let (seq_p50, seq_p99, inflight_rate) = raw(&tag).await;
    println!(
        "raw JetStream round trip, sequential: p50 {seq_p50:.3} ms, p99 {seq_p99:.3} ms (1,000 tasks)"
    );
    println!("raw JetStream round trip, 1,000 in flight: {inflight_rate:.0} round trips/s");

    let db = format!("kora_bench_{tag}");
    let mut admin = sqlx::PgConnection::connect(ADMIN)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut admin)
        .await
        .expect("create db");
    let mut cfg = ServeConfig::default();
    cfg.nats.url = NATS.into();
    cfg.nats.prefix = format!("kb{tag}");
    cfg.database.url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    cfg.worker.concurrency = 256;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(serve(
        cfg.clone(),
        &[Role::Scheduler, Role::Coordinator, Role::Worker],
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let broker: Arc<dyn Broker> = Arc::new(connect("kora-bench-client").await);
    let subjects = Subjects::new(&cfg.nats.prefix).expect("prefix");

    let only = std::env::var("KORA_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "chain" {
        let chain = chain_spec(100);
        run_chain(&broker, &subjects, chain.clone()).await; // warm-up
        let mut per_run = Vec::new();
        let mut hops = Vec::new();
        for _ in 0..5 {
            let (t, h) = run_chain(&broker, &subjects, chain.clone()).await;
            per_run.push(t * 1000.0 / 100.0);
            hops.extend(h);
        }
        per_run.sort_by(f64::total_cmp);
        hops.sort_by(f64::total_cmp);
        let (p50, p99) = (pct(&hops, 0.5), pct(&hops, 0.99));
        println!(
            "kora 100-node NoOp chain, per hop ({} hops, 5 runs): p50 {p50:.3} ms = {:.2}x the raw sequential p50 (target <= 2x), p99 {p99:.3} ms = {:.2}x the raw p99",
            hops.len(),
            p50 / seq_p50,
            p99 / seq_p99
        );
        println!(
            "kora 100-node NoOp chain, submit to finished / 100: {:.3} ms (median of 5 runs; min {:.3}, max {:.3})",
            pct(&per_run, 0.5),
            per_run[0],
            per_run[per_run.len() - 1]
        );
    }
    if !(only.is_empty() || only == "fanout") {
        shutdown.cancel();
        let _ = server.await;
        cleanup(&cfg.nats.prefix, &tag, &db, &mut admin).await;
        return;
    }
    let fan = fanout_spec(10_000);
    let t = run_one(&broker, &subjects, fan).await;
    let rate = 10_001.0 / t;
    println!(
        "kora 10,000-node NoOp fan-out, 1 worker, PostgreSQL ledger: {rate:.0} nodes/s ({t:.2} s) = {:.2}x the raw in-flight rate (target >= 0.6x)",
        rate / inflight_rate
    );
    println!(
        "peak RSS of this process (all roles + client): {:.1} MiB",
        peak_rss_mib()
    );
    shutdown.cancel();
    let _ = server.await;
    cleanup(&cfg.nats.prefix, &tag, &db, &mut admin).await;
}

async fn cleanup(prefix: &str, tag: &str, db: &str, admin: &mut sqlx::PgConnection) {
    if let Ok(b) = JetStreamBroker::connect(&NatsConfig {
        url: NATS.into(),
        ..NatsConfig::default()
    })
    .await
    {
        let _ = b
            .delete_streams_with_prefix(&prefix.to_ascii_uppercase())
            .await;
        let _ = b
            .delete_streams_with_prefix(&format!("RAW{tag}").to_ascii_uppercase())
            .await;
    }
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    )))
    .execute(admin)
    .await;
}

async fn server_version() -> String {
    match async_version().await {
        Some(v) => v,
        None => "version unknown".into(),
    }
}

async fn async_version() -> Option<String> {
    let out = tokio::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .await
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn spec(v: serde_json::Value) -> WorkflowSpec {
    kora_model::load::from_value(&v).expect("bench workflow").0
}

fn chain_spec(n: usize) -> WorkflowSpec {
    let mut nodes = vec![json!({"id": "n0", "type": "NoOpNode", "config": {"data": 0}})];
    let mut conns = Vec::new();
    for i in 1..n {
        nodes.push(json!({"id": format!("n{i}"), "type": "NoOpNode"}));
        conns.push(json!({"source": format!("n{}", i - 1), "output": "data", "target": format!("n{i}"), "input": "data"}));
    }
    spec(json!({"nodes": nodes, "connections": conns}))
}

fn fanout_spec(n: usize) -> WorkflowSpec {
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

/// Submits and waits; returns seconds from submit to the terminal event.
/// One chain run: its total time (s) and the interval between consecutive node completions as
/// a client sees them on the run's node events (ms): one hop each — result recorded, next task
/// dispatched, executed, its result recorded and announced.
async fn run_chain(
    broker: &Arc<dyn Broker>,
    subjects: &Subjects,
    wf: WorkflowSpec,
) -> (f64, Vec<f64>) {
    let run_id = uuid::Uuid::now_v7().to_string();
    let from = kora_cli::client::events_position(broker.as_ref(), subjects)
        .await
        .expect("events");
    let durable = format!("hops-{run_id}");
    broker
        .ensure_consumer(
            &subjects.stream_events(),
            &ConsumerConfig {
                filter_subject: Some(subjects.event(&run_id, "node", "*")),
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
            seen.push((Instant::now(), batch.len()));
            for d in batch {
                let _ = d.ack().await;
            }
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

async fn run_one(broker: &Arc<dyn Broker>, subjects: &Subjects, wf: WorkflowSpec) -> f64 {
    run_one_id(broker, subjects, wf, uuid::Uuid::now_v7().to_string()).await
}

async fn run_one_id(
    broker: &Arc<dyn Broker>,
    subjects: &Subjects,
    wf: WorkflowSpec,
    run_id: String,
) -> f64 {
    let from = kora_cli::client::events_position(broker.as_ref(), subjects)
        .await
        .expect("events");
    let t = Instant::now();
    kora_cli::client::submit(
        broker.as_ref(),
        subjects,
        wf,
        Map::new(),
        None,
        run_id.clone(),
    )
    .await
    .expect("submit");
    let end = kora_cli::client::wait(
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

/// The raw round trip through two work-queue streams with three connections, as a Kora hop
/// without the engine.
async fn raw(tag: &str) -> (f64, f64, f64) {
    let (client, worker, collector) = (
        connect("raw-client").await,
        connect("raw-worker").await,
        connect("raw-collector").await,
    );
    let (tasks, results) = (
        format!("RAW{tag}_T").to_ascii_uppercase(),
        format!("RAW{tag}_R").to_ascii_uppercase(),
    );
    let (ts, rs) = (format!("raw{tag}.t"), format!("raw{tag}.r"));
    for (name, subj) in [(&tasks, &ts), (&results, &rs)] {
        client
            .ensure_stream(&StreamConfig::new(
                name.clone(),
                vec![subj.clone()],
                Retention::WorkQueue,
            ))
            .await
            .expect("stream");
        client
            .ensure_consumer(name, &ConsumerConfig::new("c"))
            .await
            .expect("consumer");
    }
    let wc = worker.consumer(&tasks, "c").await.expect("c");
    let cc = collector.consumer(&results, "c").await.expect("c");
    let stop = tokio_util::sync::CancellationToken::new();
    let (w_stop, rs2) = (stop.clone(), rs.clone());
    let worker_task = tokio::spawn(async move {
        while !w_stop.is_cancelled() {
            let batch = wc
                .fetch(256, Duration::from_millis(200))
                .await
                .unwrap_or_default();
            let msgs: Vec<Outbound> = batch
                .iter()
                .map(|d| Outbound::new(rs2.clone(), d.payload.clone()))
                .collect();
            let _ = worker.publish_many(msgs).await;
            for d in batch {
                let _ = d.ack().await;
            }
        }
    });
    let payload = vec![7u8; 128];
    let mut lat = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        client
            .publish(Outbound::new(ts.clone(), payload.clone()))
            .await
            .expect("publish");
        let got = cc.fetch(1, Duration::from_secs(5)).await.expect("fetch");
        for d in got {
            let _ = d.ack().await;
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    let n = 20_000;
    let t = Instant::now();
    let mut sent = 0;
    let mut received = 0;
    while received < n {
        let burst = (n - sent).min(1000 - (sent - received));
        if burst > 0 {
            let msgs = (0..burst)
                .map(|_| Outbound::new(ts.clone(), payload.clone()))
                .collect();
            let _ = client.publish_many(msgs).await;
            sent += burst;
        }
        let got = cc.fetch(1000, Duration::from_secs(5)).await.expect("fetch");
        received += got.len();
        for d in got {
            let _ = d.ack().await;
        }
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    stop.cancel();
    let _ = worker_task.await;
    (pct(&lat, 0.5), pct(&lat, 0.99), rate)
}
