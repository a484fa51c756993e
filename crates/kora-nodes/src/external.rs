//! Nodes Kora's workers do not run. ExternalNode: run by a worker outside Kora, in any language,
//! that speaks the wire contract in `proto/` (see `examples/external-worker/worker.py`); its
//! tasks go to the queue its config names, which only that worker serves. WorkflowNode: a child
//! run, started and followed by the coordinator.

use kora_model::error_type;
use std::sync::Arc;

use async_trait::async_trait;
use kora_model::catalog::{NodeTypeInfo, ParamInfo, ParamKind};
use kora_model::{Map, Value};

use crate::builtin::info;
use crate::{Node, NodeContext, NodeError};

pub(crate) fn all() -> Vec<Arc<dyn Node>> {
    vec![Arc::new(External::new()), Arc::new(SubWorkflow::new())]
}

pub(crate) struct External {
    info: NodeTypeInfo,
}

impl External {
    fn new() -> Self {
        let mut i = info(
            "ExternalNode",
            "Runs on an external worker serving `queue` (any language; proto/README.md is the contract). Its input is its config overlaid by its inputs; its output is what that worker returns.",
            vec![
                ParamInfo::required("queue", "the queue the external worker serves")
                    .kind(ParamKind::String),
                ParamInfo::optional(
                    "operation",
                    "what the external worker should do (its own vocabulary)",
                )
                .kind(ParamKind::String),
            ],
            vec![],
        );
        i.open_inputs = true;
        i.open_outputs = true;
        External { info: i }
    }
}

#[async_trait]
impl Node for External {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    /// Only reached when a Kora worker serves the node's queue: a deployment mistake.
    async fn run(&self, ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        let queue = input
            .get("queue")
            .and_then(Value::as_str)
            .unwrap_or("default");
        Err(NodeError::permanent(
            error_type::CONFIG,
            format!(
                "node '{}' is an ExternalNode for queue {queue:?}, but a Kora worker took it: serve that queue only with the external worker (and not with `kora serve --role worker --queue {queue}`)",
                ctx.node_id
            ),
        ))
    }
}

pub(crate) struct SubWorkflow {
    info: NodeTypeInfo,
}

impl SubWorkflow {
    fn new() -> Self {
        let mut i = info(
            "WorkflowNode",
            "Runs a workflow as a child run (its own run in the ledger, with this node as its parent); outputs the child's results when it succeeds, fails when it fails.",
            vec![
                ParamInfo::required("workflow", "the child workflow, in any shape Kora loads").kind(ParamKind::Map),
                ParamInfo::optional("parameters", "the child run's parameters").kind(ParamKind::Map),
                ParamInfo::optional(
                    "input_mapping",
                    "{input: \"node.parameter\"}: where this node's inputs go in the child; without it, they are the child's workflow-level parameters",
                )
                .kind(ParamKind::Map),
            ],
            vec!["results", "run_id", "status"],
        );
        i.open_inputs = true;
        SubWorkflow { info: i }
    }
}

#[async_trait]
impl Node for SubWorkflow {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    /// The coordinator starts child runs itself; a worker never gets one unless the coordinator
    /// is older than this worker.
    async fn run(&self, ctx: &NodeContext, _input: Map) -> Result<Map, NodeError> {
        Err(NodeError::permanent(
            error_type::CONFIG,
            format!(
                "node '{}' is a WorkflowNode, which the coordinator runs as a child run; a worker got it: upgrade the coordinators",
                ctx.node_id
            ),
        ))
    }
}
