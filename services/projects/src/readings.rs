//! Meters and readings in the store: meters per project, bulk ingestion (idempotent per meter
//! and instant, flagged, duplicates counted, conflicts refused), and use by reading, day and
//! month. Days are China Standard Time calendar days; a reading belongs to the day in which
//! its interval ends (a reading at exactly midnight closes the day before).

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};
use cwsm_platform::auth::Principal;
use cwsm_platform::db::{BeginWrite, Db};
use cwsm_platform::grpc::Page;
use cwsm_platform::idempotency::RequestKey;
use cwsm_platform::{Error, Result, keyed_write, new_id, now_ms, with_db};

use crate::corrections::CorrectionAction;
use crate::domain::Project;
use crate::metering::{
    Classified, Incoming, MAX_FLOW_LITRES_PER_SECOND, MAX_READING_SECONDS, MIN_READING_SECONDS,
    Meter, MeterKind, MeterState, QualityRules, TimestampsMark, ValueKind, flag,
    max_interval_litres, timestamps_warning,
};
use crate::mv::{DayUse, Granularity};
use crate::store::Store;

/// China Standard Time, UTC+8, in ms.
pub const CST_OFFSET_MS: i64 = 8 * 3_600_000;
pub const DAY_MS: i64 = 86_400_000;
/// Readings stamped later than this past the server's clock are refused.
pub const FUTURE_TOLERANCE_MS: i64 = 5 * 60_000;
/// Rows gathered before a write.
const FLUSH_ROWS: usize = 20_000;
/// Rejections reported back in detail.
const MAX_REJECTIONS: usize = 100;
/// Unknown meter ids named back.
const MAX_UNKNOWN_IDS: usize = 10;
/// Meters one stream may name (known or not): what a stream keeps per meter stays bounded.
pub const MAX_METERS_PER_STREAM: usize = 1_000;
/// A meter id's length (ids are UUIDs, 36 bytes).
pub const MAX_METER_ID_BYTES: usize = 64;

/// The CST day a reading at `at_ms` belongs to, as days since 1970-01-01.
pub fn day_index(at_ms: i64) -> i64 {
    (at_ms - 1 + CST_OFFSET_MS).div_euclid(DAY_MS)
}

/// The date of a day index.
pub fn day_date(index: i64) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(719_163 + index as i32).unwrap_or_default()
}

/// Days since 1970-01-01 of a date.
pub fn date_index(d: NaiveDate) -> i64 {
    i64::from(d.num_days_from_ce()) - 719_163
}

/// The instant (ms, UTC) at which CST day `index` starts.
pub fn day_start_ms(index: i64) -> i64 {
    index * DAY_MS - CST_OFFSET_MS
}

#[derive(sqlx::FromRow)]
struct MeterRow {
    id: String,
    project_id: String,
    site: String,
    name: String,
    kind: String,
    interval_seconds: i32,
    serial_number: String,
    register_capacity_litres: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
    version: i64,
}

impl From<MeterRow> for Meter {
    fn from(r: MeterRow) -> Self {
        Meter {
            id: r.id,
            project_id: r.project_id,
            site: r.site,
            name: r.name,
            kind: MeterKind::from_code(&r.kind).unwrap_or(MeterKind::WholeSite),
            interval_seconds: r.interval_seconds,
            serial_number: r.serial_number,
            register_capacity_litres: r.register_capacity_litres,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            version: r.version,
        }
    }
}

/// A refused reading and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub meter_id: String,
    pub at_ms: i64,
    pub value_litres: i64,
    pub reason: String,
}

/// What a stream of readings did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    pub accepted: i64,
    pub duplicates: i64,
    pub rejected: i64,
    /// (proto flag number, count) for flags that occurred.
    pub flagged: Vec<(i32, i64)>,
    pub rejections: Vec<Rejection>,
    /// Messages taken (each whole, in order).
    pub stored_messages: i64,
    pub unknown_meters: i64,
    /// The first unknown meter ids (at most 10).
    pub unknown_meter_ids: Vec<String>,
    /// Per meter, when its readings look stamped by the other convention than taken.
    pub warnings: Vec<String>,
}

struct MeterCtx {
    id: String,
    state: MeterState,
    pending: Vec<Classified>,
    /// The earliest and latest interval-use timestamps sent, as sent, and how they were taken.
    sent: Option<(i64, i64, TimestampsMark)>,
}

/// One client stream of readings: the meters seen, the rows not yet written, the counts.
pub struct IngestSession {
    who: Principal,
    index: HashMap<String, Option<usize>>,
    meters: Vec<MeterCtx>,
    pending_rows: usize,
    flag_counts: [i64; flag::ALL.len()],
    outcome: IngestOutcome,
}

impl IngestSession {
    pub fn new(who: Principal) -> IngestSession {
        IngestSession {
            who,
            index: HashMap::new(),
            meters: Vec::new(),
            pending_rows: 0,
            flag_counts: [0; flag::ALL.len()],
            outcome: IngestOutcome::default(),
        }
    }

    /// Messages taken so far (stored once the stream is finished or flushed).
    pub fn messages_taken(&self) -> i64 {
        self.outcome.stored_messages
    }

    fn reject(&mut self, meter_id: &str, r: &Incoming, reason: String) {
        self.outcome.rejected += 1;
        if self.outcome.rejections.len() < MAX_REJECTIONS {
            self.outcome.rejections.push(Rejection {
                meter_id: meter_id.to_string(),
                at_ms: r.at_ms,
                value_litres: r.value_litres,
                reason,
            });
        }
    }
}

/// A point of ListReadings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Point {
    pub start_ms: i64,
    pub end_ms: i64,
    pub use_litres: i64,
    pub register_litres: i64,
    pub reading_count: i64,
    pub estimated_count: i64,
    pub flags: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    Raw,
    Day,
    Month,
}

type DayRow = (i64, i64, i64, i64, i64, i64);

impl Store {
    /// Registers a meter; a retry with the same request id returns the first.
    pub async fn create_meter(&self, key: &RequestKey, m: &Meter) -> Result<Meter> {
        let id: String = keyed_write!(&self.db, key, tx => {
                let taken: Option<String> = sqlx::query_scalar("SELECT id FROM meters WHERE project_id = $1 AND name = $2")
                    .bind(&m.project_id).bind(&m.name).fetch_optional(&mut *tx).await?;
                if let Some(other) = taken {
                    return Err(Error::AlreadyExists(format!("project {} has a meter named {:?} already ({other})", m.project_id, m.name)));
                }
                let id = new_id();
                let now = now_ms();
                sqlx::query("INSERT INTO meters (id, project_id, site, name, kind, interval_seconds, serial_number, created_at_ms, updated_at_ms, register_capacity_litres) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)")
                    .bind(&id).bind(&m.project_id).bind(&m.site).bind(&m.name).bind(m.kind.code())
                    .bind(m.interval_seconds).bind(&m.serial_number).bind(now).bind(m.register_capacity_litres).execute(&mut *tx).await?;
                id
        });
        self.meter(&id).await
    }

    pub async fn meter(&self, id: &str) -> Result<Meter> {
        let row: Option<MeterRow> = with_db!(&self.db, pool => sqlx::query_as("SELECT * FROM meters WHERE id = $1").bind(id).fetch_optional(pool).await?);
        row.map(Meter::from)
            .ok_or_else(|| Error::not_found("meter", id))
    }

    pub async fn list_meters(
        &self,
        project_id: &str,
        site: &str,
        kind: &str,
        page: &Page,
    ) -> Result<(Vec<Meter>, String)> {
        let mut rows: Vec<Meter> = with_db!(&self.db, pool => sqlx::query_as::<_, MeterRow>(
            "SELECT * FROM meters WHERE project_id = $1 AND ($2 = '' OR site = $2) AND ($3 = '' OR kind = $3) AND ($4 = '' OR id > $4) ORDER BY id LIMIT $5")
            .bind(project_id).bind(site).bind(kind).bind(page.after.clone().unwrap_or_default()).bind(page.fetch_limit())
            .fetch_all(pool).await?)
        .into_iter().map(Meter::from).collect();
        let next = page.finish(&mut rows, |m| m.id.clone());
        Ok((rows, next))
    }

    /// The meter's context in `s`, loading it (and checking the caller may write its readings)
    /// on first sight; `None` for an unknown meter.
    async fn meter_ctx(&self, s: &mut IngestSession, meter_id: &str) -> Result<Option<usize>> {
        if let Some(found) = s.index.get(meter_id) {
            return Ok(*found);
        }
        if s.index.len() >= MAX_METERS_PER_STREAM {
            return Err(Error::invalid(
                "meter_id",
                format!(
                    "a stream names at most {MAX_METERS_PER_STREAM} meters; send the others in another stream"
                ),
            ));
        }
        let meter = match self.meter(meter_id).await {
            Ok(m) => m,
            Err(Error::NotFound { .. }) => {
                note_unknown(s, meter_id);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let project: Project = self.project(&meter.project_id).await?;
        // A meter of a project the caller may not read is answered as unknown (its existence
        // is not revealed); the company measures, the water user and the verifier read.
        if !project.readable_by(&s.who) {
            note_unknown(s, meter_id);
            return Ok(None);
        }
        if !project.company(&s.who) {
            return Err(Error::denied(format!(
                "only the company of project {} or an administrator may send readings of meter {meter_id}",
                project.id
            )));
        }
        let stored: Vec<(i64, i64, i64, i32)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT read_at_ms, value_litres, use_litres, value_kind FROM readings WHERE meter_id = $1 ORDER BY read_at_ms DESC LIMIT 48")
            .bind(meter_id).fetch_all(pool).await?);
        s.meters.push(MeterCtx {
            id: meter.id.clone(),
            state: MeterState::new(meter.interval_seconds, &stored)
                .with_capacity(meter.register_capacity_litres),
            pending: Vec::new(),
            sent: None,
        });
        let i = s.meters.len() - 1;
        s.index.insert(meter_id.to_string(), Some(i));
        Ok(Some(i))
    }

    /// Takes one message of a stream: a batch of one meter's readings, whole. Rows are written
    /// only between messages, so each message is stored entirely or not at all. `meter_id` is
    /// at most [`MAX_METER_ID_BYTES`] (the caller checks, naming the message).
    pub async fn ingest_batch(
        &self,
        s: &mut IngestSession,
        meter_id: &str,
        kind: ValueKind,
        mark: TimestampsMark,
        readings: &[Incoming],
    ) -> Result<()> {
        let Some(m) = self.meter_ctx(s, meter_id).await? else {
            // Counted, not listed: the id is named once in `unknown_meter_ids`.
            s.outcome.rejected += readings.len() as i64;
            s.outcome.stored_messages += 1;
            return Ok(());
        };
        // Stored by the end of each interval: readings stamped at its start move one
        // interval on (and the span sent is kept, to warn of a file that looks otherwise).
        let shifted: Vec<Incoming>;
        let readings = if kind == ValueKind::IntervalUse {
            let ctx = &mut s.meters[m];
            if let (Some(lo), Some(hi)) = (
                readings.iter().map(|r| r.at_ms).min(),
                readings.iter().map(|r| r.at_ms).max(),
            ) {
                ctx.sent = Some(match ctx.sent {
                    Some((a, b, _)) => (a.min(lo), b.max(hi), mark),
                    None => (lo, hi, mark),
                });
            }
            let interval = ctx.state.interval_ms();
            shifted = readings
                .iter()
                .map(|r| {
                    let at_ms = mark.interval_end(r.at_ms, interval).ok_or_else(|| {
                        Error::invalid("read_time", "beyond the times a reading may have")
                    })?;
                    Ok(Incoming { at_ms, ..*r })
                })
                .collect::<Result<_>>()?;
            &shifted[..]
        } else {
            readings
        };
        let latest0 = s.meters[m].state.latest_ms();
        // Readings not after the newest one seen may be stored already: look them up (after
        // writing what is pending, so the lookup sees it).
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for r in readings {
            if latest0.is_some_and(|l| r.at_ms <= l) {
                lo = lo.min(r.at_ms);
                hi = hi.max(r.at_ms);
            }
        }
        let mut known: HashMap<i64, i64> = HashMap::new();
        if lo <= hi {
            self.flush(s).await?;
            let rows: Vec<(i64, i64)> = with_db!(&self.db, pool => sqlx::query_as(
                "SELECT read_at_ms, value_litres FROM readings WHERE meter_id = $1 AND read_at_ms >= $2 AND read_at_ms <= $3")
                .bind(meter_id).bind(lo).bind(hi).fetch_all(pool).await?);
            known.extend(rows);
        }
        let limit = now_ms() + FUTURE_TOLERANCE_MS;
        for r in readings {
            if r.at_ms > limit {
                s.reject(meter_id, r, "time in the future".to_string());
                continue;
            }
            if let Some(why) = s.meters[m].state.impossible(kind, *r) {
                s.reject(meter_id, r, why);
                continue;
            }
            let ctx = &mut s.meters[m];
            let maybe_seen = ctx.state.latest_ms().is_some_and(|l| r.at_ms <= l);
            if maybe_seen && let Some(stored) = known.get(&r.at_ms).copied() {
                if stored == r.value_litres {
                    s.outcome.duplicates += 1;
                } else {
                    s.reject(
                        meter_id,
                        r,
                        format!(
                            "conflict: {stored} L stored for this time, {} L sent; not overwritten",
                            r.value_litres
                        ),
                    );
                }
                continue;
            }
            let c = ctx.state.classify(kind, *r);
            // Later readings of this stream may repeat this one.
            if maybe_seen || readings.len() > 1 {
                known.insert(c.at_ms, c.value_litres);
            }
            ctx.pending.push(c);
            s.pending_rows += 1;
            for (i, (_, bit)) in flag::ALL.iter().enumerate() {
                if c.flags & bit != 0 {
                    s.flag_counts[i] += 1;
                }
            }
        }
        s.outcome.stored_messages += 1;
        if s.pending_rows >= FLUSH_ROWS {
            self.flush(s).await?;
        }
        Ok(())
    }

    /// Writes what is pending and returns the stream's outcome.
    pub async fn finish_ingest(&self, mut s: IngestSession) -> Result<IngestOutcome> {
        self.flush(&mut s).await?;
        s.outcome.warnings = s
            .meters
            .iter()
            .filter_map(|ctx| {
                let (first, last, mark) = ctx.sent?;
                timestamps_warning(&ctx.id, first, last, ctx.state.interval_ms(), mark)
            })
            .collect();
        s.outcome.flagged = flag::ALL
            .iter()
            .zip(s.flag_counts)
            .filter(|(_, n)| *n > 0)
            .map(|((number, _), n)| (*number, n))
            .collect();
        Ok(s.outcome)
    }

    /// Writes the pending rows in one transaction: on PostgreSQL one INSERT … SELECT FROM
    /// UNNEST(arrays) per meter and chunk, on SQLite multi-row INSERTs; existing keys are left
    /// alone (ON CONFLICT DO NOTHING) and counted as duplicates.
    async fn flush(&self, s: &mut IngestSession) -> Result<()> {
        if s.pending_rows == 0 {
            return Ok(());
        }
        let mut written: u64 = 0;
        let total = s.pending_rows as u64;
        match &self.db {
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                for ctx in &mut s.meters {
                    for chunk in ctx.pending.chunks(50_000) {
                        let at: Vec<i64> = chunk.iter().map(|c| c.at_ms).collect();
                        let value: Vec<i64> = chunk.iter().map(|c| c.value_litres).collect();
                        let used: Vec<i64> = chunk.iter().map(|c| c.use_litres).collect();
                        let kind: Vec<i32> = chunk.iter().map(|c| c.kind as i32).collect();
                        let flags: Vec<i32> = chunk.iter().map(|c| c.flags).collect();
                        written += sqlx::query(
                            "INSERT INTO readings (meter_id, read_at_ms, value_litres, use_litres, value_kind, flags) \
                             SELECT $1, * FROM UNNEST($2::int8[], $3::int8[], $4::int8[], $5::int4[], $6::int4[]) \
                             ON CONFLICT (meter_id, read_at_ms) DO NOTHING")
                            .bind(&ctx.id).bind(at).bind(value).bind(used).bind(kind).bind(flags)
                            .execute(&mut *tx).await?.rows_affected();
                    }
                    ctx.pending.clear();
                }
                tx.commit().await?;
            }
            Db::Sqlite(pool) => {
                let mut tx = pool.begin_write().await?;
                for ctx in &mut s.meters {
                    // 6 parameters a row, under SQLite's 32,766.
                    for chunk in ctx.pending.chunks(5_000) {
                        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                            "INSERT INTO readings (meter_id, read_at_ms, value_litres, use_litres, value_kind, flags) ",
                        );
                        q.push_values(chunk, |mut b, c| {
                            b.push_bind(ctx.id.clone())
                                .push_bind(c.at_ms)
                                .push_bind(c.value_litres)
                                .push_bind(c.use_litres)
                                .push_bind(c.kind as i32)
                                .push_bind(c.flags);
                        });
                        q.push(" ON CONFLICT (meter_id, read_at_ms) DO NOTHING");
                        written += q.build().execute(&mut *tx).await?.rows_affected();
                    }
                    ctx.pending.clear();
                }
                tx.commit().await?;
            }
        }
        s.pending_rows = 0;
        s.outcome.accepted += written as i64;
        // Another writer stored some of these first: they are duplicates now.
        s.outcome.duplicates += total.saturating_sub(written) as i64;
        Ok(())
    }

    /// A meter's use, raw or per day or month, in `[from, to)` (within 1970..2100), oldest
    /// first.
    pub async fn list_readings(
        &self,
        meter: &Meter,
        from_ms: i64,
        to_ms: i64,
        aggregation: Aggregation,
        page: &Page,
    ) -> Result<(Vec<Point>, String)> {
        let bad = || Error::invalid("page_token", "not a token this server issued");
        let (from_ms, to_ms) = within_reading_range(from_ms, to_ms);
        match aggregation {
            Aggregation::Raw => {
                let after: i64 = match &page.after {
                    Some(a) => a.parse().map_err(|_| bad())?,
                    None => i64::MIN,
                };
                let rows: Vec<(i64, i64, i64, i32, i32)> = with_db!(&self.db, pool => sqlx::query_as(
                    "SELECT read_at_ms, value_litres, use_litres, value_kind, flags FROM readings \
                     WHERE meter_id = $1 AND read_at_ms >= $2 AND read_at_ms < $3 AND read_at_ms > $4 ORDER BY read_at_ms LIMIT $5")
                    .bind(&meter.id).bind(from_ms).bind(to_ms).bind(after).bind(page.fetch_limit())
                    .fetch_all(pool).await?);
                let interval = i64::from(meter.interval_seconds) * 1000;
                let mut points: Vec<Point> = rows
                    .into_iter()
                    .map(|(at, value, used, kind, flags)| Point {
                        start_ms: at.saturating_sub(interval),
                        end_ms: at,
                        use_litres: used,
                        register_litres: if kind == ValueKind::Register as i32 {
                            value
                        } else {
                            0
                        },
                        reading_count: 1,
                        estimated_count: i64::from(flags & flag::ESTIMATED),
                        flags,
                    })
                    .collect();
                let next = page.finish(&mut points, |p| p.end_ms.to_string());
                Ok((points, next))
            }
            Aggregation::Day => {
                let after_day: Option<i64> = match &page.after {
                    Some(a) => Some(a.parse().map_err(|_| bad())?),
                    None => None,
                };
                // Day d holds readings in (start of d, start of d+1].
                let lower = after_day.map_or(from_ms, |d| from_ms.max(day_start_ms(d + 1) + 1));
                let rows = self
                    .meter_days(
                        &meter.id,
                        meter.interval_seconds,
                        lower,
                        to_ms,
                        page.fetch_limit(),
                    )
                    .await?;
                let mut points: Vec<(i64, Point)> =
                    rows.into_iter().map(|r| (r.0, day_point(&r))).collect();
                let next = page.finish(&mut points, |(d, _)| d.to_string());
                Ok((points.into_iter().map(|(_, p)| p).collect(), next))
            }
            Aggregation::Month => {
                let rows = self
                    .meter_days(&meter.id, meter.interval_seconds, from_ms, to_ms, i64::MAX)
                    .await?;
                let mut months: Vec<(String, Point)> = Vec::new();
                for r in &rows {
                    let date = day_date(r.0);
                    let key = format!("{:04}{:02}", date.year(), date.month());
                    let p = day_point(r);
                    match months.last_mut() {
                        Some((k, m)) if *k == key => {
                            // Bounded days cannot overflow a month; saturating all the same.
                            m.use_litres = m.use_litres.saturating_add(p.use_litres);
                            m.register_litres = m.register_litres.max(p.register_litres);
                            m.reading_count = m.reading_count.saturating_add(p.reading_count);
                            m.estimated_count = m.estimated_count.saturating_add(p.estimated_count);
                            m.flags |= p.flags;
                        }
                        _ => {
                            let first = date.with_day(1).unwrap_or(date);
                            let next = first
                                .checked_add_months(chrono::Months::new(1))
                                .unwrap_or(first);
                            months.push((
                                key,
                                Point {
                                    start_ms: day_start_ms(date_index(first)),
                                    end_ms: day_start_ms(date_index(next)),
                                    ..p
                                },
                            ));
                        }
                    }
                }
                if let Some(after) = &page.after {
                    months.retain(|(k, _)| k > after);
                }
                months.truncate(usize::try_from(page.fetch_limit()).unwrap_or(usize::MAX));
                let next = page.finish(&mut months, |(k, _)| k.clone());
                Ok((months.into_iter().map(|(_, p)| p).collect(), next))
            }
        }
    }

    /// Per CST day: (day, use, max register, readings, estimated, flags).
    ///
    /// Only readings in 1970..2100 with a possible use are summed (rows stored before readings
    /// were checked may hold anything): each term is then at most 1,500 L/s × 31 days and a
    /// day has at most 86,400,000 distinct instants, so no sum can overflow and no stored row
    /// can make a read fail.
    async fn meter_days(
        &self,
        meter_id: &str,
        interval_seconds: i32,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<DayRow>> {
        let (from_ms, to_ms) = within_reading_range(from_ms, to_ms);
        let most = max_interval_litres(interval_seconds);
        let sql = format!(
            "SELECT (read_at_ms - 1 + 28800000) / 86400000 AS d, CAST(SUM(use_litres) AS BIGINT), \
             CAST(MAX(CASE WHEN value_kind = 1 THEN value_litres ELSE 0 END) AS BIGINT), CAST(COUNT(*) AS BIGINT), \
             CAST(SUM(flags & 1) AS BIGINT), CAST({} AS BIGINT) \
             FROM readings WHERE meter_id = $1 AND read_at_ms >= $2 AND read_at_ms < $3 \
             AND use_litres BETWEEN $5 AND $6 GROUP BY d ORDER BY d LIMIT $4",
            flags_of_day("flags", !0)
        );
        Ok(
            with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(meter_id).bind(from_ms).bind(to_ms).bind(limit).bind(-most).bind(most).fetch_all(pool).await?),
        )
    }

    /// A project's metered use per CST day, for M&V: its whole-site meters (option C), or its
    /// sub-meters when it has no whole-site meter; and the granularity their intervals allow.
    pub async fn project_days(
        &self,
        project_id: &str,
        rules: QualityRules,
    ) -> Result<(Vec<DayUse>, Granularity)> {
        let kinds: Vec<(String, i32)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT kind, interval_seconds FROM meters WHERE project_id = $1")
            .bind(project_id).fetch_all(pool).await?);
        let kind = if kinds.iter().any(|(k, _)| k == MeterKind::WholeSite.code()) {
            MeterKind::WholeSite
        } else {
            MeterKind::SubMeter
        };
        let granularity = if kinds
            .iter()
            .filter(|(k, _)| k == kind.code())
            .all(|(_, i)| *i <= 86_400)
        {
            Granularity::Daily
        } else {
            Granularity::Billing
        };
        // The flags the day holds that the M&V plan's quality rules leave out (or confirm).
        let excluded = flags_of_day("r.flags", rules.leaving_out());
        let sql = format!(
            "SELECT (r.read_at_ms - 1 + 28800000) / 86400000 AS d, CAST(SUM(r.use_litres) AS BIGINT), \
             CAST(COUNT(*) AS BIGINT), CAST(SUM(r.flags & 1) AS BIGINT), CAST({excluded} AS BIGINT) \
             FROM readings r JOIN meters m ON m.id = r.meter_id WHERE m.project_id = $1 AND m.kind = $2 \
             AND m.interval_seconds <= 86400 AND r.read_at_ms >= $3 AND r.read_at_ms < $4 \
             AND r.use_litres BETWEEN -$5 * CAST(m.interval_seconds AS BIGINT) AND $5 * CAST(m.interval_seconds AS BIGINT) \
             GROUP BY d ORDER BY d"
        );
        let rows: Vec<(i64, i64, i64, i64, i64)> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(project_id).bind(kind.code()).bind(MIN_READING_SECONDS * 1000).bind(MAX_READING_SECONDS * 1000)
            .bind(MAX_FLOW_LITRES_PER_SECOND).fetch_all(pool).await?);
        let mut days: Vec<DayUse> = rows
            .into_iter()
            .map(|(d, litres, readings, estimated, excluded)| DayUse {
                day: day_date(d),
                litres,
                readings,
                estimated,
                excluded: crate::corrections::day_exclusion(
                    i32::try_from(excluded).unwrap_or(rules.leaving_out()),
                    rules,
                ),
                billed_from: None,
            })
            .collect();
        self.apply_corrections(project_id, kind.code(), rules, &mut days)
            .await?;
        if granularity == Granularity::Billing {
            days = self
                .with_bills(project_id, kind.code(), rules, days)
                .await?;
        }
        Ok((days, granularity))
    }

    /// `days` (of the meters read daily or finer) with the bills of the project's meters of
    /// `kind` read less often spread over the days they cover ([`spread_bills`], accepted
    /// corrections applied to each bill first), every day marked with the billing period it
    /// belongs to: the latest first day of a bill on or before it.
    async fn with_bills(
        &self,
        project_id: &str,
        kind: &str,
        rules: QualityRules,
        days: Vec<DayUse>,
    ) -> Result<Vec<DayUse>> {
        let rows: Vec<(String, i32, i64, i64, i32)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT r.meter_id, m.interval_seconds, r.read_at_ms, r.use_litres, r.flags FROM readings r JOIN meters m ON m.id = r.meter_id \
             WHERE m.project_id = $1 AND m.kind = $2 AND m.interval_seconds > 86400 \
             AND r.use_litres BETWEEN -$3 * CAST(m.interval_seconds AS BIGINT) AND $3 * CAST(m.interval_seconds AS BIGINT) \
             ORDER BY r.meter_id, r.read_at_ms")
            .bind(project_id).bind(kind).bind(MAX_FLOW_LITRES_PER_SECOND).fetch_all(pool).await?);
        let corrections = self.accepted_corrections(project_id, kind).await?;
        let mut by_day: std::collections::BTreeMap<i64, DayUse> =
            days.into_iter().map(|d| (date_index(d.day), d)).collect();
        let mut firsts: Vec<i64> = Vec::new();
        for meter in rows.chunk_by(|a, b| a.0 == b.0) {
            let interval_ms = i64::from(meter[0].1) * 1000;
            let bills: Vec<BillReading> = meter
                .iter()
                .map(|(id, _, at, use_litres, flags)| {
                    let c = corrections
                        .iter()
                        .find(|c| &c.meter_id == id && c.read_at_ms == *at);
                    let (use_litres, day_bits) = match c.map(|c| c.action) {
                        Some(CorrectionAction::Replace) => {
                            (c.map(|c| c.corrected_use_litres).unwrap_or(0), 0)
                        }
                        Some(CorrectionAction::Exclude) => (0, flag::CORRECTED_OUT),
                        Some(CorrectionAction::Keep) => (*use_litres, 0),
                        None => (
                            *use_litres,
                            crate::corrections::day_exclusion(*flags, rules),
                        ),
                    };
                    BillReading {
                        at_ms: *at,
                        use_litres,
                        excluded: day_bits,
                        estimated: flags & flag::ESTIMATED != 0,
                        opened: flags & flag::REGISTER_OPENED != 0,
                    }
                })
                .collect();
            for d in spread_bills(&bills, interval_ms) {
                firsts.push(d.first_day);
                let day = by_day.entry(d.day).or_insert(DayUse {
                    day: day_date(d.day),
                    litres: 0,
                    readings: 0,
                    estimated: 0,
                    excluded: 0,
                    billed_from: None,
                });
                day.litres = day.litres.saturating_add(d.litres);
                day.readings += 1;
                day.estimated += i64::from(d.estimated);
                day.excluded |= d.excluded;
            }
        }
        firsts.sort_unstable();
        firsts.dedup();
        Ok(by_day
            .into_iter()
            .map(|(index, mut d)| {
                let at = firsts.partition_point(|f| *f <= index);
                d.billed_from = Some(day_date(if at == 0 { index } else { firsts[at - 1] }));
                d
            })
            .collect())
    }
}

/// One reading of a meter read every few weeks, as the spread needs it (corrections applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BillReading {
    pub at_ms: i64,
    pub use_litres: i64,
    /// The day-exclusion bits it gives ([`crate::corrections::day_exclusion`]).
    pub excluded: i32,
    pub estimated: bool,
    /// The meter's first register reading: it covers no known days.
    pub opened: bool,
}

/// A day's share of a bill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BillDay {
    pub day: i64,
    pub litres: i64,
    pub excluded: i32,
    pub estimated: bool,
    /// The bill's first day (day index).
    pub first_day: i64,
}

/// Spreads a meter's bills (in time order) over the days they cover: a reading's use covers
/// the days after the previous reading's instant up to its own (a day holds the instants
/// (00:00, 24:00] CST, as [`day_index`] counts); the first reading one nominal interval
/// back, or nothing when it opens a register. Each day gets an equal share, the remainder
/// one litre each to the first days, so that the days add up to the bill exactly.
pub fn spread_bills(bills: &[BillReading], interval_ms: i64) -> Vec<BillDay> {
    let mut out = Vec::new();
    let mut previous: Option<i64> = None;
    for b in bills {
        let from = match previous {
            Some(p) => p,
            None if b.opened => {
                previous = Some(b.at_ms);
                continue;
            }
            None => b.at_ms.saturating_sub(interval_ms),
        };
        previous = Some(b.at_ms);
        let (first, last) = (day_index(from.saturating_add(1)), day_index(b.at_ms));
        let n = last - first + 1;
        if n <= 0 {
            continue;
        }
        let (share, rest) = (b.use_litres.div_euclid(n), b.use_litres.rem_euclid(n));
        for (k, day) in (first..=last).enumerate() {
            out.push(BillDay {
                day,
                litres: share + i64::from((k as i64) < rest),
                excluded: b.excluded,
                estimated: b.estimated,
                first_day: first,
            });
        }
    }
    out
}

/// The flags of `mask` that any reading of a group has, in SQL: the sum of each bit's MAX is
/// their bitwise OR (the engines share no OR aggregate).
fn flags_of_day(column: &str, mask: i32) -> String {
    flag::ALL
        .iter()
        .filter(|(_, bit)| bit & mask != 0)
        .map(|(_, bit)| format!("MAX({column} & {bit})"))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// `[from, to)` cut to the instants readings may have (1970..2100).
fn within_reading_range(from_ms: i64, to_ms: i64) -> (i64, i64) {
    (
        from_ms.max(MIN_READING_SECONDS * 1000),
        to_ms.min(MAX_READING_SECONDS * 1000),
    )
}

fn day_point(r: &DayRow) -> Point {
    Point {
        start_ms: day_start_ms(r.0),
        end_ms: day_start_ms(r.0 + 1),
        use_litres: r.1,
        register_litres: r.2,
        reading_count: r.3,
        estimated_count: r.4,
        flags: i32::try_from(r.5).unwrap_or(0),
    }
}

/// Counts `meter_id` as unknown in `s` (its readings rejected, the first ids listed).
fn note_unknown(s: &mut IngestSession, meter_id: &str) {
    s.index.insert(meter_id.to_string(), None);
    s.outcome.unknown_meters += 1;
    if s.outcome.unknown_meter_ids.len() < MAX_UNKNOWN_IDS {
        s.outcome.unknown_meter_ids.push(meter_id.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_china_standard_time_and_end_inclusive() {
        // 2025-01-01T00:00+08:00 = 2024-12-31T16:00Z closes 2024-12-31.
        let midnight = chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00+08:00")
            .expect("time")
            .timestamp_millis();
        assert_eq!(day_date(day_index(midnight)).to_string(), "2024-12-31");
        assert_eq!(day_date(day_index(midnight + 1)).to_string(), "2025-01-01");
        let d = day_index(midnight + 1);
        assert_eq!(day_start_ms(d), midnight);
        assert_eq!(date_index(day_date(d)), d);
    }

    /// Issue 12's finding: a monthly bill was modelled as one day's use (intercept 53 million
    /// L/day). It covers the days since the previous reading, each an equal share.
    #[test]
    fn a_bill_is_spread_over_the_days_it_covers() {
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .expect("time")
                .timestamp_millis()
        };
        let bill = |t: &str, litres: i64| BillReading {
            at_ms: at(t),
            use_litres: litres,
            excluded: 0,
            estimated: false,
            opened: false,
        };
        // Read 00:00 on 01-15, 02-15 and 03-15: the first covers one nominal 31-day interval
        // back (12-15 … 01-14), the second 01-15 … 02-14 (31 days), the third 02-15 … 03-14
        // (29 days in 2024).
        let bills = [
            bill("2024-01-15T00:00:00+08:00", 31_000),
            bill("2024-02-15T00:00:00+08:00", 31_010),
            bill("2024-03-15T00:00:00+08:00", 29_000),
        ];
        let days = spread_bills(&bills, 31 * DAY_MS);
        assert_eq!(days.len(), 31 + 31 + 29);
        let second: Vec<&BillDay> = days
            .iter()
            .filter(|d| d.first_day == days[31].day)
            .collect();
        assert_eq!(second.len(), 31);
        assert_eq!(day_date(second[0].day).to_string(), "2024-01-15");
        assert_eq!(day_date(second[30].day).to_string(), "2024-02-14");
        // 31,010 / 31 = 1,000 rest 10: the first ten days 1,001, the sum exact.
        assert_eq!(
            (second[0].litres, second[9].litres, second[10].litres),
            (1_001, 1_001, 1_000)
        );
        assert_eq!(second.iter().map(|d| d.litres).sum::<i64>(), 31_010);
        assert_eq!(
            days.iter().filter(|d| d.litres == 1_000).count(),
            31 + 21 + 29
        );
        // A register's first reading opens it: it covers nothing.
        let opened = BillReading {
            opened: true,
            ..bills[0]
        };
        assert_eq!(spread_bills(&[opened, bills[1]], 31 * DAY_MS).len(), 31);
    }
}
