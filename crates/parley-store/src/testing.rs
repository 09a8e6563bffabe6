//! Test harness (feature `testing`): a fresh database per test on every engine we support.
//!
//! Every storage behaviour must hold on SQLite and MySQL/MariaDB, so tests loop over
//! [`test_databases`]. SQLite is always available (a file in a temp dir). MariaDB is reached at
//! `PARLEY_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`), where each test gets
//! its own `parley_t_<random>` database, dropped afterwards. When MariaDB is unreachable the
//! MySQL run is skipped with a loud warning, except under `CI=true`, where skipping would hide
//! failures, so it panics instead.

use std::time::Duration;

use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Connection};

use crate::{Result, Store, StoreOptions};

/// Where the MySQL-compatible test server is, unless `PARLEY_TEST_MYSQL_URL` says otherwise.
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// How long to wait for MariaDB before deciding it is not running.
const MYSQL_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A fresh, empty database for one test; dropped (MySQL) or deleted (SQLite) with this value.
pub struct TestDb {
    /// URL to pass to [`Store::connect`].
    pub url: String,
    /// `"sqlite"` or `"mysql"`, for assertion messages.
    pub label: &'static str,
    _guard: Guard,
}

enum Guard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    MySql { admin_url: String, database: String },
}

impl TestDb {
    /// Opens a [`Store`] on this database with default options (runs migrations).
    pub async fn open(&self) -> Result<Store> {
        Store::connect(&self.url, StoreOptions::default()).await
    }
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb")
            .field("url", &self.url)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Guard::MySql { admin_url, database } = &self._guard else {
            return; // the TempDir removes the SQLite files itself
        };
        let (admin_url, database) = (admin_url.clone(), database.clone());
        // Drop runs inside the test's runtime, where we cannot block on async work; a helper
        // thread with its own small runtime can. Best effort: a leftover database is harmless.
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = MySqlConnection::connect(&admin_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS `{database}`");
                    if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await {
                        eprintln!("warning: could not drop test database {database}: {e}");
                    }
                    let _ = conn.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// One fresh database per available engine: SQLite always, MariaDB when reachable (see the
/// module docs for the skip/panic rule).
pub async fn test_databases() -> Vec<TestDb> {
    let mut dbs = vec![sqlite_db()];
    if let Some(db) = mysql_db().await {
        dbs.push(db);
    }
    dbs
}

/// A fresh SQLite database in its own temporary directory.
pub fn sqlite_db() -> TestDb {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("cannot create a temp dir for the SQLite test database: {e}"),
    };
    let url = format!("sqlite://{}", dir.path().join("parley.db").display());
    TestDb {
        url,
        label: "sqlite",
        _guard: Guard::Sqlite(dir),
    }
}

/// A fresh MariaDB database, or `None` (with a warning) if the server is unreachable outside
/// CI. Panics if it is unreachable under `CI=true`.
pub async fn mysql_db() -> Option<TestDb> {
    let admin_url = std::env::var("PARLEY_TEST_MYSQL_URL").unwrap_or_else(|_| DEFAULT_MYSQL_URL.to_owned());
    let connected = tokio::time::timeout(MYSQL_CONNECT_TIMEOUT, MySqlConnection::connect(&admin_url)).await;
    let mut conn = match connected {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return unreachable(&admin_url, &e.to_string()),
        Err(_) => return unreachable(&admin_url, "connection timed out"),
    };
    let database = format!("parley_t_{:016x}", rand::random::<u64>());
    let create = format!("CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci");
    if let Err(e) = sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut conn).await {
        panic!("cannot create test database {database} at {admin_url}: {e}");
    }
    let _ = conn.close().await;
    Some(TestDb {
        url: with_database(&admin_url, &database),
        label: "mysql",
        _guard: Guard::MySql { admin_url, database },
    })
}

fn unreachable(url: &str, why: &str) -> Option<TestDb> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "MariaDB unreachable at {url} ({why}) and CI=true: MySQL-backed tests must run in CI. \
             Start MariaDB or set PARLEY_TEST_MYSQL_URL."
        );
    }
    eprintln!("WARNING: MariaDB unreachable at {url} ({why}): MySQL-backed tests SKIPPED");
    None
}

/// `url` (`mysql://user@host:port/db?params`) with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{database}?{q}"),
        None => format!("{server}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_in_a_url() {
        assert_eq!(
            with_database("mysql://root@127.0.0.1:3306/test", "x"),
            "mysql://root@127.0.0.1:3306/x"
        );
        assert_eq!(
            with_database("mysql://u:p@h:1/test?ssl-mode=disabled", "x"),
            "mysql://u:p@h:1/x?ssl-mode=disabled"
        );
        assert_eq!(with_database("mysql://h", "x"), "mysql://h/x");
    }
}
