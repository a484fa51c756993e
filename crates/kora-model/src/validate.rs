//! Validation of a [`WorkflowSpec`] against a node [`Catalog`]: every problem, each naming its
//! node and field, and the compiled graph the planner runs on.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::sync::Arc;

use serde::Serialize;

use crate::catalog::{Catalog, NodeTypeInfo, suggest};
use crate::expr;
use crate::spec::{CycleSpec, REDACTED, WorkflowSpec};
use crate::value::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One validation finding. `Display` reads `node 'b', field 'code': missing required config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        match (&self.node, &self.field) {
            (Some(n), Some(fl)) => write!(f, "node '{n}', field '{fl}': ")?,
            (Some(n), None) => write!(f, "node '{n}': ")?,
            (None, Some(fl)) => write!(f, "{fl}: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

fn problem(node: Option<&str>, field: Option<&str>, message: impl Into<String>) -> Problem {
    Problem {
        severity: Severity::Error,
        node: node.map(String::from),
        field: field.map(String::from),
        message: message.into(),
    }
}

fn warning(node: Option<&str>, field: Option<&str>, message: impl Into<String>) -> Problem {
    Problem {
        severity: Severity::Warning,
        ..problem(node, field, message)
    }
}

pub type NodeIdx = usize;

/// An edge between node indices; `path` is the source output path, `input` the target input.
#[derive(Debug, Clone)]
pub struct Edge {
    pub source: NodeIdx,
    pub target: NodeIdx,
    pub path: String,
    pub input: String,
    pub cycle: bool,
    pub cycle_id: Option<String>,
}

/// A strongly connected group of nodes iterated together, with its termination rules.
#[derive(Debug, Clone)]
pub struct CycleGroup {
    pub id: String,
    /// Members in topological order of the group's non-cycle edges.
    pub members: Vec<NodeIdx>,
    pub max_iterations: Option<u32>,
    pub converge_when: Option<expr::Expr>,
    pub converge_source: Option<String>,
    pub timeout_secs: Option<f64>,
    /// Whether `converge_when` reads `history` (the planner keeps it only then).
    pub uses_history: bool,
    /// Members that end the cycle through their `condition_result` (Kailash's "natural
    /// termination"): an edge inside the group maps exactly their `true_output` (the cycle
    /// ends when the condition is falsy) or `false_output` (ends when it is truthy).
    pub natural: Vec<NaturalExit>,
    /// SwitchNode members with an edge leaving the group, each with its predecessors inside
    /// the group in connection order: at `max_iterations` Kailash fills in their
    /// `false_output` from the first such predecessor's `result`.
    pub switch_exits: Vec<(NodeIdx, Vec<NodeIdx>)>,
}

/// A member whose `condition_result` can end its cycle; see [`CycleGroup::natural`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NaturalExit {
    pub node: NodeIdx,
    /// An edge inside the group maps exactly `true_output`: the cycle ends on a falsy condition.
    pub on_false: bool,
    /// An edge inside the group maps exactly `false_output`: the cycle ends on a truthy one.
    pub on_true: bool,
}

/// A validated workflow, indexed for the planner. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct CompiledWorkflow {
    pub spec: WorkflowSpec,
    pub ids: Vec<String>,
    pub index: HashMap<String, NodeIdx>,
    pub types: Vec<Arc<NodeTypeInfo>>,
    /// Incoming edges per node, in connection order.
    pub inbound: Vec<Vec<Edge>>,
    /// Targets of outgoing non-cycle edges per node, deduplicated.
    pub successors: Vec<Vec<NodeIdx>>,
    /// Number of outgoing edges of any kind (Kailash's `out_degree`).
    pub out_degree: Vec<usize>,
    /// Nodes in a topological order of the non-cycle edges.
    pub topo: Vec<NodeIdx>,
    pub groups: Vec<CycleGroup>,
    /// The cycle group of each node, if any.
    pub group_of: Vec<Option<usize>>,
}

/// Checks `spec` and returns every problem (errors and warnings). `params` are the run's
/// parameters when known: they can satisfy required inputs and redacted secrets.
pub fn validate(spec: &WorkflowSpec, catalog: &dyn Catalog, params: Option<&Map>) -> Vec<Problem> {
    match compile_inner(spec, catalog, params, false) {
        Ok((_, warnings)) => warnings,
        Err(problems) => problems,
    }
}

/// [`validate`] within `limits`: counts and sizes first (a workflow over them is not
/// validated further), then the usual checks, then the executions a cyclic workflow may need.
pub fn validate_within(
    spec: &WorkflowSpec,
    catalog: &dyn Catalog,
    params: Option<&Map>,
    limits: &crate::Limits,
) -> Vec<Problem> {
    let over = limits.check_workflow(spec, params);
    if !over.is_empty() {
        return over;
    }
    let cyclic = !spec.cycles.is_empty() || spec.connections.iter().any(|c| c.cycle.is_some());
    if !cyclic {
        return validate(spec, catalog, params);
    }
    match compile(spec, catalog, params) {
        Ok((wf, mut warnings)) => {
            if let Some(p) = limits.check_executions(&wf) {
                warnings.insert(0, p);
            }
            warnings
        }
        Err(problems) => problems,
    }
}

/// Validates and compiles. Errors block; warnings are returned alongside the compiled workflow.
pub fn compile(
    spec: &WorkflowSpec,
    catalog: &dyn Catalog,
    params: Option<&Map>,
) -> Result<(Arc<CompiledWorkflow>, Vec<Problem>), Vec<Problem>> {
    match compile_inner(spec, catalog, params, true) {
        Ok((Some(c), w)) => Ok((Arc::new(c), w)),
        Ok((None, w)) => Err(w),
        Err(p) => Err(p),
    }
}

/// Checks `spec`; with `build`, also returns the compiled workflow (which copies the spec).
fn compile_inner(
    spec: &WorkflowSpec,
    catalog: &dyn Catalog,
    params: Option<&Map>,
    build: bool,
) -> Result<(Option<CompiledWorkflow>, Vec<Problem>), Vec<Problem>> {
    let mut problems = Vec::new();
    if spec.nodes.is_empty() {
        // Kailash runs an empty workflow and returns `{}`; so does Kora, with a warning.
        problems.push(warning(
            None,
            Some("nodes"),
            "the workflow has no nodes: it runs and returns {}",
        ));
    }
    let mut index = HashMap::with_capacity(spec.nodes.len());
    let mut types: Vec<Arc<NodeTypeInfo>> = Vec::with_capacity(spec.nodes.len());
    let mut type_cache: HashMap<&str, Arc<NodeTypeInfo>> = HashMap::new();
    let mut ids = Vec::new();
    if let Some(p) = &spec.retry {
        for (field, message) in p.check() {
            problems.push(problem(None, Some(field), message));
        }
    }
    if let Some(c) = &spec.concurrency {
        if c.limit == 0 {
            problems.push(problem(
                None,
                Some("concurrency.limit"),
                "must be at least 1 (0 would never start a run)",
            ));
        }
        if c.key
            .as_deref()
            .is_some_and(|k| k.is_empty() || k.split('.').any(str::is_empty))
        {
            problems.push(problem(
                None,
                Some("concurrency.key"),
                "must name a run parameter, as a dotted path such as `fetch.customer_id`",
            ));
        }
        if spec.id.is_empty() && spec.name.is_empty() {
            problems.push(problem(
                None,
                Some("concurrency"),
                "a workflow with a concurrency limit needs an `id` or a `name`: the limit is shared by the runs of that workflow",
            ));
        }
    }
    if let Some(ps) = params
        && let Err(message) = spec.concurrency_group(ps)
    {
        problems.push(problem(None, Some("concurrency.key"), message));
    }
    if let Some(d) = spec.deadline_secs
        && !(d.is_finite() && d > 0.0 && d <= 30.0 * 86_400.0)
    {
        problems.push(problem(
            None,
            Some("deadline_secs"),
            format!(
                "must be more than 0 and at most 30 days (2592000), found {}",
                crate::value::py_float(d)
            ),
        ));
    }
    if let Some((path, why)) = params.and_then(crate::value::find_unusable_number) {
        problems.push(problem(None, Some(&format!("params.{path}")), why));
    }
    for node in &spec.nodes {
        if let Some((path, why)) = crate::value::find_unusable_number(&node.config) {
            problems.push(problem(Some(&node.id), Some(&path), why));
        }
        if let Some(p) = &node.retry {
            for (field, message) in p.check() {
                problems.push(problem(Some(&node.id), Some(field), message));
            }
        }
        if let Some(t) = node.timeout_secs
            && !(t.is_finite() && t > 0.0 && t <= 7.0 * 86_400.0)
        {
            problems.push(problem(
                Some(&node.id),
                Some("timeout_secs"),
                format!(
                    "must be more than 0 and at most a week (604800), found {}",
                    crate::value::py_float(t)
                ),
            ));
        }
        if index.contains_key(&node.id) {
            problems.push(problem(
                Some(&node.id),
                None,
                "duplicate node id: node ids must be unique",
            ));
            continue;
        }
        if node.id.is_empty() {
            problems.push(problem(None, Some("nodes"), "a node has an empty id"));
            continue;
        }
        let info = match type_cache.get(node.node_type.as_str()) {
            Some(t) => Arc::clone(t),
            None => match catalog.node_type(&node.node_type) {
                Some(t) => {
                    let t = Arc::new(t.clone());
                    type_cache.insert(&node.node_type, Arc::clone(&t));
                    t
                }
                None => {
                    let hint = suggest(&node.node_type, catalog.type_names())
                        .map(|s| format!("; did you mean '{s}'?"))
                        .unwrap_or_else(|| "; `kora nodes` lists the known types".into());
                    problems.push(problem(
                        Some(&node.id),
                        Some("type"),
                        format!("unknown node type '{}'{hint}", node.node_type),
                    ));
                    continue;
                }
            },
        };
        index.insert(node.id.clone(), ids.len());
        ids.push(node.id.clone());
        types.push(info);
    }
    let n = ids.len();
    let cycle_specs: HashMap<&str, &CycleSpec> =
        spec.cycles.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut inbound: Vec<Vec<Edge>> = vec![Vec::new(); n];
    let mut out_degree = vec![0usize; n];
    let mut seen = HashSet::new();
    let known_node = |id: &str| index.contains_key(id) || spec.nodes.iter().any(|x| x.id == id);
    for (i, c) in spec.connections.iter().enumerate() {
        let field = format!("connections[{i}]");
        let mut bad = false;
        for (end, id) in [("source", &c.source), ("target", &c.target)] {
            if !known_node(id) {
                let hint = suggest(id, ids.iter().map(String::as_str))
                    .map(|s| format!("; did you mean '{s}'?"))
                    .unwrap_or_default();
                problems.push(problem(
                    None,
                    Some(&field),
                    format!("{end} node '{id}' does not exist{hint}"),
                ));
                bad = true;
            }
        }
        if bad {
            continue;
        }
        let (Some(&s), Some(&t)) = (index.get(&c.source), index.get(&c.target)) else {
            continue;
        };
        if s == t && c.cycle.is_none() {
            problems.push(problem(
                Some(&c.source),
                Some(&field),
                "a node cannot connect to itself; mark the edge as a cycle (with max_iterations or converge_when) to loop",
            ));
            continue;
        }
        if !seen.insert((s, c.output.as_str(), t, c.input.as_str())) {
            problems.push(problem(
                Some(&c.target),
                Some(&c.input),
                format!(
                    "duplicate connection {}.{} -> {}.{}",
                    c.source, c.output, c.target, c.input
                ),
            ));
            continue;
        }
        let first = c.output.split('.').next().unwrap_or_default();
        let st = &types[s];
        if c.output.is_empty() || (!st.open_outputs && !st.outputs.contains(&first)) {
            problems.push(problem(
                Some(&c.source),
                Some(&c.output),
                format!(
                    "'{}' has no output '{}' (connection to '{}'); its outputs are: {}",
                    st.name,
                    c.output,
                    c.target,
                    st.outputs.join(", ")
                ),
            ));
        }
        let tt = &types[t];
        if c.input.is_empty() || (!tt.open_inputs && tt.param(&c.input).is_none()) {
            let names: Vec<&str> = tt.params.iter().map(|p| p.name).collect();
            let hint = suggest(&c.input, names.iter().copied())
                .map(|s| format!("; did you mean '{s}'?"))
                .unwrap_or_default();
            // Kailash runs such a workflow and drops the input before the node sees it (so a
            // `${name}` template cannot use it either); Kora does the same, and says so.
            let message = format!(
                "'{}' has no input '{}' (connection from '{}'){hint}; its inputs are: {}",
                tt.name,
                c.input,
                c.source,
                names.join(", "),
            );
            problems.push(if c.input.is_empty() {
                problem(Some(&c.target), Some(&c.input), message)
            } else {
                warning(
                    Some(&c.target),
                    Some(&c.input),
                    message + "; the value is dropped, as Kailash does",
                )
            });
        }
        if let Some(cid) = &c.cycle
            && !cycle_specs.contains_key(cid.as_str())
        {
            problems.push(problem(
                Some(&c.target),
                Some(&field),
                format!("cycle '{cid}' is not defined in `cycles`"),
            ));
        }
        // Kailash keeps one mapping per output between two nodes: a later connection of the
        // same output to the same node replaces the earlier one.
        if let Some(old) = inbound[t]
            .iter_mut()
            .find(|e| e.source == s && e.path == c.output)
        {
            problems.push(warning(
                Some(&c.target),
                Some(&c.input),
                format!(
                    "connection {}.{} -> {}.{} replaces the earlier {}.{} -> {}.{}: Kailash keeps only the last connection of an output between two nodes, so '{}' gets nothing from it",
                    c.source,
                    c.output,
                    c.target,
                    c.input,
                    c.source,
                    c.output,
                    c.target,
                    old.input,
                    old.input
                ),
            ));
            old.input = c.input.clone();
            old.cycle = c.cycle.is_some();
            old.cycle_id = c.cycle.clone();
            continue;
        }
        out_degree[s] += 1;
        inbound[t].push(Edge {
            source: s,
            target: t,
            path: c.output.clone(),
            input: c.input.clone(),
            cycle: c.cycle.is_some(),
            cycle_id: c.cycle.clone(),
        });
    }
    // Most nodes have one or two inputs; a Vec grown by push holds room for four (384 bytes
    // a node in a wide fan-out, issue #19).
    for edges in &mut inbound {
        edges.shrink_to_fit();
    }
    for c in &spec.cycles {
        if c.max_iterations.is_none() && c.converge_when.is_none() && c.timeout_secs.is_none() {
            problems.push(problem(
                None,
                Some(&format!("cycles.{}", c.id)),
                "a cycle needs max_iterations, converge_when or timeout, or it would never end",
            ));
        }
        if c.max_iterations == Some(0) {
            problems.push(problem(
                None,
                Some(&format!("cycles.{}", c.id)),
                "max_iterations must be at least 1",
            ));
        }
    }

    // Required parameters and redacted secrets.
    for node in &spec.nodes {
        let Some(&i) = index.get(&node.id) else {
            continue;
        };
        let info = &types[i];
        let scoped = params
            .and_then(|p| p.get(&node.id))
            .and_then(Value::as_object);
        for p in info.params.iter().filter(|p| p.required) {
            let in_config = node.config.get(p.name).is_some_and(|v| !v.is_null())
                || p.aliases
                    .iter()
                    .any(|a| node.config.get(*a).is_some_and(|v| !v.is_null()));
            let by_edge = inbound[i]
                .iter()
                .any(|e| e.input == p.name || p.aliases.contains(&e.input.as_str()));
            let by_param = scoped.is_some_and(|s| s.contains_key(p.name))
                || params.is_some_and(|ps| ps.contains_key(p.name));
            if !(in_config || by_edge || by_param) {
                problems.push(problem(
                    Some(&node.id),
                    Some(p.name),
                    format!(
                        "missing required parameter of {}: set it in config, connect an edge to it, or pass it at run time with --params '{{\"{}\": {{\"{}\": ...}}}}'",
                        info.name, node.id, p.name
                    ),
                ));
            }
        }
        for group in &info.required_one_of {
            let given = group.iter().any(|name| {
                node.config.get(*name).is_some_and(|v| !v.is_null())
                    || inbound[i].iter().any(|e| e.input == *name)
                    || scoped.is_some_and(|s| s.contains_key(*name))
            });
            if !given {
                problems.push(problem(
                    Some(&node.id),
                    Some(&group.join(" | ")),
                    format!("{} needs one of {}", info.name, group.join(", ")),
                ));
            }
        }
        for p in &info.params {
            // Static config only: templates and secret references are resolved later.
            let given = std::iter::once(p.name)
                .chain(p.aliases.iter().copied())
                .find_map(|n| node.config.get(n).map(|v| (n, v)));
            if let Some((name, v)) = given
                && !crate::value::is_deferred(v)
                && let Some(message) = p.kind.check(v)
            {
                let mut pr = problem(Some(&node.id), Some(name), message);
                if p.kind.lenient() {
                    pr.severity = Severity::Warning;
                }
                problems.push(pr);
            }
        }
        for (k, v) in &node.config {
            if v.as_str() == Some(REDACTED) {
                let supplied = scoped.is_some_and(|s| s.contains_key(k));
                if !supplied {
                    let mut p = problem(
                        Some(&node.id),
                        Some(k),
                        format!(
                            "secret was redacted on export; supply it at run time with --params '{{\"{}\": {{\"{k}\": ...}}}}'",
                            node.id
                        ),
                    );
                    if params.is_none() {
                        p.severity = Severity::Warning;
                    }
                    problems.push(p);
                }
            }
        }
    }

    let errors_so_far = problems.iter().any(|p| p.severity == Severity::Error);
    if errors_so_far {
        return Err(problems);
    }

    // Topological order over non-cycle edges (Kahn); what remains is an unmarked cycle.
    let mut successors: Vec<Vec<NodeIdx>> = vec![Vec::new(); n];
    let mut indeg = vec![0usize; n];
    for (t, edges) in inbound.iter().enumerate() {
        let mut srcs: Vec<NodeIdx> = edges
            .iter()
            .filter(|e| !e.cycle)
            .map(|e| e.source)
            .collect();
        srcs.sort_unstable();
        srcs.dedup();
        for s in srcs {
            successors[s].push(t);
            indeg[t] += 1;
        }
    }
    let mut topo = Vec::with_capacity(n);
    let mut ready: std::collections::VecDeque<NodeIdx> =
        (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut left = indeg.clone();
    while let Some(i) = ready.pop_front() {
        topo.push(i);
        for &s in &successors[i] {
            left[s] -= 1;
            if left[s] == 0 {
                ready.push_back(s);
            }
        }
    }
    if topo.len() < n {
        let stuck: Vec<&str> = (0..n)
            .filter(|&i| left[i] > 0)
            .map(|i| ids[i].as_str())
            .collect();
        problems.push(problem(
            None,
            Some("connections"),
            format!(
                "unmarked cycle through nodes {}; mark the closing edge as a cycle with max_iterations or converge_when",
                stuck.join(", ")
            ),
        ));
        return Err(problems);
    }

    // Cycle groups: strongly connected components over all edges that contain a cycle edge.
    let groups_raw = cycle_components(n, &inbound);
    let mut group_of = vec![None; n];
    let mut groups = Vec::new();
    let pos: Vec<usize> = {
        let mut p = vec![0; n];
        for (k, &i) in topo.iter().enumerate() {
            p[i] = k;
        }
        p
    };
    for mut members in groups_raw {
        members.sort_by_key(|&m| pos[m]);
        let member_set: HashSet<NodeIdx> = members.iter().copied().collect();
        let mut cycle_ids: Vec<&str> = Vec::new();
        for &m in &members {
            for e in &inbound[m] {
                if e.cycle
                    && member_set.contains(&e.source)
                    && let Some(cid) = e.cycle_id.as_deref()
                    && !cycle_ids.contains(&cid)
                {
                    cycle_ids.push(cid);
                }
            }
        }
        let specs: Vec<&CycleSpec> = cycle_ids
            .iter()
            .filter_map(|c| cycle_specs.get(c).copied())
            .collect();
        let max_iterations = specs.iter().filter_map(|c| c.max_iterations).min();
        let timeout_secs = specs.iter().filter_map(|c| c.timeout_secs).reduce(f64::min);
        let sources: Vec<&str> = specs
            .iter()
            .filter_map(|c| c.converge_when.as_deref())
            .collect();
        let converge_source = (!sources.is_empty()).then(|| {
            if sources.len() == 1 {
                sources[0].to_string()
            } else {
                sources
                    .iter()
                    .map(|s| format!("({s})"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            }
        });
        let converge_when = match &converge_source {
            Some(src) => match expr::parse(src) {
                Ok(e) => Some(e),
                Err(e) => {
                    problems.push(problem(
                        None,
                        Some(&format!("cycles.{}.converge_when", cycle_ids.join("+"))),
                        format!("invalid expression: {e}"),
                    ));
                    None
                }
            },
            None => None,
        };
        let uses_history = converge_when
            .as_ref()
            .is_some_and(|e| expr::mentions(e, "history"));
        let gi = groups.len();
        for &m in &members {
            group_of[m] = Some(gi);
        }
        groups.push(CycleGroup {
            id: cycle_ids.join("+"),
            members,
            max_iterations,
            converge_when,
            converge_source,
            timeout_secs,
            uses_history,
            natural: Vec::new(),
            switch_exits: Vec::new(),
        });
    }
    for (gi, group) in groups.iter_mut().enumerate() {
        (group.natural, group.switch_exits) =
            exits_of(gi, &group.members, &inbound, &group_of, &types);
    }
    // A cycle edge must close a loop: its source must be reachable from its target.
    for edges in &inbound {
        for e in edges.iter().filter(|e| e.cycle) {
            let same = e.source == e.target
                || (group_of[e.source].is_some() && group_of[e.source] == group_of[e.target]);
            if !same {
                problems.push(problem(
                    Some(&ids[e.target]),
                    Some(&e.input),
                    format!(
                        "edge from '{}' is marked as a cycle but '{}' does not lead back to it",
                        ids[e.source], ids[e.target]
                    ),
                ));
            }
        }
    }
    if problems.iter().any(|p| p.severity == Severity::Error) {
        return Err(problems);
    }
    if !build {
        return Ok((None, problems));
    }
    let compiled = CompiledWorkflow {
        spec: spec.clone(),
        ids,
        index,
        types,
        inbound,
        successors,
        out_degree,
        topo,
        groups,
        group_of,
    };
    Ok((Some(compiled), problems))
}

/// A group's [`NaturalExit`]s and SwitchNode exits, from the edges as Kailash reads them:
/// the edges inside the group (cycle edges and the others alike) by their exact source key,
/// and any edge to a node outside the group for an exit.
#[allow(clippy::type_complexity)]
fn exits_of(
    g: usize,
    members: &[NodeIdx],
    inbound: &[Vec<Edge>],
    group_of: &[Option<usize>],
    types: &[Arc<NodeTypeInfo>],
) -> (Vec<NaturalExit>, Vec<(NodeIdx, Vec<NodeIdx>)>) {
    let mut natural: Vec<NaturalExit> = members
        .iter()
        .map(|&node| NaturalExit {
            node,
            on_false: false,
            on_true: false,
        })
        .collect();
    let mut leaves = vec![false; members.len()];
    let at: HashMap<NodeIdx, usize> = members.iter().enumerate().map(|(k, &m)| (m, k)).collect();
    let pos = |n: NodeIdx| at.get(&n).copied();
    for (t, edges) in inbound.iter().enumerate() {
        for e in edges {
            let Some(k) = pos(e.source) else { continue };
            if group_of[t] == Some(g) {
                natural[k].on_false |= e.path == "true_output";
                natural[k].on_true |= e.path == "false_output";
            } else {
                leaves[k] = true;
            }
        }
    }
    let switch_exits = members
        .iter()
        .zip(&leaves)
        .filter(|&(&m, &leaves)| leaves && types[m].name == "SwitchNode")
        .map(|(&m, _)| {
            let mut preds: Vec<NodeIdx> = Vec::new();
            for e in &inbound[m] {
                if group_of[e.source] == Some(g) && !preds.contains(&e.source) {
                    preds.push(e.source);
                }
            }
            (m, preds)
        })
        .collect();
    natural.retain(|n| n.on_false || n.on_true);
    (natural, switch_exits)
}

/// Tarjan's SCC over all edges, keeping components that contain a cycle edge. Iterative, so a
/// long chain cannot overflow the stack.
fn cycle_components(n: usize, inbound: &[Vec<Edge>]) -> Vec<Vec<NodeIdx>> {
    let mut out_all: Vec<Vec<NodeIdx>> = vec![Vec::new(); n];
    for edges in inbound {
        for e in edges {
            out_all[e.source].push(e.target);
        }
    }
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut comps = Vec::new();
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut call: Vec<(NodeIdx, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut k)) = call.last_mut() {
            if *k < out_all[v].len() {
                let w = out_all[v][*k];
                *k += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                call.pop();
                if let Some(&(parent, _)) = call.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut comp = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    let has_cycle_edge = comp.iter().any(|&m| {
                        inbound[m]
                            .iter()
                            .any(|e| e.cycle && comp.contains(&e.source))
                    });
                    if has_cycle_edge {
                        comps.push(comp);
                    }
                }
            }
        }
    }
    comps
}
