//! `kora top`: a live view of an installation, read from the ledger and JetStream (no metrics
//! endpoint needed): runs finished per workflow in the last window with their rate and p50/p99
//! end-to-end time, live runs, queue backlogs, workers seen, and stuck runs. Redrawn in place
//! every `--interval` (plain ANSI: works over SSH); `--once --format json` prints one snapshot.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use kora_client::overview::{Fleet, Overview, StuckRule};
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

/// One frame: the installation's overview (every tenant) and its fleet.
#[derive(Serialize)]
struct Snapshot {
    #[serde(flatten)]
    overview: Overview,
    queues: Vec<kora_client::overview::QueueRow>,
    workers: Vec<kora_client::overview::WorkerRow>,
}

async fn snapshot(
    control: &kora_client::Control,
    cfg: &kora_server::ServerConfig,
    window: Duration,
) -> anyhow::Result<Snapshot> {
    let m = &cfg.monitoring;
    let rule = StuckRule {
        after_secs: m.stuck_after_secs,
        retry_loop_attempts: m.retry_loop_attempts,
    };
    let overview = control.overview(window, rule).await?;
    let Fleet {
        queues, workers, ..
    } = control.fleet(window).await?;
    Ok(Snapshot {
        overview,
        queues,
        workers,
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
        crate::render::when(Some(s.overview.at_ms)),
        s.overview.window_secs
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
    for w in &s.overview.workflows {
        t.add_row(vec![
            w.workflow.clone(),
            w.tenant.clone(),
            w.kpis.finished.to_string(),
            w.kpis.succeeded.to_string(),
            w.kpis.failed.to_string(),
            w.kpis.cancelled.to_string(),
            format!("{:.2}", w.kpis.per_sec),
            secs(w.kpis.p50_secs),
            secs(w.kpis.p99_secs),
        ]);
    }
    print_table(&t);
    let mut t = table(&["live workflow", "tenant", "running", "queued"]);
    for l in &s.overview.live {
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
    if !s.overview.stuck.is_empty() {
        let mut t = table(&["stuck run", "workflow", "reason", "idle"]);
        for r in &s.overview.stuck {
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
    let control = kora_client::Control::new(store, broker, cfg.nats.subjects());
    loop {
        let s = snapshot(&control, &cfg, a.window).await?;
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
