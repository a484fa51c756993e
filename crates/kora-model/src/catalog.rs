//! What the model knows about node types without running them: names, parameters, outputs.
//! The worker's node registry produces this metadata; validation and planning consume it.

use serde::Serialize;

/// One declared parameter of a node type.
#[derive(Debug, Clone, Serialize)]
pub struct ParamInfo {
    pub name: &'static str,
    pub required: bool,
    pub description: &'static str,
    /// Other names Kailash accepts for this parameter (`data` for `input_data`).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub aliases: &'static [&'static str],
}

impl ParamInfo {
    pub const fn required(name: &'static str, description: &'static str) -> Self {
        ParamInfo {
            name,
            required: true,
            description,
            aliases: &[],
        }
    }
    pub const fn optional(name: &'static str, description: &'static str) -> Self {
        ParamInfo {
            name,
            required: false,
            description,
            aliases: &[],
        }
    }
    pub const fn with_aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }
}

/// Metadata of one node type.
#[derive(Debug, Clone, Serialize)]
pub struct NodeTypeInfo {
    pub name: &'static str,
    pub description: &'static str,
    pub params: Vec<ParamInfo>,
    pub outputs: Vec<&'static str>,
    /// Accepts inputs it does not declare (PythonCodeNode: every input becomes a variable).
    pub open_inputs: bool,
    /// Produces outputs it does not declare (PythonCodeNode locals, SwitchNode `case_*`).
    pub open_outputs: bool,
    /// A failure aborts the run even when the node is a leaf (Kailash's SQL nodes).
    pub stop_on_error: bool,
    /// Routes data like Kailash's SwitchNode: `None` outputs mark untaken branches.
    pub is_switch: bool,
}

impl NodeTypeInfo {
    pub fn param(&self, name: &str) -> Option<&ParamInfo> {
        self.params
            .iter()
            .find(|p| p.name == name || p.aliases.contains(&name))
    }
}

/// A source of node-type metadata (the worker's registry, or a fixed list in tests).
pub trait Catalog {
    fn node_type(&self, name: &str) -> Option<&NodeTypeInfo>;
    /// Every known type name, for "did you mean" suggestions.
    fn type_names(&self) -> Vec<&'static str>;
}

impl Catalog for Vec<NodeTypeInfo> {
    fn node_type(&self, name: &str) -> Option<&NodeTypeInfo> {
        self.iter().find(|t| t.name == name)
    }
    fn type_names(&self) -> Vec<&'static str> {
        self.iter().map(|t| t.name).collect()
    }
}

/// The closest candidate by edit distance, when it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(&word.to_lowercase(), &c.to_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
