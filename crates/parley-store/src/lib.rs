//! Parley's storage layer: one [`Store`] API over MySQL/MariaDB (production, several nodes) and
//! SQLite (zero-setup default), chosen by the database URL.
//!
//! Boundary rules: this crate owns every SQL statement and the schema (embedded migrations under
//! `migrations/{mysql,sqlite}`, same versions on both engines, run on connect). It takes the
//! current time from callers (`now_ms` parameters, milliseconds since the Unix epoch) so tests
//! are deterministic, and makes every row id itself ([`IdGenerator`]). Queries are runtime
//! `sqlx::query` calls with `?` placeholders; the same text runs on both engines unless a method
//! branches on [`Engine`] explicitly. Methods never join across conversations on hot paths:
//! `conv_id` is the future shard key.
//!
//! Map: accounts (`users`, `sessions`, `contacts`), conversations and members
//! (`conversations`), the delivery contract's group commit (`append`), message reads and
//! read/hidden state (`messages`), message search (`search`), uploads and files (`files`).

/// Runs `$body` with `$db` bound to the right pool for the engine, and records its latency.
///
/// `$body` is written once and type-checked once per engine, so it must only use SQL and
/// types both engines accept. `read` statements go to SQLite's read-only pool, `write`
/// statements (and anything that must see its own writes) to the single writer.
macro_rules! db {
    ($store:expr, $mode:ident, $op:literal, |$db:ident| $body:expr) => {{
        let started = ::std::time::Instant::now();
        let out = match &$store.inner.backend {
            $crate::store::Backend::MySql(pool) => {
                let $db = pool;
                $body
            }
            $crate::store::Backend::Sqlite(pools) => {
                // `$mode` (`read` or `write`) names the field of `SqlitePools` to use.
                let $db = &pools.$mode;
                $body
            }
        };
        $crate::store::record_latency($op, started);
        out
    }};
}

mod append;
mod contacts;
mod conversations;
mod error;
mod files;
mod id;
mod messages;
mod search;
mod sessions;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod users;

pub use append::{Appended, Effect, NewMessage};
pub use contacts::{FriendRequestRow, FriendshipRow, RequestStatus, UnknownStatus};
pub use conversations::{ConvKind, ConversationRow, MemberRow, Role, UnknownValue};
pub use error::{Result, StoreError};
pub use files::{FileRow, UploadRow};
pub use id::{ID_EPOCH_MS, IdGenerator, MAX_NODE_ID, node_of, unix_ms_of};
pub use messages::{KIND_EDIT, KIND_RECALL, MessageRow};
pub use sessions::SessionRow;
pub use store::{Engine, Store, StoreOptions};
pub use users::UserRow;
