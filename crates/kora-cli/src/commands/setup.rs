//! `kora setup`: what an administrator prepares once, so roles can run with least privilege:
//! the NATS streams and consumers, the ledger's schema, and (`--nats-config`) the nats-server
//! users that give each role only what it needs.

use std::process::ExitCode;

use anyhow::Context;
use kora_broker::permissions::{self, User};

use crate::args::Conn;

pub(crate) struct Args {
    pub(crate) queues: Vec<String>,
    pub(crate) nats_config: bool,
    pub(crate) users: Vec<String>,
    pub(crate) skip_ledger: bool,
    pub(crate) conn: Conn,
}

pub(crate) async fn setup(a: Args) -> anyhow::Result<ExitCode> {
    let cfg = a.conn.load(serde_json::json!({}))?;
    let subjects = cfg.nats.subjects();
    let mut queues: Vec<&str> = a.queues.iter().map(String::as_str).collect();
    if queues.is_empty() {
        queues.push(kora_model::subjects::DEFAULT_QUEUE);
    }
    for q in &queues {
        if q.is_empty()
            || !q
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            anyhow::bail!("--queue {q:?}: use letters, digits, '_' or '-'");
        }
    }
    if a.nats_config {
        let users = if a.users.is_empty() {
            User::one_per_role()
        } else {
            a.users
                .iter()
                .map(|u| User::parse(u).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<Vec<_>>>()?
        };
        print!(
            "{}",
            permissions::nats_server_config(&subjects, &queues, &users, |u| format!(
                "${}",
                permissions::password_variable(u)
            ))
        );
        return Ok(ExitCode::SUCCESS);
    }
    let broker = kora_cli::connect::broker(&cfg, "kora-setup").await?;
    kora_broker::topology::provision(broker.as_ref(), &subjects, &queues, &cfg.topology())
        .await
        .context("cannot create the streams and consumers (`kora setup` needs a NATS user that may manage streams: the admin user)")?;
    eprintln!(
        "streams and consumers ready for prefix {} and queue(s) {}",
        subjects.prefix(),
        queues.join(", ")
    );
    if !a.skip_ledger {
        // Whatever the roles do, setup migrates: connect it as the database's owner.
        let mut owner = cfg.clone();
        owner.database.migrate = true;
        kora_cli::connect::store(&owner).await?;
        eprintln!("ledger migrated to this build's schema");
    }
    Ok(ExitCode::SUCCESS)
}
