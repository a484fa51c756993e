//! Table-style tests of loading, validation and planning, against a small fixed catalog.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

mod common;

use common::catalog;
use kora_model::load::{Shape, Syntax, load_str};
use kora_model::plan::{Action, NodeStatus, Outcome, RunOutcome, RunState};
use kora_model::{CompiledWorkflow, Map, compile, validate};
use serde_json::{Value, json};

fn compiled(doc: Value) -> Arc<CompiledWorkflow> {
    let (spec, _) = kora_model::load::from_value(&doc).expect("loads");
    compile(&spec, &catalog(), Some(&Map::new()))
        .expect("valid")
        .0
}

fn problems(doc: Value) -> Vec<String> {
    let (spec, _) = kora_model::load::from_value(&doc).expect("loads");
    validate(&spec, &catalog(), None)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn obj(v: Value) -> Map {
    v.as_object().cloned().unwrap()
}

fn dispatches(actions: &[Action]) -> Vec<(usize, Map)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Dispatch { node, inputs, .. } => Some((*node, inputs.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn loads_every_kailash_shape() {
    let to_dict = r#"{"workflow_id":"wf","name":"demo","version":"2.0.0","metadata":{},
      "nodes":{"a":{"node_id":"a","node_type":"PythonCodeNode","config":{"code":"result = 1"},"position":[0,0]},
               "b":{"node_id":"b","node_type":"PythonCodeNode","config":{"code":"result = val"}}},
      "connections":[{"source_node":"a","source_output":"result","target_node":"b","target_input":"val"},
        {"source_node":"b","source_output":"result","target_node":"a","target_input":"val","cycle":true,
         "max_iterations":4,"convergence_check":null,"cycle_id":"c2","timeout":null}]}"#;
    let (spec, shape) = load_str(to_dict, Syntax::Auto).unwrap();
    assert_eq!(shape, Shape::KailashToDict);
    assert_eq!(spec.connections[1].cycle.as_deref(), Some("c2"));
    assert_eq!(spec.cycles[0].max_iterations, Some(4));

    let builder = r#"{"nodes":[{"id":"a","type":"PythonCodeNode","config":{"code":"result = 2"}},
       {"id":"b","type":"PythonCodeNode","parameters":{"code":"result = input * 3"}}],
       "connections":[{"from":"a","to":"b"}]}"#;
    let (spec, shape) = load_str(builder, Syntax::Auto).unwrap();
    assert_eq!(shape, Shape::KailashBuilder);
    assert_eq!(
        (
            spec.connections[0].output.as_str(),
            spec.connections[0].input.as_str()
        ),
        ("result", "input")
    );

    let export = "version: '1.0'\nmetadata: {name: x}\nnodes:\n  r:\n    type: CSVReaderNode\n    config: {file_path: a.csv}\n    container: {image: x}\n  p:\n    type: PythonCodeNode\n    config: {code: 'result = len(data)'}\nconnections:\n  - {from: r, to: p, from_output: data, to_input: data}\n";
    let (spec, shape) = load_str(export, Syntax::Auto).unwrap();
    assert_eq!(shape, Shape::KailashExport);
    assert_eq!(spec.nodes.len(), 2);

    let enterprise = r#"{"version":"1.0","nodes":[{"type_name":"PythonCodeNode","node_id":"a","config":{}}],
      "connections":[],"enable_cycles":false}"#;
    assert_eq!(
        load_str(enterprise, Syntax::Json).unwrap().1,
        Shape::KailashEnterprise
    );

    let wf_from_dict = r#"{"nodes":{"a":{"type":"PythonCodeNode","config":{}},"b":{"type":"PythonCodeNode"}},
      "connections":[{"from_node":"a","to_node":"b"}]}"#;
    let (spec, _) = load_str(wf_from_dict, Syntax::Json).unwrap();
    assert_eq!(
        (
            spec.connections[0].output.as_str(),
            spec.connections[0].input.as_str()
        ),
        ("output", "input")
    );

    let kora = serde_json::to_string(&spec).unwrap();
    let (again, shape) = load_str(&kora, Syntax::Json).unwrap();
    assert_eq!(shape, Shape::Kora);
    assert_eq!(again, spec);
}

#[test]
fn loader_errors_name_the_place() {
    let cases = [
        ("[1,2]", "a workflow must be an object"),
        ("{}", "missing `nodes`"),
        (r#"{"nodes": 3}"#, "nodes: must be an object or a list"),
        (r#"{"nodes": [{"type": "X"}]}"#, "nodes[0]: missing `id`"),
        (
            r#"{"nodes": {"a": {"config": {}}}}"#,
            "node 'a': missing `type`",
        ),
        (
            r#"{"nodes": {"a": {"type": "X", "config": 5}}}"#,
            "node 'a', field 'config': must be an object",
        ),
        (
            r#"{"nodes": [], "connections": [{"to": "b"}]}"#,
            "connections[0]: missing the source node",
        ),
        ("{nodes: [", "invalid JSON"),
        ("nodes: [1\n  x: {", "invalid YAML"),
        (
            "{nodes: {a: {type: X}}, connections: 3}",
            "connections: must be a list",
        ),
        (r#"{"nodes": [}"#, "invalid JSON"),
    ];
    for (text, want) in cases {
        let errs = load_str(text, kora_model::load::Syntax::Auto).unwrap_err();
        let all: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(
            all.iter().any(|e| e.contains(want)),
            "{text}: {all:?} lacks {want:?}"
        );
    }
}

#[test]
fn validation_reports_every_problem_precisely() {
    let p = problems(json!({"nodes": [
      {"id": "a", "type": "PythonCodeNode"},
      {"id": "a", "type": "PythonCodeNode"},
      {"id": "r", "type": "CSVReaderNode"},
      {"id": "x", "type": "PythonCodeNod"},
      {"id": "s", "type": "SwitchNode", "config": {"input_data": 1}}
    ], "connections": [
      {"source": "a", "output": "result", "target": "nope", "input": "x"},
      {"source": "a", "output": "result", "target": "a", "input": "x"},
      {"source": "a", "output": "result", "target": "s", "input": "bogus"},
      {"source": "r", "output": "rows", "target": "a", "input": "d"}
    ]}));
    let want = [
        "node 'a': duplicate node id",
        "node 'x', field 'type': unknown node type 'PythonCodeNod'; did you mean 'PythonCodeNode'?",
        "connections[0]: target node 'nope' does not exist",
        "node 'a', field 'connections[1]': a node cannot connect to itself",
        "warning: node 's', field 'bogus': 'SwitchNode' has no input 'bogus'",
        "node 'r', field 'rows': 'CSVReaderNode' has no output 'rows'",
        "node 'r', field 'file_path': missing required parameter of CSVReaderNode",
    ];
    for w in want {
        assert!(
            p.iter().any(|x| x.starts_with(w)),
            "missing {w:?} in {p:#?}"
        );
    }
}

#[test]
fn unmarked_cycles_and_bad_cycles_are_rejected() {
    let p = problems(json!({"nodes": [
        {"id": "a", "type": "PythonCodeNode"}, {"id": "b", "type": "PythonCodeNode"}],
        "connections": [{"source": "a", "output": "result", "target": "b", "input": "x"},
                        {"source": "b", "output": "result", "target": "a", "input": "x"}]}));
    assert!(
        p.iter()
            .any(|x| x.contains("unmarked cycle through nodes a, b")),
        "{p:?}"
    );
    let p = problems(
        json!({"kora": 1, "nodes": [{"id": "a", "type": "PythonCodeNode"}],
        "connections": [{"source": "a", "output": "result", "target": "a", "input": "x", "cycle": "c"}],
        "cycles": [{"id": "c"}]}),
    );
    assert!(
        p.iter().any(|x| x.contains("a cycle needs max_iterations")),
        "{p:?}"
    );
    let p = problems(
        json!({"kora": 1, "nodes": [{"id": "a", "type": "PythonCodeNode"}],
        "connections": [{"source": "a", "output": "result", "target": "a", "input": "x", "cycle": "c"}],
        "cycles": [{"id": "c", "converge_when": "done = True"}]}),
    );
    assert!(
        p.iter()
            .any(|x| x.contains("converge_when: invalid expression")),
        "{p:?}"
    );
}

#[test]
fn redacted_secrets_warn_without_params_and_fail_at_run_time() {
    let doc = json!({"nodes": [{"id": "a", "type": "PythonCodeNode", "config": {"api_key": "***REDACTED***"}}]});
    let (spec, _) = kora_model::load::from_value(&doc).unwrap();
    let w = validate(&spec, &catalog(), None);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].severity, kora_model::Severity::Warning);
    assert!(compile(&spec, &catalog(), Some(&Map::new())).is_err());
    assert!(
        compile(
            &spec,
            &catalog(),
            Some(&obj(json!({"a": {"api_key": "k"}})))
        )
        .is_ok()
    );
}

#[test]
fn precedence_config_edge_runtime() {
    let wf = compiled(json!({"nodes": [
        {"id": "a", "type": "PythonCodeNode", "config": {"code": "result = 1"}},
        {"id": "b", "type": "PythonCodeNode", "config": {"code": "result = y", "y": 5}}],
        "connections": [{"source": "a", "output": "result", "target": "b", "input": "y"},
                        {"source": "a", "output": "result.x.y", "target": "b", "input": "z"}]}));
    for (params, want_y) in [(json!({}), json!(1)), (json!({"b": {"y": 99}}), json!(99))] {
        let mut st = RunState::new(wf.clone(), &obj(params));
        let first = st.start(0);
        assert_eq!(dispatches(&first).len(), 1);
        let next = st
            .on_result(0, 0, Outcome::Success(obj(json!({"result": 1}))), 0)
            .unwrap();
        let (node, inputs) = dispatches(&next).remove(0);
        assert_eq!(node, 1);
        assert_eq!(inputs.get("y"), Some(&want_y));
        assert!(!inputs.contains_key("z"), "unresolved path is omitted");
        let merged = kora_model::semantics::prepare_input(&wf.spec.nodes[1].config, &inputs);
        assert_eq!(
            merged.get("y"),
            Some(&want_y),
            "edge and runtime beat config"
        );
    }
    // A workflow-level parameter reaches every inline-code node.
    let mut st = RunState::new(wf, &obj(json!({"x": 7})));
    let first = dispatches(&st.start(0));
    assert_eq!(first[0].1.get("x"), Some(&json!(7)));
}

#[test]
fn none_never_overwrites_and_nested_paths_walk() {
    let wf = compiled(json!({"nodes": [
        {"id": "a", "type": "PythonCodeNode"}, {"id": "b", "type": "PythonCodeNode"},
        {"id": "c", "type": "PythonCodeNode"}],
        "connections": [{"source": "a", "output": "result.x.y", "target": "c", "input": "v"},
                        {"source": "b", "output": "result", "target": "c", "input": "v"}]}));
    let mut st = RunState::new(wf, &Map::new());
    st.start(0);
    assert!(
        dispatches(
            &st.on_result(
                0,
                0,
                Outcome::Success(obj(json!({"result": {"x": {"y": 3}}}))),
                0
            )
            .unwrap()
        )
        .is_empty()
    );
    let d = dispatches(
        &st.on_result(1, 0, Outcome::Success(obj(json!({"result": null}))), 0)
            .unwrap(),
    );
    assert_eq!(d[0].1.get("v"), Some(&json!(3)));
}

#[test]
fn templates_keep_types_or_stringify() {
    let inputs = obj(json!({"tag": "local", "n": 3, "d": {"k": [1, null]}}));
    let config = obj(
        json!({"cfg": {"tag": "${tag}"}, "n": "${n}", "s": "n=${n} d=${d}", "u": "${unknown}", "l": ["${n}"]}),
    );
    let m = kora_model::semantics::prepare_input(&config, &inputs);
    assert_eq!(m["cfg"], json!({"tag": "local"}));
    assert_eq!(m["n"], json!(3));
    assert_eq!(m["s"], json!("n=3 d={'k': [1, None]}"));
    assert_eq!(m["u"], json!("${unknown}"));
    assert_eq!(m["l"], json!([3]));
}

fn switch_workflow() -> Arc<CompiledWorkflow> {
    // src -> sw(status == ok); true -> yes; false -> no -> after_no; yes,after_no -> m
    compiled(json!({"nodes": [
        {"id": "src", "type": "PythonCodeNode"},
        {"id": "sw", "type": "SwitchNode", "config": {"condition_field": "status", "operator": "==", "value": "ok"}},
        {"id": "yes", "type": "PythonCodeNode"}, {"id": "no", "type": "PythonCodeNode"},
        {"id": "after_no", "type": "PythonCodeNode"}, {"id": "m", "type": "MergeNode"}],
      "connections": [
        {"source": "src", "output": "result", "target": "sw", "input": "input_data"},
        {"source": "sw", "output": "true_output", "target": "yes", "input": "d"},
        {"source": "sw", "output": "false_output", "target": "no", "input": "d"},
        {"source": "no", "output": "result", "target": "after_no", "input": "d"},
        {"source": "yes", "output": "result", "target": "m", "input": "data1"},
        {"source": "after_no", "output": "result", "target": "m", "input": "data2"}]}))
}

#[test]
fn switch_routing_skips_the_untaken_branch_transitively() {
    let wf = switch_workflow();
    let idx = |id: &str| wf.index[id];
    let mut st = RunState::new(wf.clone(), &Map::new());
    st.start(0);
    st.on_result(
        idx("src"),
        0,
        Outcome::Success(obj(json!({"result": {"status": "ok"}}))),
        0,
    )
    .unwrap();
    let acts = st
        .on_result(idx("sw"), 0, Outcome::Success(obj(json!({"true_output": {"status": "ok"}, "false_output": null, "condition_result": true}))), 0)
        .unwrap();
    let skipped: Vec<usize> = acts
        .iter()
        .filter_map(|a| match a {
            Action::Skip { node, .. } => Some(*node),
            _ => None,
        })
        .collect();
    assert_eq!(skipped, vec![idx("no"), idx("after_no")]);
    assert_eq!(
        dispatches(&acts).iter().map(|d| d.0).collect::<Vec<_>>(),
        vec![idx("yes")]
    );
    let acts = st
        .on_result(
            idx("yes"),
            0,
            Outcome::Success(obj(json!({"result": "YES"}))),
            0,
        )
        .unwrap();
    let d = dispatches(&acts);
    assert_eq!(d[0].0, idx("m"));
    assert_eq!(d[0].1.get("data1"), Some(&json!("YES")));
    assert_eq!(
        d[0].1.get("data2"),
        Some(&Value::Null),
        "a skipped source's `result` is None (the worker then drops it: data2 is optional)"
    );
    st.on_result(
        idx("m"),
        0,
        Outcome::Success(obj(json!({"merged_data": "YES"}))),
        0,
    )
    .unwrap();
    assert_eq!(st.outcome(), Some(&RunOutcome::Succeeded));
    assert_eq!(st.results()["no"], Value::Null);
    assert_eq!(st.status(idx("after_no")), NodeStatus::Skipped);
}

#[test]
fn leaf_failure_is_recorded_internal_failure_aborts() {
    let wf = switch_workflow();
    let idx = |id: &str| wf.index[id];
    // A failing leaf (m) is recorded and the run succeeds.
    let mut st = RunState::new(wf.clone(), &Map::new());
    st.start(0);
    st.on_result(
        idx("src"),
        0,
        Outcome::Success(obj(json!({"result": {"status": "bad"}}))),
        0,
    )
    .unwrap();
    st.on_result(
        idx("sw"),
        0,
        Outcome::Success(obj(
            json!({"true_output": null, "false_output": {"status": "bad"}}),
        )),
        0,
    )
    .unwrap();
    st.on_result(idx("no"), 0, Outcome::Success(obj(json!({"result": 1}))), 0)
        .unwrap();
    st.on_result(
        idx("after_no"),
        0,
        Outcome::Success(obj(json!({"result": 2}))),
        0,
    )
    .unwrap();
    let fail = Outcome::Failure {
        error: "Required parameter 'data1' not provided".into(),
        error_type: "NodeExecutionError".into(),
    };
    let acts = st.on_result(idx("m"), 0, fail, 0).unwrap();
    assert_eq!(acts.last(), Some(&Action::Finish(RunOutcome::Succeeded)));
    assert_eq!(st.results()["m"]["failed"], json!(true));
    assert_eq!(st.status(idx("m")), NodeStatus::FailedLeaf);

    // An internal node failing aborts the run.
    let mut st = RunState::new(wf.clone(), &Map::new());
    st.start(0);
    let acts = st
        .on_result(
            idx("src"),
            0,
            Outcome::Failure {
                error: "boom".into(),
                error_type: "ValueError".into(),
            },
            0,
        )
        .unwrap();
    assert!(
        matches!(acts.last(), Some(Action::Finish(RunOutcome::Failed { node: Some(n), .. })) if n == "src")
    );
    assert_eq!(
        st.on_result(idx("sw"), 0, Outcome::Success(Map::new()), 0),
        Err(kora_model::plan::Rejected::RunFinished)
    );
}

#[test]
fn success_false_aborts_even_a_leaf_but_nested_does_not() {
    let wf = compiled(
        json!({"nodes": [{"id": "a", "type": "PythonCodeNode"}, {"id": "b", "type": "PythonCodeNode"}]}),
    );
    let mut st = RunState::new(wf, &Map::new());
    st.start(0);
    st.on_result(
        0,
        0,
        Outcome::Success(obj(json!({"result": {"success": false}}))),
        0,
    )
    .unwrap();
    let acts = st
        .on_result(1, 0, Outcome::Success(obj(json!({"success": false}))), 0)
        .unwrap();
    assert!(matches!(
        acts.last(),
        Some(Action::Finish(RunOutcome::Failed { .. }))
    ));
}

#[test]
fn sql_failure_stops_even_as_a_leaf() {
    let wf = compiled(
        json!({"nodes": [{"id": "q", "type": "SQLDatabaseNode", "config": {"query": "select 1"}}]}),
    );
    let mut st = RunState::new(wf, &Map::new());
    st.start(0);
    let acts = st
        .on_result(
            0,
            0,
            Outcome::Failure {
                error: "no db".into(),
                error_type: "E".into(),
            },
            0,
        )
        .unwrap();
    assert!(matches!(
        acts.last(),
        Some(Action::Finish(RunOutcome::Failed { .. }))
    ));
}

#[test]
fn duplicate_and_stale_results_are_rejected() {
    let wf = compiled(
        json!({"nodes": [{"id": "a", "type": "PythonCodeNode"}, {"id": "b", "type": "PythonCodeNode"}],
        "connections": [{"source": "a", "output": "result", "target": "b", "input": "x"}]}),
    );
    let mut st = RunState::new(wf, &Map::new());
    st.start(0);
    st.on_result(0, 0, Outcome::Success(Map::new()), 0).unwrap();
    assert_eq!(
        st.on_result(0, 0, Outcome::Success(Map::new()), 0),
        Err(kora_model::plan::Rejected::NotRunning)
    );
}

#[test]
fn self_cycle_converges_like_kailash() {
    // Kailash: inc counts up from 0 until done; -> {'inc': {'result': {'count': 5, 'done': True}}}
    let wf = compiled(
        json!({"kora": 1, "nodes": [{"id": "inc", "type": "PythonCodeNode"}],
        "connections": [{"source": "inc", "output": "result.count", "target": "inc", "input": "count", "cycle": "loop"}],
        "cycles": [{"id": "loop", "max_iterations": 20, "converge_when": "done == True"}]}),
    );
    let mut st = RunState::new(wf, &Map::new());
    let mut acts = st.start(0);
    let mut runs = 0;
    loop {
        let Some((node, inputs)) = dispatches(&acts).pop() else {
            break;
        };
        let c = inputs.get("count").and_then(Value::as_i64).unwrap_or(0);
        assert_eq!(c, runs, "cycle edge carries the previous iteration's value");
        runs += 1;
        let out = obj(json!({"result": {"count": c + 1, "done": c + 1 >= 5}}));
        acts = st
            .on_result(node, st.node_iteration(node), Outcome::Success(out), 0)
            .unwrap();
    }
    assert_eq!(runs, 5);
    assert_eq!(
        st.results()["inc"],
        json!({"result": {"count": 5, "done": true}})
    );
    assert_eq!(st.outcome(), Some(&RunOutcome::Succeeded));
}

#[test]
fn two_node_cycle_with_max_iterations_then_downstream() {
    // a -> b, cycle b -> a; after 4 iterations, c (downstream of b) runs once.
    let wf = compiled(
        json!({"kora": 1, "nodes": [{"id": "a", "type": "PythonCodeNode"},
        {"id": "b", "type": "PythonCodeNode"}, {"id": "c", "type": "PythonCodeNode"}],
        "connections": [{"source": "a", "output": "result", "target": "b", "input": "val"},
                        {"source": "b", "output": "result", "target": "a", "input": "val", "cycle": "c2"},
                        {"source": "b", "output": "result", "target": "c", "input": "val"}],
        "cycles": [{"id": "c2", "max_iterations": 4}]}),
    );
    let mut st = RunState::new(wf.clone(), &Map::new());
    let mut acts = st.start(0);
    let mut trace = Vec::new();
    while let Some((node, inputs)) = dispatches(&acts).pop() {
        let v = inputs.get("val").and_then(Value::as_i64).unwrap_or(0);
        let r = if wf.ids[node] == "a" { v + 1 } else { v };
        trace.push(format!("{}:{}", wf.ids[node], r));
        acts = st
            .on_result(
                node,
                st.node_iteration(node),
                Outcome::Success(obj(json!({"result": r}))),
                0,
            )
            .unwrap();
    }
    assert_eq!(
        trace,
        [
            "a:1", "b:1", "a:2", "b:2", "a:3", "b:3", "a:4", "b:4", "c:4"
        ]
    );
    assert_eq!(st.results()["a"], json!({"result": 4}));
    assert_eq!(st.results()["b"], json!({"result": 4}));
}

#[test]
fn wide_fan_out_and_long_chain_plan_linearly() {
    let n = 10_000;
    let mut nodes = vec![json!({"id": "root", "type": "NoOpNode"})];
    let mut conns = Vec::new();
    for i in 0..n {
        nodes.push(json!({"id": format!("n{i}"), "type": "NoOpNode"}));
        conns.push(
            json!({"source": "root", "output": "data", "target": format!("n{i}"), "input": "data"}),
        );
    }
    let wf = compiled(json!({"nodes": nodes, "connections": conns}));
    let mut st = RunState::new(wf, &Map::new());
    st.start(0);
    let acts = st
        .on_result(0, 0, Outcome::Success(obj(json!({"data": 1}))), 0)
        .unwrap();
    assert_eq!(dispatches(&acts).len(), n);
    for i in 1..=n {
        st.on_result(i, 0, Outcome::Success(obj(json!({"data": 1}))), 0)
            .unwrap();
    }
    assert_eq!(st.outcome(), Some(&RunOutcome::Succeeded));

    // A 10,000-node chain whose head is skipped cascades without recursion (through
    // `result`: Kailash reads a skipped node's output as `{"result": None}`).
    let mut nodes = vec![json!({"id": "sw", "type": "SwitchNode", "config": {"input_data": 1}})];
    let mut conns = vec![];
    for i in 0..n {
        nodes.push(json!({"id": format!("c{i}"), "type": "PythonCodeNode"}));
        let (src, out) = if i == 0 {
            ("sw".to_string(), "true_output")
        } else {
            (format!("c{}", i - 1), "result")
        };
        conns.push(
            json!({"source": src, "output": out, "target": format!("c{i}"), "input": "data"}),
        );
    }
    let wf = compiled(json!({"nodes": nodes, "connections": conns}));
    let mut st = RunState::new(wf, &Map::new());
    st.start(0);
    let acts = st
        .on_result(
            0,
            0,
            Outcome::Success(obj(json!({"true_output": null, "false_output": 1}))),
            0,
        )
        .unwrap();
    assert_eq!(
        acts.iter()
            .filter(|a| matches!(a, Action::Skip { .. }))
            .count(),
        n
    );
    assert_eq!(st.outcome(), Some(&RunOutcome::Succeeded));
}

#[test]
fn a_restart_reruns_what_is_downstream_and_refuses_a_node_on_a_cycle() {
    let spec: kora_model::WorkflowSpec = serde_json::from_value(serde_json::json!({
        "kora": 1, "id": "wf",
        "nodes": [{"id": "a", "type": "NoOpNode"}, {"id": "b", "type": "NoOpNode"},
                  {"id": "c", "type": "NoOpNode"}, {"id": "d", "type": "NoOpNode"},
                  {"id": "x", "type": "NoOpNode"}, {"id": "y", "type": "NoOpNode"}],
        "connections": [
            {"source": "a", "output": "data", "target": "b", "input": "data"},
            {"source": "b", "output": "data", "target": "d", "input": "data"},
            {"source": "a", "output": "data", "target": "c", "input": "data"},
            {"source": "c", "output": "data", "target": "d", "input": "data"},
            {"source": "x", "output": "data", "target": "y", "input": "data"},
            {"source": "y", "output": "data", "target": "x", "input": "data", "cycle": "loop"}]
    }))
    .unwrap();
    assert_eq!(spec.downstream_of("a").unwrap(), ["b", "c", "d"]);
    assert_eq!(spec.downstream_of("c").unwrap(), ["d"]);
    assert!(spec.downstream_of("d").unwrap().is_empty());
    let e = spec.downstream_of("x").unwrap_err();
    assert!(e.contains("inside a cycle"), "{e}");
    let e = spec.downstream_of("zz").unwrap_err();
    assert!(e.contains("no node 'zz'") && e.contains("a, b, c"), "{e}");
}

/// Every JSON workflow the repository ships loads from its text (`load::lean`, no whole
/// `Value`) exactly as from its parsed `Value`.
#[test]
fn json_files_load_from_text_as_from_their_value() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut seen = 0;
    for dir in ["examples", "tests/conformance"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.file_name().is_some_and(|n| n == "workflow.json") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(
                        load_str(&text, Syntax::Json),
                        kora_model::load::from_value(&doc),
                        "{}",
                        p.display()
                    );
                    seen += 1;
                }
            }
        }
    }
    assert!(seen >= 10, "only {seen} workflow files found");
}

/// Runs a two-node loop `body -> sw` with the cycle edge `sw.<path> -> body.data`, where `sw`
/// reports `condition_result` from `cond(iteration)`; returns how many iterations ran.
fn switch_loop_iterations(path: &str, cond: fn(u32) -> bool) -> u32 {
    let wf = compiled(json!({"kora": 1,
        "nodes": [{"id": "body", "type": "PythonCodeNode"}, {"id": "sw", "type": "SwitchNode"}],
        "connections": [{"source": "body", "output": "result", "target": "sw", "input": "input_data"},
                        {"source": "sw", "output": path, "target": "body", "input": "data", "cycle": "loop"}],
        "cycles": [{"id": "loop", "max_iterations": 10}]}));
    let mut st = RunState::new(wf.clone(), &Map::new());
    let mut acts = st.start(0);
    while let Some((node, _)) = dispatches(&acts).pop() {
        let it = st.node_iteration(node);
        let out = if wf.ids[node] == "body" {
            json!({"result": {"count": it}})
        } else {
            let c = cond(it);
            json!({"condition_result": c, "true_output": if c { json!({"count": it}) } else { Value::Null },
                   "false_output": if c { Value::Null } else { json!({"count": it}) }})
        };
        acts = st
            .on_result(node, it, Outcome::Success(obj(out)), 0)
            .unwrap();
    }
    assert_eq!(st.outcome(), Some(&RunOutcome::Succeeded));
    st.node_iteration(0) + 1
}

#[test]
fn a_switch_on_a_cycle_edge_ends_the_cycle_like_kailash() {
    // true_output feeds the loop: it ends once the condition is false (iteration 3 -> 4 ran).
    assert_eq!(switch_loop_iterations("true_output", |i| i < 3), 4);
    // false_output feeds the loop: it ends once the condition is true.
    assert_eq!(switch_loop_iterations("false_output", |i| i >= 2), 3);
    // A dotted key is not Kailash's pattern: the loop runs to max_iterations.
    assert_eq!(switch_loop_iterations("true_output.count", |i| i < 3), 10);
}

#[test]
fn converge_when_reads_history() {
    let wf = compiled(
        json!({"kora": 1, "nodes": [{"id": "inc", "type": "PythonCodeNode"}],
        "connections": [{"source": "inc", "output": "result", "target": "inc", "input": "v", "cycle": "loop"}],
        "cycles": [{"id": "loop", "max_iterations": 20,
                    "converge_when": "len(history) == 3 and history[0]['iteration'] == 1 and history[-1]['results']['inc']['result'] == 3"}]}),
    );
    let mut st = RunState::new(wf, &Map::new());
    let mut acts = st.start(0);
    let mut runs = 0;
    while let Some((node, _)) = dispatches(&acts).pop() {
        runs += 1;
        let out = obj(json!({"result": runs}));
        acts = st
            .on_result(node, st.node_iteration(node), Outcome::Success(out), 0)
            .unwrap();
    }
    assert_eq!(runs, 3);
}
