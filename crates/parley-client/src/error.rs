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
            _ => false,
        }
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
