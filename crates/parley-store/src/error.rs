//! The one error type every [`crate::Store`] method returns.
//!
//! Callers branch on [`StoreError::Conflict`] (a unique key already holds the value, e.g. a
//! taken username), [`StoreError::NotFound`] (a row the call needs does not exist) and
//! [`StoreError::LimitExceeded`] (a group is full); everything else is an infrastructure failure
//! to log and surface as a generic server error.

/// Errors from the storage layer.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// A unique constraint rejected the write (e.g. the username is taken).
    #[error("already exists")]
    Conflict,
    /// A row the operation depends on does not exist (e.g. appending to a conversation that
    /// does not exist, or moving the read pointer of a non-member).
    #[error("not found")]
    NotFound,
    /// The change would take a conversation past its `member_limit`.
    #[error("member limit exceeded")]
    LimitExceeded,
    /// The database or driver failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Applying the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database URL has an unknown scheme or could not be parsed.
    #[error("invalid database url: {0}")]
    BadUrl(String),
    /// [`crate::StoreOptions`] holds an impossible value (e.g. a node id over 10 bits).
    #[error("invalid store options: {0}")]
    BadOptions(String),
}

/// Result alias for storage operations.
pub type Result<T> = std::result::Result<T, StoreError>;

impl StoreError {
    /// Maps a unique-key violation (on either engine) to [`StoreError::Conflict`].
    pub(crate) fn from_insert(err: sqlx::Error) -> Self {
        if is_unique_violation(&err) {
            StoreError::Conflict
        } else {
            StoreError::Db(err)
        }
    }
}

/// True if `err` is a duplicate-key error: MySQL 1062 and friends, SQLite
/// `SQLITE_CONSTRAINT_UNIQUE` / `_PRIMARYKEY` (sqlx maps both to the same kind).
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
