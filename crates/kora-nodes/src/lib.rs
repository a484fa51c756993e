//! Node types: the [`Node`] trait every node implements, the [`Registry`] a worker executes
//! from, and Kora's built-in nodes.
//!
//! Owns: node execution given a node's prepared input (config overlaid by runtime inputs), node
//! metadata ([`kora_model::NodeTypeInfo`]) for validation and `kora nodes`, and the warm pool of
//! Python interpreters behind PythonCodeNode.
//!
//! Must not: touch the broker or the ledger, or know about runs beyond the ids in
//! [`NodeContext`]. A node is a function from input to output (plus its own side effects).

mod builtin;
mod cache;
mod data;
pub mod docs;
mod error;
mod external;
mod http;
mod monitoring;
mod params;
pub mod python;
pub mod sandbox;
pub mod secrets;
mod security;
mod sql;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

use kora_model::error_type;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use kora_model::{Catalog, Map, NodeTypeInfo};

pub use error::NodeError;

/// What a node knows about the task it runs for (for logs and idempotency keys).
#[derive(Debug, Clone, Default)]
pub struct NodeContext {
    pub run_id: String,
    pub node_id: String,
    pub attempt: u32,
    /// Audit entries the node records; the worker sends them with the result and the ledger
    /// writes them with its outcome.
    pub audit_entries: std::sync::Arc<std::sync::Mutex<Vec<kora_model::Value>>>,
}

impl NodeContext {
    /// Records an audit entry (see `AuditLogNode`).
    pub fn audit(&self, entry: kora_model::Value) {
        self.audit_entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(entry);
    }

    /// The entries recorded so far, taken out.
    pub fn take_audit(&self) -> Vec<kora_model::Value> {
        std::mem::take(
            &mut *self
                .audit_entries
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

#[async_trait]
pub trait Node: Send + Sync + 'static {
    fn info(&self) -> &NodeTypeInfo;
    /// Runs the node on its prepared input and returns its output object.
    async fn run(&self, ctx: &NodeContext, input: Map) -> Result<Map, NodeError>;
}

/// `[nodes]`: settings shared by the built-in nodes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodesConfig {
    /// File nodes may only read and write below this directory.
    pub data_root: PathBuf,
    /// Interpreters in the PythonCodeNode pool.
    pub python_workers: usize,
    pub python_bin: String,
    /// Default PythonCodeNode time limit, overridable per node with `timeout`.
    #[serde(with = "kora_model::duration")]
    pub python_timeout: std::time::Duration,
    /// `[nodes.sandbox]`: how PythonCodeNode's interpreters are confined.
    pub sandbox: sandbox::SandboxConfig,
}

impl Default for NodesConfig {
    fn default() -> Self {
        NodesConfig {
            data_root: PathBuf::from("."),
            python_workers: std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            python_bin: "python3".into(),
            python_timeout: std::time::Duration::from_secs(60),
            sandbox: sandbox::SandboxConfig::default(),
        }
    }
}

impl NodesConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1024).contains(&self.python_workers) {
            return Err(format!(
                "nodes.python_workers must be between 1 and 1024 (it is {})",
                self.python_workers
            ));
        }
        if self.python_timeout.is_zero() {
            return Err("nodes.python_timeout must be more than 0".into());
        }
        self.sandbox.validate()
    }
}

/// The node types a worker can execute, by type name.
#[derive(Clone, Default)]
pub struct Registry {
    nodes: BTreeMap<&'static str, Arc<dyn Node>>,
    /// PythonCodeNode's interpreters, for their gauges (a registry without the built-in
    /// nodes has none).
    python: Option<Arc<python::PythonPool>>,
}

impl Registry {
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every built-in node type.
    pub fn builtin(cfg: &NodesConfig) -> Self {
        let mut r = Self::empty();
        let client = http::Http::new();
        let pool = Arc::new(python::PythonPool::new(
            &cfg.python_bin,
            cfg.python_workers,
            cfg.python_timeout,
            Some((cfg.sandbox.clone(), cfg.data_root.clone())),
        ));
        r.python = Some(Arc::clone(&pool));
        for n in builtin::all(cfg, &pool)
            .into_iter()
            .chain(data::all(&cfg.data_root))
            .chain(http::all(&client))
            .chain(sql::all(&sql::Pools::new(cfg.data_root.clone())))
            .chain(cache::all())
            .chain(security::all())
            .chain(monitoring::all(&client))
            .chain(external::all())
        {
            r.register(n);
        }
        r
    }

    /// Adds (or replaces) a node type; this is how a custom worker binary adds its own.
    pub fn register(&mut self, node: Arc<dyn Node>) {
        self.nodes.insert(node.info().name, node);
    }

    /// Adds `other`'s node types that this registry does not have (custom nodes beside the
    /// built-in ones; a built-in keeps its name).
    pub fn extend(&mut self, other: &Registry) {
        for (name, node) in &other.nodes {
            self.nodes.entry(name).or_insert_with(|| Arc::clone(node));
        }
        if self.python.is_none() {
            self.python.clone_from(&other.python);
        }
    }

    /// PythonCodeNode's interpreters: `(busy, idle, max)`; `None` without the built-in nodes.
    pub fn python_use(&self) -> Option<(usize, usize, usize)> {
        self.python.as_ref().map(|p| p.usage())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Node>> {
        self.nodes.get(name)
    }

    pub fn infos(&self) -> Vec<NodeTypeInfo> {
        self.nodes.values().map(|n| n.info().clone()).collect()
    }
}

impl Catalog for Registry {
    fn node_type(&self, name: &str) -> Option<&NodeTypeInfo> {
        self.nodes.get(name).map(|n| n.info())
    }
    fn type_names(&self) -> Vec<&'static str> {
        self.nodes.keys().copied().collect()
    }
}

/// Resolves `path` below `root`, refusing anything that escapes it (`..`, absolute paths
/// elsewhere, symlinks out).
pub fn confine(root: &Path, path: &str) -> Result<PathBuf, NodeError> {
    let root = root.canonicalize().map_err(|e| {
        NodeError::permanent(
            error_type::CONFIG,
            format!("data root {} is not usable: {e}", root.display()),
        )
    })?;
    let joined = root.join(path);
    let real = joined.canonicalize().map_err(|e| {
        NodeError::permanent(
            "FileNotFoundError",
            format!("cannot open {}: {e}", joined.display()),
        )
    })?;
    if !real.starts_with(&root) {
        return Err(NodeError::permanent(
            error_type::PERMISSION,
            format!(
                "path {path:?} is outside the data root {}; move the file there or change --data-root",
                root.display()
            ),
        ));
    }
    Ok(real)
}
