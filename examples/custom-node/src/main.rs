//! A custom node type in your own worker binary.
//!
//! `SlugifyNode` turns a title into a URL slug. It implements [`kora_nodes::Node`]: metadata
//! (name, typed parameters, outputs: what validation, `kora nodes` and `docs/nodes.md` use) and
//! `run`, from the node's input (config overlaid by inputs) to its output. A node reports
//! failures as `NodeError::permanent` (bad input: not retried) or `NodeError::retryable`.
//!
//! This binary runs a workflow file embedded with the built-in nodes plus this one:
//!
//!     cargo run -p kora-custom-node-example -- run examples/custom-node/workflow.json
//!
//! and serves Kora's roles with it on NATS and PostgreSQL, configured like `kora serve`
//! (`KORA_NATS_URL`, `KORA_DATABASE_URL`, `KORA_PREFIX`, ...):
//!
//!     kora-custom-node serve all          # or scheduler,worker beside stock coordinators
//!
//! Serve the scheduler role from this binary too: schedulers validate runs against the node
//! types they know, and reject an unknown one with a clear message.

use std::sync::Arc;

use async_trait::async_trait;
use kora_model::catalog::{NodeTypeInfo, ParamInfo, ParamKind};
use kora_model::{Map, Value};
use kora_nodes::{Node, NodeContext, NodeError, Registry};

/// Turns `title` into a lower-case, dash-separated slug of at most `max_length` characters.
struct Slugify {
    info: NodeTypeInfo,
}

impl Slugify {
    fn new() -> Self {
        Slugify {
            info: NodeTypeInfo {
                name: "SlugifyNode",
                description: "Turns a title into a URL slug.",
                params: vec![
                    ParamInfo::required("title", "the text to slugify").kind(ParamKind::String),
                    ParamInfo::optional("max_length", "longest slug")
                        .kind(ParamKind::Integer)
                        .default("60"),
                ],
                outputs: vec!["slug"],
                open_inputs: false,
                open_outputs: false,
                stop_on_error: false,
                is_switch: false,
                required_one_of: Vec::new(),
            },
        }
    }
}

#[async_trait]
impl Node for Slugify {
    fn info(&self) -> &NodeTypeInfo {
        &self.info
    }

    async fn run(&self, _ctx: &NodeContext, input: Map) -> Result<Map, NodeError> {
        let Some(title) = input.get("title").and_then(Value::as_str) else {
            return Err(NodeError::permanent(
                "ValueError",
                "SlugifyNode: 'title' must be a string",
            ));
        };
        let max = input
            .get("max_length")
            .and_then(Value::as_u64)
            .unwrap_or(60);
        let mut slug = String::new();
        for c in title.chars().flat_map(char::to_lowercase) {
            if c.is_alphanumeric() {
                slug.push(c);
            } else if !slug.ends_with('-') && !slug.is_empty() {
                slug.push('-');
            }
        }
        let slug: String = slug
            .trim_end_matches('-')
            .chars()
            .take(usize::try_from(max).unwrap_or(60))
            .collect();
        let mut out = Map::new();
        out.insert("slug".into(), Value::String(slug));
        Ok(out)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut custom = Registry::empty();
    custom.register(Arc::new(Slugify::new()));
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        // Embedded, like `kora run`.
        ["run", file] => {
            // The limits and default timeout `kora run` reads (KORA_LIMITS__*, KORA_TASKS__*).
            let local = kora_cli::settings::Local::from_env()?;
            let (workflow, _) =
                kora_cli::input::load_workflow(std::path::Path::new(file), &local.limits)?;
            let cfg = kora_cli::embedded::EngineConfig {
                tasks: local.tasks.clone(),
                limits: local.limits.clone(),
                ..kora_cli::embedded::EngineConfig::default()
            };
            let store = kora_store::open("memory").await?;
            let engine = kora_cli::embedded::Engine::start_with(cfg, store, custom).await?;
            let report = engine.run(workflow, Map::new()).await;
            engine.shutdown().await?;
            println!("{}", serde_json::to_string_pretty(&report?)?);
            Ok(())
        }
        // Distributed, like `kora serve --role ROLES`, configured the same way (KORA_*).
        ["serve", roles] => {
            // What `kora serve`'s flags read from the environment.
            let mut flags = serde_json::json!({});
            for (var, section, key) in [
                ("KORA_NATS_URL", "nats", "url"),
                ("KORA_PREFIX", "nats", "prefix"),
                ("KORA_DATABASE_URL", "database", "url"),
            ] {
                if let Ok(v) = std::env::var(var) {
                    flags[section][key] = v.into();
                }
            }
            let config_file = std::env::var("KORA_CONFIG")
                .ok()
                .map(std::path::PathBuf::from);
            let cfg =
                kora_server::ServerConfig::load(config_file.as_deref(), std::env::vars(), flags)?;
            let roles = kora_server::parse_roles(roles)?;
            let token = tokio_util::sync::CancellationToken::new();
            let _second = kora_runtime::shutdown::install(token.clone());
            Ok(kora_server::serve(cfg, &roles, custom, token).await?)
        }
        _ => anyhow::bail!(
            "usage: kora-custom-node run WORKFLOW_FILE | kora-custom-node serve ROLES (e.g. all)"
        ),
    }
}
