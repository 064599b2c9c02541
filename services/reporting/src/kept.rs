//! Reports kept in memory between calls: a province's roll-up reads a hundred district
//! reports, and each costs a few queries over thousands of kept counts. A kept report is
//! served only while its plan's generation (migration 0006, raised in the transaction of every
//! change a report reads) is the one it was computed at, so the service's replicas see each
//! other's writes; the store is read for the generations on every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;

use crate::report::Report;

/// At most this many reports are kept; past it the oldest half is dropped.
const CAPACITY: usize = 4096;

#[derive(Default)]
struct Entry {
    generation: i64,
    report: Option<Arc<Report>>,
    /// When it was kept, in calls of [`KeptReports::keep`]: the oldest go first.
    kept_at: u64,
}

/// The kept entries by (plan id, as-of date), and the count of calls to keep so far.
type Entries = (HashMap<(String, NaiveDate), Entry>, u64);

/// Reports by plan id and as-of date.
#[derive(Default)]
pub struct KeptReports {
    inner: Mutex<Entries>,
}

impl KeptReports {
    /// The report of plan `plan_id` as of `as_of`, if it was kept at `generation` and, when
    /// it was made while its day lasted, that day is not over on `today` (its statuses on a
    /// deadline day change when the day ends: [`crate::report::evaluate`]).
    pub fn get(
        &self,
        plan_id: &str,
        as_of: NaiveDate,
        generation: i64,
        today: NaiveDate,
    ) -> Option<Arc<Report>> {
        let guard = self.inner.lock().ok()?;
        let entry = guard.0.get(&(plan_id.to_string(), as_of))?;
        let report = entry.report.as_ref()?;
        let made_after_the_day = crate::report::day_over(as_of, report.generated_at_ms);
        if entry.generation == generation && made_after_the_day == (as_of < today) {
            Some(Arc::clone(report))
        } else {
            None
        }
    }

    /// Keeps `report`, computed at `generation`, unless a report of a later generation is kept
    /// already (a slower caller must not put back an older one).
    pub fn keep(&self, plan_id: &str, as_of: NaiveDate, generation: i64, report: Arc<Report>) {
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        let (map, clock) = &mut *guard;
        *clock += 1;
        let now = *clock;
        if map.len() >= CAPACITY {
            let mut ages: Vec<u64> = map.values().map(|e| e.kept_at).collect();
            ages.sort_unstable();
            // The kept_at of the last of the older half.
            let cut = ages[(ages.len() / 2).saturating_sub(1)];
            map.retain(|_, e| e.kept_at > cut);
        }
        let entry = map.entry((plan_id.to_string(), as_of)).or_default();
        if entry.report.is_none() || entry.generation <= generation {
            *entry = Entry {
                generation,
                report: Some(report),
                kept_at: now,
            };
        }
    }

    /// How many reports are kept.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.0.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan;

    fn report() -> Arc<Report> {
        let p = plan::parse(plan::DEFAULT_PLAN_TOML).expect("plan");
        Arc::new(Report {
            plan: plan::StoredPlan {
                id: "p".into(),
                version: 1,
                plan: p,
                document: String::new(),
                sha256: String::new(),
                loaded_by: String::new(),
                loaded_at_ms: 0,
            },
            as_of: NaiveDate::from_ymd_opt(2020, 12, 31).expect("date"),
            lines: vec![],
            generated_at_ms: 0,
        })
    }

    #[test]
    fn a_kept_report_serves_only_its_generation_and_never_goes_back() {
        let kept = KeptReports::default();
        let day = NaiveDate::from_ymd_opt(2020, 12, 31).expect("date");
        kept.keep("p", day, 3, report());
        assert!(kept.get("p", day, 3, day).is_some());
        // A change since: generation 4 is not served by the report of 3.
        assert!(kept.get("p", day, 4, day).is_none());
        // Nor another date.
        assert!(
            kept.get("p", day.pred_opt().expect("day"), 3, day)
                .is_none()
        );
        // A slow caller's report of generation 2 does not replace the one of 3.
        kept.keep("p", day, 2, report());
        assert!(kept.get("p", day, 3, day).is_some());
        assert!(kept.get("p", day, 2, day).is_none());
    }

    #[test]
    fn a_report_made_on_its_own_day_is_not_served_once_the_day_is_over() {
        let kept = KeptReports::default();
        let day = NaiveDate::from_ymd_opt(2020, 12, 31).expect("date");
        let next = day.succ_opt().expect("day");
        // Made at 2020-12-31 12:00 China Standard Time (04:00 UTC), while the day lasted.
        let mut during = Report::clone(&report());
        during.generated_at_ms = 1_609_387_200_000;
        kept.keep("p", day, 1, Arc::new(during));
        assert!(kept.get("p", day, 1, day).is_some());
        assert!(kept.get("p", day, 1, next).is_none(), "the day is over");
        // Made after it: served from then on.
        let mut after = Report::clone(&report());
        after.generated_at_ms = 1_609_430_400_000;
        kept.keep("p", day, 1, Arc::new(after));
        assert!(kept.get("p", day, 1, next).is_some());
    }

    #[test]
    fn at_capacity_the_oldest_half_goes() {
        let kept = KeptReports::default();
        let day = NaiveDate::from_ymd_opt(2020, 12, 31).expect("date");
        let r = report();
        for k in 0..CAPACITY {
            kept.keep(&format!("p{k}"), day, 0, r.clone());
        }
        assert_eq!(kept.len(), CAPACITY);
        kept.keep("newest", day, 0, r);
        // 4096 kept; the 2048 oldest dropped; the newest in: 2049.
        assert_eq!(kept.len(), CAPACITY / 2 + 1);
        assert!(kept.get("p0", day, 0, day).is_none());
        assert!(
            kept.get(&format!("p{}", CAPACITY - 1), day, 0, day)
                .is_some()
        );
        assert!(kept.get("newest", day, 0, day).is_some());
    }
}
