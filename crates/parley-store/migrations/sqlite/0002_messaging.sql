-- Messaging, files and uploads (SPEC §3). Keep in step with ../mysql/0002_messaging.sql.
--
-- conversation_members.role is now 1 owner, 2 admin, 3 member (the order of the wire enum and
-- of `parley_store::Role`), superseding the comment in 0001; the store always writes it (SQLite
-- cannot change a column default in place, so the 0001 default of 0 stays and is never used).

-- target_seq: for EDIT/RECALL meta messages, the seq of the message they change (0 = none).
ALTER TABLE messages ADD COLUMN target_seq INTEGER NOT NULL DEFAULT 0;

-- Only complete files get a row now (uploads in progress live in `uploads`).
ALTER TABLE files DROP COLUMN complete;

ALTER TABLE message_hidden ADD COLUMN hidden_at INTEGER NOT NULL DEFAULT 0;

-- Time of the last appended message (creation time until then): orders the conversation list.
ALTER TABLE conversations ADD COLUMN last_msg_at INTEGER NOT NULL DEFAULT 0;

-- A resumable upload in progress: `received` bytes are on disk so far. Becomes a `files` row
-- (and is deleted) once all `size` bytes arrived and hash to `sha256`.
CREATE TABLE uploads (
    id              INTEGER NOT NULL PRIMARY KEY,
    user_id         INTEGER NOT NULL,
    size            INTEGER NOT NULL,
    sha256          BLOB    NOT NULL,
    name            TEXT    NOT NULL DEFAULT '',
    mime            TEXT    NOT NULL DEFAULT '',
    received        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX idx_uploads_user ON uploads (user_id);

-- Full-text index of searchable messages (TEXT, IMAGE and FILE: text or caption in `body`,
-- the file's name in `name`), rowid = messages.id. Kept in sync by append_messages (insert,
-- edit, recall). Contentless (the text lives in `messages` only) with contentless_delete so
-- rows can be deleted and replaced without supplying the old text.
--
-- Tokenizer: trigram, not unicode61. unicode61 splits on spaces and punctuation, so Chinese or
-- Japanese text (no spaces) becomes one giant token that only matches whole, and "cat" would
-- not find "concatenate". trigram indexes every 3-character window, so a quoted query is a
-- substring search in any script (case-insensitive; remove_diacritics makes "cafe" find
-- "café", like MySQL's accent-insensitive collation). Queries under 3 characters cannot use a
-- trigram index; the store answers those with LIKE instead.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    body,
    name,
    content = '',
    contentless_delete = 1,
    tokenize = 'trigram remove_diacritics 1'
);
