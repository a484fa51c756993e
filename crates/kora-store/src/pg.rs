//! The ledger in PostgreSQL (sqlx), for the distributed roles. Migrations are embedded and
//! applied at start-up under an advisory lock, so many coordinators can start at once.
//! Queries are checked at run time (no sqlx macros), so builds need no database.

use std::time::Duration;

use async_trait::async_trait;
use kora_model::wire::RunEvent;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};

use crate::{
    AttemptKey, AttemptRecord, AttemptStatus, Batch, CommitReport, Error, Expect, Result,
    RunFilter, RunRecord, RunStatus, Store,
};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_ledger.sql")),
    (2, include_str!("../migrations/postgres/0002_outbox.sql")),
];

/// Connection settings, owned by the store.
#[derive(Debug, Clone)]
pub struct PgConfig {
    pub url: String,
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            url: "postgres://127.0.0.1:5432/kora".into(),
            max_connections: 8,
            min_connections: 1,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

pub struct PgStore {
    pool: PgPool,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn json_text<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Corrupt(e.to_string()))
}

impl PgStore {
    pub async fn connect(cfg: &PgConfig) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(cfg.max_connections)
            .min_connections(cfg.min_connections)
            .acquire_timeout(cfg.acquire_timeout)
            .connect(&cfg.url)
            .await?;
        let store = PgStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // One migrator at a time across every process sharing the database.
        sqlx::query("SELECT pg_advisory_xact_lock(7203571)")
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql("CREATE TABLE IF NOT EXISTS kora_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)")
            .execute(&mut *tx)
            .await?;
        for (version, sql) in MIGRATIONS {
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM kora_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_some() {
                continue;
            }
            sqlx::raw_sql(*sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO kora_migrations (version, applied_ms) VALUES ($1, $2)")
                .bind(version)
                .bind(i(kora_model::now_ms()))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn run_row(r: &PgRow) -> Result<RunRecord> {
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
    })
}

const RUN_COLUMNS: &str = "run_id, idempotency_key, workflow_id, workflow_name, status, spec::text AS spec, params::text AS params, error, error_node, created_ms, updated_ms, finished_ms";

async fn apply(tx: &mut Transaction<'_, Postgres>, batch: Batch) -> Result<CommitReport> {
    let mut report = CommitReport::default();
    for e in &batch.expect {
        let run_id = match e {
            Expect::Outcomes { run_id, .. } | Expect::Absent { run_id } => run_id,
        };
        let have: Option<i64> =
            sqlx::query_scalar("SELECT outcomes FROM runs WHERE run_id = $1 FOR UPDATE")
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
        }
    }
    for r in batch.new_runs {
        let finished = r.status.is_final().then_some(i(r.at_ms));
        let done = sqlx::query(
            "INSERT INTO runs (run_id, idempotency_key, workflow_id, workflow_name, status, spec, params, error, created_ms, updated_ms, finished_ms)
             VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $9, $10) ON CONFLICT DO NOTHING",
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
        .bind(finished)
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 0 {
            report.runs_existing += 1;
        }
    }
    // New attempts and events go in one statement per batch (multi-row UNNEST). Outcomes stay one
    // keyed UPDATE each: an UPDATE joined to UNNEST made PostgreSQL scan the whole table.
    if !batch.new_attempts.is_empty() {
        let n = batch.new_attempts.len();
        let (mut runs, mut nodes, mut iters, mut atts, mut types, mut statuses, mut at, mut fin) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for a in &batch.new_attempts {
            runs.push(a.run_id.as_str());
            nodes.push(a.node_id.as_str());
            iters.push(i32::try_from(a.iteration).unwrap_or(i32::MAX));
            atts.push(i32::try_from(a.attempt).unwrap_or(i32::MAX));
            types.push(a.node_type.as_str());
            statuses.push(a.status.as_str());
            at.push(i(a.at_ms));
            fin.push((a.status == AttemptStatus::Skipped).then_some(i(a.at_ms)));
        }
        let done = sqlx::query(
            "INSERT INTO attempts (run_id, node_id, iteration, attempt, node_type, status, dispatched_ms, finished_ms)
             SELECT u.run_id, u.node_id, u.iteration, u.attempt, u.node_type, u.status, u.dispatched_ms, u.finished_ms
             FROM UNNEST($1::text[], $2::text[], $3::int[], $4::int[], $5::text[], $6::text[], $7::bigint[], $8::bigint[])
                  AS u(run_id, node_id, iteration, attempt, node_type, status, dispatched_ms, finished_ms)
             WHERE EXISTS (SELECT 1 FROM runs r WHERE r.run_id = u.run_id)
             ON CONFLICT DO NOTHING",
        )
        .bind(&runs)
        .bind(&nodes)
        .bind(&iters)
        .bind(&atts)
        .bind(&types)
        .bind(&statuses)
        .bind(&at)
        .bind(&fin)
        .execute(&mut **tx)
        .await?;
        report.attempts_existing += n - usize::try_from(done.rows_affected()).unwrap_or(n);
    }
    for o in batch.outcomes {
        let output = o.output.as_ref().map(json_text).transpose()?;
        // Numbering and recording happen in one statement; the run row is locked by the
        // UPDATE, so concurrent coordinators number a run's outcomes without gaps or repeats.
        let done = sqlx::query(
            "WITH target AS (
                 SELECT 1 FROM attempts
                 WHERE run_id = $7 AND node_id = $8 AND iteration = $9 AND attempt = $10 AND status = 'dispatched'
                 FOR UPDATE
             ), bumped AS (
                 UPDATE runs SET outcomes = outcomes + 1
                 WHERE run_id = $7 AND EXISTS (SELECT 1 FROM target)
                 RETURNING outcomes
             )
             UPDATE attempts SET status = $1, output = $2::jsonb, error = $3, error_type = $4, worker_id = $5,
                    finished_ms = $6, seq = (SELECT outcomes FROM bumped)
             WHERE run_id = $7 AND node_id = $8 AND iteration = $9 AND attempt = $10 AND status = 'dispatched'
               AND EXISTS (SELECT 1 FROM bumped)",
        )
        .bind(o.status.as_str())
        .bind(output)
        .bind(&o.error)
        .bind(&o.error_type)
        .bind(&o.worker_id)
        .bind(i(o.at_ms))
        .bind(&o.run_id)
        .bind(&o.node_id)
        .bind(i32::try_from(o.iteration).unwrap_or(i32::MAX))
        .bind(i32::try_from(o.attempt).unwrap_or(i32::MAX))
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 0 {
            report.outcomes_ignored += 1;
        }
    }
    for up in batch.run_updates {
        let finished = up.status.is_final().then_some(i(up.at_ms));
        sqlx::query(
            "UPDATE runs SET status = $1, error = $2, error_node = $3, updated_ms = $4, finished_ms = $5
             WHERE run_id = $6 AND status = 'running'",
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
    if !batch.events.is_empty() {
        let runs: Vec<&str> = batch.events.iter().map(|e| e.run_id.as_str()).collect();
        let seqs: Vec<i64> = batch.events.iter().map(|e| i(e.seq)).collect();
        let bodies: Vec<String> = batch.events.iter().map(json_text).collect::<Result<_>>()?;
        sqlx::query(
            "INSERT INTO events (run_id, seq, body)
             SELECT u.run_id, u.seq, u.body::jsonb FROM UNNEST($1::text[], $2::bigint[], $3::text[]) AS u(run_id, seq, body)
             WHERE EXISTS (SELECT 1 FROM runs r WHERE r.run_id = u.run_id)
             ON CONFLICT DO NOTHING",
        )
        .bind(&runs)
        .bind(&seqs)
        .bind(&bodies)
        .execute(&mut **tx)
        .await?;
    }
    Ok(report)
}

#[async_trait]
impl Store for PgStore {
    async fn commit(&self, batch: Batch) -> Result<CommitReport> {
        let mut tx = self.pool.begin().await?;
        let report = apply(&mut tx, batch).await?;
        tx.commit().await?;
        Ok(report)
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE run_id = $1"
        )))
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(run_row).transpose()
    }

    async fn run_by_key(&self, key: &str) -> Result<Option<RunRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE idempotency_key = $1"
        )))
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(run_row).transpose()
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let limit = if filter.limit == 0 {
            i64::MAX
        } else {
            i64::try_from(filter.limit).unwrap_or(i64::MAX)
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE ($1::text IS NULL OR status = $1) ORDER BY created_ms DESC, run_id DESC LIMIT $2"
        )))
        .bind(filter.status.map(RunStatus::as_str))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }

    async fn attempts(&self, run_id: &str) -> Result<Vec<AttemptRecord>> {
        let rows = sqlx::query(
            "SELECT run_id, node_id, iteration, attempt, node_type, status, output::text AS output, error, error_type,
                    worker_id, dispatched_ms, finished_ms, seq
             FROM attempts WHERE run_id = $1 ORDER BY seq NULLS LAST, dispatched_ms, node_id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                let output: Option<String> = r.try_get("output")?;
                Ok(AttemptRecord {
                    run_id: r.try_get("run_id")?,
                    node_id: r.try_get("node_id")?,
                    iteration: u32::try_from(r.try_get::<i32, _>("iteration")?).unwrap_or(0),
                    attempt: u32::try_from(r.try_get::<i32, _>("attempt")?).unwrap_or(0),
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
                })
            })
            .collect()
    }

    async fn mark_published(&self, attempts: &[AttemptKey], at_ms: u64) -> Result<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for k in attempts {
            sqlx::query(
                "UPDATE attempts SET published_ms = $1 WHERE run_id = $2 AND node_id = $3 AND iteration = $4 AND attempt = $5 AND published_ms IS NULL",
            )
            .bind(i(at_ms))
            .bind(&k.run_id)
            .bind(&k.node_id)
            .bind(i32::try_from(k.iteration).unwrap_or(i32::MAX))
            .bind(i32::try_from(k.attempt).unwrap_or(i32::MAX))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn unpublished(&self, before_ms: u64, limit: usize) -> Result<Vec<AttemptKey>> {
        let rows = sqlx::query(
            "SELECT a.run_id, a.node_id, a.iteration, a.attempt FROM attempts a JOIN runs r ON r.run_id = a.run_id
             WHERE a.status = 'dispatched' AND a.published_ms IS NULL AND a.dispatched_ms <= $1 AND r.status = 'running'
             ORDER BY a.dispatched_ms LIMIT $2",
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
                    iteration: u32::try_from(r.try_get::<i32, _>("iteration")?).unwrap_or(0),
                    attempt: u32::try_from(r.try_get::<i32, _>("attempt")?).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn events(&self, run_id: &str) -> Result<Vec<RunEvent>> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT body::text FROM events WHERE run_id = $1 ORDER BY seq")
                .bind(run_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|b| serde_json::from_str(b).map_err(|e| Error::Corrupt(e.to_string())))
            .collect()
    }
}
