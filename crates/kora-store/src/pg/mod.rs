//! The ledger in PostgreSQL (sqlx), for the distributed roles. The schema ([`schema`]) is
//! brought up to date at start-up under an advisory lock, so many coordinators can start at
//! once. Queries are checked at run time (no sqlx macros), so builds need no database.

mod batch;
mod options;
pub mod probe;
pub mod schema;

use std::time::Duration;

use async_trait::async_trait;
use kora_model::wire::RunEvent;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};

use crate::{
    AttemptKey, AttemptRecord, AttemptStatus, Batch, CommitReport, DeadLetterFilter,
    DeadLetterInfo, DeadLetterRecord, Error, ReplayOutcome, ReplayRequest, Result, RunFilter,
    RunRecord, RunStatus, Store,
};

/// `[database]`: the ledger's PostgreSQL, owned by the store.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PgConfig {
    /// `postgres://user@host:5432/database`, with libpq's parameters: `sslmode=verify-full`
    /// and `sslrootcert=/path/ca.pem` for TLS (`sslcert`/`sslkey` for a client certificate).
    /// The password comes best from `password_file` or `PGPASSWORD`, not the URL.
    pub url: String,
    /// A file holding the password (one line; a trailing newline is ignored), read when the
    /// pool connects: a mounted secret rather than a URL that shows up in process listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<std::path::PathBuf>,
    pub max_connections: u32,
    pub min_connections: u32,
    /// How long a ledger write waits for a connection (PostgreSQL down or restarting) before
    /// its batch fails and is retried with backoff.
    #[serde(with = "kora_model::duration")]
    pub acquire_timeout: Duration,
    /// Bring the ledger to this build's schema at start-up. `false` for a role that may not
    /// change the schema (no DDL outside migrations): it only checks the ledger is current, and
    /// `kora setup`, connected as the database's owner, migrates (docs/security.md).
    pub migrate: bool,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            url: "postgres://127.0.0.1:5432/kora".into(),
            password_file: None,
            max_connections: 8,
            min_connections: 1,
            acquire_timeout: Duration::from_secs(10),
            migrate: true,
        }
    }
}

impl PgConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            return Err(format!(
                "database.url must be a postgres:// URL (it is {:?})",
                redact(&self.url)
            ));
        }
        if self.max_connections == 0 || self.min_connections > self.max_connections {
            return Err(format!(
                "database.max_connections must be at least 1 and at least min_connections ({} and {})",
                self.max_connections, self.min_connections
            ));
        }
        if self.acquire_timeout < Duration::from_millis(100) {
            return Err("database.acquire_timeout must be at least 100ms".into());
        }
        if self.password_file.is_some() && options::url_password(&self.url) {
            return Err(
                "database.url holds a password and database.password_file is set: keep only the file (remove the password from the URL)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// A connection URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub struct PgStore {
    pool: PgPool,
}

crate::sql_directory::sql_directory!(super::PgStore, "::jsonb", "::text");
crate::sql_alerts::sql_alerts!(super::PgStore, "::jsonb", "::text");

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn json_text<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Corrupt(e.to_string()))
}

/// A connection idle longer than this is pinged before it is used again.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// The pool's options. sqlx pings every connection it hands out by default: a round trip
/// before each statement, which doubled the ledger's round trips under load. Here only a
/// connection idle for `PING_IF_IDLE_FOR` is pinged (one the server or a proxy may have
/// dropped meanwhile); a connection that breaks while busy fails its statement, which every
/// caller already treats as transient and retries.
fn pool_options(cfg: &PgConfig) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(cfg.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    use sqlx::Connection;
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

impl PgStore {
    pub async fn connect(cfg: &PgConfig) -> Result<Self> {
        let pool = pool_options(cfg)
            .min_connections(cfg.min_connections)
            .connect_with(options::for_config(cfg)?)
            .await?;
        if cfg.migrate {
            schema::migrate(&pool, &schema::migrator()).await?;
        } else {
            schema::check_current(&pool).await?;
        }
        Ok(PgStore { pool })
    }

    /// Creates the database `cfg.url` names if it does not exist, through the server's
    /// `postgres` database with the same credentials: `Ok(Some(name))` when it was created,
    /// `Ok(None)` when it was there. Any other failure to connect is returned as it is.
    pub async fn create_database_if_missing(cfg: &PgConfig) -> Result<Option<String>> {
        use sqlx::{ConnectOptions, Connection};
        let opts = options::for_config(cfg)?;
        match opts.connect().await {
            Ok(c) => {
                let _ = c.close().await;
                Ok(None)
            }
            Err(e) if crate::error::sqlstate(&e).as_deref() == Some("3D000") => {
                let name = opts.get_database().unwrap_or_default().to_string();
                let mut admin = opts.clone().database("postgres").connect().await?;
                let quoted = format!("\"{}\"", name.replace('"', "\"\""));
                let made = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
                    .execute(&mut admin)
                    .await;
                let _ = admin.close().await;
                match made {
                    Ok(_) => Ok(Some(name)),
                    // Another process made it first: `duplicate_database`, or, when both
                    // created it at the same moment, a unique violation on pg_database's index.
                    Err(e)
                        if matches!(
                            crate::error::sqlstate(&e).as_deref(),
                            Some("42P04" | "23505")
                        ) =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Connects and migrates with another migrator: how the tests make an edited migration.
    #[cfg(any(test, feature = "test-util"))]
    pub async fn connect_with(cfg: &PgConfig, migrator: &sqlx::migrate::Migrator) -> Result<Self> {
        let pool = pool_options(cfg)
            .connect_with(options::for_config(cfg)?)
            .await?;
        schema::migrate(&pool, migrator).await?;
        Ok(PgStore { pool })
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
        parent: r.try_get("parent_task")?,
        event_seq: u(r.try_get("event_seq")?),
        tenant: r.try_get("tenant")?,
    })
}

const RUN_COLUMNS: &str = "run_id, idempotency_key, workflow_id, workflow_name, status, spec::text AS spec, params::text AS params, error, error_node, created_ms, updated_ms, finished_ms, parent_task, event_seq, tenant";

/// A failed expectation raised by `kora_commit` (SQLSTATE KR409).
fn conflict(e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &e
        && db.code().as_deref() == Some("KR409")
    {
        let detail = db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .and_then(|p| p.detail().map(str::to_owned))
            .unwrap_or_default();
        return Error::Conflict {
            run_id: db.message().to_owned(),
            detail,
        };
    }
    Error::Db(e)
}

fn count(report: &serde_json::Value, key: &str) -> usize {
    report
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
}

const ATTEMPT_COLUMNS: &str = "a.run_id, a.node_id, a.iteration, a.attempt, a.node_type, a.status,
    a.output::text AS output, a.error, a.error_type, a.worker_id, a.dispatched_ms, a.finished_ms, a.seq,
    a.dlq_reason, a.dlq_state, a.inputs::text AS inputs, a.overrides::text AS overrides, a.replayed_ms,
    a.replayed_by, a.replay_attempt";

/// The dead-letter filter over `attempts a JOIN runs r`: $1 any state, $2 workflow, $3 reason,
/// $4 since (ms), $5 run, $6 dead-letter id, $7 tenant.
const DLQ_WHERE: &str = "a.dlq_state IS NOT NULL AND ($1 OR a.dlq_state = 'open')
    AND ($2::text IS NULL OR r.workflow_name = $2) AND ($3::text IS NULL OR a.dlq_reason = $3)
    AND ($4::bigint IS NULL OR a.finished_ms >= $4) AND ($5::text IS NULL OR a.run_id = $5)
    AND ($6::text IS NULL OR a.run_id || ':' || a.node_id || ':' || a.iteration || ':' || a.attempt = $6)
    AND ($7::text IS NULL OR r.tenant = $7)";

fn json_map(v: Option<String>) -> Result<Option<kora_model::Map>> {
    v.map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| Error::Corrupt(e.to_string()))
}

fn attempt_row(r: &PgRow) -> Result<AttemptRecord> {
    let parsed = |c: &str| -> Result<Option<serde_json::Value>> {
        r.try_get::<Option<String>, _>(c)?
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| Error::Corrupt(e.to_string()))
    };
    AttemptCols {
        run_id: r.try_get("run_id")?,
        node_id: r.try_get("node_id")?,
        iteration: r.try_get("iteration")?,
        attempt: r.try_get("attempt")?,
        node_type: r.try_get("node_type")?,
        status: r.try_get("status")?,
        output: parsed("output")?,
        error: r.try_get("error")?,
        error_type: r.try_get("error_type")?,
        worker_id: r.try_get("worker_id")?,
        dispatched_ms: r.try_get("dispatched_ms")?,
        finished_ms: r.try_get("finished_ms")?,
        seq: r.try_get("seq")?,
        dlq_reason: r.try_get("dlq_reason")?,
        dlq_state: r.try_get("dlq_state")?,
        inputs: json_map(r.try_get("inputs")?)?,
        overrides: json_map(r.try_get("overrides")?)?,
        replayed_ms: r.try_get("replayed_ms")?,
        replayed_by: r.try_get("replayed_by")?,
        replay_attempt: r.try_get("replay_attempt")?,
    }
    .into_record()
}

/// An `attempts` row as PostgreSQL hands it over, from columns ([`attempt_row`]) or as one
/// JSON object of a `json_agg` ([`ATTEMPTS_JSON`]).
#[derive(serde::Deserialize)]
struct AttemptCols {
    run_id: String,
    node_id: String,
    iteration: i32,
    attempt: i32,
    node_type: String,
    status: String,
    output: Option<serde_json::Value>,
    error: Option<String>,
    error_type: Option<String>,
    worker_id: Option<String>,
    dispatched_ms: i64,
    finished_ms: Option<i64>,
    seq: Option<i64>,
    dlq_reason: Option<String>,
    dlq_state: Option<String>,
    inputs: Option<kora_model::Map>,
    overrides: Option<kora_model::Map>,
    replayed_ms: Option<i64>,
    replayed_by: Option<String>,
    replay_attempt: Option<i32>,
}

impl AttemptCols {
    fn into_record(self) -> Result<AttemptRecord> {
        let dead_letter = self.dlq_state.map(|state| DeadLetterInfo {
            reason: self.dlq_reason.unwrap_or_default(),
            state,
            inputs: self.inputs,
            replayed_ms: self.replayed_ms.map(u),
            replayed_by: self.replayed_by,
            replay_attempt: self.replay_attempt.and_then(|a| u32::try_from(a).ok()),
        });
        Ok(AttemptRecord {
            status: AttemptStatus::parse(&self.status)
                .ok_or_else(|| Error::Corrupt(format!("attempt status {:?}", self.status)))?,
            run_id: self.run_id,
            node_id: self.node_id,
            iteration: u32::try_from(self.iteration).unwrap_or(0),
            attempt: u32::try_from(self.attempt).unwrap_or(0),
            node_type: self.node_type,
            output: self.output,
            error: self.error,
            error_type: self.error_type,
            worker_id: self.worker_id,
            dispatched_ms: u(self.dispatched_ms),
            finished_ms: self.finished_ms.map(u),
            seq: self.seq.map(u),
            dead_letter,
            overrides: self.overrides,
        })
    }
}

/// Every attempt of the run in the row (`runs`), as one JSON array in [`Store::attempts`]'
/// order: the run and its attempts come back in one round trip.
const ATTEMPTS_JSON: &str = "(SELECT coalesce(json_agg(json_build_object(
    'run_id', a.run_id, 'node_id', a.node_id, 'iteration', a.iteration, 'attempt', a.attempt,
    'node_type', a.node_type, 'status', a.status, 'output', a.output, 'error', a.error,
    'error_type', a.error_type, 'worker_id', a.worker_id, 'dispatched_ms', a.dispatched_ms,
    'finished_ms', a.finished_ms, 'seq', a.seq, 'dlq_reason', a.dlq_reason, 'dlq_state', a.dlq_state,
    'inputs', a.inputs, 'overrides', a.overrides, 'replayed_ms', a.replayed_ms,
    'replayed_by', a.replayed_by, 'replay_attempt', a.replay_attempt)
    ORDER BY a.seq NULLS LAST, a.dispatched_ms, a.node_id), '[]')::text
  FROM attempts a WHERE a.run_id = runs.run_id) AS attempts_json";

#[async_trait]
impl Store for PgStore {
    async fn commit(&self, batch: Batch) -> Result<CommitReport> {
        // One statement in autocommit: one round trip and one WAL flush per batch.
        let doc = batch::batch_json(&batch)?;
        let report: String = sqlx::query_scalar("SELECT kora_commit($1::jsonb)::text")
            .bind(doc)
            .fetch_one(&self.pool)
            .await
            .map_err(conflict)?;
        let report: serde_json::Value =
            serde_json::from_str(&report).map_err(|e| Error::Corrupt(e.to_string()))?;
        Ok(CommitReport {
            runs_existing: count(&report, "runs_existing"),
            outcomes_ignored: count(&report, "outcomes_ignored"),
            attempts_existing: count(&report, "attempts_existing"),
        })
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

    async fn run_with_attempts(
        &self,
        run_id: &str,
    ) -> Result<Option<(RunRecord, Vec<AttemptRecord>)>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS}, {ATTEMPTS_JSON} FROM runs WHERE run_id = $1"
        )))
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let attempts: Vec<AttemptCols> =
            serde_json::from_str(&row.try_get::<String, _>("attempts_json")?)
                .map_err(|e| Error::Corrupt(e.to_string()))?;
        let attempts = attempts
            .into_iter()
            .map(AttemptCols::into_record)
            .collect::<Result<_>>()?;
        Ok(Some((run_row(&row)?, attempts)))
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

    async fn unreported_children(&self, before_ms: u64, limit: usize) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE parent_task IS NOT NULL AND parent_reported_ms IS NULL
               AND finished_ms IS NOT NULL AND finished_ms <= $1 ORDER BY finished_ms LIMIT $2"
        )))
        .bind(i(before_ms))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }

    async fn mark_children_reported(&self, run_ids: &[String], at_ms: u64) -> Result<()> {
        if run_ids.is_empty() {
            return Ok(());
        }
        sqlx::query("UPDATE runs SET parent_reported_ms = $1 WHERE run_id = ANY($2)")
            .bind(i(at_ms))
            .bind(run_ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn audit_log(&self, filter: &crate::AuditFilter) -> Result<Vec<crate::AuditEntry>> {
        let limit = if filter.limit == 0 {
            i64::MAX
        } else {
            i64::try_from(filter.limit).unwrap_or(i64::MAX)
        };
        let rows = sqlx::query(
            "SELECT run_id, node_id, iteration, attempt, idx, at_ms, entry::text AS entry FROM audit_log
             WHERE ($1::text IS NULL OR run_id = $1) AND ($2::text IS NULL OR event_type = $2)
               AND ($3::bigint IS NULL OR at_ms >= $3)
               AND ($5::text IS NULL OR run_id IN (SELECT run_id FROM runs WHERE tenant = $5))
             ORDER BY at_ms DESC, run_id, node_id, attempt, idx LIMIT $4",
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
                    iteration: u32::try_from(r.try_get::<i32, _>("iteration")?).unwrap_or(0),
                    attempt: u32::try_from(r.try_get::<i32, _>("attempt")?).unwrap_or(0),
                    idx: u32::try_from(r.try_get::<i32, _>("idx")?).unwrap_or(0),
                    at_ms: u(r.try_get("at_ms")?),
                    entry: serde_json::from_str(&entry)
                        .map_err(|e| Error::Corrupt(e.to_string()))?,
                })
            })
            .collect()
    }

    async fn alias_of(&self, run_id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT run_id FROM run_aliases WHERE alias = $1")
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
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE ($1::text IS NULL OR status = $1) AND ($3::text IS NULL OR tenant = $3)
               AND ($4::text IS NULL OR workflow_name = $4 OR (workflow_name = '' AND workflow_id = $4))
               AND ($5::bigint IS NULL OR created_ms >= $5) AND ($6::bigint IS NULL OR created_ms < $6)
               AND ($7::bigint IS NULL OR (created_ms, run_id) < ($7, $8))
             ORDER BY created_ms DESC, run_id DESC LIMIT $2"
        )))
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
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts a WHERE a.run_id = $1 ORDER BY a.seq NULLS LAST, a.dispatched_ms, a.node_id"
        )))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt_row).collect()
    }

    async fn put_trigger(&self, t: &crate::TriggerRecord) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO triggers (name, subject, schedule, spec, params, paused, created_ms, updated_ms, tenant, webhook_salt)
             VALUES ($1, $2, $8, $3::jsonb, $4::jsonb, $5, $6, $7, $9, $10)
             ON CONFLICT (name) DO UPDATE SET subject = excluded.subject, schedule = excluded.schedule, spec = excluded.spec,
                 params = excluded.params, paused = excluded.paused, updated_ms = excluded.updated_ms,
                 webhook_salt = excluded.webhook_salt
             WHERE triggers.tenant = excluded.tenant",
        )
        .bind(&t.name)
        .bind(&t.subject)
        .bind(json_text(&t.spec)?)
        .bind(json_text(&t.params)?)
        .bind(t.paused)
        .bind(i(t.created_ms))
        .bind(i(t.updated_ms))
        .bind(&t.schedule)
        .bind(&t.tenant)
        .bind(&t.webhook_salt)
        .execute(&self.pool)
        .await?;
        crate::records::trigger_written(t, done.rows_affected())
    }

    async fn triggers(&self) -> Result<Vec<crate::TriggerRecord>> {
        let rows = sqlx::query(
            "SELECT name, subject, schedule, spec::text AS spec, params::text AS params, paused, created_ms, updated_ms, tenant,
                 webhook_salt
             FROM triggers ORDER BY name",
        )
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
        let done = sqlx::query("UPDATE triggers SET paused = $1, updated_ms = $2 WHERE name = $3")
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
                                UNION SELECT run_id FROM runs WHERE finished_ms >= $1)
               AND a.finished_ms >= $1 AND a.worker_id IS NOT NULL
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
                    GREATEST(r.created_ms, r.updated_ms, COALESCE(max(a.dispatched_ms), 0),
                             COALESCE(max(a.finished_ms), 0)) AS progress_ms,
                    COALESCE(max(a.attempt), 0)::BIGINT AS max_attempt,
                    COALESCE(string_agg(a.node_id, chr(31) ORDER BY a.node_id)
                             FILTER (WHERE a.status = 'dispatched'), '') AS in_flight
             FROM runs r LEFT JOIN attempts a ON a.run_id = r.run_id
             WHERE r.status = 'running'
             GROUP BY r.run_id
             HAVING GREATEST(r.created_ms, r.updated_ms, COALESCE(max(a.dispatched_ms), 0),
                             COALESCE(max(a.finished_ms), 0)) < $1
                 OR COALESCE(max(a.attempt), 0) >= $2
             ORDER BY r.created_ms, r.run_id LIMIT $3",
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
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 LIMIT $1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        live_runs_of(&rows)
    }

    fn pool_use(&self) -> Option<crate::PoolUse> {
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        Some(crate::PoolUse {
            in_use: size.saturating_sub(idle),
            idle,
            max: self.pool.options().get_max_connections(),
        })
    }

    async fn tenant_active_runs(&self, tenant: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM runs WHERE tenant = $1 AND status IN ('running', 'queued')",
        )
        .bind(tenant)
        .fetch_one(&self.pool)
        .await?;
        Ok(u(n))
    }

    async fn delete_trigger(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM triggers WHERE name = $1")
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
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ATTEMPT_COLUMNS}, r.workflow_name AS wf_name, r.status AS run_status
             FROM attempts a JOIN runs r ON r.run_id = a.run_id
             WHERE {DLQ_WHERE} ORDER BY a.finished_ms, a.run_id, a.node_id LIMIT $8"
        )))
        .bind(filter.any_state)
        .bind(filter.workflow.as_deref())
        .bind(filter.reason.as_deref())
        .bind(filter.since_ms.map(i))
        .bind(filter.run_id.as_deref())
        .bind(filter.id.as_deref())
        .bind(filter.tenant.as_deref())
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
        // The run row lock serializes replays (and coordinators' expectations) of this run.
        let exists: Option<String> =
            sqlx::query_scalar("SELECT status FROM runs WHERE run_id = $1 FOR UPDATE")
                .bind(&key.run_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(status) = exists else {
            return Err(Error::RunNotFound(key.run_id.clone()));
        };
        let status = RunStatus::parse(&status).unwrap_or(RunStatus::Running);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts a WHERE a.run_id = $1"
        )))
        .bind(&key.run_id)
        .fetch_all(&mut *tx)
        .await?;
        let attempts: Vec<AttemptRecord> = rows.iter().map(attempt_row).collect::<Result<_>>()?;
        let plan = crate::records::plan_replay(req, &key, &attempts, status).map_err(|detail| {
            Error::Conflict {
                run_id: key.run_id.clone(),
                detail: format!("{} {}: {detail}", req.what(), req.id),
            }
        })?;
        let next = plan.next;
        for k in &plan.superseded {
            sqlx::query(
                "UPDATE attempts SET dlq_state = 'replayed', replayed_ms = $1, replayed_by = $2
                 WHERE run_id = $3 AND node_id = $4 AND iteration = $5 AND attempt = $6",
            )
            .bind(i(req.at_ms))
            .bind(&req.actor)
            .bind(&k.run_id)
            .bind(&k.node_id)
            .bind(i32::try_from(k.iteration).unwrap_or(i32::MAX))
            .bind(i32::try_from(k.attempt).unwrap_or(i32::MAX))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE attempts SET dlq_state = CASE WHEN dlq_state IS NULL THEN NULL ELSE 'replayed' END,
                    replayed_ms = $1, replayed_by = $2, replay_attempt = $3
             WHERE run_id = $4 AND node_id = $5 AND iteration = $6 AND attempt = $7",
        )
        .bind(i(req.at_ms))
        .bind(&req.actor)
        .bind(i32::try_from(next).unwrap_or(i32::MAX))
        .bind(&key.run_id)
        .bind(&key.node_id)
        .bind(i32::try_from(key.iteration).unwrap_or(i32::MAX))
        .bind(i32::try_from(key.attempt).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
        let redispatched = plan.redispatched;
        for (node_id, iteration, attempt, node_type, overrides) in plan.fresh {
            let overrides = overrides.as_ref().map(json_text).transpose()?;
            sqlx::query(
                "INSERT INTO attempts (run_id, node_id, iteration, attempt, node_type, status, dispatched_ms, overrides)
                 VALUES ($1, $2, $3, $4, $5, 'dispatched', $6, $7::jsonb)",
            )
            .bind(&key.run_id)
            .bind(node_id)
            .bind(i32::try_from(iteration).unwrap_or(i32::MAX))
            .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
            .bind(node_type)
            .bind(i(req.at_ms))
            .bind(overrides)
            .execute(&mut *tx)
            .await?;
        }
        if req.restart.is_some() {
            let last: i64 =
                sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events WHERE run_id = $1")
                    .bind(&key.run_id)
                    .fetch_one(&mut *tx)
                    .await?;
            let e = crate::records::restart_event(req, &key, next, u(last) + 1);
            sqlx::query("INSERT INTO events (run_id, seq, body) VALUES ($1, $2, $3::jsonb)")
                .bind(&key.run_id)
                .bind(i(e.seq))
                .bind(json_text(&e)?)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE runs SET event_seq = greatest(event_seq, $1) WHERE run_id = $2")
                .bind(i(e.seq))
                .bind(&key.run_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE runs SET status = 'running', error = NULL, error_node = NULL, finished_ms = NULL, updated_ms = $1
             WHERE run_id = $2",
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
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE attempts a SET dlq_state = 'purged' FROM runs r
             WHERE r.run_id = a.run_id AND a.dlq_state = 'open' AND {DLQ_WHERE}"
        )))
        .bind(false)
        .bind(filter.workflow.as_deref())
        .bind(filter.reason.as_deref())
        .bind(filter.since_ms.map(i))
        .bind(filter.run_id.as_deref())
        .bind(filter.id.as_deref())
        .bind(filter.tenant.as_deref())
        .execute(&self.pool)
        .await?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(0))
    }

    async fn mark_published(&self, attempts: &[AttemptKey], at_ms: u64) -> Result<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let keys: Vec<batch::KeyDoc<'_>> = attempts.iter().map(batch::KeyDoc::of).collect();
        sqlx::query("SELECT kora_mark_published($1::jsonb, $2)")
            .bind(json_text(&keys)?)
            .bind(i(at_ms))
            .execute(&self.pool)
            .await?;
        Ok(())
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
            "INSERT INTO queue_rates (queue, tat_ms) VALUES ($1, $2 + $3)
             ON CONFLICT (queue) DO UPDATE SET tat_ms = greatest(queue_rates.tat_ms, $2) + $3
             RETURNING tat_ms - $3",
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
            "SELECT count(*) FILTER (WHERE status = 'running'), count(*) FILTER (WHERE status = 'queued')
             FROM runs WHERE concurrency_key = $1",
        )
        .bind(group)
        .fetch_one(&self.pool)
        .await?;
        Ok((u(running), u(queued)))
    }

    async fn startable_runs(&self, groups: Option<&[String]>, limit: usize) -> Result<Vec<String>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT run_id FROM (
                 SELECT q.run_id, q.created_ms,
                        row_number() OVER (PARTITION BY q.concurrency_key ORDER BY q.created_ms, q.run_id) AS pos,
                        q.concurrency_limit - (SELECT count(*) FROM runs x WHERE x.concurrency_key = q.concurrency_key AND x.status = 'running') AS free
                 FROM runs q
                 WHERE q.status = 'queued' AND q.concurrency_key IS NOT NULL
                   AND ($1::text[] IS NULL OR q.concurrency_key = ANY($1))
             ) s WHERE pos <= free ORDER BY created_ms, run_id LIMIT $2",
        )
        .bind(groups)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    async fn overdue_runs(&self, now_ms: u64, limit: usize) -> Result<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT run_id, deadline_ms FROM runs WHERE deadline_ms IS NOT NULL AND finished_ms IS NULL AND deadline_ms <= $1 AND status IN ('running', 'queued') ORDER BY deadline_ms LIMIT $2",
        )
        .bind(i(now_ms))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id, d)| (id, u(d))).collect())
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

/// In byte order whatever the database's collation.
fn live_runs_of(rows: &[PgRow]) -> Result<Vec<crate::LiveRuns>> {
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

fn stuck_of(r: &PgRow) -> Result<crate::StuckRun> {
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
