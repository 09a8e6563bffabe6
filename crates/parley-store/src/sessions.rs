//! Login sessions, one per device (SPEC §2.2): lookup by token hash, listing, revocation.
//!
//! Only the hash of a session token is ever stored; the caller hashes the presented token and
//! looks it up here. Revocation stamps `revoked_at` instead of deleting, so a revoked device
//! can still be shown as such and audit trails survive; lookups skip revoked rows.

use sqlx::AssertSqlSafe;

use crate::error::{Result, StoreError};
use crate::store::{BeginWrite, IN_CHUNK, Store, placeholders};

/// One device's login session.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct SessionRow {
    /// Snowflake id (from [`Store::next_id`]).
    pub id: i64,
    /// Owner.
    pub user_id: i64,
    /// SHA-256 of the session token (32 bytes).
    pub token_hash: Vec<u8>,
    /// Device label given at login ("laptop").
    pub device_name: String,
    /// Client address at login.
    pub address: String,
    /// Login time, ms since the Unix epoch.
    pub created_at: i64,
    /// Last authenticated use, ms since the Unix epoch.
    pub last_used_at: i64,
    /// When the session was revoked (logout, password change), if it was.
    pub revoked_at: Option<i64>,
}

/// Column list matching [`SessionRow`], usable inside `concat!`.
macro_rules! session_cols {
    () => {
        "id, user_id, token_hash, device_name, address, created_at, last_used_at, revoked_at"
    };
}

impl Store {
    /// Stores a new session exactly as given (the caller fills in id and times).
    /// A duplicate id or token hash yields [`StoreError::Conflict`].
    pub async fn create_session(&self, s: &SessionRow) -> Result<()> {
        db!(self, write, "create_session", |db| sqlx::query(
            "INSERT INTO sessions (id, user_id, token_hash, device_name, address, created_at, \
             last_used_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        .bind(s.id)
        .bind(s.user_id)
        .bind(&s.token_hash)
        .bind(&s.device_name)
        .bind(&s.address)
        .bind(s.created_at)
        .bind(s.last_used_at)
        .bind(s.revoked_at)
        .execute(db)
        .await
        .map(|r| r.rows_affected())
        .map_err(StoreError::from_insert))?;
        Ok(())
    }

    /// The live (not revoked) session whose token hashes to `hash`.
    pub async fn session_by_token_hash(&self, hash: &[u8]) -> Result<Option<SessionRow>> {
        Ok(db!(self, read, "session_by_token_hash", |db| sqlx::query_as(
            concat!(
                "SELECT ",
                session_cols!(),
                " FROM sessions WHERE token_hash = ? AND revoked_at IS NULL"
            )
        )
        .bind(hash)
        .fetch_optional(db)
        .await)?)
    }

    /// Marks the session as used now (for inactivity expiry and the device list).
    pub async fn touch_session(&self, id: i64, now_ms: i64) -> Result<()> {
        db!(self, write, "touch_session", |db| sqlx::query(
            "UPDATE sessions SET last_used_at = ? WHERE id = ?"
        )
        .bind(now_ms)
        .bind(id)
        .execute(db)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The user's live sessions, newest first.
    pub async fn list_sessions(&self, user_id: i64) -> Result<Vec<SessionRow>> {
        Ok(db!(self, read, "list_sessions", |db| sqlx::query_as(concat!(
            "SELECT ",
            session_cols!(),
            " FROM sessions WHERE user_id = ? AND revoked_at IS NULL \
             ORDER BY created_at DESC, id DESC"
        ))
        .bind(user_id)
        .fetch_all(db)
        .await)?)
    }

    /// Revokes one of the user's sessions. False if it is not this user's, does not exist,
    /// or was already revoked.
    pub async fn revoke_session(&self, user_id: i64, session_id: i64, now_ms: i64) -> Result<bool> {
        let done = db!(self, write, "revoke_session", |db| sqlx::query(
            "UPDATE sessions SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL"
        )
        .bind(now_ms)
        .bind(session_id)
        .bind(user_id)
        .execute(db)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Revokes all of the user's live sessions except `keep` (e.g. after a password change);
    /// returns the ids it revoked so the caller can disconnect those devices.
    pub async fn revoke_other_sessions(&self, user_id: i64, keep: i64, now_ms: i64) -> Result<Vec<i64>> {
        // Revoke exactly the ids we read, in one transaction, so the returned list is precisely
        // what this call revoked on both engines (MySQL's consistent-read SELECT and a
        // criteria-based UPDATE could otherwise disagree about a concurrently created session).
        Ok(db!(self, write, "revoke_other_sessions", |db| async {
            let mut tx = db.begin_write().await?;
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM sessions WHERE user_id = ? AND id <> ? AND revoked_at IS NULL",
            )
            .bind(user_id)
            .bind(keep)
            .fetch_all(&mut *tx)
            .await?;
            for chunk in ids.chunks(IN_CHUNK) {
                // Only `?` placeholders are spliced in; every value is bound.
                let sql = format!(
                    "UPDATE sessions SET revoked_at = ? WHERE revoked_at IS NULL AND id IN ({})",
                    placeholders(chunk.len())
                );
                let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now_ms);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(ids)
        }
        .await)?)
    }
}
