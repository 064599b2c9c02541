//! `cwsm report bench`: the report and event application on a scratch database, and a
//! province's roll-up, printed beside their ceilings (`cwsm_reporting::bench` measures).

use crate::cli::{Format, Output};

/// A number without a needless ".0".
fn num(v: f64) -> String {
    cwsm_reporting::export::number(v)
}

/// The roll-up case, printed beside its ceilings (a benchmark, not a test: nothing fails).
pub(crate) async fn rollup(
    districts: usize,
    facts: usize,
    calls: usize,
    format: Format,
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("cwsm-bench-{}", cwsm_platform::new_id()));
    let ms = |d: std::time::Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    if format == Format::Table {
        eprintln!("bench: roll-up of a province of {districts} districts, {facts} facts each …");
    }
    let f = cwsm_reporting::bench::run_rollup(&dir, districts, facts, calls.max(1)).await?;
    let _ = std::fs::remove_dir_all(&dir);
    if format == Format::Table {
        eprintln!(
            "province ({} districts × {} facts each): A8 total {} = sum of the districts {}",
            f.districts,
            f.facts_per_district,
            num(f.a8_total),
            num(f.a8_sum_of_districts)
        );
    }
    Output {
        headers: vec!["case", "calls", "p50_ms", "p99_ms", "goal_p99_ms"],
        rows: f
            .cases
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.calls.to_string(),
                    ms(c.p50),
                    ms(c.p99),
                    c.goal_p99.map(ms).unwrap_or_else(|| "-".into()),
                ]
            })
            .collect(),
    }
    .print(format);
    Ok(())
}

pub(crate) async fn report(facts: &[usize], calls: usize, format: Format) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("cwsm-bench-{}", cwsm_platform::new_id()));
    let ms = |d: std::time::Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    let mut rows = Vec::new();
    for &n in facts {
        if format == Format::Table {
            eprintln!("bench: {n} facts …");
        }
        let f = cwsm_reporting::bench::run(&dir, n, calls.max(1)).await?;
        rows.push(vec![
            f.facts.to_string(),
            f.projects.to_string(),
            f.calls.to_string(),
            ms(f.report_p50),
            ms(f.report_p99),
            ms(f.report_max),
            ms(f.midyear_p50),
            ms(f.midyear_p99),
            format!("{:.0}", f.apply_per_second),
            ms(f.reflect_p50),
            ms(f.reflect_p99),
        ]);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Output {
        headers: vec![
            "facts",
            "projects",
            "calls",
            "report_p50_ms",
            "report_p99_ms",
            "report_max_ms",
            "midyear_p50_ms",
            "midyear_p99_ms",
            "events_applied_per_s",
            "event_to_report_p50_ms",
            "event_to_report_p99_ms",
        ],
        rows,
    }
    .print(format);
    Ok(())
}
