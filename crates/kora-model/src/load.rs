//! Loading workflows from JSON or YAML in every shape Kailash writes, and in Kora's own.
//!
//! Shapes (see `docs/kailash-compatibility.md`):
//! - **A** `Workflow.to_dict()`: `nodes` is an object of `{node_type|type, config}`, connections use
//!   `source_node/source_output/target_node/target_input` and may carry cycle fields.
//! - **B** `WorkflowBuilder.from_dict`: `nodes` is a list of `{id, type, parameters|config}` (or an
//!   object of `{type, parameters|config}`), connections use `from_node/...` or `from`/`to`.
//! - **C** `export_workflow`: `{"version": "1.0", nodes: {id: {type, config, ...}}, connections: [{from, to, ...}]}`.
//! - **D** kailash-enterprise: `nodes: [{type_name, node_id, config}]`.
//! - **Kora**: `{"kora": 1, nodes: [{id, type, config}], connections: [{source, output, target, input, cycle?}], cycles: [...]}`.
//!
//! No input makes the loader panic: every malformed piece becomes a [`LoadError`] naming where it is.

mod lean;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::spec::{Connection, CycleSpec, NodeSpec, WorkflowSpec};
use crate::value::Map;

/// Which serialization the text is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Json,
    Yaml,
    /// JSON when the text starts with `{` or `[`, YAML otherwise.
    Auto,
}

/// Which workflow shape was recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    KailashToDict,
    KailashBuilder,
    KailashExport,
    KailashEnterprise,
    Kora,
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Shape::KailashToDict => "Kailash Workflow.to_dict",
            Shape::KailashBuilder => "Kailash WorkflowBuilder.from_dict",
            Shape::KailashExport => "Kailash export_workflow",
            Shape::KailashEnterprise => "kailash-enterprise",
            Shape::Kora => "Kora canonical",
        })
    }
}

/// A loader problem: where it is (`nodes.a.config`, `connections[3]`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct LoadError {
    pub at: String,
    pub message: String,
}

fn err(at: impl Into<String>, message: impl Into<String>) -> LoadError {
    LoadError {
        at: at.into(),
        message: message.into(),
    }
}

/// Parses `text` and converts it to a [`WorkflowSpec`]; returns the shape it recognised.
///
/// A JSON document is read without ever holding all of it as a `Value` (which takes about
/// twelve times the text): its nodes and connections are read one at a time from the text.
/// The result is the same as `from_value(&parse(text))`, errors included.
pub fn load_str(text: &str, syntax: Syntax) -> Result<(WorkflowSpec, Shape), Vec<LoadError>> {
    if is_json(text, syntax)
        && let Some(loaded) = lean::load(text)
    {
        return loaded;
    }
    let value = parse(text, syntax).map_err(|e| vec![e])?;
    from_value(&value)
}

fn is_json(text: &str, syntax: Syntax) -> bool {
    match syntax {
        Syntax::Json => true,
        Syntax::Yaml => false,
        Syntax::Auto => matches!(text.trim_start().chars().next(), Some('{' | '[')),
    }
}

/// Parses JSON or YAML text into a JSON value.
pub fn parse(text: &str, syntax: Syntax) -> Result<Value, LoadError> {
    if is_json(text, syntax) {
        serde_json::from_str(text).or_else(|e| {
            // Flow-style YAML also starts with `{`; accept it when JSON does not parse.
            if syntax == Syntax::Auto
                && let Ok(Strict(v)) = serde_norway::from_str::<Strict>(text)
            {
                return Ok(v);
            }
            Err(err("document", format!("invalid JSON: {e}")))
        })
    } else {
        serde_norway::from_str::<Strict>(text)
            .map(|s| s.0)
            .map_err(|e| err("document", format!("invalid YAML: {e}")))
    }
}

/// A JSON value read from YAML that refuses what JSON cannot hold (`.nan`, `.inf`), where
/// `serde_json::Value`'s own visitor would silently turn it into `null`.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a value JSON can hold")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    // Exact: numbers keep their digits (an integer of any size stays one, as in Python).
    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Value, E> {
        serde_json::Number::from_i128(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("the integer {v} is out of range")))
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        serde_json::Number::from_u128(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("the integer {v} is out of range")))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        match serde_json::Number::from_f64(v) {
            Some(n) => Ok(Value::Number(n)),
            None => Err(E::custom(format!(
                "{} is not a number Kora can carry (JSON, the wire and the ledger have no NaN or infinities): write null, a string such as \"nan\", or a finite number",
                if v.is_nan() {
                    ".nan"
                } else if v > 0.0 {
                    ".inf"
                } else {
                    "-.inf"
                }
            ))),
        }
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(d).map(|Strict(v)| v)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some((k, Strict(v))) = map.next_entry::<String, Strict>()? {
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// Converts a parsed document into a [`WorkflowSpec`], collecting every problem found.
pub fn from_value(doc: &Value) -> Result<(WorkflowSpec, Shape), Vec<LoadError>> {
    let Some(top) = doc.as_object() else {
        return Err(vec![err(
            "document",
            format!(
                "a workflow must be an object with `nodes` and `connections`, found {}",
                kind(doc)
            ),
        )]);
    };
    if top.contains_key("kora") {
        return match serde_path_to_error::deserialize::<_, WorkflowSpec>(doc.clone()) {
            Ok(s) => Ok((s, Shape::Kora)),
            Err(e) => Err(vec![err(
                kora_location(doc, &e.path().to_string()),
                e.into_inner().to_string(),
            )]),
        };
    }
    from_parts(
        top,
        top.get("nodes").map(Part::Value),
        top.get("connections").map(Part::Value),
    )
}

/// A document's `nodes` or `connections`: parsed, or still JSON text read one element at a
/// time.
#[derive(Clone, Copy)]
enum Part<'a> {
    Value(&'a Value),
    Raw(&'a serde_json::value::RawValue),
}

/// One element of a [`Part`]: a list item, or an object's entry with its key.
enum Element<'k> {
    Item(usize),
    Entry(&'k str),
}

impl Part<'_> {
    /// Calls `f` on each element of a list or object, in order; false when the part is
    /// neither or cannot be read.
    fn for_each(self, mut f: impl FnMut(Element<'_>, &Value)) -> bool {
        match self {
            Part::Value(Value::Array(list)) => {
                for (i, v) in list.iter().enumerate() {
                    f(Element::Item(i), v);
                }
                true
            }
            Part::Value(Value::Object(map)) => {
                for (k, v) in map {
                    f(Element::Entry(k), v);
                }
                true
            }
            Part::Value(_) => false,
            Part::Raw(raw) => lean::for_each(raw, f),
        }
    }

    /// What the part is, as [`kind`] names it.
    fn kind(self) -> &'static str {
        match self {
            Part::Value(v) => kind(v),
            Part::Raw(raw) => match lean::first(raw) {
                Some(b'[') => "a list",
                Some(b'{') => "an object",
                Some(b'n') => "null",
                Some(b't' | b'f') => "a boolean",
                Some(b'"') => "a string",
                _ => "a number",
            },
        }
    }

    /// Whether any element is an object holding one of `keys`.
    fn any_has(self, keys: &[&str]) -> bool {
        match self {
            Part::Value(Value::Array(list)) => {
                list.iter().any(|n| keys.iter().any(|k| n.get(k).is_some()))
            }
            Part::Value(Value::Object(map)) => map
                .values()
                .any(|n| keys.iter().any(|k| n.get(k).is_some())),
            Part::Value(_) => false,
            Part::Raw(raw) => lean::any_has(raw, keys),
        }
    }

    fn is_array(self) -> Option<bool> {
        match self {
            Part::Value(Value::Array(_)) => Some(true),
            Part::Value(Value::Object(_)) => Some(false),
            Part::Value(_) => None,
            Part::Raw(raw) => match lean::first(raw) {
                Some(b'[') => Some(true),
                Some(b'{') => Some(false),
                _ => None,
            },
        }
    }
}

/// [`from_value`] for a document that is not in Kora's shape, its nodes and connections
/// given apart from the other top-level keys.
fn from_parts(
    top: &Map,
    nodes: Option<Part<'_>>,
    connections: Option<Part<'_>>,
) -> Result<(WorkflowSpec, Shape), Vec<LoadError>> {
    let Some(nodes) = nodes else {
        return Err(vec![err(
            "document",
            "missing `nodes`: a workflow needs at least one node",
        )]);
    };
    let shape = detect(top, nodes);
    let mut errors = Vec::new();
    let mut spec = WorkflowSpec {
        kora: 1,
        ..Default::default()
    };
    spec.id = str_field(top, &["workflow_id", "id"]).unwrap_or_default();
    spec.name = str_field(top, &["name"]).unwrap_or_default();
    spec.description = str_field(top, &["description"]).unwrap_or_default();
    spec.version = match top.get("version") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    spec.metadata = match (shape, top.get("metadata")) {
        (_, Some(Value::Object(m))) => m.clone(),
        (_, Some(Value::Null) | None) => Map::new(),
        (_, Some(other)) => {
            errors.push(err(
                "metadata",
                format!("must be an object, found {}", kind(other)),
            ));
            Map::new()
        }
    };
    if shape == Shape::KailashBuilder {
        // WorkflowBuilder.from_dict turns every other top-level key into metadata.
        for (k, v) in top {
            if !matches!(k.as_str(), "nodes" | "connections" | "metadata") {
                spec.metadata.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    spec.nodes = load_nodes(nodes, shape, &mut errors);
    let mut cycles: BTreeMap<String, CycleSpec> = BTreeMap::new();
    if let Some(conns) = connections {
        let mut connections = Vec::new();
        match (conns.is_array(), conns.kind()) {
            (Some(true), _) => {
                let read = conns.for_each(|at, c| {
                    if let Element::Item(i) = at
                        && let Some(conn) = load_connection(i, c, shape, &mut cycles, &mut errors)
                    {
                        connections.push(conn);
                    }
                });
                if !read {
                    errors.push(err("connections", "cannot be read"));
                }
            }
            (_, "null") => {}
            (_, found) => errors.push(err("connections", format!("must be a list, found {found}"))),
        }
        connections.shrink_to_fit();
        spec.connections = connections;
    }
    if let Some(Value::Array(cs)) = top.get("cycles") {
        for (i, c) in cs.iter().enumerate() {
            match serde_json::from_value::<CycleSpec>(c.clone()) {
                Ok(c) => {
                    cycles.insert(c.id.clone(), c);
                }
                Err(e) => errors.push(err(format!("cycles[{i}]"), e.to_string())),
            }
        }
    }
    spec.cycles = cycles.into_values().collect();
    if errors.is_empty() {
        Ok((spec, shape))
    } else {
        Err(errors)
    }
}

/// Where in a Kora document a field failed, naming the node by id: `nodes[1].retry` becomes
/// `node 'store', field 'retry'`.
fn kora_location(doc: &Value, path: &str) -> String {
    if let Some(rest) = path.strip_prefix("nodes[")
        && let Some((index, field)) = rest.split_once(']')
        && let Ok(i) = index.parse::<usize>()
    {
        let id = doc["nodes"][i]["id"]
            .as_str()
            .map_or_else(|| format!("nodes[{i}]"), |id| format!("node '{id}'"));
        let field = field.trim_start_matches('.');
        return if field.is_empty() {
            id
        } else {
            format!("{id}, field '{field}'")
        };
    }
    if path.is_empty() || path == "." {
        "document".into()
    } else {
        format!("field '{path}'")
    }
}

fn detect(top: &Map, nodes: Part<'_>) -> Shape {
    match nodes.is_array() {
        Some(true) => {
            if nodes.any_has(&["type_name", "node_id"]) {
                Shape::KailashEnterprise
            } else {
                Shape::KailashBuilder
            }
        }
        Some(false) => {
            if nodes.any_has(&["node_type"]) {
                Shape::KailashToDict
            } else if nodes.any_has(&["container", "resources"])
                || top.get("version").and_then(Value::as_str) == Some("1.0")
            {
                Shape::KailashExport
            } else {
                Shape::KailashBuilder
            }
        }
        None => Shape::KailashBuilder,
    }
}

fn load_nodes(nodes: Part<'_>, shape: Shape, errors: &mut Vec<LoadError>) -> Vec<NodeSpec> {
    let mut out = Vec::new();
    if nodes.is_array().is_none() {
        errors.push(err(
            "nodes",
            format!("must be an object or a list, found {}", nodes.kind()),
        ));
        return out;
    }
    let read = nodes.for_each(|el, n| {
        let at = match el {
            Element::Entry(id) => format!("nodes.{id}"),
            Element::Item(i) => format!("nodes[{i}]"),
        };
        let Some(obj) = n.as_object() else {
            errors.push(err(
                at,
                format!("a node must be an object, found {}", kind(n)),
            ));
            return;
        };
        let id = match el {
            // An object of nodes: the key is the id.
            Element::Entry(id) => {
                if let Some(Value::String(inner)) = obj.get("node_id")
                    && inner != id
                {
                    errors.push(err(
                        &at,
                        format!("node_id {inner:?} differs from its key {id:?}"),
                    ));
                }
                id.to_string()
            }
            Element::Item(_) => {
                let id_keys: &[&str] = if shape == Shape::KailashEnterprise {
                    &["node_id", "id"]
                } else {
                    &["id", "node_id"]
                };
                let Some(id) = str_field(obj, id_keys) else {
                    errors.push(err(at, "missing `id`: every node needs a unique string id"));
                    return;
                };
                id
            }
        };
        if let Some(node) = load_node(id, obj, &at, errors) {
            out.push(node);
        }
    });
    if !read {
        errors.push(err("nodes", "cannot be read"));
    }
    out.shrink_to_fit();
    out
}

fn load_node(id: String, obj: &Map, at: &str, errors: &mut Vec<LoadError>) -> Option<NodeSpec> {
    if id.is_empty() {
        errors.push(err(at, "node id must not be empty"));
        return None;
    }
    let Some(node_type) = str_field(obj, &["node_type", "type", "type_name"]) else {
        errors.push(err(
            format!("node '{id}'"),
            "missing `type`: name the node type, e.g. \"PythonCodeNode\" (see `kora nodes`)",
        ));
        return None;
    };
    // WorkflowBuilder.from_dict: `parameters` takes priority over `config`.
    let mut config = Map::new();
    for key in ["config", "parameters"] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    config.insert(k.clone(), v.clone());
                }
            }
            Some(other) => errors.push(err(
                format!("node '{id}', field '{key}'"),
                format!("must be an object, found {}", kind(other)),
            )),
        }
    }
    // Kora's extension to every shape: a node's retry policy.
    let retry = match obj.get("retry") {
        None | Some(Value::Null) => None,
        Some(v) => match serde_json::from_value::<crate::spec::RetryPolicy>(v.clone()) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(err(format!("node '{id}', field 'retry'"), e.to_string()));
                None
            }
        },
    };
    let timeout_secs = match obj.get("timeout_secs") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(t) => Some(t),
            None => {
                errors.push(err(
                    format!("node '{id}', field 'timeout_secs'"),
                    format!("must be a number of seconds, found {}", kind(v)),
                ));
                None
            }
        },
    };
    Some(NodeSpec {
        id,
        node_type,
        config,
        retry,
        timeout_secs,
    })
}

fn load_connection(
    i: usize,
    c: &Value,
    shape: Shape,
    cycles: &mut BTreeMap<String, CycleSpec>,
    errors: &mut Vec<LoadError>,
) -> Option<Connection> {
    let at = format!("connections[{i}]");
    let Some(obj) = c.as_object() else {
        errors.push(err(
            at,
            format!("a connection must be an object, found {}", kind(c)),
        ));
        return None;
    };
    // Each form has its own port defaults, as in Kailash.
    let (source, target, def_out, def_in) =
        if obj.contains_key("source_node") || obj.contains_key("target_node") {
            (
                str_field(obj, &["source_node"]),
                str_field(obj, &["target_node"]),
                None,
                None,
            )
        } else if obj.contains_key("from_node") || obj.contains_key("to_node") {
            (
                str_field(obj, &["from_node"]),
                str_field(obj, &["to_node"]),
                Some("output"),
                Some("input"),
            )
        } else if obj.contains_key("source") || obj.contains_key("target") {
            (
                str_field(obj, &["source"]),
                str_field(obj, &["target"]),
                None,
                None,
            )
        } else {
            let def_out = if shape == Shape::KailashExport || shape == Shape::KailashBuilder {
                "result"
            } else {
                "output"
            };
            (
                str_field(obj, &["from"]),
                str_field(obj, &["to"]),
                Some(def_out),
                Some("input"),
            )
        };
    let Some(source) = source else {
        errors.push(err(
            at,
            "missing the source node (`source_node`, `from_node` or `from`)",
        ));
        return None;
    };
    let Some(target) = target else {
        errors.push(err(
            at,
            "missing the target node (`target_node`, `to_node` or `to`)",
        ));
        return None;
    };
    let output =
        str_field(obj, &["source_output", "from_output", "output"]).or(def_out.map(String::from));
    let input = str_field(obj, &["target_input", "to_input", "input"]).or(def_in.map(String::from));
    let (Some(output), Some(input)) = (output, input) else {
        errors.push(err(
            at,
            format!(
                "connection {source} -> {target} must name the source output and the target input"
            ),
        ));
        return None;
    };
    let cycle = match obj.get("cycle") {
        Some(Value::Bool(true)) => {
            let id =
                str_field(obj, &["cycle_id"]).unwrap_or_else(|| format!("cycle_{source}_{target}"));
            let entry = cycles.entry(id.clone()).or_insert_with(|| CycleSpec {
                id: id.clone(),
                max_iterations: None,
                converge_when: None,
                timeout_secs: None,
            });
            if let Some(n) = obj.get("max_iterations").and_then(Value::as_u64) {
                entry.max_iterations = Some(u32::try_from(n).unwrap_or(u32::MAX));
            }
            if let Some(e) = str_field(obj, &["convergence_check", "converge_when"]) {
                entry.converge_when = Some(e);
            }
            if let Some(t) = obj.get("timeout").and_then(Value::as_f64) {
                entry.timeout_secs = Some(t);
            }
            Some(id)
        }
        Some(Value::String(id)) => Some(id.clone()),
        _ => None,
    };
    Some(Connection {
        source,
        output,
        target,
        input,
        cycle,
    })
}

fn str_field(obj: &Map, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str).map(String::from))
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
