//! The administrators' dashboard: a web page served over plain HTTP on the gRPC port.
//!
//! - `GET /dashboard`: the page (HTML, with `app.css` and `app.js`, all in the binary);
//! - `GET /dashboard/data.json`: the report the page draws, as JSON;
//! - `GET /dashboard/events`: Server-Sent Events, one `report` event at once and another
//!   whenever a count or record changes (the same shared feed as `WatchReport`, see `watch`);
//! - `GET /dashboard/export.csv`, `/dashboard/export.xlsx`: the report as a file;
//! - `GET /dashboard/rollup`: a city's or province's roll-up (per-district rows, totals where
//!   they add up), linked from the district view; `GET /dashboard/rollup.json` its data
//!   (query `place`, default the city of the first plan's district; `year`, `date`: as
//!   GetRollup, the year's last day once it is past).
//!
//! Query parameters: `plan` (code, default the first plan), `version` (0: latest), `date`
//! (YYYY-MM-DD, default today), `lang` (`zh` or `en`), `token`.
//!
//! Every response (page, files, JSON, errors, the event stream) carries a Content-Security-Policy
//! that allows only the dashboard's own files (no inline script or style; `frame-ancestors`,
//! `object-src` and `base-uri` 'none'), `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`
//! and `Referrer-Policy: no-referrer`. JSON never carries `<`, `>` or `&` unescaped.
//!
//! Access: an administrator's token (`cwsm token issue --role admin`), given as `?token=` (then
//! kept in an `HttpOnly; SameSite=Strict` cookie for the page's own requests, `Secure` when the
//! request came over TLS: see [`is_https`]), the cookie, or an
//! `Authorization: Bearer` header. Without one the page answers 401 with a page that says how
//! to get one; with a token of another role, 403.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::NaiveDate;
use cwsm_platform::Error;
use cwsm_platform::auth::{Keys, Principal};
use cwsm_platform::vocab::Sector;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::Reporting;
use crate::export::FileFormat;
use crate::report::{IndicatorReport, Report, Status, parse_date};
use crate::store::PlanFilter;
use crate::watch::{Snapshot, WatchKey};

const INDEX_HTML: &str = include_str!("../dashboard/index.html");
const APP_JS: &str = include_str!("../dashboard/app.js");
const APP_CSS: &str = include_str!("../dashboard/app.css");
const UNAUTHORIZED_HTML: &str = include_str!("../dashboard/401.html");
const ROLLUP_HTML: &str = include_str!("../dashboard/rollup.html");
const ROLLUP_JS: &str = include_str!("../dashboard/rollup.js");

/// The cookie that keeps the token for the page's own requests.
pub const COOKIE: &str = "cwsm_dashboard_token";

/// A comment line on the event stream this often, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Only the dashboard's own files; nothing inline, no plugins, no framing, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The longest message a JSON error carries (it may quote the request).
const MAX_ERROR_CHARS: usize = 300;

#[derive(Clone)]
struct Dashboard {
    reporting: Reporting,
    keys: Arc<Keys>,
    shutdown: CancellationToken,
    trust_forwarded_proto: bool,
}

/// How the dashboard is served.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Believe `X-Forwarded-Proto: https` (set only behind a TLS-terminating proxy that sets or
    /// strips that header itself): the session cookie is then `Secure`.
    pub trust_forwarded_proto: bool,
}

/// The dashboard's routes, to be merged into the server's router.
pub fn router(
    reporting: Reporting,
    keys: Arc<Keys>,
    shutdown: CancellationToken,
    options: Options,
) -> Router {
    let state = Dashboard {
        reporting,
        keys,
        shutdown,
        trust_forwarded_proto: options.trust_forwarded_proto,
    };
    Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/", get(page))
        .route("/dashboard/data.json", get(data))
        .route("/dashboard/events", get(events))
        .route("/dashboard/export.csv", get(export_csv))
        .route("/dashboard/export.xlsx", get(export_xlsx))
        .route("/dashboard/rollup", get(rollup_page))
        .route("/dashboard/rollup.json", get(rollup_data))
        .route(
            "/dashboard/rollup.js",
            get(|| async { asset("text/javascript; charset=utf-8", ROLLUP_JS) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/dashboard/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        // Any other path under /dashboard is the dashboard's own 404, with its headers.
        .route("/dashboard/{*rest}", get(not_found))
        .layer(axum::middleware::map_response(harden))
        .with_state(state)
}

/// Adds the security headers to every dashboard response.
async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ] {
        headers.insert(name, value);
    }
    response
}

async fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({ "error": "no such page of the dashboard" }),
    )
}

/// JSON with `<`, `>` and `&` escaped (`\u003c`…): nothing in it can be read as markup, whatever
/// a value quotes. serde_json writes those characters only inside strings, where the escapes
/// mean the same.
fn json_text(v: &Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json_text(v),
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Query and access

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query string's parameters (the last of a repeated name wins).
fn query<B>(request: &Request<B>) -> HashMap<String, String> {
    request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(pair), String::new()),
        })
        .collect()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

enum Access {
    /// An administrator; `Some(token)` when it came in the query (to be kept in the cookie).
    Admin(Option<String>, Box<Principal>),
    Missing,
    Invalid,
    Forbidden(String),
}

fn access<B>(d: &Dashboard, request: &Request<B>, q: &HashMap<String, String>) -> Access {
    let from_query = q.get("token").filter(|t| !t.is_empty()).cloned();
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let token = from_query
        .clone()
        .or(bearer)
        .or_else(|| cookie(request.headers(), COOKIE));
    let Some(token) = token else {
        return Access::Missing;
    };
    match d.keys.verify(token.trim()) {
        Ok(p) if p.is_admin() => Access::Admin(from_query, Box::new(p)),
        Ok(p) => Access::Forbidden(p.role.to_string()),
        Err(_) => Access::Invalid,
    }
}

fn denied_page(status: StatusCode, reason_en: &str, reason_zh: &str) -> Response {
    let body = UNAUTHORIZED_HTML
        .replace("{{STATUS}}", status.as_str())
        .replace("{{REASON_EN}}", reason_en)
        .replace("{{REASON_ZH}}", reason_zh);
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// The response for a request that may not see the dashboard; `None` when it may.
fn refuse(access: &Access, html: bool) -> Option<Response> {
    let (status, en, zh) = match access {
        Access::Admin(..) => return None,
        Access::Missing => (
            StatusCode::UNAUTHORIZED,
            "This page is for administrators: open it with an administrator's token.",
            "此页面仅供管理员使用：请使用管理员令牌打开。",
        ),
        Access::Invalid => (
            StatusCode::UNAUTHORIZED,
            "The token is not valid (expired, or signed with another key).",
            "令牌无效（已过期，或由其他密钥签发）。",
        ),
        Access::Forbidden(_) => (
            StatusCode::FORBIDDEN,
            "This token is not an administrator's.",
            "此令牌不属于管理员。",
        ),
    };
    Some(if html {
        denied_page(status, en, zh)
    } else {
        let message = match access {
            Access::Forbidden(role) => format!("{en} (role: {role})"),
            _ => en.to_string(),
        };
        json_response(status, &json!({ "error": message }))
    })
}

/// Whether the request came over TLS: the request URI's scheme (HTTP/2 over TLS carries
/// `:scheme https`; TLS on the port itself), or, when `trust_forwarded_proto` is set (behind a
/// TLS-terminating proxy), the first `X-Forwarded-Proto` value being `https`.
pub fn is_https<B>(request: &Request<B>, trust_forwarded_proto: bool) -> bool {
    if request.uri().scheme_str() == Some("https") {
        return true;
    }
    trust_forwarded_proto
        && request
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn session_cookie(token: &str, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/dashboard; HttpOnly; SameSite=Strict{secure}"
    ))
    .ok()
}

// ---------------------------------------------------------------------------------------------
// The report as the page reads it

/// What a request asks for: plan, version, date.
struct Wanted {
    plan: String,
    version: i64,
    /// `None`: today, moving with the date.
    date: Option<NaiveDate>,
}

async fn wanted(d: &Dashboard, q: &HashMap<String, String>) -> Result<Wanted, Error> {
    use crate::grpc::{MAX_CODE, MAX_DATE};
    for (name, max) in [
        ("plan", MAX_CODE),
        ("version", MAX_DATE),
        ("date", MAX_DATE),
    ] {
        cwsm_platform::input::check_len(name, q.get(name).map_or("", |v| v.as_str()), max)?;
    }
    let plan = match q.get("plan").map(|p| p.trim()).filter(|p| !p.is_empty()) {
        Some(p) => p.to_string(),
        None => first_plan(d).await?.plan.code,
    };
    let version = match q.get("version").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| Error::invalid("version", format!("{v:?} is not a number")))?,
        None => 0,
    };
    let date = match q.get("date").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        Some(text) => Some(
            parse_date(text)
                .ok_or_else(|| Error::invalid("date", format!("{text:?} is not YYYY-MM-DD")))?,
        ),
        None => None,
    };
    Ok(Wanted {
        plan,
        version,
        date,
    })
}

fn pairs(list: &[(String, f64)]) -> Value {
    Value::Array(list.iter().map(|(k, v)| json!([k, v])).collect())
}

fn line_json(line: &IndicatorReport) -> Value {
    let i = &line.indicator;
    json!({
        "code": i.code,
        "name": i.name,
        "name_zh": i.name_zh,
        "action": i.action,
        "unit": i.unit,
        "comparator": i.comparator.code(),
        "target": i.target,
        "base_year": i.base_year,
        "deadline": i.deadline.format("%Y-%m-%d").to_string(),
        "kind": i.kind.code(),
        "milestone": i.rule.as_ref().map(|r| r.milestone.code()),
        "measure": i.rule.as_ref().map(|r| r.measure.code()),
        "lead": i.lead,
        "participants": i.participants,
        "actual": line.actual,
        "progress_bp": line.evaluation.progress_bp,
        "status": line.evaluation.status.code(),
        "days_remaining": line.evaluation.days_remaining,
        "days_late": line.evaluation.days_late,
        "status_zh": line.evaluation.label_zh(),
        "status_en": line.evaluation.label_en(),
        "completed": line.completed,
        "by_town": pairs(&line.by_town),
        "by_sector": pairs(&line.by_sector),
        "by_department": pairs(&line.by_department),
        "history": Value::Array(
            line.history
                .iter()
                .map(|(d, v)| json!([d.format("%Y-%m-%d").to_string(), v]))
                .collect(),
        ),
        "last_change_ms": line.last_change_ms,
    })
}

/// The report as the dashboard draws it.
pub fn report_json(report: &Report, generation: u64) -> Value {
    let p = &report.plan.plan;
    let mut summary = serde_json::Map::new();
    for s in Status::ALL {
        let n = report
            .lines
            .iter()
            .filter(|l| l.evaluation.status == s)
            .count();
        summary.insert(s.code().to_string(), json!(n));
    }
    let sectors: serde_json::Map<String, Value> = Sector::ALL
        .iter()
        .map(|s| (s.code().to_string(), json!(s.label())))
        .collect();
    json!({
        "generation": generation,
        "plan": {
            "id": report.plan.id,
            "code": p.code,
            "version": report.plan.version,
            "title": p.title,
            "title_zh": p.title_zh,
            "district": p.district,
            "district_zh": p.district_zh,
            "year": p.year,
            "source": p.source,
            "jurisdiction": p.jurisdiction.as_str(),
            // Where the district view links to its roll-up: the city above the district.
            "rollup_place": p.jurisdiction.parent().map(|c| c.as_str().to_string()),
        },
        "as_of": report.as_of.format("%Y-%m-%d").to_string(),
        "today": crate::today().format("%Y-%m-%d").to_string(),
        "generated_at_ms": report.generated_at_ms,
        "summary": summary,
        "departments": p.departments.iter().map(|d| json!({
            "code": d.code, "name": d.name, "name_zh": d.name_zh,
        })).collect::<Vec<_>>(),
        "actions": p.actions.iter().map(|a| json!({
            "number": a.number, "name": a.name, "name_zh": a.name_zh,
            "lead": a.lead, "participants": a.participants,
        })).collect::<Vec<_>>(),
        "sectors": sectors,
        "indicators": report.lines.iter().map(line_json).collect::<Vec<_>>(),
    })
}

fn error_response(e: Error) -> Response {
    let status = match &e {
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
        Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match &e {
        Error::Internal(inner) => {
            tracing::error!(error = %format!("{inner:#}"), "dashboard");
            "internal error".to_string()
        }
        other => {
            let text = other.to_string();
            match text.char_indices().nth(MAX_ERROR_CHARS) {
                Some((at, _)) => format!("{}…", &text[..at]),
                None => text,
            }
        }
    };
    json_response(status, &json!({ "error": message }))
}

/// A shared snapshot as the page draws it.
fn snapshot_json(s: &Snapshot) -> Value {
    let mut v = report_json(&s.report, s.generation);
    v["dead_letters"] = json!(s.dead_letters);
    v
}

async fn current_json(d: &Dashboard, w: &Wanted) -> Result<Value, Error> {
    let generation = *d.reporting.subscribe().borrow();
    let report = d
        .reporting
        .report(
            &w.plan,
            w.version,
            d.reporting.as_of(&w.plan, w.version, w.date).await?,
        )
        .await?;
    let mut v = report_json(&report, generation);
    v["dead_letters"] = json!(d.reporting.dead_letter_count().await?);
    v["achievements"] = achievements_json(d, &report.plan.plan.code).await?;
    Ok(v)
}

/// The plan's recorded achievements, newest first (up to a page), each with its state
/// (pending, approved, rejected) as ListAchievements gives it.
async fn achievements_json(d: &Dashboard, plan_code: &str) -> Result<Value, Error> {
    let filter = crate::store::AchievementFilter {
        plan_code: plan_code.to_string(),
        ..Default::default()
    };
    let page = cwsm_platform::grpc::Page::from_request(200, "")?;
    let (list, _) = d.reporting.list_achievements(&filter, &page).await?;
    let mut rows: Vec<Value> = list
        .iter()
        .map(|a| {
            let c = a.current();
            json!({
                "id": a.id,
                "indicator_code": a.indicator_code,
                "unit_name": a.unit_name,
                "department": a.department,
                "town": a.town,
                "achieved_date": c.achieved_date,
                "value": c.value,
                "evidence": c.evidence,
                "state": c.state.code(),
                "reason": c.reason,
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        b["achieved_date"]
            .as_str()
            .cmp(&a["achieved_date"].as_str())
    });
    Ok(Value::Array(rows))
}

// ---------------------------------------------------------------------------------------------
// Handlers

async fn page(State(d): State<Dashboard>, request: Request<Body>) -> Response {
    html_page(&d, &request, INDEX_HTML)
}

async fn rollup_page(State(d): State<Dashboard>, request: Request<Body>) -> Response {
    html_page(&d, &request, ROLLUP_HTML)
}

/// A page of the dashboard for an administrator (the cookie set from `?token=`), else the
/// denied page.
fn html_page<B>(d: &Dashboard, request: &Request<B>, html: &'static str) -> Response {
    let q = query(request);
    let access = access(d, request, &q);
    if let Some(refused) = refuse(&access, true) {
        return refused;
    }
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response();
    if let Access::Admin(Some(token), _) = &access
        && let Some(value) = session_cookie(token, is_https(request, d.trust_forwarded_proto))
    {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The plan a page shows when none is asked: the first listed (the platform's own).
async fn first_plan(d: &Dashboard) -> Result<crate::plan::StoredPlan, Error> {
    let page = cwsm_platform::grpc::Page::from_request(1, "")?;
    let (plans, _) = d
        .reporting
        .list_plans(&PlanFilter::default(), &page)
        .await?;
    plans
        .into_iter()
        .next()
        .ok_or_else(|| Error::not_found("plan", "any"))
}

/// The roll-up the roll-up page draws: `place` (a city or province; default the city of the
/// first plan's district), `year` (0 or empty: the year of `date`), `date` (default today, or
/// the year's last day once it is past, as GetRollup).
async fn rollup_json(d: &Dashboard, q: &HashMap<String, String>) -> Result<Value, Error> {
    use crate::grpc::{MAX_CODE, MAX_DATE};
    for (name, max) in [("place", MAX_CODE), ("year", MAX_DATE), ("date", MAX_DATE)] {
        cwsm_platform::input::check_len(name, q.get(name).map_or("", |v| v.as_str()), max)?;
    }
    let given = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let place = match given("place") {
        Some(p) => p.to_string(),
        None => first_plan(d)
            .await?
            .plan
            .jurisdiction
            .parent()
            .map(|c| c.as_str().to_string())
            .ok_or_else(|| Error::not_found("plan", "any"))?,
    };
    let year = match given("year") {
        Some(y) => y
            .parse::<i32>()
            .map_err(|_| Error::invalid("year", format!("{y:?} is not a year")))?,
        None => 0,
    };
    let today = crate::today();
    let as_of = match given("date") {
        Some(text) => parse_date(text)
            .ok_or_else(|| Error::invalid("date", format!("{text:?} is not YYYY-MM-DD")))?,
        None => crate::rollup::default_as_of(year, today),
    };
    let r = d.reporting.rollup(&place, year, as_of).await?;
    let place_json = |p: &cwsm_platform::gazetteer::Place| json!({ "code": p.code.as_str(), "name": p.name, "name_zh": p.name_zh });
    let lines: Vec<Value> = r
        .lines
        .iter()
        .map(|l| {
            json!({
                "code": l.code,
                "name": l.name,
                "name_zh": l.name_zh,
                "unit": l.unit,
                "comparator": l.comparator.code(),
                "summed": l.total.is_some(),
                "total_actual": l.total.map(|t| t.actual),
                "total_target": l.total.map(|t| t.target),
                "own": l.own.as_ref().map(|o| json!({
                    "plan_code": o.plan_code,
                    "target": o.target,
                    "status": o.status.code(),
                    "days_late": o.days_late,
                    "status_zh": o.status.label_zh_with(o.days_late),
                    "status_en": o.status.label_en_with(o.days_late),
                })),
                "rows": l.rows.iter().map(|row| json!({
                    "district": place_json(&row.district),
                    "city": row.city.as_ref().map(place_json),
                    "indicator_code": row.indicator_code,
                    "plan_code": row.plan_code,
                    "actual": row.actual,
                    "target": row.target,
                    "status": row.status.code(),
                    "days_late": row.days_late,
                    "status_zh": row.status.label_zh_with(row.days_late),
                    "status_en": row.status.label_en_with(row.days_late),
                    "progress_bp": row.progress_bp,
                    "deadline": row.deadline.format("%Y-%m-%d").to_string(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({
        "place": place_json(&r.place),
        "year": r.year,
        "as_of": r.as_of.format("%Y-%m-%d").to_string(),
        "today": today.format("%Y-%m-%d").to_string(),
        "indicators": lines,
        "without_plan": r.without_plan.iter().map(place_json).collect::<Vec<_>>(),
    }))
}

async fn rollup_data(State(d): State<Dashboard>, request: Request<Body>) -> Response {
    let q = query(&request);
    if let Some(refused) = refuse(&access(&d, &request, &q), false) {
        return refused;
    }
    match rollup_json(&d, &q).await {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => error_response(e),
    }
}

async fn data(State(d): State<Dashboard>, request: Request<Body>) -> Response {
    let q = query(&request);
    if let Some(refused) = refuse(&access(&d, &request, &q), false) {
        return refused;
    }
    let result = async {
        let w = wanted(&d, &q).await?;
        current_json(&d, &w).await
    }
    .await;
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => error_response(e),
    }
}

async fn events(State(d): State<Dashboard>, request: Request<Body>) -> Response {
    let q = query(&request);
    if let Some(refused) = refuse(&access(&d, &request, &q), false) {
        return refused;
    }
    let w = match wanted(&d, &q).await {
        Ok(w) => w,
        Err(e) => return error_response(e),
    };
    // The same shared feed as WatchReport: one computation per change for every watcher of
    // this plan, version and date; this stream only draws and sends it.
    let key = WatchKey {
        plan_code: w.plan.clone(),
        version: w.version,
        date: w.date,
    };
    let mut watch = match d.reporting.watch(key).await {
        Ok(watch) => watch,
        Err(e) => return error_response(e),
    };
    let Some(first) = watch.latest() else {
        return error_response(Error::Internal(anyhow::anyhow!("the report feed ended")));
    };
    // Little room: a reader that lags gets the latest report next, not a backlog.
    let (tx, rx) = mpsc::channel::<Result<String, Infallible>>(2);
    let shutdown = d.shutdown.clone();
    tokio::spawn(async move {
        let event =
            |s: &Snapshot| format!("event: report\ndata: {}\n\n", json_text(&snapshot_json(s)));
        if tx.send(Ok(event(&first))).await.is_err() {
            return;
        }
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        keep_alive.reset();
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                _ = keep_alive.tick() => {
                    if tx.send(Ok(": keep-alive\n\n".to_string())).await.is_err() {
                        return;
                    }
                    continue;
                }
                next = watch.changed() => match next {
                    Some(s) => s,
                    None => return,
                },
            };
            if tx.send(Ok(event(&next))).await.is_err() {
                return;
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(ReceiverStream::new(rx)),
    )
        .into_response()
}

async fn export_file(d: Dashboard, request: Request<Body>, format: FileFormat) -> Response {
    let q = query(&request);
    let access = access(&d, &request, &q);
    if let Some(refused) = refuse(&access, true) {
        return refused;
    }
    let who = match &access {
        Access::Admin(_, who) => Some(who.as_ref()),
        _ => None,
    };
    // The page's language (the dashboard's `lang`), Chinese unless it asks for English.
    let lang = q
        .get("lang")
        .and_then(|l| cwsm_platform::lang::Lang::parse(l))
        .unwrap_or_default();
    let result = async {
        let w = wanted(&d, &q).await?;
        let as_of = d.reporting.as_of(&w.plan, w.version, w.date).await?;
        d.reporting
            .export(who, &w.plan, w.version, as_of, format, lang)
            .await
    }
    .await;
    match result {
        Ok(file) => {
            let disposition = format!("attachment; filename=\"{}\"", file.file_name);
            let mut response =
                ([(header::CONTENT_TYPE, file.content_type)], file.content).into_response();
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
        Err(e) => error_response(e),
    }
}

async fn export_csv(State(d): State<Dashboard>, request: Request<Body>) -> Response {
    export_file(d, request, FileFormat::Csv).await
}

async fn export_xlsx(State(d): State<Dashboard>, request: Request<Body>) -> Response {
    export_file(d, request, FileFormat::Xlsx).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_and_cookies_are_read() {
        let r = Request::builder()
            .uri("/dashboard?plan=xinbei-2020&date=2020-12-31&lang=zh&q=a%20b+c")
            .header(header::COOKIE, "a=1; cwsm_dashboard_token=abc.def")
            .body(())
            .expect("request");
        let q = query(&r);
        assert_eq!(q["plan"], "xinbei-2020");
        assert_eq!(q["date"], "2020-12-31");
        assert_eq!(q["q"], "a b c");
        assert_eq!(cookie(r.headers(), COOKIE).as_deref(), Some("abc.def"));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%E4%B8%AD"), "中");
    }

    #[test]
    fn the_cookie_is_secure_over_tls_or_a_trusted_forwarded_https() {
        let plain = Request::builder()
            .uri("/dashboard")
            .body(())
            .expect("request");
        let tls = Request::builder()
            .uri("https://cwsm.example/dashboard")
            .body(())
            .expect("request");
        let forwarded = Request::builder()
            .uri("/dashboard")
            .header("x-forwarded-proto", "HTTPS, http")
            .body(())
            .expect("request");
        assert!(!is_https(&plain, true));
        assert!(is_https(&tls, false));
        assert!(!is_https(&forwarded, false), "an untrusted header");
        assert!(is_https(&forwarded, true));
        let cookie = |secure| {
            session_cookie("t", secure)
                .and_then(|v| v.to_str().ok().map(str::to_string))
                .unwrap_or_default()
        };
        assert_eq!(
            cookie(true),
            "cwsm_dashboard_token=t; Path=/dashboard; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(!cookie(false).contains("Secure"));
    }

    #[test]
    fn json_carries_no_markup() {
        let v = json!({ "error": "invalid date: \"<script>alert(1)</script>&\"" });
        let text = json_text(&v);
        assert!(!text.contains(['<', '>', '&']), "{text}");
        let back: Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(back, v);
    }
}
