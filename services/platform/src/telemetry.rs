//! Logs, traces and metrics. Human-readable lines by default, JSON lines on request; when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans and metrics (see [`crate::metrics`]) are also
//! exported over OTLP/gRPC to it.

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Keeps the exporters alive; flushes pending spans and metrics when dropped.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    meters: Option<SdkMeterProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
        if let Some(m) = self.meters.take() {
            let _ = m.shutdown();
        }
    }
}

/// Installs the global subscriber. `filter` uses `RUST_LOG` syntax (`RUST_LOG` wins when set).
pub fn init(service: &str, format: LogFormat, filter: &str) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .with_context(|| format!("bad log filter {filter:?}"))?;
    let (provider, meters) = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => {
            let resource = Resource::builder()
                .with_service_name(service.to_string())
                .build();
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()
                .context("building the OTLP exporter")?;
            let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .build()
                .context("building the OTLP metric exporter")?;
            // Exported every 60 s (`OTEL_METRIC_EXPORT_INTERVAL` changes it) and at shutdown.
            let meters = SdkMeterProvider::builder()
                .with_periodic_exporter(metric_exporter)
                .with_resource(resource.clone())
                .build();
            crate::metrics::install(meters.clone());
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build();
            (Some(provider), Some(meters))
        }
        _ => (None, None),
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("cwsm")));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = match format {
        LogFormat::Human => registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .try_init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true))
            .try_init(),
    };
    result.context("installing the tracing subscriber")?;
    Ok(Telemetry { provider, meters })
}

/// W3C trace context across process boundaries: into event envelopes and gRPC metadata, and
/// back out. Without an OpenTelemetry exporter installed, spans have no trace context and these
/// carry nothing.
pub mod propagation {
    use std::collections::HashMap;

    use opentelemetry::Context;
    use opentelemetry::propagation::{Extractor, TextMapPropagator};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// The `traceparent` of the current span, empty when it has none.
    pub fn current_traceparent() -> String {
        let cx = tracing::Span::current().context();
        let mut carrier: HashMap<String, String> = HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        carrier.remove("traceparent").unwrap_or_default()
    }

    struct One<'a>(&'a str);

    impl Extractor for One<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            (key == "traceparent" && !self.0.is_empty()).then_some(self.0)
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent"]
        }
    }

    /// Makes `span` a child of the remote span named by `traceparent` (ignored when empty or
    /// malformed).
    pub fn adopt(span: &tracing::Span, traceparent: &str) {
        if traceparent.is_empty() {
            return;
        }
        let cx: Context = TraceContextPropagator::new().extract(&One(traceparent));
        let _ = span.set_parent(cx);
    }
}
