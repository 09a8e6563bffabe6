-- Parley schema, MySQL 8 / MariaDB 10.6+ flavour. Keep in step with ../sqlite/0001_init.sql.
-- All ids are application-generated snowflakes (BIGINT); all times are BIGINT milliseconds since
-- the Unix epoch. conv_id is the future shard key: nothing on a hot path joins across conversations.

CREATE TABLE users (
    id              BIGINT       NOT NULL PRIMARY KEY,
    username        VARCHAR(32)  NOT NULL,
    display_name    VARCHAR(64)  NOT NULL,
    password_hash   VARCHAR(255) NOT NULL,
    status_line     VARCHAR(140) NOT NULL DEFAULT '',
    avatar_file_id  BIGINT       NULL,
    created_at      BIGINT       NOT NULL,
    last_seen_at    BIGINT       NOT NULL DEFAULT 0,
    UNIQUE KEY uq_users_username (username),
    KEY idx_users_display_name (display_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE sessions (
    id              BIGINT       NOT NULL PRIMARY KEY,
    user_id         BIGINT       NOT NULL,
    token_hash      BINARY(32)   NOT NULL,
    device_name     VARCHAR(64)  NOT NULL DEFAULT '',
    address         VARCHAR(64)  NOT NULL DEFAULT '',
    created_at      BIGINT       NOT NULL,
    last_used_at    BIGINT       NOT NULL,
    revoked_at      BIGINT       NULL,
    UNIQUE KEY uq_sessions_token_hash (token_hash),
    KEY idx_sessions_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- status: 0 pending, 1 accepted, 2 declined, 3 cancelled.
-- pending_flag is 1 only while pending (NULL otherwise, and NULLs never collide in a UNIQUE key),
-- so the database itself guarantees at most one pending request per (from_user, to_user).
CREATE TABLE friend_requests (
    id              BIGINT       NOT NULL PRIMARY KEY,
    from_user       BIGINT       NOT NULL,
    to_user         BIGINT       NOT NULL,
    note            VARCHAR(256) NOT NULL DEFAULT '',
    status          TINYINT      NOT NULL DEFAULT 0,
    created_at      BIGINT       NOT NULL,
    answered_at     BIGINT       NULL,
    pending_flag    TINYINT GENERATED ALWAYS AS (CASE WHEN status = 0 THEN 1 ELSE NULL END) STORED,
    UNIQUE KEY uq_friend_requests_pending (from_user, to_user, pending_flag),
    KEY idx_friend_requests_to (to_user, status),
    KEY idx_friend_requests_from (from_user, status)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Two rows per friendship, one per direction, so each side has its own remark.
CREATE TABLE friendships (
    user_id         BIGINT       NOT NULL,
    friend_id       BIGINT       NOT NULL,
    remark          VARCHAR(64)  NOT NULL DEFAULT '',
    created_at      BIGINT       NOT NULL,
    PRIMARY KEY (user_id, friend_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE blocks (
    user_id         BIGINT       NOT NULL,
    blocked_id      BIGINT       NOT NULL,
    created_at      BIGINT       NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- kind: 1 direct, 2 group. direct_key is "<smaller id>:<larger id>" for direct conversations
-- (NULL for groups) so a pair of users can never get two direct conversations.
CREATE TABLE conversations (
    id              BIGINT       NOT NULL PRIMARY KEY,
    kind            TINYINT      NOT NULL,
    name            VARCHAR(64)  NOT NULL DEFAULT '',
    owner_id        BIGINT       NOT NULL DEFAULT 0,
    direct_key      VARCHAR(48)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    avatar_file_id  BIGINT       NULL,
    member_limit    INT          NOT NULL DEFAULT 500,
    max_seq         BIGINT       NOT NULL DEFAULT 0,
    created_at      BIGINT       NOT NULL,
    UNIQUE KEY uq_conversations_direct_key (direct_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- role: 0 member, 1 admin, 2 owner. read_seq: last seq the member has read;
-- cleared_seq: history at or below it is hidden for this member ("clear chat").
CREATE TABLE conversation_members (
    conv_id         BIGINT       NOT NULL,
    user_id         BIGINT       NOT NULL,
    role            TINYINT      NOT NULL DEFAULT 0,
    joined_at       BIGINT       NOT NULL,
    read_seq        BIGINT       NOT NULL DEFAULT 0,
    cleared_seq     BIGINT       NOT NULL DEFAULT 0,
    PRIMARY KEY (conv_id, user_id),
    KEY idx_conversation_members_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Clustered by (conv_id, seq): catch-up ("everything after seq N") and backwards paging are
-- range scans of one conversation. client_msg_id is compared byte-for-byte (utf8mb4_bin) so
-- distinct client ids never collide through case folding.
CREATE TABLE messages (
    conv_id         BIGINT       NOT NULL,
    seq             BIGINT       NOT NULL,
    id              BIGINT       NOT NULL,
    sender_id       BIGINT       NOT NULL,
    client_msg_id   VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    kind            TINYINT      NOT NULL,
    body            MEDIUMTEXT   NOT NULL,
    file_id         BIGINT       NULL,
    created_at      BIGINT       NOT NULL,
    edited_at       BIGINT       NULL,
    recalled_at     BIGINT       NULL,
    PRIMARY KEY (conv_id, seq),
    UNIQUE KEY uq_messages_id (id),
    UNIQUE KEY uq_messages_client (conv_id, sender_id, client_msg_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Delete-for-me: one row per (member, message) hidden from that member only.
CREATE TABLE message_hidden (
    conv_id         BIGINT       NOT NULL,
    user_id         BIGINT       NOT NULL,
    seq             BIGINT       NOT NULL,
    PRIMARY KEY (conv_id, user_id, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Content-addressed: the bytes live under their sha256; several rows may share one blob.
CREATE TABLE files (
    id              BIGINT       NOT NULL PRIMARY KEY,
    sha256          BINARY(32)   NOT NULL,
    size            BIGINT       NOT NULL,
    mime            VARCHAR(127) NOT NULL DEFAULT '',
    name            VARCHAR(255) NOT NULL DEFAULT '',
    uploader_id     BIGINT       NOT NULL,
    width           INT          NOT NULL DEFAULT 0,
    height          INT          NOT NULL DEFAULT 0,
    thumb_sha256    BINARY(32)   NULL,
    created_at      BIGINT       NOT NULL,
    complete        TINYINT      NOT NULL DEFAULT 0,
    KEY idx_files_sha256 (sha256)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- A file may be fetched by members of every conversation it was sent to.
CREATE TABLE file_grants (
    file_id         BIGINT       NOT NULL,
    conv_id         BIGINT       NOT NULL,
    PRIMARY KEY (file_id, conv_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- media: 1 audio, 2 video. end_reason: 0 not ended (or unknown); meanings defined by the server.
CREATE TABLE calls (
    id              BIGINT       NOT NULL PRIMARY KEY,
    conv_id         BIGINT       NOT NULL,
    caller_id       BIGINT       NOT NULL,
    media           TINYINT      NOT NULL,
    started_at      BIGINT       NOT NULL,
    answered_at     BIGINT       NULL,
    ended_at        BIGINT       NULL,
    end_reason      TINYINT      NOT NULL DEFAULT 0,
    KEY idx_calls_conv (conv_id, started_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
