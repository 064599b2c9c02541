//! Corrections of stored readings, in plain Rust: a party proposes one (the interval's use
//! replaced, the reading excluded, or a flagged reading kept as read) with a reason and
//! evidence; the project's assigned verifier accepts or rejects it. The reading itself is
//! never changed: an accepted correction counts in the M&V instead of it, and a later accepted
//! one supersedes it, so every version stays.

use cwsm_platform::auth::Principal;
use cwsm_platform::{Error, Result};

use crate::domain::Project;
use crate::metering::{QualityRules, flag};
use crate::mv::DayUse;

/// What a correction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorrectionAction {
    /// The interval's use is the corrected one.
    Replace,
    /// The reading is left out; its day counts as missing.
    Exclude,
    /// A flagged reading the quality rules leave out is used as read.
    Keep,
}

impl CorrectionAction {
    pub const ALL: [CorrectionAction; 3] = [
        CorrectionAction::Replace,
        CorrectionAction::Exclude,
        CorrectionAction::Keep,
    ];

    pub fn code(self) -> &'static str {
        match self {
            CorrectionAction::Replace => "replace",
            CorrectionAction::Exclude => "exclude",
            CorrectionAction::Keep => "keep",
        }
    }

    pub fn from_code(s: &str) -> Option<CorrectionAction> {
        Self::ALL.into_iter().find(|a| a.code() == s)
    }
}

/// Where a correction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorrectionStatus {
    Proposed,
    Accepted,
    Rejected,
    Superseded,
}

impl CorrectionStatus {
    pub const ALL: [CorrectionStatus; 4] = [
        CorrectionStatus::Proposed,
        CorrectionStatus::Accepted,
        CorrectionStatus::Rejected,
        CorrectionStatus::Superseded,
    ];

    pub fn code(self) -> &'static str {
        match self {
            CorrectionStatus::Proposed => "proposed",
            CorrectionStatus::Accepted => "accepted",
            CorrectionStatus::Rejected => "rejected",
            CorrectionStatus::Superseded => "superseded",
        }
    }

    pub fn from_code(s: &str) -> Option<CorrectionStatus> {
        Self::ALL.into_iter().find(|a| a.code() == s)
    }
}

/// A correction of the reading of `meter_id` at `read_at_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Correction {
    pub id: String,
    pub project_id: String,
    pub meter_id: String,
    pub read_at_ms: i64,
    pub action: CorrectionAction,
    /// Replace: the interval's use, litres; 0 otherwise.
    pub corrected_use_litres: i64,
    /// The reading as stored when the correction was proposed.
    pub original_use_litres: i64,
    pub original_flags: i32,
    pub reason: String,
    pub evidence: String,
    pub status: CorrectionStatus,
    pub proposed_by: String,
    pub proposed_by_org: String,
    pub decided_by: String,
    pub decided_by_org: String,
    pub decision_note: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub version: i64,
}

/// The stored reading a correction is about: its day (CST) and its use and flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredReading {
    pub at_ms: i64,
    pub use_litres: i64,
    pub flags: i32,
}

/// Checks a proposal of `action` on `reading` of `project` by `who`: a party (or an
/// administrator of the project's jurisdiction); `frozen` says why the reading's day may no
/// longer change, if it may not (a stored period holds it, or the baseline once a period
/// was submitted).
pub fn check_proposal(
    project: &Project,
    who: &Principal,
    reading: StoredReading,
    action: CorrectionAction,
    frozen: Option<String>,
) -> Result<()> {
    if !project.party(who) {
        return Err(project.refuse(
            who,
            format!(
                "corrections of project {}'s readings are proposed by its company or its water user (its verifier decides them)",
                project.id
            ),
        ));
    }
    if let Some(why) = frozen {
        return Err(Error::precondition(why));
    }
    if action == CorrectionAction::Keep && reading.flags & project.quality_rules.leaving_out() == 0
    {
        return Err(Error::precondition(
            "the reading is used as read already (no flag the M&V plan leaves out): there is nothing to keep; replace or exclude it instead",
        ));
    }
    Ok(())
}

/// Why the readings of `day` may no longer be corrected, if they may not: a stored
/// (submitted or later) period holds the day, or the day is in the baseline and a period has
/// been submitted (the baseline is agreed then; a later change is a non-routine adjustment).
pub fn frozen(
    project: &Project,
    stored: &[crate::ledger::Period],
    day: chrono::NaiveDate,
) -> Option<String> {
    let date = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    if let Some(p) = stored.iter().find(|p| {
        date(&p.start_date).is_some_and(|s| s <= day) && date(&p.end_date).is_some_and(|e| day <= e)
    }) {
        return Some(format!(
            "the reading's day {day} is in period {} ({} to {}), {}: its figures are frozen (dispute the period instead)",
            p.id,
            p.start_date,
            p.end_date,
            p.status.code()
        ));
    }
    let in_baseline = date(&project.baseline_start_date).is_some_and(|s| s <= day)
        && date(&project.baseline_end_date).is_some_and(|e| day <= e);
    match stored.first() {
        Some(first) if in_baseline => Some(format!(
            "the reading's day {day} is in the baseline, agreed since period {} was submitted: a change to it is a non-routine adjustment",
            first.id
        )),
        _ => None,
    }
}

/// Checks that `who` may decide `correction` of `project`: its assigned verifier, while the
/// correction is proposed.
pub fn check_decision(project: &Project, who: &Principal, correction: &Correction) -> Result<()> {
    if !project.assigned_verifier(who) {
        return Err(project.refuse(
            who,
            if project.verifier_org.is_empty() {
                format!(
                    "project {} has no verifier assigned yet; its assigned verifier decides corrections",
                    project.id
                )
            } else {
                format!(
                    "only the verifier assigned to project {} (org {}) decides corrections of its readings",
                    project.id, project.verifier_org
                )
            },
        ));
    }
    if correction.status != CorrectionStatus::Proposed {
        return Err(Error::precondition(format!(
            "correction {} is {}; only a proposed correction is decided (allowed: none; propose another)",
            correction.id,
            correction.status.code()
        )));
    }
    Ok(())
}

/// A day's use recomputed from its readings `(use, flags)` and the accepted corrections of
/// some of them (`correction(i)` for reading i), under `rules`.
pub fn corrected_day(
    mut day: DayUse,
    readings: &[(StoredReading, Option<&Correction>)],
    rules: QualityRules,
) -> DayUse {
    let mut litres = 0i64;
    let mut excluded = 0;
    for (r, c) in readings {
        let (use_litres, flags) = match c.map(|c| c.action) {
            Some(CorrectionAction::Replace) => (c.map(|c| c.corrected_use_litres).unwrap_or(0), 0),
            Some(CorrectionAction::Exclude) => {
                excluded |= flag::CORRECTED_OUT;
                (0, 0)
            }
            Some(CorrectionAction::Keep) => (r.use_litres, 0),
            None => (r.use_litres, r.flags),
        };
        excluded |= day_exclusion(flags, rules);
        litres = litres.saturating_add(use_litres);
    }
    day.litres = litres;
    day.excluded = excluded;
    day
}

/// The day-exclusion bits a reading's `flags` give under `rules`: the flags the plan excludes,
/// and [`flag::UNCONFIRMED`] for flags awaiting the verifier's confirmation.
pub fn day_exclusion(flags: i32, rules: QualityRules) -> i32 {
    (flags & rules.exclude)
        | if flags & rules.confirm != 0 {
            flag::UNCONFIRMED
        } else {
            0
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metering::QualityAction;

    fn day() -> DayUse {
        DayUse {
            day: chrono::NaiveDate::from_ymd_opt(2025, 3, 1).expect("date"),
            litres: 0,
            readings: 2,
            estimated: 0,
            excluded: 0,
            billed_from: None,
        }
    }

    fn correction(action: CorrectionAction, corrected: i64) -> Correction {
        Correction {
            id: "c".into(),
            project_id: "p".into(),
            meter_id: "m".into(),
            read_at_ms: 0,
            action,
            corrected_use_litres: corrected,
            original_use_litres: 0,
            original_flags: 0,
            reason: String::new(),
            evidence: String::new(),
            status: CorrectionStatus::Accepted,
            proposed_by: String::new(),
            proposed_by_org: String::new(),
            decided_by: String::new(),
            decided_by_org: String::new(),
            decision_note: String::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 1,
        }
    }

    #[test]
    fn accepted_corrections_count_instead_of_the_readings() {
        let rules = QualityRules::default();
        let spike = StoredReading {
            at_ms: 1,
            use_litres: 200_000,
            flags: flag::SPIKE,
        };
        let ok = StoredReading {
            at_ms: 2,
            use_litres: 4_000,
            flags: 0,
        };
        // As read: the spike leaves the day out.
        let d = corrected_day(day(), &[(spike, None), (ok, None)], rules);
        assert_eq!((d.litres, d.excluded), (204_000, flag::SPIKE));
        // Replaced by the site's record: 5,000 + 4,000, the day used.
        let replace = correction(CorrectionAction::Replace, 5_000);
        let d = corrected_day(day(), &[(spike, Some(&replace)), (ok, None)], rules);
        assert_eq!((d.litres, d.excluded), (9_000, 0));
        // Kept as read (a real burst): used with its flag.
        let keep = correction(CorrectionAction::Keep, 0);
        let d = corrected_day(day(), &[(spike, Some(&keep)), (ok, None)], rules);
        assert_eq!((d.litres, d.excluded), (204_000, 0));
        // Excluded: the day is out, and says why.
        let exclude = correction(CorrectionAction::Exclude, 0);
        let d = corrected_day(day(), &[(ok, Some(&exclude))], rules);
        assert_eq!(d.excluded, flag::CORRECTED_OUT);
        // A plan that confirms estimated readings: out until kept.
        let confirm = rules
            .with(flag::ESTIMATED, QualityAction::Confirm)
            .expect("rule");
        let estimated = StoredReading {
            flags: flag::ESTIMATED,
            ..ok
        };
        let d = corrected_day(day(), &[(estimated, None)], confirm);
        assert_eq!(d.excluded, flag::UNCONFIRMED);
        let d = corrected_day(day(), &[(estimated, Some(&keep))], confirm);
        assert_eq!(d.excluded, 0);
        // A plan that includes spikes uses them as read.
        let include = rules
            .with(flag::SPIKE, QualityAction::Include)
            .expect("rule");
        assert_eq!(corrected_day(day(), &[(spike, None)], include).excluded, 0);
        assert!(
            rules
                .with(flag::REGISTER_OPENED, QualityAction::Include)
                .is_err()
        );
        assert_eq!(QualityRules::from_stored(&include.to_stored()), include);
        assert_eq!(QualityRules::default().to_stored(), "");
    }
}
