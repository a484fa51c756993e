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
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub id: String,
    #[serde(rename = "type")]
    pub node_type: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map,
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
}
