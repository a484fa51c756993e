//! Leaving a cycle through a SwitchNode, as Kailash's cyclic runner does it (its "natural
//! termination"), and the `false_output` it fills in when such a cycle stops at
//! `max_iterations`.
//!
//! Owns: the two decisions, as pure functions of a cycle group's outputs in its last
//! iteration, and the read side that shows a recorded amendment in a run's results. Must not:
//! look at anything outside the group (what else has finished depends on timing).
//!
//! Kailash 2.65.0 (`cyclic_runner.py`, after each iteration):
//! - a member whose output is an object holding `condition_result`, with an edge inside the
//!   group whose mapping key is exactly `true_output`, ends the cycle when the condition is
//!   falsy; exactly `false_output`, when it is truthy. A dotted key (`true_output.x`) does not
//!   count. Any node type can do this; in practice it is a SwitchNode.
//! - when the cycle stops with `max_iterations` reached, a SwitchNode member with an edge out of
//!   the group whose `condition_result` and `true_output` are both truthy gets a `false_output`:
//!   the `result` of its first predecessor inside the group that has one (if truthy), else its
//!   own `true_output`. Downstream nodes read it, and it shows in the run's results. Kailash
//!   walks the predecessors in set order (which varies between processes); Kora takes them in
//!   connection order.
//! - Kailash has a third rule (fill `false_output` from `true_output` after a natural
//!   termination caused by another member), but it reads the edge's attribute values as if
//!   they were mappings, so it never applies; Kora does not have it either.

use crate::spec::WorkflowSpec;
use crate::validate::{CycleGroup, NodeIdx};
use crate::value::{Map, Value, truthy};
use crate::wire::{EventKind, RunEvent};

/// The key of a `cycle_iteration` event's detail that lists the amendments made when the
/// cycle ended: `{switch_id: predecessor_id or null}`.
pub const AMENDED: &str = "false_output_from";

/// Whether a member's output ends the cycle now: the first member (in group order) whose
/// `condition_result` says so, or `None`.
pub fn natural_end<'a>(
    group: &CycleGroup,
    output: &dyn Fn(NodeIdx) -> Option<&'a Map>,
) -> Option<NodeIdx> {
    group.natural.iter().find_map(|n| {
        let cond = output(n.node)?.get("condition_result")?;
        let ends = (n.on_false && !truthy(cond)) || (n.on_true && truthy(cond));
        ends.then_some(n.node)
    })
}

/// One `false_output` filled in at `max_iterations`: the switch, and the predecessor whose
/// `result` it took (`None`: it took its own `true_output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amendment {
    pub switch: NodeIdx,
    pub from: Option<NodeIdx>,
}

/// The `false_output`s Kailash fills in when `group` stops at `max_iterations`, given each
/// member's output in the last iteration (`None`: it did not run or was skipped).
pub fn at_max_iterations<'a>(
    group: &CycleGroup,
    output: &dyn Fn(NodeIdx) -> Option<&'a Map>,
) -> Vec<Amendment> {
    let mut out = Vec::new();
    for (switch, preds) in &group.switch_exits {
        let Some(o) = output(*switch) else { continue };
        let on = |k: &str| o.get(k).is_some_and(truthy);
        if !(on("condition_result") && on("true_output")) {
            continue;
        }
        let from = preds
            .iter()
            .copied()
            .find_map(|p| output(p)?.get("result").map(|r| (p, r)))
            .and_then(|(p, r)| truthy(r).then_some(p));
        out.push(Amendment {
            switch: *switch,
            from,
        });
    }
    out
}

/// The amended output of `switch`: its own with `false_output` set to `result` (the
/// predecessor's `result` an [`Amendment`] names), or to its `true_output` when that is `None`.
pub fn amend(switch: &Map, result: Option<&Value>) -> Map {
    let mut o = switch.clone();
    let v = result.or_else(|| o.get("true_output")).cloned();
    o.insert("false_output".into(), v.unwrap_or(Value::Null));
    o
}

/// Shows the amendments recorded in a run's `cycle_iteration` events in its results
/// (`{node_id: output}`, each node's latest attempt), as the planner applied them.
pub fn apply_recorded(results: &mut Map, events: &[RunEvent]) {
    for e in events {
        if e.kind != EventKind::CycleIteration {
            continue;
        }
        let Some(Value::Object(amended)) = e.detail.as_ref().and_then(|d| d.get(AMENDED)) else {
            continue;
        };
        for (switch, from) in amended {
            let Some(Value::Object(s)) = results.get(switch) else {
                continue;
            };
            let result = from.as_str().and_then(|p| results.get(p)?.get("result"));
            let new = amend(s, result);
            results.insert(switch.clone(), Value::Object(new));
        }
    }
}

/// Whether a workflow's results may carry amendments (a SwitchNode and a cycle), so readers
/// fetch a run's events only then.
pub fn may_amend(spec: &WorkflowSpec) -> bool {
    let cyclic = !spec.cycles.is_empty() || spec.connections.iter().any(|c| c.cycle.is_some());
    cyclic && spec.nodes.iter().any(|n| n.node_type == "SwitchNode")
}
