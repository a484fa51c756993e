//! The broker contract on a real NATS JetStream server (`NATS_URL`, default
//! nats://127.0.0.1:4222; `make test` starts the machine's 2.9.10 when it is down).
//! Outside CI an unreachable server skips these tests with a message; with `CI` set it fails.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};

use kora_broker::nats::{JetStreamBroker, NatsConfig};
use kora_broker::testing;

fn url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn reachable(url: &str) -> bool {
    let addr = url
        .trim_start_matches("nats://")
        .split(',')
        .next()
        .unwrap_or("127.0.0.1:4222")
        .to_string();
    std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), std::time::Duration::from_secs(1))
        .is_ok()
}

async fn broker() -> Option<JetStreamBroker> {
    let url = url();
    if !reachable(&url) {
        assert!(
            std::env::var("CI").is_err(),
            "NATS is not reachable at {url}; CI must not skip broker tests"
        );
        eprintln!("skipping: NATS not reachable at {url}");
        return None;
    }
    Some(
        JetStreamBroker::connect(&NatsConfig {
            url,
            name: "kora-contract".into(),
            ..NatsConfig::default()
        })
        .await
        .unwrap(),
    )
}

/// A namespace no other test or earlier run uses: streams are isolated by name, not by server.
fn namespace() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000_000;
    format!(
        "T{t}x{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A private server of the current release (2.15 from PyPI), or `None` (skip) outside CI.
fn current_server() -> Option<testing::TestServer> {
    testing::TestServer::current_bin_or_skip().map(|bin| testing::TestServer::start(&bin))
}

/// Deletes the streams a check made under its namespace when dropped, even if the check failed.
struct Cleanup {
    url: String,
    ns: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, ns) = (self.url.clone(), self.ns.clone());
        // Drop may run inside the test's runtime (or while it panics): a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let cfg = NatsConfig {
                    url,
                    ..NatsConfig::default()
                };
                if let Ok(b) = JetStreamBroker::connect(&cfg).await {
                    let _ = b.delete_streams_with_prefix(&ns).await;
                }
            });
        })
        .join();
    }
}

macro_rules! contract {
    ($($name:ident),*) => {
        /// On the machine's server (2.9.10).
        mod installed {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(b) = broker().await else { return };
                    let ns = namespace();
                    let _cleanup = Cleanup { url: url(), ns: ns.clone() };
                    testing::$name(&b, &ns).await;
                }
            )*
        }
        /// On a private server of the current release.
        mod current {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(server) = current_server() else { return };
                    let cfg = NatsConfig { url: server.url(), ..NatsConfig::default() };
                    let b = JetStreamBroker::connect(&cfg).await.unwrap();
                    testing::$name(&b, &namespace()).await;
                }
            )*
        }
    };
}

kora_broker::contract_checks!(contract);
