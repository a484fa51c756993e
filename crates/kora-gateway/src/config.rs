//! `[gateway]`: where the gateway listens, how it authenticates, and what it protects.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A secret setting: never printed (its `Debug` is `***`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Where the API listens (`KORA_GATEWAY__ADDR`).
    pub addr: String,
    /// The input limits workflows and parameters are checked against (`[limits]`, set by
    /// `kora serve`, not read from this section).
    #[serde(skip)]
    pub input_limits: kora_model::Limits,
    /// When a running run counts as stuck in `/v1/overview` (the coordinator's
    /// `[monitoring]` rule, set by `kora serve`, not read from this section).
    #[serde(skip)]
    pub stuck_after_secs: u64,
    #[serde(skip)]
    pub retry_loop_attempts: u32,
    /// The installation's secret key for API key hashes and webhook secrets: at least 32
    /// characters (`openssl rand -hex 32`), the same on every gateway and for `kora keys`.
    /// Changing it invalidates every key.
    pub key_pepper: Secret,
    /// How long a gateway keeps an API key it looked up: a revocation takes effect on every
    /// gateway within this.
    #[serde(with = "kora_model::duration")]
    pub key_cache_ttl: Duration,
    pub jwt: JwtConfig,
    /// Origins allowed to call the API from a browser (CORS); none by default.
    pub cors_origins: Vec<String>,
    /// Largest request body; a larger one is answered 413.
    pub max_body_bytes: usize,
    /// How long a request may take (a `?wait` submission gets its wait on top).
    #[serde(with = "kora_model::duration")]
    pub request_timeout: Duration,
    /// The longest `?wait` a submission may ask for.
    #[serde(with = "kora_model::duration")]
    pub max_wait: Duration,
    pub rate_limit: RateLimitConfig,
    /// Networks allowed to reach the admin routes (`/v1/keys`, `/v1/audit`, `/metrics`).
    pub admin_allow: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed (the client is the address before the first
    /// trusted hop); from any other peer the header is ignored. None by default.
    pub trusted_proxies: Vec<String>,
    /// Serve the interactive API docs at `/docs` (off by default; `/openapi.json` is always
    /// served).
    pub docs: bool,
    /// Serve the dashboard at `/ui/` (on by default: static pages that sign in with an API key
    /// or a JWT and read only the `/v1` API, so they show nothing without a credential).
    pub ui: bool,
    pub tls: TlsConfig,
    /// How old a webhook's signed timestamp may be (older requests are refused as replays).
    #[serde(with = "kora_model::duration")]
    pub webhook_tolerance: Duration,
    pub quotas: QuotasConfig,
    /// Node-type policy at admission: code nodes, denied types, allowed hosts.
    pub policy: crate::policy::PolicyConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            addr: "127.0.0.1:8080".into(),
            input_limits: kora_model::Limits::default(),
            stuck_after_secs: 600,
            retry_loop_attempts: 5,
            key_pepper: Secret::default(),
            key_cache_ttl: Duration::from_secs(5),
            jwt: JwtConfig::default(),
            cors_origins: Vec::new(),
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(30),
            max_wait: Duration::from_secs(300),
            rate_limit: RateLimitConfig::default(),
            admin_allow: vec!["127.0.0.1/32".into(), "::1/128".into()],
            trusted_proxies: Vec::new(),
            docs: false,
            ui: true,
            tls: TlsConfig::default(),
            webhook_tolerance: Duration::from_secs(300),
            quotas: QuotasConfig::default(),
            policy: crate::policy::PolicyConfig::default(),
        }
    }
}

/// `[gateway.jwt]`: bearer JWTs from an identity provider, besides API keys. Off unless a
/// secret or a JWKS URL is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// HS256 tokens signed with this secret.
    pub hs256_secret: Secret,
    /// RS256/ES256 tokens whose keys this JWKS URL publishes (fetched, cached, and fetched
    /// again when a token names an unknown `kid`).
    pub jwks_url: String,
    /// Required `iss`, if set.
    pub issuer: String,
    /// Required `aud` (one of), if set.
    pub audience: Vec<String>,
    /// The claims naming the subject, the tenant, the role, and extra scopes (a list, or a
    /// space-separated string).
    pub subject_claim: String,
    pub tenant_claim: String,
    pub role_claim: String,
    pub scopes_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(with = "kora_model::duration")]
    pub leeway: Duration,
    /// How long fetched keys are used before fetching them again.
    #[serde(with = "kora_model::duration")]
    pub jwks_ttl: Duration,
    /// The least time between two fetches (a token naming an unknown `kid` fetches again, at
    /// most this often, so forged `kid`s cannot hammer the identity provider).
    #[serde(with = "kora_model::duration")]
    pub jwks_refetch_interval: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            hs256_secret: Secret::default(),
            jwks_url: String::new(),
            issuer: String::new(),
            audience: Vec::new(),
            subject_claim: "sub".into(),
            tenant_claim: "tenant".into(),
            role_claim: "role".into(),
            scopes_claim: "scope".into(),
            leeway: Duration::from_secs(30),
            jwks_ttl: Duration::from_secs(600),
            jwks_refetch_interval: Duration::from_secs(10),
        }
    }
}

impl JwtConfig {
    pub fn enabled(&self) -> bool {
        !self.hs256_secret.is_empty() || !self.jwks_url.is_empty()
    }
}

/// `[gateway.rate_limit]`: requests a second (after a burst), per credential and per client
/// address; 0 turns a limit off. Over it, `429` with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub per_credential: f64,
    pub credential_burst: u32,
    pub per_ip: f64,
    pub ip_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_credential: 1000.0,
            credential_burst: 2000,
            per_ip: 2000.0,
            ip_burst: 4000,
        }
    }
}

/// `[gateway.tls]`: serve HTTPS with this certificate chain and key (PEM files); off when
/// empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub cert_path: String,
    pub key_path: String,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.cert_path.is_empty()
    }
}

/// `[gateway.quotas]`: per-tenant limits, `default` for tenants not named in `tenants`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotasConfig {
    pub default: Quota,
    pub tenants: BTreeMap<String, Quota>,
}

impl QuotasConfig {
    pub fn of(&self, tenant: &str) -> &Quota {
        self.tenants.get(tenant).unwrap_or(&self.default)
    }
}

/// A tenant's limits; 0 is no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quota {
    /// Runs running or queued at once; a submission over it is refused with 429.
    pub max_concurrent_runs: u64,
    /// Run submissions a second (after a burst of `submissions_burst`), on each gateway.
    pub submissions_per_sec: f64,
    pub submissions_burst: u32,
}

/// A rate a second: 0 (off), or one whose period (1 / rate) is a representable duration.
fn valid_rate(v: f64) -> bool {
    v == 0.0 || (v.is_finite() && (1e-6..=1e9).contains(&v))
}

/// Networks parsed from CIDR text (`10.0.0.0/8`, or a bare address for one host).
pub fn parse_nets(list: &[String], key: &str) -> Result<Vec<IpNet>, String> {
    list.iter()
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("{key}: {s:?} is not a network (use CIDR, e.g. 10.0.0.0/8 or ::1/128)")
                })
        })
        .collect()
}

impl GatewayConfig {
    /// The wait a submission's `?wait=SECONDS` gets: at most `max_wait` (however large the
    /// number); `None` for what is not a number of seconds from 0 (negative, NaN, infinite).
    pub(crate) fn wait_of(&self, secs: f64) -> Option<Duration> {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        Some(Duration::try_from_secs_f64(secs).map_or(self.max_wait, |d| d.min(self.max_wait)))
    }

    /// Checks that hold whether or not this process runs the gateway.
    pub fn validate(&self) -> Result<(), String> {
        self.policy.validate()?;
        if self.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "gateway.addr must be an address with a port, e.g. 127.0.0.1:8080 (it is {:?})",
                self.addr
            ));
        }
        if !self.key_pepper.is_empty() && self.key_pepper.expose().len() < 32 {
            return Err(
                "gateway.key_pepper must be at least 32 characters (e.g. `openssl rand -hex 32`)"
                    .into(),
            );
        }
        if self.max_body_bytes < 1024 {
            return Err("gateway.max_body_bytes must be at least 1024".into());
        }
        if self.request_timeout < Duration::from_millis(100) {
            return Err("gateway.request_timeout must be at least 100ms".into());
        }
        if self.key_cache_ttl > Duration::from_secs(300) {
            return Err(
                "gateway.key_cache_ttl must be at most 5m (revocations wait for it)".into(),
            );
        }
        parse_nets(&self.admin_allow, "gateway.admin_allow")?;
        parse_nets(&self.trusted_proxies, "gateway.trusted_proxies")?;
        for o in &self.cors_origins {
            if !(o.starts_with("https://") || o.starts_with("http://")) || o.ends_with('/') {
                return Err(format!(
                    "gateway.cors_origins: {o:?} must be an origin like https://app.example.com (no path, no trailing slash)"
                ));
            }
        }
        let r = &self.rate_limit;
        for (v, name) in [(r.per_credential, "per_credential"), (r.per_ip, "per_ip")] {
            if !valid_rate(v) {
                return Err(format!(
                    "gateway.rate_limit.{name} must be 0 (off) or from 0.000001 to 1000000000 a second, found {v}"
                ));
            }
        }
        if self.tls.enabled() == self.tls.key_path.is_empty() {
            return Err("gateway.tls needs both cert_path and key_path".into());
        }
        let url = &self.jwt.jwks_url;
        if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
            return Err("gateway.jwt.jwks_url must be an http(s) URL".into());
        }
        for (t, q) in std::iter::once(("default", &self.quotas.default))
            .chain(self.quotas.tenants.iter().map(|(t, q)| (t.as_str(), q)))
        {
            if !valid_rate(q.submissions_per_sec) {
                return Err(format!(
                    "gateway.quotas.{t}.submissions_per_sec must be 0 (no limit) or from 0.000001 to 1000000000, found {}",
                    q.submissions_per_sec
                ));
            }
        }
        Ok(())
    }

    /// What running the gateway needs beyond [`GatewayConfig::validate`].
    pub fn validate_for_serving(&self) -> Result<(), String> {
        self.validate()?;
        if self.key_pepper.is_empty() {
            return Err(
                "the gateway needs gateway.key_pepper: set KORA_GATEWAY__KEY_PEPPER to a secret of at least 32 characters (e.g. `openssl rand -hex 32`), the same on every gateway and wherever `kora keys` runs".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_capped_and_never_panics() {
        let c = GatewayConfig::default();
        assert_eq!(c.wait_of(2.5), Some(Duration::from_millis(2500)));
        assert_eq!(c.wait_of(0.0), Some(Duration::ZERO));
        for huge in [1e20, 1e300, f64::MAX] {
            assert_eq!(c.wait_of(huge), Some(c.max_wait), "{huge}");
        }
        for bad in [-1.0, -0.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(c.wait_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_defaults_are_valid_but_serving_needs_a_pepper() {
        let c = GatewayConfig::default();
        assert!(c.validate().is_ok());
        assert!(
            c.validate_for_serving()
                .unwrap_err()
                .contains("KORA_GATEWAY__KEY_PEPPER")
        );
        let c = GatewayConfig {
            key_pepper: Secret("x".repeat(32)),
            ..c
        };
        assert!(c.validate_for_serving().is_ok());
        assert_eq!(format!("{:?}", c.key_pepper), "***", "never printed");
    }

    #[test]
    fn bad_settings_name_their_key() {
        let bad = [
            GatewayConfig {
                addr: "localhost".into(),
                ..Default::default()
            },
            GatewayConfig {
                key_pepper: Secret("short".into()),
                ..Default::default()
            },
            GatewayConfig {
                admin_allow: vec!["10.0.0.0/33".into()],
                ..Default::default()
            },
            GatewayConfig {
                cors_origins: vec!["https://a.example/".into()],
                ..Default::default()
            },
            // A rate whose period (1 / rate) is no duration.
            GatewayConfig {
                rate_limit: RateLimitConfig {
                    per_credential: 1e-320,
                    ..Default::default()
                },
                ..Default::default()
            },
        ];
        for (c, key) in bad.iter().zip([
            "gateway.addr",
            "key_pepper",
            "admin_allow",
            "cors_origins",
            "rate_limit.per_credential",
        ]) {
            let e = c.validate().unwrap_err();
            assert!(e.contains(key), "{e}");
        }
        assert_eq!(
            parse_nets(&["10.1.2.3".into()], "k").unwrap()[0].to_string(),
            "10.1.2.3/32"
        );
    }
}
