//! Crashes and restarts of every role and service: nothing accepted is lost, nothing is recorded twice.

#![allow(clippy::unwrap_used)]

use super::support::*;

/// kill -9 a worker while it runs a long (heartbeating) task: the task is redelivered to
/// another worker after the ack wait and the run completes, with the node recorded once. The
/// task (5 s) outlives the ack wait (3 s): on the live worker its heartbeats keep it from
/// being redelivered again, so it starts twice (killed, then completed) and completes once.
#[tokio::test]
async fn killed_worker_task_is_redelivered_and_the_run_completes() {
    let Some(mut d) = Deployment::new(&[
        ("KORA_TASKS__ACK_WAIT", "3"),
        ("KORA_WORKER__HEARTBEAT", "1"),
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
    diamond_survives_a_coordinator_abort_at("coordinator-after-commit=return").await;
}

/// The coordinator dies after publishing tasks that go before their commit (the downstream
/// nodes of a result) and before that commit (a failpoint aborts the process there). The
/// result was not acked, so a new coordinator takes it again and decides the same tasks,
/// whose re-publish the broker drops as duplicates; the workers' results for the first
/// publish wait until the new commit holds their attempts. The run completes, each node
/// recorded once, in one attempt.
#[tokio::test]
async fn coordinator_crash_after_an_early_publish_before_its_commit_loses_nothing() {
    let attempts =
        diamond_survives_a_coordinator_abort_at("coordinator-before-commit=return").await;
    assert!(
        attempts.iter().all(|a| a.attempt == 1),
        "every node in its first attempt: {attempts:?}"
    );
}

/// Runs the diamond example with a coordinator that aborts at `failpoint`, then a fresh
/// coordinator: the run succeeds with one recorded attempt per node (returned).
async fn diamond_survives_a_coordinator_abort_at(
    failpoint: &str,
) -> Vec<kora_store::AttemptRecord> {
    let Some(mut d) = Deployment::new(&[]).await else {
        return Vec::new();
    };
    d.serve("scheduler", &[]);
    d.serve("worker", &[]);
    let doomed = d.serve_env("coordinator", &[], &[("FAILPOINTS", failpoint)]);
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
    attempts
}

/// Two coordinators whose commits are slow (a failpoint sleeps 150 ms before each): a task
/// goes out before the commit deciding it, its worker answers at once, and the result often
/// reaches the other coordinator, whose ledger does not hold the attempt yet. That result is
/// handed back (counted in `kora_results_early_total`) until the commit lands, then recorded:
/// the chain completes with every node recorded once, in its first attempt.
#[tokio::test]
async fn a_result_that_overtakes_the_commit_deciding_its_task_waits_for_it() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    d.serve("scheduler", &[]);
    d.serve("worker", &[]);
    let addrs: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    for addr in &addrs {
        d.serve_env(
            "coordinator",
            &["--metrics-addr", addr],
            &[("FAILPOINTS", "coordinator-slow-commit=sleep(150)")],
        );
    }
    let n = 12;
    let nodes: Vec<_> = (0..n)
        .map(|i| serde_json::json!({"id": format!("n{i}"), "type": "NoOpNode", "config": {"data": i}}))
        .collect();
    let conns: Vec<_> = (1..n)
        .map(|i| serde_json::json!({"source": format!("n{}", i - 1), "output": "data", "target": format!("n{i}"), "input": "data"}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("chain.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "nodes": nodes, "connections": conns}).to_string(),
    )
    .unwrap();
    let run_id = d.submit(&wf);
    let status = d.wait_finished(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    let store = kora_store::pg::PgStore::connect(&kora_store::pg::PgConfig {
        url: d.db_url.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    use kora_store::Store;
    let attempts = store.attempts(&run_id).await.unwrap();
    assert_eq!(attempts.len(), n, "one attempt per node: {attempts:?}");
    assert!(
        attempts.iter().all(|a| a.seq.is_some() && a.attempt == 1),
        "every node recorded, in its first attempt: {attempts:?}"
    );
    store.close().await;
    let early: f64 = addrs
        .iter()
        .map(|a| {
            let (_, body) = http_get(a, "/metrics");
            body.lines()
                .find_map(|l| l.strip_prefix("kora_results_early_total "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        })
        .sum();
    assert!(
        early > 0.0,
        "some result reached a coordinator before the commit deciding its task"
    );
    d.finish().await;
}

/// The NATS server (a private current release the test owns) is killed and restarted mid-run:
/// the roles reconnect by themselves and the run completes.
#[tokio::test]
async fn nats_restart_mid_run_roles_reconnect_and_the_run_completes() {
    let Some(bin) = kora_broker::testing::TestServer::current_bin_or_skip() else {
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

/// PostgreSQL (a private server the test owns) goes down mid-run and comes back: the
/// coordinator's commits fail, it backs off and retries, and once the database answers again
/// the run completes with every node recorded once.
#[tokio::test]
async fn postgres_restart_mid_run_roles_retry_and_the_run_completes() {
    let Some(bin) = PrivatePg::bin_or_skip() else {
        return;
    };
    let pg = PrivatePg::start_new(bin);
    // Writes give up waiting for a connection after 0.5 s, so the outage below makes commits
    // fail and the coordinator's retry-with-backoff path runs.
    let Some(mut d) = Deployment::on(
        &pg.admin_url(),
        &[("KORA_DATABASE__ACQUIRE_TIMEOUT", "0.5")],
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

/// The scheduler dies after handing a run to the coordinator and before acking the request (a
/// failpoint aborts it there), with more requests queued behind it. A new scheduler admits the
/// redelivered request again: every run completes, each exactly once.
#[tokio::test]
async fn scheduler_crash_after_admitting_loses_and_duplicates_nothing() {
    // Redelivered 2 s after the crash rather than the default 30.
    let Some(mut d) = Deployment::new(&[("KORA_CONTROL__ACK_WAIT", "2")]).await else {
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
        &[("FAILPOINTS", "scheduler-after-admit=return")],
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

/// A poison task that kills the worker running it (here the Python node kills its own worker
/// process) reaches its max deliveries; the coordinator, told by the server's captured advisory,
/// dead-letters it as `worker_lost` and the run fails by Kailash's rules instead of hanging.
#[tokio::test]
async fn a_task_that_keeps_killing_its_workers_is_dead_lettered_as_worker_lost() {
    let Some(mut d) = Deployment::new(&[
        ("KORA_TASKS__MAX_DELIVER", "2"),
        ("KORA_TASKS__ACK_WAIT", "2"),
        ("KORA_WORKER__HEARTBEAT", "1"),
    ])
    .await
    else {
        return;
    };
    d.serve("scheduler,coordinator", &[]);
    // One worker per delivery (each dies), and one that is still alive at the end. The
    // sandbox stops node code from signalling its worker (kora-nodes' sandbox tests); this
    // test stands for a task that takes its worker down, so these workers run without it.
    for _ in 0..3 {
        d.serve_env("worker", &[], &[("KORA_NODES__SANDBOX__ENABLED", "false")]);
    }
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
