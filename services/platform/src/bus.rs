//! The event bus: how one service hears of another's state changes.
//!
//! Two implementations behind [`EventBus`]:
//! - [`InProcessBus`] for the embedded mode (`cwsm serve`): a log per topic with a cursor per
//!   consumer group, kept in the data folder's `bus.db` (SQLite) as well as in memory, so that a
//!   `kill -9` between the relay handing an event over and a consumer applying it loses nothing:
//!   the relay marks an outbox row published only once the event is in that file, and a group's
//!   cursor moves there only after its consumer's transaction committed.
//! - [`RedisBus`] for production: one Redis Stream per topic, `XREADGROUP` with a consumer group
//!   so that replicas of a service share the work, `XACK` only after the consumer's own
//!   transaction committed.
//!
//! Delivery is at least once in both. Consumers are idempotent (each records the event ids it has
//! applied in the same transaction as the effect), so a redelivery changes nothing.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use redis::AsyncCommands;
use redis::streams::{StreamId, StreamReadOptions, StreamReadReply};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// One event as it travels: the payload is the protobuf encoding of the event message named by
/// `kind` (see `proto/cwsm/events/v1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Unique per event, chosen when the event is written to the outbox; consumers dedupe on it.
    pub event_id: String,
    /// The stream it goes on, e.g. `projects.milestones`.
    pub topic: String,
    /// The event type, e.g. `cwsm.events.v1.ProjectMilestone`.
    pub kind: String,
    pub payload: Vec<u8>,
    /// When the state change happened (ms since the epoch).
    pub occurred_at_ms: i64,
    /// W3C `traceparent` of the span that wrote the event, empty when none.
    pub trace_parent: String,
}

/// An event handed to a consumer; ack it once its effect has committed.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub envelope: Envelope,
    /// The bus's own id for this message (the Redis stream entry id; a sequence in-process).
    pub message_id: String,
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Appends an event to its topic.
    async fn publish(&self, event: &Envelope) -> anyhow::Result<()>;

    /// Joins consumer `group` of `topic` as `consumer`. A group that does not exist yet is
    /// created at the start of the topic, so it sees events published before it joined.
    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
    ) -> anyhow::Result<Box<dyn Subscription>>;

    /// Events that kept failing and were set aside, newest last, for an administrator to see.
    async fn dead_letters(&self, topic: &str, limit: usize) -> anyhow::Result<Vec<DeadLetter>>;

    /// A name for logs and the start-up banner.
    fn describe(&self) -> String;
}

/// An event set aside after its handler kept failing: kept with the last error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub envelope: Envelope,
    pub error: String,
    pub attempts: u32,
    pub dead_at_ms: i64,
}

/// An error that retrying cannot fix (a payload that does not decode, say): the event goes to
/// the dead letters at once instead of being retried.
#[derive(Debug)]
pub struct Poison(pub String);

impl std::fmt::Display for Poison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "poison event: {}", self.0)
    }
}

impl std::error::Error for Poison {}

#[async_trait]
pub trait Subscription: Send {
    /// Waits for the next event of the group that this consumer should handle: first its own
    /// unacknowledged ones (from before a restart), then new ones.
    async fn next(&mut self) -> anyhow::Result<Delivery>;
    /// Marks a delivery done for the group.
    async fn ack(&mut self, delivery: &Delivery) -> anyhow::Result<()>;
    /// Sets a delivery aside as a dead letter (with why) and acknowledges it.
    async fn dead_letter(&mut self, delivery: &Delivery, letter: &DeadLetter)
    -> anyhow::Result<()>;
}

/// What a consumer does with one event. Returning `Ok` acknowledges it.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()>;
}

/// Tries before a failing event is set aside as a dead letter. With back-off capped at 5 s this
/// is about four minutes: long enough to ride out a database restart, short enough that one bad
/// event does not hold up its topic for long.
pub const MAX_ATTEMPTS: u32 = 50;

/// Runs `handler` on every delivery of `subscription` until `shutdown`. A failing event is
/// retried with back-off; one that cannot succeed ([`Poison`]) or keeps failing
/// ([`MAX_ATTEMPTS`]) is set aside as a dead letter, never skipped silently.
pub async fn consume(
    mut subscription: Box<dyn Subscription>,
    handler: Arc<dyn EventHandler>,
    shutdown: CancellationToken,
    name: &str,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => return,
            d = subscription.next() => d,
        };
        let delivery = match delivery {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(consumer = name, error = %format!("{e:#}"), "reading events failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        // Retry this one event until it is handled or set aside: later events must not
        // overtake a failing one without anybody noticing.
        let mut attempts = 0u32;
        let topic = delivery.envelope.topic.as_str();
        loop {
            attempts += 1;
            if attempts > 1 {
                crate::metrics::events_redelivered(
                    name,
                    topic,
                    crate::metrics::Redelivery::Retry,
                    1,
                );
            }
            let span = tracing::info_span!("event", consumer = name, kind = %delivery.envelope.kind, event_id = %delivery.envelope.event_id, attempt = attempts);
            crate::telemetry::propagation::adopt(&span, &delivery.envelope.trace_parent);
            let error = match handler.handle(&delivery.envelope).instrument(span).await {
                Ok(()) => {
                    crate::metrics::event_handled(name, topic, delivery.envelope.occurred_at_ms);
                    if let Err(e) = subscription.ack(&delivery).await {
                        tracing::warn!(consumer = name, event_id = %delivery.envelope.event_id, error = %format!("{e:#}"), "ack failed; the event will be redelivered and deduplicated");
                    }
                    backoff = Duration::from_millis(100);
                    break;
                }
                Err(e) => e,
            };
            if error.is::<Poison>() || attempts >= MAX_ATTEMPTS {
                let letter = DeadLetter {
                    envelope: delivery.envelope.clone(),
                    error: format!("{error:#}"),
                    attempts,
                    dead_at_ms: crate::now_ms(),
                };
                tracing::error!(consumer = name, event_id = %delivery.envelope.event_id, kind = %delivery.envelope.kind, attempts, error = %letter.error, "event set aside as a dead letter");
                match subscription.dead_letter(&delivery, &letter).await {
                    Ok(()) => {
                        crate::metrics::event_dead_lettered(name, topic);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(consumer = name, error = %format!("{e:#}"), "cannot set the event aside; retrying it")
                    }
                }
            } else {
                tracing::error!(consumer = name, event_id = %delivery.envelope.event_id, kind = %delivery.envelope.kind, attempts, error = %format!("{error:#}"), "handling event failed; retrying");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// In-process

/// The embedded bus: a capped log per topic and a cursor per consumer group, in memory and,
/// when [opened](InProcessBus::open) on a file, also in that SQLite file (written first, in the
/// same order), so that the log and the cursors survive a crash or `kill -9`. Without the file
/// ([`InProcessBus::new`]) everything lives as long as the process (tests, benches).
#[derive(Clone, Default)]
pub struct InProcessBus {
    inner: Arc<InProcessInner>,
}

#[derive(Default)]
struct InProcessInner {
    topics: Mutex<HashMap<String, TopicLog>>,
    published: Notify,
    dead: Mutex<HashMap<String, Vec<DeadLetter>>>,
    store: Option<BusStore>,
}

/// The bus's own SQLite file (see `migrations/bus`).
struct BusStore {
    pool: SqlitePool,
    path: PathBuf,
    /// One change at a time, file first, then memory: a publish takes its sequence from the
    /// memory log, and the two stay equal.
    write: tokio::sync::Mutex<()>,
}

static BUS_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/bus");

#[derive(Default)]
struct TopicLog {
    /// Sequence number of `entries[0]`.
    base: u64,
    entries: VecDeque<Envelope>,
    /// Next sequence each group will read.
    groups: HashMap<String, u64>,
}

/// Entries kept per topic, like the Redis streams' cap: a group made later reads from the oldest
/// kept entry; a group that lags more than this loses the oldest (the outbox still has them).
const IN_PROCESS_MAX_LEN: usize = 100_000;

impl TopicLog {
    fn push(&mut self, event: Envelope) {
        self.entries.push_back(event);
        while self.entries.len() > IN_PROCESS_MAX_LEN && self.entries.pop_front().is_some() {
            self.base += 1;
        }
    }

    /// The sequence the next published event gets.
    fn next_seq(&self) -> u64 {
        self.base + self.entries.len() as u64
    }
}

#[derive(sqlx::FromRow)]
struct LogRow {
    topic: String,
    seq: i64,
    event_id: String,
    kind: String,
    payload: Vec<u8>,
    occurred_at_ms: i64,
    trace_parent: String,
}

#[derive(sqlx::FromRow)]
struct DeadRow {
    topic: String,
    event_id: String,
    kind: String,
    payload: Vec<u8>,
    occurred_at_ms: i64,
    trace_parent: String,
    error: String,
    attempts: i64,
    dead_at_ms: i64,
}

fn lock<T>(m: &Mutex<T>) -> anyhow::Result<std::sync::MutexGuard<'_, T>> {
    m.lock().map_err(|_| anyhow!("bus lock poisoned"))
}

fn db_seq(seq: u64) -> anyhow::Result<i64> {
    i64::try_from(seq).context("bus sequence out of range")
}

const UPSERT_CURSOR: &str = "INSERT INTO bus_groups (topic, grp, next_seq) VALUES ($1, $2, $3) \
                             ON CONFLICT (topic, grp) DO UPDATE SET next_seq = MAX(next_seq, excluded.next_seq)";

impl InProcessBus {
    /// The bus's file in a data folder.
    pub const FILE: &'static str = "bus.db";

    /// A bus in memory only: what it carries is gone with the process.
    pub fn new() -> Self {
        Self::default()
    }

    /// A bus kept in the SQLite file at `path` (made if missing), as it was left: events
    /// published and not yet acknowledged by a group are delivered to it again.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        // As the services' own files: WAL, and a commit is durable when the process dies
        // (`synchronous = NORMAL` may lose the last commits only if the machine does).
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .with_context(|| format!("opening the bus file {}", path.display()))?;
        BUS_MIGRATIONS
            .run(&pool)
            .await
            .with_context(|| format!("migrating the bus file {}", path.display()))?;

        let mut topics: HashMap<String, TopicLog> = HashMap::new();
        let rows: Vec<LogRow> = sqlx::query_as(
            "SELECT topic, seq, event_id, kind, payload, occurred_at_ms, trace_parent \
             FROM bus_log ORDER BY topic, seq",
        )
        .fetch_all(&pool)
        .await?;
        for row in rows {
            let log = topics.entry(row.topic.clone()).or_default();
            let seq = u64::try_from(row.seq).context("negative bus sequence")?;
            if log.entries.is_empty() {
                log.base = seq;
            }
            anyhow::ensure!(
                seq == log.next_seq(),
                "bus file {}: topic {} jumps from {} to {seq}",
                path.display(),
                row.topic,
                log.next_seq()
            );
            log.push(Envelope {
                event_id: row.event_id,
                topic: row.topic,
                kind: row.kind,
                payload: row.payload,
                occurred_at_ms: row.occurred_at_ms,
                trace_parent: row.trace_parent,
            });
        }
        let groups: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT topic, grp, next_seq FROM bus_groups")
                .fetch_all(&pool)
                .await?;
        for (topic, group, next) in groups {
            let next = u64::try_from(next).context("negative bus cursor")?;
            topics.entry(topic).or_default().groups.insert(group, next);
        }
        // A topic with cursors and no entries (never, unless the file was edited) goes on after
        // them, so a new event is not taken for one already acknowledged.
        for log in topics.values_mut() {
            if log.entries.is_empty() {
                log.base = log.groups.values().copied().max().unwrap_or(0);
            }
        }
        let mut dead: HashMap<String, Vec<DeadLetter>> = HashMap::new();
        let rows: Vec<DeadRow> = sqlx::query_as(
            "SELECT topic, event_id, kind, payload, occurred_at_ms, trace_parent, error, attempts, \
             dead_at_ms FROM bus_dead_letters ORDER BY id",
        )
        .fetch_all(&pool)
        .await?;
        for row in rows {
            dead.entry(row.topic.clone()).or_default().push(DeadLetter {
                envelope: Envelope {
                    event_id: row.event_id,
                    topic: row.topic,
                    kind: row.kind,
                    payload: row.payload,
                    occurred_at_ms: row.occurred_at_ms,
                    trace_parent: row.trace_parent,
                },
                error: row.error,
                attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
                dead_at_ms: row.dead_at_ms,
            });
        }
        Ok(Self {
            inner: Arc::new(InProcessInner {
                topics: Mutex::new(topics),
                published: Notify::new(),
                dead: Mutex::new(dead),
                store: Some(BusStore {
                    pool,
                    path: path.to_path_buf(),
                    write: tokio::sync::Mutex::new(()),
                }),
            }),
        })
    }

    /// Closes the file, if any (after the consumers stopped).
    pub async fn close(&self) {
        if let Some(store) = &self.inner.store {
            store.pool.close().await;
        }
    }
}

impl InProcessInner {
    /// Holds the writer's turn when the bus has a file (nothing to order otherwise).
    async fn writing(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.store {
            Some(store) => Some(store.write.lock().await),
            None => None,
        }
    }

    /// Moves `group`'s cursor of `topic` past `seq`: in the file, then in memory.
    async fn advance(&self, topic: &str, group: &str, seq: u64) -> anyhow::Result<()> {
        let _turn = self.writing().await;
        if let Some(store) = &self.store {
            sqlx::query(UPSERT_CURSOR)
                .bind(topic)
                .bind(group)
                .bind(db_seq(seq + 1)?)
                .execute(&store.pool)
                .await
                .context("saving the bus cursor")?;
        }
        self.move_cursor(topic, group, seq)
    }

    /// The in-memory half of [`InProcessInner::advance`].
    fn move_cursor(&self, topic: &str, group: &str, seq: u64) -> anyhow::Result<()> {
        if let Some(cursor) = lock(&self.topics)?
            .get_mut(topic)
            .and_then(|log| log.groups.get_mut(group))
        {
            // Acks come in order for one consumer; never move a cursor backwards.
            *cursor = (*cursor).max(seq + 1);
        }
        Ok(())
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, event: &Envelope) -> anyhow::Result<()> {
        let inner = &self.inner;
        let _turn = inner.writing().await;
        if let Some(store) = &inner.store {
            // On disk before the relay marks the outbox row published.
            let seq = lock(&inner.topics)?
                .get(&event.topic)
                .map_or(0, TopicLog::next_seq);
            let keep_from = (seq + 1).saturating_sub(IN_PROCESS_MAX_LEN as u64);
            let mut tx = store.pool.begin().await?;
            sqlx::query(
                "INSERT INTO bus_log (topic, seq, event_id, kind, payload, occurred_at_ms, trace_parent) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&event.topic)
            .bind(db_seq(seq)?)
            .bind(&event.event_id)
            .bind(&event.kind)
            .bind(&event.payload)
            .bind(event.occurred_at_ms)
            .bind(&event.trace_parent)
            .execute(&mut *tx)
            .await
            .context("writing the bus log")?;
            if keep_from > 0 {
                sqlx::query("DELETE FROM bus_log WHERE topic = $1 AND seq < $2")
                    .bind(&event.topic)
                    .bind(db_seq(keep_from)?)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await.context("writing the bus log")?;
        }
        lock(&inner.topics)?
            .entry(event.topic.clone())
            .or_default()
            .push(event.clone());
        inner.published.notify_waiters();
        Ok(())
    }

    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
        _consumer: &str,
    ) -> anyhow::Result<Box<dyn Subscription>> {
        let inner = &self.inner;
        let _turn = inner.writing().await;
        // A new group starts at the oldest kept entry, as a Redis group created at id 0 does.
        let (start, new) = {
            let mut topics = lock(&inner.topics)?;
            let log = topics.entry(topic.to_string()).or_default();
            match log.groups.get(group) {
                Some(cursor) => (*cursor, false),
                None => (log.base, true),
            }
        };
        if new {
            if let Some(store) = &inner.store {
                sqlx::query(
                    "INSERT INTO bus_groups (topic, grp, next_seq) VALUES ($1, $2, $3) \
                     ON CONFLICT (topic, grp) DO NOTHING",
                )
                .bind(topic)
                .bind(group)
                .bind(db_seq(start)?)
                .execute(&store.pool)
                .await
                .context("saving the new bus group")?;
            }
            lock(&inner.topics)?
                .entry(topic.to_string())
                .or_default()
                .groups
                .entry(group.to_string())
                .or_insert(start);
        }
        Ok(Box::new(InProcessSubscription {
            inner: inner.clone(),
            topic: topic.to_string(),
            group: group.to_string(),
        }))
    }

    async fn dead_letters(&self, topic: &str, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
        let dead = lock(&self.inner.dead)?;
        let all = dead.get(topic).map(Vec::as_slice).unwrap_or_default();
        Ok(all[all.len().saturating_sub(limit)..].to_vec())
    }

    fn describe(&self) -> String {
        match &self.inner.store {
            Some(store) => format!("in-process, kept in {}", store.path.display()),
            None => "in-process (memory only)".to_string(),
        }
    }
}

struct InProcessSubscription {
    inner: Arc<InProcessInner>,
    topic: String,
    group: String,
}

impl InProcessSubscription {
    fn peek(&self) -> anyhow::Result<Option<Delivery>> {
        let topics = lock(&self.inner.topics)?;
        let Some(log) = topics.get(&self.topic) else {
            return Ok(None);
        };
        let cursor = log
            .groups
            .get(&self.group)
            .copied()
            .unwrap_or(log.base)
            .max(log.base);
        let index = usize::try_from(cursor - log.base)?;
        Ok(log.entries.get(index).map(|e| Delivery {
            envelope: e.clone(),
            message_id: cursor.to_string(),
        }))
    }
}

#[async_trait]
impl Subscription for InProcessSubscription {
    async fn next(&mut self) -> anyhow::Result<Delivery> {
        loop {
            // Register interest before looking, so a publish between the look and the wait is
            // not missed.
            let published = self.inner.published.notified();
            if let Some(d) = self.peek()? {
                return Ok(d);
            }
            published.await;
        }
    }

    async fn dead_letter(
        &mut self,
        delivery: &Delivery,
        letter: &DeadLetter,
    ) -> anyhow::Result<()> {
        let seq: u64 = delivery.message_id.parse()?;
        let Some(store) = &self.inner.store else {
            lock(&self.inner.dead)?
                .entry(self.topic.clone())
                .or_default()
                .push(letter.clone());
            return self.inner.advance(&self.topic, &self.group, seq).await;
        };
        // The letter and the cursor past it in one transaction: set aside exactly once.
        let turn = store.write.lock().await;
        let e = &letter.envelope;
        let mut tx = store.pool.begin().await?;
        sqlx::query(
            "INSERT INTO bus_dead_letters (topic, grp, event_id, kind, payload, occurred_at_ms, \
             trace_parent, error, attempts, dead_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&self.topic)
        .bind(&self.group)
        .bind(&e.event_id)
        .bind(&e.kind)
        .bind(&e.payload)
        .bind(e.occurred_at_ms)
        .bind(&e.trace_parent)
        .bind(&letter.error)
        .bind(i64::from(letter.attempts))
        .bind(letter.dead_at_ms)
        .execute(&mut *tx)
        .await
        .context("saving the dead letter")?;
        sqlx::query(UPSERT_CURSOR)
            .bind(&self.topic)
            .bind(&self.group)
            .bind(db_seq(seq + 1)?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await.context("saving the dead letter")?;
        lock(&self.inner.dead)?
            .entry(self.topic.clone())
            .or_default()
            .push(letter.clone());
        self.inner.move_cursor(&self.topic, &self.group, seq)?;
        drop(turn);
        Ok(())
    }

    async fn ack(&mut self, delivery: &Delivery) -> anyhow::Result<()> {
        let seq: u64 = delivery.message_id.parse()?;
        self.inner.advance(&self.topic, &self.group, seq).await
    }
}

// ---------------------------------------------------------------------------------------------
// Redis Streams

/// Production bus on Redis Streams. Stream key `cwsm:{topic}` (prefix configurable), one entry per event with fields
/// `event_id`, `kind`, `payload`, `occurred_at_ms`, `trace_parent`.
#[derive(Clone)]
pub struct RedisBus {
    client: redis::Client,
    publisher: redis::aio::ConnectionManager,
    url: String,
    /// Stream keys are `{prefix}:{topic}`; tests use their own prefix to share a Redis.
    prefix: String,
    /// How long one `XREADGROUP` blocks waiting for new entries.
    block: Duration,
    /// An entry delivered to a consumer and not acknowledged for this long is taken over by
    /// another consumer of the group (`XAUTOCLAIM`): its first consumer is presumed dead.
    claim_idle: Duration,
}

/// Entries kept per stream (approximately): Redis only carries, the outbox is the record.
const STREAM_MAX_LEN: usize = 1_000_000;

impl RedisBus {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_with_prefix(url, "cwsm").await
    }

    pub async fn connect_with_prefix(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client =
            redis::Client::open(url).with_context(|| format!("parsing Redis URL {url}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let publisher = client
            .get_connection_manager_with_config(config)
            .await
            .with_context(|| format!("connecting to Redis at {url}"))?;
        Ok(Self {
            client,
            publisher,
            url: url.to_string(),
            prefix: prefix.to_string(),
            block: Duration::from_secs(2),
            claim_idle: Duration::from_secs(60),
        })
    }

    /// Sets how long an unacknowledged entry waits before another consumer takes it over.
    pub fn with_claim_idle(mut self, idle: Duration) -> Self {
        self.claim_idle = idle;
        self
    }

    /// Where `topic`'s dead letters are kept: a stream beside it.
    pub fn dead_letter_key(&self, topic: &str) -> String {
        format!("{}:dead-letters:{topic}", self.prefix)
    }

    pub fn stream_key(&self, topic: &str) -> String {
        format!("{}:{topic}", self.prefix)
    }
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, event: &Envelope) -> anyhow::Result<()> {
        let mut conn = self.publisher.clone();
        let options = redis::streams::StreamAddOptions::default().trim(
            redis::streams::StreamTrimStrategy::maxlen(
                redis::streams::StreamTrimmingMode::Approx,
                STREAM_MAX_LEN,
            ),
        );
        let _: Option<String> = conn
            .xadd_options(
                self.stream_key(&event.topic),
                "*",
                &[
                    ("event_id", event.event_id.as_bytes()),
                    ("kind", event.kind.as_bytes()),
                    ("payload", event.payload.as_slice()),
                    (
                        "occurred_at_ms",
                        event.occurred_at_ms.to_string().as_bytes(),
                    ),
                    ("trace_parent", event.trace_parent.as_bytes()),
                ],
                &options,
            )
            .await
            .context("XADD")?;
        Ok(())
    }

    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
    ) -> anyhow::Result<Box<dyn Subscription>> {
        // A blocking read needs its own connection whose response timeout outlasts the block
        // (redis 1.x cancels any reply slower than 500 ms by default).
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(self.block + Duration::from_secs(5)));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .with_context(|| format!("connecting to Redis at {}", self.url))?;
        let mut sub = RedisSubscription {
            client: self.client.clone(),
            config,
            conn,
            key: self.stream_key(topic),
            topic: topic.to_string(),
            group: group.to_string(),
            consumer: consumer.to_string(),
            block: self.block,
            buffer: VecDeque::new(),
            reading_backlog: true,
            dead_key: self.dead_letter_key(topic),
            claim_idle: self.claim_idle,
            last_sweep: tokio::time::Instant::now(),
        };
        sub.ensure_group().await?;
        Ok(Box::new(sub))
    }

    async fn dead_letters(&self, topic: &str, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
        let mut conn = self.publisher.clone();
        let reply: redis::streams::StreamRangeReply = conn
            .xrevrange_count(self.dead_letter_key(topic), "+", "-", limit)
            .await
            .context("XREVRANGE dead letters")?;
        let mut letters = Vec::with_capacity(reply.ids.len());
        for entry in reply.ids.into_iter().rev() {
            let text = |field: &str| {
                field_bytes(&entry, field)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            };
            letters.push(DeadLetter {
                envelope: Envelope {
                    event_id: text("event_id"),
                    topic: topic.to_string(),
                    kind: text("kind"),
                    payload: field_bytes(&entry, "payload").unwrap_or_default(),
                    occurred_at_ms: text("occurred_at_ms").parse().unwrap_or_default(),
                    trace_parent: text("trace_parent"),
                },
                error: text("error"),
                attempts: text("attempts").parse().unwrap_or_default(),
                dead_at_ms: text("dead_at_ms").parse().unwrap_or_default(),
            });
        }
        Ok(letters)
    }

    fn describe(&self) -> String {
        format!("redis streams at {}", crate::db::redact(&self.url))
    }
}

struct RedisSubscription {
    client: redis::Client,
    config: redis::AsyncConnectionConfig,
    conn: redis::aio::MultiplexedConnection,
    key: String,
    topic: String,
    group: String,
    consumer: String,
    block: Duration,
    buffer: VecDeque<Delivery>,
    /// True until this consumer's own pending entries (delivered before a crash or on a
    /// connection that broke, never acked) have been read again.
    reading_backlog: bool,
    dead_key: String,
    claim_idle: Duration,
    /// When this consumer last looked for entries abandoned by dead consumers.
    last_sweep: tokio::time::Instant,
}

/// Whether the connection that answered `e` is gone (Redis restarted, say): make a new one.
fn connection_broken(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout()
}

impl RedisSubscription {
    /// A new connection, after the old one broke. Entries Redis delivered to this consumer on
    /// the old one may never have reached it (the reply was lost with the connection), or were
    /// handled but their XACK failed: they are this consumer's pending entries, so read those
    /// first, at once, rather than wait for a sweep to find them idle.
    async fn reconnect(&mut self) -> anyhow::Result<()> {
        self.conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .context("reconnecting to Redis")?;
        self.reading_backlog = true;
        Ok(())
    }

    async fn ensure_group(&mut self) -> anyhow::Result<()> {
        let created: redis::RedisResult<()> = self
            .conn
            .xgroup_create_mkstream(&self.key, &self.group, "0")
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e).context("XGROUP CREATE"),
        }
    }

    fn to_delivery(&self, entry: StreamId) -> anyhow::Result<Delivery> {
        let text = |field: &str| -> anyhow::Result<String> {
            let bytes = field_bytes(&entry, field)?;
            String::from_utf8(bytes).with_context(|| format!("field {field} is not UTF-8"))
        };
        Ok(Delivery {
            envelope: Envelope {
                event_id: text("event_id")?,
                topic: self.topic.clone(),
                kind: text("kind")?,
                payload: field_bytes(&entry, "payload")?,
                occurred_at_ms: text("occurred_at_ms")?.parse().unwrap_or_default(),
                trace_parent: text("trace_parent").unwrap_or_default(),
            },
            message_id: entry.id,
        })
    }

    /// Takes over entries that another consumer of the group received and has not acknowledged
    /// for `claim_idle` (it crashed, or was killed).
    async fn sweep(&mut self) -> anyhow::Result<()> {
        self.last_sweep = tokio::time::Instant::now();
        let idle = u64::try_from(self.claim_idle.as_millis())?;
        let options = redis::streams::StreamAutoClaimOptions::default().count(64);
        let reply: redis::RedisResult<redis::streams::StreamAutoClaimReply> = self
            .conn
            .xautoclaim_options(&self.key, &self.group, &self.consumer, idle, "0-0", options)
            .await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) if e.code() == Some("NOGROUP") => {
                self.ensure_group().await?;
                return Ok(());
            }
            // As for XREADGROUP: a dead connection does not come back by itself, and with the
            // back-off longer than `claim_idle` every read starts with this sweep.
            Err(e) if connection_broken(&e) => {
                self.reconnect().await?;
                return Err(e).context("XAUTOCLAIM");
            }
            Err(e) => return Err(e).context("XAUTOCLAIM"),
        };
        if !reply.claimed.is_empty() {
            crate::metrics::events_redelivered(
                &self.group,
                &self.topic,
                crate::metrics::Redelivery::Claimed,
                reply.claimed.len() as u64,
            );
            tracing::warn!(stream = %self.key, group = %self.group, consumer = %self.consumer, taken = reply.claimed.len(), "took over events a dead consumer left unacknowledged");
        }
        for entry in reply.claimed {
            let id = entry.id.clone();
            match self.to_delivery(entry) {
                Ok(d) => self.buffer.push_back(d),
                Err(e) => {
                    tracing::error!(stream = %self.key, entry = %id, error = %format!("{e:#}"), "claimed a malformed stream entry; leaving it")
                }
            }
        }
        Ok(())
    }

    async fn read(&mut self) -> anyhow::Result<()> {
        if !self.reading_backlog
            && self.last_sweep.elapsed() >= self.claim_idle.min(Duration::from_secs(10))
        {
            self.sweep().await?;
            if !self.buffer.is_empty() {
                return Ok(());
            }
        }
        let start = if self.reading_backlog { "0" } else { ">" };
        let mut options = StreamReadOptions::default()
            .group(&self.group, &self.consumer)
            .count(64);
        if !self.reading_backlog {
            options = options.block(usize::try_from(self.block.as_millis())?);
        }
        let reply: redis::RedisResult<Option<StreamReadReply>> = self
            .conn
            .xread_options(&[&self.key], &[start], &options)
            .await;
        let reply = match reply {
            Ok(r) => r,
            // Redis without persistence forgets streams and groups on restart: make the group
            // again rather than stop consuming.
            Err(e) if e.code() == Some("NOGROUP") => {
                tracing::warn!(stream = %self.key, group = %self.group, "consumer group vanished (Redis restarted?); recreating it");
                self.ensure_group().await?;
                return Ok(());
            }
            Err(e) if connection_broken(&e) => {
                self.reconnect().await?;
                return Err(e).context("XREADGROUP");
            }
            Err(e) => return Err(e).context("XREADGROUP"),
        };
        let entries: Vec<StreamId> = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default();
        if self.reading_backlog {
            if entries.is_empty() {
                self.reading_backlog = false;
            } else {
                // Delivered to this consumer before a restart and never acknowledged.
                crate::metrics::events_redelivered(
                    &self.group,
                    &self.topic,
                    crate::metrics::Redelivery::Backlog,
                    entries.len() as u64,
                );
            }
        }
        let mut malformed = Vec::new();
        for entry in entries {
            let id = entry.id.clone();
            match self.to_delivery(entry) {
                Ok(d) => self.buffer.push_back(d),
                Err(e) => {
                    tracing::error!(stream = %self.key, entry = %id, error = %format!("{e:#}"), "dropping malformed stream entry");
                    malformed.push(id);
                }
            }
        }
        // A malformed entry is nobody's event: ack it so that it does not come back forever.
        if !malformed.is_empty() {
            let _: i64 = self
                .conn
                .xack(&self.key, &self.group, &malformed)
                .await
                .context("XACK")?;
        }
        Ok(())
    }
}

fn field_bytes(entry: &StreamId, field: &str) -> anyhow::Result<Vec<u8>> {
    match entry.map.get(field) {
        Some(redis::Value::BulkString(bytes)) => Ok(bytes.clone()),
        Some(redis::Value::SimpleString(s)) => Ok(s.clone().into_bytes()),
        Some(other) => Err(anyhow!("field {field} has unexpected type {other:?}")),
        None => Err(anyhow!("entry {} has no field {field}", entry.id)),
    }
}

#[async_trait]
impl Subscription for RedisSubscription {
    async fn next(&mut self) -> anyhow::Result<Delivery> {
        loop {
            if let Some(d) = self.buffer.pop_front() {
                return Ok(d);
            }
            self.read().await?;
        }
    }

    async fn ack(&mut self, delivery: &Delivery) -> anyhow::Result<()> {
        let _: i64 = self
            .conn
            .xack(&self.key, &self.group, &[&delivery.message_id])
            .await
            .context("XACK")?;
        Ok(())
    }

    async fn dead_letter(
        &mut self,
        delivery: &Delivery,
        letter: &DeadLetter,
    ) -> anyhow::Result<()> {
        let e = &letter.envelope;
        let _: Option<String> = self
            .conn
            .xadd(
                &self.dead_key,
                "*",
                &[
                    ("event_id", e.event_id.as_bytes()),
                    ("kind", e.kind.as_bytes()),
                    ("payload", e.payload.as_slice()),
                    ("occurred_at_ms", e.occurred_at_ms.to_string().as_bytes()),
                    ("trace_parent", e.trace_parent.as_bytes()),
                    ("group", self.group.as_bytes()),
                    ("error", letter.error.as_bytes()),
                    ("attempts", letter.attempts.to_string().as_bytes()),
                    ("dead_at_ms", letter.dead_at_ms.to_string().as_bytes()),
                ],
            )
            .await
            .context("XADD dead letter")?;
        self.ack(delivery).await
    }
}

/// The topics services publish on, and the event type each carries (the contract is
/// `proto/cwsm/events/v1/events.proto`).
pub mod topics {
    /// `cwsm.events.v1.ProposalAccepted`, from matching to projects.
    pub const PROPOSALS_ACCEPTED: &str = "matching.proposals-accepted";
    pub const PROPOSAL_ACCEPTED_KIND: &str = "cwsm.events.v1.ProposalAccepted";
    /// `cwsm.events.v1.ProjectMilestone`, from projects to reporting and matching.
    pub const PROJECT_MILESTONES: &str = "projects.milestones";
    pub const PROJECT_MILESTONE_KIND: &str = "cwsm.events.v1.ProjectMilestone";
}
