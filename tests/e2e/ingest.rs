//! IngestReadings against a hostile or careless client: what one stream may cost the server
//! (unknown meters answered by count, ids bounded), the stream's contract (each message atomic,
//! errors naming `messages[i].readings[j]`, the messages before stored), undecodable messages,
//! and readings outside what time and physics allow (refused; nothing stored breaks a read).
//! On SQLite and on PostgreSQL.

use cwsm_platform::auth::Role;
use cwsm_platform::db::Db;
use cwsm_proto::projects::v1 as p;
use cwsm_tests::{Backend, TestApp, contract_a_project, postgres_and_redis_available};
use prost::Message;
use tonic::Code;
use tonic_types::StatusExt;

const H_MS: i64 = 3_600_000;

/// An hourly meter on a fresh contracted project; its company's token.
async fn hourly_meter(app: &TestApp) -> anyhow::Result<(String, String, String)> {
    let c = contract_a_project(app, "新桥街道").await?;
    let meter = app
        .projects(&c.company_token)
        .create_meter(p::CreateMeterRequest {
            request_id: cwsm_platform::new_id(),
            meter: Some(p::Meter {
                project_id: c.project_id.clone(),
                name: "hourly DN100".into(),
                kind: p::MeterKind::WholeSite as i32,
                interval_seconds: 3600,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .meter
        .ok_or_else(|| anyhow::anyhow!("no meter"))?;
    Ok((meter.id, c.company_token, c.project_id))
}

/// Hour `h` after a fixed start in 2024.
fn hour(h: i64) -> prost_types::Timestamp {
    cwsm_platform::grpc::timestamp(1_704_067_200_000 + h * H_MS)
}

fn message(meter_id: &str, hours: std::ops::Range<i64>) -> p::IngestReadingsRequest {
    p::IngestReadingsRequest {
        meter_id: meter_id.to_string(),
        value_kind: p::ReadingValueKind::IntervalUse as i32,
        readings: hours
            .map(|h| p::Reading {
                read_time: Some(hour(h)),
                value_litres: 100,
                estimated: false,
            })
            .collect(),
        ..Default::default()
    }
}

fn field_of(status: &tonic::Status) -> Option<String> {
    status
        .get_details_bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
}

async fn stored_readings(app: &TestApp, token: &str, meter_id: &str) -> anyhow::Result<i64> {
    let days = app
        .projects(token)
        .list_readings(p::ListReadingsRequest {
            meter_id: meter_id.to_string(),
            aggregation: p::ReadingAggregation::Day as i32,
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .points;
    Ok(days.iter().map(|d| i64::from(d.reading_count)).sum())
}

/// Unknown meters cost a count, not a copy: 500 distinct unknown ids answer with their count
/// and the first 10; an id of megabytes is INVALID_ARGUMENT (not echoed); more than 1,000
/// meters in one stream are refused. Before, every rejection copied its id (100 messages of
/// 3.9 MB ids: 2 GB RSS and a 798 MB reply).
async fn unknown_meters_cost_a_count(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let admin = app.token(Role::Admin, None);
    let unknown: Vec<p::IngestReadingsRequest> = (0..500)
        .map(|i| message(&format!("no-such-meter-{i:04}"), 0..10))
        .collect();
    let reply = app
        .projects(&admin)
        .ingest_readings(tokio_stream::iter(unknown))
        .await?
        .into_inner();
    assert_eq!(reply.unknown_meters, 500);
    assert_eq!(reply.unknown_meter_ids.len(), 10);
    assert_eq!(reply.unknown_meter_ids[0], "no-such-meter-0000");
    assert_eq!((reply.rejected, reply.stored_messages), (5_000, 500));
    assert!(
        reply.rejections.is_empty(),
        "unknown meters are not listed per reading"
    );
    let size = reply.encoded_len();
    eprintln!("reply to 500 unknown meters: {size} bytes");
    assert!(size < 2_048, "the reply stays small: {size} bytes");

    let huge = "x".repeat(3_900_000);
    let refused = app
        .projects(&admin)
        .ingest_readings(tokio_stream::iter(vec![message(&huge, 0..1); 3]))
        .await
        .expect_err("a 3.9 MB meter id");
    assert_eq!(
        refused.code(),
        Code::InvalidArgument,
        "{}",
        refused.message()
    );
    assert_eq!(field_of(&refused).as_deref(), Some("messages[0].meter_id"));
    assert!(refused.message().len() < 1_024, "the id is not echoed");

    let many: Vec<p::IngestReadingsRequest> = (0..1_001)
        .map(|i| message(&format!("m-{i}"), 0..1))
        .collect();
    let refused = app
        .projects(&admin)
        .ingest_readings(tokio_stream::iter(many))
        .await
        .expect_err("1,001 meters in one stream");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        field_of(&refused).as_deref(),
        Some("messages[1000].meter_id")
    );
    app.stop().await
}

/// Each message is atomic and messages are taken in order: a malformed reading in message 12
/// ends the stream with INVALID_ARGUMENT naming `messages[12].readings[34].read_time`, the 12
/// messages before it are stored (and the error says so), none from it on; resending from
/// message 12 completes the import exactly. Before, the error named `readings[34]` only and
/// what was stored depended on internal flush sizes.
async fn a_bad_row_mid_stream_names_it_and_keeps_what_came_before(
    backend: Backend,
) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let (meter_id, company, _) = hourly_meter(&app).await?;
    let mut messages: Vec<p::IngestReadingsRequest> = (0..20)
        .map(|i| message(&meter_id, i * 100..(i + 1) * 100))
        .collect();
    let good_12 = messages[12].clone();
    messages[12].readings[34].read_time = None;
    let refused = app
        .projects(&company)
        .ingest_readings(tokio_stream::iter(messages.clone()))
        .await
        .expect_err("a reading without its time");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        field_of(&refused).as_deref(),
        Some("messages[12].readings[34].read_time")
    );
    assert!(
        refused
            .message()
            .contains("the 12 messages before it are stored"),
        "{}",
        refused.message()
    );
    assert_eq!(stored_readings(&app, &company, &meter_id).await?, 1_200);
    messages[12] = good_12;
    let rest = app
        .projects(&company)
        .ingest_readings(tokio_stream::iter(messages[12..].to_vec()))
        .await?
        .into_inner();
    assert_eq!((rest.stored_messages, rest.accepted), (8, 800));
    assert_eq!(stored_readings(&app, &company, &meter_id).await?, 2_000);
    app.stop().await
}

/// IngestReadingsRequest with `bytes` where the real one has its string, to send bad UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct RawIngest {
    #[prost(bytes = "vec", tag = "1")]
    meter_id: Vec<u8>,
}

/// A message whose meter id is not UTF-8 (tonic decodes strictly) is INVALID_ARGUMENT naming
/// the message, not INTERNAL.
async fn undecodable_messages_are_invalid_argument(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let admin = app.token(Role::Admin, None);
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await?;
    let messages = vec![
        RawIngest {
            meter_id: b"no-such-meter".to_vec(),
        },
        RawIngest {
            meter_id: vec![0xff, 0xfe, 0x41],
        },
    ];
    let mut request = tonic::Request::new(tokio_stream::iter(messages));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {admin}").parse()?);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/cwsm.projects.v1.ProjectsService/IngestReadings",
    );
    let answer: Result<tonic::Response<p::IngestReadingsResponse>, tonic::Status> = grpc
        .client_streaming(request, path, tonic_prost::ProstCodec::default())
        .await;
    let refused = answer.expect_err("invalid UTF-8");
    assert_eq!(
        refused.code(),
        Code::InvalidArgument,
        "{}",
        refused.message()
    );
    assert_eq!(field_of(&refused).as_deref(), Some("messages[1]"));
    app.stop().await
}

/// Times outside 1970..2100 or with nanos outside 0..1e9 are INVALID_ARGUMENT naming the
/// reading; a value beyond what the meter's pipe can pass in its interval is rejected as
/// impossible and never summed; and rows stored before these checks (i64::MAX litres, a time
/// of i64::MAX ms) make no read fail. Before, one such reading made ListReadings and
/// GetSavingsReport INTERNAL for good.
async fn impossible_readings_are_refused_and_reads_never_fail(
    backend: Backend,
) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let (meter_id, company, project_id) = hourly_meter(&app).await?;
    for (label, ts) in [
        ("seconds i64::MAX", (i64::MAX, 0)),
        ("before year 1", (-62_135_596_801, 0)),
        ("nanos -1", (1_704_067_200, -1)),
        ("year 2100", (4_102_444_800, 0)),
    ] {
        let mut m = message(&meter_id, 0..3);
        m.readings[2].read_time = Some(prost_types::Timestamp {
            seconds: ts.0,
            nanos: ts.1,
        });
        let refused = app
            .projects(&company)
            .ingest_readings(tokio_stream::iter(vec![m]))
            .await
            .expect_err(label);
        assert_eq!(refused.code(), Code::InvalidArgument, "{label}");
        assert_eq!(
            field_of(&refused).as_deref(),
            Some("messages[0].readings[2].read_time"),
            "{label}"
        );
    }
    let mut m = message(&meter_id, 0..4);
    m.readings[1].value_litres = i64::MAX;
    m.readings[2].value_litres = 1_500 * 3600 + 1;
    m.readings[3].value_litres = 1_500 * 3600;
    let reply = app
        .projects(&company)
        .ingest_readings(tokio_stream::iter(vec![m]))
        .await?
        .into_inner();
    assert_eq!((reply.accepted, reply.rejected), (2, 2));
    assert!(
        reply
            .rejections
            .iter()
            .all(|r| r.reason.contains("impossible")),
        "{:?}",
        reply.rejections
    );

    // Rows written before readings were checked.
    let db = app
        .running
        .as_ref()
        .and_then(|r| r.databases.iter().find(|(n, _)| *n == "projects"))
        .map(|(_, db)| db.clone())
        .ok_or_else(|| anyhow::anyhow!("no projects database"))?;
    let legacy = [
        (1_704_067_200_000 + 10 * H_MS, i64::MAX),
        (1_704_067_200_000 + 11 * H_MS, i64::MAX),
        (i64::MAX, 100),
        (i64::MIN + 1, 100),
    ];
    for (at, litres) in legacy {
        let sql = "INSERT INTO readings (meter_id, read_at_ms, value_litres, use_litres, value_kind, flags) VALUES ($1, $2, $3, $3, 2, 0)";
        match &db {
            Db::Sqlite(pool) => {
                sqlx::query(sql)
                    .bind(&meter_id)
                    .bind(at)
                    .bind(litres)
                    .execute(pool)
                    .await?;
            }
            Db::Postgres(pool) => {
                sqlx::query(sql)
                    .bind(&meter_id)
                    .bind(at)
                    .bind(litres)
                    .execute(pool)
                    .await?;
            }
        }
    }
    for aggregation in [
        p::ReadingAggregation::Raw,
        p::ReadingAggregation::Day,
        p::ReadingAggregation::Month,
    ] {
        let points = app
            .projects(&company)
            .list_readings(p::ListReadingsRequest {
                meter_id: meter_id.clone(),
                aggregation: aggregation as i32,
                page_size: 1000,
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow::anyhow!("{aggregation:?}: {s:?}"))?
            .into_inner()
            .points;
        if aggregation != p::ReadingAggregation::Raw {
            let total: i64 = points.iter().map(|p| p.use_litres).sum();
            assert_eq!(
                total,
                100 + 1_500 * 3600,
                "{aggregation:?}: impossible rows not summed"
            );
        }
    }
    let report = app
        .projects(&company)
        .get_savings_report(p::GetSavingsReportRequest {
            project_id: project_id.clone(),
        })
        .await;
    if let Err(s) = &report {
        assert_ne!(s.code(), Code::Internal, "{s:?}");
    }
    app.stop().await
}

#[tokio::test]
async fn unknown_meters_cost_a_count_sqlite() -> anyhow::Result<()> {
    unknown_meters_cost_a_count(Backend::Sqlite).await
}

#[tokio::test]
async fn unknown_meters_cost_a_count_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    unknown_meters_cost_a_count(Backend::Postgres).await
}

#[tokio::test]
async fn a_bad_row_mid_stream_names_it_and_keeps_what_came_before_sqlite() -> anyhow::Result<()> {
    a_bad_row_mid_stream_names_it_and_keeps_what_came_before(Backend::Sqlite).await
}

#[tokio::test]
async fn a_bad_row_mid_stream_names_it_and_keeps_what_came_before_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    a_bad_row_mid_stream_names_it_and_keeps_what_came_before(Backend::Postgres).await
}

#[tokio::test]
async fn undecodable_messages_are_invalid_argument_sqlite() -> anyhow::Result<()> {
    undecodable_messages_are_invalid_argument(Backend::Sqlite).await
}

#[tokio::test]
async fn undecodable_messages_are_invalid_argument_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    undecodable_messages_are_invalid_argument(Backend::Postgres).await
}

#[tokio::test]
async fn impossible_readings_are_refused_and_reads_never_fail_sqlite() -> anyhow::Result<()> {
    impossible_readings_are_refused_and_reads_never_fail(Backend::Sqlite).await
}

#[tokio::test]
async fn impossible_readings_are_refused_and_reads_never_fail_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    impossible_readings_are_refused_and_reads_never_fail(Backend::Postgres).await
}
