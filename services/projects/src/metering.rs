//! Meters and readings in plain Rust: what a meter is, and the quality flags a reading gets.
//! Suspect readings are stored with their flags, never dropped or silently "repaired".

use std::collections::VecDeque;

use cwsm_platform::quantity::Instant;
use cwsm_platform::{Error, Result};

/// What a meter measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeterKind {
    /// The whole site's supply (IPMVP option C).
    WholeSite,
    /// A sub-meter on the retrofitted system (options A and B).
    SubMeter,
}

impl MeterKind {
    pub fn code(self) -> &'static str {
        match self {
            MeterKind::WholeSite => "whole_site",
            MeterKind::SubMeter => "sub_meter",
        }
    }

    pub fn from_code(s: &str) -> Option<MeterKind> {
        match s {
            "whole_site" => Some(MeterKind::WholeSite),
            "sub_meter" => Some(MeterKind::SubMeter),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meter {
    pub id: String,
    pub project_id: String,
    pub site: String,
    pub name: String,
    pub kind: MeterKind,
    pub interval_seconds: i32,
    pub serial_number: String,
    /// The value, litres, at which the meter's register starts again at 0 (a 5-digit m³
    /// register: 100,000 m³ = 100,000,000 L); 0 when not known. A register that goes back
    /// is a rollover when this fits, else an impossible reading.
    pub register_capacity_litres: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub version: i64,
}

impl Meter {
    /// Checks a meter as asked for (before it has an id).
    pub fn validate(&self, sites: &[String]) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(Error::invalid("meter.name", "required"));
        }
        if self.name.len() > 200 {
            return Err(Error::invalid("meter.name", "at most 200 characters"));
        }
        if !(60..=31 * 86_400).contains(&self.interval_seconds) {
            return Err(Error::invalid(
                "meter.interval_seconds",
                "between 60 (one minute) and 2678400 (31 days)",
            ));
        }
        if self.register_capacity_litres != 0
            && !(1_000..=MAX_REGISTER_LITRES).contains(&self.register_capacity_litres)
        {
            return Err(Error::invalid(
                "meter.register_capacity_litres",
                format!("0 (not known) or between 1000 (1 m³) and {MAX_REGISTER_LITRES}"),
            ));
        }
        if !sites.is_empty() && !self.site.is_empty() && !sites.contains(&self.site) {
            return Err(Error::invalid(
                "meter.site",
                format!("not a site of the project ({})", sites.join(", ")),
            ));
        }
        Ok(())
    }
}

/// What a reading's value means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// The meter's cumulative register: use is the difference to the previous reading.
    Register = 1,
    /// Use during the interval ending at the reading.
    IntervalUse = 2,
}

impl ValueKind {
    pub fn from_i32(n: i32) -> Option<ValueKind> {
        match n {
            1 => Some(ValueKind::Register),
            2 => Some(ValueKind::IntervalUse),
            _ => None,
        }
    }
}

/// Flag bits of a stored reading: bit n−1 is `cwsm.projects.v1.ReadingFlag` n.
pub mod flag {
    pub const ESTIMATED: i32 = 1;
    pub const GAP_BEFORE: i32 = 1 << 1;
    pub const REGISTER_DECREASED: i32 = 1 << 2;
    pub const SPIKE: i32 = 1 << 3;
    pub const OUT_OF_ORDER: i32 = 1 << 4;
    pub const NEGATIVE_USE: i32 = 1 << 5;
    /// The meter's first register reading: it opens the register, so the use up to it is
    /// unknown (not 0).
    pub const REGISTER_OPENED: i32 = 1 << 6;
    /// The register went back and started again at 0 (its capacity known): the use is the
    /// rest of the register plus the new value. Included by default.
    pub const REGISTER_ROLLED_OVER: i32 = 1 << 7;
    /// The flags the default quality rules exclude ([`super::QualityRules`]): a reading that
    /// is a spike, shows the register going back or opening (its use unknown), or has negative
    /// use says nothing true about the water used, so it is left out of the baseline model and
    /// of the savings — its day counts as a day without data (data sufficiency, a period's
    /// days), and the report says so. Estimated readings, gaps and late arrivals stay in (they
    /// are flagged, not wrong).
    pub const EXCLUDED: i32 = REGISTER_DECREASED | SPIKE | NEGATIVE_USE | REGISTER_OPENED;
    /// Not a stored flag: a day left out because the verifier accepted a correction that
    /// excludes one of its readings.
    pub const CORRECTED_OUT: i32 = 1 << 20;
    /// Not a stored flag: a day left out because one of its readings carries a flag the M&V
    /// plan has confirmed (its rule `confirm`) and the verifier has not accepted it as read.
    pub const UNCONFIRMED: i32 = 1 << 21;

    /// How a report names a flag.
    pub fn name(bit: i32) -> &'static str {
        match bit {
            CORRECTED_OUT => "excluded by a correction",
            UNCONFIRMED => "awaiting the verifier's confirmation",
            ESTIMATED => "estimated",
            GAP_BEFORE => "gap before",
            REGISTER_DECREASED => "register decreased",
            SPIKE => "spike",
            OUT_OF_ORDER => "out of order",
            NEGATIVE_USE => "negative use",
            REGISTER_OPENED => "register opened",
            REGISTER_ROLLED_OVER => "register rolled over",
            _ => "unknown flag",
        }
    }

    /// (proto number, bit) of every flag.
    pub const ALL: [(i32, i32); 8] = [
        (1, ESTIMATED),
        (2, GAP_BEFORE),
        (3, REGISTER_DECREASED),
        (4, SPIKE),
        (5, OUT_OF_ORDER),
        (6, NEGATIVE_USE),
        (7, REGISTER_OPENED),
        (8, REGISTER_ROLLED_OVER),
    ];
}

/// What the M&V does with readings that carry a flag (the M&V plan's rule for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QualityAction {
    /// Left out of the baseline model and the savings; the day counts as missing.
    Exclude,
    /// Used as read.
    Include,
    /// Left out until the verifier accepts the reading as read (a KEEP correction).
    Confirm,
}

impl QualityAction {
    pub fn code(self) -> &'static str {
        match self {
            QualityAction::Exclude => "exclude",
            QualityAction::Include => "include",
            QualityAction::Confirm => "confirm",
        }
    }
}

/// The M&V plan's quality rules: a flag bit set in `exclude` or `confirm` has that action,
/// any other is included. Agreed with the plan and frozen with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QualityRules {
    pub exclude: i32,
    pub confirm: i32,
}

impl Default for QualityRules {
    /// What says nothing true about the water used is left out: a spike, a register going
    /// back or opening (its use unknown), negative use. Estimated readings, gaps and late
    /// arrivals are flagged, not wrong: included.
    fn default() -> Self {
        QualityRules {
            exclude: flag::EXCLUDED,
            confirm: 0,
        }
    }
}

impl QualityRules {
    /// The flags that leave a reading's day out unless a correction says otherwise.
    pub fn leaving_out(self) -> i32 {
        self.exclude | self.confirm
    }

    pub fn action(self, bit: i32) -> QualityAction {
        if self.exclude & bit != 0 {
            QualityAction::Exclude
        } else if self.confirm & bit != 0 {
            QualityAction::Confirm
        } else {
            QualityAction::Include
        }
    }

    /// These rules with `action` for the flag `bit`; a first register reading's use is
    /// unknown, so it cannot be included as read.
    pub fn with(self, bit: i32, action: QualityAction) -> Result<QualityRules> {
        if bit == flag::REGISTER_OPENED && action == QualityAction::Include {
            return Err(Error::invalid(
                "quality_rules",
                "a meter's first register reading has no known use: it can be excluded or confirmed, not included",
            ));
        }
        let (exclude, confirm) = (self.exclude & !bit, self.confirm & !bit);
        Ok(match action {
            QualityAction::Exclude => QualityRules {
                exclude: exclude | bit,
                confirm,
            },
            QualityAction::Confirm => QualityRules {
                exclude,
                confirm: confirm | bit,
            },
            QualityAction::Include => QualityRules { exclude, confirm },
        })
    }

    /// As stored: "" for the default rules, else JSON.
    pub fn to_stored(self) -> String {
        if self == QualityRules::default() {
            String::new()
        } else {
            serde_json::to_string(&self).unwrap_or_default()
        }
    }

    pub fn from_stored(s: &str) -> QualityRules {
        serde_json::from_str(s).unwrap_or_default()
    }
}

/// What an interval-use reading's timestamp marks: the end of its interval (as stored, and
/// the default) or its start (the common export of meter systems and spreadsheets: "00:00"
/// for the day or hour that begins then).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimestampsMark {
    #[default]
    End,
    Start,
}

impl TimestampsMark {
    pub fn code(self) -> &'static str {
        match self {
            TimestampsMark::End => "end",
            TimestampsMark::Start => "start",
        }
    }

    /// The end of the interval of a reading stamped `at_ms`, for a meter reading every
    /// `interval_ms`; `None` beyond the instants an `i64` holds.
    pub fn interval_end(self, at_ms: i64, interval_ms: i64) -> Option<i64> {
        match self {
            TimestampsMark::End => Some(at_ms),
            TimestampsMark::Start => at_ms.checked_add(interval_ms),
        }
    }
}

const CST_MS: i64 = 8 * 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// Whether `at_ms` is where a file of readings every `interval_ms` would begin or end: the
/// start of a calendar month for daily (or longer) readings, of a day for shorter ones, in
/// China Standard Time.
fn on_boundary(at_ms: i64, interval_ms: i64) -> bool {
    let local = at_ms.saturating_add(CST_MS);
    if local.rem_euclid(DAY_MS) != 0 {
        return false;
    }
    if interval_ms < DAY_MS {
        return true;
    }
    chrono::DateTime::from_timestamp_millis(local).is_some_and(|d| chrono::Datelike::day(&d) == 1)
}

/// Which convention readings stamped from `first_ms` to `last_ms` (as sent, every
/// `interval_ms`) look like, if either: a file of whole days (or months) that starts on a
/// boundary and stops one interval short of the next marks interval starts (2024-01-01 00:00
/// … 2024-12-31 00:00 daily; 00:00 … 23:00 hourly); one that starts an interval after a
/// boundary and ends on one marks interval ends.
pub fn looks_like(first_ms: i64, last_ms: i64, interval_ms: i64) -> Option<TimestampsMark> {
    if interval_ms <= 0 || last_ms <= first_ms {
        return None;
    }
    let starts = on_boundary(first_ms, interval_ms)
        && on_boundary(last_ms.saturating_add(interval_ms), interval_ms);
    let ends = on_boundary(first_ms.saturating_sub(interval_ms), interval_ms)
        && on_boundary(last_ms, interval_ms);
    match (starts, ends) {
        (true, false) => Some(TimestampsMark::Start),
        (false, true) => Some(TimestampsMark::End),
        _ => None,
    }
}

/// A warning when readings of `meter` stamped from `first_ms` to `last_ms` look like the
/// other convention than `taken_as`.
pub fn timestamps_warning(
    meter: &str,
    first_ms: i64,
    last_ms: i64,
    interval_ms: i64,
    taken_as: TimestampsMark,
) -> Option<String> {
    let looks = looks_like(first_ms, last_ms, interval_ms)?;
    if looks == taken_as {
        return None;
    }
    let local = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms.saturating_add(CST_MS))
            .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    Some(format!(
        "meter {meter}: the readings run from {} to {} (China Standard Time), which looks like timestamps marking the {} of each interval; they were taken as its {}{}",
        local(first_ms),
        local(last_ms),
        looks.code(),
        taken_as.code(),
        match taken_as {
            TimestampsMark::End => format!(
                " (the default), so the first reading's use is counted on the day before {}",
                &local(first_ms)[..10]
            ),
            TimestampsMark::Start => String::new(),
        }
    ))
}

/// Readings are taken in 1970..2100 (UTC): see [`Instant`].
pub const MIN_READING_SECONDS: i64 = Instant::MIN_SECONDS;
/// 2100-01-01T00:00:00Z.
pub const MAX_READING_SECONDS: i64 = Instant::MAX_SECONDS;

/// The most water any meter here can pass, litres per second. The rule: a DN600 main (the
/// largest supply pipe of a site in this market, generous) at 5 m/s, well above design
/// velocities of 1-3 m/s: π × 0.3² m² × 5 m/s ≈ 1.41 m³/s, rounded up to 1,500 L/s. A
/// reading above this for its interval is physically impossible: refused, never summed.
pub const MAX_FLOW_LITRES_PER_SECOND: i64 = 1_500;
/// The most a cumulative register can read: 1,500 L/s for over 200 years.
pub const MAX_REGISTER_LITRES: i64 = 10_000_000_000_000;

/// Checks a reading's time as sent (seconds and nanoseconds of a protobuf timestamp) and
/// returns it in milliseconds.
pub fn reading_time_ms(seconds: i64, nanos: i32) -> std::result::Result<i64, String> {
    Instant::from_parts(seconds, nanos).map(|i| i.0)
}

/// The largest interval use a meter with `interval_seconds` can report.
pub fn max_interval_litres(interval_seconds: i32) -> i64 {
    MAX_FLOW_LITRES_PER_SECOND.saturating_mul(i64::from(interval_seconds.max(1)))
}

/// A reading as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incoming {
    pub at_ms: i64,
    pub value_litres: i64,
    pub estimated: bool,
}

/// A reading as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    pub at_ms: i64,
    pub value_litres: i64,
    pub use_litres: i64,
    pub kind: ValueKind,
    pub flags: i32,
}

/// Uses remembered to judge spikes, and the thresholds.
const SPIKE_WINDOW: usize = 48;
const SPIKE_MIN_HISTORY: usize = 8;
const SPIKE_FACTOR: i64 = 10;

/// What the flags of the next reading depend on: the meter's latest reading and its recent
/// uses. Built from the stored readings, then advanced reading by reading.
#[derive(Clone, Debug)]
pub struct MeterState {
    interval_ms: i64,
    /// The register's capacity, litres; 0 when not known.
    capacity: i64,
    latest_ms: Option<i64>,
    latest_register: Option<i64>,
    recent: VecDeque<i64>,
    recent_sum: i64,
}

impl MeterState {
    /// `stored` holds the latest stored readings, newest first: (time, value, use, kind).
    pub fn new(interval_seconds: i32, stored: &[(i64, i64, i64, i32)]) -> MeterState {
        let mut s = MeterState {
            interval_ms: i64::from(interval_seconds) * 1000,
            capacity: 0,
            latest_ms: stored.first().map(|r| r.0),
            latest_register: stored
                .first()
                .filter(|r| r.3 == ValueKind::Register as i32)
                .map(|r| r.1),
            recent: VecDeque::with_capacity(SPIKE_WINDOW),
            recent_sum: 0,
        };
        for r in stored.iter().take(SPIKE_WINDOW).rev() {
            s.remember(r.2);
        }
        s
    }

    /// Why a reading is physically impossible for this meter, if it is: an interval use above
    /// (or, negated, below) the most its interval can pass; a register beyond ±10¹³ L or
    /// risen more than the most that could flow since the previous register reading.
    pub fn impossible(&self, kind: ValueKind, r: Incoming) -> Option<String> {
        let interval_s = self.interval_ms / 1000;
        let per_interval = MAX_FLOW_LITRES_PER_SECOND.saturating_mul(interval_s.max(1));
        match kind {
            ValueKind::IntervalUse => (r.value_litres.unsigned_abs() > per_interval.unsigned_abs())
                .then(|| {
                    format!(
                        "impossible: {} L in a {interval_s} s interval, more than {MAX_FLOW_LITRES_PER_SECOND} L/s could pass (at most {per_interval} L)",
                        r.value_litres
                    )
                }),
            ValueKind::Register => {
                // Magnitude only: a register below the previous one is flagged, not refused.
                if r.value_litres.unsigned_abs() > MAX_REGISTER_LITRES.unsigned_abs() {
                    return Some(format!(
                        "impossible: register {} L beyond ±{MAX_REGISTER_LITRES}",
                        r.value_litres
                    ));
                }
                if self.capacity > 0 && !(0..self.capacity).contains(&r.value_litres) {
                    return Some(format!(
                        "impossible: register {} L outside its capacity 0 to {} L",
                        r.value_litres,
                        self.capacity - 1
                    ));
                }
                let (Some(prev_at), Some(prev)) = (self.latest_ms, self.latest_register) else {
                    return None;
                };
                if r.at_ms <= prev_at || r.value_litres == prev {
                    return None;
                }
                // Both in range: no overflow.
                let elapsed_s = ((r.at_ms - prev_at) / 1000).max(interval_s).max(1);
                let most = MAX_FLOW_LITRES_PER_SECOND.saturating_mul(elapsed_s);
                if r.value_litres < prev {
                    // Back: flagged when the capacity is not known; a rollover that fits, or
                    // impossible.
                    return match self.rolled_over(prev, r.value_litres) {
                        Some(used) if used > most => Some(format!(
                            "impossible: the register went back from {prev} to {} L; as a rollover of its {} L register that is {used} L in {elapsed_s} s, more than {MAX_FLOW_LITRES_PER_SECOND} L/s could pass",
                            r.value_litres, self.capacity
                        )),
                        _ => None,
                    };
                }
                let rose = r.value_litres - prev;
                (rose > most).then(|| {
                    format!(
                        "impossible: register rose {rose} L in {elapsed_s} s, more than {MAX_FLOW_LITRES_PER_SECOND} L/s could pass"
                    )
                })
            }
        }
    }

    /// This state for a meter whose register holds `capacity` litres (0: not known).
    pub fn with_capacity(mut self, capacity: i64) -> MeterState {
        self.capacity = capacity.max(0);
        self
    }

    /// The use of a register reading `value` after `prev` that went back, if the register's
    /// capacity makes it a rollover: the rest of the register and the new value.
    fn rolled_over(&self, prev: i64, value: i64) -> Option<i64> {
        (self.capacity > 0 && value < prev && (0..self.capacity).contains(&prev) && value >= 0)
            .then(|| self.capacity - prev + value)
    }

    /// The meter's interval, ms.
    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    /// The time of the newest reading seen.
    pub fn latest_ms(&self) -> Option<i64> {
        self.latest_ms
    }

    fn remember(&mut self, use_litres: i64) {
        if self.recent.len() == SPIKE_WINDOW
            && let Some(old) = self.recent.pop_front()
        {
            self.recent_sum = self.recent_sum.saturating_sub(old);
        }
        self.recent.push_back(use_litres);
        // Saturating: a use stored before readings were bounded must not panic the state.
        self.recent_sum = self.recent_sum.saturating_add(use_litres);
    }

    /// Flags a new reading (the caller has ruled out a duplicate) and advances the state.
    ///
    /// - estimated: as the sender says;
    /// - out of order: older than the newest reading seen; its use is its interval use, or 0
    ///   for a register (the newer reading's difference already counts that water);
    /// - gap before: more than one interval missing since the newest reading (> 2 intervals);
    /// - register decreased: a register below the previous one (meter swap or rollover): the
    ///   use across it is unknown, stored as 0 and flagged, and the new value is the new base;
    /// - register opened: the meter's first register reading, the base of the next ones: the
    ///   use up to it is unknown, stored as 0 and flagged;
    /// - negative use: an interval use below zero, stored as sent;
    /// - spike: use above 10 × the mean of the meter's last 48 uses (once it has 8).
    pub fn classify(&mut self, kind: ValueKind, r: Incoming) -> Classified {
        let mut flags = if r.estimated { flag::ESTIMATED } else { 0 };
        let in_order = self.latest_ms.is_none_or(|l| r.at_ms > l);
        let mut use_litres = match kind {
            ValueKind::IntervalUse => r.value_litres,
            ValueKind::Register => 0,
        };
        if !in_order {
            flags |= flag::OUT_OF_ORDER;
        } else {
            if let Some(l) = self.latest_ms
                && r.at_ms - l > 2 * self.interval_ms
            {
                flags |= flag::GAP_BEFORE;
            }
            if kind == ValueKind::Register {
                match self.latest_register {
                    Some(prev) if r.value_litres < prev => {
                        match self.rolled_over(prev, r.value_litres) {
                            Some(used) => {
                                use_litres = used;
                                flags |= flag::REGISTER_ROLLED_OVER;
                            }
                            None => flags |= flag::REGISTER_DECREASED,
                        }
                    }
                    Some(prev) => use_litres = r.value_litres.saturating_sub(prev),
                    None => flags |= flag::REGISTER_OPENED,
                }
                self.latest_register = Some(r.value_litres);
            }
            self.latest_ms = Some(r.at_ms);
        }
        if use_litres < 0 {
            flags |= flag::NEGATIVE_USE;
        }
        if self.recent.len() >= SPIKE_MIN_HISTORY {
            let mean = self.recent_sum / self.recent.len() as i64;
            if use_litres > SPIKE_FACTOR.saturating_mul(mean.max(1)) {
                flags |= flag::SPIKE;
            }
        }
        if in_order {
            self.remember(use_litres);
        }
        Classified {
            at_ms: r.at_ms,
            value_litres: r.value_litres,
            use_litres,
            kind,
            flags,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    /// ms of `YYYY-MM-DD HH:MM` China Standard Time.
    fn cst(s: &str) -> i64 {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
            .expect("time")
            .and_utc()
            .timestamp_millis()
            - 8 * H
    }

    #[test]
    fn files_that_look_like_interval_starts_or_ends() {
        let day = 24 * H;
        // A year of daily readings stamped at the start of each day, and at the end.
        let (first, last) = (cst("2024-01-01 00:00"), cst("2024-12-31 00:00"));
        assert_eq!(looks_like(first, last, day), Some(TimestampsMark::Start));
        let (first_end, last_end) = (cst("2024-01-02 00:00"), cst("2025-01-01 00:00"));
        assert_eq!(
            looks_like(first_end, last_end, day),
            Some(TimestampsMark::End)
        );
        // Hourly: 00:00 … 23:00 starts, 01:00 … 00:00 (the next day) ends.
        assert_eq!(
            looks_like(cst("2024-03-05 00:00"), cst("2024-03-07 23:00"), H),
            Some(TimestampsMark::Start)
        );
        assert_eq!(
            looks_like(cst("2024-03-05 01:00"), cst("2024-03-08 00:00"), H),
            Some(TimestampsMark::End)
        );
        // Noon stamps, or a file from mid-month, say nothing.
        assert_eq!(
            looks_like(cst("2024-01-01 12:00"), cst("2024-12-31 12:00"), day),
            None
        );
        assert_eq!(
            looks_like(cst("2024-01-10 00:00"), cst("2024-02-19 00:00"), day),
            None
        );
        let warning = timestamps_warning("m1", first, last, day, TimestampsMark::End)
            .expect("taken as ends, it looks like starts");
        assert!(
            warning.contains("from 2024-01-01 00:00 to 2024-12-31 00:00")
                && warning.contains("counted on the day before 2024-01-01"),
            "{warning}"
        );
        assert_eq!(
            timestamps_warning("m1", first, last, day, TimestampsMark::Start),
            None
        );
        assert!(
            timestamps_warning("m1", first_end, last_end, day, TimestampsMark::Start).is_some()
        );
        // Taken as starts, a reading's interval ends one interval later.
        assert_eq!(
            TimestampsMark::Start.interval_end(first, day),
            Some(first + day)
        );
        assert_eq!(TimestampsMark::End.interval_end(first, day), Some(first));
        assert_eq!(TimestampsMark::Start.interval_end(i64::MAX, day), None);
    }

    fn reading(hour: i64, value: i64) -> Incoming {
        Incoming {
            at_ms: hour * H,
            value_litres: value,
            estimated: false,
        }
    }

    #[test]
    fn interval_use_flags() {
        let mut s = MeterState::new(3600, &[]);
        for h in 1..=10 {
            assert_eq!(s.classify(ValueKind::IntervalUse, reading(h, 100)).flags, 0);
        }
        // Two hours missing: a gap.
        let gap = s.classify(ValueKind::IntervalUse, reading(13, 100));
        assert_eq!(gap.flags, flag::GAP_BEFORE);
        // One missing is not a gap.
        assert_eq!(
            s.classify(ValueKind::IntervalUse, reading(15, 100)).flags,
            0
        );
        let spike = s.classify(ValueKind::IntervalUse, reading(16, 5_000));
        assert_eq!(spike.flags, flag::SPIKE);
        assert_eq!(spike.use_litres, 5_000, "stored as sent");
        let negative = s.classify(ValueKind::IntervalUse, reading(17, -5));
        assert_eq!(negative.flags, flag::NEGATIVE_USE);
        assert_eq!(negative.use_litres, -5);
        let late = s.classify(ValueKind::IntervalUse, reading(12, 100));
        assert_eq!(late.flags, flag::OUT_OF_ORDER);
        assert_eq!(late.use_litres, 100);
        let estimated = s.classify(
            ValueKind::IntervalUse,
            Incoming {
                estimated: true,
                ..reading(18, 100)
            },
        );
        assert_eq!(estimated.flags, flag::ESTIMATED);
    }

    #[test]
    fn register_differences_and_decreases() {
        let mut s = MeterState::new(3600, &[]);
        // The first reading opens the register: the use before it is unknown, not 0 (issue 12:
        // a register file's first day was a day of 0 use).
        let first = s.classify(ValueKind::Register, reading(1, 1_000));
        assert_eq!((first.use_litres, first.flags), (0, flag::REGISTER_OPENED));
        let second = s.classify(ValueKind::Register, reading(2, 1_250));
        assert_eq!((second.use_litres, second.flags), (250, 0));
        let swapped = s.classify(ValueKind::Register, reading(3, 10));
        assert_eq!(
            (swapped.use_litres, swapped.flags),
            (0, flag::REGISTER_DECREASED)
        );
        let after = s.classify(ValueKind::Register, reading(4, 60));
        assert_eq!((after.use_litres, after.flags), (50, 0));
        // A late register reading: its water is already in the next one's difference.
        let late = s.classify(ValueKind::Register, reading(0, 900));
        assert_eq!((late.use_litres, late.flags), (0, flag::OUT_OF_ORDER));
    }

    /// Issue 12's finding: a register rollover was flagged "decreased" and its interval's
    /// water lost; with the register's capacity known it is the rest of the register plus
    /// the new value, and a decrease no rollover explains is refused as impossible.
    #[test]
    fn a_register_that_rolls_over_within_its_capacity() {
        // A 7-digit litre register (0 … 9,999,999 L), hourly.
        let mut s = MeterState::new(3600, &[]).with_capacity(10_000_000);
        s.classify(ValueKind::Register, reading(1, 9_999_800));
        // 9,999,800 → 150: 200 L to the top, 150 after it.
        let next = reading(2, 150);
        assert_eq!(s.impossible(ValueKind::Register, next), None);
        let rolled = s.classify(ValueKind::Register, next);
        assert_eq!(
            (rolled.use_litres, rolled.flags),
            (350, flag::REGISTER_ROLLED_OVER)
        );
        // 150 → 100 in an hour would be a rollover of 9,999,950 L: more than can pass
        // (1,500 L/s × 3,600 s = 5,400,000 L).
        let back = reading(3, 100);
        let why = s
            .impossible(ValueKind::Register, back)
            .expect("not a rollover");
        assert!(why.contains("went back from 150 to 100"), "{why}");
        // A value at or beyond the capacity is no register value.
        assert!(
            s.impossible(ValueKind::Register, reading(3, 10_000_000))
                .is_some()
        );
        // Without the capacity, a decrease is flagged and left out, as before.
        let mut unknown = MeterState::new(3600, &[]);
        unknown.classify(ValueKind::Register, reading(1, 9_999_800));
        assert_eq!(
            unknown.classify(ValueKind::Register, reading(2, 150)).flags,
            flag::REGISTER_DECREASED
        );
    }

    #[test]
    fn reading_times_outside_1970_to_2100_are_refused() {
        assert_eq!(
            reading_time_ms(1_700_000_000, 5_000_000),
            Ok(1_700_000_000_005)
        );
        assert!(reading_time_ms(i64::MAX, 0).is_err());
        assert!(
            reading_time_ms(-62_135_596_801, 0).is_err(),
            "before year 1"
        );
        assert!(reading_time_ms(-1, 0).is_err());
        assert!(reading_time_ms(MAX_READING_SECONDS, 0).is_err());
        assert!(reading_time_ms(1_700_000_000, -1).is_err());
        assert!(reading_time_ms(1_700_000_000, 1_000_000_000).is_err());
    }

    #[test]
    fn physically_impossible_readings() {
        let s = MeterState::new(3600, &[]);
        let most = 1_500 * 3600;
        assert!(
            s.impossible(ValueKind::IntervalUse, reading(1, most))
                .is_none()
        );
        assert!(
            s.impossible(ValueKind::IntervalUse, reading(1, most + 1))
                .is_some()
        );
        assert!(
            s.impossible(ValueKind::IntervalUse, reading(1, i64::MAX))
                .is_some()
        );
        assert!(
            s.impossible(ValueKind::IntervalUse, reading(1, i64::MIN))
                .is_some()
        );
        assert!(
            s.impossible(ValueKind::Register, reading(1, i64::MIN))
                .is_some()
        );
        assert!(
            s.impossible(ValueKind::Register, reading(1, i64::MAX))
                .is_some()
        );
        let mut s = MeterState::new(3600, &[]);
        s.classify(ValueKind::Register, reading(1, 1_000));
        assert!(
            s.impossible(ValueKind::Register, reading(2, 1_000 + most))
                .is_none()
        );
        assert!(
            s.impossible(ValueKind::Register, reading(2, 1_001 + most))
                .is_some()
        );
        // Two hours later twice as much could flow.
        assert!(
            s.impossible(ValueKind::Register, reading(3, 1_000 + 2 * most))
                .is_none()
        );
    }

    #[test]
    fn state_resumes_from_stored_readings() {
        // Newest first: (time, value, use, kind).
        let stored = [(2 * H, 1_250, 250, 1), (H, 1_000, 0, 1)];
        let mut s = MeterState::new(3600, &stored);
        assert_eq!(s.latest_ms(), Some(2 * H));
        let next = s.classify(ValueKind::Register, reading(3, 1_300));
        assert_eq!(next.use_litres, 50);
    }
}
