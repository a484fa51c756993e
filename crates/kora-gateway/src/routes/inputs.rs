//! A node attempt's inputs, recomputed from the ledger the way the coordinator computed them
//! (`kora_model::semantics::gather` over its sources' recorded outputs and the run's
//! parameters, then the operator's overrides), since the ledger keeps outputs, not inputs.
//!
//! Exact while the sources' outputs are the ones the attempt saw: a source run again later
//! (a restart from upstream) has a newer output, and the answer says which it used.

use std::collections::HashMap;

use kora_model::semantics::{RunParams, Source, gather};
use kora_model::{Catalog, Map, NodeIdx, Value, WorkflowSpec};
use kora_store::{AttemptRecord, AttemptStatus};

/// The sources' attempts, by node and iteration, latest attempt only.
struct Recorded<'a> {
    latest: HashMap<(&'a str, u32), &'a AttemptRecord>,
    /// Each node's highest iteration.
    top: HashMap<&'a str, u32>,
}

impl<'a> Recorded<'a> {
    fn of(attempts: &'a [AttemptRecord]) -> Self {
        let mut latest: HashMap<(&str, u32), &AttemptRecord> = HashMap::new();
        let mut top: HashMap<&str, u32> = HashMap::new();
        for a in attempts {
            let e = latest.entry((a.node_id.as_str(), a.iteration)).or_insert(a);
            if a.attempt > e.attempt {
                *e = a;
            }
            let t = top.entry(a.node_id.as_str()).or_insert(a.iteration);
            *t = (*t).max(a.iteration);
        }
        Recorded { latest, top }
    }

    fn source(&self, node: &str, iteration: Option<u32>) -> Source<'a> {
        let Some(it) = iteration.or_else(|| self.top.get(node).copied()) else {
            return Source::Absent;
        };
        match self.latest.get(&(node, it)) {
            Some(a) if a.status == AttemptStatus::Skipped => Source::Skipped,
            Some(a) if a.status == AttemptStatus::Succeeded => match &a.output {
                Some(Value::Object(m)) => Source::Output(m),
                _ => Source::Absent,
            },
            _ => Source::Absent,
        }
    }
}

/// The inputs each of `mine` (attempts of `node_id`) ran with, in the same order; `None`
/// for all when the workflow does not compile here (a node type this gateway lacks).
pub(crate) fn recompute(
    spec: &WorkflowSpec,
    catalog: &dyn Catalog,
    params: &Map,
    node_id: &str,
    mine: &[&AttemptRecord],
    all: &[AttemptRecord],
) -> Vec<Option<Map>> {
    let Ok((wf, _)) = kora_model::compile(spec, catalog, Some(params)) else {
        return vec![None; mine.len()];
    };
    let Some(&i) = wf.index.get(node_id) else {
        return vec![None; mine.len()];
    };
    let run_params = RunParams::split(params, &wf);
    let recorded = Recorded::of(all);
    let group = wf.group_of[i];
    mine.iter()
        .map(|a| {
            if a.status == AttemptStatus::Skipped {
                return None;
            }
            let k = a.iteration;
            // A source in the node's own cycle is read at the same iteration; any other at
            // its latest (it finished before the node started).
            let current = |s: NodeIdx| {
                let same = group.is_some() && wf.group_of[s] == group;
                recorded.source(&wf.ids[s], same.then_some(k))
            };
            let previous = |s: NodeIdx| match k.checked_sub(1) {
                Some(p) => recorded.source(&wf.ids[s], Some(p)),
                None => Source::Absent,
            };
            let mut g = gather(&wf, i, k, &current, &previous, &run_params);
            if let Some(o) = &a.overrides {
                for (key, v) in o {
                    g.inputs.insert(key.clone(), v.clone());
                }
            }
            Some(g.inputs)
        })
        .collect()
}
