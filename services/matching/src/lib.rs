//! Matching: the two-sided marketplace. Service companies publish profiles and offerings; water
//! users publish project requests; requests are ranked against offerings with an explained
//! score; companies propose; the water user accepts one, which starts a project (through the
//! `ProposalAccepted` event, written to the outbox in the acceptance's own transaction).
//!
//! - [`domain`]: the marketplace's types and their checks, plain Rust.
//! - [`ranking`]: hard filters and the explained score.
//! - [`store`]: the tables, on SQLite or PostgreSQL.
//! - [`events`]: the `ProjectMilestone` consumer that keeps companies' verified track records.
//! - [`grpc`] and [`convert`]: the API (who may do what, idempotency, the acceptance event).

pub mod convert;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod ranking;
pub mod store;

use std::sync::Arc;

use cwsm_platform::auth::AuthInterceptor;
use cwsm_proto::matching::v1::matching_service_server::MatchingServiceServer;
use tonic::service::interceptor::InterceptedService;

pub const SERVICE_NAME: &str = "cwsm.matching.v1.MatchingService";

/// The matching service: its store and its API.
#[derive(Clone)]
pub struct Matching {
    store: store::Store,
    on_change: Arc<dyn Fn() + Send + Sync>,
}

impl Matching {
    /// Connects to the service's database (migrating it). `on_change` is called after every
    /// commit that wrote an event, to wake the outbox relay.
    pub async fn connect(
        database_url: &str,
        on_change: Arc<dyn Fn() + Send + Sync>,
    ) -> anyhow::Result<Matching> {
        Ok(Matching {
            store: store::Store::connect(database_url).await?,
            on_change,
        })
    }

    pub fn db(&self) -> &cwsm_platform::db::Db {
        &self.store.db
    }

    pub fn store(&self) -> &store::Store {
        &self.store
    }

    /// The consumer of `ProjectMilestone` events (topic `projects.milestones`, consumer group
    /// [`events::CONSUMER_GROUP`]) that keeps companies' verified track records.
    pub fn event_handler(&self) -> Arc<dyn cwsm_platform::bus::EventHandler> {
        Arc::new(events::MilestoneHandler {
            store: self.store.clone(),
        })
    }

    pub fn grpc_service(
        &self,
        auth: AuthInterceptor,
    ) -> InterceptedService<MatchingServiceServer<grpc::MatchingApi>, AuthInterceptor> {
        MatchingServiceServer::with_interceptor(
            grpc::MatchingApi {
                store: self.store.clone(),
                on_change: self.on_change.clone(),
            },
            auth,
        )
    }
}
