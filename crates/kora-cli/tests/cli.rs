//! The `kora` binary as a user runs it: exit codes, output shapes, messages.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kora(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kora"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("kora runs")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn run_prints_the_documented_json() {
    let o = kora(&["run", "examples/diamond/workflow.json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("stdout is one JSON object");
    assert_eq!(v["status"], "succeeded");
    assert!(uuid::Uuid::parse_str(v["run_id"].as_str().unwrap()).is_ok());
    assert_eq!(v["results"]["report"]["merged_data"]["max"], 16);
    assert_eq!(
        v.as_object().unwrap().len(),
        3,
        "run_id, status, results: {v}"
    );
}

#[test]
fn run_table_and_exit_code_one_on_failure() {
    let o = kora(&[
        "run",
        "tests/conformance/internal-failure/workflow.json",
        "--format",
        "table",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("failed"), "{out}");
    assert!(
        out.contains("node 'a' failed: ZeroDivisionError: division by zero"),
        "{out}"
    );
}

#[test]
fn run_with_params_inline_and_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("l.db").display());
    let o = kora(&[
        "run",
        "tests/conformance/precedence/workflow.json",
        "--params",
        r#"{"c": {"y": 41}}"#,
        "--store",
        &db,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["results"]["c"]["result"], 41);
    assert!(dir.path().join("l.db").exists());
}

#[test]
fn unusable_input_exits_two_with_a_clear_message() {
    let o = kora(&["run", "no/such/file.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("cannot read workflow file no/such/file.json"),
        "{}",
        text(&o)
    );
    let o = kora(&["run", "tests/corpus/unknown-type.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("did you mean 'CSVReaderNode'?"),
        "{}",
        text(&o)
    );
    let o = kora(&[
        "run",
        "examples/diamond/workflow.json",
        "--params",
        "{not json",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("--params is not valid JSON"),
        "{}",
        text(&o)
    );
}

/// Every broken file in tests/corpus gives its expected message(s), and exit code 2.
#[test]
fn validate_corpus_gives_precise_messages() {
    let corpus = root().join("tests/corpus");
    let mut checked = 0;
    let mut failures = Vec::new();
    for e in std::fs::read_dir(&corpus).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "expect") {
            continue;
        }
        let expect = std::fs::read_to_string(p.with_extension("expect")).unwrap();
        let o = kora(&["validate", p.to_str().unwrap()]);
        let out = text(&o);
        if o.status.code() != Some(2) {
            failures.push(format!("{}: exit {:?}", p.display(), o.status.code()));
        }
        for line in expect.lines().filter(|l| !l.is_empty()) {
            if !out.contains(line) {
                failures.push(format!("{}: missing {line:?} in\n{out}", p.display()));
            }
        }
        checked += 1;
    }
    assert!(checked >= 15, "corpus files checked: {checked}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn validate_reports_ok_and_json() {
    let o = kora(&["validate", "examples/converge/workflow.json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains(
            "ok: examples/converge/workflow.json (Kailash Workflow.to_dict format): 3 nodes"
        ),
        "{}",
        text(&o)
    );
    let o = kora(&["validate", "tests/corpus/many.json", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), 3, "{v}");
}

#[test]
fn nodes_lists_types_with_parameters() {
    let o = kora(&["nodes"]);
    let out = text(&o);
    for t in [
        "PythonCodeNode",
        "SwitchNode",
        "MergeNode",
        "CSVReaderNode",
        "JSONReaderNode",
        "NoOpNode",
        "FailNode",
    ] {
        assert!(out.contains(t), "{t} missing");
    }
    assert!(out.contains("in  file_path (required)"), "{out}");
    let o = kora(&["nodes", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.as_array().unwrap().len() >= 7);
}

#[test]
fn help_teaches() {
    let o = kora(&["run", "--help"]);
    let out = text(&o);
    assert!(
        out.contains("Examples:") && out.contains("--params") && out.contains("sqlite:PATH"),
        "{out}"
    );
}

/// `kora nodes | head -1`: a reader that goes away ends the command quietly (it panicked in
/// `println!` with "failed printing to stdout: Broken pipe").
#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    for args in [
        &["nodes"][..],
        &["nodes", "--markdown"],
        &["nodes", "--format", "json"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kora"))
            .args(args)
            .current_dir(root())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{args:?}: {:?} {err}", o.status);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn help_teaches_kora_dev() {
    let out = text(&kora(&["--help"]));
    assert!(out.contains("kora dev"), "{out}");
    let out = text(&kora(&["dev", "--help"]));
    for needle in [
        "kora submit examples/diamond/workflow.json --wait",
        "admin.key",
        "nats-server",
        "--data-dir",
    ] {
        assert!(out.contains(needle), "{needle} missing: {out}");
    }
}

/// Durations that arrive at run time (from an upstream node) are checked too: a TTLCacheNode
/// given a ttl of 1e300 seconds fails with a message naming the node and the field, and the
/// run ends at once (it used to panic the worker's task, which was redelivered until it was
/// dead-lettered, and `kora run` never returned).
#[test]
fn a_huge_duration_from_upstream_fails_its_node_not_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("ttl.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "nodes": [
            {"id": "make", "type": "PythonCodeNode", "config": {"code": "result = 1e300"}},
            {"id": "cache", "type": "TTLCacheNode", "config": {"operation": "set", "key": "k", "value": 1}},
            {"id": "after", "type": "NoOpNode"}],
            "connections": [
                {"source": "make", "output": "result", "target": "cache", "input": "ttl"},
                {"source": "cache", "output": "success", "target": "after", "input": "data"}]})
        .to_string(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let o = kora(&["run", wf.to_str().unwrap(), "--timeout", "60s"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{}",
        text(&o)
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "failed", "{v}");
    let error = v["error"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("TTLCacheNode") && error.contains("'ttl'") && error.contains("1e+300"),
        "{v}"
    );
}

/// A misspelled configuration key is an error naming the key and where it came from, and a
/// key that moved says where it went.
#[test]
fn a_misspelled_or_moved_config_key_is_reported() {
    let o = Command::new(env!("CARGO_BIN_EXE_kora"))
        .args(["runs", "list"])
        .env("KORA_WORKER__CONCURENCY", "8")
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("worker.concurency") && text(&o).contains("KORA_WORKER__CONCURENCY"),
        "{}",
        text(&o)
    );
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kora.toml");
    std::fs::write(&f, "[worker]\ndata_root = \"/data\"\n").unwrap();
    let o = kora(&["runs", "list", "--config", f.to_str().unwrap()]);
    assert!(
        text(&o).contains("worker.data_root is now nodes.data_root"),
        "{}",
        text(&o)
    );
}

fn kora_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kora"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .output()
        .expect("kora runs")
}

/// A hostile document is refused before it is parsed, naming the limit and its setting; a
/// cycle asking for more iterations than the ceiling is refused; `kora run` honours
/// `KORA_TASKS__DEFAULT_TIMEOUT` for a node that sets no timeout.
#[test]
fn input_limits_and_the_default_timeout_apply_to_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("deep.yaml");
    std::fs::write(
        &deep,
        format!("nodes: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
    )
    .unwrap();
    let t = std::time::Instant::now();
    let o = kora(&["validate", deep.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("nesting depth is more than 64")
            && text(&o).contains("KORA_LIMITS__MAX_DEPTH"),
        "{}",
        text(&o)
    );
    // Before the pre-scan this took 34.6 s (release) in the YAML parser.
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t.elapsed()
    );
    let o = kora_env(
        &["validate", deep.to_str().unwrap()],
        &[("KORA_LIMITS__MAX_DOCUMENT_BYTES", "1000")],
    );
    assert!(
        text(&o)
            .contains("size in bytes is 200008, over the limit of 1000 (limits.max_document_bytes"),
        "{}",
        text(&o)
    );

    let looped = dir.path().join("loop.json");
    std::fs::write(
        &looped,
        serde_json::json!({"kora": 1, "nodes": [
            {"id": "a", "type": "PythonCodeNode", "config": {"code": "result = 1"}}],
            "connections": [{"source": "a", "output": "result", "target": "a", "input": "x", "cycle": "c"}],
            "cycles": [{"id": "c", "max_iterations": 20000}]})
        .to_string(),
    )
    .unwrap();
    let o = kora(&["validate", looped.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o)
            .contains("max_iterations is 20000, over the limit of 10000 (limits.max_iterations"),
        "{}",
        text(&o)
    );

    let spin = dir.path().join("spin.json");
    std::fs::write(
        &spin,
        serde_json::json!({"kora": 1, "nodes": [
            {"id": "spin", "type": "PythonCodeNode", "retry": {"max_attempts": 1},
             "config": {"code": "while True:\n    pass"}}]})
        .to_string(),
    )
    .unwrap();
    let o = kora_env(
        &["run", spin.to_str().unwrap(), "--format", "json"],
        &[("KORA_TASKS__DEFAULT_TIMEOUT", "1s")],
    );
    // (A failed leaf still ends the run `succeeded`, as in Kailash; the node says what happened.)
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        report["results"]["spin"]["error_type"], "TimeoutError",
        "{report}"
    );
    let o = kora_env(
        &["run", spin.to_str().unwrap()],
        &[("KORA_TASKS__DEFAULT_TIMEOUT_SECS", "1")],
    );
    assert!(
        text(&o).contains("tasks.default_timeout_secs is now tasks.default_timeout"),
        "{}",
        text(&o)
    );
}
