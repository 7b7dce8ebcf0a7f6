//! The SQLite store, the default: one file `DIR/edge-cloud.db` under `--data DIR` (docs/cloud.md, "SQLite").
//!
//! - WAL, so readers never wait for the writer.
//! - `synchronous=FULL`: a commit is on disk before the reply leaves. A report's ack lets the node drop its copy,
//!   so a report acknowledged and then lost to a power cut of the endpoint would be lost for good; `NORMAL` in WAL
//!   mode could lose the last commits that way (never corrupt the file).
//! - Except a poll's: it only records `last_seen` and the poll's replay id, so its pool runs `synchronous=NORMAL`,
//!   which commits to the WAL without a sync. The next synced commit (any other write, from the other pool) syncs
//!   the WAL and with it every poll before it. A power cut can forget the last polls; the nodes poll again. The
//!   sync per poll was what bounded one machine's fleet (bench/fleet.sh).
//! - One writer at a time, in the order they asked: a write transaction takes the store's turn (a FIFO async lock)
//!   before it begins and holds it to its end, so the writers of this process queue there and never in SQLite's
//!   busy handler, which sleeps between retries (up to 100 ms at a time) and keeps no order: the tail latency of a
//!   poll under load was that sleeping.
//! - `busy_timeout` of 5 s: a writer of another process (`edge-cloud admin-token create` beside a running
//!   endpoint) waits for the one before it instead of failing at once.
//! - Every write transaction begins `BEGIN IMMEDIATE`, taking the write lock before its first read, so two writers
//!   never both read and then deadlock upgrading to write (SQLite would fail one with `SQLITE_BUSY` at once).

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

crate::store::sql::store_impl!(SqliteStore, sqlx::Sqlite, sqlx::SqliteConnection, "BEGIN IMMEDIATE", "", "", "");

/// The database file's name under the data directory.
pub const FILE_NAME: &str = "edge-cloud.db";

impl SqliteStore {
    /// Opens (creating when missing) `data_dir/edge-cloud.db` and runs its migrations.
    pub async fn open(data_dir: &Path) -> Result<SqliteStore> {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::Io {
            what: "create the data directory",
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(FILE_NAME);
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(db("read the SQLite options"))?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.clone())
            .await
            .map_err(db("open the SQLite database"))?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(|source| Error::Migrate { source })?;
        let poll_pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.synchronous(SqliteSynchronous::Normal))
            .await
            .map_err(db("open the SQLite database"))?;
        Ok(SqliteStore { pool, poll_pool, writer: Some(std::sync::Arc::new(tokio::sync::Mutex::new(()))) })
    }
}
