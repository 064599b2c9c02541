//! `cwsm bench load`: the issue's load figures. A benchmark that prints figures, not a timed test.
//!
//! It starts accounts, matching, projects and reporting as four separate servers (four
//! `app::start` calls, each on its own port, in THIS process: they share its cores) on a scratch
//! PostgreSQL database and a fresh Redis stream prefix; the three others verify tokens from the
//! accounts service's keys fetched over gRPC, as separate deployments do. It registers a company
//! and a water user in accounts (approved by the operator's token), signs their registrants in
//! (Ed25519 access tokens), seeds a small marketplace through the API and measures, with
//! `--callers` concurrent callers for `--seconds`:
//! - read: projects `GetProject` of the seeded project, as its water user, in turns of one
//!   second with the echo below (after a turn of each not counted), so that both see the same
//!   machine: runs apart gave 48–87% for one build as the machine's speed moved between them;
//! - write: matching `CreateOffering` with a fresh request id (the caller's right to act for
//!   the company, then one transaction: the idempotency key claimed, the offering row inserted
//!   and returned, and at commit the trigger's bump of the one-row `catalog_version`; no outbox
//!   row: offerings emit no event);
//! - echo ceiling: `grpc.health.v1.Health/Check` on a bare tonic server (no auth, no layers);
//! - pgbench ceiling: `pgbench -M prepared -c <callers> -j 2 -T <seconds>` running the write's
//!   own transaction on matching's own tables (same statements, same triggers), without TLS;
//! - sign-in: accounts `SignIn` of the water user's registrant, one caller (an argon2id
//!   verification at the OWASP cost each);
//! - event lag: for `--lag-samples` projects moved to "accepted" (counted by the plan's
//!   A7-TECH-RETROFITS), from the TransitionProject reply reaching the client (after the
//!   commit) to the first GetReport, polled every 2 ms, showing the new count.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use cwsm_platform::auth::{Keys, Role};
use cwsm_platform::bus::{EventBus, RedisBus};
use cwsm_platform::config::Settings;
use cwsm_proto::accounts::v1 as apb;
use cwsm_proto::accounts::v1::accounts_service_client::AccountsServiceClient;
use cwsm_proto::matching::v1 as mpb;
use cwsm_proto::matching::v1::matching_service_client::MatchingServiceClient;
use cwsm_proto::projects::v1 as ppb;
use cwsm_proto::projects::v1::projects_service_client::ProjectsServiceClient;
use cwsm_proto::reporting::v1 as rpb;
use cwsm_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use cwsm_proto::types;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::app::{self, Running, Services};
use cwsm_platform::sample::p50_p99_ms as percentiles;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Reads, writes and event lag on the three services (PostgreSQL + Redis) beside the echo
    /// and pgbench ceilings measured in the same run.
    Load(LoadArgs),
}

#[derive(Args)]
struct LoadArgs {
    /// PostgreSQL server (an administrator's URL); a scratch database is created and dropped.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    database_url: String,
    /// Redis server; a fresh stream prefix is used.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Seconds of each load run (read, write, echo, pgbench).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent callers.
    #[arg(long, default_value_t = 16)]
    callers: usize,
    /// Projects the projects service keeps in memory for GetProject; 0 makes every read go to
    /// PostgreSQL.
    #[arg(long, default_value_t = 10_000)]
    projects_kept_in_memory: usize,
    /// Projects whose acceptance lag is measured; 0 skips the lag.
    #[arg(long, default_value_t = 50)]
    lag_samples: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Load(args) => load(args).await,
    }
}

/// The `tps = …` figure of pgbench's output.
fn parse_pgbench_tps(output: &str) -> Option<f64> {
    output.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("tps = ")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// `base/<database>` for an administrator's URL `base/<admin database>`.
fn database_url(admin: &str, database: &str) -> String {
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    format!("{base}/{database}")
}

use crate::demo::credit_code;

/// Runs `psql` (on PATH) with one command against `url`.
async fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let (url, command) = (url.to_string(), sql.to_string());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &url,
                "-c",
                &command,
            ])
            .output()
    })
    .await
    .context("psql task")?
    .context("running psql (is it on PATH?)")?;
    if !out.status.success() {
        bail!(
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

use cwsm_platform::auth::Bearer;

fn bearer(token: &str) -> anyhow::Result<Bearer> {
    Ok(Bearer::new(token)?)
}

type Matching = MatchingServiceClient<InterceptedService<Channel, Bearer>>;
type Projects = ProjectsServiceClient<InterceptedService<Channel, Bearer>>;
type Reporting = ReportingServiceClient<InterceptedService<Channel, Bearer>>;

async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Channel::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))
}

/// Requests per second, p50 and p99 (ms), calls.
#[derive(Clone, Copy, Default, serde::Serialize)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    calls: usize,
}

type CallFuture = Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>>;

/// `callers` callers each calling `call(caller, n)` in a loop for `seconds`.
async fn drive<F>(callers: usize, seconds: u64, call: F) -> anyhow::Result<Figures>
where
    F: Fn(usize, u64) -> CallFuture + Send + Sync + 'static,
{
    let (times, elapsed) = timed(callers, Duration::from_secs(seconds), Arc::new(call)).await?;
    Ok(figures(times, elapsed))
}

/// Each call's time, with `callers` calling `call` one after another for `span`, and the
/// time it all took.
async fn timed(
    callers: usize,
    span: Duration,
    call: Arc<dyn Fn(usize, u64) -> CallFuture + Send + Sync>,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let started = Instant::now();
    let until = started + span;
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..callers {
        let call = call.clone();
        tasks.spawn(async move {
            let mut times = Vec::new();
            let mut n = 0u64;
            while Instant::now() < until {
                let t = Instant::now();
                call(caller, n).await?;
                times.push(t.elapsed());
                n += 1;
            }
            Ok::<_, tonic::Status>(times)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.context("caller task")?.context("a call failed")?);
    }
    Ok((all, started.elapsed()))
}

fn figures(times: Vec<Duration>, elapsed: Duration) -> Figures {
    let rps = times.len() as f64 / elapsed.as_secs_f64().max(1e-9);
    let calls = times.len();
    let (p50_ms, p99_ms) = percentiles(times);
    Figures {
        rps,
        p50_ms,
        p99_ms,
        calls,
    }
}

/// `a` and `b` in turns of one second for `seconds` each, after a turn of each not counted:
/// both see the same machine (a neighbour's load, the seed's events still relayed), so their
/// ratio holds though the machine's speed moves between runs.
async fn alternate(
    callers: usize,
    seconds: u64,
    a: Arc<dyn Fn(usize, u64) -> CallFuture + Send + Sync>,
    b: Arc<dyn Fn(usize, u64) -> CallFuture + Send + Sync>,
) -> anyhow::Result<(Figures, Figures)> {
    let turn = Duration::from_secs(1);
    timed(callers, turn, a.clone()).await?;
    timed(callers, turn, b.clone()).await?;
    let (mut a_times, mut b_times) = (Vec::new(), Vec::new());
    let (mut a_spent, mut b_spent) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..seconds.max(1) {
        let (times, spent) = timed(callers, turn, a.clone()).await?;
        a_times.extend(times);
        a_spent += spent;
        let (times, spent) = timed(callers, turn, b.clone()).await?;
        b_times.extend(times);
        b_spent += spent;
    }
    Ok((figures(a_times, a_spent), figures(b_times, b_spent)))
}

struct Servers {
    accounts: Running,
    matching: Running,
    projects: Running,
    reporting: Running,
}

impl Servers {
    async fn stop(self) -> anyhow::Result<()> {
        for running in [self.reporting, self.matching, self.projects, self.accounts] {
            running.stop().await?;
        }
        Ok(())
    }
}

async fn start_servers(
    database: &str,
    redis: &str,
    prefix: &str,
    keys: &Arc<Keys>,
    data_dir: &std::path::Path,
    projects_kept_in_memory: usize,
) -> anyhow::Result<Servers> {
    let settings = |projects_url: Option<String>, accounts_url: Option<String>| Settings {
        listen: "127.0.0.1:0".into(),
        data_dir: data_dir.to_path_buf(),
        database_url: Some(database.to_string()),
        redis_url: Some(redis.to_string()),
        projects_url,
        accounts_url,
        projects_kept_in_memory,
        ..Settings::default()
    };
    let bus = || async {
        let bus: Arc<dyn EventBus> = Arc::new(RedisBus::connect_with_prefix(redis, prefix).await?);
        Ok::<_, anyhow::Error>(bus)
    };
    let start = |name: &'static str, settings: Settings| {
        let keys = keys.clone();
        async move {
            app::start(
                &settings,
                Services::only(name)?,
                bus().await?,
                keys,
                CancellationToken::new(),
            )
            .await
            .with_context(|| format!("starting {name}"))
        }
    };
    // The accounts service signs (Ed25519); the other three only verify, from its keys fetched
    // over gRPC as separate deployments do.
    let mut started: Vec<Running> = Vec::with_capacity(4);
    let result = async {
        started.push(start("accounts", settings(None, None)).await?);
        let accounts_url = started.first().map(|a| format!("http://{}", a.addr));
        started.push(start("projects", settings(None, accounts_url.clone())).await?);
        let projects_url = started.last().map(|p| format!("http://{}", p.addr));
        started.push(start("matching", settings(None, accounts_url.clone())).await?);
        started.push(start("reporting", settings(projects_url, accounts_url)).await?);
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = result {
        for running in started {
            let _ = running.stop().await;
        }
        return Err(e);
    }
    let [accounts, projects, matching, reporting] =
        <[Running; 4]>::try_from(started).map_err(|_| anyhow!("not every server started"))?;
    Ok(Servers {
        accounts,
        matching,
        projects,
        reporting,
    })
}

async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let id = cwsm_platform::new_id().replace('-', "").to_lowercase();
    let database = format!("cwsm_bench_load_{id}");
    psql(&args.database_url, &format!("CREATE DATABASE {database}")).await?;
    let url = database_url(&args.database_url, &database);
    let data_dir = std::env::temp_dir().join(format!("cwsm-bench-load-{id}"));
    let secret = format!("{}{}", cwsm_platform::new_id(), cwsm_platform::new_id());
    let result = async {
        let keys = Arc::new(Keys::from_secret(secret.as_bytes())?);
        let servers = start_servers(
            &url,
            &args.redis_url,
            &format!("cwsm-bench-load-{id}"),
            &keys,
            &data_dir,
            args.projects_kept_in_memory,
        )
        .await?;
        let result = measure(&args, &servers, &keys, &url, &id).await;
        servers.stop().await?;
        result
    }
    .await;
    let dropped = psql(
        &args.database_url,
        &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
    )
    .await;
    let _ = std::fs::remove_dir_all(&data_dir);
    let report = result?;
    dropped?;
    report.print(&args);
    Ok(())
}

struct Report {
    read: Figures,
    echo: Figures,
    write: Figures,
    pgbench: Result<f64, String>,
    sign_in: Figures,
    lag: Option<(f64, f64, usize)>,
}

/// Reads must stay at or above this share of the echo ceiling (with Ed25519 tokens verified
/// from the accounts service's keys).
const READ_GOAL_PERCENT: f64 = 75.0;

impl Report {
    fn print(&self, args: &LoadArgs) {
        let pct = |a: f64, b: f64| if b > 0.0 { a / b * 100.0 } else { 0.0 };
        let pg = self.pgbench.as_ref().ok().copied();
        if args.json {
            let value = serde_json::json!({
                "callers": args.callers,
                "seconds": args.seconds,
                "read": { "rpc": "projects GetProject", "projects_kept_in_memory": args.projects_kept_in_memory, "figures": self.read,
                          "tokens": "Ed25519 access tokens from accounts, verified from its keys",
                          "percent_of_echo": pct(self.read.rps, self.echo.rps), "goal_percent": READ_GOAL_PERCENT },
                "echo": { "rpc": "grpc.health.v1.Health/Check (bare tonic)", "figures": self.echo },
                "write": { "rpc": "matching CreateOffering", "figures": self.write,
                           "percent_of_pgbench": pg.map(|t| pct(self.write.rps, t)), "goal_percent": 70 },
                "pgbench_tps": pg,
                "sign_in": { "rpc": "accounts SignIn (argon2id m=19 MiB t=2 p=1), one caller", "figures": self.sign_in },
                "pgbench_unavailable": self.pgbench.as_ref().err(),
                "event_lag": self.lag.map(|(p50, p99, n)| serde_json::json!({
                    "p50_ms": p50, "p99_ms": p99, "samples": n, "goal_p99_ms": 100 })),
                "note": "three separate servers in one process, sharing its cores",
            });
            println!("{value}");
            return;
        }
        println!(
            "Load: {} callers, {} s per run; accounts, matching, projects and reporting are separate \
             servers in ONE process (sharing its {} cores) on PostgreSQL + Redis; callers use \
             Ed25519 access tokens from accounts, verified by the services from its keys.",
            args.callers,
            args.seconds,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let mut table = comfy_table::Table::new();
        table
            .load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
            .set_header(vec![
                "what", "req/s", "p50 ms", "p99 ms", "ceiling", "% of it", "goal", "met",
            ]);
        let f = |x: f64| format!("{x:.0}");
        let ms = |x: f64| format!("{x:.2}");
        let read_pct = pct(self.read.rps, self.echo.rps);
        table.add_row(vec![
            if args.projects_kept_in_memory > 0 {
                "read: projects GetProject".to_string()
            } else {
                "read: projects GetProject (none kept in memory)".to_string()
            },
            f(self.read.rps),
            ms(self.read.p50_ms),
            ms(self.read.p99_ms),
            format!("echo {}", f(self.echo.rps)),
            format!("{read_pct:.0}%"),
            format!("≥ {READ_GOAL_PERCENT:.0}% of echo"),
            yes(read_pct >= READ_GOAL_PERCENT),
        ]);
        table.add_row(vec![
            "echo: bare tonic Health/Check".to_string(),
            f(self.echo.rps),
            ms(self.echo.p50_ms),
            ms(self.echo.p99_ms),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        let (ceiling, write_pct, met) = match &self.pgbench {
            Ok(tps) => {
                let p = pct(self.write.rps, *tps);
                (
                    format!("pgbench {}", f(*tps)),
                    format!("{p:.0}%"),
                    yes(p >= 70.0),
                )
            }
            Err(why) => (
                format!("pgbench unavailable: {why}"),
                "-".into(),
                "-".into(),
            ),
        };
        table.add_row(vec![
            "write: matching CreateOffering".to_string(),
            f(self.write.rps),
            ms(self.write.p50_ms),
            ms(self.write.p99_ms),
            ceiling,
            write_pct,
            "≥ 70% of pgbench".into(),
            met,
        ]);
        table.add_row(vec![
            "sign-in: accounts SignIn, one caller".to_string(),
            f(self.sign_in.rps),
            ms(self.sign_in.p50_ms),
            ms(self.sign_in.p99_ms),
            String::new(),
            String::new(),
            "(printed)".into(),
            String::new(),
        ]);
        match self.lag {
            Some((p50, p99, n)) => table.add_row(vec![
                format!("event lag: accepted → report ({n} projects)"),
                String::new(),
                ms(p50),
                ms(p99),
                String::new(),
                String::new(),
                "p99 < 100 ms".into(),
                yes(p99 < 100.0),
            ]),
            None => table.add_row(vec!["event lag: skipped".to_string()]),
        };
        println!("{table}");
        println!(
            "write = one transaction: claim the idempotency key, INSERT … RETURNING the offering, record it under the key, \
             and at COMMIT the trigger's UPDATE of the one-row catalog_version (no outbox row: \
             offerings emit no event). pgbench runs that same transaction on the same tables \
             (prepared, no TLS)."
        );
        println!(
            "lag = from the TransitionProject(accepted) reply reaching the client to the first \
             GetReport (polled every 2 ms) counting it; projects → Redis → reporting."
        );
    }
}

fn yes(ok: bool) -> String {
    if ok { "yes" } else { "no" }.to_string()
}

struct Seeded {
    company_id: String,
    company_token: String,
    user_token: String,
    admin_token: String,
    user_id: String,
    offering_id: String,
    project_id: String,
}

async fn measure(
    args: &LoadArgs,
    servers: &Servers,
    keys: &Keys,
    database: &str,
    id: &str,
) -> anyhow::Result<Report> {
    let m_channel = channel(servers.matching.addr).await?;
    let p_channel = channel(servers.projects.addr).await?;
    let r_channel = channel(servers.reporting.addr).await?;
    let hour = Duration::from_secs(3600);
    let a_channel = channel(servers.accounts.addr).await?;
    let (seeded, member) = seed(keys, &a_channel, &m_channel, &p_channel, id, hour).await?;
    let matching = |token: &str| -> anyhow::Result<Matching> {
        Ok(MatchingServiceClient::with_interceptor(
            m_channel.clone(),
            bearer(token)?,
        ))
    };
    let projects = |token: &str| -> anyhow::Result<Projects> {
        Ok(ProjectsServiceClient::with_interceptor(
            p_channel.clone(),
            bearer(token)?,
        ))
    };

    // Read, as the water user (a party of the project) with its Ed25519 access token.
    let client = projects(&seeded.user_token)?;
    let project_id = seeded.project_id.clone();
    let get_project: Arc<dyn Fn(usize, u64) -> CallFuture + Send + Sync> =
        Arc::new(move |_, _| -> CallFuture {
            let mut client = client.clone();
            let project_id = project_id.clone();
            Box::pin(async move {
                client
                    .get_project(ppb::GetProjectRequest { project_id })
                    .await
                    .map(|_| ())
            })
        });
    // The echo ceiling: a bare tonic server with only the health service, measured in turns
    // with the read.
    let echo_server = EchoServer::start().await.context("echo server")?;
    let echo_client = HealthClient::new(channel(echo_server.addr).await?);
    let check: Arc<dyn Fn(usize, u64) -> CallFuture + Send + Sync> =
        Arc::new(move |_, _| -> CallFuture {
            let mut client = echo_client.clone();
            Box::pin(async move {
                client
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .map(|_| ())
            })
        });
    let measured = alternate(args.callers, args.seconds, get_project, check).await;
    echo_server.stop().await?;
    let (read, echo) = measured.context("read and echo runs")?;

    // Write.
    let client = matching(&seeded.company_token)?;
    let company_id = seeded.company_id.clone();
    let run = cwsm_platform::new_id();
    let write = drive(args.callers, args.seconds, move |caller, n| {
        let mut client = client.clone();
        let company_id = company_id.clone();
        let request_id = format!("bench-load:{run}:{caller}:{n}");
        Box::pin(async move {
            client
                .create_offering(mpb::CreateOfferingRequest {
                    request_id,
                    offering: Some(offering(&company_id)),
                })
                .await
                .map(|_| ())
        })
    })
    .await
    .context("write run")?;

    let pgbench = pgbench(args, database, &seeded.company_id).await;

    // Sign-in: one person after another, each an argon2id verification at the OWASP cost.
    let accounts = AccountsServiceClient::new(a_channel.clone());
    let member = Arc::new(member);
    let sign_in = drive(1, args.seconds, move |_, _| {
        let mut accounts = accounts.clone();
        let member = member.clone();
        Box::pin(async move { member.sign_in(&mut accounts).await.map(|_| ()) })
    })
    .await
    .context("sign-in run")?;

    let lag = if args.lag_samples > 0 {
        let reporting = ReportingServiceClient::with_interceptor(
            r_channel.clone(),
            bearer(&seeded.admin_token)?,
        );
        Some(
            event_lag(args, &seeded, &matching, &projects, reporting, id)
                .await
                .context("event lag")?,
        )
    } else {
        None
    };
    Ok(Report {
        read,
        echo,
        write,
        pgbench,
        sign_in,
        lag,
    })
}

fn offering(company_id: &str) -> mpb::Offering {
    mpb::Offering {
        company_id: company_id.to_string(),
        title: "Plant cooling-water recycling retrofit".into(),
        technologies: vec![types::Technology::LeakDetection as i32],
        contract_models: vec![types::ContractModel::SharedSavings as i32],
        typical_savings_bp: 2500,
        typical_term_months: 96,
        ..Default::default()
    }
}

/// A bare tonic server with only the health service: the ceiling of a call on this machine.
struct EchoServer {
    addr: SocketAddr,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl EchoServer {
    async fn start() -> anyhow::Result<EchoServer> {
        let (listener, addr) = cwsm_platform::server::bind("127.0.0.1:0").await?;
        let (_reporter, health) = tonic_health::server::health_reporter();
        let stop = CancellationToken::new();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    stop.clone().cancelled_owned(),
                ),
        );
        Ok(EchoServer { addr, stop, server })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.server.await.context("echo server task")??;
        Ok(())
    }
}

/// pgbench's tps running the write's own transaction, or why there is none.
///
/// The same statements on the same tables as CreateOffering (matching's schema in the scratch
/// database, with its triggers), as prepared statements (sqlx prepares too) and without TLS
/// (the services connect without it): only the service's own work is left out.
async fn pgbench(args: &LoadArgs, database: &str, company_id: &str) -> Result<f64, String> {
    let found = std::process::Command::new("pgbench")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        return Err("pgbench not on PATH".into());
    }
    let script = format!(
        "\\set k random(1, 1000000000000)\n\
         \\set r random(1, 1000000000000)\n\
         BEGIN;\n\
         INSERT INTO idempotency (scope, request_id, resource_id, request_hash, created_at_ms) \
         VALUES ('pgbench', md5(:k::text || '-' || :r::text), '', md5(:r::text), 0) \
         ON CONFLICT (scope, request_id) DO NOTHING;\n\
         INSERT INTO offerings (id, company_id, title, description, technologies, contract_models, sectors, towns, \
         min_investment_fen, max_investment_fen, typical_savings_bp, typical_term_months, status, created_at_ms, updated_at_ms) \
         VALUES (md5(:k::text || clock_timestamp()::text || 'o'), '{company_id}', 'Plant cooling-water recycling retrofit', '', \
         '[\"leak_detection\"]', '[\"shared_savings\"]', '[]', '[]', 0, 0, 2500, 96, 'draft', 0, 0) RETURNING *;\n\
         UPDATE idempotency SET resource_id = md5(:r::text || 'o') \
         WHERE scope = 'pgbench' AND request_id = md5(:k::text || '-' || :r::text);\n\
         COMMIT;\n"
    );
    let file =
        std::env::temp_dir().join(format!("cwsm-bench-load-{}.sql", cwsm_platform::new_id()));
    std::fs::write(&file, script).map_err(|e| format!("writing the pgbench script: {e}"))?;
    let separator = if database.contains('?') { '&' } else { '?' };
    let (callers, seconds, url, path) = (
        args.callers.to_string(),
        args.seconds.to_string(),
        // matching's own search path, as its pool has (its trigger names tables unqualified).
        format!("{database}{separator}sslmode=disable&options=-csearch_path%3Dmatching"),
        file.clone(),
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("pgbench")
            .args(["-n", "-M", "prepared"])
            .args(["-c", &callers, "-j", "2", "-T", &seconds, "-f"])
            .arg(&path)
            .arg(&url)
            .output()
    })
    .await;
    let _ = std::fs::remove_file(&file);
    let out = out
        .map_err(|e| format!("pgbench task: {e}"))?
        .map_err(|e| format!("running pgbench: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_pgbench_tps(&text).ok_or_else(|| {
        format!(
            "no tps in pgbench's output: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// A member of an organization the bench registers in accounts.
struct Member {
    login: String,
    password: String,
    code: String,
    name: &'static str,
    kind: apb::OrganizationKind,
}

impl Member {
    /// Registers the organization with this member as its registrant, has the operator
    /// approve it, and signs the member in: their access token.
    async fn join(&self, channel: &Channel, admin_token: &str) -> anyhow::Result<String> {
        let mut accounts = AccountsServiceClient::new(channel.clone());
        accounts
            .register_organization(apb::RegisterOrganizationRequest {
                request_id: format!("bench-load:register:{}", self.code),
                credit_code: self.code.clone(),
                name: self.name.into(),
                kind: self.kind as i32,
                registrant: Some(apb::NewCredentials {
                    login: self.login.clone(),
                    password: self.password.clone(),
                    display_name: self.name.into(),
                }),
                // The platform's district.
                ..Default::default()
            })
            .await
            .with_context(|| format!("registering {}", self.code))?;
        AccountsServiceClient::with_interceptor(channel.clone(), bearer(admin_token)?)
            .approve_organization(apb::ApproveOrganizationRequest {
                credit_code: self.code.clone(),
                note: "bench".into(),
                expected_version: 0,
            })
            .await
            .with_context(|| format!("approving {}", self.code))?;
        Ok(self.sign_in(&mut accounts).await?.access_token)
    }

    async fn sign_in(
        &self,
        accounts: &mut AccountsServiceClient<Channel>,
    ) -> Result<apb::Tokens, tonic::Status> {
        accounts
            .sign_in(apb::SignInRequest {
                login: self.login.clone(),
                password: self.password.clone(),
                credit_code: self.code.clone(),
            })
            .await?
            .into_inner()
            .tokens
            .ok_or_else(|| tonic::Status::internal("no tokens in the SignIn reply"))
    }
}

/// Waits until matching and projects have fetched the accounts service's keys and take `token`.
async fn accepted(m_channel: &Channel, p_channel: &Channel, token: &str) -> anyhow::Result<()> {
    let mut matching = MatchingServiceClient::with_interceptor(m_channel.clone(), bearer(token)?);
    let mut projects = ProjectsServiceClient::with_interceptor(p_channel.clone(), bearer(token)?);
    let waited = Instant::now();
    loop {
        let m = matching
            .list_companies(mpb::ListCompaniesRequest::default())
            .await;
        let p = projects
            .list_projects(ppb::ListProjectsRequest::default())
            .await;
        match (m, p) {
            (Ok(_), Ok(_)) => return Ok(()),
            (Err(s), _) | (_, Err(s)) if s.code() != tonic::Code::Unauthenticated => {
                return Err(s).context("a signed-in caller's first calls");
            }
            _ if waited.elapsed() > Duration::from_secs(60) => {
                bail!("the services did not take the accounts service's tokens within 60 s")
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn seed(
    keys: &Keys,
    a_channel: &Channel,
    m_channel: &Channel,
    p_channel: &Channel,
    id: &str,
    valid: Duration,
) -> anyhow::Result<(Seeded, Member)> {
    // Unique credit codes per run (digits from the run id).
    let digits: String = id
        .chars()
        .map(|c| char::from(b'0' + (c as u32 % 10) as u8))
        .take(7)
        .collect();
    let company_code = credit_code(&format!("91320411MA{digits}"))?;
    let user_code = credit_code(&format!("1232041146{digits}"))?;
    // The operator's token reviews the organizations; the company and the water user act
    // through their registrants' signed-in (Ed25519) access tokens, as people do.
    let admin_token = keys.issue("bench", Role::Admin, None, valid)?;
    let member = |code: String, name: &'static str, kind: apb::OrganizationKind| Member {
        login: format!("bench-{}@{id}.cwsm.test", kind.as_str_name().to_lowercase()),
        password: format!("bench-password-{id}"),
        code,
        name,
        kind,
    };
    let company_member = member(
        company_code.clone(),
        "基准节水科技有限公司",
        apb::OrganizationKind::Company,
    );
    let user_member = member(
        user_code.clone(),
        "基准化工厂",
        apb::OrganizationKind::WaterUser,
    );
    let company_token = company_member.join(a_channel, &admin_token).await?;
    let user_token = user_member.join(a_channel, &admin_token).await?;
    accepted(m_channel, p_channel, &company_token).await?;
    accepted(m_channel, p_channel, &user_token).await?;
    let mut company_client =
        MatchingServiceClient::with_interceptor(m_channel.clone(), bearer(&company_token)?);
    let mut user_client =
        MatchingServiceClient::with_interceptor(m_channel.clone(), bearer(&user_token)?);
    let company = company_client
        .create_company(mpb::CreateCompanyRequest {
            request_id: format!("bench-load:company:{id}"),
            company: Some(mpb::Company {
                credit_code: company_code.clone(),
                name: "基准节水科技有限公司".into(),
                towns: vec!["新桥街道".into()],
                sectors: vec![types::Sector::IndustrialEnterprise as i32],
                certification_grade: types::CertificationGrade::Aaa as i32,
                financing_capacity_fen: 500_000_000_000,
                ..Default::default()
            }),
        })
        .await
        .context("creating the company")?
        .into_inner()
        .company
        .context("no company in the reply")?;
    let offering = company_client
        .create_offering(mpb::CreateOfferingRequest {
            request_id: format!("bench-load:offering:{id}"),
            offering: Some(offering(&company.id)),
        })
        .await
        .context("creating the offering")?
        .into_inner()
        .offering
        .context("no offering in the reply")?;
    company_client
        .publish_offering(mpb::PublishOfferingRequest {
            request_id: format!("bench-load:publish:{id}"),
            offering_id: offering.id.clone(),
            expected_version: 0,
        })
        .await
        .context("publishing the offering")?;
    let user = user_client
        .create_water_user(mpb::CreateWaterUserRequest {
            request_id: format!("bench-load:user:{id}"),
            water_user: Some(mpb::WaterUser {
                credit_code: user_code.clone(),
                name: "基准化工厂".into(),
                sector: types::Sector::IndustrialEnterprise as i32,
                unit_type: "plant".into(),
                town: "新桥街道".into(),
                annual_use_litres: 2_430_000_000,
                ..Default::default()
            }),
        })
        .await
        .context("creating the water user")?
        .into_inner()
        .water_user
        .context("no water user in the reply")?;
    let mut seeded = Seeded {
        company_id: company.id,
        company_token,
        user_token,
        admin_token,
        user_id: user.id,
        offering_id: offering.id,
        project_id: String::new(),
    };
    let mut projects =
        ProjectsServiceClient::with_interceptor(p_channel.clone(), bearer(&seeded.user_token)?);
    seeded.project_id = contracted_project(
        &mut company_client,
        &mut user_client,
        &mut projects,
        &seeded,
        &format!("{id}:seed"),
    )
    .await?;
    Ok((seeded, user_member))
}

/// An open request, a proposal, its acceptance, and the project once projects has made it.
async fn contracted_project(
    company: &mut Matching,
    user: &mut Matching,
    projects: &mut Projects,
    seeded: &Seeded,
    key: &str,
) -> anyhow::Result<String> {
    let request = user
        .create_project_request(mpb::CreateProjectRequestRequest {
            request_id: format!("bench-load:request:{key}"),
            project_request: Some(mpb::ProjectRequest {
                water_user_id: seeded.user_id.clone(),
                title: format!("Cooling-water retrofit {key}"),
                baseline_use_litres: 2_430_000_000,
                expected_savings_bp: 2000,
                price_fen_per_m3: 410,
                preferred_contract_models: vec![types::ContractModel::SharedSavings as i32],
                wanted_technologies: vec![types::Technology::LeakDetection as i32],
                investment_wanted_fen: 120_000_000,
                indicator_tags: vec![
                    types::IndicatorTag::ContractProject as i32,
                    types::IndicatorTag::TechnicalRetrofit as i32,
                ],
                ..Default::default()
            }),
        })
        .await
        .context("creating a project request")?
        .into_inner()
        .project_request
        .context("no request in the reply")?;
    user.open_project_request(mpb::OpenProjectRequestRequest {
        request_id: format!("bench-load:open:{key}"),
        project_request_id: request.id.clone(),
        expected_version: 0,
    })
    .await
    .context("opening the request")?;
    let proposal = company
        .create_proposal(mpb::CreateProposalRequest {
            request_id: format!("bench-load:proposal:{key}"),
            proposal: Some(mpb::Proposal {
                project_request_id: request.id.clone(),
                company_id: seeded.company_id.clone(),
                offering_id: seeded.offering_id.clone(),
                measures: "Cooling-water recycling, leak repair".into(),
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
                drivers: vec!["output".into()],
                ..Default::default()
            }),
        })
        .await
        .context("creating a proposal")?
        .into_inner()
        .proposal
        .context("no proposal in the reply")?;
    let project_id = user
        .accept_proposal(mpb::AcceptProposalRequest {
            request_id: format!("bench-load:accept:{key}"),
            proposal_id: proposal.id,
            expected_version: 0,
        })
        .await
        .context("accepting the proposal")?
        .into_inner()
        .project_id;
    let waited = Instant::now();
    loop {
        match projects
            .get_project(ppb::GetProjectRequest {
                project_id: project_id.clone(),
            })
            .await
        {
            Ok(_) => return Ok(project_id),
            Err(s) if s.code() == tonic::Code::NotFound => {
                if waited.elapsed() > Duration::from_secs(30) {
                    bail!("project {project_id} not created within 30 s of the acceptance");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(s) => return Err(s).context("getting the project"),
        }
    }
}

const LAG_INDICATOR: &str = "A7-TECH-RETROFITS";

async fn counted(reporting: &mut Reporting) -> anyhow::Result<f64> {
    let report = reporting
        .get_report(rpb::GetReportRequest {
            plan_code: "xinbei-2020".into(),
            plan_version: 0,
            as_of_date: String::new(),
        })
        .await
        .context("GetReport")?
        .into_inner()
        .report
        .context("no report in the reply")?;
    report
        .indicators
        .iter()
        .find(|s| {
            s.indicator
                .as_ref()
                .is_some_and(|i| i.code == LAG_INDICATOR)
        })
        .map(|s| s.actual)
        .ok_or_else(|| anyhow!("the report has no {LAG_INDICATOR}"))
}

async fn transition(
    client: &mut Projects,
    project_id: &str,
    stage: ppb::ProjectStage,
    key: &str,
) -> anyhow::Result<()> {
    client
        .transition_project(ppb::TransitionProjectRequest {
            request_id: format!("bench-load:{key}:{}", stage.as_str_name()),
            project_id: project_id.to_string(),
            to_stage: stage as i32,
            reason: String::new(),
            expected_version: 0,
            evidence: "acceptance report 2026-001".into(),
            effective_date: String::new(),
        })
        .await
        .with_context(|| format!("moving {project_id} to {}", stage.as_str_name()))?;
    Ok(())
}

async fn event_lag(
    args: &LoadArgs,
    seeded: &Seeded,
    matching: &dyn Fn(&str) -> anyhow::Result<Matching>,
    projects: &dyn Fn(&str) -> anyhow::Result<Projects>,
    mut reporting: Reporting,
    id: &str,
) -> anyhow::Result<(f64, f64, usize)> {
    let mut company = matching(&seeded.company_token)?;
    let mut user = matching(&seeded.user_token)?;
    let mut company_projects = projects(&seeded.company_token)?;
    let mut user_projects = projects(&seeded.user_token)?;
    // The seed plan counts 2020; these projects take effect today: count them against the
    // seed plan moved to this year (its next version, which GetReport reads).
    let year = chrono::Datelike::year(&cwsm_reporting::today());
    reporting
        .load_plan(rpb::LoadPlanRequest {
            request_id: format!("{id}:lag:plan"),
            plan_toml: cwsm_reporting::plan::seed_plan_for_year(year),
            validate_only: false,
        })
        .await
        .context("loading this year's plan")?;
    // Projects made and brought to commissioned first, so the lag runs see a quiet system.
    let mut ready = Vec::with_capacity(args.lag_samples);
    for i in 0..args.lag_samples {
        let key = format!("{id}:lag:{i}");
        let project_id =
            contracted_project(&mut company, &mut user, &mut user_projects, seeded, &key).await?;
        for stage in [
            ppb::ProjectStage::Implementing,
            ppb::ProjectStage::Commissioned,
        ] {
            transition(&mut company_projects, &project_id, stage, &key).await?;
        }
        ready.push((project_id, key));
    }
    let mut lags = Vec::with_capacity(ready.len());
    for (project_id, key) in ready {
        let before = counted(&mut reporting).await?;
        transition(
            &mut user_projects,
            &project_id,
            ppb::ProjectStage::Accepted,
            &key,
        )
        .await?;
        let committed = Instant::now();
        loop {
            if counted(&mut reporting).await? >= before + 1.0 {
                lags.push(committed.elapsed());
                break;
            }
            if committed.elapsed() > Duration::from_secs(30) {
                bail!("the report did not count project {project_id} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let n = lags.len();
    let (p50, p99) = percentiles(lags);
    Ok((p50, p99, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_tps_and_percentiles() {
        let out = "transaction type: w.sql\nnumber of clients: 16\n\
                   latency average = 2.345 ms\n\
                   initial connection time = 12.3 ms\n\
                   tps = 6823.412345 (without initial connection time)\n";
        assert_eq!(parse_pgbench_tps(out), Some(6823.412345));
        assert_eq!(parse_pgbench_tps("no figures"), None);
        let ms = |n: u64| Duration::from_millis(n);
        let samples: Vec<Duration> = (1..=100).map(ms).collect();
        // Nearest rank: of 1..=100 ms the 50th and the 99th.
        assert_eq!(percentiles(samples), (50.0, 99.0));
        assert_eq!(percentiles(vec![]), (0.0, 0.0));
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert!(credit_code("91320411MA1QX7B2F").is_ok());
    }
}
