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
    /// Print only the ids of what the command made or listed, one a line (for scripts:
    /// `PROJECT=$(cwsm proposals accept … -q)`).
    #[arg(long, short, global = true, conflicts_with = "json")]
    pub quiet: bool,
}

/// How a command prints what it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// A table for people, with lines around it (what comes next, a chart).
    Table,
    /// The rows as JSON objects.
    Json,
    /// The first column of each row (a command's rows start with what it names).
    Ids,
}

impl Connection {
    pub(crate) fn format(&self) -> Format {
        match (self.json, self.quiet) {
            (true, _) => Format::Json,
            (false, true) => Format::Ids,
            (false, false) => Format::Table,
        }
    }
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

/// An error as one plain sentence for the person at the terminal: the CLI's own context, then
/// the server's message (not tonic's debug text of the status), then what to do about it.
pub fn explain(error: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in error.chain() {
        if let Some(status) = cause.downcast_ref::<tonic::Status>() {
            let message = status.message().trim();
            parts.push(if message.is_empty() {
                format!("{:?}", status.code())
            } else {
                message.to_string()
            });
            if let Some(next) = next_step(status.code()) {
                parts.push(next.to_string());
            }
            break;
        }
        parts.push(cause.to_string());
    }
    parts.join(": ")
}

/// What to run next after a status whose message cannot know the command line.
fn next_step(code: tonic::Code) -> Option<&'static str> {
    match code {
        tonic::Code::Unauthenticated => Some(
            "sign in again (CWSM_TOKEN=$(cwsm sign-in --login …)), or give a token with --token",
        ),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
            Some("is `cwsm serve` running at the address of --server (CWSM_SERVER)?")
        }
        _ => None,
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

/// The kinds of organization a command's flag may name.
#[derive(Clone, Copy, Debug)]
pub(crate) enum OrgKind {
    Company,
    WaterUser,
}

impl OrgKind {
    fn noun(self) -> &'static str {
        match self {
            OrgKind::Company => "service company",
            OrgKind::WaterUser => "water user",
        }
    }
    fn list_command(self) -> &'static str {
        match self {
            OrgKind::Company => "cwsm companies list --query",
            OrgKind::WaterUser => "cwsm users list --query",
        }
    }
}

impl Clients {
    /// The marketplace id of the organization `named` by its credit code or exact name (an id
    /// is taken as it is); `named` empty: the caller's own organization, the one its token acts
    /// for. People name organizations by credit code; the API takes ids.
    pub(crate) async fn org_id(
        &self,
        kind: OrgKind,
        flag: &str,
        named: &str,
    ) -> anyhow::Result<String> {
        let named = named.trim();
        if cwsm_platform::is_id(named) {
            return Ok(named.to_string());
        }
        let named = if named.is_empty() {
            cwsm_platform::auth::token_org_unverified(&self.token).with_context(|| {
                format!(
                    "--{flag}: name the {} by its credit code or name (your token acts for no \
                     organization)",
                    kind.noun()
                )
            })?
        } else {
            named.to_string()
        };
        let page_size = 20;
        let found: Vec<(String, String, String)> = match kind {
            OrgKind::Company => self
                .matching()
                .list_companies(cwsm_proto::matching::v1::ListCompaniesRequest {
                    page_size,
                    query: named.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .companies
                .into_iter()
                .map(|x| (x.id, x.credit_code, x.name))
                .collect(),
            OrgKind::WaterUser => self
                .matching()
                .list_water_users(cwsm_proto::matching::v1::ListWaterUsersRequest {
                    page_size,
                    query: named.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .water_users
                .into_iter()
                .map(|x| (x.id, x.credit_code, x.name))
                .collect(),
        };
        let by_code: Vec<_> = found
            .iter()
            .filter(|(_, code, _)| code.eq_ignore_ascii_case(&named))
            .collect();
        let by_name: Vec<_> = found.iter().filter(|(_, _, name)| *name == named).collect();
        match (by_code.as_slice(), by_name.as_slice()) {
            ([(id, _, _)], _) | ([], [(id, _, _)]) => Ok(id.clone()),
            ([], []) => anyhow::bail!(
                "--{flag}: no {} has the credit code or name {named:?} (see `{} …`)",
                kind.noun(),
                kind.list_command()
            ),
            _ => anyhow::bail!(
                "--{flag}: more than one {} is named {named:?}; name one by its credit code: {}",
                kind.noun(),
                by_code
                    .iter()
                    .chain(&by_name)
                    .map(|(_, code, _)| code.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// [`Clients::org_id`] for a filter: empty stays empty (no filter).
    pub(crate) async fn org_filter(
        &self,
        kind: OrgKind,
        flag: &str,
        named: &str,
    ) -> anyhow::Result<String> {
        if named.trim().is_empty() {
            Ok(String::new())
        } else {
            self.org_id(kind, flag, named).await
        }
    }
}

/// Rows for people or scripts.
pub(crate) struct Output {
    pub(crate) headers: Vec<&'static str>,
    pub(crate) rows: Vec<Vec<String>>,
}

impl Output {
    pub(crate) fn print(&self, format: Format) {
        if format == Format::Ids {
            for row in &self.rows {
                println!("{}", row.first().map(String::as_str).unwrap_or_default());
            }
        } else if format == Format::Json {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_reads_as_the_servers_sentence_and_what_to_do() {
        let refused = anyhow::Error::new(tonic::Status::failed_precondition(
            "project p is contracted; periods are submitted while it is operating",
        ))
        .context("submitting the period starting 2026-01-01");
        assert_eq!(
            explain(&refused),
            "submitting the period starting 2026-01-01: project p is contracted; periods are \
             submitted while it is operating"
        );
        let expired = anyhow::Error::new(tonic::Status::unauthenticated("token expired"));
        assert!(explain(&expired).starts_with("token expired: sign in again"));
        // No "status:", "message:", "details:" or "metadata:" of the status's debug text.
        assert!(!explain(&refused).contains("metadata"));
        let plain = anyhow::anyhow!("--register-digits 11: a register has 1 to 10 digits");
        assert_eq!(
            explain(&plain),
            "--register-digits 11: a register has 1 to 10 digits"
        );
    }
}
