//! What operators do: dead letters (list, replay, purge) and triggers.

#![allow(clippy::unwrap_used)]

use kora_model::Map;
use serde_json::json;

use crate::{AttemptStatus, Batch, DeadLetterFilter, ReplayRequest, RunStatus, RunUpdate, Store};

use super::{attempt, new_run, outcome, spec};

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
    super::reads_together(s, &run).await;
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
        tenant: "default".into(),
        webhook_salt: None,
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

/// An alert opens once however many ask, resolves once, reopens only after its cooldown, and
/// a message never delivered is claimed again once its claim is stale.
pub async fn alerts_open_once_and_resolve_once(s: &dyn Store, ns: &str) {
    use crate::NewAlert;
    let subject = format!("run_stuck:{ns}-r1");
    let a = NewAlert {
        subject: subject.clone(),
        kind: "run_stuck".into(),
        severity: "warning".into(),
        body: serde_json::json!({"kind": "run_stuck", "run_id": format!("{ns}-r1")}),
    };
    assert!(
        s.open_alert(&a, 1_000, 0).await.unwrap(),
        "the first opens it"
    );
    assert!(
        !s.open_alert(&a, 1_001, 0).await.unwrap(),
        "a second coordinator does not"
    );
    let mine = |v: Vec<crate::AlertRecord>| -> Vec<crate::AlertRecord> {
        v.into_iter().filter(|r| r.subject == subject).collect()
    };
    let open = mine(s.open_alerts(Some("run_stuck"), 10_000).await.unwrap());
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].body["run_id"], format!("{ns}-r1"));
    assert_eq!(open[0].opened_ms, 1_000);
    assert!(
        mine(
            s.open_alerts(Some("latency_anomaly"), 10_000)
                .await
                .unwrap()
        )
        .is_empty()
    );
    // Claimed by its opener at 1,000 and never delivered: claimed again once that is stale,
    // by one caller only.
    let claim = |before: u64, now: u64| async move {
        s.claim_unsent_alerts(before, now, 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|(r, _)| r.subject == format!("run_stuck:{ns}-r1"))
            .map(|(_, resolve)| resolve)
            .collect::<Vec<bool>>()
    };
    assert!(claim(1_000, 2_000).await.is_empty(), "its claim is fresh");
    assert_eq!(claim(1_500, 2_000).await, [false]);
    assert!(claim(1_500, 2_001).await.is_empty(), "claimed once");
    s.alert_sent(&subject, false, 2_100).await.unwrap();
    assert!(claim(u64::MAX, 2_200).await.is_empty(), "delivered");

    let resolved = s.resolve_alert(&subject, 3_000).await.unwrap().unwrap();
    assert_eq!(
        (resolved.resolved_ms, resolved.body["run_id"].clone()),
        (Some(3_000), serde_json::json!(format!("{ns}-r1")))
    );
    assert!(
        s.resolve_alert(&subject, 3_001).await.unwrap().is_none(),
        "resolved once"
    );
    assert!(mine(s.open_alerts(None, 10_000).await.unwrap()).is_empty());
    assert_eq!(
        claim(3_500, 4_000).await,
        [true],
        "the resolve's claim went stale"
    );
    s.alert_sent(&subject, true, 4_100).await.unwrap();
    assert!(claim(u64::MAX, 4_200).await.is_empty());
    // Within the cooldown (resolved after 2,999) it stays resolved; after it, it reopens.
    assert!(!s.open_alert(&a, 5_000, 2_999).await.unwrap());
    assert!(s.open_alert(&a, 5_001, 3_000).await.unwrap());
    assert_eq!(mine(s.open_alerts(None, 10_000).await.unwrap()).len(), 1);
}

/// Running runs without progress since a time, or with a node on a high attempt, are listed
/// with their nodes in flight; a retry due later counts as progress then; ended runs never.
pub async fn stuck_runs_are_found(s: &dyn Store, ns: &str) {
    use super::{attempt, new_run, outcome};
    use crate::{Batch, NewRun, RunStatus, RunUpdate};
    let id = |n: &str| format!("{ns}-stuck-{n}");
    let at = |n: &str, ms: u64| NewRun {
        at_ms: ms,
        ..new_run(&id(n), None)
    };
    let att = |n: &str, node: &str, k: u32, ms: u64| crate::NewAttempt {
        at_ms: ms,
        ..attempt(&id(n), node, k)
    };
    s.commit(Batch {
        new_runs: vec![
            at("idle", 100),
            at("busy", 100),
            at("later", 100),
            at("loop", 100),
            at("done", 100),
        ],
        new_attempts: vec![
            att("idle", "a", 1, 100),
            att("idle", "b", 1, 110),
            att("busy", "a", 1, 900),
            // A retry due at 5,000: the run waits on a timer.
            att("later", "a", 2, 5_000),
            att("loop", "a", 6, 950),
            att("done", "a", 1, 100),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    s.commit(Batch {
        outcomes: vec![crate::AttemptUpdate {
            at_ms: 120,
            ..outcome(&id("idle"), "b", 1, 1)
        }],
        run_updates: vec![RunUpdate {
            run_id: id("done"),
            status: RunStatus::Succeeded,
            error: None,
            error_node: None,
            at_ms: 130,
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let stuck: Vec<(String, u64, u32, Vec<String>)> = s
        .stuck_runs(500, 5, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.run_id.starts_with(&format!("{ns}-stuck-")))
        .map(|r| (r.run_id, r.progress_ms, r.max_attempt, r.in_flight))
        .collect();
    assert_eq!(
        stuck,
        [
            (id("idle"), 120, 1, vec!["a".to_string()]),
            (id("loop"), 950, 6, vec!["a".to_string()]),
        ]
    );
    // Workers seen since 120: idle's b finished at 120 on w1 (among other checks' attempts).
    let workers = s.active_workers(120).await.unwrap();
    assert!(
        workers.iter().any(|(w, n)| w == "w1" && *n >= 1),
        "{workers:?}"
    );
    assert!(
        s.active_workers(u64::MAX / 2).await.unwrap().is_empty(),
        "none finished in the future"
    );
    // The run that ended, as `kora top` reads the recent ones (`done` ended at 130).
    let done = s.finished_since(130, 100_000).await.unwrap();
    let mine: Vec<&crate::FinishedRun> = done
        .iter()
        .filter(|f| f.tenant == "default" && f.finished_ms == 130 && f.created_ms == 100)
        .collect();
    assert_eq!(mine.len(), 1, "{done:?}");
    assert_eq!(
        (mine[0].workflow.as_str(), mine[0].status),
        ("demo", RunStatus::Succeeded)
    );
    assert!(
        s.finished_since(131, 100_000)
            .await
            .unwrap()
            .iter()
            .all(|f| f.finished_ms >= 131)
    );
}
