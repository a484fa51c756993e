//! `kora nodes`: the node types this build runs, their parameters and outputs.

use std::process::ExitCode;

use kora_model::Catalog;
use kora_nodes::{NodesConfig, Registry};

use crate::args::Format;
use crate::render::{json, say};

pub(crate) fn nodes(format: Format, markdown: bool) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin(&NodesConfig::default());
    if markdown {
        crate::render::out(&kora_nodes::docs::markdown(&registry));
        return Ok(ExitCode::SUCCESS);
    }
    if format == Format::Json {
        json(&registry.infos())?;
        return Ok(ExitCode::SUCCESS);
    }
    for name in registry.type_names() {
        let Some(t) = registry.node_type(name) else {
            continue;
        };
        say(&format!("{}\n  {}", t.name, t.description));
        for p in &t.params {
            let req = if p.required { " (required)" } else { "" };
            let alias = if p.aliases.is_empty() {
                String::new()
            } else {
                format!(" [alias: {}]", p.aliases.join(", "))
            };
            let default = p
                .default
                .map(|d| format!(", default {d}"))
                .unwrap_or_default();
            say(&format!(
                "    in  {}{req}{alias} ({}{default}): {}",
                p.name,
                p.kind.describe(),
                p.description
            ));
        }
        let more = if t.open_outputs { " (and others)" } else { "" };
        say(&format!("    out {}{more}\n", t.outputs.join(", ")));
    }
    Ok(ExitCode::SUCCESS)
}
