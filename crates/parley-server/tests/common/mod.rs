//! Shared test harness: a real server on ephemeral ports over a fresh database
//! (SQLite always, MariaDB too when reachable — required under CI), clients
//! that verify it by pinned certificate, and raw TLS sockets for bad input.
#![allow(dead_code)]

pub mod http;

use std::time::Duration;

use parley_client::{Client, ClientConfig, ClientEvent, Trust, pb};
use parley_server::{Config, ServerHandle, TlsMode};
use parley_store::testing::{TestDb, test_databases};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

/// How long a test waits for an event that should arrive at once.
pub const EVENT_WAIT: Duration = Duration::from_secs(10);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PARLEY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A running server with its data directory.
pub struct TestServer {
    pub handle: ServerHandle,
    pub label: &'static str,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub fn fingerprint(&self) -> String {
        self.handle.fingerprint.clone().unwrap_or_default()
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new(
            self.handle.client_addr.to_string(),
            Trust::Pinned(self.fingerprint()),
        );
        cfg.server_name = "localhost".into();
        cfg.backoff_initial = Duration::from_millis(50);
        cfg.backoff_max = Duration::from_millis(500);
        cfg
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.client_config()).await.expect("connect")
    }

    /// Registers `name` (password `password-<name>`) and returns a logged-in client.
    pub async fn user(&self, name: &str) -> (Client, pb::User) {
        let c = self.client().await;
        c.register(name, &format!("{name} display"), &password(name))
            .await
            .expect("register");
        let li = c.login(name, &password(name)).await.expect("login");
        (c, li.user.expect("user"))
    }

    /// Another logged-in device of an existing user.
    pub async fn device(&self, name: &str) -> Client {
        let c = self.client().await;
        c.login(name, &password(name)).await.expect("login");
        c
    }

    pub async fn stop(self) {
        self.handle.shutdown().await;
    }
}

pub fn password(name: &str) -> String {
    format!("password-{name}")
}

/// Starts a server over `db` with test-friendly settings, adjusted by `tweak`.
pub async fn start_server(db: &TestDb, tweak: impl FnOnce(&mut Config)) -> TestServer {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        database: db.url.clone(),
        data_dir: dir.path().to_path_buf(),
        tls: TlsMode::SelfSigned,
        ..Config::default()
    };
    tweak(&mut cfg);
    let handle = parley_server::start(cfg).await.expect("server starts");
    TestServer {
        handle,
        label: db.label,
        _dir: dir,
    }
}

/// Runs `scenario` once per available database engine.
pub async fn on_every_database<F, Fut>(tweak: impl Fn(&mut Config), scenario: F)
where
    F: Fn(TestServer) -> Fut,
    Fut: std::future::Future<Output = TestServer>,
{
    for db in test_databases().await {
        eprintln!("--- running on {}", db.label);
        let server = start_server(&db, &tweak).await;
        let server = scenario(server).await;
        server.stop().await;
    }
}

/// Waits for the first server event matching `pick`, skipping others.
pub async fn wait_event<T>(
    rx: &mut tokio::sync::broadcast::Receiver<ClientEvent>,
    what: &str,
    mut pick: impl FnMut(&pb::event::Kind) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => panic!("timed out waiting for {what}"),
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => panic!("event stream ended waiting for {what}: {e}"),
            Ok(Ok(ClientEvent::Server(kind))) => {
                if let Some(t) = pick(&kind) {
                    return t;
                }
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// Asserts no event matching `pick` arrives within `within`.
pub async fn assert_no_event(
    rx: &mut tokio::sync::broadcast::Receiver<ClientEvent>,
    within: Duration,
    what: &str,
    mut pick: impl FnMut(&pb::event::Kind) -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(ev) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if let Ok(ClientEvent::Server(kind)) = ev {
            assert!(!pick(&kind), "unexpected {what}: {kind:?}");
        }
    }
}

/// A loopback port nobody listens on right now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `parley-server` child process (to be killed with SIGKILL) and its certificate fingerprint.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub fingerprint: String,
}

/// Starts the `parley-server` binary over `db_url` and `data_dir` on the given ports, with
/// `extra` flags, and waits until it has printed its certificate fingerprint.
pub fn spawn_server_process(
    db_url: &str,
    data_dir: &std::path::Path,
    port: u16,
    http_port: u16,
    extra: &[&str],
) -> ServerProcess {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_parley-server"))
        .args(["--database", db_url])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
        .args(["--messages-per-minute", "1000000"])
        .args(extra)
        .env("PARLEY_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn parley-server");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let fingerprint = loop {
        let line = lines
            .next()
            .expect("server printed its fingerprint")
            .expect("stdout line");
        if let Some(fp) = line.strip_prefix("certificate sha256 fingerprint: ") {
            break fp.trim().to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    ServerProcess { child, fingerprint }
}

/// A TLS connector that trusts only `fingerprint`, verified exactly as the SDK does.
pub fn pinned_connector(fingerprint: &str) -> tokio_rustls::TlsConnector {
    let cfg = parley_client::tls_client_config(&Trust::Pinned(fingerprint.to_string()), "localhost")
        .expect("valid fingerprint");
    tokio_rustls::TlsConnector::from(cfg)
}

/// The typed server error code of a failed SDK call.
pub fn code<T: std::fmt::Debug>(r: Result<T, parley_client::ClientError>) -> pb::ErrorCode {
    r.expect_err("expected an error")
        .code()
        .expect("a server error code")
}

/// A raw TLS stream to `addr`, for speaking (or mangling) the protocol by hand.
pub async fn raw_tls(
    addr: std::net::SocketAddr,
    fingerprint: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    pinned_connector(fingerprint)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}
