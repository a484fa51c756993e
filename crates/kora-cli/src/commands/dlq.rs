//! `kora dlq`: dead letters listed, shown, replayed (one, or all a filter selects, with a
//! progress bar) and purged; and poison messages.

use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use kora_cli::operator::{actor, overrides};

use crate::args::{DlqCommand, Format};
use crate::render::{self, AttemptRow, DeadLetterRow, note, say, table, when};

pub(crate) async fn dlq(command: DlqCommand) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List {
            filter,
            any_state,
            poison,
            limit,
            format,
            conn,
        } => {
            let control = kora_cli::connect::control(&conn.load(serde_json::json!({}))?).await?;
            if poison {
                let list = control.poison(limit).await?;
                if format == Format::Json {
                    render::json(&list)?;
                } else if list.is_empty() {
                    say("no poison messages");
                } else {
                    let mut t = table(&["seq", "received", "source", "subject", "bytes", "reason"]);
                    for m in &list {
                        t.add_row(vec![
                            m.sequence.to_string(),
                            when(Some(m.received_ms)),
                            m.source.clone(),
                            m.original_subject.clone(),
                            m.bytes.to_string(),
                            m.reason.clone(),
                        ]);
                    }
                    render::print_table(&t);
                    note(&format!(
                        "{} poison message(s); `kora dlq purge --poison SEQ` removes one",
                        list.len()
                    ));
                }
                return Ok(ExitCode::SUCCESS);
            }
            let mut f = filter.filter()?;
            f.any_state = any_state;
            f.limit = limit;
            let rows: Vec<DeadLetterRow> = control
                .dead_letters(&f)
                .await?
                .iter()
                .map(DeadLetterRow::from)
                .collect();
            render::dead_letters(&rows, format)?;
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show { id, format, conn } => {
            let control = kora_cli::connect::control(&conn.load(serde_json::json!({}))?).await?;
            let Some((d, attempts)) = control.dead_letter(&id).await? else {
                note(&format!(
                    "error: no dead letter {id} (`kora dlq list --any-state` lists them)"
                ));
                return Ok(ExitCode::from(crate::EXIT_BAD_INPUT));
            };
            let mut row = DeadLetterRow::from(&d);
            row.attempts = Some(attempts.iter().map(AttemptRow::from).collect());
            render::dead_letter(&row, format)?;
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay {
            id,
            all,
            filter,
            sets,
            input_file,
            timeout,
            conn,
        } => {
            let control = kora_cli::connect::control(&conn.load(serde_json::json!({}))?)
                .await?
                .with_wait(timeout);
            let inputs = overrides(&sets, input_file.as_deref())?;
            let who = actor();
            let ids: Vec<String> = match (id, all) {
                (Some(id), false) => vec![id],
                (None, true) => control
                    .dead_letters(&filter.filter()?)
                    .await?
                    .into_iter()
                    .map(|d| d.id)
                    .collect(),
                _ => anyhow::bail!("name one dead letter ID, or use --all with filters (not both)"),
            };
            if ids.is_empty() {
                say("no dead letters match");
                return Ok(ExitCode::SUCCESS);
            }
            // Drawn on a terminal only; a script sees the lines below.
            let bar = ProgressBar::new(ids.len() as u64);
            if ids.len() > 1 {
                bar.set_style(
                    ProgressStyle::with_template("{bar:30} {pos}/{len} replayed {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
            } else {
                bar.finish_and_clear();
            }
            let mut failed = 0;
            for id in &ids {
                match control.replay(id, inputs.clone(), &who).await {
                    Ok(out) => {
                        let more = if out.redispatched.is_empty() {
                            String::new()
                        } else {
                            format!(
                                " (and {} in-flight node(s) sent again)",
                                out.redispatched.len()
                            )
                        };
                        bar.suspend(|| {
                            say(&format!(
                                "replayed {id}: run {} resumes with {} attempt {}{more}",
                                out.run_id, out.node_id, out.attempt
                            ));
                        });
                    }
                    Err(e) => {
                        failed += 1;
                        bar.suspend(|| note(&format!("error: {e:#}")));
                    }
                }
                bar.inc(1);
            }
            bar.finish_and_clear();
            if ids.len() > 1 {
                note(&format!("{} of {} replayed", ids.len() - failed, ids.len()));
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(crate::EXIT_FAILED)
            })
        }
        DlqCommand::Purge {
            id,
            all,
            poison,
            filter,
            timeout,
            conn,
        } => {
            let control = kora_cli::connect::control(&conn.load(serde_json::json!({}))?)
                .await?
                .with_wait(timeout);
            if let Some(seq) = poison {
                if control.purge_poison(seq).await? {
                    say(&format!("removed poison message {seq}"));
                    return Ok(ExitCode::SUCCESS);
                }
                note(&format!(
                    "error: no poison message {seq} (`kora dlq list --poison`)"
                ));
                return Ok(ExitCode::from(crate::EXIT_BAD_INPUT));
            }
            let mut f = filter.filter()?;
            match (id, all) {
                (Some(id), false) => {
                    let key = kora_store::parse_dead_letter_id(&id)
                        .with_context(|| format!("{id:?} is not a dead-letter id"))?;
                    f.run_id = Some(key.run_id);
                    f.id = Some(id.clone());
                    let purged = control.purge(&f, &actor()).await?;
                    anyhow::ensure!(
                        purged == 1,
                        "no open dead letter {id} (`kora dlq list --any-state --run RUN`)"
                    );
                    say(&format!("purged {id}"));
                }
                (None, true) => {
                    let purged = control.purge(&f, &actor()).await?;
                    say(&format!("purged {purged} dead letter(s)"));
                }
                _ => anyhow::bail!("name one dead letter ID, or use --all with filters (not both)"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
