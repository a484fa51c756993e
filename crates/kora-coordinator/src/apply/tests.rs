//! `apply`, table-style: planner actions in, rows and messages out.

use std::sync::Arc;

use kora_model::catalog::{NodeTypeInfo, ParamInfo};
use kora_model::plan::{Outcome, RunState};
use kora_model::subjects::Subjects;
use kora_model::wire::{self, EventKind, NodeTask};
use kora_model::{Map, WorkflowSpec};
use kora_store::{AttemptStatus, RunStatus};
use serde_json::json;

use super::apply;
use crate::pending::Pending;
use crate::state::ActiveRun;
use crate::task::Env;
use crate::{Config, RateLimit};

fn catalog() -> Vec<NodeTypeInfo> {
    let t = |name: &'static str, params: Vec<ParamInfo>, outputs: Vec<&'static str>| NodeTypeInfo {
        name,
        description: "",
        params,
        outputs,
        open_inputs: true,
        open_outputs: true,
        stop_on_error: false,
        is_switch: false,
        required_one_of: Vec::new(),
    };
    let mut switch = t(
        "SwitchNode",
        ["input_data", "condition_field", "operator", "value"]
            .into_iter()
            .map(|n| ParamInfo::optional(n, ""))
            .collect(),
        vec!["true_output", "false_output"],
    );
    switch.is_switch = true;
    vec![
        t(
            "NoOpNode",
            vec![ParamInfo::optional("data", "")],
            vec!["data"],
        ),
        switch,
        t(
            "WorkflowNode",
            vec![ParamInfo::optional("workflow", "")],
            vec!["results"],
        ),
    ]
}

fn env(cfg: Config) -> Env {
    Env {
        cfg,
        subjects: Subjects::default(),
        catalog: Arc::new(catalog()),
    }
}

fn run(doc: serde_json::Value) -> ActiveRun {
    let spec: WorkflowSpec = serde_json::from_value(doc).unwrap();
    let (compiled, _) = kora_model::compile(&spec, &catalog(), None).unwrap();
    ActiveRun::new(
        "r1".into(),
        RunState::new(compiled, &Map::new()).keep_leaf_outputs(false),
        1,
        None,
        None,
        kora_model::tenant::default_name(),
    )
}

fn ended(p: &Pending) -> Vec<(String, RunStatus)> {
    p.ended
        .iter()
        .map(|e| (e.run_id.clone(), e.status))
        .collect()
}

fn one_node(config: serde_json::Value) -> serde_json::Value {
    json!({"kora": 1, "id": "wf", "nodes": [{"id": "a", "type": "NoOpNode", "config": config}]})
}

/// Starts the run and applies what the planner decides.
fn started(env: &Env, mut r: ActiveRun) -> (ActiveRun, Pending) {
    let mut p = Pending::default();
    let actions = r.state.start(10);
    apply(env, &mut r, actions, 10, &mut p);
    (r, p)
}

fn kinds(p: &Pending) -> Vec<(u64, EventKind, Option<String>)> {
    p.batch
        .events
        .iter()
        .map(|e| (e.seq, e.kind, e.node_id.clone()))
        .collect()
}

#[test]
fn a_dispatch_is_a_row_and_a_task_sent_after_the_commit() {
    // (case, workflow-level priority, node config, expected subject)
    let cases = [
        ("default queue", "normal", json!({}), "kora.task.default"),
        (
            "own queue",
            "normal",
            json!({"queue": "gpu"}),
            "kora.task.gpu",
        ),
        ("high priority", "high", json!({}), "kora.task.default.high"),
    ];
    for (case, priority, config, subject) in cases {
        let mut doc = one_node(config);
        doc["priority"] = json!(priority);
        let e = env(Config::default());
        let (_, p) = started(&e, run(doc));
        let a = &p.batch.new_attempts;
        assert_eq!(a.len(), 1, "{case}");
        assert_eq!(
            (a[0].node_id.as_str(), a[0].attempt, a[0].status, a[0].at_ms),
            ("a", 1, AttemptStatus::Dispatched, 10),
            "{case}"
        );
        assert_eq!(p.publish.len(), 1, "{case}");
        assert_eq!(p.publish[0].subject, subject, "{case}");
        assert_eq!(p.publish[0].msg_id.as_deref(), Some("r1:a:0:1"), "{case}");
        let task: NodeTask = wire::decode(&p.publish[0].payload).unwrap();
        assert_eq!(
            (task.task_id.as_str(), task.attempt),
            ("r1:a:0:1", 1),
            "{case}"
        );
        assert_eq!(p.task_keys.len(), 1, "{case}");
        assert!(
            p.batch.outcomes.is_empty() && p.batch.events.is_empty(),
            "{case}"
        );
        assert!(p.paced.is_empty(), "{case}: no rate limit");
    }
}

#[test]
fn tasks_go_before_the_commit_only_where_that_is_safe() {
    let mut cfg = Config::default();
    cfg.rate_limits.insert(
        "email".into(),
        RateLimit {
            per_sec: 2.0,
            burst: 1,
        },
    );
    let e = env(cfg);
    // (case, node config, the batch creates the run, early allowed, published early)
    let cases = [
        (
            "a worker's task of a recorded run",
            json!({}),
            false,
            true,
            true,
        ),
        ("early publishing is off", json!({}), false, false, false),
        ("the batch creates the run", json!({}), true, true, false),
        (
            "a rate-limited queue",
            json!({"queue": "email"}),
            false,
            true,
            false,
        ),
    ];
    for (case, config, creates, allow, early) in cases {
        let mut r = run(one_node(config));
        let mut p = Pending::new(allow);
        if creates {
            p.expect_absent(&r.run_id);
        }
        let actions = r.state.start(10);
        apply(&e, &mut r, actions, 10, &mut p);
        assert_eq!(
            p.batch.new_attempts.len(),
            1,
            "{case}: the dispatch is a row either way"
        );
        assert_eq!(
            (p.early.len(), p.publish.len()),
            if early { (1, 0) } else { (0, 1) },
            "{case}"
        );
        if early {
            assert_eq!(p.early[0].0.msg_id.as_deref(), Some("r1:a:0:1"), "{case}");
            assert_eq!(p.early[0].1.node_id, "a", "{case}");
        }
    }
}

#[test]
fn a_rate_limited_queue_paces_its_dispatches() {
    let mut cfg = Config::default();
    cfg.rate_limits.insert(
        "email".into(),
        RateLimit {
            per_sec: 2.0,
            burst: 1,
        },
    );
    let (_, p) = started(&env(cfg), run(one_node(json!({"queue": "email"}))));
    assert_eq!(p.paced.len(), 1);
    let paced = &p.paced[0];
    assert_eq!(
        (
            paced.queue.as_str(),
            paced.publish,
            paced.row,
            paced.not_before
        ),
        ("email", Some(0), 0, 10)
    );
}

#[test]
fn a_restarted_node_takes_the_next_attempt_number() {
    let e = env(Config::default());
    let mut r = run(one_node(json!({})));
    r.attempts.insert((0, 0), 2);
    let (r, p) = started(&e, r);
    assert_eq!(p.batch.new_attempts[0].attempt, 3);
    assert_eq!(p.publish[0].msg_id.as_deref(), Some("r1:a:0:3"));
    assert_eq!(r.attempt_of(0, 0), 3);
}

#[test]
fn a_task_too_large_to_send_fails_its_node_and_its_run() {
    let cfg = Config {
        max_task_bytes: 64,
        ..Config::default()
    };
    // `a` is internal (it feeds `b`): by Kailash's rules its failure fails the run.
    let doc = json!({"kora": 1, "id": "wf",
        "nodes": [{"id": "a", "type": "NoOpNode", "config": {"data": "x".repeat(200)}},
                  {"id": "b", "type": "NoOpNode"}],
        "connections": [{"source": "a", "output": "data", "target": "b", "input": "data"}]});
    let (r, p) = started(&env(cfg), run(doc));
    assert!(
        p.publish
            .iter()
            .all(|m| !m.subject.starts_with("kora.task"))
    );
    let o = &p.batch.outcomes;
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].status, AttemptStatus::Failed);
    assert_eq!(o[0].error_type.as_deref(), Some("TaskTooLarge"));
    assert_eq!(
        o[0].dead_letter.as_ref().map(|(reason, _)| reason.as_str()),
        Some("TaskTooLarge")
    );
    assert_eq!(
        kinds(&p),
        [
            (2, EventKind::NodeFailed, Some("a".into())),
            (3, EventKind::RunFailed, None)
        ]
    );
    assert_eq!(p.batch.run_updates[0].status, RunStatus::Failed);
    assert_eq!(ended(&p), [("r1".to_string(), RunStatus::Failed)]);
    assert_eq!(p.finished, ["r1"]);
    assert_eq!(r.outcomes, 1, "the failure is an outcome the batch records");
    assert_eq!(
        p.expected.len(),
        1,
        "and the batch expects the run's outcome count"
    );
}

#[test]
fn a_success_that_ends_the_run_finishes_it() {
    let e = env(Config::default());
    let (mut r, _) = started(&e, run(one_node(json!({}))));
    let mut p = Pending::default();
    let actions = r
        .state
        .on_result(0, 0, Outcome::Success(Map::new()), 20)
        .unwrap();
    apply(&e, &mut r, actions, 20, &mut p);
    assert_eq!(kinds(&p), [(2, EventKind::RunSucceeded, None)]);
    assert_eq!(p.batch.run_updates[0].status, RunStatus::Succeeded);
    assert_eq!(ended(&p), [("r1".to_string(), RunStatus::Succeeded)]);
    assert_eq!(
        p.publish[0].subject, "kora.event.r1.run.run_succeeded",
        "events are published after the commit"
    );
    assert_eq!(p.publish[0].msg_id.as_deref(), Some("event:r1:2"));
}

#[test]
fn an_untaken_branch_is_recorded_skipped() {
    let e = env(Config::default());
    let doc = json!({"kora": 1, "id": "wf",
        "nodes": [{"id": "s", "type": "SwitchNode", "config": {"condition_field": "x", "operator": "==", "value": 1}},
                  {"id": "yes", "type": "NoOpNode"}, {"id": "no", "type": "NoOpNode"}],
        "connections": [{"source": "s", "output": "true_output", "target": "yes", "input": "data"},
                        {"source": "s", "output": "false_output", "target": "no", "input": "data"}]});
    let (mut r, _) = started(&e, run(doc));
    let mut p = Pending::default();
    let out = json!({"true_output": null, "false_output": {"x": 2}});
    let actions = r
        .state
        .on_result(0, 0, Outcome::Success(out.as_object().unwrap().clone()), 20)
        .unwrap();
    apply(&e, &mut r, actions, 20, &mut p);
    let rows: Vec<(&str, u32, AttemptStatus)> = p
        .batch
        .new_attempts
        .iter()
        .map(|a| (a.node_id.as_str(), a.attempt, a.status))
        .collect();
    assert!(
        rows.contains(&("yes", 0, AttemptStatus::Skipped)),
        "{rows:?}"
    );
    assert!(
        rows.contains(&("no", 1, AttemptStatus::Dispatched)),
        "{rows:?}"
    );
    assert!(kinds(&p).contains(&(2, EventKind::NodeSkipped, Some("yes".into()))));
}

#[test]
fn a_workflow_node_starts_a_child_run_or_fails_saying_why() {
    let child = json!({"kora": 1, "id": "child", "nodes": [{"id": "c", "type": "NoOpNode"}]});
    let cases = [
        ("a valid child", json!({"workflow": child}), true),
        ("no workflow", json!({}), false),
        (
            "an unknown node type",
            json!({"workflow": {"kora": 1, "id": "x", "nodes": [{"id": "c", "type": "Nope"}]}}),
            false,
        ),
    ];
    for (case, config, starts) in cases {
        let doc = json!({"kora": 1, "id": "wf", "nodes": [{"id": "w", "type": "WorkflowNode", "config": config}]});
        let (_, p) = started(&env(Config::default()), run(doc));
        if starts {
            assert_eq!(p.publish.len(), 1, "{case}");
            assert_eq!(p.publish[0].subject, "kora.run.submit", "{case}");
            let req: wire::RunRequest = wire::decode(&p.publish[0].payload).unwrap();
            assert_eq!(req.parent.as_deref(), Some("r1:w:0:1"), "{case}");
            assert_eq!(
                p.publish[0].msg_id.as_deref(),
                Some(format!("run:{}", req.run_id).as_str()),
                "{case}: a re-send is the same child"
            );
        } else {
            let o = &p.batch.outcomes[0];
            assert_eq!(
                o.error_type.as_deref(),
                Some("ChildWorkflowError"),
                "{case}"
            );
            assert!(o.error.as_deref().unwrap().contains("node 'w'"), "{case}");
        }
    }
}

#[test]
fn the_same_actions_make_the_same_batch() {
    let e = env(Config::default());
    let doc = json!({"kora": 1, "id": "wf",
        "nodes": [{"id": "a", "type": "NoOpNode"}, {"id": "b", "type": "NoOpNode"}, {"id": "c", "type": "NoOpNode"}]});
    let (_, p1) = started(&e, run(doc.clone()));
    let (_, p2) = started(&e, run(doc));
    assert_eq!(p1.batch, p2.batch);
    let subjects = |p: &Pending| -> Vec<(String, Option<String>)> {
        p.publish
            .iter()
            .map(|m| (m.subject.clone(), m.msg_id.clone()))
            .collect()
    };
    assert_eq!(subjects(&p1), subjects(&p2));
    assert_eq!(p1.batch.new_attempts.len(), 3);
}
