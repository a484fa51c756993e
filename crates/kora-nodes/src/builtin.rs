//! The built-in node types of this release. Names, parameters and outputs follow Kailash.

use kora_model::error_type;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use kora_model::catalog::{NodeTypeInfo, ParamInfo, ParamKind};
use kora_model::value::{py_cmp, py_contains, py_eq, py_str};
use kora_model::{Map, Value};

use crate::python::PythonPool;
use crate::{Node, NodeContext, NodeError, NodesConfig, confine};

/// The built-in nodes, sharing `pool` (PythonCodeNode's interpreters).
pub(crate) fn all(cfg: &NodesConfig, pool: &Arc<PythonPool>) -> Vec<Arc<dyn Node>> {
    let pool = Arc::clone(pool);
    vec![
        Arc::new(PythonCode::new(pool)),
        Arc::new(Switch::new()),
        Arc::new(Merge::new()),
        Arc::new(CsvReader::new(cfg.data_root.clone())),
        Arc::new(JsonReader::new(cfg.data_root.clone())),
        Arc::new(NoOp::new()),
        Arc::new(Fail::new()),
    ]
}

pub(crate) fn info(
    name: &'static str,
    description: &'static str,
    params: Vec<ParamInfo>,
    outputs: Vec<&'static str>,
) -> NodeTypeInfo {
    NodeTypeInfo {
        name,
        description,
        params,
        outputs,
        open_inputs: false,
        open_outputs: false,
        stop_on_error: false,
        is_switch: false,
        required_one_of: Vec::new(),
    }
}

fn out1(k: &str, v: Value) -> Map {
    let mut m = Map::new();
    m.insert(k.into(), v);
    m
}

pub(crate) fn input_error(node: &str, message: impl Into<String>) -> NodeError {
    NodeError::permanent(error_type::VALUE, format!("{node}: {}", message.into()))
}

// ---------------------------------------------------------------------------------------------

pub(crate) struct PythonCode {
    info: NodeTypeInfo,
    pool: Arc<PythonPool>,
}

impl PythonCode {
    fn new(pool: Arc<PythonPool>) -> Self {
        let mut i = info(
            "PythonCodeNode",
            "Runs Python code: inputs become variables; the `result` variable is the output (else every public local).",
            vec![
                ParamInfo::optional("code", "Python source: inputs are its variables, `result` its output")
                    .kind(ParamKind::String),
                ParamInfo::optional("function", "Python source defining a function, called with the inputs it accepts; its return value is `result`")
                    .kind(ParamKind::String),
                ParamInfo::optional("function_name", "which function, when the source defines several")
                    .kind(ParamKind::String),
                ParamInfo::optional("class_code", "Python source defining a class, instantiated once per interpreter; its method is called like a function")
                    .kind(ParamKind::String),
                ParamInfo::optional("class_name", "which class, when the source defines several")
                    .kind(ParamKind::String),
                ParamInfo::optional("method", "the class's method to call").kind(ParamKind::String).default("process (else execute, run, __call__)"),
                ParamInfo::optional("timeout", "seconds before the interpreter is killed")
                    .kind(ParamKind::Seconds)
                    .default("60"),
            ],
            vec!["result"],
        );
        i.open_inputs = true;
        i.open_outputs = true;
        i.required_one_of = vec![&["code", "function", "class_code"]];
        PythonCode { info: i, pool }
    }
}

#[async_trait]
impl Node for PythonCode {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "PythonCodeNode";
        let text = |k: &str| -> Result<Option<String>, NodeError> {
            match input.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(c)) => Ok(Some(c.clone())),
                Some(other) => Err(input_error(
                    NODE,
                    format!("'{k}' must be a string of Python source, found {other}"),
                )),
            }
        };
        // 0 (or none) is the pool's default limit.
        let timeout =
            crate::params::seconds(NODE, &input, "timeout", None)?.filter(|t| !t.is_zero());
        let (code, function, class) = (text("code")?, text("function")?, text("class_code")?);
        let (mode, source) = match (code, function, class) {
            (Some(c), None, None) => {
                return self.pool.execute(&ctx.node_id, &c, &input, timeout).await;
            }
            (None, Some(f), None) => ("function", f),
            (None, None, Some(c)) => ("class", c),
            (None, None, None) => {
                return Err(input_error(
                    NODE,
                    "give one of 'code', 'function' or 'class_code'",
                ));
            }
            _ => {
                return Err(input_error(
                    NODE,
                    "give only one of 'code', 'function' and 'class_code'",
                ));
            }
        };
        // The function gets the workflow's inputs, not the node's own settings.
        let mut args = input.clone();
        for k in [
            "function",
            "function_name",
            "class_code",
            "class_name",
            "method",
            "timeout",
        ] {
            args.remove(k);
        }
        let entry = input
            .get(if mode == "class" {
                "class_name"
            } else {
                "function_name"
            })
            .and_then(Value::as_str);
        let method = input.get("method").and_then(Value::as_str);
        let target = crate::python::Callable {
            mode,
            source: &source,
            entry,
            method,
        };
        self.pool.call(&ctx.node_id, &target, &args, timeout).await
    }
}

// ---------------------------------------------------------------------------------------------

pub(crate) struct Switch {
    info: NodeTypeInfo,
}

impl Switch {
    fn new() -> Self {
        let mut i = info(
            "SwitchNode",
            "Routes its input to true_output/false_output, or to case_<value> outputs; untaken outputs are None and skip their branch.",
            vec![
                ParamInfo::required("input_data", "the data to route").with_aliases(&["data"]),
                ParamInfo::optional(
                    "condition_field",
                    "field of a dict input to test (a list of dicts is grouped by it)",
                )
                .kind(ParamKind::String),
                ParamInfo::optional(
                    "operator",
                    "how the input is compared with value (another never matches)",
                )
                .kind(ParamKind::Expect(&[
                    "==",
                    "!=",
                    ">",
                    "<",
                    ">=",
                    "<=",
                    "in",
                    "contains",
                    "is_null",
                    "is_not_null",
                ]))
                .default("=="),
                ParamInfo::optional("value", "value compared against in boolean mode"),
                ParamInfo::optional("cases", "list of case values: multi-case mode")
                    .kind(ParamKind::List),
                ParamInfo::optional("case_prefix", "prefix of case outputs")
                    .kind(ParamKind::String)
                    .default("case_"),
                ParamInfo::optional(
                    "default_field",
                    "output that always gets the input in multi-case mode",
                )
                .kind(ParamKind::String)
                .default("default"),
                ParamInfo::optional("pass_condition_result", "include condition_result")
                    .kind(ParamKind::Bool)
                    .default("true"),
                ParamInfo::optional("break_after_first_match", "stop at the first matching case")
                    .kind(ParamKind::Bool)
                    .default("true"),
            ],
            vec!["true_output", "false_output", "condition_result", "default"],
        );
        i.open_outputs = true;
        i.is_switch = true;
        Switch { info: i }
    }
}

/// Kailash's `_evaluate_condition`: a `None` input matches only `==`, `!=`, `is_null` and
/// `is_not_null`; `in` and `contains` are false when either side is `None`; an unknown
/// operator, or a comparison Python would refuse, is false.
fn evaluate(check: &Value, op: &str, cmp: &Value) -> bool {
    use std::cmp::Ordering::*;
    if check.is_null() && !matches!(op, "==" | "!=" | "is_null" | "is_not_null") {
        return false;
    }
    if cmp.is_null() && matches!(op, "in" | "contains") {
        return false;
    }
    match op {
        "==" => py_eq(check, cmp),
        "!=" => !py_eq(check, cmp),
        ">" => py_cmp(check, cmp) == Some(Greater),
        "<" => py_cmp(check, cmp) == Some(Less),
        ">=" => matches!(py_cmp(check, cmp), Some(Greater | Equal)),
        "<=" => matches!(py_cmp(check, cmp), Some(Less | Equal)),
        "in" => py_contains(cmp, check).unwrap_or(false),
        "contains" => py_contains(check, cmp).unwrap_or(false),
        "is_null" => check.is_null(),
        "is_not_null" => !check.is_null(),
        _ => false,
    }
}

fn sanitize(case: &Value) -> String {
    py_str(case).replace([' ', '-', '.', ':', '/'], "_")
}

#[async_trait]
impl Node for Switch {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        let data = input
            .get("input_data")
            .or_else(|| input.get("data"))
            .cloned()
            .ok_or_else(|| {
                input_error(
                    "SwitchNode",
                    "required parameter 'input_data' not provided at execution time",
                )
            })?;
        let field = input
            .get("condition_field")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        // Anything but a string never matches, like an unknown operator.
        let op = match input.get("operator") {
            None | Some(Value::Null) => "==",
            Some(Value::String(s)) => s.as_str(),
            Some(_) => "",
        };
        let value = input.get("value").cloned().unwrap_or(Value::Null);
        let cases: Vec<Value> = match input.get("cases") {
            Some(Value::Array(c)) => c.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return Err(input_error("SwitchNode", "'cases' must be a list")),
        };
        let prefix = input
            .get("case_prefix")
            .and_then(Value::as_str)
            .unwrap_or("case_");
        let default_field = input
            .get("default_field")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let pass_result = input
            .get("pass_condition_result")
            .is_none_or(|v| v.as_bool() != Some(false));
        let first_only = input
            .get("break_after_first_match")
            .is_none_or(|v| v.as_bool() != Some(false));

        let check = match (field, &data) {
            (Some(f), Value::Object(o)) => o.get(f).cloned().unwrap_or(Value::Null),
            (Some(f), Value::Array(items)) if items.first().is_some_and(Value::is_object) => {
                // A list of dicts is grouped by the field (Kailash's list routing).
                let mut groups: Vec<(Value, Vec<Value>)> = Vec::new();
                for item in items {
                    let k = item.get(f).cloned().unwrap_or(Value::Null);
                    match groups
                        .iter_mut()
                        .find(|(g, _)| py_eq(g, &k) && g.is_string() == k.is_string())
                    {
                        Some((_, v)) => v.push(item.clone()),
                        None => groups.push((k, vec![item.clone()])),
                    }
                }
                let mut out = Map::new();
                out.insert(
                    default_field.into(),
                    Value::Array(groups.iter().flat_map(|(_, v)| v.clone()).collect()),
                );
                let mut matched = Vec::new();
                for case in &cases {
                    let group = groups
                        .iter()
                        .find(|(g, _)| py_eq(g, case))
                        .map(|(_, v)| v.clone());
                    if group.is_some() {
                        matched.push(case.clone());
                    }
                    out.insert(
                        format!("{prefix}{}", sanitize(case)),
                        Value::Array(group.unwrap_or_default()),
                    );
                }
                if pass_result {
                    out.insert("condition_result".into(), Value::Array(matched));
                }
                return Ok(out);
            }
            _ => data.clone(),
        };
        let mut out = Map::new();
        if cases.is_empty() {
            let r = evaluate(&check, op, &value);
            out.insert(
                "true_output".into(),
                if r { data.clone() } else { Value::Null },
            );
            out.insert("false_output".into(), if r { Value::Null } else { data });
            if pass_result {
                out.insert("condition_result".into(), Value::Bool(r));
            }
        } else {
            for case in &cases {
                out.insert(format!("{prefix}{}", sanitize(case)), Value::Null);
            }
            out.insert(default_field.into(), data.clone());
            let mut matched = Value::Null;
            for case in &cases {
                if evaluate(&check, op, case) {
                    out.insert(format!("{prefix}{}", sanitize(case)), data.clone());
                    matched = case.clone();
                    if first_only {
                        break;
                    }
                }
            }
            if pass_result {
                out.insert("condition_result".into(), matched);
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------

pub(crate) struct Merge {
    info: NodeTypeInfo,
}

impl Merge {
    fn new() -> Self {
        let mut params: Vec<ParamInfo> = ["data1", "data2", "data3", "data4", "data5"]
            .into_iter()
            .map(|n| ParamInfo::optional(n, "a data source"))
            .collect();
        params.push(
            ParamInfo::optional("merge_type", "how the inputs are combined")
                .kind(ParamKind::OneOf(&["concat", "zip", "merge_dict"]))
                .default("concat"),
        );
        params.push(
            ParamInfo::optional("key", "key field joining lists of dicts in merge_dict")
                .kind(ParamKind::String),
        );
        params.push(
            ParamInfo::optional("skip_none", "ignore None inputs")
                .kind(ParamKind::Bool)
                .default("true"),
        );
        Merge {
            info: info(
                "MergeNode",
                "Merges up to five inputs by concatenation, zip or dict merge.",
                params,
                vec!["merged_data"],
            ),
        }
    }
}

#[async_trait]
impl Node for Merge {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        let skip_none = input
            .get("skip_none")
            .is_none_or(|v| v.as_bool() != Some(false));
        let slots: Vec<Option<&Value>> = (1..=5).map(|i| input.get(&format!("data{i}"))).collect();
        if skip_none && slots.iter().all(|s| s.is_none_or(Value::is_null)) {
            return Ok(out1("merged_data", Value::Null));
        }
        if slots[0].is_none() {
            return Err(input_error(
                "MergeNode",
                "required parameter 'data1' not provided at execution time",
            ));
        }
        let data: Vec<Value> = slots
            .into_iter()
            .flatten()
            .filter(|v| !v.is_null())
            .cloned()
            .collect();
        if data.is_empty() {
            return Ok(out1("merged_data", Value::Null));
        }
        if data.len() == 1 {
            return Ok(out1(
                "merged_data",
                data.into_iter().next().unwrap_or(Value::Null),
            ));
        }
        let merge_type = input
            .get("merge_type")
            .and_then(Value::as_str)
            .unwrap_or("concat");
        let merged = match merge_type {
            "concat" => {
                if data.iter().all(Value::is_array) {
                    Value::Array(
                        data.into_iter()
                            .flat_map(|d| d.as_array().cloned().unwrap_or_default())
                            .collect(),
                    )
                } else {
                    Value::Array(data)
                }
            }
            "zip" => {
                let lists: Vec<Vec<Value>> = data
                    .into_iter()
                    .map(|d| match d {
                        Value::Array(a) => a,
                        other => vec![other],
                    })
                    .collect();
                let n = lists.iter().map(Vec::len).min().unwrap_or(0);
                Value::Array(
                    (0..n)
                        .map(|i| Value::Array(lists.iter().map(|l| l[i].clone()).collect()))
                        .collect(),
                )
            }
            "merge_dict" => {
                if data.iter().all(Value::is_object) {
                    let mut m = Map::new();
                    for d in data {
                        if let Value::Object(o) = d {
                            m.extend(o);
                        }
                    }
                    Value::Object(m)
                } else if let (true, Some(key)) = (
                    data.iter().all(Value::is_array),
                    input.get("key").and_then(Value::as_str),
                ) {
                    let mut result: Vec<Value> = data[0].as_array().cloned().unwrap_or_default();
                    for other in &data[1..] {
                        let other = other.as_array().cloned().unwrap_or_default();
                        for item in result.iter_mut() {
                            let Some(k) = item.get(key).cloned() else {
                                continue;
                            };
                            if let Some(Value::Object(o)) = other
                                .iter()
                                .rev()
                                .find(|x| x.get(key).is_some_and(|v| py_eq(v, &k)))
                                && let Value::Object(m) = item
                            {
                                m.extend(o.clone());
                            }
                        }
                        let existing: Vec<Value> =
                            result.iter().filter_map(|x| x.get(key).cloned()).collect();
                        for item in other {
                            if let Some(k) = item.get(key)
                                && item.is_object()
                                && !existing.iter().any(|e| py_eq(e, k))
                            {
                                result.push(item);
                            }
                        }
                    }
                    Value::Array(result)
                } else {
                    return Err(input_error(
                        "MergeNode",
                        "merge_dict requires dict inputs or lists of dicts with a key",
                    ));
                }
            }
            other => {
                return Err(input_error(
                    "MergeNode",
                    format!("unknown merge type {other:?}; use concat, zip or merge_dict"),
                ));
            }
        };
        Ok(out1("merged_data", merged))
    }
}

// ---------------------------------------------------------------------------------------------

fn file_path(node: &str, input: &Map) -> Result<String, NodeError> {
    match input.get("file_path") {
        Some(Value::String(p)) if !p.is_empty() => Ok(p.clone()),
        _ => Err(input_error(
            node,
            "required parameter 'file_path' must be a non-empty string",
        )),
    }
}

pub(crate) async fn read(root: &std::path::Path, path: &str) -> Result<String, NodeError> {
    let real = confine(root, path)?;
    tokio::fs::read_to_string(&real).await.map_err(|e| {
        let msg = format!("cannot read {}: {e}", real.display());
        // A missing or unreadable file stays so on a retry; an interrupted read may not.
        match e.kind() {
            std::io::ErrorKind::NotFound
            | std::io::ErrorKind::PermissionDenied
            | std::io::ErrorKind::IsADirectory
            | std::io::ErrorKind::InvalidData => NodeError::permanent("FileNotFoundError", msg),
            _ => NodeError::retryable("IOError", msg),
        }
    })
}

pub(crate) struct CsvReader {
    info: NodeTypeInfo,
    root: PathBuf,
}

impl CsvReader {
    fn new(root: PathBuf) -> Self {
        CsvReader {
            info: info(
                "CSVReaderNode",
                "Reads a CSV file below the data root into a list of row dicts (values as strings).",
                vec![
                    ParamInfo::required("file_path", "path relative to the data root")
                        .kind(ParamKind::String),
                    ParamInfo::optional("headers", "first row is a header; false gives lists")
                        .kind(ParamKind::Bool)
                        .default("true"),
                    ParamInfo::optional("delimiter", "field separator")
                        .kind(ParamKind::String)
                        .default(","),
                    ParamInfo::optional(
                        "index_column",
                        "also output data_indexed keyed by this column",
                    )
                    .kind(ParamKind::String),
                ],
                vec!["data", "data_indexed"],
            ),
            root,
        }
    }
}

#[async_trait]
impl Node for CsvReader {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        let path = file_path("CSVReaderNode", &input)?;
        let text = read(&self.root, &path).await?;
        let headers = input
            .get("headers")
            .is_none_or(|v| v.as_bool() != Some(false));
        let delim = match input.get("delimiter").and_then(Value::as_str) {
            None => b',',
            Some(d) if d.len() == 1 => d.as_bytes()[0],
            Some(d) => {
                return Err(input_error(
                    "CSVReaderNode",
                    format!("delimiter must be one character, got {d:?}"),
                ));
            }
        };
        let text = crate::data::universal_newlines(text);
        let records = python_csv_rows(&text, char::from(delim));
        let index_column = input.get("index_column").and_then(Value::as_str);
        let mut rows = Vec::with_capacity(records.len());
        let mut indexed = Map::new();
        if headers {
            // Python's csv.reader under Kailash: each row is dict(zip(header, row)), so a
            // short row has fewer keys and extra fields are dropped; a row reaching the index
            // column is indexed by it.
            let mut records = records.into_iter();
            let header = records.next().unwrap_or_default();
            let index_pos = match index_column {
                Some(col) => Some(header.iter().position(|h| h == col).ok_or_else(|| {
                    let names: Vec<String> = header
                        .iter()
                        .map(|h| kora_model::value::py_repr(&Value::String(h.clone())))
                        .collect();
                    NodeError::permanent(
                        "KeyError",
                        format!(
                            "CSVReaderNode: Index column '{col}' not found in headers: [{}]",
                            names.join(", ")
                        ),
                    )
                })?),
                None => None,
            };
            for rec in records {
                let row: Map = header
                    .iter()
                    .zip(rec.iter())
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                if let Some(i) = index_pos
                    && let Some(key) = rec.get(i)
                {
                    indexed.insert(key.clone(), Value::Object(row.clone()));
                }
                rows.push(Value::Object(row));
            }
        } else {
            rows.extend(
                records
                    .into_iter()
                    .map(|r| Value::Array(r.into_iter().map(Value::String).collect())),
            );
        }
        let mut out = Map::new();
        if index_column.is_some() {
            out.insert("data_indexed".into(), Value::Object(indexed));
        }
        out.insert("data".into(), Value::Array(rows));
        Ok(out)
    }
}

/// The rows Python's `csv.reader` (the default `excel` dialect, not strict) gives for
/// `text` whose newlines are already `\n`: the state machine of CPython's `_csv.c`. Unlike
/// the csv crate it keeps a blank line as an empty row, and a quote inside an unquoted field,
/// or text after a closing quote, as literal text.
fn python_csv_rows(text: &str, delim: char) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum St {
        StartRecord,
        StartField,
        InField,
        InQuoted,
        QuoteInQuoted,
    }
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut st = St::StartRecord;
    for c in text.chars() {
        if st == St::StartRecord {
            if c == '\n' {
                rows.push(Vec::new());
                continue;
            }
            st = St::StartField;
        }
        match st {
            St::StartField | St::InField if c == '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                st = St::StartRecord;
            }
            St::StartField if c == '"' => st = St::InQuoted,
            St::StartField | St::InField if c == delim => {
                row.push(std::mem::take(&mut field));
                st = St::StartField;
            }
            St::StartField | St::InField => {
                field.push(c);
                st = St::InField;
            }
            St::InQuoted if c == '"' => st = St::QuoteInQuoted,
            St::InQuoted => field.push(c),
            St::QuoteInQuoted if c == '"' => {
                field.push('"');
                st = St::InQuoted;
            }
            St::QuoteInQuoted if c == delim => {
                row.push(std::mem::take(&mut field));
                st = St::StartField;
            }
            St::QuoteInQuoted if c == '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                st = St::StartRecord;
            }
            St::QuoteInQuoted => {
                field.push(c);
                st = St::InField;
            }
            St::StartRecord => {}
        }
    }
    if st != St::StartRecord {
        row.push(field);
        rows.push(row);
    }
    rows
}

pub(crate) struct JsonReader {
    info: NodeTypeInfo,
    root: PathBuf,
}

impl JsonReader {
    fn new(root: PathBuf) -> Self {
        JsonReader {
            info: info(
                "JSONReaderNode",
                "Reads a JSON file below the data root.",
                vec![
                    ParamInfo::required("file_path", "path relative to the data root")
                        .kind(ParamKind::String),
                ],
                vec!["data"],
            ),
            root,
        }
    }
}

#[async_trait]
impl Node for JsonReader {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        let path = file_path("JSONReaderNode", &input)?;
        let text = read(&self.root, &path).await?;
        let data: Value = serde_json::from_str(&text)
            .map_err(|e| input_error("JSONReaderNode", format!("{path} is not valid JSON: {e}")))?;
        Ok(out1("data", data))
    }
}

// ---------------------------------------------------------------------------------------------

pub(crate) struct NoOp {
    info: NodeTypeInfo,
}

impl NoOp {
    fn new() -> Self {
        NoOp {
            info: info(
                "NoOpNode",
                "Passes its `data` input through (Kora; for tests and benchmarks).",
                vec![ParamInfo::optional("data", "any value")],
                vec!["data"],
            ),
        }
    }
}

#[async_trait]
impl Node for NoOp {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, mut input: Map) -> Result<Map, NodeError> {
        Ok(out1("data", input.remove("data").unwrap_or(Value::Null)))
    }
}

pub(crate) struct Fail {
    info: NodeTypeInfo,
}

impl Fail {
    fn new() -> Self {
        Fail {
            info: info(
                "FailNode",
                "Fails on purpose (Kora; for tests): until attempt `succeed_on_attempt`, or always.",
                vec![
                    ParamInfo::optional("message", "the error message").kind(ParamKind::String),
                    ParamInfo::optional("error_type", "the error type")
                        .kind(ParamKind::String)
                        .default("RuntimeError"),
                    ParamInfo::optional("retryable", "whether the failure is retryable")
                        .kind(ParamKind::Bool)
                        .default("false"),
                    ParamInfo::optional("succeed_on_attempt", "first attempt number that succeeds")
                        .kind(ParamKind::Integer),
                    ParamInfo::optional("data", "passed through on success"),
                ],
                vec!["data"],
            ),
        }
    }
}

#[async_trait]
impl Node for Fail {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, ctx: &NodeContext, mut input: Map) -> Result<Map, NodeError> {
        if let Some(n) = input.get("succeed_on_attempt").and_then(Value::as_u64)
            && u64::from(ctx.attempt) >= n
        {
            return Ok(out1("data", input.remove("data").unwrap_or(Value::Null)));
        }
        let msg = input
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("FailNode failed as configured")
            .to_string();
        let ty = input
            .get("error_type")
            .and_then(Value::as_str)
            .unwrap_or(error_type::RUNTIME)
            .to_string();
        if input.get("retryable").and_then(Value::as_bool) == Some(true) {
            Err(NodeError::retryable(ty, msg))
        } else {
            Err(NodeError::permanent(ty, msg))
        }
    }
}

#[cfg(test)]
mod csv_tests {
    use super::python_csv_rows;

    /// Each text and the rows CPython 3.11's `csv.reader` gave for it.
    #[test]
    fn rows_match_python() {
        let cases: &[(&str, &[&[&str]])] = &[
            ("a,b\n", &[&["a", "b"]]),
            ("\"ab\"c,d\n", &[&["abc", "d"]]),
            ("a\"b,c\n", &[&["a\"b", "c"]]),
            ("\"a,b\",\"x\"\"y\"\n", &[&["a,b", "x\"y"]]),
            (",,\n", &[&["", "", ""]]),
            ("\n\nx\n", &[&[], &[], &["x"]]),
            ("a,\"b\nc\",d", &[&["a", "b\nc", "d"]]),
            ("\"unterminated,x\n", &[&["unterminated,x\n"]]),
            ("x,y\n\n", &[&["x", "y"], &[]]),
            ("\"\"\n", &[&[""]]),
            ("a,b,\n", &[&["a", "b", ""]]),
        ];
        for (text, want) in cases {
            let want: Vec<Vec<String>> = want
                .iter()
                .map(|r| r.iter().map(|s| s.to_string()).collect())
                .collect();
            assert_eq!(python_csv_rows(text, ','), want, "{text:?}");
        }
    }
}
