//! Comparing a run's results with what the Kailash SDK returned for the same workflow
//! (`expected.json` files written by `examples/kailash_reference.py`).

use kora_model::Value;

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
        // A float's digits as one writer spells them (`1e+16` from Python, `1e16` from Rust).
        Value::Number(n) if n.is_f64() => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| v.clone(), Value::Number),
        other => other.clone(),
    }
}
