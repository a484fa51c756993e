//! The store contract: each check written once, run against every [`Store`], one module per
//! theme. Each check uses run ids under its own unique `ns`, so checks can share a database.

// Contract checks are assertions: a failed call is a failed check.
#![allow(clippy::unwrap_used)]

mod ledger;
mod limits;
mod operators;
mod tenants;

use kora_model::wire::{EventKind, RunEvent, WIRE_VERSION};
use kora_model::{Map, WorkflowSpec};
use serde_json::json;

use crate::{AttemptStatus, AttemptUpdate, NewAttempt, NewRun, RunStatus, Store};

pub use ledger::*;
pub use limits::*;
pub use operators::*;
pub use tenants::*;

/// [`Store::run_with_attempts`] reads exactly what [`Store::run`] and [`Store::attempts`] do.
pub(super) async fn reads_together(s: &dyn Store, run: &str) {
    let apart = match s.run(run).await.unwrap() {
        Some(r) => Some((r, s.attempts(run).await.unwrap())),
        None => None,
    };
    assert_eq!(s.run_with_attempts(run).await.unwrap(), apart, "run {run}");
}

pub(super) fn spec() -> WorkflowSpec {
    serde_json::from_value(
        json!({"kora": 1, "id": "wf", "name": "demo", "nodes": [{"id": "a", "type": "NoOpNode"}]}),
    )
    .expect("valid spec")
}

pub(super) fn new_run(id: &str, key: Option<&str>) -> NewRun {
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
        tenant: "default".into(),
    }
}

pub(super) fn attempt(run: &str, node: &str, attempt: u32) -> NewAttempt {
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

pub(super) fn outcome(run: &str, node: &str, attempt: u32, v: i64) -> AttemptUpdate {
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

pub(super) fn event(run: &str, seq: u64) -> RunEvent {
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
            event_numbering_is_expected,
            records_a_run,
            attempt_and_outcome_in_one_batch,
            fences_duplicate_outcomes,
            lists_in_order,
            runs_and_dead_letters_belong_to_tenants,
            triggers_belong_to_tenants,
            api_keys_create_list_and_revoke,
            workflows_register_version_and_delete,
            api_audit_lists_and_pages,
            alerts_open_once_and_resolve_once,
            stuck_runs_are_found
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
