//! One batch applied in one SQLite transaction: the same steps, in the same order, as the
//! PostgreSQL ledger's `kora_commit` (functions/postgres/kora_commit.sql).

use sqlx::{Sqlite, Transaction};

use super::{i, json_text, u};
use crate::{AttemptStatus, Batch, CommitReport, Error, Expect, Result, RunStatus};

/// Refuses the batch if one of the runs it started leaves its concurrency group over its limit.
async fn check_limits(tx: &mut Transaction<'_, Sqlite>, starting: &[String]) -> Result<()> {
    for run_id in starting {
        let group: Option<(String, i64)> = sqlx::query_as(
            "SELECT concurrency_key, concurrency_limit FROM runs WHERE run_id = ? AND status = 'running' AND concurrency_key IS NOT NULL",
        )
        .bind(run_id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some((g, limit)) = group else { continue };
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM runs WHERE concurrency_key = ? AND status = 'running'",
        )
        .bind(&g)
        .fetch_one(&mut **tx)
        .await?;
        if running > limit {
            return Err(Error::Conflict {
                run_id: run_id.clone(),
                detail: format!(
                    "concurrency group {g:?} would have {running} runs running, over its limit of {limit}"
                ),
            });
        }
    }
    Ok(())
}

pub(super) async fn apply(tx: &mut Transaction<'_, Sqlite>, batch: Batch) -> Result<CommitReport> {
    let mut report = CommitReport::default();
    // Runs this batch may start under a concurrency limit: checked after the writes.
    let starting: Vec<String> = if batch.limited() {
        batch
            .new_runs
            .iter()
            .map(|r| r.run_id.clone())
            .chain(
                batch
                    .run_updates
                    .iter()
                    .filter(|u| u.status == RunStatus::Running)
                    .map(|u| u.run_id.clone()),
            )
            .collect()
    } else {
        Vec::new()
    };
    for e in &batch.expect {
        let run_id = match e {
            Expect::Queued { run_id } => {
                let have: Option<String> =
                    sqlx::query_scalar("SELECT status FROM runs WHERE run_id = ?")
                        .bind(run_id)
                        .fetch_optional(&mut **tx)
                        .await?;
                if have.as_deref() != Some("queued") {
                    return Err(Error::Conflict {
                        run_id: run_id.clone(),
                        detail: format!("expected a queued run, found {have:?}"),
                    });
                }
                continue;
            }
            Expect::Events { run_id, seq } => {
                let have: Option<i64> =
                    sqlx::query_scalar("SELECT event_seq FROM runs WHERE run_id = ?")
                        .bind(run_id)
                        .fetch_optional(&mut **tx)
                        .await?;
                if let Some(have) = have.map(u)
                    && have != *seq
                {
                    return Err(Error::Conflict {
                        run_id: run_id.clone(),
                        detail: format!("expected event sequence {seq}, found {have}"),
                    });
                }
                continue;
            }
            Expect::Outcomes { run_id, .. } | Expect::Absent { run_id } => run_id,
        };
        let have: Option<i64> = sqlx::query_scalar("SELECT outcomes FROM runs WHERE run_id = ?")
            .bind(run_id)
            .fetch_optional(&mut **tx)
            .await?;
        match (e, have) {
            (Expect::Absent { .. }, None) => {}
            (Expect::Absent { .. }, Some(_)) => {
                return Err(Error::Conflict {
                    run_id: run_id.clone(),
                    detail: "it already exists".into(),
                });
            }
            (Expect::Outcomes { count, .. }, have) if have.map(u) != Some(*count) => {
                return Err(Error::Conflict {
                    run_id: run_id.clone(),
                    detail: format!("expected {count} recorded outcomes, found {have:?}"),
                });
            }
            (Expect::Outcomes { .. }, _) => {}
            (Expect::Queued { .. } | Expect::Events { .. }, _) => {}
        }
    }
    for k in &batch.release_keys {
        sqlx::query("UPDATE runs SET idempotency_key = NULL WHERE idempotency_key = ?")
            .bind(k)
            .execute(&mut **tx)
            .await?;
    }
    for a in &batch.aliases {
        sqlx::query(
            "INSERT INTO run_aliases (alias, run_id, created_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&a.alias)
        .bind(&a.run_id)
        .bind(i(a.at_ms))
        .execute(&mut **tx)
        .await?;
    }
    for r in batch.new_runs {
        let finished = r.status.is_final().then_some(i(r.at_ms));
        let done = sqlx::query(
            "INSERT INTO runs (run_id, idempotency_key, workflow_id, workflow_name, status, spec, params, error, created_ms, updated_ms, finished_ms, concurrency_key, concurrency_limit, deadline_ms, parent_task, tenant)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&r.run_id)
        .bind(&r.idempotency_key)
        .bind(r.spec.as_ref().map(|s| s.id.clone()).unwrap_or_default())
        .bind(r.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default())
        .bind(r.status.as_str())
        .bind(r.spec.as_ref().map(json_text).transpose()?)
        .bind(json_text(&r.params)?)
        .bind(&r.error)
        .bind(i(r.at_ms))
        .bind(i(r.at_ms))
        .bind(finished)
        .bind(r.concurrency.as_ref().map(|(g, _)| g.clone()))
        .bind(r.concurrency.as_ref().map(|(_, l)| i64::from(*l)))
        .bind(r.deadline_ms.map(i))
        .bind(&r.parent)
        .bind(&r.tenant)
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 0 {
            report.runs_existing += 1;
            if let Some(key) = &r.idempotency_key {
                let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM runs WHERE run_id = ?")
                    .bind(&r.run_id)
                    .fetch_optional(&mut **tx)
                    .await?;
                if exists.is_none() {
                    return Err(Error::Conflict {
                        run_id: r.run_id.clone(),
                        detail: format!("idempotency key {key} is held by another run"),
                    });
                }
            }
        }
    }
    for n in batch.new_attempts {
        let finished = (n.status == AttemptStatus::Skipped).then_some(i(n.at_ms));
        let done = sqlx::query(
            "INSERT INTO attempts (run_id, node_id, iteration, attempt, node_type, status, dispatched_ms, finished_ms)
             SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(&n.run_id)
        .bind(&n.node_id)
        .bind(i64::from(n.iteration))
        .bind(i64::from(n.attempt))
        .bind(&n.node_type)
        .bind(n.status.as_str())
        .bind(i(n.at_ms))
        .bind(finished)
        .bind(&n.run_id)
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 0 {
            report.attempts_existing += 1;
        }
    }
    for o in batch.outcomes {
        let output = o.output.as_ref().map(json_text).transpose()?;
        let (dlq_reason, inputs) = match &o.dead_letter {
            Some((reason, inputs)) => (Some(reason.as_str()), Some(json_text(inputs)?)),
            None => (None, None),
        };
        let done = sqlx::query(
            "UPDATE attempts SET status = ?, output = ?, error = ?, error_type = ?, worker_id = ?, finished_ms = ?,
                    dlq_reason = ?, dlq_state = CASE WHEN ? IS NULL THEN NULL ELSE 'open' END, inputs = ?,
                    seq = (SELECT outcomes + 1 FROM runs WHERE run_id = ?)
             WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ? AND status = 'dispatched'",
        )
        .bind(o.status.as_str())
        .bind(output)
        .bind(&o.error)
        .bind(&o.error_type)
        .bind(&o.worker_id)
        .bind(i(o.at_ms))
        .bind(dlq_reason)
        .bind(dlq_reason)
        .bind(inputs)
        .bind(&o.run_id)
        .bind(&o.run_id)
        .bind(&o.node_id)
        .bind(i64::from(o.iteration))
        .bind(i64::from(o.attempt))
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 0 {
            report.outcomes_ignored += 1;
        } else {
            sqlx::query("UPDATE runs SET outcomes = outcomes + 1 WHERE run_id = ?")
                .bind(&o.run_id)
                .execute(&mut **tx)
                .await?;
        }
    }
    for up in batch.run_updates {
        let finished = up.status.is_final().then_some(i(up.at_ms));
        sqlx::query(
            "UPDATE runs SET status = ?, error = ?, error_node = ?, updated_ms = ?, finished_ms = ?
             WHERE run_id = ? AND status IN ('running', 'queued')",
        )
        .bind(up.status.as_str())
        .bind(&up.error)
        .bind(&up.error_node)
        .bind(i(up.at_ms))
        .bind(finished)
        .bind(&up.run_id)
        .execute(&mut **tx)
        .await?;
    }
    check_limits(tx, &starting).await?;
    for a in &batch.audit {
        sqlx::query(
            "INSERT INTO audit_log (run_id, node_id, iteration, attempt, idx, at_ms, event_type, user_id, entry)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&a.run_id)
        .bind(&a.node_id)
        .bind(i64::from(a.iteration))
        .bind(i64::from(a.attempt))
        .bind(i64::from(a.idx))
        .bind(i(a.at_ms))
        .bind(a.entry.get("event_type").and_then(|v| v.as_str()))
        .bind(a.entry.get("user_id").and_then(|v| v.as_str()))
        .bind(json_text(&a.entry)?)
        .execute(&mut **tx)
        .await?;
    }
    for e in batch.events {
        sqlx::query(
            "INSERT INTO events (run_id, seq, body) SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = ?) ON CONFLICT DO NOTHING",
        )
        .bind(&e.run_id)
        .bind(i(e.seq))
        .bind(json_text(&e)?)
        .bind(&e.run_id)
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE runs SET event_seq = ? WHERE run_id = ? AND event_seq < ?")
            .bind(i(e.seq))
            .bind(&e.run_id)
            .bind(i(e.seq))
            .execute(&mut **tx)
            .await?;
    }
    Ok(report)
}
