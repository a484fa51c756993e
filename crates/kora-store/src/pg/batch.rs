//! A [`Batch`] as the JSON document `kora_commit` takes (functions/postgres/kora_commit.sql),
//! serialized straight from borrowed fields: no intermediate JSON tree, since an admission batch
//! can hold 10,000 attempts.

use kora_model::wire::RunEvent;

use super::json_text;
use crate::{AttemptStatus, Batch, Expect, Result};

#[derive(serde::Serialize)]
struct BatchDoc<'a> {
    expect: Vec<ExpectDoc<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    expect_queued: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    expect_events: Vec<EventsDoc<'a>>,
    limited: bool,
    keyed: bool,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    release_keys: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<AliasDoc<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    audit: Vec<AuditDoc<'a>>,
    new_runs: Vec<RunDoc<'a>>,
    new_attempts: Vec<AttemptDoc<'a>>,
    outcomes: Vec<OutcomeDoc<'a>>,
    run_updates: Vec<UpdateDoc<'a>>,
    events: Vec<EventDoc<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    published: Vec<KeyDoc<'a>>,
    published_ms: u64,
}

/// An attempt by its key.
#[derive(serde::Serialize)]
pub(super) struct KeyDoc<'a> {
    pub(super) run_id: &'a str,
    pub(super) node_id: &'a str,
    pub(super) iteration: u32,
    pub(super) attempt: u32,
}

impl<'a> KeyDoc<'a> {
    pub(super) fn of(k: &'a crate::AttemptKey) -> Self {
        KeyDoc {
            run_id: &k.run_id,
            node_id: &k.node_id,
            iteration: k.iteration,
            attempt: k.attempt,
        }
    }
}

#[derive(serde::Serialize)]
struct AuditDoc<'a> {
    run_id: &'a str,
    node_id: &'a str,
    iteration: u32,
    attempt: u32,
    idx: u32,
    at_ms: u64,
    entry: &'a kora_model::Value,
}

#[derive(serde::Serialize)]
struct AliasDoc<'a> {
    alias: &'a str,
    run_id: &'a str,
    at_ms: u64,
}

#[derive(serde::Serialize)]
struct EventsDoc<'a> {
    run_id: &'a str,
    seq: u64,
}

#[derive(serde::Serialize)]
struct ExpectDoc<'a> {
    run_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
}

#[derive(serde::Serialize)]
struct RunDoc<'a> {
    run_id: &'a str,
    idempotency_key: Option<&'a str>,
    workflow_id: &'a str,
    workflow_name: &'a str,
    status: &'static str,
    spec: Option<&'a kora_model::WorkflowSpec>,
    params: &'a kora_model::Map,
    error: Option<&'a str>,
    at_ms: u64,
    finished_ms: Option<u64>,
    concurrency_key: Option<&'a str>,
    concurrency_limit: Option<u32>,
    deadline_ms: Option<u64>,
    parent_task: Option<&'a str>,
    tenant: &'a str,
}

#[derive(serde::Serialize)]
struct AttemptDoc<'a> {
    run_id: &'a str,
    node_id: &'a str,
    iteration: u32,
    attempt: u32,
    node_type: &'a str,
    status: &'static str,
    at_ms: u64,
    finished_ms: Option<u64>,
}

#[derive(serde::Serialize)]
struct OutcomeDoc<'a> {
    run_id: &'a str,
    node_id: &'a str,
    iteration: u32,
    attempt: u32,
    status: &'static str,
    output: Option<&'a kora_model::Value>,
    error: Option<&'a str>,
    error_type: Option<&'a str>,
    worker_id: Option<&'a str>,
    at_ms: u64,
    dlq_reason: Option<&'a str>,
    inputs: Option<&'a kora_model::Map>,
}

#[derive(serde::Serialize)]
struct UpdateDoc<'a> {
    run_id: &'a str,
    status: &'static str,
    error: Option<&'a str>,
    error_node: Option<&'a str>,
    at_ms: u64,
    finished_ms: Option<u64>,
}

#[derive(serde::Serialize)]
struct EventDoc<'a> {
    run_id: &'a str,
    seq: u64,
    body: &'a RunEvent,
}

pub(super) fn batch_json(batch: &Batch) -> Result<String> {
    let doc = BatchDoc {
        expect_queued: batch
            .expect
            .iter()
            .filter_map(|e| match e {
                Expect::Queued { run_id } => Some(run_id.as_str()),
                _ => None,
            })
            .collect(),
        expect_events: batch
            .expect
            .iter()
            .filter_map(|e| match e {
                Expect::Events { run_id, seq } => Some(EventsDoc { run_id, seq: *seq }),
                _ => None,
            })
            .collect(),
        limited: batch.limited(),
        keyed: batch.new_runs.iter().any(|r| r.idempotency_key.is_some()),
        audit: batch
            .audit
            .iter()
            .map(|a| AuditDoc {
                run_id: &a.run_id,
                node_id: &a.node_id,
                iteration: a.iteration,
                attempt: a.attempt,
                idx: a.idx,
                at_ms: a.at_ms,
                entry: &a.entry,
            })
            .collect(),
        release_keys: &batch.release_keys,
        aliases: batch
            .aliases
            .iter()
            .map(|a| AliasDoc {
                alias: &a.alias,
                run_id: &a.run_id,
                at_ms: a.at_ms,
            })
            .collect(),
        expect: batch
            .expect
            .iter()
            .filter(|e| !matches!(e, Expect::Queued { .. } | Expect::Events { .. }))
            .map(|e| match e {
                Expect::Outcomes { run_id, count } => ExpectDoc {
                    run_id,
                    count: Some(*count),
                },
                Expect::Absent { run_id }
                | Expect::Queued { run_id }
                | Expect::Events { run_id, .. } => ExpectDoc {
                    run_id,
                    count: None,
                },
            })
            .collect(),
        new_runs: batch
            .new_runs
            .iter()
            .map(|r| RunDoc {
                run_id: &r.run_id,
                idempotency_key: r.idempotency_key.as_deref(),
                workflow_id: r.spec.as_ref().map(|s| s.id.as_str()).unwrap_or_default(),
                workflow_name: r.spec.as_ref().map(|s| s.name.as_str()).unwrap_or_default(),
                status: r.status.as_str(),
                spec: r.spec.as_ref(),
                params: &r.params,
                error: r.error.as_deref(),
                at_ms: r.at_ms,
                finished_ms: r.status.is_final().then_some(r.at_ms),
                concurrency_key: r.concurrency.as_ref().map(|(g, _)| g.as_str()),
                concurrency_limit: r.concurrency.as_ref().map(|(_, l)| *l),
                deadline_ms: r.deadline_ms,
                parent_task: r.parent.as_deref(),
                tenant: &r.tenant,
            })
            .collect(),
        new_attempts: batch
            .new_attempts
            .iter()
            .map(|a| AttemptDoc {
                run_id: &a.run_id,
                node_id: &a.node_id,
                iteration: a.iteration,
                attempt: a.attempt,
                node_type: &a.node_type,
                status: a.status.as_str(),
                at_ms: a.at_ms,
                finished_ms: (a.status == AttemptStatus::Skipped).then_some(a.at_ms),
            })
            .collect(),
        outcomes: batch
            .outcomes
            .iter()
            .map(|o| OutcomeDoc {
                run_id: &o.run_id,
                node_id: &o.node_id,
                iteration: o.iteration,
                attempt: o.attempt,
                status: o.status.as_str(),
                output: o.output.as_ref(),
                error: o.error.as_deref(),
                error_type: o.error_type.as_deref(),
                worker_id: o.worker_id.as_deref(),
                at_ms: o.at_ms,
                dlq_reason: o.dead_letter.as_ref().map(|(r, _)| r.as_str()),
                inputs: o.dead_letter.as_ref().map(|(_, i)| i),
            })
            .collect(),
        run_updates: batch
            .run_updates
            .iter()
            .map(|u| UpdateDoc {
                run_id: &u.run_id,
                status: u.status.as_str(),
                error: u.error.as_deref(),
                error_node: u.error_node.as_deref(),
                at_ms: u.at_ms,
                finished_ms: u.status.is_final().then_some(u.at_ms),
            })
            .collect(),
        events: batch
            .events
            .iter()
            .map(|e| EventDoc {
                run_id: &e.run_id,
                seq: e.seq,
                body: e,
            })
            .collect(),
        published: batch.published.iter().map(KeyDoc::of).collect(),
        published_ms: batch.published_ms,
    };
    json_text(&doc)
}
