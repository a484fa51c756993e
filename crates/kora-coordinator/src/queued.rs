//! Runs that start later than they were admitted: queued runs getting a slot under their
//! concurrency limit, and runs an operator reopened (a replay or a restart) whose new attempts
//! must be sent.

use std::cmp::Reverse;
use std::sync::Arc;

use kora_model::now_ms;
use kora_model::wire::{self, AttemptRef, EventKind};
use kora_store::{Expect, RunStatus, RunUpdate};
use tracing::{debug, info, warn};

use crate::apply::apply;
use crate::outbox::Published;
use crate::pending::{Ev, Pending, Refusal};
use crate::state::ActiveRun;
use crate::{Coordinator, Error};

impl Coordinator {
    /// Starts queued runs that have a free slot under their concurrency limit (of `groups`, or
    /// of every group), oldest first: each in its own commit, which the ledger refuses if the
    /// run was started by another coordinator or its group filled up meanwhile.
    pub(crate) async fn start_queued(
        &mut self,
        groups: Option<Vec<String>>,
    ) -> Result<usize, Error> {
        let ids = self.store.startable_runs(groups.as_deref(), 64).await?;
        let mut started = 0;
        for run_id in ids {
            let Some(rec) = self.store.run(&run_id).await? else {
                continue;
            };
            if rec.status != RunStatus::Queued {
                continue;
            }
            let Some(mut run) = ActiveRun::from_record(&rec, self.env.catalog.as_ref()) else {
                continue;
            };
            let now = now_ms();
            let mut p = Pending::default();
            p.expected.insert(run_id.clone());
            p.batch.expect.push(Expect::Queued {
                run_id: run_id.clone(),
            });
            p.batch.run_updates.push(RunUpdate {
                run_id: run_id.clone(),
                status: RunStatus::Running,
                error: None,
                error_node: None,
                at_ms: now,
            });
            let waited = now.saturating_sub(rec.created_ms);
            let ev = Ev::run(EventKind::RunStarted)
                .detail(Some(serde_json::json!({ "queued_ms": waited })));
            p.emit(&self.env.subjects, &mut run, now, ev);
            let actions = run.state.start(now);
            apply(&self.env, &mut run, actions, now, &mut p);
            self.pace(&mut p).await?;
            p.flush_all_node_events(&self.env.subjects);
            match self.store.commit(std::mem::take(&mut p.batch)).await {
                Ok(_) => {}
                Err(kora_store::Error::Conflict { detail, .. }) => {
                    self.metrics.ledger_conflicts.inc();
                    debug!(%run_id, %detail, "queued run not started: taken or no slot");
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            started += 1;
            self.metrics.runs_started.inc();
            self.metrics
                .tasks_dispatched
                .inc_by(p.task_keys.len() as u64);
            self.count_ended(&p.ended);
            self.timers.extend(p.retries.drain(..).map(Reverse));
            info!(%run_id, waited_ms = waited, "queued run started");
            if !p.finished.contains(&run_id) {
                self.runs.insert(run_id, run);
            }
            let job = Published {
                publish: p.publish,
                task_keys: p.task_keys,
            };
            self.send(job, "tasks").await;
        }
        Ok(started)
    }

    /// A run an operator reopened in the ledger: forget any cached state, rebuild it, and send
    /// the new attempts' tasks (through the outbox publisher; they are marked published there).
    pub(crate) async fn resume(
        &mut self,
        run_id: &str,
        attempts: &[AttemptRef],
    ) -> Result<(), Error> {
        self.runs.remove(run_id);
        let Some(run) = self.rebuild(run_id).await? else {
            debug!(%run_id, "resume of a run that is not running ignored");
            return Ok(());
        };
        let wf = Arc::clone(run.state.workflow());
        let mut job = Published::default();
        for a in attempts {
            let Some(&node) = wf.index.get(&a.node_id) else {
                continue;
            };
            match self.env.resend(&run, node, a.iteration, a.attempt) {
                Some(Ok((msg, key))) => job.task(msg, key),
                Some(Err((kind, e))) => {
                    warn!(%run_id, node_id = %a.node_id, kind, error = %e, "cannot send a resumed task");
                }
                None => {}
            }
        }
        info!(%run_id, tasks = job.publish.len(), "run resumed");
        self.metrics
            .tasks_dispatched
            .inc_by(job.publish.len() as u64);
        self.runs.insert(run_id.to_string(), run);
        self.send(job, "resumed tasks").await;
        Ok(())
    }

    /// A `Resume` from an earlier `kora` (which wrote the replay itself): send its attempts.
    pub(crate) async fn on_resume(&mut self, r: wire::Resume) -> Result<(), Refusal> {
        Ok(self.resume(&r.run_id, &r.attempts).await?)
    }
}
