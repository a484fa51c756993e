//! The coordinator's settings.

use std::collections::BTreeMap;
use std::time::Duration;

/// `[coordinator]` (and `[queues.<name>]`, the rate limits, which `kora serve` reads into
/// `rate_limits`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Ledger messages handled per transaction.
    pub batch: usize,
    #[serde(with = "kora_model::duration")]
    pub fetch_wait: Duration,
    /// Active runs whose planner state is kept in memory; others are rebuilt from the ledger.
    pub cache_runs: usize,
    /// Largest task message; a node whose inputs encode larger fails instead of being sent.
    /// Set from the task stream's message limit, not configured.
    #[serde(skip)]
    pub max_task_bytes: usize,
    /// How often the outbox sweeper looks for tasks whose publish was lost.
    #[serde(with = "kora_model::duration")]
    pub sweep_interval: Duration,
    /// A submission whose idempotency key names a run younger than this is that run (its run
    /// id becomes an alias); past it, the key is released and a new run takes it.
    #[serde(with = "kora_model::duration")]
    pub idempotency_window: Duration,
    /// How old an unconfirmed dispatch must be before the sweeper re-sends it.
    #[serde(with = "kora_model::duration")]
    pub outbox_grace: Duration,
    /// Task rate limits by queue name: tasks of a limited queue are sent no faster than
    /// this, across every coordinator sharing the ledger; the rest wait in the coordinator.
    /// Give every coordinator the same.
    #[serde(skip)]
    pub rate_limits: BTreeMap<String, RateLimit>,
    /// Execution limit of a node that sets no `timeout_secs` (`[tasks] default_timeout`, set
    /// by `kora serve`, not read from this section); `None` sets none.
    #[serde(skip)]
    pub default_timeout: Option<Duration>,
    /// The same per queue, over `default_timeout` (`[tasks.timeouts]`).
    #[serde(skip)]
    pub queue_timeouts: BTreeMap<String, Duration>,
    /// The longest delay a node's own retry-after (an HTTP 429's `Retry-After`) may impose.
    #[serde(with = "kora_model::duration")]
    pub max_retry_after: Duration,
    /// How often queue backlogs, live runs and ledger connections are sampled for
    /// `/metrics`, and the monitor looks for stuck runs and anomalies; 0 turns both off.
    #[serde(with = "kora_model::duration")]
    pub sample_interval: Duration,
    /// What the monitor watches (`[monitoring]`, set by `kora serve`, not read from this
    /// section).
    #[serde(skip)]
    pub monitoring: crate::MonitoringConfig,
}

/// `[queues.<name>]`: at most `rate_per_sec` tasks a second on a queue, after a burst of up to
/// `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[serde(rename = "rate_per_sec")]
    pub per_sec: f64,
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

impl RateLimit {
    pub fn validate(&self, queue: &str) -> Result<(), String> {
        if !(self.per_sec.is_finite() && self.per_sec > 0.0 && self.per_sec <= 1e6) {
            return Err(format!(
                "queues.{queue}.rate_per_sec must be more than 0 and at most 1000000 (it is {})",
                self.per_sec
            ));
        }
        if self.burst == 0 {
            return Err(format!("queues.{queue}.burst must be at least 1"));
        }
        Ok(())
    }
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
            default_timeout: None,
            queue_timeouts: BTreeMap::new(),
            max_retry_after: Duration::from_secs(3600),
            sample_interval: Duration::from_secs(10),
            monitoring: crate::MonitoringConfig::default(),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        let ten_years = Duration::from_secs(10 * 365 * 86_400);
        if !(1..=10_000).contains(&self.batch) {
            return Err(format!(
                "coordinator.batch must be between 1 and 10000 (it is {})",
                self.batch
            ));
        }
        if self.fetch_wait.is_zero() || self.fetch_wait > Duration::from_secs(60) {
            return Err("coordinator.fetch_wait must be more than 0 and at most 60s".into());
        }
        if self.sweep_interval < Duration::from_millis(100) {
            return Err("coordinator.sweep_interval must be at least 100ms".into());
        }
        if !self.sample_interval.is_zero() && self.sample_interval < Duration::from_millis(100) {
            return Err(
                "coordinator.sample_interval must be at least 100ms, or 0 to stop sampling".into(),
            );
        }
        if self.idempotency_window > ten_years {
            return Err("coordinator.idempotency_window must be at most ten years".into());
        }
        for (q, r) in &self.rate_limits {
            r.validate(q)?;
        }
        self.monitoring.validate()?;
        Ok(())
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
