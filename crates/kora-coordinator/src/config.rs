//! The coordinator's settings.

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// Ledger messages handled per transaction.
    pub batch: usize,
    pub fetch_wait: Duration,
    /// Active runs whose planner state is kept in memory; others are rebuilt from the ledger.
    pub cache_runs: usize,
    /// Largest task message; a node whose inputs encode larger fails instead of being sent.
    /// Keep it under the task stream's message limit.
    pub max_task_bytes: usize,
    /// How often the outbox sweeper looks for tasks whose publish was lost.
    pub sweep_interval: Duration,
    /// A submission whose idempotency key names a run younger than this is that run (its run
    /// id becomes an alias); past it, the key is released and a new run takes it.
    pub idempotency_window: Duration,
    /// How old an unconfirmed dispatch must be before the sweeper re-sends it.
    pub outbox_grace: Duration,
    /// Task rate limits by queue name: tasks of a limited queue are sent no faster than
    /// this, across every coordinator sharing the ledger; the rest wait in the coordinator.
    pub rate_limits: BTreeMap<String, RateLimit>,
    /// The longest delay a node's own retry-after (an HTTP 429's `Retry-After`) may impose.
    pub max_retry_after: Duration,
}

/// At most `per_sec` tasks a second on a queue, after a burst of up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_sec: f64,
    pub burst: u32,
}

impl RateLimit {
    /// Milliseconds between two tasks.
    pub(crate) fn interval_ms(&self) -> f64 {
        1000.0 / self.per_sec
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            batch: 512,
            fetch_wait: Duration::from_millis(500),
            cache_runs: 10_000,
            max_task_bytes: (8 << 20) - (64 << 10),
            sweep_interval: Duration::from_secs(5),
            idempotency_window: Duration::from_secs(24 * 3600),
            outbox_grace: Duration::from_secs(3),
            rate_limits: BTreeMap::new(),
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
