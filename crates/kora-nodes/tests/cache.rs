//! The cache nodes: RedisCacheNode against the machine's Redis, TTLCacheNode in process.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kora_nodes::testing::{registry, run_node as run};
use serde_json::{Value, json};

fn reg() -> kora_nodes::Registry {
    registry(std::path::Path::new("."))
}

#[tokio::test]
async fn redis_cache_gets_sets_expires_and_invalidates() {
    let r = reg();
    let prefix = format!(
        "kora-test:{}:{}:",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let call = |op: &str, extra: Value| {
        let mut v = json!({"operation": op, "key_prefix": prefix});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let miss = run(&r, "RedisCacheNode", call("get", json!({"key": "user:1"})))
        .await
        .unwrap();
    assert_eq!(
        (miss["hit"].clone(), miss["value"].clone()),
        (json!(false), Value::Null)
    );
    let big = json!({"name": "Ada", "tags": vec!["x"; 200]});
    run(
        &r,
        "RedisCacheNode",
        call(
            "set",
            json!({"key": "user:1", "value": big, "compress": true}),
        ),
    )
    .await
    .unwrap();
    run(
        &r,
        "RedisCacheNode",
        call("set", json!({"key": "user:2", "value": [1, 2], "ttl": 0.3})),
    )
    .await
    .unwrap();
    run(
        &r,
        "RedisCacheNode",
        call("set", json!({"key": "order:1", "value": "keep"})),
    )
    .await
    .unwrap();
    let hit = run(&r, "RedisCacheNode", call("get", json!({"key": "user:1"})))
        .await
        .unwrap();
    assert_eq!(hit["value"], big, "gzip round trip");
    // Stored compressed: the raw value is far smaller than its JSON.
    let mut conn = std::net::TcpStream::connect("127.0.0.1:6379").unwrap();
    use std::io::{Read, Write};
    let key = format!("{prefix}user:1");
    write!(conn, "*2\r\n$6\r\nSTRLEN\r\n${}\r\n{key}\r\n", key.len()).unwrap();
    let mut buf = [0u8; 64];
    let n = conn.read(&mut buf).unwrap();
    let stored: usize = String::from_utf8_lossy(&buf[1..n]).trim().parse().unwrap();
    assert!(stored < big.to_string().len() / 4, "stored {stored} bytes");
    tokio::time::sleep(Duration::from_millis(450)).await;
    let gone = run(&r, "RedisCacheNode", call("get", json!({"key": "user:2"})))
        .await
        .unwrap();
    assert_eq!(gone["hit"], false, "expired after its ttl");
    let o = run(
        &r,
        "RedisCacheNode",
        call("invalidate", json!({"pattern": "user:*"})),
    )
    .await
    .unwrap();
    assert_eq!(o["deleted"], 1);
    let kept = run(
        &r,
        "RedisCacheNode",
        call("exists", json!({"key": "order:1"})),
    )
    .await
    .unwrap();
    assert_eq!(kept["hit"], true, "other keys are left");
    let o = run(
        &r,
        "RedisCacheNode",
        call("delete", json!({"key": "order:1"})),
    )
    .await
    .unwrap();
    assert_eq!(o["deleted"], 1);
    let e = run(&r, "RedisCacheNode", call("invalidate", json!({})))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("pattern"), "{e}");
    let e = run(
        &r,
        "RedisCacheNode",
        json!({"operation": "get", "key": "k", "redis_url": "redis://127.0.0.1:9"}),
    )
    .await
    .unwrap_err();
    assert!(e.is_retryable(), "{e}");
}

#[tokio::test]
async fn ttl_cache_evicts_the_least_recently_used_and_expires() {
    let r = reg();
    let c = |op: &str, extra: Value| {
        let mut v = json!({"operation": op, "cache_name": "t", "max_size": 2});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    run(
        &r,
        "TTLCacheNode",
        c("set", json!({"key": "a", "value": 1})),
    )
    .await
    .unwrap();
    run(
        &r,
        "TTLCacheNode",
        c("set", json!({"key": "b", "value": 2})),
    )
    .await
    .unwrap();
    // Touch a, then add c: b is the least recently used and goes.
    run(&r, "TTLCacheNode", c("get", json!({"key": "a"})))
        .await
        .unwrap();
    run(
        &r,
        "TTLCacheNode",
        c("set", json!({"key": "c", "value": 3})),
    )
    .await
    .unwrap();
    let b = run(&r, "TTLCacheNode", c("get", json!({"key": "b"})))
        .await
        .unwrap();
    assert_eq!(b["hit"], false);
    let a = run(&r, "TTLCacheNode", c("get", json!({"key": "a"})))
        .await
        .unwrap();
    assert_eq!(
        (a["hit"].clone(), a["value"].clone()),
        (json!(true), json!(1))
    );
    run(
        &r,
        "TTLCacheNode",
        c("set", json!({"key": "short", "value": 9, "ttl": 0.1})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = run(&r, "TTLCacheNode", c("get", json!({"key": "short"})))
        .await
        .unwrap();
    assert_eq!(s["hit"], false, "expired");
    assert!(s["stats"]["evictions"].as_u64().unwrap() >= 2, "{s:?}");
    assert_eq!(s["stats"]["hits"], 2);
}
