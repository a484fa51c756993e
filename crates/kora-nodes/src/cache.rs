//! Cache nodes: RedisCacheNode (a deadpool-redis pool per URL per worker) and TTLCacheNode (an
//! LRU with expiry inside the worker, shared by its tasks).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::AsyncCommands;
use kora_model::catalog::{NodeTypeInfo, ParamInfo, ParamKind};
use kora_model::{Map, Value};

use crate::builtin::{info, input_error};
use crate::{Node, NodeContext, NodeError};

pub(crate) fn all() -> Vec<Arc<dyn Node>> {
    vec![Arc::new(RedisCache::new()), Arc::new(TtlCache::new())]
}

fn out(pairs: Vec<(&str, Value)>) -> Map {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn key_param(node: &str, input: &Map, op: &str) -> Result<String, NodeError> {
    match input.get("key") {
        Some(Value::String(k)) if !k.is_empty() => Ok(k.clone()),
        Some(v) if !v.is_null() && !v.is_object() && !v.is_array() => {
            Ok(kora_model::value::py_str(v))
        }
        _ => Err(input_error(node, format!("operation {op} needs a 'key'"))),
    }
}

// ---------------------------------------------------------------------------------------------

/// Marks a gzip-compressed value, so reads work whatever the reader's `compress` says.
const GZIP_MARK: &[u8] = b"KZ1:";

pub(crate) struct RedisCache {
    info: NodeTypeInfo,
    pools: Mutex<HashMap<String, deadpool_redis::Pool>>,
}

impl RedisCache {
    fn new() -> Self {
        RedisCache {
            info: info(
                "RedisCacheNode",
                "Gets, sets (with a TTL), deletes or invalidates (by pattern) JSON values in Redis; values may be gzip-compressed.",
                vec![
                    ParamInfo::required("operation", "what to do").kind(ParamKind::OneOf(&[
                        "get",
                        "set",
                        "delete",
                        "exists",
                        "invalidate",
                    ])),
                    ParamInfo::optional("key", "the cache key (get, set, delete, exists)"),
                    ParamInfo::optional("value", "the value to set (any JSON)"),
                    ParamInfo::optional("ttl", "seconds until a set value expires; none keeps it")
                        .kind(ParamKind::Seconds)
                        .kind(ParamKind::Number),
                    ParamInfo::optional(
                        "pattern",
                        "keys to invalidate, a Redis glob such as user:*",
                    )
                    .kind(ParamKind::String),
                    ParamInfo::optional("key_prefix", "prepended to every key and pattern")
                        .kind(ParamKind::String),
                    ParamInfo::optional("compress", "gzip values when setting (reads detect it)")
                        .kind(ParamKind::Bool)
                        .default("false"),
                    ParamInfo::optional(
                        "redis_url",
                        "the server (use a secret reference for a password)",
                    )
                    .kind(ParamKind::String)
                    .default("redis://127.0.0.1:6379"),
                    ParamInfo::optional("pool_size", "connections per URL on this worker")
                        .kind(ParamKind::Integer)
                        .default("8"),
                ],
                vec!["success", "operation", "key", "hit", "value", "deleted"],
            ),
            pools: Mutex::new(HashMap::new()),
        }
    }

    fn pool(&self, url: &str, size: usize) -> Result<deadpool_redis::Pool, NodeError> {
        let mut pools = self
            .pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = pools.get(url) {
            return Ok(p.clone());
        }
        let mut cfg = deadpool_redis::Config::from_url(url);
        cfg.pool = Some(deadpool_redis::PoolConfig::new(size.max(1)));
        let pool = cfg
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .map_err(|e| input_error("RedisCacheNode", format!("redis_url is not usable: {e}")))?;
        pools.insert(url.to_string(), pool.clone());
        Ok(pool)
    }
}

fn redis_error(e: impl std::fmt::Display) -> NodeError {
    NodeError::retryable("RedisError", format!("RedisCacheNode: {e}"))
}

fn encode(v: &Value, compress: bool) -> Result<Vec<u8>, NodeError> {
    let json = serde_json::to_vec(v).map_err(|e| input_error("RedisCacheNode", e.to_string()))?;
    if !compress {
        return Ok(json);
    }
    let mut gz = flate2::write::GzEncoder::new(GZIP_MARK.to_vec(), flate2::Compression::default());
    gz.write_all(&json)
        .map_err(|e| input_error("RedisCacheNode", e.to_string()))?;
    gz.finish()
        .map_err(|e| input_error("RedisCacheNode", e.to_string()))
}

fn decode(bytes: &[u8]) -> Value {
    let text = match bytes.strip_prefix(GZIP_MARK) {
        Some(gz) => {
            let mut s = Vec::new();
            if flate2::read::GzDecoder::new(gz)
                .read_to_end(&mut s)
                .is_err()
            {
                return Value::String(String::from_utf8_lossy(bytes).to_string());
            }
            s
        }
        None => bytes.to_vec(),
    };
    // A value another program stored as plain text comes back as text.
    serde_json::from_slice(&text)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&text).to_string()))
}

#[async_trait]
impl Node for RedisCache {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "RedisCacheNode";
        let op = input
            .get("operation")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let url = input
            .get("redis_url")
            .and_then(Value::as_str)
            .unwrap_or("redis://127.0.0.1:6379");
        let size = usize::try_from(input.get("pool_size").and_then(Value::as_u64).unwrap_or(8))
            .unwrap_or(8);
        let prefix = input
            .get("key_prefix")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let pool = self.pool(url, size)?;
        let mut c = pool.get().await.map_err(redis_error)?;
        let base = |k: &str| {
            vec![
                ("success", Value::Bool(true)),
                ("operation", Value::String(op.clone())),
                ("key", Value::String(k.to_string())),
            ]
        };
        match op.as_str() {
            "get" => {
                let key = key_param(NODE, &input, &op)?;
                let got: Option<Vec<u8>> =
                    c.get(format!("{prefix}{key}")).await.map_err(redis_error)?;
                let mut o = base(&key);
                o.push(("hit", Value::Bool(got.is_some())));
                o.push(("value", got.map_or(Value::Null, |b| decode(&b))));
                Ok(out(o))
            }
            "set" => {
                let key = key_param(NODE, &input, &op)?;
                let value = input.get("value").cloned().unwrap_or(Value::Null);
                let bytes = encode(
                    &value,
                    input
                        .get("compress")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                )?;
                let k = format!("{prefix}{key}");
                match input.get("ttl").and_then(Value::as_f64) {
                    Some(t) if t > 0.0 => {
                        let ms = (t * 1000.0).ceil() as u64;
                        let _: () = deadpool_redis::redis::cmd("SET")
                            .arg(&k)
                            .arg(bytes)
                            .arg("PX")
                            .arg(ms)
                            .query_async(&mut c)
                            .await
                            .map_err(redis_error)?;
                    }
                    Some(t) if t <= 0.0 => {
                        return Err(input_error(
                            NODE,
                            format!("ttl must be above 0 seconds, found {t}"),
                        ));
                    }
                    _ => {
                        let _: () = c.set(&k, bytes).await.map_err(redis_error)?;
                    }
                }
                let mut o = base(&key);
                o.push(("ttl", input.get("ttl").cloned().unwrap_or(Value::Null)));
                Ok(out(o))
            }
            "delete" => {
                let key = key_param(NODE, &input, &op)?;
                let n: u64 = c.del(format!("{prefix}{key}")).await.map_err(redis_error)?;
                let mut o = base(&key);
                o.push(("deleted", Value::from(n)));
                Ok(out(o))
            }
            "exists" => {
                let key = key_param(NODE, &input, &op)?;
                let n: u64 = c
                    .exists(format!("{prefix}{key}"))
                    .await
                    .map_err(redis_error)?;
                let mut o = base(&key);
                o.push(("hit", Value::Bool(n > 0)));
                Ok(out(o))
            }
            "invalidate" => {
                let pattern = match input.get("pattern").and_then(Value::as_str) {
                    Some(p) if !p.is_empty() => format!("{prefix}{p}"),
                    _ => {
                        return Err(input_error(
                            NODE,
                            "operation invalidate needs a 'pattern' (e.g. user:*)",
                        ));
                    }
                };
                // SCAN, never KEYS: a large keyspace must not stall the server.
                let mut cursor: u64 = 0;
                let mut deleted = 0u64;
                loop {
                    let (next, keys): (u64, Vec<String>) = deadpool_redis::redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(500)
                        .query_async(&mut c)
                        .await
                        .map_err(redis_error)?;
                    if !keys.is_empty() {
                        let n: u64 = c.del(&keys).await.map_err(redis_error)?;
                        deleted += n;
                    }
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
                Ok(out(vec![
                    ("success", Value::Bool(true)),
                    ("operation", Value::String(op.clone())),
                    ("pattern", Value::String(pattern)),
                    ("deleted", Value::from(deleted)),
                ]))
            }
            other => Err(input_error(
                NODE,
                format!(
                    "operation must be get, set, delete, exists or invalidate, found {other:?}"
                ),
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// One named cache: moka with LRU eviction at its capacity and each entry's own expiry.
struct Named {
    cache: moka::sync::Cache<String, Entry>,
    max: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: Arc<AtomicU64>,
}

#[derive(Clone)]
struct Entry {
    value: Value,
    ttl: Duration,
}

/// An entry lives for the ttl it was set with; reading it does not extend it.
struct SetTtl;

impl moka::Expiry<String, Entry> for SetTtl {
    fn expire_after_create(
        &self,
        _: &String,
        e: &Entry,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(e.ttl)
    }
    fn expire_after_update(
        &self,
        _: &String,
        e: &Entry,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(e.ttl)
    }
}

impl Named {
    fn new(max: u64) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&evictions);
        let cache = moka::sync::Cache::builder()
            .max_capacity(max)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .expire_after(SetTtl)
            .eviction_listener(move |_, _, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        Named {
            cache,
            max,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions,
        }
    }
}

pub(crate) struct TtlCache {
    info: NodeTypeInfo,
    caches: Mutex<HashMap<String, Arc<Named>>>,
}

impl TtlCache {
    fn new() -> Self {
        TtlCache {
            info: info(
                "TTLCacheNode",
                "An in-worker LRU cache with expiry, shared by the worker's tasks (not across workers: use RedisCacheNode for that).",
                vec![
                    ParamInfo::required("operation", "what to do").kind(ParamKind::OneOf(&[
                        "get", "set", "delete", "clear", "stats",
                    ])),
                    ParamInfo::optional("key", "the cache key"),
                    ParamInfo::optional("value", "the value to set"),
                    ParamInfo::optional("ttl", "seconds until a set value expires")
                        .kind(ParamKind::Seconds)
                        .default("300"),
                    ParamInfo::optional(
                        "max_size",
                        "entries kept; the least recently used go first (fixed when the named cache is first used)",
                    )
                    .kind(ParamKind::Integer)
                    .default("1000"),
                    ParamInfo::optional("cache_name", "nodes sharing a name share a cache")
                        .kind(ParamKind::String)
                        .default("default"),
                ],
                vec!["success", "operation", "key", "hit", "value", "stats"],
            ),
            caches: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl Node for TtlCache {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "TTLCacheNode";
        let op = input
            .get("operation")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let name = input
            .get("cache_name")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let max = usize::try_from(
            input
                .get("max_size")
                .and_then(Value::as_u64)
                .unwrap_or(1000)
                .max(1),
        )
        .unwrap_or(1000);
        let c = {
            let mut all = self
                .caches
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(
                all.entry(name)
                    .or_insert_with(|| Arc::new(Named::new(max as u64))),
            )
        };
        let mut o = vec![
            ("success", Value::Bool(true)),
            ("operation", Value::String(op.clone())),
        ];
        match op.as_str() {
            "get" => {
                let key = key_param(NODE, &input, &op)?;
                let live = c.cache.get(&key).map(|e| e.value);
                let counter = if live.is_some() { &c.hits } else { &c.misses };
                counter.fetch_add(1, Ordering::Relaxed);
                o.push(("key", Value::String(key)));
                o.push(("hit", Value::Bool(live.is_some())));
                o.push(("value", live.unwrap_or(Value::Null)));
            }
            "set" => {
                let key = key_param(NODE, &input, &op)?;
                let ttl = crate::params::seconds_or(NODE, &input, "ttl", 300.0)?;
                if ttl.is_zero() {
                    return Err(input_error(NODE, "'ttl' must be above 0 seconds"));
                }
                let value = input.get("value").cloned().unwrap_or(Value::Null);
                c.cache.insert(key.clone(), Entry { value, ttl });
                o.push(("key", Value::String(key)));
            }
            "delete" => {
                let key = key_param(NODE, &input, &op)?;
                let gone = c.cache.remove(&key).is_some();
                o.push(("key", Value::String(key)));
                o.push(("hit", Value::Bool(gone)));
            }
            "clear" => c.cache.invalidate_all(),
            "stats" => {}
            other => {
                return Err(input_error(
                    NODE,
                    format!("operation must be get, set, delete, clear or stats, found {other:?}"),
                ));
            }
        }
        // Evictions and expiries apply now, so the stats say what the cache holds.
        c.cache.run_pending_tasks();
        o.push((
            "stats",
            serde_json::json!({"size": c.cache.entry_count(), "hits": c.hits.load(Ordering::Relaxed),
                "misses": c.misses.load(Ordering::Relaxed), "evictions": c.evictions.load(Ordering::Relaxed),
                "max_size": c.max}),
        ));
        Ok(out(o))
    }
}
