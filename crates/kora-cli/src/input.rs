//! Reading workflow files and parameters, with errors that say what to fix.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use kora_model::load::{self, Shape, Syntax};
use kora_model::{Limits, Map, Value, WorkflowSpec};

/// Loads a workflow file in any supported shape, refusing one over `limits` before parsing it.
pub fn load_workflow(path: &Path, limits: &Limits) -> anyhow::Result<(WorkflowSpec, Shape)> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read workflow file {}", path.display()))?
        .len();
    // Measured before it is read.
    limits
        .check_size(size)
        .map_err(|e| anyhow!("{} is refused: {e}", path.display()))?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read workflow file {}", path.display()))?;
    limits
        .check_text(&text)
        .map_err(|e| anyhow!("{} is refused: {e}", path.display()))?;
    let syntax = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => Syntax::Json,
        Some("yaml" | "yml") => Syntax::Yaml,
        _ => Syntax::Auto,
    };
    load::load_str(&text, syntax).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(|e| format!("  - {e}")).collect();
        anyhow!(
            "{} is not a usable workflow:\n{}",
            path.display(),
            list.join("\n")
        )
    })
}

/// `--params`: inline JSON (starting with `{`) or a JSON/YAML file, within `limits`.
pub fn load_params(arg: Option<&str>, limits: &Limits) -> anyhow::Result<Map> {
    let Some(arg) = arg else {
        return Ok(Map::new());
    };
    let trimmed = arg.trim_start();
    let value: Value = if trimmed.starts_with('{') {
        serde_json::from_str(arg).context(
            "--params is not valid JSON (expected an object like '{\"node_id\": {\"key\": 1}}')",
        )?
    } else {
        let text = std::fs::read_to_string(arg)
            .with_context(|| format!("cannot read --params file {arg}"))?;
        limits
            .check_text(&text)
            .map_err(|e| anyhow!("--params file {arg} is refused: {e}"))?;
        load::parse(&text, Syntax::Auto).map_err(|e| anyhow!("--params file {arg}: {e}"))?
    };
    match value {
        Value::Object(m) => Ok(m),
        other => bail!("--params must be an object, got {other}"),
    }
}
