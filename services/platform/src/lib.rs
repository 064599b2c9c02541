//! What every cwsm service runs on, and nothing that belongs to one service.
//!
//! - [`config`]: settings from defaults, an optional TOML file, `CWSM_*` environment variables
//!   and command-line flags, in that order of precedence.
//! - [`telemetry`]: `tracing` set-up: human logs by default, JSON on request, OTLP traces and metrics
//!   when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - [`credit_code`]: the GB 32100 unified social credit code that names organizations.
//! - [`db`]: a service's database chosen by URL scheme (`sqlite://` or `postgres://`), its own
//!   migrations applied at connect.
//! - [`bus`]: the event bus behind one trait: in-process, or Redis Streams with consumer groups.
//! - [`outbox`]: the transactional outbox (events written in the same transaction as the state
//!   change) and the relay that publishes them to the bus.
//! - [`auth`]: bearer-token (JWT) principals and the interceptor that requires them.
//! - [`error`] and [`grpc`]: the error vocabulary of every domain, its mapping to gRPC status
//!   codes, page tokens.
//! - [`idempotency`]: the one rule for retried writes: keys bound to caller, method and target,
//!   claimed first, with a fingerprint of the request ([`keyed_write!`]).
//! - [`quantity`]: litres, fen and basis points with checked arithmetic, and the ranges every
//!   incoming volume, amount and rate is checked against.
//! - [`input`]: length limits of strings and lists, `LIKE` patterns escaped.
//! - [`jurisdiction`]: administrative division codes (GB/T 2260) and what contains what.
//! - [`credit_code`]: the unified social credit code check (GB 32100).
//! - [`server`]: the gRPC server with health and reflection, and graceful shutdown.
//! - [`metrics`]: OpenTelemetry metrics: RPC latency and status per method, outbox depth,
//!   consumer lag, redeliveries and dead letters.
//!
//! `platform` knows no service: services plug into it, never the other way round.

pub mod auth;
pub mod bus;
pub mod config;
pub mod credit_code;
pub mod db;
pub mod documents;
pub mod error;
pub mod gazetteer;
pub mod grpc;
pub mod idempotency;
pub mod input;
pub mod jurisdiction;
pub mod lang;
pub mod metrics;
pub mod outbox;
pub mod quantity;
pub mod sample;
pub mod server;
pub mod telemetry;
pub mod vocab;

pub use error::{Error, Result};

/// Milliseconds since the Unix epoch: how every instant is stored (an integer, same on SQLite and
/// PostgreSQL).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A new identifier: a UUIDv7, so identifiers sort by creation time (pagination orders by id).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Whether `text` has the shape of an id [`new_id`] makes (a UUID).
pub fn is_id(text: &str) -> bool {
    uuid::Uuid::try_parse(text).is_ok()
}
