//! How to reach a server and whom to trust: [`ClientConfig`] and [`Trust`].
//!
//! There is deliberately no "accept any certificate" option: every way to
//! build a client verifies the server, by a CA or by a certificate
//! fingerprint (SPEC §7).

use std::path::PathBuf;
use std::time::Duration;

/// The port a Parley server listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7420;

/// How the client decides that the server's TLS certificate is genuine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The operating system's root certificates (the bundled Mozilla roots
    /// when the system has none); the certificate must name `server_name`.
    SystemRoots,
    /// One or more PEM-encoded CA certificates; the certificate must chain to
    /// one of them and name `server_name`.
    CaPem(Vec<u8>),
    /// SHA-256 of the server's leaf certificate DER, lowercase hex (64 chars).
    ///
    /// Colons and upper case are tolerated. Name and expiry are not checked:
    /// the fingerprint alone identifies the certificate.
    Pinned(String),
    /// Trust on first use: remember the fingerprint per server address in this
    /// file; a loud error if it changes later.
    FirstUse(PathBuf),
}

/// Everything [`crate::Client::connect`] needs to know.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `host:port` of the server; a missing port means [`DEFAULT_PORT`].
    pub address: String,
    /// The name sent in TLS SNI and checked against the certificate.
    pub server_name: String,
    /// How the server's certificate is verified.
    pub trust: Trust,
    /// Shown in the user's session list for sessions this client logs in.
    pub device_name: String,
    /// Sent in `Hello`, for the server's logs.
    pub client_name: String,
    /// The largest frame this client reads or writes.
    pub max_frame_bytes: usize,
    /// How long to wait for a response (and for connecting) before giving up.
    pub request_timeout: Duration,
    /// Reconnect and resume the session automatically when the connection drops.
    pub reconnect: bool,
    /// Upper bound of the first reconnect delay.
    pub backoff_initial: Duration,
    /// Upper bound of any reconnect delay.
    pub backoff_max: Duration,
    /// How long [`crate::Client::send`] keeps resending a message (across
    /// reconnects) before giving up.
    pub send_timeout: Duration,
    /// `host:port` of the file server (HTTPS). `None` means the host of
    /// `address` and the port the server announces in `Welcome.http_port`.
    pub http_address: Option<String>,
    /// Keep the message stream gap-free and duplicate-free: catch up after
    /// login and every reconnect and fill gaps (see [`crate::Client::events`]).
    /// Off, `Message` events are passed on exactly as they arrive and no
    /// extra requests are made — for short-lived clients that do not listen.
    pub message_sync: bool,
}

impl ClientConfig {
    /// A configuration with sensible defaults: the host part of `address` as
    /// server name, the machine's host name as device name, 1 MiB frames, a
    /// 15 s timeout, reconnects backing off from 250 ms up to 30 s, sends
    /// retried for 60 s, the announced file-server port, and message sync on.
    pub fn new(address: impl Into<String>, trust: Trust) -> Self {
        let address = address.into();
        let (host, _) = split_host_port(&address);
        ClientConfig {
            server_name: host.to_string(),
            address,
            trust,
            device_name: default_device_name(),
            client_name: format!("parley-sdk/{}", env!("CARGO_PKG_VERSION")),
            max_frame_bytes: parley_proto::DEFAULT_MAX_FRAME_BYTES,
            request_timeout: Duration::from_secs(15),
            reconnect: true,
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            http_address: None,
            message_sync: true,
        }
    }
}

/// Splits `host:port`, `[v6]:port`, `host` or a bare IPv6 address into the
/// host (without brackets) and the port ([`DEFAULT_PORT`] when absent or not
/// a number).
pub(crate) fn split_host_port(address: &str) -> (&str, u16) {
    let address = address.trim();
    if let Some(rest) = address.strip_prefix('[')
        && let Some((host, tail)) = rest.split_once(']')
    {
        let port = tail
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(DEFAULT_PORT);
        return (host, port);
    }
    match address.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address.
        Some((host, _)) if host.contains(':') => (address, DEFAULT_PORT),
        Some((host, port)) => (host, port.parse().unwrap_or(DEFAULT_PORT)),
        None => (address, DEFAULT_PORT),
    }
}

/// The machine's host name if it can be found cheaply, else "parley-sdk".
fn default_device_name() -> String {
    let from_env = ["HOSTNAME", "COMPUTERNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok());
    let from_file = || std::fs::read_to_string("/etc/hostname").ok();
    from_env
        .or_else(from_file)
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "parley-sdk".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_addresses() {
        assert_eq!(split_host_port("example.org:7000"), ("example.org", 7000));
        assert_eq!(split_host_port("example.org"), ("example.org", DEFAULT_PORT));
        assert_eq!(split_host_port("[::1]:9"), ("::1", 9));
        assert_eq!(split_host_port("[::1]"), ("::1", DEFAULT_PORT));
        assert_eq!(split_host_port("::1"), ("::1", DEFAULT_PORT));
        assert_eq!(split_host_port("127.0.0.1:7420"), ("127.0.0.1", 7420));
    }

    #[test]
    fn defaults_are_sensible() {
        let cfg = ClientConfig::new("chat.example.org:7420", Trust::SystemRoots);
        assert_eq!(cfg.server_name, "chat.example.org");
        assert!(!cfg.device_name.is_empty());
        assert_eq!(cfg.max_frame_bytes, 1024 * 1024);
        assert_eq!(cfg.request_timeout, Duration::from_secs(15));
        assert!(cfg.reconnect);
        assert_eq!(cfg.backoff_initial, Duration::from_millis(250));
        assert_eq!(cfg.backoff_max, Duration::from_secs(30));
        assert_eq!(cfg.send_timeout, Duration::from_secs(60));
        assert_eq!(cfg.http_address, None);
        assert!(cfg.message_sync);
    }
}
