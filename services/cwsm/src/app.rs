//! Starting the services: all three in one process (`cwsm serve`, the embedded default) or one
//! of them (`cwsm serve matching …`, production). Each service gets its own database, its
//! outbox relay (if it emits events) and its event consumers (if it listens); all share one
//! gRPC port with health and reflection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cwsm_platform::auth::{AuthInterceptor, Keys, TokenVerifier};
use cwsm_platform::bus::{self, EventBus, EventHandler, InProcessBus, RedisBus, topics};
use cwsm_platform::config::Settings;
use cwsm_platform::db::Db;
use cwsm_platform::outbox::{Relay, RelayWaker};
use cwsm_platform::server;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Which services this process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Services {
    pub matching: bool,
    pub projects: bool,
    pub reporting: bool,
    pub accounts: bool,
}

impl Services {
    pub const ALL: Services = Services {
        matching: true,
        projects: true,
        reporting: true,
        accounts: true,
    };

    pub fn only(name: &str) -> anyhow::Result<Services> {
        let none = Services {
            matching: false,
            projects: false,
            reporting: false,
            accounts: false,
        };
        Ok(match name {
            "matching" => Services {
                matching: true,
                ..none
            },
            "projects" => Services {
                projects: true,
                ..none
            },
            "reporting" => Services {
                reporting: true,
                ..none
            },
            "accounts" => Services {
                accounts: true,
                ..none
            },
            "all" => Services::ALL,
            other => {
                anyhow::bail!(
                    "unknown service {other:?}: matching, projects, reporting, accounts or all"
                )
            }
        })
    }
}

/// A running process: where it listens and how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub bus: Arc<dyn EventBus>,
    /// The databases opened, by service name (for the banner and for tests).
    pub databases: Vec<(&'static str, Db)>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops serving, lets in-flight calls finish, stops relays and consumers.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let served = self.server.await.context("server task")?;
        while self.tasks.join_next().await.is_some() {}
        for (_, db) in &self.databases {
            db.close().await;
        }
        served
    }

    /// Waits until the server ends (after the shutdown token is cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        let Running {
            mut tasks,
            server,
            databases,
            ..
        } = self;
        let served = server.await.context("server task")?;
        while tasks.join_next().await.is_some() {}
        for (_, db) in &databases {
            db.close().await;
        }
        served
    }
}

/// The bus the settings ask for: Redis Streams when `redis_url` is set, else in-process, kept in
/// the data folder's `bus.db` so that a crash loses no event the relays handed over.
pub async fn bus_for(settings: &Settings) -> anyhow::Result<Arc<dyn EventBus>> {
    Ok(match &settings.redis_url {
        Some(url) => Arc::new(RedisBus::connect(url).await?),
        None => {
            std::fs::create_dir_all(&settings.data_dir)
                .with_context(|| format!("creating data folder {}", settings.data_dir.display()))?;
            Arc::new(InProcessBus::open(&settings.data_dir.join(InProcessBus::FILE)).await?)
        }
    })
}

/// The signing key: `jwt_secret` when configured, else the key file in the data folder.
pub fn keys_for(settings: &Settings) -> anyhow::Result<Arc<Keys>> {
    Ok(Arc::new(match &settings.jwt_secret {
        Some(secret) => Keys::from_secret(secret.as_bytes())?,
        None => Keys::load_or_create(&settings.data_dir)?,
    }))
}

/// How this process calls another service (`https://` URLs): trusting `tls_ca` (else the
/// system's roots), and with its own certificate where the servers ask for one (mutual TLS).
fn service_client_tls(settings: &Settings) -> cwsm_platform::server::ClientTls {
    cwsm_platform::server::ClientTls {
        ca: settings.tls_ca.clone(),
        cert: settings
            .tls_client_ca
            .as_ref()
            .and(settings.tls_cert.clone()),
        key: settings
            .tls_client_ca
            .as_ref()
            .and(settings.tls_key.clone()),
    }
}

/// Keeps `verifier` fed with the accounts service's keys and revocations, fetched from `url`
/// every `every` (a failed fetch keeps the last ones and is retried the next time).
async fn follow_accounts(
    url: String,
    tls: cwsm_platform::server::ClientTls,
    verifier: Arc<TokenVerifier>,
    every: Duration,
    stop: CancellationToken,
) {
    use cwsm_proto::accounts::v1 as pb;
    let fetch = || async {
        let channel = cwsm_platform::server::client_endpoint(&url, &tls)?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .connect()
            .await?;
        let mut client = pb::accounts_service_client::AccountsServiceClient::new(channel);
        let answer = client
            .get_verification_keys(pb::GetVerificationKeysRequest {})
            .await?
            .into_inner();
        let (jwks, revocations) = cwsm_accounts::grpc::verification_from(answer)?;
        verifier.set_jwks(&jwks)?;
        verifier.set_revocations(revocations);
        anyhow::Ok(())
    };
    loop {
        if let Err(e) = fetch().await {
            tracing::warn!(url = %url, error = %format!("{e:#}"), "cannot fetch the accounts service's keys; keeping the last");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

fn consumer_name(service: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "cwsm".to_string());
    format!("{service}@{host}")
}

/// Starts `services` on `settings.listen`, with `bus` and `keys`, until `shutdown`.
pub async fn start(
    settings: &Settings,
    services: Services,
    bus: Arc<dyn EventBus>,
    keys: Arc<Keys>,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    if settings.database_url.is_none() {
        // 0700: the SQLite files and the signing key are the owner's alone.
        cwsm_platform::db::create_private_dir(&settings.data_dir)?;
    }
    let (mut routes, health) = server::base_routes(&[cwsm_proto::FILE_DESCRIPTOR_SET])?;
    let mut tasks = JoinSet::new();
    // Tokens are checked against the accounts service's keys and revocations: in process when
    // it runs here, else fetched from `accounts_url`; operator tokens (HS256) as before.
    let verifier = TokenVerifier::new(Some(keys.clone()));
    let refresh_every = Duration::from_secs(settings.accounts_refresh_secs.clamp(1, 60));
    let mut accounts_started = None;
    if services.accounts {
        let accounts = cwsm_accounts::Accounts::connect(
            &settings.database_url_for("accounts"),
            cwsm_accounts::Options {
                district: cwsm_platform::jurisdiction::Jurisdiction::parse(
                    "district_code",
                    &settings.district_code,
                )
                .context("the district_code setting")?,
                oidc_providers: settings.oidc_providers.clone(),
                ..Default::default()
            },
            verifier.clone(),
        )
        .await
        .context("starting accounts")?;
        tasks.spawn(accounts.clone().follow(refresh_every, shutdown.clone()));
        accounts_started = Some(accounts);
    } else if let Some(url) = &settings.accounts_url {
        tasks.spawn(follow_accounts(
            url.clone(),
            service_client_tls(settings),
            verifier.clone(),
            refresh_every,
            shutdown.clone(),
        ));
    } else {
        tracing::warn!(
            "no accounts service here and no accounts_url: only operator tokens are accepted"
        );
    }
    let auth = AuthInterceptor::with_verifier(verifier);
    let mut databases = Vec::new();
    let mut healthy = Vec::new();
    let mut reporting_started = None;
    let poll = Duration::from_millis(settings.outbox_poll_ms.max(10));

    let relay = |tasks: &mut JoinSet<()>, db: Db, waker: RelayWaker, service: &'static str| {
        let relay = Relay {
            db,
            bus: bus.clone(),
            waker,
            poll,
            service,
        };
        tasks.spawn(relay.run(shutdown.clone()));
    };
    let consumer = |tasks: &mut JoinSet<()>,
                    topic: &'static str,
                    group: &'static str,
                    handler: Arc<dyn EventHandler>| {
        let bus = bus.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let name = consumer_name(group);
            loop {
                match bus.subscribe(topic, group, &name).await {
                    Ok(sub) => {
                        bus::consume(sub, handler, shutdown, group).await;
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(topic, group, error = %format!("{e:#}"), "cannot subscribe; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        });
    };

    if services.matching {
        let waker = RelayWaker::default();
        let wake = waker.clone();
        let matching = cwsm_matching::Matching::connect(
            &settings.database_url_for("matching"),
            Arc::new(move || wake.wake()),
        )
        .await
        .context("starting matching")?;
        relay(&mut tasks, matching.db().clone(), waker, "matching");
        consumer(
            &mut tasks,
            topics::PROJECT_MILESTONES,
            cwsm_matching::events::CONSUMER_GROUP,
            matching.event_handler(),
        );
        routes = routes.add_service(matching.grpc_service(auth.clone()));
        databases.push(("matching", matching.db().clone()));
        healthy.push(cwsm_matching::SERVICE_NAME);
    }
    if services.projects {
        let waker = RelayWaker::default();
        let wake = waker.clone();
        let mut projects = cwsm_projects::Projects::connect(
            &settings.database_url_for("projects"),
            Arc::new(move || wake.wake()),
        )
        .await
        .context("starting projects")?;
        projects.keep_in_memory(settings.projects_kept_in_memory);
        let documents = settings.documents().context("the documents_url setting")?;
        tracing::info!(
            documents = documents.location(),
            "evidence documents kept in"
        );
        projects.keep_documents_in(documents);
        projects.limit(settings.streams_per_caller, settings.max_message_bytes);
        tasks.spawn(projects.clone().follow_changes(shutdown.clone()));
        relay(&mut tasks, projects.db().clone(), waker, "projects");
        consumer(
            &mut tasks,
            topics::PROPOSALS_ACCEPTED,
            "projects",
            projects.event_handler(),
        );
        routes = routes.add_service(projects.grpc_service(auth.clone()));
        databases.push(("projects", projects.db().clone()));
        healthy.push(cwsm_projects::SERVICE_NAME);
    }
    if services.reporting {
        // Milestones published without a jurisdiction code are in the platform's district.
        let mut reporting = cwsm_reporting::Reporting::connect_in(
            &settings.database_url_for("reporting"),
            cwsm_platform::jurisdiction::Jurisdiction::parse(
                "district_code",
                &settings.district_code,
            )
            .context("the district_code setting")?,
        )
        .await
        .context("starting reporting")?;
        reporting.limit_watchers_per_caller(settings.streams_per_caller);
        reporting.keep_documents_in(settings.documents().context("the documents_url setting")?);
        if reporting.seed_default_plan().await? {
            tracing::info!("loaded the 2020 Xinbei action plan from seeds/");
        }
        consumer(
            &mut tasks,
            topics::PROJECT_MILESTONES,
            "reporting",
            reporting.event_handler(),
        );
        routes = routes.add_service(reporting.grpc_service(auth.clone()));
        // The administrators' dashboard, over HTTP/1.1 on the same port.
        routes =
            tonic::service::Routes::from(routes.into_axum_router().merge(reporting.dashboard(
                keys.clone(),
                shutdown.clone(),
                cwsm_reporting::dashboard::Options {
                    trust_forwarded_proto: settings.trust_forwarded_proto,
                },
            )));
        databases.push(("reporting", reporting.db().clone()));
        healthy.push(cwsm_reporting::SERVICE_NAME);
        reporting_started = Some(reporting);
    }

    if let Some(accounts) = &accounts_started {
        routes = routes.add_service(accounts.grpc_service());
        // The public keys, over HTTP on the same port.
        routes =
            tonic::service::Routes::from(routes.into_axum_router().merge(accounts.jwks_router()));
        databases.push(("accounts", accounts.db().clone()));
        healthy.push(cwsm_accounts::SERVICE_NAME);
    }

    let (listener, addr) = server::bind(&settings.listen).await?;
    if let Some(reporting) = &reporting_started {
        // RebuildCounts reads the milestone log: from this very server when it runs projects.
        let tls = service_client_tls(settings);
        let scheme = if settings.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        reporting.set_projects_url(if services.projects {
            Some((format!("{scheme}://{addr}"), tls))
        } else {
            settings.projects_url.clone().map(|url| (url, tls))
        });
    }
    for name in healthy {
        server::set_serving(&health, name).await;
    }
    let mut limits = server::Limits::from_settings(settings)?;
    // Streams get the long deadline (WatchReport's answer starts at once, so only its idle
    // connection and the caller's stream limit bound it).
    limits.long_calls = vec![
        format!("/{}/IngestReadings", cwsm_projects::SERVICE_NAME),
        format!("/{}/WatchReport", cwsm_reporting::SERVICE_NAME),
        // Up to 16 MiB each way, over whatever link a site office has.
        format!("/{}/UploadEvidence", cwsm_projects::SERVICE_NAME),
        format!("/{}/GetEvidence", cwsm_projects::SERVICE_NAME),
        format!("/{}/UploadEvidence", cwsm_reporting::SERVICE_NAME),
        format!("/{}/GetEvidence", cwsm_reporting::SERVICE_NAME),
    ];
    let server = tokio::spawn(server::serve(listener, routes, limits, shutdown.clone()));
    Ok(Running {
        addr,
        bus,
        databases,
        shutdown,
        tasks,
        server,
    })
}
