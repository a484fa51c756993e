//! One module per command; each returns the process's exit code.

mod audit;
mod check;
mod dev;
mod dlq;
mod keys;
mod nodes;
mod run;
mod runs;
mod serve;
mod setup;
mod submit;
mod top;
mod triggers;
mod validate;

use std::process::ExitCode;

use kora_client::runs::RunReport;

use crate::args::{Command, Format};
use crate::render;

pub(crate) async fn dispatch(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Run {
            file,
            params,
            format,
            store,
            data_root,
            python_workers,
            timeout,
        } => {
            run::run(
                run::Args {
                    file,
                    params,
                    store,
                    data_root,
                    python_workers,
                    timeout,
                },
                format,
            )
            .await
        }
        Command::Validate {
            file,
            params,
            format,
        } => validate::validate(&file, params.as_deref(), format),
        Command::Nodes { format, markdown } => nodes::nodes(format, markdown),
        Command::Top {
            once,
            interval,
            window,
            format,
            conn,
        } => {
            Box::pin(top::top(top::Args {
                once,
                interval,
                window,
                format,
                conn,
            }))
            .await
        }
        Command::Serve {
            role,
            conn,
            queue,
            concurrency,
            data_root,
            metrics_addr,
            log_json: _,
        } => {
            Box::pin(serve::serve(serve::Args {
                role,
                conn,
                queue,
                concurrency,
                data_root,
                metrics_addr,
            }))
            .await
        }
        Command::Dev {
            conn,
            data_dir,
            concurrency,
        } => {
            dev::dev(dev::Args {
                conn,
                data_dir,
                concurrency,
            })
            .await
        }
        Command::Submit {
            file,
            params,
            idempotency_key,
            priority,
            tenant,
            wait,
            timeout,
            format,
            conn,
        } => {
            submit::submit(
                submit::Args {
                    file,
                    params,
                    idempotency_key,
                    priority,
                    tenant,
                    wait,
                    timeout,
                    conn,
                },
                format,
            )
            .await
        }
        Command::Runs { command } => Box::pin(runs::runs(command)).await,
        Command::Dlq { command } => Box::pin(dlq::dlq(command)).await,
        Command::Triggers { command } => Box::pin(triggers::triggers(command)).await,
        Command::Keys { command } => Box::pin(keys::keys(command)).await,
        Command::Check { role, format, conn } => check::check(&role, format, conn).await,
        Command::Setup {
            queues,
            nats_config,
            users,
            skip_ledger,
            conn,
        } => {
            setup::setup(setup::Args {
                queues,
                nats_config,
                users,
                skip_ledger,
                conn,
            })
            .await
        }
        Command::Audit {
            api,
            tenant,
            actor,
            action,
            run,
            event_type,
            since,
            limit,
            format,
            conn,
        } => {
            audit::audit(
                audit::Args {
                    api,
                    tenant,
                    actor,
                    action,
                    run,
                    event_type,
                    since,
                    limit,
                    conn,
                },
                format,
            )
            .await
        }
    }
}

/// A finished run, as `kora run` and `kora submit --wait` print it.
pub(crate) fn print_report(report: &RunReport, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return render::json(report);
    }
    render::say(&format!("run {}  {}", report.run_id, report.status));
    if let Some(e) = &report.error {
        render::say(&format!(
            "error: {}",
            e.get("error")
                .and_then(|v| v.as_str())
                .map_or_else(|| e.to_string(), String::from)
        ));
    }
    render::print_table(&render::results(&report.results));
    Ok(())
}

/// The exit code of a finished run: 0 succeeded, 2 rejected, 1 otherwise.
pub(crate) fn exit_of(status: &str) -> ExitCode {
    match status {
        "succeeded" => ExitCode::SUCCESS,
        "rejected" => ExitCode::from(crate::EXIT_BAD_INPUT),
        _ => ExitCode::from(crate::EXIT_FAILED),
    }
}
