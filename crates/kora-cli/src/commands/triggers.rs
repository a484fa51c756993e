//! `kora triggers`: register, list, pause and resume triggers.

use std::process::ExitCode;

use kora_cli::input;
use kora_client::TriggerSource;
use kora_model::Severity;
use kora_nodes::{NodesConfig, Registry};

use crate::args::TriggersCommand;
use crate::render::{self, TriggerRow, note, say};

pub(crate) async fn triggers(command: TriggersCommand) -> anyhow::Result<ExitCode> {
    match command {
        TriggersCommand::Add {
            name,
            subject,
            cron,
            workflow,
            params,
            tenant,
            conn,
        } => {
            let source = match (subject, cron) {
                (Some(s), None) => TriggerSource::Subject(s),
                (None, Some(c)) => TriggerSource::Cron(c),
                _ => anyhow::bail!("give --subject or --cron"),
            };
            let what = match &source {
                TriggerSource::Subject(s) => format!("messages on {s}"),
                TriggerSource::Cron(c) => format!("ticks of {c:?}"),
                TriggerSource::Webhook { .. } => "signed requests".into(),
            };
            let local = kora_cli::settings::Local::from_env()?;
            let (spec, _) = input::load_workflow(&workflow, &local.limits)?;
            let registry = Registry::builtin(&NodesConfig::default());
            let problems: Vec<String> =
                kora_model::validate_within(&spec, &registry, None, &local.limits)
                    .iter()
                    .filter(|p| p.severity == Severity::Error)
                    .map(ToString::to_string)
                    .collect();
            if !problems.is_empty() {
                note(&format!(
                    "error: {} is not a usable workflow:",
                    workflow.display()
                ));
                for p in problems {
                    note(&format!("  - {p}"));
                }
                return Ok(ExitCode::from(crate::EXIT_BAD_INPUT));
            }
            let params = input::load_params(params.as_deref(), &local.limits)?;
            let control = kora_cli::connect::control(&conn.load(serde_json::json!({}))?).await?;
            control
                .for_tenant(Some(&tenant))
                .add_trigger(&name, source, spec, params)
                .await?;
            say(&format!(
                "trigger {name}: {what} start runs of {}",
                workflow.display()
            ));
            Ok(ExitCode::SUCCESS)
        }
        TriggersCommand::List { format, conn } => {
            let control = kora_cli::connect::control(&conn.load(serde_json::json!({}))?).await?;
            let rows: Vec<TriggerRow> = control
                .triggers()
                .await?
                .iter()
                .map(TriggerRow::from)
                .collect();
            render::triggers(&rows, format)?;
            Ok(ExitCode::SUCCESS)
        }
        TriggersCommand::Pause { name, conn } => {
            let control = kora_cli::connect::control(&conn.load(serde_json::json!({}))?).await?;
            control.set_trigger_paused(&name, true).await?;
            say(&format!(
                "trigger {name} paused: its messages wait until it is resumed"
            ));
            Ok(ExitCode::SUCCESS)
        }
        TriggersCommand::Resume { name, conn } => {
            let control = kora_cli::connect::control(&conn.load(serde_json::json!({}))?).await?;
            control.set_trigger_paused(&name, false).await?;
            say(&format!("trigger {name} resumed"));
            Ok(ExitCode::SUCCESS)
        }
        TriggersCommand::Delete { name, conn } => {
            let control = kora_cli::connect::control(&conn.load(serde_json::json!({}))?).await?;
            control.delete_trigger(&name).await?;
            say(&format!("trigger {name} deleted"));
            Ok(ExitCode::SUCCESS)
        }
    }
}
