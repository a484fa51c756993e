//! File nodes beyond the readers in `builtin`: writers (CSV, JSON, text), TextReaderNode and
//! DirectoryReaderNode. Every path is confined to the data root; writes go to a temporary file
//! renamed into place, so a retried or crashed write never leaves half a file.

use kora_model::error_type;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use kora_model::catalog::{NodeTypeInfo, ParamInfo, ParamKind};
use kora_model::value::{py_float, py_repr, py_str, truthy};
use kora_model::{Map, Value};

use crate::builtin::{info, input_error};
use crate::{Node, NodeContext, NodeError, confine};

pub(crate) fn all(root: &Path) -> Vec<Arc<dyn Node>> {
    let root = root.to_path_buf();
    vec![
        Arc::new(CsvWriter::new(root.clone())),
        Arc::new(JsonWriter::new(root.clone())),
        Arc::new(TextReader::new(root.clone())),
        Arc::new(TextWriter::new(root.clone())),
        Arc::new(DirectoryReader::new(root)),
    ]
}

fn path_param(node: &str, input: &Map, name: &str) -> Result<String, NodeError> {
    match input.get(name) {
        Some(Value::String(p)) if !p.is_empty() => Ok(p.clone()),
        _ => Err(input_error(
            node,
            format!("required parameter '{name}' must be a non-empty string"),
        )),
    }
}

/// Where a file that may not exist yet is written below `root`: `..` may not climb out, and a
/// parent that is a symlink out of the root is refused. Missing parent folders are created.
pub(crate) async fn confine_new(root: &Path, path: &str) -> Result<PathBuf, NodeError> {
    let outside = || {
        NodeError::permanent(
            error_type::PERMISSION,
            format!(
                "path {path:?} is outside the data root {}; write below it or change --data-root",
                root.display()
            ),
        )
    };
    let root = root.canonicalize().map_err(|e| {
        NodeError::permanent(
            error_type::CONFIG,
            format!("data root {} is not usable: {e}", root.display()),
        )
    })?;
    let rel = Path::new(path);
    let mut depth = 0i32;
    for c in rel.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => depth -= 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                if !rel.starts_with(&root) {
                    return Err(outside());
                }
                depth = 1;
            }
        }
        if depth < 0 {
            return Err(outside());
        }
    }
    let joined = root.join(rel);
    let (Some(parent), Some(name)) = (joined.parent(), joined.file_name()) else {
        return Err(input_error("file node", format!("{path:?} names no file")));
    };
    tokio::fs::create_dir_all(parent).await.map_err(|e| {
        NodeError::permanent(
            error_type::PERMISSION,
            format!("cannot create folder {}: {e}", parent.display()),
        )
    })?;
    let real_parent = parent
        .canonicalize()
        .map_err(|e| NodeError::permanent("IOError", format!("{}: {e}", parent.display())))?;
    if !real_parent.starts_with(&root) {
        return Err(outside());
    }
    let target = real_parent.join(name);
    if let Ok(real) = target.canonicalize()
        && !real.starts_with(&root)
    {
        return Err(outside());
    }
    Ok(target)
}

/// Writes `bytes` to `target` through a temporary file renamed into place; appends instead
/// when `append`.
async fn write_file(target: &Path, bytes: &[u8], append: bool) -> Result<(), NodeError> {
    let io = |e: std::io::Error| {
        let msg = format!("cannot write {}: {e}", target.display());
        match e.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::IsADirectory => {
                NodeError::permanent(error_type::PERMISSION, msg)
            }
            _ => NodeError::retryable("IOError", msg),
        }
    };
    if append {
        use tokio::io::AsyncWriteExt;
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(target)
            .await
            .map_err(io)?;
        f.write_all(bytes).await.map_err(io)?;
        return f.flush().await.map_err(io);
    }
    let tmp = target.with_file_name(format!(
        ".{}.kora-tmp-{}",
        target
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    tokio::fs::write(&tmp, bytes).await.map_err(io)?;
    tokio::fs::rename(&tmp, target).await.map_err(io)
}

fn out(pairs: Vec<(&str, Value)>) -> Map {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

// ---------------------------------------------------------------------------------------------

pub(crate) struct CsvWriter {
    info: NodeTypeInfo,
    root: PathBuf,
}

impl CsvWriter {
    fn new(root: PathBuf) -> Self {
        CsvWriter {
            info: info(
                "CSVWriterNode",
                "Writes rows (a list of dicts, or of lists) to a CSV file below the data root.",
                vec![
                    ParamInfo::required("file_path", "path relative to the data root")
                        .kind(ParamKind::String),
                    ParamInfo::required(
                        "data",
                        "the rows: dicts (columns from headers or the first row's keys) or lists",
                    )
                    .kind(ParamKind::List),
                    ParamInfo::optional("headers", "column names and order for dict rows")
                        .kind(ParamKind::List),
                    ParamInfo::optional("delimiter", "field separator")
                        .kind(ParamKind::String)
                        .default(","),
                ],
                vec!["rows_written", "file_path"],
            ),
            root,
        }
    }
}

#[async_trait]
impl Node for CsvWriter {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "CSVWriterNode";
        // Kailash: empty data writes nothing and returns only the count (no file, no path).
        if let Some(d) = input.get("data")
            && !d.is_null()
            && !truthy(d)
        {
            return Ok(out(vec![("rows_written", Value::from(0))]));
        }
        let path = path_param(NODE, &input, "file_path")?;
        let Some(Value::Array(rows)) = input.get("data") else {
            return Err(input_error(
                NODE,
                "required parameter 'data' must be a list of rows",
            ));
        };
        let delim = match input.get("delimiter").and_then(Value::as_str) {
            None => b',',
            Some(d) if d.len() == 1 => d.as_bytes()[0],
            Some(d) => {
                return Err(input_error(
                    NODE,
                    format!("delimiter must be one character, got {d:?}"),
                ));
            }
        };
        let mut headers: Option<Vec<String>> = match input.get("headers") {
            Some(Value::Array(h)) => Some(h.iter().map(py_str).collect()),
            _ => None,
        };
        if headers.is_none()
            && let Some(Value::Object(first)) = rows.first()
        {
            headers = Some(first.keys().cloned().collect());
        }
        // Python's csv module: rows end with \r\n and may differ in length.
        let mut w = csv::WriterBuilder::new()
            .delimiter(delim)
            .terminator(csv::Terminator::CRLF)
            .flexible(true)
            .from_writer(Vec::new());
        let bad = |e: csv::Error| input_error(NODE, format!("{path}: {e}"));
        if let Some(h) = &headers {
            w.write_record(h).map_err(bad)?;
        }
        let cell = |v: Option<&Value>| match v {
            None | Some(Value::Null) => String::new(),
            Some(v) => py_str(v),
        };
        for (i, row) in rows.iter().enumerate() {
            let rec: Vec<String> = match (row, &headers) {
                (Value::Object(m), Some(h)) => {
                    // csv.DictWriter refuses a key that is not a column.
                    let extra: Vec<String> = m
                        .keys()
                        .filter(|k| !h.contains(k))
                        .map(|k| py_repr(&Value::String(k.clone())))
                        .collect();
                    if !extra.is_empty() {
                        return Err(input_error(
                            NODE,
                            format!(
                                "data[{i}]: dict contains fields not in fieldnames: {}",
                                extra.join(", ")
                            ),
                        ));
                    }
                    h.iter().map(|k| cell(m.get(k))).collect()
                }
                (Value::Array(a), _) => a.iter().map(|v| cell(Some(v))).collect(),
                (other, _) => {
                    return Err(input_error(
                        NODE,
                        format!("data[{i}] must be a dict or a list, found {other}"),
                    ));
                }
            };
            w.write_record(&rec).map_err(bad)?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| input_error(NODE, e.to_string()))?;
        let target = confine_new(&self.root, &path).await?;
        write_file(&target, &bytes, false).await?;
        Ok(out(vec![
            ("rows_written", Value::from(rows.len())),
            ("file_path", Value::String(path)),
        ]))
    }
}

pub(crate) struct JsonWriter {
    info: NodeTypeInfo,
    root: PathBuf,
}

impl JsonWriter {
    fn new(root: PathBuf) -> Self {
        JsonWriter {
            info: info(
                "JSONWriterNode",
                "Writes data as JSON to a file below the data root.",
                vec![
                    ParamInfo::required("file_path", "path relative to the data root")
                        .kind(ParamKind::String),
                    ParamInfo::required("data", "any JSON value"),
                    ParamInfo::optional("indent", "spaces a level; 0 puts each item on its own line, unindented (Python's json.dump)")
                        .kind(ParamKind::Integer)
                        .default("2"),
                ],
                vec!["file_path"],
            ),
            root,
        }
    }
}

#[async_trait]
impl Node for JsonWriter {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "JSONWriterNode";
        let path = path_param(NODE, &input, "file_path")?;
        let Some(data) = input.get("data") else {
            return Err(input_error(NODE, "required parameter 'data' is missing"));
        };
        // Python's json.dump(indent=n): a newline before every item, n spaces a level (none
        // for 0), floats as Python writes them.
        let indent = input.get("indent").and_then(Value::as_u64).unwrap_or(2);
        let pad = vec![b' '; usize::try_from(indent.min(16)).unwrap_or(2)];
        let mut text = Vec::new();
        let fmt = PyFloats(serde_json::ser::PrettyFormatter::with_indent(&pad));
        let mut ser = serde_json::Serializer::with_formatter(&mut text, fmt);
        serde::Serialize::serialize(data, &mut ser)
            .map_err(|e| input_error(NODE, e.to_string()))?;
        let target = confine_new(&self.root, &path).await?;
        write_file(&target, &text, false).await?;
        Ok(out(vec![("file_path", Value::String(path))]))
    }
}

/// A JSON formatter that writes floats as Python's `json` module does (`1e+16`, `1.5e-05`).
struct PyFloats<'a>(serde_json::ser::PrettyFormatter<'a>);

impl serde_json::ser::Formatter for PyFloats<'_> {
    fn write_f64<W: ?Sized + std::io::Write>(&mut self, w: &mut W, v: f64) -> std::io::Result<()> {
        w.write_all(py_float(v).as_bytes())
    }
    // Kora keeps numbers as their digits (serde_json's `arbitrary_precision`): an integer is
    // written as it is (any size, as Python's), a float in Python's form whatever its text.
    fn write_number_str<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        digits: &str,
    ) -> std::io::Result<()> {
        match digits
            .contains(['.', 'e', 'E'])
            .then(|| digits.parse::<f64>())
        {
            Some(Ok(f)) => w.write_all(py_float(f).as_bytes()),
            _ => w.write_all(digits.as_bytes()),
        }
    }
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// Python's text mode: `\r\n` and a lone `\r` read as `\n`.
pub(crate) fn universal_newlines(text: String) -> String {
    if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text
    }
}

pub(crate) struct TextReader {
    info: NodeTypeInfo,
    root: PathBuf,
}

impl TextReader {
    fn new(root: PathBuf) -> Self {
        TextReader {
            info: info(
                "TextReaderNode",
                "Reads a UTF-8 text file below the data root.",
                vec![
                    ParamInfo::required("file_path", "path relative to the data root")
                        .kind(ParamKind::String),
                    ParamInfo::optional("encoding", "only utf-8 is supported")
                        .kind(ParamKind::OneOf(&["utf-8", "utf8"]))
                        .default("utf-8"),
                ],
                vec!["text"],
            ),
            root,
        }
    }
}

#[async_trait]
impl Node for TextReader {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        let path = path_param("TextReaderNode", &input, "file_path")?;
        let text = crate::builtin::read(&self.root, &path).await?;
        Ok(out(vec![("text", Value::String(universal_newlines(text)))]))
    }
}

pub(crate) struct TextWriter {
    info: NodeTypeInfo,
    root: PathBuf,
}

impl TextWriter {
    fn new(root: PathBuf) -> Self {
        TextWriter {
            info: info(
                "TextWriterNode",
                "Writes text to a file below the data root (or appends to it).",
                vec![
                    ParamInfo::required("file_path", "path relative to the data root")
                        .kind(ParamKind::String),
                    ParamInfo::required(
                        "text",
                        "the text; other values are written as Python's str() gives them",
                    )
                    .with_aliases(&["data"]),
                    ParamInfo::optional(
                        "append",
                        "add to the end of the file instead of replacing it",
                    )
                    .kind(ParamKind::Bool)
                    .default("false"),
                    ParamInfo::optional("encoding", "only utf-8 is supported")
                        .kind(ParamKind::OneOf(&["utf-8", "utf8"]))
                        .default("utf-8"),
                ],
                vec!["file_path", "bytes_written"],
            ),
            root,
        }
    }
}

#[async_trait]
impl Node for TextWriter {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "TextWriterNode";
        let path = path_param(NODE, &input, "file_path")?;
        let text = match input.get("text").or_else(|| input.get("data")) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => {
                return Err(input_error(NODE, "required parameter 'text' is missing"));
            }
            Some(v) => py_str(v),
        };
        let append = input
            .get("append")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let target = confine_new(&self.root, &path).await?;
        write_file(&target, text.as_bytes(), append).await?;
        Ok(out(vec![
            ("file_path", Value::String(path)),
            ("bytes_written", Value::from(text.len())),
        ]))
    }
}

// ---------------------------------------------------------------------------------------------

pub(crate) struct DirectoryReader {
    info: NodeTypeInfo,
    root: PathBuf,
}

impl DirectoryReader {
    fn new(root: PathBuf) -> Self {
        DirectoryReader {
            info: info(
                "DirectoryReaderNode",
                "Lists the files of a folder below the data root, with their types, sizes and times.",
                vec![
                    ParamInfo::required("directory_path", "folder relative to the data root")
                        .kind(ParamKind::String),
                    ParamInfo::optional("recursive", "descend into sub-folders")
                        .kind(ParamKind::Bool)
                        .default("false"),
                    ParamInfo::optional(
                        "file_patterns",
                        "glob patterns a file name must match one of (e.g. *.csv)",
                    )
                    .kind(ParamKind::List),
                    ParamInfo::optional(
                        "exclude_patterns",
                        "glob patterns that exclude a file name",
                    )
                    .kind(ParamKind::List),
                    ParamInfo::optional("include_hidden", "include names starting with a dot")
                        .kind(ParamKind::Bool)
                        .default("false"),
                ],
                vec!["discovered_files", "files_by_type", "directory_stats"],
            ),
            root,
        }
    }
}

/// Shell-style match of `name` against `pattern` (`*`, `?`; no brackets).
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn file_type(ext: &str) -> (&'static str, &'static str) {
    match ext {
        "csv" => ("csv", "text/csv"),
        "tsv" => ("tsv", "text/tab-separated-values"),
        "json" => ("json", "application/json"),
        "jsonl" | "ndjson" => ("jsonl", "application/x-ndjson"),
        "txt" | "log" | "md" => ("text", "text/plain"),
        "xml" => ("xml", "application/xml"),
        "yaml" | "yml" => ("yaml", "application/yaml"),
        "html" | "htm" => ("html", "text/html"),
        "pdf" => ("pdf", "application/pdf"),
        "png" | "jpg" | "jpeg" | "gif" | "webp" => ("image", "image/*"),
        "parquet" => ("parquet", "application/vnd.apache.parquet"),
        _ => ("unknown", "application/octet-stream"),
    }
}

#[async_trait]
impl Node for DirectoryReader {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }
    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        const NODE: &str = "DirectoryReaderNode";
        let dir = path_param(NODE, &input, "directory_path")?;
        let real = confine(&self.root, &dir)?;
        let root = self.root.canonicalize().map_err(|e| {
            NodeError::permanent(error_type::CONFIG, format!("data root is not usable: {e}"))
        })?;
        let patterns = |k: &str| -> Vec<String> {
            match input.get(k) {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            }
        };
        let (include, exclude) = (patterns("file_patterns"), patterns("exclude_patterns"));
        let recursive = input
            .get("recursive")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let hidden = input
            .get("include_hidden")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut files = Vec::new();
        let mut todo = vec![real];
        while let Some(d) = todo.pop() {
            let mut entries = tokio::fs::read_dir(&d).await.map_err(|e| {
                NodeError::permanent(
                    "FileNotFoundError",
                    format!("cannot list {}: {e}", d.display()),
                )
            })?;
            while let Some(e) = entries.next_entry().await.map_err(|e| {
                NodeError::retryable("IOError", format!("cannot list {}: {e}", d.display()))
            })? {
                let name = e.file_name().to_string_lossy().to_string();
                if !hidden && name.starts_with('.') {
                    continue;
                }
                let Ok(meta) = tokio::fs::metadata(e.path()).await else {
                    continue;
                };
                // Symlinks are followed only while they stay below the data root.
                let Ok(real) = e.path().canonicalize() else {
                    continue;
                };
                if !real.starts_with(&root) {
                    continue;
                }
                if meta.is_dir() {
                    if recursive {
                        todo.push(e.path());
                    }
                    continue;
                }
                if (!include.is_empty() && !include.iter().any(|p| glob(p, &name)))
                    || exclude.iter().any(|p| glob(p, &name))
                {
                    continue;
                }
                let ext = Path::new(&name)
                    .extension()
                    .map(|x| x.to_string_lossy().to_ascii_lowercase())
                    .unwrap_or_default();
                let (kind, mime) = file_type(&ext);
                let secs = |t: std::io::Result<std::time::SystemTime>| {
                    t.ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(Value::Null, |d| Value::from(d.as_secs_f64()))
                };
                let rel = e.path().strip_prefix(&self.root).map_or_else(
                    |_| {
                        real.strip_prefix(&root)
                            .unwrap_or(&real)
                            .display()
                            .to_string()
                    },
                    |p| p.display().to_string(),
                );
                files.push(serde_json::json!({
                    "file_path": rel,
                    "file_name": name,
                    "file_type": kind,
                    "file_extension": if ext.is_empty() { String::new() } else { format!(".{ext}") },
                    "file_size": meta.len(),
                    "mime_type": mime,
                    "modified_time": secs(meta.modified()),
                    "created_time": secs(meta.created()),
                }));
            }
        }
        files.sort_by(|a, b| a["file_path"].as_str().cmp(&b["file_path"].as_str()));
        let mut by_type = Map::new();
        let mut counts = Map::new();
        let mut total = 0u64;
        for f in &files {
            let t = f["file_type"].as_str().unwrap_or("unknown").to_string();
            total += f["file_size"].as_u64().unwrap_or(0);
            if let Value::Array(a) = by_type
                .entry(t.clone())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                a.push(f.clone());
            }
            let c = counts.entry(t).or_insert(Value::from(0));
            *c = Value::from(c.as_u64().unwrap_or(0) + 1);
        }
        let stats = serde_json::json!({
            "directory_path": dir,
            "total_files": files.len(),
            "total_size": total,
            "file_types": counts,
            "recursive": recursive,
        });
        Ok(out(vec![
            ("discovered_files", Value::Array(files)),
            ("files_by_type", Value::Object(by_type)),
            ("directory_stats", stats),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_match_like_fnmatch() {
        assert!(glob("*.csv", "a.csv"));
        assert!(!glob("*.csv", "a.csv.bak"));
        assert!(glob("data_??.json", "data_01.json"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYc"));
        assert!(!glob("a*b*c", "aXXbY"));
    }
}
