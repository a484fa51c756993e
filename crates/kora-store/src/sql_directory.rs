//! The [`crate::Directory`] of the SQL ledgers, written once for PostgreSQL and SQLite: the
//! same statements, with PostgreSQL's JSONB casts where SQLite keeps JSON as text. The only
//! text formatted into a statement is a column list written here (`AssertSqlSafe`); every value
//! is a bound parameter.

/// `impl Directory for $store`, where `$to_json` casts a text parameter to the JSON column
/// type and `$from_json` a JSON column to text (`"::jsonb"`/`"::text"`, or `""` twice).
macro_rules! sql_directory {
    ($store:ty, $to_json:literal, $from_json:literal) => {
        mod sql_directory_impl {
            use async_trait::async_trait;
            use kora_model::WorkflowSpec;
            use sqlx::Row;

            use crate::{
                ApiAuditEntry, ApiAuditFilter, ApiKey, Directory, Error, Result, WorkflowRecord,
            };

            fn i(v: u64) -> i64 {
                i64::try_from(v).unwrap_or(i64::MAX)
            }
            fn u(v: i64) -> u64 {
                u64::try_from(v).unwrap_or(0)
            }
            fn json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
                serde_json::from_str(s).map_err(|e| Error::Corrupt(e.to_string()))
            }
            fn text<T: serde::Serialize>(v: &T) -> Result<String> {
                serde_json::to_string(v).map_err(|e| Error::Corrupt(e.to_string()))
            }

            const KEY_COLUMNS: &str = concat!(
                "key_id, tenant, name, role, scopes",
                $from_json,
                " AS scopes, secret_hash, created_ms, created_by, expires_ms, revoked_ms"
            );

            fn key_row<R: Row>(r: &R) -> Result<ApiKey>
            where
                for<'a> &'a str: sqlx::ColumnIndex<R>,
                for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
                for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
                for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
                for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
            {
                let scopes: String = r.try_get("scopes")?;
                Ok(ApiKey {
                    key_id: r.try_get("key_id")?,
                    tenant: r.try_get("tenant")?,
                    name: r.try_get("name")?,
                    role: r.try_get("role")?,
                    scopes: json(&scopes)?,
                    secret_hash: r.try_get("secret_hash")?,
                    created_ms: u(r.try_get("created_ms")?),
                    created_by: r.try_get("created_by")?,
                    expires_ms: r.try_get::<Option<i64>, _>("expires_ms")?.map(u),
                    revoked_ms: r.try_get::<Option<i64>, _>("revoked_ms")?.map(u),
                })
            }

            const WORKFLOW_COLUMNS: &str = concat!(
                "tenant, name, version, spec",
                $from_json,
                " AS spec, created_ms, created_by"
            );

            fn workflow_row<R: Row>(r: &R) -> Result<WorkflowRecord>
            where
                for<'a> &'a str: sqlx::ColumnIndex<R>,
                for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
                for<'a> i32: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
                for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
            {
                let spec: String = r.try_get("spec")?;
                Ok(WorkflowRecord {
                    tenant: r.try_get("tenant")?,
                    name: r.try_get("name")?,
                    version: u32::try_from(r.try_get::<i32, _>("version")?).unwrap_or(0),
                    spec: json(&spec)?,
                    created_ms: u(r.try_get("created_ms")?),
                    created_by: r.try_get("created_by")?,
                })
            }

            const AUDIT_COLUMNS: &str = concat!(
                "id, at_ms, tenant, actor, action, target, outcome, status, client_addr, request_id, detail",
                $from_json,
                " AS detail"
            );

            fn audit_row<R: Row>(r: &R) -> Result<ApiAuditEntry>
            where
                for<'a> &'a str: sqlx::ColumnIndex<R>,
                for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
                for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
                for<'a> i32: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
                for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
            {
                let detail: Option<String> = r.try_get("detail")?;
                Ok(ApiAuditEntry {
                    id: u(r.try_get("id")?),
                    at_ms: u(r.try_get("at_ms")?),
                    tenant: r.try_get("tenant")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    outcome: r.try_get("outcome")?,
                    status: u16::try_from(r.try_get::<i32, _>("status")?).unwrap_or(0),
                    client_addr: r.try_get("client_addr")?,
                    request_id: r.try_get("request_id")?,
                    detail: detail.as_deref().map(json).transpose()?,
                })
            }

            #[async_trait]
            impl Directory for $store {
                async fn create_api_key(&self, key: &ApiKey) -> Result<()> {
                    let done = sqlx::query(concat!(
                        "INSERT INTO api_keys (key_id, tenant, name, role, scopes, secret_hash, created_ms, created_by, expires_ms, revoked_ms)
                         VALUES ($1, $2, $3, $4, $5",
                        $to_json,
                        ", $6, $7, $8, $9, $10)"
                    ))
                    .bind(&key.key_id)
                    .bind(&key.tenant)
                    .bind(&key.name)
                    .bind(&key.role)
                    .bind(text(&key.scopes)?)
                    .bind(&key.secret_hash)
                    .bind(i(key.created_ms))
                    .bind(&key.created_by)
                    .bind(key.expires_ms.map(i))
                    .bind(key.revoked_ms.map(i))
                    .execute(&self.pool)
                    .await;
                    match done {
                        Ok(_) => Ok(()),
                        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(
                            Error::Taken(format!("API key id {} exists", key.key_id)),
                        ),
                        Err(e) => Err(e.into()),
                    }
                }

                async fn api_key(&self, key_id: &str) -> Result<Option<ApiKey>> {
                    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = $1"
                    )))
                    .bind(key_id)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.as_ref().map(key_row).transpose()
                }

                async fn api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>> {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {KEY_COLUMNS} FROM api_keys WHERE ($1 IS NULL OR tenant = $1)
                         ORDER BY created_ms, key_id"
                    )))
                    .bind(tenant)
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter().map(key_row).collect()
                }

                async fn revoke_api_key(
                    &self,
                    key_id: &str,
                    tenant: Option<&str>,
                    at_ms: u64,
                ) -> Result<bool> {
                    let done = sqlx::query(
                        "UPDATE api_keys SET revoked_ms = COALESCE(revoked_ms, $1)
                         WHERE key_id = $2 AND ($3 IS NULL OR tenant = $3)",
                    )
                    .bind(i(at_ms))
                    .bind(key_id)
                    .bind(tenant)
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn register_workflow(
                    &self,
                    tenant: &str,
                    name: &str,
                    spec: &WorkflowSpec,
                    by: &str,
                    at_ms: u64,
                ) -> Result<u32> {
                    let spec = text(spec)?;
                    // Two registrations at once compute the same version; the loser retries.
                    for _ in 0..8 {
                        let done = sqlx::query(concat!(
                            "INSERT INTO workflows (tenant, name, version, spec, created_ms, created_by)
                             SELECT $1, $2, COALESCE(MAX(version), 0) + 1, $3",
                            $to_json,
                            ", $4, $5 FROM workflows WHERE tenant = $1 AND name = $2
                             RETURNING version"
                        ))
                        .bind(tenant)
                        .bind(name)
                        .bind(&spec)
                        .bind(i(at_ms))
                        .bind(by)
                        .fetch_one(&self.pool)
                        .await;
                        match done {
                            Ok(row) => {
                                let v: i32 = row.try_get("version")?;
                                return Ok(u32::try_from(v).unwrap_or(0));
                            }
                            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Err(Error::Taken(format!(
                        "workflow {name:?} is being registered by others at the same time; try again"
                    )))
                }

                async fn workflow(
                    &self,
                    tenant: &str,
                    name: &str,
                    version: Option<u32>,
                ) -> Result<Option<WorkflowRecord>> {
                    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {WORKFLOW_COLUMNS} FROM workflows
                         WHERE tenant = $1 AND name = $2 AND deleted_ms IS NULL
                           AND ($3 IS NULL OR version = $3)
                         ORDER BY version DESC LIMIT 1"
                    )))
                    .bind(tenant)
                    .bind(name)
                    .bind(version.map(|v| i32::try_from(v).unwrap_or(i32::MAX)))
                    .fetch_optional(&self.pool)
                    .await?;
                    row.as_ref().map(workflow_row).transpose()
                }

                async fn workflows(&self, tenant: &str) -> Result<Vec<WorkflowRecord>> {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {WORKFLOW_COLUMNS} FROM workflows w
                         WHERE tenant = $1 AND deleted_ms IS NULL
                           AND version = (SELECT MAX(version) FROM workflows v
                                          WHERE v.tenant = w.tenant AND v.name = w.name AND v.deleted_ms IS NULL)
                         ORDER BY name"
                    )))
                    .bind(tenant)
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter().map(workflow_row).collect()
                }

                async fn delete_workflow(&self, tenant: &str, name: &str, at_ms: u64) -> Result<bool> {
                    let done = sqlx::query(
                        "UPDATE workflows SET deleted_ms = $1
                         WHERE tenant = $2 AND name = $3 AND deleted_ms IS NULL",
                    )
                    .bind(i(at_ms))
                    .bind(tenant)
                    .bind(name)
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn record_api_calls(&self, entries: &[ApiAuditEntry]) -> Result<()> {
                    if entries.is_empty() {
                        return Ok(());
                    }
                    // One statement, one round trip and one commit for the whole batch (the
                    // writer sends up to 256 entries); not kept as a prepared statement, since
                    // its shape changes with the batch's size.
                    let details = entries
                        .iter()
                        .map(|e| e.detail.as_ref().map(text).transpose())
                        .collect::<Result<Vec<_>>>()?;
                    let mut q = sqlx::QueryBuilder::new(
                        "INSERT INTO api_audit (at_ms, tenant, actor, action, target, outcome, status, client_addr, request_id, detail) ",
                    );
                    q.push_values(entries.iter().zip(details), |mut row, (e, detail)| {
                        row.push_bind(i(e.at_ms))
                            .push_bind(&e.tenant)
                            .push_bind(&e.actor)
                            .push_bind(&e.action)
                            .push_bind(&e.target)
                            .push_bind(&e.outcome)
                            .push_bind(i32::from(e.status))
                            .push_bind(&e.client_addr)
                            .push_bind(&e.request_id)
                            .push_bind(detail)
                            .push_unseparated($to_json);
                    });
                    q.build().persistent(false).execute(&self.pool).await?;
                    Ok(())
                }

                async fn api_audit(&self, f: &ApiAuditFilter) -> Result<Vec<ApiAuditEntry>> {
                    let limit = if f.limit == 0 {
                        i64::MAX
                    } else {
                        i64::try_from(f.limit).unwrap_or(i64::MAX)
                    };
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {AUDIT_COLUMNS} FROM api_audit
                         WHERE ($1 IS NULL OR tenant = $1) AND ($2 IS NULL OR actor = $2)
                           AND ($3 IS NULL OR action = $3) AND ($4 IS NULL OR at_ms >= $4)
                           AND ($5 IS NULL OR id < $5)
                         ORDER BY id DESC LIMIT $6"
                    )))
                    .bind(f.tenant.as_deref())
                    .bind(f.actor.as_deref())
                    .bind(f.action.as_deref())
                    .bind(f.since_ms.map(i))
                    .bind(f.before_id.map(i))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter().map(audit_row).collect()
                }
            }
        }
    };
}

pub(crate) use sql_directory;
