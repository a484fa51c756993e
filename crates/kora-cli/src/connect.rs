//! Connecting a client command to an installation: its NATS and its ledger, as configured.

use std::sync::Arc;

use anyhow::Context;
use kora_broker::Broker;
use kora_broker::nats::{JetStreamBroker, NatsConfig};
use kora_server::ServerConfig;
use kora_store::Store;
use kora_store::pg::PgStore;

/// The installation's NATS, under a client connection `name`.
pub async fn broker(cfg: &ServerConfig, name: &str) -> anyhow::Result<Arc<dyn Broker>> {
    let b = JetStreamBroker::connect(&NatsConfig {
        name: name.into(),
        ..cfg.nats.clone()
    })
    .await
    .with_context(|| {
        format!(
            "cannot connect to NATS at {} (set KORA_NATS_URL)",
            kora_broker::nats_auth::redact_url(&cfg.nats.url)
        )
    })?;
    Ok(Arc::new(b))
}

/// The installation's ledger (migrated to this build's schema if it is behind).
pub async fn store(cfg: &ServerConfig) -> anyhow::Result<Arc<dyn Store>> {
    let s = PgStore::connect(&cfg.database).await.with_context(|| {
        format!(
            "cannot open the ledger at {} (set KORA_DATABASE_URL)",
            kora_store::pg::redact(&cfg.database.url)
        )
    })?;
    Ok(Arc::new(s))
}

/// The operator API on the installation `cfg` names; request streams are provisioned, so a
/// request is kept even if no role has started yet.
pub async fn control(cfg: &ServerConfig) -> anyhow::Result<kora_client::Control> {
    let subjects = cfg.nats.subjects();
    let store = store(cfg).await?;
    let broker = broker(cfg, "kora-control").await?;
    if cfg.nats.provision {
        kora_broker::topology::provision_streams(broker.as_ref(), &subjects, &cfg.topology())
            .await?;
    }
    Ok(kora_client::Control::new(store, broker, subjects))
}
