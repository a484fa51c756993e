//! Counters an operator can alert on, rendered as Prometheus text (served by `kora serve
//! --metrics-addr` on `/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub runs_started: Counter,
    pub runs_succeeded: Counter,
    pub runs_failed: Counter,
    pub runs_rejected: Counter,
    pub tasks_dispatched: Counter,
    pub results_recorded: Counter,
    /// Duplicate, stale or late results ignored: a high rate means redeliveries or timeouts.
    pub results_fenced: Counter,
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
    /// Ledger transactions, the messages they carried and the time they took: the mean batch
    /// size and commit latency are `messages / commits` and `commit_micros / commits`.
    pub ledger_commits: Counter,
    pub ledger_messages: Counter,
    pub ledger_commit_micros: Counter,
    /// Runs accepted over their workflow's concurrency limit, queued for a slot.
    pub runs_queued: Counter,
    /// Runs failed because their deadline passed.
    pub runs_past_deadline: Counter,
    /// Tasks held back by their queue's rate limit (sent later, when their slot comes).
    pub tasks_paced: Counter,
    /// Submissions that named a recent run by their idempotency key (no new run).
    pub runs_deduplicated: Counter,
}

impl Metrics {
    /// Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &Counter); 16] = [
            (
                "kora_runs_started_total",
                "Runs admitted and started.",
                &self.runs_started,
            ),
            (
                "kora_runs_succeeded_total",
                "Runs that finished successfully.",
                &self.runs_succeeded,
            ),
            (
                "kora_runs_failed_total",
                "Runs that failed.",
                &self.runs_failed,
            ),
            (
                "kora_runs_rejected_total",
                "Run requests rejected by validation.",
                &self.runs_rejected,
            ),
            (
                "kora_tasks_dispatched_total",
                "Node tasks published to workers.",
                &self.tasks_dispatched,
            ),
            (
                "kora_results_recorded_total",
                "Node results recorded in the ledger.",
                &self.results_recorded,
            ),
            (
                "kora_results_fenced_total",
                "Duplicate, stale or late node results ignored.",
                &self.results_fenced,
            ),
            (
                "kora_poison_messages_total",
                "Undecodable ledger messages dead-lettered.",
                &self.poison_messages,
            ),
            (
                "kora_ledger_conflicts_total",
                "Ledger batches retried because another coordinator moved a run on first.",
                &self.ledger_conflicts,
            ),
            (
                "kora_tasks_republished_total",
                "Tasks re-sent by the outbox sweeper after a crash between commit and publish.",
                &self.tasks_republished,
            ),
            (
                "kora_tasks_retried_total",
                "Failed node attempts retried under their retry policy.",
                &self.tasks_retried,
            ),
            (
                "kora_dead_letters_total",
                "Failed node attempts dead-lettered (retries exhausted or a permanent error).",
                &self.dead_letters,
            ),
            (
                "kora_runs_queued_total",
                "Runs accepted over their workflow's concurrency limit and queued for a slot.",
                &self.runs_queued,
            ),
            (
                "kora_runs_deadline_exceeded_total",
                "Runs failed because their deadline (deadline_secs) passed.",
                &self.runs_past_deadline,
            ),
            (
                "kora_tasks_rate_limited_total",
                "Tasks held back by their queue's rate limit and sent when their slot came.",
                &self.tasks_paced,
            ),
            (
                "kora_runs_deduplicated_total",
                "Submissions that named a recent run by their idempotency key (no new run made).",
                &self.runs_deduplicated,
            ),
        ];
        let mut out = String::new();
        for (name, help, c) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                c.get()
            ));
        }
        out.push_str(&format!(
            "# HELP kora_ledger_messages_total Ledger messages (admissions and results) handled in committed batches.\n\
             # TYPE kora_ledger_messages_total counter\nkora_ledger_messages_total {}\n\
             # HELP kora_ledger_commit_seconds Time of each ledger transaction (one per batch).\n\
             # TYPE kora_ledger_commit_seconds summary\n\
             kora_ledger_commit_seconds_sum {:.6}\nkora_ledger_commit_seconds_count {}\n",
            self.ledger_messages.get(),
            self.ledger_commit_micros.get() as f64 / 1e6,
            self.ledger_commits.get()
        ));
        out
    }
}
