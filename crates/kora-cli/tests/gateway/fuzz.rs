//! schemathesis (PyPI, installed by `make services-up`) against the gateway's own
//! `/openapi.json`, once with a viewer, an operator and an admin key, with a fixed seed, over
//! its examples, coverage, fuzzing and stateful phases: no answer may be a 5xx, and none may
//! contradict the document (status, content type, headers, body schema).
//!
//! One check is left out: `positive_data_acceptance`, which expects every request the schema
//! allows to succeed. The schema describes a workflow's shape, not its meaning, so a workflow
//! with a node of an unknown type is schema-valid and rightly refused with 400; likewise
//! resources the fuzzer invents names for are rightly 404.

use std::process::Command;

use serde_json::json;

use crate::api::*;

fn schemathesis() -> Option<std::path::PathBuf> {
    let bin = root().join("target/tools/schemathesis/bin/schemathesis");
    if bin.exists() {
        return Some(bin);
    }
    assert!(
        std::env::var("CI").is_err(),
        "{} is missing: `make services-up` installs it",
        bin.display()
    );
    eprintln!("skipping: {} is missing (make services-up)", bin.display());
    None
}

#[tokio::test]
async fn the_api_keeps_to_its_openapi_document_under_fuzzing() {
    let Some(bin) = schemathesis() else { return };
    let Some((d, api)) = start(&[
        ("KORA_GATEWAY__RATE_LIMIT__PER_CREDENTIAL", "0"),
        ("KORA_GATEWAY__RATE_LIMIT__PER_IP", "0"),
        ("KORA_GATEWAY__MAX_WAIT", "2s"),
    ])
    .await
    else {
        return;
    };
    let admin = key(&d, "fuzz", "admin", &[]);
    // Something for each kind of resource, so reads find things as well as miss them.
    run_wait(&api, &admin, &doubling(), json!({})).await;
    let a = api
        .post("/v1/runs?wait=30", &admin, &json!({"workflow": dividing()}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = api
        .post(
            "/v1/workflows",
            &admin,
            &json!({"name": "double", "workflow": doubling()}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let a = api
        .post(
            "/v1/triggers",
            &admin,
            &json!({"name": "nightly", "workflow": doubling(), "schedule": "0 0 3 * * *"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);

    let dir = tempfile::tempdir().unwrap();
    let mut failed = Vec::new();
    for role in ["viewer", "operator", "admin"] {
        let k = key(&d, "fuzz", role, &[]);
        let report = dir.path().join(format!("schemathesis-{role}"));
        let o = Command::new(&bin)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .args([
                "run",
                &format!("{}/openapi.json", api.base),
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--seed",
                "42",
                "--max-examples",
                "15",
                // One worker: CPython 3.11's AST constructor is not safe across threads
                // ("AST constructor recursion depth mismatch" inside Hypothesis).
                "--workers",
                "1",
                "--request-timeout",
                "10",
                "--no-shrink",
                "--report",
                "junit",
                "--report-dir",
            ])
            .arg(&report)
            .arg("-H")
            .arg(format!("Authorization: Bearer {k}"))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        let summary: String = out
            .lines()
            .rev()
            .take(12)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        eprintln!("schemathesis as {role}:\n{summary}");
        if !o.status.success() {
            failed.push(format!(
                "as {role} ({}):\n{out}\n{}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
    d.finish().await;
}
