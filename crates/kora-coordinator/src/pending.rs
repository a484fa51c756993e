//! What a batch of ledger messages produces before its commit: the ledger writes, the messages
//! to publish after the commit, and what the coordinator does once it is durable.

use std::time::Duration;

use foldhash::{HashMap, HashSet};
use kora_broker::{Delivery, Outbound};
use kora_model::subjects::Subjects;
use kora_model::wire::{self, EventKind, NodeEvents, RunEvent, WIRE_VERSION};
use kora_model::{Value, msg_id};
use kora_store::{AttemptKey, Batch, Expect, RunStatus};

use crate::Error;
use crate::state::ActiveRun;

/// A run a batch ends, as its metrics and log line name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ended {
    pub(crate) run_id: String,
    pub(crate) status: RunStatus,
    /// The workflow's name (its id when it has none).
    pub(crate) workflow: String,
    pub(crate) tenant: String,
    /// When the run was submitted (0 if unknown).
    pub(crate) created_ms: u64,
}

/// One batch's ledger writes, then messages to publish after the commit.
#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) batch: Batch,
    pub(crate) publish: Vec<Outbound>,
    /// Runs whose cached state this batch moved on (forgotten if the commit fails).
    pub(crate) touched: Vec<String>,
    /// Runs this batch ends: dropped from the cache after the commit.
    pub(crate) finished: Vec<String>,
    /// Runs this batch ends, with how: counted and logged once the commit is durable.
    pub(crate) ended: Vec<Ended>,
    /// Runs this batch already carries an expectation for.
    pub(crate) expected: HashSet<String>,
    /// Which entries of `publish` are tasks, and their attempts (marked published once sent).
    pub(crate) task_keys: Vec<(usize, AttemptKey)>,
    /// Runs cancelled by this batch: workers are told to stop their tasks after the commit.
    pub(crate) cancelled: Vec<String>,
    /// Concurrency groups with a run ended by this batch: their queued runs may start.
    pub(crate) freed: Vec<String>,
    /// Runs of each concurrency group this batch `(starts, queues)`.
    pub(crate) groups: HashMap<String, (u64, u64)>,
    /// Attempts for rate-limited queues: given their start times before the commit.
    pub(crate) paced: Vec<Paced>,
    /// Idempotency keys taken by runs this batch creates, and by which.
    pub(crate) keys: HashMap<String, String>,
    /// Child runs (of WorkflowNodes) this batch ended: their parents are told after the commit.
    pub(crate) children: Vec<String>,
    /// Retries this batch scheduled: `(due_ms, run_id, node, iteration, attempt)`, timed once
    /// the commit is durable.
    pub(crate) retries: Vec<(u64, String, usize, u32, u32)>,
    /// Deadlines of runs this batch admits: `(deadline_ms, run_id)`.
    pub(crate) deadlines: Vec<(u64, String)>,
    /// Whether tasks may be published before the commit that records their dispatch (see
    /// [`Pending::early_task`]).
    pub(crate) allow_early: bool,
    /// The trace context of the message being handled (when the process exports traces).
    pub(crate) trace_in: Option<kora_model::trace::TraceParent>,
    /// Spans that end when this batch's commit is durable.
    pub(crate) spans: Vec<kora_broker::trace::SpanSpec>,
    /// Tasks published as soon as they are decided, before the commit.
    pub(crate) early: Vec<(Outbound, AttemptKey)>,
    /// How many tasks went before the commit (counted as dispatched once it is durable).
    pub(crate) early_sent: usize,
    /// Runs this batch creates (their rows are not in the ledger before its commit).
    pub(crate) created: HashSet<String>,
    /// For each existing run this batch writes events of, the sequence its first one follows:
    /// the ledger's highest must still be that when the batch commits (see
    /// [`Pending::event_expectations`]).
    pub(crate) numbered_after: HashMap<String, u64>,
    /// Node-level events not yet in a message, by run (positions in `batch.events`): each
    /// run's go out as one message, before its next run-level event or with the commit.
    node_events: HashMap<String, Vec<usize>>,
}

/// An attempt whose queue has a rate limit.
pub(crate) struct Paced {
    pub(crate) queue: String,
    /// Its task message in `Pending::publish`; `None` for a retry (sent when due).
    pub(crate) publish: Option<usize>,
    /// Its row in `Pending::batch.new_attempts` (dated when it may start).
    pub(crate) row: usize,
    /// Not before this (a retry's delay).
    pub(crate) not_before: u64,
    pub(crate) attempt: (String, usize, u32, u32),
}

/// An event to record: its kind, and the node attempt it is about, if any.
pub(crate) struct Ev {
    kind: EventKind,
    node: Option<String>,
    iteration: u32,
    attempt: u32,
    detail: Option<Value>,
}

impl Ev {
    /// A run-level event.
    pub(crate) fn run(kind: EventKind) -> Self {
        Ev {
            kind,
            node: None,
            iteration: 0,
            attempt: 0,
            detail: None,
        }
    }

    /// A node-level event about `attempt` of `node`'s `iteration`.
    pub(crate) fn node(kind: EventKind, node: &str, iteration: u32, attempt: u32) -> Self {
        Ev {
            kind,
            node: Some(node.to_string()),
            iteration,
            attempt,
            detail: None,
        }
    }

    pub(crate) fn detail(mut self, detail: Option<Value>) -> Self {
        self.detail = detail;
        self
    }

    fn into_event(self, run_id: &str, seq: u64, at_ms: u64) -> RunEvent {
        RunEvent {
            v: WIRE_VERSION,
            event_id: format!("{run_id}:{seq}"),
            run_id: run_id.to_string(),
            seq,
            kind: self.kind,
            node_id: self.node,
            iteration: self.iteration,
            attempt: self.attempt,
            at_ms,
            detail: self.detail,
        }
    }
}

impl Pending {
    /// Registers, once per batch, what this batch assumes about the run.
    pub(crate) fn expect(&mut self, run: &ActiveRun) {
        if self.expected.insert(run.run_id.clone()) {
            self.batch.expect.push(Expect::Outcomes {
                run_id: run.run_id.clone(),
                count: run.outcomes,
            });
        }
    }

    /// A batch for the pipeline: tasks may go before the commit when `allow_early`.
    pub(crate) fn new(allow_early: bool) -> Self {
        Pending {
            allow_early,
            ..Pending::default()
        }
    }

    /// Registers, once per batch, that the run must not exist yet.
    pub(crate) fn expect_absent(&mut self, run_id: &str) {
        self.created.insert(run_id.to_string());
        if self.expected.insert(run_id.to_string()) {
            self.batch.expect.push(Expect::Absent {
                run_id: run_id.to_string(),
            });
        }
    }

    /// Records the run's next event in the ledger batch and publishes it after the commit.
    pub(crate) fn emit(&mut self, subjects: &Subjects, run: &mut ActiveRun, now: u64, ev: Ev) {
        let seq = run.next_event();
        self.emit_at(subjects, &run.run_id.clone(), seq, now, ev);
    }

    /// Records an event with a given sequence (a run with no state yet: a rejected one).
    pub(crate) fn emit_at(
        &mut self,
        subjects: &Subjects,
        run_id: &str,
        seq: u64,
        now: u64,
        ev: Ev,
    ) {
        let e = ev.into_event(run_id, seq, now);
        if e.kind.level() == "node" {
            self.node_events
                .entry(run_id.to_string())
                .or_default()
                .push(self.batch.events.len());
        } else {
            // Node events before it go first, so a reader that stops at a run's final event
            // has seen them.
            self.flush_node_events(subjects, run_id);
            if let Some(msg) = event_message(subjects, &e) {
                self.publish.push(msg);
            }
        }
        self.batch.events.push(e);
        if !self.created.contains(run_id) && !self.numbered_after.contains_key(run_id) {
            self.numbered_after
                .insert(run_id.to_string(), seq.saturating_sub(1));
        }
    }

    /// What the batch assumes about its runs' event numbering, in run id order: each existing
    /// run's highest event sequence is the one its first event here follows. Numbers taken
    /// since (by another coordinator, or an operator) would be dropped as duplicates by the
    /// ledger and the broker, losing the events; the commit is refused instead, and the
    /// batch retried on state rebuilt from the ledger.
    pub(crate) fn event_expectations(&mut self) -> Vec<Expect> {
        let mut runs: Vec<(String, u64)> = std::mem::take(&mut self.numbered_after)
            .into_iter()
            .collect();
        runs.sort_unstable();
        runs.into_iter()
            .map(|(run_id, seq)| Expect::Events { run_id, seq })
            .collect()
    }

    /// Queues the run's pending node events as one message.
    fn flush_node_events(&mut self, subjects: &Subjects, run_id: &str) {
        let Some(at) = self.node_events.remove(run_id) else {
            return;
        };
        let events: Vec<&RunEvent> = at.iter().map(|&i| &self.batch.events[i]).collect();
        if let Some(msg) = node_events_message(subjects, run_id, events) {
            self.publish.push(msg);
        }
    }

    /// Queues every run's pending node events (in run id order): the batch is about to be
    /// committed.
    pub(crate) fn flush_all_node_events(&mut self, subjects: &Subjects) {
        let mut runs: Vec<String> = self.node_events.keys().cloned().collect();
        runs.sort_unstable();
        for run_id in runs {
            self.flush_node_events(subjects, &run_id);
        }
    }

    /// Publishes an event after the commit without storing it (a deduplicated submission's
    /// notice, on its own run id).
    pub(crate) fn announce(&mut self, subjects: &Subjects, run_id: &str, now: u64, ev: Ev) {
        let e = ev.into_event(run_id, 1, now);
        if let Some(msg) = event_message(subjects, &e) {
            self.publish.push(msg);
        }
    }

    /// Whether a task of `run_id` may be published before the commit that records its
    /// dispatch: when the batch allows it and the run's row is already in the ledger (a
    /// result for it then finds the run, and waits for the attempt; see `Refusal::Ahead`).
    pub(crate) fn may_publish_early(&self, run_id: &str) -> bool {
        self.allow_early && !self.created.contains(run_id)
    }

    /// A task published as soon as it is decided, while the commit that records its dispatch
    /// is still to come. Safe because its task id (the publish's dedup id) is deterministic,
    /// and nothing it causes is acknowledged before that commit is durable: a crash before
    /// it leaves the deciding result unacknowledged, so it is redelivered and decides the
    /// same task again, which the broker drops as a duplicate.
    pub(crate) fn early_task(&mut self, msg: Outbound, key: AttemptKey) {
        self.early.push((msg, key));
    }

    /// Queues a task message, remembering its attempt (marked published once the broker has it).
    pub(crate) fn task(&mut self, msg: Outbound, key: AttemptKey) {
        self.task_keys.push((self.publish.len(), key));
        self.publish.push(msg);
    }
}

/// The message of a run event on its subject, deduplicated by its event id.
fn event_message(subjects: &Subjects, e: &RunEvent) -> Option<Outbound> {
    let payload = wire::encode(e).ok()?;
    Some(
        Outbound::new(
            subjects.event(&e.run_id, e.kind.level(), e.kind.as_str()),
            payload,
        )
        .msg_id(msg_id::event(&e.event_id)),
    )
}

/// One message holding a run's node events (in sequence order), deduplicated by their range.
fn node_events_message(
    subjects: &Subjects,
    run_id: &str,
    events: Vec<&RunEvent>,
) -> Option<Outbound> {
    let (first, last) = (events.first()?.seq, events.last()?.seq);
    let payload = wire::encode(&NodeEvents {
        v: WIRE_VERSION,
        run_id: run_id.to_string(),
        events,
    })
    .ok()?;
    Some(
        Outbound::new(subjects.node_events(run_id), payload)
            .msg_id(msg_id::node_events(run_id, first, last)),
    )
}

/// Why a ledger message was not taken into the batch.
pub(crate) enum Refusal {
    /// The message itself is unusable: it is dead-lettered with this reason.
    Poison(String),
    /// The ledger could not be read: the batch is handed back and retried.
    Unavailable(Error),
    /// A result for an attempt the ledger does not hold yet: its task was published before
    /// the commit deciding it, which has not landed (or this coordinator's state disagrees
    /// with the ledger while its own commits are in flight). It is handed back, to be taken
    /// again once that commit is durable.
    Ahead,
}

impl Refusal {
    pub(crate) fn store(e: kora_store::Error) -> Refusal {
        Refusal::Unavailable(Error::Store(e))
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Refusal::Unavailable(e)
    }
}

/// Hands messages back to the broker, to be redelivered after `delay`. Best effort: a nak
/// that fails is a redelivery after the ack wait instead.
pub(crate) async fn nak_all(deliveries: &[&Delivery], delay: Duration) {
    for d in deliveries {
        let _ = d.nak(Some(delay)).await;
    }
}
