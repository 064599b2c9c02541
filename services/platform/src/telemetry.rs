//! Logs and traces. Human-readable lines by default, JSON lines on request; when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans are also exported over OTLP/gRPC.

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Keeps the exporter alive; flushes pending spans when dropped.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber. `filter` uses `RUST_LOG` syntax (`RUST_LOG` wins when set).
pub fn init(service: &str, format: LogFormat, filter: &str) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .with_context(|| format!("bad log filter {filter:?}"))?;
    let provider = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()
                .context("building the OTLP exporter")?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        Resource::builder()
                            .with_service_name(service.to_string())
                            .build(),
                    )
                    .build(),
            )
        }
        _ => None,
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
    Ok(Telemetry { provider })
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
