//! The store contract: each check written once, run against every [`Store`].
//! Each check uses run ids under its own unique `ns`, so checks can share a database.

// Contract checks are assertions: a failed call is a failed check.
#![allow(clippy::unwrap_used)]

use kora_model::wire::{EventKind, RunEvent, WIRE_VERSION};
use kora_model::{Map, WorkflowSpec};
use serde_json::json;

use crate::{
    AttemptKey, AttemptStatus, AttemptUpdate, Batch, DeadLetterFilter, Expect, NewAttempt, NewRun,
    ReplayRequest, RunFilter, RunStatus, RunUpdate, Store,
};

fn spec() -> WorkflowSpec {
    serde_json::from_value(
        json!({"kora": 1, "id": "wf", "name": "demo", "nodes": [{"id": "a", "type": "NoOpNode"}]}),
    )
    .expect("valid spec")
}

fn new_run(id: &str, key: Option<&str>) -> NewRun {
    NewRun {
        run_id: id.into(),
        idempotency_key: key.map(String::from),
        spec: Some(spec()),
        params: Map::new(),
        status: RunStatus::Running,
        error: None,
        at_ms: 1,
        concurrency: None,
        deadline_ms: None,
        parent: None,
    }
}

fn attempt(run: &str, node: &str, attempt: u32) -> NewAttempt {
    NewAttempt {
        run_id: run.into(),
        node_id: node.into(),
        iteration: 0,
        attempt,
        node_type: "NoOpNode".into(),
        status: AttemptStatus::Dispatched,
        at_ms: 2,
    }
}

fn outcome(run: &str, node: &str, attempt: u32, v: i64) -> AttemptUpdate {
    AttemptUpdate {
        run_id: run.into(),
        node_id: node.into(),
        iteration: 0,
        attempt,
        status: AttemptStatus::Succeeded,
        output: Some(json!({"data": v})),
        error: None,
        error_type: None,
        worker_id: Some("w1".into()),
        at_ms: 3,
        dead_letter: None,
    }
}

fn event(run: &str, seq: u64) -> RunEvent {
    RunEvent {
        v: WIRE_VERSION,
        event_id: format!("{run}:{seq}"),
        run_id: run.into(),
        seq,
        kind: EventKind::NodeSucceeded,
        node_id: Some("a".into()),
        iteration: 0,
        attempt: 1,
        at_ms: 3,
        detail: None,
    }
}

/// A run, its attempts, outcomes and events round-trip; a run is created once.
pub async fn records_a_run(s: &dyn Store, ns: &str) {
    let run = format!("{ns}-r1");
    let r = s
        .commit(Batch {
            new_runs: vec![new_run(&run, Some(&format!("{ns}-key")))],
            new_attempts: vec![attempt(&run, "a", 1)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.runs_existing, 0);
    let r = s
        .commit(Batch {
            new_runs: vec![new_run(&run, None)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.runs_existing, 1, "a run is created once");
    s.commit(Batch {
        outcomes: vec![outcome(&run, "a", 1, 7)],
        run_updates: vec![RunUpdate {
            run_id: run.clone(),
            status: RunStatus::Succeeded,
            error: None,
            error_node: None,
            at_ms: 4,
        }],
        events: vec![event(&run, 1), event(&run, 1), event(&run, 2)],
        ..Default::default()
    })
    .await
    .unwrap();
    let rec = s.run(&run).await.unwrap().expect("run exists");
    assert_eq!(rec.status, RunStatus::Succeeded);
    assert_eq!(rec.workflow_name, "demo");
    assert_eq!(rec.spec, Some(spec()));
    assert_eq!(rec.finished_ms, Some(4));
    let by_key = s
        .run_by_key(&format!("{ns}-key"))
        .await
        .unwrap()
        .expect("found by key");
    assert_eq!(by_key.run_id, run);
    let atts = s.attempts(&run).await.unwrap();
    assert_eq!(atts.len(), 1);
    assert_eq!(atts[0].output, Some(json!({"data": 7})));
    assert_eq!(atts[0].seq, Some(1));
    assert_eq!(
        s.events(&run).await.unwrap().len(),
        2,
        "events are deduplicated by seq"
    );
    assert_eq!(
        rec.event_seq, 2,
        "the run row keeps its highest event sequence"
    );
    assert!(s.run(&format!("{ns}-missing")).await.unwrap().is_none());
}

/// A second outcome for the same attempt is ignored and counted; a finished run stays finished.
pub async fn fences_duplicate_outcomes(s: &dyn Store, ns: &str) {
    let run = format!("{ns}-r2");
    s.commit(Batch {
        new_runs: vec![new_run(&run, None)],
        new_attempts: vec![attempt(&run, "a", 1), attempt(&run, "a", 1)],
        ..Default::default()
    })
    .await
    .unwrap();
    let first = s
        .commit(Batch {
            outcomes: vec![outcome(&run, "a", 1, 1)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first.outcomes_ignored, 0);
    let dup = s
        .commit(Batch {
            outcomes: vec![outcome(&run, "a", 1, 2), outcome(&run, "b", 1, 2)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        dup.outcomes_ignored, 2,
        "duplicate and unknown attempts are fenced"
    );
    assert_eq!(
        s.attempts(&run).await.unwrap()[0].output,
        Some(json!({"data": 1}))
    );
    let fail = RunUpdate {
        run_id: run.clone(),
        status: RunStatus::Failed,
        error: Some("x".into()),
        error_node: Some("a".into()),
        at_ms: 5,
    };
    let ok = RunUpdate {
        status: RunStatus::Succeeded,
        ..fail.clone()
    };
    s.commit(Batch {
        run_updates: vec![fail, ok],
        ..Default::default()
    })
    .await
    .unwrap();
    let rec = s.run(&run).await.unwrap().unwrap();
    assert_eq!(rec.status, RunStatus::Failed);
    assert_eq!(rec.error_node.as_deref(), Some("a"));
}

/// Outcomes are listed in recording order: the order the planner must replay them in.
pub async fn lists_in_order(s: &dyn Store, ns: &str) {
    let run = format!("{ns}-r3");
    s.commit(Batch {
        new_runs: vec![new_run(&run, None)],
        new_attempts: vec![
            attempt(&run, "x", 1),
            attempt(&run, "y", 1),
            attempt(&run, "z", 1),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    s.commit(Batch {
        outcomes: vec![outcome(&run, "z", 1, 1)],
        ..Default::default()
    })
    .await
    .unwrap();
    s.commit(Batch {
        outcomes: vec![outcome(&run, "x", 1, 2)],
        ..Default::default()
    })
    .await
    .unwrap();
    let order: Vec<String> = s
        .attempts(&run)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.node_id)
        .collect();
    assert_eq!(order, ["z", "x", "y"]);
    let other = format!("{ns}-r4");
    s.commit(Batch {
        new_runs: vec![NewRun {
            status: RunStatus::Rejected,
            spec: None,
            error: Some("bad".into()),
            ..new_run(&other, None)
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let rejected = s
        .runs(&RunFilter {
            status: Some(RunStatus::Rejected),
            limit: 100,
        })
        .await
        .unwrap();
    assert!(
        rejected
            .iter()
            .any(|r| r.run_id == other && r.spec.is_none())
    );
    assert!(!rejected.iter().any(|r| r.run_id == run));
}

/// An attempt created and finished in the same batch is recorded with its outcome.
pub async fn attempt_and_outcome_in_one_batch(s: &dyn Store, ns: &str) {
    let run = format!("{ns}-r5");
    s.commit(Batch {
        new_runs: vec![new_run(&run, None)],
        ..Default::default()
    })
    .await
    .unwrap();
    let r = s
        .commit(Batch {
            new_attempts: vec![attempt(&run, "a", 1)],
            outcomes: vec![outcome(&run, "a", 1, 9)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.outcomes_ignored, 0);
    let a = &s.attempts(&run).await.unwrap()[0];
    assert_eq!(a.status, AttemptStatus::Succeeded);
    assert_eq!(a.output, Some(json!({"data": 9})));
}

/// Expectations let several writers share runs: a stale outcome count, or creating a run that
/// exists, fails the whole batch with a conflict and writes nothing.
pub async fn expectations_guard_concurrent_writers(s: &dyn Store, ns: &str) {
    let run = format!("{ns}-r6");
    let absent = || Expect::Absent {
        run_id: run.clone(),
    };
    let count = |n| Expect::Outcomes {
        run_id: run.clone(),
        count: n,
    };
    s.commit(Batch {
        expect: vec![absent()],
        new_runs: vec![new_run(&run, None)],
        new_attempts: vec![attempt(&run, "a", 1), attempt(&run, "b", 1)],
        ..Default::default()
    })
    .await
    .unwrap();
    let e = s
        .commit(Batch {
            expect: vec![absent()],
            new_runs: vec![new_run(&run, None)],
            new_attempts: vec![attempt(&run, "c", 1)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(e, crate::Error::Conflict { .. }), "{e}");
    assert_eq!(
        s.attempts(&run).await.unwrap().len(),
        2,
        "a conflicting batch writes nothing"
    );
    s.commit(Batch {
        expect: vec![count(0)],
        outcomes: vec![outcome(&run, "a", 1, 1)],
        ..Default::default()
    })
    .await
    .unwrap();
    let e = s
        .commit(Batch {
            expect: vec![count(0)],
            outcomes: vec![outcome(&run, "b", 1, 2)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e, crate::Error::Conflict { .. }),
        "a stale count conflicts: {e}"
    );
    let b = s
        .attempts(&run)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.node_id == "b")
        .unwrap();
    assert_eq!(
        b.status,
        AttemptStatus::Dispatched,
        "the conflicting outcome was not written"
    );
    s.commit(Batch {
        expect: vec![count(1)],
        outcomes: vec![outcome(&run, "b", 1, 2)],
        ..Default::default()
    })
    .await
    .unwrap();
    let missing = Expect::Outcomes {
        run_id: format!("{ns}-nope"),
        count: 0,
    };
    assert!(
        s.commit(Batch {
            expect: vec![missing],
            ..Default::default()
        })
        .await
        .is_err(),
        "a missing run conflicts"
    );
}

/// The outbox: dispatched attempts whose task was never marked published are listed once old
/// enough, until they are marked or the run ends.
pub async fn outbox_lists_unpublished_dispatches(s: &dyn Store, ns: &str) {
    let run = format!("{ns}-r7");
    s.commit(Batch {
        new_runs: vec![new_run(&run, None)],
        new_attempts: vec![attempt(&run, "a", 1), attempt(&run, "b", 1)],
        ..Default::default()
    })
    .await
    .unwrap();
    let key = |node: &str| AttemptKey {
        run_id: run.clone(),
        node_id: node.into(),
        iteration: 0,
        attempt: 1,
    };
    s.mark_published(&[key("a")], 3).await.unwrap();
    let mine = |v: Vec<AttemptKey>| {
        v.into_iter()
            .filter(|k| k.run_id == run)
            .map(|k| k.node_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(mine(s.unpublished(10, 1000).await.unwrap()), ["b"]);
    assert!(
        mine(s.unpublished(1, 1000).await.unwrap()).is_empty(),
        "too recent to be lost"
    );
    s.commit(Batch {
        run_updates: vec![RunUpdate {
            run_id: run.clone(),
            status: RunStatus::Failed,
            error: None,
            error_node: None,
            at_ms: 4,
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        mine(s.unpublished(10, 1000).await.unwrap()).is_empty(),
        "a finished run needs no re-publish"
    );
}

/// A large batch (a fan-out's worth of results for two runs, with duplicates and strays) is
/// recorded like the same outcomes one at a time: the first outcome per attempt wins, each run's
/// outcomes are numbered 1.. in batch order, and the rest are fenced and counted.
pub async fn large_batches_number_and_fence_like_small_ones(s: &dyn Store, ns: &str) {
    let (r1, r2) = (format!("{ns}-big1"), format!("{ns}-big2"));
    let nodes: Vec<String> = (0..40).map(|i| format!("n{i:02}")).collect();
    let mut first = Batch {
        new_runs: vec![new_run(&r1, None), new_run(&r2, None)],
        ..Default::default()
    };
    for n in &nodes {
        first.new_attempts.push(attempt(&r1, n, 1));
        first.new_attempts.push(attempt(&r2, n, 1));
    }
    s.commit(first).await.unwrap();
    let mut outcomes = Vec::new();
    // r1 in reverse node order, r2 in order, interleaved; every 5th r1 node reported twice
    // (the second with another value) and two strays for attempts that were never dispatched.
    for (i, n) in nodes.iter().enumerate() {
        let back = &nodes[nodes.len() - 1 - i];
        outcomes.push(outcome(&r1, back, 1, i as i64));
        outcomes.push(outcome(&r2, n, 1, i as i64));
        if i % 5 == 0 {
            outcomes.push(outcome(&r1, back, 1, 1000 + i as i64));
        }
    }
    outcomes.push(outcome(&r1, "nowhere", 1, 0));
    outcomes.push(outcome(&r2, "n00", 2, 0));
    let report = s
        .commit(Batch {
            expect: vec![
                Expect::Outcomes {
                    run_id: r1.clone(),
                    count: 0,
                },
                Expect::Outcomes {
                    run_id: r2.clone(),
                    count: 0,
                },
            ],
            outcomes,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        report.outcomes_ignored,
        8 + 2,
        "duplicates and strays fenced"
    );
    let a1 = s.attempts(&r1).await.unwrap();
    let seqs: Vec<u64> = a1.iter().filter_map(|a| a.seq).collect();
    assert_eq!(
        seqs,
        (1..=40).collect::<Vec<u64>>(),
        "numbered without gaps"
    );
    assert_eq!(a1[0].node_id, "n39", "in batch order");
    assert_eq!(
        a1[0].output,
        Some(json!({"data": 0})),
        "the first report wins"
    );
    let a2 = s.attempts(&r2).await.unwrap();
    assert_eq!(a2[39].node_id, "n39");
    assert_eq!(a2[39].seq, Some(40));
    // The counts moved on: a writer still expecting 0 is refused.
    let stale = s
        .commit(Batch {
            expect: vec![Expect::Outcomes {
                run_id: r2.clone(),
                count: 0,
            }],
            events: vec![event(&r2, 1)],
            ..Default::default()
        })
        .await;
    assert!(matches!(stale, Err(crate::Error::Conflict { .. })));
}

/// A failed attempt recorded as a dead letter is listed (with filters), shown with its inputs,
/// replayed once (a new attempt with the overrides, the other in-flight node dispatched afresh,
/// the run reopened, the audit trail kept), refused a second time, and purged.
pub async fn dead_letters_list_replay_and_purge(s: &dyn Store, ns: &str) {
    let run = format!("{ns}-dl");
    let mut inputs = Map::new();
    inputs.insert("data".into(), json!(1));
    s.commit(Batch {
        new_runs: vec![new_run(&run, None)],
        new_attempts: vec![attempt(&run, "a", 1), attempt(&run, "b", 1)],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut failed = outcome(&run, "a", 1, 0);
    failed.status = AttemptStatus::Failed;
    failed.output = None;
    failed.error = Some("boom".into());
    failed.error_type = Some("ValueError".into());
    failed.dead_letter = Some(("permanent_error".into(), inputs.clone()));
    s.commit(Batch {
        outcomes: vec![failed],
        run_updates: vec![RunUpdate {
            run_id: run.clone(),
            status: RunStatus::Failed,
            error: Some("node 'a' failed: boom".into()),
            error_node: Some("a".into()),
            at_ms: 4,
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let mine = DeadLetterFilter {
        run_id: Some(run.clone()),
        ..Default::default()
    };
    let listed = s.dead_letters(&mine).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let dl = &listed[0];
    assert_eq!(dl.id, format!("{run}:a:0:1"));
    assert_eq!(dl.run_status, RunStatus::Failed);
    let info = dl.attempt.dead_letter.as_ref().unwrap();
    assert_eq!(
        (info.reason.as_str(), info.state.as_str()),
        ("permanent_error", "open")
    );
    assert_eq!(info.inputs.as_ref(), Some(&inputs));
    assert_eq!(dl.attempt.error.as_deref(), Some("boom"));
    let other_reason = DeadLetterFilter {
        reason: Some("retries_exhausted".into()),
        ..mine.clone()
    };
    assert!(s.dead_letters(&other_reason).await.unwrap().is_empty());
    let later = DeadLetterFilter {
        since_ms: Some(4),
        ..mine.clone()
    };
    assert!(
        s.dead_letters(&later).await.unwrap().is_empty(),
        "finished at 3"
    );
    let by_id = |id: String| DeadLetterFilter {
        id: Some(id),
        ..mine.clone()
    };
    assert_eq!(
        s.dead_letters(&by_id(dl.id.clone())).await.unwrap().len(),
        1
    );
    assert!(
        s.dead_letters(&by_id(format!("{run}:b:0:1")))
            .await
            .unwrap()
            .is_empty(),
        "b was not dead-lettered"
    );

    let mut set = Map::new();
    set.insert("data".into(), json!(2));
    let out = s
        .replay(&ReplayRequest {
            id: dl.id.clone(),
            overrides: set.clone(),
            actor: "tester".into(),
            at_ms: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((out.node_id.as_str(), out.attempt), ("a", 2));
    assert_eq!(out.redispatched.len(), 1, "b was in flight: {out:?}");
    assert_eq!(out.redispatched[0].node_id, "b");
    assert_eq!(out.redispatched[0].attempt, 2);
    let rec = s.run(&run).await.unwrap().unwrap();
    assert_eq!(rec.status, RunStatus::Running, "reopened");
    assert_eq!(rec.error, None);
    let atts = s.attempts(&run).await.unwrap();
    let a2 = atts
        .iter()
        .find(|x| x.node_id == "a" && x.attempt == 2)
        .unwrap();
    assert_eq!(a2.status, AttemptStatus::Dispatched);
    assert_eq!(a2.overrides.as_ref(), Some(&set));
    assert!(
        s.dead_letters(&mine).await.unwrap().is_empty(),
        "no longer open"
    );
    let all = s
        .dead_letters(&DeadLetterFilter {
            any_state: true,
            ..mine.clone()
        })
        .await
        .unwrap();
    let info = all[0].attempt.dead_letter.as_ref().unwrap();
    assert_eq!(info.state, "replayed");
    assert_eq!(info.replayed_by.as_deref(), Some("tester"));
    assert_eq!((info.replayed_ms, info.replay_attempt), (Some(10), Some(2)));
    let again = s
        .replay(&ReplayRequest {
            id: dl.id.clone(),
            overrides: Map::new(),
            actor: "tester".into(),
            at_ms: 11,
            ..Default::default()
        })
        .await;
    assert!(
        matches!(again, Err(crate::Error::Conflict { .. })),
        "{again:?}"
    );

    // A second failure of the replayed attempt is a new dead letter, which purge closes.
    let mut failed2 = outcome(&run, "a", 2, 0);
    failed2.status = AttemptStatus::Failed;
    failed2.output = None;
    failed2.error = Some("boom again".into());
    failed2.dead_letter = Some(("permanent_error".into(), inputs));
    s.commit(Batch {
        outcomes: vec![failed2],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(s.dead_letters(&mine).await.unwrap().len(), 1);
    assert_eq!(s.purge_dead_letters(&mine).await.unwrap(), 1);
    assert!(s.dead_letters(&mine).await.unwrap().is_empty());
    assert_eq!(s.purge_dead_letters(&mine).await.unwrap(), 0);
}

/// Triggers are registered, listed, replaced (keeping their creation time), paused and resumed.
pub async fn triggers_register_pause_and_resume(s: &dyn Store, ns: &str) {
    let name = format!("{ns}-orders");
    let mut t = crate::TriggerRecord {
        name: name.clone(),
        subject: "shop.orders".into(),
        schedule: None,
        spec: spec(),
        params: Map::new(),
        paused: false,
        created_ms: 5,
        updated_ms: 5,
    };
    s.put_trigger(&t).await.unwrap();
    t.subject = "shop.orders.v2".into();
    t.created_ms = 9;
    t.updated_ms = 9;
    s.put_trigger(&t).await.unwrap();
    let mine = |all: Vec<crate::TriggerRecord>| all.into_iter().find(|x| x.name == name);
    let got = mine(s.triggers().await.unwrap()).unwrap();
    assert_eq!(got.subject, "shop.orders.v2");
    assert_eq!((got.created_ms, got.updated_ms), (5, 9), "created once");
    assert_eq!(got.spec, spec());
    assert!(s.set_trigger_paused(&name, true, 12).await.unwrap());
    assert!(mine(s.triggers().await.unwrap()).unwrap().paused);
    assert!(s.set_trigger_paused(&name, false, 13).await.unwrap());
    assert!(!mine(s.triggers().await.unwrap()).unwrap().paused);
    assert!(
        !s.set_trigger_paused(&format!("{ns}-none"), true, 14)
            .await
            .unwrap()
    );
}

/// Concurrency limits hold in the ledger: a commit that would leave a group with more running
/// runs than its limit is a conflict; queued runs do not count, start oldest first as slots
/// free, and can be cancelled while queued. Deadlines are listed once due.
pub async fn concurrency_limits_and_deadlines(s: &dyn Store, ns: &str) {
    let g = format!("{ns}-group");
    let id = |n: u32| format!("{ns}-c{n}");
    let run = |n: u32, status: RunStatus| NewRun {
        status,
        at_ms: u64::from(n),
        concurrency: Some((g.clone(), 2)),
        deadline_ms: Some(100),
        ..new_run(&id(n), None)
    };
    let conflict = |r: crate::Result<crate::CommitReport>| {
        assert!(
            matches!(r, Err(crate::Error::Conflict { .. })),
            "expected a conflict, got {r:?}"
        );
    };
    let update = |n: u32, status: RunStatus| RunUpdate {
        run_id: id(n),
        status,
        error: None,
        error_node: None,
        at_ms: 50,
    };
    let batch = |new_runs: Vec<NewRun>| Batch {
        new_runs,
        ..Default::default()
    };
    s.commit(batch(vec![
        run(1, RunStatus::Running),
        run(2, RunStatus::Running),
    ]))
    .await
    .unwrap();
    conflict(s.commit(batch(vec![run(3, RunStatus::Running)])).await);
    assert!(s.run(&id(3)).await.unwrap().is_none(), "nothing written");
    s.commit(batch(vec![
        run(3, RunStatus::Queued),
        run(4, RunStatus::Queued),
    ]))
    .await
    .unwrap();
    assert_eq!(s.concurrency_usage(&g).await.unwrap(), (2, 2));
    let groups = [g.clone()];
    assert!(
        s.startable_runs(Some(&groups), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A finish in the same batch as a start makes room for it.
    s.commit(Batch {
        run_updates: vec![update(1, RunStatus::Succeeded)],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(s.startable_runs(Some(&groups), 10).await.unwrap(), [id(3)]);
    let start = |ns: &[u32]| Batch {
        expect: ns
            .iter()
            .map(|n| Expect::Queued { run_id: id(*n) })
            .collect(),
        run_updates: ns.iter().map(|n| update(*n, RunStatus::Running)).collect(),
        ..Default::default()
    };
    conflict(s.commit(start(&[3, 4])).await);
    assert_eq!(
        s.run(&id(3)).await.unwrap().unwrap().status,
        RunStatus::Queued
    );
    s.commit(start(&[3])).await.unwrap();
    conflict(s.commit(start(&[3])).await);
    assert_eq!(
        s.run(&id(3)).await.unwrap().unwrap().status,
        RunStatus::Running
    );
    s.commit(Batch {
        run_updates: vec![update(4, RunStatus::Cancelled)],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        s.run(&id(4)).await.unwrap().unwrap().status,
        RunStatus::Cancelled
    );
    assert_eq!(s.concurrency_usage(&g).await.unwrap(), (2, 0));
    let mine = |v: Vec<(String, u64)>| -> Vec<String> {
        let mut v: Vec<String> = v
            .into_iter()
            .filter(|(r, d)| r.starts_with(ns) && *d == 100)
            .map(|(r, _)| r)
            .collect();
        v.sort();
        v
    };
    assert!(mine(s.overdue_runs(99, 100).await.unwrap()).is_empty());
    assert_eq!(
        mine(s.overdue_runs(100, 100).await.unwrap()),
        [id(2), id(3)]
    );
}

/// Rate reservations on one queue follow each other: each begins where the last ended, or at
/// its `not_before` when the queue has been idle since.
pub async fn rate_reservations_follow_each_other(s: &dyn Store, ns: &str) {
    let q = format!("{ns}-queue");
    assert_eq!(s.reserve_rate(&q, 100.0, 5, 1000.0).await.unwrap(), 1000.0);
    assert_eq!(s.reserve_rate(&q, 100.0, 2, 1200.0).await.unwrap(), 1500.0);
    assert_eq!(s.reserve_rate(&q, 100.0, 1, 1650.0).await.unwrap(), 1700.0);
    // Idle past the last reservation: it begins at not_before.
    assert_eq!(s.reserve_rate(&q, 100.0, 1, 9000.0).await.unwrap(), 9000.0);
    let other = format!("{ns}-other");
    assert_eq!(
        s.reserve_rate(&other, 100.0, 1, 1000.0).await.unwrap(),
        1000.0
    );
}

/// A run that ended restarts from a node: a new attempt of it, its downstream nodes' open dead
/// letters closed as replayed, the run reopened. Refused while the run is running, or from an
/// attempt that is not the node's latest.
pub async fn runs_restart_from_a_node(s: &dyn Store, ns: &str) {
    let run = format!("{ns}-restart");
    let mut failed = outcome(&run, "c", 1, 0);
    failed.status = AttemptStatus::Failed;
    failed.output = None;
    failed.error = Some("boom".into());
    failed.dead_letter = Some(("permanent_error".into(), Map::new()));
    s.commit(Batch {
        new_runs: vec![new_run(&run, None)],
        new_attempts: vec![
            attempt(&run, "a", 1),
            attempt(&run, "b", 1),
            attempt(&run, "c", 1),
        ],
        outcomes: vec![outcome(&run, "a", 1, 1), outcome(&run, "b", 1, 2), failed],
        ..Default::default()
    })
    .await
    .unwrap();
    let restart = |id: String, at_ms: u64| ReplayRequest {
        id,
        actor: "op".into(),
        at_ms,
        restart: Some(vec!["b".into(), "c".into()]),
        ..Default::default()
    };
    let running = s.replay(&restart(format!("{run}:a:0:1"), 5)).await;
    assert!(
        matches!(running, Err(crate::Error::Conflict { .. })),
        "{running:?}"
    );
    s.commit(Batch {
        run_updates: vec![RunUpdate {
            run_id: run.clone(),
            status: RunStatus::Failed,
            error: Some("boom".into()),
            error_node: Some("c".into()),
            at_ms: 6,
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let out = s.replay(&restart(format!("{run}:a:0:1"), 7)).await.unwrap();
    assert_eq!((out.node_id.as_str(), out.attempt), ("a", 2));
    assert!(out.redispatched.is_empty(), "{out:?}");
    let rec = s.run(&run).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.error), (RunStatus::Running, None));
    let open = s
        .dead_letters(&DeadLetterFilter {
            run_id: Some(run.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(open.is_empty(), "c's dead letter closed: {open:?}");
    let a2 = s
        .attempts(&run)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.node_id == "a" && a.attempt == 2)
        .unwrap();
    assert_eq!(a2.status, AttemptStatus::Dispatched);
    let audit = s.events(&run).await.unwrap();
    let restarted = audit
        .iter()
        .find(|e| e.kind == EventKind::RunRestarted)
        .expect("the restart is in the run's events");
    assert_eq!(restarted.detail.as_ref().unwrap()["by"], "op");
    assert_eq!(restarted.node_id.as_deref(), Some("a"));
    // Ended again, the first attempt is no longer the latest.
    s.commit(Batch {
        run_updates: vec![RunUpdate {
            run_id: run.clone(),
            status: RunStatus::Cancelled,
            error: None,
            error_node: None,
            at_ms: 8,
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let stale = s.replay(&restart(format!("{run}:a:0:1"), 9)).await;
    assert!(
        matches!(stale, Err(crate::Error::Conflict { .. })),
        "{stale:?}"
    );
}

/// An idempotency key belongs to one run: another run with it is a conflict (nothing
/// written); a submission can be recorded as an alias of the run; a released key (past its
/// window) goes to a new run and the old run no longer holds it.
pub async fn idempotency_keys_alias_and_release(s: &dyn Store, ns: &str) {
    let key = format!("{ns}-idem");
    let id = |n: u32| format!("{ns}-k{n}");
    s.commit(Batch {
        new_runs: vec![new_run(&id(1), Some(&key))],
        ..Default::default()
    })
    .await
    .unwrap();
    let taken = s
        .commit(Batch {
            new_runs: vec![new_run(&id(2), Some(&key))],
            new_attempts: vec![attempt(&id(2), "a", 1)],
            ..Default::default()
        })
        .await;
    assert!(
        matches!(taken, Err(crate::Error::Conflict { .. })),
        "{taken:?}"
    );
    assert!(s.run(&id(2)).await.unwrap().is_none());
    s.commit(Batch {
        aliases: vec![crate::Alias {
            alias: id(2),
            run_id: id(1),
            at_ms: 5,
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(s.alias_of(&id(2)).await.unwrap(), Some(id(1)));
    assert_eq!(s.alias_of(&id(1)).await.unwrap(), None);
    s.commit(Batch {
        release_keys: vec![key.clone()],
        new_runs: vec![new_run(&id(3), Some(&key))],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(s.run_by_key(&key).await.unwrap().unwrap().run_id, id(3));
    assert_eq!(s.run(&id(1)).await.unwrap().unwrap().idempotency_key, None);
}

/// Audit entries are written once per (attempt, index), listed newest first and filtered.
pub async fn audit_entries_are_written_once(s: &dyn Store, ns: &str) {
    let run = format!("{ns}-audit");
    let entry = |idx: u32, at_ms: u64, t: &str| crate::AuditEntry {
        run_id: run.clone(),
        node_id: "a".into(),
        iteration: 0,
        attempt: 1,
        idx,
        at_ms,
        entry: json!({"event_type": t, "user_id": "u1", "message": format!("m{idx}")}),
    };
    for _ in 0..2 {
        s.commit(Batch {
            new_runs: vec![new_run(&run, None)],
            audit: vec![entry(0, 10, "login"), entry(1, 11, "export")],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mine = crate::AuditFilter {
        run_id: Some(run.clone()),
        ..Default::default()
    };
    let all = s.audit_log(&mine).await.unwrap();
    assert_eq!(all.len(), 2, "written once: {all:?}");
    assert_eq!(all[0].entry["message"], "m1", "newest first");
    let exports = s
        .audit_log(&crate::AuditFilter {
            event_type: Some("export".into()),
            ..mine.clone()
        })
        .await
        .unwrap();
    assert_eq!(exports.len(), 1);
    let since = s
        .audit_log(&crate::AuditFilter {
            since_ms: Some(11),
            ..mine
        })
        .await
        .unwrap();
    assert_eq!(since.len(), 1);
}

/// A child run keeps its parent attempt; once it ends it is listed as unreported until marked.
pub async fn child_runs_are_listed_until_reported(s: &dyn Store, ns: &str) {
    let child = format!("{ns}-child");
    s.commit(Batch {
        new_runs: vec![NewRun {
            parent: Some(format!("{ns}-parent:wf:0:1")),
            ..new_run(&child, None)
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let mine = |v: Vec<crate::RunRecord>| v.into_iter().filter(|r| r.run_id == child).count();
    assert_eq!(
        mine(s.unreported_children(u64::MAX, 100).await.unwrap()),
        0,
        "running"
    );
    s.commit(Batch {
        run_updates: vec![RunUpdate {
            run_id: child.clone(),
            status: RunStatus::Succeeded,
            error: None,
            error_node: None,
            at_ms: 20,
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        mine(s.unreported_children(19, 100).await.unwrap()),
        0,
        "not yet old enough"
    );
    let listed = s.unreported_children(20, 100).await.unwrap();
    assert_eq!(mine(listed.clone()), 1);
    let rec = listed.into_iter().find(|r| r.run_id == child).unwrap();
    assert_eq!(
        rec.parent.as_deref(),
        Some(format!("{ns}-parent:wf:0:1").as_str())
    );
    s.mark_children_reported(std::slice::from_ref(&child), 21)
        .await
        .unwrap();
    assert_eq!(
        mine(s.unreported_children(u64::MAX, 100).await.unwrap()),
        0,
        "reported"
    );
}

/// Every check, by name: `kora_store::contract_checks!(m)` calls `m!(check, ...)`, so a test
/// file generates one test per check and a failure names the check.
#[macro_export]
macro_rules! contract_checks {
    ($m:ident) => {
        $m!(
            child_runs_are_listed_until_reported,
            audit_entries_are_written_once,
            idempotency_keys_alias_and_release,
            runs_restart_from_a_node,
            rate_reservations_follow_each_other,
            concurrency_limits_and_deadlines,
            triggers_register_pause_and_resume,
            dead_letters_list_replay_and_purge,
            large_batches_number_and_fence_like_small_ones,
            outbox_lists_unpublished_dispatches,
            expectations_guard_concurrent_writers,
            records_a_run,
            attempt_and_outcome_in_one_batch,
            fences_duplicate_outcomes,
            lists_in_order
        );
    };
}

/// Every check in turn on one store (the checks use distinct run ids under one namespace).
pub async fn run_all(s: &dyn Store, ns: &str) {
    macro_rules! all {
        ($($check:ident),*) => {$(
            $check(s, ns).await;
        )*};
    }
    contract_checks!(all);
}

/// A private PostgreSQL database for one test, created through `KORA_TEST_PG_ADMIN` (default
/// postgres://postgres@127.0.0.1:5432/postgres) and dropped when this value is dropped, even
/// when the test fails. Outside CI an unreachable server gives `None` (the test skips, saying
/// so); with `CI` set it fails.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn admin_url() -> String {
        std::env::var("KORA_TEST_PG_ADMIN")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    pub async fn create() -> Option<TestDb> {
        use sqlx::Connection;
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let admin = Self::admin_url();
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var("CI").is_err(),
                    "PostgreSQL is not reachable at {admin}: {e}; CI must not skip store tests"
                );
                eprintln!("skipping: PostgreSQL not reachable at {admin}: {e}");
                return None;
            }
        };
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
            % 1_000_000_000_000;
        let name = format!(
            "kora_test_{t}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(b, _)| b)
            .to_string();
        Some(TestDb {
            url: format!("{base}/{name}"),
            name,
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop may run inside a runtime (or while a test panics): use a thread of its own.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&TestDb::admin_url())
                    .await
                    .ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}
