//! Metrics, through OpenTelemetry: RPC latency and status per method, outbox depth, consumer lag,
//! redeliveries and dead letters.
//!
//! | instrument | kind | unit | attributes |
//! |---|---|---|---|
//! | `rpc.server.duration` | histogram | ms | `rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code` |
//! | `outbox.depth` | observable gauge | `{event}` | `service` |
//! | `events.consumer.lag` | histogram | ms | `messaging.consumer.group.name`, `messaging.destination.name` |
//! | `events.redelivered` | counter | `{event}` | the same, and `reason` (`retry`, `claimed`, `backlog`) |
//! | `events.dead_lettered` | counter | `{event}` | the same two |
//!
//! Errors per method are the duration histogram's counts by `rpc.grpc.status_code` (0 is OK).
//!
//! The provider is installed with [`install`] (by [`crate::telemetry::init`] when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set). Until then every function here returns at once: no
//! instrument, no attribute is even built. Instruments are created from the global provider on
//! first use after each [`install`], so a provider installed late (a test's) is still the one
//! recorded into; a provider set with `opentelemetry::global::set_meter_provider` directly is
//! not noticed.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider, ObservableGauge};
use tonic::codegen::http;

/// Bumped by [`install`]; 0 means no provider: metrics are off.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The instruments of the provider of generation `.0`.
static CURRENT: RwLock<Option<(u64, Arc<Instruments>)>> = RwLock::new(None);
/// The outbox depth each relay last measured, by service (several relays of one service run in
/// one process only in tests; their depths add up).
static DEPTHS: Mutex<Vec<(&'static str, Weak<AtomicI64>)>> = Mutex::new(Vec::new());

/// Makes `provider` the global meter provider and the one these metrics record into.
pub fn install<P>(provider: P)
where
    P: MeterProvider + Send + Sync + 'static,
{
    opentelemetry::global::set_meter_provider(provider);
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Whether a meter provider was installed (else recording is skipped altogether).
pub fn enabled() -> bool {
    GENERATION.load(Ordering::Acquire) != 0
}

struct Instruments {
    rpc_duration: Histogram<f64>,
    consumer_lag: Histogram<f64>,
    redelivered: Counter<u64>,
    dead_lettered: Counter<u64>,
    _outbox_depth: ObservableGauge<i64>,
}

impl Instruments {
    fn build() -> Self {
        let meter = opentelemetry::global::meter("cwsm");
        Instruments {
            rpc_duration: meter
                .f64_histogram("rpc.server.duration")
                .with_unit("ms")
                .with_description("Duration of inbound gRPC calls, to the response headers")
                .build(),
            consumer_lag: meter
                .f64_histogram("events.consumer.lag")
                .with_unit("ms")
                .with_description("From the state change an event reports to its handling")
                .build(),
            redelivered: meter
                .u64_counter("events.redelivered")
                .with_unit("{event}")
                .with_description("Deliveries of an event after its first")
                .build(),
            dead_lettered: meter
                .u64_counter("events.dead_lettered")
                .with_unit("{event}")
                .with_description("Events set aside as dead letters")
                .build(),
            _outbox_depth: meter
                .i64_observable_gauge("outbox.depth")
                .with_unit("{event}")
                .with_description("Outbox rows not yet published, as last measured by the relay")
                .with_callback(|gauge| {
                    for (service, depth) in outbox_depths() {
                        gauge.observe(depth, &[KeyValue::new("service", service)]);
                    }
                })
                .build(),
        }
    }
}

/// The instruments of the installed provider, `None` when metrics are off.
fn instruments() -> Option<Arc<Instruments>> {
    let generation = GENERATION.load(Ordering::Acquire);
    if generation == 0 {
        return None;
    }
    if let Ok(current) = CURRENT.read()
        && let Some((g, i)) = current.as_ref()
        && *g == generation
    {
        return Some(i.clone());
    }
    // Build under the write lock, so one provider gets one set (and one gauge callback).
    let mut current = CURRENT.write().ok()?;
    if let Some((g, i)) = current.as_ref()
        && *g == generation
    {
        return Some(i.clone());
    }
    let built = Arc::new(Instruments::build());
    *current = Some((generation, built.clone()));
    Some(built)
}

fn outbox_depths() -> BTreeMap<&'static str, i64> {
    let mut by_service = BTreeMap::new();
    if let Ok(mut depths) = DEPTHS.lock() {
        depths.retain(|(service, depth)| match depth.upgrade() {
            Some(depth) => {
                *by_service.entry(*service).or_insert(0) += depth.load(Ordering::Relaxed);
                true
            }
            None => false,
        });
    }
    by_service
}

/// Where a relay keeps the outbox depth it last measured; reported as `outbox.depth` for
/// `service` as long as the returned value lives.
pub fn outbox_depth(service: &'static str) -> Arc<AtomicI64> {
    let depth = Arc::new(AtomicI64::new(0));
    if let Ok(mut depths) = DEPTHS.lock() {
        depths.push((service, Arc::downgrade(&depth)));
    }
    // The gauge's callback is registered with the instruments.
    let _ = instruments();
    depth
}

fn event_attributes(group: &str, topic: &str) -> [KeyValue; 2] {
    [
        KeyValue::new("messaging.consumer.group.name", group.to_string()),
        KeyValue::new("messaging.destination.name", topic.to_string()),
    ]
}

/// An event handled by consumer `group`: the lag since `occurred_at_ms` (skipped when the event
/// carries no time).
pub fn event_handled(group: &str, topic: &str, occurred_at_ms: i64) {
    let Some(m) = instruments() else { return };
    if occurred_at_ms <= 0 {
        return;
    }
    let lag = (crate::now_ms() - occurred_at_ms).max(0);
    m.consumer_lag
        .record(lag as f64, &event_attributes(group, topic));
}

/// Why an event came again: `retry` (its handler failed), `claimed` (taken over from a dead
/// consumer), `backlog` (delivered before a restart, never acknowledged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redelivery {
    Retry,
    Claimed,
    Backlog,
}

impl Redelivery {
    fn as_str(self) -> &'static str {
        match self {
            Redelivery::Retry => "retry",
            Redelivery::Claimed => "claimed",
            Redelivery::Backlog => "backlog",
        }
    }
}

/// `count` events delivered again to consumer `group`.
pub fn events_redelivered(group: &str, topic: &str, reason: Redelivery, count: u64) {
    let Some(m) = instruments() else { return };
    if count == 0 {
        return;
    }
    let [a, b] = event_attributes(group, topic);
    m.redelivered
        .add(count, &[a, b, KeyValue::new("reason", reason.as_str())]);
}

/// An event set aside as a dead letter by consumer `group`.
pub fn event_dead_lettered(group: &str, topic: &str) {
    let Some(m) = instruments() else { return };
    m.dead_lettered.add(1, &event_attributes(group, topic));
}

/// `/package.Service/Method` split into service and method; `None` for other paths.
fn grpc_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

/// Times every gRPC call the server answers into `rpc.server.duration`, with the status code
/// of the response headers. Requests that are not gRPC (the dashboard) are not recorded.
///
/// The time and status are those of the response *headers*: complete for unary calls (an error
/// is sent trailers-only, its `grpc-status` in the headers; a success has none there and counts
/// as OK). For a streaming response this is the time to its start, and an error raised
/// mid-stream (in the trailers) is counted as OK. UNIMPLEMENTED calls are recorded under
/// service and method `_OTHER`: the path is the caller's to choose, so it must not make new
/// series.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

/// The service [`RpcMetricsLayer`] wraps around the server's routes.
#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    inner: S,
}

const UNIMPLEMENTED: i64 = 12;
const OTHER: &str = "_OTHER";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone is not known to be ready; the ready one serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let is_grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        let call = match instruments() {
            Some(m) if is_grpc => grpc_method(request.uri().path())
                .map(|(s, method)| (m, s.to_string(), method.to_string(), Instant::now())),
            _ => None,
        };
        let future = inner.call(request);
        Box::pin(async move {
            let result = future.await;
            if let Some((m, service, method, started)) = call {
                let code = match &result {
                    Ok(response) => response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or(0),
                    // The transport failed the call: UNKNOWN.
                    Err(_) => 2,
                };
                // Paths are the caller's to choose: an unknown one must not become a series.
                let (service, method) = if code == UNIMPLEMENTED {
                    (OTHER.to_string(), OTHER.to_string())
                } else {
                    (service, method)
                };
                m.rpc_duration.record(
                    started.elapsed().as_secs_f64() * 1000.0,
                    &[
                        KeyValue::new("rpc.system", "grpc"),
                        KeyValue::new("rpc.service", service),
                        KeyValue::new("rpc.method", method),
                        KeyValue::new("rpc.grpc.status_code", code),
                    ],
                );
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_paths_split_into_service_and_method() {
        assert_eq!(
            grpc_method("/cwsm.projects.v1.ProjectsService/GetProject"),
            Some(("cwsm.projects.v1.ProjectsService", "GetProject"))
        );
        assert_eq!(grpc_method("/dashboard"), None);
        assert_eq!(grpc_method("/dashboard/app.js/x"), None);
        assert_eq!(grpc_method("/"), None);
        assert_eq!(grpc_method("//Method"), None);
        assert_eq!(grpc_method(""), None);
    }

    #[test]
    fn depths_add_up_per_service_and_are_forgotten_when_dropped() {
        let a = outbox_depth("test-depth-a");
        let b = outbox_depth("test-depth-a");
        a.store(3, Ordering::Relaxed);
        b.store(4, Ordering::Relaxed);
        assert_eq!(outbox_depths().get("test-depth-a"), Some(&7));
        drop(a);
        drop(b);
        assert_eq!(outbox_depths().get("test-depth-a"), None);
    }
}
