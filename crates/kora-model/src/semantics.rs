//! Kailash's per-node input rules (`kailash-semantics.md` §1.2), as pure functions:
//! config < edge values < runtime parameters; dotted output paths; `None` never overwrites a set
//! value; `${name}` templates; node-scoped and workflow-level parameters.

use std::collections::HashMap;

use crate::validate::{CompiledWorkflow, NodeIdx};
use crate::value::{Map, Value, lookup_path, py_str};

/// Run parameters split the way Kailash splits them: an entry whose key is a node id and whose
/// value is an object is node-scoped; every other entry is workflow-level.
#[derive(Debug, Clone, Default)]
pub struct RunParams {
    pub global: Map,
    pub scoped: HashMap<String, Map>,
}

impl RunParams {
    pub fn split(params: &Map, wf: &CompiledWorkflow) -> Self {
        let mut out = RunParams::default();
        for (k, v) in params {
            match (wf.index.contains_key(k), v) {
                (true, Value::Object(m)) => {
                    out.scoped.insert(k.clone(), m.clone());
                }
                _ => {
                    out.global.insert(k.clone(), v.clone());
                }
            }
        }
        out
    }
}

/// What the planner knows about a source node when gathering a target's inputs.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// Finished with this output.
    Output(&'a Map),
    /// Skipped by conditional routing: its result is `None`.
    Skipped,
    /// Not available (not run, or a cycle edge on the first iteration).
    Absent,
}

/// The inputs gathered for one node, and whether conditional routing skips it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gathered {
    pub inputs: Map,
    pub skip: bool,
    /// Connection paths that did not resolve (Kailash logs these as warnings).
    pub missing: Vec<String>,
}

/// Gathers node `i`'s inputs from its inbound edges and the run parameters.
///
/// `current(src)` describes sources of non-cycle edges; `previous(src)` the sources of cycle
/// edges (the previous iteration), consulted only when `iteration > 0`.
pub fn gather<'a>(
    wf: &CompiledWorkflow,
    i: NodeIdx,
    iteration: u32,
    current: &dyn Fn(NodeIdx) -> Source<'a>,
    previous: &dyn Fn(NodeIdx) -> Source<'a>,
    params: &RunParams,
) -> Gathered {
    let mut g = Gathered::default();
    // Kailash's conditional routing (`_should_skip_conditional_node`): the edges that set an
    // input, each with whether it came from a SwitchNode or a skipped node ("routed"), and
    // whether any edge at all comes from one.
    let mut set_by: Vec<(&str, bool)> = Vec::new();
    let mut any_routed = false;
    for e in &wf.inbound[i] {
        if e.cycle && iteration == 0 {
            continue;
        }
        let src = if e.cycle {
            previous(e.source)
        } else {
            current(e.source)
        };
        let routed = wf.types[e.source].is_switch || matches!(src, Source::Skipped);
        any_routed |= routed;
        let value = match src {
            Source::Output(out) => lookup_path(out, &e.path),
            // Kailash reads a skipped node's output as `{"result": None}`: its `result` is
            // `None`, and any other path (`result.x` too) leaves the input unset.
            Source::Skipped => (e.path == "result").then_some(&Value::Null),
            Source::Absent => None,
        };
        match value {
            None => g.missing.push(format!("{}.{}", wf.ids[e.source], e.path)),
            Some(Value::Null) => {
                set_by.push((&e.input, routed));
                g.inputs.entry(e.input.clone()).or_insert(Value::Null);
            }
            Some(v) => {
                set_by.push((&e.input, routed));
                g.inputs.insert(e.input.clone(), v.clone());
            }
        }
    }

    // Workflow-level parameters reach a node that declares them, or that takes any input
    // (inline-code PythonCodeNode), as in Kailash; Kora does no fuzzy name matching.
    let info = &wf.types[i];
    for (k, v) in &params.global {
        if info.open_inputs || info.param(k).is_some() {
            g.inputs.insert(k.clone(), v.clone());
        }
    }
    // `add_workflow_inputs(node, {wf_param: node_param})` mappings.
    if let Some(Value::Object(map)) = wf.spec.metadata.get("_workflow_inputs")
        && let Some(Value::Object(mine)) = map.get(&wf.ids[i])
    {
        for (wf_param, node_param) in mine {
            if let (Some(v), Some(np)) = (params.global.get(wf_param), node_param.as_str()) {
                g.inputs.insert(np.to_string(), v.clone());
            }
        }
    }
    if let Some(scoped) = params.scoped.get(&wf.ids[i]) {
        for (k, v) in scoped {
            if !wf.index.contains_key(k) {
                g.inputs.insert(k.clone(), v.clone());
            }
        }
    }
    // Skipped when every input an edge set is `None` (after parameters) and came from
    // routing; or, for a node with configuration, when some edge is routed and every input an
    // edge set is `None`. An edge that set nothing does not count.
    let is_none = |input: &str| g.inputs.get(input).is_none_or(Value::is_null);
    let all_none = set_by.iter().all(|(input, _)| is_none(input));
    // Read the config only when it decides: this runs for every dispatch.
    let configured = || {
        wf.spec.nodes[i]
            .config
            .iter()
            .any(|(k, v)| !v.is_null() && !matches!(k.as_str(), "metadata" | "name" | "id"))
    };
    g.skip = !set_by.is_empty()
        && all_none
        && (set_by.iter().all(|&(_, routed)| routed) || (any_routed && configured()));
    // A node that declares its inputs never sees others: Kailash drops them before it
    // resolves `${name}` templates.
    if !info.open_inputs {
        g.inputs.retain(|k, _| info.param(k).is_some());
    }
    g
}

/// Kailash's `validate_inputs`: a declared, optional parameter whose value is `None` counts
/// as not given (the node's default applies; MergeNode's `data1` is then missing).
pub fn drop_unset_optionals(input: &mut Map, info: &crate::NodeTypeInfo) {
    input.retain(|k, v| !(v.is_null() && info.param(k).is_some_and(|p| !p.required)));
}

/// What a node's `run` receives, as Kailash's `Node.execute` makes it: its config overlaid by
/// its runtime inputs, `${name}` templates resolved from the runtime inputs, then the values of
/// a nested `config` object set over the top-level ones, except where a runtime input gave the
/// key. The nested `config` itself stays (a PythonCodeNode sees it as `config`).
pub fn prepare_input(config: &Map, inputs: &Map) -> Map {
    let mut merged = config.clone();
    for (k, v) in inputs {
        merged.insert(k.clone(), v.clone());
    }
    if !inputs.is_empty() {
        for v in merged.values_mut() {
            resolve_templates(v, inputs);
        }
    }
    if let Some(Value::Object(nested)) = merged.get("config").cloned() {
        for (k, v) in nested {
            if !inputs.contains_key(&k) {
                merged.insert(k, v);
            }
        }
    }
    merged
}

/// Resolves `${name}` in strings, recursively through lists and objects, as Kailash's
/// runtime does. The text inside `${…}` is one literal key of the runtime inputs: no dotted
/// walk, no trimming. A string that starts with `${`, ends with `}` and holds exactly one
/// `${` takes the value with its type; any other string has each `${name}` (the pattern
/// `\$\{([^}]+)\}`) replaced by Python's `str()` of its value. An unknown name is left as
/// written.
pub fn resolve_templates(v: &mut Value, inputs: &Map) {
    match v {
        Value::String(s) if s.contains("${") => {
            if s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1 {
                if let Some(found) = s.get(2..s.len() - 1).and_then(|name| inputs.get(name)) {
                    *v = found.clone();
                }
                return;
            }
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                match after.find('}').filter(|&end| end > 0) {
                    Some(end) => {
                        let name = &after[..end];
                        match inputs.get(name) {
                            Some(found) => out.push_str(&py_str(found)),
                            None => {
                                out.push_str("${");
                                out.push_str(name);
                                out.push('}');
                            }
                        }
                        rest = &after[end + 1..];
                    }
                    None => {
                        // `${}` or an unclosed `${`: not a template; look on after it.
                        out.push_str("${");
                        rest = after;
                    }
                }
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(items) => items.iter_mut().for_each(|x| resolve_templates(x, inputs)),
        Value::Object(m) => m.values_mut().for_each(|x| resolve_templates(x, inputs)),
        _ => {}
    }
}

/// Kailash's content-aware failure: an output with a top-level falsy `success` aborts the run.
pub fn reports_failure(output: &Map) -> bool {
    output
        .get("success")
        .is_some_and(|v| !crate::value::truthy(v))
}
