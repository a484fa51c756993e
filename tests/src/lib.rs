//! End-to-end tests of the whole engine: one test binary (`#[cfg(test)] mod e2e`), plus the
//! benchmark harness in `benches/`. Helpers here are shared by both.

use std::path::{Path, PathBuf};

use kora_model::Value;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Every directory holding a `workflow.*` and an `expected.json` produced by Kailash
/// (`examples/kailash_reference.py`): the examples and `tests/conformance/*`.
pub fn reference_cases() -> Vec<PathBuf> {
    let root = repo_root();
    let mut out = Vec::new();
    for base in [root.join("examples"), root.join("tests/conformance")] {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.join("expected.json").exists() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

pub fn workflow_file(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("workflow."))
        })
}

/// Compares Kora's `{"status", "results"}` with Kailash's expected file. Returns the
/// differences. Rules (see docs/kailash-compatibility.md): a failed node matches a failed node
/// whatever the message says; `condition_result` lists from list grouping are compared as sets
/// (Kailash builds them from a Python set, so their order varies between processes).
pub fn compare(expected: &Value, status: &str, results: &Value) -> Vec<String> {
    let mut diffs = Vec::new();
    let want_status = expected["status"].as_str().unwrap_or("");
    if want_status != status {
        diffs.push(format!("status: kailash {want_status}, kora {status}"));
    }
    let Some(want) = expected["results"].as_object() else {
        return diffs;
    };
    for (node, kv) in want {
        let rv = &results[node];
        if kv.get("failed") == Some(&Value::Bool(true)) {
            if rv.get("failed") != Some(&Value::Bool(true)) {
                diffs.push(format!("{node}: kailash recorded a failure, kora has {rv}"));
            }
            continue;
        }
        if normalise(kv) != normalise(rv) {
            diffs.push(format!("{node}: kailash {kv}, kora {rv}"));
        }
    }
    diffs
}

fn normalise(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = match (k.as_str(), x) {
                        ("condition_result", Value::Array(items)) => {
                            let mut items = items.clone();
                            items.sort_by_key(ToString::to_string);
                            Value::Array(items)
                        }
                        _ => normalise(x),
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod e2e;
#[cfg(test)]
mod tidy;
