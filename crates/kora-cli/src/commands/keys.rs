//! `kora keys`: API keys for the gateway, made and revoked directly in the ledger.

use std::process::ExitCode;

use anyhow::Context;

use crate::args::{Format, KeysCommand};
use crate::render::{self, KeyRow, say};

pub(crate) async fn keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Create {
            tenant,
            role,
            scopes,
            expires,
            name,
            format,
            conn,
        } => {
            let cfg = conn.load(serde_json::json!({}))?;
            cfg.gateway
                .validate_for_serving()
                .map_err(|e| anyhow::anyhow!("cannot make a key: {e}"))?;
            let spec = kora_gateway::CreateKey {
                name,
                role,
                scopes: scopes.into_iter().filter(|s| !s.is_empty()).collect(),
                expires_in: expires,
            };
            let (key, credential) = kora_gateway::new_key(
                cfg.gateway.key_pepper.expose(),
                &tenant,
                &spec,
                &format!("cli:{}", kora_cli::operator::actor()),
                kora_model::now_ms(),
            )
            .map_err(|e| anyhow::anyhow!(e))?;
            let store = kora_cli::connect::store(&cfg).await?;
            store
                .create_api_key(&key)
                .await
                .context("cannot store the key")?;
            if format == Format::Json {
                let mut row = serde_json::to_value(KeyRow::from(&key))?;
                row["key"] = credential.into();
                return render::json(&row).map(|()| ExitCode::SUCCESS);
            }
            say(&format!(
                "key {} for tenant {} ({}): shown once, keep it secret\n{credential}",
                key.key_id, key.tenant, key.role
            ));
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::List {
            tenant,
            format,
            conn,
        } => {
            let store = kora_cli::connect::store(&conn.load(serde_json::json!({}))?).await?;
            let rows: Vec<KeyRow> = store
                .api_keys(tenant.as_deref())
                .await?
                .iter()
                .map(KeyRow::from)
                .collect();
            render::keys(&rows, format)?;
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Revoke { key_id, conn } => {
            let store = kora_cli::connect::store(&conn.load(serde_json::json!({}))?).await?;
            if store
                .revoke_api_key(&key_id, None, kora_model::now_ms())
                .await?
            {
                say(&format!(
                    "key {key_id} revoked: every gateway refuses it within gateway.key_cache_ttl"
                ));
                Ok(ExitCode::SUCCESS)
            } else {
                anyhow::bail!("no key {key_id} (`kora keys list`)")
            }
        }
    }
}
