//! The SQL nodes against the machine's PostgreSQL and MariaDB and a SQLite file: types come
//! back as JSON, parameters are bound (an injection attempt is stored as text), errors say
//! what the database said.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use kora_nodes::Registry;
use kora_nodes::testing::{registry as reg, run_node as run};
use serde_json::{Value, json};

fn unique(prefix: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000_000;
    format!("{prefix}_{}_{t}", std::process::id())
}

/// One backend's round trip; `conn` is merged into every call.
async fn round_trip(r: &Registry, conn: Value, table: &str, decimal: &str, json_type: &str) {
    let call = |query: String, params: Value| {
        let mut input = conn.as_object().cloned().unwrap();
        input.insert("query".into(), Value::String(query));
        input.insert("params".into(), params);
        Value::Object(input)
    };
    run(
        r,
        "SQLDatabaseNode",
        call(
            format!("CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(100), score {decimal}, meta {json_type}, ok BOOLEAN)"),
            Value::Null,
        ),
    )
    .await
    .unwrap();
    let o = run(
        r,
        "SQLDatabaseNode",
        call(
            format!("INSERT INTO {table} (id, name, score, meta, ok) VALUES (:id, :name, :score, :meta, :ok)"),
            json!({"id": 1, "name": "x'; DROP TABLE t; --", "score": 9.5, "meta": {"k": [1, 2]}, "ok": true}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(o["row_count"], 1, "rows affected");
    let insert2 = if conn.to_string().contains("postgres") {
        format!("INSERT INTO {table} (id, name, score, ok) VALUES ($1, $2, $3, $4)")
    } else {
        format!("INSERT INTO {table} (id, name, score, ok) VALUES (?, ?, ?, ?)")
    };
    run(
        r,
        "SQLDatabaseNode",
        call(insert2, json!([2, "Bob", 7, false])),
    )
    .await
    .unwrap();
    let o = run(
        r,
        "SQLDatabaseNode",
        call(
            format!("SELECT id, name, score, meta, ok FROM {table} WHERE id >= :min ORDER BY id"),
            json!({"min": 1}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(o["row_count"], 2, "{o:?}");
    assert_eq!(o["columns"], json!(["id", "name", "score", "meta", "ok"]));
    let rows = o["data"].as_array().unwrap();
    assert_eq!(rows[0]["id"], 1);
    assert_eq!(
        rows[0]["name"], "x'; DROP TABLE t; --",
        "bound, not spliced"
    );
    assert_eq!(rows[0]["score"].as_f64(), Some(9.5));
    let meta = match &rows[0]["meta"] {
        Value::String(s) => serde_json::from_str(s).unwrap(),
        v => v.clone(),
    };
    assert_eq!(meta, json!({"k": [1, 2]}));
    assert!(
        rows[0]["ok"] == json!(true) || rows[0]["ok"] == json!(1),
        "{:?}",
        rows[0]["ok"]
    );
    assert_eq!(rows[1]["meta"], Value::Null);
    // The Async node's shape, and fetch_mode one.
    let mut one = call(format!("SELECT name FROM {table} ORDER BY id"), Value::Null);
    one["fetch_mode"] = json!("one");
    let o = run(r, "AsyncSQLDatabaseNode", one).await.unwrap();
    assert_eq!(o["result"]["row_count"], 1);
    assert_eq!(o["result"]["data"][0]["name"], "x'; DROP TABLE t; --");
    assert!(o["result"]["database_type"].is_string());
    // A SQL error is permanent and says what the database said.
    let e = run(
        r,
        "SQLDatabaseNode",
        call(format!("SELECT nope FROM {table}"), Value::Null),
    )
    .await
    .unwrap_err();
    assert!(
        !e.is_retryable() && e.error_type() == "DatabaseError",
        "{e}"
    );
    assert!(e.to_string().to_lowercase().contains("nope"), "{e}");
    run(
        r,
        "SQLDatabaseNode",
        call(format!("DROP TABLE {table}"), Value::Null),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn sql_nodes_on_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let r = reg(dir.path());
    round_trip(
        &r,
        json!({"connection_string": "postgresql://postgres@127.0.0.1:5432/test", "pool_size": 2}),
        &unique("kora_sql_pg"),
        "NUMERIC(5,2)",
        "JSONB",
    )
    .await;
    // The same server through host/port/user fields.
    let o = run(
        &r,
        "SQLDatabaseNode",
        json!({"database_type": "postgresql", "host": "127.0.0.1", "port": 5432, "database": "test",
               "user": "postgres", "query": "SELECT 1 AS one, now() AS at, gen_random_uuid() AS id"}),
    )
    .await
    .unwrap();
    assert_eq!(o["data"][0]["one"], 1);
    assert!(o["data"][0]["at"].as_str().unwrap().contains('T'));
    assert_eq!(o["data"][0]["id"].as_str().unwrap().len(), 36);
    // Nothing listens: a retryable connection error.
    let e = run(
        &r,
        "SQLDatabaseNode",
        json!({"connection_string": "postgresql://postgres@127.0.0.1:9/x", "query": "SELECT 1", "pool_timeout": 1}),
    )
    .await
    .unwrap_err();
    assert!(e.is_retryable(), "{e}");
}

#[tokio::test]
async fn sql_nodes_on_mariadb() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(
        &reg(dir.path()),
        json!({"connection_string": "mariadb://root@127.0.0.1:3306/test"}),
        &unique("kora_sql_my"),
        "DECIMAL(5,2)",
        "JSON",
    )
    .await;
}

#[tokio::test]
async fn sql_nodes_on_sqlite_below_the_data_root() {
    let dir = tempfile::tempdir().unwrap();
    let r = reg(dir.path());
    round_trip(
        &r,
        json!({"connection_string": "sqlite:app.db"}),
        "people",
        "NUMERIC",
        "TEXT",
    )
    .await;
    assert!(
        dir.path().join("app.db").exists(),
        "the file is in the data root"
    );
    let e = run(
        &r,
        "SQLDatabaseNode",
        json!({"connection_string": "sqlite:../outside.db", "query": "SELECT 1"}),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("outside the data root"), "{e}");
    // Durations are checked, never trusted: a negative one is refused naming its field, a
    // huge one accepted within bounds is held to the node's ceiling.
    for (field, bad) in [
        ("timeout", json!(-1)),
        ("pool_timeout", json!(-1)),
        ("pool_recycle", json!(1e300)),
    ] {
        let mut input = json!({"connection_string": "sqlite:limits.db", "query": "SELECT 1"});
        input[field] = bad;
        let e = run(&r, "SQLDatabaseNode", input).await.unwrap_err();
        assert!(e.to_string().contains(field), "{field}: {e}");
    }
    run(
        &r,
        "SQLDatabaseNode",
        json!({"connection_string": "sqlite:limits.db", "query": "SELECT 1", "timeout": 1e8}),
    )
    .await
    .unwrap();
}
