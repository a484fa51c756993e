//! Rate limits and tenant quotas: per client address (before authentication), per credential,
//! and per tenant (submissions a second on this gateway; runs running or queued at once,
//! counted in the ledger and cached a second). Over a limit: `429` with `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota as GQuota};
use kora_store::Store;

use crate::config::{GatewayConfig, QuotasConfig};
use crate::error::ApiError;

fn quota(per_sec: f64, burst: u32) -> Option<GQuota> {
    if per_sec <= 0.0 {
        return None;
    }
    // Config validation keeps rates within 1e-6..=1e9, so this period always exists.
    let period = Duration::try_from_secs_f64(1.0 / per_sec).ok()?;
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    GQuota::with_period(period).map(|q| q.allow_burst(burst))
}

fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

pub(crate) struct Limits {
    ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    credential: Option<DefaultKeyedRateLimiter<String>>,
    quotas: QuotasConfig,
    submissions: Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
    active: moka::future::Cache<String, u64>,
    store: Arc<dyn Store>,
}

impl Limits {
    pub(crate) fn new(cfg: &GatewayConfig, store: Arc<dyn Store>) -> Self {
        let r = &cfg.rate_limit;
        Limits {
            ip: quota(r.per_ip, r.ip_burst).map(DefaultKeyedRateLimiter::keyed),
            credential: quota(r.per_credential, r.credential_burst)
                .map(DefaultKeyedRateLimiter::keyed),
            quotas: cfg.quotas.clone(),
            submissions: Mutex::new(HashMap::new()),
            active: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(1))
                .build(),
            store,
        }
    }

    pub(crate) fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        match &self.ip {
            Some(l) => l.check_key(&ip).map_err(|n| {
                ApiError::rate_limited(
                    "too many requests from this address; slow down",
                    retry_secs(n.wait_time_from(DefaultClock::default().now())),
                )
            }),
            None => Ok(()),
        }
    }

    pub(crate) fn check_credential(&self, actor: &str) -> Result<(), ApiError> {
        match &self.credential {
            Some(l) => l.check_key(&actor.to_string()).map_err(|n| {
                ApiError::rate_limited(
                    "too many requests with this credential; slow down",
                    retry_secs(n.wait_time_from(DefaultClock::default().now())),
                )
            }),
            None => Ok(()),
        }
    }

    /// A submission of `tenant`'s: within its rate and its concurrent-run quota.
    pub(crate) async fn check_submission(&self, tenant: &str) -> Result<(), ApiError> {
        let q = self.quotas.of(tenant);
        if let Some(gq) = quota(q.submissions_per_sec, q.submissions_burst) {
            let limiter = {
                let mut m = self
                    .submissions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                Arc::clone(
                    m.entry(tenant.to_string())
                        .or_insert_with(|| Arc::new(DefaultDirectRateLimiter::direct(gq))),
                )
            };
            limiter.check().map_err(|n| {
                ApiError::rate_limited(
                    format!(
                        "tenant {tenant} is over its submission rate ({}/s); slow down",
                        q.submissions_per_sec
                    ),
                    retry_secs(n.wait_time_from(DefaultClock::default().now())),
                )
            })?;
        }
        if q.max_concurrent_runs > 0 {
            let store = Arc::clone(&self.store);
            let t = tenant.to_string();
            let active = self
                .active
                .try_get_with(tenant.to_string(), async move {
                    store.tenant_active_runs(&t).await
                })
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "cannot count the tenant's runs");
                    ApiError::unavailable("the ledger is not reachable; try again")
                })?;
            if active >= q.max_concurrent_runs {
                return Err(ApiError::rate_limited(
                    format!(
                        "tenant {tenant} has {active} runs running or queued, its limit is {}; wait for some to end",
                        q.max_concurrent_runs
                    ),
                    1,
                ));
            }
        }
        Ok(())
    }

    /// Forgets idle keys (call now and then: keyed limiters keep a cell per key).
    pub(crate) fn shrink(&self) {
        if let Some(l) = &self.ip {
            l.retain_recent();
        }
        if let Some(l) = &self.credential {
            l.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_429_with_retry_after() {
        let cfg = GatewayConfig {
            rate_limit: crate::config::RateLimitConfig {
                per_ip: 1.0,
                ip_burst: 2,
                ..Default::default()
            },
            ..Default::default()
        };
        let l = Limits::new(&cfg, Arc::new(kora_store::memory::MemoryStore::new()));
        let ip: IpAddr = "10.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert!(l.check_ip(ip).is_ok());
        assert!(l.check_ip(ip).is_ok());
        let e = l.check_ip(ip).unwrap_err();
        assert_eq!(e.status.as_u16(), 429);
        assert!(e.retry_after.is_some_and(|s| s >= 1));
        assert!(
            l.check_ip("10.0.0.2".parse().unwrap_or(ip)).is_ok(),
            "per address"
        );
    }
}
