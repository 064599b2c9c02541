//! The demo tells the truth about time and place (issue 11 §4 §5): `cwsm serve --demo` enters
//! its 2020 projects with their 2020 milestones and records 2020 achievements, so the Xinbei
//! 2020 report as of its window's end shows a believable mix of statuses; and it loads a second
//! district of Changzhou (Wujin), so the city's and province's roll-ups add two districts up.
//! On both backends.

use cwsm_platform::auth::Role;
use cwsm_proto::reporting::v1 as r;
use cwsm_tests::{Backend, TestApp, eventually, postgres_and_redis_available};

use super::WAIT;

/// What the Xinbei 2020 report as of 2020-12-31 shows over the demo (seeds/demo/marketplace.toml,
/// `[[history]]` and `[[achievements]]`): indicator, status, actual, days late.
const XINBEI_EXPECTED: [(&str, r::ProgressStatus, f64, i32); 6] = [
    ("A8-CONTRACT-PROJECTS", r::ProgressStatus::Achieved, 3.0, 0),
    // The second industrial retrofit passed acceptance 2020-12-18, after 2020-11-30.
    (
        "A7-TECH-RETROFITS",
        r::ProgressStatus::AchievedLate,
        2.0,
        18,
    ),
    ("A3-WATER-AUDITS", r::ProgressStatus::Achieved, 3.0, 0),
    // The third community on 2020-12-10, after 2020-11-30.
    ("A2-COMMUNITIES", r::ProgressStatus::AchievedLate, 3.0, 10),
    // 4 of 10, due 2020-12-31: on its deadline day, at risk, not yet missed.
    ("A2-GOV-AGENCIES", r::ProgressStatus::AtRisk, 4.0, 0),
    // Nothing recorded, due 2020-10-31: missed.
    (
        "A6-WATER-EFFICIENCY-LEADER",
        r::ProgressStatus::Missed,
        0.0,
        0,
    ),
];

fn line<'a>(report: &'a r::Report, code: &str) -> Option<&'a r::IndicatorStatus> {
    report
        .indicators
        .iter()
        .find(|l| l.indicator.as_ref().is_some_and(|i| i.code == code))
}

fn seen(report: &r::Report) -> Vec<(String, i32, f64, i32)> {
    XINBEI_EXPECTED
        .iter()
        .map(|(code, _, _, _)| {
            let l = line(report, code);
            (
                code.to_string(),
                l.map_or(-1, |l| l.status),
                l.map_or(-1.0, |l| l.actual),
                l.map_or(-1, |l| l.days_late),
            )
        })
        .collect()
}

async fn demo_reports_2020(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let admin = app.token(Role::Admin, None);
    cwsm::demo::load(app.channel.clone(), &app.keys).await?;
    let expected: Vec<(String, i32, f64, i32)> = XINBEI_EXPECTED
        .iter()
        .map(|(c, s, a, d)| (c.to_string(), *s as i32, *a, *d))
        .collect();
    // The default as-of of a 2020 plan read after 2020 is its window's end.
    let get = || async {
        app.reporting(&admin)
            .get_report(r::GetReportRequest {
                plan_code: "xinbei-2020".into(),
                ..Default::default()
            })
            .await
            .ok()?
            .into_inner()
            .report
    };
    let report = eventually(WAIT, || async {
        let report = get().await?;
        (seen(&report) == expected).then_some(report)
    })
    .await;
    let Some(report) = report else {
        let now = get().await.map(|r| seen(&r));
        anyhow::bail!("the Xinbei 2020 report never showed {expected:?}; it shows {now:?}");
    };
    assert_eq!(report.as_of_date, "2020-12-31");

    // The roll-ups: Changzhou (320400) and Jiangsu (320000) show both districts, the totals the
    // sum of their rows.
    for place in ["320400", "320000"] {
        let want = [
            ("A8-CONTRACT-PROJECTS", 3.0, 2.0),
            ("A7-TECH-RETROFITS", 2.0, 1.0),
            ("A2-GOV-AGENCIES", 4.0, 1.0),
        ];
        let rollup = eventually(WAIT, || async {
            let rollup = app
                .reporting(&admin)
                .get_rollup(r::GetRollupRequest {
                    jurisdiction_code: place.into(),
                    as_of_date: "2020-12-31".into(),
                    year: 0,
                })
                .await
                .ok()?
                .into_inner()
                .rollup?;
            let rows = |code: &str| -> Option<(f64, f64)> {
                let i = rollup.indicators.iter().find(|i| i.code == code)?;
                let of = |d: &str| {
                    i.rows
                        .iter()
                        .find(|r| r.district.as_ref().is_some_and(|p| p.code == d))
                        .map(|r| r.actual)
                };
                Some((of("320411")?, of("320412")?))
            };
            want.iter()
                .all(|(code, xb, wj)| rows(code) == Some((*xb, *wj)))
                .then_some(rollup)
        })
        .await
        .ok_or_else(|| anyhow::anyhow!("the {place} roll-up never showed both districts"))?;
        for (code, xb, wj) in want {
            let i = rollup
                .indicators
                .iter()
                .find(|i| i.code == code)
                .ok_or_else(|| anyhow::anyhow!("{place}: no {code}"))?;
            assert!(i.summed, "{place} {code} adds up");
            assert_eq!(i.rows.len(), 2, "{place} {code}: {:?}", i.rows);
            let sum: f64 = i.rows.iter().map(|r| r.actual).sum();
            assert_eq!(i.total_actual, sum, "{place} {code}");
            assert_eq!(i.total_actual, xb + wj, "{place} {code}");
        }
    }
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_reports_2020_with_two_districts_on_sqlite() -> anyhow::Result<()> {
    demo_reports_2020(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_reports_2020_with_two_districts_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    demo_reports_2020(Backend::Postgres).await
}
