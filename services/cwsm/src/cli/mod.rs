//! The command-line client: tables for people, `--json` for scripts. One file per service.
//!
//! It talks gRPC to `--server` (default the embedded `cwsm serve` address) with the bearer token
//! in `--token` / `CWSM_TOKEN`, or with an API key in `--api-key` / `CWSM_API_KEY` (a machine
//! client: exchanged at the accounts service for a short-lived access token first). With
//! neither, and a signing key in the local data folder (the embedded mode on this machine), it
//! signs itself an administrator token: whoever can read that file can sign any token anyway.

/// The rows of a list RPC and the next page's token, one page or (`--all`) every page:
/// `pages!(paging, client, rpc, request, field)` asks `client.rpc(request)` with the page's
/// size and token set, and takes the rows from the reply's `field`. `request` is evaluated
/// for each page (clone what it moves).
macro_rules! pages {
    ($paging:expr, $client:expr, $rpc:ident, $request:expr, $field:ident) => {
        $paging.fetch(|page_size, page_token| {
            let mut client = $client;
            let mut ask = $request;
            ask.page_size = page_size;
            ask.page_token = page_token;
            async move {
                let reply = client.$rpc(ask).await?.into_inner();
                Ok((reply.$field, reply.next_page_token))
            }
        })
    };
}

/// Every row of a list RPC ([`pages!`] with every page): for lists a command reads whole.
macro_rules! every {
    ($client:expr, $rpc:ident, $request:expr, $field:ident) => {
        async {
            let (rows, _) = pages!(
                $crate::cli::Paging::every(),
                $client,
                $rpc,
                $request,
                $field
            )
            .await?;
            anyhow::Ok(rows)
        }
    };
}

mod accounts;
mod evidence;
mod health;
mod matching;
mod projects;
mod reporting;
mod text;

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
    /// The language of tables, names and the services' explanations: zh or en [default: the
    /// locale's, zh for zh_*].
    #[arg(long, global = true, env = "CWSM_LANG", value_parser = ["zh", "en"])]
    pub lang: Option<String>,
}

/// How a list command pages: `--limit` rows from `--page-token` on, or `--all` of them.
#[derive(Args, Clone, Debug)]
pub struct Paging {
    /// Rows to show (the server gives at most 500 a page).
    #[arg(long, default_value_t = 50)]
    pub limit: i32,
    /// Go on where a list stopped: the token its last line names.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub page_token: String,
    /// Every row, page after page.
    #[arg(long)]
    pub all: bool,
}

impl Paging {
    /// Every row: for lists a command reads whole (a project's meters, its settlements).
    pub(crate) fn every() -> Paging {
        Paging {
            limit: 500,
            page_token: String::new(),
            all: true,
        }
    }

    /// The rows of one page, or with `--all` of every page, and the token of the page after
    /// (empty when none is left). `fetch(page_size, page_token)` asks the server for a page.
    pub(crate) async fn fetch<T, F, Fut>(&self, mut fetch: F) -> anyhow::Result<(Vec<T>, String)>
    where
        F: FnMut(i32, String) -> Fut,
        Fut: std::future::Future<Output = Result<(Vec<T>, String), tonic::Status>>,
    {
        let size = if self.all {
            500
        } else {
            self.limit.clamp(1, 500)
        };
        let mut rows = Vec::new();
        let mut token = self.page_token.clone();
        // A server that kept answering the same token would loop: a page's token must move on.
        let mut seen = std::collections::HashSet::new();
        loop {
            let (mut page, next) = fetch(size, token).await?;
            rows.append(&mut page);
            if !self.all || next.is_empty() {
                return Ok((rows, next));
            }
            anyhow::ensure!(
                seen.insert(next.clone()),
                "the server gave the page token {next} twice"
            );
            token = next;
        }
    }
}

/// The line under a table that says the list goes on, and how to see the rest.
pub(crate) fn more(next: &str, format: Format) {
    if !next.is_empty() && format == Format::Table {
        println!(
            "{}",
            text::pick(
                &format!("还有更多：加 --page-token {next} 看下一页（或 --all 看全部）"),
                &format!("More rows: add --page-token {next} (or --all for every row)"),
            )
        );
    }
}

/// How a command prints what it got./// How a command prints what it got.
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
    Bench(crate::bench::load::BenchArgs),
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
        ClientCommand::Bench(args) => crate::bench::load::run(args).await,
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

pub(crate) type Auth = cwsm_platform::auth::Bearer;

pub(crate) struct Clients {
    pub(crate) channel: Channel,
    pub(crate) token: String,
    /// The token on every call, and the run's language.
    bearer: Auth,
}

/// The language every command of this run speaks: `--lang`, else the locale's (set once, for
/// the tables and for the `accept-language` the services answer in).
pub(crate) fn speak(conn: &Connection) {
    text::set_lang(text::lang_asked(conn.lang.as_deref()));
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
        speak(conn);
        let token = match (&conn.token, &conn.api_key) {
            (Some(t), _) => t.clone(),
            (None, Some(key)) => {
                let channel = channel(conn).await?;
                let token = accounts::exchange(&channel, key).await?;
                return Clients::new(channel, token);
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
        Clients::new(channel, token)
    }

    /// Clients over `channel` that send `token`, in the run's language.
    pub(crate) fn new(channel: Channel, token: String) -> anyhow::Result<Clients> {
        let bearer = Auth::new(&token)?.speaking(text::lang());
        Ok(Clients {
            channel,
            token,
            bearer,
        })
    }

    pub(crate) fn auth(&self) -> Auth {
        self.bearer.clone()
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

/// A reply as the API's own JSON (the proto3 JSON mapping, read from the descriptor set):
/// field names as in the `.proto`, enums by name, numbers as JSON numbers (int64 too: the
/// volumes and amounts fit a double's 53 bits), every field, defaults included.
pub(crate) fn api_json<M: prost::Message + prost::Name>(
    message: &M,
) -> anyhow::Result<serde_json::Value> {
    use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
    static POOL: std::sync::OnceLock<Result<DescriptorPool, String>> = std::sync::OnceLock::new();
    let pool = POOL
        .get_or_init(|| {
            DescriptorPool::decode(cwsm_proto::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("the API's descriptor set: {e}"))?;
    let name = M::full_name();
    let descriptor = pool
        .get_message_by_name(&name)
        .with_context(|| format!("{name} is not in the API's descriptor set"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    let options = SerializeOptions::new()
        .stringify_64_bit_integers(false)
        .use_proto_field_name(true)
        .skip_default_fields(false);
    Ok(dynamic.serialize_with_options(serde_json::value::Serializer, &options)?)
}

/// Every one of `items` as the API's JSON ([`api_json`]), in an array.
pub(crate) fn api_json_list<M: prost::Message + prost::Name>(
    items: &[M],
) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::Value::Array(
        items.iter().map(api_json).collect::<anyhow::Result<_>>()?,
    ))
}

/// Below this a terminal's width is not believed ([`Output::table`]).
const NARROWEST: u16 = 40;
/// The width taken instead.
const FALLBACK_WIDTH: u16 = 120;

/// Rows for people or scripts.
pub(crate) struct Output {
    pub(crate) headers: Vec<&'static str>,
    pub(crate) rows: Vec<Vec<String>>,
}

impl Output {
    /// Prints the rows, or with `--json` the API's JSON that `json` makes of the reply they
    /// come from (what scripts should read: typed numbers, enums by name).
    pub(crate) fn print_or(
        &self,
        format: Format,
        json: impl FnOnce() -> anyhow::Result<serde_json::Value>,
    ) -> anyhow::Result<()> {
        if format == Format::Json {
            println!("{}", json()?);
        } else {
            self.print(format);
        }
        Ok(())
    }

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
            let detected = Table::new().width();
            println!("{}", self.table(detected));
        }
    }

    /// The rows as a table for a terminal `width` columns wide (`None`: not a terminal, so as
    /// wide as the rows are). A terminal that says it is narrower than [`NARROWEST`] columns
    /// (0 under `docker exec -t` or `script`) is taken as [`FALLBACK_WIDTH`]: at its word, each
    /// column would get one character.
    fn table(&self, width: Option<u16>) -> Table {
        let mut table = Table::new();
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(self.headers.iter().map(|h| text::tr(h)).collect::<Vec<_>>());
        if let Some(w) = width {
            table.set_width(if w < NARROWEST { FALLBACK_WIDTH } else { w });
        }
        for row in &self.rows {
            table.add_row(row.clone());
        }
        table
    }
}

/// clap's parser of a vocabulary's codes: `--help` lists each with its name, and an unknown
/// value is refused with the valid ones listed. The empty value stays allowed, unlisted: it is
/// a flag's default, "not given".
pub(crate) fn codes<T: Copy>(
    all: &[T],
    code: fn(T) -> &'static str,
    label: fn(T) -> &'static str,
) -> clap::builder::PossibleValuesParser {
    use clap::builder::PossibleValue;
    clap::builder::PossibleValuesParser::new(
        std::iter::once(PossibleValue::new("").hide(true)).chain(
            all.iter()
                .map(|v| PossibleValue::new(code(*v)).help(label(*v))),
        ),
    )
}

/// The stages of a project as codes ([`codes`] for the projects service's own lifecycle).
pub(crate) fn stages() -> clap::builder::PossibleValuesParser {
    codes(
        &cwsm_projects::domain::Stage::ALL,
        |s| s.code(),
        |s| s.code(),
    )
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

/// A vocabulary word (by its proto number) as a table shows it: its code in English (what the
/// flags take), its name in Chinese.
pub(crate) fn name_of<T>(
    n: i32,
    from: fn(i32) -> Option<T>,
    code: fn(T) -> &'static str,
    name: fn(T, cwsm_platform::lang::Lang) -> &'static str,
) -> String {
    from(n)
        .map(|v| match text::lang() {
            cwsm_platform::lang::Lang::En => code(v).to_string(),
            cwsm_platform::lang::Lang::Zh => name(v, cwsm_platform::lang::Lang::Zh).to_string(),
        })
        .unwrap_or_default()
}

/// A vocabulary word (by its proto number) by its name in the run's language.
pub(crate) fn word<T>(
    n: i32,
    from: fn(i32) -> Option<T>,
    name: fn(T, cwsm_platform::lang::Lang) -> &'static str,
) -> String {
    from(n)
        .map(|v| name(v, text::lang()).to_string())
        .unwrap_or_default()
}

/// Fen as an amount in the run's language: "1,789.87 元" or "1,789.87 yuan".
pub(crate) fn money(fen: i64) -> String {
    let sign = if fen < 0 { "−" } else { "" };
    let abs = fen.unsigned_abs();
    let mut whole = (abs / 100).to_string();
    let mut at = whole.len();
    while at > 3 {
        at -= 3;
        whole.insert(at, ',');
    }
    format!(
        "{sign}{whole}.{:02} {}",
        abs % 100,
        text::pick("元", "yuan")
    )
}

pub(crate) fn yuan(fen: i64) -> String {
    format!("{:.2}", fen as f64 / 100.0)
}

/// A project stage by its name in the run's language (its code in English: what `projects
/// move` takes).
pub(crate) fn stage_name(n: i32) -> String {
    let code = ppb::ProjectStage::try_from(n)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("PROJECT_STAGE_")
                .to_lowercase()
        })
        .unwrap_or_default();
    match text::lang() {
        cwsm_platform::lang::Lang::En => code,
        cwsm_platform::lang::Lang::Zh => cwsm_projects::domain::Stage::from_code(&code)
            .map(|s| {
                s.milestone()
                    .name(cwsm_platform::lang::Lang::Zh)
                    .to_string()
            })
            .unwrap_or(code),
    }
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

    fn two_rows() -> Output {
        Output {
            headers: vec!["id", "title", "company", "stage"],
            rows: vec![
                vec![
                    "01a24263-288c-7053-b4fd-878893e6176d".into(),
                    "教学楼供水管网查漏修复".into(),
                    "常州清源节水科技有限公司".into(),
                    "operating".into(),
                ];
                2
            ],
        }
    }

    /// Issue 13: a terminal reporting 0 columns collapsed every column to one character.
    #[test]
    fn a_terminal_of_no_width_gets_a_readable_table() {
        let table = two_rows().table(Some(0)).to_string();
        for word in ["title", "company", "operating", "教学楼供水管网查漏修复"] {
            assert!(table.contains(word), "{word} broken up:\n{table}");
        }
        assert!(
            table
                .lines()
                .all(|l| l.chars().count() <= usize::from(FALLBACK_WIDTH))
        );
        // A real 80-column terminal: every line fits.
        let narrow = two_rows().table(Some(80)).to_string();
        assert!(narrow.lines().all(|l| unicode_columns(l) <= 80), "{narrow}");
    }

    /// Columns a line takes on a terminal (CJK characters take two).
    fn unicode_columns(line: &str) -> usize {
        line.chars()
            .map(|c| {
                if ('\u{2E80}'..='\u{9FFF}').contains(&c) {
                    2
                } else {
                    1
                }
            })
            .sum()
    }

    /// Issue 13: `--json` printed every value as a formatted string ("25.0%"); it is the API's
    /// JSON now: numbers as numbers, enums by name, the .proto's field names.
    #[test]
    fn json_is_the_apis_own_mapping() -> anyhow::Result<()> {
        let project = ppb::Project {
            id: "p1".into(),
            stage: ppb::ProjectStage::Operating as i32,
            investment_fen: 15_000_000,
            ..Default::default()
        };
        let json = api_json(&project)?;
        assert_eq!(json["id"], "p1");
        assert_eq!(json["stage"], "PROJECT_STAGE_OPERATING");
        assert_eq!(json["investment_fen"], 15_000_000);
        let list = api_json_list(&[project.clone(), project])?;
        assert_eq!(list.as_array().map(Vec::len), Some(2));
        Ok(())
    }

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
