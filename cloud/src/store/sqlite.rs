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
//! - But a passive checkpoint never empties the WAL while writes keep coming (a poll is a write, and polls never
//!   stop): it copies what was there when it began, more has been appended by the time it ends, and SQLite starts
//!   the WAL over only when a writer finds it wholly copied. Left so, the WAL grows without bound (7 GB after
//!   150,000 enrollments, bench/fleet.sh). So once it holds more than [`WAL_LIMIT_FRAMES`] pages, the task takes
//!   the writers' turn and runs `wal_checkpoint(RESTART)`: it copies the little the passive one left, syncs the
//!   database file and waits for the readers still on the WAL, so the next writer starts the WAL over from its
//!   beginning (and cuts the file back to the limit, `journal_size_limit`, should it have grown past it). New
//!   readers never wait for it; writers wait once per [`WAL_LIMIT_FRAMES`] pages written, some tens of
//!   milliseconds. A reader that keeps it waiting more than a quarter of a second makes it give the turn back and
//!   try again at the next tick. (`TRUNCATE`, which also cuts the file to nothing, held the turn half as long
//!   again: the file's blocks freed, then allocated again as it regrows.)
//! - Polls are answered in batches: one task takes the polls waiting when it is free (up to [`POLL_BATCH`]) and
//!   runs them in one transaction of five statements, whatever their number (each statement reads or writes the
//!   whole batch, its nodes and replay ids passed as one JSON array). Under load, a poll is a few rows in a shared
//!   transaction instead of a transaction of its own: one turn, one commit and one copy of each page in the WAL
//!   per batch, and no statement per poll, each of which is a trip to the connection's thread and back. A poll
//!   still gets its own answer: refused alone when its node is unknown or inactive or its replay id was seen
//!   (within the batch too). A batch that fails is rolled back and its polls run one by one.
//! - Every write transaction begins `BEGIN IMMEDIATE`, taking the write lock before its first read, so two writers
//!   never both read and then deadlock upgrading to write (SQLite would fail one with `SQLITE_BUSY` at once).

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

crate::store::sql::store_impl!(SqliteStore, sqlx::Sqlite, sqlx::SqliteConnection, "BEGIN IMMEDIATE", "", "", "");

crate::store::rollout_sql::rollout_impl!(SqliteStore, sqlx::SqliteConnection, "", "");

crate::store::telemetry_sql::telemetry_impl!(
    SqliteStore,
    sqlx::SqliteConnection,
    "",
    "INSERT INTO node_logs (node, seq, time_ms, received_at, source, level, text, lost) \
     SELECT $1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), $2, json_extract(value, '$[2]'), \
     json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]') FROM json_each($3)",
    "INSERT INTO metric_queue (node, seq, time_ms, labels, samples, received_at) \
     SELECT $1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), $2, json_extract(value, '$[2]'), $3 \
     FROM json_each($4)",
    "INSERT INTO node_metric_points (node, name, time_ms, value) \
     SELECT $1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]') \
     FROM json_each($2) WHERE true ON CONFLICT DO NOTHING",
    "instr(text, $4) > 0",
    "SELECT value FROM json_each($1)"
);

/// The database file's name under the data directory.
pub const FILE_NAME: &str = "edge-cloud.db";

impl SqliteStore {
    /// Opens (creating when missing) `data_dir/edge-cloud.db` and runs its migrations.
    pub async fn open(data_dir: &Path) -> Result<SqliteStore> {
        SqliteStore::open_with(data_dir, WAL_LIMIT_FRAMES).await
    }

    /// [`SqliteStore::open`] with the WAL started over past `wal_limit` pages.
    async fn open_with(data_dir: &Path, wal_limit: i64) -> Result<SqliteStore> {
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
            .pragma("wal_autocheckpoint", "0")
            .pragma("journal_size_limit", (wal_limit * 4096).to_string());
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
        spawn_checkpoints(options, std::sync::Arc::downgrade(&writer), wal_limit);
        let store = SqliteStore { pool, poll_pool, writer: Some(writer), polls: None, starts: None };
        let (polls, queue) = tokio::sync::mpsc::channel(POLL_QUEUE);
        tokio::spawn(answer_polls(store.clone(), queue));
        Ok(SqliteStore { polls: Some(polls), ..store })
    }
}

/// The most polls one batch answers.
pub const POLL_BATCH: usize = 256;

/// The polls that may wait for the batcher before a poll's request waits to hand its own over.
const POLL_QUEUE: usize = 4 * POLL_BATCH;

/// Answers the polls of `queue` in batches until every sender (every clone of the store) is gone.
async fn answer_polls(store: SqliteStore, mut queue: tokio::sync::mpsc::Receiver<crate::store::sql::PollJob>) {
    let mut batch = Vec::with_capacity(POLL_BATCH);
    while queue.recv_many(&mut batch, POLL_BATCH).await > 0 {
        match store.poll_batch(&batch).await {
            Ok(answers) => {
                for (job, answer) in batch.drain(..).zip(answers) {
                    let _ = job.reply.send(answer);
                }
            }
            Err(e) => {
                log::warn!("a batch of {} polls: {}; answering each alone", batch.len(), crate::error::chain(&e));
                for job in batch.drain(..) {
                    let answer = store.desired_one(&job.node, &job.replay, job.now).await;
                    let _ = job.reply.send(answer);
                }
            }
        }
    }
}

impl SqliteStore {
    /// Answers `jobs` in one transaction, each as [`Store::desired`] would alone. `Err` when the batch failed
    /// as a whole (rolled back: nothing of it is recorded).
    async fn poll_batch(&self, jobs: &[crate::store::sql::PollJob]) -> Result<Vec<Result<Desired>>> {
        use std::collections::HashSet;
        let mut tx = self.poll_write().await?;
        let nodes = serde_json::to_string(&jobs.iter().map(|j| j.node.as_str()).collect::<Vec<_>>())
            .expect("strings serialize");
        let sql = format!(
            "SELECT CAST(j.key AS BIGINT) AS job, n.status AS node_status, b.*, {DESIRED_COLUMNS}, \
             CAST(CASE WHEN EXISTS (SELECT 1 FROM actions a WHERE a.node = n.id AND a.state = 'queued') \
             THEN 1 ELSE 0 END AS BIGINT) AS has_actions \
             FROM json_each($1) j JOIN nodes n ON n.id = j.value {DESIRED_JOINS}"
        );
        let rows =
            sqlx::query(&sql).bind(nodes).fetch_all(&mut *tx).await.map_err(db("read a batch of polls' nodes"))?;
        let mut answers: Vec<Result<Desired>> =
            jobs.iter().map(|j| Err(Refusal::NodeUnknown { id: j.node.clone() }.into())).collect();
        let mut with_actions = vec![false; jobs.len()];
        let mut candidates = Vec::new();
        for row in &rows {
            let job: i64 = row.try_get("job").map_err(db("read a poll's node"))?;
            let i = usize::try_from(job).ok().filter(|&i| i < jobs.len()).ok_or_else(|| {
                db("read a poll's node")(sqlx::Error::Protocol(format!("no poll {job} in the batch")))
            })?;
            let status = node_status(&row.try_get::<String, _>("node_status").map_err(db("read a node"))?)?;
            if let Err(refused) = active(&jobs[i].node, status) {
                answers[i] = Err(refused);
                continue;
            }
            let mut desired = Desired { status, bundle: None, flip: None, actions: Vec::new() };
            if status == NodeStatus::Accepted {
                let hash: Option<String> = row.try_get("manifest_hash").map_err(db("read a node's bundle"))?;
                if hash.is_some() {
                    desired.bundle = Some(read_bundle(row)?);
                }
                let (flip, start) = rollout_of_row(row, jobs[i].now)?;
                desired.flip = flip;
                if let Some(deployment) = start {
                    candidates.push((i, jobs[i].node.clone(), deployment));
                }
                with_actions[i] = row.try_get::<i64, _>("has_actions").map_err(db("read a node's bundle"))? != 0;
            }
            answers[i] = Ok(desired);
        }

        // The replay ids of the polls still standing, in one statement; the ids it did not insert were seen.
        let standing: Vec<usize> = (0..jobs.len()).filter(|&i| answers[i].is_ok()).collect();
        let replays = serde_json::to_string(
            &standing
                .iter()
                .map(|&i| (&jobs[i].replay.id, &jobs[i].node, jobs[i].replay.expires_at))
                .collect::<Vec<_>>(),
        )
        .expect("replay ids serialize");
        let inserted: Vec<String> = sqlx::query_scalar(
            "INSERT INTO replays (id, node, expires_at) SELECT value ->> 0, value ->> 1, value ->> 2 \
             FROM json_each($1) WHERE true ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(replays)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("record a batch of replay ids"))?;
        let mut fresh: HashSet<String> = inserted.into_iter().collect();
        let mut seen = Vec::with_capacity(standing.len());
        for &i in &standing {
            // An id twice in the batch was inserted once: the first poll holding it has it.
            if fresh.remove(&jobs[i].replay.id) {
                seen.push((jobs[i].node.as_str(), jobs[i].now));
            } else {
                answers[i] = Err(Refusal::Replayed.into());
                with_actions[i] = false;
            }
        }

        sqlx::query(
            "UPDATE nodes SET last_seen = u.at FROM (SELECT value ->> 0 AS id, max(value ->> 1) AS at \
             FROM json_each($1) GROUP BY 1) AS u WHERE nodes.id = u.id",
        )
        .bind(serde_json::to_string(&seen).expect("polls serialize"))
        .execute(&mut *tx)
        .await
        .map_err(db("record a batch of polls"))?;

        for (i, answer) in answers.iter_mut().enumerate() {
            let Ok(desired) = answer else { continue };
            if !with_actions[i] {
                continue;
            }
            desired.actions = queued_actions(&mut tx, &jobs[i].node).await?;
        }
        tx.commit().await.map_err(db("commit a batch of polls"))?;
        // Nodes waiting in a deployment with room are started in a synced transaction of their own (the batch's
        // commit is not synced), once the polls are recorded; a poll refused as a replay starts nothing.
        candidates.retain(|(i, _, _)| answers[*i].is_ok());
        if !candidates.is_empty() {
            let now = jobs.iter().map(|j| j.now).max().unwrap_or(0);
            self.start_polled(&mut answers, candidates, now).await?;
        }
        Ok(answers)
    }
}

/// How often the checkpoint task copies the WAL back.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// The WAL's size, in pages (4 KiB each: 256 MiB), past which the checkpoint task starts it over in the writers'
/// turn. Starting it over costs the writers a wait of a few tens of milliseconds, whatever the WAL's size (the passive
/// checkpoints have copied all but the last half second), so the limit sets how often they wait: every 10 s or so
/// at 100,000 nodes polling every minute, whose polls write some 25 MiB of WAL a second.
pub const WAL_LIMIT_FRAMES: i64 = 65_536;

/// How long the restarting checkpoint waits for readers still on the WAL before it gives the writers' turn back.
const RESTART_WAIT: Duration = Duration::from_millis(250);

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] on a connection of its own, until the store is gone (`alive`,
/// the store's writer lock, no longer upgrades), and starts it over in the writers' turn once it holds more than
/// `wal_limit` pages. A checkpoint that fails is logged and tried again.
fn spawn_checkpoints(options: SqliteConnectOptions, alive: std::sync::Weak<tokio::sync::Mutex<()>>, wal_limit: i64) {
    use sqlx::ConnectOptions as _;
    let options = options.busy_timeout(RESTART_WAIT);
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
            let pages = match checkpoint(c, "PASSIVE").await {
                Ok((_, pages)) => pages,
                Err(e) => {
                    log::warn!("checkpoint: {}", crate::error::chain(&e));
                    conn = None;
                    continue;
                }
            };
            if pages <= wal_limit {
                continue;
            }
            let Some(writer) = alive.upgrade() else { return };
            let asked = std::time::Instant::now();
            let turn = writer.lock().await;
            let began = std::time::Instant::now();
            let restarted = checkpoint(c, "RESTART").await;
            drop(turn);
            let (waited, held) = (began - asked, began.elapsed());
            match restarted {
                Ok((false, _)) => {
                    log::debug!("checkpoint: the WAL's {pages} pages copied back, to start over, in {held:?} of the writers' turn (waited {waited:?})")
                }
                Ok((true, _)) => {
                    log::debug!("checkpoint: readers kept the WAL of {pages} pages for {held:?} of the writers' turn; next time")
                }
                Err(e) => {
                    log::warn!("checkpoint: {}", crate::error::chain(&e));
                    conn = None;
                }
            }
        }
    });
}

/// Runs `wal_checkpoint(mode)`; returns whether it was kept from finishing (`SQLITE_BUSY`) and the WAL's pages.
async fn checkpoint(conn: &mut sqlx::SqliteConnection, mode: &str) -> Result<(bool, i64)> {
    let (busy, pages, _copied): (i64, i64, i64) = sqlx::query_as(&format!("PRAGMA wal_checkpoint({mode})"))
        .fetch_one(&mut *conn)
        .await
        .map_err(db("checkpoint the WAL"))?;
    Ok((busy != 0, pages))
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

    /// Writers that never pause keep a passive checkpoint from ever copying the whole WAL, so SQLite never starts
    /// it over by itself; past its limit, the task does, in the writers' turn: the WAL holds only what was written
    /// since, not everything.
    #[test]
    fn a_wal_past_its_limit_starts_over_in_the_writers_turn() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("temp");
        rt.block_on(async {
            let store = SqliteStore::open_with(dir.path(), 64).await.expect("open");
            let mut raw = SqliteConnectOptions::new()
                .filename(dir.path().join(FILE_NAME))
                .journal_mode(SqliteJournalMode::Wal)
                .pragma("wal_autocheckpoint", "0")
                .connect()
                .await
                .expect("a connection");
            sqlx::query("CREATE TABLE filler (b BLOB)").execute(&mut raw).await.expect("a table");
            let turn = store.writer.as_ref().expect("a writer lock").clone();
            let began = std::time::Instant::now();
            let mut written = 0;
            while began.elapsed() < CHECKPOINT_EVERY * 6 {
                let held = turn.lock().await;
                sqlx::query("INSERT INTO filler VALUES (zeroblob(4000))").execute(&mut raw).await.expect("a write");
                drop(held);
                written += 1;
            }
            let (_, pages, _): (i64, i64, i64) =
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut raw).await.expect("the WAL");
            assert!(written > 500, "enough written to cross the limit many times: {written} rows");
            // Each commit adds at least one page (three, here) to the WAL: without starting over, it would hold more
            // pages than rows were written.
            assert!(pages < written, "the WAL started over: {pages} pages in it after {written} rows of a page");
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM filler").fetch_one(&mut raw).await.expect("read");
            assert_eq!(n, written, "every row is in the database");
            drop(store);
        });
    }
}
