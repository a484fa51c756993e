//! Golden vectors in proto/vectors: each message as MessagePack (hex) and as JSON. The Rust
//! types must decode the bytes to the JSON's meaning and encode back to the same bytes.
//! `KORA_BLESS=1 cargo test -p kora-model --test wire` rewrites them after a deliberate change.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use kora_model::wire::{
    self, Admission, AttemptRef, DeadLetterSelector, EventKind, NodeResult, NodeTask, Operation,
    OperationKind, OperationOutcome, OperationReply, RunEvent, RunRequest, TaskOutcome, Versioned,
    WIRE_VERSION,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto/vectors")
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .chunks(32)
        .map(|c| c.join(""))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn unhex(text: &str) -> Vec<u8> {
    let clean: String = text.chars().filter(char::is_ascii_hexdigit).collect();
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
        .collect()
}

fn check<T: Serialize + DeserializeOwned + Versioned + PartialEq + std::fmt::Debug>(
    name: &str,
    msg: T,
) {
    let bytes = wire::encode(&msg).unwrap();
    let json = serde_json::to_string_pretty(&msg).unwrap() + "\n";
    let (hp, jp) = (
        dir().join(format!("{name}.msgpack.hex")),
        dir().join(format!("{name}.json")),
    );
    if std::env::var("KORA_BLESS").is_ok() {
        std::fs::write(&hp, hex(&bytes)).unwrap();
        std::fs::write(&jp, &json).unwrap();
    }
    let golden = unhex(&std::fs::read_to_string(&hp).unwrap());
    let decoded: T = wire::decode(&golden).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(decoded, msg, "{name}: golden bytes decode to the sample");
    assert_eq!(golden, bytes, "{name}: encoding is stable");
    let golden_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&jp).unwrap()).unwrap();
    assert_eq!(
        serde_json::to_value(&decoded).unwrap(),
        golden_json,
        "{name}: JSON view matches"
    );
}

#[test]
fn golden_vectors() {
    let wf = serde_json::from_value(json!({"kora": 1, "id": "wf-1", "name": "demo",
        "nodes": [{"id": "a", "type": "PythonCodeNode", "config": {"code": "result = x * 2"}}, {"id": "b", "type": "NoOpNode"}],
        "connections": [{"source": "a", "output": "result", "target": "b", "input": "data"}]})).unwrap();
    let req = RunRequest {
        v: WIRE_VERSION,
        run_id: "0190a8f0-0000-7000-8000-000000000001".into(),
        idempotency_key: Some("order-42".into()),
        workflow: wf,
        params: json!({"a": {"x": 21}}).as_object().cloned().unwrap(),
        submitted_at_ms: 1_764_000_000_000,
        parent: None,
        tenant: kora_model::tenant::default_name(),
    };
    check("run_request", req.clone());
    check(
        "run_request_tenant",
        RunRequest {
            tenant: "acme".into(),
            ..req.clone()
        },
    );
    check(
        "admission_admitted",
        Admission::Admitted {
            request: Box::new(req),
        },
    );
    check(
        "admission_rejected",
        Admission::Rejected {
            run_id: "r-2".into(),
            problems: vec!["node 'a', field 'type': unknown node type 'X'".into()],
            submitted_at_ms: 5,
            tenant: kora_model::tenant::default_name(),
        },
    );
    check(
        "node_task",
        NodeTask {
            v: WIRE_VERSION,
            task_id: NodeTask::make_id("0190a8f0-0000-7000-8000-000000000001", "a", 0, 1),
            run_id: "0190a8f0-0000-7000-8000-000000000001".into(),
            node_id: "a".into(),
            node_type: "PythonCodeNode".into(),
            iteration: 0,
            attempt: 1,
            config: json!({"code": "result = x * 2"})
                .as_object()
                .cloned()
                .unwrap(),
            inputs: json!({"x": 21, "nested": {"list": [1, 2.5, null, true, "s"]}})
                .as_object()
                .cloned()
                .unwrap(),
            timeout_ms: None,
        },
    );
    check(
        "node_result_success",
        NodeResult {
            v: WIRE_VERSION,
            task_id: "0190a8f0-0000-7000-8000-000000000001:a:0:1".into(),
            run_id: "0190a8f0-0000-7000-8000-000000000001".into(),
            node_id: "a".into(),
            iteration: 0,
            attempt: 1,
            outcome: TaskOutcome::Success {
                output: json!({"result": 42}).as_object().cloned().unwrap(),
            },
            worker_id: "worker-7".into(),
            started_at_ms: 1_764_000_000_010,
            finished_at_ms: 1_764_000_000_011,
            audit: Vec::new(),
        },
    );
    check(
        "node_result_failure",
        NodeResult {
            v: WIRE_VERSION,
            task_id: "r:b:0:1".into(),
            run_id: "r".into(),
            node_id: "b".into(),
            iteration: 2,
            attempt: 1,
            outcome: TaskOutcome::Failure {
                error: "ZeroDivisionError: division by zero (line 1)".into(),
                error_type: "ZeroDivisionError".into(),
                retryable: false,
                retry_after_ms: None,
            },
            worker_id: "py-worker-1".into(),
            started_at_ms: 1,
            finished_at_ms: 2,
            audit: Vec::new(),
        },
    );
    check(
        "run_event",
        RunEvent {
            v: WIRE_VERSION,
            event_id: "r:3".into(),
            run_id: "r".into(),
            seq: 3,
            kind: EventKind::NodeSucceeded,
            node_id: Some("a".into()),
            iteration: 0,
            attempt: 1,
            at_ms: 1_764_000_000_012,
            detail: None,
        },
    );
    check(
        "operation_replay",
        Operation {
            v: WIRE_VERSION,
            request_id: "01a23b00-0000-7000-8000-000000000001".into(),
            actor: "ops@host".into(),
            at_ms: 1_764_000_000_020,
            reply_to: Some("kora.control.reply.01a23b00-0000-7000-8000-000000000001".into()),
            op: OperationKind::Replay {
                dead_letter: "r:b:0:1".into(),
                overrides: json!({"divisor": 5}).as_object().cloned().unwrap(),
            },
        },
    );
    check(
        "operation_purge",
        Operation {
            v: WIRE_VERSION,
            request_id: "01a23b00-0000-7000-8000-000000000002".into(),
            actor: "ops@host".into(),
            at_ms: 1_764_000_000_021,
            reply_to: None,
            op: OperationKind::Purge {
                filter: DeadLetterSelector {
                    workflow: Some("orders".into()),
                    reason: Some("permanent_error".into()),
                    ..Default::default()
                },
            },
        },
    );
    check(
        "operation_reply",
        OperationReply {
            v: WIRE_VERSION,
            request_id: "01a23b00-0000-7000-8000-000000000001".into(),
            outcome: OperationOutcome::Replayed {
                run_id: "r".into(),
                node_id: "b".into(),
                attempt: 2,
                redispatched: vec![AttemptRef {
                    node_id: "c".into(),
                    iteration: 0,
                    attempt: 2,
                }],
            },
        },
    );
}

#[test]
fn newer_versions_and_garbage_are_refused_with_reasons() {
    let mut task_json = serde_json::to_value(NodeTask {
        v: 9,
        task_id: "t".into(),
        run_id: "r".into(),
        node_id: "n".into(),
        node_type: "NoOpNode".into(),
        iteration: 0,
        attempt: 1,
        config: Default::default(),
        inputs: Default::default(),
        timeout_ms: None,
    })
    .unwrap();
    let bytes = kora_model::msgpack::to_vec_named(&task_json).unwrap();
    let e = wire::decode::<NodeTask>(&bytes).unwrap_err();
    assert!(e.to_string().contains("wire version 9"), "{e}");
    task_json["v"] = json!(1);
    task_json.as_object_mut().unwrap().remove("node_id");
    let e = wire::decode::<NodeTask>(&kora_model::msgpack::to_vec_named(&task_json).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("node_id"), "{e}");
    assert!(wire::decode::<NodeTask>(b"\xc1").is_err());
    // Unknown fields from a newer writer are ignored; missing defaulted fields are fine.
    let extra = json!({"v": 1, "task_id": "t", "run_id": "r", "node_id": "n", "node_type": "NoOpNode", "attempt": 1, "future_field": [1]});
    assert!(wire::decode::<NodeTask>(&kora_model::msgpack::to_vec_named(&extra).unwrap()).is_ok());
}
