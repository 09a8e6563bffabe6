//! Accounts: registration, lookup, profile edits, last-seen and prefix search (SPEC §2.1–2.4).
//!
//! Usernames arrive already validated and lowercased; the unique key on `username` is the
//! authority on "name taken" (no check-then-insert race), reported as [`StoreError::Conflict`].

use sqlx::AssertSqlSafe;

use crate::error::{Result, StoreError};
use crate::store::{IN_CHUNK, Store, placeholders};

/// One account.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct UserRow {
    /// Snowflake id.
    pub id: i64,
    /// Unique login name, lowercase.
    pub username: String,
    /// Name shown to others.
    pub display_name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Free-text status ("at lunch"); empty if unset.
    pub status_line: String,
    /// Avatar image in the `files` table, if set.
    pub avatar_file_id: Option<i64>,
    /// Registration time, ms since the Unix epoch.
    pub created_at: i64,
    /// Last time the user was online, ms since the Unix epoch; 0 if never.
    pub last_seen_at: i64,
}

/// Column list matching [`UserRow`], usable inside `concat!`.
macro_rules! user_cols {
    () => {
        "id, username, display_name, password_hash, status_line, avatar_file_id, created_at, \
         last_seen_at"
    };
}

/// Escape character for LIKE patterns. Not backslash: MySQL treats `\` in string literals
/// specially (unless `NO_BACKSLASH_ESCAPES`), so `!` keeps the SQL identical on both engines.
const LIKE_ESCAPE: char = '!';

/// `text` with LIKE wildcards (and the escape character itself) escaped by [`LIKE_ESCAPE`],
/// so it matches literally inside a pattern used with `ESCAPE '!'`.
pub(crate) fn like_escape(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_') || c == LIKE_ESCAPE {
            pattern.push(LIKE_ESCAPE);
        }
        pattern.push(c);
    }
    pattern
}

/// `prefix` as a LIKE pattern matching strings that start with it literally.
fn like_prefix(prefix: &str) -> String {
    let mut pattern = like_escape(prefix);
    pattern.push('%');
    pattern
}

impl Store {
    /// Registers a user. `username` must already be lowercased; a taken name (either engine's
    /// unique key) yields [`StoreError::Conflict`].
    pub async fn create_user(
        &self,
        username: &str,
        display_name: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<UserRow> {
        let row = UserRow {
            id: self.next_id(),
            username: username.to_owned(),
            display_name: display_name.to_owned(),
            password_hash: password_hash.to_owned(),
            status_line: String::new(),
            avatar_file_id: None,
            created_at: now_ms,
            last_seen_at: 0,
        };
        db!(self, write, "create_user", |db| sqlx::query(
            "INSERT INTO users (id, username, display_name, password_hash, status_line, \
             avatar_file_id, created_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        .bind(row.id)
        .bind(&row.username)
        .bind(&row.display_name)
        .bind(&row.password_hash)
        .bind(&row.status_line)
        .bind(row.avatar_file_id)
        .bind(row.created_at)
        .bind(row.last_seen_at)
        .execute(db)
        .await
        .map(|r| r.rows_affected())
        .map_err(StoreError::from_insert))?;
        Ok(row)
    }

    /// The user with this id.
    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>> {
        Ok(db!(self, read, "user_by_id", |db| sqlx::query_as(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(db)
        .await)?)
    }

    /// The user with this (lowercase) username.
    pub async fn user_by_username(&self, username: &str) -> Result<Option<UserRow>> {
        Ok(db!(self, read, "user_by_username", |db| sqlx::query_as(
            concat!("SELECT ", user_cols!(), " FROM users WHERE username = ?")
        )
        .bind(username)
        .fetch_optional(db)
        .await)?)
    }

    /// The users among `ids` that exist, in no particular order.
    pub async fn users_by_ids(&self, ids: &[i64]) -> Result<Vec<UserRow>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            // Only `?` placeholders are spliced in; every value is bound.
            let sql = format!(
                concat!("SELECT ", user_cols!(), " FROM users WHERE id IN ({})"),
                placeholders(chunk.len())
            );
            let rows: Vec<UserRow> = db!(self, read, "users_by_ids", |db| {
                let mut q = sqlx::query_as(AssertSqlSafe(sql.clone()));
                for id in chunk {
                    q = q.bind(*id);
                }
                q.fetch_all(db).await
            })?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// Changes the given profile fields (`None` leaves a field as is); returns the updated
    /// user, or `None` if there is no such user.
    pub async fn update_profile(
        &self,
        id: i64,
        display_name: Option<&str>,
        status_line: Option<&str>,
    ) -> Result<Option<UserRow>> {
        // Both statements on the writer so the read sees the update on either engine.
        db!(self, write, "update_profile", |db| async {
            let updated = sqlx::query(
                "UPDATE users SET display_name = COALESCE(?, display_name), \
                 status_line = COALESCE(?, status_line) WHERE id = ?",
            )
            .bind(display_name)
            .bind(status_line)
            .bind(id)
            .execute(db)
            .await?;
            if updated.rows_affected() == 0 {
                return Ok(None);
            }
            sqlx::query_as(concat!("SELECT ", user_cols!(), " FROM users WHERE id = ?"))
                .bind(id)
                .fetch_optional(db)
                .await
        }
        .await)
        .map_err(StoreError::from)
    }

    /// Replaces the stored password hash.
    pub async fn set_password_hash(&self, id: i64, hash: &str) -> Result<()> {
        db!(self, write, "set_password_hash", |db| sqlx::query(
            "UPDATE users SET password_hash = ? WHERE id = ?"
        )
        .bind(hash)
        .bind(id)
        .execute(db)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Records when the user was last online.
    pub async fn set_last_seen(&self, id: i64, now_ms: i64) -> Result<()> {
        db!(self, write, "set_last_seen", |db| sqlx::query(
            "UPDATE users SET last_seen_at = ? WHERE id = ?"
        )
        .bind(now_ms)
        .bind(id)
        .execute(db)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Users whose username or display name starts with `prefix` (case-insensitive; LIKE
    /// wildcards in `prefix` match literally), with id > `after_id`, ordered by id, at most
    /// `limit`. Page by passing the last id of one page as `after_id` of the next.
    ///
    /// Case folding is the engine's: full Unicode on MySQL (`utf8mb4_unicode_ci`), ASCII only
    /// on SQLite (`NOCASE`).
    pub async fn search_users(&self, prefix: &str, after_id: i64, limit: u32) -> Result<Vec<UserRow>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let pattern = like_prefix(prefix);
        // A UNION of two index range scans (one per column, each cut to `limit`) rather than
        // `a LIKE ? OR b LIKE ?`, which both engines would answer with a full table scan.
        // `'!'` is [`LIKE_ESCAPE`].
        Ok(db!(self, read, "search_users", |db| sqlx::query_as(concat!(
            "SELECT ",
            user_cols!(),
            " FROM (SELECT ",
            user_cols!(),
            " FROM (SELECT ",
            user_cols!(),
            " FROM users WHERE username LIKE ? ESCAPE '!' AND id > ? ORDER BY id LIMIT ?) AS by_name \
             UNION SELECT ",
            user_cols!(),
            " FROM (SELECT ",
            user_cols!(),
            " FROM users WHERE display_name LIKE ? ESCAPE '!' AND id > ? ORDER BY id LIMIT ?) \
             AS by_display) AS hits ORDER BY id LIMIT ?"
        ))
        .bind(&pattern)
        .bind(after_id)
        .bind(i64::from(limit))
        .bind(&pattern)
        .bind(after_id)
        .bind(i64::from(limit))
        .bind(i64::from(limit))
        .fetch_all(db)
        .await)?)
    }
}

#[cfg(test)]
mod tests {
    use super::like_prefix;

    #[test]
    fn escapes_like_wildcards() {
        assert_eq!(like_prefix("a_b"), "a!_b%");
        assert_eq!(like_prefix("50%"), "50!%%");
        assert_eq!(like_prefix("hi!"), "hi!!%");
        assert_eq!(like_prefix(""), "%");
    }
}
