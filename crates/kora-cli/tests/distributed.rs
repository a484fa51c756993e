//! The distributed engine with real processes: `kora serve` roles on the machine's NATS and
//! PostgreSQL, each test under its own subject prefix and its own database.
//! Outside CI, missing services skip these tests with a message; with `CI` set they fail.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;

const NATS: &str = "nats://127.0.0.1:4222";

fn admin_url() -> String {
    std::env::var("KORA_TEST_PG_ADMIN")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// One installation: a prefix, a database, and the role processes started for it.
struct Deployment {
    admin: String,
    db: String,
    db_url: String,
    procs: Vec<Child>,
    env: Vec<(String, String)>,
}

impl Deployment {
    async fn new(extra_env: &[(&str, &str)]) -> Option<Deployment> {
        Self::on(&admin_url(), extra_env).await
    }

    /// A deployment whose database is created through `admin` (another PostgreSQL server).
    async fn on(admin: &str, extra_env: &[(&str, &str)]) -> Option<Deployment> {
        static N: AtomicU32 = AtomicU32::new(0);
        let services_up = std::net::TcpStream::connect("127.0.0.1:4222").is_ok()
            && std::net::TcpStream::connect("127.0.0.1:5432").is_ok();
        if !services_up {
            assert!(
                std::env::var("CI").is_err(),
                "NATS or PostgreSQL not reachable; CI must not skip distributed tests"
            );
            eprintln!("skipping: NATS (4222) or PostgreSQL (5432) not reachable");
            return None;
        }
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
            % 1_000_000_000_000;
        let n = N.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("d{t}x{}x{n}", std::process::id());
        let db = format!("kora_test_{prefix}");
        let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
        let db_url = format!("{base}/{db}");
        let mut env = vec![
            ("KORA_NATS_URL".to_string(), NATS.to_string()),
            ("KORA_DATABASE_URL".to_string(), db_url.clone()),
            ("KORA_PREFIX".to_string(), prefix.clone()),
        ];
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Some(Deployment {
            admin: admin.to_string(),
            db,
            db_url,
            procs: Vec::new(),
            env,
        })
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kora"));
        c.current_dir(root()).env_remove("KORA_CONFIG");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Starts `kora serve --role <roles>`; returns its index in `procs`.
    fn serve(&mut self, roles: &str, extra: &[&str]) -> usize {
        self.serve_env(roles, extra, &[])
    }

    fn serve_env(&mut self, roles: &str, extra: &[&str], env: &[(&str, &str)]) -> usize {
        let mut cmd = self.command();
        for (k, v) in env {
            cmd.env(k, v);
        }
        // KORA_TEST_LOGS=DIR keeps each role process's log there (for debugging a failure).
        let stderr = match std::env::var_os("KORA_TEST_LOGS") {
            Some(dir) => {
                let path =
                    Path::new(&dir).join(format!("{}-{}-{roles}.log", self.db, self.procs.len()));
                std::fs::File::create(path).map_or_else(|_| Stdio::null(), Stdio::from)
            }
            None => Stdio::null(),
        };
        let child = cmd
            .args(["serve", "--role", roles])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        self.procs.push(child);
        self.procs.len() - 1
    }

    fn kora(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// `kora submit FILE` (no wait): the run id.
    fn submit(&self, file: &Path) -> String {
        let o = self.kora(&["submit", file.to_str().unwrap()]);
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)))["run_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn submit_wait(&self, file: &Path, params: Option<&Path>) -> serde_json::Value {
        let mut args = vec![
            "submit".to_string(),
            file.display().to_string(),
            "--wait".into(),
            "--timeout".into(),
            "60".into(),
        ];
        if let Some(p) = params {
            args.extend(["--params".into(), p.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = self.kora(&args);
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "submit printed no JSON ({e}): {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
    }

    /// Polls `kora runs show` until the run ends or `limit` passes; returns its last view.
    async fn wait_finished(&self, run_id: &str, limit: Duration) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let o = self.kora(&["runs", "show", run_id, "--format", "json"]);
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            if v["status"] == "succeeded" || v["status"] == "failed" || started.elapsed() > limit {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn finish(self) {
        drop(self);
    }
}

impl Drop for Deployment {
    /// Stops the processes, deletes the installation's streams and drops the database, even
    /// when the test failed.
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        let (db, admin) = (self.db.clone(), self.admin.clone());
        let var = |name: &str| {
            self.env
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let (nats, prefix) = (
            var("KORA_NATS_URL"),
            var("KORA_PREFIX").to_ascii_uppercase(),
        );
        // Drop runs inside the test's runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let cfg = kora_broker::nats::NatsConfig {
                    url: nats,
                    ..Default::default()
                };
                let connect = kora_broker::nats::JetStreamBroker::connect(&cfg);
                if let Ok(Ok(b)) = tokio::time::timeout(Duration::from_secs(3), connect).await {
                    let _ = b.delete_streams_with_prefix(&format!("{prefix}_")).await;
                }
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Every Kailash reference case gives Kailash's results on the distributed engine too.
#[tokio::test]
async fn distributed_runs_match_kailash() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    d.serve("scheduler,coordinator", &["--metrics-addr", &metrics_addr]);
    d.serve("worker", &["--data-root", "examples/customer-routing"]);
    d.serve("worker", &["--data-root", "examples/customer-routing"]);
    let mut failures = Vec::new();
    let mut cases = 0;
    for base in ["examples", "tests/conformance"] {
        for e in std::fs::read_dir(root().join(base)).unwrap().flatten() {
            let dir = e.path();
            let Ok(expected) = std::fs::read_to_string(dir.join("expected.json")) else {
                continue;
            };
            let expected: serde_json::Value = serde_json::from_str(&expected).unwrap();
            let file = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("workflow.")
                })
                .unwrap();
            let params = dir.join("params.json");
            let out = d.submit_wait(&file, params.exists().then_some(params.as_path()));
            let status = out["status"].as_str().unwrap_or("");
            for diff in kora_cli::conformance::compare(&expected, status, &out["results"]) {
                failures.push(format!("{}: {diff}", dir.display()));
            }
            cases += 1;
        }
    }
    assert!(cases >= 16, "cases run: {cases}");
    assert!(
        failures.is_empty(),
        "differences from Kailash on the distributed engine:\n{}",
        failures.join("\n")
    );
    // The ledger lists them all.
    let o = d.kora(&["runs", "list", "--limit", "100", "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), cases);
    // The coordinator's counters, as Prometheus scrapes them.
    let (status, body) = http_get(&metrics_addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    let counter = |name: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(counter("kora_runs_started_total") as usize, cases);
    assert!(counter("kora_results_recorded_total") >= cases as f64);
    assert!(counter("kora_ledger_commit_seconds_count") >= 1.0);
    assert_eq!(http_get(&metrics_addr, "/healthz").0, 200);
    assert_eq!(http_get(&metrics_addr, "/nope").0, 404);
    d.finish().await;
}

/// A plain HTTP/1.1 GET: the status code and the body.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
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

/// kill -9 a worker while it runs a long (heartbeating) task: the task is redelivered to
/// another worker after the ack wait and the run completes, with the node recorded once. The
/// task (5 s) outlives the ack wait (3 s): on the live worker its heartbeats keep it from
/// being redelivered again, so it starts twice (killed, then completed) and completes once.
#[tokio::test]
async fn killed_worker_task_is_redelivered_and_the_run_completes() {
    let Some(mut d) = Deployment::new(&[
        ("KORA_TASKS__ACK_WAIT_SECS", "3"),
        ("KORA_WORKER__HEARTBEAT_SECS", "1"),
    ])
    .await
    else {
        return;
    };
    d.serve("scheduler,coordinator", &[]);
    let first = d.serve("worker", &[]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("executions.log");
    let wf = dir.path().join("slow.json");
    let code = format!(
        "import time\nopen({log:?}, 'a').write('start\\n')\ntime.sleep(5)\nopen({log:?}, 'a').write('end\\n')\nresult = 'done'",
        log = log.display().to_string()
    );
    std::fs::write(
        &wf,
        serde_json::json!({"nodes": [{"id": "slow", "type": "PythonCodeNode", "config": {"code": code}},
                     {"id": "after", "type": "PythonCodeNode", "config": {"code": "result = x + '!'"}}],
            "connections": [{"from": "slow", "to": "after", "from_output": "result", "to_input": "x"}]})
        .to_string(),
    )
    .unwrap();
    let run_id = d.submit(&wf);
    // Let the first worker take the task, then kill it mid-task.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.procs[first].kill().unwrap();
    d.procs[first].wait().unwrap();
    d.serve("worker", &[]);
    let status = d.wait_finished(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(status["results"]["after"]["result"], "done!");
    // One recorded outcome per node: the lost attempt did not count twice.
    let store = kora_store::pg::PgStore::connect(&kora_store::pg::PgConfig {
        url: d.db_url.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    use kora_store::Store;
    let attempts = store.attempts(&run_id).await.unwrap();
    let slow: Vec<_> = attempts
        .iter()
        .filter(|a| a.node_id == "slow" && a.seq.is_some())
        .collect();
    assert_eq!(slow.len(), 1, "{attempts:?}");
    // It really was redelivered: run by the first worker from dispatch, it would finish ~5 s
    // later. Redelivered after the 3 s ack wait that followed the kill, it finishes more than
    // 7 s after dispatch.
    let took = slow[0].finished_ms.unwrap() - slow[0].dispatched_ms;
    assert!(
        took > 7000,
        "slow finished {took} ms after dispatch: no redelivery happened"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let count = |n: &str| text.lines().filter(|l| *l == n).count();
    assert_eq!(
        (count("start"), count("end")),
        (2, 1),
        "started by the killed worker and once more, completed once:\n{text}"
    );
    store.close().await;
    d.finish().await;
}

/// SIGTERM drains and exits 0 promptly.
#[tokio::test]
async fn sigterm_stops_serve_cleanly() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    let i = d.serve("all", &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = d.procs[i].id().to_string();
    let t = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = d.procs[i].wait().unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    d.finish().await;
}

/// Two schedulers, two coordinators and two workers share every run: no node executes twice
/// and no fan-in is lost. Each node appends its id to a file (a side effect we can count).
#[tokio::test]
async fn two_coordinators_and_schedulers_never_double_dispatch_or_lose_a_fan_in() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    for _ in 0..2 {
        d.serve("scheduler", &[]);
        d.serve("coordinator", &[]);
    }
    let dir = tempfile::tempdir().unwrap();
    let root_dir = dir.path().to_str().unwrap().to_string();
    d.serve("worker", &["--data-root", &root_dir]);
    d.serve("worker", &["--data-root", &root_dir]);
    let branches = 30;
    let mut nodes = vec![
        serde_json::json!({"id": "start", "type": "PythonCodeNode", "config": {"code": "result = 1"}}),
    ];
    let mut conns = Vec::new();
    let mut fan_in_code = String::from("open(log, 'a').write(run + ':sum\\n')\nresult = 0");
    for i in 0..branches {
        let code = format!("open(log, 'a').write(run + ':b{i}\\n')\nresult = x + {i}");
        nodes.push(serde_json::json!({"id": format!("b{i}"), "type": "PythonCodeNode", "config": {"code": code}}));
        conns.push(serde_json::json!({"source": "start", "output": "result", "target": format!("b{i}"), "input": "x"}));
        conns.push(serde_json::json!({"source": format!("b{i}"), "output": "result", "target": "sum", "input": format!("v{i}")}));
        fan_in_code.push_str(&format!(" + v{i}"));
    }
    nodes.push(
        serde_json::json!({"id": "sum", "type": "PythonCodeNode", "config": {"code": fan_in_code}}),
    );
    let wf = dir.path().join("fan.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "nodes": nodes, "connections": conns}).to_string(),
    )
    .unwrap();
    let log = dir.path().join("executions.log");
    let runs = 10;
    let mut waiters = Vec::new();
    for r in 0..runs {
        let params = serde_json::json!({"log": log.display().to_string(), "run": format!("r{r}")})
            .to_string();
        let mut c = d.command();
        c.args([
            "submit",
            wf.to_str().unwrap(),
            "--params",
            &params,
            "--wait",
            "--timeout",
            "90",
        ]);
        waiters.push(
            c.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    let want: i64 = branches + (0..branches).sum::<i64>();
    for w in waiters {
        let o = w.wait_with_output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        });
        assert_eq!(v["status"], "succeeded", "{v}");
        assert_eq!(
            v["results"]["sum"]["result"], want,
            "the fan-in saw every branch"
        );
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let mut counts = std::collections::HashMap::new();
    for line in text.lines() {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    assert_eq!(
        counts.len() as i64,
        runs * (branches + 1),
        "every node of every run executed"
    );
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "executed more than once: {twice:?}");
    d.finish().await;
}

/// The coordinator dies right after committing a run's first dispatch and before publishing
/// it (a failpoint aborts the process there). A new coordinator's outbox sweeper re-sends the
/// lost tasks and the run completes, each node recorded once.
#[tokio::test]
async fn coordinator_crash_between_commit_and_publish_loses_nothing() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    d.serve("scheduler", &[]);
    d.serve("worker", &[]);
    let doomed = d.serve_env(
        "coordinator",
        &[],
        &[("KORA_FAILPOINT", "coordinator-after-commit")],
    );
    let run_id = d.submit(Path::new("examples/diamond/workflow.json"));
    let started = Instant::now();
    let crashed = loop {
        if let Some(status) = d.procs[doomed].try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the coordinator never reached the failpoint"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        !crashed.success(),
        "the coordinator aborted at the failpoint: {crashed}"
    );
    d.serve("coordinator", &[]);
    let status = d.wait_finished(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(status["results"]["report"]["merged_data"]["max"], 16);
    let store = kora_store::pg::PgStore::connect(&kora_store::pg::PgConfig {
        url: d.db_url.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    use kora_store::Store;
    let attempts = store.attempts(&run_id).await.unwrap();
    assert_eq!(attempts.len(), 5, "one attempt per node: {attempts:?}");
    assert!(
        attempts.iter().all(|a| a.seq.is_some()),
        "every node recorded: {attempts:?}"
    );
    store.close().await;
    d.finish().await;
}

/// The NATS server (a private current release the test owns) is killed and restarted mid-run:
/// the roles reconnect by themselves and the run completes.
#[tokio::test]
async fn nats_restart_mid_run_roles_reconnect_and_the_run_completes() {
    let Some(bin) = kora_broker::testing::TestServer::current_bin() else {
        assert!(
            std::env::var("CI").is_err(),
            "no current nats-server: run .ci/services-up (CI must not skip)"
        );
        eprintln!("skipping: no current nats-server");
        return;
    };
    let mut server = kora_broker::testing::TestServer::start(&bin);
    let url = server.url();
    let Some(mut d) = Deployment::new(&[("KORA_NATS_URL", url.as_str())]).await else {
        return;
    };
    d.serve("all", &[]);
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("chain.json");
    let mut nodes = Vec::new();
    let mut conns = Vec::new();
    for i in 0..8 {
        let code = if i == 0 {
            "import time\ntime.sleep(0.4)\nresult = 0".to_string()
        } else {
            "import time\ntime.sleep(0.4)\nresult = x + 1".to_string()
        };
        nodes.push(serde_json::json!({"id": format!("n{i}"), "type": "PythonCodeNode", "config": {"code": code}}));
        if i > 0 {
            conns.push(serde_json::json!({"source": format!("n{}", i - 1), "output": "result", "target": format!("n{i}"), "input": "x"}));
        }
    }
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "nodes": nodes, "connections": conns}).to_string(),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let run_id = d.submit(&wf);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    server.restart();
    let status = d.wait_finished(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(status["results"]["n7"]["result"], 7);
    d.finish().await;
}

/// A private PostgreSQL 15 server the test owns (initdb into a temporary directory, run as the
/// `postgres` user when the tests run as root), so it can be stopped and started without
/// disturbing the machine's server that other tests share.
struct PrivatePg {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_root: bool,
}

impl PrivatePg {
    fn bin() -> Option<PathBuf> {
        let bin = PathBuf::from("/usr/lib/postgresql/15/bin");
        bin.join("initdb").exists().then_some(bin)
    }

    fn run(&self, tool: &str, args: &[&str]) -> std::process::ExitStatus {
        let exe = self.bin.join(tool);
        let mut c = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        c.args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    }

    fn start_new(bin: PathBuf) -> PrivatePg {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = root()
            .join("target/tmp")
            .join(format!("pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        if as_root {
            // initdb refuses to run as root: the server runs as the `postgres` user.
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.parent().unwrap())
                .status();
        }
        let pg = PrivatePg {
            bin,
            dir,
            port,
            as_root,
        };
        let data = pg.dir.join("data");
        let status = pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        );
        assert!(status.success(), "initdb failed");
        pg.start();
        pg
    }

    fn start(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.display()
        );
        let status = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
        assert!(status.success(), "pg_ctl start failed");
    }

    /// Stops the server as a crash would (no shutdown checkpoint; recovery on the next start).
    fn crash(&self) {
        let data = self.dir.join("data");
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// PostgreSQL (a private server the test owns) goes down mid-run and comes back: the
/// coordinator's commits fail, it backs off and retries, and once the database answers again
/// the run completes with every node recorded once.
#[tokio::test]
async fn postgres_restart_mid_run_roles_retry_and_the_run_completes() {
    let Some(bin) = PrivatePg::bin() else {
        assert!(
            std::env::var("CI").is_err(),
            "no PostgreSQL 15 binaries; CI must not skip"
        );
        eprintln!("skipping: no /usr/lib/postgresql/15/bin");
        return;
    };
    let pg = PrivatePg::start_new(bin);
    // Writes give up waiting for a connection after 0.5 s, so the outage below makes commits
    // fail and the coordinator's retry-with-backoff path runs.
    let Some(mut d) = Deployment::on(
        &pg.admin_url(),
        &[("KORA_DATABASE__ACQUIRE_TIMEOUT_SECS", "0.5")],
    )
    .await
    else {
        return;
    };
    d.serve("all", &[]);
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("chain.json");
    std::fs::write(&wf, sleepy_chain(8, 0.4)).unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let run_id = d.submit(&wf);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    pg.crash();
    // Down for longer than a node takes: results pile up on the ledger stream meanwhile.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    pg.start();
    let status = d.wait_finished(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(status["results"]["n7"]["result"], 7);
    let store = kora_store::pg::PgStore::connect(&kora_store::pg::PgConfig {
        url: d.db_url.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    use kora_store::Store;
    let attempts = store.attempts(&run_id).await.unwrap();
    assert_eq!(attempts.len(), 8, "one attempt per node: {attempts:?}");
    let mut seqs: Vec<u64> = attempts.iter().filter_map(|a| a.seq).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=8).collect::<Vec<u64>>(),
        "each node recorded once"
    );
    store.close().await;
    d.finish().await;
    drop(pg);
}

/// A JSON workflow: a chain of `n` PythonCodeNodes, each sleeping `secs` and adding one.
fn sleepy_chain(n: usize, secs: f64) -> String {
    let mut nodes = Vec::new();
    let mut conns = Vec::new();
    for i in 0..n {
        let code = if i == 0 {
            format!("import time\ntime.sleep({secs})\nresult = 0")
        } else {
            format!("import time\ntime.sleep({secs})\nresult = x + 1")
        };
        nodes.push(serde_json::json!({"id": format!("n{i}"), "type": "PythonCodeNode", "config": {"code": code}}));
        if i > 0 {
            conns.push(serde_json::json!({"source": format!("n{}", i - 1), "output": "result", "target": format!("n{i}"), "input": "x"}));
        }
    }
    serde_json::json!({"kora": 1, "nodes": nodes, "connections": conns}).to_string()
}

/// The scheduler dies after handing a run to the coordinator and before acking the request (a
/// failpoint aborts it there), with more requests queued behind it. A new scheduler admits the
/// redelivered request again: every run completes, each exactly once.
#[tokio::test]
async fn scheduler_crash_after_admitting_loses_and_duplicates_nothing() {
    // Redelivered 2 s after the crash rather than the default 30.
    let Some(mut d) = Deployment::new(&[("KORA_CONTROL__ACK_WAIT_SECS", "2")]).await else {
        return;
    };
    d.serve("coordinator,worker", &[]);
    // Requests published while no scheduler runs wait on the runs stream.
    let mut run_ids = Vec::new();
    for _ in 0..5 {
        run_ids.push(d.submit(Path::new("examples/diamond/workflow.json")));
    }
    let doomed = d.serve_env(
        "scheduler",
        &[],
        &[("KORA_FAILPOINT", "scheduler-after-admit")],
    );
    let started = Instant::now();
    let crashed = loop {
        if let Some(status) = d.procs[doomed].try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the scheduler never reached the failpoint"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!crashed.success(), "aborted at the failpoint: {crashed}");
    d.serve("scheduler", &[]);
    let store = kora_store::pg::PgStore::connect(&kora_store::pg::PgConfig {
        url: d.db_url.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    use kora_store::Store;
    for run_id in &run_ids {
        let status = d.wait_finished(run_id, Duration::from_secs(60)).await;
        assert_eq!(status["status"], "succeeded", "{status}");
        assert_eq!(status["results"]["report"]["merged_data"]["max"], 16);
        let attempts = store.attempts(run_id).await.unwrap();
        assert_eq!(attempts.len(), 5, "one attempt per node: {attempts:?}");
        let events = store.events(run_id).await.unwrap();
        let accepted = events
            .iter()
            .filter(|e| e.kind == kora_model::wire::EventKind::RunAccepted)
            .count();
        assert_eq!(accepted, 1, "the run was started once");
    }
    let all = store.runs(&kora_store::RunFilter::default()).await.unwrap();
    assert_eq!(all.len(), run_ids.len(), "no extra runs: {all:?}");
    store.close().await;
    d.finish().await;
}

/// Retries on real roles: a node failing retryably succeeds on its third attempt, each retry
/// no sooner than its delay; the coordinator that scheduled the first retry is killed -9
/// before sending it, and the next coordinator's sweeper sends it once due. Upstream ran once.
#[tokio::test]
async fn retries_follow_the_policy_and_survive_a_coordinator_crash() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    d.serve("scheduler,worker", &[]);
    let first = d.serve("coordinator", &[]);
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("flaky.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "nodes": [
            {"id": "up", "type": "NoOpNode", "config": {"data": 1}},
            {"id": "flaky", "type": "FailNode", "config": {"succeed_on_attempt": 3, "retryable": true},
             "retry": {"max_attempts": 4, "initial_delay_ms": 1500, "multiplier": 2.0, "jitter": false}}],
            "connections": [{"source": "up", "output": "data", "target": "flaky", "input": "data"}]})
        .to_string(),
    )
    .unwrap();
    let run_id = d.submit(&wf);
    let store = kora_store::pg::PgStore::connect(&kora_store::pg::PgConfig {
        url: d.db_url.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    use kora_store::Store;
    // Wait until the first retry is scheduled (its attempt row exists), then kill the
    // coordinator holding it before its 1.5 s delay is over.
    let started = Instant::now();
    loop {
        let rows = store.attempts(&run_id).await.unwrap();
        if rows.iter().any(|a| a.node_id == "flaky" && a.attempt == 2) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no retry scheduled: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.procs[first].kill().unwrap();
    d.procs[first].wait().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    d.serve("coordinator", &["--metrics-addr", &metrics_addr]);
    let status = d.wait_finished(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    let (_, metrics) = http_get(&metrics_addr, "/metrics");
    assert!(
        metrics.contains("kora_tasks_republished_total 1\n"),
        "the new coordinator's sweeper sent the lost retry:\n{metrics}"
    );
    assert!(
        metrics.contains("kora_tasks_retried_total 1\n"),
        "and scheduled the second retry itself:\n{metrics}"
    );
    let attempts = store.attempts(&run_id).await.unwrap();
    let of = |node: &str| -> Vec<&kora_store::AttemptRecord> {
        let mut v: Vec<_> = attempts.iter().filter(|a| a.node_id == node).collect();
        v.sort_by_key(|a| a.attempt);
        v
    };
    assert_eq!(of("up").len(), 1, "upstream ran once: {attempts:?}");
    let flaky = of("flaky");
    use kora_store::AttemptStatus::{Failed, Succeeded};
    let statuses: Vec<_> = flaky.iter().map(|a| (a.attempt, a.status)).collect();
    assert_eq!(statuses, [(1, Failed), (2, Failed), (3, Succeeded)]);
    let gap = |i: usize| flaky[i].finished_ms.unwrap() - flaky[i - 1].finished_ms.unwrap();
    // The crashed coordinator's retry is re-sent by the sweeper: no sooner than its delay.
    assert!(
        gap(1) >= 1500,
        "attempt 2 came {} ms after attempt 1",
        gap(1)
    );
    // The second is the new coordinator's own: its 3 s delay, give or take scheduling.
    assert!(
        (3000..5000).contains(&gap(2)),
        "attempt 3 came {} ms after attempt 2",
        gap(2)
    );
    store.close().await;
    d.finish().await;
}

/// The operator loop for a poison input: a node fails permanently (division by zero), is
/// dead-lettered with its inputs, and its run fails. `kora dlq list` and `show` present it;
/// `kora dlq replay ID --set divisor=5` runs it again with the input fixed; the run resumes and
/// succeeds. The upstream node ran exactly once (an execution log counts), the replay is in
/// the audit trail, and a second replay is refused.
#[tokio::test]
async fn dead_letter_replayed_with_a_fixed_input_resumes_the_run() {
    let Some(mut d) = Deployment::new(&[("KORA_ACTOR", "ops-test")]).await else {
        return;
    };
    d.serve("all", &[]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("executions.log");
    let logline = |name: &str| {
        format!(
            "open({:?}, 'a').write('{name}\\n')\n",
            log.display().to_string()
        )
    };
    let wf = dir.path().join("divide.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "name": "divide", "nodes": [
            {"id": "up", "type": "PythonCodeNode", "config": {"code": format!("{}result = 10", logline("up"))}},
            {"id": "divide", "type": "PythonCodeNode",
             "config": {"code": format!("{}result = 100 / (x - divisor)", logline("divide")), "divisor": 10}},
            {"id": "after", "type": "PythonCodeNode", "config": {"code": format!("{}result = y + 1", logline("after"))}}],
            "connections": [
                {"source": "up", "output": "result", "target": "divide", "input": "x"},
                {"source": "divide", "output": "result", "target": "after", "input": "y"}]})
        .to_string(),
    )
    .unwrap();
    let first = d.submit_wait(&wf, None);
    assert_eq!(first["status"], "failed", "{first}");
    let run_id = first["run_id"].as_str().unwrap().to_string();

    let o = d.kora(&["dlq", "list", "--workflow", "divide", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(id, format!("{run_id}:divide:0:1"));
    assert_eq!(list[0]["reason"], "permanent_error");
    assert_eq!(list[0]["inputs"]["x"], 10, "the inputs it failed with");
    assert!(
        list[0]["error"]
            .as_str()
            .unwrap()
            .contains("division by zero"),
        "{}",
        list[0]["error"]
    );
    let o = d.kora(&["dlq", "show", &id]);
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(
        shown.contains("reason permanent_error") && shown.contains("ZeroDivisionError"),
        "{shown}"
    );

    let o = d.kora(&["dlq", "replay", &id, "--set", "divisor=5"]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let status = d.wait_finished(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(status["results"]["divide"]["result"], 20.0);
    assert_eq!(status["results"]["after"]["result"], 21.0);
    let text = std::fs::read_to_string(&log).unwrap();
    let count = |n: &str| text.lines().filter(|l| *l == n).count();
    assert_eq!(
        (count("up"), count("divide"), count("after")),
        (1, 2, 1),
        "upstream not executed again:\n{text}"
    );
    // The audit trail, and no second replay of the same dead letter.
    let o = d.kora(&[
        "dlq",
        "list",
        "--any-state",
        "--run",
        &run_id,
        "--format",
        "json",
    ]);
    let all: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(all[0]["state"], "replayed");
    assert_eq!(all[0]["replayed_by"], "ops-test");
    assert_eq!(all[0]["replay_attempt"], 2);
    let o = d.kora(&["dlq", "replay", &id]);
    assert!(
        !o.status.success(),
        "a replayed dead letter is not replayed twice"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already replayed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    d.finish().await;
}

/// SIGTERM drains a busy worker: it stops pulling, lets its running task (2 s) finish and
/// report, and exits 0 well within its grace period; the run succeeds with that one execution.
/// A second worker busy with a long task gets two signals and stops at once (exit 130), and
/// its task is handed to another worker.
#[tokio::test]
async fn sigterm_drains_a_busy_worker_and_a_second_signal_stops_it_at_once() {
    let Some(mut d) = Deployment::new(&[
        ("KORA_WORKER__DRAIN_GRACE_SECS", "15"),
        ("KORA_TASKS__ACK_WAIT_SECS", "4"),
        ("KORA_WORKER__HEARTBEAT_SECS", "1"),
    ])
    .await
    else {
        return;
    };
    d.serve("scheduler,coordinator", &[]);
    let busy = d.serve("worker", &[]);
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let log = dir.path().join("executions.log");
    let wf = dir.path().join("slow.json");
    let code = |secs: f64| {
        format!(
            "import time\nopen({:?}, 'a').write('x\\n')\nopen({:?}, 'w').write('1')\ntime.sleep({secs})\nresult = 'done'",
            log.display().to_string(),
            started.display().to_string()
        )
    };
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "nodes": [
            {"id": "slow", "type": "PythonCodeNode", "config": {"code": code(2.0)}}]})
        .to_string(),
    )
    .unwrap();
    let sigterm = |pid: u32| {
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    let wait_started = async || {
        let t = Instant::now();
        while !started.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the task never started"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let run_id = d.submit(&wf);
    wait_started().await;
    let t = Instant::now();
    sigterm(d.procs[busy].id());
    let status = d.procs[busy].wait().unwrap();
    let took = t.elapsed();
    assert!(status.success(), "a drained worker exits 0: {status}");
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(10),
        "it waited for its task and no longer: {took:?}"
    );
    let done = d.wait_finished(&run_id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["results"]["slow"]["result"], "done");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        1,
        "executed once"
    );

    // A second signal: stop now. The task goes back to the queue and another worker runs it.
    std::fs::remove_file(&started).unwrap();
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "nodes": [
            {"id": "slow", "type": "PythonCodeNode", "config": {"code": code(1.0)}}]})
        .to_string(),
    )
    .unwrap();
    let stubborn = d.serve_env("worker", &[], &[("KORA_WORKER__DRAIN_GRACE_SECS", "60")]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let run2 = d.submit(&wf);
    wait_started().await;
    let t = Instant::now();
    sigterm(d.procs[stubborn].id());
    tokio::time::sleep(Duration::from_millis(200)).await;
    sigterm(d.procs[stubborn].id());
    let status = d.procs[stubborn].wait().unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "the second signal stops it without waiting for the 1 s task: {:?}",
        t.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{status}");
    d.serve("worker", &[]);
    let done = d.wait_finished(&run2, Duration::from_secs(30)).await;
    assert_eq!(
        done["status"], "succeeded",
        "handed to another worker: {done}"
    );
    d.finish().await;
}

/// `kora runs cancel` mid-run: the run is recorded cancelled within moments, the running node's
/// task is stopped on its worker (its interpreter never reaches the end of its sleep), nothing
/// downstream is dispatched, and the run's events end with `run_cancelled`.
#[tokio::test]
async fn cancelling_a_run_stops_its_running_task_and_dispatches_nothing_more() {
    let Some(mut d) = Deployment::new(&[("KORA_ACTOR", "ops-test")]).await else {
        return;
    };
    d.serve("all", &[]);
    let dir = tempfile::tempdir().unwrap();
    let (started, finished, next) = (
        dir.path().join("started"),
        dir.path().join("finished"),
        dir.path().join("next"),
    );
    let wf = dir.path().join("slow.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "nodes": [
            {"id": "slow", "type": "PythonCodeNode", "config": {"code": format!(
                "import time\nopen({:?}, 'w').write('1')\ntime.sleep(4)\nopen({:?}, 'w').write('1')\nresult = 1",
                started.display().to_string(), finished.display().to_string())}},
            {"id": "next", "type": "PythonCodeNode", "config": {"code": format!(
                "open({:?}, 'w').write('1')\nresult = x", next.display().to_string())}}],
            "connections": [{"source": "slow", "output": "result", "target": "next", "input": "x"}]})
        .to_string(),
    )
    .unwrap();
    let run_id = d.submit(&wf);
    let t = Instant::now();
    while !started.exists() {
        assert!(t.elapsed() < Duration::from_secs(20), "never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Instant::now();
    let o = d.kora(&["runs", "cancel", &run_id]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("cancelled"));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    // Past the node's 4 s: its task was stopped, and nothing after it ran.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!finished.exists(), "the running task was not stopped");
    assert!(!next.exists(), "a node was dispatched after the cancel");
    let o = d.kora(&["runs", "show", &run_id, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "cancelled", "{v}");
    assert_eq!(v["error"], "cancelled by ops-test");
    let store = kora_store::pg::PgStore::connect(&kora_store::pg::PgConfig {
        url: d.db_url.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    use kora_store::Store;
    let events = store.events(&run_id).await.unwrap();
    assert_eq!(
        events.last().map(|e| e.kind),
        Some(kora_model::wire::EventKind::RunCancelled)
    );
    store.close().await;
    d.finish().await;
}

/// A poison task that kills the worker running it (here the Python node kills its own worker
/// process) reaches its max deliveries; the coordinator, told by the server's captured advisory,
/// dead-letters it as `worker_lost` and the run fails by Kailash's rules instead of hanging.
#[tokio::test]
async fn a_task_that_keeps_killing_its_workers_is_dead_lettered_as_worker_lost() {
    let Some(mut d) = Deployment::new(&[
        ("KORA_TASKS__MAX_DELIVER", "2"),
        ("KORA_TASKS__ACK_WAIT_SECS", "2"),
        ("KORA_WORKER__HEARTBEAT_SECS", "1"),
    ])
    .await
    else {
        return;
    };
    d.serve("scheduler,coordinator", &[]);
    // One worker per delivery (each dies), and one that is still alive at the end.
    d.serve("worker", &[]);
    d.serve("worker", &[]);
    d.serve("worker", &[]);
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("poison.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "name": "poison", "nodes": [
            {"id": "killer", "type": "PythonCodeNode",
             "config": {"code": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nresult = 1"}},
            {"id": "after", "type": "NoOpNode"}],
            "connections": [{"source": "killer", "output": "result", "target": "after", "input": "data"}]})
        .to_string(),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let run_id = d.submit(&wf);
    let status = d.wait_finished(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "failed", "{status}");
    let o = d.kora(&[
        "dlq",
        "list",
        "--reason",
        "worker_lost",
        "--run",
        &run_id,
        "--format",
        "json",
    ]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["node_id"], "killer");
    assert!(
        list[0]["error"]
            .as_str()
            .unwrap()
            .contains("delivered 2 times"),
        "{}",
        list[0]["error"]
    );
    d.finish().await;
}

/// `kora runs retry` resumes a failed run from its failed node (here one that fails only on its
/// first attempt): the run succeeds; asking again finds nothing to resume.
#[tokio::test]
async fn runs_retry_resumes_a_failed_run_from_its_failed_node() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    d.serve("all", &[]);
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("once.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "nodes": [
            {"id": "a", "type": "NoOpNode", "config": {"data": 7}},
            {"id": "f", "type": "FailNode", "config": {"succeed_on_attempt": 2}},
            {"id": "z", "type": "NoOpNode"}],
            "connections": [
                {"source": "a", "output": "data", "target": "f", "input": "data"},
                {"source": "f", "output": "data", "target": "z", "input": "data"}]})
        .to_string(),
    )
    .unwrap();
    let first = d.submit_wait(&wf, None);
    assert_eq!(first["status"], "failed", "{first}");
    let run_id = first["run_id"].as_str().unwrap().to_string();
    let o = d.kora(&["runs", "retry", &run_id]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let status = d.wait_finished(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(status["results"]["z"]["data"], 7);
    let o = d.kora(&["runs", "retry", &run_id]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no open dead letter"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    d.finish().await;
}

/// `kora runs retry RUN --from NODE` restarts a run that succeeded from a middle node with a
/// changed input: that node and the one downstream of it run again (counted in an execution
/// log); the upstream node and an independent branch do not. From a node that is not in the
/// workflow, or while the run is running, it is refused with a clear message.
#[tokio::test]
async fn runs_retry_from_a_node_reruns_it_and_its_downstream_only() {
    let Some(mut d) = Deployment::new(&[("KORA_ACTOR", "ops-test")]).await else {
        return;
    };
    d.serve("all", &[]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("executions.log");
    let logline = |name: &str| {
        format!(
            "open({:?}, 'a').write('{name}\\n')\n",
            log.display().to_string()
        )
    };
    let wf = dir.path().join("scale.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "name": "scale", "nodes": [
            {"id": "up", "type": "PythonCodeNode", "config": {"code": format!("{}result = 3", logline("up"))}},
            {"id": "side", "type": "PythonCodeNode", "config": {"code": format!("{}result = 'side'", logline("side"))}},
            {"id": "mid", "type": "PythonCodeNode",
             "config": {"code": format!("{}result = x * factor", logline("mid")), "factor": 2}},
            {"id": "down", "type": "PythonCodeNode", "config": {"code": format!("{}result = y + 1", logline("down"))}}],
            "connections": [
                {"source": "up", "output": "result", "target": "mid", "input": "x"},
                {"source": "mid", "output": "result", "target": "down", "input": "y"}]})
        .to_string(),
    )
    .unwrap();
    let first = d.submit_wait(&wf, None);
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["results"]["down"]["result"], 7);
    let run_id = first["run_id"].as_str().unwrap().to_string();

    let o = d.kora(&["runs", "retry", &run_id, "--from", "nope"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has no node 'nope'"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = d.kora(&[
        "runs",
        "retry",
        &run_id,
        "--from",
        "mid",
        "--set",
        "factor=10",
    ]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("restarts from mid (attempt 2)"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let status = d.wait_finished(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(status["results"]["mid"]["result"], 30);
    assert_eq!(status["results"]["down"]["result"], 31);
    assert_eq!(status["results"]["side"]["result"], "side");
    let text = std::fs::read_to_string(&log).unwrap();
    let count = |n: &str| text.lines().filter(|l| *l == n).count();
    assert_eq!(
        (count("up"), count("side"), count("mid"), count("down")),
        (1, 1, 2, 2),
        "only mid and downstream ran again:\n{text}"
    );
    // The restart is in the run's history, with who asked.
    let restarts: Vec<&serde_json::Value> = status["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"] == "run_restarted")
        .collect();
    assert_eq!(restarts.len(), 1, "{status}");
    assert_eq!(restarts[0]["node_id"], "mid");
    assert_eq!(restarts[0]["detail"]["by"], "ops-test");
    // Restarting again from the same node works on the new attempt (numbering continues).
    let o = d.kora(&["runs", "retry", &run_id, "--from", "down"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let status = d.wait_finished(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    let text = std::fs::read_to_string(&log).unwrap();
    let count = |n: &str| text.lines().filter(|l| *l == n).count();
    assert_eq!((count("mid"), count("down")), (2, 3), "{text}");
    d.finish().await;
}

/// Limits hold across two coordinators sharing the ledger: six runs of a workflow limited to
/// two at a time never overlap more than two (the workers could run four), and two runs whose
/// nodes go to a queue limited to 4 tasks a second get dispatch slots 250 ms apart, whichever
/// coordinator dispatched them.
#[tokio::test]
async fn concurrency_and_rate_limits_hold_across_two_coordinators() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    let rates = r#"{"paced": {"rate_per_sec": 4, "burst": 1}}"#;
    d.serve_env(
        "scheduler,worker",
        &[],
        &[("KORA_WORKER__PYTHON_WORKERS", "4")],
    );
    d.serve_env(
        "worker",
        &[],
        &[
            ("KORA_WORKER__QUEUE", "paced"),
            ("KORA_WORKER__PYTHON_WORKERS", "4"),
        ],
    );
    d.serve_env("coordinator", &[], &[("KORA_QUEUES", rates)]);
    d.serve_env("coordinator", &[], &[("KORA_QUEUES", rates)]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("spans.log");
    let limited = dir.path().join("limited.json");
    std::fs::write(
        &limited,
        serde_json::json!({"kora": 1, "name": "limited", "concurrency": {"limit": 2}, "nodes": [
            {"id": "work", "type": "PythonCodeNode", "config": {"code": format!(
                "import time\nt0 = time.time()\ntime.sleep(1.0)\nopen({:?}, 'a').write(f'span {{t0}} {{time.time()}}\\n')\nresult = 1",
                log.display().to_string())}}]})
        .to_string(),
    )
    .unwrap();
    let paced = dir.path().join("paced.json");
    let node = |i: u32| {
        serde_json::json!({"id": format!("n{i}"), "type": "PythonCodeNode", "config": {"queue": "paced", "code": format!(
            "import time\nopen({:?}, 'a').write(f'start {{time.time()}}\\n')\nresult = 1",
            log.display().to_string())}})
    };
    std::fs::write(
        &paced,
        serde_json::json!({"kora": 1, "name": "paced", "nodes": (0..4).map(node).collect::<Vec<_>>()})
            .to_string(),
    )
    .unwrap();
    // Both coordinators up, and the paced worker's interpreter warm (its first start would
    // lag its slot), before the burst of submissions.
    let warm = dir.path().join("warm.json");
    std::fs::write(
        &warm,
        serde_json::json!({"kora": 1, "name": "warm", "nodes": [
            {"id": "w", "type": "PythonCodeNode", "config": {"queue": "paced", "code": "result = 1"}}]})
        .to_string(),
    )
    .unwrap();
    assert_eq!(d.submit_wait(&warm, None)["status"], "succeeded");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut runs: Vec<String> = (0..6).map(|_| d.submit(&limited)).collect();
    runs.extend((0..2).map(|_| d.submit(&paced)));
    for r in &runs {
        let status = d.wait_finished(r, Duration::from_secs(60)).await;
        assert_eq!(status["status"], "succeeded", "{status}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let nums = |kind: &str| -> Vec<Vec<f64>> {
        text.lines()
            .filter(|l| l.starts_with(kind))
            .map(|l| l.split(' ').skip(1).map(|x| x.parse().unwrap()).collect())
            .collect()
    };
    let spans = nums("span ");
    assert_eq!(spans.len(), 6, "{text}");
    let mut most = 0;
    for s in &spans {
        // Runs running at the moment this one started (itself included).
        let at = s[0] + 0.01;
        let n = spans.iter().filter(|o| o[0] <= at && at < o[1]).count();
        most = most.max(n);
    }
    assert!(most <= 2, "more than two runs at once: {text}");
    assert_eq!(most, 2, "the limit was used: {text}");
    assert_eq!(nums("start ").len(), 8, "every paced task ran: {text}");
    // The limiter's decisions: each task's slot is its attempt's dispatch time in the ledger,
    // and no task is sent before its slot. (When Python got to run each task also depends on
    // the machine's load, so the slots are what is asserted.)
    let store = kora_store::pg::PgStore::connect(&kora_store::pg::PgConfig {
        url: d.db_url.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    use kora_store::Store;
    let mut slots = Vec::new();
    for r in &runs[6..] {
        slots.extend(
            store
                .attempts(r)
                .await
                .unwrap()
                .iter()
                .map(|a| a.dispatched_ms),
        );
    }
    store.close().await;
    slots.sort_unstable();
    assert_eq!(slots.len(), 8, "{slots:?}");
    for w in slots.windows(2) {
        assert!(
            w[1] - w[0] >= 249,
            "paced slots 250 ms apart, across both coordinators: {slots:?}"
        );
    }
    d.finish().await;
}

/// The same idempotency key within the window is the same run: a second `kora submit` prints
/// the first run's id (marked deduplicated), `--wait` reports that run's results, and the
/// node ran once. Past the window (5 s here) the key makes a new run.
#[tokio::test]
async fn an_idempotency_key_is_one_run_within_its_window() {
    let Some(mut d) = Deployment::new(&[("KORA_CONTROL__IDEMPOTENCY_WINDOW_SECS", "5")]).await
    else {
        return;
    };
    d.serve("all", &[]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("executions.log");
    let wf = dir.path().join("once.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "name": "once", "nodes": [
            {"id": "pay", "type": "PythonCodeNode", "config": {"code": format!(
                "open({:?}, 'a').write('pay\\n')\nresult = 'paid'", log.display().to_string())}}]})
        .to_string(),
    )
    .unwrap();
    let submit = |extra: &[&str]| {
        let mut args = vec![
            "submit",
            wf.to_str().unwrap(),
            "--idempotency-key",
            "order-42",
        ];
        args.extend_from_slice(extra);
        let o = d.kora(&args);
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
    };
    let first = submit(&[]);
    let run_id = first["run_id"].as_str().unwrap().to_string();
    assert!(first.get("deduplicated").is_none(), "{first}");
    let second = submit(&[]);
    assert_eq!(second["run_id"], run_id.as_str(), "{second}");
    assert_eq!(second["deduplicated"], true);
    let waited = submit(&["--wait", "--timeout", "30"]);
    assert_eq!(waited["run_id"], run_id.as_str(), "{waited}");
    assert_eq!(waited["status"], "succeeded", "{waited}");
    assert_eq!(waited["results"]["pay"]["result"], "paid");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 1, "paid once:\n{text}");
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let later = submit(&["--wait", "--timeout", "30"]);
    assert_ne!(later["run_id"], run_id.as_str(), "past the window: {later}");
    assert_eq!(later["status"], "succeeded", "{later}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    d.finish().await;
}

/// A secret reference in config is resolved on the worker from `KORA_SECRET_<NAME>`: the node
/// gets the value, but the ledger (spec, outputs, events) and the submitter only ever see the
/// reference or `***`. A missing secret fails the node with the variable to set.
#[tokio::test]
async fn secrets_reach_the_node_and_nothing_else() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    let secret = "s3cr3t-Kora-7f2e";
    d.serve_env("all", &[], &[("KORA_SECRET_API_TOKEN", secret)]);
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("secret.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "name": "secret", "nodes": [
            {"id": "use", "type": "PythonCodeNode", "config": {
                "token": {"$secret": "api_token"},
                "url": "https://api.example/v1?key=${secret:api_token}",
                "code": "result = {'length': len(token), 'echo': token, 'url': url}"}}]})
        .to_string(),
    )
    .unwrap();
    let out = d.submit_wait(&wf, None);
    assert_eq!(out["status"], "succeeded", "{out}");
    let r = &out["results"]["use"]["result"];
    assert_eq!(r["length"], secret.len(), "the node saw the real value");
    assert_eq!(r["echo"], "***");
    assert_eq!(r["url"], "https://api.example/v1?key=***");
    let run_id = out["run_id"].as_str().unwrap();
    let shown = d.kora(&["runs", "show", run_id, "--format", "json"]);
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(
        shown.contains("succeeded") && !shown.contains(secret),
        "{shown}"
    );
    // The ledger's copy of the workflow holds the reference, not the value.
    let store = kora_store::pg::PgStore::connect(&kora_store::pg::PgConfig {
        url: d.db_url.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    use kora_store::Store;
    let rec = store.run(run_id).await.unwrap().unwrap();
    let spec = serde_json::to_string(&rec.spec).unwrap();
    assert!(
        spec.contains("api_token") && !spec.contains(secret),
        "{spec}"
    );
    let events = serde_json::to_string(&store.events(run_id).await.unwrap()).unwrap();
    assert!(!events.contains(secret), "{events}");
    store.close().await;

    let missing = dir.path().join("missing.json");
    std::fs::write(
        &missing,
        serde_json::json!({"kora": 1, "name": "missing", "nodes": [
            {"id": "use", "type": "PythonCodeNode", "config": {
                "token": {"$secret": "not-there"}, "code": "result = 1"}}]})
        .to_string(),
    )
    .unwrap();
    let out = d.submit_wait(&missing, None);
    // A leaf's failure is recorded and the run goes on (Kailash's rule).
    assert_eq!(out["results"]["use"]["failed"], true, "{out}");
    let error = out["results"]["use"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("KORA_SECRET_NOT_THERE"), "{out}");
    assert_eq!(out["results"]["use"]["error_type"], "SecretError");
    d.finish().await;
}

/// The node catalogue in one workflow (27 types), on the distributed engine and in `kora run`: file
/// writers and readers and a directory listing below the data root, HTTP, REST, rate-limited,
/// alert and LLM nodes against a loopback server, SQL on PostgreSQL and SQLite, Redis and TTL
/// caches, threat detection, an audit entry in the ledger, health checks, metrics, a Python
/// function and a child workflow; secrets from the worker's environment. (Multi-threaded: the loopback server must answer while the test waits on
/// `kora` processes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_catalogue_runs_distributed_and_embedded() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    let (base, seen) = kora_nodes::testing::server(std::sync::Arc::new(
        |req: &kora_nodes::testing::Seen, _| {
            let t = req.target.as_str();
            if t.starts_with("/v1/chat/completions") {
                let ok = req.header("authorization") == Some("Bearer tok-123");
                let content = if ok { "hi there" } else { "bad key" };
                (200, "application/json", serde_json::json!({"id": "c1", "model": "tiny",
                    "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"total_tokens": 5}}).to_string())
            } else if t.starts_with("/users/") {
                (200, "application/json", serde_json::json!({"id": 7, "path": t}).to_string())
            } else if t.starts_with("/discord") {
                (204, "text/plain", String::new())
            } else {
                (200, "application/json", serde_json::json!({"path": t, "auth": req.header("authorization")}).to_string())
            }
        },
    ))
    .await;
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("seed")).unwrap();
    std::fs::write(root.path().join("seed/a.csv"), "x\n1\n").unwrap();
    let key = format!("kora-cat:{}:", std::process::id());
    let secret = serde_json::json!({"$secret": "api_token"});
    let wf = serde_json::json!({"kora": 1, "name": "catalogue", "nodes": [
        {"id": "w_csv", "type": "CSVWriterNode", "config": {"file_path": "out/people.csv", "data": [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Bob"}]}},
        {"id": "r_csv", "type": "CSVReaderNode"},
        {"id": "w_json", "type": "JSONWriterNode", "config": {"file_path": "out/d.json", "data": {"k": [1, 2]}}},
        {"id": "r_json", "type": "JSONReaderNode"},
        {"id": "w_text", "type": "TextWriterNode", "config": {"file_path": "out/t.txt", "text": "hello"}},
        {"id": "r_text", "type": "TextReaderNode"},
        {"id": "dir", "type": "DirectoryReaderNode", "config": {"directory_path": "seed"}},
        {"id": "http", "type": "HTTPRequestNode", "config": {"url": format!("{base}/items"), "method": "POST",
            "json_data": {"n": 1}, "auth_type": "bearer", "auth_token": secret}},
        {"id": "rest", "type": "RESTClientNode", "config": {"base_url": base, "resource": "/users/{id}", "path_params": {"id": 7}}},
        {"id": "limited", "type": "RateLimitedAPINode", "config": {"url": format!("{base}/limited"), "requests_per_second": 50}},
        {"id": "hook", "type": "WebhookAlertNode", "config": {"url": format!("{base}/hook"), "message_template": "{n} people", "alert_type": "warning"}},
        {"id": "slack", "type": "SlackAlertNode", "config": {"webhook_url": format!("{base}/slack"), "message": "done"}},
        {"id": "discord", "type": "DiscordAlertNode", "config": {"webhook_url": format!("{base}/discord"), "title": "t", "message": "m"}},
        {"id": "llm", "type": "LLMAgentNode", "config": {"base_url": format!("{base}/v1"), "model": "tiny", "prompt": "hello", "api_key": secret}},
        {"id": "pg", "type": "SQLDatabaseNode", "config": {"connection_string": "postgresql://postgres@127.0.0.1:5432/test",
            "query": "SELECT CAST(:a AS INTEGER) + 1 AS b", "params": {"a": 41}}},
        {"id": "lite", "type": "AsyncSQLDatabaseNode", "config": {"connection_string": "sqlite:cat.db", "query": "SELECT 2 AS two"}},
        {"id": "r_set", "type": "RedisCacheNode", "config": {"operation": "set", "key": "k", "value": {"v": 1}, "ttl": 60, "key_prefix": key}},
        {"id": "r_get", "type": "RedisCacheNode", "config": {"operation": "get", "key_prefix": key}},
        {"id": "t_set", "type": "TTLCacheNode", "config": {"operation": "set", "key": "k", "value": 5}},
        {"id": "t_get", "type": "TTLCacheNode", "config": {"operation": "get"}},
        {"id": "threat", "type": "ThreatDetectionNode", "config": {"events": [{"ip": "9.9.9.9", "type": "request", "path": "/a/../../etc/passwd"}]}},
        {"id": "audit", "type": "AuditLogNode", "config": {"event_type": "catalogue", "message": "ran the catalogue", "user_id": "tester"}},
        {"id": "health", "type": "HealthCheckNode", "config": {"services": [
            {"name": "web", "type": "http", "url": format!("{base}/ok")},
            {"name": "bus", "type": "nats", "url": "nats://127.0.0.1:4222"}]}},
        {"id": "metrics", "type": "MetricsCollectorNode", "config": {"metric_types": ["system.memory"], "format": "prometheus"}},
        {"id": "fn", "type": "PythonCodeNode", "config": {"function": "def f(rows_written):\n    return rows_written * 10"}},
        {"id": "sub", "type": "WorkflowNode", "config": {"workflow": {"kora": 1, "name": "sub", "nodes": [
            {"id": "inner", "type": "NoOpNode", "config": {"data": "from the child"}}]}}}],
        "connections": [
            {"source": "w_csv", "output": "file_path", "target": "r_csv", "input": "file_path"},
            {"source": "w_json", "output": "file_path", "target": "r_json", "input": "file_path"},
            {"source": "w_text", "output": "file_path", "target": "r_text", "input": "file_path"},
            {"source": "w_csv", "output": "rows_written", "target": "hook", "input": "n"},
            {"source": "r_set", "output": "key", "target": "r_get", "input": "key"},
            {"source": "t_set", "output": "key", "target": "t_get", "input": "key"},
            {"source": "w_csv", "output": "rows_written", "target": "fn", "input": "rows_written"}]});
    let file = root.path().join("catalogue.json");
    std::fs::write(&file, wf.to_string()).unwrap();
    let check = |out: &serde_json::Value, how: &str| {
        assert_eq!(out["status"], "succeeded", "{how}: {out}");
        let r = &out["results"];
        assert_eq!(r["r_csv"]["data"][1]["name"], "Bob", "{how}: {r}");
        assert_eq!(r["r_json"]["data"]["k"][1], 2, "{how}");
        assert_eq!(r["r_text"]["text"], "hello", "{how}");
        assert_eq!(r["dir"]["directory_stats"]["total_files"], 1, "{how}");
        assert_eq!(
            r["http"]["response"]["content"]["auth"], "Bearer ***",
            "{how}: the secret reached the server, masked here"
        );
        assert_eq!(r["rest"]["data"]["id"], 7, "{how}");
        assert_eq!(r["limited"]["success"], true, "{how}");
        assert_eq!(r["hook"]["message"], "2 people", "{how}");
        assert_eq!(r["slack"]["sent"], true, "{how}");
        assert_eq!(r["discord"]["status_code"], 204, "{how}");
        assert_eq!(r["llm"]["response"]["content"], "hi there", "{how}");
        assert_eq!(r["pg"]["data"][0]["b"], 42, "{how}");
        assert_eq!(r["lite"]["result"]["data"][0]["two"], 2, "{how}");
        assert_eq!(r["r_get"]["value"]["v"], 1, "{how}");
        assert_eq!(r["t_get"]["value"], 5, "{how}");
        assert_eq!(r["threat"]["threats"][0]["type"], "path_traversal", "{how}");
        assert_eq!(r["audit"]["audit_entry"]["user_id"], "tester", "{how}");
        assert_eq!(
            r["health"]["overall_status"], "healthy",
            "{how}: {}",
            r["health"]
        );
        assert!(
            r["metrics"]["metrics"]
                .as_str()
                .unwrap_or_default()
                .contains("system_memory_total_bytes"),
            "{how}"
        );
        assert_eq!(r["fn"]["result"], 20, "{how}");
        assert_eq!(
            r["sub"]["results"]["inner"]["data"], "from the child",
            "{how}"
        );
    };
    let data_root = root.path().display().to_string();
    d.serve_env(
        "all",
        &[],
        &[
            ("KORA_SECRET_API_TOKEN", "tok-123"),
            ("KORA_WORKER__DATA_ROOT", &data_root),
        ],
    );
    let out = d.submit_wait(&file, None);
    check(&out, "distributed");
    let run_id = out["run_id"].as_str().unwrap();
    let o = d.kora(&["audit", "--run", run_id, "--format", "json"]);
    let audit: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(audit.as_array().map(Vec::len), Some(1), "{audit}");
    assert_eq!(audit[0]["entry"]["event_type"], "catalogue");
    assert_eq!(seen.lock().unwrap().len(), 8, "eight HTTP calls");
    // The same workflow embedded.
    std::fs::remove_dir_all(root.path().join("out")).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kora"))
        .args(["run", file.to_str().unwrap(), "--data-root", &data_root])
        .env("KORA_SECRET_API_TOKEN", "tok-123")
        .output()
        .unwrap();
    let embedded: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    check(&embedded, "kora run");
    d.finish().await;
}

/// An external worker in Python (`examples/external-worker/worker.py`) serves the ExternalNode
/// tasks of its queue from the wire contract alone: its results flow through the run like any
/// node's, and an operation it does not know fails that node with its message.
#[tokio::test]
async fn an_external_python_worker_serves_its_queue() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    let python = root().join("target/tools/pyext/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make services-up` (it installs nats-py and msgpack)",
        python.display()
    );
    d.serve("all", &[]);
    let prefix = d
        .env
        .iter()
        .find(|(k, _)| k == "KORA_PREFIX")
        .map(|(_, v)| v.clone())
        .unwrap();
    let worker = std::process::Command::new(&python)
        .arg(root().join("examples/external-worker/worker.py"))
        .args(["--queue", "ext", "--prefix", &prefix, "--nats", NATS])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    d.procs.push(worker);
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("external.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "name": "external", "nodes": [
            {"id": "up", "type": "NoOpNode", "config": {"data": "hello kora world"}},
            {"id": "shout", "type": "ExternalNode", "config": {"queue": "ext", "operation": "upper"}},
            {"id": "count", "type": "ExternalNode", "config": {"queue": "ext", "operation": "word_count"}},
            {"id": "after", "type": "PythonCodeNode", "config": {"code": "result = words * 10"}},
            {"id": "bad", "type": "ExternalNode", "config": {"queue": "ext", "operation": "nope"}}],
            "connections": [
                {"source": "up", "output": "data", "target": "shout", "input": "text"},
                {"source": "shout", "output": "text", "target": "count", "input": "text"},
                {"source": "count", "output": "words", "target": "after", "input": "words"}]})
        .to_string(),
    )
    .unwrap();
    let out = d.submit_wait(&wf, None);
    assert_eq!(out["status"], "succeeded", "{out}");
    let r = &out["results"];
    assert_eq!(r["shout"]["text"], "HELLO KORA WORLD", "{out}");
    assert_eq!(r["count"]["words"], 3);
    assert_eq!(r["after"]["result"], 30);
    assert_eq!(
        r["bad"]["failed"], true,
        "a leaf's failure is recorded: {out}"
    );
    assert!(
        r["bad"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown operation 'nope'"),
        "{out}"
    );
    d.finish().await;
}

/// A WorkflowNode runs its workflow as a child run: its own run in the ledger (with the parent
/// attempt recorded), whose results become the node's output; a child run that fails (an
/// internal node of it failed) fails the node, and, the node being internal, the parent run.
#[tokio::test]
async fn a_workflow_node_runs_a_child_run_in_the_ledger() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    d.serve("all", &[]);
    let dir = tempfile::tempdir().unwrap();
    let parent = |code: &str| {
        serde_json::json!({"kora": 1, "name": "parent", "nodes": [
            {"id": "n", "type": "NoOpNode", "config": {"data": 5}},
            {"id": "child", "type": "WorkflowNode", "config": {
                "workflow": {"kora": 1, "name": "child", "nodes": [
                    {"id": "double", "type": "PythonCodeNode", "config": {"code": code}},
                    {"id": "tail", "type": "NoOpNode"}],
                    "connections": [{"source": "double", "output": "result", "target": "tail", "input": "data"}]},
                "input_mapping": {"value": "double.x"}}},
            {"id": "after", "type": "PythonCodeNode", "config": {"code": "result = r['double']['result'] + 1"}}],
            "connections": [
                {"source": "n", "output": "data", "target": "child", "input": "value"},
                {"source": "child", "output": "results", "target": "after", "input": "r"}]})
        .to_string()
    };
    let ok = dir.path().join("ok.json");
    std::fs::write(&ok, parent("result = x * 2")).unwrap();
    let out = d.submit_wait(&ok, None);
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["results"]["after"]["result"], 11);
    let child = out["results"]["child"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = d.kora(&["runs", "show", &child, "--format", "json"]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["status"], "succeeded", "{shown}");
    assert_eq!(shown["workflow"], "child");
    let store = kora_store::pg::PgStore::connect(&kora_store::pg::PgConfig {
        url: d.db_url.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    use kora_store::Store;
    let rec = store.run(&child).await.unwrap().unwrap();
    let parent_run = out["run_id"].as_str().unwrap();
    assert_eq!(rec.parent, Some(format!("{parent_run}:child:0:1")));
    store.close().await;

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, parent("result = 1 / 0")).unwrap();
    let out = d.submit_wait(&bad, None);
    assert_eq!(out["status"], "failed", "{out}");
    assert_eq!(
        out["results"]["child"]["error_type"], "ChildWorkflowFailed",
        "{out}"
    );
    assert!(
        out["results"]["child"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("division by zero"),
        "{out}"
    );
    d.finish().await;
}

/// A worker binary of the user's own (`examples/custom-node`, built beside `kora` by the
/// workspace) serves every role with its custom node type; runs using it go through the
/// distributed engine like any other.
#[tokio::test]
async fn a_custom_node_binary_serves_the_distributed_engine() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    let bin = Path::new(env!("CARGO_BIN_EXE_kora")).with_file_name("kora-custom-node");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace (cargo build --workspace)",
        bin.display()
    );
    let mut cmd = std::process::Command::new(&bin);
    for (k, v) in &d.env {
        cmd.env(k, v);
    }
    let child = cmd
        .args(["serve", "all"])
        .env_remove("KORA_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    d.procs.push(child);
    let out = d.submit_wait(&root().join("examples/custom-node/workflow.json"), None);
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["results"]["slug"]["slug"], "hello-kora-custom-nodes");
    assert_eq!(
        out["results"]["url"]["result"],
        "https://example.com/hello-kora-custom-nodes"
    );
    d.finish().await;
}

/// Garbage on each role's subject (a run request, a ledger result, a task) is dead-lettered with
/// its reason, the roles keep serving (a run submitted afterwards succeeds), `kora dlq list
/// --poison` shows each one, and `kora dlq purge --poison SEQ` removes one.
#[tokio::test]
async fn poison_messages_are_dead_lettered_listed_and_purged() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    d.serve("all", &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let prefix = d
        .env
        .iter()
        .find(|(k, _)| k == "KORA_PREFIX")
        .map(|(_, v)| v.clone())
        .unwrap();
    let subjects = kora_model::subjects::Subjects::new(&prefix).unwrap();
    let broker = kora_broker::nats::JetStreamBroker::connect(&kora_broker::nats::NatsConfig {
        url: NATS.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    use kora_broker::Broker;
    for subject in [
        subjects.run_submit(),
        subjects.ledger_result(),
        subjects.task(kora_model::subjects::DEFAULT_QUEUE),
    ] {
        broker
            .publish(kora_broker::Outbound::new(
                subject,
                b"\xc1 not msgpack".to_vec(),
            ))
            .await
            .unwrap();
    }
    let ok = d.submit_wait(&root().join("examples/diamond/workflow.json"), None);
    assert_eq!(ok["status"], "succeeded", "the roles still serve: {ok}");
    let list = loop {
        let o = d.kora(&["dlq", "list", "--poison", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
        if v.as_array().map_or(0, Vec::len) >= 3 {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut sources: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["source"].as_str().unwrap())
        .collect();
    sources.sort_unstable();
    assert_eq!(sources, ["ledger", "run", "task"], "{list}");
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|m| !m["reason"].as_str().unwrap().is_empty()),
        "each has its reason: {list}"
    );
    let seq = list[0]["sequence"].as_u64().unwrap().to_string();
    let o = d.kora(&["dlq", "purge", "--poison", &seq]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = d.kora(&["dlq", "list", "--poison", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    d.finish().await;
}

/// Routing: a node whose config names `queue: special` is published to `<p>.task.special` and
/// run only by a worker serving that queue; the others run on the default pool.
#[tokio::test]
async fn nodes_go_to_the_worker_pool_of_their_queue() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    d.serve("scheduler,coordinator", &[]);
    let default_pool = d.serve("worker", &[]);
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("routed.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "nodes": [
            {"id": "plain", "type": "PythonCodeNode", "config": {"code": "import os\nresult = os.getppid()"}},
            {"id": "routed", "type": "PythonCodeNode",
             "config": {"queue": "special", "code": "import os\nresult = os.getppid()"}}]})
        .to_string(),
    )
    .unwrap();
    let run_id = d.submit(&wf);
    // Without a worker for its queue, the routed node waits (the default pool does not take it).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let o = d.kora(&["runs", "show", &run_id, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "running", "{v}");
    let special_pool = d.serve("worker", &["--queue", "special"]);
    let status = d.wait_finished(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    // Each node ran under the process of its pool (a Python interpreter's parent is its worker).
    assert_eq!(
        status["results"]["plain"]["result"],
        d.procs[default_pool].id()
    );
    assert_eq!(
        status["results"]["routed"]["result"],
        d.procs[special_pool].id()
    );
    d.finish().await;
}

/// Subject triggers: registered while no Kora process runs, the messages published meanwhile
/// are kept and each starts exactly one run once roles start (two schedulers share the
/// trigger), with the message as the run's parameters. A paused trigger's messages wait and run
/// on resume.
#[tokio::test]
async fn trigger_messages_published_while_kora_is_down_each_start_one_run() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    let prefix = d
        .env
        .iter()
        .find(|(k, _)| k == "KORA_PREFIX")
        .map(|(_, v)| v.clone())
        .unwrap();
    let subject = format!("in{prefix}.orders");
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("order.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "name": "order", "nodes": [
            {"id": "double", "type": "PythonCodeNode", "config": {"code": "result = order_id * 2"}}]})
        .to_string(),
    )
    .unwrap();
    // No role runs yet: `triggers add` migrates the ledger and creates the capture stream.
    let o = d.kora(&[
        "triggers",
        "add",
        "orders",
        "--subject",
        &subject,
        "--workflow",
        wf.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let broker = kora_broker::nats::JetStreamBroker::connect(&kora_broker::nats::NatsConfig {
        url: NATS.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    use kora_broker::Broker;
    let publish = async |ids: std::ops::Range<i64>| {
        for i in ids {
            broker
                .publish(kora_broker::Outbound::new(
                    subject.clone(),
                    serde_json::json!({"order_id": i}).to_string().into_bytes(),
                ))
                .await
                .unwrap();
        }
    };
    publish(0..5).await;
    d.serve("scheduler", &[]);
    d.serve("scheduler", &[]);
    d.serve("coordinator,worker", &[]);
    let results = async |n: usize| -> Vec<i64> {
        let t = Instant::now();
        loop {
            let o = d.kora(&["runs", "list", "--limit", "100", "--format", "json"]);
            let runs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            let runs = runs.as_array().cloned().unwrap_or_default();
            let done = runs.iter().filter(|r| r["status"] == "succeeded").count();
            if (done >= n && runs.len() >= n) || t.elapsed() > Duration::from_secs(30) {
                let mut out = Vec::new();
                for r in &runs {
                    let o = d.kora(&[
                        "runs",
                        "show",
                        r["run_id"].as_str().unwrap(),
                        "--format",
                        "json",
                    ]);
                    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                    out.push(v["results"]["double"]["result"].as_i64().unwrap_or(-1));
                }
                out.sort_unstable();
                return out;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    assert_eq!(results(5).await, [0, 2, 4, 6, 8], "one run per message");
    let o = d.kora(&["triggers", "pause", "orders"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    publish(5..7).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let o = d.kora(&["runs", "list", "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        runs.as_array().unwrap().len(),
        5,
        "paused: the messages wait"
    );
    let o = d.kora(&["triggers", "list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["paused"], true);
    let o = d.kora(&["triggers", "resume", "orders"]);
    assert!(o.status.success());
    assert_eq!(
        results(7).await,
        [0, 2, 4, 6, 8, 10, 12],
        "resumed: they run, once each"
    );
    d.finish().await;
}

/// A cron trigger with two schedulers running fires once per tick: every run has its own tick,
/// ticks are the schedule's 2 s apart, and pausing stops the firing.
#[tokio::test]
async fn two_schedulers_fire_a_cron_trigger_once_per_tick() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("tick.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "name": "tick", "nodes": [
            {"id": "at", "type": "PythonCodeNode", "config": {"code": "result = scheduled_ms"}}]})
        .to_string(),
    )
    .unwrap();
    let o = d.kora(&[
        "triggers",
        "add",
        "every2s",
        "--cron",
        "*/2 * * * * *",
        "--workflow",
        wf.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    d.serve("scheduler", &[]);
    d.serve("scheduler", &[]);
    d.serve("coordinator,worker", &[]);
    tokio::time::sleep(Duration::from_secs(9)).await;
    let o = d.kora(&["triggers", "pause", "every2s"]);
    assert!(o.status.success());
    // Let the last fired runs finish; a tick already submitted still runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let o = d.kora(&["runs", "list", "--limit", "100", "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    let mut ticks = Vec::new();
    for r in runs {
        let o = d.kora(&[
            "runs",
            "show",
            r["run_id"].as_str().unwrap(),
            "--format",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["status"], "succeeded", "{v}");
        ticks.push(v["results"]["at"]["result"].as_i64().unwrap());
    }
    ticks.sort_unstable();
    let mut distinct = ticks.clone();
    distinct.dedup();
    assert_eq!(ticks, distinct, "one run per tick with two schedulers");
    assert!(ticks.len() >= 3, "ticks fired: {ticks:?}");
    assert!(
        ticks.windows(2).all(|w| w[1] - w[0] == 2000),
        "ticks follow the schedule: {ticks:?}"
    );
    let before = ticks.len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let o = d.kora(&["runs", "list", "--limit", "100", "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        runs.as_array().unwrap().len(),
        before,
        "paused: no more ticks"
    );
    d.finish().await;
}

/// Priorities: with one worker slot busy on a long queue of normal tasks, a run submitted with
/// `--priority high` has its task taken before the waiting normal ones.
#[tokio::test]
async fn high_priority_tasks_are_taken_before_waiting_normal_ones() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    d.serve("scheduler,coordinator", &[]);
    d.serve("worker", &["--concurrency", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let slow = dir.path().join("slow.json");
    let nodes: Vec<_> = (0..12)
        .map(|i| {
            serde_json::json!({"id": format!("s{i}"), "type": "PythonCodeNode",
            "config": {"code": "import time\ntime.sleep(0.3)\nresult = 1"}})
        })
        .collect();
    std::fs::write(
        &slow,
        serde_json::json!({"kora": 1, "nodes": nodes}).to_string(),
    )
    .unwrap();
    let urgent = dir.path().join("urgent.json");
    std::fs::write(
        &urgent,
        serde_json::json!({"kora": 1, "nodes": [
            {"id": "now", "type": "PythonCodeNode", "config": {"code": "result = 1"}}]})
        .to_string(),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let normal_run = d.submit(&slow);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let o = d.kora(&[
        "submit",
        urgent.to_str().unwrap(),
        "--priority",
        "high",
        "--wait",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(v["status"], "succeeded", "{v}");
    // The 12 normal tasks take 3.6 s on the one slot; the urgent run ended long before them.
    let o = d.kora(&["runs", "show", &normal_run, "--format", "json"]);
    let normal: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        normal["status"], "running",
        "the high-priority run overtook the waiting normal tasks: {normal}"
    );
    let done = d.wait_finished(&normal_run, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded");
    d.finish().await;
}
