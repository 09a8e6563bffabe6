//! Baseline (a): what the database itself commits per second with batched
//! multi-row INSERTs of message-sized rows, on the same database the server
//! just used, over one connection opened the way the store opens it (SQLite:
//! WAL, `synchronous=FULL`, `BEGIN IMMEDIATE`; MariaDB/MySQL: utf8mb4, an
//! ordinary transaction). The table is shaped like `messages`: same columns,
//! primary key `(conv_id, seq)` and the same unique keys.

use std::str::FromStr as _;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Connection as _};

/// Most rows per INSERT statement, as in the store's `append_messages`.
const INSERT_ROWS: usize = 500;

/// One baseline measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Baseline {
    /// Rows per transaction.
    pub batch: usize,
    pub rows: u64,
    pub seconds: f64,
    pub rows_per_s: f64,
    /// rows/s of every run (this one is the median).
    pub runs: Vec<f64>,
}

/// What to insert.
#[derive(Clone, Debug)]
pub struct Shape {
    pub rows: u64,
    /// Conversations the rows are spread over (round robin, gap-free seq each).
    pub conversations: usize,
    /// Body length in bytes.
    pub body_bytes: usize,
}

const SQLITE_TABLE: &str = "CREATE TABLE bench_messages (
    conv_id INTEGER NOT NULL, seq INTEGER NOT NULL, id INTEGER NOT NULL, sender_id INTEGER NOT NULL,
    client_msg_id TEXT NOT NULL, kind INTEGER NOT NULL, body TEXT NOT NULL, file_id INTEGER NULL,
    target_seq INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, edited_at INTEGER NULL,
    recalled_at INTEGER NULL, PRIMARY KEY (conv_id, seq)) STRICT;
CREATE UNIQUE INDEX uq_bench_messages_id ON bench_messages (id);
CREATE UNIQUE INDEX uq_bench_messages_client ON bench_messages (conv_id, sender_id, client_msg_id);";

const MYSQL_TABLE: &str = "CREATE TABLE bench_messages (
    conv_id BIGINT NOT NULL, seq BIGINT NOT NULL, id BIGINT NOT NULL, sender_id BIGINT NOT NULL,
    client_msg_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, kind TINYINT NOT NULL,
    body MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci NOT NULL, file_id BIGINT NULL,
    target_seq BIGINT NOT NULL DEFAULT 0, created_at BIGINT NOT NULL, edited_at BIGINT NULL,
    recalled_at BIGINT NULL, PRIMARY KEY (conv_id, seq), UNIQUE KEY uq_bench_messages_id (id),
    UNIQUE KEY uq_bench_messages_client (conv_id, sender_id, client_msg_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";

/// `INSERT` of `n` rows (10 values each, like the store's).
fn insert_sql(n: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO bench_messages (conv_id, seq, id, sender_id, client_msg_id, kind, body, file_id, \
         target_seq, created_at, edited_at, recalled_at) VALUES ",
    );
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)");
    }
    sql
}

/// One generated row.
struct Row {
    conv_id: i64,
    seq: i64,
    id: i64,
    sender_id: i64,
    client_msg_id: String,
}

fn row(i: u64, conversations: usize, base_id: i64) -> Row {
    let convs = conversations.max(1) as u64;
    let conv = i % convs;
    Row {
        conv_id: 1_000_000 + conv as i64,
        seq: (i / convs) as i64 + 1,
        id: base_id + i as i64,
        sender_id: 2_000_000 + conv as i64,
        client_msg_id: format!("{:08x}-0000-7000-8000-{:012x}", i >> 32, i & 0xffff_ffff_ffff),
    }
}

macro_rules! bind_rows {
    ($q:expr, $rows:expr, $body:expr, $now:expr) => {{
        let mut q = $q;
        for r in $rows {
            q = q
                .bind(r.conv_id)
                .bind(r.seq)
                .bind(r.id)
                .bind(r.sender_id)
                .bind(r.client_msg_id.as_str())
                .bind(1i32)
                .bind($body)
                .bind(None::<i64>)
                .bind(0i64)
                .bind($now);
        }
        q
    }};
}

/// Runs the baseline `repeat` times for each batch size on the database at `url` (a fresh
/// table per run) and keeps the median run of each size.
pub async fn run(
    url: &str,
    shape: &Shape,
    batches: &[usize],
    repeat: usize,
) -> anyhow::Result<Vec<Baseline>> {
    let mut out = Vec::new();
    for &batch in batches {
        let mut runs = Vec::new();
        for _ in 0..repeat.max(1) {
            let b = if url.starts_with("sqlite:") {
                sqlite(url, shape, batch.max(1)).await?
            } else {
                mysql(url, shape, batch.max(1)).await?
            };
            eprintln!(
                "[baseline] batch {:>5}: {} rows in {:.2}s = {:.0} rows/s",
                b.batch, b.rows, b.seconds, b.rows_per_s
            );
            runs.push(b);
        }
        runs.sort_by(|a, b| a.rows_per_s.total_cmp(&b.rows_per_s));
        let mut median = runs[runs.len() / 2].clone();
        median.runs = runs.iter().map(|r| r.rows_per_s).collect();
        out.push(median);
    }
    Ok(out)
}

fn result(batch: usize, rows: u64, elapsed: Duration) -> Baseline {
    let seconds = elapsed.as_secs_f64();
    Baseline {
        batch,
        rows,
        seconds: crate::report::round(seconds, 3),
        rows_per_s: crate::report::round(rows as f64 / seconds.max(1e-9), 1),
        runs: Vec::new(),
    }
}

async fn sqlite(url: &str, shape: &Shape, batch: usize) -> anyhow::Result<Baseline> {
    let opts = SqliteConnectOptions::from_str(url)?
        .busy_timeout(Duration::from_secs(5))
        .synchronous(SqliteSynchronous::Full)
        .journal_mode(SqliteJournalMode::Wal)
        .create_if_missing(true)
        .foreign_keys(false);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await?;
    sqlx::raw_sql("DROP TABLE IF EXISTS bench_messages")
        .execute(&mut conn)
        .await?;
    sqlx::raw_sql(SQLITE_TABLE).execute(&mut conn).await?;
    let body = "x".repeat(shape.body_bytes);
    let now = now_ms();
    let started = Instant::now();
    let mut i = 0u64;
    while i < shape.rows {
        let n = (shape.rows - i).min(batch as u64);
        let rows: Vec<Row> = (i..i + n).map(|k| row(k, shape.conversations, 1)).collect();
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        for chunk in rows.chunks(INSERT_ROWS) {
            let q = sqlx::query(AssertSqlSafe(insert_sql(chunk.len())));
            bind_rows!(q, chunk, body.as_str(), now).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        i += n;
    }
    let elapsed = started.elapsed();
    sqlx::raw_sql("DROP TABLE bench_messages")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(result(batch, shape.rows, elapsed))
}

async fn mysql(url: &str, shape: &Shape, batch: usize) -> anyhow::Result<Baseline> {
    let opts = sqlx::mysql::MySqlConnectOptions::from_str(url)?.charset("utf8mb4");
    let mut conn = sqlx::MySqlConnection::connect_with(&opts).await?;
    sqlx::raw_sql("DROP TABLE IF EXISTS bench_messages")
        .execute(&mut conn)
        .await?;
    sqlx::raw_sql(MYSQL_TABLE).execute(&mut conn).await?;
    let body = "x".repeat(shape.body_bytes);
    let now = now_ms();
    let started = Instant::now();
    let mut i = 0u64;
    while i < shape.rows {
        let n = (shape.rows - i).min(batch as u64);
        let rows: Vec<Row> = (i..i + n).map(|k| row(k, shape.conversations, 1)).collect();
        let mut tx = conn.begin().await?;
        for chunk in rows.chunks(INSERT_ROWS) {
            let q = sqlx::query(AssertSqlSafe(insert_sql(chunk.len())));
            bind_rows!(q, chunk, body.as_str(), now).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        i += n;
    }
    let elapsed = started.elapsed();
    sqlx::raw_sql("DROP TABLE bench_messages")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(result(batch, shape.rows, elapsed))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_baseline_inserts_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/b.db", dir.path().display());
        let shape = Shape {
            rows: 1234,
            conversations: 7,
            body_bytes: 50,
        };
        let out = run(&url, &shape, &[100, 600], 1).await.unwrap();
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|b| b.rows == 1234 && b.rows_per_s > 0.0));
    }

    #[test]
    fn rows_are_gap_free_per_conversation() {
        let r: Vec<Row> = (0..6).map(|i| row(i, 3, 10)).collect();
        assert_eq!((r[0].conv_id, r[0].seq), (1_000_000, 1));
        assert_eq!((r[3].conv_id, r[3].seq), (1_000_000, 2));
        assert_eq!(r[5].id, 15);
        assert_eq!(r[0].client_msg_id.len(), 36);
    }
}
