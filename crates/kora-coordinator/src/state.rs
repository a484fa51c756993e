//! A run's state in the coordinator: the planner's [`RunState`] plus what the ledger adds
//! (recorded outcomes, attempt numbers, operator overrides, the run's group and parent), and how
//! it is rebuilt from the ledger after a restart or a cache miss.

use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};
use kora_model::plan::{NodeStatus, Outcome, Rejected, RunState};
use kora_model::{Catalog, Map};
use kora_store::{AttemptStatus, RunRecord, Store};
use tracing::info;

use crate::Error;

pub(crate) struct ActiveRun {
    pub(crate) state: RunState,
    pub(crate) run_id: String,
    /// The run's highest event sequence: its next event takes the one after.
    pub(crate) event_seq: u64,
    /// Outcomes recorded in the ledger that this state has seen: what a batch expects, so a
    /// coordinator whose state is stale (another one moved the run on) is refused and rebuilds.
    pub(crate) outcomes: u64,
    /// The current attempt of `(node, iteration)` where it is past the first (retries), or
    /// the latest recorded one (a rebuilt run): a node dispatched again after a restart from
    /// an upstream node takes the next number.
    pub(crate) attempts: HashMap<(usize, u32), u32>,
    /// Inputs an operator set on `(node, iteration)` when replaying it (over the computed ones).
    pub(crate) overrides: HashMap<(usize, u32), Map>,
    /// The run's concurrency group, if its workflow has a limit: when it ends, a queued run
    /// of the group may start.
    pub(crate) group: Option<String>,
    /// A child run's parent attempt (a WorkflowNode's task id): told the outcome at the end.
    pub(crate) parent: Option<String>,
    /// The run's tenant: its child runs belong to it too.
    pub(crate) tenant: String,
    /// When the run was submitted (0 when not known): its end-to-end time is measured from it.
    pub(crate) created_ms: u64,
}

impl ActiveRun {
    /// A run that has recorded nothing yet (`event_seq` events so far).
    pub(crate) fn new(
        run_id: String,
        state: RunState,
        event_seq: u64,
        group: Option<String>,
        parent: Option<String>,
        tenant: String,
    ) -> Self {
        ActiveRun {
            state,
            run_id,
            event_seq,
            outcomes: 0,
            attempts: HashMap::new(),
            overrides: HashMap::new(),
            group,
            parent,
            tenant,
            created_ms: 0,
        }
    }

    /// The planner state of a stored run before any outcome, or `None` if its workflow no
    /// longer compiles (a node type this build lacks).
    pub(crate) fn from_record(rec: &RunRecord, catalog: &dyn Catalog) -> Option<ActiveRun> {
        let spec = rec.spec.as_ref()?;
        let (compiled, _) = kora_model::compile(spec, catalog, Some(&rec.params)).ok()?;
        let group = spec
            .concurrency_group(&rec.params)
            .ok()
            .flatten()
            .map(|(g, _)| g);
        let mut run = ActiveRun::new(
            rec.run_id.clone(),
            RunState::new(compiled, &rec.params).keep_leaf_outputs(false),
            rec.event_seq,
            group,
            rec.parent.clone(),
            rec.tenant.clone(),
        );
        run.created_ms = rec.created_ms;
        Some(run)
    }

    /// A running node's inputs: computed by the planner, then the operator's overrides.
    pub(crate) fn inputs_of(&self, node: usize) -> Option<Map> {
        let (iteration, mut inputs) = self.state.running_inputs(node)?;
        if let Some(o) = self.overrides.get(&(node, iteration)) {
            for (k, v) in o {
                inputs.insert(k.clone(), v.clone());
            }
        }
        Some(inputs)
    }

    pub(crate) fn attempt_of(&self, node: usize, iteration: u32) -> u32 {
        self.attempts.get(&(node, iteration)).copied().unwrap_or(1)
    }

    /// The attempt number a node's next dispatch (or skip) takes: `first` when it has none
    /// yet, else the one after its latest (a restart from upstream keeps the old ones).
    pub(crate) fn next_attempt(&mut self, node: usize, iteration: u32, first: u32) -> u32 {
        match self.attempts.get(&(node, iteration)) {
            Some(&a) => {
                self.attempts.insert((node, iteration), a + 1);
                a + 1
            }
            None => first,
        }
    }

    /// Whether a result from `attempt` of `node`'s `iteration` would be applied now.
    pub(crate) fn accepts(
        &self,
        node: usize,
        iteration: u32,
        attempt: u32,
    ) -> Result<(), Rejected> {
        self.state.accepts(node, iteration)?;
        let current = self.attempt_of(node, iteration);
        if attempt == current {
            Ok(())
        } else {
            Err(Rejected::StaleAttempt {
                got: attempt,
                current,
            })
        }
    }

    /// Whether this state has not decided `attempt` of `node`'s `iteration` yet: a result for
    /// it is ahead of this state (its dispatch is in a commit still to come), not stale.
    pub(crate) fn lacks(&self, node: usize, iteration: u32, attempt: u32) -> bool {
        if self.state.outcome().is_some() {
            return false;
        }
        let current = self.state.node_iteration(node);
        if iteration != current {
            return iteration > current;
        }
        match self.state.status(node) {
            NodeStatus::Waiting => true,
            NodeStatus::Running => attempt > self.attempt_of(node, iteration),
            _ => false,
        }
    }

    /// The next event's sequence number.
    pub(crate) fn next_event(&mut self) -> u64 {
        self.event_seq += 1;
        self.event_seq
    }
}

/// Rebuilds a run's planner state from the ledger by replaying its outcomes in their recorded
/// order (the planner is deterministic, so this is the state the run had). `None` for a run
/// that does not exist, has ended, or no longer compiles.
pub(crate) async fn rebuild(
    store: &dyn Store,
    catalog: &(dyn Catalog + Send + Sync),
    run_id: &str,
) -> Result<Option<ActiveRun>, Error> {
    // The run and its attempts in one read, so they are one snapshot. Read apart, a commit
    // landing between the two reads would give outcomes newer than the run's event sequence:
    // this coordinator's next events would reuse taken sequence numbers, and the ledger and
    // the broker would drop them as duplicates (a run's final event among them).
    let Some((rec, rows)) = store.run_with_attempts(run_id).await? else {
        return Ok(None);
    };
    if rec.status.is_final() {
        return Ok(None);
    }
    let Some(mut run) = ActiveRun::from_record(&rec, catalog) else {
        return Ok(None);
    };
    run.state.start(rec.created_ms);
    // The latest attempt of each (node, iteration): earlier failed ones were retried. The
    // operator's overrides of the latest replay of each still apply to the attempts after it
    // (its retries).
    let mut overrides: HashMap<(usize, u32), (u32, Map)> = HashMap::new();
    for a in &rows {
        let Some(&node) = run.state.workflow().index.get(&a.node_id) else {
            continue;
        };
        let e = run.attempts.entry((node, a.iteration)).or_insert(1);
        *e = (*e).max(a.attempt);
        if let Some(o) = &a.overrides {
            let slot = overrides
                .entry((node, a.iteration))
                .or_insert((0, Map::new()));
            if a.attempt >= slot.0 {
                *slot = (a.attempt, o.clone());
            }
        }
    }
    for a in rows {
        if a.seq.is_none() {
            continue;
        }
        run.outcomes += 1;
        let Some(&node) = run.state.workflow().index.get(&a.node_id) else {
            continue;
        };
        if run
            .attempts
            .get(&(node, a.iteration))
            .is_some_and(|&latest| latest > a.attempt)
        {
            continue;
        }
        let outcome = match a.status {
            AttemptStatus::Succeeded => Outcome::Success(
                a.output
                    .and_then(|o| o.as_object().cloned())
                    .unwrap_or_default(),
            ),
            AttemptStatus::Failed => Outcome::Failure {
                error: a.error.unwrap_or_default(),
                error_type: a.error_type.unwrap_or_default(),
            },
            _ => continue,
        };
        let _ = run.state.on_result(
            node,
            a.iteration,
            outcome,
            a.finished_ms.unwrap_or(rec.created_ms),
        );
    }
    run.overrides = overrides.into_iter().map(|(k, (_, o))| (k, o)).collect();
    info!(%run_id, "run state rebuilt from the ledger");
    Ok(Some(run))
}

/// Shared planner state for many runs needs the catalog behind an `Arc`.
pub(crate) type SharedCatalog = Arc<dyn Catalog + Send + Sync>;
