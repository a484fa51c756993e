//! Retries: a failed attempt that its node's policy retries is recorded failed with the next
//! attempt's row, dated when it is due; the coordinator keeps it in its timer heap and sends it
//! then (the outbox sweeper does, if this coordinator dies first).

use std::time::Duration;

use kora_model::RetryPolicy;
use kora_model::wire::{EventKind, NodeResult};
use kora_store::{AttemptStatus, AttemptUpdate, NewAttempt};
use tracing::{info, warn};

use crate::config::ms;
use crate::outbox::Published;
use crate::pending::{Ev, Paced, Pending};
use crate::state::ActiveRun;
use crate::task::queue_of;
use crate::{Coordinator, Error};

/// The delay before `next_attempt` (2 or more) under `policy`, through `backon`'s exponential
/// backoff (jitter adds up to the delay again).
pub(crate) fn retry_delay(policy: &RetryPolicy, next_attempt: u32) -> Duration {
    use backon::BackoffBuilder;
    let mut b = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(policy.initial_delay_ms))
        .with_max_delay(Duration::from_millis(policy.max_delay_ms))
        .with_factor(policy.multiplier as f32)
        .with_max_times(usize::MAX);
    if policy.jitter {
        b = b.with_jitter();
    }
    let nth = usize::try_from(next_attempt.saturating_sub(2)).unwrap_or(0);
    b.build()
        .nth(nth)
        .unwrap_or(Duration::from_millis(policy.max_delay_ms))
}

/// The wait before the next attempt: the policy's delay, or longer if the node asked
/// (`Retry-After`), up to `cap`.
pub(crate) fn wait_before(
    policy: &RetryPolicy,
    next_attempt: u32,
    asked_ms: Option<u64>,
    cap: Duration,
) -> Duration {
    let policy_delay = retry_delay(policy, next_attempt);
    match asked_ms {
        Some(ms) => policy_delay.max(Duration::from_millis(ms).min(cap)),
        None => policy_delay,
    }
}

impl Coordinator {
    /// Records a failed attempt that will be retried, and the next attempt, due after the
    /// policy's delay (or the node's retry-after). The planner is not told: the node stays
    /// running.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn schedule_retry(
        &mut self,
        run: &mut ActiveRun,
        node: usize,
        r: &NodeResult,
        error: Option<String>,
        error_type: Option<String>,
        retry_after_ms: Option<u64>,
        policy: &RetryPolicy,
        now: u64,
        p: &mut Pending,
    ) {
        let next = r.attempt + 1;
        let delay = wait_before(policy, next, retry_after_ms, self.env.cfg.max_retry_after);
        let due = now.saturating_add(ms(delay));
        self.metrics.results_recorded.inc();
        self.metrics.tasks_retried.inc();
        p.expect(run);
        run.outcomes += 1;
        p.batch.outcomes.push(AttemptUpdate {
            run_id: r.run_id.clone(),
            node_id: r.node_id.clone(),
            iteration: r.iteration,
            attempt: r.attempt,
            status: AttemptStatus::Failed,
            output: None,
            error: error.clone(),
            error_type: error_type.clone(),
            worker_id: Some(r.worker_id.clone()),
            at_ms: now,
            dead_letter: None,
        });
        let wf = std::sync::Arc::clone(run.state.workflow());
        // The next attempt's row is written now, dated when it is due: the outbox sweeper
        // re-sends it if this coordinator dies before sending it.
        p.batch.new_attempts.push(NewAttempt {
            run_id: r.run_id.clone(),
            node_id: r.node_id.clone(),
            iteration: r.iteration,
            attempt: next,
            node_type: wf.spec.nodes[node].node_type.clone(),
            status: AttemptStatus::Dispatched,
            at_ms: due,
        });
        run.attempts.insert((node, r.iteration), next);
        let detail = serde_json::json!({
            "error": error,
            "error_type": error_type,
            "next_attempt": next,
            "delay_ms": due - now,
        });
        let ev = Ev::node(EventKind::NodeRetrying, &r.node_id, r.iteration, r.attempt)
            .detail(Some(detail));
        p.emit(&self.env.subjects, run, now, ev);
        p.touched.push(r.run_id.clone());
        info!(run_id = %r.run_id, node_id = %r.node_id, attempt = r.attempt, next_attempt = next, delay_ms = due - now, "node attempt failed; retry scheduled");
        let queue = queue_of(&wf.spec.nodes[node]);
        let attempt = (r.run_id.clone(), node, r.iteration, next);
        if self.env.cfg.rate_limits.contains_key(queue) {
            p.paced.push(Paced {
                queue: queue.to_string(),
                publish: None,
                row: p.batch.new_attempts.len() - 1,
                not_before: due,
                attempt,
            });
        } else {
            let (run_id, node, iteration, attempt) = attempt;
            p.retries.push((due, run_id, node, iteration, attempt));
        }
    }

    /// Sends the retries and paced tasks whose time has come (each still current: the run may
    /// have ended or moved on meanwhile), through the outbox publisher.
    pub(crate) async fn send_due_tasks(&mut self) -> Result<(), Error> {
        let now = kora_model::now_ms();
        let mut job = Published::default();
        while self
            .timers
            .peek()
            .is_some_and(|std::cmp::Reverse((due, ..))| *due <= now)
        {
            let Some(std::cmp::Reverse((_, run_id, node, iteration, attempt))) = self.timers.pop()
            else {
                break;
            };
            let Some(run) = self.take_run(&run_id).await? else {
                continue;
            };
            match self.env.resend(&run, node, iteration, attempt) {
                Some(Ok((msg, key))) => {
                    job.task(msg, key);
                    self.metrics.tasks_dispatched.inc();
                }
                Some(Err((kind, e))) => {
                    warn!(%run_id, node, kind, error = %e, "cannot send a retry");
                }
                None => {}
            }
            self.runs.insert(run_id, run);
        }
        self.send(job, "retries").await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: bool) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            initial_delay_ms: 100,
            max_delay_ms: 1_000,
            multiplier: 3.0,
            jitter,
            retry_permanent: false,
        }
    }

    #[test]
    fn retry_delays_grow_by_the_multiplier_up_to_the_cap() {
        let p = policy(false);
        let ms: Vec<u128> = (2..=6).map(|a| retry_delay(&p, a).as_millis()).collect();
        assert_eq!(ms, [100, 300, 900, 1_000, 1_000]);
    }

    #[test]
    fn jitter_stays_between_the_delay_and_twice_it() {
        let p = policy(true);
        for _ in 0..200 {
            let d = retry_delay(&p, 3).as_millis();
            assert!((300..600).contains(&d), "{d}");
        }
    }

    #[test]
    fn a_nodes_retry_after_lengthens_the_wait_up_to_the_cap() {
        let p = policy(false);
        let cap = Duration::from_secs(60);
        // (asked, expected wait in ms for attempt 2, whose policy delay is 100 ms)
        let cases = [
            (None, 100),
            (Some(50), 100),
            (Some(5_000), 5_000),
            (Some(10_000_000), 60_000),
        ];
        for (asked, want) in cases {
            assert_eq!(
                wait_before(&p, 2, asked, cap).as_millis(),
                want,
                "asked {asked:?}"
            );
        }
    }

    #[test]
    fn only_retryable_errors_are_retried_unless_asked() {
        let mut p = policy(false);
        p.max_attempts = 3;
        assert!(p.retries(1, true) && p.retries(2, true));
        assert!(!p.retries(3, true), "the last attempt is final");
        assert!(!p.retries(1, false));
        p.retry_permanent = true;
        assert!(p.retries(1, false));
    }
}
