//! The example binary runs a workflow that uses its custom node with the built-in ones.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[test]
fn the_custom_node_runs_beside_the_built_in_ones() {
    let wf = concat!(env!("CARGO_MANIFEST_DIR"), "/workflow.json");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kora-custom-node"))
        .args(["run", wf])
        .output()
        .unwrap();
    let out: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["results"]["slug"]["slug"], "hello-kora-custom-nodes");
    assert_eq!(
        out["results"]["url"]["result"],
        "https://example.com/hello-kora-custom-nodes"
    );
}
