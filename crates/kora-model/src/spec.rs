//! The canonical workflow: what every loaded format becomes, and what travels in a run request.

use serde::{Deserialize, Serialize};

use crate::value::Map;

/// The literal Kailash writes in place of secret-looking config values on export.
pub const REDACTED: &str = "***REDACTED***";

/// A workflow: nodes `(id, type, config)` joined by connections
/// `(source, output path, target, input)`, plus the cycles some connections belong to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WorkflowSpec {
    /// Kora's canonical-format marker and version; always 1 today.
    #[serde(default = "one")]
    pub kora: u32,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map,
    pub nodes: Vec<NodeSpec>,
    #[serde(default)]
    pub connections: Vec<Connection>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cycles: Vec<CycleSpec>,
    /// The retry policy of every node that names none (Kora's canonical form only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Tasks of `high` priority runs are taken by workers before `normal` ones.
    #[serde(default, skip_serializing_if = "Priority::is_normal")]
    pub priority: Priority,
    /// How many runs of this workflow may run at once (per key, when it names one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencyLimit>,
    /// The run's deadline, in seconds from its submission: past it the run fails
    /// (`DeadlineExceeded`) and its in-flight tasks are told to stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_secs: Option<f64>,
}

/// At most `limit` runs of a workflow run at once, or at most `limit` per value of the run
/// parameter `key` names (a dotted path into the run's parameters, `fetch.customer_id`). Runs
/// over the limit are accepted and wait, `queued`, in submission order; each starts when a
/// running one ends. The limit holds across every coordinator: the ledger refuses a commit that
/// would exceed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyLimit {
    pub limit: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A run's priority: workers take every waiting `high` task of their queue before `normal`
/// ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    Normal,
    High,
}

impl Priority {
    pub fn is_normal(&self) -> bool {
        *self == Priority::Normal
    }
}

fn one() -> u32 {
    1
}

/// How a failed node attempt is retried. A node's errors are *retryable* (a lost worker, a
/// crashed interpreter, a timeout, a connection refused) or *permanent* (an exception in user
/// code, bad configuration); node types classify their own. Only retryable errors are retried
/// unless `retry_permanent` is set. Delays grow from `initial_delay_ms` by `multiplier` up to
/// `max_delay_ms`; with `jitter` each delay is drawn at random up to twice its value, so
/// retries of many nodes do not arrive together. Delays are kept by the coordinator: a worker is
/// never blocked by a retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included: 1 never retries.
    #[serde(default = "RetryPolicy::default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "RetryPolicy::default_initial")]
    pub initial_delay_ms: u64,
    #[serde(default = "RetryPolicy::default_max")]
    pub max_delay_ms: u64,
    #[serde(default = "RetryPolicy::default_multiplier")]
    pub multiplier: f64,
    #[serde(default = "RetryPolicy::default_jitter")]
    pub jitter: bool,
    /// Retry errors the node reports as permanent too.
    #[serde(default)]
    pub retry_permanent: bool,
}

impl RetryPolicy {
    fn default_attempts() -> u32 {
        3
    }
    fn default_initial() -> u64 {
        1_000
    }
    fn default_max() -> u64 {
        60_000
    }
    fn default_multiplier() -> f64 {
        2.0
    }
    fn default_jitter() -> bool {
        true
    }

    /// Whether attempt `attempt` (1-based) that failed, retryably or not, gets another.
    pub fn retries(&self, attempt: u32, retryable: bool) -> bool {
        attempt < self.max_attempts && (retryable || self.retry_permanent)
    }

    /// Problems with this policy, as `(field, message)`.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(1..=100).contains(&self.max_attempts) {
            out.push((
                "retry.max_attempts",
                format!("must be between 1 and 100, found {}", self.max_attempts),
            ));
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 || self.multiplier > 100.0 {
            out.push((
                "retry.multiplier",
                format!("must be between 1 and 100, found {}", self.multiplier),
            ));
        }
        if self.max_delay_ms < self.initial_delay_ms {
            out.push((
                "retry.max_delay_ms",
                format!(
                    "must be at least initial_delay_ms ({}), found {}",
                    self.initial_delay_ms, self.max_delay_ms
                ),
            ));
        }
        if self.max_delay_ms > 24 * 3600 * 1000 {
            out.push((
                "retry.max_delay_ms",
                format!(
                    "must be at most a day (86400000), found {}",
                    self.max_delay_ms
                ),
            ));
        }
        out
    }
}

impl Default for RetryPolicy {
    /// Three attempts, 1 s then 2 s (with jitter), retryable errors only.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: Self::default_attempts(),
            initial_delay_ms: Self::default_initial(),
            max_delay_ms: Self::default_max(),
            multiplier: Self::default_multiplier(),
            jitter: Self::default_jitter(),
            retry_permanent: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub id: String,
    #[serde(rename = "type")]
    pub node_type: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map,
    /// This node's retry policy; else the workflow's, else [`RetryPolicy::default`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Execution limit of one attempt, in seconds: past it the worker stops the node and the
    /// attempt fails with a retryable `TimeoutError` (so the retry policy applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
}

/// One mapping pair of an edge: `source.output` (a dotted path into the source's output) feeds
/// `target.input`. Several pairs between the same two nodes are several connections.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Connection {
    pub source: String,
    pub output: String,
    pub target: String,
    pub input: String,
    /// The id of the cycle this edge closes. A cycle edge feeds the previous iteration's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle: Option<String>,
}

/// How a cycle ends: after `max_iterations`, when `converge_when` is true, or after `timeout_secs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleSpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converge_when: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
}

impl WorkflowSpec {
    pub fn node(&self, id: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The concurrency group a run with `params` belongs to and its limit: the workflow's
    /// (id, else name) alone, or with the value of the run parameter the limit's `key` names.
    /// `Err` says which parameter is missing.
    pub fn concurrency_group(&self, params: &Map) -> Result<Option<(String, u32)>, String> {
        let Some(c) = &self.concurrency else {
            return Ok(None);
        };
        let wf = if self.id.is_empty() {
            &self.name
        } else {
            &self.id
        };
        let Some(key) = &c.key else {
            return Ok(Some((wf.clone(), c.limit)));
        };
        let mut v = None;
        let mut cur: Option<&crate::Value> = None;
        for (i, part) in key.split('.').enumerate() {
            cur = if i == 0 {
                params.get(part)
            } else {
                cur.and_then(|c| c.get(part))
            };
            v = cur;
        }
        match v {
            None | Some(crate::Value::Null) => Err(format!(
                "concurrency.key names the run parameter '{key}', which this run does not have: pass it in the run's parameters"
            )),
            Some(crate::Value::String(s)) => Ok(Some((format!("{wf}|{s}"), c.limit))),
            Some(other) => Ok(Some((format!("{wf}|{other}"), c.limit))),
        }
    }

    /// The nodes a restart from `node` runs again: everything reachable from it, sorted. `Err`
    /// says why it cannot restart there (no such node, or the node is inside a cycle).
    pub fn downstream_of(&self, node: &str) -> Result<Vec<String>, String> {
        if self.node(node).is_none() {
            let ids: Vec<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
            return Err(format!(
                "the workflow has no node '{node}'; its nodes are: {}",
                ids.join(", ")
            ));
        }
        let mut downstream: Vec<String> = Vec::new();
        let mut todo = vec![node.to_string()];
        while let Some(n) = todo.pop() {
            for c in self.connections.iter().filter(|c| c.source == n) {
                if c.target == node {
                    return Err(format!(
                        "node '{node}' is inside a cycle: restart from a node before the cycle"
                    ));
                }
                if !downstream.contains(&c.target) {
                    downstream.push(c.target.clone());
                    todo.push(c.target.clone());
                }
            }
        }
        downstream.sort();
        Ok(downstream)
    }

    /// The policy that governs `node`'s retries.
    pub fn retry_policy<'a>(&'a self, node: &'a NodeSpec) -> std::borrow::Cow<'a, RetryPolicy> {
        match node.retry.as_ref().or(self.retry.as_ref()) {
            Some(p) => std::borrow::Cow::Borrowed(p),
            None => std::borrow::Cow::Owned(RetryPolicy::default()),
        }
    }
}
