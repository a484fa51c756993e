//! The planner: the one place that decides which node runs next. Pure and incremental: it is
//! fed results and answers with actions, in O(out-degree) per result, so a 10,000-node fan-out
//! costs the same per node as a 3-node chain.
//!
//! The coordinator owns a [`RunState`] per active run. Because the planner is deterministic, a
//! run's state can be rebuilt after a crash by replaying its recorded results in order.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::semantics::{RunParams, Source, gather, reports_failure};
use crate::validate::{CompiledWorkflow, NodeIdx};
use crate::value::{Map, Value};
use crate::{exits, expr};

/// Hard cap for a cycle that names no `max_iterations`, so a never-converging loop ends.
pub const DEFAULT_MAX_ITERATIONS: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Waiting,
    Running,
    Succeeded,
    Skipped,
    /// A leaf failed: recorded, and the run goes on (Kailash semantics).
    FailedLeaf,
    /// A node failed and aborted the run.
    Failed,
}

impl NodeStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, NodeStatus::Waiting | NodeStatus::Running)
    }
}

/// How a node attempt ended, as reported by a worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success(Map),
    Failure { error: String, error_type: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum RunOutcome {
    Succeeded,
    Failed { node: Option<String>, error: String },
}

/// What the planner asks its owner to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Run `node` (its `iteration`) with these runtime inputs.
    Dispatch {
        node: NodeIdx,
        iteration: u32,
        inputs: Map,
    },
    /// Conditional routing skipped `node`; its result is `None`.
    Skip { node: NodeIdx, iteration: u32 },
    /// A cycle group finished an iteration; `done` when it will not iterate again. `amended`:
    /// the SwitchNode outputs whose `false_output` the planner filled in as the cycle ended at
    /// `max_iterations` (see [`crate::exits`]); the owner records them so results show them.
    CycleIteration {
        group: usize,
        completed: u32,
        done: bool,
        reason: &'static str,
        amended: Vec<crate::exits::Amendment>,
    },
    /// The run is over.
    Finish(RunOutcome),
}

/// Why a result was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("the node is not running (duplicate or stale result)")]
    NotRunning,
    #[error("the result is for iteration {got}, the node is at iteration {current}")]
    StaleIteration { got: u32, current: u32 },
    #[error("the run is already finished")]
    RunFinished,
    #[error("the result is from attempt {got}, the node is at attempt {current}")]
    StaleAttempt { got: u32, current: u32 },
}

/// The live state of one run.
#[derive(Debug, Clone)]
pub struct RunState {
    wf: Arc<CompiledWorkflow>,
    params: RunParams,
    status: Vec<NodeStatus>,
    outputs: Vec<Option<Map>>,
    prev: Vec<Option<Map>>,
    waiting_on: Vec<usize>,
    internal_preds: Vec<usize>,
    iteration: Vec<u32>,
    group_remaining: Vec<usize>,
    group_started_ms: Vec<Option<u64>>,
    /// When each group's last iteration ended (for `history`'s `iteration_time`).
    group_last_ms: Vec<Option<u64>>,
    /// Each group's `history` for `converge_when`, kept only when the expression reads it.
    history: Vec<Vec<Value>>,
    units_left: usize,
    outcome: Option<RunOutcome>,
    started: bool,
    keep_leaf_outputs: bool,
}

impl RunState {
    pub fn new(wf: Arc<CompiledWorkflow>, params: &Map) -> Self {
        let n = wf.ids.len();
        let mut waiting_on = vec![0; n];
        let mut internal_preds = vec![0; n];
        for (s, succ) in wf.successors.iter().enumerate() {
            for &t in succ {
                waiting_on[t] += 1;
                if wf.group_of[t].is_some() && wf.group_of[t] == wf.group_of[s] {
                    internal_preds[t] += 1;
                }
            }
        }
        let groups = wf.groups.len();
        let units_left = wf.group_of.iter().filter(|g| g.is_none()).count() + groups;
        RunState {
            params: RunParams::split(params, &wf),
            status: vec![NodeStatus::Waiting; n],
            outputs: vec![None; n],
            prev: vec![None; n],
            waiting_on,
            internal_preds,
            iteration: vec![0; groups],
            group_remaining: wf.groups.iter().map(|g| g.members.len()).collect(),
            group_started_ms: vec![None; groups],
            group_last_ms: vec![None; groups],
            history: vec![Vec::new(); groups],
            units_left,
            outcome: None,
            started: false,
            keep_leaf_outputs: true,
            wf,
        }
    }

    /// Whether outputs of nodes nothing reads (leaves outside cycles) are kept for
    /// [`RunState::results`]. An owner that records outputs elsewhere (the coordinator's ledger)
    /// turns this off to keep a large run's memory down.
    pub fn keep_leaf_outputs(mut self, keep: bool) -> Self {
        self.keep_leaf_outputs = keep;
        self
    }

    pub fn workflow(&self) -> &Arc<CompiledWorkflow> {
        &self.wf
    }
    pub fn outcome(&self) -> Option<&RunOutcome> {
        self.outcome.as_ref()
    }
    pub fn status(&self, node: NodeIdx) -> NodeStatus {
        self.status[node]
    }
    pub fn output(&self, node: NodeIdx) -> Option<&Map> {
        self.outputs[node].as_ref()
    }
    /// The iteration a node is at (0 outside cycles).
    pub fn node_iteration(&self, node: NodeIdx) -> u32 {
        self.wf.group_of[node].map_or(0, |g| self.iteration[g])
    }

    /// Starts the run: every node without predecessors is evaluated.
    pub fn start(&mut self, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.started {
            return actions;
        }
        self.started = true;
        let roots: Vec<NodeIdx> = self
            .wf
            .topo
            .iter()
            .copied()
            .filter(|&i| self.waiting_on[i] == 0)
            .collect();
        self.evaluate_all(roots, now_ms, &mut actions);
        self.check_done(&mut actions);
        actions
    }

    /// Applies a worker's result for `node` at `iteration`.
    /// Whether a result for `node`'s `iteration` would be applied now (nothing changes).
    pub fn accepts(&self, node: NodeIdx, iteration: u32) -> Result<(), Rejected> {
        if self.outcome.is_some() {
            return Err(Rejected::RunFinished);
        }
        if self.status[node] != NodeStatus::Running {
            return Err(Rejected::NotRunning);
        }
        let current = self.node_iteration(node);
        if iteration != current {
            return Err(Rejected::StaleIteration {
                got: iteration,
                current,
            });
        }
        Ok(())
    }

    pub fn on_result(
        &mut self,
        node: NodeIdx,
        iteration: u32,
        outcome: Outcome,
        now_ms: u64,
    ) -> Result<Vec<Action>, Rejected> {
        self.accepts(node, iteration)?;
        let mut actions = Vec::new();
        let id = &self.wf.ids[node];
        match outcome {
            Outcome::Success(out) => {
                if reports_failure(&out) {
                    self.status[node] = NodeStatus::Failed;
                    self.outputs[node] = Some(out);
                    self.abort(
                        Some(node),
                        format!("node '{id}' returned success: false"),
                        &mut actions,
                    );
                    return Ok(actions);
                }
                self.status[node] = NodeStatus::Succeeded;
                let read_later = self.keep_leaf_outputs
                    || self.wf.out_degree[node] > 0
                    || self.wf.group_of[node].is_some();
                self.outputs[node] = read_later.then_some(out);
            }
            Outcome::Failure { error, error_type } => {
                let mut rec = Map::new();
                rec.insert("error".into(), Value::String(error.clone()));
                rec.insert("error_type".into(), Value::String(error_type));
                rec.insert("failed".into(), Value::Bool(true));
                self.outputs[node] = Some(rec);
                if self.wf.out_degree[node] > 0 || self.wf.types[node].stop_on_error {
                    self.status[node] = NodeStatus::Failed;
                    self.abort(
                        Some(node),
                        format!("node '{id}' failed: {error}"),
                        &mut actions,
                    );
                    return Ok(actions);
                }
                self.status[node] = NodeStatus::FailedLeaf;
            }
        }
        self.finished(node, now_ms, &mut actions);
        self.check_done(&mut actions);
        Ok(actions)
    }

    /// Ends the run as failed from outside (cancellation, a dead-lettered task).
    pub fn fail(&mut self, node: Option<NodeIdx>, error: String) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.outcome.is_none() {
            if let Some(n) = node {
                self.status[n] = NodeStatus::Failed;
            }
            self.abort(node, error, &mut actions);
        }
        actions
    }

    /// `{node_id: output or null}` for every node, Kailash's result shape.
    pub fn results(&self) -> Map {
        self.wf
            .ids
            .iter()
            .zip(&self.outputs)
            .map(|(id, o)| (id.clone(), o.clone().map_or(Value::Null, Value::Object)))
            .collect()
    }

    fn abort(&mut self, node: Option<NodeIdx>, error: String, actions: &mut Vec<Action>) {
        let o = RunOutcome::Failed {
            node: node.map(|n| self.wf.ids[n].clone()),
            error,
        };
        self.outcome = Some(o.clone());
        actions.push(Action::Finish(o));
    }

    fn check_done(&mut self, actions: &mut Vec<Action>) {
        if self.outcome.is_none() && self.units_left == 0 {
            self.outcome = Some(RunOutcome::Succeeded);
            actions.push(Action::Finish(RunOutcome::Succeeded));
        }
    }

    fn evaluate_all(&mut self, mut work: Vec<NodeIdx>, now_ms: u64, actions: &mut Vec<Action>) {
        // A worklist, not recursion: skips can cascade down a 10,000-node chain.
        work.reverse();
        while let Some(i) = work.pop() {
            if self.outcome.is_some() {
                return;
            }
            if let Some(g) = self.wf.group_of[i]
                && self.group_started_ms[g].is_none()
            {
                self.group_started_ms[g] = Some(now_ms);
            }
            let iteration = self.node_iteration(i);
            let g = self.gather_for(i, iteration);
            if g.skip {
                self.status[i] = NodeStatus::Skipped;
                self.outputs[i] = None;
                actions.push(Action::Skip { node: i, iteration });
                let mut more = self.finish_collect(i, now_ms, actions);
                more.reverse();
                work.extend(more);
            } else {
                self.status[i] = NodeStatus::Running;
                actions.push(Action::Dispatch {
                    node: i,
                    iteration,
                    inputs: g.inputs,
                });
            }
        }
    }

    fn gather_for(&self, i: NodeIdx, iteration: u32) -> crate::semantics::Gathered {
        let current = |s: NodeIdx| match self.status[s] {
            NodeStatus::Skipped => Source::Skipped,
            NodeStatus::Succeeded | NodeStatus::FailedLeaf | NodeStatus::Failed => self.outputs[s]
                .as_ref()
                .map_or(Source::Absent, Source::Output),
            _ => Source::Absent,
        };
        let previous = |s: NodeIdx| self.prev[s].as_ref().map_or(Source::Absent, Source::Output);
        gather(&self.wf, i, iteration, &current, &previous, &self.params)
    }

    /// A running node's iteration and the inputs it was dispatched with, recomputed from the
    /// state (the same values: the planner is deterministic). Used to re-send a task whose
    /// publish was lost; `None` when the node is not running.
    pub fn running_inputs(&self, node: NodeIdx) -> Option<(u32, Map)> {
        if self.status[node] != NodeStatus::Running {
            return None;
        }
        let iteration = self.node_iteration(node);
        Some((iteration, self.gather_for(node, iteration).inputs))
    }

    fn finished(&mut self, node: NodeIdx, now_ms: u64, actions: &mut Vec<Action>) {
        let ready = self.finish_collect(node, now_ms, actions);
        self.evaluate_all(ready, now_ms, actions);
    }

    /// Bookkeeping after `node` reached a terminal state; returns nodes that became ready.
    fn finish_collect(
        &mut self,
        node: NodeIdx,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Vec<NodeIdx> {
        let mut ready = Vec::new();
        let wf = Arc::clone(&self.wf);
        match wf.group_of[node] {
            None => {
                self.units_left -= 1;
                for &s in &wf.successors[node] {
                    self.waiting_on[s] -= 1;
                    if self.waiting_on[s] == 0 {
                        ready.push(s);
                    }
                }
            }
            Some(g) => {
                for &s in &wf.successors[node] {
                    if wf.group_of[s] == Some(g) {
                        self.waiting_on[s] -= 1;
                        if self.waiting_on[s] == 0 {
                            ready.push(s);
                        }
                    }
                }
                self.group_remaining[g] -= 1;
                if self.group_remaining[g] == 0 {
                    ready.extend(self.end_iteration(g, now_ms, actions));
                }
            }
        }
        ready
    }

    fn end_iteration(&mut self, g: usize, now_ms: u64, actions: &mut Vec<Action>) -> Vec<NodeIdx> {
        let wf = Arc::clone(&self.wf);
        let group = &wf.groups[g];
        self.iteration[g] += 1;
        let completed = self.iteration[g];
        let max = group.max_iterations.unwrap_or(DEFAULT_MAX_ITERATIONS);
        let mut reason = "";
        if group.uses_history {
            self.record_history(g, completed, now_ms);
        }
        let output = |m: NodeIdx| self.member_output(m);
        if completed >= max {
            reason = "max_iterations";
        } else if exits::natural_end(group, &output).is_some() {
            reason = "natural";
        } else if let Some(e) = &group.converge_when {
            let ctx = self.convergence_context(g, completed, now_ms);
            match expr::eval_bool(e, &|n| ctx.get(n).cloned()) {
                Ok(true) => reason = "converged",
                Ok(false) => {}
                Err(_) => reason = "convergence expression failed",
            }
        }
        if reason.is_empty()
            && let (Some(t), Some(start)) = (group.timeout_secs, self.group_started_ms[g])
            && now_ms.saturating_sub(start) as f64 >= t * 1000.0
        {
            reason = "timeout";
        }
        let done = !reason.is_empty();
        // Kailash fills in `false_output`s only at a `max_iterations` the cycle names.
        let amended = if group.max_iterations.is_some_and(|m| completed >= m) {
            exits::at_max_iterations(group, &output)
        } else {
            Vec::new()
        };
        for a in &amended {
            let result = a.from.and_then(|p| self.outputs[p].as_ref()?.get("result"));
            if let Some(s) = &self.outputs[a.switch] {
                self.outputs[a.switch] = Some(exits::amend(s, result));
            }
        }
        self.group_last_ms[g] = Some(now_ms);
        actions.push(Action::CycleIteration {
            group: g,
            completed,
            done,
            reason: if done { reason } else { "continue" },
            amended,
        });
        let mut ready = Vec::new();
        if done {
            // The iteration counter stays at the last iteration that ran.
            self.iteration[g] -= 1;
            self.units_left -= 1;
            for &m in &group.members {
                for &s in &wf.successors[m] {
                    if wf.group_of[s] != Some(g) {
                        self.waiting_on[s] -= 1;
                        if self.waiting_on[s] == 0 {
                            ready.push(s);
                        }
                    }
                }
            }
        } else {
            for &m in &group.members {
                self.prev[m] = self.outputs[m].clone();
                self.status[m] = NodeStatus::Waiting;
                self.waiting_on[m] = self.internal_preds[m];
            }
            self.group_remaining[g] = group.members.len();
            ready.extend(
                group
                    .members
                    .iter()
                    .copied()
                    .filter(|&m| self.waiting_on[m] == 0),
            );
        }
        ready
    }

    /// A member's output in the iteration that just ended: `None` if it was skipped.
    fn member_output(&self, m: NodeIdx) -> Option<&Map> {
        match self.status[m] {
            NodeStatus::Succeeded | NodeStatus::FailedLeaf | NodeStatus::Failed => {
                self.outputs[m].as_ref()
            }
            _ => None,
        }
    }

    /// The group's members and their outputs this iteration (`None` for one skipped), in
    /// execution order: Kailash's iteration `results`.
    fn member_results(&self, g: usize) -> Map {
        self.wf.groups[g]
            .members
            .iter()
            .map(|&m| {
                let out = self
                    .member_output(m)
                    .cloned()
                    .map_or(Value::Null, Value::Object);
                (self.wf.ids[m].clone(), out)
            })
            .collect()
    }

    /// Appends this iteration to the group's `history`, as Kailash's `CycleState.update`
    /// records it: `iteration`, `results`, `timestamp`, `elapsed_time`, `iteration_time`.
    fn record_history(&mut self, g: usize, completed: u32, now_ms: u64) {
        let started = self.group_started_ms[g].unwrap_or(now_ms);
        let last = self.group_last_ms[g].unwrap_or(started);
        let secs = |ms: u64| Value::from(ms as f64 / 1000.0);
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(now_ms);
        let stamp = humantime::format_rfc3339_micros(at).to_string();
        let mut entry = Map::new();
        entry.insert("iteration".into(), Value::from(completed));
        entry.insert("results".into(), Value::Object(self.member_results(g)));
        entry.insert(
            "timestamp".into(),
            Value::String(stamp.replace('Z', "+00:00")),
        );
        entry.insert("elapsed_time".into(), secs(now_ms.saturating_sub(started)));
        entry.insert("iteration_time".into(), secs(now_ms.saturating_sub(last)));
        self.history[g].push(Value::Object(entry));
    }

    /// Names visible to `converge_when`, as Kailash's `ExpressionCondition` makes them:
    /// `results` (this iteration's outputs of the cycle group's members, in execution order;
    /// a member skipped this iteration is `None`), `iteration`, `elapsed_time` (seconds since
    /// the cycle started), then each member whose id is an identifier bound to its output,
    /// with its scalar fields (numbers, strings, booleans; not `None`) lifted to the top:
    /// those of its `result` when that is an object, else its own. Later members win, and
    /// they shadow Kailash's names. Nothing outside the group is visible: what other nodes
    /// have finished by now depends on timing.
    fn convergence_context(&self, g: usize, completed: u32, now_ms: u64) -> Map {
        let results = self.member_results(g);
        let mut ctx = Map::new();
        for (id, out) in &results {
            if !is_identifier(id) {
                continue;
            }
            ctx.insert(id.clone(), out.clone());
            if let Value::Object(o) = out {
                let fields = match o.get("result") {
                    Some(Value::Object(inner)) => inner,
                    _ => o,
                };
                for (k, v) in fields {
                    if is_identifier(k) && (v.is_number() || v.is_string() || v.is_boolean()) {
                        ctx.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        // Kailash sets its own names first and the members' over them: a member's name wins.
        let started = self.group_started_ms[g].unwrap_or(now_ms);
        ctx.entry("elapsed_time")
            .or_insert_with(|| Value::from(now_ms.saturating_sub(started) as f64 / 1000.0));
        ctx.entry("iteration")
            .or_insert_with(|| Value::from(completed));
        ctx.entry("results").or_insert(Value::Object(results));
        if self.wf.groups[g].uses_history {
            ctx.entry("history")
                .or_insert_with(|| Value::Array(self.history[g].clone()));
        }
        ctx
    }
}

/// Python's `str.isidentifier()`, close enough: a letter or `_`, then letters, digits or `_`.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}
