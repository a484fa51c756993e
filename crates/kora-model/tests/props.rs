//! Property tests: no input makes the loader, validator, expression parser or planner panic,
//! and the planner always brings a valid run to an end.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use kora_model::load::{Syntax, from_value, load_str};
use kora_model::plan::{Action, Outcome, RunState};
use kora_model::{Map, compile, validate};
use proptest::prelude::*;
use serde_json::{Value, json};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-zA-Z_.$*{}>: -]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("nodes"),
            Just("connections"),
            Just("id"),
            Just("type"),
            Just("config"),
            Just("node_type"),
            Just("source_node"),
            Just("target_node"),
            Just("from"),
            Just("to"),
            Just("cycle"),
            Just("kora"),
            Just("PythonCodeNode"),
            Just("SwitchNode"),
            Just("result"),
            Just("a"),
            Just("b")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("nodes"),
                        Just("connections"),
                        Just("id"),
                        Just("type"),
                        Just("config"),
                        Just("source_node"),
                        Just("source_output"),
                        Just("target_node"),
                        Just("target_input"),
                        Just("from"),
                        Just("to"),
                        Just("cycle"),
                        Just("cycle_id"),
                        Just("max_iterations"),
                        Just("convergence_check"),
                        Just("cycles"),
                        Just("kora"),
                        Just("a"),
                        Just("b"),
                        Just("x")
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

fn check_document(v: &Value) {
    if let Ok((spec, _)) = from_value(v) {
        let cat = common::catalog();
        let _ = validate(&spec, &cat, None);
        if let Ok((wf, _)) = compile(&spec, &cat, Some(&Map::new())) {
            drive(wf, 0);
        }
    }
}

/// Runs a compiled workflow to its end with synthetic outcomes chosen by `seed`.
fn drive(wf: std::sync::Arc<kora_model::CompiledWorkflow>, seed: u64) {
    let mut st = RunState::new(wf, &Map::new());
    let mut queue: Vec<(usize, u32)> = Vec::new();
    let mut seen = HashSet::new();
    let mut push = |acts: Vec<Action>, queue: &mut Vec<(usize, u32)>| {
        for a in acts {
            if let Action::Dispatch {
                node, iteration, ..
            } = a
            {
                assert!(
                    seen.insert((node, iteration)),
                    "node {node} dispatched twice in iteration {iteration}"
                );
                queue.push((node, iteration));
            }
        }
    };
    push(st.start(0), &mut queue);
    let mut steps = 0u64;
    let mut rng = seed;
    while let Some((node, iteration)) = if queue.is_empty() {
        None
    } else {
        Some(queue.remove((rng as usize) % queue.len()))
    } {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        steps += 1;
        assert!(steps < 2_000_000, "planner does not terminate");
        let outcome = match rng >> 60 {
            0 => Outcome::Failure {
                error: "x".into(),
                error_type: "E".into(),
            },
            1 => Outcome::Success(
                json!({"true_output": null, "false_output": 1, "result": {"done": true}})
                    .as_object()
                    .cloned()
                    .expect("object literal"),
            ),
            _ => Outcome::Success(
                json!({"result": 1, "data": 1, "true_output": 1, "false_output": null})
                    .as_object()
                    .cloned()
                    .expect("object literal"),
            ),
        };
        match st.on_result(node, iteration, outcome, steps) {
            Ok(acts) => push(acts, &mut queue),
            Err(_) => assert!(
                st.outcome().is_some(),
                "a result was rejected while the run is live"
            ),
        }
    }
    assert!(
        st.outcome().is_some(),
        "the run ended without an outcome: nothing left to run"
    );
}

/// A node's output as a pure function of its id, iteration and inputs (no failures: which of
/// two failing nodes aborts a run first is a matter of timing, in Kailash too).
fn pure_output(
    wf: &kora_model::CompiledWorkflow,
    node: usize,
    iteration: u32,
    inputs: &Map,
) -> Map {
    fn canon(v: &Value) -> String {
        match v {
            Value::Object(m) => {
                let sorted: std::collections::BTreeMap<&String, String> =
                    m.iter().map(|(k, v)| (k, canon(v))).collect();
                format!("{sorted:?}")
            }
            Value::Array(a) => format!("{:?}", a.iter().map(canon).collect::<Vec<_>>()),
            other => other.to_string(),
        }
    }
    let text = format!(
        "{}:{iteration}:{}",
        wf.ids[node],
        canon(&Value::Object(inputs.clone()))
    );
    let h = text.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    let out = if wf.types[node].is_switch {
        let yes = h % 2 == 0;
        json!({"true_output": if yes { json!(h % 97) } else { Value::Null },
               "false_output": if yes { Value::Null } else { json!(h % 89) },
               "condition_result": yes})
    } else {
        json!({"result": {"v": h % 1000, "done": h % 3 == 0}, "data": h % 1000, "merged_data": [h % 10]})
    };
    out.as_object().cloned().expect("object literal")
}

/// Runs `wf` to its end, completing ready nodes in an order chosen by `seed`; returns how it
/// ended and every node's output.
fn run_in_order(wf: std::sync::Arc<kora_model::CompiledWorkflow>, seed: u64) -> (String, Map) {
    let mut st = RunState::new(std::sync::Arc::clone(&wf), &Map::new());
    let mut queue: Vec<(usize, u32, Map)> = Vec::new();
    let push = |acts: Vec<Action>, queue: &mut Vec<(usize, u32, Map)>| {
        for a in acts {
            if let Action::Dispatch {
                node,
                iteration,
                inputs,
            } = a
            {
                queue.push((node, iteration, inputs));
            }
        }
    };
    push(st.start(0), &mut queue);
    let mut rng = seed;
    let mut steps = 0u64;
    while !queue.is_empty() {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let (node, iteration, inputs) = queue.remove(((rng >> 33) as usize) % queue.len());
        steps += 1;
        assert!(steps < 200_000, "planner does not terminate");
        let out = pure_output(&wf, node, iteration, &inputs);
        if let Ok(acts) = st.on_result(node, iteration, Outcome::Success(out), 0) {
            push(acts, &mut queue);
        }
    }
    (format!("{:?}", st.outcome()), st.results())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Results never depend on the order nodes finish in: random workflows (switches,
    /// merges, a cycle with a convergence check) give the same outcome and outputs under
    /// different completion orders (#14 rule 13).
    #[test]
    fn results_do_not_depend_on_completion_order(n in 2usize..30, edges in prop::collection::vec((any::<usize>(), any::<usize>()), 0..60), orders in prop::collection::vec(any::<u64>(), 2..5), cycle in any::<bool>()) {
        let types = ["NoOpNode", "PythonCodeNode", "SwitchNode", "MergeNode"];
        // Every required input has a config value, so every generated workflow is valid.
        let config = |i: usize| match i % 4 { 2 => json!({"input_data": 1}), 3 => json!({"data1": 1}), _ => json!({}) };
        let nodes: Vec<Value> = (0..n).map(|i| json!({"id": format!("n{i}"), "type": types[i % 4], "config": config(i)})).collect();
        let mut conns = Vec::new();
        let mut dedup = HashSet::new();
        for (a, b) in edges {
            let (a, b) = (a % n, b % n);
            if a >= b || !dedup.insert((a, b)) { continue; }
            let out = match a % 4 { 2 => if b % 2 == 0 { "true_output" } else { "false_output" }, 1 => "result", 3 => "merged_data", _ => "data" };
            let input = match b % 4 { 2 => "input_data", 3 => if a % 2 == 0 { "data1" } else { "data2" }, _ => "data" };
            conns.push(json!({"source": format!("n{a}"), "output": out, "target": format!("n{b}"), "input": input}));
        }
        let mut doc = json!({"kora": 1, "nodes": nodes, "connections": conns});
        if cycle {
            doc["connections"].as_array_mut().unwrap().push(json!({"source": "n1", "output": "result.v", "target": "n1", "input": "loop", "cycle": "c"}));
            doc["cycles"] = json!([{"id": "c", "max_iterations": 4, "converge_when": "done == True"}]);
        }
        let (spec, _) = from_value(&doc).unwrap();
        let (wf, _) = compile(&spec, &common::catalog(), Some(&Map::new())).expect("generated workflow is valid");
        let first = run_in_order(std::sync::Arc::clone(&wf), orders[0]);
        for &seed in &orders[1..] {
            prop_assert_eq!(&run_in_order(std::sync::Arc::clone(&wf), seed), &first);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        for syntax in [Syntax::Auto, Syntax::Json, Syntax::Yaml] {
            if let Ok((spec, _)) = load_str(&text, syntax) {
                let _ = validate(&spec, &common::catalog(), None);
            }
        }
    }

    #[test]
    fn arbitrary_documents_never_panic(doc in arb_json()) {
        check_document(&doc);
    }

    #[test]
    fn mutated_examples_never_panic(which in 0usize..5, edits in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..12)) {
        let files = [
            include_str!("../../../examples/diamond/workflow.json"),
            include_str!("../../../examples/converge/workflow.json"),
            include_str!("../../../examples/customer-routing/workflow.yaml"),
            include_str!("../../../tests/conformance/switch-merge-ok/workflow.json"),
            include_str!("../../../tests/conformance/cycle-two-node/workflow.json"),
        ];
        let mut bytes = files[which].as_bytes().to_vec();
        for (pos, byte, op) in edits {
            if bytes.is_empty() { break; }
            let i = pos % bytes.len();
            match op {
                0 => { bytes.remove(i); }
                1 => bytes.insert(i, byte),
                _ => bytes[i] = byte,
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Ok((spec, _)) = load_str(&text, Syntax::Auto) {
            let cat = common::catalog();
            let _ = validate(&spec, &cat, None);
            if let Ok((wf, _)) = compile(&spec, &cat, Some(&Map::new())) {
                drive(wf, 1);
            }
        }
    }

    /// A JSON document is loaded from its text without a whole `Value` (load::lean): the
    /// result, errors included, is what loading the parsed `Value` gives.
    #[test]
    fn json_text_loads_as_its_value_does(doc in arb_json(), nodes in arb_json(), conns in arb_json(), list in any::<bool>(), kora in any::<bool>()) {
        let mut top = match doc { Value::Object(m) => m, other => { let mut m = Map::new(); m.insert("x".into(), other); m } };
        let nodes = match (list, nodes) {
            (true, Value::Object(m)) => Value::Array(m.into_iter().map(|(k, v)| json!({"id": k, "type": "NoOpNode", "config": v})).collect()),
            (false, Value::Array(a)) => Value::Object(a.into_iter().enumerate().map(|(i, v)| (format!("n{i}"), json!({"type": "NoOpNode", "config": v}))).collect()),
            (_, other) => other,
        };
        top.insert("nodes".into(), nodes);
        top.insert("connections".into(), conns);
        if kora { top.insert("kora".into(), json!(1)); }
        for text in [serde_json::to_string(&Value::Object(top.clone())).unwrap(), serde_json::to_string_pretty(&Value::Object(top)).unwrap()] {
            let parsed: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(load_str(&text, Syntax::Json), from_value(&parsed));
            prop_assert_eq!(load_str(&text, Syntax::Auto), from_value(&parsed));
        }
    }

    #[test]
    fn expressions_never_panic(src in "[a-z0-9 ()\\[\\]{}.,:'\"=<>!+*/%-]{0,64}") {
        if let Ok(e) = kora_model::expr::parse(&src) {
            let _ = kora_model::expr::eval(&e, &|_| Some(json!(1)));
        }
    }

    /// Random DAGs (with switches, failures and a cycle) always run to an end, each node at
    /// most once per iteration.
    #[test]
    fn random_dags_always_finish(n in 1usize..40, edges in prop::collection::vec((any::<usize>(), any::<usize>()), 0..80), seed in any::<u64>(), cycle in any::<bool>()) {
        let types = ["NoOpNode", "PythonCodeNode", "SwitchNode"];
        let nodes: Vec<Value> = (0..n).map(|i| json!({"id": format!("n{i}"), "type": types[i % 3], "config": {"input_data": 1}})).collect();
        let mut conns = Vec::new();
        let mut dedup = HashSet::new();
        for (a, b) in edges {
            let (a, b) = (a % n, b % n);
            if a >= b || !dedup.insert((a, b)) { continue; }
            let out = match a % 3 { 0 => "data", 1 => "result", _ => if b % 2 == 0 { "true_output" } else { "false_output" } };
            let input = if b % 3 == 2 { "input_data" } else { "data" };
            conns.push(json!({"source": format!("n{a}"), "output": out, "target": format!("n{b}"), "input": input}));
        }
        let mut doc = json!({"kora": 1, "nodes": nodes, "connections": conns});
        if cycle && n >= 2 {
            doc["connections"].as_array_mut().unwrap().push(json!({"source": "n1", "output": "result", "target": "n1", "input": "loop", "cycle": "c"}));
            doc["cycles"] = json!([{"id": "c", "max_iterations": 3, "converge_when": "done == True"}]);
        }
        let (spec, _) = from_value(&doc).unwrap();
        let (wf, _) = compile(&spec, &common::catalog(), Some(&Map::new())).expect("generated DAG is valid");
        drive(wf, seed);
    }
}
