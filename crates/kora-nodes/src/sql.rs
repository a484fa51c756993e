//! SQLDatabaseNode and AsyncSQLDatabaseNode: queries on PostgreSQL, MySQL/MariaDB and SQLite
//! through sqlx, with a pool per connection string (and pool settings) per worker.
//!
//! Parameters are always bound, never interpolated: `params` is a list (for `$1`… on
//! PostgreSQL, `?` on MySQL and SQLite) or a map (for `:name` placeholders, rewritten to the
//! driver's positional ones outside quoted text). These are the users' databases, never the
//! ledger: this module does not know the ledger exists.

use kora_model::error_type;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kora_model::catalog::{NodeTypeInfo, ParamInfo, ParamKind};
use kora_model::{Map, Value};
use serde_json::json;
use sqlx::{Column, Row, TypeInfo, ValueRef};

use crate::builtin::{info, input_error};
use crate::{Node, NodeContext, NodeError};

#[derive(Clone)]
enum Pool {
    Pg(sqlx::PgPool),
    My(sqlx::MySqlPool),
    Lite(sqlx::SqlitePool),
}

/// The worker's pools, by connection string and settings.
pub(crate) struct Pools {
    pools: Mutex<HashMap<String, Pool>>,
    root: PathBuf,
}

impl Pools {
    pub(crate) fn new(root: PathBuf) -> Arc<Pools> {
        Arc::new(Pools {
            pools: Mutex::new(HashMap::new()),
            root,
        })
    }
}

pub(crate) fn all(pools: &Arc<Pools>) -> Vec<Arc<dyn Node>> {
    vec![
        Arc::new(Sql::new(Arc::clone(pools), false)),
        Arc::new(Sql::new(Arc::clone(pools), true)),
    ]
}

fn params() -> Vec<ParamInfo> {
    vec![
        ParamInfo::required("query", "the SQL statement").kind(ParamKind::String),
        ParamInfo::optional("params", "bound values: a list for $1/? placeholders, a map for :name ones"),
        ParamInfo::optional("connection_string", "postgresql://…, mysql://… (mariadb://…) or sqlite:PATH (below the data root); use a secret reference for the password")
            .kind(ParamKind::String),
        ParamInfo::optional("database_type", "with host/port/database/user/password instead of connection_string")
            .kind(ParamKind::OneOf(&["postgresql", "postgres", "mysql", "mariadb", "sqlite"]))
            .default("postgresql"),
        ParamInfo::optional("host", "database host").kind(ParamKind::String).default("localhost"),
        ParamInfo::optional("port", "database port").kind(ParamKind::Integer),
        ParamInfo::optional("database", "database name (SQLite: a path below the data root)").kind(ParamKind::String),
        ParamInfo::optional("user", "database user").kind(ParamKind::String).with_aliases(&["username"]),
        ParamInfo::optional("password", "use a secret reference").kind(ParamKind::String),
        ParamInfo::optional("fetch_mode", "all rows, one, or many (fetch_size)").kind(ParamKind::OneOf(&["all", "one", "many"])).default("all"),
        ParamInfo::optional("fetch_size", "rows for fetch_mode many").kind(ParamKind::Integer).default("100"),
        ParamInfo::optional("pool_size", "connections kept per connection string on this worker").kind(ParamKind::Integer).default("5"),
        ParamInfo::optional("max_overflow", "connections beyond pool_size under load").kind(ParamKind::Integer).default("10"),
        ParamInfo::optional("pool_timeout", "seconds to wait for a free connection").kind(ParamKind::Seconds).default("30"),
        ParamInfo::optional("pool_recycle", "seconds after which a connection is replaced").kind(ParamKind::Seconds).default("3600"),
        ParamInfo::optional("pool_pre_ping", "check a connection before using it").kind(ParamKind::Bool).default("true"),
        ParamInfo::optional("timeout", "seconds the statement may run").kind(ParamKind::Seconds).default("60"),
    ]
}

pub(crate) struct Sql {
    info: NodeTypeInfo,
    pools: Arc<Pools>,
    nested: bool,
}

impl Sql {
    fn new(pools: Arc<Pools>, nested: bool) -> Self {
        let mut i = if nested {
            info(
                "AsyncSQLDatabaseNode",
                "Runs one SQL statement; outputs result {data, row_count, query, database_type, format}. A failure fails the run.",
                params(),
                vec!["result"],
            )
        } else {
            info(
                "SQLDatabaseNode",
                "Runs one SQL statement; outputs data (rows as maps), row_count, columns and execution_time. A failure fails the run.",
                params(),
                vec!["data", "row_count", "columns", "execution_time"],
            )
        };
        i.stop_on_error = true;
        Sql {
            info: i,
            pools,
            nested,
        }
    }
}

/// Which driver, and its URL.
fn target(
    node: &str,
    input: &Map,
    root: &std::path::Path,
) -> Result<(&'static str, String), NodeError> {
    let s = |k: &str| input.get(k).and_then(Value::as_str).map(String::from);
    let (kind, url) = match s("connection_string") {
        Some(c) => {
            let kind = if c.starts_with("postgres://") || c.starts_with("postgresql://") {
                "postgresql"
            } else if c.starts_with("mysql://") || c.starts_with("mariadb://") {
                "mysql"
            } else if c.starts_with("sqlite:") {
                "sqlite"
            } else {
                return Err(input_error(
                    node,
                    "connection_string must start with postgresql://, mysql://, mariadb:// or sqlite:",
                ));
            };
            (kind, c.replacen("mariadb://", "mysql://", 1))
        }
        None => {
            let kind = match s("database_type")
                .unwrap_or_else(|| "postgresql".into())
                .to_ascii_lowercase()
                .as_str()
            {
                "postgresql" | "postgres" => "postgresql",
                "mysql" | "mariadb" => "mysql",
                "sqlite" => "sqlite",
                other => {
                    return Err(input_error(
                        node,
                        format!(
                            "database_type must be postgresql, mysql or sqlite, found {other:?}"
                        ),
                    ));
                }
            };
            let db = s("database").unwrap_or_default();
            if kind == "sqlite" {
                (kind, format!("sqlite:{db}"))
            } else {
                let enc = |v: String| -> String {
                    v.bytes()
                        .map(|b| match b {
                            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                                (b as char).to_string()
                            }
                            _ => format!("%{b:02X}"),
                        })
                        .collect()
                };
                let user = s("user")
                    .or_else(|| s("username"))
                    .map(enc)
                    .unwrap_or_default();
                let pass = s("password")
                    .map(|p| format!(":{}", enc(p)))
                    .unwrap_or_default();
                let at = if user.is_empty() {
                    String::new()
                } else {
                    format!("{user}{pass}@")
                };
                let port = input
                    .get("port")
                    .and_then(Value::as_u64)
                    .unwrap_or(if kind == "mysql" { 3306 } else { 5432 });
                let scheme = if kind == "mysql" {
                    "mysql"
                } else {
                    "postgresql"
                };
                (
                    kind,
                    format!(
                        "{scheme}://{at}{}:{port}/{db}",
                        s("host").unwrap_or_else(|| "localhost".into())
                    ),
                )
            }
        }
    };
    if kind != "sqlite" {
        return Ok((kind, url));
    }
    // SQLite files live below the data root, like every other file a node touches.
    let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
    if path.is_empty() || path == ":memory:" {
        return Ok((kind, "sqlite::memory:".into()));
    }
    let rel = path.trim_start_matches('/');
    let real = confine_file(root, rel)?;
    Ok((kind, format!("sqlite://{}?mode=rwc", real.display())))
}

fn confine_file(root: &std::path::Path, rel: &str) -> Result<PathBuf, NodeError> {
    if std::path::Path::new(rel)
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(NodeError::permanent(
            error_type::PERMISSION,
            format!(
                "SQLite path {rel:?} is outside the data root {}; put the database there",
                root.display()
            ),
        ));
    }
    let root = root.canonicalize().map_err(|e| {
        NodeError::permanent(
            error_type::CONFIG,
            format!("data root {} is not usable: {e}", root.display()),
        )
    })?;
    Ok(root.join(rel))
}

fn pool_key(kind: &str, url: &str, input: &Map) -> String {
    let g = |k: &str| input.get(k).map(Value::to_string).unwrap_or_default();
    format!(
        "{kind}|{url}|{}|{}|{}|{}|{}",
        g("pool_size"),
        g("max_overflow"),
        g("pool_timeout"),
        g("pool_recycle"),
        g("pool_pre_ping")
    )
}

/// A connection failure may pass; a SQL error will not.
fn classify(node: &str, e: sqlx::Error) -> NodeError {
    let transient = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // serialization failure, deadlock (PostgreSQL); deadlock, lock wait (MySQL)
            Some("40001" | "40P01" | "1213" | "1205" | "57P01" | "57P03")
        ),
        _ => false,
    };
    let msg = format!("{node}: {e}");
    if transient {
        NodeError::retryable("DatabaseConnectionError", msg)
    } else {
        NodeError::permanent(error_type::DATABASE, msg)
    }
}

impl Pools {
    async fn get(&self, node: &str, kind: &str, url: &str, input: &Map) -> Result<Pool, NodeError> {
        let key = pool_key(kind, url, input);
        if let Some(p) = self
            .pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            return Ok(p.clone());
        }
        let n = |k: &str, d: f64| input.get(k).and_then(Value::as_f64).unwrap_or(d);
        let size = n("pool_size", 5.0).clamp(1.0, 1000.0) as u32;
        let max = size + n("max_overflow", 10.0).clamp(0.0, 1000.0) as u32;
        let acquire = crate::params::seconds_or(node, input, "pool_timeout", 30.0)?
            .clamp(Duration::from_millis(100), Duration::from_secs(3600));
        let recycle = crate::params::seconds_or(node, input, "pool_recycle", 3600.0)?
            .clamp(Duration::from_secs(1), Duration::from_secs(86_400));
        let ping = input
            .get("pool_pre_ping")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        // `pool_size` connections are kept; up to `max_overflow` more are opened under load
        // and closed after a minute idle.
        macro_rules! opts {
            ($t:ty) => {
                <$t>::new()
                    .min_connections(size.min(max))
                    .max_connections(max)
                    .acquire_timeout(acquire)
                    .max_lifetime(recycle)
                    .idle_timeout(Duration::from_secs(60))
                    .test_before_acquire(ping)
            };
        }
        let pool = match kind {
            "postgresql" => Pool::Pg(
                opts!(sqlx::postgres::PgPoolOptions)
                    .connect_lazy(url)
                    .map_err(|e| classify(node, e))?,
            ),
            "mysql" => Pool::My(
                opts!(sqlx::mysql::MySqlPoolOptions)
                    .connect_lazy(url)
                    .map_err(|e| classify(node, e))?,
            ),
            _ => Pool::Lite(
                opts!(sqlx::sqlite::SqlitePoolOptions)
                    .connect_lazy(url)
                    .map_err(|e| classify(node, e))?,
            ),
        };
        self.pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key)
            .or_insert_with(|| pool.clone());
        Ok(pool)
    }
}

/// The statement with `:name` placeholders made positional, and the values in order.
fn bind_plan(
    node: &str,
    kind: &str,
    query: &str,
    params: Option<&Value>,
) -> Result<(String, Vec<Value>), NodeError> {
    match params {
        None | Some(Value::Null) => Ok((query.to_string(), Vec::new())),
        Some(Value::Array(a)) => Ok((query.to_string(), a.clone())),
        Some(Value::Object(m)) => {
            let mut out = String::with_capacity(query.len());
            let mut values = Vec::new();
            let chars: Vec<char> = query.chars().collect();
            let (mut i, mut quote) = (0, None::<char>);
            while i < chars.len() {
                let c = chars[i];
                if let Some(q) = quote {
                    out.push(c);
                    if c == q {
                        quote = None;
                    }
                    i += 1;
                    continue;
                }
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    out.push(c);
                    i += 1;
                    continue;
                }
                // `::` is a PostgreSQL cast, not a placeholder.
                if c == ':' && chars.get(i + 1) == Some(&':') {
                    out.push_str("::");
                    i += 2;
                    continue;
                }
                if c == ':'
                    && chars
                        .get(i + 1)
                        .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_')
                {
                    let start = i + 1;
                    let mut end = start;
                    while end < chars.len()
                        && (chars[end].is_ascii_alphanumeric() || chars[end] == '_')
                    {
                        end += 1;
                    }
                    let name: String = chars[start..end].iter().collect();
                    let Some(v) = m.get(&name) else {
                        return Err(input_error(
                            node,
                            format!("params has no value for :{name}"),
                        ));
                    };
                    values.push(v.clone());
                    if kind == "postgresql" {
                        out.push_str(&format!("${}", values.len()));
                    } else {
                        out.push('?');
                    }
                    i = end;
                    continue;
                }
                out.push(c);
                i += 1;
            }
            Ok((out, values))
        }
        Some(other) => Err(input_error(
            node,
            format!("params must be a list or a map, found {other}"),
        )),
    }
}

macro_rules! bind_all {
    ($q:expr, $values:expr, |$qi:ident, $vi:ident| $json:expr) => {{
        let mut q = $q;
        for v in $values {
            q = match v {
                Value::Null => q.bind(None::<String>),
                Value::Bool(b) => q.bind(*b),
                Value::Number(n) if n.is_i64() => q.bind(n.as_i64()),
                Value::Number(n) if n.is_u64() => q.bind(n.as_u64().map(|u| u as i64)),
                Value::Number(n) => q.bind(n.as_f64()),
                Value::String(s) => q.bind(s.clone()),
                other => {
                    let ($qi, $vi) = (q, other.clone());
                    $json
                }
            };
        }
        q
    }};
}

fn iso<T: std::fmt::Display>(v: Result<T, sqlx::Error>) -> Option<Value> {
    v.ok().map(|t| Value::String(t.to_string()))
}

fn decimal(v: Result<rust_decimal::Decimal, sqlx::Error>) -> Option<Value> {
    let d = v.ok()?;
    let f: f64 = d.to_string().parse().ok()?;
    Some(serde_json::Number::from_f64(f).map_or(Value::String(d.to_string()), Value::Number))
}

fn bytes(v: Result<Vec<u8>, sqlx::Error>) -> Option<Value> {
    v.ok()
        .map(|b| Value::String(b.iter().map(|x| format!("{x:02x}")).collect()))
}

fn unsupported(node: &str, column: &str, ty: &str) -> NodeError {
    NodeError::permanent(
        error_type::DATABASE,
        format!(
            "{node}: column '{column}' has type {ty}, which Kora does not convert; cast it in the query (e.g. {column}::text, or CAST({column} AS CHAR))"
        ),
    )
}

fn pg_row(node: &str, r: &sqlx::postgres::PgRow) -> Result<Map, NodeError> {
    let mut m = Map::new();
    for (i, c) in r.columns().iter().enumerate() {
        let raw = r.try_get_raw(i).map_err(|e| classify(node, e))?;
        let ty = c.type_info().name().to_string();
        let v = if raw.is_null() {
            Some(Value::Null)
        } else {
            match ty.as_str() {
                "BOOL" => r.try_get::<bool, _>(i).ok().map(Value::Bool),
                "INT2" => r.try_get::<i16, _>(i).ok().map(Value::from),
                "INT4" => r.try_get::<i32, _>(i).ok().map(Value::from),
                "INT8" => r.try_get::<i64, _>(i).ok().map(Value::from),
                "FLOAT4" => r.try_get::<f32, _>(i).ok().map(|f| json!(f64::from(f))),
                "FLOAT8" => r.try_get::<f64, _>(i).ok().map(|f| json!(f)),
                "NUMERIC" => decimal(r.try_get(i)),
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" | "CHAR" => {
                    r.try_get::<String, _>(i).ok().map(Value::String)
                }
                "JSON" | "JSONB" => r.try_get::<Value, _>(i).ok(),
                "UUID" => iso(r.try_get::<uuid::Uuid, _>(i)),
                "TIMESTAMPTZ" => r
                    .try_get::<chrono::DateTime<chrono::Utc>, _>(i)
                    .ok()
                    .map(|t| Value::String(t.to_rfc3339())),
                "TIMESTAMP" => iso(r.try_get::<chrono::NaiveDateTime, _>(i)),
                "DATE" => iso(r.try_get::<chrono::NaiveDate, _>(i)),
                "TIME" => iso(r.try_get::<chrono::NaiveTime, _>(i)),
                "BYTEA" => bytes(r.try_get(i)),
                _ => None,
            }
        };
        m.insert(
            c.name().to_string(),
            v.ok_or_else(|| unsupported(node, c.name(), &ty))?,
        );
    }
    Ok(m)
}

fn my_row(node: &str, r: &sqlx::mysql::MySqlRow) -> Result<Map, NodeError> {
    let mut m = Map::new();
    for (i, c) in r.columns().iter().enumerate() {
        let raw = r.try_get_raw(i).map_err(|e| classify(node, e))?;
        let ty = c.type_info().name().to_string();
        let v = if raw.is_null() {
            Some(Value::Null)
        } else {
            match ty.as_str() {
                "BOOLEAN" => r.try_get::<bool, _>(i).ok().map(Value::Bool),
                "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" => {
                    r.try_get::<i64, _>(i).ok().map(Value::from)
                }
                t if t.ends_with("UNSIGNED") => r.try_get::<u64, _>(i).ok().map(Value::from),
                "FLOAT" => r.try_get::<f32, _>(i).ok().map(|f| json!(f64::from(f))),
                "DOUBLE" => r.try_get::<f64, _>(i).ok().map(|f| json!(f)),
                "DECIMAL" => decimal(r.try_get(i)),
                "VARCHAR" | "CHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM"
                | "SET" => r.try_get::<String, _>(i).ok().map(Value::String),
                "JSON" => r.try_get::<Value, _>(i).ok(),
                "DATETIME" => iso(r.try_get::<chrono::NaiveDateTime, _>(i)),
                "TIMESTAMP" => r
                    .try_get::<chrono::DateTime<chrono::Utc>, _>(i)
                    .ok()
                    .map(|t| Value::String(t.to_rfc3339())),
                "DATE" => iso(r.try_get::<chrono::NaiveDate, _>(i)),
                "TIME" => iso(r.try_get::<chrono::NaiveTime, _>(i)),
                "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
                    // MariaDB reports text columns of a binary collation as blobs.
                    r.try_get::<String, _>(i)
                        .ok()
                        .map(Value::String)
                        .or_else(|| bytes(r.try_get(i)))
                }
                _ => None,
            }
        };
        m.insert(
            c.name().to_string(),
            v.ok_or_else(|| unsupported(node, c.name(), &ty))?,
        );
    }
    Ok(m)
}

fn lite_row(node: &str, r: &sqlx::sqlite::SqliteRow) -> Result<Map, NodeError> {
    let mut m = Map::new();
    for (i, c) in r.columns().iter().enumerate() {
        let raw = r.try_get_raw(i).map_err(|e| classify(node, e))?;
        // SQLite's types belong to values, not columns.
        let ty = raw.type_info().name().to_string();
        let v = if raw.is_null() {
            Some(Value::Null)
        } else {
            match ty.as_str() {
                "INTEGER" => r.try_get::<i64, _>(i).ok().map(Value::from),
                "REAL" => r.try_get::<f64, _>(i).ok().map(|f| json!(f)),
                "BOOLEAN" => r.try_get::<bool, _>(i).ok().map(Value::Bool),
                "BLOB" => bytes(r.try_get(i)),
                _ => r.try_get::<String, _>(i).ok().map(Value::String),
            }
        };
        m.insert(
            c.name().to_string(),
            v.ok_or_else(|| unsupported(node, c.name(), &ty))?,
        );
    }
    Ok(m)
}

/// Whether the statement returns rows (a query) rather than a count (a command).
fn returns_rows(q: &str) -> bool {
    let head = q
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    matches!(
        head.as_str(),
        "SELECT" | "WITH" | "SHOW" | "VALUES" | "EXPLAIN" | "PRAGMA" | "DESCRIBE" | "TABLE"
    ) || q.to_ascii_uppercase().contains(" RETURNING ")
}

#[async_trait]
impl Node for Sql {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        let node = self.info.name;
        let query = match input.get("query") {
            Some(Value::String(q)) if !q.trim().is_empty() => q.clone(),
            _ => {
                return Err(input_error(
                    node,
                    "required parameter 'query' must be a SQL statement",
                ));
            }
        };
        let (kind, url) = target(node, &input, &self.pools.root)?;
        let (sql, values) = bind_plan(node, kind, &query, input.get("params"))?;
        let pool = self.pools.get(node, kind, &url, &input).await?;
        let timeout = crate::params::seconds_or(node, &input, "timeout", 60.0)?
            .clamp(Duration::from_millis(1), Duration::from_secs(86_400));
        let rows_wanted = returns_rows(&sql);
        // The statement is the workflow author's, by design (this node runs SQL); every value
        // from inputs is bound, never spliced into it.
        let started = Instant::now();
        let work = async {
            // The same statement on each driver: bind, then fetch rows or count them.
            macro_rules! on {
                ($p:expr, $row:ident, |$q:ident, $v:ident| $json:expr) => {{
                    let q = bind_all!(
                        sqlx::query(sqlx::AssertSqlSafe(sql.as_str())),
                        &values,
                        |$q, $v| $json
                    );
                    if rows_wanted {
                        let rows = q.fetch_all($p).await.map_err(|e| classify(node, e))?;
                        let rows = rows
                            .iter()
                            .map(|r| $row(node, r))
                            .collect::<Result<Vec<Map>, _>>()?;
                        (rows, 0)
                    } else {
                        let done = q.execute($p).await.map_err(|e| classify(node, e))?;
                        (Vec::new(), done.rows_affected())
                    }
                }};
            }
            let (rows, affected): (Vec<Map>, u64) = match &pool {
                Pool::Pg(p) => on!(p, pg_row, |q, v| q.bind(v)),
                Pool::My(p) => on!(p, my_row, |q, v| q.bind(v)),
                // SQLite has no JSON type: maps and lists are bound as their JSON text.
                Pool::Lite(p) => on!(p, lite_row, |q, v| q.bind(v.to_string())),
            };
            Ok::<_, NodeError>((rows, affected))
        };
        let (mut rows, affected) = tokio::time::timeout(timeout, work).await.map_err(|_| {
            NodeError::retryable(
                error_type::TIMEOUT,
                format!(
                    "{node}: the statement ran past its timeout of {:.1}s",
                    timeout.as_secs_f64()
                ),
            )
        })??;
        let elapsed = started.elapsed().as_secs_f64();
        match input
            .get("fetch_mode")
            .and_then(Value::as_str)
            .unwrap_or("all")
        {
            "one" => rows.truncate(1),
            "many" => rows.truncate(
                usize::try_from(
                    input
                        .get("fetch_size")
                        .and_then(Value::as_u64)
                        .unwrap_or(100),
                )
                .unwrap_or(100),
            ),
            _ => {}
        }
        let count = if rows_wanted {
            rows.len() as u64
        } else {
            affected
        };
        let columns: Vec<Value> = rows
            .first()
            .map(|r| r.keys().map(|k| Value::String(k.clone())).collect())
            .unwrap_or_default();
        let data: Vec<Value> = rows.into_iter().map(Value::Object).collect();
        let mut out = Map::new();
        if self.nested {
            out.insert(
                "result".into(),
                json!({"data": data, "row_count": count, "query": query, "database_type": kind, "format": "dict"}),
            );
        } else {
            out.insert("data".into(), Value::Array(data));
            out.insert("row_count".into(), Value::from(count));
            out.insert("columns".into(), Value::Array(columns));
            out.insert("execution_time".into(), json!(elapsed));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::bind_plan;
    use serde_json::json;

    #[test]
    fn named_placeholders_become_positional_outside_quotes() {
        let (q, v) = bind_plan(
            "n",
            "postgresql",
            "SELECT ':skip', x::int FROM t WHERE a = :a AND b = :b OR c = :a",
            Some(&json!({"a": 1, "b": "two"})),
        )
        .unwrap();
        assert_eq!(
            q,
            "SELECT ':skip', x::int FROM t WHERE a = $1 AND b = $2 OR c = $3"
        );
        assert_eq!(v, [json!(1), json!("two"), json!(1)]);
        let (q, _) = bind_plan(
            "n",
            "mysql",
            "SELECT * FROM t WHERE a = :a",
            Some(&json!({"a": 1})),
        )
        .unwrap();
        assert_eq!(q, "SELECT * FROM t WHERE a = ?");
        let e = bind_plan("n", "mysql", "SELECT :nope", Some(&json!({}))).unwrap_err();
        assert!(e.to_string().contains(":nope"), "{e}");
    }
}
