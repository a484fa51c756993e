//! `make bench` (third part): what JetStream durability costs, measured on private current
//! (2.15) servers this benchmark starts and removes. The same raw task round trip as the
//! distributed benchmark (sequential p50/p99, 1,000 in flight) under three settings:
//!
//! - one server with the default `sync_interval` (2 minutes: an acknowledged message is in the
//!   OS page cache, and reaches disk within 2 minutes; a machine crash — not a process crash —
//!   can lose what was acknowledged in that window);
//! - one server with `sync_interval: always` (every message fsynced before its ack);
//! - a three-server cluster with R3 streams (a message is acked once a majority stored it, so
//!   losing one server loses nothing; each server still syncs on the default interval).
//!
//! Needs the current nats-server that `.ci/services-up` installs under target/tools.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[path = "support/raw.rs"]
mod raw;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Private servers and their directory, killed and removed on drop.
struct Servers {
    dir: PathBuf,
    children: Vec<Child>,
    url: String,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start(bin: &Path, name: &str, configs: Vec<(u16, String)>) -> Servers {
    let dir = std::env::temp_dir().join(format!("kora-durability-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let mut children = Vec::new();
    for (i, (_, conf)) in configs.iter().enumerate() {
        let path = dir.join(format!("s{i}.conf"));
        std::fs::write(&path, conf).expect("config");
        children.push(
            Command::new(bin)
                .arg("-c")
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server"),
        );
    }
    let url = configs
        .iter()
        .map(|(p, _)| format!("nats://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    for (port, _) in &configs {
        let mut up = false;
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(up, "nats-server on {port} did not come up");
    }
    Servers { dir, children, url }
}

async fn single(bin: &Path, name: &str, sync_always: bool) -> Servers {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("kora-durability-{}-{name}", std::process::id()));
    let sync = if sync_always {
        "sync_interval: always"
    } else {
        ""
    };
    let conf = format!(
        "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: \"{}\"\n  {sync}\n}}\n",
        dir.join("store").display()
    );
    start(bin, name, vec![(port, conf)]).await
}

async fn cluster(bin: &Path) -> Servers {
    let name = "r3";
    let dir = std::env::temp_dir().join(format!("kora-durability-{}-{name}", std::process::id()));
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let routes = ports
        .iter()
        .map(|(_, c)| format!("\"nats-route://127.0.0.1:{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let configs = ports
        .iter()
        .enumerate()
        .map(|(i, (p, c))| {
            (
                *p,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{p}\njetstream {{ store_dir: \"{}\" }}\ncluster {{ name: kora-bench, listen: 127.0.0.1:{c}, routes: [{routes}] }}\n",
                    dir.join(format!("store{i}")).display()
                ),
            )
        })
        .collect();
    start(bin, name, configs).await
}

async fn measure(
    label: &str,
    servers: &Servers,
    replicas: usize,
    base: Option<(f64, f64)>,
) -> (f64, f64) {
    // A new cluster elects its JetStream leader first: retry until a stream can be created.
    let mut tries = 0;
    let (p50, p99, rate) = loop {
        let tag = format!("d{tries}");
        let attempt = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::spawn({
                let url = servers.url.clone();
                async move { raw::raw(&url, &tag, replicas).await }
            }),
        )
        .await;
        match attempt {
            Ok(Ok(r)) => break r,
            _ if tries < 10 => {
                tries += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ => panic!("{label}: the round trip never completed"),
        }
    };
    let ratio = base.map_or(String::new(), |(b50, brate)| {
        format!(
            " ({:.2}x the p50, {:.2}x the rate of the default)",
            p50 / b50,
            rate / brate
        )
    });
    println!(
        "{label}: sequential p50 {p50:.3} ms, p99 {p99:.3} ms; 1,000 in flight {rate:.0} round trips/s{ratio}"
    );
    (p50, rate)
}

async fn run() {
    let Some(bin) = kora_broker::testing::TestServer::current_bin() else {
        println!("durability benchmark skipped: no current nats-server (run .ci/services-up)");
        return;
    };
    let version = Command::new(&bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "\nkora durability benchmark: raw JetStream task round trip on private servers ({version})"
    );
    let base = {
        let s = single(&bin, "default", false).await;
        measure("1 server, default sync_interval (2 min)", &s, 1, None).await
    };
    {
        let s = single(&bin, "always", true).await;
        measure("1 server, sync_interval: always", &s, 1, Some(base)).await;
    }
    {
        let s = cluster(&bin).await;
        measure("3-server cluster, R3 streams", &s, 3, Some(base)).await;
    }
}
