//! The `kora` command line: every command, argument and help text (clap). The commands
//! themselves are in `commands/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use kora_server::ServerConfig;

#[derive(Parser)]
#[command(
    name = "kora",
    version,
    about = "Kora runs Kailash-style workflows: a graph of nodes (id, type, config) joined by connections.",
    long_about = "Kora runs Kailash-style workflows: a graph of nodes (id, type, config) joined by \
connections (source, output path, target, input).\n\n\
It reads workflows in every shape Kailash writes (Workflow.to_dict, WorkflowBuilder.from_dict, \
export_workflow) and Kora's own, as JSON or YAML.\n\n\
Start here:\n  kora run examples/customer-routing/workflow.yaml\n  kora validate my-workflow.json\n  kora nodes\n  kora dev          # every role in one process, on the local NATS and PostgreSQL",
    after_help = "Exit codes: 0 success, 1 the run failed, 2 unusable input.\nLogs go to stderr; set KORA_LOG=info (or debug) for more."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Log more (repeat for debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Table,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run a workflow in this process and print its results.
    ///
    /// The whole engine (scheduler, coordinator, workers) runs embedded with an in-memory
    /// broker; nothing else needs to be installed. The results are Kailash's shape:
    /// {node_id: output}, with null for skipped nodes and {"error", "error_type", "failed": true}
    /// for a failed leaf.
    #[command(
        after_help = "Examples:\n  kora run examples/customer-routing/workflow.yaml\n  kora run wf.json --params '{\"fetch\": {\"limit\": 10}}' --format table\n  kora run wf.json --params params.yaml --store sqlite:runs.db"
    )]
    Run {
        /// The workflow file (JSON or YAML, any Kailash shape).
        file: PathBuf,
        /// Runtime parameters: inline JSON or a JSON/YAML file. Node-scoped entries look like
        /// {"node_id": {"param": value}}; other top-level keys are workflow-level.
        #[arg(long, value_name = "FILE_OR_JSON")]
        params: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        /// Where the run ledger lives: memory, or sqlite:PATH to keep it.
        #[arg(long, default_value = "memory", value_name = "memory|sqlite:PATH")]
        store: String,
        /// File nodes read only below this directory [default: the workflow file's directory].
        #[arg(long, value_name = "DIR")]
        data_root: Option<PathBuf>,
        /// Python interpreters kept warm for PythonCodeNode.
        #[arg(long, default_value_t = 2)]
        python_workers: usize,
        /// Give up waiting after this long: 30s, 5m, 1h...
        #[arg(long, value_name = "DURATION", value_parser = kora_model::duration::parse)]
        timeout: Option<Duration>,
    },
    /// Check a workflow and report every problem, each naming its node and field.
    #[command(
        after_help = "Examples:\n  kora validate wf.json\n  kora validate wf.yaml --params params.json --format json"
    )]
    Validate {
        file: PathBuf,
        /// Parameters the run will get (they can satisfy required inputs and redacted secrets).
        #[arg(long, value_name = "FILE_OR_JSON")]
        params: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// List the node types this build can run, with their parameters and outputs.
    /// A live view of an installation: runs finished per workflow in the last minute (rate,
    /// p50 and p99 end-to-end time), live runs, queue backlogs and their oldest waiting task,
    /// workers seen, and stuck runs. Read from the ledger and JetStream; redrawn in place.
    #[command(
        after_help = "Examples:\n  kora top\n  kora top --window 5m --interval 5s\n  kora top --once --format json | jq '.queues'"
    )]
    Top {
        /// Print one snapshot and exit (for scripts: with --format json).
        #[arg(long)]
        once: bool,
        /// How often the view is redrawn.
        #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = kora_model::duration::parse)]
        interval: Duration,
        /// How far back throughput and run times look.
        #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = kora_model::duration::parse)]
        window: Duration,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
    #[command(
        after_help = "docs/nodes.md is this list as Markdown: kora nodes --markdown > docs/nodes.md"
    )]
    Nodes {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Print the node reference as Markdown (what docs/nodes.md holds).
        #[arg(long)]
        markdown: bool,
    },
    /// Run Kora's roles as a long-lived process on NATS JetStream and PostgreSQL.
    ///
    /// Any number of processes may run any combination of roles against the same NATS
    /// server and database. Configuration is layered: built-in defaults < --config FILE (TOML;
    /// deploy/kora.toml documents every key) < KORA_SECTION__KEY environment variables (e.g.
    /// KORA_WORKER__CONCURRENCY=32, KORA_TASKS__ACK_WAIT=60s) < flags (which also read
    /// KORA_NATS_URL, KORA_DATABASE_URL, KORA_PREFIX). Durations are written 30s, 1h 30m or as
    /// seconds; a misspelled key is an error naming it and where it came from. SIGTERM or
    /// Ctrl-C drains (workers finish or hand back their tasks); a second signal stops at once.
    /// A role that fails stops the others (they drain) and the process exits 1; /healthz says
    /// which role failed until then.
    #[command(
        after_help = "Examples:\n  kora serve --role all\n  kora serve --role scheduler,coordinator --database-url postgres://127.0.0.1/kora\n  KORA_NATS_URL=nats://n1:4222,nats://n2:4222 kora serve --role worker --concurrency 32"
    )]
    Serve {
        /// Roles to run: scheduler, coordinator, worker, gateway (comma-separated), or all.
        #[arg(long, default_value = "all")]
        role: String,
        #[command(flatten)]
        conn: Conn,
        /// Worker queue to serve.
        #[arg(long)]
        queue: Option<String>,
        /// Tasks a worker runs at once.
        #[arg(long)]
        concurrency: Option<usize>,
        /// File nodes read only below this directory.
        #[arg(long, value_name = "DIR")]
        data_root: Option<PathBuf>,
        /// Serve GET /metrics (Prometheus text) and /healthz on this address, e.g. 0.0.0.0:9464.
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<String>,
        /// Log JSON lines instead of text.
        #[arg(long)]
        log_json: bool,
    },
    /// Run every role (scheduler, coordinator, worker, gateway) in this process against the
    /// local NATS and PostgreSQL: the quickest way to a working installation.
    ///
    /// It uses the same settings as every other command (NATS nats://127.0.0.1:4222, prefix
    /// kora, the ledger postgres://127.0.0.1:5432/kora; KORA_* variables and --config as for
    /// `kora serve`), so `kora submit` in another terminal finds it with no settings. It creates
    /// the ledger database if it is missing. If no NATS server answers on a local address it
    /// starts the nats-server on your PATH there, with JetStream and its store in the data
    /// folder, and stops it on exit; if PostgreSQL does not answer it says how to start it.
    /// The data folder also keeps the gateway's key pepper and an admin API key of the default
    /// tenant (`admin.key`, readable only by you), made on the first start and kept after.
    /// Ctrl-C drains and stops.
    #[command(
        after_help = "Example:\n  kora dev                                          # terminal 1: prints where everything is\n  kora submit examples/diamond/workflow.json --wait # terminal 2\n  curl -s localhost:8080/v1/runs -H \"Authorization: Bearer $(cat .kora/admin.key)\"\n\nFor a fleet, run `kora serve` processes instead (kora serve --help)."
    )]
    Dev {
        #[command(flatten)]
        conn: Conn,
        /// Where kora dev keeps its key pepper, its API key and a NATS store it started.
        #[arg(long, value_name = "DIR", default_value = ".kora")]
        data_dir: PathBuf,
        /// Tasks the worker runs at once.
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Submit a workflow run to a Kora deployment; with --wait, print its results like `kora run`.
    #[command(
        after_help = "Examples:\n  kora submit wf.json --wait\n  kora submit wf.yaml --params '{\"fetch\": {\"limit\": 10}}' --idempotency-key order-42\n\nA W3C trace context in TRACEPARENT links the run's trace (one per run) to the caller's."
    )]
    Submit {
        file: PathBuf,
        #[arg(long, value_name = "FILE_OR_JSON")]
        params: Option<String>,
        /// Submitting again with the same key is the same run (its run id derives from the key).
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
        /// `high`: workers take this run's tasks before waiting `normal` ones.
        #[arg(long, value_enum)]
        priority: Option<PriorityArg>,
        /// The tenant the run belongs to (its idempotency keys are that tenant's).
        #[arg(long, default_value = kora_model::tenant::DEFAULT, value_parser = tenant)]
        tenant: String,
        /// Wait for the run to finish and print its results (reads the ledger: needs the database URL).
        #[arg(long)]
        wait: bool,
        /// With --wait, give up after this long (30s, 5m); without, how long to wait for a keyed
        /// submission to be taken in.
        #[arg(long, value_name = "DURATION", value_parser = kora_model::duration::parse)]
        timeout: Option<Duration>,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
    /// Inspect runs in the ledger.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Triggers: messages on a NATS subject start runs of a registered workflow.
    #[command(
        after_help = "Examples:\n  kora triggers add orders --subject shop.orders --workflow order.yaml\n  nats pub shop.orders '{\"order_id\": 42}'      # starts a run; the message is its parameters\n  kora triggers list\n  kora triggers pause orders                       # messages wait...\n  kora triggers resume orders                      # ...and run now\n\nMessages published while no Kora process runs are kept and processed when one starts.\nEach message starts exactly one run, however many schedulers run."
    )]
    Triggers {
        #[command(subcommand)]
        command: TriggersCommand,
    },
    /// Dead letters: node attempts that failed for good (no retry left, or a permanent error).
    #[command(
        after_help = "Examples:\n  kora dlq list --since 1h --reason permanent_error\n  kora dlq show RUN:fetch:0:1\n  kora dlq replay RUN:fetch:0:1 --set limit=10\n  kora dlq replay --all --workflow orders\n  kora dlq purge --since 30d\n\nA replay runs the node again with the inputs it had, overridden by --set/--input-file, and\nresumes its run from there: nodes that completed keep their outputs and do not run again.\nEvery replay is recorded (who, when, which new attempt): `kora dlq list --any-state`."
    )]
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// API keys for the HTTP gateway: create (the key is printed once), list, revoke.
    #[command(
        after_help = "Examples:\n  kora keys create --tenant acme --role operator --name ci --expires 90d\n  kora keys create --tenant acme --role viewer --scopes audit:read --format json\n  kora keys list --tenant acme\n  kora keys revoke 3f9a0c12b4e7\n\nRoles: viewer (read runs, workflows, dead letters, triggers), operator (viewer + submit,\ncancel, retry, replay, register workflows, manage triggers), admin (everything, including\nkeys, purges and the audit trail). Needs gateway.key_pepper (KORA_GATEWAY__KEY_PEPPER), the\nsame as the gateways'. Only a keyed hash of each key is stored."
    )]
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The deployment checklist: check the effective configuration of the roles a process
    /// will serve, and the NATS and PostgreSQL it reaches, and list each failure with its fix
    /// (credentials and TLS, stream replicas, the NATS version, the ledger role, the gateway's
    /// JWT secret, docs, CORS and TLS, the sandbox, the data root, the metrics address,
    /// secrets written in the configuration file). Exits 1 if any check fails.
    ///
    /// With `environment = "production"` (KORA_ENVIRONMENT=production), `kora serve` runs the
    /// same checks at start-up and refuses to start on a failure unless the check is named in
    /// `checks.allow` (each such start is logged).
    #[command(
        after_help = "Examples:\n  kora check --config /etc/kora/kora.toml\n  kora check --role worker --format json\n  KORA_CHECKS__ALLOW='[\"stream-replicas\"]' kora check"
    )]
    Check {
        /// The roles to check for: scheduler, coordinator, worker, gateway (comma-separated), or all.
        #[arg(long, default_value = "all")]
        role: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
    /// Prepare an installation with an administrator's credentials: create or update its NATS
    /// streams and the consumers of its worker queues, and migrate the ledger. Roles whose NATS
    /// user may not manage streams then run with `nats.provision = false` (docs/security.md).
    ///
    /// With --nats-config, print instead the nats-server `authorization` block giving each role
    /// its own user with exactly the permissions that role needs (passwords read by nats-server
    /// from KORA_NATS_<USER>_PASSWORD), for this installation's prefix and queues.
    #[command(
        after_help = "Examples:\n  kora setup --queue default --queue reports\n  kora setup --nats-config --queue default > /etc/nats/kora-users.conf\n  kora setup --nats-config --user control=scheduler,coordinator --user worker=worker --user admin=admin"
    )]
    Setup {
        /// A worker queue whose consumers to create (repeat for several) [default: default].
        #[arg(long = "queue", value_name = "QUEUE")]
        queues: Vec<String>,
        /// Print the nats-server users and permissions instead of changing anything.
        #[arg(long)]
        nats_config: bool,
        /// With --nats-config: a user NAME=ROLE[,ROLE…] (repeat; a process serving several
        /// roles needs a user with all of them) [default: one user per role, and admin].
        #[arg(long = "user", value_name = "NAME=ROLES", requires = "nats_config")]
        users: Vec<String>,
        /// Only the NATS streams and consumers; leave the ledger alone.
        #[arg(long, conflicts_with = "nats_config")]
        skip_ledger: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// The audit log: entries AuditLogNode recorded, written to the ledger with their node's
    /// outcome (once, however often a result is delivered); with --api, the gateway's trail of
    /// mutating API calls (who, tenant, action, target, outcome, client, request id).
    #[command(
        after_help = "Examples:\n  kora audit --since 1h\n  kora audit --run RUN_ID --event-type data_export --format json\n  kora audit --api --tenant acme --action runs.cancel"
    )]
    Audit {
        /// The API's audit trail instead of AuditLogNode's entries.
        #[arg(long)]
        api: bool,
        /// With --api: only this tenant's calls.
        #[arg(long, requires = "api", value_parser = tenant)]
        tenant: Option<String>,
        /// With --api: only this caller's (`key:<id>`, `jwt:<subject>`).
        #[arg(long, requires = "api")]
        actor: Option<String>,
        /// With --api: only this action (`runs.submit`, `keys.create`, ...).
        #[arg(long, requires = "api")]
        action: Option<String>,
        /// Only this run's entries.
        #[arg(long, conflicts_with = "api")]
        run: Option<String>,
        /// Only entries of this event_type.
        #[arg(long, conflicts_with = "api")]
        event_type: Option<String>,
        /// Only entries at or after this: 30m, 12h, 7d, or epoch milliseconds.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a key; prints it once (`--format json`: {"key_id", "key", ...}).
    Create {
        /// The tenant it acts in.
        #[arg(long, value_parser = tenant)]
        tenant: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
        /// Scopes beyond the role's, comma-separated (runs:read, runs:write, runs:cancel,
        /// dlq:read, dlq:replay, dlq:purge, workflows:read, workflows:write, triggers:read,
        /// triggers:write, keys:admin, audit:read, nodes:code).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Valid for this long (30d, 12h); forever without it.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// What it is for.
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
    /// Keys (never their secrets), oldest first.
    List {
        #[arg(long, value_parser = tenant)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a key: every gateway refuses it within gateway.key_cache_ttl (5s by default).
    Revoke {
        key_id: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PriorityArg {
    Normal,
    High,
}

#[derive(Subcommand)]
pub(crate) enum TriggersCommand {
    /// Register (or replace) a trigger.
    Add {
        name: String,
        /// The NATS subject whose messages start runs (wildcards allowed).
        #[arg(long, required_unless_present = "cron", conflicts_with = "cron")]
        subject: Option<String>,
        /// Or a cron schedule: "*/5 * * * *" (minute hour day month weekday), or with a
        /// leading seconds field. One run per tick, however many schedulers run.
        #[arg(long, value_name = "SCHEDULE")]
        cron: Option<String>,
        /// The workflow to run.
        #[arg(long, value_name = "FILE")]
        workflow: PathBuf,
        /// Parameters of every run (a message's JSON object keys go over them).
        #[arg(long, value_name = "FILE_OR_JSON")]
        params: Option<String>,
        /// The tenant its runs belong to.
        #[arg(long, default_value = kora_model::tenant::DEFAULT, value_parser = tenant)]
        tenant: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Registered triggers.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
    /// Stop starting runs; messages wait.
    Pause {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Start runs again, first for the messages that waited.
    Resume {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a trigger: no more runs start from it (messages it captured and did not start
    /// yet are dropped).
    Delete {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Which dead letters a dlq command acts on.
#[derive(clap::Args, Clone)]
pub(crate) struct DlqFilterArgs {
    /// Only this workflow (its name).
    #[arg(long)]
    pub(crate) workflow: Option<String>,
    /// Only this reason: worker_lost, timeout, retries_exhausted, permanent_error, TaskTooLarge,
    /// EncodeError or ChildWorkflowError.
    #[arg(long)]
    pub(crate) reason: Option<String>,
    /// Only those failed since: 30m, 12h, 7d, or epoch milliseconds.
    #[arg(long, value_name = "WHEN")]
    pub(crate) since: Option<String>,
    /// Only this run's.
    #[arg(long, value_name = "RUN_ID")]
    pub(crate) run: Option<String>,
}

impl DlqFilterArgs {
    pub(crate) fn filter(&self) -> anyhow::Result<kora_store::DeadLetterFilter> {
        Ok(kora_store::DeadLetterFilter {
            workflow: self.workflow.clone(),
            reason: self.reason.clone(),
            since_ms: self
                .since
                .as_deref()
                .map(|s| kora_client::parse_since(s, kora_model::now_ms()))
                .transpose()?,
            run_id: self.run.clone(),
            ..Default::default()
        })
    }
}

#[derive(Subcommand)]
pub(crate) enum DlqCommand {
    /// Open dead letters, oldest first.
    List {
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// Include replayed and purged ones (with who replayed them, and when).
        #[arg(long)]
        any_state: bool,
        /// List messages a role could not use (undecodable, unknown run or node) instead.
        #[arg(long)]
        poison: bool,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
    /// One dead letter: its inputs, error, and every attempt of its node.
    Show {
        id: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
    /// Run a dead-lettered node again (with changed inputs) and resume its run from there.
    Replay {
        /// The dead letter to replay; or use --all with filters.
        id: Option<String>,
        /// Replay every open dead letter the filters select.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// Override an input of the replayed node: key=value (JSON, or else a string).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Override inputs from a JSON object in a file.
        #[arg(long, value_name = "FILE")]
        input_file: Option<PathBuf>,
        /// How long to wait for the coordinator to apply each replay (the request is kept and
        /// applied later if none answers in time): 15s, 2m, ...
        #[arg(long, default_value = "15s", value_name = "DURATION", value_parser = kora_model::duration::parse)]
        timeout: Duration,
        #[command(flatten)]
        conn: Conn,
    },
    /// Close dead letters without replaying them (their attempts stay in the ledger).
    Purge {
        /// The dead letter to purge; or use --all with filters.
        id: Option<String>,
        #[arg(long)]
        all: bool,
        /// Remove this poison message (its sequence in `kora dlq list --poison`).
        #[arg(long, value_name = "SEQ")]
        poison: Option<u64>,
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// How long to wait for the coordinator to apply it (the request is kept either way).
        #[arg(long, default_value = "15s", value_name = "DURATION", value_parser = kora_model::duration::parse)]
        timeout: Duration,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
pub(crate) enum RunsCommand {
    /// A run's status, error and node results.
    #[command(
        after_help = "Examples:\n  kora runs show RUN_ID\n  kora runs show RUN_ID --wait --format json   # after a replay or a retry: wait for it to end"
    )]
    Show {
        run_id: String,
        /// Wait until the run ends (succeeded, failed, cancelled) before showing it, up to
        /// --timeout.
        #[arg(long)]
        wait: bool,
        /// With --wait, how long to wait: 30s, 5m.
        #[arg(long, value_name = "DURATION", value_parser = kora_model::duration::parse, default_value = "60s")]
        timeout: Duration,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
    /// Resume a failed run from where it failed: its dead-lettered nodes run again (as they
    /// were; use `kora dlq replay --set` to change their inputs), completed nodes are kept.
    /// With --from NODE, restart a run that ended (failed, succeeded or cancelled) from that
    /// node: it and every node downstream of it run again; the others keep their outputs.
    #[command(
        after_help = "Examples:\n  kora runs retry RUN_ID\n  kora runs retry RUN_ID --from enrich\n  kora runs retry RUN_ID --from enrich --set limit=10\n\nThe old attempts stay in the ledger (`kora runs show`), superseded by the new ones; who\nrestarted the run and when is recorded on the node's previous attempt."
    )]
    Retry {
        run_id: String,
        /// Restart from this node (and re-run everything downstream of it).
        #[arg(long, value_name = "NODE")]
        from: Option<String>,
        /// With --from: override an input of that node, key=value (JSON, or else a string).
        #[arg(long = "set", value_name = "KEY=VALUE", requires = "from")]
        sets: Vec<String>,
        /// With --from: override its inputs from a JSON object in a file.
        #[arg(long, value_name = "FILE", requires = "from")]
        input_file: Option<PathBuf>,
        /// How long to wait for the coordinator to apply it (the request is kept either way).
        #[arg(long, default_value = "15s", value_name = "DURATION", value_parser = kora_model::duration::parse)]
        timeout: Duration,
        #[command(flatten)]
        conn: Conn,
    },
    /// Cancel a running run: nothing more is dispatched, its running tasks are stopped, their
    /// late results are ignored, and the run is recorded `cancelled` (with who asked).
    Cancel {
        run_id: String,
        /// How long to wait for the coordinator to record it (the request is kept either way).
        #[arg(long, default_value = "15s", value_name = "DURATION", value_parser = kora_model::duration::parse)]
        timeout: Duration,
        #[command(flatten)]
        conn: Conn,
    },
    /// Recent runs, newest first.
    List {
        /// Only runs in this state: queued, running, succeeded, failed, cancelled or rejected.
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this workflow (its name).
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs of this tenant (all tenants without it).
        #[arg(long, value_parser = tenant)]
        tenant: Option<String>,
        /// Only runs created since then: 30m, 12h, 7d, or epoch ms.
        #[arg(long)]
        since: Option<String>,
        /// Only stuck runs: running with no progress for monitoring.stuck_after_secs, or with
        /// a node on its monitoring.retry_loop_attempts-th attempt; with the reason the
        /// coordinators' monitor gave (no_progress, no_worker, retry_loop), oldest first.
        #[arg(long, conflicts_with_all = ["status", "since"])]
        stuck: bool,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Where the deployment is.
#[derive(clap::Args, Clone)]
pub(crate) struct Conn {
    /// TOML configuration file (see `kora serve --help` for the layering).
    #[arg(long, value_name = "FILE", env = "KORA_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// NATS server URL(s), comma-separated.
    #[arg(long, value_name = "URL", env = "KORA_NATS_URL")]
    pub(crate) nats_url: Option<String>,
    /// PostgreSQL URL of the run ledger.
    #[arg(long, value_name = "URL", env = "KORA_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// Installation prefix of subjects and streams (installations sharing a server differ here).
    #[arg(long, env = "KORA_PREFIX")]
    pub(crate) prefix: Option<String>,
}

impl Conn {
    /// The installation's configuration: defaults < `--config` < `KORA_SECTION__KEY` < these
    /// flags < `extra` (a command's own flags, as `{section: {key: value}}`).
    pub(crate) fn load(&self, extra: serde_json::Value) -> anyhow::Result<ServerConfig> {
        let mut flags = serde_json::json!({});
        if let Some(u) = &self.nats_url {
            flags["nats"]["url"] = u.clone().into();
        }
        if let Some(p) = &self.prefix {
            flags["nats"]["prefix"] = p.clone().into();
        }
        if let Some(u) = &self.database_url {
            flags["database"]["url"] = u.clone().into();
        }
        merge(&mut flags, extra);
        Ok(ServerConfig::load(
            self.config.as_deref(),
            std::env::vars(),
            flags,
        )?)
    }
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
        for (k, v) in b {
            match a.get_mut(&k) {
                Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                _ => {
                    a.insert(k, v);
                }
            }
        }
    }
}

/// A tenant name, checked.
pub(crate) fn tenant(s: &str) -> Result<String, String> {
    kora_model::tenant::check_name(s).map(|()| s.to_string())
}
