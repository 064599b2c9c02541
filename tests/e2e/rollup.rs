//! The city's roll-up (issue 11 §5): two district plans of Changzhou (320400), Xinbei 320411
//! and Wujin 320412, and the city's own plan; GetRollup sums what adds up and shows every
//! district's row, on both backends.

use cwsm_platform::auth::Role;
use cwsm_proto::reporting::v1 as r;
use cwsm_tests::{Backend, TestApp, postgres_and_redis_available};

const XINBEI_PLAN: &str = include_str!("../../seeds/plans/xinbei-2020.toml");
const AGENCIES: &str = "A2-GOV-AGENCIES";

/// The Xinbei plan as another jurisdiction's: its code and jurisdiction changed.
fn plan_for(code: &str, jurisdiction: &str) -> String {
    XINBEI_PLAN
        .replacen("code = \"xinbei-2020\"", &format!("code = \"{code}\""), 1)
        .replacen(
            "jurisdiction = \"320411\"",
            &format!("jurisdiction = \"{jurisdiction}\""),
            1,
        )
}

fn rid(label: &str) -> String {
    format!("{label}-{}", cwsm_platform::new_id())
}

async fn rollup_sums_districts(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let admin = app.token(Role::Admin, None);
    let mut reporting = app.reporting(&admin);
    for (code, jurisdiction) in [("wujin-2020", "320412"), ("changzhou-2020", "320400")] {
        reporting
            .load_plan(r::LoadPlanRequest {
                request_id: rid("lp"),
                plan_toml: plan_for(code, jurisdiction),
                validate_only: false,
            })
            .await?;
    }
    // Recognized government agencies: one in Xinbei, two in Wujin.
    for (plan, unit) in [
        ("xinbei-2020", "新北区财政局"),
        ("wujin-2020", "武进区财政局"),
        ("wujin-2020", "武进区审计局"),
    ] {
        reporting
            .record_achievement(r::RecordAchievementRequest {
                request_id: rid("ra"),
                plan_code: plan.into(),
                indicator_code: AGENCIES.into(),
                unit_name: unit.into(),
                achieved_date: "2020-06-30".into(),
                evidence: "文号 2020-1".into(),
                value: 1.0,
                ..Default::default()
            })
            .await?;
    }
    let rollup = reporting
        .get_rollup(r::GetRollupRequest {
            jurisdiction_code: "320400".into(),
            as_of_date: "2020-12-31".into(),
            year: 0,
        })
        .await?
        .into_inner()
        .rollup
        .ok_or_else(|| anyhow::anyhow!("no rollup"))?;
    assert_eq!(rollup.year, 2020);
    assert_eq!(
        rollup.place.as_ref().map(|p| p.code.as_str()),
        Some("320400")
    );
    // The city's own plan is reported as itself, not as a district.
    let own: Vec<&str> = rollup
        .own_reports
        .iter()
        .filter_map(|r| r.plan.as_ref().map(|p| p.code.as_str()))
        .collect();
    assert_eq!(own, ["changzhou-2020"]);
    // Changzhou's six districts, two with plans: four without.
    assert_eq!(rollup.districts_without_plan.len(), 4);

    let agencies = rollup
        .indicators
        .iter()
        .find(|i| i.code == AGENCIES)
        .ok_or_else(|| anyhow::anyhow!("no {AGENCIES}"))?;
    let rows: Vec<(&str, &str, f64, f64)> = agencies
        .rows
        .iter()
        .map(|row| {
            (
                row.district.as_ref().map(|d| d.code.as_str()).unwrap_or(""),
                row.plan_code.as_str(),
                row.actual,
                row.target,
            )
        })
        .collect();
    // Each district's target is the plan's 10 agencies.
    assert_eq!(
        rows,
        [
            ("320411", "xinbei-2020", 1.0, 10.0),
            ("320412", "wujin-2020", 2.0, 10.0)
        ]
    );
    // 1 (Xinbei) + 2 (Wujin) = 3 of 10 + 10 = 20.
    assert!(agencies.summed);
    assert_eq!((agencies.total_actual, agencies.total_target), (3.0, 20.0));

    // Every summed indicator equals the sum of the districts' own reports; a rate is shown per
    // district only.
    let mut district_actuals = std::collections::HashMap::new();
    for plan in ["xinbei-2020", "wujin-2020"] {
        let report = reporting
            .get_report(r::GetReportRequest {
                plan_code: plan.into(),
                plan_version: 0,
                as_of_date: "2020-12-31".into(),
            })
            .await?
            .into_inner()
            .report
            .ok_or_else(|| anyhow::anyhow!("no report"))?;
        for line in report.indicators {
            let code = line.indicator.map(|i| i.code).unwrap_or_default();
            *district_actuals.entry(code).or_insert(0.0) += line.actual;
        }
    }
    for i in &rollup.indicators {
        assert_eq!(i.rows.len(), 2, "{}", i.code);
        if i.summed {
            assert_eq!(
                Some(&i.total_actual),
                district_actuals.get(&i.code),
                "{}",
                i.code
            );
        }
    }
    let rate = rollup
        .indicators
        .iter()
        .find(|i| i.code == "A2-SCHOOLS-SUCCESS-RATE")
        .ok_or_else(|| anyhow::anyhow!("no rate"))?;
    assert!(!rate.summed);

    // A district is not rolled up; an unknown code names the known ones.
    for code in ["320411", "329999"] {
        let e = reporting
            .get_rollup(r::GetRollupRequest {
                jurisdiction_code: code.into(),
                ..Default::default()
            })
            .await
            .expect_err(code);
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{code}: {e:?}");
    }
    // The province sees the same two districts.
    let province = reporting
        .get_rollup(r::GetRollupRequest {
            jurisdiction_code: "320000".into(),
            as_of_date: "2020-12-31".into(),
            year: 2020,
        })
        .await?
        .into_inner()
        .rollup
        .ok_or_else(|| anyhow::anyhow!("no rollup"))?;
    let agencies = province
        .indicators
        .iter()
        .find(|i| i.code == AGENCIES)
        .ok_or_else(|| anyhow::anyhow!("no {AGENCIES}"))?;
    assert_eq!(agencies.total_actual, 3.0);
    assert!(province.own_reports.is_empty());
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn city_rollup_equals_the_sum_of_its_districts_on_sqlite() -> anyhow::Result<()> {
    rollup_sums_districts(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn city_rollup_equals_the_sum_of_its_districts_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    rollup_sums_districts(Backend::Postgres).await
}
