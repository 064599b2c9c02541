//! `cwsm projects bench`: readings ingested per second through IngestReadings, and the M&V
//! time for three years of hourly data, on a projects service of its own (SQLite in a
//! temporary folder, and PostgreSQL in the scratch schema `bench_projects` when asked).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cwsm_platform::vocab::ContractModel;
use cwsm_proto::projects::v1 as ppb;
use tokio_stream::StreamExt;

use crate::cli::{Clients, request_id};
use cwsm_platform::auth::{AuthInterceptor, Keys, Role};
use cwsm_platform::vocab::{MvOption, Sector};
use cwsm_projects::domain::{Contract, ContractTerms, Party};

/// The scratch schema on PostgreSQL, dropped before and after.
const SCHEMA: &str = "bench_projects";
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
const CST_MS: i64 = 8 * HOUR_MS;

pub async fn run(readings: i64, batch: usize, database_url: Option<&str>) -> anyhow::Result<()> {
    println!(
        "cwsm projects bench: {readings} readings through IngestReadings (client streaming, {batch} a message), and M&V for 3 years of hourly data"
    );
    let dir = tempfile::tempdir()?;
    let sqlite = format!("sqlite://{}", dir.path().join("projects.db").display());
    one(&sqlite, "SQLite", readings, batch).await?;
    if let Some(url) = database_url {
        one(url, "PostgreSQL", readings, batch).await?;
    }
    Ok(())
}

fn contract(title: &str) -> Contract {
    let party = |id: &str| Party {
        id: id.to_string(),
        name: id.to_string(),
        credit_code: id.to_string(),
    };
    Contract {
        proposal_id: cwsm_platform::new_id(),
        project_request_id: String::new(),
        company: party("bench-company"),
        water_user: party("bench-user"),
        sector: Sector::School,
        unit_type: "university".into(),
        town: String::new(),
        jurisdiction_code: String::new(),
        title: title.to_string(),
        measures: String::new(),
        contract_model: ContractModel::SharedSavings,
        terms: ContractTerms {
            share_ratio_bp: 7000,
            ..Default::default()
        },
        investment_fen: 0,
        promised_savings_litres: 0,
        promised_savings_bp: 0,
        contract_term_months: 60,
        baseline_use_litres: 0,
        mv_option: MvOption::C,
        drivers: vec![],
        price_fen_per_m3: 410,
        indicator_tags: vec![],
    }
}

fn per_second(n: i64, d: Duration) -> String {
    format!("{:.0}", n as f64 / d.as_secs_f64().max(1e-9))
}

async fn one(url: &str, label: &str, readings: i64, batch: usize) -> anyhow::Result<()> {
    let postgres = url.starts_with("postgres");
    let mut projects =
        cwsm_projects::Projects::connect_in_schema(url, SCHEMA, Arc::new(|| {})).await?;
    if postgres {
        // Start from an empty schema.
        projects.store().drop_scratch_schema(SCHEMA).await?;
        projects.db().close().await;
        projects = cwsm_projects::Projects::connect_in_schema(url, SCHEMA, Arc::new(|| {})).await?;
    }
    // The projects gRPC service on a free local port, as `cwsm serve projects` runs it.
    let secret = format!("{}{}", cwsm_platform::new_id(), cwsm_platform::new_id());
    let keys = Arc::new(Keys::from_secret(secret.as_bytes())?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let service = projects.grpc_service(AuthInterceptor::new(keys.clone()));
    let stop = shutdown.clone();
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                // No Nagle: small replies go out at once.
                tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
                    if let Ok(s) = &s {
                        let _ = s.set_nodelay(true);
                    }
                    s
                }),
                stop.cancelled_owned(),
            )
            .await
    });
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let c = Clients::new(
        channel,
        keys.issue("bench", Role::Admin, None, Duration::from_secs(3600))?,
    )?;
    let store = projects.store();

    // 1. Ingestion: one meter read every minute, ending now.
    let project_id = cwsm_platform::new_id();
    store
        .create_from_contract(
            &cwsm_platform::new_id(),
            &project_id,
            &contract("bench ingest"),
            "bench",
            &cwsm_projects::store::Signing::at_acceptance(0),
        )
        .await?;
    let meter = c
        .projects()
        .create_meter(ppb::CreateMeterRequest {
            request_id: request_id(),
            meter: Some(ppb::Meter {
                project_id: project_id.clone(),
                name: "bench".into(),
                kind: ppb::MeterKind::WholeSite as i32,
                interval_seconds: 60,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .meter
        .ok_or_else(|| anyhow::anyhow!("no meter"))?;
    let start = cwsm_platform::now_ms() - readings * 60_000;
    let batch = batch.max(1) as i64;
    let messages = (readings + batch - 1) / batch;
    let meter_id = meter.id.clone();
    let stream = tokio_stream::iter((0..messages).map(move |k| {
        ppb::IngestReadingsRequest {
            meter_id: meter_id.clone(),
            value_kind: ppb::ReadingValueKind::IntervalUse as i32,
            readings: (k * batch..((k + 1) * batch).min(readings))
                .map(|i| ppb::Reading {
                    read_time: Some(cwsm_platform::grpc::timestamp(start + i * 60_000)),
                    value_litres: 10 + i % 7,
                    estimated: false,
                })
                .collect(),
            ..Default::default()
        }
    }));
    let began = Instant::now();
    let reply = c.projects().ingest_readings(stream).await?.into_inner();
    let took = began.elapsed();
    println!(
        "{label}: ingested {} readings ({} duplicates, {} rejected) in {:.2} s: {} readings/s",
        reply.accepted,
        reply.duplicates,
        reply.rejected,
        took.as_secs_f64(),
        per_second(reply.accepted, took)
    );

    // 2. M&V: 3 years of hourly readings (the first year the baseline), 24 monthly periods.
    let today = (cwsm_platform::now_ms() + CST_MS).div_euclid(DAY_MS);
    let first_day = today - 3 * 365 - 1;
    let hours = 3 * 365 * 24;
    let day_date = |d: i64| cwsm_projects::readings::day_date(d);
    let project2 = cwsm_platform::new_id();
    store
        .create_from_contract(
            &cwsm_platform::new_id(),
            &project2,
            &contract("bench M&V"),
            "bench",
            &cwsm_projects::store::Signing::at_acceptance(0),
        )
        .await?;
    let mut p = c
        .projects()
        .get_project(ppb::GetProjectRequest {
            project_id: project2.clone(),
        })
        .await?
        .into_inner()
        .project
        .ok_or_else(|| anyhow::anyhow!("no project"))?;
    p.baseline_start_date = day_date(first_day).to_string();
    p.baseline_end_date = day_date(first_day + 364).to_string();
    c.projects()
        .update_project(ppb::UpdateProjectRequest {
            request_id: request_id(),
            project: Some(p),
            expected_version: 0,
        })
        .await?;
    let meter2 = c
        .projects()
        .create_meter(ppb::CreateMeterRequest {
            request_id: request_id(),
            meter: Some(ppb::Meter {
                project_id: project2.clone(),
                name: "hourly".into(),
                kind: ppb::MeterKind::WholeSite as i32,
                interval_seconds: 3600,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .meter
        .ok_or_else(|| anyhow::anyhow!("no meter"))?;
    let t0 = first_day * DAY_MS - CST_MS;
    // Day and night, weekdays, and 20% less after the first year.
    let use_at = |h: i64| -> i64 {
        let base = if (7..22).contains(&(h % 24)) {
            900
        } else {
            200
        } + (h * 7_919) % 97;
        if h < 365 * 24 { base } else { base * 8 / 10 }
    };
    let hourly: Vec<ppb::Reading> = (0..hours)
        .map(|h| ppb::Reading {
            read_time: Some(cwsm_platform::grpc::timestamp(t0 + (h + 1) * HOUR_MS)),
            value_litres: use_at(h),
            estimated: false,
        })
        .collect();
    let mv_messages: Vec<ppb::IngestReadingsRequest> = hourly
        .chunks(5_000)
        .map(|chunk| ppb::IngestReadingsRequest {
            meter_id: meter2.id.clone(),
            value_kind: ppb::ReadingValueKind::IntervalUse as i32,
            readings: chunk.to_vec(),
            ..Default::default()
        })
        .collect();
    c.projects()
        .ingest_readings(tokio_stream::iter(mv_messages))
        .await?;

    // In memory: hourly use summed to days, the fit and every period (no database).
    let project = store.project(&project2).await?;
    let mut timings = Vec::new();
    let mut periods = 0;
    for _ in 0..20 {
        let began = Instant::now();
        let mut days: Vec<cwsm_projects::mv::DayUse> = Vec::with_capacity(1100);
        for h in 0..hours {
            let day = day_date(cwsm_projects::readings::day_index(t0 + (h + 1) * HOUR_MS));
            match days.last_mut() {
                Some(d) if d.day == day => {
                    d.litres += use_at(h);
                    d.readings += 1;
                }
                _ => days.push(cwsm_projects::mv::DayUse {
                    day,
                    litres: use_at(h),
                    readings: 1,
                    estimated: 0,
                    excluded: 0,
                    billed_from: None,
                }),
            }
        }
        let report = cwsm_projects::ledger::report(
            &project,
            cwsm_projects::ledger::ReportData {
                days: &days,
                granularity: cwsm_projects::mv::Granularity::Daily,
                drivers: &[],
                adjustments: &[],
                stored: Vec::new(),
                waivers: Vec::new(),
            },
            day_date(today),
        );
        timings.push(began.elapsed());
        periods = report.periods.len();
    }
    timings.sort();
    let in_memory = timings[timings.len() / 2];
    // Through the service: the daily sums from the database, the fit and the periods.
    let mut served = Vec::new();
    let mut fit = None;
    for _ in 0..5 {
        let began = Instant::now();
        let r = c
            .projects()
            .get_savings_report(ppb::GetSavingsReportRequest {
                project_id: project2.clone(),
            })
            .await?
            .into_inner();
        served.push(began.elapsed());
        fit = r.baseline_fit;
    }
    served.sort();
    // The store alone: the database's daily sums, the fit and the periods.
    let mut direct = Vec::new();
    for _ in 0..5 {
        let began = Instant::now();
        store.savings_report(&project2).await?;
        direct.push(began.elapsed());
    }
    direct.sort();
    let fit = fit.unwrap_or_default();
    // Issue 12's ceiling: M&V of 3 years hourly from the database, the quality rules on.
    const CEILING_MS: f64 = 20.0;
    let from_database = direct[direct.len() / 2].as_secs_f64() * 1000.0;
    println!(
        "{label}: M&V for 3 years of hourly data ({hours} readings, {} baseline days, {periods} monthly periods; CV(RMSE) {:.1}%, G14 {}): \
         fit + report {:.2} ms in memory (median of 20), {from_database:.1} ms from the database (ceiling {CEILING_MS} ms: {}), GetSavingsReport over gRPC {:.1} ms (medians of 5)",
        fit.observations,
        fit.cv_rmse * 100.0,
        if fit.ashrae_g14_pass { "pass" } else { "fail" },
        in_memory.as_secs_f64() * 1000.0,
        if from_database <= CEILING_MS {
            "met"
        } else {
            "NOT met"
        },
        served[served.len() / 2].as_secs_f64() * 1000.0,
    );

    shutdown.cancel();
    server.await??;
    if postgres {
        projects.store().drop_scratch_schema(SCHEMA).await?;
    }
    projects.db().close().await;
    Ok(())
}
