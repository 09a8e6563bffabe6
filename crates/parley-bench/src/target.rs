//! The server under test: started in this process, spawned as a child
//! `parley-server` process (so that its CPU time and memory can be read from
//! `/proc` alone), or an external one given by address and fingerprint.
//! Also prepares the database: a fresh SQLite file on disk or a freshly
//! recreated MariaDB/MySQL database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use sqlx::Connection as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio_rustls::TlsConnector;

use crate::report::Metrics;
use crate::sys::{self, ProcSample};

/// Which database engine the benchmark uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    /// A SQLite file in the server's data directory (WAL, synchronous=FULL).
    Sqlite,
    /// MariaDB/MySQL: a database recreated for every run.
    Mysql,
}

/// Database options shared by the subcommands.
#[derive(Clone, Debug, clap::Args)]
pub struct DbArgs {
    /// Database engine for a server this benchmark starts.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub database: DbKind,
    /// MariaDB/MySQL server (without a database name) for `--database mysql`.
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306")]
    pub mysql_url: String,
    /// Database to drop and recreate for the run.
    #[arg(long, default_value = "parley_bench")]
    pub mysql_db: String,
}

/// How to reach the server under test.
#[derive(Clone, Debug, clap::Args)]
pub struct TargetArgs {
    /// Benchmark an already running server at this `host:port` instead of starting one.
    #[arg(long)]
    pub server: Option<String>,
    /// SHA-256 fingerprint of the external server's certificate (hex).
    #[arg(long, requires = "server")]
    pub fingerprint: Option<String>,
    /// PID of the external server, to read its CPU time and memory from /proc.
    #[arg(long, requires = "server")]
    pub server_pid: Option<u32>,
    /// Run the `parley-server` binary as a child process instead of in this process.
    #[arg(long, conflicts_with = "server")]
    pub spawn_server: bool,
    /// The `parley-server` binary for --spawn-server (default: next to this binary).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Group-commit batch limit of a server this benchmark starts (server default if unset).
    #[arg(long)]
    pub commit_batch: Option<usize>,
    /// Start the server without TLS (`--insecure-plaintext`), to measure what TLS costs.
    /// Only the `connections` benchmark speaks plaintext (the SDK always uses TLS).
    #[arg(long, conflicts_with = "server")]
    pub plaintext: bool,
    /// Parent directory for the server's temporary data directory (default: the system's).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Spawn this many server nodes sharing the database and a NATS cluster; clients are
    /// spread over them round-robin (needs --spawn-server and --database mysql).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// NATS server the nodes route through when --nodes > 1.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub cluster: String,
}

/// Limits set very high on servers the benchmark starts, so they measure capacity, not policy.
const UNLIMITED: u32 = 1_000_000_000;

enum Kind {
    InProcess(Box<parley_server::ServerHandle>),
    Spawned(Vec<Child>),
    External,
}

/// One node of a multi-node target: where clients connect and which certificate to pin.
#[derive(Clone, Debug)]
pub struct Node {
    pub addr: SocketAddr,
    pub fingerprint: String,
}

/// A running server under test.
pub struct Target {
    /// Client protocol address.
    pub addr: SocketAddr,
    /// HTTPS address (metrics), if known.
    pub http: Option<SocketAddr>,
    /// Pinned certificate fingerprint (empty in plaintext mode).
    pub fingerprint: String,
    /// Human-readable mode for the report.
    pub mode: &'static str,
    /// Database URL the server uses (for the baseline), if this benchmark chose it.
    pub database_url: Option<String>,
    /// Every node (one unless --nodes); the first is `addr`/`fingerprint`.
    pub nodes: Vec<Node>,
    pid: Option<u32>,
    /// Processes of the other nodes, added into `sample`.
    other_pids: Vec<u32>,
    kind: Kind,
    connector: Option<TlsConnector>,
    dir: Option<tempfile::TempDir>,
}

impl Target {
    /// Prepares the database and starts (or reaches) the server.
    pub async fn start(args: &TargetArgs, db: &DbArgs, max_connections: usize) -> anyhow::Result<Target> {
        if let Some(server) = &args.server {
            let fingerprint = args.fingerprint.clone().context("--server needs --fingerprint")?;
            let addr = tokio::net::lookup_host(server.as_str())
                .await?
                .next()
                .with_context(|| format!("cannot resolve {server}"))?;
            let connector = crate::tls::pinned_connector(&fingerprint)?;
            let welcome = crate::raw::hello(Some(&connector), addr, None).await?;
            let http = SocketAddr::new(addr.ip(), u16::try_from(welcome.http_port).unwrap_or(0));
            let fingerprint = crate::tls::normalize_fingerprint(&fingerprint);
            return Ok(Target {
                addr,
                http: Some(http),
                nodes: vec![Node {
                    addr,
                    fingerprint: fingerprint.clone(),
                }],
                fingerprint,
                mode: "external",
                database_url: None,
                pid: args.server_pid,
                other_pids: Vec::new(),
                kind: Kind::External,
                connector: Some(connector),
                dir: None,
            });
        }
        let dir = match &args.work_dir {
            Some(parent) => tempfile::Builder::new()
                .prefix("parley-bench-")
                .tempdir_in(parent)?,
            None => tempfile::Builder::new().prefix("parley-bench-").tempdir()?,
        };
        let url = prepare_database(db, dir.path()).await?;
        anyhow::ensure!(
            args.nodes <= 1 || (args.spawn_server && matches!(db.database, DbKind::Mysql)),
            "--nodes needs --spawn-server and --database mysql (the nodes share one database)"
        );
        if args.spawn_server {
            Self::spawn(args, url, dir, max_connections).await
        } else {
            Self::start_in_process(args, url, dir, max_connections).await
        }
    }

    async fn start_in_process(
        args: &TargetArgs,
        url: String,
        dir: tempfile::TempDir,
        max_connections: usize,
    ) -> anyhow::Result<Target> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let defaults = parley_server::Config::default();
        let cfg = parley_server::Config {
            listen: loopback,
            http_listen: loopback,
            database: url.clone(),
            data_dir: dir.path().to_path_buf(),
            tls: if args.plaintext {
                parley_server::TlsMode::Plaintext
            } else {
                parley_server::TlsMode::SelfSigned
            },
            max_connections,
            messages_per_minute: UNLIMITED,
            typing_per_3s: UNLIMITED,
            registrations_per_hour: UNLIMITED,
            friend_requests_per_hour: UNLIMITED,
            login_failures_per_address: UNLIMITED,
            commit_batch: args.commit_batch.unwrap_or(defaults.commit_batch),
            ..defaults
        };
        let handle = parley_server::start(cfg)
            .await
            .context("starting the in-process server")?;
        let fingerprint = handle.fingerprint.clone().unwrap_or_default();
        Ok(Target {
            addr: handle.client_addr,
            http: Some(handle.http_addr),
            connector: connector_for(&fingerprint)?,
            nodes: vec![Node {
                addr: handle.client_addr,
                fingerprint: fingerprint.clone(),
            }],
            fingerprint,
            mode: "in-process",
            database_url: Some(url),
            pid: None,
            other_pids: Vec::new(),
            kind: Kind::InProcess(Box::new(handle)),
            dir: Some(dir),
        })
    }

    async fn spawn(
        args: &TargetArgs,
        url: String,
        dir: tempfile::TempDir,
        max_connections: usize,
    ) -> anyhow::Result<Target> {
        let bin = match &args.server_bin {
            Some(bin) => bin.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("binary without a directory")?
                .join("parley-server"),
        };
        anyhow::ensure!(
            bin.exists(),
            "server binary {} not found (use --server-bin)",
            bin.display()
        );
        let count = args.nodes.max(1);
        // One cluster name per run, so leftovers of an earlier run on the same NATS stay apart.
        let cluster_name = format!("bench{}", std::process::id());
        let mut children = Vec::new();
        let mut pids = Vec::new();
        let mut nodes = Vec::new();
        let mut first_http = None;
        for k in 0..count {
            let node_dir = if count == 1 {
                dir.path().to_path_buf()
            } else {
                dir.path().join(format!("node{k}"))
            };
            std::fs::create_dir_all(&node_dir)?;
            let mut cmd = Self::server_command(&bin, args, &url, &node_dir, max_connections)?;
            if count > 1 {
                cmd.args(["--cluster", &args.cluster])
                    .args(["--cluster-name", &cluster_name])
                    .args(["--node-id", &(k + 1).to_string()]);
            }
            let mut child = cmd
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let pid = child.id().context("child has no pid")?;
            let (addr, http, fingerprint) =
                Self::wait_listening(&mut child, args.plaintext, &node_dir).await?;
            first_http.get_or_insert(http);
            children.push(child);
            pids.push(pid);
            nodes.push(Node { addr, fingerprint });
        }
        let first = nodes[0].clone();
        Ok(Target {
            addr: first.addr,
            http: first_http,
            connector: connector_for(&first.fingerprint)?,
            fingerprint: first.fingerprint,
            nodes,
            mode: if count > 1 { "spawned-cluster" } else { "spawned" },
            database_url: Some(url),
            pid: pids.first().copied(),
            other_pids: pids.get(1..).unwrap_or_default().to_vec(),
            kind: Kind::Spawned(children),
            dir: Some(dir),
        })
    }

    fn server_command(
        bin: &Path,
        args: &TargetArgs,
        url: &str,
        data_dir: &Path,
        max_connections: usize,
    ) -> anyhow::Result<Command> {
        let log = std::fs::File::create(data_dir.join("server.log"))?;
        let unlimited = UNLIMITED.to_string();
        let mut cmd = Command::new(bin);
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--database",
            url,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--max-connections", &max_connections.to_string()])
        .args(["--messages-per-minute", &unlimited])
        .args(["--typing-per-3s", &unlimited])
        .args(["--registrations-per-hour", &unlimited])
        .args(["--friend-requests-per-hour", &unlimited])
        .args(["--login-failures-per-address", &unlimited]);
        if args.plaintext {
            cmd.arg("--insecure-plaintext");
        }
        if let Some(batch) = args.commit_batch {
            cmd.args(["--commit-batch", &batch.to_string()]);
        }
        cmd.env(
            "PARLEY_LOG",
            std::env::var("PARLEY_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true);
        Ok(cmd)
    }

    /// Reads a spawned server's stdout until it has printed where it listens.
    async fn wait_listening(
        child: &mut Child,
        plaintext: bool,
        data_dir: &Path,
    ) -> anyhow::Result<(SocketAddr, SocketAddr, String)> {
        let stdout = child.stdout.take().context("no child stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut addrs, mut fingerprint) = (None, None);
        let read = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.strip_prefix("parley-server listening on ") {
                    addrs = parse_listening(rest);
                } else if let Some(fp) = line.strip_prefix("certificate sha256 fingerprint: ") {
                    fingerprint = Some(fp.trim().to_string());
                }
                if addrs.is_some() && (fingerprint.is_some() || plaintext) {
                    return Ok(());
                }
            }
            anyhow::bail!(
                "server exited before it listened; see {}",
                data_dir.join("server.log").display()
            )
        };
        tokio::time::timeout(Duration::from_secs(120), read)
            .await
            .context("server did not start within 120 s")??;
        // Keep draining stdout (the server logs there) so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (addr, http) = addrs.context("no listening line")?;
        Ok((addr, http, fingerprint.unwrap_or_default()))
    }

    /// The server's process, if it is not this one.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Whether the server shares this process (its CPU and memory are then not separable).
    pub fn in_process(&self) -> bool {
        matches!(self.kind, Kind::InProcess(_))
    }

    /// The server's CPU and memory now (summed over every node), when it can be read.
    pub fn sample(&self) -> Option<ProcSample> {
        let mut total = self.pid.and_then(sys::sample)?;
        for pid in &self.other_pids {
            let other = sys::sample(*pid)?;
            total.cpu += other.cpu;
            total.rss_kib += other.rss_kib;
            total.hwm_kib += other.hwm_kib;
            total.threads += other.threads;
        }
        Some(total)
    }

    /// The node user number `i` connects to (round-robin over the nodes).
    pub fn node_for(&self, i: usize) -> &Node {
        &self.nodes[i % self.nodes.len().max(1)]
    }

    /// The server's `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        let http = self.http.context("server HTTP address unknown")?;
        let connector = self
            .connector
            .as_ref()
            .context("metrics are read over HTTPS only")?;
        let text = crate::tls::https_get(connector, http, "/metrics").await?;
        Ok(Metrics::new(text))
    }

    /// The server's `/metrics`, or empty text (with a warning) if unavailable.
    pub async fn metrics_or_empty(&self) -> Metrics {
        match self.metrics().await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("warning: cannot read server metrics: {e:#}");
                Metrics::default()
            }
        }
    }

    /// The TLS connector pinned to this server (`None` in plaintext mode).
    pub fn connector(&self) -> Option<&TlsConnector> {
        self.connector.as_ref()
    }

    /// Stops a server this benchmark started (gracefully, then by force). Returns its
    /// temporary directory (the database lives there) to be removed when dropped.
    pub async fn stop(self) -> Option<tempfile::TempDir> {
        match self.kind {
            Kind::InProcess(handle) => handle.shutdown().await,
            Kind::Spawned(children) => {
                for mut child in children {
                    #[cfg(unix)]
                    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                        // SAFETY: signals our own child process.
                        unsafe {
                            libc::kill(pid, libc::SIGTERM);
                        }
                    }
                    if tokio::time::timeout(Duration::from_secs(20), child.wait())
                        .await
                        .is_err()
                    {
                        let _ = child.kill().await;
                    }
                }
            }
            Kind::External => {}
        }
        self.dir
    }
}

/// A connector pinned to `fingerprint`; `None` for a plaintext server (no fingerprint).
fn connector_for(fingerprint: &str) -> anyhow::Result<Option<TlsConnector>> {
    if fingerprint.is_empty() {
        Ok(None)
    } else {
        Ok(Some(crate::tls::pinned_connector(fingerprint)?))
    }
}

/// Parses `"<client> (TLS), http on <http>"`.
fn parse_listening(rest: &str) -> Option<(SocketAddr, SocketAddr)> {
    let (client, tail) = rest.split_once(' ')?;
    let http = tail.rsplit_once("http on ")?.1.trim();
    Some((client.parse().ok()?, http.parse().ok()?))
}

/// Creates the database for a run and returns the URL the server should use.
pub async fn prepare_database(db: &DbArgs, dir: &Path) -> anyhow::Result<String> {
    match db.database {
        DbKind::Sqlite => Ok(format!("sqlite://{}", dir.join("parley.db").display())),
        DbKind::Mysql => {
            let name = &db.mysql_db;
            anyhow::ensure!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "--mysql-db must be letters, digits and underscores"
            );
            let base = db.mysql_url.trim_end_matches('/');
            let mut conn = sqlx::MySqlConnection::connect(base)
                .await
                .with_context(|| format!("connecting to {base}"))?;
            for sql in [
                format!("DROP DATABASE IF EXISTS `{name}`"),
                format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"),
            ] {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await?;
            }
            conn.close().await?;
            Ok(format!("{base}/{name}"))
        }
    }
}

/// MariaDB/MySQL durability settings worth stating next to a result.
pub async fn mysql_settings(url: &str) -> Vec<(String, String)> {
    let fetch = async {
        let mut conn = sqlx::MySqlConnection::connect(url).await?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SHOW VARIABLES WHERE Variable_name IN ('version', 'innodb_flush_log_at_trx_commit', \
             'sync_binlog', 'log_bin', 'innodb_buffer_pool_size', 'innodb_doublewrite', \
             'innodb_flush_method')",
        )
        .fetch_all(&mut conn)
        .await?;
        conn.close().await?;
        Ok::<_, sqlx::Error>(rows)
    };
    fetch.await.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_listening_line() {
        let (c, h) = super::parse_listening("127.0.0.1:4000 (TLS), http on 127.0.0.1:4001").unwrap();
        assert_eq!(c.port(), 4000);
        assert_eq!(h.port(), 4001);
    }
}
