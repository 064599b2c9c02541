//! End-to-end tests of the reporting service in depth (see its issue): the dashboard in a real
//! headless browser (Debian's chromium driven over WebDriver by chromedriver), seeing a project
//! completed through gRPC without a reload; the rebuild of counts from the projects service's
//! milestone log; export; plan versions over gRPC.

use std::time::Duration;

use cwsm_platform::auth::Role;
use cwsm_proto::projects::v1 as p;
use cwsm_proto::reporting::v1 as r;
use cwsm_tests::web::{Browser, Reply, http};
use cwsm_tests::{Backend, TestApp, contract_a_project, eventually, postgres_and_redis_available};

use crate::projects::{Calendar, measure_and_settle, set_baseline};
use serde_json::{Value, json};

const A8: &str = "A8-CONTRACT-PROJECTS";
const WAIT: Duration = Duration::from_secs(20);
const SCREENSHOT: &str = "/tmp/dashboard.png";

/// The A8 row as the page shows it: (actual text, status, page generation).
const READ_A8: &str = r#"
var row = document.querySelector('tr[data-code="A8-CONTRACT-PROJECTS"]');
if (!row || document.body.getAttribute('data-ready') !== '1') return null;
return { actual: row.querySelector('.actual').textContent, status: row.getAttribute('data-status'),
         pill: row.querySelector('.status').textContent, generation: document.body.getAttribute('data-generation'),
         marker: window.__cwsm_marker || null, live: document.getElementById('live').getAttribute('data-state') };
"#;

async fn a8_in_page(browser: &Browser) -> Option<Value> {
    browser.eval(READ_A8).await.ok().filter(|v| !v.is_null())
}

async fn a8_counted(app: &TestApp, admin: &str) -> Option<f64> {
    let report = app
        .reporting(admin)
        .get_report(r::GetReportRequest {
            plan_code: "xinbei-2020".into(),
            plan_version: 0,
            as_of_date: String::new(),
        })
        .await
        .ok()?
        .into_inner()
        .report?;
    report
        .indicators
        .iter()
        .find(|s| s.indicator.as_ref().is_some_and(|i| i.code == A8))
        .map(|s| s.actual)
}

/// Contracts a project in `town` and moves it to completion (handed over), each step by the
/// party whose step it is, with a settled period before the hand-over.
async fn complete_a_project(app: &TestApp, town: &str) -> anyhow::Result<String> {
    let c = contract_a_project(app, town).await?;
    let calendar = Calendar::now();
    set_baseline(app, &c.user_token, &c.project_id, &calendar).await?;
    for (stage, token) in [
        (p::ProjectStage::Implementing, &c.company_token),
        (p::ProjectStage::Commissioned, &c.company_token),
        (p::ProjectStage::Accepted, &c.user_token),
        (p::ProjectStage::Operating, &c.company_token),
        (p::ProjectStage::HandedOver, &c.user_token),
    ] {
        if stage == p::ProjectStage::HandedOver {
            measure_and_settle(app, &c.project_id, &c.company_token, &calendar).await?;
        }
        app.projects(token)
            .transition_project(p::TransitionProjectRequest {
                request_id: format!("move-{}", cwsm_platform::new_id()),
                project_id: c.project_id.clone(),
                to_stage: stage as i32,
                reason: String::new(),
                expected_version: 0,
                evidence: format!("{} report 2020-001", stage.as_str_name()),
                effective_date: String::new(),
            })
            .await?;
    }
    Ok(c.project_id)
}

// ---------------------------------------------------------------------------------------------
// The dashboard

/// The security headers every dashboard response carries.
fn assert_hardened(reply: &Reply, what: &str) {
    let head = reply.headers.to_lowercase();
    for needle in [
        "content-security-policy: default-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
        "referrer-policy: no-referrer",
    ] {
        assert!(
            head.contains(needle),
            "{what}: no {needle:?} in\n{}",
            reply.headers
        );
    }
    assert!(
        !head.contains("unsafe-inline"),
        "{what}: the policy allows inline code\n{}",
        reply.headers
    );
}

/// The dashboard's answers of every kind (page, denied pages, static files, JSON, JSON errors,
/// a path it does not have, exports) carry the security headers; JSON errors do not echo markup;
/// the session cookie is HttpOnly and SameSite=Strict, and not Secure over plain HTTP (nor on an
/// `X-Forwarded-Proto` the settings do not trust).
async fn dashboard_headers(addr: &str, admin: &str, company: &str) -> anyhow::Result<()> {
    let cookie = format!("cwsm_dashboard_token={admin}");
    let with_cookie: &[(&str, &str)] = &[("Cookie", &cookie)];
    // What, path, request headers, expected status.
    type Case<'a> = (&'a str, String, &'a [(&'a str, &'a str)], u16);
    let cases: Vec<Case> = vec![
        ("the page", format!("/dashboard?token={admin}"), &[], 200),
        ("401 page", "/dashboard".into(), &[], 401),
        ("403 page", format!("/dashboard?token={company}"), &[], 403),
        ("401 JSON", "/dashboard/data.json".into(), &[], 401),
        ("app.js", "/dashboard/app.js".into(), &[], 200),
        ("app.css", "/dashboard/app.css".into(), &[], 200),
        ("data.json", "/dashboard/data.json".into(), with_cookie, 200),
        (
            "JSON error",
            "/dashboard/data.json?date=%3Cscript%3Ealert(1)%3C/script%3E".into(),
            with_cookie,
            400,
        ),
        (
            "unknown plan",
            "/dashboard/data.json?plan=%3Cimg%20src=x%20onerror=alert(1)%3E".into(),
            with_cookie,
            404,
        ),
        ("404", "/dashboard/nothing-here".into(), with_cookie, 404),
        (
            "roll-up page",
            format!("/dashboard/rollup?token={admin}"),
            &[],
            200,
        ),
        (
            "roll-up 403 page",
            format!("/dashboard/rollup?token={company}"),
            &[],
            403,
        ),
        ("rollup.js", "/dashboard/rollup.js".into(), &[], 200),
        (
            "rollup.json",
            "/dashboard/rollup.json".into(),
            with_cookie,
            200,
        ),
        (
            "rollup.json, a district",
            "/dashboard/rollup.json?place=320411".into(),
            with_cookie,
            400,
        ),
        ("CSV", "/dashboard/export.csv".into(), with_cookie, 200),
        ("xlsx", "/dashboard/export.xlsx".into(), with_cookie, 200),
    ];
    for (what, path, headers, status) in cases {
        let reply = http(addr, "GET", &path, headers, None).await?;
        assert_eq!(reply.status, status, "{what}: {}", reply.text());
        assert_hardened(&reply, what);
        if reply.headers.to_lowercase().contains("application/json") {
            let text = reply.text();
            assert!(
                !text.contains('<') && !text.contains('>'),
                "{what}: markup in JSON: {text}"
            );
            reply.json()?;
        }
    }
    let error = http(
        addr,
        "GET",
        "/dashboard/data.json?date=%3Cscript%3E",
        with_cookie,
        None,
    )
    .await?;
    assert!(
        error.text().contains("\\u003cscript\\u003e"),
        "{}",
        error.text()
    );
    // The session cookie: HttpOnly, SameSite=Strict; not Secure over plain HTTP, and a forwarded
    // "https" from a proxy the settings do not trust changes nothing.
    for forwarded in [None, Some("https")] {
        let headers: Vec<(&str, &str)> = forwarded
            .map(|f| vec![("X-Forwarded-Proto", f)])
            .unwrap_or_default();
        let page = http(
            addr,
            "GET",
            &format!("/dashboard?token={admin}"),
            &headers,
            None,
        )
        .await?;
        let set_cookie = page
            .headers
            .lines()
            .find(|l| l.to_lowercase().starts_with("set-cookie:"))
            .unwrap_or("")
            .to_lowercase();
        assert!(
            set_cookie.contains("httponly") && set_cookie.contains("samesite=strict"),
            "{set_cookie}"
        );
        assert!(!set_cookie.contains("secure"), "{set_cookie}");
    }
    Ok(())
}

async fn dashboard(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    // The projects below take effect today: counted by a plan for this year.
    cwsm_tests::count_this_year(app.reporting(&app.token(Role::Admin, None))).await?;
    let addr = app
        .running
        .as_ref()
        .map(|r| r.addr.to_string())
        .ok_or_else(|| anyhow::anyhow!("not running"))?;
    let admin = app.token(Role::Admin, None);
    let company = app.token(
        Role::Company,
        Some(&cwsm_tests::fresh_credit_code("91320411MA")),
    );

    // Over plain HTTP on the gRPC port: no token, 401 with a page that says why; another
    // role, 403; an administrator, the page and its data.
    let denied = http(&addr, "GET", "/dashboard", &[], None).await?;
    assert_eq!(denied.status, 401);
    assert!(denied.text().contains("cwsm token issue --role admin"));
    let forbidden = http(
        &addr,
        "GET",
        &format!("/dashboard?token={company}"),
        &[],
        None,
    )
    .await?;
    assert_eq!(forbidden.status, 403);
    let json_denied = http(&addr, "GET", "/dashboard/data.json", &[], None).await?;
    assert_eq!(json_denied.status, 401);
    let page = http(
        &addr,
        "GET",
        &format!("/dashboard?token={admin}"),
        &[],
        None,
    )
    .await?;
    assert_eq!(page.status, 200);
    assert!(
        page.headers
            .to_lowercase()
            .contains("set-cookie: cwsm_dashboard_token="),
        "{}",
        page.headers
    );
    assert!(page.text().contains("/dashboard/app.js"));
    let cookie = format!("cwsm_dashboard_token={admin}");
    let data = http(
        &addr,
        "GET",
        "/dashboard/data.json?plan=xinbei-2020",
        &[("Cookie", &cookie)],
        None,
    )
    .await?
    .json()?;
    let a8 = |d: &Value| {
        d["indicators"]
            .as_array()
            .and_then(|list| list.iter().find(|i| i["code"] == A8).cloned())
            .unwrap_or(Value::Null)
    };
    assert_eq!(a8(&data)["actual"], json!(0.0));
    assert_eq!(data["indicators"].as_array().map(Vec::len), Some(18));
    let xlsx = http(
        &addr,
        "GET",
        "/dashboard/export.xlsx",
        &[("Cookie", &cookie)],
        None,
    )
    .await?;
    assert_eq!(xlsx.status, 200);
    assert!(xlsx.body.starts_with(b"PK"));
    // gRPC still answers on the same port.
    assert_eq!(a8_counted(&app, &admin).await, Some(0.0));
    dashboard_headers(&addr, &admin, &company).await?;

    let Some(browser) = Browser::start().await? else {
        // Without a browser: the JSON the page draws changes after a completion.
        complete_a_project(&app, "新桥街道").await?;
        let changed = eventually(WAIT, || async {
            let d = http(
                &addr,
                "GET",
                "/dashboard/data.json",
                &[("Cookie", cookie.as_str())],
                None,
            )
            .await
            .ok()?
            .json()
            .ok()?;
            a8(&d)["actual"].as_f64().filter(|n| *n >= 1.0)
        })
        .await;
        assert_eq!(changed, Some(1.0));
        return app.stop().await;
    };
    let result = async {
        browser
            .open(&format!("http://{addr}/dashboard?token={admin}&lang=zh"))
            .await?;
        let before = eventually(WAIT, || a8_in_page(&browser))
            .await
            .ok_or_else(|| anyhow::anyhow!("the dashboard never showed A8"))?;
        assert_eq!(before["actual"], "0", "{before}");
        // Nothing yet, the deadline (December 31st of this year) ahead: on track or at risk
        // by the time of year.
        let (status, pill) = (before["status"].as_str(), before["pill"].as_str());
        assert!(
            matches!(
                (status, pill),
                (Some("on_track"), Some("进展正常")) | (Some("at_risk"), Some("有风险"))
            ),
            "{before}"
        );
        // The token left the address bar for the cookie.
        let url = browser.command("GET", "/url", None).await?;
        assert!(!url.as_str().unwrap_or("").contains("token="), "{url}");
        // A marker on the page: it must survive, proving the page was not reloaded.
        browser.eval("window.__cwsm_marker = 'same-page'; return true;").await?;
        eventually(WAIT, || async {
            a8_in_page(&browser).await.filter(|v| v["live"] == "live")
        })
        .await
        .ok_or_else(|| anyhow::anyhow!("the event stream never connected"))?;

        complete_a_project(&app, "新桥街道").await?;
        // From the hand-over's commit in projects to the page showing it (the outbox relay,
        // the bus, reporting's consumer, the event stream, the page's redraw).
        let committed = std::time::Instant::now();
        let after = eventually(Duration::from_secs(20), || async {
            a8_in_page(&browser).await.filter(|v| v["actual"] == "1")
        })
        .await
        .ok_or_else(|| anyhow::anyhow!("the dashboard never showed the completed project"))?;
        eprintln!(
            "the page showed the hand-over {} ms after its commit (polled every 50 ms)",
            committed.elapsed().as_millis()
        );
        assert_eq!(after["status"], "achieved", "{after}");
        assert_eq!(after["pill"], "已完成", "{after}");
        assert_eq!(after["marker"], "same-page", "the page was not reloaded: {after}");
        // Under the Content-Security-Policy (no inline script or style) the bars are drawn:
        // their widths are set through the DOM, and nothing was blocked.
        let bar = eventually(WAIT, || async {
            browser
                .eval("var s = document.querySelector('tr[data-code=\"A8-CONTRACT-PROJECTS\"] .bar > span'); return s ? parseFloat(getComputedStyle(s).width) : null;")
                .await
                .ok()
                .and_then(|v| v.as_f64())
                .filter(|w| *w > 100.0)
        })
        .await;
        assert!(bar.is_some(), "the achieved indicator's bar has no width under the CSP");
        let blocked = browser
            .eval("return document.body.getAttribute('data-csp-violations');")
            .await?;
        assert!(blocked.is_null(), "the CSP blocked {blocked} things on the page");
        // The tiles and the chart followed.
        let tiles = browser
            .eval("return document.querySelector('#tile-achieved .n').textContent;")
            .await?;
        assert_eq!(tiles, "1");
        let chart = browser
            .eval("return document.querySelectorAll('#completions svg path').length;")
            .await?;
        assert!(chart.as_u64().unwrap_or(0) >= 1, "{chart}");
        // English labels on a click.
        browser
            .eval("document.querySelector('.lang button[data-lang=\"en\"]').click(); return true;")
            .await?;
        let pill = browser
            .eval("return document.querySelector('tr[data-code=\"A8-CONTRACT-PROJECTS\"] .status').textContent;")
            .await?;
        assert_eq!(pill, "Achieved");
        browser
            .eval("document.querySelector('.lang button[data-lang=\"zh\"]').click(); return true;")
            .await?;
        if backend == Backend::Sqlite {
            browser.screenshot(SCREENSHOT).await?;
            eprintln!("screenshot: {SCREENSHOT}");
        }
        anyhow::Ok(())
    }
    .await;
    browser.quit().await;
    result?;
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_updates_live_in_a_real_browser_on_sqlite() -> anyhow::Result<()> {
    dashboard(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_updates_live_in_a_real_browser_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    dashboard(Backend::Postgres).await
}

// ---------------------------------------------------------------------------------------------
// Rebuild, export, plans

async fn rebuild(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    // The projects below take effect today: counted by a plan for this year.
    cwsm_tests::count_this_year(app.reporting(&app.token(Role::Admin, None))).await?;
    let admin = app.token(Role::Admin, None);
    complete_a_project(&app, "薛家镇").await?;
    complete_a_project(&app, "罗溪镇").await?;
    let counted = eventually(WAIT, || async {
        a8_counted(&app, &admin).await.filter(|n| *n >= 2.0)
    })
    .await;
    assert_eq!(counted, Some(2.0));

    let rebuild = || async {
        app.reporting(&admin)
            .rebuild_counts(r::RebuildCountsRequest {
                request_id: format!("rebuild-{}", cwsm_platform::new_id()),
                plan_code: "xinbei-2020".into(),
            })
            .await
            .map(|r| r.into_inner())
    };
    let count = |list: &[r::IndicatorCount], code: &str| {
        list.iter()
            .find(|c| c.indicator_code == code)
            .map(|c| c.count)
    };
    // Nothing lost: the rebuild changes nothing.
    let same = rebuild().await?;
    assert_eq!(same.counts_before, same.counts_after);
    assert_eq!(count(&same.counts_after, A8), Some(2));
    assert!(same.events_read >= 12, "{}", same.events_read);

    // Reporting's facts and kept counts lost (as a reporting started on an empty database
    // against the same projects): the counts drop to nothing, and the rebuild brings them back.
    let db = app
        .running
        .as_ref()
        .and_then(|r| r.databases.iter().find(|(name, _)| *name == "reporting"))
        .map(|(_, db)| db.clone())
        .ok_or_else(|| anyhow::anyhow!("no reporting database"))?;
    cwsm_platform::with_db!(&db, pool => {
        sqlx::query("DELETE FROM milestone_facts").execute(pool).await?;
        sqlx::query("DELETE FROM processed_events").execute(pool).await?;
        sqlx::query("DELETE FROM counted_projects").execute(pool).await?;
        sqlx::query("DELETE FROM count_changes").execute(pool).await?;
        sqlx::query("DELETE FROM count_cells").execute(pool).await?;
        sqlx::query("DELETE FROM count_days").execute(pool).await?;
        // As every write of the service does: reports kept in memory are stale now (a
        // database emptied under a running service is no case of its own otherwise).
        sqlx::query("UPDATE report_generations SET generation = generation + 1").execute(pool).await?;
    });
    assert_eq!(a8_counted(&app, &admin).await, Some(0.0));
    let rebuilt = rebuild().await?;
    assert_eq!(count(&rebuilt.counts_before, A8), Some(0));
    assert_eq!(count(&rebuilt.counts_after, A8), Some(2));
    assert_eq!(rebuilt.counts_after, same.counts_after, "exactly as before");
    assert_eq!(rebuilt.events_read, same.events_read);
    assert!(rebuilt.last_sequence > 0);
    // And once more: still exact.
    let again = rebuild().await?;
    assert_eq!(again.counts_after, same.counts_after);

    // Not an administrator: refused.
    let user = app.token(
        Role::WaterUser,
        Some(&cwsm_tests::fresh_credit_code("12320411")),
    );
    let err = app
        .reporting(&user)
        .rebuild_counts(r::RebuildCountsRequest {
            request_id: "x".into(),
            plan_code: "xinbei-2020".into(),
        })
        .await
        .expect_err("not an administrator");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_counts_restores_exact_counts_on_sqlite() -> anyhow::Result<()> {
    rebuild(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_counts_restores_exact_counts_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    rebuild(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_export_and_plans_load_as_new_versions_over_grpc() -> anyhow::Result<()> {
    let app = TestApp::start(Backend::Sqlite).await?;
    // The projects below take effect today: counted by a plan for this year.
    cwsm_tests::count_this_year(app.reporting(&app.token(Role::Admin, None))).await?;
    let admin = app.token(Role::Admin, None);
    let project = complete_a_project(&app, "春江街道").await?;
    assert!(!project.is_empty());
    eventually(WAIT, || async {
        a8_counted(&app, &admin).await.filter(|n| *n >= 1.0)
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("never counted"))?;

    // The report carries breakdowns and the history of the actual.
    let report = app
        .reporting(&admin)
        .get_report(r::GetReportRequest {
            plan_code: "xinbei-2020".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .report
        .ok_or_else(|| anyhow::anyhow!("no report"))?;
    let line = report
        .indicators
        .iter()
        .find(|l| l.indicator.as_ref().is_some_and(|i| i.code == A8))
        .ok_or_else(|| anyhow::anyhow!("no A8"))?;
    assert_eq!(line.by_town[0].key, "春江街道");
    assert_eq!(line.by_sector[0].key, "school");
    assert_eq!(line.history.len(), 1);
    assert_eq!(line.history[0].actual, 1.0);
    assert_eq!(line.status, r::ProgressStatus::Achieved as i32);

    for (format, content_type, magic) in [
        (r::ExportFormat::Xlsx, "spreadsheetml", &b"PK"[..]),
        (r::ExportFormat::Csv, "text/csv", &b"\xef\xbb\xbfcode,"[..]),
    ] {
        let file = app
            .reporting(&admin)
            .export_report(r::ExportReportRequest {
                plan_code: "xinbei-2020".into(),
                format: format as i32,
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(
            file.content_type.contains(content_type),
            "{}",
            file.content_type
        );
        assert!(file.content.starts_with(magic));
        assert!(file.file_name.starts_with("xinbei-2020-v2-"));
    }

    // Another plan loads as version 3 (the seed is 1, this year's 2), version 1 stays; a broken
    // one is refused with its line.
    let toml = cwsm_tests::this_year_plan_toml();
    let v2 = app
        .reporting(&admin)
        .load_plan(r::LoadPlanRequest {
            request_id: "load-v2".into(),
            plan_toml: toml.clone(),
            validate_only: false,
        })
        .await?
        .into_inner()
        .plan
        .ok_or_else(|| anyhow::anyhow!("no plan"))?;
    assert_eq!(v2.version, 3);
    let v1 = app
        .reporting(&admin)
        .get_plan(r::GetPlanRequest {
            code: "xinbei-2020".into(),
            version: 1,
            ..Default::default()
        })
        .await?
        .into_inner()
        .plan
        .ok_or_else(|| anyhow::anyhow!("no plan"))?;
    assert_ne!(v1.id, v2.id);
    let broken = toml.replacen("year = 2020", "year = \"twenty\"", 1);
    let err = app
        .reporting(&admin)
        .load_plan(r::LoadPlanRequest {
            request_id: "load-broken".into(),
            plan_toml: broken,
            validate_only: false,
        })
        .await
        .expect_err("broken");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("line"), "{}", err.message());
    // The new version counts the facts already there.
    assert_eq!(a8_counted(&app, &admin).await, Some(1.0));
    app.stop().await
}

/// Every counted indicator's actual, recomputed here from the projects service's milestone log
/// and the plan's rules as the API states them (an independent reading of the rules).
async fn expected_counts(app: &TestApp, admin: &str) -> anyhow::Result<Vec<(String, f64)>> {
    use cwsm_proto::events::v1::ProjectMilestone;
    use std::collections::{HashMap, HashSet};
    let plan = app
        .reporting(admin)
        .get_plan(r::GetPlanRequest {
            code: "xinbei-2020".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .plan
        .ok_or_else(|| anyhow::anyhow!("no plan"))?;
    let mut log: Vec<ProjectMilestone> = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .projects(admin)
            .list_milestones(p::ListMilestonesRequest {
                after_sequence: 0,
                page_size: 200,
                page_token: token.clone(),
                project_id: String::new(),
            })
            .await?
            .into_inner();
        log.extend(page.milestones);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let terminated: HashSet<&str> = log
        .iter()
        .filter(|m| m.milestone == cwsm_proto::types::Milestone::Terminated as i32)
        .map(|m| m.project_id.as_str())
        .collect();
    let mut out = Vec::new();
    for i in plan.goals.iter().chain(&plan.indicators) {
        let Some(rule) = i.counting_rule.as_ref() else {
            continue;
        };
        if i.kind != r::IndicatorKind::Counted as i32
            && i.kind != r::IndicatorKind::CountedAndRecorded as i32
        {
            continue;
        }
        let mut counted: HashMap<&str, ()> = HashMap::new();
        for m in &log {
            // Inside the plan's window (by effective date, "YYYY-MM-DD" compares as text) and
            // jurisdiction: the demo also has 2020 projects, and Wujin's.
            let ok = m.milestone == rule.milestone
                && plan.window_start.as_str() <= m.effective_date.as_str()
                && m.effective_date.as_str() <= plan.window_end.as_str()
                && m.jurisdiction_code.starts_with(&plan.jurisdiction_code)
                && (rule.sectors.is_empty() || rule.sectors.contains(&m.sector))
                && (rule.unit_types.is_empty()
                    || rule
                        .unit_types
                        .iter()
                        .any(|u| u.eq_ignore_ascii_case(&m.unit_type)))
                && (rule.towns.is_empty() || rule.towns.contains(&m.town))
                && rule
                    .indicator_tags
                    .iter()
                    .all(|t| m.indicator_tags.contains(t))
                && !(rule.on_terminated == r::OnTerminated::Remove as i32
                    && terminated.contains(m.project_id.as_str()));
            if ok {
                counted.insert(m.project_id.as_str(), ());
            }
        }
        out.push((i.code.clone(), counted.len() as f64));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_counts_exactly_the_demo_projects_that_should_count() -> anyhow::Result<()> {
    let app = TestApp::start(Backend::Sqlite).await?;
    let admin = app.token(Role::Admin, None);
    let summary = cwsm::demo::load(app.channel.clone(), &app.keys).await?;
    // The marketplace's projects take effect today: counted by a plan for this year, loaded
    // after the demo (which records its 2020 achievements against the 2020 plan).
    cwsm_tests::count_this_year(app.reporting(&admin)).await?;
    assert_eq!(
        summary.people,
        cwsm::demo::DEMO_PEOPLE.len() + cwsm::demo::DEMO_DEPARTMENTS.len()
    );
    // Each of the demo's people signs in with the demo password (README: "Sign in as each
    // role"), in the role of their organization, and the token is accepted.
    for ((login, _), role) in cwsm::demo::DEMO_PEOPLE.iter().zip([
        cwsm_proto::accounts::v1::Role::Company,
        cwsm_proto::accounts::v1::Role::WaterUser,
        cwsm_proto::accounts::v1::Role::Verifier,
        cwsm_proto::accounts::v1::Role::Admin,
    ]) {
        let tokens = cwsm_proto::accounts::v1::accounts_service_client::AccountsServiceClient::new(
            app.channel.clone(),
        )
        .sign_in(cwsm_proto::accounts::v1::SignInRequest {
            login: login.to_string(),
            password: cwsm::demo::DEMO_PASSWORD.into(),
            credit_code: String::new(),
        })
        .await?
        .into_inner()
        .tokens
        .ok_or_else(|| anyhow::anyhow!("no tokens for {login}"))?;
        assert_eq!(tokens.role, role as i32, "{login}");
        // The demo is Xinbei's: the district office's people administer 320411.
        assert_eq!(
            tokens.jurisdiction,
            cwsm::demo::DEMO_JURISDICTION,
            "{login}"
        );
        app.reporting(&tokens.access_token)
            .get_report(r::GetReportRequest {
                plan_code: "xinbei-2020".into(),
                ..Default::default()
            })
            .await?;
    }
    let matched = eventually(WAIT, || async {
        let expected = expected_counts(&app, &admin).await.ok()?;
        let report = app
            .reporting(&admin)
            .get_report(r::GetReportRequest {
                plan_code: "xinbei-2020".into(),
                ..Default::default()
            })
            .await
            .ok()?
            .into_inner()
            .report?;
        let actual: Vec<(String, f64)> = expected
            .iter()
            .map(|(code, _)| {
                let n = report
                    .indicators
                    .iter()
                    .find(|l| l.indicator.as_ref().is_some_and(|i| &i.code == code))
                    .map(|l| l.actual)
                    .unwrap_or(-1.0);
                (code.clone(), n)
            })
            .collect();
        (actual == expected).then_some(expected)
    })
    .await;
    let expected = match matched {
        Some(e) => e,
        None => anyhow::bail!(
            "the report never matched the milestone log: expected {:?}",
            expected_counts(&app, &admin).await?
        ),
    };
    assert_eq!(expected.len(), 2, "{expected:?}");
    assert!(
        expected.iter().any(|(_, n)| *n >= 1.0),
        "the demo completes projects: {expected:?}"
    );
    app.stop().await
}

// ---------------------------------------------------------------------------------------------
// Evidence documents of achievements

/// Issue 12 §8: an achievement's evidence is a document uploaded to its plan (a declaration, an
/// acceptance report), kept in the document store (the data folder; a real S3 server beside
/// PostgreSQL) and cited as "sha256:<hex>"; a citation of a document the plan does not have is
/// INVALID_ARGUMENT on `evidence`, and every signed-in caller downloads what backs a count.
async fn achievements_cite_uploaded_documents(backend: Backend) -> anyhow::Result<()> {
    let s3 = match backend {
        Backend::Postgres => cwsm_tests::s3::ObjectStorage::start().await?,
        Backend::Sqlite => None,
    };
    let app = match &s3 {
        Some(s3) => TestApp::start_with(backend, |s| s3.configure(s, "reporting")).await?,
        None => TestApp::start(backend).await?,
    };
    let admin = app.token(Role::Admin, None);
    let mut declaration = b"%PDF-1.7\n".to_vec();
    declaration.extend((0..1_500_000u32).map(|i| (i % 241) as u8));
    let messages: Vec<r::UploadEvidenceRequest> = declaration
        .chunks(1024 * 1024)
        .enumerate()
        .map(|(i, c)| r::UploadEvidenceRequest {
            plan_code: if i == 0 {
                "xinbei-2020".into()
            } else {
                String::new()
            },
            file_name: if i == 0 {
                "市级节水改造申报表.pdf".into()
            } else {
                String::new()
            },
            chunk: c.to_vec(),
        })
        .collect();
    let uploaded = app
        .reporting(&admin)
        .upload_evidence(tokio_stream::iter(messages))
        .await?
        .into_inner();
    let doc = uploaded.document.expect("document");
    assert_eq!(
        (
            doc.media_type.as_str(),
            doc.size_bytes,
            uploaded.already_uploaded
        ),
        ("application/pdf", declaration.len() as i64, false)
    );
    let sha = doc.sha256.clone();
    let key = format!("{}/{sha}", &sha[..2]);
    let kept = match &s3 {
        Some(s3) => s3.object_file(&format!("reporting/{key}")),
        None => app.data_dir().join("documents").join(&key),
    };
    assert!(
        std::fs::read(&kept)? == declaration,
        "kept at {}",
        kept.display()
    );
    // A company may not upload to a district's plan.
    let company = app.token(
        Role::Company,
        Some(&cwsm_tests::credit_code("91320411MA1N2B3C4")),
    );
    let err = app
        .reporting(&company)
        .upload_evidence(tokio_stream::iter(vec![r::UploadEvidenceRequest {
            plan_code: "xinbei-2020".into(),
            file_name: "x.pdf".into(),
            chunk: b"%PDF-1.7 x".to_vec(),
        }]))
        .await
        .expect_err("not an administrator");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let record = |evidence: String| r::RecordAchievementRequest {
        request_id: format!("a-{}", cwsm_platform::new_id()),
        plan_code: "xinbei-2020".into(),
        indicator_code: "A2-COMMUNITIES".into(),
        unit_name: "三井街道社区".into(),
        achieved_date: "2020-05-10".into(),
        evidence,
        value: 1.0,
        department: "agri".into(),
        town: "Sanjing".into(),
        ..Default::default()
    };
    let err = app
        .reporting(&admin)
        .record_achievement(record(format!("申报表 sha256:{}", "0".repeat(64))))
        .await
        .expect_err("not uploaded");
    assert_eq!(invalid_field(&err), "evidence");
    let achievement = app
        .reporting(&admin)
        .record_achievement(record(format!("申报表 sha256:{sha}")))
        .await?
        .into_inner()
        .achievement
        .expect("achievement");
    assert!(achievement.evidence.contains(&sha));
    // Whoever reads the achievement downloads its evidence, byte for byte.
    let mut stream = app
        .reporting(&company)
        .get_evidence(r::GetEvidenceRequest {
            plan_code: "xinbei-2020".into(),
            sha256: sha.to_uppercase(),
        })
        .await?
        .into_inner();
    let mut bytes = Vec::new();
    let mut record_seen = None;
    while let Some(m) = stream.message().await? {
        if m.document.is_some() {
            record_seen = m.document;
        }
        bytes.extend(m.chunk);
    }
    assert_eq!(
        record_seen.map(|d| d.file_name),
        Some("市级节水改造申报表.pdf".to_string())
    );
    assert!(bytes == declaration, "the same bytes back");
    let listed = app
        .reporting(&company)
        .list_evidence(r::ListEvidenceRequest {
            plan_code: "xinbei-2020".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(listed.documents.len(), 1);
    let err = app
        .reporting(&company)
        .get_evidence(r::GetEvidenceRequest {
            plan_code: "xinbei-2020".into(),
            sha256: "not a hash".into(),
        })
        .await
        .expect_err("no hash");
    assert_eq!(invalid_field(&err), "sha256");
    // The same through the CLI: a photo of the works uploaded, listed, saved back.
    let dir = tempfile::tempdir()?;
    let photo = dir.path().join("改造现场.png");
    let png = [b"\x89PNG\r\n\x1a\n".as_slice(), &[7u8; 4096]].concat();
    std::fs::write(&photo, &png)?;
    let run = |args: &[&str]| {
        let args: Vec<String> = ["report", "--plan", "xinbei-2020"]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect();
        crate::projects::cli(&app, &admin, args)
    };
    let photo_arg = photo.display().to_string();
    let (ok, out, err) = run(&["evidence", "upload", &photo_arg]).await?;
    assert!(ok && out.contains("image/png"), "{out}{err}");
    let (ok, out, err) = run(&["--json", "evidence", "list"]).await?;
    assert!(
        ok && out.contains("改造现场.png") && out.contains(&sha),
        "{out}{err}"
    );
    let png_sha = cwsm_platform::documents::sha256_hex(&png);
    let saved = dir.path().join("saved.png");
    let saved_arg = saved.display().to_string();
    let (ok, out, err) = run(&["evidence", "get", &png_sha, "--out", &saved_arg]).await?;
    assert!(ok, "{out}{err}");
    assert!(std::fs::read(&saved)? == png, "saved byte for byte");
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn achievements_cite_uploaded_documents_on_sqlite() -> anyhow::Result<()> {
    achievements_cite_uploaded_documents(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn achievements_cite_uploaded_documents_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    achievements_cite_uploaded_documents(Backend::Postgres).await
}

// ---------------------------------------------------------------------------------------------
// Length limits and LIKE filters

/// The field an INVALID_ARGUMENT names in its `BadRequest` details.
fn invalid_field(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_error_details()
        .bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
        .unwrap_or_default()
}

async fn limits_and_like_filters(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let admin = app.token(Role::Admin, None);
    let mut api = app.reporting(&admin);
    let record = |unit: &str, note: &str| r::RecordAchievementRequest {
        request_id: format!("a-{}", cwsm_platform::new_id()),
        plan_code: "xinbei-2020".into(),
        indicator_code: "A2-COMMUNITIES".into(),
        unit_name: unit.into(),
        achieved_date: "2020-05-10".into(),
        evidence: "notice 12".into(),
        value: 1.0,
        note: note.into(),
        department: "agri".into(),
        town: "Sanjing".into(),
        ..Default::default()
    };
    for unit in ["50% of schools", "500 schools", "block a_b", "block axb"] {
        api.record_achievement(record(unit, "")).await?;
    }
    let found = |query: &str| {
        let mut api = app.reporting(&admin);
        let query = query.to_string();
        async move {
            let list = api
                .list_achievements(r::ListAchievementsRequest {
                    plan_code: "xinbei-2020".into(),
                    query,
                    page_size: 50,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .achievements;
            let mut units: Vec<String> = list.into_iter().map(|a| a.unit_name).collect();
            units.sort();
            anyhow::Ok(units)
        }
    };
    // `%` and `_` are the text asked for, not wildcards.
    assert_eq!(found("50%").await?, vec!["50% of schools"]);
    assert_eq!(found("a_b").await?, vec!["block a_b"]);
    assert_eq!(found("%").await?, vec!["50% of schools"]);
    assert_eq!(found("_").await?, vec!["block a_b"]);
    assert_eq!(found("50").await?.len(), 2);
    // The same for plans: a plan titled with "50%" and one with "500".
    let seed = include_str!("../../seeds/plans/xinbei-2020.toml");
    for (code, title) in [("cut-half", "Cut 50% of losses"), ("cut-500", "Cut 500 m3")] {
        let toml = seed
            .replacen("code = \"xinbei-2020\"", &format!("code = \"{code}\""), 1)
            .replacen("title = \"", &format!("title = \"{title} "), 1);
        api.load_plan(r::LoadPlanRequest {
            request_id: format!("load-{code}"),
            plan_toml: toml,
            validate_only: false,
        })
        .await?;
    }
    let plans = api
        .list_plans(r::ListPlansRequest {
            query: "50%".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .plans;
    let codes: Vec<&str> = plans.iter().map(|p| p.code.as_str()).collect();
    assert_eq!(codes, vec!["cut-half"], "{codes:?}");

    // Every string has a limit: INVALID_ARGUMENT naming the field.
    let long = "x".repeat(100_000);
    let big = |field: &str| {
        let mut req = record("unit", "");
        match field {
            "unit_name" => req.unit_name = long.clone(),
            "evidence" => req.evidence = long.clone(),
            "note" => req.note = long.clone(),
            "department" => req.department = long.clone(),
            "town" => req.town = long.clone(),
            "plan_code" => req.plan_code = long.clone(),
            "indicator_code" => req.indicator_code = long.clone(),
            "achieved_date" => req.achieved_date = long.clone(),
            _ => {}
        }
        req
    };
    for field in [
        "unit_name",
        "evidence",
        "note",
        "department",
        "town",
        "plan_code",
        "indicator_code",
        "achieved_date",
    ] {
        // (Not `expect_err`: it would print the whole reply.)
        let Err(e) = api.record_achievement(big(field)).await else {
            panic!("a {field} of {} characters was accepted", long.len());
        };
        assert_eq!(invalid_field(&e), field, "{e:?}");
        assert!(
            e.message().len() < 300,
            "the message echoes the input: {}",
            e.message().len()
        );
    }
    let e = api
        .load_plan(r::LoadPlanRequest {
            request_id: "huge".into(),
            plan_toml: format!("{seed}\n# {}", "x".repeat(2_000_000)),
            validate_only: true,
        })
        .await
        .expect_err("too big");
    assert_eq!(invalid_field(&e), "plan_toml");
    let e = api
        .list_achievements(r::ListAchievementsRequest {
            query: long.clone(),
            ..Default::default()
        })
        .await
        .expect_err("long query");
    assert_eq!(invalid_field(&e), "query");
    let e = api
        .list_plans(r::ListPlansRequest {
            district: long.clone(),
            ..Default::default()
        })
        .await
        .expect_err("long district");
    assert_eq!(invalid_field(&e), "district");
    let e = api
        .get_report(r::GetReportRequest {
            plan_code: "xinbei-2020".into(),
            plan_version: 0,
            as_of_date: long.clone(),
        })
        .await
        .expect_err("long date");
    assert_eq!(invalid_field(&e), "as_of_date");
    let e = api
        .list_counted_projects(r::ListCountedProjectsRequest {
            plan_code: "xinbei-2020".into(),
            indicator_code: A8.into(),
            town: long.clone(),
            ..Default::default()
        })
        .await
        .expect_err("long town");
    assert_eq!(invalid_field(&e), "town");
    let mut watch = r::WatchReportRequest {
        plan_code: long.clone(),
        plan_version: 0,
        as_of_date: String::new(),
    };
    let e = api
        .watch_report(watch.clone())
        .await
        .expect_err("long plan code");
    assert_eq!(invalid_field(&e), "plan_code");
    watch.plan_code = "xinbei-2020".into();
    let first = api
        .watch_report(watch)
        .await?
        .into_inner()
        .message()
        .await?;
    assert!(first.is_some());
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strings_have_limits_and_like_filters_are_literal_on_sqlite() -> anyhow::Result<()> {
    limits_and_like_filters(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strings_have_limits_and_like_filters_are_literal_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    limits_and_like_filters(Backend::Postgres).await
}
