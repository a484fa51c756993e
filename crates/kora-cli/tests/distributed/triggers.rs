//! Subject and cron triggers.

#![allow(clippy::unwrap_used)]

use super::support::*;

/// Subject triggers: registered while no Kora process runs, the messages published meanwhile
/// are kept and each starts exactly one run once roles start (two schedulers share the
/// trigger), with the message as the run's parameters. A paused trigger's messages wait and run
/// on resume.
#[tokio::test]
async fn trigger_messages_published_while_kora_is_down_each_start_one_run() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    let prefix = d.prefix();
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
    let broker = d.broker().await;
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
