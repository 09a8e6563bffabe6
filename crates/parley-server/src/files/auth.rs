//! Bearer-token authentication for the file endpoints.
//!
//! The token is the session token the framed protocol's `Login` handed out (64 hex chars =
//! 32 bytes). Like `Resume`, only its SHA-256 is looked up; a revoked, unknown or
//! inactivity-expired session (or a deleted user) is a 401. Use through HTTP counts as
//! activity, recorded at most once a minute so chunked uploads do not write a row per chunk.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use sha2::{Digest, Sha256};

use super::{ApiError, Files};
use crate::service::now_ms;

/// How stale `last_used_at` may get before an HTTP request refreshes it.
const TOUCH_EVERY_MS: i64 = 60_000;

/// The authenticated caller of a file endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authed {
    /// The logged-in user.
    pub user_id: i64,
    /// Their session.
    pub session_id: i64,
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "a valid session token is required (Authorization: Bearer <token>)",
    )
}

/// The token bytes from an `Authorization: Bearer <hex>` header value.
fn bearer_token(value: &str) -> Option<Vec<u8>> {
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = hex::decode(token.trim()).ok()?;
    (token.len() == 32).then_some(token)
}

impl FromRequestParts<Arc<Files>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, files: &Arc<Files>) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(unauthorized)?;
        let store = &files.ctx.store;
        let session = store
            .session_by_token_hash(&Sha256::digest(&token))
            .await?
            .ok_or_else(unauthorized)?;
        let now = now_ms();
        let expiry = i64::try_from(files.ctx.cfg.session_expiry.as_millis()).unwrap_or(i64::MAX);
        if now.saturating_sub(session.last_used_at) > expiry {
            store.revoke_session(session.user_id, session.id, now).await?;
            return Err(unauthorized());
        }
        if store.user_by_id(session.user_id).await?.is_none() {
            return Err(unauthorized());
        }
        if now.saturating_sub(session.last_used_at) > TOUCH_EVERY_MS {
            store.touch_session(session.id, now).await?;
        }
        Ok(Authed {
            user_id: session.user_id,
            session_id: session.id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn parses_bearer_tokens() {
        let hex = "ab".repeat(32);
        assert_eq!(bearer_token(&format!("Bearer {hex}")).map(|t| t.len()), Some(32));
        assert_eq!(
            bearer_token(&format!("bearer  {hex} ")).map(|t| t.len()),
            Some(32)
        );
        assert!(bearer_token(&format!("Basic {hex}")).is_none());
        assert!(bearer_token("Bearer abcd").is_none());
        assert!(bearer_token("Bearer").is_none());
        assert!(bearer_token(&format!("Bearer {}", "zz".repeat(32))).is_none());
    }
}
