//! Limits and the rest of a run's life: concurrency and deadlines, rate reservations, restarts, idempotency keys, audit entries, child runs.

#![allow(clippy::unwrap_used)]

use kora_model::Map;
use kora_model::wire::EventKind;
use serde_json::json;

use crate::{
    AttemptStatus, Batch, DeadLetterFilter, Expect, NewRun, ReplayRequest, RunStatus, RunUpdate,
    Store,
};

use super::{attempt, new_run, outcome};

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
