//! Server-side message search (SPEC §3.6): substring search over the searchable messages
//! (TEXT, IMAGE, FILE: their text or caption and the attached file's name) of the user's
//! conversations, newest first, paged by message id.
//!
//! Engines differ on purpose:
//! - SQLite: the FTS5 table `messages_fts` with the trigram tokenizer (see migration 0002 for
//!   why trigram: substring matching in any script, CJK included), kept in step by
//!   [`Store::append_messages`] on insert, edit and recall. The index drives the query (a
//!   `CROSS JOIN` pins the join order), newest hit first, and stops after `limit` hits that
//!   pass the membership and hidden filters; otherwise the planner may probe the index once
//!   per message of the user's conversations. Queries shorter than 3 characters cannot use a
//!   trigram index and fall back to the LIKE scan below.
//! - MySQL/MariaDB: `body LIKE '%…%'` (wildcards in the query escaped), restricted to the
//!   user's conversations, i.e. a range scan of those conversations' primary-key ranges. A
//!   FULLTEXT index does not fit: MariaDB has no ngram parser, and the default parser splits
//!   on spaces and punctuation (CJK text becomes one huge word), ignores words under
//!   `innodb_ft_min_token_size` and stopwords, and matches words, not substrings. The columns
//!   use `utf8mb4_unicode_520_ci`, so matching is case- and accent-insensitive and emoji
//!   compare correctly (migration 0002). The cost grows with the size of the user's history,
//!   which is acceptable for "search my own chats"; a search engine can replace it later.

use std::collections::HashSet;

use sqlx::AssertSqlSafe;

use crate::error::Result;
use crate::messages::{MessageRow, msg_cols, not_hidden};
use crate::store::{Engine, Store, placeholders};
use crate::users::like_escape;

/// Conversations per search statement; a user in more gets several statements whose results
/// are merged.
const SEARCH_CONV_CHUNK: usize = 1000;
/// Shortest query (in characters) the trigram index can answer.
const TRIGRAM_MIN_CHARS: usize = 3;

/// How one search statement matches text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Matcher {
    /// SQLite FTS5 `MATCH` on the trigram index.
    Fts,
    /// `LIKE` on the message body and the file name.
    Like,
}

/// `query` as an FTS5 phrase: one quoted string (inner quotes doubled), so FTS operators and
/// punctuation in it are plain text; with trigrams a phrase is a substring match.
fn fts_phrase(query: &str) -> String {
    format!("\"{}\"", query.replace('"', "\"\""))
}

/// The search statement for `n` conversation ids. Binds: pattern (Like: twice), conversation
/// ids, `before_id`, the viewer (for hidden rows), limit.
fn search_sql(matcher: Matcher, engine: Engine, n: usize) -> String {
    let ids = placeholders(n);
    // MySQL would otherwise often walk the `id` index backwards through every conversation's
    // messages (to skip the sort); the primary key reads only the user's conversations.
    let messages = match engine {
        Engine::MySql => "messages m FORCE INDEX (PRIMARY)",
        Engine::Sqlite => "messages m",
    };
    match matcher {
        Matcher::Fts => format!(
            concat!(
                "SELECT ",
                msg_cols!(),
                " FROM messages_fts CROSS JOIN messages m ON m.id = messages_fts.rowid \
                 WHERE messages_fts MATCH ? AND m.conv_id IN ({ids}) AND messages_fts.rowid < ? \
                 AND m.recalled_at IS NULL AND m.kind IN (1, 2, 3)",
                not_hidden!(),
                " ORDER BY messages_fts.rowid DESC LIMIT ?"
            ),
            ids = ids
        ),
        Matcher::Like => format!(
            concat!(
                "SELECT ",
                msg_cols!(),
                " FROM {messages} LEFT JOIN files f ON f.id = m.file_id \
                 WHERE (m.body LIKE ? ESCAPE '!' OR f.name LIKE ? ESCAPE '!') \
                 AND m.conv_id IN ({ids}) AND m.id < ? \
                 AND m.recalled_at IS NULL AND m.kind IN (1, 2, 3)",
                not_hidden!(),
                " ORDER BY m.id DESC LIMIT ?"
            ),
            ids = ids,
            messages = messages
        ),
    }
}

impl Store {
    /// Messages of `user_id`'s conversations (only `conv_id` when given, and only if the user
    /// is a member) containing `query` in their text, caption or file name: TEXT, IMAGE and
    /// FILE messages, not recalled, not hidden by the user. Newest (highest id) first, at most
    /// `limit`, with id < `before_id` (0 = no bound): pass the last id of a page to get the
    /// next. Case-insensitive; LIKE wildcards in `query` match literally. See the module docs
    /// for how each engine answers.
    pub async fn search_messages(
        &self,
        user_id: i64,
        conv_id: Option<i64>,
        query: &str,
        before_id: i64,
        limit: u32,
    ) -> Result<Vec<MessageRow>> {
        if limit == 0 || query.trim().is_empty() {
            return Ok(Vec::new());
        }
        let before = if before_id <= 0 { i64::MAX } else { before_id };
        let mut convs: Vec<i64> = db!(self, read, "search_convs", |db| sqlx::query_scalar(
            "SELECT conv_id FROM conversation_members WHERE user_id = ?"
        )
        .bind(user_id)
        .fetch_all(db)
        .await)?;
        if let Some(only) = conv_id {
            convs.retain(|c| *c == only);
        }
        let engine = self.engine();
        let matcher = if engine == Engine::Sqlite && query.chars().count() >= TRIGRAM_MIN_CHARS {
            Matcher::Fts
        } else {
            Matcher::Like
        };
        let pattern = match matcher {
            Matcher::Fts => fts_phrase(query),
            Matcher::Like => format!("%{}%", like_escape(query)),
        };

        let mut hits: Vec<MessageRow> = Vec::new();
        for chunk in convs.chunks(SEARCH_CONV_CHUNK) {
            // Only `?` placeholders and constant text are spliced in; every value is bound.
            let sql = search_sql(matcher, engine, chunk.len());
            let rows: Vec<MessageRow> = db!(self, read, "search_messages", |db| {
                let mut q = sqlx::query_as(AssertSqlSafe(sql.clone())).bind(pattern.as_str());
                if matcher == Matcher::Like {
                    q = q.bind(pattern.as_str());
                }
                for c in chunk {
                    q = q.bind(*c);
                }
                q.bind(before)
                    .bind(user_id)
                    .bind(i64::from(limit))
                    .fetch_all(db)
                    .await
            })?;
            hits.extend(rows);
        }
        if convs.len() > SEARCH_CONV_CHUNK {
            // Several statements: merge their pages (ids are unique, but be defensive).
            let mut seen = HashSet::new();
            hits.retain(|m| seen.insert(m.id));
            hits.sort_unstable_by_key(|m| std::cmp::Reverse(m.id));
            hits.truncate(limit as usize);
        }
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_quote_the_whole_query() {
        assert_eq!(fts_phrase("a \"b\" OR c*"), "\"a \"\"b\"\" OR c*\"");
    }

    #[test]
    fn statements_have_matching_placeholders() {
        // pattern, 3 ids, before, viewer, limit (+ a second pattern for LIKE).
        for engine in [Engine::MySql, Engine::Sqlite] {
            assert_eq!(search_sql(Matcher::Fts, engine, 3).matches('?').count(), 7);
            assert_eq!(search_sql(Matcher::Like, engine, 3).matches('?').count(), 8);
        }
    }
}
