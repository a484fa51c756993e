//! Runs on the distributed engine: Kailash conformance, the node catalogue, custom, external and child-run nodes, queues and secrets.

#![allow(clippy::unwrap_used)]

use super::support::*;

/// Copies `from`'s files (and folders) into `to`, leaving out a case's own workflow, params and
/// expected results.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n.starts_with("workflow.") || n == "expected.json" || n == "params.json" {
            continue;
        }
        if e.path().is_dir() {
            std::fs::create_dir_all(to.join(&name)).unwrap();
            copy_tree(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

/// Every Kailash reference case gives Kailash's results on the distributed engine too.
#[tokio::test]
async fn distributed_runs_match_kailash() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    d.serve("scheduler,coordinator", &["--metrics-addr", &metrics_addr]);
    // The workers' data root holds every case's files, as each case's own folder does for
    // Kailash (and `kora run`): a copy of the example's data and of the conformance cases'.
    let data = tempfile::tempdir().unwrap();
    copy_tree(&root().join("examples/customer-routing"), data.path());
    for e in std::fs::read_dir(root().join("tests/conformance"))
        .unwrap()
        .flatten()
    {
        copy_tree(&e.path(), data.path());
    }
    let data_root = data.path().to_str().unwrap();
    d.serve("worker", &["--data-root", data_root]);
    d.serve("worker", &["--data-root", data_root]);
    let mut failures = Vec::new();
    let mut cases = 0;
    for base in ["examples", "tests/conformance"] {
        for e in std::fs::read_dir(root().join(base)).unwrap().flatten() {
            let dir = e.path();
            let Ok(expected) = std::fs::read_to_string(dir.join("expected.json")) else {
                continue;
            };
            let expected: serde_json::Value = serde_json::from_str(&expected).unwrap();
            let file = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("workflow.")
                })
                .unwrap();
            let params = dir.join("params.json");
            let out = d.submit_wait(&file, params.exists().then_some(params.as_path()));
            let status = out["status"].as_str().unwrap_or("");
            for diff in kora_cli::conformance::compare(&expected, status, &out["results"]) {
                failures.push(format!("{}: {diff}", dir.display()));
            }
            cases += 1;
        }
    }
    assert!(cases >= 16, "cases run: {cases}");
    assert!(
        failures.is_empty(),
        "differences from Kailash on the distributed engine:\n{}",
        failures.join("\n")
    );
    // The ledger lists them all.
    let o = d.kora(&["runs", "list", "--limit", "100", "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), cases);
    // The coordinator's counters, as Prometheus scrapes them.
    let (status, body) = http_get(&metrics_addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    let counter = |name: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(counter("kora_runs_started_total") as usize, cases);
    assert!(counter("kora_results_recorded_total") >= cases as f64);
    assert!(counter("kora_ledger_commit_seconds_count") >= 1.0);
    assert_eq!(http_get(&metrics_addr, "/healthz").0, 200);
    assert_eq!(http_get(&metrics_addr, "/nope").0, 404);
    d.finish().await;
}

/// A secret reference in config is resolved on the worker from `KORA_SECRET_<NAME>`: the node
/// gets the value, but the ledger (spec, outputs, events) and the submitter only ever see the
/// reference or `***`. A missing secret fails the node with the variable to set.
#[tokio::test]
async fn secrets_reach_the_node_and_nothing_else() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    let secret = "s3cr3t-Kora-7f2e";
    d.serve_env("all", &[], &[("KORA_SECRET_API_TOKEN", secret)]);
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("secret.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "name": "secret", "nodes": [
            {"id": "use", "type": "PythonCodeNode", "config": {
                "token": {"$secret": "api_token"},
                "url": "https://api.example/v1?key=${secret:api_token}",
                "code": "result = {'length': len(token), 'echo': token, 'url': url}"}}]})
        .to_string(),
    )
    .unwrap();
    let out = d.submit_wait(&wf, None);
    assert_eq!(out["status"], "succeeded", "{out}");
    let r = &out["results"]["use"]["result"];
    assert_eq!(r["length"], secret.len(), "the node saw the real value");
    assert_eq!(r["echo"], "***");
    assert_eq!(r["url"], "https://api.example/v1?key=***");
    let run_id = out["run_id"].as_str().unwrap();
    let shown = d.kora(&["runs", "show", run_id, "--format", "json"]);
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(
        shown.contains("succeeded") && !shown.contains(secret),
        "{shown}"
    );
    // The ledger's copy of the workflow holds the reference, not the value.
    let store = kora_store::pg::PgStore::connect(&kora_store::pg::PgConfig {
        url: d.db_url.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    use kora_store::Store;
    let rec = store.run(run_id).await.unwrap().unwrap();
    let spec = serde_json::to_string(&rec.spec).unwrap();
    assert!(
        spec.contains("api_token") && !spec.contains(secret),
        "{spec}"
    );
    let events = serde_json::to_string(&store.events(run_id).await.unwrap()).unwrap();
    assert!(!events.contains(secret), "{events}");
    store.close().await;

    let missing = dir.path().join("missing.json");
    std::fs::write(
        &missing,
        serde_json::json!({"kora": 1, "name": "missing", "nodes": [
            {"id": "use", "type": "PythonCodeNode", "config": {
                "token": {"$secret": "not-there"}, "code": "result = 1"}}]})
        .to_string(),
    )
    .unwrap();
    let out = d.submit_wait(&missing, None);
    // A leaf's failure is recorded and the run goes on (Kailash's rule).
    assert_eq!(out["results"]["use"]["failed"], true, "{out}");
    let error = out["results"]["use"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("KORA_SECRET_NOT_THERE"), "{out}");
    assert_eq!(out["results"]["use"]["error_type"], "SecretError");
    d.finish().await;
}

/// The node catalogue in one workflow (27 types), on the distributed engine and in `kora run`: file
/// writers and readers and a directory listing below the data root, HTTP, REST, rate-limited,
/// alert and LLM nodes against a loopback server, SQL on PostgreSQL and SQLite, Redis and TTL
/// caches, threat detection, an audit entry in the ledger, health checks, metrics, a Python
/// function and a child workflow; secrets from the worker's environment. (Multi-threaded: the loopback server must answer while the test waits on
/// `kora` processes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_catalogue_runs_distributed_and_embedded() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    let (base, seen) = kora_nodes::testing::server(std::sync::Arc::new(
        |req: &kora_nodes::testing::Seen, _| {
            let t = req.target.as_str();
            if t.starts_with("/v1/chat/completions") {
                let ok = req.header("authorization") == Some("Bearer tok-123");
                let content = if ok { "hi there" } else { "bad key" };
                (200, "application/json", serde_json::json!({"id": "c1", "model": "tiny",
                    "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"total_tokens": 5}}).to_string())
            } else if t.starts_with("/users/") {
                (200, "application/json", serde_json::json!({"id": 7, "path": t}).to_string())
            } else if t.starts_with("/discord") {
                (204, "text/plain", String::new())
            } else {
                (200, "application/json", serde_json::json!({"path": t, "auth": req.header("authorization")}).to_string())
            }
        },
    ))
    .await;
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("seed")).unwrap();
    std::fs::write(root.path().join("seed/a.csv"), "x\n1\n").unwrap();
    let key = format!("kora-cat:{}:", std::process::id());
    let secret = serde_json::json!({"$secret": "api_token"});
    let wf = serde_json::json!({"kora": 1, "name": "catalogue", "nodes": [
        {"id": "w_csv", "type": "CSVWriterNode", "config": {"file_path": "out/people.csv", "data": [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Bob"}]}},
        {"id": "r_csv", "type": "CSVReaderNode"},
        {"id": "w_json", "type": "JSONWriterNode", "config": {"file_path": "out/d.json", "data": {"k": [1, 2]}}},
        {"id": "r_json", "type": "JSONReaderNode"},
        {"id": "w_text", "type": "TextWriterNode", "config": {"file_path": "out/t.txt", "text": "hello"}},
        {"id": "r_text", "type": "TextReaderNode"},
        {"id": "dir", "type": "DirectoryReaderNode", "config": {"directory_path": "seed"}},
        {"id": "http", "type": "HTTPRequestNode", "config": {"url": format!("{base}/items"), "method": "POST",
            "json_data": {"n": 1}, "auth_type": "bearer", "auth_token": secret}},
        {"id": "rest", "type": "RESTClientNode", "config": {"base_url": base, "resource": "/users/{id}", "path_params": {"id": 7}}},
        {"id": "limited", "type": "RateLimitedAPINode", "config": {"url": format!("{base}/limited"), "requests_per_second": 50}},
        {"id": "hook", "type": "WebhookAlertNode", "config": {"url": format!("{base}/hook"), "message_template": "{n} people", "alert_type": "warning"}},
        {"id": "slack", "type": "SlackAlertNode", "config": {"webhook_url": format!("{base}/slack"), "message": "done"}},
        {"id": "discord", "type": "DiscordAlertNode", "config": {"webhook_url": format!("{base}/discord"), "title": "t", "message": "m"}},
        {"id": "llm", "type": "LLMAgentNode", "config": {"base_url": format!("{base}/v1"), "model": "tiny", "prompt": "hello", "api_key": secret}},
        {"id": "pg", "type": "SQLDatabaseNode", "config": {"connection_string": "postgresql://postgres@127.0.0.1:5432/test",
            "query": "SELECT CAST(:a AS INTEGER) + 1 AS b", "params": {"a": 41}}},
        {"id": "lite", "type": "AsyncSQLDatabaseNode", "config": {"connection_string": "sqlite:cat.db", "query": "SELECT 2 AS two"}},
        {"id": "r_set", "type": "RedisCacheNode", "config": {"operation": "set", "key": "k", "value": {"v": 1}, "ttl": 60, "key_prefix": key}},
        {"id": "r_get", "type": "RedisCacheNode", "config": {"operation": "get", "key_prefix": key}},
        {"id": "t_set", "type": "TTLCacheNode", "config": {"operation": "set", "key": "k", "value": 5}},
        {"id": "t_get", "type": "TTLCacheNode", "config": {"operation": "get"}},
        {"id": "threat", "type": "ThreatDetectionNode", "config": {"events": [{"ip": "9.9.9.9", "type": "request", "path": "/a/../../etc/passwd"}]}},
        {"id": "audit", "type": "AuditLogNode", "config": {"event_type": "catalogue", "message": "ran the catalogue", "user_id": "tester"}},
        {"id": "health", "type": "HealthCheckNode", "config": {"services": [
            {"name": "web", "type": "http", "url": format!("{base}/ok")},
            {"name": "bus", "type": "nats", "url": "nats://127.0.0.1:4222"}]}},
        {"id": "metrics", "type": "MetricsCollectorNode", "config": {"metric_types": ["system.memory"], "format": "prometheus"}},
        {"id": "fn", "type": "PythonCodeNode", "config": {"function": "def f(rows_written):\n    return rows_written * 10"}},
        {"id": "sub", "type": "WorkflowNode", "config": {"workflow": {"kora": 1, "name": "sub", "nodes": [
            {"id": "inner", "type": "NoOpNode", "config": {"data": "from the child"}}]}}}],
        "connections": [
            {"source": "w_csv", "output": "file_path", "target": "r_csv", "input": "file_path"},
            {"source": "w_json", "output": "file_path", "target": "r_json", "input": "file_path"},
            {"source": "w_text", "output": "file_path", "target": "r_text", "input": "file_path"},
            {"source": "w_csv", "output": "rows_written", "target": "hook", "input": "n"},
            {"source": "r_set", "output": "key", "target": "r_get", "input": "key"},
            {"source": "t_set", "output": "key", "target": "t_get", "input": "key"},
            {"source": "w_csv", "output": "rows_written", "target": "fn", "input": "rows_written"}]});
    let file = root.path().join("catalogue.json");
    std::fs::write(&file, wf.to_string()).unwrap();
    let check = |out: &serde_json::Value, how: &str| {
        assert_eq!(out["status"], "succeeded", "{how}: {out}");
        let r = &out["results"];
        assert_eq!(r["r_csv"]["data"][1]["name"], "Bob", "{how}: {r}");
        assert_eq!(r["r_json"]["data"]["k"][1], 2, "{how}");
        assert_eq!(r["r_text"]["text"], "hello", "{how}");
        assert_eq!(r["dir"]["directory_stats"]["total_files"], 1, "{how}");
        assert_eq!(
            r["http"]["response"]["content"]["auth"], "Bearer ***",
            "{how}: the secret reached the server, masked here"
        );
        assert_eq!(r["rest"]["data"]["id"], 7, "{how}");
        assert_eq!(r["limited"]["success"], true, "{how}");
        assert_eq!(r["hook"]["message"], "2 people", "{how}");
        assert_eq!(r["slack"]["sent"], true, "{how}");
        assert_eq!(r["discord"]["status_code"], 204, "{how}");
        assert_eq!(r["llm"]["response"]["content"], "hi there", "{how}");
        assert_eq!(r["pg"]["data"][0]["b"], 42, "{how}");
        assert_eq!(r["lite"]["result"]["data"][0]["two"], 2, "{how}");
        assert_eq!(r["r_get"]["value"]["v"], 1, "{how}");
        assert_eq!(r["t_get"]["value"], 5, "{how}");
        assert_eq!(r["threat"]["threats"][0]["type"], "path_traversal", "{how}");
        assert_eq!(r["audit"]["audit_entry"]["user_id"], "tester", "{how}");
        assert_eq!(
            r["health"]["overall_status"], "healthy",
            "{how}: {}",
            r["health"]
        );
        assert!(
            r["metrics"]["metrics"]
                .as_str()
                .unwrap_or_default()
                .contains("system_memory_total_bytes"),
            "{how}"
        );
        assert_eq!(r["fn"]["result"], 20, "{how}");
        assert_eq!(
            r["sub"]["results"]["inner"]["data"], "from the child",
            "{how}"
        );
    };
    let data_root = root.path().display().to_string();
    d.serve_env(
        "all",
        &[],
        &[
            ("KORA_SECRET_API_TOKEN", "tok-123"),
            ("KORA_NODES__DATA_ROOT", &data_root),
        ],
    );
    let out = d.submit_wait(&file, None);
    check(&out, "distributed");
    let run_id = out["run_id"].as_str().unwrap();
    let o = d.kora(&["audit", "--run", run_id, "--format", "json"]);
    let audit: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(audit.as_array().map(Vec::len), Some(1), "{audit}");
    assert_eq!(audit[0]["entry"]["event_type"], "catalogue");
    assert_eq!(seen.lock().unwrap().len(), 8, "eight HTTP calls");
    // The same workflow embedded.
    std::fs::remove_dir_all(root.path().join("out")).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kora"))
        .args(["run", file.to_str().unwrap(), "--data-root", &data_root])
        .env("KORA_SECRET_API_TOKEN", "tok-123")
        .output()
        .unwrap();
    let embedded: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    check(&embedded, "kora run");
    d.finish().await;
}

/// An external worker in Python (`examples/external-worker/worker.py`) serves the ExternalNode
/// tasks of its queue from the wire contract alone: its results flow through the run like any
/// node's, and an operation it does not know fails that node with its message.
#[tokio::test]
async fn an_external_python_worker_serves_its_queue() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    let python = root().join("target/tools/pyext/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make services-up` (it installs nats-py and msgpack)",
        python.display()
    );
    d.serve("all", &[]);
    let prefix = d.prefix();
    let worker = std::process::Command::new(&python)
        .arg(root().join("examples/external-worker/worker.py"))
        .args(["--queue", "ext", "--prefix", &prefix, "--nats", NATS])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    d.procs.push(worker);
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("external.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "name": "external", "nodes": [
            {"id": "up", "type": "NoOpNode", "config": {"data": "hello kora world"}},
            {"id": "shout", "type": "ExternalNode", "config": {"queue": "ext", "operation": "upper"}},
            {"id": "count", "type": "ExternalNode", "config": {"queue": "ext", "operation": "word_count"}},
            {"id": "after", "type": "PythonCodeNode", "config": {"code": "result = words * 10"}},
            {"id": "bad", "type": "ExternalNode", "config": {"queue": "ext", "operation": "nope"}}],
            "connections": [
                {"source": "up", "output": "data", "target": "shout", "input": "text"},
                {"source": "shout", "output": "text", "target": "count", "input": "text"},
                {"source": "count", "output": "words", "target": "after", "input": "words"}]})
        .to_string(),
    )
    .unwrap();
    let out = d.submit_wait(&wf, None);
    assert_eq!(out["status"], "succeeded", "{out}");
    let r = &out["results"];
    assert_eq!(r["shout"]["text"], "HELLO KORA WORLD", "{out}");
    assert_eq!(r["count"]["words"], 3);
    assert_eq!(r["after"]["result"], 30);
    assert_eq!(
        r["bad"]["failed"], true,
        "a leaf's failure is recorded: {out}"
    );
    assert!(
        r["bad"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown operation 'nope'"),
        "{out}"
    );
    d.finish().await;
}

/// A WorkflowNode runs its workflow as a child run: its own run in the ledger (with the parent
/// attempt recorded), whose results become the node's output; a child run that fails (an
/// internal node of it failed) fails the node, and, the node being internal, the parent run.
#[tokio::test]
async fn a_workflow_node_runs_a_child_run_in_the_ledger() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    d.serve("all", &[]);
    let dir = tempfile::tempdir().unwrap();
    let parent = |code: &str| {
        serde_json::json!({"kora": 1, "name": "parent", "nodes": [
            {"id": "n", "type": "NoOpNode", "config": {"data": 5}},
            {"id": "child", "type": "WorkflowNode", "config": {
                "workflow": {"kora": 1, "name": "child", "nodes": [
                    {"id": "double", "type": "PythonCodeNode", "config": {"code": code}},
                    {"id": "tail", "type": "NoOpNode"}],
                    "connections": [{"source": "double", "output": "result", "target": "tail", "input": "data"}]},
                "input_mapping": {"value": "double.x"}}},
            {"id": "after", "type": "PythonCodeNode", "config": {"code": "result = r['double']['result'] + 1"}}],
            "connections": [
                {"source": "n", "output": "data", "target": "child", "input": "value"},
                {"source": "child", "output": "results", "target": "after", "input": "r"}]})
        .to_string()
    };
    let ok = dir.path().join("ok.json");
    std::fs::write(&ok, parent("result = x * 2")).unwrap();
    // In a tenant of its own: the child run belongs to it too.
    let o = d.kora(&[
        "submit",
        ok.to_str().unwrap(),
        "--tenant",
        "acme",
        "--wait",
        "--timeout",
        "60",
    ]);
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["results"]["after"]["result"], 11);
    let child = out["results"]["child"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = d.kora(&["runs", "show", &child, "--format", "json"]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["status"], "succeeded", "{shown}");
    assert_eq!(shown["workflow"], "child");
    let store = kora_store::pg::PgStore::connect(&kora_store::pg::PgConfig {
        url: d.db_url.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    use kora_store::Store;
    let rec = store.run(&child).await.unwrap().unwrap();
    let parent_run = out["run_id"].as_str().unwrap();
    assert_eq!(rec.parent, Some(format!("{parent_run}:child:0:1")));
    assert_eq!(rec.tenant, "acme", "a child run is its parent's tenant's");
    store.close().await;

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, parent("result = 1 / 0")).unwrap();
    let out = d.submit_wait(&bad, None);
    assert_eq!(out["status"], "failed", "{out}");
    assert_eq!(
        out["results"]["child"]["error_type"], "ChildWorkflowFailed",
        "{out}"
    );
    assert!(
        out["results"]["child"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("division by zero"),
        "{out}"
    );
    d.finish().await;
}

/// A worker binary of the user's own (`examples/custom-node`, built beside `kora` by the
/// workspace) serves every role with its custom node type; runs using it go through the
/// distributed engine like any other.
#[tokio::test]
async fn a_custom_node_binary_serves_the_distributed_engine() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    let bin = Path::new(env!("CARGO_BIN_EXE_kora")).with_file_name("kora-custom-node");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace (cargo build --workspace)",
        bin.display()
    );
    let mut cmd = std::process::Command::new(&bin);
    for (k, v) in &d.env {
        cmd.env(k, v);
    }
    let child = cmd
        .args(["serve", "all"])
        .env_remove("KORA_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    d.procs.push(child);
    let out = d.submit_wait(&root().join("examples/custom-node/workflow.json"), None);
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["results"]["slug"]["slug"], "hello-kora-custom-nodes");
    assert_eq!(
        out["results"]["url"]["result"],
        "https://example.com/hello-kora-custom-nodes"
    );
    d.finish().await;
}

/// Routing: a node whose config names `queue: special` is published to `<p>.task.special` and
/// run only by a worker serving that queue; the others run on the default pool.
#[tokio::test]
async fn nodes_go_to_the_worker_pool_of_their_queue() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    d.serve("scheduler,coordinator", &[]);
    let default_pool = d.serve("worker", &[]);
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("routed.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "nodes": [
            {"id": "plain", "type": "PythonCodeNode", "config": {"code": "import os\nresult = os.getppid()"}},
            {"id": "routed", "type": "PythonCodeNode",
             "config": {"queue": "special", "code": "import os\nresult = os.getppid()"}}]})
        .to_string(),
    )
    .unwrap();
    let run_id = d.submit(&wf);
    // Without a worker for its queue, the routed node waits (the default pool does not take it).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let o = d.kora(&["runs", "show", &run_id, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "running", "{v}");
    let special_pool = d.serve("worker", &["--queue", "special"]);
    let status = d.wait_finished(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    // Each node ran under the process of its pool (a Python interpreter's parent is its worker).
    assert_eq!(
        status["results"]["plain"]["result"],
        d.procs[default_pool].id()
    );
    assert_eq!(
        status["results"]["routed"]["result"],
        d.procs[special_pool].id()
    );
    d.finish().await;
}

/// The ledger cannot store a NUL character. A run whose workflow holds one is rejected with a
/// problem naming where (the coordinator's batches keep flowing: the next run succeeds), and a
/// node whose output holds one fails as `InvalidOutput` instead of stalling the ledger.
#[tokio::test]
async fn nul_characters_are_refused_where_they_come_in() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    d.serve("all", &[]);
    let dir = tempfile::tempdir().unwrap();
    let nul_config = dir.path().join("nul-config.json");
    std::fs::write(
        &nul_config,
        r#"{"kora": 1, "name": "nul", "nodes": [{"id": "a", "type": "NoOpNode", "config": {"data": "x\u0000y"}}]}"#,
    )
    .unwrap();
    let out = d.submit_wait(&nul_config, None);
    assert_eq!(out["status"], "rejected", "{out}");
    let problem = out["error"].to_string();
    assert!(
        problem.contains("NUL") && problem.contains("nodes[0].config.data"),
        "{problem}"
    );
    let nul_output = dir.path().join("nul-output.json");
    std::fs::write(
        &nul_output,
        serde_json::json!({"kora": 1, "name": "nul-out", "nodes": [
            {"id": "bad", "type": "PythonCodeNode", "config": {"code": "result = 'a' + chr(0)"}},
            {"id": "fine", "type": "PythonCodeNode", "config": {"code": "result = 1"}}]})
        .to_string(),
    )
    .unwrap();
    let out = d.submit_wait(&nul_output, None);
    assert_eq!(
        out["results"]["bad"]["error_type"], "InvalidOutput",
        "{out}"
    );
    assert_eq!(out["results"]["fine"]["result"], 1, "{out}");

    // An operator request holding one (from a client that did not check) is answered
    // `refused`, not handed back to the ledger forever.
    use futures::StreamExt;
    use kora_broker::Broker;
    let prefix = d.prefix();
    let subjects = kora_model::subjects::Subjects::new(&prefix).unwrap();
    let broker = d.broker().await;
    let request_id = "nul-purge".to_string();
    let reply_to = subjects.operation_reply(&request_id);
    let mut replies = broker.listen(&reply_to).await.unwrap();
    let op = kora_model::wire::Operation {
        v: kora_model::wire::WIRE_VERSION,
        request_id: request_id.clone(),
        actor: "test".into(),
        at_ms: 0,
        reply_to: Some(reply_to),
        op: kora_model::wire::OperationKind::Purge {
            filter: kora_model::wire::DeadLetterSelector {
                workflow: Some("a\0b".into()),
                ..Default::default()
            },
        },
    };
    broker
        .publish(
            kora_broker::Outbound::new(
                subjects.ledger_operation(),
                kora_model::wire::encode(&op).unwrap(),
            )
            .msg_id(kora_model::msg_id::operation(&request_id)),
        )
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), replies.next())
        .await
        .expect("no answer to the request within 10 s")
        .unwrap();
    let reply: kora_model::wire::OperationReply = kora_model::wire::decode(&reply).unwrap();
    match reply.outcome {
        kora_model::wire::OperationOutcome::Refused { error, kind } => {
            assert_eq!(kind, kora_model::wire::RefusalKind::Invalid);
            assert!(
                error.contains("NUL") && error.contains("workflow"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    d.finish().await;
}

/// A fan-out's node events reach the broker a commit at a time: far fewer messages than nodes,
/// each a run's node events in sequence order, together every node's completion once, with
/// no gap or repeat; run-level events stay one message each, the final one after the node
/// events. (One message per node event cost the broker a third of a node's messages.)
#[tokio::test]
async fn node_events_go_out_a_commit_at_a_time() {
    use kora_broker::{Broker, ConsumerConfig};
    use kora_model::wire::{self, EventKind, NodeEvents, RunEvent};
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    d.serve("scheduler,coordinator,worker", &[]);
    let n = 200;
    let mut nodes = vec![serde_json::json!({"id": "root", "type": "NoOpNode"})];
    let mut conns = Vec::new();
    for i in 0..n {
        nodes.push(serde_json::json!({"id": format!("n{i}"), "type": "NoOpNode"}));
        conns.push(serde_json::json!({"source": "root", "output": "data", "target": format!("n{i}"), "input": "data"}));
    }
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("fan.json");
    std::fs::write(
        &wf,
        serde_json::json!({"nodes": nodes, "connections": conns}).to_string(),
    )
    .unwrap();
    let done = d.submit_wait(&wf, None);
    assert_eq!(done["status"], "succeeded", "{done}");
    let run_id = done["run_id"].as_str().unwrap().to_string();
    let subjects = kora_model::subjects::Subjects::new(&d.prefix()).unwrap();
    let broker = d.broker().await;
    // Every event message of the run, in stream order.
    let durable = "node-events-check";
    broker
        .ensure_consumer(
            &subjects.stream_events(),
            &ConsumerConfig {
                filter_subject: Some(format!("{}.event.{run_id}.>", d.prefix())),
                ..ConsumerConfig::new(durable)
            },
        )
        .await
        .unwrap();
    let consumer = broker
        .consumer(&subjects.stream_events(), durable)
        .await
        .unwrap();
    let mut messages = Vec::new();
    loop {
        let batch = consumer.fetch(500, Duration::from_secs(1)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for m in batch {
            m.ack().await.unwrap();
            messages.push((m.subject.clone(), m.payload.clone()));
        }
    }
    let mut events: Vec<RunEvent> = Vec::new();
    let mut node_messages = 0;
    for (subject, payload) in &messages {
        if subject.ends_with(".nodes") {
            node_messages += 1;
            let m: NodeEvents = wire::decode(payload).unwrap();
            assert_eq!(m.run_id, run_id);
            events.extend(m.events);
        } else {
            assert!(subject.contains(".run."), "a node event alone on {subject}");
            events.push(wire::decode(payload).unwrap());
        }
    }
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "in order, no gap, no repeat"
    );
    let succeeded = events
        .iter()
        .filter(|e| e.kind == EventKind::NodeSucceeded)
        .count();
    assert_eq!(succeeded, n + 1, "every node's completion, once");
    assert_eq!(events.last().unwrap().kind, EventKind::RunSucceeded);
    assert!(
        node_messages * 4 <= n,
        "{node_messages} messages carried {} node events",
        n + 1
    );
    broker
        .delete_consumer(&subjects.stream_events(), durable)
        .await
        .unwrap();
    d.finish().await;
}

/// `kora submit --wait` with no scheduler or coordinator running says so while it waits
/// (instead of waiting silently), and its timeout names what the ledger has.
#[tokio::test]
async fn waiting_on_a_run_nobody_takes_in_says_why() {
    let Some(d) = Deployment::new(&[]).await else {
        return;
    };
    let o = d.kora(&[
        "submit",
        "examples/diamond/workflow.json",
        "--wait",
        "--timeout",
        "13s",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("still waiting: no coordinator has taken run")
            && err.contains(&format!("prefix {:?}", d.prefix()))
            && err.contains("kora dev"),
        "{err}"
    );
    assert!(err.contains("did not start within 13s"), "{err}");
    d.finish().await;
}
