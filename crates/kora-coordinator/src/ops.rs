//! Operator requests (`<p>.ledger.op`): replaying a dead letter, restarting an ended run from a
//! node, purging dead letters. The coordinator is the only writer of run state, so it applies
//! them: the ledger write (one transaction, the run row locked), then the tasks it caused, then
//! an answer on the request's reply subject, then the ack. A request that cannot be applied is
//! answered `refused` with the reason; one the ledger could not take is handed back.

use std::time::Duration;

use kora_broker::Delivery;
use kora_model::wire::{
    self, AttemptRef, DeadLetterSelector, Operation, OperationKind, OperationOutcome,
    OperationReply, RefusalKind, WIRE_VERSION,
};
use kora_store::{DeadLetterFilter, ReplayOutcome, ReplayRequest};
use tracing::{info, warn};

use crate::{Coordinator, Error};

/// Why an operation was not applied.
enum Failed {
    /// The request cannot be applied as asked: answered with this reason.
    Refused(RefusalKind, String),
    /// The ledger could not be written: handed back and retried.
    Unavailable(Error),
}

impl From<kora_store::Error> for Failed {
    fn from(e: kora_store::Error) -> Self {
        match e {
            kora_store::Error::Conflict { detail, .. } => {
                Failed::Refused(RefusalKind::Conflict, detail)
            }
            kora_store::Error::RunNotFound(run) => {
                Failed::Refused(RefusalKind::NotFound, format!("no run {run} in the ledger"))
            }
            kora_store::Error::Config(m) => Failed::Refused(RefusalKind::Invalid, m),
            other => Failed::Unavailable(Error::Store(other)),
        }
    }
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed::Unavailable(e)
    }
}

impl Coordinator {
    pub(crate) async fn on_operation(&mut self, op: Operation, d: Delivery) {
        let outcome = match self.apply_operation(&op).await {
            Ok(o) => o,
            Err(Failed::Refused(kind, error)) => {
                info!(request = %op.request_id, by = %op.actor, %error, "operator request refused");
                OperationOutcome::Refused { error, kind }
            }
            Err(Failed::Unavailable(e)) => {
                warn!(request = %op.request_id, error = %e, "cannot apply an operator request now; it will be retried");
                let _ = d.nak(Some(Duration::from_millis(500))).await;
                return;
            }
        };
        if let Some(reply_to) = &op.reply_to {
            let reply = OperationReply {
                v: WIRE_VERSION,
                request_id: op.request_id.clone(),
                outcome,
            };
            // At most once: a requester that is gone reads the ledger instead.
            if let Ok(payload) = wire::encode(&reply)
                && let Err(e) = self.broker.notify(reply_to, payload).await
            {
                warn!(request = %op.request_id, error = %e, "cannot answer an operator request");
            }
        }
        if let Err(e) = d.ack().await {
            warn!(request = %op.request_id, error = %e, "cannot ack an operator request; it may be applied again (and refused)");
        }
    }

    async fn apply_operation(&mut self, op: &Operation) -> Result<OperationOutcome, Failed> {
        // The ledger cannot store NUL, and a request it would refuse for that must be answered,
        // not handed back forever.
        if let Some(at) = serde_json::to_value(&op.op)
            .ok()
            .and_then(|v| kora_model::value::find_nul(&v))
        {
            return Err(Failed::Refused(
                RefusalKind::Invalid,
                format!(
                    "the request holds a NUL character (\\u0000) at {at}, which the ledger cannot store"
                ),
            ));
        }
        match &op.op {
            OperationKind::Replay {
                dead_letter,
                overrides,
            } => {
                let out = self
                    .store
                    .replay(&ReplayRequest {
                        id: dead_letter.clone(),
                        overrides: overrides.clone(),
                        actor: op.actor.clone(),
                        at_ms: op.at_ms,
                        restart: None,
                    })
                    .await?;
                info!(run_id = %out.run_id, node_id = %out.node_id, attempt = out.attempt, by = %op.actor, "dead letter replayed");
                self.resumed(dead_letter, out).await
            }
            OperationKind::Restart {
                run_id,
                node_id,
                overrides,
            } => {
                let Some(rec) = self.store.run(run_id).await? else {
                    return Err(Failed::Refused(
                        RefusalKind::NotFound,
                        format!("no run {run_id} in the ledger"),
                    ));
                };
                let Some(spec) = rec.spec else {
                    return Err(Failed::Refused(
                        RefusalKind::Conflict,
                        format!("run {run_id} was rejected: it has no workflow to restart"),
                    ));
                };
                let downstream = spec.downstream_of(node_id).map_err(|e| {
                    Failed::Refused(RefusalKind::Invalid, format!("run {run_id}: {e}"))
                })?;
                let latest = self
                    .store
                    .attempts(run_id)
                    .await?
                    .into_iter()
                    .filter(|a| &a.node_id == node_id && a.iteration == 0)
                    .max_by_key(|a| a.attempt)
                    .ok_or_else(|| {
                        Failed::Refused(RefusalKind::Conflict, format!(
                            "node '{node_id}' never ran in run {run_id}: restart from a node that did"
                        ))
                    })?;
                let id = wire::NodeTask::make_id(run_id, node_id, 0, latest.attempt);
                let out = self
                    .store
                    .replay(&ReplayRequest {
                        id: id.clone(),
                        overrides: overrides.clone(),
                        actor: op.actor.clone(),
                        at_ms: op.at_ms,
                        restart: Some(downstream),
                    })
                    .await?;
                info!(%run_id, %node_id, attempt = out.attempt, by = %op.actor, "run restarted from a node");
                self.resumed(&id, out).await
            }
            OperationKind::Purge { filter } => {
                let count = self.store.purge_dead_letters(&filter_of(filter)).await?;
                info!(count, by = %op.actor, "dead letters purged");
                Ok(OperationOutcome::Purged {
                    count: u64::try_from(count).unwrap_or(u64::MAX),
                })
            }
        }
    }

    /// After a replay or restart is durable: send the attempts it wrote.
    async fn resumed(&mut self, id: &str, out: ReplayOutcome) -> Result<OperationOutcome, Failed> {
        let iteration = kora_store::parse_dead_letter_id(id).map_or(0, |k| k.iteration);
        let mut attempts = vec![AttemptRef {
            node_id: out.node_id.clone(),
            iteration,
            attempt: out.attempt,
        }];
        attempts.extend(out.redispatched.iter().map(|k| AttemptRef {
            node_id: k.node_id.clone(),
            iteration: k.iteration,
            attempt: k.attempt,
        }));
        // If this fails, the attempts are unpublished dispatches: the sweeper sends them.
        if let Err(e) = self.resume(&out.run_id, &attempts).await {
            warn!(run_id = %out.run_id, error = %e, "cannot send the replayed tasks now; the sweeper will");
        }
        Ok(OperationOutcome::Replayed {
            run_id: out.run_id,
            node_id: out.node_id,
            attempt: out.attempt,
            redispatched: attempts.split_off(1),
        })
    }
}

/// A purge selects open dead letters only.
fn filter_of(s: &DeadLetterSelector) -> DeadLetterFilter {
    DeadLetterFilter {
        workflow: s.workflow.clone(),
        reason: s.reason.clone(),
        since_ms: s.since_ms,
        any_state: false,
        run_id: s.run_id.clone(),
        id: s.id.clone(),
        tenant: s.tenant.clone(),
        limit: 0,
    }
}
