//! The ledger in a SQLite file (`kora run --store sqlite:PATH`), through sqlx.
//! Migrations are embedded in the binary and applied when the store opens ([`schema`]).

mod commit;
pub mod schema;

use std::str::FromStr;

use async_trait::async_trait;
use kora_model::wire::RunEvent;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use crate::{
    AttemptKey, AttemptRecord, AttemptStatus, Batch, CommitReport, DeadLetterFilter,
    DeadLetterInfo, DeadLetterRecord, Error, ReplayOutcome, ReplayRequest, Result, RunFilter,
    RunRecord, RunStatus, Store,
};

pub struct SqliteStore {
    pool: SqlitePool,
}

crate::sql_directory::sql_directory!(super::SqliteStore, "", "");
crate::sql_alerts::sql_alerts!(super::SqliteStore, "", "");

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`; `:memory:` gives a private one.
    pub async fn open(path: &str) -> Result<Self> {
        if path.is_empty() {
            return Err(Error::Config(
                "sqlite store needs a path: --store sqlite:PATH".into(),
            ));
        }
        let memory = path == ":memory:";
        let opts = if memory {
            SqliteConnectOptions::from_str("sqlite::memory:")?
        } else {
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
        }
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true);
        // One connection: SQLite serialises writers anyway, and `:memory:` is per connection.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        schema::migrate(&pool, &schema::migrator()).await?;
        Ok(SqliteStore { pool })
    }

    /// Opens with another migrator: how the tests make an edited migration.
    #[cfg(any(test, feature = "test-util"))]
    pub async fn open_with(path: &str, migrator: &sqlx::migrate::Migrator) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        schema::migrate(&pool, migrator).await?;
        Ok(SqliteStore { pool })
    }
}

fn json_text<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Corrupt(e.to_string()))
}

fn run_row(r: &SqliteRow) -> Result<RunRecord> {
    let status: String = r.try_get("status")?;
    let spec: Option<String> = r.try_get("spec")?;
    let params: String = r.try_get("params")?;
    Ok(RunRecord {
        run_id: r.try_get("run_id")?,
        idempotency_key: r.try_get("idempotency_key")?,
        workflow_id: r.try_get("workflow_id")?,
        workflow_name: r.try_get("workflow_name")?,
        status: RunStatus::parse(&status)
            .ok_or_else(|| Error::Corrupt(format!("run status {status:?}")))?,
        spec: spec
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| Error::Corrupt(e.to_string()))?,
        params: serde_json::from_str(&params).map_err(|e| Error::Corrupt(e.to_string()))?,
        error: r.try_get("error")?,
        error_node: r.try_get("error_node")?,
        created_ms: u(r.try_get("created_ms")?),
        updated_ms: u(r.try_get("updated_ms")?),
        finished_ms: r.try_get::<Option<i64>, _>("finished_ms")?.map(u),
        parent: r.try_get("parent_task")?,
        event_seq: u(r.try_get("event_seq")?),
        tenant: r.try_get("tenant")?,
    })
}

fn json_map(v: Option<String>) -> Result<Option<kora_model::Map>> {
    v.map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| Error::Corrupt(e.to_string()))
}

fn attempt_row(r: &SqliteRow) -> Result<AttemptRecord> {
    let status: String = r.try_get("status")?;
    let output: Option<String> = r.try_get("output")?;
    let dlq_state: Option<String> = r.try_get("dlq_state")?;
    let dead_letter = match dlq_state {
        Some(state) => Some(DeadLetterInfo {
            reason: r
                .try_get::<Option<String>, _>("dlq_reason")?
                .unwrap_or_default(),
            state,
            inputs: json_map(r.try_get("inputs")?)?,
            replayed_ms: r.try_get::<Option<i64>, _>("replayed_ms")?.map(u),
            replayed_by: r.try_get("replayed_by")?,
            replay_attempt: r
                .try_get::<Option<i64>, _>("replay_attempt")?
                .and_then(|a| u32::try_from(a).ok()),
        }),
        None => None,
    };
    Ok(AttemptRecord {
        run_id: r.try_get("run_id")?,
        node_id: r.try_get("node_id")?,
        iteration: u32::try_from(r.try_get::<i64, _>("iteration")?).unwrap_or(0),
        attempt: u32::try_from(r.try_get::<i64, _>("attempt")?).unwrap_or(0),
        node_type: r.try_get("node_type")?,
        status: AttemptStatus::parse(&status)
            .ok_or_else(|| Error::Corrupt(format!("attempt status {status:?}")))?,
        output: output
            .map(|o| serde_json::from_str(&o))
            .transpose()
            .map_err(|e| Error::Corrupt(e.to_string()))?,
        error: r.try_get("error")?,
        error_type: r.try_get("error_type")?,
        worker_id: r.try_get("worker_id")?,
        dispatched_ms: u(r.try_get("dispatched_ms")?),
        finished_ms: r.try_get::<Option<i64>, _>("finished_ms")?.map(u),
        seq: r.try_get::<Option<i64>, _>("seq")?.map(u),
        dead_letter,
        overrides: json_map(r.try_get("overrides")?)?,
    })
}

/// The dead-letter filter as SQL conditions over `attempts a JOIN runs r` (`?` placeholders,
/// bound in this order: any_state, workflow, workflow, reason, reason, since, since, run, run,
/// id, id).
const DLQ_WHERE: &str = "a.dlq_state IS NOT NULL AND (? OR a.dlq_state = 'open')
    AND (? IS NULL OR r.workflow_name = ?) AND (? IS NULL OR a.dlq_reason = ?)
    AND (? IS NULL OR a.finished_ms >= ?) AND (? IS NULL OR a.run_id = ?)
    AND (? IS NULL OR a.run_id || ':' || a.node_id || ':' || a.iteration || ':' || a.attempt = ?)
    AND (? IS NULL OR r.tenant = ?)";

fn bind_dlq<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    f: &'q DeadLetterFilter,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    let since = f.since_ms.map(i);
    q.bind(f.any_state)
        .bind(f.workflow.as_deref())
        .bind(f.workflow.as_deref())
        .bind(f.reason.as_deref())
        .bind(f.reason.as_deref())
        .bind(since)
        .bind(since)
        .bind(f.run_id.as_deref())
        .bind(f.run_id.as_deref())
        .bind(f.id.as_deref())
        .bind(f.id.as_deref())
        .bind(f.tenant.as_deref())
        .bind(f.tenant.as_deref())
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_trigger(&self, t: &crate::TriggerRecord) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO triggers (name, subject, schedule, spec, params, paused, created_ms, updated_ms, tenant, webhook_salt)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET subject = excluded.subject, schedule = excluded.schedule, spec = excluded.spec,
                 params = excluded.params, paused = excluded.paused, updated_ms = excluded.updated_ms,
                 webhook_salt = excluded.webhook_salt
             WHERE triggers.tenant = excluded.tenant",
        )
        .bind(&t.name)
        .bind(&t.subject)
        .bind(&t.schedule)
        .bind(json_text(&t.spec)?)
        .bind(json_text(&t.params)?)
        .bind(t.paused)
        .bind(i(t.created_ms))
        .bind(i(t.updated_ms))
        .bind(&t.tenant)
        .bind(&t.webhook_salt)
        .execute(&self.pool)
        .await?;
        crate::records::trigger_written(t, done.rows_affected())
    }

    async fn triggers(&self) -> Result<Vec<crate::TriggerRecord>> {
        let rows = sqlx::query("SELECT * FROM triggers ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let spec: String = r.try_get("spec")?;
                let params: String = r.try_get("params")?;
                Ok(crate::TriggerRecord {
                    name: r.try_get("name")?,
                    subject: r.try_get("subject")?,
                    schedule: r.try_get("schedule")?,
                    spec: serde_json::from_str(&spec).map_err(|e| Error::Corrupt(e.to_string()))?,
                    params: serde_json::from_str(&params)
                        .map_err(|e| Error::Corrupt(e.to_string()))?,
                    paused: r.try_get("paused")?,
                    created_ms: u(r.try_get("created_ms")?),
                    updated_ms: u(r.try_get("updated_ms")?),
                    tenant: r.try_get("tenant")?,
                    webhook_salt: r.try_get("webhook_salt")?,
                })
            })
            .collect()
    }

    async fn set_trigger_paused(&self, name: &str, paused: bool, at_ms: u64) -> Result<bool> {
        let done = sqlx::query("UPDATE triggers SET paused = ?, updated_ms = ? WHERE name = ?")
            .bind(paused)
            .bind(i(at_ms))
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn active_workers(&self, since_ms: u64) -> Result<Vec<(String, u64)>> {
        let rows = sqlx::query(
            "SELECT a.worker_id, count(*) AS n FROM attempts a
             WHERE a.run_id IN (SELECT run_id FROM runs WHERE status = 'running'
                                UNION SELECT run_id FROM runs WHERE finished_ms >= ?1)
               AND a.finished_ms >= ?1 AND a.worker_id IS NOT NULL
             GROUP BY a.worker_id ORDER BY a.worker_id",
        )
        .bind(i(since_ms))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("worker_id")?, u(r.try_get::<i64, _>("n")?))))
            .collect()
    }

    async fn finished_since(&self, since_ms: u64, limit: usize) -> Result<Vec<crate::FinishedRun>> {
        let rows = sqlx::query(
            "SELECT tenant, CASE WHEN workflow_name = '' THEN workflow_id ELSE workflow_name END AS workflow,
                    status, created_ms, finished_ms
             FROM runs WHERE finished_ms IS NOT NULL AND finished_ms >= $1
             ORDER BY finished_ms DESC, run_id LIMIT $2",
        )
        .bind(i(since_ms))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                Ok(crate::FinishedRun {
                    tenant: r.try_get("tenant")?,
                    workflow: r.try_get("workflow")?,
                    status: crate::RunStatus::parse(&status)
                        .ok_or_else(|| Error::Corrupt(format!("run status {status:?}")))?,
                    created_ms: u(r.try_get("created_ms")?),
                    finished_ms: u(r.try_get::<i64, _>("finished_ms")?),
                })
            })
            .collect()
    }

    async fn stuck_runs(
        &self,
        progress_before_ms: u64,
        attempts_at_least: u32,
        limit: usize,
    ) -> Result<Vec<crate::StuckRun>> {
        let rows = sqlx::query(
            "SELECT r.run_id, r.tenant, r.created_ms,
                    CASE WHEN r.workflow_name = '' THEN r.workflow_id ELSE r.workflow_name END AS workflow,
                    max(r.created_ms, r.updated_ms, COALESCE(max(a.dispatched_ms), 0),
                        COALESCE(max(a.finished_ms), 0)) AS progress_ms,
                    COALESCE(max(a.attempt), 0) AS max_attempt,
                    COALESCE(group_concat(a.node_id, char(31)) FILTER (WHERE a.status = 'dispatched'), '') AS in_flight
             FROM runs r LEFT JOIN attempts a ON a.run_id = r.run_id
             WHERE r.status = 'running'
             GROUP BY r.run_id
             HAVING progress_ms < ? OR max_attempt >= ?
             ORDER BY r.created_ms, r.run_id LIMIT ?",
        )
        .bind(i(progress_before_ms))
        .bind(i64::from(attempts_at_least))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stuck_of).collect()
    }

    async fn open_alert(
        &self,
        a: &crate::NewAlert,
        now_ms: u64,
        reopen_resolved_before_ms: u64,
    ) -> Result<bool> {
        self.alerts_open(a, now_ms, reopen_resolved_before_ms).await
    }

    async fn resolve_alert(
        &self,
        subject: &str,
        now_ms: u64,
    ) -> Result<Option<crate::AlertRecord>> {
        self.alerts_resolve(subject, now_ms).await
    }

    async fn alert_sent(&self, subject: &str, resolve: bool, now_ms: u64) -> Result<()> {
        self.alerts_sent(subject, resolve, now_ms).await
    }

    async fn claim_unsent_alerts(
        &self,
        claimed_before_ms: u64,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<(crate::AlertRecord, bool)>> {
        self.alerts_claim_unsent(claimed_before_ms, now_ms, limit)
            .await
    }

    async fn open_alerts(
        &self,
        kind: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::AlertRecord>> {
        self.alerts_list_open(kind, limit).await
    }

    async fn live_runs(&self, limit: usize) -> Result<Vec<crate::LiveRuns>> {
        let rows = sqlx::query(
            "SELECT tenant, CASE WHEN workflow_name = '' THEN workflow_id ELSE workflow_name END AS workflow, status, count(*) AS n
             FROM runs WHERE status IN ('running', 'queued')
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 LIMIT ?",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        live_runs_of(&rows)
    }

    async fn tenant_active_runs(&self, tenant: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM runs WHERE tenant = ? AND status IN ('running', 'queued')",
        )
        .bind(tenant)
        .fetch_one(&self.pool)
        .await?;
        Ok(u(n))
    }

    async fn delete_trigger(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM triggers WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetterRecord>> {
        let limit = if filter.limit == 0 {
            i64::MAX
        } else {
            i64::try_from(filter.limit).unwrap_or(i64::MAX)
        };
        let sql = format!(
            "SELECT a.*, r.workflow_name AS wf_name, r.status AS run_status FROM attempts a JOIN runs r ON r.run_id = a.run_id
             WHERE {DLQ_WHERE} ORDER BY a.finished_ms, a.run_id, a.node_id LIMIT ?"
        );
        let rows = bind_dlq(sqlx::query(sqlx::AssertSqlSafe(sql)), filter)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let a = attempt_row(r)?;
                let status: String = r.try_get("run_status")?;
                Ok(DeadLetterRecord {
                    id: kora_model::wire::NodeTask::make_id(
                        &a.run_id,
                        &a.node_id,
                        a.iteration,
                        a.attempt,
                    ),
                    workflow_name: r.try_get("wf_name")?,
                    run_status: RunStatus::parse(&status)
                        .ok_or_else(|| Error::Corrupt(format!("run status {status:?}")))?,
                    attempt: a,
                })
            })
            .collect()
    }

    async fn replay(&self, req: &ReplayRequest) -> Result<ReplayOutcome> {
        let key = crate::parse_dead_letter_id(&req.id)
            .ok_or_else(|| Error::Config(format!("{:?} is not a dead-letter id", req.id)))?;
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query("SELECT * FROM attempts WHERE run_id = ?")
            .bind(&key.run_id)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            return Err(Error::RunNotFound(key.run_id.clone()));
        }
        let attempts: Vec<AttemptRecord> = rows.iter().map(attempt_row).collect::<Result<_>>()?;
        let status: String = sqlx::query_scalar("SELECT status FROM runs WHERE run_id = ?")
            .bind(&key.run_id)
            .fetch_one(&mut *tx)
            .await?;
        let status = RunStatus::parse(&status).unwrap_or(RunStatus::Running);
        let plan = crate::records::plan_replay(req, &key, &attempts, status).map_err(|detail| {
            Error::Conflict {
                run_id: key.run_id.clone(),
                detail: format!("{} {}: {detail}", req.what(), req.id),
            }
        })?;
        let next = plan.next;
        for k in &plan.superseded {
            sqlx::query(
                "UPDATE attempts SET dlq_state = 'replayed', replayed_ms = ?, replayed_by = ?
                 WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ?",
            )
            .bind(i(req.at_ms))
            .bind(&req.actor)
            .bind(&k.run_id)
            .bind(&k.node_id)
            .bind(i64::from(k.iteration))
            .bind(i64::from(k.attempt))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE attempts SET dlq_state = CASE WHEN dlq_state IS NULL THEN NULL ELSE 'replayed' END,
                    replayed_ms = ?, replayed_by = ?, replay_attempt = ?
             WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ?",
        )
        .bind(i(req.at_ms))
        .bind(&req.actor)
        .bind(i64::from(next))
        .bind(&key.run_id)
        .bind(&key.node_id)
        .bind(i64::from(key.iteration))
        .bind(i64::from(key.attempt))
        .execute(&mut *tx)
        .await?;
        let redispatched = plan.redispatched;
        for (node_id, iteration, attempt, node_type, overrides) in plan.fresh {
            let overrides = overrides.as_ref().map(json_text).transpose()?;
            sqlx::query(
                "INSERT INTO attempts (run_id, node_id, iteration, attempt, node_type, status, dispatched_ms, overrides)
                 VALUES (?, ?, ?, ?, ?, 'dispatched', ?, ?)",
            )
            .bind(&key.run_id)
            .bind(node_id)
            .bind(i64::from(iteration))
            .bind(i64::from(attempt))
            .bind(node_type)
            .bind(i(req.at_ms))
            .bind(overrides)
            .execute(&mut *tx)
            .await?;
        }
        if req.restart.is_some() {
            let last: i64 =
                sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events WHERE run_id = ?")
                    .bind(&key.run_id)
                    .fetch_one(&mut *tx)
                    .await?;
            let e = crate::records::restart_event(req, &key, next, u(last) + 1);
            sqlx::query("INSERT INTO events (run_id, seq, body) VALUES (?, ?, ?)")
                .bind(&key.run_id)
                .bind(i(e.seq))
                .bind(json_text(&e)?)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE runs SET event_seq = max(event_seq, ?) WHERE run_id = ?")
                .bind(i(e.seq))
                .bind(&key.run_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE runs SET status = 'running', error = NULL, error_node = NULL, finished_ms = NULL, updated_ms = ?
             WHERE run_id = ?",
        )
        .bind(i(req.at_ms))
        .bind(&key.run_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ReplayOutcome {
            run_id: key.run_id,
            node_id: key.node_id,
            attempt: next,
            redispatched,
        })
    }

    async fn purge_dead_letters(&self, filter: &DeadLetterFilter) -> Result<usize> {
        let open_only = DeadLetterFilter {
            any_state: false,
            ..filter.clone()
        };
        let sql = format!(
            "UPDATE attempts SET dlq_state = 'purged' WHERE rowid IN (
                 SELECT a.rowid FROM attempts a JOIN runs r ON r.run_id = a.run_id WHERE {DLQ_WHERE})"
        );
        let done = bind_dlq(sqlx::query(sqlx::AssertSqlSafe(sql)), &open_only)
            .execute(&self.pool)
            .await?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(0))
    }

    async fn commit(&self, mut batch: Batch) -> Result<CommitReport> {
        let mut tx = self.pool.begin().await?;
        let marks = (std::mem::take(&mut batch.published), batch.published_ms);
        let report = commit::apply(&mut tx, batch).await?;
        mark(&mut tx, &marks.0, marks.1).await?;
        tx.commit().await?;
        Ok(report)
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let row = sqlx::query("SELECT * FROM runs WHERE run_id = ?")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(run_row).transpose()
    }

    async fn run_by_key(&self, key: &str) -> Result<Option<RunRecord>> {
        let row = sqlx::query("SELECT * FROM runs WHERE idempotency_key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(run_row).transpose()
    }

    async fn unreported_children(&self, before_ms: u64, limit: usize) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM runs WHERE parent_task IS NOT NULL AND parent_reported_ms IS NULL
               AND finished_ms IS NOT NULL AND finished_ms <= ? ORDER BY finished_ms LIMIT ?",
        )
        .bind(i(before_ms))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }

    async fn mark_children_reported(&self, run_ids: &[String], at_ms: u64) -> Result<()> {
        for id in run_ids {
            sqlx::query("UPDATE runs SET parent_reported_ms = ? WHERE run_id = ?")
                .bind(i(at_ms))
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    async fn audit_log(&self, filter: &crate::AuditFilter) -> Result<Vec<crate::AuditEntry>> {
        let limit = if filter.limit == 0 {
            i64::MAX
        } else {
            i64::try_from(filter.limit).unwrap_or(i64::MAX)
        };
        let rows = sqlx::query(
            "SELECT run_id, node_id, iteration, attempt, idx, at_ms, entry FROM audit_log
             WHERE (?1 IS NULL OR run_id = ?1) AND (?2 IS NULL OR event_type = ?2) AND (?3 IS NULL OR at_ms >= ?3)
               AND (?5 IS NULL OR run_id IN (SELECT run_id FROM runs WHERE tenant = ?5))
             ORDER BY at_ms DESC, rowid DESC LIMIT ?4",
        )
        .bind(&filter.run_id)
        .bind(&filter.event_type)
        .bind(filter.since_ms.map(i))
        .bind(limit)
        .bind(&filter.tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let entry: String = r.try_get("entry")?;
                Ok(crate::AuditEntry {
                    run_id: r.try_get("run_id")?,
                    node_id: r.try_get("node_id")?,
                    iteration: u32::try_from(r.try_get::<i64, _>("iteration")?).unwrap_or(0),
                    attempt: u32::try_from(r.try_get::<i64, _>("attempt")?).unwrap_or(0),
                    idx: u32::try_from(r.try_get::<i64, _>("idx")?).unwrap_or(0),
                    at_ms: u(r.try_get("at_ms")?),
                    entry: serde_json::from_str(&entry)
                        .map_err(|e| Error::Corrupt(e.to_string()))?,
                })
            })
            .collect()
    }

    async fn alias_of(&self, run_id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT run_id FROM run_aliases WHERE alias = ?")
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let limit = if filter.limit == 0 {
            i64::MAX
        } else {
            i64::try_from(filter.limit).unwrap_or(i64::MAX)
        };
        let rows = sqlx::query(
            "SELECT * FROM runs
             WHERE (?1 IS NULL OR status = ?1) AND (?3 IS NULL OR tenant = ?3)
               AND (?4 IS NULL OR workflow_name = ?4 OR (workflow_name = '' AND workflow_id = ?4))
               AND (?5 IS NULL OR created_ms >= ?5) AND (?6 IS NULL OR created_ms < ?6)
               AND (?7 IS NULL OR created_ms < ?7 OR (created_ms = ?7 AND run_id < ?8))
             ORDER BY created_ms DESC, run_id DESC LIMIT ?2",
        )
        .bind(filter.status.map(RunStatus::as_str))
        .bind(limit)
        .bind(filter.tenant.as_deref())
        .bind(filter.workflow.as_deref())
        .bind(filter.since_ms.map(i))
        .bind(filter.until_ms.map(i))
        .bind(filter.before.as_ref().map(|(ms, _)| i(*ms)))
        .bind(filter.before.as_ref().map(|(_, id)| id.as_str()))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }

    async fn attempts(&self, run_id: &str) -> Result<Vec<AttemptRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM attempts WHERE run_id = ? ORDER BY seq IS NULL, seq, dispatched_ms, node_id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt_row).collect()
    }

    async fn reserve_rate(
        &self,
        queue: &str,
        interval_ms: f64,
        n: u32,
        not_before_ms: f64,
    ) -> Result<f64> {
        let span = interval_ms * f64::from(n);
        let begin: f64 = sqlx::query_scalar(
            "INSERT INTO queue_rates (queue, tat_ms) VALUES (?1, ?2 + ?3)
             ON CONFLICT (queue) DO UPDATE SET tat_ms = max(queue_rates.tat_ms, ?2) + ?3
             RETURNING tat_ms - ?3",
        )
        .bind(queue)
        .bind(not_before_ms)
        .bind(span)
        .fetch_one(&self.pool)
        .await?;
        Ok(begin)
    }

    async fn concurrency_usage(&self, group: &str) -> Result<(u64, u64)> {
        let (running, queued): (i64, i64) = sqlx::query_as(
            "SELECT coalesce(sum(status = 'running'), 0), coalesce(sum(status = 'queued'), 0) FROM runs WHERE concurrency_key = ?",
        )
        .bind(group)
        .fetch_one(&self.pool)
        .await?;
        Ok((u(running), u(queued)))
    }

    async fn startable_runs(&self, groups: Option<&[String]>, limit: usize) -> Result<Vec<String>> {
        let groups = groups.map(|g| serde_json::to_string(g).unwrap_or_default());
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT run_id FROM (
                 SELECT q.run_id, q.created_ms, q.rowid AS r,
                        row_number() OVER (PARTITION BY q.concurrency_key ORDER BY q.created_ms, q.rowid) AS pos,
                        q.concurrency_limit - (SELECT count(*) FROM runs x WHERE x.concurrency_key = q.concurrency_key AND x.status = 'running') AS free
                 FROM runs q
                 WHERE q.status = 'queued' AND q.concurrency_key IS NOT NULL
                   AND (?1 IS NULL OR q.concurrency_key IN (SELECT value FROM json_each(?1)))
             ) WHERE pos <= free ORDER BY created_ms, r LIMIT ?2",
        )
        .bind(groups)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    async fn overdue_runs(&self, now_ms: u64, limit: usize) -> Result<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT run_id, deadline_ms FROM runs WHERE deadline_ms IS NOT NULL AND finished_ms IS NULL AND deadline_ms <= ? AND status IN ('running', 'queued') ORDER BY deadline_ms LIMIT ?",
        )
        .bind(i(now_ms))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id, d)| (id, u(d))).collect())
    }

    async fn mark_published(&self, attempts: &[AttemptKey], at_ms: u64) -> Result<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        mark(&mut tx, attempts, at_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn unpublished(&self, before_ms: u64, limit: usize) -> Result<Vec<AttemptKey>> {
        let rows = sqlx::query(
            "SELECT a.run_id, a.node_id, a.iteration, a.attempt FROM attempts a JOIN runs r ON r.run_id = a.run_id
             WHERE a.status = 'dispatched' AND a.published_ms IS NULL AND a.dispatched_ms <= ? AND r.status = 'running'
             ORDER BY a.dispatched_ms LIMIT ?",
        )
        .bind(i(before_ms))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptKey {
                    run_id: r.try_get("run_id")?,
                    node_id: r.try_get("node_id")?,
                    iteration: u32::try_from(r.try_get::<i64, _>("iteration")?).unwrap_or(0),
                    attempt: u32::try_from(r.try_get::<i64, _>("attempt")?).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn events(&self, run_id: &str) -> Result<Vec<RunEvent>> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT body FROM events WHERE run_id = ? ORDER BY seq")
                .bind(run_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|b| serde_json::from_str(b).map_err(|e| Error::Corrupt(e.to_string())))
            .collect()
    }
}

/// Marks tasks published (the outbox's hint), inside the caller's transaction.
async fn mark(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    attempts: &[AttemptKey],
    at_ms: u64,
) -> Result<()> {
    for k in attempts {
        sqlx::query(
            "UPDATE attempts SET published_ms = ? WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ? AND published_ms IS NULL",
        )
        .bind(i(at_ms))
        .bind(&k.run_id)
        .bind(&k.node_id)
        .bind(i32::try_from(k.iteration).unwrap_or(i32::MAX))
        .bind(i32::try_from(k.attempt).unwrap_or(i32::MAX))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// In byte order whatever the database's collation.
fn live_runs_of(rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<crate::LiveRuns>> {
    rows.iter()
        .map(|r| {
            let status: String = r.try_get("status")?;
            Ok(crate::LiveRuns {
                tenant: r.try_get("tenant")?,
                workflow: r.try_get("workflow")?,
                status: crate::RunStatus::parse(&status)
                    .ok_or_else(|| crate::Error::Corrupt(format!("run status {status:?}")))?,
                runs: u(r.try_get::<i64, _>("n")?),
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(|mut v| {
            v.sort_by(|a, b| {
                (&a.tenant, &a.workflow, a.status.as_str()).cmp(&(
                    &b.tenant,
                    &b.workflow,
                    b.status.as_str(),
                ))
            });
            v
        })
}

fn stuck_of(r: &SqliteRow) -> Result<crate::StuckRun> {
    let in_flight: String = r.try_get("in_flight")?;
    let mut in_flight: Vec<String> = in_flight
        .split('\u{1f}')
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect();
    in_flight.sort();
    in_flight.dedup();
    Ok(crate::StuckRun {
        run_id: r.try_get("run_id")?,
        tenant: r.try_get("tenant")?,
        workflow: r.try_get("workflow")?,
        created_ms: u(r.try_get("created_ms")?),
        progress_ms: u(r.try_get("progress_ms")?),
        max_attempt: u32::try_from(r.try_get::<i64, _>("max_attempt")?).unwrap_or(u32::MAX),
        in_flight,
    })
}
