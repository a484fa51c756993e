//! `kora validate`: every problem of a workflow, each naming its node and field.

use std::path::Path;
use std::process::ExitCode;

use kora_cli::input;
use kora_model::{Problem, Severity};
use kora_nodes::{NodesConfig, Registry};
use serde::Serialize;

use crate::args::Format;
use crate::render::{json, say};

#[derive(Serialize)]
struct Validation<'a> {
    file: String,
    shape: String,
    valid: bool,
    nodes: usize,
    connections: usize,
    problems: &'a [Problem],
}

pub(crate) fn validate(
    file: &Path,
    params: Option<&str>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let local = kora_cli::settings::Local::from_env()?;
    let (spec, shape) = input::load_workflow(file, &local.limits)?;
    let params = params
        .map(|p| input::load_params(Some(p), &local.limits))
        .transpose()?;
    let registry = Registry::builtin(&NodesConfig::default());
    let problems = kora_model::validate_within(&spec, &registry, params.as_ref(), &local.limits);
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    if format == Format::Json {
        json(&Validation {
            file: file.display().to_string(),
            shape: shape.to_string(),
            valid: errors == 0,
            nodes: spec.nodes.len(),
            connections: spec.connections.len(),
            problems: &problems,
        })?;
    } else {
        for p in &problems {
            say(&p.to_string());
        }
        if errors == 0 {
            say(&format!(
                "ok: {} ({} format): {} nodes, {} connections, {} warning(s)",
                file.display(),
                shape,
                spec.nodes.len(),
                spec.connections.len(),
                problems.len()
            ));
        } else {
            say(&format!("{} error(s) in {}", errors, file.display()));
        }
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::EXIT_BAD_INPUT)
    })
}
