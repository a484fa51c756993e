//! Child runs (of WorkflowNodes) report to their parents: when a batch ends a child run, its
//! outcome is published as the parent attempt's result (deduplicated by its message id), then
//! the child is marked reported; the sweep re-tells parents a crash left untold.

use kora_broker::Outbound;
use kora_model::wire::{self, NodeResult, TaskOutcome, WIRE_VERSION};
use kora_model::{Map, Value, error_type, msg_id, now_ms};
use kora_store::{RunRecord, RunStatus};
use tracing::info;

use crate::config::ms;
use crate::{Coordinator, Error};

impl Coordinator {
    /// Tells each ended child run's parent attempt the outcome.
    pub(crate) async fn report_children(&self, children: Vec<String>) -> Result<(), Error> {
        let mut records = Vec::new();
        for id in children {
            if let Some(r) = self.store.run(&id).await? {
                records.push(r);
            }
        }
        self.tell_parents(records).await
    }

    /// The sweep's part: child runs whose parent was never told (a crash in between).
    pub(crate) async fn report_unreported_children(&self) -> Result<(), Error> {
        let cutoff = now_ms().saturating_sub(ms(self.env.cfg.outbox_grace));
        let records = self.store.unreported_children(cutoff, 256).await?;
        self.tell_parents(records).await
    }

    async fn tell_parents(&self, children: Vec<RunRecord>) -> Result<(), Error> {
        let mut told = Vec::new();
        for child in children {
            let (Some(parent), true) = (child.parent.as_deref(), child.status.is_final()) else {
                continue;
            };
            let Some(key) = kora_store::parse_dead_letter_id(parent) else {
                continue;
            };
            let now = now_ms();
            let result = NodeResult {
                v: WIRE_VERSION,
                task_id: parent.to_string(),
                run_id: key.run_id.clone(),
                node_id: key.node_id.clone(),
                iteration: key.iteration,
                attempt: key.attempt,
                outcome: self.outcome_of(&child).await?,
                worker_id: "coordinator".into(),
                started_at_ms: child.created_ms,
                finished_at_ms: now,
                audit: Vec::new(),
            };
            self.broker
                .publish(
                    Outbound::new(self.env.subjects.ledger_result(), wire::encode(&result)?)
                        .msg_id(msg_id::child_result(&child.run_id)),
                )
                .await?;
            info!(run_id = %key.run_id, node_id = %key.node_id, child = %child.run_id, status = child.status.as_str(), "child run ended; parent told");
            told.push(child.run_id);
        }
        self.store.mark_children_reported(&told, now_ms()).await?;
        Ok(())
    }

    /// What the parent's WorkflowNode outputs: the child's results, or why it did not succeed.
    async fn outcome_of(&self, child: &RunRecord) -> Result<TaskOutcome, Error> {
        if child.status != RunStatus::Succeeded {
            return Ok(TaskOutcome::Failure {
                error: format!(
                    "child run {} {}: {}",
                    child.run_id,
                    child.status.as_str(),
                    child.error.as_deref().unwrap_or("no error recorded")
                ),
                error_type: error_type::CHILD_WORKFLOW_FAILED.into(),
                retryable: false,
                retry_after_ms: None,
            });
        }
        let ids: Vec<String> = child
            .spec
            .as_ref()
            .map(|s| s.nodes.iter().map(|n| n.id.clone()).collect())
            .unwrap_or_default();
        let may_amend = child
            .spec
            .as_ref()
            .is_some_and(kora_model::exits::may_amend);
        let results = self
            .store
            .final_results(&child.run_id, &ids, may_amend)
            .await?;
        let mut output = Map::new();
        output.insert("results".into(), Value::Object(results));
        output.insert("run_id".into(), Value::String(child.run_id.clone()));
        output.insert("status".into(), Value::String("succeeded".into()));
        Ok(TaskOutcome::Success { output })
    }
}
