//! Domain ↔ `cwsm.reporting.v1` messages: what the adapter answers, and the enums it reads.

use cwsm_platform::grpc::timestamp;
use cwsm_platform::{Error, now_ms};
use cwsm_proto::reporting::v1 as pb;

use crate::achievement::{Achievement, State};
use crate::plan::{Aggregation, Comparator, Indicator, Kind, Measure, OnTerminated, StoredPlan};
use crate::report::{Fact, IndicatorReport, Report, Status as Progress};
use crate::rollup::Rollup;

pub(crate) fn comparator(c: Comparator) -> pb::Comparator {
    match c {
        Comparator::AtLeast => pb::Comparator::AtLeast,
        Comparator::AtMost => pb::Comparator::AtMost,
        Comparator::PercentReduction => pb::Comparator::PercentReduction,
        Comparator::RateAtLeast => pb::Comparator::RateAtLeast,
        Comparator::RateAtMost => pb::Comparator::RateAtMost,
        Comparator::Coverage => pb::Comparator::Coverage,
    }
}

pub(crate) fn progress(s: Progress) -> pb::ProgressStatus {
    match s {
        Progress::Achieved => pb::ProgressStatus::Achieved,
        Progress::AchievedLate => pb::ProgressStatus::AchievedLate,
        Progress::OnTrack => pb::ProgressStatus::OnTrack,
        Progress::AtRisk => pb::ProgressStatus::AtRisk,
        Progress::Missed => pb::ProgressStatus::Missed,
        Progress::NotStarted => pb::ProgressStatus::NotStarted,
    }
}

pub(crate) fn indicator(i: &Indicator) -> pb::Indicator {
    pb::Indicator {
        code: i.code.clone(),
        name: i.name.clone(),
        name_zh: i.name_zh.clone(),
        action_number: i.action,
        unit: i.unit.clone(),
        comparator: comparator(i.comparator) as i32,
        target: i.target,
        base_year: i.base_year,
        deadline: i.deadline.format("%Y-%m-%d").to_string(),
        lead_departments: i.lead.clone(),
        participating_departments: i.participants.clone(),
        kind: match i.kind {
            Kind::Counted => pb::IndicatorKind::Counted,
            Kind::Recorded => pb::IndicatorKind::Recorded,
            Kind::CountedAndRecorded => pb::IndicatorKind::CountedAndRecorded,
            Kind::RolledUp => pb::IndicatorKind::RolledUp,
        } as i32,
        counting_rule: i.rule.as_ref().map(|r| pb::CountingRule {
            milestone: r.milestone.number(),
            sectors: r.sectors.iter().map(|s| s.number()).collect(),
            unit_types: r.unit_types.clone(),
            towns: r.towns.clone(),
            indicator_tags: r.tags.iter().map(|t| t.number()).collect(),
            on_terminated: match r.on_terminated {
                OnTerminated::Keep => pb::OnTerminated::Keep,
                OnTerminated::Remove => pb::OnTerminated::Remove,
            } as i32,
            measure: match r.measure {
                Measure::Projects => pb::Measure::Projects,
                Measure::VerifiedM3 => pb::Measure::VerifiedM3,
                Measure::InvestmentYuan => pb::Measure::InvestmentYuan,
                Measure::Sites => pb::Measure::Sites,
            } as i32,
        }),
        aggregation: match (i.kind, i.aggregation) {
            (Kind::Counted | Kind::RolledUp, _) => pb::Aggregation::Unspecified,
            (Kind::Recorded | Kind::CountedAndRecorded, Aggregation::Sum) => pb::Aggregation::Sum,
            (Kind::Recorded | Kind::CountedAndRecorded, Aggregation::Latest) => {
                pb::Aggregation::Latest
            }
        } as i32,
        note: i.note.clone(),
        rolled_up_from: i.rolled_up_from.clone(),
    }
}

pub(crate) fn plan_message(s: &StoredPlan) -> pb::Plan {
    let p = &s.plan;
    pb::Plan {
        id: s.id.clone(),
        code: p.code.clone(),
        version: s.version,
        title: p.title.clone(),
        title_zh: p.title_zh.clone(),
        district: p.district.clone(),
        district_zh: p.district_zh.clone(),
        jurisdiction_code: p.jurisdiction.to_string(),
        jurisdiction_name: cwsm_platform::gazetteer::Gazetteer::builtin()
            .get(&p.jurisdiction)
            .map(|place| place.name_zh.clone())
            .unwrap_or_default(),
        window_start: p.window.from.to_string(),
        window_end: p.window.to.to_string(),
        year: p.year,
        source: p.source.clone(),
        departments: p
            .departments
            .iter()
            .map(|d| pb::Department {
                code: d.code.clone(),
                name: d.name.clone(),
                name_zh: d.name_zh.clone(),
            })
            .collect(),
        goals: p.goals.iter().map(indicator).collect(),
        actions: p
            .actions
            .iter()
            .map(|a| pb::Action {
                number: a.number,
                name: a.name.clone(),
                name_zh: a.name_zh.clone(),
                summary: a.summary.clone(),
                lead_departments: a.lead.clone(),
                participating_departments: a.participants.clone(),
            })
            .collect(),
        indicators: p.indicators.iter().map(indicator).collect(),
        load_time: Some(timestamp(s.loaded_at_ms)),
        loaded_by: s.loaded_by.clone(),
        source_sha256: s.sha256.clone(),
    }
}

pub(crate) fn entries(list: &[(String, f64)]) -> Vec<pb::BreakdownEntry> {
    list.iter()
        .map(|(key, actual)| pb::BreakdownEntry {
            key: key.clone(),
            actual: *actual,
        })
        .collect()
}

pub(crate) fn indicator_status(line: &IndicatorReport) -> pb::IndicatorStatus {
    pb::IndicatorStatus {
        indicator: Some(indicator(&line.indicator)),
        actual: line.actual,
        progress_bp: line.evaluation.progress_bp,
        status: progress(line.evaluation.status) as i32,
        days_remaining: line.evaluation.days_remaining,
        by_town: entries(&line.by_town),
        by_sector: entries(&line.by_sector),
        by_department: entries(&line.by_department),
        last_change_time: line.last_change_ms.map(timestamp),
        history: line
            .history
            .iter()
            .map(|(date, actual)| pb::HistoryPoint {
                date: date.format("%Y-%m-%d").to_string(),
                actual: *actual,
            })
            .collect(),
        days_late: line.evaluation.days_late,
        completed_projects: line.completed.unwrap_or(0),
        counts_projects: line.completed.is_some(),
    }
}

pub(crate) fn report_message(r: &Report) -> pb::Report {
    let p = &r.plan;
    pb::Report {
        plan: Some(pb::PlanSummary {
            plan_id: p.id.clone(),
            code: p.plan.code.clone(),
            version: p.version,
            title: p.plan.title.clone(),
            district: p.plan.district.clone(),
            year: p.plan.year,
        }),
        as_of_date: r.as_of.format("%Y-%m-%d").to_string(),
        indicators: r.lines.iter().map(indicator_status).collect(),
        generate_time: Some(timestamp(r.generated_at_ms)),
    }
}

pub(crate) fn document_message(d: &crate::evidence::Document) -> pb::EvidenceDocument {
    pb::EvidenceDocument {
        plan_code: d.plan_code.clone(),
        sha256: d.sha256.clone(),
        file_name: d.file_name.clone(),
        media_type: d.media_type.clone(),
        size_bytes: d.size_bytes,
        uploaded_by: d.uploaded_by.clone(),
        create_time: Some(timestamp(d.created_at_ms)),
    }
}

pub(crate) fn achievement_message(a: &Achievement) -> pb::Achievement {
    let current = a.current();
    pb::Achievement {
        id: a.id.clone(),
        plan_code: a.plan_code.clone(),
        indicator_code: a.indicator_code.clone(),
        unit_name: a.unit_name.clone(),
        value: current.value,
        achieved_date: current.achieved_date.clone(),
        evidence: current.evidence.clone(),
        note: current.note.clone(),
        department: a.department.clone(),
        town: a.town.clone(),
        sector: a.sector.map(|s| s.number()).unwrap_or(0),
        retracted: current.retracted,
        revisions: a
            .revisions
            .iter()
            .map(|r| pb::AchievementRevision {
                revision: r.revision,
                value: r.value,
                achieved_date: r.achieved_date.clone(),
                evidence: r.evidence.clone(),
                note: r.note.clone(),
                retracted: r.retracted,
                reason: r.reason.clone(),
                recorded_by: r.recorded_by.clone(),
                record_time: Some(timestamp(r.recorded_at_ms)),
                state: achievement_state(r.state) as i32,
            })
            .collect(),
        create_time: Some(timestamp(a.created_at_ms())),
        update_time: Some(timestamp(current.recorded_at_ms)),
        version: a.version(),
        state: achievement_state(a.state()) as i32,
    }
}

pub(crate) fn achievement_state(s: State) -> pb::AchievementState {
    match s {
        State::Pending => pb::AchievementState::Pending,
        State::Approved => pb::AchievementState::Approved,
        State::Rejected => pb::AchievementState::Rejected,
    }
}

/// An optional achievement state: 0 is any, an unknown number is an error.
pub(crate) fn state_filter(field: &str, number: i32) -> Result<Option<State>, Error> {
    match pb::AchievementState::try_from(number) {
        Ok(pb::AchievementState::Unspecified) => Ok(None),
        Ok(pb::AchievementState::Pending) => Ok(Some(State::Pending)),
        Ok(pb::AchievementState::Approved) => Ok(Some(State::Approved)),
        Ok(pb::AchievementState::Rejected) => Ok(Some(State::Rejected)),
        Err(_) => Err(Error::invalid(
            field,
            format!("unknown achievement state {number}"),
        )),
    }
}

pub(crate) fn rollup_place(p: &cwsm_platform::gazetteer::Place) -> pb::RollupPlace {
    pb::RollupPlace {
        code: p.code.as_str().to_string(),
        name_zh: p.name_zh.clone(),
        name: p.name.clone(),
    }
}

pub(crate) fn rollup_message(r: &Rollup) -> pb::Rollup {
    pb::Rollup {
        place: Some(rollup_place(&r.place)),
        year: r.year,
        as_of_date: r.as_of.format("%Y-%m-%d").to_string(),
        indicators: r
            .lines
            .iter()
            .map(|l| pb::RollupIndicator {
                code: l.code.clone(),
                name: l.name.clone(),
                name_zh: l.name_zh.clone(),
                unit: l.unit.clone(),
                comparator: comparator(l.comparator) as i32,
                summed: l.total.is_some(),
                total_actual: l.total.map(|t| t.actual).unwrap_or(0.0),
                total_target: l.total.map(|t| t.target).unwrap_or(0.0),
                rows: l
                    .rows
                    .iter()
                    .map(|row| pb::RollupRow {
                        district: Some(rollup_place(&row.district)),
                        plan_code: row.plan_code.clone(),
                        plan_version: row.plan_version,
                        actual: row.actual,
                        target: row.target,
                        status: progress(row.status) as i32,
                        progress_bp: row.progress_bp,
                        deadline: row.deadline.format("%Y-%m-%d").to_string(),
                        indicator_code: row.indicator_code.clone(),
                        city: row.city.as_ref().map(rollup_place),
                        days_late: row.days_late,
                    })
                    .collect(),
                own_target: l.own.as_ref().map(|o| pb::RollupOwnTarget {
                    plan_code: o.plan_code.clone(),
                    target: o.target,
                    deadline: o.deadline.format("%Y-%m-%d").to_string(),
                    status: progress(o.status) as i32,
                    progress_bp: o.progress_bp,
                    rolled_up_from: o.from.clone(),
                    days_late: o.days_late,
                }),
            })
            .collect(),
        own_reports: r.own.iter().map(report_message).collect(),
        city_reports: r.cities.iter().map(report_message).collect(),
        districts_without_plan: r.without_plan.iter().map(rollup_place).collect(),
        generate_time: Some(timestamp(now_ms())),
    }
}

pub(crate) fn counted_project(f: &Fact) -> pb::CountedProject {
    pb::CountedProject {
        project_id: f.project_id.clone(),
        event_id: f.event_id.clone(),
        sequence: f.sequence,
        milestone: f.milestone.number(),
        occurred_time: Some(timestamp(f.occurred_at_ms)),
        count_time: Some(timestamp(f.counted_at_ms)),
        project_title: f.project_title.clone(),
        water_user_name: f.water_user_name.clone(),
        company_name: f.company_name.clone(),
        sector: f.sector.map(|s| s.number()).unwrap_or(0),
        unit_type: f.unit_type.clone(),
        town: f.town.clone(),
        effective_date: f.effective_date.format("%Y-%m-%d").to_string(),
    }
}
