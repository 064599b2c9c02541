//! A benchmark of the report and of applying events (`cwsm report bench`): prints figures, it
//! is not a timed test. It runs on a fresh SQLite database in a temporary folder.

use std::time::{Duration, Instant};

use cwsm_platform::bus::{Envelope, topics};
use cwsm_platform::vocab::{IndicatorTag, Milestone, Sector};
use cwsm_proto::events::v1::ProjectMilestone;
use prost::Message;

use crate::Reporting;
use crate::report::{Fact, parse_date};

/// Figures of one run.
#[derive(Clone, Debug)]
pub struct Figures {
    /// Milestone facts in the database.
    pub facts: usize,
    /// Distinct projects among them.
    pub projects: usize,
    /// GetReport as computed by the service (no network), over `calls` calls.
    pub calls: usize,
    pub report_p50: Duration,
    pub report_p99: Duration,
    pub report_max: Duration,
    /// The same as of mid-year (2020-06-30), before the last change: it sums the changes by
    /// day, town and sector instead of reading the running totals.
    pub midyear_p50: Duration,
    pub midyear_p99: Duration,
    /// Events applied per second through the consumer's handler (decode, one transaction
    /// with the processed-event record), one at a time.
    pub apply_per_second: f64,
    /// From handing a new event to the consumer until a report computed after it counts it.
    pub reflect_p50: Duration,
    pub reflect_p99: Duration,
}

const TOWNS: [&str; 6] = [
    "新桥街道",
    "薛家镇",
    "罗溪镇",
    "西夏墅镇",
    "孟河镇",
    "春江街道",
];
const MILESTONES: [Milestone; 3] = [
    Milestone::Contracted,
    Milestone::Accepted,
    Milestone::HandedOver,
];

fn fact(n: usize, milestone: Milestone, occurred_at_ms: i64) -> Fact {
    let project = n / 3;
    let sectors = Sector::ALL;
    Fact {
        event_id: format!("bench-{n}-{}", milestone.code()),
        project_id: format!("bench-project-{project}"),
        sequence: i64::try_from(n).unwrap_or(i64::MAX),
        milestone,
        occurred_at_ms,
        counted_at_ms: occurred_at_ms,
        effective_date: crate::report::cst_date(occurred_at_ms),
        jurisdiction: cwsm_platform::jurisdiction::Jurisdiction::default_district(),
        investment_fen: 0,
        period_id: String::new(),
        period_savings_litres: 0,
        sector: Some(sectors[project % sectors.len()]),
        unit_type: if project.is_multiple_of(4) {
            "university".into()
        } else {
            "factory".into()
        },
        town: TOWNS[project % TOWNS.len()].into(),
        tags: if project.is_multiple_of(5) {
            vec![
                IndicatorTag::ContractProject,
                IndicatorTag::TechnicalRetrofit,
            ]
        } else {
            vec![IndicatorTag::ContractProject]
        },
        project_title: format!("Bench project {project}"),
        company_id: String::new(),
        company_name: String::new(),
        water_user_credit_code: String::new(),
        water_user_name: String::new(),
    }
}

fn envelope(f: &Fact) -> Envelope {
    let payload = ProjectMilestone {
        event_id: f.event_id.clone(),
        project_id: f.project_id.clone(),
        sequence: f.sequence,
        milestone: f.milestone.number(),
        occurred_time: Some(cwsm_platform::grpc::timestamp(f.occurred_at_ms)),
        project_title: f.project_title.clone(),
        sector: f.sector.map(|s| s.number()).unwrap_or(0),
        unit_type: f.unit_type.clone(),
        town: f.town.clone(),
        indicator_tags: f.tags.iter().map(|t| t.number()).collect(),
        ..Default::default()
    };
    Envelope {
        event_id: f.event_id.clone(),
        topic: topics::PROJECT_MILESTONES.into(),
        kind: topics::PROJECT_MILESTONE_KIND.into(),
        payload: payload.encode_to_vec(),
        occurred_at_ms: f.occurred_at_ms,
        trace_parent: String::new(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Runs the benchmark with `facts` milestone facts (a third each contracted, accepted and
/// handed over) in a fresh database under `dir`.
pub async fn run(dir: &std::path::Path, facts: usize, calls: usize) -> anyhow::Result<Figures> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("bench-{}.db", cwsm_platform::new_id()));
    let reporting = Reporting::connect(&format!("sqlite://{}", path.display())).await?;
    reporting.seed_default_plan().await?;
    let as_of = parse_date("2020-12-31").ok_or_else(|| anyhow::anyhow!("date"))?;
    // Spread over the plan year, 2020-01-01 … 2020-12-30 (UTC).
    let start_ms = 1_577_836_800_000i64;
    let span_ms = 364 * 86_400_000i64;
    // Scattered over the whole year (a multiplicative hash of n).
    let at = |n: usize| {
        let n = u64::try_from(n).unwrap_or(0);
        start_ms + i64::try_from(n.wrapping_mul(2_654_435_761) % span_ms as u64).unwrap_or(0)
    };
    let all: Vec<Fact> = (0..facts)
        .map(|n| fact(n, MILESTONES[n % 3], at(n)))
        .collect();

    // The apply rate: the first events one by one through the consumer's handler.
    let handler = reporting.event_handler();
    let one_by_one = all.len().min(2_000);
    let started = Instant::now();
    for f in &all[..one_by_one] {
        handler.handle(&envelope(f)).await?;
    }
    let apply_per_second = one_by_one as f64 / started.elapsed().as_secs_f64().max(1e-9);
    // The rest in bulk.
    for chunk in all[one_by_one..].chunks(10_000) {
        reporting.store.insert_facts(chunk).await?;
    }

    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        let report = reporting.report("xinbei-2020", 0, as_of).await?;
        times.push(t.elapsed());
        std::hint::black_box(report);
    }
    times.sort();
    let midyear = parse_date("2020-06-30").ok_or_else(|| anyhow::anyhow!("date"))?;
    let mut mid = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        let report = reporting.report("xinbei-2020", 0, midyear).await?;
        mid.push(t.elapsed());
        std::hint::black_box(report);
    }
    mid.sort();

    let mut reflect = Vec::new();
    for k in 0..20 {
        // A contract signed: what A8 counts.
        let n = 3 * (facts + k);
        let mut new = fact(n, Milestone::Contracted, at(n));
        new.sector = Some(Sector::School);
        let before = reporting.report("xinbei-2020", 0, as_of).await?;
        let count = |r: &crate::report::Report| {
            r.lines
                .iter()
                .find(|l| l.indicator.code == "A8-CONTRACT-PROJECTS")
                .map(|l| l.actual)
                .unwrap_or(0.0)
        };
        let was = count(&before);
        let t = Instant::now();
        handler.handle(&envelope(&new)).await?;
        let after = reporting.report("xinbei-2020", 0, as_of).await?;
        let elapsed = t.elapsed();
        if count(&after) <= was {
            anyhow::bail!("the new event was not reflected in the report");
        }
        reflect.push(elapsed);
    }
    reflect.sort();
    let projects = facts.div_ceil(3);
    reporting.db().close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(Figures {
        facts,
        projects,
        calls,
        report_p50: percentile(&times, 0.50),
        report_p99: percentile(&times, 0.99),
        report_max: times.last().copied().unwrap_or_default(),
        midyear_p50: percentile(&mid, 0.50),
        midyear_p99: percentile(&mid, 0.99),
        apply_per_second,
        reflect_p50: percentile(&reflect, 0.50),
        reflect_p99: percentile(&reflect, 0.99),
    })
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_small_bench_runs() {
        let dir = std::env::temp_dir().join(format!("cwsm-bench-{}", cwsm_platform::new_id()));
        let f = super::run(&dir, 300, 3).await.expect("bench");
        assert_eq!(f.facts, 300);
        assert!(f.apply_per_second > 0.0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
