//! `kora top`: a live view of an installation, read from the ledger and JetStream (no metrics
//! endpoint needed): runs finished per workflow in the last window with their rate and p50/p99
//! end-to-end time, live runs, queue backlogs, workers seen, and stuck runs. Redrawn in place
//! every `--interval` (plain ANSI: works over SSH); `--once --format json` prints one snapshot.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use kora_broker::topology::{QueueBacklog, queue_backlog};
use kora_store::RunStatus;
use serde::Serialize;

use crate::args::{Conn, Format};
use crate::render::{json, print_table, table};

pub(crate) struct Args {
    pub(crate) once: bool,
    pub(crate) interval: Duration,
    pub(crate) window: Duration,
    pub(crate) format: Format,
    pub(crate) conn: Conn,
}

#[derive(Serialize)]
struct Snapshot {
    at_ms: u64,
    window_secs: u64,
    workflows: Vec<WorkflowRow>,
    live: Vec<LiveRow>,
    queues: Vec<QueueRow>,
    workers: Vec<WorkerRow>,
    stuck: Vec<StuckRow>,
}

#[derive(Serialize)]
struct WorkflowRow {
    tenant: String,
    workflow: String,
    finished: u64,
    succeeded: u64,
    failed: u64,
    cancelled: u64,
    per_sec: f64,
    p50_secs: f64,
    p99_secs: f64,
}

#[derive(Serialize)]
struct LiveRow {
    tenant: String,
    workflow: String,
    running: u64,
    queued: u64,
}

#[derive(Serialize)]
struct QueueRow {
    #[serde(flatten)]
    backlog: QueueBacklog,
    oldest_waiting_secs: f64,
}

#[derive(Serialize)]
struct WorkerRow {
    worker_id: String,
    attempts: u64,
}

#[derive(Serialize)]
struct StuckRow {
    run_id: String,
    workflow: String,
    reason: Option<String>,
    idle_secs: u64,
}

/// The rank-based percentile of sorted `v` (nearest rank).
fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

async fn snapshot(
    store: &dyn kora_store::Store,
    broker: &dyn kora_broker::Broker,
    cfg: &kora_server::ServerConfig,
    window: Duration,
) -> anyhow::Result<Snapshot> {
    let now = kora_model::now_ms();
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    let since = now.saturating_sub(window_ms);
    let mut by_wf: BTreeMap<(String, String), (Vec<f64>, [u64; 3])> = BTreeMap::new();
    for f in store.finished_since(since, 200_000).await? {
        let e = by_wf.entry((f.tenant, f.workflow)).or_default();
        e.0.push(f.finished_ms.saturating_sub(f.created_ms) as f64 / 1000.0);
        match f.status {
            RunStatus::Succeeded => e.1[0] += 1,
            RunStatus::Cancelled => e.1[2] += 1,
            _ => e.1[1] += 1,
        }
    }
    let workflows = by_wf
        .into_iter()
        .map(
            |((tenant, workflow), (mut secs, [ok, failed, cancelled]))| {
                secs.sort_by(f64::total_cmp);
                WorkflowRow {
                    tenant,
                    workflow,
                    finished: secs.len() as u64,
                    succeeded: ok,
                    failed,
                    cancelled,
                    per_sec: secs.len() as f64 / (window_ms as f64 / 1000.0),
                    p50_secs: percentile(&secs, 0.50),
                    p99_secs: percentile(&secs, 0.99),
                }
            },
        )
        .collect();
    let mut live: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for l in store.live_runs(10_000).await? {
        let e = live.entry((l.tenant, l.workflow)).or_default();
        if l.status == RunStatus::Queued {
            e.1 += l.runs;
        } else {
            e.0 += l.runs;
        }
    }
    let live = live
        .into_iter()
        .map(|((tenant, workflow), (running, queued))| LiveRow {
            tenant,
            workflow,
            running,
            queued,
        })
        .collect();
    let queues = queue_backlog(broker, &cfg.nats.subjects(), &[], 1_000)
        .await?
        .into_iter()
        .map(|b| QueueRow {
            oldest_waiting_secs: b
                .oldest_waiting_ms
                .map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0),
            backlog: b,
        })
        .collect();
    let workers = store
        .active_workers(since)
        .await?
        .into_iter()
        .map(|(worker_id, attempts)| WorkerRow {
            worker_id,
            attempts,
        })
        .collect();
    let m = &cfg.monitoring;
    let reasons: BTreeMap<String, String> = store
        .open_alerts(Some("run_stuck"), 100_000)
        .await?
        .into_iter()
        .filter_map(|a| {
            Some((
                a.body["run_id"].as_str()?.to_string(),
                a.body["reason"].as_str()?.to_string(),
            ))
        })
        .collect();
    let stuck = if m.stuck_after_secs == 0 {
        Vec::new()
    } else {
        store
            .stuck_runs(
                now.saturating_sub(m.stuck_after_secs.saturating_mul(1000)),
                m.retry_loop_attempts,
                100,
            )
            .await?
            .into_iter()
            .map(|s| StuckRow {
                reason: reasons.get(&s.run_id).cloned(),
                idle_secs: now.saturating_sub(s.progress_ms) / 1000,
                run_id: s.run_id,
                workflow: s.workflow,
            })
            .collect()
    };
    Ok(Snapshot {
        at_ms: now,
        window_secs: window_ms / 1000,
        workflows,
        live,
        queues,
        workers,
        stuck,
    })
}

fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else {
        format!("{s:.2}s")
    }
}

fn draw(s: &Snapshot) {
    println!(
        "kora top — {} — last {}s (Ctrl-C to quit)\n",
        crate::render::when(Some(s.at_ms)),
        s.window_secs
    );
    let mut t = table(&[
        "workflow",
        "tenant",
        "finished",
        "ok",
        "failed",
        "cancelled",
        "runs/s",
        "p50",
        "p99",
    ]);
    for w in &s.workflows {
        t.add_row(vec![
            w.workflow.clone(),
            w.tenant.clone(),
            w.finished.to_string(),
            w.succeeded.to_string(),
            w.failed.to_string(),
            w.cancelled.to_string(),
            format!("{:.2}", w.per_sec),
            secs(w.p50_secs),
            secs(w.p99_secs),
        ]);
    }
    print_table(&t);
    let mut t = table(&["live workflow", "tenant", "running", "queued"]);
    for l in &s.live {
        t.add_row(vec![
            l.workflow.clone(),
            l.tenant.clone(),
            l.running.to_string(),
            l.queued.to_string(),
        ]);
    }
    print_table(&t);
    let mut t = table(&["queue", "waiting", "running", "oldest waiting", "served"]);
    for q in &s.queues {
        t.add_row(vec![
            q.backlog.queue.clone(),
            q.backlog.waiting.to_string(),
            q.backlog.running.to_string(),
            secs(q.oldest_waiting_secs),
            if q.backlog.bound { "yes" } else { "NO WORKER" }.to_string(),
        ]);
    }
    print_table(&t);
    let mut t = table(&["worker", "attempts in window"]);
    for w in &s.workers {
        t.add_row(vec![w.worker_id.clone(), w.attempts.to_string()]);
    }
    print_table(&t);
    if !s.stuck.is_empty() {
        let mut t = table(&["stuck run", "workflow", "reason", "idle"]);
        for r in &s.stuck {
            t.add_row(vec![
                r.run_id.clone(),
                r.workflow.clone(),
                r.reason.clone().unwrap_or_else(|| "-".into()),
                kora_model::duration::format(Duration::from_secs(r.idle_secs)),
            ]);
        }
        print_table(&t);
    }
}

pub(crate) async fn top(a: Args) -> anyhow::Result<ExitCode> {
    let cfg = a.conn.load(serde_json::json!({}))?;
    let store = kora_cli::connect::store(&cfg).await?;
    let broker = kora_cli::connect::broker(&cfg, "kora-top").await?;
    loop {
        let s = snapshot(store.as_ref(), broker.as_ref(), &cfg, a.window).await?;
        if a.once {
            if a.format == Format::Json {
                json(&s)?;
            } else {
                draw(&s);
            }
            return Ok(ExitCode::SUCCESS);
        }
        // Home and clear, then the frame: redrawn in place on any terminal.
        print!("\x1b[H\x1b[2J");
        draw(&s);
        std::io::stdout().flush().ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(a.interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
