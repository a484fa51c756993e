//! Concurrency and rate limits, idempotency windows, priorities and cancellation.

#![allow(clippy::unwrap_used)]

use super::support::*;

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
        &[("KORA_NODES__PYTHON_WORKERS", "4")],
    );
    d.serve_env(
        "worker",
        &[],
        &[
            ("KORA_WORKER__QUEUE", "paced"),
            ("KORA_NODES__PYTHON_WORKERS", "4"),
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
    let Some(mut d) = Deployment::new(&[("KORA_COORDINATOR__IDEMPOTENCY_WINDOW", "5s")]).await
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
    // Another tenant's key is another key.
    let other = submit(&["--tenant", "acme", "--wait", "--timeout", "30"]);
    assert_ne!(other["run_id"], run_id.as_str(), "another tenant: {other}");
    assert_eq!(other["status"], "succeeded", "{other}");
    let listed = d.kora(&["runs", "list", "--tenant", "acme", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["run_id"], other["run_id"], "{listed}");
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let later = submit(&["--wait", "--timeout", "30"]);
    assert_ne!(later["run_id"], run_id.as_str(), "past the window: {later}");
    assert_eq!(later["status"], "succeeded", "{later}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
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

/// Limits set on `kora serve` hold for run requests from any client: a workflow over
/// `limits.max_nodes` that the submitting CLI (default limits) let through is rejected by the
/// scheduler, naming the setting; a node that sets no timeout is stopped at
/// `tasks.default_timeout` and handled by its retry policy (one attempt: the run fails).
#[tokio::test]
async fn server_input_limits_and_the_default_timeout_hold_for_every_client() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    d.serve_env(
        "all",
        &[],
        &[
            ("KORA_LIMITS__MAX_NODES", "3"),
            ("KORA_TASKS__DEFAULT_TIMEOUT", "2s"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.json");
    let nodes: Vec<serde_json::Value> = (0..4)
        .map(|i| serde_json::json!({"id": format!("n{i}"), "type": "NoOpNode"}))
        .collect();
    std::fs::write(
        &big,
        serde_json::json!({"kora": 1, "name": "big", "nodes": nodes}).to_string(),
    )
    .unwrap();
    let out = d.submit_wait(&big, None);
    assert_eq!(out["status"], "rejected", "{out}");
    let problem = out["error"].to_string();
    assert!(
        problem.contains("the number of nodes is 4, over the limit of 3")
            && problem.contains("KORA_LIMITS__MAX_NODES"),
        "{problem}"
    );

    let spin = dir.path().join("spin.json");
    std::fs::write(
        &spin,
        serde_json::json!({"kora": 1, "name": "spin", "nodes": [
            {"id": "spin", "type": "PythonCodeNode", "retry": {"max_attempts": 1},
             "config": {"code": "while True:\n    pass"}}]})
        .to_string(),
    )
    .unwrap();
    let t = Instant::now();
    let out = d.submit_wait(&spin, None);
    // (A failed leaf still ends the run `succeeded`, as in Kailash.)
    assert_eq!(
        out["results"]["spin"]["error_type"], "TimeoutError",
        "{out}"
    );
    assert!(
        out["results"]["spin"]["error"]
            .as_str()
            .unwrap()
            .contains("within its timeout of 2.0s"),
        "{out}"
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    d.finish().await;
}
