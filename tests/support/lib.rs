//! Test support: start the whole system in-process on a chosen backend, and clients with tokens.
//!
//! Backends: `Sqlite` (files in a fresh temporary folder, the in-process bus kept in its file) and `Postgres` (a fresh
//! database on the PostgreSQL at `CWSM_TEST_POSTGRES_URL`, Redis Streams at `CWSM_TEST_REDIS_URL`
//! under a fresh key prefix). PostgreSQL and Redis tests fail when those servers are unreachable
//! and `CWSM_REQUIRE_POSTGRES=1` (as `.ci/run` sets); otherwise they say they were skipped.

pub mod oidc;
pub mod s3;
pub mod web;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
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

/// The signing secret of every [`TestApp`].
const TEST_SECRET: [u8; 32] = [42u8; 32];

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
        Self::start_with(backend, |_| {}).await
    }

    /// As [`TestApp::start`], with settings changed by `configure` first (e.g. OpenID
    /// providers).
    pub async fn start_with(
        backend: Backend,
        configure: impl FnOnce(&mut Settings),
    ) -> anyhow::Result<TestApp> {
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
            // The bus `cwsm serve` runs on: kept in the data folder.
            Backend::Sqlite => {
                std::fs::create_dir_all(&data_dir)?;
                Arc::new(InProcessBus::open(&data_dir.join(InProcessBus::FILE)).await?)
            }
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
        configure(&mut settings);
        let keys = Arc::new(Keys::from_secret(&TEST_SECRET)?);
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

    /// Starts `services` as another replica on this app's database and bus (PostgreSQL only),
    /// on a port of its own; returns it with a channel to it.
    pub async fn replica(&self, services: Services) -> anyhow::Result<(Running, Channel)> {
        self.replica_with(services, "").await
    }

    /// Like [`TestApp::replica`], with `options` (`key=value&…`) added to the database URL.
    pub async fn replica_with(
        &self,
        services: Services,
        options: &str,
    ) -> anyhow::Result<(Running, Channel)> {
        let Some((admin, database)) = &self.postgres else {
            anyhow::bail!("replicas share a PostgreSQL database; this app runs on SQLite");
        };
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin.clone());
        let settings = Settings {
            listen: "127.0.0.1:0".to_string(),
            data_dir: self
                .data_dir
                .join(format!("replica-{}", cwsm_platform::new_id())),
            database_url: Some(if options.is_empty() {
                format!("{base}/{database}")
            } else {
                format!("{base}/{database}?{options}")
            }),
            redis_url: Some(redis_url()),
            outbox_poll_ms: 100,
            ..Settings::default()
        };
        let running = app::start(
            &settings,
            services,
            self.bus.clone(),
            self.keys.clone(),
            CancellationToken::new(),
        )
        .await?;
        let channel = Channel::from_shared(format!("http://{}", running.addr))?
            .connect()
            .await?;
        Ok((running, channel))
    }

    /// The server's data folder.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Clients of this app's server (the same as [`TestApp::matching`] and the others).
    pub fn clients(&self) -> Clients {
        Clients {
            channel: self.channel.clone(),
            keys: self.keys.clone(),
        }
    }

    pub fn token(&self, role: Role, org: Option<&str>) -> String {
        self.clients().token(role, org)
    }

    /// A token of `role` for `org` signed with this app's key that expired an hour ago (the
    /// server allows 30 s of clock skew). Made by hand: `Keys` issues no expired tokens.
    pub fn expired_token(&self, role: Role, org: Option<&str>) -> String {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            sub: &'a str,
            role: Role,
            #[serde(skip_serializing_if = "Option::is_none")]
            org: Option<&'a str>,
            iat: i64,
            exp: i64,
            iss: &'a str,
        }
        let now = cwsm_platform::now_ms() / 1000;
        let claims = Claims {
            sub: "test",
            role,
            org,
            iat: now - 7200,
            exp: now - 3600,
            iss: "cwsm",
        };
        jsonwebtoken::EncodingKey::from_secret(&TEST_SECRET)
            .and_then(|key| {
                jsonwebtoken::encode(
                    &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                    &claims,
                    &key,
                )
            })
            .unwrap_or_default()
    }

    pub fn matching(
        &self,
        token: &str,
    ) -> MatchingServiceClient<InterceptedService<Channel, Bearer>> {
        self.clients().matching(token)
    }

    pub fn projects(
        &self,
        token: &str,
    ) -> ProjectsServiceClient<InterceptedService<Channel, Bearer>> {
        self.clients().projects(token)
    }

    pub fn reporting(
        &self,
        token: &str,
    ) -> ReportingServiceClient<InterceptedService<Channel, Bearer>> {
        self.clients().reporting(token)
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

/// Clients of a server on `channel`, with tokens signed by `keys`: a [`TestApp`]'s, or a
/// [`ServeProcess`]'s.
#[derive(Clone)]
pub struct Clients {
    pub channel: Channel,
    pub keys: Arc<Keys>,
}

impl Clients {
    pub fn token(&self, role: Role, org: Option<&str>) -> String {
        self.keys
            .issue("test", role, org, Duration::from_secs(600))
            .unwrap_or_default()
    }

    pub fn matching(
        &self,
        token: &str,
    ) -> MatchingServiceClient<InterceptedService<Channel, Bearer>> {
        MatchingServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    pub fn projects(
        &self,
        token: &str,
    ) -> ProjectsServiceClient<InterceptedService<Channel, Bearer>> {
        ProjectsServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }

    pub fn reporting(
        &self,
        token: &str,
    ) -> ReportingServiceClient<InterceptedService<Channel, Bearer>> {
        ReportingServiceClient::with_interceptor(self.channel.clone(), bearer(token))
    }
}

/// `cwsm serve` (the binary at `bin`) as a child process on `data_dir`, as users run the
/// embedded mode: all services, SQLite files, the in-process bus, tokens signed with `secret`.
/// Its output goes to `log`. [`ServeProcess::kill`] is `kill -9`; dropping it kills it too.
pub struct ServeProcess {
    child: std::sync::Mutex<Option<std::process::Child>>,
    /// `http://127.0.0.1:PORT`, from its start-up banner.
    pub url: String,
    /// The lines it printed after the banner's first, as it prints them.
    lines: std::sync::Mutex<std::sync::mpsc::Receiver<String>>,
}

impl ServeProcess {
    pub fn start(
        bin: &std::path::Path,
        data_dir: &std::path::Path,
        secret: &str,
        log: &std::path::Path,
    ) -> anyhow::Result<ServeProcess> {
        Self::start_with(bin, data_dir, secret, log, &[])
    }

    /// [`ServeProcess::start`] with more arguments of `cwsm serve` (e.g. `--demo`).
    pub fn start_with(
        bin: &std::path::Path,
        data_dir: &std::path::Path,
        secret: &str,
        log: &std::path::Path,
        args: &[&str],
    ) -> anyhow::Result<ServeProcess> {
        use std::io::{BufRead, Write};
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let err = out.try_clone()?;
        let mut child = std::process::Command::new(bin)
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            // Only what this test sets: not a PostgreSQL or Redis of the environment.
            .env_remove("CWSM_CONFIG")
            .env_remove("CWSM_DATABASE_URL")
            .env_remove("CWSM_REDIS_URL")
            .env_remove("CWSM_LISTEN")
            .env_remove("CWSM_DATA_DIR")
            .env("CWSM_JWT_SECRET", secret)
            .env("CWSM_LOG", "warn")
            .env("CWSM_OUTBOX_POLL_MS", "100")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout from {}", bin.display()))?;
        // Read the banner for the address, then keep draining (into the log) so the child never
        // blocks on a full pipe; the thread ends when the child does.
        let (tx, rx) = std::sync::mpsc::channel();
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(out, "{line}");
                if let Some((_, url)) = line.split_once(" on http://")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(format!("http://{url}"));
                } else {
                    let _ = lines_tx.send(line);
                }
            }
        });
        let mut process = ServeProcess {
            child: std::sync::Mutex::new(Some(child)),
            url: String::new(),
            lines: std::sync::Mutex::new(lines),
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => {
                process.url = url;
                Ok(process)
            }
            Err(_) => {
                process.kill();
                anyhow::bail!(
                    "{} printed no address within 30 s; see {}",
                    bin.display(),
                    log.display()
                )
            }
        }
    }

    /// Waits for the line it prints that starts with `prefix` (trimmed), for at most `within`;
    /// the lines before it are returned with it.
    pub fn wait_for_line(&self, prefix: &str, within: Duration) -> anyhow::Result<Vec<String>> {
        let lines = self
            .lines
            .lock()
            .map_err(|_| anyhow::anyhow!("the output's reader panicked"))?;
        let deadline = std::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    let starts = line.trim_start().starts_with(prefix);
                    seen.push(line);
                    if starts {
                        return Ok(seen);
                    }
                }
                Err(e) => anyhow::bail!(
                    "no line starting {prefix:?} within {} s ({e}); it printed: {seen:?}",
                    within.as_secs()
                ),
            }
        }
    }

    /// Clients of it (connecting lazily: the first call connects).
    pub fn clients(&self, keys: Arc<Keys>) -> anyhow::Result<Clients> {
        Ok(Clients {
            channel: Channel::from_shared(self.url.clone())?.connect_lazy(),
            keys,
        })
    }

    /// `kill -9` (SIGKILL) at once, then reaps it. Harmless when already killed.
    pub fn kill(&self) {
        let child = self.child.lock().map(|mut c| c.take()).unwrap_or_default();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

pub use cwsm_platform::auth::Bearer;

/// The platform's [`Bearer`] for a test's token (an empty one adds no header).
pub fn bearer(token: &str) -> Bearer {
    Bearer::new(token).unwrap_or_else(|e| panic!("test token {token:?}: {e}"))
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
    cwsm_platform::credit_code::with_check_character(first17)
        .unwrap_or_else(|why| panic!("test credit code {first17:?}: {why}"))
}

/// A valid credit code unique to this call (GB 32100 check character included), starting with
/// `prefix` (e.g. "91320411MA" for a company, "12320411" for a public institution).
pub fn fresh_credit_code(prefix: &str) -> String {
    let alphabet = cwsm_platform::credit_code::ALPHABET.as_bytes();
    let id = cwsm_platform::new_id().replace('-', "");
    let tail: String = id
        .bytes()
        .rev()
        .take(17usize.saturating_sub(prefix.len()))
        .map(|b| alphabet[usize::from(b) % alphabet.len()] as char)
        .collect();
    credit_code(&format!("{prefix}{tail}"))
}

/// A project just contracted, with the tokens of its two parties.
#[derive(Clone, Debug)]
pub struct Contracted {
    pub project_id: String,
    pub company_token: String,
    pub user_token: String,
}

/// Runs the marketplace up to a contracted project, as `marketplace_flow` does with its
/// checks: a company lists an offering, a school in `town` asks, the company proposes, the
/// school accepts, and projects creates the project.
pub async fn contract_a_project(app: &TestApp, town: &str) -> anyhow::Result<Contracted> {
    use cwsm_proto::matching::v1 as m;
    use cwsm_proto::projects::v1 as p;
    use cwsm_proto::types;
    let rid = |label: &str| format!("{label}-{}", cwsm_platform::new_id());
    let company_code = fresh_credit_code("91320411MA");
    let user_code = fresh_credit_code("12320411");
    let company_token = app.token(Role::Company, Some(&company_code));
    let user_token = app.token(Role::WaterUser, Some(&user_code));
    let admin = app.token(Role::Admin, None);
    let missing = |what: &str| anyhow::anyhow!("the reply carries no {what}");

    let company = app
        .matching(&company_token)
        .create_company(m::CreateCompanyRequest {
            request_id: rid("company"),
            company: Some(m::Company {
                credit_code: company_code.clone(),
                name: "常州清源节水科技有限公司".into(),
                towns: vec![town.into()],
                sectors: vec![types::Sector::School as i32],
                certification_grade: types::CertificationGrade::Aaa as i32,
                financing_capacity_fen: 500_000_000,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .company
        .ok_or_else(|| missing("company"))?;
    let offering = app
        .matching(&company_token)
        .create_offering(m::CreateOfferingRequest {
            request_id: rid("offering"),
            offering: Some(m::Offering {
                company_id: company.id.clone(),
                title: "Campus leak detection and smart metering".into(),
                technologies: vec![types::Technology::LeakDetection as i32],
                contract_models: vec![types::ContractModel::SharedSavings as i32],
                typical_savings_bp: 2500,
                typical_term_months: 96,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .offering
        .ok_or_else(|| missing("offering"))?;
    app.matching(&company_token)
        .publish_offering(m::PublishOfferingRequest {
            request_id: rid("publish"),
            offering_id: offering.id.clone(),
            expected_version: 0,
        })
        .await?;
    let user = app
        .matching(&user_token)
        .create_water_user(m::CreateWaterUserRequest {
            request_id: rid("user"),
            water_user: Some(m::WaterUser {
                credit_code: user_code.clone(),
                name: "常州工学院新北校区".into(),
                sector: types::Sector::School as i32,
                unit_type: "university".into(),
                town: town.into(),
                annual_use_litres: 2_430_000_000,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .water_user
        .ok_or_else(|| missing("water user"))?;
    let request = app
        .matching(&user_token)
        .create_project_request(m::CreateProjectRequestRequest {
            request_id: rid("request"),
            project_request: Some(m::ProjectRequest {
                water_user_id: user.id.clone(),
                title: "Campus water network retrofit".into(),
                baseline_use_litres: 2_430_000_000,
                expected_savings_bp: 2000,
                price_fen_per_m3: 410,
                preferred_contract_models: vec![types::ContractModel::SharedSavings as i32],
                wanted_technologies: vec![types::Technology::LeakDetection as i32],
                investment_wanted_fen: 120_000_000,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .project_request
        .ok_or_else(|| missing("request"))?;
    app.matching(&user_token)
        .open_project_request(m::OpenProjectRequestRequest {
            request_id: rid("open"),
            project_request_id: request.id.clone(),
            expected_version: 0,
        })
        .await?;
    let proposal = app
        .matching(&company_token)
        .create_proposal(m::CreateProposalRequest {
            request_id: rid("proposal"),
            proposal: Some(m::Proposal {
                project_request_id: request.id.clone(),
                company_id: company.id.clone(),
                offering_id: offering.id.clone(),
                measures: "DMA zoning, leak repair, smart meters".into(),
                investment_fen: 120_000_000,
                promised_savings_litres: 486_000_000,
                promised_savings_bp: 2000,
                contract_model: types::ContractModel::SharedSavings as i32,
                terms: Some(types::ContractTerms {
                    share_ratio_bp: 7000,
                    sharing_period_months: 96,
                    ..Default::default()
                }),
                contract_term_months: 96,
                mv_option: types::MvOption::C as i32,
                drivers: vec!["occupancy".into()],
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .proposal
        .ok_or_else(|| missing("proposal"))?;
    let project_id = app
        .matching(&user_token)
        .accept_proposal(m::AcceptProposalRequest {
            request_id: rid("accept"),
            proposal_id: proposal.id.clone(),
            expected_version: 0,
        })
        .await?
        .into_inner()
        .project_id;
    // The project appears once projects has consumed the acceptance.
    eventually(Duration::from_secs(20), || {
        let mut client = app.projects(&admin);
        let id = project_id.clone();
        async move {
            client
                .get_project(p::GetProjectRequest { project_id: id })
                .await
                .ok()
                .and_then(|r| r.into_inner().project)
        }
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("project {project_id} never appeared"))?;
    Ok(Contracted {
        project_id,
        company_token,
        user_token,
    })
}

/// The seed plan with its window and deadlines moved from 2020 to the current year (China
/// Standard Time).
pub fn this_year_plan_toml() -> String {
    let year = chrono::Datelike::year(&(chrono::Utc::now() + chrono::Duration::hours(8)));
    cwsm_reporting::plan::seed_plan_for_year(year)
}

/// Loads the seed plan again as the next version of `xinbei-2020`, with its window and
/// deadlines moved from 2020 to the current year (China Standard Time). Milestones count by
/// their effective date inside the plan's window, and the projects a test runs through today
/// take effect today: a test that counts them against the plan loads this first.
pub async fn count_this_year(mut reporting: Reporting) -> anyhow::Result<()> {
    use cwsm_proto::reporting::v1 as r;
    let toml = this_year_plan_toml();
    reporting
        .load_plan(r::LoadPlanRequest {
            request_id: format!("this-year-{}", cwsm_platform::new_id()),
            plan_toml: toml,
            validate_only: false,
        })
        .await?;
    Ok(())
}

/// The reporting client of the helpers below.
pub type Reporting = ReportingServiceClient<InterceptedService<Channel, Bearer>>;

/// The actual value of indicator `code` of plan `plan` today.
pub async fn indicator_actual(
    mut reporting: Reporting,
    plan: &str,
    code: &str,
) -> anyhow::Result<f64> {
    use cwsm_proto::reporting::v1 as r;
    let report = reporting
        .get_report(r::GetReportRequest {
            plan_code: plan.into(),
            plan_version: 0,
            as_of_date: String::new(),
        })
        .await?
        .into_inner()
        .report
        .ok_or_else(|| anyhow::anyhow!("no report"))?;
    report
        .indicators
        .iter()
        .find(|s| s.indicator.as_ref().is_some_and(|i| i.code == code))
        .map(|s| s.actual)
        .ok_or_else(|| anyhow::anyhow!("no {code} in the report"))
}

/// The projects indicator `code` of plan `plan` counted, every page (listed, so a double shows).
pub async fn counted_projects(
    mut reporting: Reporting,
    plan: &str,
    code: &str,
) -> anyhow::Result<Vec<String>> {
    use cwsm_proto::reporting::v1 as r;
    let mut projects = Vec::new();
    let mut page_token = String::new();
    for _ in 0..100 {
        let page = reporting
            .list_counted_projects(r::ListCountedProjectsRequest {
                plan_code: plan.into(),
                indicator_code: code.into(),
                page_size: 100,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        projects.extend(page.counted_projects.into_iter().map(|c| c.project_id));
        if page.next_page_token.is_empty() {
            return Ok(projects);
        }
        page_token = page.next_page_token;
    }
    anyhow::bail!("more than 100 pages of counted projects")
}

/// The verifier body the tests assign to their projects (a public institution's credit code).
pub fn test_verifier_org() -> String {
    credit_code("12320411MB0E1R2T3")
}

/// An administrator assigns the test verifier body to `project_id`; returns a verifier token
/// of that body.
pub async fn assign_verifier(app: &TestApp, project_id: &str) -> anyhow::Result<String> {
    use cwsm_proto::projects::v1 as p;
    let org = test_verifier_org();
    app.projects(&app.token(Role::Admin, None))
        .assign_verifier(p::AssignVerifierRequest {
            request_id: format!("assign-{}", cwsm_platform::new_id()),
            project_id: project_id.to_string(),
            verifier_org: org.clone(),
            expected_version: 0,
        })
        .await?;
    Ok(app.token(Role::Verifier, Some(&org)))
}
