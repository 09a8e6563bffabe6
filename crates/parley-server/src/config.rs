//! Server configuration: command-line flags > environment > TOML file > defaults.
//!
//! Every flag is `Option` so that "not given" can fall through to the file and
//! then to the default; [`Config`] is the merged, fully-resolved result the rest
//! of the server reads. Default ports (7420 client, 7421 HTTP) stay clear of
//! MariaDB, PostgreSQL, Redis, NATS, RabbitMQ and Mosquitto.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

/// Default client-protocol port (TCP + TLS).
pub const DEFAULT_CLIENT_PORT: u16 = 7420;
/// Default HTTP port (health, metrics, WebSocket).
pub const DEFAULT_HTTP_PORT: u16 = 7421;
/// Default UDP port of the media relay.
pub const DEFAULT_MEDIA_PORT: u16 = 7422;

/// Flags and environment variables of `parley-server`.
#[derive(Debug, Default, Clone, clap::Parser)]
#[command(name = "parley-server", version, about = "Parley instant-messaging server")]
pub struct Args {
    /// TOML configuration file (keys are the long flag names with `_` for `-`).
    #[arg(long, env = "PARLEY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address for the client protocol (TLS over TCP).
    #[arg(long, env = "PARLEY_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address for HTTP: /healthz, /metrics and the /ws WebSocket transport.
    #[arg(long, env = "PARLEY_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Database URL: `sqlite://path/to/file.db` or `mysql://user:pass@host/db`.
    #[arg(long, env = "PARLEY_DATABASE")]
    pub database: Option<String>,
    /// Directory for the default SQLite database, generated certificates and files.
    #[arg(long, env = "PARLEY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PEM certificate chain; without it a self-signed certificate is generated.
    #[arg(long, env = "PARLEY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `--tls-cert`.
    #[arg(long, env = "PARLEY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve without TLS. Only for a trusted network or a TLS-terminating proxy.
    #[arg(long, env = "PARLEY_INSECURE_PLAINTEXT", num_args = 0..=1, default_missing_value = "true")]
    pub insecure_plaintext: Option<bool>,
    /// Largest frame payload accepted or sent, in bytes.
    #[arg(long, env = "PARLEY_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Most simultaneous client connections (TCP and WebSocket together).
    #[arg(long, env = "PARLEY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Frames queued for one connection before it counts as a slow reader and is dropped.
    #[arg(long, env = "PARLEY_OUTBOUND_QUEUE")]
    pub outbound_queue: Option<usize>,
    /// Seconds of client silence after which the client should ping.
    #[arg(long, env = "PARLEY_HEARTBEAT_SECS")]
    pub heartbeat_secs: Option<u64>,
    /// Seconds of client silence after which the server closes the connection.
    #[arg(long, env = "PARLEY_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Days of inactivity after which a session token expires.
    #[arg(long, env = "PARLEY_SESSION_EXPIRY_DAYS")]
    pub session_expiry_days: Option<u64>,
    /// Failed logins per account allowed within `login_window_secs`.
    #[arg(long, env = "PARLEY_LOGIN_FAILURES_PER_ACCOUNT")]
    pub login_failures_per_account: Option<u32>,
    /// Failed logins per client address allowed within `login_window_secs`.
    #[arg(long, env = "PARLEY_LOGIN_FAILURES_PER_ADDRESS")]
    pub login_failures_per_address: Option<u32>,
    /// Window over which failed logins are counted, in seconds.
    #[arg(long, env = "PARLEY_LOGIN_WINDOW_SECS")]
    pub login_window_secs: Option<u64>,
    /// Registrations per client address per hour.
    #[arg(long, env = "PARLEY_REGISTRATIONS_PER_HOUR")]
    pub registrations_per_hour: Option<u32>,
    /// Friend requests one user may send per hour.
    #[arg(long, env = "PARLEY_FRIEND_REQUESTS_PER_HOUR")]
    pub friend_requests_per_hour: Option<u32>,
    /// Largest file or image upload, in bytes.
    #[arg(long, env = "PARLEY_MAX_FILE_BYTES")]
    pub max_file_bytes: Option<u64>,
    /// Uploads one user may start per hour.
    #[arg(long, env = "PARLEY_UPLOADS_PER_HOUR")]
    pub uploads_per_hour: Option<u32>,
    /// Largest single upload chunk (one HTTP request body), in bytes.
    #[arg(long, env = "PARLEY_MAX_CHUNK_BYTES")]
    pub max_chunk_bytes: Option<usize>,
    /// Where file contents are stored (a directory); default `<data-dir>/files`.
    #[arg(long, env = "PARLEY_FILES_DIR")]
    pub files_dir: Option<PathBuf>,
    /// Most members of a group conversation.
    #[arg(long, env = "PARLEY_GROUP_MEMBER_LIMIT")]
    pub group_member_limit: Option<u32>,
    /// Largest text message, in bytes.
    #[arg(long, env = "PARLEY_MAX_TEXT_BYTES")]
    pub max_text_bytes: Option<usize>,
    /// Messages one user may send per minute.
    #[arg(long, env = "PARLEY_MESSAGES_PER_MINUTE")]
    pub messages_per_minute: Option<u32>,
    /// Typing notices one user may send per conversation every 3 seconds.
    #[arg(long, env = "PARLEY_TYPING_PER_3S")]
    pub typing_per_3s: Option<u32>,
    /// Most messages committed in one database transaction.
    #[arg(long, env = "PARLEY_COMMIT_BATCH")]
    pub commit_batch: Option<usize>,
    /// Node id (0..1023) mixed into generated ids; unique per node of a cluster.
    #[arg(long, env = "PARLEY_NODE_ID")]
    pub node_id: Option<u16>,
    /// Name announced in the handshake.
    #[arg(long, env = "PARLEY_SERVER_NAME")]
    pub server_name: Option<String>,
    /// Milliseconds a call rings before it counts as missed.
    #[arg(long, env = "PARLEY_CALL_RING_TIMEOUT_MS")]
    pub call_ring_timeout_ms: Option<u64>,
    /// Milliseconds a call participant's device may be disconnected before it leaves the call.
    #[arg(long, env = "PARLEY_CALL_RECONNECT_GRACE_MS")]
    pub call_reconnect_grace_ms: Option<u64>,
    /// Most participants of one call (group calls), the caller included.
    #[arg(long, env = "PARLEY_CALL_MAX_PARTICIPANTS")]
    pub call_max_participants: Option<usize>,
    /// Calls one user may start per minute.
    #[arg(long, env = "PARLEY_CALLS_PER_MINUTE")]
    pub calls_per_minute: Option<u32>,
    /// UDP address of the media relay; default the client listener's address, port 7422.
    #[arg(long, env = "PARLEY_MEDIA_LISTEN")]
    pub media_listen: Option<SocketAddr>,
    /// Address clients send media to, when the relay is behind NAT or bound to 0.0.0.0.
    #[arg(long, env = "PARLEY_MEDIA_PUBLIC_IP")]
    pub media_public_ip: Option<IpAddr>,
    /// Join a cluster through this NATS server (`nats://host:4222`); unset, the node is alone.
    #[arg(long, env = "PARLEY_CLUSTER")]
    pub cluster: Option<String>,
    /// Name of the cluster: the prefix of its NATS subjects, so clusters can share one NATS.
    #[arg(long, env = "PARLEY_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Milliseconds between a node's heartbeats to the others.
    #[arg(long, env = "PARLEY_CLUSTER_HEARTBEAT_MS")]
    pub cluster_heartbeat_ms: Option<u64>,
    /// Milliseconds without a heartbeat after which a node counts as gone and its users offline.
    #[arg(long, env = "PARLEY_CLUSTER_NODE_TIMEOUT_MS")]
    pub cluster_node_timeout_ms: Option<u64>,
    /// Records queued for the other nodes before new ones are dropped (NATS unreachable).
    #[arg(long, env = "PARLEY_CLUSTER_QUEUE")]
    pub cluster_queue: Option<usize>,
}

/// The TOML file: the same keys as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    database: Option<String>,
    data_dir: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    insecure_plaintext: Option<bool>,
    max_frame_bytes: Option<usize>,
    max_connections: Option<usize>,
    outbound_queue: Option<usize>,
    heartbeat_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    session_expiry_days: Option<u64>,
    login_failures_per_account: Option<u32>,
    login_failures_per_address: Option<u32>,
    login_window_secs: Option<u64>,
    registrations_per_hour: Option<u32>,
    friend_requests_per_hour: Option<u32>,
    max_file_bytes: Option<u64>,
    max_chunk_bytes: Option<usize>,
    uploads_per_hour: Option<u32>,
    files_dir: Option<PathBuf>,
    group_member_limit: Option<u32>,
    max_text_bytes: Option<usize>,
    messages_per_minute: Option<u32>,
    typing_per_3s: Option<u32>,
    commit_batch: Option<usize>,
    node_id: Option<u16>,
    server_name: Option<String>,
    call_ring_timeout_ms: Option<u64>,
    call_reconnect_grace_ms: Option<u64>,
    call_max_participants: Option<usize>,
    calls_per_minute: Option<u32>,
    media_listen: Option<SocketAddr>,
    media_public_ip: Option<IpAddr>,
    cluster: Option<String>,
    cluster_name: Option<String>,
    cluster_heartbeat_ms: Option<u64>,
    cluster_node_timeout_ms: Option<u64>,
    cluster_queue: Option<usize>,
}

/// Where the TLS identity comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsMode {
    /// Generate (once) and reuse a self-signed certificate under the data directory.
    SelfSigned,
    /// Operator-supplied PEM files.
    Files { cert: PathBuf, key: PathBuf },
    /// No TLS at all (explicit opt-in).
    Plaintext,
}

/// Fully-resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub database: String,
    pub data_dir: PathBuf,
    pub tls: TlsMode,
    pub max_frame_bytes: usize,
    pub max_connections: usize,
    pub outbound_queue: usize,
    pub heartbeat: Duration,
    pub idle_timeout: Duration,
    pub session_expiry: Duration,
    pub login_failures_per_account: u32,
    pub login_failures_per_address: u32,
    pub login_window: Duration,
    pub registrations_per_hour: u32,
    pub friend_requests_per_hour: u32,
    pub max_file_bytes: u64,
    pub max_chunk_bytes: usize,
    pub uploads_per_hour: u32,
    /// `None`: `<data_dir>/files`.
    pub files_dir: Option<PathBuf>,
    pub group_member_limit: u32,
    pub max_text_bytes: usize,
    pub messages_per_minute: u32,
    pub typing_per_3s: u32,
    pub commit_batch: usize,
    pub node_id: u16,
    pub server_name: String,
    pub call_ring_timeout: Duration,
    pub call_reconnect_grace: Duration,
    pub call_max_participants: usize,
    pub calls_per_minute: u32,
    /// `None`: see [`Config::media_bind`].
    pub media_listen: Option<SocketAddr>,
    pub media_public_ip: Option<IpAddr>,
    /// NATS URL of the cluster; `None`: a single node, everything in-process.
    pub cluster: Option<String>,
    pub cluster_name: String,
    pub cluster_heartbeat: Duration,
    pub cluster_node_timeout: Duration,
    pub cluster_queue: usize,
}

impl Default for Config {
    fn default() -> Self {
        let data_dir = PathBuf::from("parley-data");
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_CLIENT_PORT)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_HTTP_PORT)),
            database: default_database(&data_dir),
            data_dir,
            tls: TlsMode::SelfSigned,
            max_frame_bytes: parley_proto::DEFAULT_MAX_FRAME_BYTES,
            max_connections: 20_000,
            outbound_queue: 256,
            heartbeat: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            session_expiry: Duration::from_secs(30 * 24 * 3600),
            login_failures_per_account: 5,
            login_failures_per_address: 20,
            login_window: Duration::from_secs(15 * 60),
            registrations_per_hour: 20,
            friend_requests_per_hour: 60,
            max_file_bytes: 2 * 1024 * 1024 * 1024,
            max_chunk_bytes: 8 * 1024 * 1024,
            // A flood guard, well above any real use.
            uploads_per_hour: 3_600,
            files_dir: None,
            group_member_limit: 500,
            max_text_bytes: 16 * 1024,
            messages_per_minute: 600,
            // A few notices every few seconds is plenty for any UI.
            typing_per_3s: 3,
            commit_batch: 1024,
            node_id: 0,
            server_name: "parley".into(),
            call_ring_timeout: Duration::from_secs(45),
            // Long enough for a phone to hop networks, short enough that a caller is not left waiting.
            call_reconnect_grace: Duration::from_secs(15),
            call_max_participants: 8,
            calls_per_minute: 30,
            media_listen: None,
            media_public_ip: None,
            cluster: None,
            cluster_name: "parley".into(),
            cluster_heartbeat: Duration::from_secs(1),
            cluster_node_timeout: Duration::from_secs(5),
            cluster_queue: 65_536,
        }
    }
}

fn default_database(data_dir: &std::path::Path) -> String {
    format!("sqlite://{}", data_dir.join("parley.db").display())
}

impl Config {
    /// A private server on this machine: every listener (clients, HTTP, media) on an
    /// ephemeral loopback port, SQLite and the self-signed TLS identity under `data_dir`.
    /// What tests and local tools start when they need a real server of their own.
    pub fn loopback(data_dir: &Path) -> Config {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Config {
            listen: loopback,
            http_listen: loopback,
            media_listen: Some(loopback),
            database: format!("sqlite://{}", data_dir.join("parley.db").display()),
            data_dir: data_dir.to_path_buf(),
            tls: TlsMode::SelfSigned,
            ..Config::default()
        }
    }

    /// Merges flags (already merged with env by clap) over the TOML file over defaults.
    pub fn resolve(args: Args) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let d = Config::default();
        let data_dir = args.data_dir.or(file.data_dir).unwrap_or(d.data_dir);
        let database = args
            .database
            .or(file.database)
            .unwrap_or_else(|| default_database(&data_dir));
        let plaintext = args
            .insecure_plaintext
            .or(file.insecure_plaintext)
            .unwrap_or(false);
        let tls = match (args.tls_cert.or(file.tls_cert), args.tls_key.or(file.tls_key)) {
            _ if plaintext => TlsMode::Plaintext,
            (Some(cert), Some(key)) => TlsMode::Files { cert, key },
            (None, None) => TlsMode::SelfSigned,
            _ => anyhow::bail!("--tls-cert and --tls-key must be given together"),
        };
        let secs = Duration::from_secs;
        let cfg = Config {
            listen: args.listen.or(file.listen).unwrap_or(d.listen),
            http_listen: args.http_listen.or(file.http_listen).unwrap_or(d.http_listen),
            database,
            data_dir,
            tls,
            max_frame_bytes: args
                .max_frame_bytes
                .or(file.max_frame_bytes)
                .unwrap_or(d.max_frame_bytes),
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(d.max_connections),
            outbound_queue: args
                .outbound_queue
                .or(file.outbound_queue)
                .unwrap_or(d.outbound_queue),
            heartbeat: args
                .heartbeat_secs
                .or(file.heartbeat_secs)
                .map(secs)
                .unwrap_or(d.heartbeat),
            idle_timeout: args
                .idle_timeout_secs
                .or(file.idle_timeout_secs)
                .map(secs)
                .unwrap_or(d.idle_timeout),
            session_expiry: args
                .session_expiry_days
                .or(file.session_expiry_days)
                .map(|days| secs(days * 24 * 3600))
                .unwrap_or(d.session_expiry),
            login_failures_per_account: args
                .login_failures_per_account
                .or(file.login_failures_per_account)
                .unwrap_or(d.login_failures_per_account),
            login_failures_per_address: args
                .login_failures_per_address
                .or(file.login_failures_per_address)
                .unwrap_or(d.login_failures_per_address),
            login_window: args
                .login_window_secs
                .or(file.login_window_secs)
                .map(secs)
                .unwrap_or(d.login_window),
            registrations_per_hour: args
                .registrations_per_hour
                .or(file.registrations_per_hour)
                .unwrap_or(d.registrations_per_hour),
            friend_requests_per_hour: args
                .friend_requests_per_hour
                .or(file.friend_requests_per_hour)
                .unwrap_or(d.friend_requests_per_hour),
            max_file_bytes: args
                .max_file_bytes
                .or(file.max_file_bytes)
                .unwrap_or(d.max_file_bytes),
            max_chunk_bytes: args
                .max_chunk_bytes
                .or(file.max_chunk_bytes)
                .unwrap_or(d.max_chunk_bytes),
            uploads_per_hour: args
                .uploads_per_hour
                .or(file.uploads_per_hour)
                .unwrap_or(d.uploads_per_hour),
            files_dir: args.files_dir.or(file.files_dir),
            group_member_limit: args
                .group_member_limit
                .or(file.group_member_limit)
                .unwrap_or(d.group_member_limit),
            max_text_bytes: args
                .max_text_bytes
                .or(file.max_text_bytes)
                .unwrap_or(d.max_text_bytes),
            messages_per_minute: args
                .messages_per_minute
                .or(file.messages_per_minute)
                .unwrap_or(d.messages_per_minute),
            typing_per_3s: args
                .typing_per_3s
                .or(file.typing_per_3s)
                .unwrap_or(d.typing_per_3s),
            commit_batch: args.commit_batch.or(file.commit_batch).unwrap_or(d.commit_batch),
            node_id: args.node_id.or(file.node_id).unwrap_or(d.node_id),
            server_name: args.server_name.or(file.server_name).unwrap_or(d.server_name),
            call_ring_timeout: args
                .call_ring_timeout_ms
                .or(file.call_ring_timeout_ms)
                .map(Duration::from_millis)
                .unwrap_or(d.call_ring_timeout),
            call_reconnect_grace: args
                .call_reconnect_grace_ms
                .or(file.call_reconnect_grace_ms)
                .map(Duration::from_millis)
                .unwrap_or(d.call_reconnect_grace),
            call_max_participants: args
                .call_max_participants
                .or(file.call_max_participants)
                .unwrap_or(d.call_max_participants),
            calls_per_minute: args
                .calls_per_minute
                .or(file.calls_per_minute)
                .unwrap_or(d.calls_per_minute),
            media_listen: args.media_listen.or(file.media_listen),
            media_public_ip: args.media_public_ip.or(file.media_public_ip),
            cluster: args.cluster.or(file.cluster),
            cluster_name: args.cluster_name.or(file.cluster_name).unwrap_or(d.cluster_name),
            cluster_heartbeat: args
                .cluster_heartbeat_ms
                .or(file.cluster_heartbeat_ms)
                .map(Duration::from_millis)
                .unwrap_or(d.cluster_heartbeat),
            cluster_node_timeout: args
                .cluster_node_timeout_ms
                .or(file.cluster_node_timeout_ms)
                .map(Duration::from_millis)
                .unwrap_or(d.cluster_node_timeout),
            cluster_queue: args
                .cluster_queue
                .or(file.cluster_queue)
                .unwrap_or(d.cluster_queue),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Where the media relay binds: `media_listen`, else the client listener's
    /// address on port 7422 (an ephemeral port when the client port is, as in
    /// tests, so that many servers can run side by side).
    pub fn media_bind(&self) -> SocketAddr {
        self.media_listen.unwrap_or_else(|| {
            let port = if self.listen.port() == 0 {
                0
            } else {
                DEFAULT_MEDIA_PORT
            };
            SocketAddr::new(self.listen.ip(), port)
        })
    }

    /// Where file contents live.
    pub fn files_dir(&self) -> PathBuf {
        self.files_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("files"))
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_frame_bytes >= 1024,
            "max_frame_bytes must be at least 1024"
        );
        anyhow::ensure!(
            self.max_frame_bytes <= u32::MAX as usize,
            "max_frame_bytes must fit in u32"
        );
        anyhow::ensure!(self.max_connections > 0, "max_connections must be positive");
        anyhow::ensure!(
            self.outbound_queue >= 8,
            "outbound_queue must be at least 8 (half of it is kept free for events)"
        );
        anyhow::ensure!(self.node_id < 1024, "node_id must be below 1024");
        anyhow::ensure!(self.commit_batch > 0, "commit_batch must be positive");
        anyhow::ensure!(
            self.call_max_participants >= 2,
            "call_max_participants must be at least 2"
        );
        anyhow::ensure!(
            !self.call_ring_timeout.is_zero(),
            "call_ring_timeout_ms must be positive"
        );
        anyhow::ensure!(
            self.max_chunk_bytes >= 1024,
            "max_chunk_bytes must be at least 1024"
        );
        anyhow::ensure!(
            self.group_member_limit >= 2,
            "group_member_limit must be at least 2"
        );
        anyhow::ensure!(
            self.idle_timeout > self.heartbeat,
            "idle timeout must be longer than the heartbeat interval"
        );
        anyhow::ensure!(
            !self.cluster_name.is_empty()
                && self.cluster_name.len() <= 64
                && self
                    .cluster_name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "cluster_name must be 1-64 of A-Z a-z 0-9 _ - (it becomes a NATS subject token)"
        );
        anyhow::ensure!(
            self.cluster_heartbeat >= Duration::from_millis(10),
            "cluster_heartbeat_ms must be at least 10"
        );
        anyhow::ensure!(
            self.cluster_node_timeout >= self.cluster_heartbeat * 2,
            "cluster_node_timeout_ms must be at least twice cluster_heartbeat_ms"
        );
        anyhow::ensure!(self.cluster_queue > 0, "cluster_queue must be positive");
        anyhow::ensure!(
            self.cluster.is_none() || !self.database.starts_with("sqlite:"),
            "--cluster needs a database all nodes share (--database mysql://…); SQLite is one node's file"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_beat_file_beat_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parley.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nmax_connections = 7\nserver_name = \"file\"\n",
        )
        .unwrap();
        let args = Args::parse_from([
            "parley-server",
            "--config",
            path.to_str().unwrap(),
            "--server-name",
            "flag",
        ]);
        let cfg = Config::resolve(args).unwrap();
        assert_eq!(cfg.server_name, "flag");
        assert_eq!(cfg.max_connections, 7);
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.http_listen.port(), DEFAULT_HTTP_PORT);
        assert_eq!(cfg.tls, TlsMode::SelfSigned);
        assert!(cfg.database.starts_with("sqlite://"));
    }

    #[test]
    fn cluster_options_follow_the_same_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parley.toml");
        std::fs::write(
            &path,
            "cluster = \"nats://file:4222\"\ncluster_name = \"from-file\"\ncluster_heartbeat_ms = 500\n",
        )
        .unwrap();
        let args = Args::parse_from([
            "parley-server",
            "--config",
            path.to_str().unwrap(),
            "--cluster",
            "nats://flag:4222",
            "--database",
            "mysql://root@db/parley",
        ]);
        let cfg = Config::resolve(args).unwrap();
        assert_eq!(cfg.cluster.as_deref(), Some("nats://flag:4222"));
        assert_eq!(cfg.cluster_name, "from-file");
        assert_eq!(cfg.cluster_heartbeat, Duration::from_millis(500));
        assert_eq!(cfg.cluster_node_timeout, Duration::from_secs(5));
        assert_eq!(Config::default().cluster, None, "a single node by default");
        let sqlite = Args::parse_from(["parley-server", "--cluster", "nats://n:4222"]);
        assert!(
            Config::resolve(sqlite).is_err(),
            "nodes cannot share a SQLite file"
        );

        let bad = Args::parse_from(["parley-server", "--cluster-name", "a.b"]);
        assert!(Config::resolve(bad).is_err(), "dots would split the subject");
        let bad = Args::parse_from([
            "parley-server",
            "--cluster-heartbeat-ms",
            "1000",
            "--cluster-node-timeout-ms",
            "1500",
        ]);
        assert!(Config::resolve(bad).is_err());
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parley.toml");
        std::fs::write(&path, "lissten = \"127.0.0.1:9000\"\n").unwrap();
        let args = Args::parse_from(["parley-server", "--config", path.to_str().unwrap()]);
        assert!(Config::resolve(args).is_err());
    }
}
