//! `make bench` (gateway part): the HTTP gateway with every role running on this machine, each
//! as its own `kora serve` process (release build), the load generated in this process.
//!
//! - cached credential verification: `Authenticator::authenticate` on an API key already in
//!   its cache (HMAC-SHA256 of the secret under the pepper, constant-time compare), in process.
//! - authenticated reads: `GET /v1/runs/{id}` with an API key from 64 concurrent connections
//!   for 10 s: reads/s, p50, p99.
//! - async submissions: `POST /v1/runs` (a one-node workflow inline) from 64 concurrent
//!   connections, 20,000 of them: submissions/s accepted (202), with the engine running them
//!   meanwhile on the same two cores.
//! - `wait` overhead: 1,000 one-node runs one at a time, alternating `POST /v1/runs?wait=30`
//!   with what `kora submit --wait` does, in process (submit on NATS, wait for the run's end
//!   on its events, read its report from the ledger): the difference of their medians is what
//!   the gateway adds.
//!
//! `KORA_BENCH_ONLY=reads|submissions|wait` runs one measurement (with the credential figure).
//! The gateway's rate limits are off for the run (`gateway.rate_limit.*` = 0): with the
//! defaults one credential gets 1,000 requests/s. Needs NATS and PostgreSQL (`make services-up`)
//! and the release binary (`KORA_BIN`, or target/release/kora, which `make bench` builds).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kora_broker::Broker;
use kora_model::subjects::Subjects;
use serde_json::{Value, json};

const NATS: &str = "nats://127.0.0.1:4222";
const PEPPER: &str = "bench-pepper-0123456789abcdef0123456789abcdef";
const CONNECTIONS: usize = 64;

#[path = "support/installation.rs"]
mod installation;
#[path = "support/raw.rs"]
mod raw;
#[path = "support/targets.rs"]
mod targets;
use installation::{cleanup, create_database, kora_bin, tag};
use raw::{connect, pct};

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

fn one_node() -> Value {
    json!({"kora": 1, "name": "bench-one", "nodes": [{"id": "a", "type": "NoOpNode"}]})
}

async fn run() {
    let tag = tag('g');
    println!(
        "\nkora gateway benchmark: roles as kora serve processes (scheduler, coordinator, worker, gateway), NATS 127.0.0.1:4222, PostgreSQL 15; load from this process (2-thread runtime) on the same 2 cores"
    );
    credential_verification().await;

    let (seq_p50, _, _) = raw::raw(NATS, &tag, 1).await;
    println!("raw JetStream round trip, sequential: p50 {seq_p50:.3} ms (1,000 tasks)");

    let db = format!("kora_bench_{tag}");
    let (mut admin, db_url) = create_database(&db).await;
    let prefix = format!("kg{tag}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let base = format!("http://127.0.0.1:{port}");
    let bin = kora_bin();
    let command = |args: &[&str]| {
        let mut c = std::process::Command::new(&bin);
        c.args(args)
            .env("KORA_NATS_URL", NATS)
            .env("KORA_DATABASE_URL", &db_url)
            .env("KORA_PREFIX", &prefix)
            .env("KORA_GATEWAY__ADDR", format!("127.0.0.1:{port}"))
            .env("KORA_GATEWAY__KEY_PEPPER", PEPPER)
            .env("KORA_GATEWAY__RATE_LIMIT__PER_CREDENTIAL", "0")
            .env("KORA_GATEWAY__RATE_LIMIT__PER_IP", "0")
            .env_remove("KORA_CONFIG");
        c
    };
    let mut procs: Vec<std::process::Child> = ["scheduler", "coordinator", "worker", "gateway"]
        .iter()
        .map(|role| {
            command(&["serve", "--role", role])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("kora serve")
        })
        .collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .expect("client");
    let t = Instant::now();
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the gateway never got ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = command(&[
        "keys", "create", "--tenant", "bench", "--role", "operator", "--format", "json",
    ])
    .output()
    .expect("kora keys create");
    let created: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kora keys create: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let key = created["key"].as_str().expect("key").to_string();

    // A run to read.
    let first: Value = http
        .post(format!("{base}/v1/runs?wait=30"))
        .bearer_auth(&key)
        .json(&json!({"workflow": one_node()}))
        .send()
        .await
        .expect("submit")
        .json()
        .await
        .expect("json");
    let run_id = first["run_id"].as_str().expect("run id").to_string();
    assert_eq!(first["status"], "succeeded", "{first}");

    // `KORA_BENCH_ONLY=reads`, `submissions` or `wait` runs one of them.
    let only = std::env::var("KORA_BENCH_ONLY").unwrap_or_default();
    let pids: Vec<(&str, u32)> = ["scheduler", "coordinator", "worker", "gateway"]
        .into_iter()
        .zip(procs.iter().map(std::process::Child::id))
        .collect();
    if only.is_empty() || only == "reads" {
        reads(&http, &base, &key, &run_id, &pids).await;
    }
    if only.is_empty() || only == "wait" {
        wait_overhead(&http, &base, &key, &prefix, &db).await;
    }
    if only.is_empty() || only == "submissions" {
        submissions(&http, &base, &key, &pids).await;
    }

    for p in &mut procs {
        let _ = p.kill();
        let _ = p.wait();
    }
    cleanup(NATS, &prefix, &tag, &db, &mut admin).await;
}

/// Cached verification of an API key, in process.
async fn credential_verification() {
    use kora_store::Directory;
    let store = Arc::new(kora_store::memory::MemoryStore::new());
    let cfg = kora_gateway::GatewayConfig {
        key_pepper: kora_gateway::config::Secret(PEPPER.into()),
        key_cache_ttl: Duration::from_secs(300),
        ..Default::default()
    };
    let (record, key) = kora_gateway::new_key(
        PEPPER,
        "bench",
        &kora_gateway::CreateKey {
            name: String::new(),
            role: "operator".into(),
            scopes: vec![],
            expires_in: None,
        },
        "bench",
        kora_model::now_ms(),
    )
    .expect("key");
    store.create_api_key(&record).await.expect("store key");
    let auth = kora_gateway::auth::Authenticator::new(&cfg, store);
    auth.authenticate(&key).await.expect("valid"); // fills the cache
    const N: usize = 200_000;
    let mut batch = Vec::with_capacity(N / 100);
    let t = Instant::now();
    for _ in 0..N / 100 {
        let b = Instant::now();
        for _ in 0..100 {
            std::hint::black_box(auth.authenticate(std::hint::black_box(&key)).await.is_ok());
        }
        batch.push(b.elapsed().as_secs_f64() * 1e6 / 100.0);
    }
    let mean = t.elapsed().as_secs_f64() * 1e6 / N as f64;
    batch.sort_by(f64::total_cmp);
    println!(
        "cached API key verification: mean {mean:.2} us, p99 of 100-call batches {:.2} us (200,000 calls; target <= 20 us)",
        pct(&batch, 0.99)
    );
    targets::record(
        "gateway",
        "cached API key verification, mean",
        mean,
        "µs",
        targets::Limit::AtMost(20.0),
    );
}

/// CPU seconds (user + system) a process has used.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command's closing parenthesis: state is field 3; utime and stime 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(14) + ticks(15)) / 100.0
}

/// CPU seconds of every process with this name (PostgreSQL's backends, the NATS server).
fn cpu_secs_named(name: &str) -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .map(cpu_secs)
        .sum()
}

/// Where the CPU went between two snapshots, in cores (CPU seconds per second).
fn cpu_snapshot(pids: &[(&str, u32)]) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = pids
        .iter()
        .map(|(role, pid)| (role.to_string(), cpu_secs(*pid)))
        .collect();
    v.push(("postgres".into(), cpu_secs_named("postgres")));
    v.push(("nats-server".into(), cpu_secs_named("nats-server")));
    v.push(("load generator".into(), cpu_secs(std::process::id())));
    v
}

fn cpu_report(before: &[(String, f64)], after: &[(String, f64)], secs: f64) -> String {
    before
        .iter()
        .zip(after)
        .map(|((name, b), (_, a))| format!("{name} {:.2}", (a - b) / secs))
        .filter(|s| !s.ends_with(" 0.00"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn reads(http: &reqwest::Client, base: &str, key: &str, run_id: &str, pids: &[(&str, u32)]) {
    let url = format!("{base}/v1/runs/{run_id}");
    let run_for = |d: Duration| {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..CONNECTIONS {
            let (http, url, key) = (http.clone(), url.clone(), key.to_string());
            set.spawn(async move {
                let mut lat = Vec::new();
                let end = Instant::now() + d;
                while Instant::now() < end {
                    let t = Instant::now();
                    let r = http.get(&url).bearer_auth(&key).send().await.expect("get");
                    assert_eq!(r.status().as_u16(), 200);
                    r.bytes().await.expect("body");
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                lat
            });
        }
        set
    };
    run_for(Duration::from_secs(2)).join_all().await; // warm-up
    let cpu_before = cpu_snapshot(pids);
    let t = Instant::now();
    let mut lat: Vec<f64> = run_for(Duration::from_secs(10))
        .join_all()
        .await
        .into_iter()
        .flatten()
        .collect();
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_report(&cpu_before, &cpu_snapshot(pids), secs);
    lat.sort_by(f64::total_cmp);
    println!(
        "authenticated GET /v1/runs/{{id}}, {CONNECTIONS} connections, 10 s: {:.0} reads/s (target >= 5,000), p50 {:.2} ms, p99 {:.2} ms (target <= 20 ms), {} reads",
        lat.len() as f64 / secs,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.len()
    );
    println!("  CPU in cores (of 2) while reading: {cpu}");
    let rate = lat.len() as f64 / secs;
    targets::record(
        "gateway",
        "GET /v1/runs/{id} rate",
        rate,
        "reads/s",
        targets::Limit::AtLeast(5000.0),
    );
    targets::record(
        "gateway",
        "GET /v1/runs/{id} p99",
        pct(&lat, 0.99),
        "ms",
        targets::Limit::AtMost(20.0),
    );
}

async fn submissions(http: &reqwest::Client, base: &str, key: &str, pids: &[(&str, u32)]) {
    const N: usize = 20_000;
    let url = format!("{base}/v1/runs");
    let body = Arc::new(json!({"workflow": one_node()}));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cpu_before = cpu_snapshot(pids);
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (http, url, key, body, next) = (
            http.clone(),
            url.clone(),
            key.to_string(),
            Arc::clone(&body),
            Arc::clone(&next),
        );
        set.spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < N {
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&*body)
                    .send()
                    .await
                    .expect("post");
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                assert_eq!(status, 202, "{text}");
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        });
    }
    let mut lat: Vec<f64> = set.join_all().await.into_iter().flatten().collect();
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_report(&cpu_before, &cpu_snapshot(pids), secs);
    lat.sort_by(f64::total_cmp);
    println!(
        "async POST /v1/runs (one-node workflow inline), {CONNECTIONS} connections, {N} runs: {:.0} accepted/s (target >= 2,000), p50 {:.2} ms, p99 {:.2} ms",
        N as f64 / secs,
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    println!("  CPU in cores (of 2) while submitting: {cpu}");
    targets::record(
        "gateway",
        "async POST /v1/runs rate",
        N as f64 / secs,
        "runs/s",
        targets::Limit::AtLeast(2000.0),
    );
    // How long the engine takes to work off the backlog.
    let t = Instant::now();
    loop {
        let mut idle = true;
        for status in ["queued", "running"] {
            let page: Value = http
                .get(format!("{base}/v1/runs?status={status}&limit=1"))
                .bearer_auth(key)
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("json");
            idle &= page["runs"].as_array().is_some_and(Vec::is_empty);
        }
        if idle || t.elapsed() > Duration::from_secs(300) {
            println!(
                "  the engine finished those runs {:.1} s after the last was accepted",
                t.elapsed().as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn wait_overhead(http: &reqwest::Client, base: &str, key: &str, prefix: &str, db: &str) {
    const N: usize = 1_000;
    let broker: Arc<dyn Broker> = Arc::new(connect(NATS, "kora-bench-direct").await);
    let subjects = Subjects::new(prefix).expect("prefix");
    let store = kora_store::pg::PgStore::connect(&kora_store::pg::PgConfig {
        url: format!("postgres://postgres@127.0.0.1:5432/{db}"),
        ..Default::default()
    })
    .await
    .expect("ledger");
    let spec = kora_model::load::from_value(&one_node())
        .map(|(spec, _)| spec)
        .unwrap_or_else(|e| panic!("workflow: {e:?}"));
    let node_ids = vec!["a".to_string()];
    let (mut over_http, mut direct) = (Vec::with_capacity(N), Vec::with_capacity(N));
    for i in 0..N + 20 {
        let t = Instant::now();
        let r: Value = http
            .post(format!("{base}/v1/runs?wait=30"))
            .bearer_auth(key)
            .json(&json!({"workflow": one_node()}))
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("json");
        let h = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(r["status"], "succeeded", "{r}");
        let t = Instant::now();
        let submission = kora_client::runs::Submission {
            tenant: "bench".into(),
            ..kora_client::runs::Submission::new(spec.clone(), Default::default())
        };
        let run_id = submission.run_id.clone();
        let from = kora_client::runs::events_position(broker.as_ref(), &subjects)
            .await
            .expect("position");
        kora_client::runs::submit(broker.as_ref(), &subjects, submission)
            .await
            .expect("submit");
        let ending = kora_client::runs::wait(
            &broker,
            &subjects,
            &run_id,
            from,
            Some(Duration::from_secs(30)),
        )
        .await
        .expect("wait");
        let report = kora_client::RunReport::build(&store, run_id, &node_ids, false, ending)
            .await
            .expect("report");
        assert_eq!(report.status, "succeeded");
        let d = t.elapsed().as_secs_f64() * 1000.0;
        if i >= 20 {
            over_http.push(h);
            direct.push(d);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    // The gateway's own view of those requests: its handler time, without the HTTP transport.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    let series = |suffix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with(&format!("kora_gateway_request_duration_seconds_{suffix}"))
                    && l.contains("route=\"/v1/runs\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let (sum, count) = (series("sum"), series("count"));
    if count > 0.0 {
        println!(
            "  POST /v1/runs as the gateway times it (all {count:.0} so far): mean {:.2} ms; over HTTP, mean {:.2} ms; in process, mean {:.2} ms",
            sum * 1000.0 / count,
            mean(&over_http),
            mean(&direct)
        );
    }
    over_http.sort_by(f64::total_cmp);
    direct.sort_by(f64::total_cmp);
    let (h50, d50) = (pct(&over_http, 0.5), pct(&direct, 0.5));
    println!(
        "one-node run, submit and wait, {N} each alternating: POST /v1/runs?wait p50 {h50:.2} ms (p99 {:.2}), as kora submit --wait in process p50 {d50:.2} ms (p99 {:.2}): the gateway adds {:.2} ms (target <= 1 ms)",
        pct(&over_http, 0.99),
        pct(&direct, 0.99),
        h50 - d50
    );
    targets::record(
        "gateway",
        "POST /v1/runs?wait over kora submit --wait, p50",
        h50 - d50,
        "ms",
        targets::Limit::AtMost(1.0),
    );
}
