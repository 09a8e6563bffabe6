-- Messaging, files and uploads (SPEC §3). Keep in step with ../sqlite/0002_messaging.sql.
--
-- conversation_members.role is now 1 owner, 2 admin, 3 member (the order of the wire enum and
-- of `parley_store::Role`), superseding the comment in 0001; the store always writes it.

-- target_seq: for EDIT/RECALL meta messages, the seq of the message they change (0 = none).
-- body uses utf8mb4_unicode_520_ci: the older utf8mb4_unicode_ci (UCA 4.0.0) gives every
-- character outside the BMP the same weight, so a search for one emoji would match them all.
ALTER TABLE messages
    ADD COLUMN target_seq BIGINT NOT NULL DEFAULT 0 AFTER file_id,
    MODIFY body MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci NOT NULL;

-- Only complete files get a row now (uploads in progress live in `uploads`). The name is
-- searched like message bodies, hence the same collation.
ALTER TABLE files
    DROP COLUMN complete,
    MODIFY name VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci NOT NULL DEFAULT '';

ALTER TABLE message_hidden ADD COLUMN hidden_at BIGINT NOT NULL DEFAULT 0;

-- Time of the last appended message (creation time until then): orders the conversation list.
ALTER TABLE conversations ADD COLUMN last_msg_at BIGINT NOT NULL DEFAULT 0;

ALTER TABLE conversation_members ALTER COLUMN role SET DEFAULT 3;

-- A resumable upload in progress: `received` bytes are on disk so far. Becomes a `files` row
-- (and is deleted) once all `size` bytes arrived and hash to `sha256`.
CREATE TABLE uploads (
    id              BIGINT       NOT NULL PRIMARY KEY,
    user_id         BIGINT       NOT NULL,
    size            BIGINT       NOT NULL,
    sha256          BINARY(32)   NOT NULL,
    name            VARCHAR(255) NOT NULL DEFAULT '',
    mime            VARCHAR(127) NOT NULL DEFAULT '',
    received        BIGINT       NOT NULL DEFAULT 0,
    created_at      BIGINT       NOT NULL,
    updated_at      BIGINT       NOT NULL,
    KEY idx_uploads_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
