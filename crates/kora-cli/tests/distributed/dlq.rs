//! Dead letters, replays, restarts from a node and poison messages: the operator loop, applied by the coordinator.

#![allow(clippy::unwrap_used)]

use super::support::*;

/// The operator loop for a poison input: a node fails permanently (division by zero), is
/// dead-lettered with its inputs, and its run fails. `kora dlq list` and `show` present it;
/// `kora dlq replay ID --set divisor=5` runs it again with the input fixed; the run resumes and
/// succeeds. The upstream node ran exactly once (an execution log counts), the replay is in
/// the audit trail, and a second replay is refused.
#[tokio::test]
async fn dead_letter_replayed_with_a_fixed_input_resumes_the_run() {
    let Some(mut d) = Deployment::new(&[("KORA_ACTOR", "ops-test")]).await else {
        return;
    };
    d.serve("all", &[]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("executions.log");
    let logline = |name: &str| {
        format!(
            "open({:?}, 'a').write('{name}\\n')\n",
            log.display().to_string()
        )
    };
    let wf = dir.path().join("divide.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "name": "divide", "nodes": [
            {"id": "up", "type": "PythonCodeNode", "config": {"code": format!("{}result = 10", logline("up"))}},
            {"id": "divide", "type": "PythonCodeNode",
             "config": {"code": format!("{}result = 100 / (x - divisor)", logline("divide")), "divisor": 10}},
            {"id": "after", "type": "PythonCodeNode", "config": {"code": format!("{}result = y + 1", logline("after"))}}],
            "connections": [
                {"source": "up", "output": "result", "target": "divide", "input": "x"},
                {"source": "divide", "output": "result", "target": "after", "input": "y"}]})
        .to_string(),
    )
    .unwrap();
    let first = d.submit_wait(&wf, None);
    assert_eq!(first["status"], "failed", "{first}");
    let run_id = first["run_id"].as_str().unwrap().to_string();

    let o = d.kora(&["dlq", "list", "--workflow", "divide", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(id, format!("{run_id}:divide:0:1"));
    assert_eq!(list[0]["reason"], "permanent_error");
    assert_eq!(list[0]["inputs"]["x"], 10, "the inputs it failed with");
    assert!(
        list[0]["error"]
            .as_str()
            .unwrap()
            .contains("division by zero"),
        "{}",
        list[0]["error"]
    );
    let o = d.kora(&["dlq", "show", &id]);
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(
        shown.contains("reason permanent_error") && shown.contains("ZeroDivisionError"),
        "{shown}"
    );

    let o = d.kora(&["dlq", "replay", &id, "--set", "divisor=5"]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let status = d.wait_finished(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(status["results"]["divide"]["result"], 20.0);
    assert_eq!(status["results"]["after"]["result"], 21.0);
    let text = std::fs::read_to_string(&log).unwrap();
    let count = |n: &str| text.lines().filter(|l| *l == n).count();
    assert_eq!(
        (count("up"), count("divide"), count("after")),
        (1, 2, 1),
        "upstream not executed again:\n{text}"
    );
    // The audit trail, and no second replay of the same dead letter.
    let o = d.kora(&[
        "dlq",
        "list",
        "--any-state",
        "--run",
        &run_id,
        "--format",
        "json",
    ]);
    let all: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(all[0]["state"], "replayed");
    assert_eq!(all[0]["replayed_by"], "ops-test");
    assert_eq!(all[0]["replay_attempt"], 2);
    let o = d.kora(&["dlq", "replay", &id]);
    assert!(
        !o.status.success(),
        "a replayed dead letter is not replayed twice"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already replayed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    d.finish().await;
}

/// `kora runs retry` resumes a failed run from its failed node (here one that fails only on its
/// first attempt): the run succeeds; asking again finds nothing to resume.
#[tokio::test]
async fn runs_retry_resumes_a_failed_run_from_its_failed_node() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    d.serve("all", &[]);
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("once.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "nodes": [
            {"id": "a", "type": "NoOpNode", "config": {"data": 7}},
            {"id": "f", "type": "FailNode", "config": {"succeed_on_attempt": 2}},
            {"id": "z", "type": "NoOpNode"}],
            "connections": [
                {"source": "a", "output": "data", "target": "f", "input": "data"},
                {"source": "f", "output": "data", "target": "z", "input": "data"}]})
        .to_string(),
    )
    .unwrap();
    let first = d.submit_wait(&wf, None);
    assert_eq!(first["status"], "failed", "{first}");
    let run_id = first["run_id"].as_str().unwrap().to_string();
    let o = d.kora(&["runs", "retry", &run_id]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let status = d.wait_finished(&run_id, Duration::from_secs(30)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(status["results"]["z"]["data"], 7);
    let o = d.kora(&["runs", "retry", &run_id]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no open dead letter"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    d.finish().await;
}

/// `kora runs retry RUN --from NODE` restarts a run that succeeded from a middle node with a
/// changed input: that node and the one downstream of it run again (counted in an execution
/// log); the upstream node and an independent branch do not. From a node that is not in the
/// workflow, or while the run is running, it is refused with a clear message.
#[tokio::test]
async fn runs_retry_from_a_node_reruns_it_and_its_downstream_only() {
    let Some(mut d) = Deployment::new(&[("KORA_ACTOR", "ops-test")]).await else {
        return;
    };
    d.serve("all", &[]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("executions.log");
    let logline = |name: &str| {
        format!(
            "open({:?}, 'a').write('{name}\\n')\n",
            log.display().to_string()
        )
    };
    let wf = dir.path().join("scale.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "name": "scale", "nodes": [
            {"id": "up", "type": "PythonCodeNode", "config": {"code": format!("{}result = 3", logline("up"))}},
            {"id": "side", "type": "PythonCodeNode", "config": {"code": format!("{}result = 'side'", logline("side"))}},
            {"id": "mid", "type": "PythonCodeNode",
             "config": {"code": format!("{}result = x * factor", logline("mid")), "factor": 2}},
            {"id": "down", "type": "PythonCodeNode", "config": {"code": format!("{}result = y + 1", logline("down"))}}],
            "connections": [
                {"source": "up", "output": "result", "target": "mid", "input": "x"},
                {"source": "mid", "output": "result", "target": "down", "input": "y"}]})
        .to_string(),
    )
    .unwrap();
    let first = d.submit_wait(&wf, None);
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["results"]["down"]["result"], 7);
    let run_id = first["run_id"].as_str().unwrap().to_string();

    let o = d.kora(&["runs", "retry", &run_id, "--from", "nope"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has no node 'nope'"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = d.kora(&[
        "runs",
        "retry",
        &run_id,
        "--from",
        "mid",
        "--set",
        "factor=10",
    ]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("restarts from mid (attempt 2)"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let status = d.wait_finished(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(status["results"]["mid"]["result"], 30);
    assert_eq!(status["results"]["down"]["result"], 31);
    assert_eq!(status["results"]["side"]["result"], "side");
    let text = std::fs::read_to_string(&log).unwrap();
    let count = |n: &str| text.lines().filter(|l| *l == n).count();
    assert_eq!(
        (count("up"), count("side"), count("mid"), count("down")),
        (1, 1, 2, 2),
        "only mid and downstream ran again:\n{text}"
    );
    // The restart is in the run's history, with who asked.
    let restarts: Vec<&serde_json::Value> = status["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"] == "run_restarted")
        .collect();
    assert_eq!(restarts.len(), 1, "{status}");
    assert_eq!(restarts[0]["node_id"], "mid");
    assert_eq!(restarts[0]["detail"]["by"], "ops-test");
    // Restarting again from the same node works on the new attempt (numbering continues).
    let o = d.kora(&["runs", "retry", &run_id, "--from", "down"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let status = d.wait_finished(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status["status"], "succeeded", "{status}");
    let text = std::fs::read_to_string(&log).unwrap();
    let count = |n: &str| text.lines().filter(|l| *l == n).count();
    assert_eq!((count("mid"), count("down")), (2, 3), "{text}");
    d.finish().await;
}

/// Garbage on each role's subject (a run request, a ledger result, a task) is dead-lettered with
/// its reason, the roles keep serving (a run submitted afterwards succeeds), `kora dlq list
/// --poison` shows each one, and `kora dlq purge --poison SEQ` removes one.
#[tokio::test]
async fn poison_messages_are_dead_lettered_listed_and_purged() {
    let Some(mut d) = Deployment::new(&[]).await else {
        return;
    };
    d.serve("all", &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let prefix = d.prefix();
    let subjects = kora_model::subjects::Subjects::new(&prefix).unwrap();
    let broker = d.broker().await;
    use kora_broker::Broker;
    for subject in [
        subjects.run_submit(),
        subjects.ledger_result(),
        subjects.task(kora_model::subjects::DEFAULT_QUEUE),
    ] {
        broker
            .publish(kora_broker::Outbound::new(
                subject,
                b"\xc1 not msgpack".to_vec(),
            ))
            .await
            .unwrap();
    }
    let ok = d.submit_wait(&root().join("examples/diamond/workflow.json"), None);
    assert_eq!(ok["status"], "succeeded", "the roles still serve: {ok}");
    let list = loop {
        let o = d.kora(&["dlq", "list", "--poison", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
        if v.as_array().map_or(0, Vec::len) >= 3 {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut sources: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["source"].as_str().unwrap())
        .collect();
    sources.sort_unstable();
    assert_eq!(sources, ["ledger", "run", "task"], "{list}");
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|m| !m["reason"].as_str().unwrap().is_empty()),
        "each has its reason: {list}"
    );
    let seq = list[0]["sequence"].as_u64().unwrap().to_string();
    let o = d.kora(&["dlq", "purge", "--poison", &seq]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = d.kora(&["dlq", "list", "--poison", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    d.finish().await;
}

/// The coordinator is the only writer of run state: a replay asked for while no coordinator
/// runs changes nothing in the ledger (the dead letter stays open), `kora dlq replay` says the
/// request is kept, and the first coordinator to start applies it: the run resumes and
/// succeeds, with the replay recorded once, by who asked.
#[tokio::test]
async fn a_replay_waits_for_a_coordinator_and_is_applied_by_it() {
    let Some(mut d) = Deployment::new(&[("KORA_ACTOR", "night-shift")]).await else {
        return;
    };
    let all = d.serve("all", &[]);
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("divide.json");
    std::fs::write(
        &wf,
        serde_json::json!({"kora": 1, "name": "divide-later", "nodes": [
            {"id": "up", "type": "PythonCodeNode", "config": {"code": "result = 10"}},
            {"id": "divide", "type": "PythonCodeNode", "config": {"code": "result = 100 / (x - divisor)", "divisor": 10}},
            {"id": "after", "type": "PythonCodeNode", "config": {"code": "result = y + 1"}}],
            "connections": [{"source": "up", "output": "result", "target": "divide", "input": "x"},
                            {"source": "divide", "output": "result", "target": "after", "input": "y"}]})
        .to_string(),
    )
    .unwrap();
    let first = d.submit_wait(&wf, None);
    assert_eq!(first["status"], "failed", "{first}");
    let run_id = first["run_id"].as_str().unwrap().to_string();
    let id = format!("{run_id}:divide:0:1");
    // No coordinator from here on: only a scheduler and a worker.
    d.procs[all].kill().unwrap();
    d.procs[all].wait().unwrap();
    d.serve("scheduler,worker", &[]);
    let o = d.kora(&[
        "dlq",
        "replay",
        &id,
        "--set",
        "divisor=5",
        "--timeout",
        "2s",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "no coordinator answered: {err}");
    assert!(
        err.contains("no coordinator answered within 2s")
            && err.contains("applied when a coordinator runs"),
        "{err}"
    );
    let open = d.kora(&["dlq", "list", "--run", &run_id, "--format", "json"]);
    let open: serde_json::Value = serde_json::from_slice(&open.stdout).unwrap();
    assert_eq!(open[0]["state"], "open", "the CLI wrote nothing: {open}");
    d.serve("coordinator", &[]);
    let status = d
        .wait_status(&run_id, "succeeded", Duration::from_secs(60))
        .await;
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(status["results"]["divide"]["result"], 20.0);
    let o = d.kora(&[
        "dlq",
        "list",
        "--any-state",
        "--run",
        &run_id,
        "--format",
        "json",
    ]);
    let all: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    assert_eq!(all[0]["state"], "replayed");
    assert_eq!(all[0]["replayed_by"], "night-shift");
    assert_eq!(all[0]["replay_attempt"], 2);
    d.finish().await;
}
