//! One batch of ledger messages, from delivery to ack: each message is handled into one
//! [`Pending`], rate-limited tasks are paced, the batch is committed in one ledger statement,
//! and only then are its messages published (through the outbox), its deliveries acked, and
//! its after-commit work done.

use std::cmp::Reverse;
use std::time::Duration;

use kora_broker::Delivery;
use kora_broker::topology::dead_letter;
use kora_model::wire::{self, Admission, NodeResult};
use kora_store::RunStatus;
use tracing::{debug, info, warn};

use crate::outbox::Published;
use crate::pending::{Pending, Refusal, nak_all};
use crate::{Coordinator, Error};

/// How soon a batch refused for a conflict is redelivered (to be retried on fresh state).
const CONFLICT_RETRY: Duration = Duration::from_millis(20);
/// How soon a batch is redelivered when the ledger could not be read or written.
const UNAVAILABLE_RETRY: Duration = Duration::from_millis(500);

/// The ledger messages the coordinator takes, by subject.
enum Message {
    Admission(Admission),
    Result(NodeResult),
    Cancel(wire::Cancel),
    Resume(wire::Resume),
    Operation(wire::Operation),
}

impl Coordinator {
    fn decode(&self, d: &Delivery) -> Result<Message, String> {
        let s = &self.env.subjects;
        let m = if d.subject == s.ledger_admit() {
            wire::decode(&d.payload).map(Message::Admission)
        } else if d.subject == s.ledger_cancel() {
            wire::decode(&d.payload).map(Message::Cancel)
        } else if d.subject == s.ledger_resume() {
            wire::decode(&d.payload).map(Message::Resume)
        } else if d.subject == s.ledger_operation() {
            wire::decode(&d.payload).map(Message::Operation)
        } else {
            wire::decode(&d.payload).map(Message::Result)
        };
        m.map_err(|e| e.to_string())
    }

    pub(crate) async fn handle_batch(&mut self, deliveries: Vec<Delivery>) -> Result<(), Error> {
        let mut p = Pending::default();
        let mut keep = Vec::with_capacity(deliveries.len());
        // Operator requests run after the batch's commit, each in its own transaction.
        let mut operations = Vec::new();
        let mut deliveries = deliveries.into_iter();
        while let Some(d) = deliveries.next() {
            let handled = match self.decode(&d) {
                Err(reason) => Err(Refusal::Poison(reason)),
                Ok(Message::Admission(a)) => self.on_admission(a, &mut p).await,
                Ok(Message::Result(r)) => self.on_result(r, &mut p).await,
                Ok(Message::Cancel(c)) => self.on_cancel(c, &mut p).await,
                Ok(Message::Resume(r)) => self.on_resume(r).await,
                Ok(Message::Operation(op)) => {
                    operations.push((op, d));
                    continue;
                }
            };
            match handled {
                Ok(()) => keep.push(d),
                Err(Refusal::Poison(reason)) => {
                    self.metrics.poison_messages.inc();
                    warn!(subject = %d.subject, %reason, "dead-lettering a ledger message");
                    dead_letter(
                        self.broker.as_ref(),
                        &self.env.subjects,
                        "ledger",
                        &d,
                        &reason,
                    )
                    .await?;
                }
                Err(Refusal::Unavailable(e)) => {
                    // The ledger could not be read (PostgreSQL down or restarting): nothing is
                    // wrong with the message. Forget what this batch planned and hand every
                    // message back to be redelivered once the loop has backed off.
                    self.forget(&p.touched);
                    let rest: Vec<Delivery> = deliveries.collect();
                    let all: Vec<&Delivery> = keep
                        .iter()
                        .chain([&d])
                        .chain(&rest)
                        .chain(operations.iter().map(|(_, d)| d))
                        .collect();
                    nak_all(&all, UNAVAILABLE_RETRY).await;
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.pace(&mut p).await {
            // The rate table could not be read: hand the batch back, as for a ledger outage.
            self.forget(&p.touched);
            let all: Vec<&Delivery> = keep
                .iter()
                .chain(operations.iter().map(|(_, d)| d))
                .collect();
            nak_all(&all, UNAVAILABLE_RETRY).await;
            return Err(e);
        }
        if !self.commit(&mut p, &keep).await? {
            // A conflict: the whole batch, operations included, comes back on fresh state.
            let ops: Vec<&Delivery> = operations.iter().map(|(_, d)| d).collect();
            nak_all(&ops, CONFLICT_RETRY).await;
            return Ok(());
        }
        self.after_commit(p, keep).await?;
        for (op, d) in operations {
            self.on_operation(op, d).await;
        }
        Ok(())
    }

    /// Commits the batch. `Ok(false)`: another coordinator moved one of its runs on first; the
    /// deliveries were handed back to be retried on state rebuilt from the ledger.
    async fn commit(&mut self, p: &mut Pending, keep: &[Delivery]) -> Result<bool, Error> {
        if p.batch.is_empty() {
            return Ok(true);
        }
        let started = std::time::Instant::now();
        let committed = self.store.commit(std::mem::take(&mut p.batch)).await;
        self.metrics
            .ledger_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        match committed {
            Ok(report) => {
                self.metrics.ledger_messages.inc_by(keep.len() as u64);
                self.metrics
                    .ledger_batch_messages
                    .observe(keep.len() as f64);
                self.metrics
                    .results_fenced
                    .inc_by(report.outcomes_ignored as u64);
                Ok(true)
            }
            Err(e) => {
                // The planner moved ahead of the ledger: forget those runs so they are rebuilt
                // from the ledger when the batch is redelivered.
                self.forget(&p.touched);
                if let kora_store::Error::Conflict { run_id, detail } = &e {
                    // Another coordinator moved a run on first: not a failure.
                    self.metrics.ledger_conflicts.inc();
                    debug!(%run_id, %detail, "ledger conflict; the batch will be retried on fresh state");
                    nak_all(&keep.iter().collect::<Vec<_>>(), CONFLICT_RETRY).await;
                    return Ok(false);
                }
                nak_all(&keep.iter().collect::<Vec<_>>(), UNAVAILABLE_RETRY).await;
                Err(e.into())
            }
        }
    }

    /// What a durable batch causes: workers told to stop cancelled runs' tasks, tasks and
    /// events handed to the outbox, deliveries acked, then queued runs started and parents of
    /// ended child runs told.
    async fn after_commit(&mut self, p: Pending, keep: Vec<Delivery>) -> Result<(), Error> {
        let Pending {
            publish,
            finished,
            ended,
            task_keys,
            cancelled,
            freed,
            children,
            retries,
            deadlines,
            ..
        } = p;
        self.metrics.tasks_dispatched.inc_by(task_keys.len() as u64);
        self.count_ended(&ended);
        for run_id in &cancelled {
            // At most once and not stored: a worker that misses it finishes the task, and its
            // result is ignored.
            if let Err(e) = self
                .broker
                .notify(
                    &self.env.subjects.cancel_notice(run_id),
                    run_id.as_bytes().to_vec(),
                )
                .await
            {
                warn!(%run_id, error = %e, "cannot tell workers to stop a cancelled run's tasks");
            }
        }
        self.timers.extend(retries.into_iter().map(Reverse));
        self.deadlines.extend(deadlines.into_iter().map(Reverse));
        crash_point(!task_keys.is_empty());
        // Published by the outbox task, in commit order, while this loop records the next
        // batch. The ledger already holds the decisions: a publish lost to a crash is re-sent
        // by the sweeper.
        self.send(Published { publish, task_keys }, "tasks").await;
        for d in keep {
            d.ack().await?;
        }
        self.forget(&finished);
        if !freed.is_empty()
            && let Err(e) = self.start_queued(Some(freed)).await
        {
            warn!(error = %e, "cannot start queued runs now; the sweep will");
        }
        if !children.is_empty()
            && let Err(e) = self.report_children(children).await
        {
            warn!(error = %e, "cannot tell parents their child runs ended; the sweep will");
        }
        self.evict();
        Ok(())
    }

    /// Counts and logs runs a committed batch ended.
    pub(crate) fn count_ended(&self, ended: &[(String, RunStatus)]) {
        for (run_id, status) in ended {
            match status {
                RunStatus::Succeeded => {
                    self.metrics.runs_succeeded.inc();
                    info!(%run_id, "run succeeded");
                }
                RunStatus::Cancelled => {}
                _ => {
                    self.metrics.runs_failed.inc();
                    warn!(%run_id, "run failed");
                }
            }
        }
    }

    pub(crate) fn forget(&mut self, runs: &[String]) {
        for id in runs {
            self.runs.remove(id);
        }
    }

    /// Keeps the cache within its size: arbitrary entries go, rebuilt on their next message.
    fn evict(&mut self) {
        let extra = self.runs.len().saturating_sub(self.env.cfg.cache_runs);
        if extra > 0 {
            let doomed: Vec<String> = self.runs.keys().take(extra).cloned().collect();
            self.forget(&doomed);
        }
    }
}

/// Crash tests abort the process here, between the commit and the publish of its tasks (the
/// `coordinator-after-commit` failpoint; compiled in only with the `failpoints` feature).
fn crash_point(armed: bool) {
    if armed {
        fail::fail_point!("coordinator-after-commit", |_| {
            tracing::error!("failpoint coordinator-after-commit: aborting");
            std::process::abort()
        });
    }
}
