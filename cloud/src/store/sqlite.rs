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
//! - The WAL is copied back into the database file by a task of its own, on a connection of its own, twice a
//!   second (`wal_checkpoint(PASSIVE)`), never by a commit: SQLite's automatic checkpoint runs inside the commit
//!   that crosses 1,000 pages of WAL, with its writes and syncs, and so inside that writer's turn, where every other
//!   writer waited for it. A passive checkpoint takes no lock a reader or writer waits on.
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
            .foreign_keys(true)
            .pragma("wal_autocheckpoint", "0");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.clone())
            .await
            .map_err(db("open the SQLite database"))?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(|source| Error::Migrate { source })?;
        let poll_pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().synchronous(SqliteSynchronous::Normal))
            .await
            .map_err(db("open the SQLite database"))?;
        let writer = std::sync::Arc::new(tokio::sync::Mutex::new(()));
        spawn_checkpoints(options, std::sync::Arc::downgrade(&writer));
        Ok(SqliteStore { pool, poll_pool, writer: Some(writer) })
    }
}

/// How often the checkpoint task copies the WAL back.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] on a connection of its own, until the store is gone (`alive`,
/// the store's writer lock, no longer upgrades). A checkpoint that fails is logged and tried again.
fn spawn_checkpoints(options: SqliteConnectOptions, alive: std::sync::Weak<tokio::sync::Mutex<()>>) {
    use sqlx::ConnectOptions as _;
    tokio::spawn(async move {
        let mut conn = None;
        loop {
            tokio::time::sleep(CHECKPOINT_EVERY).await;
            if alive.strong_count() == 0 {
                return;
            }
            if conn.is_none() {
                conn = options
                    .connect()
                    .await
                    .map_err(|e| log::warn!("checkpoint: {}", crate::error::chain(&db("open a connection")(e))))
                    .ok();
            }
            let Some(c) = conn.as_mut() else { continue };
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut *c).await {
                log::warn!("checkpoint: {}", crate::error::chain(&db("checkpoint the WAL")(e)));
                conn = None;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::ConnectOptions as _;

    /// Writes of another connection with no automatic checkpoint reach the database file only through the store's
    /// checkpoint task; once the store is gone, they stay in the WAL.
    #[test]
    fn the_wal_is_checkpointed_by_the_store_task_alone() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("temp");
        let db = dir.path().join(FILE_NAME);
        rt.block_on(async {
            let store = SqliteStore::open(dir.path()).await.expect("open");
            let mut raw = SqliteConnectOptions::new()
                .filename(&db)
                .journal_mode(SqliteJournalMode::Wal)
                .pragma("wal_autocheckpoint", "0")
                .connect()
                .await
                .expect("a connection");
            let write = |table: &str| {
                format!(
                    "CREATE TABLE {table} (b BLOB); \
                     INSERT INTO {table} SELECT zeroblob(4000) FROM (WITH RECURSIVE n(i) AS \
                     (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 256) SELECT i FROM n)"
                )
            };
            let sql = write("filler");
            sqlx::raw_sql(&sql).execute(&mut raw).await.expect("write");
            let before = std::fs::metadata(&db).expect("db").len();
            tokio::time::sleep(CHECKPOINT_EVERY * 3).await;
            let after = std::fs::metadata(&db).expect("db").len();
            assert!(after >= before + 256 * 4000, "checkpointed into the file: {before} -> {after} bytes");

            drop(store);
            tokio::time::sleep(CHECKPOINT_EVERY * 2).await;
            let sql = write("more");
            sqlx::raw_sql(&sql).execute(&mut raw).await.expect("write");
            tokio::time::sleep(CHECKPOINT_EVERY * 3).await;
            let last = std::fs::metadata(&db).expect("db").len();
            assert_eq!(last, after, "no checkpoint once the store is gone, and none by a commit");
        });
    }
}
