//! Node results: applied to the run's state (or fenced, if duplicate or stale), recorded with
//! their audit entries, retried under the node's policy, or dead-lettered. Tasks whose workers
//! kept dying come back as results too (`WorkerLost`).

use std::time::Duration;

use kora_broker::{Delivery, Outbound};
use kora_model::plan::Outcome;
use kora_model::wire::{self, EventKind, NodeResult, NodeTask, TaskOutcome, WIRE_VERSION};
use kora_model::{DeadLetterReason, Map, Value, error_type, msg_id, now_ms};
use kora_store::{AttemptStatus, AttemptUpdate, AuditEntry};
use tracing::{debug, warn};

use crate::apply::apply;
use crate::metrics::Fenced;
use crate::pending::{Ev, Pending, Refusal};
use crate::{Coordinator, Error};

/// A reported outcome as the planner, the ledger row and the retry decision see it.
struct Reported {
    outcome: Outcome,
    status: AttemptStatus,
    output: Option<Value>,
    error: Option<String>,
    error_type: Option<String>,
    retryable: bool,
    retry_after_ms: Option<u64>,
}

impl Reported {
    fn of(outcome: TaskOutcome) -> Self {
        match outcome {
            TaskOutcome::Success { output } => Reported {
                output: Some(Value::Object(output.clone())),
                outcome: Outcome::Success(output),
                status: AttemptStatus::Succeeded,
                error: None,
                error_type: None,
                retryable: false,
                retry_after_ms: None,
            },
            TaskOutcome::Failure {
                error,
                error_type,
                retryable,
                retry_after_ms,
            } => Reported {
                outcome: Outcome::Failure {
                    error: error.clone(),
                    error_type: error_type.clone(),
                },
                status: AttemptStatus::Failed,
                output: None,
                error: Some(error),
                error_type: Some(error_type),
                retryable,
                retry_after_ms,
            },
        }
    }
}

impl Coordinator {
    pub(crate) async fn on_result(
        &mut self,
        mut r: NodeResult,
        via: Option<&str>,
        p: &mut Pending,
    ) -> Result<(), Refusal> {
        let now = now_ms();
        // Any worker's result (an external one's too) is made storable before it is recorded.
        r.make_storable();
        let from_cache = self.runs.contains_key(&r.run_id);
        let Some(mut run) = self.take_run(&r.run_id).await? else {
            self.metrics.fenced(Fenced::RunEnded, 1);
            debug!(run_id = %r.run_id, node_id = %r.node_id, "result for an unknown or finished run ignored");
            return Ok(());
        };
        let Some(&node) = run.state.workflow().index.get(&r.node_id) else {
            let reason = format!(
                "result names node '{}' which run {} does not have",
                r.node_id, r.run_id
            );
            self.runs.insert(r.run_id.clone(), run);
            return Err(Refusal::Poison(reason));
        };
        // A worker answers only for its own queue's nodes: with a NATS user per queue, one
        // queue's workers cannot settle another queue's tasks.
        if let Some(via) = via {
            let queue = crate::task::queue_of(&run.state.workflow().spec.nodes[node]);
            if via != queue {
                let reason = format!(
                    "result for node '{}' of run {} came from queue '{via}', but the node runs on queue '{queue}'",
                    r.node_id, r.run_id
                );
                self.runs.insert(r.run_id.clone(), run);
                return Err(Refusal::Poison(reason));
            }
        }
        let reported = Reported::of(std::mem::replace(
            &mut r.outcome,
            TaskOutcome::Success { output: Map::new() },
        ));
        // Audit entries go to the ledger with the outcome they came with, or not at all.
        let audit: Vec<AuditEntry> = std::mem::take(&mut r.audit)
            .into_iter()
            .enumerate()
            .map(|(idx, entry)| AuditEntry {
                run_id: r.run_id.clone(),
                node_id: r.node_id.clone(),
                iteration: r.iteration,
                attempt: r.attempt,
                idx: u32::try_from(idx).unwrap_or(u32::MAX),
                at_ms: now,
                entry,
            })
            .collect();
        let mut verdict = run.accepts(node, r.iteration, r.attempt);
        if verdict.is_err() {
            if self.in_pipeline(&r.run_id, p) {
                // This coordinator's own decisions about the run are not all durable yet, so
                // its state is ahead of the ledger's: judge by it. A result it has not decided
                // may be another coordinator's task sent before its commit: handed back, never
                // fenced on a guess. A fenced one is acknowledged only with this
                // coordinator's commits, so if they fail it comes back too.
                if run.lacks(node, r.iteration, r.attempt) {
                    self.runs.insert(r.run_id, run);
                    return Err(Refusal::Ahead);
                }
            } else if from_cache {
                // A cached state may be stale (another coordinator moved the run on), and a
                // stale state would wrongly fence a real result. Decide on the ledger's state.
                match self.rebuild(&r.run_id).await? {
                    Some(fresh) => {
                        run = fresh;
                        verdict = run.accepts(node, r.iteration, r.attempt);
                    }
                    None => {
                        self.metrics.fenced(Fenced::RunEnded, 1);
                        return Ok(());
                    }
                }
            }
            // The ledger's state: a result for an attempt it does not hold yet waits for the
            // commit deciding it (its task was published before that commit).
            if verdict.is_err()
                && !self.in_pipeline(&r.run_id, p)
                && run.lacks(node, r.iteration, r.attempt)
            {
                self.runs.insert(r.run_id, run);
                return Err(Refusal::Ahead);
            }
        }
        let wf = std::sync::Arc::clone(run.state.workflow());
        let policy = wf.spec.retry_policy(&wf.spec.nodes[node]);
        let failed = reported.status == AttemptStatus::Failed;
        if verdict.is_ok()
            && let Some(observed) = &self.observed
        {
            // The monitor's baselines: this node type's time in this workflow, and failures.
            let spec = &wf.spec;
            let workflow = if spec.name.is_empty() {
                &spec.id
            } else {
                &spec.name
            };
            let key = (
                run.tenant.clone(),
                workflow.clone(),
                spec.nodes[node].node_type.clone(),
            );
            let seconds = r.finished_at_ms.saturating_sub(r.started_at_ms) as f64 / 1000.0;
            observed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .record(&self.env.cfg.monitoring, key, seconds, failed, now);
        }
        if verdict.is_ok() && failed && policy.retries(r.attempt, reported.retryable) {
            p.batch.audit.extend(audit);
            self.schedule_retry(
                &mut run,
                node,
                &r,
                reported.error,
                reported.error_type,
                reported.retry_after_ms,
                &policy,
                now,
                p,
            );
            self.runs.insert(r.run_id, run);
            return Ok(());
        }
        // A failure that is not retried is dead-lettered with the inputs it ran with.
        let dead_letter = (verdict.is_ok() && failed).then(|| {
            let reason = DeadLetterReason::of_failure(
                reported.error_type.as_deref().unwrap_or_default(),
                reported.retryable,
            );
            (
                reason.as_str().to_string(),
                run.inputs_of(node).unwrap_or_default(),
            )
        });
        if let Some((reason, _)) = &dead_letter {
            self.metrics.dead_lettered(reason);
        }
        let applied = verdict.and_then(|()| {
            run.state
                .on_result(node, r.iteration, reported.outcome, now)
        });
        match applied {
            Err(rejected) => {
                self.metrics.fenced(Fenced::Stale, 1);
                debug!(run_id = %r.run_id, node_id = %r.node_id, attempt = r.attempt, %rejected, "result fenced");
            }
            Ok(actions) => {
                self.metrics.results_recorded.inc();
                if kora_broker::trace::enabled() {
                    // From the result's arrival to its commit, under the attempt's span.
                    p.spans.push(
                        kora_broker::trace::SpanSpec::new(
                            "kora.record",
                            std::time::SystemTime::now(),
                            std::time::SystemTime::now(),
                        )
                        .parent(
                            p.trace_in.take().or_else(|| {
                                Some(kora_model::trace::TraceParent::of_run(&r.run_id))
                            }),
                        )
                        .attr("kora.run_id", r.run_id.clone())
                        .attr("kora.node_id", r.node_id.clone())
                        .attr("kora.attempt", i64::from(r.attempt)),
                    );
                }
                p.batch.audit.extend(audit);
                p.expect(&run);
                run.outcomes += 1;
                p.batch.outcomes.push(AttemptUpdate {
                    run_id: r.run_id.clone(),
                    node_id: r.node_id.clone(),
                    iteration: r.iteration,
                    attempt: r.attempt,
                    status: reported.status,
                    output: reported.output,
                    error: reported.error.clone(),
                    error_type: reported.error_type,
                    worker_id: Some(r.worker_id),
                    at_ms: now,
                    dead_letter,
                });
                let kind = if failed {
                    EventKind::NodeFailed
                } else {
                    EventKind::NodeSucceeded
                };
                let detail = reported.error.map(|e| serde_json::json!({ "error": e }));
                let ev = Ev::node(kind, &r.node_id, r.iteration, r.attempt).detail(detail);
                p.emit(&self.env.subjects, &mut run, now, ev);
                apply(&self.env, &mut run, actions, now, p);
                p.touched.push(r.run_id.clone());
            }
        }
        self.runs.insert(r.run_id, run);
        Ok(())
    }

    /// Tasks the server gave up on after their max deliveries: each one's workers crashed or
    /// were killed every time. The attempt fails (`WorkerLost`, not retried: it already ran
    /// that many times) through the normal result path, so it is dead-lettered and its run
    /// follows Kailash's rules; the task is removed from the work queue.
    pub(crate) async fn on_lost_tasks(&mut self, advisories: Vec<Delivery>) -> Result<(), Error> {
        let tasks = self.env.subjects.stream_tasks();
        for d in advisories {
            let body: serde_json::Value =
                serde_json::from_slice(&d.payload).unwrap_or(serde_json::Value::Null);
            let (Some(seq), deliveries) =
                (body["stream_seq"].as_u64(), body["deliveries"].as_u64())
            else {
                warn!(body = %String::from_utf8_lossy(&d.payload), "unreadable max-deliveries advisory dropped");
                d.ack().await?;
                continue;
            };
            match self.broker.get_message(&tasks, seq).await {
                Ok(Some(m)) => {
                    if let Ok(task) = wire::decode::<NodeTask>(&m.payload) {
                        warn!(run_id = %task.run_id, node_id = %task.node_id, attempt = task.attempt, "task reached its max deliveries: its workers keep dying");
                        let payload = wire::encode(&lost(&task, deliveries.unwrap_or(0)))?;
                        self.broker
                            .publish(
                                Outbound::new(self.env.subjects.ledger_result(), payload)
                                    .msg_id(msg_id::lost(&task.task_id)),
                            )
                            .await?;
                    }
                    // Out of the work queue, so it does not sit there for ever.
                    let _ = self.broker.delete_message(&tasks, seq).await;
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = d.nak(Some(Duration::from_secs(1))).await;
                    return Err(e.into());
                }
            }
            d.ack().await?;
        }
        Ok(())
    }
}

/// The failure of a task whose workers died `deliveries` times.
fn lost(task: &NodeTask, deliveries: u64) -> NodeResult {
    let now = now_ms();
    NodeResult {
        v: WIRE_VERSION,
        task_id: task.task_id.clone(),
        run_id: task.run_id.clone(),
        node_id: task.node_id.clone(),
        iteration: task.iteration,
        attempt: task.attempt,
        outcome: TaskOutcome::Failure {
            error: format!(
                "worker lost: the task was delivered {deliveries} times and its worker crashed or was killed each time"
            ),
            error_type: error_type::WORKER_LOST.into(),
            retryable: false,
            retry_after_ms: None,
        },
        worker_id: "coordinator".into(),
        started_at_ms: now,
        finished_at_ms: now,
        audit: Vec::new(),
    }
}
