//! Recording runs: outcomes, their order, fencing, expectations between writers, the outbox.

#![allow(clippy::unwrap_used)]

use serde_json::json;

use crate::{
    AttemptKey, AttemptStatus, Batch, Expect, NewRun, RunFilter, RunStatus, RunUpdate, Store,
};

use super::{attempt, event, new_run, outcome, reads_together, spec};

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
    reads_together(s, &run).await;
    reads_together(s, &format!("{ns}-missing")).await;
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
            ..Default::default()
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

/// A batch numbering a run's events after a sequence another writer has taken since conflicts
/// and writes nothing (its events would be dropped as duplicates); numbered after the run's
/// highest sequence, it commits. A run that does not exist yet has nothing to conflict with.
pub async fn event_numbering_is_expected(s: &dyn Store, ns: &str) {
    let run = format!("{ns}-ev");
    let after = |seq| Expect::Events {
        run_id: run.clone(),
        seq,
    };
    s.commit(Batch {
        expect: vec![after(0)],
        new_runs: vec![new_run(&run, None)],
        new_attempts: vec![attempt(&run, "a", 1), attempt(&run, "b", 1)],
        events: vec![event(&run, 1), event(&run, 2)],
        ..Default::default()
    })
    .await
    .unwrap();
    let stale = s
        .commit(Batch {
            expect: vec![after(1)],
            outcomes: vec![outcome(&run, "a", 1, 1)],
            events: vec![event(&run, 2)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&stale, crate::Error::Conflict { run_id, .. } if *run_id == run),
        "numbering after a taken sequence conflicts: {stale}"
    );
    let (rec, attempts) = s.run_with_attempts(&run).await.unwrap().unwrap();
    assert_eq!(rec.event_seq, 2);
    assert!(
        attempts.iter().all(|a| a.seq.is_none()),
        "the conflicting batch wrote nothing: {attempts:?}"
    );
    s.commit(Batch {
        expect: vec![after(2)],
        outcomes: vec![outcome(&run, "a", 1, 1)],
        events: vec![event(&run, 3)],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(s.run(&run).await.unwrap().unwrap().event_seq, 3);
}

/// The outbox: dispatched attempts whose task was never marked published are listed once old
/// enough, until they are marked (on their own, or by a later commit) or the run ends.
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
    // A commit carries the marks of tasks published since the previous one; marks alone
    // change no run state.
    s.commit(Batch {
        new_attempts: vec![attempt(&run, "c", 1)],
        published: vec![key("b")],
        published_ms: 4,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(mine(s.unpublished(10, 1000).await.unwrap()), ["c"]);
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

/// For a store that other processes write while it is read: [`Store::run_with_attempts`] is
/// one snapshot, however commits interleave with it. One writer records a run's nodes one per
/// commit (an outcome and its event each), while reads check that the run's event sequence
/// counts exactly the recorded outcomes. (A coordinator rebuilding a run from a torn read
/// would reuse taken event numbers, and its events would be dropped as duplicates.)
pub async fn run_with_attempts_is_one_snapshot(s: std::sync::Arc<dyn Store>, ns: &str) {
    let run = format!("{ns}-snap");
    let nodes = 150;
    let names: Vec<String> = (0..nodes).map(|i| format!("n{i}")).collect();
    s.commit(Batch {
        new_runs: vec![new_run(&run, None)],
        new_attempts: names.iter().map(|n| attempt(&run, n, 1)).collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    // Reads done so far: every tenth commit waits for one more, so reads and writes overlap
    // however fast either is (a busy machine once gave only 8 overlapping reads).
    let done_reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (s, run) = (std::sync::Arc::clone(&s), run.clone());
        let done_reads = std::sync::Arc::clone(&done_reads);
        tokio::spawn(async move {
            for (i, n) in names.iter().enumerate() {
                if i % 10 == 5 {
                    let seen = done_reads.load(std::sync::atomic::Ordering::Acquire);
                    while done_reads.load(std::sync::atomic::Ordering::Acquire) == seen {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                }
                s.commit(Batch {
                    outcomes: vec![outcome(&run, n, 1, 1)],
                    events: vec![event(&run, i as u64 + 1)],
                    ..Default::default()
                })
                .await
                .unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        let (rec, attempts) = s.run_with_attempts(&run).await.unwrap().unwrap();
        let recorded = attempts.iter().filter(|a| a.seq.is_some()).count() as u64;
        assert_eq!(
            rec.event_seq, recorded,
            "read {reads}: the run's event sequence and its recorded outcomes come from different snapshots"
        );
        reads += 1;
        done_reads.store(reads, std::sync::atomic::Ordering::Release);
    }
    writer.await.unwrap();
    assert!(reads > 10, "only {reads} reads overlapped the writes");
}
