//! Input limits: documents people write pass; hostile and huge ones are refused, each naming
//! the limit, in under 100 ms for a 1 MB input.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use kora_model::Limits;
use kora_model::load::{Syntax, load_str};
use proptest::prelude::*;

mod common;

/// What the CLI, the gateway and the scheduler do with a document before running it; the
/// refusal's text, or `None` when it is accepted.
fn refusal(text: &str, limits: &Limits) -> Option<String> {
    if let Err(e) = limits.check_text(text) {
        return Some(e.to_string());
    }
    let (spec, _) = match load_str(text, Syntax::Auto) {
        Ok(s) => s,
        Err(errs) => return Some(format!("{errs:?}")),
    };
    let problems = limits.check_workflow(&spec, None);
    (!problems.is_empty()).then(|| problems[0].to_string())
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("json" | "yaml" | "yml")
        ) {
            out.push(p);
        }
    }
}

#[test]
fn documents_people_write_are_within_the_default_limits() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut all = Vec::new();
    for dir in ["examples", "tests/corpus", "tests/conformance"] {
        files(&root.join(dir), &mut all);
    }
    assert!(all.len() > 20, "found {} documents", all.len());
    let limits = Limits::default();
    for p in all {
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(limits.check_text(&text), Ok(()), "{}", p.display());
    }
}

/// A loop of `members` nodes running up to `iterations` times needs members x iterations
/// executions: over `max_executions`, the workflow is refused naming the cycle.
#[test]
fn a_cycle_needing_too_many_executions_is_refused_naming_it() {
    let wf = |members: usize, iterations: u32| {
        let nodes: Vec<serde_json::Value> = (0..members)
            .map(|i| serde_json::json!({"id": format!("n{i}"), "type": "PythonCodeNode", "config": {"code": "result = x"}}))
            .collect();
        let mut connections: Vec<serde_json::Value> = (1..members)
            .map(|i| serde_json::json!({"source": format!("n{}", i - 1), "output": "result", "target": format!("n{i}"), "input": "x"}))
            .collect();
        connections.push(
            serde_json::json!({"source": format!("n{}", members - 1), "output": "result",
            "target": "n0", "input": "x", "cycle": "loop"}),
        );
        let doc = serde_json::json!({"kora": 1, "nodes": nodes, "connections": connections,
            "cycles": [{"id": "loop", "max_iterations": iterations}]});
        serde_json::from_value::<kora_model::WorkflowSpec>(doc).unwrap()
    };
    let catalog = common::catalog();
    let limits = Limits {
        max_executions: 1000,
        ..Limits::default()
    };
    let params: kora_model::Map = serde_json::from_str(r#"{"n0": {"x": 1}}"#).unwrap();
    let errors = |spec| -> Vec<String> {
        kora_model::validate_within(&spec, &catalog, Some(&params), &limits)
            .iter()
            .filter(|p| p.severity == kora_model::Severity::Error)
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(errors(wf(10, 100)), Vec::<String>::new());
    let over = errors(wf(10, 101));
    assert_eq!(over.len(), 1, "{over:?}");
    assert!(
        over[0].contains("cycle loop: 10 nodes x 101 iterations) is 1010, over the limit of 1000 (limits.max_executions"),
        "{over:?}"
    );
}

/// Hostile shapes of about `size` bytes, each one the pipeline must refuse.
fn hostile(shape: u8, size: usize) -> String {
    match shape {
        // Flow nesting: the YAML parser's cost grows with its square.
        0 => format!("nodes: {}{}", "[".repeat(size / 2), "]".repeat(size / 2)),
        1 => "{\"a\":".repeat(size / 5),
        2 => format!("nodes:\n{}x\n", "- ".repeat(size / 2)),
        3 => {
            let mut s = String::from("nodes:\n");
            let mut i = 0;
            while s.len() < size {
                s.push_str(&" ".repeat(i));
                s.push_str("k:\n");
                i += 1;
            }
            s
        }
        // A billion laughs: anchors referring to anchors.
        4 => {
            let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
            for i in 1..12 {
                let refs = vec![format!("*a{}", i - 1); 10].join(", ");
                s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
            }
            s.push_str("nodes: *a11\n");
            s
        }
        // Many keys, no workflow.
        5 => {
            let mut s = String::new();
            let mut i = 0;
            while s.len() < size {
                s.push_str(&format!("k{i}: {i}\n"));
                i += 1;
            }
            s
        }
        // One long string.
        6 => format!("nodes: '{}'\n", "x".repeat(size)),
        // A node config over max_config_bytes.
        7 => format!(
            "{{\"nodes\": [{{\"id\": \"a\", \"type\": \"NoOpNode\", \"config\": {{\"s\": \"{}\"}}}}], \"connections\": []}}",
            "x".repeat(size)
        ),
        // Too many nodes.
        _ => {
            let nodes: Vec<String> = (0..size / 40)
                .map(|i| format!("{{\"id\":\"n{i}\",\"type\":\"NoOpNode\"}}"))
                .collect();
            format!("{{\"nodes\":[{}],\"connections\":[]}}", nodes.join(","))
        }
    }
}

/// The refusal time budget: 100 ms for a 1 MB input. Debug builds (`make test`) parse with
/// the YAML and JSON crates optimised (Cargo.toml) but the rest unoptimised, so they get 2x.
const BUDGET: Duration = Duration::from_millis(if cfg!(debug_assertions) { 200 } else { 100 });

/// The fastest of three refusals of `text` (the others may share the machine with other
/// tests), and the refusal.
fn timed_refusal(text: &str, limits: &Limits) -> (Duration, Option<String>) {
    let mut best = Duration::MAX;
    let mut refused = None;
    for _ in 0..3 {
        let t = Instant::now();
        refused = refusal(text, limits);
        best = best.min(t.elapsed());
    }
    (best, refused)
}

fn test_limits() -> Limits {
    Limits {
        max_nodes: 10_000,
        max_config_bytes: 512 << 10,
        ..Limits::default()
    }
}

#[test]
fn every_hostile_shape_of_1mb_is_refused_within_the_budget() {
    let mut worst = (Duration::ZERO, 0);
    for shape in 0..9 {
        let text = hostile(shape, 1 << 20);
        let (took, refused) = timed_refusal(&text, &test_limits());
        assert!(refused.is_some(), "shape {shape} was accepted");
        eprintln!(
            "shape {shape}: {} bytes refused in {took:?}: {}",
            text.len(),
            refused
                .unwrap_or_default()
                .chars()
                .take(120)
                .collect::<String>()
        );
        worst = worst.max((took, shape));
    }
    eprintln!("worst: shape {} in {:?}", worst.1, worst.0);
    assert!(worst.0 < BUDGET, "shape {} took {:?}", worst.1, worst.0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn hostile_documents_are_refused_within_the_budget(shape in 0u8..9, size in 900_000usize..1_100_000) {
        let text = hostile(shape, size);
        let (took, refused) = timed_refusal(&text, &test_limits());
        prop_assert!(refused.is_some(), "shape {shape} of {} bytes was accepted", text.len());
        prop_assert!(took < BUDGET, "shape {shape} ({} bytes) took {took:?}: {refused:?}", text.len());
    }
}

/// YAML can spell NaN and infinities; JSON, the wire and the ledger cannot. They are refused,
/// naming the spelling and the place, instead of being read as `null`.
#[test]
fn yaml_nan_and_infinities_are_refused_not_read_as_null() {
    for (text, spelled) in [
        ("x: .nan\n", ".nan"),
        ("a:\n  b: [1, .inf]\n", ".inf"),
        ("c: -.Inf\n", "-.inf"),
    ] {
        let e = kora_model::load::parse(text, Syntax::Yaml).unwrap_err();
        assert!(
            e.message
                .contains(&format!("{spelled} is not a number Kora can carry")),
            "{text:?}: {e}"
        );
        assert!(e.message.contains("line"), "{text:?}: {e}");
    }
    let v = kora_model::load::parse(
        "x: 1.5\ny: -2\nz: ~\n1: one\nbig: 18446744073709551615\n",
        Syntax::Yaml,
    )
    .unwrap();
    assert_eq!(
        v,
        serde_json::json!({"x": 1.5, "y": -2, "z": null, "1": "one", "big": 18446744073709551615u64})
    );
}
