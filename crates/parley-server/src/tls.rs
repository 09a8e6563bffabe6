//! The server's TLS identity.
//!
//! With no certificate configured, a self-signed one for `localhost` and the
//! loopback addresses is generated on first run and kept under the data
//! directory, so its fingerprint stays stable across restarts and clients that
//! pinned it (trust on first use) keep working.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::TlsMode;

/// A loaded certificate chain and key, ready to accept TLS connections.
pub struct TlsIdentity {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// SHA-256 of the leaf certificate (DER), lowercase hex: what clients pin.
    pub fingerprint: String,
}

/// SHA-256 of a DER certificate, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Loads or creates the identity for `mode`; `None` for plaintext.
pub fn load(mode: &TlsMode, data_dir: &Path) -> anyhow::Result<Option<TlsIdentity>> {
    let (certs, key) = match mode {
        TlsMode::Plaintext => return Ok(None),
        TlsMode::Files { cert, key } => read_pem(cert, key)?,
        TlsMode::SelfSigned => {
            let dir = data_dir.join("tls");
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !cert.exists() || !key.exists() {
                generate(&dir, &cert, &key)?;
            }
            read_pem(&cert, &key)?
        }
    };
    let leaf = certs.first().context("certificate file holds no certificate")?;
    let fingerprint = fingerprint(leaf);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 unavailable")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    Ok(Some(TlsIdentity {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        fingerprint,
    }))
}

fn generate(dir: &Path, cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let certified = rcgen::generate_simple_self_signed(names).context("generating certificate")?;
    std::fs::write(cert_path, certified.cert.pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    write_private(key_path, certified.signing_key.serialize_pem().as_bytes())?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed TLS certificate");
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(data)?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

fn read_pem(
    cert: &Path,
    key: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let cert_bytes = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let certs = rustls_pemfile::certs(&mut &cert_bytes[..])
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let key_bytes = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    let key = rustls_pemfile::private_key(&mut &key_bytes[..])
        .with_context(|| format!("parsing {}", key.display()))?
        .with_context(|| format!("{} holds no private key", key.display()))?;
    Ok((certs, key))
}
