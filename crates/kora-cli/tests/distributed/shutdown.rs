//! Signals: draining, and a second signal that stops at once.

#![allow(clippy::unwrap_used)]

use super::support::*;

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

/// SIGTERM drains a busy worker: it stops pulling, lets its running task (2 s) finish and
/// report, and exits 0 well within its grace period; the run succeeds with that one execution.
/// A second worker busy with a long task gets two signals and stops at once (exit 130), and
/// its task is handed to another worker.
#[tokio::test]
async fn sigterm_drains_a_busy_worker_and_a_second_signal_stops_it_at_once() {
    let Some(mut d) = Deployment::new(&[
        ("KORA_WORKER__DRAIN_GRACE", "15"),
        ("KORA_TASKS__ACK_WAIT", "4"),
        ("KORA_WORKER__HEARTBEAT", "1"),
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
    let stubborn = d.serve_env("worker", &[], &[("KORA_WORKER__DRAIN_GRACE", "60")]);
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

/// A role that fails ends the process, after the others drained: with a task running, the
/// coordinator fails (a failpoint); `/healthz` answers 503 naming the failed role while the
/// worker drains, the worker's task finishes, and `kora serve` exits 1 saying which role
/// failed and why.
#[tokio::test]
async fn a_failing_role_stops_the_process_after_the_others_drain() {
    let Some(d) = Deployment::new(&[]).await else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let done = dir.path().join("done");
    let wf = dir.path().join("slow.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "nodes": [{"id": "slow", "type": "PythonCodeNode",
            "config": {"code": format!("import time\ntime.sleep(4)\nopen({:?}, 'w').write('x')\nresult = 1", done.display().to_string())}}]})
        .to_string(),
    )
    .unwrap();
    let mut serve = d
        .command()
        .args(["serve", "--role", "all", "--metrics-addr", &addr])
        // Off once (the batch that dispatched the task), then fail: the task is running.
        .env(
            "FAILPOINTS",
            "coordinator-fail=1*off->return(the ledger went away)",
        )
        .env("KORA_WORKER__DRAIN_GRACE", "30s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(http_get(&addr, "/healthz").0, 200, "healthy before");
    d.submit(&wf);
    // While the worker drains its running task, the process says why it is unhealthy.
    let started = Instant::now();
    let mut seen = None;
    while started.elapsed() < Duration::from_secs(20) {
        if let Ok(s) = std::net::TcpStream::connect(&addr) {
            drop(s);
            let (status, body) = http_get(&addr, "/healthz");
            if status == 503 {
                seen = Some(body);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = seen.expect("/healthz said 503 while the worker drained");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        health["roles"]["coordinator"]["state"], "failed",
        "{health}"
    );
    assert_eq!(
        health["roles"]["coordinator"]["error"], "the ledger went away",
        "{health}"
    );
    assert_eq!(health["roles"]["worker"]["state"], "stopping", "{health}");
    let status = tokio::task::spawn_blocking(move || {
        let status = serve.wait().unwrap();
        let mut err = String::new();
        use std::io::Read;
        serve
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err)
    })
    .await
    .unwrap();
    let (status, stderr) = status;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("role coordinator failed: the ledger went away"),
        "{stderr}"
    );
    assert!(
        done.exists(),
        "the worker finished its task before the process ended"
    );
    d.finish().await;
}
