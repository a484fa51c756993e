//! What commands that start no server (`kora run`, `kora validate`, `kora submit`) read from the
//! environment: `[limits]` and `[tasks]` (`KORA_LIMITS__MAX_NODES=200000`,
//! `KORA_TASKS__DEFAULT_TIMEOUT=30m`), checked as `kora serve` checks them.

use anyhow::anyhow;
use kora_broker::topology::TasksConfig;
use kora_model::Limits;
use serde::{Deserialize, Serialize};

/// The sections of `kora serve`'s configuration these commands honour; other `KORA_*`
/// variables are left to the commands that read them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Local {
    pub limits: Limits,
    pub tasks: TasksConfig,
}

impl Local {
    pub fn from_env() -> anyhow::Result<Local> {
        let local: Local = kora_runtime::config::Loader::new("KORA", std::env::vars())
            .moved(kora_server::config::MOVED)
            .load()
            .map_err(|e| anyhow!("{e}"))?;
        local.limits.validate().map_err(anyhow::Error::msg)?;
        local.tasks.validate().map_err(anyhow::Error::msg)?;
        Ok(local)
    }
}
