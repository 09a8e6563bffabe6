//! Reading messages and per-member message state (SPEC §3.3–3.5): catch-up after a seq,
//! history pages, the conversation list's last message and unread count, read pointers and
//! delete-for-me. Appending lives in [`crate::append`].
//!
//! Every query stays inside one conversation (`conv_id = ?` on the `(conv_id, seq)` primary
//! key), so each is a range scan of that conversation only.

use sqlx::AssertSqlSafe;

use crate::error::{Result, StoreError};
use crate::store::{Engine, Store};

/// Kind of an EDIT meta message (changes an earlier message; clients apply it, never show it).
pub const KIND_EDIT: i32 = 7;
/// Kind of a RECALL meta message.
pub const KIND_RECALL: i32 = 8;

/// One stored message, in its current state (edits and recalls applied).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct MessageRow {
    /// The conversation.
    pub conv_id: i64,
    /// Per-conversation sequence number: gap-free, from 1.
    pub seq: i64,
    /// Snowflake id, unique across conversations.
    pub id: i64,
    /// Author.
    pub sender_id: i64,
    /// The id the sender's client gave it (idempotency key with `conv_id` and `sender_id`).
    pub client_msg_id: String,
    /// Wire `MessageKind` value (1 text, 2 image, 3 file, …, 7 edit, 8 recall).
    pub kind: i32,
    /// Text, caption, or encoded payload; empty once recalled.
    pub body: String,
    /// Attached file, if any; cleared by a recall.
    pub file_id: Option<i64>,
    /// For EDIT/RECALL meta messages, the seq they change; 0 otherwise.
    pub target_seq: i64,
    /// Server time of the commit, ms since the Unix epoch.
    pub created_at: i64,
    /// When it was last edited, if ever.
    pub edited_at: Option<i64>,
    /// When it was recalled, if it was.
    pub recalled_at: Option<i64>,
}

/// A [`MessageRow`] with whether the viewer hid it, for [`Store::messages_after`].
#[derive(sqlx::FromRow)]
struct ScannedRow {
    #[sqlx(flatten)]
    row: MessageRow,
    hidden_seq: Option<i64>,
}

/// Column list matching [`MessageRow`] (table alias `m`), usable inside `concat!`.
macro_rules! msg_cols {
    () => {
        "m.conv_id, m.seq, m.id, m.sender_id, m.client_msg_id, m.kind, m.body, m.file_id, \
         m.target_seq, m.created_at, m.edited_at, m.recalled_at"
    };
}
pub(crate) use msg_cols;

/// `AND` clause dropping rows the viewer (first bind) hid, for queries over `messages m`.
macro_rules! not_hidden {
    () => {
        " AND NOT EXISTS (SELECT 1 FROM message_hidden h \
         WHERE h.conv_id = m.conv_id AND h.user_id = ? AND h.seq = m.seq)"
    };
}
pub(crate) use not_hidden;

/// Largest number of hidden-message rows inserted by one statement (4 placeholders each).
const HIDE_CHUNK: usize = 500;

/// `INSERT` of `n` message_hidden rows that skips rows already present.
fn hide_sql(engine: Engine, n: usize) -> String {
    let mut sql = String::from("INSERT INTO message_hidden (conv_id, user_id, seq, hidden_at) VALUES ");
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?, ?, ?)");
    }
    sql.push_str(match engine {
        Engine::MySql => " ON DUPLICATE KEY UPDATE seq = seq",
        Engine::Sqlite => " ON CONFLICT DO NOTHING",
    });
    sql
}

impl Store {
    /// The message at `seq` of the conversation.
    pub async fn message(&self, conv_id: i64, seq: i64) -> Result<Option<MessageRow>> {
        Ok(db!(self, read, "message", |db| sqlx::query_as(concat!(
            "SELECT ",
            msg_cols!(),
            " FROM messages m WHERE m.conv_id = ? AND m.seq = ?"
        ))
        .bind(conv_id)
        .bind(seq)
        .fetch_optional(db)
        .await)?)
    }

    /// Catch-up: messages with seq > `after_seq`, ascending, scanning at most `limit` rows and
    /// returning those `viewer` did not hide (EDIT/RECALL meta messages included: clients
    /// apply them). Also returns `through_seq`, the highest seq scanned, so hidden rows at the
    /// end of a page still advance the caller's position; `after_seq` if nothing was scanned.
    /// Scan and hidden check are one statement, so the page is a consistent snapshot.
    pub async fn messages_after(
        &self,
        conv_id: i64,
        viewer: i64,
        after_seq: i64,
        limit: u32,
    ) -> Result<(Vec<MessageRow>, i64)> {
        if limit == 0 {
            return Ok((Vec::new(), after_seq));
        }
        let scanned: Vec<ScannedRow> = db!(self, read, "messages_after", |db| sqlx::query_as(concat!(
            "SELECT ",
            msg_cols!(),
            ", h.seq AS hidden_seq FROM messages m LEFT JOIN message_hidden h \
             ON h.conv_id = m.conv_id AND h.user_id = ? AND h.seq = m.seq \
             WHERE m.conv_id = ? AND m.seq > ? ORDER BY m.seq LIMIT ?"
        ))
        .bind(viewer)
        .bind(conv_id)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(db)
        .await)?;
        let through = scanned.last().map_or(after_seq, |s| s.row.seq);
        let rows = scanned
            .into_iter()
            .filter(|s| s.hidden_seq.is_none())
            .map(|s| s.row)
            .collect();
        Ok((rows, through))
    }

    /// History page: up to `limit` messages with seq < `before_seq` (`before_seq <= 0` means
    /// from the newest), returned in ascending seq order, without those `viewer` hid and
    /// without EDIT/RECALL meta messages (their effect is already in the rows).
    pub async fn messages_before(
        &self,
        conv_id: i64,
        viewer: i64,
        before_seq: i64,
        limit: u32,
    ) -> Result<Vec<MessageRow>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let before = if before_seq <= 0 { i64::MAX } else { before_seq };
        let mut rows: Vec<MessageRow> = db!(self, read, "messages_before", |db| sqlx::query_as(concat!(
            "SELECT ",
            msg_cols!(),
            " FROM messages m WHERE m.conv_id = ? AND m.seq < ? AND m.kind NOT IN (7, 8)",
            not_hidden!(),
            " ORDER BY m.seq DESC LIMIT ?"
        ))
        .bind(conv_id)
        .bind(before)
        .bind(viewer)
        .bind(i64::from(limit))
        .fetch_all(db)
        .await)?;
        rows.reverse();
        Ok(rows)
    }

    /// The newest message `viewer` can see, EDIT/RECALL meta messages excluded (for the
    /// conversation list). Recalled messages count: the list shows "message recalled".
    pub async fn last_message(&self, conv_id: i64, viewer: i64) -> Result<Option<MessageRow>> {
        Ok(db!(self, read, "last_message", |db| sqlx::query_as(concat!(
            "SELECT ",
            msg_cols!(),
            " FROM messages m WHERE m.conv_id = ? AND m.kind NOT IN (7, 8)",
            not_hidden!(),
            " ORDER BY m.seq DESC LIMIT 1"
        ))
        .bind(conv_id)
        .bind(viewer)
        .fetch_optional(db)
        .await)?)
    }

    /// Unread messages for `viewer`: seq > `read_seq`, sent by someone else, not hidden by
    /// the viewer, not recalled, not EDIT/RECALL meta messages.
    pub async fn unread_count(&self, conv_id: i64, viewer: i64, read_seq: i64) -> Result<i64> {
        Ok(db!(self, read, "unread_count", |db| sqlx::query_scalar(
            concat!(
                "SELECT COUNT(*) FROM messages m WHERE m.conv_id = ? AND m.seq > ? \
             AND m.sender_id <> ? AND m.recalled_at IS NULL AND m.kind NOT IN (7, 8)",
                not_hidden!()
            )
        )
        .bind(conv_id)
        .bind(read_seq)
        .bind(viewer)
        .bind(viewer)
        .fetch_one(db)
        .await)?)
    }

    /// Moves `user_id`'s read pointer forward to `seq`, capped at the conversation's
    /// `max_seq`, never backwards; returns the pointer afterwards (the max of the old value
    /// and the capped `seq`). [`StoreError::NotFound`] if the conversation does not exist or
    /// the user is not a member.
    pub async fn mark_read(&self, conv_id: i64, user_id: i64, seq: i64) -> Result<i64> {
        db!(self, write, "mark_read", |db| async {
            // A plain read of max_seq (no lock on the conversation, which appends hold):
            // max_seq only grows, so a slightly stale value merely caps lower.
            let max_seq: Option<i64> = sqlx::query_scalar("SELECT max_seq FROM conversations WHERE id = ?")
                .bind(conv_id)
                .fetch_optional(db)
                .await?;
            let target = seq.min(max_seq.ok_or(StoreError::NotFound)?);
            sqlx::query(
                "UPDATE conversation_members SET read_seq = ? \
                 WHERE conv_id = ? AND user_id = ? AND read_seq < ?",
            )
            .bind(target)
            .bind(conv_id)
            .bind(user_id)
            .bind(target)
            .execute(db)
            .await?;
            let now: Option<i64> = sqlx::query_scalar(
                "SELECT read_seq FROM conversation_members WHERE conv_id = ? AND user_id = ?",
            )
            .bind(conv_id)
            .bind(user_id)
            .fetch_optional(db)
            .await?;
            now.ok_or(StoreError::NotFound)
        }
        .await)
    }

    /// Hides the messages at `seqs` from `user_id` only ("delete for me"). Idempotent: seqs
    /// already hidden keep their original time.
    pub async fn hide_messages(&self, user_id: i64, conv_id: i64, seqs: &[i64], now_ms: i64) -> Result<()> {
        let engine = self.engine();
        for chunk in seqs.chunks(HIDE_CHUNK) {
            let sql = hide_sql(engine, chunk.len());
            db!(self, write, "hide_messages", |db| {
                let mut q = sqlx::query(AssertSqlSafe(sql.clone()));
                for seq in chunk {
                    q = q.bind(conv_id).bind(user_id).bind(*seq).bind(now_ms);
                }
                q.execute(db).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hide_sql_has_four_placeholders_per_row() {
        for engine in [Engine::MySql, Engine::Sqlite] {
            assert_eq!(hide_sql(engine, 3).matches('?').count(), 12);
        }
    }
}
