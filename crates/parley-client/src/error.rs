//! The one error type of the SDK.
//!
//! A caller mostly needs to tell three things apart: the server said no (and
//! why — [`ClientError::Server`] keeps the typed code), the connection failed
//! (retry later), and the server is not who it claims to be
//! ([`ClientError::CertificateChanged`], never to be retried silently).

use parley_proto::pb;

/// Why a client operation failed.
#[derive(thiserror::Error, Debug)]
pub enum ClientError {
    /// The server refused the request with a typed error.
    #[error("{0}")]
    Server(pb::Error),
    /// A socket or file operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake failed or the trust settings are unusable.
    #[error("TLS error: {0}")]
    Tls(String),
    /// The server's certificate does not match the pinned or first-seen
    /// fingerprint. This may be an attack; it is never retried automatically.
    #[error(
        "SERVER CERTIFICATE CHANGED: expected sha256 {expected}, got sha256 {actual}. \
         Someone may be intercepting the connection. If the server's certificate was \
         replaced on purpose, remove the old entry from the known-hosts file or pin the new \
         fingerprint"
    )]
    CertificateChanged {
        /// The fingerprint that was pinned or recorded on first use.
        expected: String,
        /// The fingerprint the server presented.
        actual: String,
    },
    /// The server did not answer within the configured time.
    #[error("request timed out")]
    Timeout,
    /// The connection closed or was lost while the request was in flight, or
    /// the client is closed.
    #[error("disconnected from the server")]
    Disconnected,
    /// The server sent something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The operation needs a logged-in session and this client has none.
    #[error("not logged in")]
    NotLoggedIn,
    /// The file server (HTTPS side) refused a request.
    #[error("file server answered {status}: {message} ({code})")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The server's error code, e.g. `not_found` or `hash_mismatch`.
        code: String,
        /// The server's explanation.
        message: String,
    },
    /// Downloaded bytes do not hash to the SHA-256 the server announced; the
    /// partial file was removed.
    #[error("integrity check failed: expected sha256 {expected}, got {actual}")]
    Integrity {
        /// The SHA-256 the server announced (its ETag), lowercase hex.
        expected: String,
        /// The SHA-256 of what arrived.
        actual: String,
    },
}

impl ClientError {
    /// The protocol error code behind this error, if it has one.
    ///
    /// [`ClientError::NotLoggedIn`] maps to `Unauthenticated`, the code the
    /// server would have answered with, so callers can test one code for both.
    pub fn code(&self) -> Option<pb::ErrorCode> {
        match self {
            ClientError::Server(e) => Some(e.kind()),
            ClientError::NotLoggedIn => Some(pb::ErrorCode::Unauthenticated),
            ClientError::Http { status, code, .. } => Some(http_error_code(*status, code)),
            _ => None,
        }
    }

    /// Whether the request may succeed if simply sent again on a new connection.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Io(_) | ClientError::Timeout | ClientError::Disconnected => true,
            ClientError::Server(e) => matches!(
                e.kind(),
                pb::ErrorCode::RateLimited
                    | pb::ErrorCode::ServerBusy
                    | pb::ErrorCode::ShuttingDown
                    | pb::ErrorCode::IdleTimeout
            ),
            ClientError::Http { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }
}

/// The protocol code closest to a file-server error: its `code` when that
/// names a protocol code (`not_found`, `rate_limited` …), else by status.
fn http_error_code(status: u16, code: &str) -> pb::ErrorCode {
    let named = code.to_ascii_uppercase();
    if let Some(known) = pb::ErrorCode::from_str_name(&named)
        && known != pb::ErrorCode::Unspecified
    {
        return known;
    }
    match status {
        400 | 409 | 413 | 416 | 422 => pb::ErrorCode::InvalidArgument,
        401 => pb::ErrorCode::Unauthenticated,
        403 => pb::ErrorCode::Forbidden,
        404 => pb::ErrorCode::NotFound,
        429 => pb::ErrorCode::RateLimited,
        503 => pb::ErrorCode::ServerBusy,
        _ => pb::ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_keep_their_code() {
        let err = ClientError::Server(pb::Error::new(pb::ErrorCode::UsernameTaken, "taken"));
        assert_eq!(err.code(), Some(pb::ErrorCode::UsernameTaken));
        assert_eq!(ClientError::Timeout.code(), None);
        assert_eq!(
            ClientError::NotLoggedIn.code(),
            Some(pb::ErrorCode::Unauthenticated)
        );
    }

    #[test]
    fn http_errors_map_to_protocol_codes() {
        let http = |status, code: &str| ClientError::Http {
            status,
            code: code.into(),
            message: String::new(),
        };
        assert_eq!(http(404, "not_found").code(), Some(pb::ErrorCode::NotFound));
        assert_eq!(http(403, "whatever").code(), Some(pb::ErrorCode::Forbidden));
        assert_eq!(
            http(422, "hash_mismatch").code(),
            Some(pb::ErrorCode::InvalidArgument)
        );
        assert_eq!(http(429, "rate_limited").code(), Some(pb::ErrorCode::RateLimited));
        assert!(http(503, "busy").is_transient());
        assert!(!http(404, "not_found").is_transient());
    }

    #[test]
    fn certificate_change_is_loud_and_names_both_fingerprints() {
        let msg = ClientError::CertificateChanged {
            expected: "aa".into(),
            actual: "bb".into(),
        }
        .to_string();
        assert!(msg.starts_with("SERVER CERTIFICATE CHANGED"));
        assert!(msg.contains("aa") && msg.contains("bb"));
    }
}
