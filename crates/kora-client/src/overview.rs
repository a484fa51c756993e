//! What an installation is doing, read from the ledger and JetStream (no metrics endpoint
//! needed): runs finished per workflow in a window with their rate, success and p50/p99
//! end-to-end time, live runs, stuck runs ([`Control::overview`], within the control's
//! tenant), and the fleet: task queue backlogs and the workers seen ([`Control::fleet`],
//! installation-wide: counts and worker ids, no tenant's runs). `kora top` and the gateway's
//! `/v1/overview` and `/v1/fleet` (the dashboard) show them.

use std::collections::BTreeMap;

use kora_broker::topology::{QueueBacklog, queue_backlog};
use kora_store::RunStatus;
use serde::Serialize;

use crate::{Control, Result};

/// How many finished runs a window reads at most (the figures say when they were cut).
const FINISHED_LIMIT: usize = 200_000;

/// When a running run counts as stuck (the coordinator's `[monitoring]` rule).
#[derive(Debug, Clone, Copy)]
pub struct StuckRule {
    /// No progress for this long (0: never stuck by time).
    pub after_secs: u64,
    /// A node retried this many times.
    pub retry_loop_attempts: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Overview {
    pub at_ms: u64,
    pub window_secs: u64,
    /// Every workflow together.
    pub totals: Kpis,
    /// Per workflow (and tenant), by tenant and name.
    pub workflows: Vec<WorkflowKpis>,
    pub live: Vec<LiveRow>,
    pub stuck: Vec<StuckRow>,
    /// Whether the window held more finished runs than were read (the figures cover the
    /// most recent ones).
    pub truncated: bool,
}

/// Runs that ended in the window.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Kpis {
    pub finished: u64,
    pub succeeded: u64,
    /// Failed or rejected.
    pub failed: u64,
    pub cancelled: u64,
    /// Finished runs per second over the window.
    pub per_sec: f64,
    /// Succeeded out of finished (cancelled runs excluded); `None` when none finished.
    pub success_rate: Option<f64>,
    /// End-to-end time (admission to end), nearest rank.
    pub p50_secs: f64,
    pub p99_secs: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkflowKpis {
    pub tenant: String,
    pub workflow: String,
    #[serde(flatten)]
    pub kpis: Kpis,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LiveRow {
    pub tenant: String,
    pub workflow: String,
    pub running: u64,
    pub queued: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StuckRow {
    pub run_id: String,
    pub tenant: String,
    pub workflow: String,
    /// The monitor's reason, once it raised its alert.
    pub reason: Option<String>,
    pub idle_secs: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Fleet {
    pub at_ms: u64,
    pub window_secs: u64,
    pub queues: Vec<QueueRow>,
    pub workers: Vec<WorkerRow>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueRow {
    #[serde(flatten)]
    pub backlog: QueueBacklog,
    /// How long the oldest waiting task has waited (0 when none waits).
    pub oldest_waiting_secs: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkerRow {
    pub worker_id: String,
    /// Attempts it finished in the window.
    pub attempts: u64,
}

/// Why each stuck run is stuck, by run id: the reasons of the monitor's open `run_stuck`
/// alerts.
pub async fn stuck_reasons(store: &dyn kora_store::Store) -> Result<BTreeMap<String, String>> {
    Ok(store
        .open_alerts(Some("run_stuck"), 100_000)
        .await?
        .into_iter()
        .filter_map(|a| {
            Some((
                a.body["run_id"].as_str()?.to_string(),
                a.body["reason"].as_str()?.to_string(),
            ))
        })
        .collect())
}

/// The rank-based percentile of sorted `v` (nearest rank).
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn kpis(mut secs: Vec<f64>, [ok, failed, cancelled]: [u64; 3], window_secs: f64) -> Kpis {
    secs.sort_by(f64::total_cmp);
    let judged = ok + failed;
    Kpis {
        finished: secs.len() as u64,
        succeeded: ok,
        failed,
        cancelled,
        per_sec: secs.len() as f64 / window_secs,
        success_rate: (judged > 0).then(|| ok as f64 / judged as f64),
        p50_secs: percentile(&secs, 0.50),
        p99_secs: percentile(&secs, 0.99),
    }
}

fn window_ms(window: std::time::Duration) -> u64 {
    u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Control {
    /// Runs finished in the last `window`, live runs and stuck runs, within the tenant.
    pub async fn overview(
        &self,
        window: std::time::Duration,
        stuck: StuckRule,
    ) -> Result<Overview> {
        let now = kora_model::now_ms();
        let window_ms = window_ms(window);
        let window_secs = window_ms as f64 / 1000.0;
        let since = now.saturating_sub(window_ms);
        let finished = self.store.finished_since(since, FINISHED_LIMIT).await?;
        let truncated = finished.len() >= FINISHED_LIMIT;
        type Acc = (Vec<f64>, [u64; 3]);
        let mut all: Acc = Default::default();
        let mut by_wf: BTreeMap<(String, String), Acc> = BTreeMap::new();
        for f in finished.into_iter().filter(|f| self.in_scope(&f.tenant)) {
            let secs = f.finished_ms.saturating_sub(f.created_ms) as f64 / 1000.0;
            let slot = match f.status {
                RunStatus::Succeeded => 0,
                RunStatus::Cancelled => 2,
                _ => 1,
            };
            let e = by_wf.entry((f.tenant, f.workflow)).or_default();
            e.0.push(secs);
            e.1[slot] += 1;
            all.0.push(secs);
            all.1[slot] += 1;
        }
        let workflows = by_wf
            .into_iter()
            .map(|((tenant, workflow), (secs, counts))| WorkflowKpis {
                tenant,
                workflow,
                kpis: kpis(secs, counts, window_secs),
            })
            .collect();
        let mut live: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for l in self.store.live_runs(10_000).await? {
            if !self.in_scope(&l.tenant) {
                continue;
            }
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
        let stuck = if stuck.after_secs == 0 {
            Vec::new()
        } else {
            let reasons = stuck_reasons(self.store.as_ref()).await?;
            self.store
                .stuck_runs(
                    now.saturating_sub(stuck.after_secs.saturating_mul(1000)),
                    stuck.retry_loop_attempts,
                    100,
                )
                .await?
                .into_iter()
                .filter(|s| self.in_scope(&s.tenant))
                .map(|s| StuckRow {
                    reason: reasons.get(&s.run_id).cloned(),
                    idle_secs: now.saturating_sub(s.progress_ms) / 1000,
                    run_id: s.run_id,
                    tenant: s.tenant,
                    workflow: s.workflow,
                })
                .collect()
        };
        Ok(Overview {
            at_ms: now,
            window_secs: window_ms / 1000,
            totals: kpis(all.0, all.1, window_secs),
            workflows,
            live,
            stuck,
            truncated,
        })
    }

    /// The task queues' backlogs and the workers that finished attempts in the last `window`:
    /// the whole installation's (the fleet is shared by every tenant).
    pub async fn fleet(&self, window: std::time::Duration) -> Result<Fleet> {
        let now = kora_model::now_ms();
        let window_ms = window_ms(window);
        let queues = queue_backlog(self.broker.as_ref(), &self.subjects, &[], 1_000)
            .await?
            .into_iter()
            .map(|b| QueueRow {
                oldest_waiting_secs: b
                    .oldest_waiting_ms
                    .map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0),
                backlog: b,
            })
            .collect();
        let workers = self
            .store
            .active_workers(now.saturating_sub(window_ms))
            .await?
            .into_iter()
            .map(|(worker_id, attempts)| WorkerRow {
                worker_id,
                attempts,
            })
            .collect();
        Ok(Fleet {
            at_ms: now,
            window_secs: window_ms / 1000,
            queues,
            workers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{kpis, percentile};

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn success_rate_leaves_cancelled_runs_out() {
        let k = kpis(vec![1.0, 2.0, 3.0, 4.0], [2, 1, 1], 2.0);
        assert_eq!(k.finished, 4);
        assert_eq!(k.per_sec, 2.0);
        assert_eq!(k.success_rate, Some(2.0 / 3.0));
        assert_eq!(kpis(vec![], [0, 0, 0], 1.0).success_rate, None);
    }
}
