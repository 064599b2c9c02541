//! The transactional outbox: an event is written in the same database transaction as the state
//! change it reports, and a relay publishes it afterwards. So an event exists if and only if the
//! change committed, whatever crashes in between; publishing is at least once.
//!
//! Every service that emits events has this table in its own migrations:
//!
//! ```sql
//! CREATE TABLE outbox (
//!     seq            INTEGER PRIMARY KEY AUTOINCREMENT,  -- BIGSERIAL on PostgreSQL
//!     event_id       TEXT NOT NULL UNIQUE,
//!     topic          TEXT NOT NULL,
//!     kind           TEXT NOT NULL,
//!     payload        BLOB NOT NULL,                      -- BYTEA on PostgreSQL
//!     occurred_at_ms BIGINT NOT NULL,
//!     trace_parent   TEXT NOT NULL DEFAULT '',
//!     published_at_ms BIGINT
//! );
//! ```

use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgConnection, SqliteConnection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::{Envelope, EventBus};
use crate::db::Db;

/// Writes an event into the outbox of the transaction it is called on.
pub trait OutboxWrite {
    fn enqueue(&mut self, event: &Envelope)
    -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

const INSERT: &str = "INSERT INTO outbox (event_id, topic, kind, payload, occurred_at_ms, trace_parent) \
                      VALUES ($1, $2, $3, $4, $5, $6)";

impl OutboxWrite for SqliteConnection {
    async fn enqueue(&mut self, e: &Envelope) -> Result<(), sqlx::Error> {
        sqlx::query(INSERT)
            .bind(&e.event_id)
            .bind(&e.topic)
            .bind(&e.kind)
            .bind(&e.payload)
            .bind(e.occurred_at_ms)
            .bind(trace_parent(e))
            .execute(self)
            .await?;
        Ok(())
    }
}

impl OutboxWrite for PgConnection {
    async fn enqueue(&mut self, e: &Envelope) -> Result<(), sqlx::Error> {
        sqlx::query(INSERT)
            .bind(&e.event_id)
            .bind(&e.topic)
            .bind(&e.kind)
            .bind(&e.payload)
            .bind(e.occurred_at_ms)
            .bind(trace_parent(e))
            .execute(self)
            .await?;
        Ok(())
    }
}

/// The event's trace context, or the current span's: so a consumer's span continues the trace
/// of the request that caused the event.
fn trace_parent(e: &Envelope) -> String {
    if e.trace_parent.is_empty() {
        crate::telemetry::propagation::current_traceparent()
    } else {
        e.trace_parent.clone()
    }
}

/// Wakes the relay right after a commit that wrote events, so delivery does not wait for the
/// next poll.
#[derive(Clone, Default)]
pub struct RelayWaker(Arc<Notify>);

impl RelayWaker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Publishes committed outbox rows to the bus, oldest first, and marks them published once the
/// bus has them (in Redis, or in the embedded bus's file): a crash in between publishes them
/// again, and consumers dedupe.
pub struct Relay {
    pub db: Db,
    pub bus: Arc<dyn EventBus>,
    pub waker: RelayWaker,
    /// How often to look even when nobody woke us (another replica's writes, a failed publish).
    pub poll: Duration,
    /// Name for logs.
    pub service: &'static str,
}

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    event_id: String,
    topic: String,
    kind: String,
    payload: Vec<u8>,
    occurred_at_ms: i64,
    trace_parent: String,
}

impl From<Row> for Envelope {
    fn from(r: Row) -> Self {
        Envelope {
            event_id: r.event_id,
            topic: r.topic,
            kind: r.kind,
            payload: r.payload,
            occurred_at_ms: r.occurred_at_ms,
            trace_parent: r.trace_parent,
        }
    }
}

const BATCH: i64 = 256;

/// Published rows are kept a week (for looking into what was sent), then removed: the state
/// tables, not the outbox, are the record.
const KEEP_PUBLISHED_MS: i64 = 7 * 24 * 3600 * 1000;
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
/// How often the relay measures its backlog for `outbox.depth`.
const DEPTH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Removes rows published before `before_ms`; returns how many.
pub async fn prune(db: &Db, before_ms: i64) -> Result<u64, sqlx::Error> {
    crate::with_db!(db, pool => Ok(sqlx::query("DELETE FROM outbox WHERE published_at_ms IS NOT NULL AND published_at_ms < $1")
        .bind(before_ms)
        .execute(pool)
        .await?
        .rows_affected()))
}

impl Relay {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut last_prune = tokio::time::Instant::now();
        // `outbox.depth` reports what the relay measured last: a gauge callback must not query.
        let depth = crate::metrics::outbox_depth(self.service);
        let mut last_depth: Option<tokio::time::Instant> = None;
        loop {
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = tokio::time::Instant::now();
                match prune(&self.db, crate::now_ms() - KEEP_PUBLISHED_MS).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        service = self.service,
                        removed = n,
                        "pruned published outbox rows"
                    ),
                    Err(e) => {
                        tracing::warn!(service = self.service, error = %format!("{e:#}"), "pruning the outbox failed")
                    }
                }
            }
            let published = self.publish_batch().await;
            // Measured at most once a second, and only when metrics are on (an indexed count).
            if crate::metrics::enabled() && last_depth.is_none_or(|t| t.elapsed() >= DEPTH_EVERY) {
                last_depth = Some(tokio::time::Instant::now());
                match self::depth(&self.db).await {
                    Ok(n) => depth.store(n, std::sync::atomic::Ordering::Relaxed),
                    Err(e) => {
                        tracing::debug!(service = self.service, error = %format!("{e:#}"), "measuring the outbox depth failed")
                    }
                }
            }
            match published {
                // A full batch: there may be more right away.
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(service = self.service, error = %format!("{e:#}"), "outbox relay failed; retrying")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.waker.0.notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    /// Publishes up to one batch; returns how many events went out.
    pub async fn publish_batch(&self) -> anyhow::Result<usize> {
        match &self.db {
            Db::Postgres(pool) => {
                // SKIP LOCKED lets several replicas' relays share the table without publishing
                // the same row twice at once; the lock is held until the rows are marked.
                let mut tx = pool.begin().await?;
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT seq, event_id, topic, kind, payload, occurred_at_ms, trace_parent FROM outbox \
                     WHERE published_at_ms IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
                )
                .bind(BATCH)
                .fetch_all(&mut *tx)
                .await?;
                let n = rows.len();
                let seqs = self.publish(rows).await?;
                sqlx::query("UPDATE outbox SET published_at_ms = $1 WHERE seq = ANY($2)")
                    .bind(crate::now_ms())
                    .bind(&seqs)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(n)
            }
            Db::Sqlite(pool) => {
                // One process owns a SQLite file, so one relay: no row locking needed.
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT seq, event_id, topic, kind, payload, occurred_at_ms, trace_parent FROM outbox \
                     WHERE published_at_ms IS NULL ORDER BY seq LIMIT $1",
                )
                .bind(BATCH)
                .fetch_all(pool)
                .await?;
                let n = rows.len();
                let now = crate::now_ms();
                for seq in self.publish(rows).await? {
                    sqlx::query("UPDATE outbox SET published_at_ms = $1 WHERE seq = $2")
                        .bind(now)
                        .bind(seq)
                        .execute(pool)
                        .await?;
                }
                Ok(n)
            }
        }
    }

    async fn publish(&self, rows: Vec<Row>) -> anyhow::Result<Vec<i64>> {
        let mut done = Vec::with_capacity(rows.len());
        for row in rows {
            let seq = row.seq;
            let envelope = Envelope::from(row);
            self.bus.publish(&envelope).await?;
            tracing::debug!(service = self.service, event_id = %envelope.event_id, kind = %envelope.kind, "event published");
            done.push(seq);
        }
        Ok(done)
    }
}

/// How many events wait to be published: the relay's backlog, for health and metrics.
pub async fn depth(db: &Db) -> Result<i64, sqlx::Error> {
    crate::with_db!(db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at_ms IS NULL").fetch_one(pool).await)
}
