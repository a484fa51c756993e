//! What every distributed test shares: a deployment of real `kora serve` processes under its
//! own prefix and database (removed when dropped, even when the test fails), a private
//! PostgreSQL server for restart tests, and small helpers.

pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
pub(crate) use std::time::{Duration, Instant};

pub(crate) use sqlx::Connection;

pub(crate) const NATS: &str = "nats://127.0.0.1:4222";

pub(crate) fn admin_url() -> String {
    std::env::var("KORA_TEST_PG_ADMIN")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// One installation: a prefix, a database, and the role processes started for it.
pub(crate) struct Deployment {
    pub(crate) admin: String,
    pub(crate) db: String,
    pub(crate) db_url: String,
    pub(crate) procs: Vec<Child>,
    pub(crate) env: Vec<(String, String)>,
    /// Where a process serving the gateway role listens: `http://127.0.0.1:<port>` (read by the
    /// gateway tests).
    #[allow(dead_code)]
    pub(crate) gateway: String,
}

/// A loopback port nothing listens on now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Deployment {
    pub(crate) async fn new(extra_env: &[(&str, &str)]) -> Option<Deployment> {
        Self::on(&admin_url(), extra_env).await
    }

    /// A deployment whose database is created through `admin` (another PostgreSQL server).
    pub(crate) async fn on(admin: &str, extra_env: &[(&str, &str)]) -> Option<Deployment> {
        static N: AtomicU32 = AtomicU32::new(0);
        let services_up = std::net::TcpStream::connect("127.0.0.1:4222").is_ok()
            && std::net::TcpStream::connect("127.0.0.1:5432").is_ok();
        if !services_up {
            assert!(
                std::env::var("CI").is_err(),
                "NATS or PostgreSQL not reachable; CI must not skip distributed tests"
            );
            eprintln!("skipping: NATS (4222) or PostgreSQL (5432) not reachable");
            return None;
        }
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
            % 1_000_000_000_000;
        let n = N.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("d{t}x{}x{n}", std::process::id());
        let db = format!("kora_test_{prefix}");
        let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
        let db_url = format!("{base}/{db}");
        let port = free_port();
        let mut env = vec![
            ("KORA_NATS_URL".to_string(), NATS.to_string()),
            ("KORA_DATABASE_URL".to_string(), db_url.clone()),
            ("KORA_PREFIX".to_string(), prefix.clone()),
            (
                "KORA_GATEWAY__ADDR".to_string(),
                format!("127.0.0.1:{port}"),
            ),
            (
                "KORA_GATEWAY__KEY_PEPPER".to_string(),
                format!("test-pepper-{prefix}-0123456789abcdef"),
            ),
            // Tests keep their marker files in temporary directories that PythonCodeNodes
            // write to; with the sandbox on (the default) only the data root is writable.
            // A test that needs another data root passes --data-root, which wins.
            (
                "KORA_NODES__DATA_ROOT".to_string(),
                std::env::temp_dir().to_string_lossy().into_owned(),
            ),
        ];
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Some(Deployment {
            admin: admin.to_string(),
            db,
            db_url,
            procs: Vec::new(),
            env,
            gateway: format!("http://127.0.0.1:{port}"),
        })
    }

    pub(crate) fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kora"));
        c.current_dir(root()).env_remove("KORA_CONFIG");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Starts `kora serve --role <roles>`; returns its index in `procs`.
    pub(crate) fn serve(&mut self, roles: &str, extra: &[&str]) -> usize {
        self.serve_env(roles, extra, &[])
    }

    pub(crate) fn serve_env(&mut self, roles: &str, extra: &[&str], env: &[(&str, &str)]) -> usize {
        let mut cmd = self.command();
        for (k, v) in env {
            cmd.env(k, v);
        }
        // KORA_TEST_LOGS=DIR keeps each role process's log there (for debugging a failure).
        let stderr = match std::env::var_os("KORA_TEST_LOGS") {
            Some(dir) => {
                let path =
                    Path::new(&dir).join(format!("{}-{}-{roles}.log", self.db, self.procs.len()));
                std::fs::File::create(path).map_or_else(|_| Stdio::null(), Stdio::from)
            }
            None => Stdio::null(),
        };
        let child = cmd
            .args(["serve", "--role", roles])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        self.procs.push(child);
        self.procs.len() - 1
    }

    /// Starts `kora serve --role <roles>` with its log (stderr) in `log`.
    #[allow(dead_code)]
    pub(crate) fn serve_logged(&mut self, roles: &str, log: &Path) -> usize {
        let child = self
            .command()
            .args(["serve", "--role", roles])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        self.procs.push(child);
        self.procs.len() - 1
    }

    /// The value of an environment variable the installation's processes get (the last one
    /// set wins, as for the processes).
    pub(crate) fn var(&self, name: &str) -> String {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} is not set"))
    }

    /// The installation's prefix (`KORA_PREFIX`).
    pub(crate) fn prefix(&self) -> String {
        self.var("KORA_PREFIX")
    }

    /// A connection to the machine's NATS, for a test that publishes or listens itself.
    pub(crate) async fn broker(&self) -> kora_broker::nats::JetStreamBroker {
        kora_broker::nats::JetStreamBroker::connect(&kora_broker::nats::NatsConfig {
            url: NATS.into(),
            ..Default::default()
        })
        .await
        .unwrap()
    }

    pub(crate) fn kora(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// `kora submit FILE` (no wait): the run id.
    pub(crate) fn submit(&self, file: &Path) -> String {
        let o = self.kora(&["submit", file.to_str().unwrap()]);
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)))["run_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub(crate) fn submit_wait(&self, file: &Path, params: Option<&Path>) -> serde_json::Value {
        let mut args = vec![
            "submit".to_string(),
            file.display().to_string(),
            "--wait".into(),
            "--timeout".into(),
            "60".into(),
        ];
        if let Some(p) = params {
            args.extend(["--params".into(), p.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = self.kora(&args);
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "submit printed no JSON ({e}): {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
    }

    /// Polls `kora runs show` until the run ends or `limit` passes; returns its last view.
    pub(crate) async fn wait_finished(&self, run_id: &str, limit: Duration) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let o = self.kora(&["runs", "show", run_id, "--format", "json"]);
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            if v["status"] == "succeeded" || v["status"] == "failed" || started.elapsed() > limit {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Polls `kora runs show` until the run is `status` or `limit` passes; returns its last
    /// view.
    pub(crate) async fn wait_status(
        &self,
        run_id: &str,
        status: &str,
        limit: Duration,
    ) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let o = self.kora(&["runs", "show", run_id, "--format", "json"]);
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            if v["status"] == status || started.elapsed() > limit {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub(crate) async fn finish(self) {
        drop(self);
    }
}

impl Drop for Deployment {
    /// Stops the processes, deletes the installation's streams and drops the database, even
    /// when the test failed.
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        let (db, admin) = (self.db.clone(), self.admin.clone());
        let var = |name: &str| {
            self.env
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let (nats, prefix) = (
            var("KORA_NATS_URL"),
            var("KORA_PREFIX").to_ascii_uppercase(),
        );
        // Drop runs inside the test's runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let cfg = kora_broker::nats::NatsConfig {
                    url: nats,
                    ..Default::default()
                };
                let connect = kora_broker::nats::JetStreamBroker::connect(&cfg);
                if let Ok(Ok(b)) = tokio::time::timeout(Duration::from_secs(3), connect).await {
                    let _ = b.delete_streams_with_prefix(&format!("{prefix}_")).await;
                }
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A plain HTTP/1.1 GET: the status code and the body.
pub(crate) fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A private PostgreSQL 15 server the test owns (initdb into a temporary directory, run as the
/// `postgres` user when the tests run as root), so it can be stopped and started without
/// disturbing the machine's server that other tests share.
pub(crate) struct PrivatePg {
    pub(crate) bin: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
    pub(crate) as_root: bool,
}

impl PrivatePg {
    pub(crate) fn bin() -> Option<PathBuf> {
        let bin = PathBuf::from("/usr/lib/postgresql/15/bin");
        bin.join("initdb").exists().then_some(bin)
    }

    /// [`PrivatePg::bin`] for a test that needs it: `None` (saying so) means skip, which CI
    /// never does.
    pub(crate) fn bin_or_skip() -> Option<PathBuf> {
        let bin = PrivatePg::bin();
        if bin.is_none() {
            assert!(
                std::env::var("CI").is_err(),
                "no PostgreSQL 15 binaries; CI must not skip"
            );
            eprintln!("skipping: no /usr/lib/postgresql/15/bin");
        }
        bin
    }

    pub(crate) fn run(&self, tool: &str, args: &[&str]) -> std::process::ExitStatus {
        let exe = self.bin.join(tool);
        let mut c = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        c.args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    }

    pub(crate) fn start_new(bin: PathBuf) -> PrivatePg {
        let pg = PrivatePg::init(bin);
        pg.start();
        pg
    }

    /// A new cluster (initdb, trust authentication), not started: the caller may change its
    /// configuration first ([`PrivatePg::data`]) and then [`PrivatePg::start`] it.
    pub(crate) fn init(bin: PathBuf) -> PrivatePg {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = root()
            .join("target/tmp")
            .join(format!("pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        if as_root {
            // initdb refuses to run as root: the server runs as the `postgres` user.
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.parent().unwrap())
                .status();
        }
        let pg = PrivatePg {
            bin,
            dir,
            port,
            as_root,
        };
        let data = pg.dir.join("data");
        let status = pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        );
        assert!(status.success(), "initdb failed");
        pg
    }

    /// A new cluster that accepts TCP clients only over TLS (the server certificate from
    /// `certs`): its `postgres` superuser without a password (for the test's own set-up), every
    /// other role with a SCRAM password.
    pub(crate) fn start_new_tls(
        bin: PathBuf,
        certs: &kora_broker::test_ca::TestCerts,
    ) -> PrivatePg {
        use std::os::unix::fs::PermissionsExt;
        let pg = PrivatePg::init(bin);
        let data = pg.data();
        for (from, to) in [
            (&certs.server, "server.crt"),
            (&certs.server_key, "server.key"),
        ] {
            std::fs::copy(from, data.join(to)).unwrap();
            pg.hand_over(&data.join(to));
        }
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(
            &mut conf,
            b"\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\npassword_encryption = 'scram-sha-256'\n",
        )
        .unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all postgres 127.0.0.1/32 trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        pg.start();
        pg
    }

    /// Makes `role` (login, `password`, no superuser, no CREATEDB or CREATEROLE) the owner of
    /// `db`, which only it may connect to: the least-privilege role `docs/security.md` shows.
    pub(crate) async fn own_database(&self, role: &str, password: &str, db: &str) {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&self.admin_url())
            .await
            .unwrap();
        for sql in [
            format!(
                "CREATE ROLE {role} LOGIN PASSWORD '{password}' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
            ),
            format!("ALTER DATABASE {db} OWNER TO {role}"),
            format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
                .unwrap();
        }
        let _ = admin.close().await;
    }

    /// The cluster's data directory.
    pub(crate) fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Gives a file the server reads to the server's account (when the tests run as root).
    pub(crate) fn hand_over(&self, file: &std::path::Path) {
        if self.as_root {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(file)
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    pub(crate) fn start(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.display()
        );
        let status = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
        assert!(status.success(), "pg_ctl start failed");
    }

    /// Stops the server as a crash would (no shutdown checkpoint; recovery on the next start).
    pub(crate) fn crash(&self) {
        let data = self.dir.join("data");
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    pub(crate) fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A JSON workflow: a chain of `n` PythonCodeNodes, each sleeping `secs` and adding one.
pub(crate) fn sleepy_chain(n: usize, secs: f64) -> String {
    let mut nodes = Vec::new();
    let mut conns = Vec::new();
    for i in 0..n {
        let code = if i == 0 {
            format!("import time\ntime.sleep({secs})\nresult = 0")
        } else {
            format!("import time\ntime.sleep({secs})\nresult = x + 1")
        };
        nodes.push(serde_json::json!({"id": format!("n{i}"), "type": "PythonCodeNode", "config": {"code": code}}));
        if i > 0 {
            conns.push(serde_json::json!({"source": format!("n{}", i - 1), "output": "result", "target": format!("n{i}"), "input": "x"}));
        }
    }
    serde_json::json!({"kora": 1, "nodes": nodes, "connections": conns}).to_string()
}
