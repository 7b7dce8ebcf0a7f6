//! The PostgreSQL store, for an endpoint that outgrows one machine: several `edge-cloud` replicas share one
//! database (docs/cloud.md, "PostgreSQL"). Nothing lives only in a replica's memory; each write transaction locks
//! the rows it decides on (`FOR UPDATE`), so two replicas handling the same node serialise on its row.
//! The migrations take PostgreSQL's advisory lock, so replicas started together migrate once.
//! A poll's transaction sets `synchronous_commit = off` for itself: PostgreSQL then replies before its log reaches
//! the disk, and a crash of the database may forget the last polls (never corrupt anything); every other commit
//! waits for the disk.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

crate::store::sql::store_impl!(
    PgStore,
    sqlx::Postgres,
    sqlx::PgConnection,
    "BEGIN",
    " FOR UPDATE",
    " FOR UPDATE OF n",
    "SET LOCAL synchronous_commit = off"
);

crate::store::rollout_sql::rollout_impl!(
    PgStore,
    sqlx::PgConnection,
    " FOR UPDATE",
    "SELECT pg_advisory_xact_lock(7306078180911049836)"
);

crate::store::telemetry_sql::telemetry_impl!(
    PgStore,
    sqlx::PgConnection,
    " FOR UPDATE",
    "INSERT INTO node_logs (node, seq, time_ms, received_at, source, level, text, lost) \
     SELECT $1, (r->>0)::bigint, (r->>1)::bigint, $2, r->>2, (r->>3)::bigint, r->>4, (r->>5)::bigint \
     FROM json_array_elements($3::json) AS r",
    "INSERT INTO metric_queue (node, seq, time_ms, labels, samples, received_at) \
     SELECT $1, (r->>0)::bigint, (r->>1)::bigint, $2, r->>2, $3 FROM json_array_elements($4::json) AS r",
    "INSERT INTO node_metric_points (node, name, time_ms, value) \
     SELECT $1, r->>0, (r->>1)::bigint, (r->>2)::double precision FROM json_array_elements($2::json) AS r \
     ON CONFLICT DO NOTHING",
    "strpos(text, $4) > 0",
    "SELECT json_array_elements_text($1::json)::bigint"
);

impl PgStore {
    /// Connects to `url` (`postgres://...`) and runs the migrations.
    pub async fn open(url: &str) -> Result<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(db("connect to PostgreSQL"))?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await.map_err(|source| Error::Migrate { source })?;
        // Polls share the pool: their transactions relax their own commit (`SET LOCAL`).
        // No turn to take: PostgreSQL has many writers, serialised only where they lock the same rows.
        let store = PgStore { poll_pool: pool.clone(), pool, writer: None, polls: None, starts: None };
        // Starts are decided in batches: each takes the deployment's row lock and a synced commit, so one at a time
        // they would queue behind each other's disk writes; a batch shares one.
        let (starts, queue) = tokio::sync::mpsc::channel(4 * crate::store::rollout_sql::START_BATCH);
        tokio::spawn(store.clone().answer_starts(queue));
        Ok(PgStore { starts: Some(starts), ..store })
    }
}
