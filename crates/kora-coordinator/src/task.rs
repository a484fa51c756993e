//! Encoding a decision as a message: a node's task for a worker, or, for a WorkflowNode, the
//! request that starts its child run.

use std::time::Duration;

use kora_broker::Outbound;
use kora_model::subjects::{DEFAULT_QUEUE, Subjects};
use kora_model::wire::{self, NodeTask, WIRE_VERSION};
use kora_model::{Map, NodeSpec, Priority, Value, error_type, msg_id, now_ms};
use kora_store::AttemptKey;

use crate::Config;
use crate::state::{ActiveRun, SharedCatalog};

/// The node type whose attempts are child runs.
pub(crate) const WORKFLOW_NODE: &str = "WorkflowNode";

/// The run id of the child a WorkflowNode's attempt starts: the same for every re-send.
pub(crate) fn child_run_id(task_id: &str) -> String {
    msg_id::child_run_id(task_id)
}

/// The worker queue a node's tasks go to: its config's `queue`, else the default one.
pub(crate) fn queue_of(spec: &NodeSpec) -> &str {
    spec.config
        .get("queue")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_QUEUE)
}

/// Why a task cannot be sent: its error type and message (the node fails with them).
pub(crate) type Undeliverable = (&'static str, String);

/// What turning decisions into messages needs, and nothing that does I/O: the planner's
/// actions become rows and messages ([`crate::apply`]) with this alone.
pub(crate) struct Env {
    pub(crate) cfg: Config,
    pub(crate) subjects: Subjects,
    pub(crate) catalog: SharedCatalog,
}

impl Env {
    /// The task message for one attempt, or why it cannot be sent.
    pub(crate) fn task_message(
        &self,
        run: &ActiveRun,
        spec: &NodeSpec,
        iteration: u32,
        attempt: u32,
        inputs: Map,
    ) -> Result<Outbound, Undeliverable> {
        let run_id = run.run_id.as_str();
        let priority = run.state.workflow().spec.priority;
        let task_id = NodeTask::make_id(run_id, &spec.id, iteration, attempt);
        if spec.node_type == WORKFLOW_NODE {
            return self.child_request(&task_id, spec, &inputs, &run.tenant);
        }
        let task = NodeTask {
            v: WIRE_VERSION,
            task_id: task_id.clone(),
            run_id: run_id.to_string(),
            node_id: spec.id.clone(),
            node_type: spec.node_type.clone(),
            iteration,
            attempt,
            config: spec.config.clone(),
            inputs,
            // Validation bounds timeout_secs; an unusable one sends no limit rather than panic.
            // A node that sets none gets its queue's, else the installation's default.
            timeout_ms: match spec.timeout_secs {
                Some(t) => Duration::try_from_secs_f64(t).ok(),
                None => self
                    .cfg
                    .queue_timeouts
                    .get(queue_of(spec))
                    .copied()
                    .or(self.cfg.default_timeout),
            }
            .and_then(|d| u64::try_from(d.as_millis()).ok()),
        };
        match wire::encode(&task) {
            Ok(bytes) if bytes.len() <= self.cfg.max_task_bytes => {
                let queue = queue_of(spec);
                let subject = match priority {
                    Priority::High => self.subjects.task_high(queue),
                    Priority::Normal => self.subjects.task(queue),
                };
                let msg = Outbound::new(subject, bytes).msg_id(task_id);
                // The run's root span: the worker's attempt span goes under it.
                Ok(if kora_broker::trace::enabled() {
                    msg.header(
                        kora_model::trace::TRACEPARENT,
                        kora_model::trace::TraceParent::of_run(run_id).header(),
                    )
                } else {
                    msg
                })
            }
            Ok(bytes) => Err((
                error_type::TASK_TOO_LARGE,
                format!(
                    "the node's inputs encode to {} bytes, over the {}-byte message limit; pass large data by reference (a file or a table) instead",
                    bytes.len(),
                    self.cfg.max_task_bytes
                ),
            )),
            Err(e) => Err((
                error_type::ENCODE,
                format!("cannot encode the node's task: {e}"),
            )),
        }
    }

    /// The task of a running attempt, to send again (a due retry, a replay, a lost publish),
    /// with its attempt key; `None` when the attempt is no longer current or not running.
    pub(crate) fn resend(
        &self,
        run: &ActiveRun,
        node: usize,
        iteration: u32,
        attempt: u32,
    ) -> Option<Result<(Outbound, AttemptKey), Undeliverable>> {
        run.accepts(node, iteration, attempt).ok()?;
        let inputs = run.inputs_of(node)?;
        let wf = run.state.workflow();
        let spec = &wf.spec.nodes[node];
        let key = AttemptKey {
            run_id: run.run_id.clone(),
            node_id: spec.id.clone(),
            iteration,
            attempt,
        };
        Some(
            self.task_message(run, spec, iteration, attempt, inputs)
                .map(|m| (m, key)),
        )
    }

    /// A WorkflowNode's attempt is a child run: the request that starts it (its run id derives
    /// from the attempt, so a re-send is the same child), or why it cannot start.
    fn child_request(
        &self,
        task_id: &str,
        spec: &NodeSpec,
        inputs: &Map,
        tenant: &str,
    ) -> Result<Outbound, Undeliverable> {
        let input = kora_model::semantics::prepare_input(&spec.config, inputs);
        let bad = |m: String| {
            (
                error_type::CHILD_WORKFLOW,
                format!("node '{}': {m}", spec.id),
            )
        };
        let Some(doc) = input.get("workflow").filter(|v| v.is_object()) else {
            return Err(bad(
                "'workflow' must be a workflow (a map, in any shape Kora loads)".into(),
            ));
        };
        let (workflow, _) = kora_model::load::from_value(doc).map_err(|errs| {
            bad(format!(
                "its workflow does not load: {}",
                joined(errs.iter().map(ToString::to_string))
            ))
        })?;
        let mut params = match input.get("parameters") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        match input.get("input_mapping") {
            // {input: "node.param"}: an input goes to one parameter of one child node.
            Some(Value::Object(mapping)) => {
                for (name, target) in mapping {
                    let Some((node, param)) = target.as_str().and_then(|t| t.split_once('.'))
                    else {
                        return Err(bad(format!(
                            "input_mapping.{name} must be \"node.parameter\""
                        )));
                    };
                    if let Some(v) = input.get(name) {
                        let slot = params
                            .entry(node.to_string())
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(m) = slot {
                            m.insert(param.to_string(), v.clone());
                        }
                    }
                }
            }
            // Without a mapping, the node's other inputs are the child's workflow-level
            // parameters.
            _ => {
                for (k, v) in inputs {
                    if !matches!(k.as_str(), "workflow" | "parameters" | "input_mapping") {
                        params.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
        }
        if let Err(problems) = kora_model::compile(&workflow, self.catalog.as_ref(), Some(&params))
        {
            return Err(bad(format!(
                "its workflow is not valid: {}",
                joined(problems.iter().map(ToString::to_string))
            )));
        }
        let child = child_run_id(task_id);
        let req = wire::RunRequest {
            v: WIRE_VERSION,
            run_id: child.clone(),
            idempotency_key: None,
            workflow,
            params,
            submitted_at_ms: now_ms(),
            parent: Some(task_id.to_string()),
            tenant: tenant.to_string(),
        };
        let bytes = wire::encode(&req).map_err(|e| (error_type::ENCODE, e.to_string()))?;
        if bytes.len() > self.cfg.max_task_bytes {
            return Err((
                error_type::TASK_TOO_LARGE,
                format!(
                    "node '{}': the child run's request encodes to {} bytes, over the {}-byte limit",
                    spec.id,
                    bytes.len(),
                    self.cfg.max_task_bytes
                ),
            ));
        }
        Ok(Outbound::new(self.subjects.run_submit(), bytes).msg_id(msg_id::run(&child)))
    }
}

fn joined(parts: impl Iterator<Item = String>) -> String {
    parts.collect::<Vec<_>>().join("; ")
}
