//! The savings report against an independent computation: `tests/mv/check.py` fits the same
//! raw data with statsmodels (OLS, its standard errors, `acf` for the residuals' lag-1
//! autocorrelation) and computes Guideline 14's statistics and Annex B's uncertainty with
//! SciPy's Student t, none of it from cwsm. A simulated campus: students and cooling degree
//! days drive the use, the noise is autocorrelated (AR(1), φ = 0.6, as real daily water data
//! are), the retrofit saves 30%.
//!
//! Skipped (with a message) when no Python with statsmodels is found, unless
//! `CWSM_REQUIRE_STATSMODELS=1` (as `.ci/run` sets after installing Debian's
//! `python3-statsmodels`): then it fails.

use std::io::Write;
use std::process::{Command, Stdio};

use cwsm_proto::projects::v1 as p;
use cwsm_tests::{Backend, TestApp, postgres_and_redis_available};

use crate::projects::{
    Calendar, date, ingest, meter, noon, set_baseline, shared_savings, to_operating,
};

/// A Python that imports statsmodels: `CWSM_PYTHON`, else Debian's (where apt installs it),
/// else the first on the PATH.
fn python() -> anyhow::Result<Option<String>> {
    let candidates = std::env::var("CWSM_PYTHON")
        .into_iter()
        .chain(["/usr/bin/python3".to_string(), "python3".to_string()]);
    for python in candidates {
        let imports = Command::new(&python)
            .args(["-c", "import statsmodels, scipy"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if imports.is_ok_and(|s| s.success()) {
            return Ok(Some(python));
        }
    }
    let why = "no Python with statsmodels and scipy (apt-get install -y python3-statsmodels)";
    if std::env::var("CWSM_REQUIRE_STATSMODELS").as_deref() == Ok("1") {
        anyhow::bail!("statsmodels is required (CWSM_REQUIRE_STATSMODELS=1): {why}");
    }
    eprintln!("skipped the statsmodels check: {why} (CWSM_REQUIRE_STATSMODELS=1 fails instead)");
    Ok(None)
}

/// Runs the check on `input`, returns its answer.
fn statsmodels(python: &str, input: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/mv/check.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(input.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "check.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The campus on day `d` (days since 1970-01-01, CST): students on campus (term weekdays
/// 12,000, term weekends 3,000, holidays 800) and cooling degree days (base 18 °C, a yearly
/// sine of the mean temperature, to 0.1).
fn campus(d: i64) -> (f64, f64) {
    let doy = d.rem_euclid(365);
    let weekend = (d + 3).rem_euclid(7) >= 5; // 1970-01-01 was a Thursday
    let term = (60..180).contains(&doy) || (245..350).contains(&doy);
    let students = match (term, weekend) {
        (true, false) => 12_000.0,
        (true, true) => 3_000.0,
        _ => 800.0,
    };
    let temperature =
        16.0 + 13.0 * (2.0 * std::f64::consts::PI * (doy as f64 - 105.0) / 365.0).sin();
    let cdd = ((temperature - 18.0).max(0.0) * 10.0).round() / 10.0;
    (students, cdd)
}

/// Checks `report` against statsmodels' `check`: the fit to 1e-7, the period starting
/// `start` to the litre. Returns that period.
fn agrees(
    report: &p::GetSavingsReportResponse,
    check: &serde_json::Value,
    start: &str,
) -> anyhow::Result<p::PeriodSavings> {
    let number = |path: &str| -> anyhow::Result<f64> {
        check
            .pointer(path)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| anyhow::anyhow!("check.py gave no {path}: {check}"))
    };
    let relative = |a: f64, b: f64| (a - b).abs() / b.abs().max(1.0);
    let fit = report.baseline_fit.clone().expect("fit");
    assert_eq!(i64::from(fit.observations), number("/observations")? as i64);
    for (k, c) in fit.coefficients.iter().enumerate() {
        let (value, se) = (
            number(&format!("/coefficients/{k}"))?,
            number(&format!("/standard_errors/{k}"))?,
        );
        assert!(
            relative(c.value, value) < 1e-7,
            "{}: {} vs {value}",
            c.name,
            c.value
        );
        assert!(
            relative(c.standard_error, se) < 1e-7,
            "{} se: {} vs {se}",
            c.name,
            c.standard_error
        );
    }
    for (name, ours, path) in [
        ("R²", fit.r_squared, "/r_squared"),
        ("CV(RMSE)", fit.cv_rmse, "/cv_rmse"),
        ("NMBE", fit.nmbe, "/nmbe"),
        ("ρ", fit.autocorrelation, "/autocorrelation"),
    ] {
        let theirs = number(path)?;
        assert!((ours - theirs).abs() < 1e-7, "{name}: {ours} vs {theirs}");
    }
    let n_eff = number("/effective_observations")?;
    assert!(
        relative(fit.effective_observations, n_eff) < 1e-7,
        "n′ {} vs {n_eff}",
        fit.effective_observations
    );
    let ours = report
        .periods
        .iter()
        .find(|x| x.start_date == start)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no period starting {start}"))?;
    for (name, value) in [
        ("adjusted_baseline_litres", ours.adjusted_baseline_litres),
        ("actual_litres", ours.actual_litres),
        ("savings_litres", ours.savings_litres),
        ("observations", ours.observations),
        ("uncertainty_68_litres", ours.uncertainty_68_litres),
        ("uncertainty_90_litres", ours.uncertainty_90_litres),
    ] {
        let theirs = number(&format!("/periods/0/{name}"))? as i64;
        // Sums of floats rounded to litres may differ by the last one.
        assert!((value - theirs).abs() <= 1, "{name}: {value} vs {theirs}");
    }
    Ok(ours)
}

async fn the_report_agrees_with_statsmodels(backend: Backend) -> anyhow::Result<()> {
    let Some(python) = python()? else {
        return Ok(());
    };
    let app = TestApp::start(backend).await?;
    let parties = shared_savings(&app, &["students", "cdd"]).await?;
    let id = parties.project_id.clone();
    let cal = Calendar::now();
    set_baseline(&app, &parties.user, &id, &cal).await?;
    to_operating(&app, &parties).await?;
    let m = meter(&app, &parties.company, &id).await?;
    // Use = 60,000 L + 6 L a student + 2,500 L a degree day, 30% less after the retrofit,
    // plus AR(1) noise: e_d = 0.6·e_(d−1) + u_d, u_d a fixed sequence of ±4,000 L.
    let mut noise = 0.0;
    let days: Vec<(i64, i64, f64, f64)> = (cal.baseline_start..=cal.period_end)
        .map(|d| {
            let (students, cdd) = campus(d);
            noise = 0.6 * noise + (((d * 7_919).rem_euclid(2_001) - 1_000) * 4) as f64;
            let modelled = 60_000.0 + 6.0 * students + 2_500.0 * cdd;
            let factor = if d > cal.baseline_end { 0.7 } else { 1.0 };
            (d, (factor * modelled + noise).round() as i64, students, cdd)
        })
        .collect();
    for (driver, value) in [
        (
            "students",
            (|x: &(i64, i64, f64, f64)| x.2) as fn(&_) -> f64,
        ),
        ("cdd", |x| x.3),
    ] {
        app.projects(&parties.company)
            .record_driver_values(p::RecordDriverValuesRequest {
                project_id: id.clone(),
                driver: driver.to_string(),
                values: days
                    .iter()
                    .map(|x| p::DriverValue {
                        date: date(x.0),
                        value: value(x),
                    })
                    .collect(),
            })
            .await?;
    }
    let readings = days
        .iter()
        .map(|(d, litres, _, _)| p::Reading {
            read_time: Some(noon(*d)),
            value_litres: *litres,
            estimated: false,
        })
        .collect();
    ingest(
        &app,
        &parties.company,
        &m.id,
        p::ReadingValueKind::IntervalUse,
        readings,
    )
    .await?;
    let report = app
        .projects(&parties.user)
        .get_savings_report(p::GetSavingsReportRequest {
            project_id: id.clone(),
        })
        .await?
        .into_inner();

    let observation =
        |x: &(i64, i64, f64, f64)| serde_json::json!({"litres": x.1, "x": [x.2, x.3]});
    let (baseline, period): (Vec<_>, Vec<_>) = days.iter().partition(|x| x.0 <= cal.baseline_end);
    let input = serde_json::json!({
        "drivers": ["students", "cdd"],
        "baseline": baseline.iter().map(&observation).collect::<Vec<_>>(),
        "periods": [period.iter().map(observation).collect::<Vec<_>>()],
    });
    let check = statsmodels(&python, &input)?;
    let ours = agrees(&report, &check, &date(cal.period_start))?;
    let fit = report.baseline_fit.clone().expect("fit");
    // The model found what was put in, roughly: 6 L a student; the noise autocorrelated.
    assert!(
        (fit.coefficients[1].value - 6.0).abs() < 1.0,
        "{:?}",
        fit.coefficients
    );
    assert!(fit.autocorrelation > 0.3, "ρ {}", fit.autocorrelation);
    // The retrofit's 30%, about.
    let share = ours.savings_litres as f64 / ours.adjusted_baseline_litres as f64;
    assert!((share - 0.3).abs() < 0.05, "saved {share}");
    app.stop().await
}

/// Issue 12's finding: a meter read once a month (a utility's bill) was modelled as if the
/// month's water were one day's (intercept 53 million L a day). The same campus billed on the
/// 1st of each month: each bill is one observation, its use per day against the drivers'
/// means over its days, weighted by its days (28 to 31); statsmodels' WLS on the bills agrees.
async fn the_billing_report_agrees_with_statsmodels(backend: Backend) -> anyhow::Result<()> {
    let Some(python) = python()? else {
        return Ok(());
    };
    let app = TestApp::start(backend).await?;
    let parties = shared_savings(&app, &["students", "cdd"]).await?;
    let id = parties.project_id.clone();
    let cal = Calendar::now();
    set_baseline(&app, &parties.user, &id, &cal).await?;
    to_operating(&app, &parties).await?;
    let meter = app
        .projects(&parties.company)
        .create_meter(p::CreateMeterRequest {
            request_id: format!("meter-{}", cwsm_platform::new_id()),
            meter: Some(p::Meter {
                project_id: id.clone(),
                name: "water company bill".into(),
                kind: p::MeterKind::WholeSite as i32,
                interval_seconds: 30 * 86_400,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .meter
        .expect("meter");
    let day_of =
        |d: i64| chrono::NaiveDate::from_num_days_from_ce_opt(719_163 + d as i32).expect("date");
    let index_of =
        |d: chrono::NaiveDate| i64::from(chrono::Datelike::num_days_from_ce(&d)) - 719_163;
    // The bills: each calendar month from the baseline's first to the reporting month, read
    // 00:00 on the next 1st. A month's use per day is the campus model at its days' mean
    // drivers, 30% less after the retrofit, plus AR(1) noise by month (φ 0.5).
    let first_month = chrono::Datelike::with_day(&day_of(cal.baseline_start), 1).expect("1st");
    let mut bills: Vec<(i64, i64, i64, f64, f64)> = Vec::new(); // (first, last, litres, students, cdd)
    let mut noise = 0.0;
    let mut month = first_month;
    while index_of(month) <= cal.period_end {
        let next = month + chrono::Months::new(1);
        let (first, last) = (index_of(month), index_of(next) - 1);
        let n = (last - first + 1) as f64;
        let (students, cdd) = (first..=last)
            .map(campus)
            .fold((0.0, 0.0), |(s, c), (a, b)| (s + a, c + b));
        let (students, cdd) = (students / n, cdd / n);
        noise = 0.5 * noise + (((first * 7_919).rem_euclid(2_001) - 1_000) * 3) as f64;
        let factor = if first > cal.baseline_end { 0.7 } else { 1.0 };
        let per_day = (factor * (60_000.0 + 6.0 * students + 2_500.0 * cdd) + noise).round() as i64;
        bills.push((first, last, per_day * (last - first + 1), students, cdd));
        month = next;
    }
    let values = |pick: fn(&(i64, f64, f64)) -> f64| {
        (cal.baseline_start..=cal.period_end)
            .map(|d| {
                let (s, c) = campus(d);
                p::DriverValue {
                    date: date(d),
                    value: pick(&(d, s, c)),
                }
            })
            .collect::<Vec<_>>()
    };
    for (driver, pick) in [
        ("students", (|x: &(i64, f64, f64)| x.1) as fn(&_) -> f64),
        ("cdd", |x| x.2),
    ] {
        app.projects(&parties.company)
            .record_driver_values(p::RecordDriverValuesRequest {
                project_id: id.clone(),
                driver: driver.into(),
                values: values(pick),
            })
            .await?;
    }
    let at = |day: i64| cwsm_platform::grpc::timestamp(day * 86_400_000 - 8 * 3_600_000);
    // An opening reading of 0 on the first month's 1st (the nominal 30 days before it are
    // outside the baseline), then each bill at 00:00 after its last day.
    let mut readings = vec![p::Reading {
        read_time: Some(at(bills[0].0)),
        value_litres: 0,
        estimated: false,
    }];
    readings.extend(bills.iter().map(|b| p::Reading {
        read_time: Some(at(b.1 + 1)),
        value_litres: b.2,
        estimated: false,
    }));
    ingest(
        &app,
        &parties.company,
        &meter.id,
        p::ReadingValueKind::IntervalUse,
        readings,
    )
    .await?;
    let report = app
        .projects(&parties.user)
        .get_savings_report(p::GetSavingsReportRequest {
            project_id: id.clone(),
        })
        .await?
        .into_inner();
    let fit = report.baseline_fit.clone().expect("fit");
    assert_eq!(fit.granularity, p::ModelGranularity::BillingPeriod as i32);

    // The observations by hand: each bill's days inside the window, its use per day times
    // those days, the drivers' means over them.
    let observation = |b: &(i64, i64, i64, f64, f64), from: i64, to: i64| {
        let (first, last) = (b.0.max(from), b.1.min(to));
        (first <= last).then(|| {
            let n = last - first + 1;
            let per_day = b.2 / (b.1 - b.0 + 1);
            let (s, c) = (first..=last)
                .map(campus)
                .fold((0.0, 0.0), |(s, c), (a, x)| (s + a, c + x));
            serde_json::json!({"litres": per_day * n, "days": n, "x": [s / n as f64, c / n as f64]})
        })
    };
    let baseline: Vec<_> = bills
        .iter()
        .filter_map(|b| observation(b, cal.baseline_start, cal.baseline_end))
        .collect();
    let period: Vec<_> = bills
        .iter()
        .filter_map(|b| observation(b, cal.period_start, cal.period_end))
        .collect();
    let input = serde_json::json!({"drivers": ["students", "cdd"], "baseline": baseline, "periods": [period]});
    let check = statsmodels(&python, &input)?;
    let ours = agrees(&report, &check, &date(cal.period_start))?;
    let share = ours.savings_litres as f64 / ours.adjusted_baseline_litres as f64;
    assert!((share - 0.3).abs() < 0.1, "saved {share}");
    // A day's use is about 100,000 L: never a month's in a day.
    assert!(
        fit.coefficients[0].value.abs() < 200_000.0,
        "{:?}",
        fit.coefficients
    );
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_billing_report_agrees_with_statsmodels_on_sqlite() -> anyhow::Result<()> {
    the_billing_report_agrees_with_statsmodels(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_billing_report_agrees_with_statsmodels_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    the_billing_report_agrees_with_statsmodels(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_savings_report_agrees_with_statsmodels_on_sqlite() -> anyhow::Result<()> {
    the_report_agrees_with_statsmodels(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_savings_report_agrees_with_statsmodels_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    the_report_agrees_with_statsmodels(Backend::Postgres).await
}
