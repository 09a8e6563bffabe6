//! TLS for the benchmark's own sockets (raw protocol connections and the
//! `/metrics` fetch): the server's certificate is pinned by its SHA-256
//! fingerprint, exactly like the SDK's `Trust::Pinned`.

use std::net::SocketAddr;

use anyhow::Context as _;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Normalises a fingerprint as given by a user: no colons, lower case.
pub fn normalize_fingerprint(fp: &str) -> String {
    fp.trim().replace(':', "").to_ascii_lowercase()
}

/// A TLS connector that trusts only the certificate with this fingerprint,
/// verified by the SDK's own trust code.
pub fn pinned_connector(fingerprint: &str) -> anyhow::Result<TlsConnector> {
    let trust = parley_client::Trust::Pinned(normalize_fingerprint(fingerprint));
    let config = parley_client::tls_client_config(&trust, "localhost").context("pinned TLS settings")?;
    Ok(TlsConnector::from(config))
}

/// The name sent in SNI; the pin, not the name, identifies the server.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a valid DNS name")
}

/// `GET path` over HTTPS (HTTP/1.0, so the body is plain and ends at close); the body text.
pub async fn https_get(connector: &TlsConnector, addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let mut tls = connector
        .connect(server_name(), tcp)
        .await
        .context("TLS handshake")?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    tls.write_all(request.as_bytes()).await?;
    tls.flush().await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match tls.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // A server that closes without close_notify: what arrived is complete for HTTP/1.0.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    let status = head.lines().next().unwrap_or_default();
    anyhow::ensure!(status.contains(" 200"), "GET {path}: {status}");
    Ok(body.to_string())
}
