//! Files and uploads (SPEC §3.7): resumable uploads in progress, complete content-addressed
//! files, per-conversation read grants, and user avatars.
//!
//! The bytes live outside the database under their SHA-256 (the server's blob store); these
//! tables hold metadata only. An upload row tracks how many bytes arrived; advancing it is a
//! compare-and-set so two overlapping chunk writers cannot both move it. Once complete and
//! verified, the server creates the `files` row and deletes the upload.

use crate::error::{Result, StoreError};
use crate::store::{Engine, Store};

/// One complete, verified file.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct FileRow {
    /// Snowflake id.
    pub id: i64,
    /// SHA-256 of the content (32 bytes): where the bytes are stored.
    pub sha256: Vec<u8>,
    /// Size in bytes.
    pub size: i64,
    /// Media type, e.g. `image/png`.
    pub mime: String,
    /// Original file name.
    pub name: String,
    /// Who uploaded it.
    pub uploader_id: i64,
    /// Image width in pixels; 0 if not an image.
    pub width: i32,
    /// Image height in pixels; 0 if not an image.
    pub height: i32,
    /// SHA-256 of the thumbnail, for images that have one.
    pub thumb_sha256: Option<Vec<u8>>,
    /// Completion time, ms since the Unix epoch.
    pub created_at: i64,
}

/// One upload in progress.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct UploadRow {
    /// Snowflake id (the upload token the client resumes with).
    pub id: i64,
    /// Uploader.
    pub user_id: i64,
    /// Announced total size in bytes.
    pub size: i64,
    /// Announced SHA-256 of the whole content (32 bytes), verified on completion.
    pub sha256: Vec<u8>,
    /// Original file name.
    pub name: String,
    /// Media type.
    pub mime: String,
    /// Bytes received (and durably written) so far.
    pub received: i64,
    /// Start time, ms since the Unix epoch.
    pub created_at: i64,
    /// Last progress, ms since the Unix epoch (for expiring abandoned uploads).
    pub updated_at: i64,
}

/// Column list matching [`FileRow`], usable inside `concat!`.
macro_rules! file_cols {
    () => {
        "id, sha256, size, mime, name, uploader_id, width, height, thumb_sha256, created_at"
    };
}

/// Column list matching [`UploadRow`], usable inside `concat!`.
macro_rules! upload_cols {
    () => {
        "id, user_id, size, sha256, name, mime, received, created_at, updated_at"
    };
}

impl Store {
    /// Stores a new upload exactly as given. A duplicate id yields [`StoreError::Conflict`].
    pub async fn create_upload(&self, u: &UploadRow) -> Result<()> {
        db!(self, write, "create_upload", |db| sqlx::query(concat!(
            "INSERT INTO uploads (",
            upload_cols!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(u.id)
        .bind(u.user_id)
        .bind(u.size)
        .bind(&u.sha256)
        .bind(&u.name)
        .bind(&u.mime)
        .bind(u.received)
        .bind(u.created_at)
        .bind(u.updated_at)
        .execute(db)
        .await
        .map(|r| r.rows_affected())
        .map_err(StoreError::from_insert))?;
        Ok(())
    }

    /// The upload with this id. Read from the writer: an upload is resumed right after a
    /// chunk advanced it, and must not see an older `received`.
    pub async fn upload(&self, id: i64) -> Result<Option<UploadRow>> {
        Ok(db!(self, write, "upload", |db| sqlx::query_as(concat!(
            "SELECT ",
            upload_cols!(),
            " FROM uploads WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(db)
        .await)?)
    }

    /// Sets `received = new_received` (and `updated_at`) only if it currently equals
    /// `expected_received`, so two overlapping chunk writers cannot both advance; returns
    /// whether it did.
    pub async fn advance_upload(
        &self,
        id: i64,
        expected_received: i64,
        new_received: i64,
        now_ms: i64,
    ) -> Result<bool> {
        let done = db!(self, write, "advance_upload", |db| sqlx::query(
            "UPDATE uploads SET received = ?, updated_at = ? WHERE id = ? AND received = ?"
        )
        .bind(new_received)
        .bind(now_ms)
        .bind(id)
        .bind(expected_received)
        .execute(db)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Deletes an upload (completed or abandoned); no-op if it is gone already.
    pub async fn delete_upload(&self, id: i64) -> Result<()> {
        db!(self, write, "delete_upload", |db| sqlx::query(
            "DELETE FROM uploads WHERE id = ?"
        )
        .bind(id)
        .execute(db)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Stores a complete file exactly as given. A duplicate id yields
    /// [`StoreError::Conflict`]; several rows may share one `sha256` (same bytes, stored once).
    pub async fn create_file(&self, f: &FileRow) -> Result<()> {
        db!(self, write, "create_file", |db| sqlx::query(concat!(
            "INSERT INTO files (",
            file_cols!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(f.id)
        .bind(&f.sha256)
        .bind(f.size)
        .bind(&f.mime)
        .bind(&f.name)
        .bind(f.uploader_id)
        .bind(f.width)
        .bind(f.height)
        .bind(&f.thumb_sha256)
        .bind(f.created_at)
        .execute(db)
        .await
        .map(|r| r.rows_affected())
        .map_err(StoreError::from_insert))?;
        Ok(())
    }

    /// The file with this id.
    pub async fn file(&self, id: i64) -> Result<Option<FileRow>> {
        Ok(db!(self, read, "file", |db| sqlx::query_as(concat!(
            "SELECT ",
            file_cols!(),
            " FROM files WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(db)
        .await)?)
    }

    /// Records that `file_id` was sent to `conv_id`, so its members may read it
    /// (idempotent). [`Store::append_messages`] also does this for messages with a file.
    pub async fn grant_file(&self, file_id: i64, conv_id: i64) -> Result<()> {
        let sql = match self.engine() {
            Engine::MySql => {
                "INSERT INTO file_grants (file_id, conv_id) VALUES (?, ?) \
                 ON DUPLICATE KEY UPDATE conv_id = conv_id"
            }
            Engine::Sqlite => {
                "INSERT INTO file_grants (file_id, conv_id) VALUES (?, ?) ON CONFLICT DO NOTHING"
            }
        };
        db!(self, write, "grant_file", |db| sqlx::query(sql)
            .bind(file_id)
            .bind(conv_id)
            .execute(db)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// True when `user_id` uploaded the file or is currently a member of a conversation it
    /// was granted to.
    pub async fn can_read_file(&self, user_id: i64, file_id: i64) -> Result<bool> {
        let hit = db!(self, read, "can_read_file", |db| sqlx::query(
            "SELECT 1 FROM files WHERE id = ? AND uploader_id = ? \
             UNION ALL \
             SELECT 1 FROM file_grants g JOIN conversation_members m ON m.conv_id = g.conv_id \
             WHERE g.file_id = ? AND m.user_id = ? \
             LIMIT 1"
        )
        .bind(file_id)
        .bind(user_id)
        .bind(file_id)
        .bind(user_id)
        .fetch_optional(db)
        .await
        .map(|row| row.is_some()))?;
        Ok(hit)
    }

    /// True when `user_id` may already read some file with these exact bytes: only
    /// then may an upload skip sending them (knowing a hash is not owning the file).
    pub async fn can_read_content(&self, user_id: i64, sha256: &[u8], size: i64) -> Result<bool> {
        let hit = db!(self, read, "can_read_content", |db| sqlx::query(
            "SELECT 1 FROM files WHERE sha256 = ? AND size = ? AND uploader_id = ? \
             UNION ALL \
             SELECT 1 FROM files f JOIN file_grants g ON g.file_id = f.id \
             JOIN conversation_members m ON m.conv_id = g.conv_id \
             WHERE f.sha256 = ? AND f.size = ? AND m.user_id = ? \
             LIMIT 1"
        )
        .bind(sha256)
        .bind(size)
        .bind(user_id)
        .bind(sha256)
        .bind(size)
        .bind(user_id)
        .fetch_optional(db)
        .await
        .map(|row| row.is_some()))?;
        Ok(hit)
    }

    /// Sets (or with `None` clears) the user's avatar image.
    pub async fn set_avatar(&self, user_id: i64, file_id: Option<i64>) -> Result<()> {
        db!(self, write, "set_avatar", |db| sqlx::query(
            "UPDATE users SET avatar_file_id = ? WHERE id = ?"
        )
        .bind(file_id)
        .bind(user_id)
        .execute(db)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }
}
