//! Contacts (SPEC §2.5): friend requests, friendships with per-side remarks, and blocks.
//!
//! Policy (who may send a request, whether a block also unfriends) belongs to the server; this
//! module offers atomic primitives. Two rules are enforced here because only the database can
//! enforce them race-free: at most one pending request per direction (a unique index), and
//! accepting a request flips its status and creates both friendship rows in one transaction.

use crate::error::{Result, StoreError, is_unique_violation};
use crate::store::{BeginWrite, Engine, Store};

/// Lifecycle of a friend request; stored as a TINYINT with these values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i8)]
pub enum RequestStatus {
    /// Waiting for the recipient.
    Pending = 0,
    /// Accepted; the two users are friends.
    Accepted = 1,
    /// Declined by the recipient.
    Declined = 2,
    /// Withdrawn by the sender.
    Cancelled = 3,
}

/// A stored status value outside 0..=3.
#[derive(Debug, thiserror::Error)]
#[error("unknown friend request status {0}")]
pub struct UnknownStatus(i64);

impl TryFrom<i64> for RequestStatus {
    type Error = UnknownStatus;

    fn try_from(v: i64) -> std::result::Result<Self, UnknownStatus> {
        match v {
            0 => Ok(Self::Pending),
            1 => Ok(Self::Accepted),
            2 => Ok(Self::Declined),
            3 => Ok(Self::Cancelled),
            other => Err(UnknownStatus(other)),
        }
    }
}

impl From<RequestStatus> for i64 {
    fn from(s: RequestStatus) -> i64 {
        s as i64
    }
}

/// One friend request.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct FriendRequestRow {
    /// Snowflake id.
    pub id: i64,
    /// Sender.
    pub from_user: i64,
    /// Recipient.
    pub to_user: i64,
    /// Sender's note ("hi, we met at …").
    pub note: String,
    /// Where the request stands.
    #[sqlx(try_from = "i64")]
    pub status: RequestStatus,
    /// When it was sent, ms since the Unix epoch.
    pub created_at: i64,
    /// When it left the pending state, if it has.
    pub answered_at: Option<i64>,
}

/// One entry of a user's friend list.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct FriendshipRow {
    /// The friend's user id.
    pub friend_id: i64,
    /// The owner's private nickname for the friend; empty if unset.
    pub remark: String,
    /// When the friendship began, ms since the Unix epoch.
    pub since: i64,
}

/// Column list matching [`FriendRequestRow`], usable inside `concat!`.
macro_rules! request_cols {
    () => {
        "id, from_user, to_user, note, status, created_at, answered_at"
    };
}

/// Inserts both friendship rows, leaving existing ones (and their remarks) untouched.
fn insert_friendship_sql(engine: Engine) -> &'static str {
    match engine {
        Engine::MySql => {
            "INSERT INTO friendships (user_id, friend_id, remark, created_at) \
             VALUES (?, ?, '', ?), (?, ?, '', ?) ON DUPLICATE KEY UPDATE user_id = user_id"
        }
        Engine::Sqlite => {
            "INSERT INTO friendships (user_id, friend_id, remark, created_at) \
             VALUES (?, ?, '', ?), (?, ?, '', ?) ON CONFLICT DO NOTHING"
        }
    }
}

/// Inserts a block row unless it exists.
fn insert_block_sql(engine: Engine) -> &'static str {
    match engine {
        Engine::MySql => {
            "INSERT INTO blocks (user_id, blocked_id, created_at) VALUES (?, ?, ?) \
             ON DUPLICATE KEY UPDATE user_id = user_id"
        }
        Engine::Sqlite => {
            "INSERT INTO blocks (user_id, blocked_id, created_at) VALUES (?, ?, ?) \
             ON CONFLICT DO NOTHING"
        }
    }
}

/// Attempts at the update-or-insert in [`Store::create_friend_request`]; a second attempt is
/// only needed when a concurrent call inserted the same pending pair first.
const CREATE_REQUEST_ATTEMPTS: usize = 3;

impl Store {
    /// Creates a pending request from `from` to `to`, or, if one from `from` to `to` is
    /// already pending, updates its note and returns it.
    pub async fn create_friend_request(
        &self,
        from: i64,
        to: i64,
        note: &str,
        now_ms: i64,
    ) -> Result<FriendRequestRow> {
        for _ in 0..CREATE_REQUEST_ATTEMPTS {
            let existing: Option<FriendRequestRow> = db!(self, write, "create_friend_request", |db| async {
                let updated = sqlx::query(
                    "UPDATE friend_requests SET note = ? \
                         WHERE from_user = ? AND to_user = ? AND status = 0",
                )
                .bind(note)
                .bind(from)
                .bind(to)
                .execute(db)
                .await?;
                if updated.rows_affected() == 0 {
                    return Ok(None);
                }
                sqlx::query_as(concat!(
                    "SELECT ",
                    request_cols!(),
                    " FROM friend_requests WHERE from_user = ? AND to_user = ? AND status = 0"
                ))
                .bind(from)
                .bind(to)
                .fetch_optional(db)
                .await
            }
            .await)?;
            if let Some(row) = existing {
                return Ok(row);
            }

            let row = FriendRequestRow {
                id: self.next_id(),
                from_user: from,
                to_user: to,
                note: note.to_owned(),
                status: RequestStatus::Pending,
                created_at: now_ms,
                answered_at: None,
            };
            let inserted = db!(self, write, "create_friend_request", |db| sqlx::query(
                "INSERT INTO friend_requests (id, from_user, to_user, note, status, created_at, \
                 answered_at) VALUES (?, ?, ?, ?, 0, ?, NULL)"
            )
            .bind(row.id)
            .bind(row.from_user)
            .bind(row.to_user)
            .bind(&row.note)
            .bind(row.created_at)
            .execute(db)
            .await
            .map(|r| r.rows_affected()));
            match inserted {
                Ok(_) => return Ok(row),
                // Someone inserted the same pending pair between our UPDATE and INSERT (or it
                // was answered in between): go round and update that one instead.
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict)
    }

    /// The request with this id, in any state.
    pub async fn friend_request(&self, id: i64) -> Result<Option<FriendRequestRow>> {
        Ok(db!(self, read, "friend_request", |db| sqlx::query_as(concat!(
            "SELECT ",
            request_cols!(),
            " FROM friend_requests WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(db)
        .await)?)
    }

    /// The pending request from `from` to `to`, if any.
    pub async fn pending_request(&self, from: i64, to: i64) -> Result<Option<FriendRequestRow>> {
        Ok(db!(self, read, "pending_request", |db| sqlx::query_as(concat!(
            "SELECT ",
            request_cols!(),
            " FROM friend_requests WHERE from_user = ? AND to_user = ? AND status = 0"
        ))
        .bind(from)
        .bind(to)
        .fetch_optional(db)
        .await)?)
    }

    /// Pending requests to `user`, excluding those whose sender `user` has blocked (a blocked
    /// user is never told, so their requests stay pending but invisible). Newest first.
    pub async fn incoming_requests(&self, user: i64) -> Result<Vec<FriendRequestRow>> {
        Ok(db!(self, read, "incoming_requests", |db| sqlx::query_as(
            concat!(
                "SELECT ",
                request_cols!(),
                " FROM friend_requests r WHERE r.to_user = ? AND r.status = 0 AND NOT EXISTS \
             (SELECT 1 FROM blocks b WHERE b.user_id = r.to_user AND b.blocked_id = r.from_user) \
             ORDER BY r.created_at DESC, r.id DESC"
            )
        )
        .bind(user)
        .fetch_all(db)
        .await)?)
    }

    /// Pending requests sent by `user`, newest first.
    pub async fn outgoing_requests(&self, user: i64) -> Result<Vec<FriendRequestRow>> {
        Ok(db!(self, read, "outgoing_requests", |db| sqlx::query_as(
            concat!(
                "SELECT ",
                request_cols!(),
                " FROM friend_requests WHERE from_user = ? AND status = 0 \
             ORDER BY created_at DESC, id DESC"
            )
        )
        .bind(user)
        .fetch_all(db)
        .await)?)
    }

    /// Moves a pending request to `status`, which must be [`RequestStatus::Declined`] or
    /// [`RequestStatus::Cancelled`] (accepting goes through [`Store::accept_friend_request`],
    /// which also creates the friendship). False if the request was not pending or `status`
    /// is not one of those two.
    pub async fn close_friend_request(&self, id: i64, status: RequestStatus, now_ms: i64) -> Result<bool> {
        if !matches!(status, RequestStatus::Declined | RequestStatus::Cancelled) {
            return Ok(false);
        }
        let done = db!(self, write, "close_friend_request", |db| sqlx::query(
            "UPDATE friend_requests SET status = ?, answered_at = ? WHERE id = ? AND status = 0"
        )
        .bind(i64::from(status))
        .bind(now_ms)
        .bind(id)
        .execute(db)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// In one transaction: moves the request from pending to accepted and creates both
    /// friendship rows (keeping any that already exist). Returns the accepted request, or
    /// `None` if it does not exist or was not pending.
    pub async fn accept_friend_request(&self, id: i64, now_ms: i64) -> Result<Option<FriendRequestRow>> {
        let insert_friendship = insert_friendship_sql(self.engine());
        Ok(db!(self, write, "accept_friend_request", |db| async {
            let mut tx = db.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE friend_requests SET status = 1, answered_at = ? WHERE id = ? AND status = 0",
            )
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                // Dropping `tx` rolls back (nothing was changed anyway).
                return Ok(None);
            }
            let row: FriendRequestRow = sqlx::query_as(concat!(
                "SELECT ",
                request_cols!(),
                " FROM friend_requests WHERE id = ?"
            ))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(insert_friendship)
                .bind(row.from_user)
                .bind(row.to_user)
                .bind(now_ms)
                .bind(row.to_user)
                .bind(row.from_user)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Some(row))
        }
        .await)?)
    }

    /// Makes `a` and `b` friends (both rows, in one statement); existing rows are kept.
    pub async fn add_friendship(&self, a: i64, b: i64, now_ms: i64) -> Result<()> {
        let sql = insert_friendship_sql(self.engine());
        db!(self, write, "add_friendship", |db| sqlx::query(sql)
            .bind(a)
            .bind(b)
            .bind(now_ms)
            .bind(b)
            .bind(a)
            .bind(now_ms)
            .execute(db)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Ends the friendship in both directions. False if they were not friends.
    pub async fn remove_friendship(&self, a: i64, b: i64) -> Result<bool> {
        let done = db!(self, write, "remove_friendship", |db| sqlx::query(
            "DELETE FROM friendships \
             WHERE (user_id = ? AND friend_id = ?) OR (user_id = ? AND friend_id = ?)"
        )
        .bind(a)
        .bind(b)
        .bind(b)
        .bind(a)
        .execute(db)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// True if `b` is on `a`'s friend list.
    pub async fn are_friends(&self, a: i64, b: i64) -> Result<bool> {
        let hit = db!(self, read, "are_friends", |db| sqlx::query(
            "SELECT 1 FROM friendships WHERE user_id = ? AND friend_id = ?"
        )
        .bind(a)
        .bind(b)
        .fetch_optional(db)
        .await
        .map(|row| row.is_some()))?;
        Ok(hit)
    }

    /// `user`'s friends, oldest friendship first.
    pub async fn friends(&self, user: i64) -> Result<Vec<FriendshipRow>> {
        Ok(db!(self, read, "friends", |db| sqlx::query_as(
            "SELECT friend_id, remark, created_at AS since FROM friendships \
             WHERE user_id = ? ORDER BY created_at, friend_id"
        )
        .bind(user)
        .fetch_all(db)
        .await)?)
    }

    /// Sets `user`'s private remark for `friend` (empty clears it). False if not friends.
    pub async fn set_remark(&self, user: i64, friend: i64, remark: &str) -> Result<bool> {
        let done = db!(self, write, "set_remark", |db| sqlx::query(
            "UPDATE friendships SET remark = ? WHERE user_id = ? AND friend_id = ?"
        )
        .bind(remark)
        .bind(user)
        .bind(friend)
        .execute(db)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// `user` blocks `target` (idempotent; the original block time is kept).
    pub async fn block(&self, user: i64, target: i64, now_ms: i64) -> Result<()> {
        let sql = insert_block_sql(self.engine());
        db!(self, write, "block", |db| sqlx::query(sql)
            .bind(user)
            .bind(target)
            .bind(now_ms)
            .execute(db)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// `user` unblocks `target`. False if `target` was not blocked.
    pub async fn unblock(&self, user: i64, target: i64) -> Result<bool> {
        let done = db!(self, write, "unblock", |db| sqlx::query(
            "DELETE FROM blocks WHERE user_id = ? AND blocked_id = ?"
        )
        .bind(user)
        .bind(target)
        .execute(db)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// True if `by` has blocked `target`.
    pub async fn is_blocked(&self, by: i64, target: i64) -> Result<bool> {
        let hit = db!(self, read, "is_blocked", |db| sqlx::query(
            "SELECT 1 FROM blocks WHERE user_id = ? AND blocked_id = ?"
        )
        .bind(by)
        .bind(target)
        .fetch_optional(db)
        .await
        .map(|row| row.is_some()))?;
        Ok(hit)
    }

    /// The ids `user` has blocked, oldest block first.
    pub async fn blocked(&self, user: i64) -> Result<Vec<i64>> {
        Ok(db!(self, read, "blocked", |db| sqlx::query_scalar(
            "SELECT blocked_id FROM blocks WHERE user_id = ? ORDER BY created_at, blocked_id"
        )
        .bind(user)
        .fetch_all(db)
        .await)?)
    }
}
