//! `make soak`: a long run of the distributed engine, for memory growth and latency drift.
//!
//! `KORA_SOAK_TASKS` NoOp tasks (1,000,000 by default) go through the roles as `kora serve`
//! processes (scheduler, coordinator, one worker with 256 slots) on NATS and PostgreSQL, in runs
//! of varied shapes:
//! - a probe lane: 100-node chains one after another, whose hops (the interval between
//!   consecutive node completions a client sees on the run's events) give the hop latency;
//! - three load lanes, each cycling through a 1,000-node fan-out, a 20-node chain, a 200-node
//!   fan-out and a one-node run.
//!
//! Every `KORA_SOAK_INTERVAL` seconds (10) it samples each role's RSS, the hop p50 and p99 of
//! the chains that ended in the interval and the tasks finished per second, prints a line and
//! appends it to `<KORA_SOAK_OUT>/soak.csv` (target/soak; `make soak` writes docs/soak, then
//! plots it to soak.png). At the end it prints the verdicts: each role's RSS after warm-up (the
//! first quarter of the samples) within ±10 % of its mean, and the idle worker's RSS ≤ 20 MiB.
//! Every run must succeed, or the soak fails.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kora_broker::Broker;
use kora_model::WorkflowSpec;
use kora_model::subjects::Subjects;

const NATS: &str = "nats://127.0.0.1:4222";
const LOAD_LANES: usize = 3;

#[path = "support/installation.rs"]
mod installation;
#[path = "support/raw.rs"]
mod raw;
#[path = "support/targets.rs"]
mod targets;
#[path = "support/workload.rs"]
mod workload;
use installation::{cleanup, create_database, kora_bin, tag};
use raw::{connect, pct};
use workload::{chain_spec, fanout_spec, rss_mib, run_chain, run_one};

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// What the lanes share with the sampler.
#[derive(Default)]
struct Progress {
    tasks: AtomicU64,
    runs: AtomicU64,
    hops: std::sync::Mutex<Vec<f64>>,
    stop: AtomicBool,
}

async fn run() {
    let target = env_num("KORA_SOAK_TASKS", 1_000_000);
    let interval = Duration::from_secs(env_num("KORA_SOAK_INTERVAL", 10).max(1));
    let out =
        std::path::PathBuf::from(std::env::var("KORA_SOAK_OUT").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../target/soak").to_string()
        }));
    std::fs::create_dir_all(&out).expect("output folder");
    let tag = tag('s');
    println!(
        "\nkora soak: {target} NoOp tasks through kora serve processes (scheduler, coordinator, one worker with 256 slots), NATS 127.0.0.1:4222, PostgreSQL 15; sampling every {} s",
        interval.as_secs()
    );
    let (raw_p50, _, _) = raw::raw(NATS, &tag, 1).await;
    println!("raw JetStream round trip, sequential: p50 {raw_p50:.3} ms (1,000 tasks)");
    let db = format!("kora_soak_{tag}");
    let (mut admin, db_url) = create_database(&db).await;
    let prefix = format!("ks{tag}");
    let bin = kora_bin();
    let spawn = |role: &str, extra: &[&str]| {
        std::process::Command::new(&bin)
            .args(["serve", "--role", role])
            .args(extra)
            .env("KORA_NATS_URL", NATS)
            .env("KORA_DATABASE_URL", &db_url)
            .env("KORA_PREFIX", &prefix)
            .env_remove("KORA_CONFIG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("kora serve")
    };
    let mut procs = vec![
        ("scheduler", spawn("scheduler", &[])),
        ("coordinator", spawn("coordinator", &[])),
        ("worker", spawn("worker", &["--concurrency", "256"])),
    ];
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_worker = rss_mib(procs[2].1.id(), "VmRSS");
    let pids: Vec<(&str, u32)> = procs.iter().map(|(r, p)| (*r, p.id())).collect();

    let broker: Arc<dyn Broker> = Arc::new(connect(NATS, "kora-soak").await);
    let subjects = Subjects::new(&prefix).expect("prefix");
    let progress = Arc::new(Progress::default());
    let mut lanes = tokio::task::JoinSet::new();
    {
        let (broker, subjects, progress) =
            (Arc::clone(&broker), subjects.clone(), Arc::clone(&progress));
        lanes.spawn(async move {
            let chain = chain_spec(100);
            while !progress.stop.load(Ordering::Relaxed) {
                let (_, hops) = run_chain(&broker, &subjects, chain.clone()).await;
                progress
                    .hops
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend(hops);
                progress.tasks.fetch_add(100, Ordering::Relaxed);
                progress.runs.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let shapes: Arc<Vec<WorkflowSpec>> = Arc::new(vec![
        fanout_spec(1_000),
        chain_spec(20),
        fanout_spec(200),
        chain_spec(1),
    ]);
    for lane in 0..LOAD_LANES {
        let (broker, subjects, progress, shapes) = (
            Arc::clone(&broker),
            subjects.clone(),
            Arc::clone(&progress),
            Arc::clone(&shapes),
        );
        lanes.spawn(async move {
            let mut k = lane;
            while !progress.stop.load(Ordering::Relaxed) {
                let wf = shapes[k % shapes.len()].clone();
                let n = wf.nodes.len() as u64;
                run_one(&broker, &subjects, wf).await;
                progress.tasks.fetch_add(n, Ordering::Relaxed);
                progress.runs.fetch_add(1, Ordering::Relaxed);
                k += 1;
            }
        });
    }

    let csv_path = out.join("soak.csv");
    let mut csv = std::fs::File::create(&csv_path).expect("csv");
    writeln!(
        csv,
        "elapsed_s,tasks,tasks_per_s,runs,hops,hop_p50_ms,hop_p99_ms,scheduler_rss_mib,coordinator_rss_mib,worker_rss_mib"
    )
    .expect("csv");
    let started = Instant::now();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut last_tasks = 0u64;
    let mut all_hops: Vec<f64> = Vec::new();
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); pids.len()];
    let mut failed: Option<String> = None;
    loop {
        tick.tick().await;
        let tasks = progress.tasks.load(Ordering::Relaxed);
        let mut hops = std::mem::take(
            &mut *progress
                .hops
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        hops.sort_by(f64::total_cmp);
        let (p50, p99) = if hops.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            (pct(&hops, 0.5), pct(&hops, 0.99))
        };
        let now: Vec<f64> = pids.iter().map(|(_, pid)| rss_mib(*pid, "VmRSS")).collect();
        for (all, r) in rss.iter_mut().zip(&now) {
            all.push(*r);
        }
        all_hops.extend_from_slice(&hops);
        let rate = (tasks - last_tasks) as f64 / interval.as_secs_f64();
        last_tasks = tasks;
        let elapsed = started.elapsed().as_secs_f64();
        writeln!(
            csv,
            "{elapsed:.1},{tasks},{rate:.0},{},{},{p50:.3},{p99:.3},{:.1},{:.1},{:.1}",
            progress.runs.load(Ordering::Relaxed),
            hops.len(),
            now[0],
            now[1],
            now[2]
        )
        .expect("csv");
        println!(
            "{elapsed:6.0} s  {tasks:>9} tasks  {rate:>6.0}/s  hop p50 {p50:6.3} ms  p99 {p99:7.3} ms  RSS scheduler {:.1}, coordinator {:.1}, worker {:.1} MiB",
            now[0], now[1], now[2]
        );
        if tasks >= target {
            break;
        }
        if let Some(Err(e)) = lanes.try_join_next() {
            failed = Some(e.to_string());
            break;
        }
    }
    progress.stop.store(true, Ordering::Relaxed);
    while let Some(r) = lanes.join_next().await {
        if let Err(e) = r {
            failed.get_or_insert(e.to_string());
        }
    }
    if let Some(e) = failed {
        for (_, p) in &mut procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        cleanup(NATS, &prefix, &tag, &db, &mut admin).await;
        panic!("a soak lane failed (a run did not succeed): {e}");
    }
    let secs = started.elapsed().as_secs_f64();
    let tasks = progress.tasks.load(Ordering::Relaxed);
    println!(
        "{tasks} tasks in {} runs, {secs:.0} s: {:.0} tasks/s; samples in {}",
        progress.runs.load(Ordering::Relaxed),
        tasks as f64 / secs,
        csv_path.display()
    );
    all_hops.sort_by(f64::total_cmp);
    if !all_hops.is_empty() {
        let (p50, p99) = (pct(&all_hops, 0.5), pct(&all_hops, 0.99));
        println!(
            "100-node chain hops under load, whole soak ({} hops): p50 {p50:.3} ms = {:.2}x the raw sequential p50, p99 {p99:.3} ms",
            all_hops.len(),
            p50 / raw_p50
        );
    }
    for ((role, _), samples) in pids.iter().zip(&rss) {
        let after = &samples[samples.len() / 4..];
        let mean = after.iter().sum::<f64>() / after.len() as f64;
        let worst = after
            .iter()
            .map(|r| (r - mean) / mean * 100.0)
            .fold(0.0f64, |w, d| if d.abs() > w.abs() { d } else { w });
        println!(
            "{role} RSS after warm-up: mean {mean:.1} MiB, furthest sample {worst:+.1} % from it (target within ±10 %): {}",
            if worst.abs() <= 10.0 {
                "met"
            } else {
                "NOT MET"
            }
        );
        targets::record(
            "soak",
            &format!("{role} RSS after warm-up, furthest sample from its mean"),
            worst.abs(),
            "%",
            targets::Limit::AtMost(10.0),
        );
    }
    println!(
        "idle worker RSS after start-up: {idle_worker:.1} MiB (target <= 20 MiB): {}",
        if idle_worker <= 20.0 {
            "met"
        } else {
            "NOT MET"
        }
    );
    for (_, p) in &mut procs {
        let _ = p.kill();
        let _ = p.wait();
    }
    cleanup(NATS, &prefix, &tag, &db, &mut admin).await;
}
