//! A benchmark of the report and of applying events (`cwsm report bench`): prints figures, it
//! is not a timed test. It runs on a fresh SQLite database in a temporary folder.

use std::time::{Duration, Instant};

use cwsm_platform::bus::{Envelope, topics};
use cwsm_platform::vocab::{IndicatorTag, Milestone, Sector};
use cwsm_proto::events::v1::ProjectMilestone;
use prost::Message;

use cwsm_platform::gazetteer::Gazetteer;

use crate::Reporting;
use crate::plan::StoredPlan;
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

use cwsm_platform::sample::percentile;

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

    // Computed every time (not the kept report a repeated call gets): the cost after a change.
    let plan = reporting.store.plan_by_code("xinbei-2020", 0).await?;
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        let report = reporting.compute_report(&plan, as_of).await?;
        times.push(t.elapsed());
        std::hint::black_box(report);
    }
    times.sort();
    let midyear = parse_date("2020-06-30").ok_or_else(|| anyhow::anyhow!("date"))?;
    let mut mid = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        let report = reporting.compute_report(&plan, midyear).await?;
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

/// One case of the roll-up benchmark: what changed between its calls, and its times.
#[derive(Clone, Debug)]
pub struct RollupCase {
    /// What is timed, e.g. "province, unchanged since the last call".
    pub name: String,
    pub calls: usize,
    pub p50: Duration,
    pub p99: Duration,
    /// The ceiling the issue sets for its p99, when it sets one.
    pub goal_p99: Option<Duration>,
}

/// Figures of the roll-up case: a province of `districts` districts, each with its plan and
/// `facts_per_district` facts counted.
#[derive(Clone, Debug)]
pub struct RollupFigures {
    pub districts: usize,
    pub facts_per_district: usize,
    /// The province's roll-up as the service computes it (no network: the latest plans read,
    /// the districts' reports kept or computed from their kept counts, grouped), and one
    /// district's report, each with nothing, one district or every district changed between
    /// calls.
    pub cases: Vec<RollupCase>,
    /// The province's A8 total and the sum of its districts' A8, which must be equal.
    pub a8_total: f64,
    pub a8_sum_of_districts: f64,
}

fn case(name: &str, mut times: Vec<Duration>, goal_ms: Option<u64>) -> RollupCase {
    times.sort();
    RollupCase {
        name: name.into(),
        calls: times.len(),
        p50: percentile(&times, 0.50),
        p99: percentile(&times, 0.99),
        goal_p99: goal_ms.map(Duration::from_millis),
    }
}

/// A synthetic province (code 320000) of `districts` districts in cities of up to 10 districts
/// each: the builtin gazetteer has only Changzhou's six.
pub fn synthetic_gazetteer(districts: usize) -> anyhow::Result<Gazetteer> {
    let cities = districts.div_ceil(10).max(1);
    if cities > 99 {
        anyhow::bail!("at most 990 districts");
    }
    let mut text = String::from(
        "version = \"bench\"\nsource = \"synthetic\"\n[[places]]\ncode = \"320000\"\nname_zh = \"江苏省\"\nname = \"Jiangsu\"\n",
    );
    for c in 1..=cities {
        text.push_str(&format!(
            "[[places]]\ncode = \"32{c:02}00\"\nname_zh = \"市{c}\"\nname = \"City {c}\"\n"
        ));
    }
    for d in 0..districts {
        let (c, k) = (d / 10 + 1, d % 10 + 1);
        text.push_str(&format!(
            "[[places]]\ncode = \"32{c:02}{k:02}\"\nname_zh = \"区{c}-{k}\"\nname = \"District {c}-{k}\"\n"
        ));
    }
    Gazetteer::from_sources(&[("bench.toml", &text)]).map_err(|e| anyhow::anyhow!(e))
}

/// Runs the roll-up case in a fresh database under `dir`. The district plans are copies of the
/// Xinbei plan under codes of their own; each counts the same `facts_per_district` facts (so
/// each has that many), and is placed in its synthetic district after it is read (the stored
/// documents name a builtin district), inside the timed part.
pub async fn run_rollup(
    dir: &std::path::Path,
    districts: usize,
    facts_per_district: usize,
    calls: usize,
) -> anyhow::Result<RollupFigures> {
    use std::collections::HashMap;

    use cwsm_platform::auth::{Principal, Role, Scope};
    use cwsm_platform::jurisdiction::Jurisdiction;

    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("bench-rollup-{}.db", cwsm_platform::new_id()));
    let reporting = Reporting::connect(&format!("sqlite://{}", path.display())).await?;
    let gazetteer = synthetic_gazetteer(districts)?;
    let province = gazetteer
        .get(&Jurisdiction::parse("province", "320000")?)
        .ok_or_else(|| anyhow::anyhow!("no province"))?
        .clone();
    let as_of = parse_date("2020-12-31").ok_or_else(|| anyhow::anyhow!("date"))?;
    let start_ms = 1_577_836_800_000i64;
    let span_ms = 364 * 86_400_000i64;
    let at = |n: usize| {
        let n = u64::try_from(n).unwrap_or(0);
        start_ms + i64::try_from(n.wrapping_mul(2_654_435_761) % span_ms as u64).unwrap_or(0)
    };
    let all: Vec<Fact> = (0..facts_per_district)
        .map(|n| fact(n, MILESTONES[n % 3], at(n)))
        .collect();
    for chunk in all.chunks(10_000) {
        reporting.store.insert_facts(chunk).await?;
    }
    let operator = Principal {
        subject: "bench".into(),
        role: Role::Admin,
        org: None,
        scope: Scope::Platform,
    };
    let mut placed: HashMap<String, Jurisdiction> = HashMap::new();
    for (k, district) in gazetteer.districts_within(&province.code).enumerate() {
        let code = format!("bench-{k:03}");
        let toml = crate::plan::DEFAULT_PLAN_TOML.replacen(
            "code = \"xinbei-2020\"",
            &format!("code = \"{code}\""),
            1,
        );
        reporting
            .load_plan(
                &operator,
                &format!("load-{code}"),
                toml.as_bytes(),
                &toml,
                false,
            )
            .await?;
        placed.insert(code, district.code.clone());
    }
    // The synthetic districts are not in the builtin gazetteer the loader checks against: each
    // plan is placed in its district once, and every call reads the latest plans (the query
    // and the plans kept in memory, as a real roll-up does) and takes the placed copy of each.
    let placed: HashMap<String, std::sync::Arc<StoredPlan>> = reporting
        .store
        .latest_plans()
        .await?
        .into_iter()
        .filter_map(|p| {
            let j = placed.get(&p.plan.code)?;
            let mut p = StoredPlan::clone(&p);
            p.plan.jurisdiction = j.clone();
            Some((p.id.clone(), std::sync::Arc::new(p)))
        })
        .collect();
    let place_plans = |plans: Vec<std::sync::Arc<StoredPlan>>| -> Vec<std::sync::Arc<StoredPlan>> {
        plans
            .iter()
            .filter_map(|p| placed.get(&p.id).cloned())
            .collect()
    };

    let plans = place_plans(reporting.store.latest_plans().await?);
    let ids: Vec<&str> = plans.iter().map(|p| p.id.as_str()).collect();
    let rollup_once = || async {
        let t = Instant::now();
        let plans = place_plans(reporting.store.latest_plans().await?);
        let (own, inside) = crate::rollup::select(&gazetteer, &province.code, 2020, &plans);
        let rollup = reporting
            .rollup_of(&gazetteer, &province, 2020, as_of, &own, &[], &inside)
            .await?;
        anyhow::Ok((t.elapsed(), rollup))
    };
    // Every district changed: each report computed (the first call after a restart, too).
    let mut every = Vec::new();
    for _ in 0..calls.clamp(1, 5) {
        reporting.store.mark_changed(&ids).await?;
        every.push(rollup_once().await?.0);
    }
    // One district changed between calls, in turn: one report computed, the rest kept.
    let mut one_changed = Vec::with_capacity(calls);
    for k in 0..calls {
        if let Some(id) = ids.get(k % ids.len().max(1)) {
            reporting.store.mark_changed(&[id]).await?;
        }
        one_changed.push(rollup_once().await?.0);
    }
    // Nothing changed: every report kept.
    let mut unchanged = Vec::with_capacity(calls);
    let mut last = None;
    for _ in 0..calls {
        let (elapsed, rollup) = rollup_once().await?;
        unchanged.push(elapsed);
        last = Some(rollup);
    }
    let rollup = last.ok_or_else(|| anyhow::anyhow!("no calls"))?;
    let a8 = rollup
        .lines
        .iter()
        .find(|l| l.code == "A8-CONTRACT-PROJECTS")
        .ok_or_else(|| anyhow::anyhow!("no A8 in the roll-up"))?;
    let a8_total = a8.total.map(|t| t.actual).unwrap_or(f64::NAN);
    let a8_sum_of_districts = a8.rows.iter().map(|r| r.actual).sum();
    if a8.rows.len() != districts {
        anyhow::bail!("{} district rows, not {districts}", a8.rows.len());
    }

    let one = reporting.store.plan_by_code("bench-000", 0).await?;
    let mut district_kept = Vec::with_capacity(calls);
    let mut district_changed = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        std::hint::black_box(reporting.report_of(&one, as_of).await?);
        district_kept.push(t.elapsed());
        reporting.store.mark_changed(&[one.id.as_str()]).await?;
        let t = Instant::now();
        std::hint::black_box(reporting.report_of(&one, as_of).await?);
        district_changed.push(t.elapsed());
    }
    reporting.db().close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let cases = vec![
        case(
            "province, unchanged since the last call",
            unchanged,
            Some(10),
        ),
        case(
            "province, one district changed between calls",
            one_changed,
            Some(10),
        ),
        case("province, every district changed", every, None),
        case("one district, unchanged", district_kept, Some(2)),
        case(
            "one district, changed between calls",
            district_changed,
            Some(2),
        ),
    ];
    Ok(RollupFigures {
        districts,
        facts_per_district,
        cases,
        a8_total,
        a8_sum_of_districts,
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

    #[tokio::test]
    async fn a_small_rollup_bench_runs_and_its_total_is_the_sum() {
        let dir = std::env::temp_dir().join(format!("cwsm-bench-{}", cwsm_platform::new_id()));
        let f = super::run_rollup(&dir, 12, 60, 2).await.expect("bench");
        assert_eq!(f.districts, 12);
        // Every district plan counts the same facts: the total is 12 times one district's.
        assert_eq!(f.a8_total, f.a8_sum_of_districts);
        let _ = std::fs::remove_dir_all(dir);
    }
}
