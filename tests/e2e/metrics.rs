//! Metrics: RPC latency and status per method, outbox depth, consumer lag, redeliveries and dead
//! letters, read back from an in-memory exporter.
//!
//! The meter provider is process-wide and the other tests of this binary run beside this one
//! (their calls are recorded too once it is installed), so the checks look for growth in
//! cumulative counts, or for attributes and values only this test produces.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use cwsm_platform::auth::Role;
use cwsm_platform::bus::{
    self, Envelope, EventBus, EventHandler, InProcessBus, Poison, RedisBus, topics,
};
use cwsm_proto::events::v1::ProjectMilestone;
use cwsm_proto::matching::v1 as m;
use cwsm_proto::projects::v1 as p;
use cwsm_proto::types;
use cwsm_tests::{Backend, TestApp, eventually, postgres_and_redis_available, redis_url};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use tokio_util::sync::CancellationToken;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);
const GET_PROJECT: &str = "GetProject";
const LIST_COMPANIES: &str = "ListCompanies";

/// One data point, flattened: `value` is a histogram's count, a counter's sum or a gauge's value.
#[derive(Debug)]
struct Point {
    name: String,
    attributes: Vec<(String, String)>,
    value: f64,
    max: f64,
}

impl Point {
    fn has(&self, key: &str, value: &str) -> bool {
        self.attributes.iter().any(|(k, v)| k == key && v == value)
    }
}

struct Reader {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

impl Reader {
    /// Exports now and returns what the provider holds (cumulative).
    async fn points(&self) -> anyhow::Result<Vec<Point>> {
        self.exporter.reset();
        let provider = self.provider.clone();
        tokio::task::spawn_blocking(move || provider.force_flush()).await??;
        let mut points = Vec::new();
        for resource in self.exporter.get_finished_metrics()? {
            for scope in resource.scope_metrics() {
                for metric in scope.metrics() {
                    flatten(metric.name(), metric.data(), &mut points);
                }
            }
        }
        Ok(points)
    }

    /// The sum of the values of `name`'s points with all of `attributes`.
    async fn total(&self, name: &str, attributes: &[(&str, &str)]) -> anyhow::Result<f64> {
        Ok(self
            .points()
            .await?
            .iter()
            .filter(|p| p.name == name && attributes.iter().all(|(k, v)| p.has(k, v)))
            .map(|p| p.value)
            .sum())
    }
}

fn attributes<'a>(kvs: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> Vec<(String, String)> {
    kvs.map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

fn flatten(name: &str, data: &AggregatedMetrics, out: &mut Vec<Point>) {
    let point = |attributes, value, max| Point {
        name: name.to_string(),
        attributes,
        value,
        max,
    };
    match data {
        AggregatedMetrics::F64(MetricData::Histogram(h)) => {
            for d in h.data_points() {
                out.push(point(
                    attributes(d.attributes()),
                    d.count() as f64,
                    d.max().unwrap_or_default(),
                ));
            }
        }
        AggregatedMetrics::U64(MetricData::Sum(s)) => {
            for d in s.data_points() {
                out.push(point(attributes(d.attributes()), d.value() as f64, 0.0));
            }
        }
        AggregatedMetrics::I64(MetricData::Gauge(g)) => {
            for d in g.data_points() {
                out.push(point(attributes(d.attributes()), d.value() as f64, 0.0));
            }
        }
        _ => {}
    }
}

/// Fails the first time it sees each event.
#[derive(Default)]
struct FailsOnce {
    failed: AtomicBool,
}

#[async_trait]
impl EventHandler for FailsOnce {
    async fn handle(&self, _event: &Envelope) -> anyhow::Result<()> {
        if self.failed.swap(true, Ordering::SeqCst) {
            Ok(())
        } else {
            anyhow::bail!("not yet")
        }
    }
}

struct AlwaysPoison;

#[async_trait]
impl EventHandler for AlwaysPoison {
    async fn handle(&self, _event: &Envelope) -> anyhow::Result<()> {
        Err(Poison("cannot decode".into()).into())
    }
}

fn envelope(topic: &str, occurred_at_ms: i64, payload: Vec<u8>, kind: &str) -> Envelope {
    Envelope {
        event_id: cwsm_platform::new_id(),
        topic: topic.to_string(),
        kind: kind.to_string(),
        payload,
        occurred_at_ms,
        trace_parent: String::new(),
    }
}

/// The provider of this binary's tests, installed by the first test that asks.
fn reader() -> &'static Reader {
    static READER: OnceLock<Reader> = OnceLock::new();
    READER.get_or_init(|| {
        // Exported only when a test flushes.
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(
                PeriodicReader::builder(exporter.clone())
                    .with_interval(Duration::from_secs(3600))
                    .build(),
            )
            .build();
        cwsm_platform::metrics::install(provider.clone());
        Reader { provider, exporter }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_outbox_and_event_metrics_are_recorded() -> anyhow::Result<()> {
    let reader = reader();

    let rpc = |method: &'static str, code: &'static str| {
        [
            ("rpc.method", method),
            ("rpc.grpc.status_code", code),
            ("rpc.system", "grpc"),
        ]
    };
    let ok_before = reader
        .total("rpc.server.duration", &rpc(LIST_COMPANIES, "0"))
        .await?;
    let not_found_before = reader
        .total("rpc.server.duration", &rpc(GET_PROJECT, "5"))
        .await?;

    let app = TestApp::start(Backend::Sqlite).await?;
    let admin = app.token(Role::Admin, None);

    // A call that succeeds and one that fails.
    app.matching(&admin)
        .list_companies(m::ListCompaniesRequest::default())
        .await?;
    let err = app
        .projects(&admin)
        .get_project(p::GetProjectRequest {
            project_id: "no-such-project".into(),
        })
        .await
        .expect_err("unknown project");
    assert_eq!(err.code(), Code::NotFound);

    let ok_after = reader
        .total("rpc.server.duration", &rpc(LIST_COMPANIES, "0"))
        .await?;
    let not_found_after = reader
        .total("rpc.server.duration", &rpc(GET_PROJECT, "5"))
        .await?;
    assert!(
        ok_after > ok_before,
        "ListCompanies OK recorded: {ok_before} -> {ok_after}"
    );
    assert!(
        not_found_after > not_found_before,
        "GetProject NOT_FOUND recorded: {not_found_before} -> {not_found_after}"
    );
    let points = reader.points().await?;
    let call = points
        .iter()
        .find(|p| p.name == "rpc.server.duration" && p.has("rpc.method", GET_PROJECT))
        .expect("a GetProject point");
    assert!(
        call.has("rpc.service", "cwsm.projects.v1.ProjectsService"),
        "{call:?}"
    );
    // The dashboard is not gRPC: not recorded as a call.
    assert!(
        !points
            .iter()
            .any(|p| p.name == "rpc.server.duration" && p.has("rpc.method", "dashboard")),
    );

    // Each relay reports its outbox depth.
    for service in ["matching", "projects"] {
        assert!(
            points
                .iter()
                .any(|p| p.name == "outbox.depth" && p.has("service", service)),
            "outbox depth of {service} reported: {points:?}"
        );
    }

    // An event that happened an hour ago: its lag, well beyond any other test's, shows it was
    // measured when reporting handled it.
    let hour_ago = cwsm_platform::now_ms() - 3_600_000;
    let milestone = ProjectMilestone {
        event_id: cwsm_platform::new_id(),
        project_id: cwsm_platform::new_id(),
        proposal_id: cwsm_platform::new_id(),
        sequence: 1,
        milestone: types::Milestone::Contracted as i32,
        project_title: "Metrics".into(),
        sector: types::Sector::School as i32,
        town: "新桥街道".into(),
        contract_model: types::ContractModel::SharedSavings as i32,
        ..Default::default()
    };
    let mut event = envelope(
        topics::PROJECT_MILESTONES,
        hour_ago,
        prost::Message::encode_to_vec(&milestone),
        topics::PROJECT_MILESTONE_KIND,
    );
    event.event_id = milestone.event_id.clone();
    app.bus.publish(&event).await?;
    let lag = eventually(WAIT, || async {
        reader.points().await.ok().and_then(|points| {
            points
                .into_iter()
                .find(|p| {
                    p.name == "events.consumer.lag"
                        && p.has("messaging.consumer.group.name", "reporting")
                        && p.has("messaging.destination.name", topics::PROJECT_MILESTONES)
                        && p.max >= 3_600_000.0
                })
                .map(|p| p.max)
        })
    })
    .await;
    assert!(lag.is_some(), "reporting's lag for the hour-old event");
    app.stop().await?;

    // A retry and a dead letter, on a bus and topic of this test's own.
    let topic = format!("metrics-test.{}", cwsm_platform::new_id());
    let bus = InProcessBus::new();
    let shutdown = CancellationToken::new();
    let mut consumers = tokio::task::JoinSet::new();
    for (group, handler) in [
        (
            "metrics-test-retry",
            Arc::new(FailsOnce::default()) as Arc<dyn EventHandler>,
        ),
        ("metrics-test-poison", Arc::new(AlwaysPoison)),
    ] {
        let sub = bus.subscribe(&topic, group, "test").await?;
        consumers.spawn(bus::consume(sub, handler, shutdown.clone(), group));
    }
    bus.publish(&envelope(&topic, cwsm_platform::now_ms(), vec![], "test"))
        .await?;
    let group = |name: &'static str| {
        [
            ("messaging.consumer.group.name", name),
            ("messaging.destination.name", topic.as_str()),
        ]
    };
    let seen = eventually(WAIT, || async {
        let redelivered = reader
            .total("events.redelivered", &group("metrics-test-retry"))
            .await
            .ok()?;
        let dead = reader
            .total("events.dead_lettered", &group("metrics-test-poison"))
            .await
            .ok()?;
        let handled = reader
            .total("events.consumer.lag", &group("metrics-test-retry"))
            .await
            .ok()?;
        (redelivered >= 1.0 && dead >= 1.0 && handled >= 1.0).then_some((redelivered, dead))
    })
    .await;
    shutdown.cancel();
    while consumers.join_next().await.is_some() {}
    assert_eq!(
        seen,
        Some((1.0, 1.0)),
        "one retry of the failing event, one dead letter"
    );
    Ok(())
}

/// On Redis: an event read again by its consumer after a restart (its backlog), then taken over
/// by another consumer of the group, counts as redelivered twice, once for each reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backlog_and_take_over_count_as_redeliveries() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    let reader = reader();
    let prefix = format!("cwsm-test-{}", cwsm_platform::new_id());
    let bus = RedisBus::connect_with_prefix(&redis_url(), &prefix)
        .await?
        .with_claim_idle(Duration::from_millis(200));
    let topic = "metrics.topic";
    let group = format!("metrics-claim-{}", cwsm_platform::new_id());
    let sent = envelope(topic, cwsm_platform::now_ms(), vec![1], "test");
    bus.publish(&sent).await?;
    let next = |mut sub: Box<dyn bus::Subscription>| async move {
        let delivery = tokio::time::timeout(WAIT, sub.next()).await??;
        anyhow::Ok((sub, delivery))
    };
    let (first, delivery) = next(bus.subscribe(topic, &group, "replica-1").await?).await?;
    assert_eq!(delivery.envelope, sent);
    drop(first); // restarted before acknowledging
    let (again, delivery) = next(bus.subscribe(topic, &group, "replica-1").await?).await?;
    assert_eq!(delivery.envelope, sent, "its own backlog first");
    drop(again); // and killed
    let taken = next(bus.subscribe(topic, &group, "replica-2").await?).await;

    let client = redis::Client::open(redis_url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let _: i64 = redis::cmd("DEL")
        .arg(bus.stream_key(topic))
        .query_async(&mut conn)
        .await?;
    let (_, delivery) = taken?;
    assert_eq!(delivery.envelope, sent, "taken over");

    let attributes = |reason: &'static str| {
        [
            ("messaging.consumer.group.name", group.as_str()),
            ("messaging.destination.name", topic),
            ("reason", reason),
        ]
    };
    assert_eq!(
        reader
            .total("events.redelivered", &attributes("backlog"))
            .await?,
        1.0
    );
    assert_eq!(
        reader
            .total("events.redelivered", &attributes("claimed"))
            .await?,
        1.0
    );
    Ok(())
}
