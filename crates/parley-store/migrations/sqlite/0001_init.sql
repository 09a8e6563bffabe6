-- Parley schema, SQLite flavour. Keep in step with ../mysql/0001_init.sql (same tables, columns
-- and meanings). STRICT tables so a wrongly typed bind fails here as it would on MySQL.
-- username/display_name are COLLATE NOCASE to match MySQL's case-insensitive utf8mb4_unicode_ci
-- (uniqueness and prefix search) and so the LIKE optimisation can use their indexes.

CREATE TABLE users (
    id              INTEGER NOT NULL PRIMARY KEY,
    username        TEXT    NOT NULL COLLATE NOCASE,
    display_name    TEXT    NOT NULL COLLATE NOCASE,
    password_hash   TEXT    NOT NULL,
    status_line     TEXT    NOT NULL DEFAULT '',
    avatar_file_id  INTEGER NULL,
    created_at      INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE UNIQUE INDEX uq_users_username ON users (username);
CREATE INDEX idx_users_display_name ON users (display_name);

CREATE TABLE sessions (
    id              INTEGER NOT NULL PRIMARY KEY,
    user_id         INTEGER NOT NULL,
    token_hash      BLOB    NOT NULL,
    device_name     TEXT    NOT NULL DEFAULT '',
    address         TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER NOT NULL,
    revoked_at      INTEGER NULL
) STRICT;
CREATE UNIQUE INDEX uq_sessions_token_hash ON sessions (token_hash);
CREATE INDEX idx_sessions_user ON sessions (user_id);

-- status: 0 pending, 1 accepted, 2 declined, 3 cancelled.
CREATE TABLE friend_requests (
    id              INTEGER NOT NULL PRIMARY KEY,
    from_user       INTEGER NOT NULL,
    to_user         INTEGER NOT NULL,
    note            TEXT    NOT NULL DEFAULT '',
    status          INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    answered_at     INTEGER NULL
) STRICT;
-- At most one pending request per (from_user, to_user), enforced by the database.
CREATE UNIQUE INDEX uq_friend_requests_pending ON friend_requests (from_user, to_user) WHERE status = 0;
CREATE INDEX idx_friend_requests_to ON friend_requests (to_user, status);
CREATE INDEX idx_friend_requests_from ON friend_requests (from_user, status);

-- Two rows per friendship, one per direction, so each side has its own remark.
CREATE TABLE friendships (
    user_id         INTEGER NOT NULL,
    friend_id       INTEGER NOT NULL,
    remark          TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, friend_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE blocks (
    user_id         INTEGER NOT NULL,
    blocked_id      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
) STRICT, WITHOUT ROWID;

-- kind: 1 direct, 2 group. direct_key is "<smaller id>:<larger id>" for direct conversations
-- (NULL for groups) so a pair of users can never get two direct conversations.
CREATE TABLE conversations (
    id              INTEGER NOT NULL PRIMARY KEY,
    kind            INTEGER NOT NULL,
    name            TEXT    NOT NULL DEFAULT '',
    owner_id        INTEGER NOT NULL DEFAULT 0,
    direct_key      TEXT    NULL,
    avatar_file_id  INTEGER NULL,
    member_limit    INTEGER NOT NULL DEFAULT 500,
    max_seq         INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX uq_conversations_direct_key ON conversations (direct_key);

-- role: 0 member, 1 admin, 2 owner. read_seq: last seq the member has read;
-- cleared_seq: history at or below it is hidden for this member ("clear chat").
CREATE TABLE conversation_members (
    conv_id         INTEGER NOT NULL,
    user_id         INTEGER NOT NULL,
    role            INTEGER NOT NULL DEFAULT 0,
    joined_at       INTEGER NOT NULL,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    cleared_seq     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conv_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX idx_conversation_members_user ON conversation_members (user_id);

-- Keyed by (conv_id, seq): catch-up and backwards paging are range scans of one conversation.
CREATE TABLE messages (
    conv_id         INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    id              INTEGER NOT NULL,
    sender_id       INTEGER NOT NULL,
    client_msg_id   TEXT    NOT NULL,
    kind            INTEGER NOT NULL,
    body            TEXT    NOT NULL,
    file_id         INTEGER NULL,
    created_at      INTEGER NOT NULL,
    edited_at       INTEGER NULL,
    recalled_at     INTEGER NULL,
    PRIMARY KEY (conv_id, seq)
) STRICT;
CREATE UNIQUE INDEX uq_messages_id ON messages (id);
CREATE UNIQUE INDEX uq_messages_client ON messages (conv_id, sender_id, client_msg_id);

-- Delete-for-me: one row per (member, message) hidden from that member only.
CREATE TABLE message_hidden (
    conv_id         INTEGER NOT NULL,
    user_id         INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    PRIMARY KEY (conv_id, user_id, seq)
) STRICT, WITHOUT ROWID;

-- Content-addressed: the bytes live under their sha256; several rows may share one blob.
CREATE TABLE files (
    id              INTEGER NOT NULL PRIMARY KEY,
    sha256          BLOB    NOT NULL,
    size            INTEGER NOT NULL,
    mime            TEXT    NOT NULL DEFAULT '',
    name            TEXT    NOT NULL DEFAULT '',
    uploader_id     INTEGER NOT NULL,
    width           INTEGER NOT NULL DEFAULT 0,
    height          INTEGER NOT NULL DEFAULT 0,
    thumb_sha256    BLOB    NULL,
    created_at      INTEGER NOT NULL,
    complete        INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX idx_files_sha256 ON files (sha256);

-- A file may be fetched by members of every conversation it was sent to.
CREATE TABLE file_grants (
    file_id         INTEGER NOT NULL,
    conv_id         INTEGER NOT NULL,
    PRIMARY KEY (file_id, conv_id)
) STRICT, WITHOUT ROWID;

-- media: 1 audio, 2 video. end_reason: 0 not ended (or unknown); meanings defined by the server.
CREATE TABLE calls (
    id              INTEGER NOT NULL PRIMARY KEY,
    conv_id         INTEGER NOT NULL,
    caller_id       INTEGER NOT NULL,
    media           INTEGER NOT NULL,
    started_at      INTEGER NOT NULL,
    answered_at     INTEGER NULL,
    ended_at        INTEGER NULL,
    end_reason      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX idx_calls_conv ON calls (conv_id, started_at);
