//! Rendering for humans (`--format table`) and programs (`--format json`).

use kora_model::{Map, Value};

/// A fixed-width table of node results; long outputs are cut to `width` characters.
pub fn results_table(results: &Map, width: usize) -> String {
    let id_w = results.keys().map(String::len).max().unwrap_or(4).max(4);
    let mut out = format!("{:<id_w$}  {:<9}  OUTPUT\n", "NODE", "STATUS");
    for (id, v) in results {
        let status = match v {
            Value::Null => "skipped",
            Value::Object(o) if o.get("failed") == Some(&Value::Bool(true)) => "failed",
            _ => "ok",
        };
        let mut text = if v.is_null() {
            "-".to_string()
        } else {
            v.to_string()
        };
        if text.chars().count() > width {
            text = text
                .chars()
                .take(width.saturating_sub(1))
                .collect::<String>()
                + "…";
        }
        out.push_str(&format!("{id:<id_w$}  {status:<9}  {text}\n"));
    }
    out
}
