//! [`Store`]: opening the database named by a URL, running migrations, and the connection pools
//! every query module borrows through the `db!` macro.
//!
//! SQLite gets two pools over one WAL-mode file: a single writer connection (SQLite allows one
//! writer at a time anyway; queuing in our pool is cheaper and fairer than `SQLITE_BUSY` retries)
//! and a few read-only connections, so reads never wait behind a write transaction.
//! `synchronous=FULL` makes a commit durable before it returns: an acked message survives
//! power loss. MySQL/MariaDB gets one ordinary pool.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{MySql, Sqlite, Transaction};

use crate::error::{Result, StoreError};
use crate::id::{IdGenerator, MAX_NODE_ID};

/// Read-only SQLite connections: enough for concurrent readers, few enough to stay cheap.
const SQLITE_READERS: u32 = 4;
/// How long a connection waits on a locked SQLite database before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Tunables for [`Store::connect`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// This node's id for [`Store::next_id`]; must be unique among nodes sharing a database
    /// and at most [`MAX_NODE_ID`] (10 bits).
    pub node_id: u16,
    /// Pool size for MySQL. For SQLite it caps the read pool (at most 4); writes always use
    /// one connection.
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            node_id: 0,
            max_connections: 16,
        }
    }
}

/// Which database engine a [`Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// MySQL 8 or MariaDB 10.6+.
    MySql,
    /// SQLite (bundled), one file on local disk.
    Sqlite,
}

/// Handle to the database: cheap to clone (shared pools inside), safe to use from any task.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) backend: Backend,
    ids: IdGenerator,
}

/// The pools of one engine; see the module docs for why SQLite has two.
pub(crate) enum Backend {
    MySql(MySqlPool),
    Sqlite(SqlitePools),
}

/// SQLite's two pools over one file, named after the `db!` macro's modes.
pub(crate) struct SqlitePools {
    /// The single writer connection.
    pub(crate) write: SqlitePool,
    /// Read-only connections (the writer's pool again for in-memory databases).
    pub(crate) read: SqlitePool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("engine", &self.engine())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database at `url` and applies pending migrations.
    ///
    /// `mysql://user:pass@host:port/db` selects MySQL/MariaDB; `sqlite://path`, `sqlite:path`
    /// or `sqlite::memory:` selects SQLite (the file and its parent directory are created if
    /// missing).
    pub async fn connect(url: &str, opts: StoreOptions) -> Result<Store> {
        let ids = IdGenerator::new(opts.node_id).ok_or_else(|| {
            StoreError::BadOptions(format!(
                "node_id {} exceeds the maximum {MAX_NODE_ID}",
                opts.node_id
            ))
        })?;
        let max = opts.max_connections.max(1);
        let backend = if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            connect_mysql(url, max).await?
        } else if url.starts_with("sqlite:") {
            connect_sqlite(url, max).await?
        } else {
            return Err(StoreError::BadUrl(format!(
                "unsupported scheme in {:?}; expected mysql:// or sqlite:",
                redact(url)
            )));
        };
        Ok(Store {
            inner: Arc::new(Inner { backend, ids }),
        })
    }

    /// The engine behind this store.
    pub fn engine(&self) -> Engine {
        match self.inner.backend {
            Backend::MySql(_) => Engine::MySql,
            Backend::Sqlite(_) => Engine::Sqlite,
        }
    }

    /// A new unique id (snowflake layout, see [`IdGenerator`]).
    pub fn next_id(&self) -> i64 {
        self.inner.ids.next_id()
    }

    /// Checks that the database answers (health endpoint).
    pub async fn ping(&self) -> Result<()> {
        db!(self, write, "ping", |db| sqlx::query("SELECT 1")
            .execute(db)
            .await
            .map(|_| ())
            .map_err(StoreError::from))
    }

    /// Closes all connections, waiting for in-flight queries; later calls fail.
    pub async fn close(&self) {
        match &self.inner.backend {
            Backend::MySql(pool) => pool.close().await,
            Backend::Sqlite(pools) => {
                pools.read.close().await;
                pools.write.close().await;
            }
        }
    }
}

async fn connect_mysql(url: &str, max: u32) -> Result<Backend> {
    let opts = MySqlConnectOptions::from_str(url)
        .map_err(|e| StoreError::BadUrl(format!("{}: {e}", redact(url))))?
        .charset("utf8mb4");
    let pool = MySqlPoolOptions::new()
        .max_connections(max)
        .connect_with(opts)
        .await?;
    sqlx::migrate!("./migrations/mysql").run(&pool).await?;
    Ok(Backend::MySql(pool))
}

async fn connect_sqlite(url: &str, max: u32) -> Result<Backend> {
    let base = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::BadUrl(format!("{url}: {e}")))?
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(false);
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");

    if in_memory {
        // An in-memory database lives as long as its one connection, and a read-only second
        // pool could not open it: one pool, one connection that is never recycled.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(base)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        return Ok(Backend::Sqlite(SqlitePools {
            write: pool.clone(),
            read: pool,
        }));
    }

    if let Some(dir) = base.get_filename().parent().filter(|p| *p != Path::new("")) {
        tokio::fs::create_dir_all(dir).await.map_err(|e| {
            StoreError::Db(sqlx::Error::Configuration(
                format!("cannot create database directory {}: {e}", dir.display()).into(),
            ))
        })?;
    }

    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(
            base.clone()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal),
        )
        .await?;
    sqlx::migrate!("./migrations/sqlite").run(&writer).await?;

    // Opened after the writer switched the file to WAL (a persistent setting), so readers
    // see the schema and never take the write lock.
    let reader = SqlitePoolOptions::new()
        .max_connections(max.min(SQLITE_READERS))
        .connect_with(base.read_only(true))
        .await?;
    Ok(Backend::Sqlite(SqlitePools {
        write: writer,
        read: reader,
    }))
}

/// `url` with any password replaced, for error messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Records one database operation's latency in the `parley_db_seconds` histogram.
pub(crate) fn record_latency(op: &'static str, started: Instant) {
    metrics::histogram!("parley_db_seconds", "op" => op).record(started.elapsed());
}

/// Starts a write transaction. On SQLite it is `BEGIN IMMEDIATE`, taking the write lock up front
/// so a transaction that reads first cannot fail on lock upgrade if another process (an admin
/// CLI) writes the same file; in-process writers already queue on the single writer connection.
pub(crate) trait BeginWrite {
    /// The engine of the transaction.
    type Db: sqlx::Database;
    /// Begins the transaction.
    async fn begin_write(&self) -> sqlx::Result<Transaction<'static, Self::Db>>;
}

impl BeginWrite for MySqlPool {
    type Db = MySql;
    async fn begin_write(&self) -> sqlx::Result<Transaction<'static, MySql>> {
        self.begin().await
    }
}

impl BeginWrite for SqlitePool {
    type Db = Sqlite;
    async fn begin_write(&self) -> sqlx::Result<Transaction<'static, Sqlite>> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

/// `"?, ?, ?"` with `n` placeholders, for `IN (...)` lists.
pub(crate) fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}

/// Largest `IN (...)` list sent in one statement; longer inputs are split.
pub(crate) const IN_CHUNK: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("mysql://u:secret@h:3306/db"), "mysql://u:***@h:3306/db");
        assert_eq!(redact("mysql://u@h/db"), "mysql://u@h/db");
    }

    #[test]
    fn placeholder_lists() {
        assert_eq!(placeholders(1), "?");
        assert_eq!(placeholders(3), "?, ?, ?");
    }
}
