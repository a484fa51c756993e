//! `make bench`: embedded-mode figures. Not a test: it prints measurements.
//!
//! Scenarios (each in its own child process, so peak RSS is its own):
//! - `raw`: the in-memory broker's task round trip with no engine (publish task, fetch, ack,
//!   publish result, fetch, ack), sequential; the baseline the engine figures are divided by.
//! - `chain`: a 1,000-node NoOp chain: per-node latency (each hop waits for the previous one).
//! - `fanout`: a 10,000-node NoOp fan-out: per-node cost at full batching, and peak RSS.
//! - `fanout-once`: one 10,000-node fan-out in a fresh process: its peak RSS.
//! - `python`: a 200-node PythonCodeNode chain: per-node cost, interpreter call included.
//! - `python-call`: PythonCodeNode calls through the warm interpreter pool alone (no engine),
//!   without the sandbox; `python-call-sandboxed` the same with it (#15).
//!
//! Run one directly: `cargo bench -p kora-tests --bench embedded -- chain`.

use std::time::{Duration, Instant};

use kora_broker::memory::MemoryBroker;
use kora_broker::{Broker, ConsumerConfig, Outbound, Retention, StreamConfig};
use kora_cli::embedded::{Engine, EngineConfig};
use kora_model::{Map, WorkflowSpec};
use kora_nodes::NodesConfig;
use serde_json::{Value, json};

const REPEATS: usize = 5;

#[path = "support/targets.rs"]
mod targets;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let Some(s) = args.first() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let line = rt.block_on(scenario(s));
        println!("{line}");
        return;
    }
    println!("kora embedded benchmark: current-thread runtime, memory ledger, release build");
    println!(
        "machine: {} cores; each scenario is a fresh process; median of {REPEATS} runs after a warm-up\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let exe = std::env::current_exe().expect("own path");
    let mut raw_us = None;
    for s in [
        "raw",
        "chain",
        "fanout",
        "fanout-once",
        "python",
        "python-call",
        "python-call-sandboxed",
    ] {
        let out = std::process::Command::new(&exe)
            .arg(s)
            .output()
            .expect("child runs");
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() {
            println!("{s}: FAILED\n{}", String::from_utf8_lossy(&out.stderr));
            continue;
        }
        let v: Value = serde_json::from_str(&text).expect("child prints JSON");
        let per = v["per_node_us"].as_f64().unwrap_or(f64::NAN);
        if s == "raw" {
            raw_us = Some(per);
        }
        let ratio = raw_us
            .filter(|_| s != "raw")
            .map(|r| format!("  = {:.1}x the raw round trip", per / r))
            .unwrap_or_default();
        println!(
            "{:<7} {:>9.2} µs/node (min {:.2}, max {:.2}){ratio}  nodes={} peak_rss={:.1} MiB",
            s,
            per,
            v["min_us"].as_f64().unwrap_or(f64::NAN),
            v["max_us"].as_f64().unwrap_or(f64::NAN),
            v["nodes"],
            v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)
        );
        use targets::Limit::AtMost;
        let rss = v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN);
        match s {
            "chain" => targets::record("embedded", "NoOp chain", per, "µs/node", AtMost(3.0)),
            "fanout" => {
                targets::record(
                    "embedded",
                    "NoOp 10,000-node fan-out",
                    per,
                    "µs/node",
                    AtMost(3.0),
                );
            }
            "fanout-once" => {
                targets::record(
                    "embedded",
                    "one 10,000-node run, peak RSS",
                    rss,
                    "MiB",
                    AtMost(50.0),
                );
            }
            "python-call" => {
                targets::record("embedded", "PythonCodeNode call", per, "µs", AtMost(50.0));
            }
            "python-call-sandboxed" => {
                targets::record(
                    "embedded",
                    "PythonCodeNode call, sandboxed",
                    per,
                    "µs",
                    AtMost(100.0),
                );
            }
            _ => {}
        }
    }
    println!(
        "\ntargets (issues #2 and #12): chain and fanout <= 3 µs/node; python-call <= 50 µs (sandboxed <= 100 µs, #15); a 10,000-node run (fanout-once) < 50 MiB RSS"
    );
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn spec(v: Value) -> WorkflowSpec {
    kora_model::load::from_value(&v)
        .expect("bench workflow loads")
        .0
}

fn chain(n: usize, ty: &str, code: Option<&str>) -> WorkflowSpec {
    let mut nodes = Vec::new();
    let mut conns = Vec::new();
    let (out, inp) = if code.is_some() {
        ("result", "data")
    } else {
        ("data", "data")
    };
    for i in 0..n {
        let mut cfg = json!({});
        if let Some(c) = code {
            cfg["code"] = json!(c);
        }
        if i == 0 {
            cfg["data"] = json!(0);
        }
        nodes.push(json!({"id": format!("n{i}"), "type": ty, "config": cfg}));
        if i > 0 {
            conns.push(json!({"source": format!("n{}", i - 1), "output": out, "target": format!("n{i}"), "input": inp}));
        }
    }
    spec(json!({"nodes": nodes, "connections": conns}))
}

fn fanout(n: usize) -> WorkflowSpec {
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

fn summary(nodes: usize, mut samples: Vec<f64>) -> String {
    samples.sort_by(f64::total_cmp);
    let per: Vec<f64> = samples.iter().map(|s| s * 1e6 / nodes as f64).collect();
    json!({
        "nodes": nodes,
        "per_node_us": per[per.len() / 2],
        "min_us": per[0],
        "max_us": per[per.len() - 1],
        "peak_rss_mib": peak_rss_mib(),
    })
    .to_string()
}

async fn engine_runs(wf: WorkflowSpec, nodes: usize) -> String {
    let cfg = EngineConfig {
        nodes: NodesConfig {
            python_workers: 1,
            ..NodesConfig::default()
        },
        ..EngineConfig::default()
    };
    let engine = Engine::start(cfg).await.expect("engine");
    let _ = engine.run(wf.clone(), Map::new()).await.expect("warm-up");
    let mut samples = Vec::new();
    for _ in 0..REPEATS {
        let t = Instant::now();
        let r = engine.run(wf.clone(), Map::new()).await.expect("run");
        samples.push(t.elapsed().as_secs_f64());
        assert!(r.succeeded(), "bench run failed: {:?}", r.error);
    }
    engine
        .shutdown()
        .await
        .expect("the embedded roles stop cleanly");
    summary(nodes, samples)
}

async fn scenario(name: &str) -> String {
    match name {
        "raw" => raw_round_trip(1000).await,
        "chain" => engine_runs(chain(1000, "NoOpNode", None), 1000).await,
        "fanout" => engine_runs(fanout(10_000), 10_001).await,
        "fanout-once" => one_run(fanout(10_000), 10_001).await,
        "python-call" => python_calls(2000, false).await,
        "python-call-sandboxed" => python_calls(2000, true).await,
        "python" => engine_runs(chain(200, "PythonCodeNode", Some("result = data + 1")), 200).await,
        other => match other
            .strip_prefix("chain:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => engine_runs(chain(n, "NoOpNode", None), n).await,
            None => match other
                .strip_prefix("fanout:")
                .and_then(|n| n.parse::<usize>().ok())
            {
                Some(n) => engine_runs(fanout(n), n + 1).await,
                None => json!({"error": format!("unknown scenario {other}")}).to_string(),
            },
        },
    }
}

/// One run in a fresh process: the peak RSS of a single 10,000-node run, ledger included.
async fn one_run(wf: WorkflowSpec, nodes: usize) -> String {
    let engine = Engine::start(EngineConfig::default())
        .await
        .expect("engine");
    let t = Instant::now();
    let r = engine.run(wf, Map::new()).await.expect("run");
    let took = t.elapsed().as_secs_f64();
    assert!(r.succeeded());
    let line = summary(nodes, vec![took]);
    engine
        .shutdown()
        .await
        .expect("the embedded roles stop cleanly");
    line
}

/// The interpreter pool alone: what one PythonCodeNode call costs, with the sandbox or without.
async fn python_calls(n: usize, sandboxed: bool) -> String {
    let data_root = std::env::temp_dir();
    let sandbox = kora_nodes::sandbox::SandboxConfig {
        enabled: sandboxed,
        ..Default::default()
    };
    let pool = kora_nodes::python::PythonPool::new(
        "python3",
        1,
        Duration::from_secs(10),
        Some((sandbox, data_root)),
    );
    let inputs: Map = json!({"code": "result = data + 1", "data": 1})
        .as_object()
        .cloned()
        .expect("object");
    pool.execute("n", "result = data + 1", &inputs, None)
        .await
        .expect("warm-up");
    let mut samples = Vec::new();
    for _ in 0..REPEATS {
        let t = Instant::now();
        for _ in 0..n {
            pool.execute("n", "result = data + 1", &inputs, None)
                .await
                .expect("call");
        }
        samples.push(t.elapsed().as_secs_f64());
    }
    summary(n, samples)
}

/// The broker alone: what one engine hop costs at the very least.
async fn raw_round_trip(n: usize) -> String {
    let b = MemoryBroker::new();
    for (name, subj) in [("T", "t.>"), ("R", "r.>")] {
        b.ensure_stream(&StreamConfig::new(
            name,
            vec![subj.into()],
            Retention::WorkQueue,
        ))
        .await
        .expect("stream");
        b.ensure_consumer(name, &ConsumerConfig::new("c"))
            .await
            .expect("consumer");
    }
    let tasks = b.consumer("T", "c").await.expect("c");
    let results = b.consumer("R", "c").await.expect("c");
    let mut samples = Vec::new();
    for _ in 0..=REPEATS {
        let t = Instant::now();
        for i in 0..n {
            b.publish(
                Outbound::new("t.x", vec![0u8; 128]).msg_id(format!("t{i}-{}", samples.len())),
            )
            .await
            .expect("pub");
            let d = tasks
                .fetch(1, Duration::from_secs(1))
                .await
                .expect("fetch")
                .remove(0);
            b.publish(
                Outbound::new("r.x", d.payload.clone()).msg_id(format!("r{i}-{}", samples.len())),
            )
            .await
            .expect("pub");
            d.ack().await.expect("ack");
            let r = results
                .fetch(1, Duration::from_secs(1))
                .await
                .expect("fetch")
                .remove(0);
            r.ack().await.expect("ack");
        }
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.remove(0);
    summary(n, samples)
}
