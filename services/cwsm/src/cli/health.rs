//! `cwsm health`: asks a server's `grpc.health.v1.Health/Check` whether a service is SERVING, and
//! exits non-zero unless it is. The image has no grpcurl, so Docker's healthcheck (and a
//! Kubernetes exec probe, where native gRPC probes are not available) runs this.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[derive(Args)]
pub struct HealthArgs {
    /// Server address.
    #[arg(long, env = "CWSM_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Service to ask about, e.g. cwsm.matching.v1.MatchingService [default: the whole server].
    #[arg(long, default_value = "", hide_default_value = true)]
    pub service: String,
    /// Seconds to wait for the connection and the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
}

pub async fn health(args: HealthArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let channel = Channel::from_shared(cwsm_platform::server::server_url(&args.server))
        .with_context(|| format!("not a server address: {}", args.server))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("cannot reach {}", args.server))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: args.service.clone(),
        })
        .await
        .with_context(|| format!("health check of {:?} failed", args.service))?;
    let status =
        ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown);
    let name = if args.service.is_empty() {
        "server"
    } else {
        args.service.as_str()
    };
    println!("{name}: {}", status.as_str_name());
    if status != ServingStatus::Serving {
        anyhow::bail!("{name} is not serving");
    }
    Ok(())
}
