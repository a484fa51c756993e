//! The monitor's alerts in the SQL ledgers, written once for PostgreSQL and SQLite (the same
//! statements; PostgreSQL casts JSON text to JSONB). Each change is one statement whose
//! `RETURNING` says whether this caller made it: that is what makes exactly one coordinator
//! send an alert, or its resolve.

/// Inherent `alerts_*` methods on `$store` (whose pool is `self.pool`), which its `Store`
/// implementation calls.
macro_rules! sql_alerts {
    ($store:ty, $to_json:literal, $from_json:literal) => {
        mod sql_alerts_impl {
            use sqlx::Row;

            use crate::{AlertRecord, Error, NewAlert, Result};

            fn i(v: u64) -> i64 {
                i64::try_from(v).unwrap_or(i64::MAX)
            }
            fn u(v: i64) -> u64 {
                u64::try_from(v).unwrap_or(0)
            }

            const COLUMNS: &str = concat!(
                "subject, kind, severity, body",
                $from_json,
                " AS body, opened_ms, resolved_ms"
            );

            fn alert_row<R: Row>(r: &R) -> Result<AlertRecord>
            where
                for<'a> &'a str: sqlx::ColumnIndex<R>,
                for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
                for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
                for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
            {
                let body: String = r.try_get("body")?;
                Ok(AlertRecord {
                    subject: r.try_get("subject")?,
                    kind: r.try_get("kind")?,
                    severity: r.try_get("severity")?,
                    body: serde_json::from_str(&body)
                        .map_err(|e| Error::Corrupt(format!("alert body: {e}")))?,
                    opened_ms: u(r.try_get("opened_ms")?),
                    resolved_ms: r.try_get::<Option<i64>, _>("resolved_ms")?.map(u),
                })
            }

            impl $store {
                pub(crate) async fn alerts_open(
                    &self,
                    a: &NewAlert,
                    now_ms: u64,
                    reopen_resolved_before_ms: u64,
                ) -> Result<bool> {
                    let body = serde_json::to_string(&a.body)
                        .map_err(|e| Error::Corrupt(e.to_string()))?;
                    let opened = sqlx::query(concat!(
                        "INSERT INTO alerts (subject, kind, severity, body, opened_ms, open_claimed_ms)
                         VALUES ($1, $2, $3, $4",
                        $to_json,
                        ", $5, $5)
                         ON CONFLICT (subject) DO UPDATE SET kind = excluded.kind,
                             severity = excluded.severity, body = excluded.body,
                             opened_ms = excluded.opened_ms, open_claimed_ms = excluded.opened_ms,
                             open_sent_ms = NULL, resolved_ms = NULL, resolve_claimed_ms = NULL,
                             resolve_sent_ms = NULL
                         WHERE alerts.resolved_ms IS NOT NULL AND alerts.resolved_ms <= $6
                         RETURNING subject"
                    ))
                    .bind(&a.subject)
                    .bind(&a.kind)
                    .bind(&a.severity)
                    .bind(body)
                    .bind(i(now_ms))
                    .bind(i(reopen_resolved_before_ms))
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(opened.is_some())
                }

                pub(crate) async fn alerts_resolve(
                    &self,
                    subject: &str,
                    now_ms: u64,
                ) -> Result<Option<AlertRecord>> {
                    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE alerts SET resolved_ms = $2, resolve_claimed_ms = $2
                         WHERE subject = $1 AND resolved_ms IS NULL RETURNING {COLUMNS}"
                    )))
                    .bind(subject)
                    .bind(i(now_ms))
                    .fetch_optional(&self.pool)
                    .await?;
                    done.as_ref().map(alert_row).transpose()
                }

                pub(crate) async fn alerts_sent(
                    &self,
                    subject: &str,
                    resolve: bool,
                    now_ms: u64,
                ) -> Result<()> {
                    let sql = if resolve {
                        "UPDATE alerts SET resolve_sent_ms = $2 WHERE subject = $1 AND resolved_ms IS NOT NULL"
                    } else {
                        "UPDATE alerts SET open_sent_ms = $2 WHERE subject = $1"
                    };
                    sqlx::query(sql)
                        .bind(subject)
                        .bind(i(now_ms))
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                pub(crate) async fn alerts_claim_unsent(
                    &self,
                    claimed_before_ms: u64,
                    now_ms: u64,
                    limit: usize,
                ) -> Result<Vec<(AlertRecord, bool)>> {
                    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                    let opens = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE alerts SET open_claimed_ms = $2
                         WHERE subject IN (SELECT subject FROM alerts
                             WHERE open_sent_ms IS NULL AND resolved_ms IS NULL
                               AND (open_claimed_ms IS NULL OR open_claimed_ms < $1)
                             ORDER BY opened_ms LIMIT $3)
                         RETURNING {COLUMNS}"
                    )))
                    .bind(i(claimed_before_ms))
                    .bind(i(now_ms))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                    let resolves = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE alerts SET resolve_claimed_ms = $2
                         WHERE subject IN (SELECT subject FROM alerts
                             WHERE resolved_ms IS NOT NULL AND resolve_sent_ms IS NULL
                               AND (resolve_claimed_ms IS NULL OR resolve_claimed_ms < $1)
                             ORDER BY resolved_ms LIMIT $3)
                         RETURNING {COLUMNS}"
                    )))
                    .bind(i(claimed_before_ms))
                    .bind(i(now_ms))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                    let mut out = Vec::with_capacity(opens.len() + resolves.len());
                    for r in &opens {
                        out.push((alert_row(r)?, false));
                    }
                    for r in &resolves {
                        out.push((alert_row(r)?, true));
                    }
                    Ok(out)
                }

                pub(crate) async fn alerts_list_open(
                    &self,
                    kind: Option<&str>,
                    limit: usize,
                ) -> Result<Vec<AlertRecord>> {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {COLUMNS} FROM alerts
                         WHERE resolved_ms IS NULL AND ($1 IS NULL OR kind = $1)
                         ORDER BY opened_ms, subject LIMIT $2"
                    )))
                    .bind(kind)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter().map(alert_row).collect()
                }
            }
        }
    };
}

pub(crate) use sql_alerts;
