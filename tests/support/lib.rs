//! Test support: start the whole system in-process on a chosen backend, and clients with tokens.
//!
//! Backends: `Sqlite` (files in a fresh temporary folder, in-process bus) and `Postgres` (a fresh
//! database on the PostgreSQL at `CWSM_TEST_POSTGRES_URL`, Redis Streams at `CWSM_TEST_REDIS_URL`
//! under a fresh key prefix). PostgreSQL and Redis tests fail when those servers are unreachable
//! and `CWSM_REQUIRE_POSTGRES=1` (as `.ci/run` sets); otherwise they say they were skipped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cwsm::app::{self, Running, Services};
use cwsm_platform::auth::{Keys, Role};
use cwsm_platform::bus::{EventBus, InProcessBus, RedisBus};
use cwsm_platform::config::Settings;
use cwsm_proto::matching::v1::matching_service_client::MatchingServiceClient;
use cwsm_proto::projects::v1::projects_service_client::ProjectsServiceClient;
use cwsm_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub running: Option<Running>,
    pub bus: Arc<dyn EventBus>,
    pub keys: Arc<Keys>,
    pub channel: Channel,
    data_dir: PathBuf,
    postgres: Option<(String, String)>,
}

pub fn postgres_url() -> String {
    std::env::var("CWSM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

pub fn redis_url() -> String {
    std::env::var("CWSM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// Whether PostgreSQL and Redis answer; panics when they must (CI) and do not.
pub async fn postgres_and_redis_available() -> bool {
    let pg = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect(&postgres_url())
        .await;
    let redis = RedisBus::connect(&redis_url()).await;
    let ok = pg.is_ok() && redis.is_ok();
    if !ok && std::env::var("CWSM_REQUIRE_POSTGRES").as_deref() == Ok("1") {
        panic!(
            "PostgreSQL ({}) or Redis ({}) unreachable but CWSM_REQUIRE_POSTGRES=1: {:?} {:?}",
            postgres_url(),
            redis_url(),
            pg.err(),
            redis.err().map(|e| e.to_string())
        );
    }
    if !ok {
        eprintln!(
            "skipped: PostgreSQL/Redis not reachable (set CWSM_REQUIRE_POSTGRES=1 to fail instead)"
        );
    }
    ok
}

impl TestApp {
    pub async fn start(backend: Backend) -> anyhow::Result<TestApp> {
        let id = cwsm_platform::new_id().replace('-', "");
        let data_dir = std::env::temp_dir().join(format!("cwsm-test-{id}"));
        let mut settings = Settings {
            listen: "127.0.0.1:0".to_string(),
            data_dir: data_dir.clone(),
            outbox_poll_ms: 100,
            ..Settings::default()
        };
        let mut postgres = None;
        let bus: Arc<dyn EventBus> = match backend {
            Backend::Sqlite => Arc::new(InProcessBus::new()),
            Backend::Postgres => {
                let admin = postgres_url();
                let database = format!("cwsm_test_{id}");
                let pool = sqlx::PgPool::connect(&admin).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
                    .execute(&pool)
                    .await?;
                pool.close().await;
                let base = admin
                    .rsplit_once('/')
                    .map(|(b, _)| b.to_string())
                    .unwrap_or(admin.clone());
                settings.database_url = Some(format!("{base}/{database}"));
                settings.redis_url = Some(redis_url());
                postgres = Some((admin, database));
                Arc::new(
                    RedisBus::connect_with_prefix(&redis_url(), &format!("cwsm-test-{id}")).await?,
                )
            }
        };
        let keys = Arc::new(Keys::from_secret(&[42u8; 32])?);
        let running = app::start(
            &settings,
            Services::ALL,
            bus.clone(),
            keys.clone(),
            CancellationToken::new(),
        )
        .await?;
        let channel = Channel::from_shared(format!("http://{}", running.addr))?
            .connect()
            .await?;
        Ok(TestApp {
            running: Some(running),
            bus,
            keys,
            channel,
            data_dir,
            postgres,
        })
    }

    pub fn token(&self, role: Role, org: Option<&str>) -> String {
        self.keys
            .issue("test", role, org, Duration::from_secs(600))
            .unwrap_or_default()
    }

    pub fn matching(
        &self,
        token: &str,
    ) -> MatchingServiceClient<InterceptedService<Channel, Bearer>> {
        MatchingServiceClient::with_interceptor(self.channel.clone(), Bearer(token.to_string()))
    }

    pub fn projects(
        &self,
        token: &str,
    ) -> ProjectsServiceClient<InterceptedService<Channel, Bearer>> {
        ProjectsServiceClient::with_interceptor(self.channel.clone(), Bearer(token.to_string()))
    }

    pub fn reporting(
        &self,
        token: &str,
    ) -> ReportingServiceClient<InterceptedService<Channel, Bearer>> {
        ReportingServiceClient::with_interceptor(self.channel.clone(), Bearer(token.to_string()))
    }

    /// Stops the app and removes what it created (temporary folder, test database).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(r) = self.running.take() {
            r.stop().await?;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if let Some((admin, database)) = self.postgres.take() {
            let pool = sqlx::PgPool::connect(&admin).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
            )))
            .execute(&pool)
            .await?;
        }
        Ok(())
    }
}

/// Adds `authorization: Bearer …` to every call.
#[derive(Clone)]
pub struct Bearer(pub String);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if !self.0.is_empty() {
            let value = format!("Bearer {}", self.0)
                .parse()
                .map_err(|_| tonic::Status::internal("token is not valid metadata"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// Retries `check` every 50 ms until it returns `Some`, for at most `within`.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Appends the GB 32100 check character to the first 17 characters of a credit code.
pub fn credit_code(first17: &str) -> String {
    const ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    const WEIGHTS: [usize; 17] = [
        1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
    ];
    let sum: usize = first17
        .chars()
        .zip(WEIGHTS)
        .map(|(c, w)| ALPHABET.find(c).unwrap_or(0) * w)
        .sum();
    let check = (31 - sum % 31) % 31;
    format!("{first17}{}", ALPHABET.chars().nth(check).unwrap_or('0'))
}
