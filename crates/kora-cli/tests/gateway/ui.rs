//! The dashboard (`/ui/`) in a real headless Chromium (Debian's `chromium`, driven by
//! Playwright for Python from `target/tools/ui`, which `make test` installs) against real roles:
//! signing in, the runs list, a run's graph with every node in its right state, a dead letter
//! replayed with an edited input, bulk replay by filter, triggers created, paused and resumed,
//! what a viewer is offered and refused, signing in with a JWT, another tenant seeing nothing,
//! an admin's purge, and a 10,000-node run's page within its budget. The browser side is
//! `dashboard.py` next to this file; it writes a screenshot of each page under
//! `target/ui-screenshots/`.

use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

use crate::api::*;

/// The workflow whose run shows every state: a cycle (`improve`, several iterations), a
/// switch whose untaken branch is skipped (`no`), and a leaf that fails (`explode`).
fn states_workflow() -> Value {
    json!({
        "workflow_id": "ui-states", "name": "ui-states", "version": "1.0.0", "metadata": {},
        "nodes": {
            "start": {"node_id": "start", "node_type": "PythonCodeNode",
                "config": {"code": "result = {'target': 9.0, 'guess': 4.5, 'big': True}"}},
            "improve": {"node_id": "improve", "node_type": "PythonCodeNode",
                "config": {"code": "try:\n    g = guess\nexcept NameError:\n    g = seed['guess']\nt = seed['target']\nnew = (g + t / g) / 2.0\nresult = {'guess': new, 'converged': abs(new - g) < 1e-6}"}},
            "route": {"node_id": "route", "node_type": "SwitchNode",
                "config": {"condition_field": "big", "operator": "==", "value": true}},
            "yes": {"node_id": "yes", "node_type": "PythonCodeNode", "config": {"code": "result = 'big'"}},
            "no": {"node_id": "no", "node_type": "PythonCodeNode", "config": {"code": "result = 'small'"}},
            "explode": {"node_id": "explode", "node_type": "PythonCodeNode",
                "config": {"code": "result = 1 / zero", "zero": 0}}
        },
        "connections": [
            {"source_node": "start", "source_output": "result", "target_node": "improve", "target_input": "seed"},
            {"source_node": "improve", "source_output": "result.guess", "target_node": "improve", "target_input": "guess",
             "cycle": true, "max_iterations": 50, "convergence_check": "converged == True", "cycle_id": "newton"},
            {"source_node": "start", "source_output": "result", "target_node": "route", "target_input": "input_data"},
            {"source_node": "route", "source_output": "true_output", "target_node": "yes", "target_input": "data"},
            {"source_node": "route", "source_output": "false_output", "target_node": "no", "target_input": "data"},
            {"source_node": "improve", "source_output": "result", "target_node": "explode", "target_input": "estimate"}
        ]
    })
}

/// `n` independent NoOp nodes: a fan-out too big to draw.
fn wide_workflow(n: usize) -> Value {
    let nodes: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("n{i}"), "type": "NoOpNode"}))
        .collect();
    json!({"kora": 1, "name": "ui-wide", "nodes": nodes})
}

const JWT_SECRET: &str = "the dashboard test's HS256 secret, long enough";

/// axe-core (npm), the accessibility rules the browser checks each page against.
fn axe() -> std::path::PathBuf {
    root().join("target/tools/ui/axe/node_modules/axe-core/axe.min.js")
}

/// The Playwright interpreter `make test` installs, or `None` (outside CI: skip).
fn playwright_python() -> Option<std::path::PathBuf> {
    let py = root().join("target/tools/ui/bin/python");
    let chromium = std::path::Path::new("/usr/bin/chromium");
    if py.exists() && chromium.exists() && axe().exists() {
        return Some(py);
    }
    let why = "the dashboard test needs target/tools/ui (Playwright and axe-core) and \
               /usr/bin/chromium: `make services-up` installs them";
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipping: {why}");
    None
}

#[tokio::test]
async fn the_dashboard_in_a_real_browser() {
    let Some(py) = playwright_python() else {
        return;
    };
    let Some((d, api)) = start(&[
        ("KORA_GATEWAY__MAX_BODY_BYTES", "4194304"),
        ("KORA_GATEWAY__RATE_LIMIT__PER_CREDENTIAL", "0"),
        // Runs with no progress for 2 s are stuck: the sleeping runs below become so.
        ("KORA_MONITORING__STUCK_AFTER_SECS", "2"),
        // Interpreters for the two sleepers and the rest of the test's Python nodes.
        ("KORA_NODES__PYTHON_WORKERS", "6"),
        // Signing in with a JWT from an identity provider (HS256 here).
        ("KORA_GATEWAY__JWT__HS256_SECRET", JWT_SECRET),
    ])
    .await
    else {
        return;
    };
    let operator = key(&d, "ui", "operator", &[]);
    let viewer = key(&d, "ui", "viewer", &[]);
    let admin = key(&d, "ui", "admin", &[]);
    let stranger = key(&d, "other", "admin", &[]);

    let states = api
        .post(
            "/v1/runs?wait=60",
            &operator,
            &json!({"workflow": states_workflow(), "idempotency_key": "ui-states-key"}),
        )
        .await;
    assert_eq!(states.status, 200, "{}", states.body);
    // A failed leaf does not fail the run (Kailash's rule); it is dead-lettered.
    assert_eq!(states.body["status"], "succeeded", "{}", states.body);
    assert_eq!(
        states.body["results"]["explode"]["failed"], true,
        "{}",
        states.body
    );
    let states_run = states.body["run_id"].as_str().unwrap().to_string();

    // A run whose node divides by zero: one dead letter, replayed from the UI.
    let divide = api
        .post(
            "/v1/runs?wait=60",
            &operator,
            &json!({"workflow": {"kora": 1, "name": "ui-divide", "nodes": [
                {"id": "d", "type": "PythonCodeNode",
                 "config": {"code": "result = 10 / divisor", "divisor": 0}}]}}),
        )
        .await;
    assert_eq!(divide.status, 200, "{}", divide.body);
    assert_eq!(
        divide.body["results"]["d"]["failed"], true,
        "{}",
        divide.body
    );
    let divide_run = divide.body["run_id"].as_str().unwrap().to_string();
    // A run whose WorkflowNode starts a child run: linked both ways on the run pages.
    let parent = api
        .post(
            "/v1/runs?wait=60",
            &operator,
            &json!({"workflow": {"kora": 1, "name": "ui-parent", "nodes": [
                {"id": "child", "type": "WorkflowNode", "config": {"workflow":
                    {"kora": 1, "name": "ui-child", "nodes": [{"id": "leaf", "type": "NoOpNode"}]}}}]}}),
        )
        .await;
    assert_eq!(parent.status, 200, "{}", parent.body);
    assert_eq!(parent.body["status"], "succeeded", "{}", parent.body);
    let parent_run = parent.body["run_id"].as_str().unwrap().to_string();
    // A registered workflow for the trigger the UI creates.
    let reg = api
        .post(
            "/v1/workflows",
            &operator,
            &json!({"name": "ui-doubling", "workflow": doubling()}),
        )
        .await;
    assert_eq!(reg.status, 201, "{}", reg.body);

    let wide = api
        .post(
            "/v1/runs?wait=120",
            &operator,
            &json!({"workflow": wide_workflow(10_000)}),
        )
        .await;
    assert_eq!(wide.status, 200, "{}", wide.body);
    assert_eq!(wide.body["status"], "succeeded");
    let wide_run = wide.body["run_id"].as_str().unwrap().to_string();

    // The API the pages read, checked here too: the graph's states.
    let g = api
        .get(&format!("/v1/runs/{states_run}/graph"), &viewer)
        .await;
    assert_eq!(g.status, 200, "{}", g.body);
    let state = |id: &str| {
        g.body["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .map(|n| n["state"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(state("yes"), "succeeded");
    assert_eq!(state("no"), "skipped");
    assert_eq!(state("explode"), "dead_lettered");
    // Inputs: a dead-lettered attempt's as recorded; the others recomputed from what their
    // sources recorded, as the coordinator computed them.
    let yes = api
        .get(&format!("/v1/runs/{states_run}/nodes/yes"), &viewer)
        .await;
    let a = &yes.body["attempts"][0];
    assert_eq!(a["inputs_from"], "recomputed", "{}", yes.body);
    assert_eq!(
        a["inputs"]["data"],
        json!({"target": 9.0, "guess": 4.5, "big": true}),
        "{}",
        yes.body
    );
    let explode = api
        .get(&format!("/v1/runs/{states_run}/nodes/explode"), &viewer)
        .await;
    assert_eq!(
        explode.body["attempts"][0]["inputs_from"], "recorded",
        "{}",
        explode.body
    );
    // A big run's summary: its state without its results and attempts.
    let summary = api
        .get(&format!("/v1/runs/{wide_run}?view=summary"), &viewer)
        .await;
    assert_eq!(summary.body["status"], "succeeded", "{}", summary.body);
    assert_eq!(summary.body["attempts"], json!([]), "{}", summary.body);
    assert_eq!(summary.body["results"], json!({}), "{}", summary.body);
    let me = api.get("/v1/me", &viewer).await;
    assert_eq!(me.body["role"], "viewer", "{}", me.body);
    assert!(
        !me.body["scopes"]
            .as_array()
            .unwrap()
            .contains(&json!("runs:cancel"))
    );

    // Two runs that sleep: stuck after 2 s, cancelled from the runs list.
    for _ in 0..2 {
        let a = api
            .post(
                "/v1/runs",
                &operator,
                &json!({"workflow": {"kora": 1, "name": "ui-sleep", "nodes": [
                    {"id": "nap", "type": "PythonCodeNode",
                     "config": {"code": "import time\ntime.sleep(120)\nresult = 1"}}]}}),
            )
            .await;
        assert_eq!(a.status, 202, "{}", a.body);
    }

    let shots = root().join("target/ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let started = Instant::now();
    let o = Command::new(&py)
        .arg(root().join("crates/kora-cli/tests/gateway/dashboard.py"))
        .env("KORA_URL", &api.base)
        .env("KORA_OPERATOR_KEY", &operator)
        .env("KORA_VIEWER_KEY", &viewer)
        .env("KORA_STATES_RUN", &states_run)
        .env("KORA_WIDE_RUN", &wide_run)
        .env("KORA_DIVIDE_RUN", &divide_run)
        .env("KORA_PARENT_RUN", &parent_run)
        .env("KORA_SHOTS", &shots)
        .env("KORA_AXE", axe())
        .env("KORA_ADMIN_KEY", &admin)
        .env("KORA_STRANGER_KEY", &stranger)
        .env("KORA_JWT_SECRET", JWT_SECRET)
        .output()
        .unwrap();
    let out = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("dashboard.py ({:.1?}):\n{out}", started.elapsed());
    assert!(o.status.success(), "the browser checks failed:\n{out}");
    assert!(out.contains("all dashboard checks passed"), "{out}");
    // What the pages did, seen through the API: the dead letter replayed with divisor 4
    // (10 / 4), then the node run again from the run page with divisor 5 (10 / 5); the
    // trigger made on the page exists, resumed.
    let after = api.get(&format!("/v1/runs/{divide_run}"), &viewer).await;
    assert_eq!(after.body["status"], "succeeded", "{}", after.body);
    assert_eq!(
        after.body["results"]["d"]["result"],
        json!(2.0),
        "{}",
        after.body
    );
    let tries = after.body["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["node_id"] == "d")
        .count();
    assert_eq!(tries, 3, "{}", after.body);
    // The sleeping runs were cancelled from the page.
    let sleeping = api
        .get("/v1/runs?workflow=ui-sleep&status=cancelled", &viewer)
        .await;
    assert_eq!(
        sleeping.body["runs"].as_array().unwrap().len(),
        2,
        "{}",
        sleeping.body
    );
    // The admin purged the states run's open dead letter from the page.
    let open = api
        .get("/v1/dead-letters?workflow=ui-states", &viewer)
        .await;
    assert_eq!(open.body["dead_letters"], json!([]), "{}", open.body);
    let trig = api.get("/v1/triggers/ui-yearly", &viewer).await;
    assert_eq!(trig.status, 200, "{}", trig.body);
    assert_eq!(trig.body["paused"], false, "{}", trig.body);
    for page in [
        "sign-in",
        "runs",
        "run",
        "node",
        "dead-letters",
        "dead-letter",
        "replayed-run",
        "child-run",
        "triggers",
        "overview",
        "fleet",
        "stuck-runs",
        "viewer-run",
        "viewer-dead-letters",
        "viewer-triggers",
        "wide-run",
        "jwt-runs",
        "stranger-runs",
        "purged",
    ] {
        assert!(
            shots.join(format!("{page}.png")).exists(),
            "no screenshot of {page}"
        );
    }
    d.finish().await;
}
