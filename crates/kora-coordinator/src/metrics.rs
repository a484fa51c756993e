//! What an operator can alert on, through `prometheus-client`: counters of runs, tasks and
//! results, and histograms of the ledger commit (its time and its batch size). `kora serve`
//! registers them in its registry and serves them on `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug)]
pub struct Metrics {
    pub runs_started: Counter,
    pub runs_succeeded: Counter,
    pub runs_failed: Counter,
    pub runs_rejected: Counter,
    pub tasks_dispatched: Counter,
    pub results_recorded: Counter,
    /// Duplicate, stale or late results ignored: a high rate means redeliveries or timeouts.
    pub results_fenced: Counter,
    /// Results handed back because the ledger did not hold their attempt yet (the task went
    /// out before the commit deciding it): normal in small numbers; a steady rate means
    /// commits that do not land.
    pub results_early: Counter,
    /// Undecodable ledger messages sent to the dead-letter stream.
    pub poison_messages: Counter,
    /// Batches refused because another coordinator moved a run on first; retried on fresh
    /// state. A steady high rate means coordinators contend for the same runs.
    pub ledger_conflicts: Counter,
    /// Tasks re-sent by the outbox sweeper after a crash between commit and publish.
    pub tasks_republished: Counter,
    /// Failed attempts given another attempt under their node's retry policy.
    pub tasks_retried: Counter,
    /// Failed attempts dead-lettered (no retry left, or a permanent error): `kora dlq list`.
    pub dead_letters: Counter,
    /// Ledger messages (admissions, results, cancels) handled in committed batches.
    pub ledger_messages: Counter,
    /// Seconds each ledger transaction took (one per batch).
    pub ledger_commit_seconds: Histogram,
    /// Ledger messages per committed batch.
    pub ledger_batch_messages: Histogram,
    /// Runs accepted over their workflow's concurrency limit, queued for a slot.
    pub runs_queued: Counter,
    /// Runs failed because their deadline passed.
    pub runs_past_deadline: Counter,
    /// Tasks held back by their queue's rate limit (sent later, when their slot comes).
    pub tasks_paced: Counter,
    /// Submissions that named a recent run by their idempotency key (no new run).
    pub runs_deduplicated: Counter,
}

impl Default for Metrics {
    /// Metrics that no registry exposes (embedded runs read them directly).
    fn default() -> Self {
        Metrics {
            runs_started: Counter::default(),
            runs_succeeded: Counter::default(),
            runs_failed: Counter::default(),
            runs_rejected: Counter::default(),
            tasks_dispatched: Counter::default(),
            results_recorded: Counter::default(),
            results_fenced: Counter::default(),
            results_early: Counter::default(),
            poison_messages: Counter::default(),
            ledger_conflicts: Counter::default(),
            tasks_republished: Counter::default(),
            tasks_retried: Counter::default(),
            dead_letters: Counter::default(),
            ledger_messages: Counter::default(),
            // 0.25 ms to ~8 s.
            ledger_commit_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            // 1 to 4,096 messages.
            ledger_batch_messages: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            runs_queued: Counter::default(),
            runs_past_deadline: Counter::default(),
            tasks_paced: Counter::default(),
            runs_deduplicated: Counter::default(),
        }
    }
}

impl Metrics {
    /// The coordinator's metrics, registered in `registry` (under the `kora_` prefix the
    /// caller's registry gives them).
    pub fn registered(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        let counters: [(&str, &str, &Counter); 18] = [
            (
                "runs_started",
                "Runs admitted and started.",
                &m.runs_started,
            ),
            (
                "runs_succeeded",
                "Runs that finished successfully.",
                &m.runs_succeeded,
            ),
            ("runs_failed", "Runs that failed.", &m.runs_failed),
            (
                "runs_rejected",
                "Run requests rejected by validation.",
                &m.runs_rejected,
            ),
            (
                "tasks_dispatched",
                "Node tasks published to workers.",
                &m.tasks_dispatched,
            ),
            (
                "results_recorded",
                "Node results recorded in the ledger.",
                &m.results_recorded,
            ),
            (
                "results_fenced",
                "Duplicate, stale or late node results ignored.",
                &m.results_fenced,
            ),
            (
                "results_early",
                "Node results handed back until the commit deciding their task lands.",
                &m.results_early,
            ),
            (
                "poison_messages",
                "Undecodable ledger messages dead-lettered.",
                &m.poison_messages,
            ),
            (
                "ledger_conflicts",
                "Ledger batches retried because another coordinator moved a run on first.",
                &m.ledger_conflicts,
            ),
            (
                "tasks_republished",
                "Tasks re-sent by the outbox sweeper after a crash between commit and publish.",
                &m.tasks_republished,
            ),
            (
                "tasks_retried",
                "Failed node attempts retried under their retry policy.",
                &m.tasks_retried,
            ),
            (
                "dead_letters",
                "Failed node attempts dead-lettered (retries exhausted or a permanent error).",
                &m.dead_letters,
            ),
            (
                "ledger_messages",
                "Ledger messages (admissions and results) handled in committed batches.",
                &m.ledger_messages,
            ),
            (
                "runs_queued",
                "Runs accepted over their workflow's concurrency limit and queued for a slot.",
                &m.runs_queued,
            ),
            (
                "runs_deadline_exceeded",
                "Runs failed because their deadline (deadline_secs) passed.",
                &m.runs_past_deadline,
            ),
            (
                "tasks_rate_limited",
                "Tasks held back by their queue's rate limit and sent when their slot came.",
                &m.tasks_paced,
            ),
            (
                "runs_deduplicated",
                "Submissions that named a recent run by their idempotency key (no new run made).",
                &m.runs_deduplicated,
            ),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c.clone());
        }
        registry.register(
            "ledger_commit_seconds",
            "Time of each ledger transaction (one per batch).",
            m.ledger_commit_seconds.clone(),
        );
        registry.register(
            "ledger_batch_messages",
            "Ledger messages in each committed batch.",
            m.ledger_batch_messages.clone(),
        );
        m
    }
}
