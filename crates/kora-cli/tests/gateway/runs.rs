//! Runs over HTTP: `wait` gives exactly what `kora run` gives; async submissions are read,
//! listed a page at a time and streamed (resumably); registered workflows keep their versions;
//! idempotency keys dedupe; dead letters are replayed with overrides and in bulk; the calls
//! are in the audit trail.

use futures::StreamExt;
use serde_json::{Value, json};

use crate::api::*;

/// The workflow every parity case runs: a fan-in with a template and a skipped branch.
fn parity_workflow() -> Value {
    json!({"kora": 1, "name": "parity", "nodes": [
        {"id": "a", "type": "PythonCodeNode", "config": {"code": "result = {'n': n, 'tag': 'x'}", "n": 1}},
        {"id": "b", "type": "PythonCodeNode", "config": {"code": "result = v['n'] * 10"}},
        {"id": "c", "type": "NoOpNode"}],
        "connections": [
            {"source": "a", "output": "result", "target": "b", "input": "v"},
            {"source": "b", "output": "result", "target": "c", "input": "data"}]})
}

#[tokio::test]
async fn a_wait_submission_answers_what_kora_run_prints() {
    let Some((d, api)) = start(&[]).await else {
        return;
    };
    let k = key(&d, "default", "operator", &[]);
    let dir = tempfile::tempdir().unwrap();
    for (name, wf, params) in [
        ("ok", parity_workflow(), json!({"a": {"n": 7}})),
        ("fails", dividing(), json!({})),
        (
            "kailash",
            json!({"workflow_id": "k", "name": "k", "nodes": {
            "n": {"type": "PythonCodeNode", "config": {"code": "result = 3"}}}, "connections": []}),
            json!({}),
        ),
    ] {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, wf.to_string()).unwrap();
        let pfile = dir.path().join(format!("{name}.params.json"));
        std::fs::write(&pfile, params.to_string()).unwrap();
        let o = d.kora(&[
            "run",
            path.to_str().unwrap(),
            "--params",
            pfile.to_str().unwrap(),
            "--format",
            "json",
        ]);
        let mut local: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
        let mut remote = run_wait(&api, &k, &wf, params).await;
        for v in [&mut local, &mut remote] {
            v.as_object_mut().unwrap().remove("run_id");
        }
        assert_eq!(remote, local, "{name}: HTTP wait and kora run agree");
    }
    d.finish().await;
}

#[tokio::test]
async fn async_runs_are_read_listed_and_streamed() {
    let Some((d, api)) = start(&[]).await else {
        return;
    };
    let k = key(&d, "acme", "operator", &[]);
    let mut ids = Vec::new();
    for i in 0..5 {
        let a = api
            .post(
                "/v1/runs",
                &k,
                &json!({"workflow": doubling(), "params": {"a": {"x": i}}}),
            )
            .await;
        assert_eq!(a.status, 202, "{}", a.body);
        assert_eq!(a.body["status"], "accepted");
        ids.push(a.body["run_id"].as_str().unwrap().to_string());
    }
    // Each ends; its view has results, timings and attempts.
    for (i, id) in ids.iter().enumerate() {
        let t = Instant::now();
        let view = loop {
            let a = api.get(&format!("/v1/runs/{id}"), &k).await;
            if a.status == 200 && a.body["status"] == "succeeded" {
                break a.body;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "{}", a.body);
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(view["results"]["a"]["result"], json!(i * 2));
        assert_eq!(view["tenant"], "acme");
        assert_eq!(view["attempts"][0]["status"], "succeeded");
        assert!(view["duration_ms"].is_u64());
    }
    // Pages of 2, newest first, cover the five once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/runs?limit=2&cursor={c}"),
            None => "/v1/runs?limit=2".into(),
        };
        let page = api.get(&path, &k).await;
        assert_eq!(page.status, 200, "{}", page.body);
        for r in page.body["runs"].as_array().unwrap() {
            seen.push(r["run_id"].as_str().unwrap().to_string());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    let filtered = api.get("/v1/runs?status=failed", &k).await;
    assert_eq!(filtered.body["runs"], json!([]));
    let bad = api.get("/v1/runs?status=done", &k).await;
    assert_eq!(bad.status, 400);

    // The event stream: every event, then resumed after the second with Last-Event-ID.
    let events = |last: Option<&str>| {
        let mut req = api
            .http
            .get(format!("{}/v1/runs/{}/events", api.base, ids[0]))
            .bearer_auth(&k);
        if let Some(l) = last {
            req = req.header("Last-Event-ID", l);
        }
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            assert!(
                resp.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/event-stream")
            );
            let mut body = String::new();
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                body.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            }
            body.lines()
                .filter_map(|l| l.strip_prefix("id: ").map(String::from))
                .collect::<Vec<_>>()
        }
    };
    let all = events(None).await;
    assert_eq!(
        all,
        ["1", "2", "3"],
        "accepted, node succeeded, run succeeded"
    );
    assert_eq!(events(Some("2")).await, ["3"], "resumed after 2");
    d.finish().await;
}

#[tokio::test]
async fn registered_workflows_idempotency_and_dead_letters_over_http() {
    let Some((d, api)) = start(&[]).await else {
        return;
    };
    let k = key(&d, "acme", "admin", &[]);
    // Versions: a run keeps the version it started with.
    let v1 = api
        .post(
            "/v1/workflows",
            &k,
            &json!({"name": "calc", "workflow": doubling()}),
        )
        .await;
    assert_eq!(
        (v1.status, v1.body["version"].clone()),
        (201, json!(1)),
        "{}",
        v1.body
    );
    let tripling = json!({"kora": 1, "name": "triple", "nodes": [
        {"id": "a", "type": "PythonCodeNode", "config": {"code": "result = x * 3", "x": 1}}]});
    let v2 = api
        .post(
            "/v1/workflows",
            &k,
            &json!({"name": "calc", "workflow": tripling}),
        )
        .await;
    assert_eq!(v2.body["version"], 2);
    let by_name = |version: Option<u32>| {
        let mut b = json!({"workflow_name": "calc", "params": {"a": {"x": 5}}});
        if let Some(v) = version {
            b["version"] = json!(v);
        }
        b
    };
    let latest = api.post("/v1/runs?wait=30", &k, &by_name(None)).await;
    assert_eq!(latest.body["results"]["a"]["result"], 15, "{}", latest.body);
    let first = api.post("/v1/runs?wait=30", &k, &by_name(Some(1))).await;
    assert_eq!(first.body["results"]["a"]["result"], 10, "{}", first.body);
    let listed = api.get("/v1/workflows", &k).await;
    assert_eq!(listed.body["workflows"][0]["version"], 2);
    let invalid = api
        .post(
            "/v1/workflows",
            &k,
            &json!({"name": "bad", "workflow": {"nodes": [{"id": "x", "type": "Nope"}]}}),
        )
        .await;
    assert_eq!(invalid.status, 422, "{}", invalid.body);
    assert!(
        invalid.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Nope"),
        "{}",
        invalid.body
    );
    // Text is measured before it is parsed: a hostile document is refused at once, naming the
    // limit (the YAML parser would take seconds on it).
    let deep = format!("nodes: {}{}", "[".repeat(200_000), "]".repeat(200_000));
    for (path, body) in [
        ("/v1/workflows", json!({"name": "deep", "workflow": deep})),
        ("/v1/runs", json!({"workflow": deep})),
    ] {
        let t = std::time::Instant::now();
        let refused = api.post(path, &k, &body).await;
        assert_eq!(refused.status, 422, "{path}: {}", refused.body);
        let msg = refused.body["error"]["message"].as_str().unwrap();
        assert!(msg.contains("limits.max_depth"), "{path}: {msg}");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "{path}: {:?}",
            t.elapsed()
        );
    }
    let gone = api
        .call(
            reqwest::Method::DELETE,
            "/v1/workflows/calc",
            Some(&k),
            None,
        )
        .await;
    assert_eq!(gone.status, 204);
    let after = api.post("/v1/runs", &k, &by_name(None)).await;
    assert_eq!(after.status, 404, "{}", after.body);

    // An idempotency key: the second submission is the first run.
    let keyed = json!({"workflow": doubling(), "idempotency_key": "order-42"});
    let one = api.post("/v1/runs?wait=30", &k, &keyed).await;
    let two = api.post("/v1/runs?wait=30", &k, &keyed).await;
    assert_eq!(
        one.body["run_id"], two.body["run_id"],
        "{} {}",
        one.body, two.body
    );
    let view = api
        .get(
            &format!("/v1/runs/{}", one.body["run_id"].as_str().unwrap()),
            &k,
        )
        .await;
    assert_eq!(
        view.body["idempotency_key"], "order-42",
        "the tenant's key as given"
    );
    // Without `wait` too: the answer names the run the key stands for.
    let three = api.post("/v1/runs", &k, &keyed).await;
    assert_eq!(three.status, 202, "{}", three.body);
    assert_eq!(three.body["run_id"], one.body["run_id"], "{}", three.body);
    assert_eq!(three.body["status"], "duplicate", "{}", three.body);
    let fresh = json!({"workflow": doubling(), "idempotency_key": "order-43"});
    let four = api.post("/v1/runs", &k, &fresh).await;
    assert_eq!(four.body["status"], "accepted", "{}", four.body);
    assert_ne!(four.body["run_id"], one.body["run_id"]);

    // A dead letter replayed with an override resumes its run.
    let failed = run_wait(&api, &k, &dividing(), json!({})).await;
    let run = failed["run_id"].as_str().unwrap().to_string();
    let dl = api.get(&format!("/v1/dead-letters?run_id={run}"), &k).await;
    let id = dl.body["dead_letters"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(dl.body["dead_letters"][0]["reason"], "permanent_error");
    let shown = api.get(&format!("/v1/dead-letters/{id}"), &k).await;
    assert_eq!(shown.body["attempts"].as_array().unwrap().len(), 1);
    let replayed = api
        .post(
            &format!("/v1/dead-letters/{id}/replay"),
            &k,
            &json!({"set": {"x": 4}}),
        )
        .await;
    assert_eq!(replayed.status, 200, "{}", replayed.body);
    assert_eq!(replayed.body["attempt"], 2);
    let t = Instant::now();
    loop {
        let v = api.get(&format!("/v1/runs/{run}"), &k).await;
        if v.body["status"] == "succeeded" {
            assert_eq!(v.body["results"]["d"]["result"], 0.25);
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{}", v.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = api
        .post(&format!("/v1/dead-letters/{id}/replay"), &k, &json!({}))
        .await;
    assert_eq!(again.status, 409, "{}", again.body);

    // Bulk: a dry run counts, then the replay does them all.
    for _ in 0..3 {
        run_wait(&api, &k, &dividing(), json!({})).await;
    }
    let dry = api
        .post(
            "/v1/dead-letters/replay",
            &k,
            &json!({"workflow": "divide", "dry_run": true}),
        )
        .await;
    assert_eq!(
        (dry.body["count"].clone(), dry.body["replayed"].clone()),
        (json!(3), json!([])),
        "{}",
        dry.body
    );
    let purge_dry = api
        .post(
            "/v1/dead-letters/purge",
            &k,
            &json!({"workflow": "divide", "dry_run": true}),
        )
        .await;
    assert_eq!(purge_dry.body["count"], 3);
    let all = api
        .post(
            "/v1/dead-letters/replay",
            &k,
            &json!({"workflow": "divide"}),
        )
        .await;
    assert_eq!(
        all.body["replayed"].as_array().unwrap().len(),
        3,
        "{}",
        all.body
    );

    // Every mutating call is in the audit trail, and `kora audit --api` reads it.
    let audit = api.get("/v1/audit?action=dead_letters.replay", &k).await;
    let e = &audit.body["entries"];
    assert_eq!(e.as_array().unwrap().len(), 2, "{e}");
    assert_eq!(
        (e[0]["outcome"].clone(), e[0]["status"].clone()),
        (json!("conflict"), json!(409))
    );
    assert_eq!(e[1]["target"], id.as_str());
    assert!(e[1]["request_id"].as_str().unwrap().len() > 8);
    let o = d.kora(&[
        "audit",
        "--api",
        "--tenant",
        "acme",
        "--action",
        "workflows.register",
        "--format",
        "json",
    ]);
    let cli: Value = serde_json::from_slice(&o.stdout).unwrap();
    // calc twice, bad, and the refused deep document.
    assert_eq!(cli.as_array().unwrap().len(), 4, "{cli}");
    d.finish().await;
}
