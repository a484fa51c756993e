//! The planner's decisions as ledger rows and messages. Pure: given the same run state and
//! actions it writes the same rows, events and messages into the batch, and does no I/O.

use std::collections::VecDeque;
use std::sync::Arc;

use kora_broker::Outbound;
use kora_model::plan::{Action, NodeStatus, Outcome, RunOutcome};
use kora_model::wire::{self, EventKind, NodeTask, WIRE_VERSION};
use kora_model::{DeadLetterReason, Map, msg_id};
use kora_store::{AttemptKey, AttemptStatus, AttemptUpdate, NewAttempt, RunStatus, RunUpdate};
use tracing::warn;

use crate::pending::{Ev, Paced, Pending};
use crate::state::ActiveRun;
use crate::task::{Env, WORKFLOW_NODE, child_run_id, queue_of};

/// Turns planner actions into ledger writes and messages. A node whose task cannot be sent
/// fails at once (by Kailash's rules), which may produce more actions: they are applied too.
pub(crate) fn apply(
    env: &Env,
    run: &mut ActiveRun,
    actions: Vec<Action>,
    now: u64,
    p: &mut Pending,
) {
    let wf = Arc::clone(run.state.workflow());
    let mut queue: VecDeque<Action> = actions.into();
    while let Some(a) = queue.pop_front() {
        match a {
            Action::Dispatch {
                node,
                iteration,
                inputs,
            } => {
                let spec_idx = wf.index[&wf.ids[node]];
                let spec = &wf.spec.nodes[spec_idx];
                // A node that already has attempts (its run restarted from a node upstream of
                // it) takes the next number; the old ones stay, superseded.
                let attempt = run.next_attempt(spec_idx, iteration, 1);
                p.batch.new_attempts.push(NewAttempt {
                    run_id: run.run_id.clone(),
                    node_id: spec.id.clone(),
                    iteration,
                    attempt,
                    node_type: spec.node_type.clone(),
                    status: AttemptStatus::Dispatched,
                    at_ms: now,
                });
                let sent = env.task_message(run, spec, iteration, attempt, inputs);
                match sent {
                    Ok(msg) => {
                        let queue = queue_of(spec);
                        let paced = env.cfg.rate_limits.contains_key(queue);
                        if paced {
                            p.paced.push(Paced {
                                queue: queue.to_string(),
                                publish: Some(p.publish.len()),
                                row: p.batch.new_attempts.len() - 1,
                                not_before: now,
                                attempt: (run.run_id.clone(), spec_idx, iteration, attempt),
                            });
                        }
                        let key = AttemptKey {
                            run_id: run.run_id.clone(),
                            node_id: spec.id.clone(),
                            iteration,
                            attempt,
                        };
                        // A worker's task goes at once; a paced one waits for its start
                        // time, and a child run's request for the commit (it starts a run).
                        if !paced
                            && spec.node_type != WORKFLOW_NODE
                            && p.may_publish_early(&run.run_id)
                        {
                            p.early_task(msg, key);
                        } else {
                            p.task(msg, key);
                        }
                    }
                    // A task that cannot be sent fails its node, by Kailash's failure rules.
                    Err((error_type, error)) => {
                        warn!(run_id = %run.run_id, node_id = %spec.id, %error, "node cannot be dispatched");
                        p.expect(run);
                        run.outcomes += 1;
                        p.batch.outcomes.push(AttemptUpdate {
                            run_id: run.run_id.clone(),
                            node_id: spec.id.clone(),
                            iteration,
                            attempt,
                            status: AttemptStatus::Failed,
                            output: None,
                            error: Some(error.clone()),
                            error_type: Some(error_type.into()),
                            worker_id: None,
                            at_ms: now,
                            // Its inputs are what is too large to keep: replay with overrides.
                            dead_letter: Some((
                                DeadLetterReason::of_undeliverable(error_type)
                                    .as_str()
                                    .into(),
                                Map::new(),
                            )),
                        });
                        let ev = Ev::node(EventKind::NodeFailed, &spec.id, iteration, attempt)
                            .detail(Some(serde_json::json!({ "error": error })));
                        p.emit(&env.subjects, run, now, ev);
                        let failure = Outcome::Failure {
                            error,
                            error_type: error_type.into(),
                        };
                        if let Ok(more) = run.state.on_result(node, iteration, failure, now) {
                            queue.extend(more);
                        }
                    }
                }
            }
            Action::Skip { node, iteration } => {
                let id = &wf.ids[node];
                let spec_idx = wf.index[id];
                let attempt = run.next_attempt(spec_idx, iteration, 0);
                p.batch.new_attempts.push(NewAttempt {
                    run_id: run.run_id.clone(),
                    node_id: id.clone(),
                    iteration,
                    attempt,
                    node_type: wf.spec.nodes[node].node_type.clone(),
                    status: AttemptStatus::Skipped,
                    at_ms: now,
                });
                let ev = Ev::node(EventKind::NodeSkipped, id, iteration, 0);
                p.emit(&env.subjects, run, now, ev);
            }
            Action::CycleIteration {
                group,
                completed,
                done,
                reason,
                amended,
            } => {
                let mut detail = serde_json::json!({"cycle": wf.groups[group].id, "completed": completed, "done": done, "reason": reason});
                // Which SwitchNode outputs the planner filled in (names only, never data):
                // readers of the run's results apply them (`kora_model::exits`).
                if !amended.is_empty() {
                    let names: kora_model::Map = amended
                        .iter()
                        .map(|a| {
                            let from = a.from.map(|p| wf.ids[p].clone());
                            (
                                wf.ids[a.switch].clone(),
                                from.map_or(kora_model::Value::Null, kora_model::Value::String),
                            )
                        })
                        .collect();
                    detail[kora_model::exits::AMENDED] = kora_model::Value::Object(names);
                }
                let ev = Ev::run(EventKind::CycleIteration).detail(Some(detail));
                p.emit(&env.subjects, run, now, ev);
            }
            Action::Finish(outcome) => {
                let (status, kind, error, error_node) = match outcome {
                    RunOutcome::Succeeded => {
                        (RunStatus::Succeeded, EventKind::RunSucceeded, None, None)
                    }
                    RunOutcome::Failed { node, error } => {
                        (RunStatus::Failed, EventKind::RunFailed, Some(error), node)
                    }
                };
                p.batch.run_updates.push(RunUpdate {
                    run_id: run.run_id.clone(),
                    status,
                    error: error.clone(),
                    error_node: error_node.clone(),
                    at_ms: now,
                });
                let detail = error.map(|e| serde_json::json!({"error": e, "node": error_node}));
                p.emit(&env.subjects, run, now, Ev::run(kind).detail(detail));
                finished(env, run, status, "it failed", p);
            }
        }
    }
}

/// What a run's end means beyond its own rows: the cache drops it, its group may start a
/// queued run, its parent is told, and (unless it succeeded) its running child runs end.
pub(crate) fn finished(env: &Env, run: &ActiveRun, status: RunStatus, why: &str, p: &mut Pending) {
    p.finished.push(run.run_id.clone());
    let spec = &run.state.workflow().spec;
    p.ended.push(crate::pending::Ended {
        run_id: run.run_id.clone(),
        status,
        workflow: if spec.name.is_empty() {
            spec.id.clone()
        } else {
            spec.name.clone()
        },
        tenant: run.tenant.clone(),
        created_ms: run.created_ms,
    });
    if let Some(g) = &run.group {
        p.freed.push(g.clone());
    }
    if status != RunStatus::Succeeded {
        cancel_children(env, run, why, p);
    }
    if run.parent.is_some() {
        p.children.push(run.run_id.clone());
    }
}

/// Child runs of the run's WorkflowNodes still running end with it: a stored cancel request
/// each, sent after the commit (once: its message id).
fn cancel_children(env: &Env, run: &ActiveRun, by: &str, p: &mut Pending) {
    let wf = Arc::clone(run.state.workflow());
    for (node, spec) in wf.spec.nodes.iter().enumerate() {
        if spec.node_type != WORKFLOW_NODE || run.state.status(node) != NodeStatus::Running {
            continue;
        }
        let iteration = run.state.node_iteration(node);
        let task_id = NodeTask::make_id(
            &run.run_id,
            &spec.id,
            iteration,
            run.attempt_of(node, iteration),
        );
        let child = child_run_id(&task_id);
        let msg = wire::Cancel {
            v: WIRE_VERSION,
            run_id: child.clone(),
            by: format!("its parent run {} ({by})", run.run_id),
            deadline_ms: None,
        };
        if let Ok(payload) = wire::encode(&msg) {
            p.publish.push(
                Outbound::new(env.subjects.ledger_cancel(), payload).msg_id(msg_id::cancel(&child)),
            );
        }
    }
}

#[cfg(test)]
mod tests;
