//! Conversations and their members (SPEC §3.1): direct chats (exactly one per pair of users,
//! enforced by a unique `direct_key`), groups with roles and a member limit.
//!
//! Policy (who may invite, kick or rename) belongs to the server. Two rules are enforced here
//! because only the database can enforce them race-free: one direct conversation per pair
//! (unique key, [`Store::open_direct`] re-reads on conflict) and the member limit
//! ([`Store::add_members`] counts and inserts under the conversation's row lock).

use std::collections::HashSet;

use sqlx::AssertSqlSafe;

use crate::error::{Result, StoreError};
use crate::store::{BeginWrite, Engine, IN_CHUNK, Store, placeholders};

/// Direct (two people) or group conversation; stored as a TINYINT with these values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i8)]
pub enum ConvKind {
    /// Between exactly two users.
    Direct = 1,
    /// A named group with an owner.
    Group = 2,
}

/// A member's role; stored as a TINYINT with these values. Ordered by rank: `Owner < Admin <
/// Member`, so "at least admin" is `role <= Role::Admin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i8)]
pub enum Role {
    /// Created the group; may do everything.
    Owner = 1,
    /// Appointed by the owner.
    Admin = 2,
    /// Everyone else (both members of a direct conversation).
    Member = 3,
}

/// A stored enum value (conversation kind or member role) outside its known range.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} value {value}")]
pub struct UnknownValue {
    /// Which enum the value was meant for.
    pub what: &'static str,
    /// The stored value.
    pub value: i64,
}

impl TryFrom<i64> for ConvKind {
    type Error = UnknownValue;

    fn try_from(v: i64) -> std::result::Result<Self, UnknownValue> {
        match v {
            1 => Ok(Self::Direct),
            2 => Ok(Self::Group),
            value => Err(UnknownValue {
                what: "conversation kind",
                value,
            }),
        }
    }
}

impl TryFrom<i64> for Role {
    type Error = UnknownValue;

    fn try_from(v: i64) -> std::result::Result<Self, UnknownValue> {
        match v {
            1 => Ok(Self::Owner),
            2 => Ok(Self::Admin),
            3 => Ok(Self::Member),
            value => Err(UnknownValue { what: "role", value }),
        }
    }
}

/// One conversation.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ConversationRow {
    /// Snowflake id.
    pub id: i64,
    /// Direct or group.
    #[sqlx(try_from = "i64")]
    pub kind: ConvKind,
    /// Group name; empty for direct conversations.
    pub name: String,
    /// The group's owner; 0 for direct conversations.
    pub owner_id: i64,
    /// Group avatar in the `files` table, if set.
    pub avatar_file_id: Option<i64>,
    /// `"<smaller user id>:<larger user id>"` for direct conversations, `None` for groups.
    pub direct_key: Option<String>,
    /// Most members the conversation may have (2 for direct conversations).
    pub member_limit: i32,
    /// Highest committed message seq; 0 before the first message.
    pub max_seq: i64,
    /// Creation time, ms since the Unix epoch.
    pub created_at: i64,
}

/// One user's membership in one conversation.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct MemberRow {
    /// The conversation.
    pub conv_id: i64,
    /// The member.
    pub user_id: i64,
    /// Owner, admin or member.
    #[sqlx(try_from = "i64")]
    pub role: Role,
    /// When the user joined, ms since the Unix epoch.
    pub joined_at: i64,
    /// Highest seq the member has read.
    pub read_seq: i64,
    /// History at or below this seq is cleared for this member (not applied by the store's
    /// message queries; 0 = nothing cleared).
    pub cleared_seq: i64,
}

/// A membership joined with its conversation, for [`Store::user_conversations`].
#[derive(sqlx::FromRow)]
struct Joined {
    #[sqlx(flatten)]
    conv: ConversationRow,
    #[sqlx(flatten)]
    member: MemberRow,
}

/// Column list matching [`ConversationRow`] (table alias `c`), usable inside `concat!`.
macro_rules! conv_cols {
    () => {
        "c.id, c.kind, c.name, c.owner_id, c.avatar_file_id, c.direct_key, c.member_limit, \
         c.max_seq, c.created_at"
    };
}

/// Column list matching [`MemberRow`] (table alias `m`), usable inside `concat!`.
macro_rules! member_cols {
    () => {
        "m.conv_id, m.user_id, m.role, m.joined_at, m.read_seq, m.cleared_seq"
    };
}

/// Largest number of member rows inserted by one statement (4 placeholders each).
const MEMBER_INSERT_CHUNK: usize = 500;

/// Attempts at [`Store::open_direct`]: a second is needed only after losing a creation race.
const OPEN_DIRECT_ATTEMPTS: usize = 3;

/// `INSERT` of `n` member rows: `(conv_id, user_id, role, joined_at)` each.
fn insert_members_sql(n: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO conversation_members (conv_id, user_id, role, joined_at, read_seq, \
         cleared_seq) VALUES ",
    );
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?, ?, ?, 0, 0)");
    }
    sql
}

/// The `conversations` insert; `last_msg_at` starts at the creation time.
const INSERT_CONVERSATION: &str = "INSERT INTO conversations (id, kind, name, owner_id, direct_key, \
     avatar_file_id, member_limit, max_seq, created_at, last_msg_at) \
     VALUES (?, ?, ?, ?, ?, NULL, ?, 0, ?, ?)";

/// `ids` without repeats and without `skip`, first occurrence order kept.
fn distinct_except(ids: &[i64], skip: Option<i64>) -> Vec<i64> {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.iter()
        .copied()
        .filter(|id| Some(*id) != skip && seen.insert(*id))
        .collect()
}

impl Store {
    /// Gets or creates the direct conversation of `a` and `b` (`direct_key` = `"{min}:{max}"`,
    /// unique, so concurrent calls agree on one conversation). A new one has both users as
    /// members (role Member) and a member limit of 2. Returns the row and whether this call
    /// created it. `a == b` makes a self-conversation with one member.
    pub async fn open_direct(&self, a: i64, b: i64, now_ms: i64) -> Result<(ConversationRow, bool)> {
        let key = format!("{}:{}", a.min(b), a.max(b));
        for _ in 0..OPEN_DIRECT_ATTEMPTS {
            if let Some(row) = self.direct_by_key(&key).await? {
                return Ok((row, false));
            }
            let row = ConversationRow {
                id: self.next_id(),
                kind: ConvKind::Direct,
                name: String::new(),
                owner_id: 0,
                avatar_file_id: None,
                direct_key: Some(key.clone()),
                member_limit: 2,
                max_seq: 0,
                created_at: now_ms,
            };
            let members = distinct_except(&[a, b], None);
            match self.insert_conversation(&row, None, &members).await {
                Ok(()) => return Ok((row, true)),
                // A concurrent call created it first: read theirs on the next round.
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict)
    }

    /// The direct conversation with this key, read from the writer so a row committed by a
    /// concurrent [`Store::open_direct`] is seen.
    async fn direct_by_key(&self, key: &str) -> Result<Option<ConversationRow>> {
        Ok(db!(self, write, "direct_by_key", |db| sqlx::query_as(concat!(
            "SELECT ",
            conv_cols!(),
            " FROM conversations c WHERE c.direct_key = ?"
        ))
        .bind(key)
        .fetch_optional(db)
        .await)?)
    }

    /// New group owned by `owner` (role Owner) with `members` (role Member; repeats and the
    /// owner are skipped), in one transaction. [`StoreError::LimitExceeded`] if they would be
    /// more than `member_limit`.
    pub async fn create_group(
        &self,
        owner: i64,
        name: &str,
        members: &[i64],
        member_limit: i32,
        now_ms: i64,
    ) -> Result<ConversationRow> {
        let members = distinct_except(members, Some(owner));
        if members.len() as i64 + 1 > i64::from(member_limit) {
            return Err(StoreError::LimitExceeded);
        }
        let row = ConversationRow {
            id: self.next_id(),
            kind: ConvKind::Group,
            name: name.to_owned(),
            owner_id: owner,
            avatar_file_id: None,
            direct_key: None,
            member_limit,
            max_seq: 0,
            created_at: now_ms,
        };
        self.insert_conversation(&row, Some(owner), &members).await?;
        Ok(row)
    }

    /// Inserts `row` with `owner` (role Owner, if any) and `members` (role Member) in one
    /// transaction; a taken `direct_key` yields [`StoreError::Conflict`].
    async fn insert_conversation(
        &self,
        row: &ConversationRow,
        owner: Option<i64>,
        members: &[i64],
    ) -> Result<()> {
        let mut all: Vec<(i64, Role)> = owner.map(|o| (o, Role::Owner)).into_iter().collect();
        all.extend(members.iter().map(|m| (*m, Role::Member)));
        db!(self, write, "insert_conversation", |db| async {
            let mut tx = db.begin_write().await?;
            sqlx::query(INSERT_CONVERSATION)
                .bind(row.id)
                .bind(row.kind as i64)
                .bind(&row.name)
                .bind(row.owner_id)
                .bind(&row.direct_key)
                .bind(row.member_limit)
                .bind(row.created_at)
                .bind(row.created_at)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_insert)?;
            for chunk in all.chunks(MEMBER_INSERT_CHUNK) {
                let mut q = sqlx::query(AssertSqlSafe(insert_members_sql(chunk.len())));
                for (user, role) in chunk {
                    q = q.bind(row.id).bind(*user).bind(*role as i64).bind(row.created_at);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<_, StoreError>(())
        }
        .await)
    }

    /// The conversation with this id.
    pub async fn conversation(&self, conv_id: i64) -> Result<Option<ConversationRow>> {
        Ok(db!(self, read, "conversation", |db| sqlx::query_as(concat!(
            "SELECT ",
            conv_cols!(),
            " FROM conversations c WHERE c.id = ?"
        ))
        .bind(conv_id)
        .fetch_optional(db)
        .await)?)
    }

    /// The conversation's members: owner first, then admins, then members, each by join time.
    pub async fn members(&self, conv_id: i64) -> Result<Vec<MemberRow>> {
        Ok(db!(self, read, "members", |db| sqlx::query_as(concat!(
            "SELECT ",
            member_cols!(),
            " FROM conversation_members m WHERE m.conv_id = ? \
             ORDER BY m.role, m.joined_at, m.user_id"
        ))
        .bind(conv_id)
        .fetch_all(db)
        .await)?)
    }

    /// `user_id`'s membership in the conversation, if they are a member.
    pub async fn member(&self, conv_id: i64, user_id: i64) -> Result<Option<MemberRow>> {
        Ok(db!(self, read, "member", |db| sqlx::query_as(concat!(
            "SELECT ",
            member_cols!(),
            " FROM conversation_members m WHERE m.conv_id = ? AND m.user_id = ?"
        ))
        .bind(conv_id)
        .bind(user_id)
        .fetch_optional(db)
        .await)?)
    }

    /// How many members the conversation has.
    pub async fn member_count(&self, conv_id: i64) -> Result<i64> {
        Ok(db!(self, read, "member_count", |db| sqlx::query_scalar(
            "SELECT COUNT(*) FROM conversation_members WHERE conv_id = ?"
        )
        .bind(conv_id)
        .fetch_one(db)
        .await)?)
    }

    /// Adds those of `users` who are not members yet (role Member), in one transaction, and
    /// returns the ids actually added (in input order). The count is checked under the
    /// conversation's row lock (MySQL `FOR UPDATE`; SQLite's single writer), so concurrent
    /// calls cannot together pass the limit: [`StoreError::LimitExceeded`] (nothing added) if
    /// the members would exceed `member_limit`, [`StoreError::NotFound`] if there is no such
    /// conversation.
    pub async fn add_members(&self, conv_id: i64, users: &[i64], now_ms: i64) -> Result<Vec<i64>> {
        let wanted = distinct_except(users, None);
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let lock = match self.engine() {
            Engine::MySql => "SELECT member_limit FROM conversations WHERE id = ? FOR UPDATE",
            Engine::Sqlite => "SELECT member_limit FROM conversations WHERE id = ?",
        };
        db!(self, write, "add_members", |db| async {
            let mut tx = db.begin_write().await?;
            // The locking read comes first, so on MySQL the snapshot of the plain reads below
            // is taken after the lock is granted and sees every earlier add's commit.
            let limit: Option<i32> = sqlx::query_scalar(lock)
                .bind(conv_id)
                .fetch_optional(&mut *tx)
                .await?;
            let limit = limit.ok_or(StoreError::NotFound)?;
            let mut existing = HashSet::new();
            for chunk in wanted.chunks(IN_CHUNK) {
                let sql = format!(
                    "SELECT user_id FROM conversation_members WHERE conv_id = ? AND user_id IN ({})",
                    placeholders(chunk.len())
                );
                let mut q = sqlx::query_scalar(AssertSqlSafe(sql)).bind(conv_id);
                for id in chunk {
                    q = q.bind(*id);
                }
                let found: Vec<i64> = q.fetch_all(&mut *tx).await?;
                existing.extend(found);
            }
            let added: Vec<i64> = wanted.into_iter().filter(|u| !existing.contains(u)).collect();
            if added.is_empty() {
                return Ok(added);
            }
            let count: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM conversation_members WHERE conv_id = ?")
                    .bind(conv_id)
                    .fetch_one(&mut *tx)
                    .await?;
            if count + added.len() as i64 > i64::from(limit) {
                return Err(StoreError::LimitExceeded);
            }
            for chunk in added.chunks(MEMBER_INSERT_CHUNK) {
                let mut q = sqlx::query(AssertSqlSafe(insert_members_sql(chunk.len())));
                for user in chunk {
                    q = q.bind(conv_id).bind(*user).bind(Role::Member as i64).bind(now_ms);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<_, StoreError>(added)
        }
        .await)
    }

    /// Removes `user_id` from the conversation (leave or kick). False if not a member.
    pub async fn remove_member(&self, conv_id: i64, user_id: i64) -> Result<bool> {
        let done = db!(self, write, "remove_member", |db| sqlx::query(
            "DELETE FROM conversation_members WHERE conv_id = ? AND user_id = ?"
        )
        .bind(conv_id)
        .bind(user_id)
        .execute(db)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Sets a member's role. False if `user_id` is not a member.
    pub async fn set_role(&self, conv_id: i64, user_id: i64, role: Role) -> Result<bool> {
        let done = db!(self, write, "set_role", |db| sqlx::query(
            "UPDATE conversation_members SET role = ? WHERE conv_id = ? AND user_id = ?"
        )
        .bind(role as i64)
        .bind(conv_id)
        .bind(user_id)
        .execute(db)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Renames the conversation. False if it does not exist.
    pub async fn rename_conversation(&self, conv_id: i64, name: &str) -> Result<bool> {
        let done = db!(self, write, "rename_conversation", |db| sqlx::query(
            "UPDATE conversations SET name = ? WHERE id = ?"
        )
        .bind(name)
        .bind(conv_id)
        .execute(db)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// The user's memberships with their conversations, most recent activity (last message,
    /// else creation) first.
    pub async fn user_conversations(&self, user_id: i64) -> Result<Vec<(ConversationRow, MemberRow)>> {
        let rows: Vec<Joined> = db!(self, read, "user_conversations", |db| sqlx::query_as(concat!(
            "SELECT ",
            conv_cols!(),
            ", ",
            member_cols!(),
            " FROM conversation_members m JOIN conversations c ON c.id = m.conv_id \
             WHERE m.user_id = ? ORDER BY c.last_msg_at DESC, c.id DESC"
        ))
        .bind(user_id)
        .fetch_all(db)
        .await)?;
        Ok(rows.into_iter().map(|j| (j.conv, j.member)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_and_reject_unknown_values() {
        for k in [ConvKind::Direct, ConvKind::Group] {
            assert_eq!(ConvKind::try_from(k as i64).unwrap(), k);
        }
        for r in [Role::Owner, Role::Admin, Role::Member] {
            assert_eq!(Role::try_from(r as i64).unwrap(), r);
        }
        assert!(ConvKind::try_from(0).is_err());
        assert!(Role::try_from(4).is_err());
        assert!(Role::Owner < Role::Admin && Role::Admin < Role::Member);
    }

    #[test]
    fn distinct_keeps_first_occurrences() {
        assert_eq!(distinct_except(&[3, 1, 3, 2, 1], Some(2)), vec![3, 1]);
        assert_eq!(insert_members_sql(2).matches('?').count(), 8);
    }
}
