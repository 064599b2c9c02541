//! Projects: the contract water-saving project from signing to hand-over.
//!
//! - [`domain`]: the project, its contract and the lifecycle state machine, plain Rust.
//! - [`store`]: the tables, on SQLite or PostgreSQL; every stage change writes its transition,
//!   its milestone log entry and its outbox event in one transaction.
//! - [`events`]: the wire form of events: `ProposalAccepted` in (creates the project),
//!   `ProjectMilestone` out.
//! - [`metering`], [`mv`], [`settle`], [`ledger`]: meters and reading flags, measurement and
//!   verification (OLS baseline, ASHRAE Guideline 14), settlement by contract model, and
//!   reporting periods; plain Rust.
//! - [`readings`] and [`ledger_store`]: their tables (bulk ingestion; periods, disputes,
//!   settlements, with PERIOD_VERIFIED through the outbox).
//! - [`corrections`] and [`corrections_store`]: corrections of stored readings, proposed by a
//!   party and decided by the verifier; accepted ones count in the M&V instead of the reading.
//! - [`verifiers`]: who verifies a project: an administrator's assignment, or a party's
//!   proposal an administrator approves, through one assignment path with its audit row.
//! - [`evidence`]: evidence documents of a project, by SHA-256, in the database.
//! - [`verification`] and [`verification_store`]: a period's verification report (HTML and
//!   xlsx), archived with its SHA-256 when the period is verified.
//! - [`cache`]: projects as last read, kept in memory for GetProject and forgotten on every
//!   change (in other replicas through PostgreSQL's NOTIFY).
//! - [`grpc`]: the adapter between `cwsm.projects.v1` and the domain.

pub mod cache;
pub mod convert;
pub mod corrections;
pub mod corrections_store;
pub mod domain;
pub mod events;
pub mod evidence;
pub mod grpc;
pub mod ledger;
pub mod ledger_store;
pub mod metering;
pub mod mv;
pub mod readings;
pub mod settle;
pub mod store;
pub mod verification;
pub mod verification_store;
pub mod verifiers;

use std::sync::Arc;

use cwsm_platform::auth::AuthInterceptor;
use cwsm_platform::bus::EventHandler;
use cwsm_proto::projects::v1::projects_service_server::ProjectsServiceServer;
use tonic::service::interceptor::InterceptedService;

pub const SERVICE_NAME: &str = "cwsm.projects.v1.ProjectsService";

/// The projects service: its store, its API and its event consumer.
#[derive(Clone)]
pub struct Projects {
    store: store::Store,
    on_change: Arc<dyn Fn() + Send + Sync>,
    limits: grpc::ApiLimits,
}

impl Projects {
    /// Connects to the service's database (migrating it). `on_change` is called after every
    /// commit that wrote events, to wake the outbox relay.
    pub async fn connect(
        database_url: &str,
        on_change: Arc<dyn Fn() + Send + Sync>,
    ) -> anyhow::Result<Projects> {
        Ok(Projects {
            store: store::Store::connect(database_url, events::encode_milestone).await?,
            on_change,
            limits: grpc::ApiLimits::default(),
        })
    }

    /// Like [`Projects::connect`], in another PostgreSQL schema (the bench's scratch one).
    pub async fn connect_in_schema(
        database_url: &str,
        schema: &str,
        on_change: Arc<dyn Fn() + Send + Sync>,
    ) -> anyhow::Result<Projects> {
        Ok(Projects {
            store: store::Store::connect_in_schema(database_url, schema, events::encode_milestone)
                .await?,
            on_change,
            limits: grpc::ApiLimits::default(),
        })
    }

    pub fn db(&self) -> &cwsm_platform::db::Db {
        &self.store.db
    }

    pub fn store(&self) -> &store::Store {
        &self.store
    }

    /// IngestReadings streams open at once per caller, and the largest message decoded (bytes);
    /// call before serving.
    pub fn limit(&mut self, streams_per_caller: usize, max_message_bytes: usize) {
        self.limits = grpc::ApiLimits {
            ingest_streams: cwsm_platform::server::CallerStreams::new(
                "IngestReadings",
                streams_per_caller,
            ),
            max_message_bytes,
        };
    }

    /// Keeps up to `entries` projects as last read in memory (0: none); call before serving.
    pub fn keep_in_memory(&mut self, entries: usize) {
        self.store.keep_in_memory(entries);
    }

    /// Keeps evidence documents' bytes in `documents` (a folder, or S3); call before serving.
    pub fn keep_documents_in(&mut self, documents: cwsm_platform::documents::DocumentStore) {
        self.store.keep_documents_in(documents);
    }

    /// Follows other replicas' changes to projects until `stop`, so that the projects kept in
    /// memory are forgotten when they change (PostgreSQL; returns at once on SQLite).
    pub async fn follow_changes(self, stop: tokio_util::sync::CancellationToken) {
        self.store.follow_changes(stop).await;
    }

    /// Handles `ProposalAccepted` (topic `matching.proposals-accepted`, group `projects`).
    pub fn event_handler(&self) -> Arc<dyn EventHandler> {
        Arc::new(events::AcceptedProposals {
            store: self.store.clone(),
            on_change: self.on_change.clone(),
        })
    }

    pub fn grpc_service(
        &self,
        auth: AuthInterceptor,
    ) -> InterceptedService<ProjectsServiceServer<grpc::ProjectsApi>, AuthInterceptor> {
        InterceptedService::new(
            ProjectsServiceServer::new(grpc::ProjectsApi {
                store: self.store.clone(),
                on_change: self.on_change.clone(),
                ingest_streams: self.limits.ingest_streams.clone(),
            })
            .max_decoding_message_size(self.limits.max_message_bytes),
            auth,
        )
    }
}
