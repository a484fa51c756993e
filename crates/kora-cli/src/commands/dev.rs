//! `kora dev`: every role (scheduler, coordinator, worker, gateway) in this process against the
//! local NATS and PostgreSQL, for trying Kora on one machine.
//!
//! It uses the same defaults as every other command (NATS `127.0.0.1:4222`, prefix `kora`, the
//! ledger `postgres://127.0.0.1:5432/kora`, the same `KORA_*` variables and `--config`), so
//! `kora submit` in another terminal needs no settings. What it adds to `kora serve --role all`:
//! checks that say what to start when a service is missing (and a `nats-server` on the PATH
//! started for it), a gateway key pepper and an admin API key kept in its data folder, the API
//! docs page turned on, and a banner saying where everything is.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use kora_nodes::Registry;
use kora_store::pg::PgStore;

use crate::args::Conn;
use crate::render::{note, say};

pub(crate) struct Args {
    pub(crate) conn: Conn,
    pub(crate) data_dir: PathBuf,
    pub(crate) concurrency: Option<usize>,
}

/// How long the gateway gets to listen before the banner says so anyway.
const GATEWAY_START: Duration = Duration::from_secs(30);

pub(crate) async fn dev(a: Args) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&a.data_dir).with_context(|| {
        format!(
            "cannot make the data folder {} (choose another with --data-dir)",
            a.data_dir.display()
        )
    })?;
    let mut extra = serde_json::json!({"gateway": {"docs": true}});
    if let Some(c) = a.concurrency {
        extra["worker"]["concurrency"] = c.into();
    }
    let mut cfg = a.conn.load(extra.clone())?;
    // A pepper from the configuration (shared with `kora keys`) wins; otherwise one kept here.
    let pepper_file = a.data_dir.join("pepper");
    if cfg.gateway.key_pepper.is_empty() {
        extra["gateway"]["key_pepper"] = read_or_make_secret(&pepper_file)?.into();
        cfg = a.conn.load(extra)?;
    }

    let mut nats = match crate::services::nats(&cfg.nats.url, &a.data_dir).await {
        Ok(n) => n,
        Err(e) => {
            note(&format!("error: {e:#}"));
            return Ok(ExitCode::from(crate::EXIT_BAD_INPUT));
        }
    };
    if let Some(n) = &nats {
        note(&format!(
            "started {} (pid {}) with JetStream in {}; it stops with kora dev (log: {})",
            n.program.display(),
            n.pid(),
            n.store_dir.display(),
            n.log.display()
        ));
        if let Some(v) = crate::services::nats_older_than_2_12(&n.program).await {
            note(&format!(
                "note: that nats-server is {v}: fine for trying Kora; in production use 2.12 or later (older ones lose acknowledged work-queue state when killed)"
            ));
        }
    }

    let db = kora_store::pg::redact(&cfg.database.url);
    let db_has_password = db != cfg.database.url;
    let ledger = match prepare_ledger(&cfg).await {
        Ok(l) => l,
        Err(e) => {
            note(&format!("error: {e}"));
            if let Some(n) = nats.as_mut() {
                n.stop().await;
            }
            return Ok(ExitCode::from(crate::EXIT_BAD_INPUT));
        }
    };
    if ledger.created {
        note(&format!("created the ledger database {db}"));
    }
    let key_file = a.data_dir.join("admin.key");
    let reused = dev_key(&ledger.store, cfg.gateway.key_pepper.expose(), &key_file)
        .await
        .context("cannot make the dev API key")?;
    ledger.store.close().await;

    let token = tokio_util::sync::CancellationToken::new();
    let second = kora_runtime::shutdown::install(token.clone());
    let roles = kora_server::parse_roles("all")?;
    let gateway_addr = cfg.gateway.addr.clone();
    let banner = Banner {
        nats: cfg.nats.url.clone(),
        prefix: cfg.nats.prefix.clone(),
        db,
        db_has_password,
        gateway: gateway_addr.clone(),
        key_file,
        key_reused: reused,
        started_nats: nats.is_some(),
    };
    // Boxed: the roles' futures are large, and this one lives across the wait below.
    let mut served = Box::pin(kora_server::serve(cfg, &roles, Registry::empty(), token));
    let listening = tokio::select! {
        up = wait_listening(&gateway_addr, GATEWAY_START) => up,
        r = &mut served => {
            if let Some(n) = nats.as_mut() {
                n.stop().await;
            }
            return finish(r);
        }
    };
    if !listening {
        note(&format!(
            "warning: the gateway is not listening on {gateway_addr} yet"
        ));
    }
    say(&banner.to_string());
    let code = tokio::select! {
        r = &mut served => finish(r),
        _ = second => {
            note("second signal: stopping without draining");
            Ok(ExitCode::from(130))
        }
    };
    if let Some(n) = nats.as_mut() {
        n.stop().await;
    }
    note("kora dev stopped");
    code
}

fn finish(r: Result<(), kora_server::Error>) -> anyhow::Result<ExitCode> {
    match r {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e @ kora_server::Error::RoleFailed { .. }) => {
            note(&format!("error: {e}"));
            Ok(ExitCode::from(crate::EXIT_FAILED))
        }
        Err(e) => Err(e.into()),
    }
}

struct Ledger {
    store: PgStore,
    created: bool,
}

/// Creates the ledger database if it is missing and brings its schema up to date; the error
/// says what to do (start PostgreSQL, name a role, create the database).
async fn prepare_ledger(cfg: &kora_server::ServerConfig) -> Result<Ledger, String> {
    let db = kora_store::pg::redact(&cfg.database.url);
    let what_to_do = |e: kora_store::Error| {
        let mut text = format!("cannot open the ledger at {db}: {e}");
        if e.to_string().contains("is PostgreSQL running") {
            text.push_str(
                "\n  start it (Debian: `sudo pg_ctlcluster 15 main start`; macOS: `brew services start postgresql`; \
                 with a container: `podman run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:15`), \
                 or point KORA_DATABASE_URL at one",
            );
        }
        text
    };
    let created = PgStore::create_database_if_missing(&cfg.database)
        .await
        .map_err(what_to_do)?
        .is_some();
    let store = PgStore::connect(&cfg.database).await.map_err(what_to_do)?;
    Ok(Ledger { store, created })
}

/// The admin key of the default tenant kept in `file`: reused while the ledger still accepts
/// it (returns true), otherwise made anew and written there, readable only by this user.
async fn dev_key(store: &PgStore, pepper: &str, file: &Path) -> anyhow::Result<bool> {
    use kora_store::Directory;
    let now = kora_model::now_ms();
    if let Ok(text) = std::fs::read_to_string(file)
        && let Some((id, secret)) = kora_gateway::keys::split(text.trim())
    {
        let keys = store.api_keys(Some(kora_model::tenant::DEFAULT)).await?;
        if keys
            .iter()
            .any(|k| k.key_id == id && kora_gateway::keys::check(pepper, k, secret, now).is_ok())
        {
            return Ok(true);
        }
    }
    let spec = kora_gateway::CreateKey {
        name: "kora dev".into(),
        role: "admin".into(),
        scopes: Vec::new(),
        expires_in: None,
    };
    let (key, credential) = kora_gateway::new_key(
        pepper,
        kora_model::tenant::DEFAULT,
        &spec,
        &format!("cli:{}", kora_cli::operator::actor()),
        now,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    store.create_api_key(&key).await?;
    write_private(file, &credential)?;
    Ok(false)
}

/// The secret in `file`, or a new random one (256 bits, hex) written there.
fn read_or_make_secret(file: &Path) -> anyhow::Result<String> {
    if let Ok(text) = std::fs::read_to_string(file) {
        let text = text.trim();
        if text.len() >= 32 {
            return Ok(text.to_string());
        }
    }
    let secret = kora_gateway::keys::random_hex(32).map_err(|e| anyhow::anyhow!(e))?;
    write_private(file, &secret)?;
    Ok(secret)
}

/// Writes `text` to `file`, readable and writable only by its owner.
fn write_private(file: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    writeln!(f, "{text}").with_context(|| format!("cannot write {}", file.display()))?;
    Ok(())
}

/// Whether something accepts connections on `addr` within `limit`.
async fn wait_listening(addr: &str, limit: Duration) -> bool {
    let until = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < until {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// What `kora dev` prints once its roles run.
struct Banner {
    nats: String,
    prefix: String,
    /// `db` is redacted: the password cannot be shown.
    db: String,
    db_has_password: bool,
    gateway: String,
    key_file: PathBuf,
    key_reused: bool,
    started_nats: bool,
}

impl std::fmt::Display for Banner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let defaults = kora_server::ServerConfig::default();
        let api = format!("http://{}", self.gateway);
        let key = self.key_file.display();
        writeln!(
            f,
            "Kora dev is running: scheduler, coordinator, worker and gateway in this process."
        )?;
        let started = if self.started_nats {
            " (started by kora dev)"
        } else {
            ""
        };
        writeln!(
            f,
            "  NATS     {}{started}, prefix {}",
            self.nats, self.prefix
        )?;
        writeln!(f, "  ledger   {}", self.db)?;
        writeln!(f, "  API      {api}/v1  (docs {api}/docs)")?;
        writeln!(f, "  dashboard {api}/ui/  (sign in with the API key below)")?;
        writeln!(f, "  metrics  {api}/metrics")?;
        let made = if self.key_reused { "kept" } else { "new" };
        writeln!(f, "  API key  {key} (admin of tenant default, {made})")?;
        writeln!(f, "Try, in another terminal:")?;
        // Another terminal reads the defaults; say what differs from them.
        let mut env = Vec::new();
        if self.nats != defaults.nats.url {
            env.push(format!("KORA_NATS_URL={}", self.nats));
        }
        if self.prefix != defaults.nats.prefix {
            env.push(format!("KORA_PREFIX={}", self.prefix));
        }
        if self.db != defaults.database.url {
            if self.db_has_password {
                env.push("KORA_DATABASE_URL=<the URL set here, with its password>".into());
            } else {
                env.push(format!("KORA_DATABASE_URL={}", self.db));
            }
        }
        if !env.is_empty() {
            writeln!(f, "  export {}", env.join(" "))?;
        }
        writeln!(f, "  kora submit examples/diamond/workflow.json --wait")?;
        writeln!(
            f,
            "  curl -s {api}/v1/runs -H \"Authorization: Bearer $(cat {key})\""
        )?;
        write!(f, "Ctrl-C drains and stops.")
    }
}
