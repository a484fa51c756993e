//! Test support (feature `test-util`): a real HTTP server on loopback that records what it
//! receives, for the HTTP nodes' tests and end-to-end tests of workflows that call HTTP.

// Test support: a broken server is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use kora_model::Map;
use serde_json::Value;

use crate::{NodeContext, NodeError, NodesConfig, Registry};

/// The built-in nodes with `root` as their data root and a small Python pool.
pub fn registry(root: &std::path::Path) -> Registry {
    Registry::builtin(&NodesConfig {
        data_root: root.to_path_buf(),
        python_workers: 2,
        python_timeout: std::time::Duration::from_secs(5),
        ..Default::default()
    })
}

/// Runs node type `ty` of `r` on `input` (a JSON object), as run `r` node `n` attempt 1.
pub async fn run_node(r: &Registry, ty: &str, input: Value) -> Result<Map, NodeError> {
    let ctx = NodeContext {
        run_id: "r".into(),
        node_id: "n".into(),
        attempt: 1,
        ..Default::default()
    };
    r.get(ty)
        .unwrap_or_else(|| panic!("{ty} is not registered"))
        .run(&ctx, input.as_object().cloned().unwrap_or_default())
        .await
}
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

pub type Handler = Arc<dyn Fn(&Seen, usize) -> (u16, &'static str, String) + Send + Sync>;

/// An answer with headers of its own: `(status, headers, body)`.
pub type FullHandler =
    Arc<dyn Fn(&Seen, usize) -> (u16, Vec<(&'static str, String)>, String) + Send + Sync>;

/// Serves HTTP/1.1 on loopback: each request is recorded and answered by `handler` (given the
/// request and how many came before it).
pub async fn server(handler: Handler) -> (String, Arc<Mutex<Vec<Seen>>>) {
    server_with_headers(Arc::new(move |req: &Seen, n: usize| {
        let (status, ctype, body) = handler(req, n);
        (status, vec![("content-type", ctype.to_string())], body)
    }))
    .await
}

/// [`server`] whose handler sets the response's headers (a `Retry-After`, say).
pub async fn server_with_headers(handler: FullHandler) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (log, handler) = (Arc::clone(&log), Arc::clone(&handler));
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut lines = head.split("\r\n");
                let mut first = lines.next().unwrap_or_default().split(' ');
                let (method, target) = (
                    first.next().unwrap_or_default().to_string(),
                    first.next().unwrap_or_default().to_string(),
                );
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(": "))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let req = Seen {
                    method,
                    target,
                    headers,
                    body: String::from_utf8_lossy(&buf[head_end..]).to_string(),
                    at: Instant::now(),
                };
                let n = {
                    let mut l = log.lock().unwrap();
                    l.push(req.clone());
                    l.len() - 1
                };
                let (status, headers, body) = handler(&req, n);
                let headers: String = headers
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}\r\n"))
                    .collect();
                let resp = format!(
                    "HTTP/1.1 {status} X\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}
