//! Input limits: what a workflow document, a workflow and a run's parameters may cost, checked
//! before any expensive work. The CLI, the gateway and the scheduler (run requests on NATS) check
//! the same [`Limits`]; every refusal names the limit, the value found and the setting to change.
//!
//! Why a text pre-scan: the YAML parser's work grows with the square of flow-collection nesting
//! (`[[[[…]]]]`: 34.6 s for 100,000 levels) before its recursion limit fires, so [`Limits::check_text`]
//! measures nesting in one linear pass first and refuses a document past `max_depth` at once.

use serde::{Deserialize, Serialize};

use crate::plan::DEFAULT_MAX_ITERATIONS;
use crate::spec::WorkflowSpec;
use crate::validate::{CompiledWorkflow, Problem, Severity};
use crate::value::{Map, Value};

/// `[limits]`: the largest input Kora accepts. Give every role the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest workflow document (JSON or YAML text), in bytes.
    pub max_document_bytes: usize,
    /// Deepest nesting of objects and lists, in a document, a node's config or the parameters.
    pub max_depth: usize,
    /// Most nodes in one workflow.
    pub max_nodes: usize,
    /// Most connections in one workflow.
    pub max_connections: usize,
    /// Largest node config, in bytes as JSON (roughly).
    pub max_config_bytes: usize,
    /// Largest run parameters, in bytes as JSON (roughly).
    pub max_params_bytes: usize,
    /// Highest `max_iterations` a cycle may name (a cycle naming none stops after
    /// [`DEFAULT_MAX_ITERATIONS`]).
    pub max_iterations: u32,
    /// Most node executions one run may need: nodes outside cycles once, each cycle's members
    /// once per iteration it may run.
    pub max_executions: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_document_bytes: 16 << 20,
            max_depth: 64,
            max_nodes: 100_000,
            max_connections: 500_000,
            max_config_bytes: 1 << 20,
            max_params_bytes: 4 << 20,
            max_iterations: 10_000,
            max_executions: 1_000_000,
        }
    }
}

/// A refusal: which limit, the value found, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} is {found}, over the limit of {limit} (limits.{key}, KORA_LIMITS__{}); {advice}",
    .key.to_ascii_uppercase()
)]
pub struct LimitError {
    pub what: String,
    /// The setting under `[limits]`.
    pub key: &'static str,
    pub found: String,
    pub limit: u64,
    pub advice: &'static str,
}

fn over(
    what: impl Into<String>,
    key: &'static str,
    found: impl ToString,
    limit: impl TryInto<u64>,
    advice: &'static str,
) -> LimitError {
    LimitError {
        what: what.into(),
        key,
        found: found.to_string(),
        limit: limit.try_into().unwrap_or(u64::MAX),
        advice,
    }
}

const SPLIT: &str = "split the workflow into child workflows or raise the limit";

impl Limits {
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_document_bytes", self.max_document_bytes as u64),
            ("max_depth", self.max_depth as u64),
            ("max_nodes", self.max_nodes as u64),
            ("max_connections", self.max_connections as u64),
            ("max_config_bytes", self.max_config_bytes as u64),
            ("max_params_bytes", self.max_params_bytes as u64),
            ("max_iterations", u64::from(self.max_iterations)),
            ("max_executions", self.max_executions),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(format!("limits.{key} must be at least 1"));
            }
        }
        // Deeper values than this overflow the stack of the recursive code that walks them.
        if self.max_depth > 1000 {
            return Err(format!(
                "limits.max_depth must be at most 1000 (it is {})",
                self.max_depth
            ));
        }
        Ok(())
    }

    /// The size of a workflow document, in bytes.
    pub fn check_size(&self, bytes: u64) -> Result<(), LimitError> {
        if bytes > self.max_document_bytes as u64 {
            return Err(over(
                "the workflow document's size in bytes",
                "max_document_bytes",
                bytes,
                self.max_document_bytes,
                SPLIT,
            ));
        }
        Ok(())
    }

    /// Size and nesting of a workflow document's text, in time linear in its length.
    pub fn check_text(&self, text: &str) -> Result<(), LimitError> {
        self.check_size(text.len() as u64)?;
        let depth = nesting(text, self.max_depth);
        if depth > self.max_depth {
            return Err(over(
                "the workflow document's nesting depth",
                "max_depth",
                format!("more than {}", self.max_depth),
                self.max_depth,
                "flatten the nested lists and objects",
            ));
        }
        Ok(())
    }

    /// Nesting depth of a parsed value (the gateway's JSON bodies, params from a file).
    pub fn check_value(&self, what: &str, v: &Value) -> Result<(), LimitError> {
        if depth_under(std::iter::once(v), 0, self.max_depth) > self.max_depth {
            return Err(self.too_deep(what));
        }
        Ok(())
    }

    fn too_deep(&self, what: &str) -> LimitError {
        over(
            format!("the nesting depth of {what}"),
            "max_depth",
            format!("more than {}", self.max_depth),
            self.max_depth,
            "flatten the nested lists and objects",
        )
    }

    /// Counts, sizes and depths of a workflow and its parameters, each problem naming the node
    /// and field; cheap (no graph is built), so it runs before validation.
    pub fn check_workflow(&self, spec: &WorkflowSpec, params: Option<&Map>) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut push = |node: Option<&str>, field: Option<&str>, e: LimitError| {
            out.push(Problem {
                severity: Severity::Error,
                node: node.map(String::from),
                field: field.map(String::from),
                message: e.to_string(),
            });
        };
        if spec.nodes.len() > self.max_nodes {
            push(
                None,
                Some("nodes"),
                over(
                    "the number of nodes",
                    "max_nodes",
                    spec.nodes.len(),
                    self.max_nodes,
                    SPLIT,
                ),
            );
        }
        if spec.connections.len() > self.max_connections {
            push(
                None,
                Some("connections"),
                over(
                    "the number of connections",
                    "max_connections",
                    spec.connections.len(),
                    self.max_connections,
                    SPLIT,
                ),
            );
        }
        for c in &spec.cycles {
            if let Some(n) = c.max_iterations
                && n > self.max_iterations
            {
                push(
                    None,
                    Some(&format!("cycles.{}.max_iterations", c.id)),
                    over(
                        "max_iterations",
                        "max_iterations",
                        n,
                        self.max_iterations,
                        "lower it, or end the loop with converge_when",
                    ),
                );
            }
        }
        for n in &spec.nodes {
            let sized = self.sized(
                "the node's config",
                "max_config_bytes",
                self.max_config_bytes,
                &n.config,
            );
            if let Err(e) = sized {
                push(Some(&n.id), Some("config"), e);
            }
        }
        if let Some(params) = params {
            let sized = self.sized(
                "the run's parameters",
                "max_params_bytes",
                self.max_params_bytes,
                params,
            );
            if let Err(e) = sized {
                push(None, Some("params"), e);
            }
        }
        out
    }

    /// Depth and size of an object, measured in place (no copy of it is made).
    fn sized(
        &self,
        what: &str,
        key: &'static str,
        limit: usize,
        m: &Map,
    ) -> Result<(), LimitError> {
        if depth_under(m.values(), 1, self.max_depth) > self.max_depth {
            return Err(self.too_deep(what));
        }
        let size = approx_size(m.iter(), limit);
        if size > limit {
            return Err(over(
                format!("{what}'s size in bytes"),
                key,
                format!("more than {limit}"),
                limit,
                "pass large data by reference (a file or a table)",
            ));
        }
        Ok(())
    }

    /// The most node executions a compiled workflow may need, against `max_executions`.
    pub fn check_executions(&self, wf: &CompiledWorkflow) -> Option<Problem> {
        let in_cycles: usize = wf.groups.iter().map(|g| g.members.len()).sum();
        let mut total = (wf.ids.len() - in_cycles.min(wf.ids.len())) as u64;
        let mut largest: Option<(&str, usize, u32)> = None;
        for g in &wf.groups {
            let iterations = g.max_iterations.unwrap_or(DEFAULT_MAX_ITERATIONS);
            total = total.saturating_add((g.members.len() as u64) * u64::from(iterations));
            if largest.is_none_or(|(_, m, i)| {
                (m as u64) * u64::from(i) < (g.members.len() as u64) * u64::from(iterations)
            }) {
                largest = Some((&g.id, g.members.len(), iterations));
            }
        }
        if total <= self.max_executions {
            return None;
        }
        let what = match largest {
            Some((id, members, iterations)) => format!(
                "the node executions this run may need (cycle {id}: {members} nodes x {iterations} iterations)"
            ),
            None => "the node executions this run may need".to_string(),
        };
        Some(Problem {
            severity: Severity::Error,
            node: None,
            field: Some("cycles".into()),
            message: over(
                what,
                "max_executions",
                total,
                self.max_executions,
                "lower max_iterations or move the loop into a child workflow",
            )
            .to_string(),
        })
    }
}

/// Nesting depth of `roots` (each already `base` deep), counting no further than `stop + 1`.
fn depth_under<'a>(roots: impl Iterator<Item = &'a Value>, base: usize, stop: usize) -> usize {
    // Iterative, so a value deeper than the stack never overflows it here.
    let mut max = base;
    let mut stack: Vec<(&Value, usize)> = roots.map(|v| (v, base)).collect();
    while let Some((v, d)) = stack.pop() {
        let d = d + 1;
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, d))),
            Value::Object(m) => stack.extend(m.values().map(|c| (c, d))),
            _ => continue,
        }
        max = max.max(d);
        if max > stop {
            return max;
        }
    }
    max
}

/// Roughly the bytes of an object with `entries` as JSON (strings and keys by length, other
/// scalars 8, containers 2), stopping once past `stop`.
fn approx_size<'a>(entries: impl Iterator<Item = (&'a String, &'a Value)>, stop: usize) -> usize {
    let mut size = 2usize;
    let mut stack: Vec<&Value> = Vec::new();
    for (k, v) in entries {
        size += k.len() + 4;
        stack.push(v);
    }
    while let Some(v) = stack.pop() {
        size += match v {
            Value::String(s) => s.len() + 2,
            Value::Array(a) => {
                stack.extend(a.iter());
                2 + a.len()
            }
            Value::Object(m) => {
                for (k, c) in m {
                    size += k.len() + 4;
                    stack.push(c);
                }
                2
            }
            _ => 8,
        };
        if size > stop {
            return size;
        }
    }
    size
}

/// An estimate of the deepest nesting in JSON or YAML text, in one pass, stopping counting once
/// past `stop` (the figure returned is then only known to exceed it): flow collections (`[`, `{`) exactly, block collections by open indentation levels
/// and compact `- ` entries (within a level or so). Strings, comments and YAML block scalars
/// are skipped where the YAML parser would see them; where the text is ambiguous it counts
/// rather than skips. Its purpose is to refuse a document far past the limit before the
/// parser's cost grows with it; the parsed values are measured exactly afterwards.
pub fn nesting(text: &str, stop: usize) -> usize {
    let b = text.as_bytes();
    let n = b.len();
    let (mut depth, mut max) = (0usize, 0usize);
    let mut i = 0;
    // The last significant byte on this line (b'\n' at the line's start), the one before it,
    // and whether blanks came after it.
    let (mut prev, mut prev2, mut spaced) = (b'\n', b'\n', true);
    let mut line_start = true;
    // The column the current line's content starts at, past `- ` and `? ` indicators.
    let mut content_col = 0usize;
    // Inside a block scalar whose owner's content starts at this column.
    let mut block: Option<usize> = None;
    let mut header = false;
    // Indentation columns of the block collections open at this line, and the line's depth.
    let mut indents: Vec<usize> = Vec::new();
    let mut line_depth = 0usize;
    while i < n {
        if line_start {
            line_start = false;
            let mut j = i;
            while j < n && b[j] == b' ' {
                j += 1;
            }
            let blank = j >= n || b[j] == b'\n' || b[j] == b'\r';
            if let Some(owner) = block {
                if blank || j - i > owner {
                    i = next_line(b, j);
                    line_start = true;
                    continue;
                }
                block = None;
            }
            // Past sequence and complex-key indicators.
            let mut k = j;
            while k + 1 < n && matches!(b[k], b'-' | b'?') && matches!(b[k + 1], b' ' | b'\t') {
                k += 2;
                while k < n && b[k] == b' ' {
                    k += 1;
                }
            }
            content_col = k - i;
            let comment = j < n && b[j] == b'#';
            if depth == 0 && !blank && !comment {
                let indent = j - i;
                while indents.last().is_some_and(|&t| t > indent) {
                    indents.pop();
                }
                if indents.last() != Some(&indent) {
                    indents.push(indent);
                }
                let compact = b[j..k].iter().filter(|&&c| c == b'-' || c == b'?').count();
                line_depth = indents.len() - 1 + compact;
                max = max.max(line_depth);
                if max > stop {
                    return max;
                }
            }
            prev = b'\n';
            prev2 = b'\n';
            spaced = true;
            header = false;
            i = j;
            continue;
        }
        let c = b[i];
        // Where a scalar or collection may start: the line's start, after `- `, `? `, `: `,
        // inside a flow collection after `[`, `{` or `,`, or after a JSON-like key's `"…":`.
        let at_token = match prev {
            b'\n' | b'[' | b'{' | b',' => true,
            b'-' | b'?' | b':' => spaced || (prev == b':' && depth > 0 && prev2 == b'"'),
            _ => false,
        };
        match c {
            b'\n' => {
                if header && depth == 0 {
                    block = Some(content_col);
                }
                line_start = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                spaced = true;
                i += 1;
                continue;
            }
            b'#' if i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'\n' | b'\r') => {
                while i < n && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' if at_token => {
                i = end_of_quote(b, i);
                (prev2, prev, spaced, header) = (prev, b'"', false, false);
                continue;
            }
            b'[' | b'{' if depth > 0 || at_token => {
                depth += 1;
                max = max.max(line_depth + depth);
                if max > stop {
                    return max;
                }
            }
            b']' | b'}' if depth > 0 => depth -= 1,
            b'|' | b'>' if depth == 0 && at_token => {
                (prev2, prev, spaced) = (prev, c, false);
                i += 1;
                while i < n && matches!(b[i], b'-' | b'+' | b'0'..=b'9') {
                    i += 1;
                }
                header = true;
                continue;
            }
            _ => {}
        }
        header = false;
        (prev2, prev, spaced) = (prev, c, false);
        i += 1;
    }
    max
}

fn next_line(b: &[u8], from: usize) -> usize {
    b[from..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| from + p + 1)
}

/// The index just past the quoted scalar starting at `start` (or the end of the text).
fn end_of_quote(b: &[u8], start: usize) -> usize {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' if q == b'"' => i += 2,
            c if c == q => {
                // `''` inside single quotes is an escaped quote.
                if q == b'\'' && b.get(i + 1) == Some(&b'\'') {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_counts_collections_not_strings_comments_or_block_scalars() {
        let cases: &[(&str, usize)] = &[
            ("{}", 1),
            (r#"{"a": [1, {"b": "[[[[["}]}"#, 3),
            ("a: [1, [2]]\n", 2),
            ("a:\n  b:\n    c: [1]\n  d: 1\n", 3),
            ("a:\n  # x\n    # y\n      # z\n  b: 1\n", 1),
            ("a: b[c\nd: e[f\n", 0),
            ("# [[[[[\na: 1\n", 0),
            ("a: 'it''s [[[['\n", 0),
            ("a: it's\nb: [[x]]\n", 2),
            ("code: |\n  x = [[[[\n  y = '\nb: [1]\n", 1),
            ("- a: |\n    [[[[\n  b: [[1]]\n", 3),
            ("a:'\nb: [[[1]]]\n", 3),
            ("- - [x]\n", 3),
            ("a: !!seq [[1]]\n", 1),
            ("{\"k\":'[[[['}", 1),
        ];
        for (text, want) in cases {
            assert_eq!(nesting(text, 100), *want, "{text:?}");
        }
    }

    #[test]
    fn nesting_stops_counting_past_the_limit() {
        let deep = "[".repeat(1_000_000);
        assert_eq!(nesting(&deep, 64), 65);
        let compact = format!("a:\n{}x\n", "- ".repeat(500_000));
        assert!(nesting(&compact, 64) > 64);
        let indented: String = (0..2000)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect();
        assert!(nesting(&indented, 64) > 64);
    }

    #[test]
    fn values_too_deep_or_too_large_are_named() {
        let l = Limits {
            max_depth: 3,
            max_config_bytes: 64,
            ..Limits::default()
        };
        let deep: Value = serde_json::from_str(r#"{"a":{"b":{"c":{"d":1}}}}"#).unwrap();
        let e = l.check_value("params", &deep).unwrap_err().to_string();
        assert!(
            e.contains("limits.max_depth") && e.contains("KORA_LIMITS__MAX_DEPTH"),
            "{e}"
        );
        let big = serde_json::json!({"s": "x".repeat(100)});
        let e = l
            .sized(
                "the node's config",
                "max_config_bytes",
                64,
                big.as_object().unwrap(),
            )
            .unwrap_err();
        assert_eq!(e.key, "max_config_bytes");
        let e = l
            .sized(
                "params",
                "max_params_bytes",
                1000,
                deep.as_object().unwrap(),
            )
            .unwrap_err();
        assert_eq!(e.key, "max_depth");
    }
}
