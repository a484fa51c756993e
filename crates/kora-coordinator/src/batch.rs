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

use crate::metrics::Fenced;
use crate::outbox::Published;
use crate::pending::{Ended, Pending, Refusal, nak_all};
use crate::{Coordinator, Error};
use kora_store::CommitReport;

/// How soon a batch refused for a conflict is redelivered (to be retried on fresh state).
const CONFLICT_RETRY: Duration = Duration::from_millis(20);
/// How soon a batch is redelivered when the ledger could not be read or written.
const UNAVAILABLE_RETRY: Duration = Duration::from_millis(500);

/// The batch the next commit writes: what the messages taken so far decided, and their
/// deliveries (acked once it is durable).
pub(crate) struct Open {
    p: Pending,
    keep: Vec<Delivery>,
}

impl Open {
    /// How many messages it holds.
    pub(crate) fn len(&self) -> usize {
        self.keep.len()
    }
}

/// The commit in flight, and what follows it once durable.
pub(crate) struct InFlight {
    handle: tokio::task::JoinHandle<Result<CommitReport, kora_store::Error>>,
    p: Pending,
    keep: Vec<Delivery>,
    marks: Vec<kora_store::AttemptKey>,
    started: std::time::Instant,
    /// Nothing to write (every message fenced): no ledger round trip was made.
    empty: bool,
}

impl InFlight {
    /// Waits for the commit: what the loop selects on.
    pub(crate) async fn done(
        &mut self,
    ) -> Result<Result<CommitReport, kora_store::Error>, tokio::task::JoinError> {
        (&mut self.handle).await
    }
}

/// The ledger messages the coordinator takes, by subject.
enum Message {
    Admission(Admission),
    /// A node's result, and the queue whose subject it came on (none: the coordinator's own).
    Result(NodeResult, Option<String>),
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
            let via = s.result_queue(&d.subject).map(str::to_string);
            wire::decode(&d.payload).map(|r| Message::Result(r, via))
        };
        m.map_err(|e| e.to_string())
    }

    /// Takes a batch of ledger messages into the open batch (the one the next commit writes):
    /// each message is handled, rate-limited tasks are paced, and tasks that may go before
    /// their commit are published at once. The open batch's commit starts as soon as no
    /// other commit is in flight; its deliveries are acked and its other messages published
    /// only once it is durable ([`Coordinator::on_committed`]). Operator requests (and
    /// resumes) first wait for every commit in flight, and run after their batch's commit.
    pub(crate) async fn handle_batch(&mut self, deliveries: Vec<Delivery>) -> Result<(), Error> {
        let (ops, resume) = (
            self.env.subjects.ledger_operation(),
            self.env.subjects.ledger_resume(),
        );
        let serial = deliveries
            .iter()
            .any(|d| d.subject == ops || d.subject == resume);
        if serial {
            self.settle().await?;
        }
        let Open { mut p, mut keep } = match self.open.take() {
            Some(open) => open,
            None => Open {
                p: Pending::new(self.early_allowed),
                keep: Vec::with_capacity(deliveries.len()),
            },
        };
        // Operator requests run after the batch's commit, each in its own transaction.
        let mut operations = Vec::new();
        let mut deliveries = deliveries.into_iter();
        while let Some(d) = deliveries.next() {
            if kora_broker::trace::enabled() {
                p.trace_in = kora_broker::trace::parent_of(&d.headers);
            }
            let handled = match self.decode(&d) {
                Err(reason) => Err(Refusal::Poison(reason)),
                Ok(Message::Admission(a)) => self.on_admission(a, &mut p).await,
                Ok(Message::Result(r, via)) => self.on_result(r, via.as_deref(), &mut p).await,
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
                Err(Refusal::Ahead) => {
                    self.metrics.results_early.inc();
                    let _ = d.nak(Some(ahead_retry(&d))).await;
                }
                Err(Refusal::Unavailable(e)) => {
                    // The ledger could not be read (PostgreSQL down or restarting): nothing is
                    // wrong with the message. Forget what the open batch planned and hand
                    // every message back to be redelivered once the loop has backed off.
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
        self.publish_early(&mut p).await;
        self.open = Some(Open { p, keep });
        if self.inflight.is_none() {
            self.start_commit();
        }
        if serial || !operations.is_empty() {
            self.settle().await?;
            for (op, d) in operations {
                self.on_operation(op, d).await;
            }
        }
        Ok(())
    }

    /// Publishes the tasks decided so far that may go before their commit, and leaves their
    /// marks for the next commit. A task whose publish fails is sent by the outbox sweeper
    /// once its dispatch is committed (it stays unmarked).
    async fn publish_early(&mut self, p: &mut Pending) {
        if p.early.is_empty() {
            return;
        }
        let (msgs, keys): (Vec<_>, Vec<_>) = std::mem::take(&mut p.early).into_iter().unzip();
        p.early_sent += keys.len();
        let results = self.broker.publish_many(msgs).await;
        let mut sent = Vec::with_capacity(keys.len());
        for (k, r) in keys.into_iter().zip(&results) {
            match r {
                Ok(_) => sent.push(k),
                Err(e) => {
                    warn!(run_id = %k.run_id, node_id = %k.node_id, error = %e, "cannot publish a task before its commit; the outbox sweeper will send it");
                }
            }
        }
        self.marks.put_back(sent);
        crash_point("coordinator-before-commit");
    }

    /// Starts committing the open batch, if it holds anything to write; a batch with nothing
    /// to write (every message fenced) is settled at once.
    fn start_commit(&mut self) {
        let Some(Open { mut p, keep }) = self.open.take() else {
            return;
        };
        p.flush_all_node_events(&self.env.subjects);
        let mut batch = std::mem::take(&mut p.batch);
        batch.expect.extend(p.event_expectations());
        // The tasks published since the last commit are marked by this one.
        let marks = if batch.is_empty() {
            Vec::new()
        } else {
            self.marks.take()
        };
        batch.published.clone_from(&marks);
        batch.published_ms = kora_model::now_ms();
        let store = std::sync::Arc::clone(&self.store);
        let empty = batch.is_empty();
        let handle = tokio::spawn(async move {
            if empty {
                return Ok(CommitReport::default());
            }
            // Crash tests slow commits down here (`coordinator-slow-commit=sleep(MS)`), so
            // results overtake the commits deciding their tasks.
            fail::fail_point!("coordinator-slow-commit");
            store.commit(batch).await
        });
        self.inflight = Some(InFlight {
            handle,
            p,
            keep,
            marks,
            started: std::time::Instant::now(),
            empty,
        });
    }

    /// Waits until no commit is in flight and the open batch is committed.
    pub(crate) async fn settle(&mut self) -> Result<(), Error> {
        if self.inflight.is_none() {
            self.start_commit();
        }
        while let Some(f) = self.inflight.as_mut() {
            let done = (&mut f.handle).await;
            self.on_committed(done).await?;
        }
        Ok(())
    }

    /// The commit in flight is done. Durable: its deliveries are acked and what it caused
    /// follows, then the open batch's commit starts. Failed: it and the open batch (planned
    /// on top of it) are handed back and their runs forgotten, to be retried on state
    /// rebuilt from the ledger; no task goes before a commit until one succeeds again.
    pub(crate) async fn on_committed(
        &mut self,
        done: Result<Result<CommitReport, kora_store::Error>, tokio::task::JoinError>,
    ) -> Result<(), Error> {
        let Some(InFlight {
            p,
            keep,
            marks,
            started,
            empty,
            ..
        }) = self.inflight.take()
        else {
            return Ok(());
        };
        let committed: Result<CommitReport, Error> = match done {
            Ok(r) => r.map_err(Error::from),
            Err(e) => Err(Error::CommitLost(e.to_string())),
        };
        if !empty {
            self.metrics
                .ledger_commit_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        match committed {
            Ok(report) => {
                self.early_allowed = true;
                if !empty {
                    self.metrics.ledger_messages.inc_by(keep.len() as u64);
                    self.metrics
                        .ledger_batch_messages
                        .observe(keep.len() as f64);
                }
                self.metrics
                    .fenced(Fenced::Duplicate, report.outcomes_ignored as u64);
                self.after_commit(p, keep).await?;
                if self.open.is_some() {
                    self.start_commit();
                }
                Ok(())
            }
            Err(e) => {
                self.early_allowed = false;
                self.marks.put_back(marks);
                // The planner moved ahead of the ledger: forget those runs (and the open
                // batch's, planned on top of this one) so they are rebuilt from the ledger
                // when the messages are redelivered.
                self.forget(&p.touched);
                let open = self.open.take();
                let mut all: Vec<&Delivery> = keep.iter().collect();
                if let Some(o) = &open {
                    self.forget(&o.p.touched);
                    all.extend(o.keep.iter());
                }
                if let Error::Store(kora_store::Error::Conflict { run_id, detail }) = &e {
                    // Another coordinator moved a run on first: not a failure.
                    self.metrics.ledger_conflicts.inc();
                    debug!(%run_id, %detail, "ledger conflict; the batch will be retried on fresh state");
                    nak_all(&all, CONFLICT_RETRY).await;
                    return Ok(());
                }
                nak_all(&all, UNAVAILABLE_RETRY).await;
                Err(e)
            }
        }
    }

    /// Whether this coordinator has decisions about the run that are not durable yet (in the
    /// open batch or the commit in flight).
    pub(crate) fn in_pipeline(&self, run_id: &str, open: &Pending) -> bool {
        open.expected.contains(run_id)
            || self
                .inflight
                .as_ref()
                .is_some_and(|f| f.p.expected.contains(run_id))
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
            early_sent,
            spans,
            ..
        } = p;
        self.metrics
            .tasks_dispatched
            .inc_by((task_keys.len() + early_sent) as u64);
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
        if !task_keys.is_empty() {
            crash_point("coordinator-after-commit");
        }
        // Published by the outbox task, in commit order, while this loop records the next
        // batch. The ledger already holds the decisions: a publish lost to a crash is re-sent
        // by the sweeper.
        self.send(Published { publish, task_keys }, "tasks").await;
        // Recording spans end now that what they record is durable.
        let durable = std::time::SystemTime::now();
        for mut s in spans {
            s.end = durable;
            kora_broker::trace::span(s);
        }
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
    pub(crate) fn count_ended(&self, ended: &[Ended]) {
        let now = kora_model::now_ms();
        for e in ended {
            let seconds =
                (e.created_ms > 0).then(|| now.saturating_sub(e.created_ms) as f64 / 1000.0);
            self.metrics
                .run_ended(&e.tenant, &e.workflow, e.status.as_str(), seconds);
            let run_id = &e.run_id;
            let trace_id = kora_model::trace::run_trace_hex(run_id);
            match e.status {
                RunStatus::Succeeded => {
                    info!(%run_id, %trace_id, workflow = %e.workflow, "run succeeded")
                }
                RunStatus::Cancelled => {
                    info!(%run_id, %trace_id, workflow = %e.workflow, "run cancelled")
                }
                _ => warn!(%run_id, %trace_id, workflow = %e.workflow, "run failed"),
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
            // Not a run the open batch has decided about: its state is ahead of the ledger.
            let open = self.open.as_ref().map(|o| &o.p.expected);
            let doomed: Vec<String> = self
                .runs
                .keys()
                .filter(|id| open.is_none_or(|e| !e.contains(*id)))
                .take(extra)
                .cloned()
                .collect();
            self.forget(&doomed);
        }
    }
}

/// How soon a result ahead of the ledger is offered again: soon (the deciding commit is
/// usually a millisecond away), later the more often it came back.
fn ahead_retry(d: &Delivery) -> Duration {
    Duration::from_millis(5 * u64::from(d.info.delivered.clamp(1, 200)))
}

/// Crash tests abort the process at these points (failpoints compiled in only with the
/// `failpoints` feature): `coordinator-before-commit`, after tasks went out before the
/// commit deciding them; `coordinator-after-commit`, between a commit and the publish of
/// its other tasks.
fn crash_point(name: &str) {
    let _ = name;
    fail::fail_point!(name, |_| {
        tracing::error!(failpoint = name, "failpoint: aborting");
        std::process::abort()
    });
}
