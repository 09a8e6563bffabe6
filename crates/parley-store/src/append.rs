//! Appending messages: the delivery contract (SPEC §3.3) in one method,
//! [`Store::append_messages`], which commits a whole batch ("group commit") in one transaction.
//!
//! Per conversation in the batch, inside that transaction:
//! 1. lock the conversation row (MySQL `SELECT … FOR UPDATE`, all rows in one statement in
//!    ascending id order, so two batches touching the same conversations cannot deadlock;
//!    SQLite: the single writer connection plus `BEGIN IMMEDIATE`) and read `max_seq`;
//! 2. look up already stored `(sender_id, client_msg_id)` pairs of the batch: resends return
//!    the original result with `duplicate = true` and store nothing;
//! 3. give the new messages seqs `max_seq + 1 ..` in input order (gap-free: only lock holders
//!    assign seqs, and a rollback discards them together with `max_seq`);
//! 4. insert them with multi-row INSERTs, keep the SQLite full-text index in step, apply each
//!    message's [`Effect`] to its target, grant attached files to the conversation, and store
//!    the new `max_seq`.
//!
//! MySQL snapshot note: the locking read is the transaction's first statement, and InnoDB takes
//! a REPEATABLE READ snapshot at the first *plain* read, i.e. after the locks are granted, so
//! step 2 sees every batch committed to these conversations before ours. As a second line of
//! defence the unique key `(conv_id, sender_id, client_msg_id)` rejects a duplicate insert, and
//! the whole transaction is retried (as it is on a deadlock or lock wait timeout).

use std::collections::{BTreeSet, HashMap};

use sqlx::AssertSqlSafe;

use crate::error::{Result, StoreError, is_unique_violation};
use crate::store::{BeginWrite, Engine, IN_CHUNK, Store, placeholders};

/// What an appended message does to an earlier one, applied in the same transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Nothing: an ordinary message.
    None,
    /// Sets `body = text` and `edited_at = now` on the target `(conv_id, target_seq)`, unless
    /// it was recalled.
    Edit {
        /// Seq of the message to change.
        target_seq: i64,
        /// Its new text.
        text: String,
    },
    /// Sets `recalled_at = now`, `body = ''` and `file_id = NULL` on the target (once: a
    /// second recall keeps the first time).
    Recall {
        /// Seq of the message to recall.
        target_seq: i64,
    },
}

impl Effect {
    /// The seq this effect changes, 0 for [`Effect::None`] (stored as `target_seq`).
    pub fn target_seq(&self) -> i64 {
        match self {
            Effect::None => 0,
            Effect::Edit { target_seq, .. } | Effect::Recall { target_seq } => *target_seq,
        }
    }
}

/// A message to append.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    /// The conversation (must exist; the server checks membership first).
    pub conv_id: i64,
    /// Author.
    pub sender_id: i64,
    /// The client's id for it; with `conv_id` and `sender_id` the idempotency key.
    pub client_msg_id: String,
    /// Wire `MessageKind` value.
    pub kind: i32,
    /// Text, caption, or encoded payload.
    pub body: String,
    /// Attached file, if any; granted to the conversation when the message commits.
    pub file_id: Option<i64>,
    /// What it does to an earlier message.
    pub effect: Effect,
}

/// The outcome for one message of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Its seq in the conversation.
    pub seq: i64,
    /// Its message id.
    pub id: i64,
    /// Its server time, ms since the Unix epoch.
    pub created_at: i64,
    /// Already stored earlier (or earlier in the same batch): nothing new was written, and
    /// the fields above are the original's.
    pub duplicate: bool,
}

/// Whole-transaction attempts before an append gives up on deadlocks or key races.
const APPEND_ATTEMPTS: usize = 5;
/// Most messages per INSERT statement (10 placeholders each; MySQL allows 65 535, SQLite
/// 32 766).
const INSERT_ROWS: usize = 500;
/// Most body bytes per INSERT statement, well under MariaDB's default 16 MiB packet limit.
const INSERT_BYTES: usize = 4 << 20;

/// Idempotency key of a message within the batch.
type Key<'a> = (i64, i64, &'a str);

/// A message the current attempt will insert: input index, seq, id.
#[derive(Clone, Copy, Debug, PartialEq)]
struct NewRow {
    index: usize,
    seq: i64,
    id: i64,
}

/// Seq assignment for one attempt.
#[derive(Debug, Default)]
struct Assignment {
    /// One per input, in input order.
    results: Vec<Appended>,
    /// What to insert, in input order.
    rows: Vec<NewRow>,
    /// Per conversation with new rows: (first new seq, last new seq).
    ranges: HashMap<i64, (i64, i64)>,
}

/// Pure step 3: walks the batch in input order, resolving resends against `stored` (originals
/// already in the database) and earlier batch entries, and giving the rest seqs after
/// `max_seq` and ids from `next_id`.
fn assign(
    batch: &[NewMessage],
    stored: &HashMap<Key<'_>, Appended>,
    max_seq: &HashMap<i64, i64>,
    now_ms: i64,
    mut next_id: impl FnMut() -> i64,
) -> Assignment {
    let mut out = Assignment::default();
    let mut seen: HashMap<Key<'_>, Appended> = HashMap::new();
    let mut next_seq = max_seq.clone();
    for (index, m) in batch.iter().enumerate() {
        let key = (m.conv_id, m.sender_id, m.client_msg_id.as_str());
        if let Some(orig) = stored.get(&key).or_else(|| seen.get(&key)) {
            out.results.push(Appended {
                duplicate: true,
                ..*orig
            });
            continue;
        }
        let counter = next_seq.entry(m.conv_id).or_insert(0);
        *counter += 1;
        let row = NewRow {
            index,
            seq: *counter,
            id: next_id(),
        };
        let appended = Appended {
            seq: row.seq,
            id: row.id,
            created_at: now_ms,
            duplicate: false,
        };
        seen.insert(key, appended);
        out.results.push(appended);
        out.rows.push(row);
        out.ranges
            .entry(m.conv_id)
            .and_modify(|r| r.1 = row.seq)
            .or_insert((row.seq, row.seq));
    }
    out
}

/// Splits `rows` into INSERT statements of at most [`INSERT_ROWS`] rows and about
/// [`INSERT_BYTES`] body bytes (a single larger body still gets its own statement).
fn insert_chunks<'r>(batch: &[NewMessage], rows: &'r [NewRow]) -> Vec<&'r [NewRow]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        let len = batch[row.index].body.len();
        if i > start && (i - start == INSERT_ROWS || bytes + len > INSERT_BYTES) {
            chunks.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    if start < rows.len() {
        chunks.push(&rows[start..]);
    }
    chunks
}

/// `INSERT` of `n` messages.
fn insert_sql(n: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO messages (conv_id, seq, id, sender_id, client_msg_id, kind, body, file_id, \
         target_seq, created_at, edited_at, recalled_at) VALUES ",
    );
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)");
    }
    sql
}

/// `INSERT` of `n` file grants that skips grants already present.
fn grant_sql(engine: Engine, n: usize) -> String {
    let mut sql = String::from("INSERT INTO file_grants (file_id, conv_id) VALUES ");
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?)");
    }
    sql.push_str(match engine {
        Engine::MySql => " ON DUPLICATE KEY UPDATE conv_id = conv_id",
        Engine::Sqlite => " ON CONFLICT DO NOTHING",
    });
    sql
}

/// SQLite: indexes the searchable messages (TEXT, IMAGE, FILE: kinds 1–3) of one
/// conversation's seq range, reading them back (with their file names) from `messages`.
const FTS_INDEX_RANGE: &str = "INSERT INTO messages_fts (rowid, body, name) \
     SELECT m.id, m.body, COALESCE(f.name, '') FROM messages m LEFT JOIN files f ON f.id = m.file_id \
     WHERE m.conv_id = ? AND m.seq BETWEEN ? AND ? AND m.recalled_at IS NULL AND m.kind IN (1, 2, 3)";
/// SQLite: indexes the messages whose ids follow (an `IN` list is appended).
const FTS_INDEX_IDS: &str = "INSERT INTO messages_fts (rowid, body, name) \
     SELECT m.id, m.body, COALESCE(f.name, '') FROM messages m LEFT JOIN files f ON f.id = m.file_id \
     WHERE m.recalled_at IS NULL AND m.kind IN (1, 2, 3) AND m.id IN";
/// SQLite: drops one message from the full-text index.
const FTS_DELETE: &str =
    "DELETE FROM messages_fts WHERE rowid = (SELECT id FROM messages WHERE conv_id = ? AND seq = ?)";

/// True for errors worth retrying the whole append: a deadlock or lock wait timeout (MySQL
/// 1213/1205), or a unique key race (see the module docs).
fn retryable(err: &StoreError) -> bool {
    let StoreError::Db(e) = err else {
        return false;
    };
    if is_unique_violation(e) {
        return true;
    }
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .is_some_and(|d| matches!(d.number(), 1205 | 1213))
}

impl Store {
    /// GROUP COMMIT: appends the whole batch in ONE transaction and returns one [`Appended`]
    /// per input, in input order; see the module docs for the steps. Resends (same
    /// `conv_id`, `sender_id`, `client_msg_id` as a stored message or an earlier entry of the
    /// batch) return the original's result with `duplicate = true`; their effects are not
    /// applied again. Safe with several processes appending to one MySQL database.
    /// [`StoreError::NotFound`] (nothing stored) if any conversation of the batch does not
    /// exist.
    pub async fn append_messages(&self, batch: &[NewMessage], now_ms: i64) -> Result<Vec<Appended>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut attempt = 1;
        loop {
            match self.append_once(batch, now_ms).await {
                Err(e) if attempt < APPEND_ATTEMPTS && retryable(&e) => {
                    tracing::debug!(attempt, error = %e, "append_messages: retrying transaction");
                    metrics::counter!("parley_db_append_retries_total").increment(1);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// One transaction of [`Store::append_messages`].
    async fn append_once(&self, batch: &[NewMessage], now_ms: i64) -> Result<Vec<Appended>> {
        let engine = self.engine();
        let convs: Vec<i64> = batch
            .iter()
            .map(|m| m.conv_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let lock_suffix = match engine {
            Engine::MySql => " ORDER BY id FOR UPDATE",
            Engine::Sqlite => "",
        };
        // Idempotency keys per conversation, deduplicated, for the lookup of stored originals.
        let mut keys: HashMap<i64, Vec<(i64, &str)>> = HashMap::new();
        {
            let mut distinct = std::collections::HashSet::new();
            for m in batch {
                if distinct.insert((m.conv_id, m.sender_id, m.client_msg_id.as_str())) {
                    keys.entry(m.conv_id)
                        .or_default()
                        .push((m.sender_id, m.client_msg_id.as_str()));
                }
            }
        }

        db!(self, write, "append_messages", |db| async {
            let mut tx = db.begin_write().await?;

            // 1. Lock the conversations and read their max_seq.
            let mut max_seq: HashMap<i64, i64> = HashMap::with_capacity(convs.len());
            for chunk in convs.chunks(IN_CHUNK) {
                let sql = format!(
                    "SELECT id, max_seq FROM conversations WHERE id IN ({}){lock_suffix}",
                    placeholders(chunk.len())
                );
                let mut q = sqlx::query_as::<_, (i64, i64)>(AssertSqlSafe(sql));
                for id in chunk {
                    q = q.bind(*id);
                }
                max_seq.extend(q.fetch_all(&mut *tx).await?);
            }
            if max_seq.len() != convs.len() {
                return Err(StoreError::NotFound);
            }

            // 2. Originals of resends, one query per conversation (per chunk of keys).
            let mut stored: HashMap<Key<'_>, Appended> = HashMap::new();
            for (conv_id, conv_keys) in &keys {
                for chunk in conv_keys.chunks(IN_CHUNK) {
                    let senders: BTreeSet<i64> = chunk.iter().map(|k| k.0).collect();
                    let cids: BTreeSet<&str> = chunk.iter().map(|k| k.1).collect();
                    let sql = format!(
                        "SELECT sender_id, client_msg_id, seq, id, created_at FROM messages \
                         WHERE conv_id = ? AND sender_id IN ({}) AND client_msg_id IN ({})",
                        placeholders(senders.len()),
                        placeholders(cids.len())
                    );
                    let mut q =
                        sqlx::query_as::<_, (i64, String, i64, i64, i64)>(AssertSqlSafe(sql)).bind(*conv_id);
                    for s in &senders {
                        q = q.bind(*s);
                    }
                    for c in &cids {
                        q = q.bind(*c);
                    }
                    for (sender, cid, seq, id, created_at) in q.fetch_all(&mut *tx).await? {
                        // Map back to the batch's borrowed key (the query may also return
                        // sender/id combinations the batch does not contain).
                        if let Some(&(_, k)) = chunk.iter().find(|k| k.0 == sender && k.1 == cid) {
                            let orig = Appended {
                                seq,
                                id,
                                created_at,
                                duplicate: true,
                            };
                            stored.insert((*conv_id, sender, k), orig);
                        }
                    }
                }
            }

            // 3. Seqs and ids.
            let plan = assign(batch, &stored, &max_seq, now_ms, || self.next_id());

            // 4a. Insert the new messages.
            for chunk in insert_chunks(batch, &plan.rows) {
                let mut q = sqlx::query(AssertSqlSafe(insert_sql(chunk.len())));
                for row in chunk {
                    let m = &batch[row.index];
                    q = q
                        .bind(m.conv_id)
                        .bind(row.seq)
                        .bind(row.id)
                        .bind(m.sender_id)
                        .bind(m.client_msg_id.as_str())
                        .bind(m.kind)
                        .bind(m.body.as_str())
                        .bind(m.file_id)
                        .bind(m.effect.target_seq())
                        .bind(now_ms);
                }
                q.execute(&mut *tx).await?;
            }

            // 4b. SQLite full-text index for the new rows (MySQL searches with LIKE), by id
            // for the whole batch: one statement per chunk, not one per conversation.
            if engine == Engine::Sqlite {
                for chunk in plan.rows.chunks(IN_CHUNK) {
                    let sql = format!("{FTS_INDEX_IDS} ({})", placeholders(chunk.len()));
                    let mut q = sqlx::query(AssertSqlSafe(sql));
                    for row in chunk {
                        q = q.bind(row.id);
                    }
                    q.execute(&mut *tx).await?;
                }
            }

            // 4c. Effects, in input order (an edit may target a message earlier in the batch).
            for row in &plan.rows {
                let m = &batch[row.index];
                match &m.effect {
                    Effect::None => {}
                    Effect::Edit { target_seq, text } => {
                        let edited = sqlx::query(
                            "UPDATE messages SET body = ?, edited_at = ? \
                             WHERE conv_id = ? AND seq = ? AND recalled_at IS NULL",
                        )
                        .bind(text.as_str())
                        .bind(now_ms)
                        .bind(m.conv_id)
                        .bind(*target_seq)
                        .execute(&mut *tx)
                        .await?;
                        if engine == Engine::Sqlite && edited.rows_affected() > 0 {
                            // Re-index the target with its new text.
                            sqlx::query(FTS_DELETE)
                                .bind(m.conv_id)
                                .bind(*target_seq)
                                .execute(&mut *tx)
                                .await?;
                            sqlx::query(FTS_INDEX_RANGE)
                                .bind(m.conv_id)
                                .bind(*target_seq)
                                .bind(*target_seq)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    Effect::Recall { target_seq } => {
                        sqlx::query(
                            "UPDATE messages SET recalled_at = ?, body = '', file_id = NULL \
                             WHERE conv_id = ? AND seq = ? AND recalled_at IS NULL",
                        )
                        .bind(now_ms)
                        .bind(m.conv_id)
                        .bind(*target_seq)
                        .execute(&mut *tx)
                        .await?;
                        if engine == Engine::Sqlite {
                            sqlx::query(FTS_DELETE)
                                .bind(m.conv_id)
                                .bind(*target_seq)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                }
            }

            // 4d. Files sent in the batch become readable by the conversation's members.
            let grants: Vec<(i64, i64)> = plan
                .rows
                .iter()
                .filter_map(|r| batch[r.index].file_id.map(|f| (f, batch[r.index].conv_id)))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            for chunk in grants.chunks(IN_CHUNK) {
                let mut q = sqlx::query(AssertSqlSafe(grant_sql(engine, chunk.len())));
                for (file_id, conv_id) in chunk {
                    q = q.bind(*file_id).bind(*conv_id);
                }
                q.execute(&mut *tx).await?;
            }

            // 4e. The new max_seq of each conversation that got messages: one statement per
            // chunk of conversations (a batch under load spans hundreds of them).
            let ranges: Vec<(i64, i64)> = plan.ranges.iter().map(|(c, (_, last))| (*c, *last)).collect();
            for chunk in ranges.chunks(IN_CHUNK) {
                let sql = format!(
                    "UPDATE conversations SET max_seq = CASE id {} END, last_msg_at = ? WHERE id IN ({})",
                    "WHEN ? THEN ? ".repeat(chunk.len()),
                    placeholders(chunk.len())
                );
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for (conv_id, last) in chunk {
                    q = q.bind(*conv_id).bind(*last);
                }
                q = q.bind(now_ms);
                for (conv_id, _) in chunk {
                    q = q.bind(*conv_id);
                }
                q.execute(&mut *tx).await?;
            }

            tx.commit().await?;
            Ok::<_, StoreError>(plan.results)
        }
        .await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(conv_id: i64, sender_id: i64, cid: &str) -> NewMessage {
        NewMessage {
            conv_id,
            sender_id,
            client_msg_id: cid.to_owned(),
            kind: 1,
            body: "x".into(),
            file_id: None,
            effect: Effect::None,
        }
    }

    #[test]
    fn assigns_gap_free_seqs_and_resolves_resends() {
        let batch = vec![
            msg(1, 10, "a"),
            msg(2, 10, "a"),
            msg(1, 11, "a"),
            msg(1, 10, "a"), // resend inside the batch
            msg(1, 10, "old"),
        ];
        let old = Appended {
            seq: 3,
            id: 99,
            created_at: 5,
            duplicate: true,
        };
        let stored = HashMap::from([((1, 10, "old"), old)]);
        let max_seq = HashMap::from([(1, 7), (2, 0)]);
        let mut next = 100;
        let plan = assign(&batch, &stored, &max_seq, 42, || {
            next += 1;
            next
        });
        let seqs: Vec<(i64, bool)> = plan.results.iter().map(|a| (a.seq, a.duplicate)).collect();
        assert_eq!(
            seqs,
            vec![(8, false), (1, false), (9, false), (8, true), (3, true)]
        );
        assert_eq!(plan.results[3].id, plan.results[0].id);
        assert_eq!(plan.results[4], old);
        assert_eq!(plan.rows.len(), 3);
        assert_eq!(plan.ranges[&1], (8, 9));
        assert_eq!(plan.ranges[&2], (1, 1));
    }

    #[test]
    fn chunks_by_rows_and_bytes() {
        let mut batch: Vec<NewMessage> = (0..1200).map(|i| msg(1, 1, &i.to_string())).collect();
        batch[3].body = "y".repeat(INSERT_BYTES);
        let rows: Vec<NewRow> = (0..batch.len())
            .map(|index| NewRow {
                index,
                seq: index as i64 + 1,
                id: index as i64,
            })
            .collect();
        let sizes: Vec<usize> = insert_chunks(&batch, &rows).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![3, 1, 500, 500, 196]);
        assert_eq!(sizes.iter().sum::<usize>(), 1200);
        assert!(insert_chunks(&batch, &[]).is_empty());
        assert_eq!(insert_sql(2).matches('?').count(), 20);
        assert_eq!(grant_sql(Engine::Sqlite, 3).matches('?').count(), 6);
    }
}
