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
    /// What a value must be; a value given in the workflow's config is checked when the
    /// workflow is validated (values arriving on edges or at run time, when the node runs).
    pub kind: ParamKind,
    /// The default, as documentation (`kora nodes`, `docs/nodes.md`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<&'static str>,
}

/// The type of a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    Any,
    String,
    Integer,
    Number,
    Bool,
    List,
    Map,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// One of these strings, where anything else is not an error but a warning: Kailash
    /// accepts it and treats it as never matching (SwitchNode's `operator`).
    Expect(&'static [&'static str]),
    /// A duration in seconds: a number from 0 to [`MAX_SECONDS`].
    Seconds,
}

/// The longest duration a node parameter may give, in seconds (about 31 years): anything
/// longer is a mistake, and would not fit a timer.
pub const MAX_SECONDS: f64 = 1e9;

impl ParamKind {
    /// Whether a value not of this kind is only a warning.
    pub fn lenient(self) -> bool {
        matches!(self, ParamKind::Expect(_))
    }

    /// Why `v` is not of this kind, if it is not. `null` passes (an unset optional).
    pub fn check(self, v: &crate::Value) -> Option<String> {
        use crate::Value as V;
        let ok = match (self, v) {
            (_, V::Null) | (ParamKind::Any, _) => true,
            (ParamKind::String, V::String(_)) => true,
            (ParamKind::Integer, V::Number(n)) => n.is_i64() || n.is_u64(),
            (ParamKind::Number, V::Number(_)) => true,
            (ParamKind::Seconds, V::Number(n)) => n
                .as_f64()
                .is_some_and(|x| x.is_finite() && (0.0..=MAX_SECONDS).contains(&x)),
            (ParamKind::Bool, V::Bool(_)) => true,
            (ParamKind::List, V::Array(_)) => true,
            (ParamKind::Map, V::Object(_)) => true,
            (ParamKind::OneOf(allowed), V::String(s)) => {
                allowed.iter().any(|a| a.eq_ignore_ascii_case(s))
            }
            (ParamKind::Expect(allowed), V::String(s)) => allowed.contains(&s.as_str()),
            _ => false,
        };
        if ok {
            return None;
        }
        let found = match v {
            V::String(s) => format!("{s:?}"),
            // As Python writes it, whatever the text said (`1e12` is `1000000000000.0`).
            V::Number(_) => crate::value::py_repr(v),
            other => {
                let t = other.to_string();
                if t.chars().count() > 60 {
                    format!("{}…", t.chars().take(60).collect::<String>())
                } else {
                    t
                }
            }
        };
        Some(match self {
            ParamKind::OneOf(allowed) => {
                format!("must be one of {}, found {found}", allowed.join(", "))
            }
            ParamKind::Expect(allowed) => format!(
                "is not one of {}, found {found}; as in Kailash it never matches",
                allowed.join(", ")
            ),
            k => format!("must be {}, found {found}", k.describe()),
        })
    }

    /// How `kora nodes` names it.
    pub fn describe(self) -> String {
        match self {
            ParamKind::Any => "any value".into(),
            ParamKind::String => "a string".into(),
            ParamKind::Integer => "an integer".into(),
            ParamKind::Number => "a number".into(),
            ParamKind::Bool => "true or false".into(),
            ParamKind::List => "a list".into(),
            ParamKind::Map => "a map".into(),
            ParamKind::OneOf(a) => format!("one of {}", a.join(" | ")),
            ParamKind::Expect(a) => format!("one of {} (another never matches)", a.join(" | ")),
            ParamKind::Seconds => "a number of seconds from 0 to 1000000000".into(),
        }
    }
}

impl ParamInfo {
    pub const fn required(name: &'static str, description: &'static str) -> Self {
        ParamInfo {
            name,
            required: true,
            description,
            aliases: &[],
            kind: ParamKind::Any,
            default: None,
        }
    }
    pub const fn optional(name: &'static str, description: &'static str) -> Self {
        ParamInfo {
            name,
            required: false,
            description,
            aliases: &[],
            kind: ParamKind::Any,
            default: None,
        }
    }
    pub const fn with_aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }
    pub const fn kind(mut self, kind: ParamKind) -> Self {
        self.kind = kind;
        self
    }
    pub const fn default(mut self, default: &'static str) -> Self {
        self.default = Some(default);
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
    /// Groups of parameters of which at least one must be given (PythonCodeNode: code,
    /// function or class_code).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub required_one_of: Vec<&'static [&'static str]>,
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
