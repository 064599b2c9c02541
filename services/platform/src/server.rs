//! The gRPC server every mode uses: the services given, plus `grpc.health.v1` (a status per
//! service) and server reflection v1 and v1alpha (grpcurl 1.8 speaks only v1alpha). Health and
//! reflection need no token.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Binds `listen` ("host:port"); port 0 picks a free one.
pub async fn bind(listen: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Health and reflection, ready to be joined by the services. `descriptors` are the encoded
/// file descriptor sets of the services served (reflection describes them to clients without
/// the `.proto` files).
pub fn base_routes(descriptors: &[&'static [u8]]) -> anyhow::Result<(Routes, HealthReporter)> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let mut v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    let mut v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for set in descriptors {
        v1 = v1.register_encoded_file_descriptor_set(set);
        v1alpha = v1alpha.register_encoded_file_descriptor_set(set);
    }
    let v1 = v1.build_v1()?;
    let v1alpha = v1alpha.build_v1alpha()?;
    let routes = Routes::new(health).add_service(v1).add_service(v1alpha);
    Ok((routes, reporter))
}

/// Marks `service` (its full gRPC name) SERVING, and the server as a whole ("").
pub async fn set_serving(reporter: &HealthReporter, service: &str) {
    reporter
        .set_service_status(service, ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
}

/// Serves `routes` on `listener` until `shutdown`, then lets in-flight calls finish. HTTP/1.1
/// is accepted beside HTTP/2, so plain web routes merged into `routes` answer browsers.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    tonic::transport::Server::builder()
        .accept_http1(true)
        .trace_fn(|request| {
            let span = tracing::info_span!("grpc", method = %request.uri().path());
            // Continue the caller's trace when it sent one.
            if let Some(parent) = request
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
            {
                crate::telemetry::propagation::adopt(&span, parent);
            }
            span
        })
        // RPC latency and status per method (nothing recorded without a meter provider).
        .layer(crate::metrics::RpcMetricsLayer)
        .add_routes(routes)
        // Nagle's algorithm would hold small replies back ~40 ms waiting for the client's ack.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await?;
    Ok(())
}

/// A token cancelled on SIGINT (Ctrl-C) or SIGTERM (what Kubernetes and docker send).
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight calls");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
