//! Each role's health, as `/healthz` reports it: a process is healthy while every role it
//! started is running.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    /// Asked to stop: draining.
    Stopping,
    Stopped,
    /// Stopped with an error (or stopped when nobody asked): the process is ending.
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoleHealth {
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Role tasks by name (`coordinator`, `worker`, `worker-2`, `http`).
#[derive(Debug, Default)]
pub struct Health {
    roles: Mutex<BTreeMap<String, RoleHealth>>,
}

impl Health {
    pub fn set(&self, name: &str, state: State, error: Option<String>) {
        if let Ok(mut roles) = self.roles.lock() {
            roles.insert(name.to_string(), RoleHealth { state, error });
        }
    }

    /// Every role that is not stopped says it is stopping.
    pub fn stopping(&self) {
        if let Ok(mut roles) = self.roles.lock() {
            for r in roles.values_mut() {
                if r.state == State::Running {
                    r.state = State::Stopping;
                }
            }
        }
    }

    /// Whether every role is running.
    pub fn healthy(&self) -> bool {
        self.roles
            .lock()
            .map(|r| !r.is_empty() && r.values().all(|h| h.state == State::Running))
            .unwrap_or(false)
    }

    pub fn snapshot(&self) -> BTreeMap<String, RoleHealth> {
        self.roles.lock().map(|r| r.clone()).unwrap_or_default()
    }
}
