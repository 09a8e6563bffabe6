//! Turning a [`Trust`] setting into a verified TLS 1.3 connection.
//!
//! CA-based trust uses rustls' WebPKI verifier. Pinning and trust on first use
//! use [`FingerprintVerifier`], which compares the SHA-256 of the leaf
//! certificate and still checks the handshake signature, so a server must
//! hold the private key of the certificate it shows. A first-seen fingerprint
//! is written to the known-hosts file only after the handshake completed,
//! never on the strength of a certificate alone.
//!
//! The ring provider is passed explicitly: the SDK never depends on (or
//! installs) a process-wide default provider.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use crate::config::Trust;
use crate::error::ClientError;
use crate::known_hosts;

/// Lowercase hex SHA-256 of a DER-encoded certificate: the form used by
/// [`Trust::Pinned`] and the known-hosts file.
pub fn cert_fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// A fingerprint as typed by a person (any case, optional colons or spaces)
/// in canonical form; `None` unless it is 32 bytes of hex.
/// The rustls settings the SDK uses for `trust` towards `address`, for tools
/// that speak the protocol by hand (load generators, protocol tests) and must
/// verify the server exactly as the SDK does. Trust on first use only reads
/// the known-hosts file here; it never records.
pub fn tls_client_config(trust: &Trust, address: &str) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    Ok(TrustStore::new(trust, address)?.handshake()?.config)
}

pub(crate) fn normalize_fingerprint(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// Which certificate the server presented, and whether this connection is
/// the one that taught us to trust it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerIdentity {
    /// SHA-256 of the server's leaf certificate, lowercase hex.
    pub fingerprint: String,
    /// True when [`Trust::FirstUse`] met this server for the first time and
    /// recorded the fingerprint; a UI should show it to the user.
    pub newly_trusted: bool,
}

/// The trust decision for one server, prepared once per [`crate::Client`].
pub(crate) struct TrustStore {
    provider: Arc<CryptoProvider>,
    address: String,
    kind: TrustKind,
}

enum TrustKind {
    /// System roots or a CA: one rustls config serves every connection.
    Roots(Arc<rustls::ClientConfig>),
    Pinned(String),
    FirstUse(PathBuf),
}

/// Per-connection TLS settings, and what is needed to interpret the outcome.
pub(crate) struct Handshake {
    pub(crate) config: Arc<rustls::ClientConfig>,
    check: Option<Arc<FingerprintVerifier>>,
}

impl TrustStore {
    /// Validates `trust` and loads any certificates it names.
    pub(crate) fn new(trust: &Trust, address: &str) -> Result<Self, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let kind = match trust {
            Trust::SystemRoots => TrustKind::Roots(roots_config(&provider, system_roots())?),
            Trust::CaPem(pem) => TrustKind::Roots(roots_config(&provider, ca_roots(pem)?)?),
            Trust::Pinned(fp) => TrustKind::Pinned(normalize_fingerprint(fp).ok_or_else(|| {
                ClientError::Tls(format!(
                    "pinned fingerprint {fp:?} is not a SHA-256 in hex (64 characters)"
                ))
            })?),
            Trust::FirstUse(path) => TrustKind::FirstUse(path.clone()),
        };
        Ok(TrustStore {
            provider,
            address: address.to_string(),
            kind,
        })
    }

    /// The TLS settings for the next connection. For trust on first use this
    /// re-reads the known-hosts file, so an entry recorded by an earlier
    /// connection (or another process) is honoured.
    pub(crate) fn handshake(&self) -> Result<Handshake, ClientError> {
        let expected = match &self.kind {
            TrustKind::Roots(config) => {
                return Ok(Handshake {
                    config: config.clone(),
                    check: None,
                });
            }
            TrustKind::Pinned(fp) => Some(fp.clone()),
            TrustKind::FirstUse(path) => known_hosts::lookup(path, &self.address)?,
        };
        self.fingerprint_handshake(expected)
    }

    /// The TLS settings for the file server, which shows the same certificate
    /// as the client port. With fingerprint trust it must match the recorded
    /// fingerprint, or `seen` (the one the client connection verified); it
    /// is never recorded from here.
    pub(crate) fn file_handshake(&self, seen: Option<&str>) -> Result<Handshake, ClientError> {
        let expected = match &self.kind {
            TrustKind::Roots(_) => return self.handshake(),
            TrustKind::Pinned(fp) => fp.clone(),
            TrustKind::FirstUse(path) => match known_hosts::lookup(path, &self.address)? {
                Some(fp) => fp,
                None => seen.map(str::to_string).ok_or_else(|| {
                    ClientError::Tls(format!("no trusted fingerprint recorded for {}", self.address))
                })?,
            },
        };
        self.fingerprint_handshake(Some(expected))
    }

    fn fingerprint_handshake(&self, expected: Option<String>) -> Result<Handshake, ClientError> {
        let verifier = Arc::new(FingerprintVerifier {
            expected,
            algorithms: self.provider.signature_verification_algorithms,
            mismatch: OnceLock::new(),
        });
        let config = tls13_builder(&self.provider)?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        Ok(Handshake {
            config: Arc::new(config),
            check: Some(verifier),
        })
    }

    /// Called once the handshake completed: records a first-seen fingerprint
    /// and reports who the server is.
    pub(crate) fn completed(
        &self,
        handshake: &Handshake,
        leaf: Option<&CertificateDer<'_>>,
    ) -> Result<ServerIdentity, ClientError> {
        let leaf = leaf.ok_or_else(|| ClientError::Tls("server sent no certificate".into()))?;
        let fingerprint = cert_fingerprint(leaf);
        let first_use = handshake.check.as_ref().is_some_and(|c| c.expected.is_none());
        if let (true, TrustKind::FirstUse(path)) = (first_use, &self.kind) {
            known_hosts::remember(path, &self.address, &fingerprint)?;
            tracing::info!(address = %self.address, %fingerprint, "trusting new server certificate");
        }
        Ok(ServerIdentity {
            fingerprint,
            newly_trusted: first_use,
        })
    }

    /// Explains a failed handshake, turning a fingerprint mismatch into
    /// [`ClientError::CertificateChanged`].
    pub(crate) fn failed(&self, handshake: &Handshake, err: std::io::Error) -> ClientError {
        if let Some(check) = &handshake.check
            && let (Some(expected), Some(actual)) = (&check.expected, check.mismatch.get())
        {
            tracing::error!(
                address = %self.address, %expected, %actual,
                "server certificate does not match the trusted fingerprint"
            );
            return ClientError::CertificateChanged {
                expected: expected.clone(),
                actual: actual.clone(),
            };
        }
        match err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            Some(tls) => ClientError::Tls(tls.to_string()),
            None => ClientError::Io(err),
        }
    }
}

fn tls13_builder(
    provider: &Arc<CryptoProvider>,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, ClientError> {
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Tls(e.to_string()))
}

fn roots_config(
    provider: &Arc<CryptoProvider>,
    roots: rustls::RootCertStore,
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    Ok(Arc::new(
        tls13_builder(provider)?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// The operating system's roots, or the bundled Mozilla roots when none load.
fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        tracing::debug!(error = %err, "could not load some system root certificates");
    }
    roots.add_parsable_certificates(native.certs);
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

fn ca_roots(pem: &[u8]) -> Result<rustls::RootCertStore, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert = cert.map_err(|e| ClientError::Tls(format!("unreadable CA PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Tls(format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Tls("the CA PEM holds no certificate".into()));
    }
    Ok(roots)
}

/// Accepts exactly one leaf certificate (or, with no expectation yet, any
/// certificate) and verifies handshake signatures against it.
#[derive(Debug)]
struct FingerprintVerifier {
    /// `None` on first use: anything is accepted and recorded afterwards.
    expected: Option<String>,
    algorithms: WebPkiSupportedAlgorithms,
    /// The fingerprint actually seen when it did not match.
    mismatch: OnceLock<String>,
}

impl ServerCertVerifier for FingerprintVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = cert_fingerprint(end_entity);
        match &self.expected {
            Some(expected) if *expected != actual => {
                let _ = self.mismatch.set(actual);
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_lowercase_hex_sha256() {
        // sha256("abc"), a well-known test vector.
        assert_eq!(
            cert_fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn fingerprints_are_normalized() {
        let fp = cert_fingerprint(b"abc");
        let colons = fp
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(normalize_fingerprint(&colons).as_deref(), Some(fp.as_str()));
        assert_eq!(normalize_fingerprint("abcd"), None);
        assert_eq!(normalize_fingerprint(&"z".repeat(64)), None);
    }

    #[test]
    fn bad_pins_and_empty_ca_files_are_refused_up_front() {
        assert!(matches!(
            TrustStore::new(&Trust::Pinned("nope".into()), "x:1"),
            Err(ClientError::Tls(_))
        ));
        assert!(matches!(
            TrustStore::new(&Trust::CaPem(b"not pem".to_vec()), "x:1"),
            Err(ClientError::Tls(_))
        ));
    }
}
