//! The command-line client: tables for people, `--json` for scripts. One file per service.
//!
//! It talks gRPC to `--server` (default the embedded `cwsm serve` address) with the bearer token
//! in `--token` / `CWSM_TOKEN`, or with an API key in `--api-key` / `CWSM_API_KEY` (a machine
//! client: exchanged at the accounts service for a short-lived access token first). With
//! neither, and a signing key in the local data folder (the embedded mode on this machine), it
//! signs itself an administrator token: whoever can read that file can sign any token anyway.

mod accounts;
mod evidence;
mod health;
mod load;
mod matching;
mod projects;
mod reporting;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use cwsm_platform::auth::{Keys, Role};
use cwsm_proto::accounts::v1::accounts_service_client::AccountsServiceClient;
use cwsm_proto::matching::v1::matching_service_client::MatchingServiceClient;
use cwsm_proto::projects::v1 as ppb;
use cwsm_proto::projects::v1::projects_service_client::ProjectsServiceClient;
use cwsm_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Median and 99th percentile of `samples`, in milliseconds (the benchmarks' figures).
pub(crate) fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort();
    let at = |q: usize| {
        let i = (samples.len() * q / 100).min(samples.len() - 1);
        samples[i].as_secs_f64() * 1000.0
    };
    (at(50), at(99))
}

#[derive(Args, Clone)]
pub struct Connection {
    /// Server address.
    #[arg(
        long,
        global = true,
        env = "CWSM_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// CA certificate (PEM) to trust for an https:// server; default: the system's roots.
    #[arg(long, global = true, env = "CWSM_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for a server that asks for one (mutual TLS).
    #[arg(long, global = true, env = "CWSM_CLIENT_CERT")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, global = true, env = "CWSM_CLIENT_KEY")]
    pub client_key: Option<PathBuf>,
    /// Bearer token (see `cwsm token issue`).
    #[arg(long, global = true, env = "CWSM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// API key of a machine client (`cwsm api-keys create`): exchanged for an access token
    /// before the command runs. Prefer CWSM_API_KEY: a command line is visible to other users.
    #[arg(
        long,
        global = true,
        env = "CWSM_API_KEY",
        hide_env_values = true,
        conflicts_with = "token"
    )]
    pub api_key: Option<String>,
    /// Data folder whose signing key may sign an admin token when no token is given.
    #[arg(
        long,
        global = true,
        env = "CWSM_DATA_DIR",
        default_value = "cwsm-data"
    )]
    pub data_dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// The action plan's indicators: target, actual, progress, status.
    Report(reporting::ReportArgs),
    /// Water-saving service companies.
    Companies(matching::CompaniesArgs),
    /// What service companies offer.
    Offerings(matching::OfferingsArgs),
    /// Water users (用水单位).
    Users(matching::UsersArgs),
    /// Water users' project requests.
    Requests(matching::RequestsArgs),
    /// Proposals on a request.
    Proposals(matching::ProposalsArgs),
    /// Contract projects.
    Projects(projects::ProjectsArgs),
    /// Ask a server whether a service is SERVING (grpc.health.v1); exits non-zero unless it is.
    Health(health::HealthArgs),
    /// Sign in with your login and password (from CWSM_PASSWORD or standard input); prints an
    /// access token for CWSM_TOKEN.
    SignIn(accounts::SignInArgs),
    /// API keys of machine clients (a meter-data gateway): create, list, revoke.
    ApiKeys(accounts::ApiKeysArgs),
    /// Benchmarks that start their own servers: `cwsm bench load` (the issue's load figures).
    Bench(load::BenchArgs),
}

pub async fn run(command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Report(args) => reporting::report(args).await,
        ClientCommand::Companies(args) => matching::companies(args).await,
        ClientCommand::Offerings(args) => matching::offerings(args).await,
        ClientCommand::Users(args) => matching::users(args).await,
        ClientCommand::Requests(args) => matching::requests(args).await,
        ClientCommand::Proposals(args) => matching::proposals(args).await,
        ClientCommand::Projects(args) => projects::projects(args).await,
        ClientCommand::Health(args) => health::health(args).await,
        ClientCommand::SignIn(args) => accounts::sign_in(args).await,
        ClientCommand::ApiKeys(args) => accounts::api_keys(args).await,
        ClientCommand::Bench(args) => load::run(args).await,
    }
}

pub(crate) type Auth =
    Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;

pub(crate) struct Clients {
    pub(crate) channel: Channel,
    pub(crate) token: String,
}

/// A connection to `conn.server` (TLS for `https://`, with the CA and client certificate given).
pub(crate) async fn channel(conn: &Connection) -> anyhow::Result<Channel> {
    let tls = cwsm_platform::server::ClientTls {
        ca: conn.ca_file.clone(),
        cert: conn.client_cert.clone(),
        key: conn.client_key.clone(),
    };
    cwsm_platform::server::client_endpoint(&conn.server, &tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot reach {} (is `cwsm serve` running?)", conn.server))
}

impl Clients {
    pub(crate) async fn connect(conn: &Connection) -> anyhow::Result<Clients> {
        let token = match (&conn.token, &conn.api_key) {
            (Some(t), _) => t.clone(),
            (None, Some(key)) => {
                let channel = channel(conn).await?;
                let token = accounts::exchange(&channel, key).await?;
                return Ok(Clients { channel, token });
            }
            (None, None) => {
                let key = conn.data_dir.join(cwsm_platform::auth::KEY_FILE);
                if !key.exists() {
                    anyhow::bail!(
                        "no token: pass --token or set CWSM_TOKEN (cwsm token issue --role …), \
                         or CWSM_API_KEY for a machine client"
                    );
                }
                Keys::load_or_create(&conn.data_dir)?.issue(
                    &cwsm_platform::auth::local_subject(),
                    Role::Admin,
                    None,
                    Duration::from_secs(3600),
                )?
            }
        };
        let channel = channel(conn).await?;
        Ok(Clients { channel, token })
    }

    pub(crate) fn auth(&self) -> Auth {
        let header = format!("Bearer {}", self.token);
        Box::new(move |mut request: tonic::Request<()>| {
            let value = header
                .parse()
                .map_err(|_| tonic::Status::invalid_argument("token is not valid metadata"))?;
            request.metadata_mut().insert("authorization", value);
            Ok(request)
        })
    }

    pub(crate) fn accounts(&self) -> AccountsServiceClient<InterceptedService<Channel, Auth>> {
        AccountsServiceClient::with_interceptor(self.channel.clone(), self.auth())
    }
    pub(crate) fn matching(&self) -> MatchingServiceClient<InterceptedService<Channel, Auth>> {
        MatchingServiceClient::with_interceptor(self.channel.clone(), self.auth())
    }
    pub(crate) fn projects(&self) -> ProjectsServiceClient<InterceptedService<Channel, Auth>> {
        ProjectsServiceClient::with_interceptor(self.channel.clone(), self.auth())
    }
    pub(crate) fn reporting(&self) -> ReportingServiceClient<InterceptedService<Channel, Auth>> {
        ReportingServiceClient::with_interceptor(self.channel.clone(), self.auth())
    }
}

/// Rows for people or scripts.
pub(crate) struct Output {
    pub(crate) headers: Vec<&'static str>,
    pub(crate) rows: Vec<Vec<String>>,
}

impl Output {
    pub(crate) fn print(&self, json: bool) {
        if json {
            let objects: Vec<serde_json::Value> = self
                .rows
                .iter()
                .map(|row| {
                    serde_json::Value::Object(
                        self.headers
                            .iter()
                            .zip(row)
                            .map(|(h, v)| (h.to_string(), serde_json::Value::String(v.clone())))
                            .collect(),
                    )
                })
                .collect();
            println!("{}", serde_json::Value::Array(objects));
        } else {
            let mut table = Table::new();
            table
                .load_preset(UTF8_FULL_CONDENSED)
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_header(self.headers.clone());
            for row in &self.rows {
                table.add_row(row.clone());
            }
            println!("{table}");
        }
    }
}

pub(crate) fn code_number<T>(
    field: &str,
    code: &str,
    from: fn(&str) -> Option<T>,
    number: fn(T) -> i32,
) -> anyhow::Result<i32> {
    if code.is_empty() {
        return Ok(0);
    }
    from(code)
        .map(number)
        .ok_or_else(|| anyhow::anyhow!("unknown {field} {code:?}"))
}

pub(crate) fn name_of<T>(
    n: i32,
    from: fn(i32) -> Option<T>,
    code: fn(T) -> &'static str,
) -> String {
    from(n).map(|v| code(v).to_string()).unwrap_or_default()
}

pub(crate) fn yuan(fen: i64) -> String {
    format!("{:.2}", fen as f64 / 100.0)
}

pub(crate) fn stage_name(n: i32) -> String {
    ppb::ProjectStage::try_from(n)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("PROJECT_STAGE_")
                .to_lowercase()
        })
        .unwrap_or_default()
}

/// An instant (milliseconds) as China Standard Time, for people.
pub(crate) fn cst(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| {
            (t + chrono::Duration::hours(8))
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

pub(crate) fn request_id() -> String {
    format!("cli:{}", cwsm_platform::new_id())
}
