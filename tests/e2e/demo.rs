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
    // 4 of 10, due 2020-12-31: as of its deadline day, read after that day is over, missed
    // (at risk only while the day lasts).
    ("A2-GOV-AGENCIES", r::ProgressStatus::Missed, 4.0, 0),
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

    // A participating department's entries (the ecology and environment bureau's, signed in as
    // its person): one waits for approval, the district office rejected the other with its
    // reason; neither counts (A2-GOV-AGENCIES stays at 4 above).
    let in_state = |state: r::AchievementState| {
        let mut reporting = app.reporting(&admin);
        async move {
            anyhow::Ok(
                reporting
                    .list_achievements(r::ListAchievementsRequest {
                        plan_code: "xinbei-2020".into(),
                        state: state as i32,
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .achievements,
            )
        }
    };
    let pending = in_state(r::AchievementState::Pending).await?;
    let units: Vec<(&str, &str)> = pending
        .iter()
        .map(|a| (a.unit_name.as_str(), a.department.as_str()))
        .collect();
    assert_eq!(units, [("新北区生态环境局", "ecoenv")]);
    let rejected = in_state(r::AchievementState::Rejected).await?;
    let reasons: Vec<(&str, &str)> = rejected
        .iter()
        .map(|a| {
            let reason = a.revisions.last().map_or("", |r| r.reason.as_str());
            (a.unit_name.as_str(), reason)
        })
        .collect();
    assert_eq!(
        reasons,
        [(
            "新北区环境监测站",
            "未附区节水办命名文件，自评报告不能作为命名依据"
        )]
    );

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

/// The Xinbei view's A7 row and its link to the roll-up, once drawn.
const READ_A7: &str = r#"
var row = document.querySelector('tr[data-code="A7-TECH-RETROFITS"]');
if (!row || document.body.getAttribute('data-ready') !== '1') return null;
var link = document.getElementById('rollup-link');
var recorded = document.querySelectorAll('#achievements tr[data-achievement]');
var states = Array.prototype.map.call(recorded, function (r) { return r.getAttribute('data-state') + ' ' + r.querySelector('.state').textContent; });
return { status: row.getAttribute('data-status'), pill: row.querySelector('.status').textContent, states: states,
         link: link && !link.hidden ? link.getAttribute('href') : null,
         csp: document.body.getAttribute('data-csp-violations') };
"#;

/// The roll-up page's A8 table: its district rows and its total, once drawn.
const READ_ROLLUP: &str = r#"
if (document.body.getAttribute('data-ready') !== '1') return null;
var box = document.querySelector('.rollup-indicator[data-code="A8-CONTRACT-PROJECTS"]');
var a7 = document.querySelector('.rollup-indicator[data-code="A7-TECH-RETROFITS"] tr[data-district="320411"] .status');
if (!box) return null;
var rows = Array.prototype.map.call(box.querySelectorAll('tr[data-district]'), function (r) {
  return [r.getAttribute('data-district'), r.querySelector('.actual').textContent]; });
var total = box.querySelector('tr[data-total] .actual');
return { rows: rows, total: total ? total.textContent : null, a7_xinbei: a7 ? a7.textContent : null,
         title: document.getElementById('place-title').textContent,
         as_of: document.getElementById('as-of').textContent,
         csp: document.body.getAttribute('data-csp-violations') };
"#;

/// The dashboard over the demo: the Xinbei 2020 view shows achieved late with its days
/// (逾期完成（晚18天）), links to Changzhou's roll-up, and the roll-up page shows both districts
/// and their total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_late_statuses_and_the_rollup_over_the_demo() -> anyhow::Result<()> {
    use cwsm_tests::web::{Browser, http};
    let app = TestApp::start(Backend::Sqlite).await?;
    let admin = app.token(Role::Admin, None);
    cwsm::demo::load(app.channel.clone(), &app.keys).await?;
    let addr = app
        .running
        .as_ref()
        .map(|r| r.addr.to_string())
        .ok_or_else(|| anyhow::anyhow!("not running"))?;
    let cookie = format!("cwsm_dashboard_token={admin}");
    // The data the pages draw.
    let rollup = eventually(WAIT, || async {
        let v = http(
            &addr,
            "GET",
            "/dashboard/rollup.json?place=320400&year=2020",
            &[("Cookie", cookie.as_str())],
            None,
        )
        .await
        .ok()?
        .json()
        .ok()?;
        let a8 = v["indicators"]
            .as_array()?
            .iter()
            .find(|i| i["code"] == "A8-CONTRACT-PROJECTS")?
            .clone();
        (a8["total_actual"].as_f64() == Some(5.0)).then_some(v)
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("rollup.json never totalled A8 = 5 over Xinbei and Wujin"))?;
    assert_eq!(rollup["as_of"], "2020-12-31");
    assert_eq!(rollup["place"]["name_zh"], "常州市");
    // Another role: refused, as on the district view.
    let company = app.token(
        Role::Company,
        Some(&cwsm_tests::fresh_credit_code("91320411MA")),
    );
    let denied = http(
        &addr,
        "GET",
        &format!("/dashboard/rollup?token={company}"),
        &[],
        None,
    )
    .await?;
    assert_eq!(denied.status, 403);
    assert_eq!(
        http(&addr, "GET", "/dashboard/rollup.json", &[], None)
            .await?
            .status,
        401
    );

    let Some(browser) = Browser::start().await? else {
        return app.stop().await;
    };
    let result = async {
        browser
            .open(&format!(
                "http://{addr}/dashboard?token={admin}&plan=xinbei-2020&lang=zh"
            ))
            .await?;
        let a7 = eventually(WAIT, || async {
            browser.eval(READ_A7).await.ok().filter(|v| !v.is_null())
        })
        .await
        .ok_or_else(|| anyhow::anyhow!("the dashboard never showed A7"))?;
        assert_eq!(a7["status"], "achieved_late", "{a7}");
        assert_eq!(a7["pill"], "逾期完成（晚18天）", "{a7}");
        // The demo's twelve Xinbei achievements: ten recorded by the district office, approved
        // (已通过); of the ecology bureau's two, one waits (待审核) and the office rejected one
        // (已驳回, with its reason).
        let states = a7["states"].as_array().cloned().unwrap_or_default();
        assert_eq!(states.len(), 12, "{a7}");
        let of = |state: &str| {
            states
                .iter()
                .filter(|s| s.as_str().is_some_and(|s| s.starts_with(state)))
                .count()
        };
        assert_eq!(
            (
                of("approved 已通过"),
                of("pending 待审核"),
                of("rejected 已驳回：未附区节水办命名文件")
            ),
            (10, 1, 1),
            "{a7}"
        );
        let link = a7["link"].as_str().unwrap_or("").to_string();
        assert!(
            link.starts_with("/dashboard/rollup?place=320400&year=2020"),
            "{a7}"
        );
        browser.open(&format!("http://{addr}{link}")).await?;
        let page = eventually(WAIT, || async {
            browser
                .eval(READ_ROLLUP)
                .await
                .ok()
                .filter(|v| !v.is_null())
        })
        .await
        .ok_or_else(|| anyhow::anyhow!("the roll-up page never drew A8"))?;
        assert_eq!(
            page["rows"],
            serde_json::json!([["320411", "3"], ["320412", "2"]]),
            "{page}"
        );
        assert_eq!(page["total"], "5", "{page}");
        assert_eq!(page["a7_xinbei"], "逾期完成（晚18天）", "{page}");
        assert!(
            page["title"].as_str().unwrap_or("").contains("常州市"),
            "{page}"
        );
        assert!(
            page["as_of"].as_str().unwrap_or("").contains("2020-12-31"),
            "{page}"
        );
        assert!(page["csp"].is_null(), "CSP violations: {page}");
        let _ = browser.screenshot("/tmp/dashboard-rollup.png").await;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    browser.quit().await;
    result?;
    app.stop().await
}
