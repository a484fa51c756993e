//! Transaction monitoring with two coordinators: runs stuck on purpose (a queue no worker
//! serves; a node that never answers under a long timeout, heartbeating) raise exactly one
//! `run_stuck` alert each at a webhook receiver the test runs, and one resolve when they clear;
//! a node that turns slow after a baseline raises one `latency_anomaly`. `kora runs list
//! --stuck` lists the stuck runs with the monitor's reason.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use super::support::*;

/// An HTTP server that records every JSON body POSTed to it and answers 200.
pub(crate) struct Receiver {
    addr: String,
    got: Arc<Mutex<Vec<serde_json::Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&got);
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let sink = Arc::clone(&sink);
                tokio::spawn(serve(conn, sink));
            }
        });
        Receiver { addr, got, task }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The messages received about `subject` in `state` (firing, resolved).
    fn about(&self, subject: &str, state: &str) -> Vec<serde_json::Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m["subject"] == subject && m["state"] == state)
            .cloned()
            .collect()
    }

    async fn wait_for(
        &self,
        subject: &str,
        state: &str,
        limit: Duration,
    ) -> Vec<serde_json::Value> {
        let started = Instant::now();
        loop {
            let got = self.about(subject, state);
            if !got.is_empty() || started.elapsed() > limit {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(crate) fn all(&self) -> Vec<serde_json::Value> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers HTTP/1.1 requests on one connection (keep-alive), recording their bodies.
async fn serve(conn: tokio::net::TcpStream, sink: Arc<Mutex<Vec<serde_json::Value>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = conn;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..head_end + len).skip(head_end).collect();
        if let Ok(v) = serde_json::from_slice(&body) {
            sink.lock().unwrap().push(v);
        }
        if conn
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    }
}

fn write(dir: &Path, name: &str, doc: serde_json::Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, doc.to_string()).unwrap();
    p
}

#[tokio::test]
async fn stuck_runs_and_anomalies_raise_one_alert_each_with_two_coordinators() {
    let hook = Receiver::start().await;
    let url = hook.url();
    let Some(mut d) = Deployment::new(&[
        ("KORA_COORDINATOR__SAMPLE_INTERVAL", "300ms"),
        ("KORA_MONITORING__STUCK_AFTER_SECS", "2"),
        ("KORA_MONITORING__STUCK_SCAN_INTERVAL", "300ms"),
        ("KORA_MONITORING__LATENCY_MIN_SAMPLES", "8"),
        ("KORA_MONITORING__QUEUE_BACKLOG_SECS", "0"),
        ("KORA_ALERTS__WEBHOOK_URL", &url),
    ])
    .await
    else {
        return;
    };
    d.serve("scheduler,coordinator", &[]);
    d.serve("scheduler,coordinator", &[]);
    d.serve("worker", &[]);
    let dir = tempfile::tempdir().unwrap();

    // A baseline of fast PythonCodeNodes in workflow "latency", then one that takes 1.5 s.
    let fast = write(
        dir.path(),
        "fast.json",
        serde_json::json!({"kora": 1, "id": "latency", "name": "latency", "nodes": [
            {"id": "p", "type": "PythonCodeNode", "config": {"code": "result = 1"}}]}),
    );
    let slow = write(
        dir.path(),
        "slow.json",
        serde_json::json!({"kora": 1, "id": "latency", "name": "latency", "nodes": [
            {"id": "p", "type": "PythonCodeNode", "config": {"code": "import time\ntime.sleep(1.5)\nresult = 1"}}]}),
    );
    for _ in 0..30 {
        assert_eq!(d.submit_wait(&fast, None)["status"], "succeeded");
    }
    assert_eq!(d.submit_wait(&slow, None)["status"], "succeeded");
    let latency_subject = "latency_anomaly:default/latency/PythonCodeNode";
    let anomaly = hook
        .wait_for(latency_subject, "firing", Duration::from_secs(20))
        .await;
    assert_eq!(anomaly.len(), 1, "{:#?}", hook.all());
    assert_eq!(anomaly[0]["kind"], "latency_anomaly");
    assert_eq!(anomaly[0]["workflow"], "latency");
    assert!(
        anomaly[0]["seconds"].as_f64().unwrap() >= 1.4,
        "{anomaly:?}"
    );

    // Stuck on purpose: a task on a queue no worker serves, and a node that never answers
    // within its long timeout (its worker heartbeats it).
    let stranded = write(
        dir.path(),
        "stranded.json",
        serde_json::json!({"kora": 1, "id": "stranded", "name": "stranded", "nodes": [
            {"id": "s", "type": "NoOpNode", "config": {"queue": "nobody"}}]}),
    );
    let hanging = write(
        dir.path(),
        "hanging.json",
        serde_json::json!({"kora": 1, "id": "hanging", "name": "hanging", "nodes": [
            {"id": "h", "type": "PythonCodeNode", "config": {
                "code": "import time\ntime.sleep(120)\nresult = 1", "timeout_secs": 300}}]}),
    );
    let stranded_run = d.submit(&stranded);
    let hanging_run = d.submit(&hanging);
    let stranded_subject = format!("run_stuck:{stranded_run}");
    let hanging_subject = format!("run_stuck:{hanging_run}");
    let s = hook
        .wait_for(&stranded_subject, "firing", Duration::from_secs(30))
        .await;
    assert_eq!(s.len(), 1, "{:#?}", hook.all());
    assert_eq!(s[0]["reason"], "no_worker", "{s:?}");
    assert_eq!(s[0]["workflow"], "stranded");
    assert_eq!(s[0]["severity"], "warning");
    assert!(
        s[0]["message"].as_str().unwrap().contains("no worker"),
        "{s:?}"
    );
    let h = hook
        .wait_for(&hanging_subject, "firing", Duration::from_secs(30))
        .await;
    assert_eq!(h.len(), 1, "{:#?}", hook.all());
    assert_eq!(h[0]["reason"], "no_progress", "{h:?}");
    assert_eq!(h[0]["in_flight"], serde_json::json!(["h"]));

    // `kora runs list --stuck` shows both, with the monitor's reasons.
    let o = d.kora(&["runs", "list", "--stuck", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    let reason_of = |run: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["run_id"] == run)
            .map(|r| r["reason"].clone())
    };
    assert_eq!(
        reason_of(&stranded_run),
        Some("no_worker".into()),
        "{listed}"
    );
    assert_eq!(
        reason_of(&hanging_run),
        Some("no_progress".into()),
        "{listed}"
    );

    // Many passes of both coordinators later, still one alert per condition.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hook.about(&stranded_subject, "firing").len(), 1);
    assert_eq!(hook.about(&hanging_subject, "firing").len(), 1);
    assert_eq!(hook.about(latency_subject, "firing").len(), 1);

    // Cleared: a worker for the queue runs the stranded task; the hanging run is cancelled.
    d.serve("worker", &["--queue", "nobody"]);
    let r = hook
        .wait_for(&stranded_subject, "resolved", Duration::from_secs(30))
        .await;
    assert_eq!(r.len(), 1, "{:#?}", hook.all());
    assert_eq!(
        d.wait_finished(&stranded_run, Duration::from_secs(10))
            .await["status"],
        "succeeded"
    );
    let o = d.kora(&["runs", "cancel", &hanging_run]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = hook
        .wait_for(&hanging_subject, "resolved", Duration::from_secs(30))
        .await;
    assert_eq!(r.len(), 1, "{:#?}", hook.all());
    assert!(r[0]["message"].as_str().unwrap().starts_with("Resolved: "));
    tokio::time::sleep(Duration::from_secs(2)).await;
    for subject in [&stranded_subject, &hanging_subject] {
        assert_eq!(hook.about(subject, "firing").len(), 1, "{subject}");
        assert_eq!(hook.about(subject, "resolved").len(), 1, "{subject}");
    }
    d.finish().await;
}
