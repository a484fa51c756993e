//! The deployment checklist (`kora check`, and `kora serve` at start-up in production): each
//! check looks at the effective configuration of the roles a process serves, or asks the
//! services it reaches, and a failure says what is wrong and how to fix it. Fail-closed: a
//! check that cannot run (a service unreachable) fails too.
//!
//! This module only reads: it connects to NATS and PostgreSQL once each, changes nothing,
//! and never prints a secret (a secret found in a configuration file is named by its key).

use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Role, ServerConfig};

/// `environment`: where this installation runs. `production` makes `kora serve` refuse to start
/// while a check fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

/// `[checks]`: failed checks `kora serve` starts despite (in production), each logged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChecksConfig {
    /// Check ids (`kora check` lists them), e.g. `["stream-replicas"]` on a one-server NATS.
    pub allow: Vec<String>,
}

impl ChecksConfig {
    pub fn validate(&self) -> Result<(), String> {
        for id in &self.allow {
            if !CHECKS.iter().any(|(known, _)| known == id) {
                let ids: Vec<&str> = CHECKS.iter().map(|(id, _)| *id).collect();
                return Err(format!(
                    "checks.allow: unknown check {id:?}; the checks are {}",
                    ids.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// Every check: its id and what it asks.
pub const CHECKS: &[(&str, &str)] = &[
    (
        "nats-reachable",
        "NATS answers with the configured credentials",
    ),
    ("nats-auth", "NATS asks for a credential"),
    ("nats-tls", "the NATS connection uses TLS"),
    ("nats-version", "the NATS server is 2.12 or later"),
    ("stream-replicas", "streams keep 3 copies (nats.replicas)"),
    (
        "ledger-reachable",
        "PostgreSQL answers with the configured credentials",
    ),
    ("ledger-tls", "the PostgreSQL connection uses TLS"),
    (
        "ledger-role",
        "the ledger role is no superuser and creates no databases or roles",
    ),
    (
        "gateway-jwt-secret",
        "an HS256 JWT secret is long and not a placeholder",
    ),
    ("gateway-docs", "the interactive API docs are off"),
    ("gateway-cors", "CORS does not allow every origin"),
    (
        "gateway-tls",
        "the gateway serves TLS or declares the proxy that does",
    ),
    ("sandbox", "PythonCodeNode runs sandboxed"),
    (
        "data-root",
        "file nodes are confined below a directory other than /",
    ),
    (
        "metrics-address",
        "the metrics endpoint is not bound to a public address",
    ),
    ("config-secrets", "the configuration file holds no secret"),
];

/// The oldest NATS server recommended: 2.9.10 loses acknowledged work-queue state when killed
/// (docs/durability.md).
pub const NATS_MIN_VERSION: (u64, u64) = (2, 12);

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub status: Status,
    /// What was found (on success, what was checked).
    pub detail: String,
    /// How to fix it (empty on success).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    /// Failed, and named in `checks.allow`.
    Allowed,
    /// Not relevant to the roles checked.
    Skipped,
}

impl Finding {
    fn ok(check: &'static str, detail: impl Into<String>) -> Self {
        Finding {
            check,
            status: Status::Ok,
            detail: detail.into(),
            fix: String::new(),
        }
    }
    fn failed(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            check,
            status: Status::Failed,
            detail: detail.into(),
            fix: fix.into(),
        }
    }
    fn skipped(check: &'static str, detail: impl Into<String>) -> Self {
        Finding {
            check,
            status: Status::Skipped,
            detail: detail.into(),
            fix: String::new(),
        }
    }
    fn judge(check: &'static str, ok: bool, good: &str, bad: &str, fix: &str) -> Self {
        if ok {
            Finding::ok(check, good)
        } else {
            Finding::failed(check, bad, fix)
        }
    }
}

/// Runs every check for `roles`; failures named in `checks.allow` come back as allowed.
pub async fn run(cfg: &ServerConfig, roles: &[Role]) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(nats(cfg).await);
    out.extend(ledger(cfg, roles).await);
    out.extend(gateway(cfg, roles));
    out.extend(worker(cfg, roles));
    out.push(metrics(&cfg.metrics.addr));
    out.push(config_file(cfg.source_file.as_deref()));
    for f in &mut out {
        if f.status == Status::Failed && cfg.checks.allow.iter().any(|a| a == f.check) {
            f.status = Status::Allowed;
        }
    }
    out
}

/// Whether any finding failed (allowed ones do not count).
pub fn failed(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.status == Status::Failed)
}

async fn nats(cfg: &ServerConfig) -> Vec<Finding> {
    let n = &cfg.nats;
    let set =
        |p: &Option<std::path::PathBuf>| p.as_ref().is_some_and(|p| !p.as_os_str().is_empty());
    let auth = !n.user.is_empty()
        || !n.token.0.is_empty()
        || set(&n.token_file)
        || set(&n.nkey_seed_file)
        || set(&n.creds_file);
    let tls = n.tls() || n.url.split(',').all(|u| u.trim().starts_with("tls://"));
    let mut out = vec![
        Finding::judge(
            "nats-auth",
            auth,
            "a credential is configured",
            "no NATS credential is configured: anyone who reaches the server can submit runs and settle tasks",
            "give each role its own user (deploy/nats/kora-users.conf, docs/security.md) with nats.user and nats.password_file, or a token, NKey or .creds file",
        ),
        Finding::judge(
            "nats-tls",
            tls,
            "TLS is configured",
            "the NATS connection is not encrypted",
            "run nats-server with TLS and set nats.tls_ca_file (or nats.tls_required = true)",
        ),
        Finding::judge(
            "stream-replicas",
            n.replicas >= 3,
            &format!("nats.replicas = {}", n.replicas),
            &format!(
                "nats.replicas = {}: losing the NATS server's disk loses queued work",
                n.replicas
            ),
            "run a three-server NATS cluster and set nats.replicas = 3 (docs/durability.md)",
        ),
    ];
    let named = kora_broker::nats::NatsConfig {
        name: "kora-check".into(),
        ..n.clone()
    };
    let connect = kora_broker::nats::JetStreamBroker::connect(&named);
    match tokio::time::timeout(n.request_timeout * 2, connect).await {
        Ok(Ok(b)) => {
            out.push(Finding::ok(
                "nats-reachable",
                format!(
                    "connected to {}",
                    kora_broker::nats_auth::redact_url(&n.url)
                ),
            ));
            let version = b.server_version();
            out.push(Finding::judge(
                "nats-version",
                version_at_least(&version, NATS_MIN_VERSION),
                &format!("nats-server {version}"),
                &format!(
                    "nats-server {version} is older than {}.{}: 2.9 loses acknowledged work-queue state when killed",
                    NATS_MIN_VERSION.0, NATS_MIN_VERSION.1
                ),
                "upgrade nats-server to 2.12 or later",
            ));
        }
        Ok(Err(e)) => out.extend(unanswered(
            &["nats-reachable", "nats-version"],
            e.to_string(),
            "check nats.url and the credentials",
        )),
        Err(_) => out.extend(unanswered(
            &["nats-reachable", "nats-version"],
            format!(
                "no answer from {} within {}s",
                kora_broker::nats_auth::redact_url(&n.url),
                (n.request_timeout * 2).as_secs()
            ),
            "check nats.url, the network and the server",
        )),
    }
    out
}

async fn ledger(cfg: &ServerConfig, roles: &[Role]) -> Vec<Finding> {
    let ids = ["ledger-reachable", "ledger-tls", "ledger-role"];
    if !roles
        .iter()
        .any(|r| matches!(r, Role::Coordinator | Role::Scheduler | Role::Gateway))
    {
        return ids
            .into_iter()
            .map(|id| Finding::skipped(id, "no role checked uses the ledger"))
            .collect();
    }
    let probe = kora_store::pg::probe::session_security(&cfg.database);
    match tokio::time::timeout(cfg.database.acquire_timeout, probe).await {
        Ok(Ok(s)) => vec![
            Finding::ok(
                "ledger-reachable",
                format!(
                    "connected to {} (PostgreSQL {})",
                    kora_store::pg::redact(&cfg.database.url),
                    s.server_version
                ),
            ),
            Finding::judge(
                "ledger-tls",
                s.tls,
                "the session is encrypted",
                "the ledger session is not encrypted",
                "turn on ssl in PostgreSQL and add sslmode=verify-full&sslrootcert=CA.pem to database.url",
            ),
            Finding::judge(
                "ledger-role",
                !s.superuser && !s.creates,
                "the role is no superuser and creates no databases or roles",
                if s.superuser {
                    "the ledger role is a superuser"
                } else {
                    "the ledger role may create databases or roles"
                },
                "connect as a role that owns only the ledger database (docs/security.md, 'a least-privilege role')",
            ),
        ],
        Ok(Err(e)) => unanswered(
            &ids,
            e.to_string(),
            "check database.url, database.password_file and the server",
        ),
        Err(_) => unanswered(
            &ids,
            format!(
                "no answer from {} within {}s",
                kora_store::pg::redact(&cfg.database.url),
                cfg.database.acquire_timeout.as_secs()
            ),
            "check database.url, the network and the server",
        ),
    }
}

/// A service that did not answer: its reachability check fails with `detail` and `fix`, and
/// the checks that needed its answer fail saying so (fail-closed).
fn unanswered(ids: &[&'static str], detail: String, fix: &str) -> Vec<Finding> {
    let Some((first, rest)) = ids.split_first() else {
        return Vec::new();
    };
    std::iter::once(Finding::failed(first, detail, fix))
        .chain(rest.iter().map(|id| {
            Finding::failed(
                id,
                "not known: the service did not answer",
                format!("fix {first} first"),
            )
        }))
        .collect()
}

/// Placeholders people leave in: a JWT secret like these is no secret.
const PLACEHOLDERS: &[&str] = &[
    "secret",
    "changeme",
    "change-me",
    "password",
    "example",
    "test",
    "default",
];

fn gateway(cfg: &ServerConfig, roles: &[Role]) -> Vec<Finding> {
    let ids = [
        "gateway-jwt-secret",
        "gateway-docs",
        "gateway-cors",
        "gateway-tls",
    ];
    if !roles.contains(&Role::Gateway) {
        return ids
            .into_iter()
            .map(|id| Finding::skipped(id, "the gateway role is not checked"))
            .collect();
    }
    let g = &cfg.gateway;
    let secret = &g.jwt.hs256_secret.0;
    let lower = secret.to_ascii_lowercase();
    let jwt = if secret.is_empty() {
        Finding::ok("gateway-jwt-secret", "no HS256 secret (JWTs off, or JWKS)")
    } else if secret.len() < 32 {
        Finding::failed(
            "gateway-jwt-secret",
            format!("gateway.jwt.hs256_secret has {} characters", secret.len()),
            "use at least 32 random characters (`openssl rand -hex 32`), from the environment or a secret store",
        )
    } else if PLACEHOLDERS.iter().any(|p| lower.contains(p)) {
        Finding::failed(
            "gateway-jwt-secret",
            "gateway.jwt.hs256_secret looks like a placeholder",
            "use a random secret (`openssl rand -hex 32`)",
        )
    } else {
        Finding::ok("gateway-jwt-secret", "a long HS256 secret")
    };
    vec![
        jwt,
        Finding::judge(
            "gateway-docs",
            !g.docs,
            "gateway.docs = false",
            "the interactive API docs are served at /docs",
            "set gateway.docs = false (the /openapi.json document stays)",
        ),
        Finding::judge(
            "gateway-cors",
            !g.cors_origins.iter().any(|o| o.trim() == "*"),
            "no wildcard origin",
            "gateway.cors_origins allows every origin (\"*\")",
            "list the dashboard's origins in gateway.cors_origins",
        ),
        Finding::judge(
            "gateway-tls",
            g.tls.enabled() || !g.trusted_proxies.is_empty(),
            if g.tls.enabled() {
                "the gateway serves TLS"
            } else {
                "TLS ends at a declared proxy (gateway.trusted_proxies)"
            },
            "the gateway serves plain HTTP and declares no TLS-terminating proxy: API keys cross the network in clear",
            "set gateway.tls.cert_path and key_path, or put a TLS proxy in front and list it in gateway.trusted_proxies",
        ),
    ]
}

fn worker(cfg: &ServerConfig, roles: &[Role]) -> Vec<Finding> {
    if !roles.contains(&Role::Worker) {
        return ["sandbox", "data-root"]
            .into_iter()
            .map(|id| Finding::skipped(id, "the worker role is not checked"))
            .collect();
    }
    let root = &cfg.nodes.data_root;
    let is_root = root.as_os_str().is_empty()
        || std::fs::canonicalize(root).unwrap_or_else(|_| root.clone()) == Path::new("/");
    vec![
        Finding::judge(
            "sandbox",
            cfg.nodes.sandbox.enabled,
            "nodes.sandbox.enabled = true",
            "PythonCodeNode runs unconfined, with the worker's files, network and environment",
            "set nodes.sandbox.enabled = true (docs/security.md)",
        ),
        Finding::judge(
            "data-root",
            !is_root,
            &format!("nodes.data_root = {}", root.display()),
            "nodes.data_root is /: file nodes and node code may read and write anywhere the worker can",
            "set nodes.data_root to the directory workflows' files live in",
        ),
    ]
}

fn metrics(addr: &str) -> Finding {
    if addr.is_empty() {
        return Finding::ok("metrics-address", "metrics.addr is empty: no endpoint");
    }
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() || private(ip) => {
            Finding::ok("metrics-address", format!("metrics.addr = {addr}"))
        }
        Ok(ip) => Finding::failed(
            "metrics-address",
            if ip.is_unspecified() {
                format!(
                    "metrics.addr = {addr} listens on every interface, public ones too; /metrics and /readyz have no credential"
                )
            } else {
                format!(
                    "metrics.addr = {addr} is a public address; /metrics and /readyz have no credential"
                )
            },
            "bind metrics.addr to a loopback or private address Prometheus reaches; where a network policy protects it (a Kubernetes pod), name the check in checks.allow",
        ),
        Err(_) => Finding::failed(
            "metrics-address",
            format!("metrics.addr = {addr} is a host name: the address it binds cannot be judged"),
            "give metrics.addr as an IP address and port",
        ),
    }
}

fn private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        // fc00::/7 (unique local) and fe80::/10 (link local).
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Keys that hold a secret, where a configuration file may not.
const SECRET_KEYS: &[&str] = &[
    "nats.password",
    "nats.token",
    "gateway.key_pepper",
    "gateway.jwt.hs256_secret",
    // These webhook URLs carry their token in the path.
    "alerts.slack_webhook_url",
    "alerts.discord_webhook_url",
];

fn config_file(file: Option<&Path>) -> Finding {
    let Some(file) = file else {
        return Finding::ok("config-secrets", "no configuration file");
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            return Finding::failed(
                "config-secrets",
                format!("cannot read {}: {e}", file.display()),
                "make the file readable to check it",
            );
        }
    };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Finding::failed(
            "config-secrets",
            format!("{} is not TOML", file.display()),
            "fix the file",
        );
    };
    let mut found: Vec<String> = SECRET_KEYS
        .iter()
        .filter(|key| {
            lookup(&doc, key)
                .and_then(toml::Value::as_str)
                .is_some_and(|v| !v.is_empty())
        })
        .map(|k| (*k).to_string())
        .collect();
    if lookup(&doc, "database.url")
        .and_then(toml::Value::as_str)
        .is_some_and(url_has_password)
    {
        found.push("database.url (a password in the URL)".into());
    }
    if lookup(&doc, "alerts.webhook_url")
        .and_then(toml::Value::as_str)
        .is_some_and(url_has_password)
    {
        found.push("alerts.webhook_url (a password in the URL)".into());
    }
    if found.is_empty() {
        Finding::ok(
            "config-secrets",
            format!("{} holds no secret", file.display()),
        )
    } else {
        Finding::failed(
            "config-secrets",
            format!("{} holds secrets: {}", file.display(), found.join(", ")),
            "move each to the environment (KORA_SECTION__KEY) or a *_file key (nats.password_file, database.password_file)",
        )
    }
}

fn lookup<'a>(doc: &'a toml::Table, dotted: &str) -> Option<&'a toml::Value> {
    let mut parts = dotted.split('.');
    let mut v = doc.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    Some(v)
}

fn url_has_password(url: &str) -> bool {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .is_some_and(|(userinfo, _)| {
            userinfo
                .split_once(':')
                .is_some_and(|(_, pw)| !pw.is_empty())
        })
}

/// `2.10.22` ≥ `(2, 12)`? An unparsable version is not.
fn version_at_least(version: &str, min: (u64, u64)) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= min,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_number() {
        assert!(version_at_least("2.12.0", (2, 12)));
        assert!(version_at_least("2.15.1", (2, 12)));
        assert!(version_at_least("3.0.0", (2, 12)));
        assert!(!version_at_least("2.9.10", (2, 12)));
        assert!(!version_at_least("2.10.22-beta", (2, 12)));
        assert!(!version_at_least("garbage", (2, 12)));
    }

    #[test]
    fn metrics_on_a_public_or_every_interface_fail() {
        for good in [
            "",
            "127.0.0.1:9464",
            "[::1]:9464",
            "10.1.2.3:9464",
            "192.168.0.5:80",
        ] {
            assert_eq!(metrics(good).status, Status::Ok, "{good}");
        }
        for bad in [
            "0.0.0.0:9464",
            "[::]:9464",
            "8.8.8.8:9464",
            "metrics.example:9464",
        ] {
            assert_eq!(metrics(bad).status, Status::Failed, "{bad}");
        }
    }

    #[test]
    fn secrets_in_a_file_are_named_by_key_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("kora.toml");
        std::fs::write(
            &f,
            "[nats]\npassword = \"hunter2-secret\"\n[database]\nurl = \"postgres://kora:pw123@db/kora\"\n[gateway.jwt]\nhs256_secret = \"\"\n",
        )
        .unwrap();
        let r = config_file(Some(&f));
        assert_eq!(r.status, Status::Failed);
        assert!(
            r.detail.contains("nats.password") && r.detail.contains("database.url"),
            "{}",
            r.detail
        );
        assert!(!r.detail.contains("hunter2") && !r.detail.contains("pw123"));
        assert!(
            !r.detail.contains("hs256_secret"),
            "an empty secret is none: {}",
            r.detail
        );
        std::fs::write(
            &f,
            "[database]\nurl = \"postgres://kora@db/kora?sslmode=verify-full\"\n",
        )
        .unwrap();
        assert_eq!(config_file(Some(&f)).status, Status::Ok);
    }

    #[test]
    fn allow_names_known_checks_only() {
        let ok = ChecksConfig {
            allow: vec!["stream-replicas".into()],
        };
        assert!(ok.validate().is_ok());
        let bad = ChecksConfig {
            allow: vec!["replicas".into()],
        };
        assert!(bad.validate().unwrap_err().contains("stream-replicas"));
    }
}
