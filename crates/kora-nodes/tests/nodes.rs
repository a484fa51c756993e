//! Built-in nodes against Kailash's measured behaviour.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use kora_nodes::NodeContext;
use kora_nodes::testing::{registry as reg, run_node as run};
use serde_json::{Value, json};

#[tokio::test]
async fn switch_boolean_multicase_and_lists() {
    let r = reg(std::path::Path::new("."));
    let o = run(&r, "SwitchNode", json!({"input_data": {"status": "ok"}, "condition_field": "status", "operator": "==", "value": "ok"})).await.unwrap();
    assert_eq!(
        Value::Object(o),
        json!({"true_output": {"status": "ok"}, "false_output": null, "condition_result": true})
    );
    let o = run(
        &r,
        "SwitchNode",
        json!({"data": 5, "operator": ">", "value": "x"}),
    )
    .await
    .unwrap();
    assert_eq!(
        o["condition_result"],
        json!(false),
        "a comparison error counts as False"
    );
    let o = run(
        &r,
        "SwitchNode",
        json!({"input_data": {"t": "a b"}, "condition_field": "t", "cases": ["x", "a b"]}),
    )
    .await
    .unwrap();
    assert_eq!(
        Value::Object(o),
        json!({"case_x": null, "case_a_b": {"t": "a b"}, "default": {"t": "a b"}, "condition_result": "a b"})
    );
    let o = run(&r, "SwitchNode", json!({"input_data": [{"k": 1}, {"k": 2}, {"k": 1}], "condition_field": "k", "cases": [1, 3]})).await.unwrap();
    assert_eq!(o["case_1"], json!([{"k": 1}, {"k": 1}]));
    assert_eq!(o["case_3"], json!([]));
    assert_eq!(o["condition_result"], json!([1]));
    assert!(
        run(&r, "SwitchNode", json!({"operator": "=="}))
            .await
            .is_err()
    );
    // Kailash's rules: an unknown operator is false, not an error; None matches only ==, !=,
    // is_null and is_not_null; `in`/`contains` are false when either side is None.
    for (check, op, v, want) in [
        (json!(2), "in", json!([1, 2]), true),
        (json!("hello"), "contains", json!("ell"), true),
        (json!(null), "is_null", json!(null), true),
        (json!(2), "<=", json!(2.0), true),
        (json!(1), "~", json!(1), false),
        (json!(1), "IS_NULL", json!(null), false),
        (json!(null), "in", json!([null, 1]), false),
        (json!(null), "<", json!(1), false),
        (json!(null), "==", json!(null), true),
        (json!(null), "!=", json!(1), true),
        (json!([1]), "contains", json!(null), false),
        (json!(1), "in", json!(null), false),
    ] {
        let o = run(
            &r,
            "SwitchNode",
            json!({"input_data": check, "operator": op, "value": v}),
        )
        .await
        .unwrap();
        assert_eq!(o["condition_result"], json!(want), "{check} {op} {v}");
        if !check.is_null() {
            assert_eq!(o["false_output"].is_null(), want, "{check} {op} {v}");
        }
    }
}

#[tokio::test]
async fn merge_like_kailash() {
    let r = reg(std::path::Path::new("."));
    let r = &r;
    let m = |v: Value| async move { run(r, "MergeNode", v).await };
    assert_eq!(
        m(json!({"data1": [1], "data2": [2, 3]})).await.unwrap()["merged_data"],
        json!([1, 2, 3])
    );
    assert_eq!(
        m(json!({"data1": 1, "data2": 2})).await.unwrap()["merged_data"],
        json!([1, 2])
    );
    assert_eq!(
        m(json!({"data1": [1, 2], "data2": ["a", "b"], "merge_type": "zip"}))
            .await
            .unwrap()["merged_data"],
        json!([[1, "a"], [2, "b"]])
    );
    assert_eq!(
        m(json!({"data1": {"a": 1}, "data2": {"b": 2}, "merge_type": "merge_dict"}))
            .await
            .unwrap()["merged_data"],
        json!({"a": 1, "b": 2})
    );
    assert_eq!(
        m(json!({"data1": [{"id": 1, "a": 1}], "data2": [{"id": 1, "b": 2}, {"id": 2, "b": 3}], "merge_type": "merge_dict", "key": "id"})).await.unwrap()["merged_data"],
        json!([{"id": 1, "a": 1, "b": 2}, {"id": 2, "b": 3}])
    );
    assert_eq!(
        m(json!({"data1": null, "data2": null})).await.unwrap()["merged_data"],
        json!(null)
    );
    assert_eq!(
        m(json!({"data1": "only"})).await.unwrap()["merged_data"],
        json!("only")
    );
    let e = m(json!({"data2": 1})).await.unwrap_err();
    assert!(e.to_string().contains("'data1' not provided"), "{e}");
    assert!(
        m(json!({"data1": 1, "data2": 2, "merge_type": "nope"}))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn python_code_node_semantics_crash_and_timeout() {
    let r = reg(std::path::Path::new("."));
    let o = run(&r, "PythonCodeNode", json!({"code": "result = {'sum': a + b, 'n': len(items)}", "a": 1, "b": 2.5, "items": [1, 2]})).await.unwrap();
    assert_eq!(Value::Object(o), json!({"result": {"sum": 3.5, "n": 2}}));
    // Without `result`, every public local that is not a module or function is the output.
    let o = run(
        &r,
        "PythonCodeNode",
        json!({"code": "import math\nx = math.floor(2.7)\n_hidden = 1\ndef f(): pass"}),
    )
    .await
    .unwrap();
    assert_eq!(o.get("x"), Some(&json!(2)));
    assert!(!o.contains_key("math") && !o.contains_key("f") && !o.contains_key("_hidden"));
    let e = run(&r, "PythonCodeNode", json!({"code": "result = missing"}))
        .await
        .unwrap_err();
    assert!(!e.is_retryable());
    assert_eq!(e.error_type(), "NameError");
    assert!(
        e.to_string()
            .contains("name 'missing' is not defined (line 1)"),
        "{e}"
    );
    let e = run(&r, "PythonCodeNode", json!({"code": "result = {1, 2}"}))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("not JSON-serializable"),
        "a set output fails the node: {e}"
    );
    // NaN and infinities have no JSON, wire or ledger form: refused, naming where (issue #19).
    for (code, what, at) in [
        ("result = float('nan')", "NaN", "at result,"),
        (
            "result = {'a': [1.0, float('-inf')]}",
            "-Infinity",
            "at result.a[1],",
        ),
        ("x = float('inf')", "Infinity", "at x,"),
    ] {
        let e = run(&r, "PythonCodeNode", json!({"code": code}))
            .await
            .unwrap_err();
        assert_eq!(e.error_type(), "InvalidOutput", "{code}: {e}");
        assert!(!e.is_retryable(), "{code}: {e}");
        assert!(
            e.to_string()
                .contains(&format!("its output holds {what} {at}")),
            "{code}: {e}"
        );
    }
    // A crashing interpreter fails only its task, retryably, and is replaced.
    let e = run(
        &r,
        "PythonCodeNode",
        json!({"code": "import os\nos._exit(3)"}),
    )
    .await
    .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    let e = run(
        &r,
        "PythonCodeNode",
        json!({"code": "import time\ntime.sleep(30)", "timeout": 0.5}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.error_type(), "TimeoutError");
    let o = run(&r, "PythonCodeNode", json!({"code": "result = 41 + 1"}))
        .await
        .unwrap();
    assert_eq!(
        o["result"],
        json!(42),
        "the pool recovers after a crash and a timeout"
    );
    // print() goes to stderr and does not corrupt the protocol.
    let o = run(
        &r,
        "PythonCodeNode",
        json!({"code": "print('noise')\nresult = 'ok'"}),
    )
    .await
    .unwrap();
    assert_eq!(o["result"], json!("ok"));
}

#[tokio::test]
async fn file_readers_are_confined_to_the_data_root() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), "id,name\n1,Ada\n2,Bob\n").unwrap();
    std::fs::write(dir.path().join("a.json"), r#"{"k": [1, 2]}"#).unwrap();
    let r = reg(dir.path());
    let o = run(
        &r,
        "CSVReaderNode",
        json!({"file_path": "a.csv", "index_column": "id"}),
    )
    .await
    .unwrap();
    assert_eq!(
        o["data"],
        json!([{"id": "1", "name": "Ada"}, {"id": "2", "name": "Bob"}])
    );
    assert_eq!(o["data_indexed"]["2"]["name"], json!("Bob"));
    let o = run(
        &r,
        "CSVReaderNode",
        json!({"file_path": "a.csv", "headers": false}),
    )
    .await
    .unwrap();
    assert_eq!(o["data"][0], json!(["id", "name"]));
    assert_eq!(
        run(&r, "JSONReaderNode", json!({"file_path": "a.json"}))
            .await
            .unwrap()["data"],
        json!({"k": [1, 2]})
    );
    let e = run(
        &r,
        "CSVReaderNode",
        json!({"file_path": "../../etc/passwd"}),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("outside the data root"), "{e}");
    let e = run(&r, "JSONReaderNode", json!({"file_path": "nope.json"}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot open"), "{e}");
}

#[tokio::test]
async fn fail_node_succeeds_from_the_configured_attempt() {
    let r = reg(std::path::Path::new("."));
    let ctx = |attempt| NodeContext {
        run_id: "r".into(),
        node_id: "n".into(),
        attempt,
        ..Default::default()
    };
    let node = r.get("FailNode").unwrap();
    let input = json!({"succeed_on_attempt": 3, "retryable": true, "data": 1})
        .as_object()
        .cloned()
        .unwrap();
    assert!(
        node.run(&ctx(2), input.clone())
            .await
            .unwrap_err()
            .is_retryable()
    );
    assert_eq!(node.run(&ctx(3), input).await.unwrap()["data"], json!(1));
}

/// The file nodes write and read what Kailash 2.65.0's do: bytes captured from the SDK
/// (Python's csv and json modules, text mode).
#[tokio::test]
async fn file_nodes_write_and_read_like_python() {
    let dir = tempfile::tempdir().unwrap();
    let r = reg(dir.path());
    let file = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    run(
        &r,
        "CSVWriterNode",
        json!({"file_path": "a.csv", "data": [{"x": 1, "y": 2.5}, {"x": null}, {"y": 1e16, "x": true}]}),
    )
    .await
    .unwrap();
    assert_eq!(file("a.csv"), b"x,y\r\n1,2.5\r\n,\r\nTrue,1e+16\r\n");
    run(
        &r,
        "CSVWriterNode",
        json!({"file_path": "b.csv", "data": [[1, "a,b", "q\"t"], [1.5e-05, null, "line\nbreak"], [""]]}),
    )
    .await
    .unwrap();
    assert_eq!(
        file("b.csv"),
        b"1,\"a,b\",\"q\"\"t\"\r\n1.5e-05,,\"line\nbreak\"\r\n\"\"\r\n"
    );
    let e = run(
        &r,
        "CSVWriterNode",
        json!({"file_path": "d.csv", "data": [{"x": 1}, {"x": 3, "extra": 2}]}),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("dict contains fields not in fieldnames: 'extra'"),
        "{e}"
    );
    // Empty data: only the count; no file, and the path is not even looked at.
    let o = run(
        &r,
        "CSVWriterNode",
        json!({"file_path": "../nowhere.csv", "data": []}),
    )
    .await
    .unwrap();
    assert_eq!(Value::Object(o), json!({"rows_written": 0}));
    run(
        &r,
        "JSONWriterNode",
        json!({"file_path": "e.json", "data": {"a": 1e16, "b": [1.5e-05, 2.0, {}], "c": []}, "indent": 0}),
    )
    .await
    .unwrap();
    assert_eq!(
        file("e.json"),
        b"{\n\"a\": 1e+16,\n\"b\": [\n1.5e-05,\n2.0,\n{}\n],\n\"c\": []\n}"
    );
    run(
        &r,
        "JSONWriterNode",
        json!({"file_path": "f.json", "data": {"a": [1, {"k": "\u{e9}"}]}}),
    )
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8(file("f.json")).unwrap(),
        "{\n  \"a\": [\n    1,\n    {\n      \"k\": \"\u{e9}\"\n    }\n  ]\n}"
    );
    // CSVReaderNode: text mode, blank lines as empty rows, dict(zip(header, row)), rows
    // reaching the index column indexed, an unknown index column refused.
    std::fs::write(
        dir.path().join("r.csv"),
        b"id,name,city\r\n1,Ada\r\n2,Bob,Paris,extra\r\n\r\n3,\"multi\r\nline\",Rome\r\n\r\n",
    )
    .unwrap();
    let o = run(
        &r,
        "CSVReaderNode",
        json!({"file_path": "r.csv", "index_column": "city"}),
    )
    .await
    .unwrap();
    assert_eq!(
        Value::Object(o),
        json!({"data": [{"id": "1", "name": "Ada"}, {"id": "2", "name": "Bob", "city": "Paris"}, {}, {"id": "3", "name": "multi\nline", "city": "Rome"}, {}],
               "data_indexed": {"Paris": {"id": "2", "name": "Bob", "city": "Paris"}, "Rome": {"id": "3", "name": "multi\nline", "city": "Rome"}}})
    );
    let e = run(
        &r,
        "CSVReaderNode",
        json!({"file_path": "r.csv", "index_column": "nope"}),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("Index column 'nope' not found in headers: ['id', 'name', 'city']"),
        "{e}"
    );
    std::fs::write(dir.path().join("n.csv"), b"a,b\n\nc\n").unwrap();
    let o = run(
        &r,
        "CSVReaderNode",
        json!({"file_path": "n.csv", "headers": false}),
    )
    .await
    .unwrap();
    assert_eq!(o["data"], json!([["a", "b"], [], ["c"]]));
    std::fs::write(dir.path().join("g.txt"), b"one\r\ntwo\rthree\n").unwrap();
    let o = run(&r, "TextReaderNode", json!({"file_path": "g.txt"}))
        .await
        .unwrap();
    assert_eq!(o["text"], "one\ntwo\nthree\n");
}

/// Writers, TextReaderNode and DirectoryReaderNode on real files, confined to the data root.
#[tokio::test]
async fn file_writers_and_the_directory_reader_stay_in_the_data_root() {
    let dir = tempfile::tempdir().unwrap();
    let r = reg(dir.path());
    let rows = json!([{"id": 1, "name": "Ada", "note": null}, {"id": 2, "name": "Bob, Jr."}]);
    let o = run(
        &r,
        "CSVWriterNode",
        json!({"file_path": "out/people.csv", "data": rows}),
    )
    .await
    .unwrap();
    assert_eq!(o["rows_written"], 2);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/people.csv")).unwrap(),
        "id,name,note\r\n1,Ada,\r\n2,\"Bob, Jr.\",\r\n"
    );
    // What the CSV reader reads back is what was written.
    let back = run(&r, "CSVReaderNode", json!({"file_path": "out/people.csv"}))
        .await
        .unwrap();
    assert_eq!(back["data"][1]["name"], "Bob, Jr.");
    run(
        &r,
        "JSONWriterNode",
        json!({"file_path": "out/d.json", "data": {"k": [1, 2]}, "indent": 0}),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/d.json")).unwrap(),
        "{\n\"k\": [\n1,\n2\n]\n}"
    );
    let o = run(
        &r,
        "TextWriterNode",
        json!({"file_path": "notes/log.txt", "text": "one\n"}),
    )
    .await
    .unwrap();
    assert_eq!(o["bytes_written"], 4);
    run(
        &r,
        "TextWriterNode",
        json!({"file_path": "notes/log.txt", "text": "two\n", "append": true}),
    )
    .await
    .unwrap();
    let o = run(&r, "TextReaderNode", json!({"file_path": "notes/log.txt"}))
        .await
        .unwrap();
    assert_eq!(o["text"], "one\ntwo\n");
    std::fs::write(dir.path().join(".hidden.csv"), "x").unwrap();
    let o = run(
        &r,
        "DirectoryReaderNode",
        json!({"directory_path": ".", "recursive": true, "file_patterns": ["*.csv", "*.json"]}),
    )
    .await
    .unwrap();
    let names: Vec<&str> = o["discovered_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file_path"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["out/d.json", "out/people.csv"], "{o:?}");
    assert_eq!(o["files_by_type"]["csv"][0]["file_name"], "people.csv");
    assert_eq!(o["directory_stats"]["total_files"], 2);
    assert_eq!(o["directory_stats"]["file_types"]["json"], 1);
    // Nothing is written or listed outside the root.
    for (ty, input) in [
        (
            "CSVWriterNode",
            json!({"file_path": "../escape.csv", "data": [[1]]}),
        ),
        (
            "TextWriterNode",
            json!({"file_path": "/tmp/escape.txt", "text": "x"}),
        ),
        (
            "JSONWriterNode",
            json!({"file_path": "a/../../escape.json", "data": 1}),
        ),
        ("DirectoryReaderNode", json!({"directory_path": ".."})),
    ] {
        let e = run(&r, ty, input).await.unwrap_err();
        assert!(e.to_string().contains("outside the data root"), "{ty}: {e}");
        assert!(!e.is_retryable());
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/tmp", dir.path().join("link")).unwrap();
        let e = run(
            &r,
            "TextWriterNode",
            json!({"file_path": "link/escape.txt", "text": "x"}),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("outside the data root"), "{e}");
    }
}

#[tokio::test]
async fn threat_detection_finds_each_rule() {
    let r = reg(std::path::Path::new("."));
    let mut events = Vec::new();
    for i in 0..6 {
        events.push(json!({"timestamp": 1000 + i * 10, "source_ip": "10.0.0.9", "event_type": "login_failed", "user": "admin"}));
    }
    events.push(json!({"timestamp": 1100, "source_ip": "10.0.0.5", "event_type": "login_failed"}));
    for i in 0..30 {
        events.push(json!({"timestamp": 2000 + i, "ip": "172.16.0.7", "type": "request", "path": "/api/items"}));
    }
    events.push(json!({"timestamp": 3000, "ip": "1.2.3.4", "type": "request", "path": "/search", "query": "q=1%27%20OR%201%3D1--"}));
    events.push(json!({"timestamp": 3001, "ip": "1.2.3.5", "type": "request", "path": "/files/..%2F..%2Fetc%2Fpasswd"}));
    let o = run(
        &r,
        "ThreatDetectionNode",
        json!({"events": events, "time_window": 300, "brute_force_threshold": 5, "rate_threshold": 20}),
    )
    .await
    .unwrap();
    let threats = o["threats"].as_array().unwrap();
    let of = |t: &str| -> Vec<&Value> { threats.iter().filter(|x| x["type"] == t).collect() };
    assert_eq!(of("brute_force").len(), 1, "{threats:?}");
    assert_eq!(of("brute_force")[0]["source"], "10.0.0.9");
    assert_eq!(of("brute_force")[0]["count"], 6);
    assert_eq!(of("rate_spike").len(), 1);
    assert_eq!(of("rate_spike")[0]["source"], "172.16.0.7");
    assert_eq!(of("sql_injection").len(), 1);
    assert_eq!(of("sql_injection")[0]["source"], "1.2.3.4");
    assert_eq!(of("path_traversal").len(), 1);
    assert_eq!(o["analysis"]["highest_severity"], "high");
    assert_eq!(o["analysis"]["total_events"], 39);
    // Clean traffic: nothing found; an unknown rule is a clear error.
    let clean = run(
        &r,
        "ThreatDetectionNode",
        json!({"events": [{"ip": "1.1.1.1", "type": "request", "path": "/home"}]}),
    )
    .await
    .unwrap();
    assert_eq!(clean["threats"], json!([]));
    let e = run(
        &r,
        "ThreatDetectionNode",
        json!({"events": [], "detection_rules": ["xss"]}),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("unknown rule \"xss\""), "{e}");
}

#[tokio::test]
async fn audit_log_node_honours_its_config_and_records_the_entry() {
    let r = reg(std::path::Path::new("."));
    let ctx = NodeContext {
        run_id: "r1".into(),
        node_id: "audit".into(),
        attempt: 1,
        ..Default::default()
    };
    // Config only (Kailash's AuditLogNode ignores config; this one does not).
    let o = r
        .get("AuditLogNode")
        .unwrap()
        .run(
            &ctx,
            json!({"event_type": "data_export", "message": "exported 10 rows", "user_id": "ada",
                   "event_data": {"rows": 10}, "log_level": "warning"})
            .as_object()
            .cloned()
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(o["audit_entry"]["event_type"], "data_export");
    assert_eq!(o["audit_entry"]["data"]["rows"], 10);
    assert_eq!(o["log_level"], "warning");
    let recorded = ctx.take_audit();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["user_id"], "ada");
    assert_eq!(recorded[0]["run_id"], "r1");
    let e = run(&r, "AuditLogNode", json!({"event_type": "x"}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("'message'"), "{e}");
}

#[tokio::test]
async fn python_code_node_function_and_class_forms() {
    let r = reg(std::path::Path::new("."));
    // A function: called with the inputs it accepts; its return value is `result`.
    let o = run(
        &r,
        "PythonCodeNode",
        json!({"function": "def scale(x, factor=2):\n    return {'y': x * factor}", "x": 21, "unused": 1}),
    )
    .await
    .unwrap();
    assert_eq!(o["result"], json!({"y": 42}));
    let o = run(
        &r,
        "PythonCodeNode",
        json!({"function": "def a(**kw):\n    return sorted(kw)\ndef b():\n    return 0", "function_name": "a", "p": 1, "q": 2}),
    )
    .await
    .unwrap();
    assert_eq!(
        o["result"],
        json!(["p", "q"]),
        "**kwargs gets every input, not the node's settings"
    );
    let e = run(
        &r,
        "PythonCodeNode",
        json!({"function": "def a():\n    return 1\ndef b():\n    return 2"}),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("function_name"), "{e}");
    // A class: one instance per interpreter, so state carries across calls on it.
    let counter = "class Counter:\n    def __init__(self):\n        self.n = 0\n    def process(self, step=1):\n        self.n += step\n        return self.n";
    let mut last = 0;
    for _ in 0..3 {
        last = run(
            &r,
            "PythonCodeNode",
            json!({"class_code": counter, "step": 5}),
        )
        .await
        .unwrap()["result"]
            .as_i64()
            .unwrap();
    }
    assert!(last >= 5 && last % 5 == 0, "{last}");
    let e = run(
        &r,
        "PythonCodeNode",
        json!({"class_code": "class A:\n    pass"}),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("no method process"), "{e}");
    let e = run(
        &r,
        "PythonCodeNode",
        json!({"code": "result = 1", "function": "def f():\n    return 1"}),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("only one of"), "{e}");
}

/// Every SwitchNode operator, true and false, as Kailash evaluates it.
#[tokio::test]
async fn switch_evaluates_every_operator() {
    let r = reg(std::path::Path::new("."));
    let cases = [
        ("==", json!(5), json!(5), true),
        ("==", json!(5), json!(6), false),
        ("!=", json!("a"), json!("b"), true),
        ("!=", json!("a"), json!("a"), false),
        (">", json!(7), json!(5), true),
        (">", json!(5), json!(7), false),
        ("<", json!(1.5), json!(2), true),
        ("<", json!(3), json!(2), false),
        (">=", json!(5), json!(5), true),
        (">=", json!(4), json!(5), false),
        ("<=", json!(5), json!(5), true),
        ("<=", json!(6), json!(5), false),
        ("in", json!("b"), json!(["a", "b"]), true),
        ("in", json!("z"), json!(["a", "b"]), false),
        ("contains", json!("hello world"), json!("world"), true),
        ("contains", json!([1, 2]), json!(3), false),
        ("is_null", Value::Null, Value::Null, true),
        ("is_null", json!(0), Value::Null, false),
        ("is_not_null", json!(0), Value::Null, true),
        ("is_not_null", Value::Null, Value::Null, false),
    ];
    for (op, field, value, want) in cases {
        let o = run(
            &r,
            "SwitchNode",
            json!({"input_data": {"f": field}, "condition_field": "f", "operator": op, "value": value}),
        )
        .await
        .unwrap();
        assert_eq!(o["condition_result"], json!(want), "{op} {field} {value}");
        let (taken, untaken) = if want {
            ("true_output", "false_output")
        } else {
            ("false_output", "true_output")
        };
        assert!(!o[taken].is_null() && o[untaken].is_null(), "{op}: {o:?}");
    }
}
