//! The run ledger: the durable record of runs, node attempts, outputs and events.
//!
//! Owns: the [`Store`] trait (one atomic, idempotent [`Batch`] commit per coordinator batch, and
//! the queries operators and `kora run` read), [`memory::MemoryStore`], [`sqlite::SqliteStore`]
//! (sqlx; embedded migrations applied at open), and the contract suite ([`testing`], feature
//! `test-util`) that every store must pass.
//!
//! Must not: decide anything about a run. The coordinator decides; the store records what it
//! is told, rejecting only what would record the same attempt outcome twice.

mod directory;
mod error;
pub mod memory;
pub mod pg;
mod records;
mod schema;
mod sql_alerts;
mod sql_directory;
pub mod sqlite;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

use async_trait::async_trait;

pub use directory::{ApiAuditEntry, ApiAuditFilter, ApiKey, Directory, WorkflowRecord};
pub use error::{Error, Result};
pub use records::{
    AlertRecord, Alias, AttemptKey, AttemptRecord, AttemptStatus, AttemptUpdate, AuditEntry,
    AuditFilter, Batch, CommitReport, DeadLetterFilter, DeadLetterInfo, DeadLetterRecord, Expect,
    FinishedRun, LiveRuns, NewAlert, NewAttempt, NewRun, PoolUse, ReplayOutcome, ReplayRequest,
    RunFilter, RunRecord, RunStatus, RunUpdate, StuckRun, TriggerRecord, parse_dead_letter_id,
    results_from_attempts,
};

/// Opens the store named by a URL-ish spec: `memory` or `sqlite:PATH` (`sqlite::memory:` too).
pub async fn open(spec: &str) -> Result<std::sync::Arc<dyn Store>> {
    if spec == "memory" {
        return Ok(std::sync::Arc::new(memory::MemoryStore::new()));
    }
    if let Some(path) = spec.strip_prefix("sqlite:") {
        return Ok(std::sync::Arc::new(sqlite::SqliteStore::open(path).await?));
    }
    Err(Error::Config(format!(
        "unknown store {spec:?}: use `memory` or `sqlite:PATH`"
    )))
}

#[async_trait]
pub trait Store: Directory + Send + Sync + 'static {
    /// Applies a batch atomically. Creating a run that exists, or finishing an attempt that is
    /// already finished, is skipped and reported in [`CommitReport`], never applied twice. A new
    /// run whose idempotency key another run holds is a [`Error::Conflict`].
    async fn commit(&self, batch: Batch) -> Result<CommitReport>;
    async fn run(&self, run_id: &str) -> Result<Option<RunRecord>>;
    /// The run holding this idempotency key, if any.
    async fn run_by_key(&self, key: &str) -> Result<Option<RunRecord>>;
    /// Child runs (of WorkflowNodes) that ended at or before `before_ms` and whose parent was
    /// not yet told: the coordinator publishes each one's outcome to its parent, then marks it.
    async fn unreported_children(&self, before_ms: u64, limit: usize) -> Result<Vec<RunRecord>>;
    /// Marks child runs whose outcome reached their parents.
    async fn mark_children_reported(&self, run_ids: &[String], at_ms: u64) -> Result<()>;
    /// Audit entries passing `filter`, newest first.
    async fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;
    /// The run a deduplicated submission's run id stands for, if it is an alias.
    async fn alias_of(&self, run_id: &str) -> Result<Option<String>>;
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;
    /// Every attempt of a run, in the order outcomes were recorded (unfinished ones last).
    async fn attempts(&self, run_id: &str) -> Result<Vec<AttemptRecord>>;
    /// A run and every attempt of it, as [`Store::run`] and [`Store::attempts`] give them, as
    /// one snapshot: a coordinator rebuilding a run relies on the run's event sequence and its
    /// outcomes agreeing. A store that other processes write while it is read (PostgreSQL) must
    /// read both in one statement; this default reads them apart, which is right only for a
    /// store with one writer (embedded mode).
    async fn run_with_attempts(
        &self,
        run_id: &str,
    ) -> Result<Option<(RunRecord, Vec<AttemptRecord>)>> {
        let Some(run) = self.run(run_id).await? else {
            return Ok(None);
        };
        let attempts = self.attempts(run_id).await?;
        Ok(Some((run, attempts)))
    }
    async fn events(&self, run_id: &str) -> Result<Vec<kora_model::wire::RunEvent>>;
    /// Marks attempts whose task the broker has stored (the transactional outbox's "sent").
    async fn mark_published(&self, attempts: &[AttemptKey], at_ms: u64) -> Result<()>;
    /// Attempts of running runs decided (dispatched) at or before `before_ms` whose task was
    /// never marked published: a crash came between the commit and the publish.
    async fn unpublished(&self, before_ms: u64, limit: usize) -> Result<Vec<AttemptKey>>;
    /// Dead-lettered attempts passing `filter`, oldest first.
    async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetterRecord>>;
    /// Replays an open dead letter (only the coordinator calls this: it is the one writer of
    /// run state, and operators reach it with a request on `<p>.ledger.op`), atomically: a new attempt of its node (with the request's
    /// overrides), a fresh attempt for every other node the run had in flight when it ended,
    /// the run reopened (`running`, error cleared), and the dead letter marked replayed with
    /// who and when. A dead letter that is not open is a [`Error::Conflict`].
    async fn replay(&self, req: &ReplayRequest) -> Result<ReplayOutcome>;
    /// Marks the open dead letters passing `filter` purged (their attempts stay in the ledger).
    async fn purge_dead_letters(&self, filter: &DeadLetterFilter) -> Result<usize>;
    /// Registers a trigger, or replaces the one with its name (keeping when it was created).
    /// A name another tenant's trigger holds is a [`Error::Conflict`].
    async fn put_trigger(&self, t: &TriggerRecord) -> Result<()>;
    /// Every registered trigger, by name.
    async fn triggers(&self) -> Result<Vec<TriggerRecord>>;
    /// Pauses or resumes a trigger; `false` when there is none of that name.
    async fn set_trigger_paused(&self, name: &str, paused: bool, at_ms: u64) -> Result<bool>;
    /// Removes a trigger; `false` when there is none of that name.
    async fn delete_trigger(&self, name: &str) -> Result<bool>;
    /// How many of a tenant's runs are running or queued.
    async fn tenant_active_runs(&self, tenant: &str) -> Result<u64>;
    /// Runs running or queued, counted by tenant, workflow (its name, or its id when it has
    /// none) and status, in that order; at most `limit` groups.
    async fn live_runs(&self, limit: usize) -> Result<Vec<LiveRuns>>;
    /// Workers that finished attempts at or after `since_ms` (of runs running or ended since
    /// then), with how many, by worker id.
    async fn active_workers(&self, since_ms: u64) -> Result<Vec<(String, u64)>>;
    /// Runs that ended at or after `since_ms`, most recent first; at most `limit`.
    async fn finished_since(&self, since_ms: u64, limit: usize) -> Result<Vec<FinishedRun>>;
    /// Running runs whose latest activity is before `progress_before_ms`, or with an attempt
    /// numbered `attempts_at_least` or more, oldest first; at most `limit`.
    async fn stuck_runs(
        &self,
        progress_before_ms: u64,
        attempts_at_least: u32,
        limit: usize,
    ) -> Result<Vec<StuckRun>>;
    /// Opens the alert `a.subject` unless it is open, or was resolved after
    /// `reopen_resolved_before_ms` (a cooldown); `true` when this call opened it, which also
    /// claims sending it. Every coordinator may ask: exactly one opens.
    async fn open_alert(
        &self,
        a: &NewAlert,
        now_ms: u64,
        reopen_resolved_before_ms: u64,
    ) -> Result<bool>;
    /// Resolves an open alert; the alert when this call resolved it (which claims sending the
    /// resolve), `None` when it was not open.
    async fn resolve_alert(&self, subject: &str, now_ms: u64) -> Result<Option<AlertRecord>>;
    /// Marks the alert (or its resolve) delivered to the sinks.
    async fn alert_sent(&self, subject: &str, resolve: bool, now_ms: u64) -> Result<()>;
    /// Claims alerts (and resolves) never delivered whose claim, if any, is older than
    /// `claimed_before_ms` (its coordinator died before sending): `(alert, is_resolve)`.
    async fn claim_unsent_alerts(
        &self,
        claimed_before_ms: u64,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<(AlertRecord, bool)>>;
    /// Open alerts, of `kind` or all, oldest first.
    async fn open_alerts(&self, kind: Option<&str>, limit: usize) -> Result<Vec<AlertRecord>>;
    /// The connection pool's use, for a store that has one.
    fn pool_use(&self) -> Option<PoolUse> {
        None
    }
    /// How many runs of a concurrency group are `(running, queued)`.
    async fn concurrency_usage(&self, group: &str) -> Result<(u64, u64)>;
    /// Queued runs that may start now, oldest first: in each concurrency group (of `groups`,
    /// or all), at most as many as the group has free slots. At most `limit` in all.
    async fn startable_runs(&self, groups: Option<&[String]>, limit: usize) -> Result<Vec<String>>;
    /// Running or queued runs whose deadline is at or before `now_ms`, earliest first, with
    /// their deadlines.
    async fn overdue_runs(&self, now_ms: u64, limit: usize) -> Result<Vec<(String, u64)>>;
    /// Reserves `n` task starts on `queue`'s rate limit (a GCRA shared by every
    /// coordinator): moves the queue's theoretical arrival time to
    /// `max(it, not_before_ms) + n * interval_ms` and returns where the reservation began,
    /// `max(it, not_before_ms)`. Task `i` may start at
    /// `max(not_before, begin + i * interval - (burst - 1) * interval)`.
    async fn reserve_rate(
        &self,
        queue: &str,
        interval_ms: f64,
        n: u32,
        not_before_ms: f64,
    ) -> Result<f64>;
    /// Kailash's result shape for a run: see [`results_from_attempts`].
    async fn results(&self, run_id: &str, node_ids: &[String]) -> Result<kora_model::Map> {
        Ok(results_from_attempts(
            node_ids,
            &self.attempts(run_id).await?,
        ))
    }
    /// [`Store::results`] as readers show them: with the `false_output`s the planner filled
    /// in as a cycle ended, recorded by name in the run's events (`kora_model::exits`).
    /// `may_amend` is `kora_model::exits::may_amend` of the run's workflow: the events are
    /// read only then.
    async fn final_results(
        &self,
        run_id: &str,
        node_ids: &[String],
        may_amend: bool,
    ) -> Result<kora_model::Map> {
        let mut results = self.results(run_id, node_ids).await?;
        self.show_amendments(run_id, &mut results, may_amend)
            .await?;
        Ok(results)
    }
    /// The part of [`Store::final_results`] for results already read: applies the run's
    /// recorded amendments when `may_amend`.
    async fn show_amendments(
        &self,
        run_id: &str,
        results: &mut kora_model::Map,
        may_amend: bool,
    ) -> Result<()> {
        if may_amend {
            let events = self.events(run_id).await?;
            kora_model::exits::apply_recorded(results, &events);
        }
        Ok(())
    }
}
