//! `cwsm`: run the contract water-saving marketplace, and talk to it.
//!
//! `cwsm serve` runs all three services on one port with SQLite files and an in-process bus;
//! `cwsm serve matching --database-url postgres://… --redis-url redis://…` runs one service in
//! production. Every other command is a client of a running server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cwsm::app::{self, Services};
use cwsm_platform::auth::Role;
use cwsm_platform::config::Settings;
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "cwsm",
    version,
    about = "Contract water-saving marketplace (合同节水管理)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the services (all three by default, on SQLite and an in-process bus).
    Serve(ServeArgs),
    /// Signing tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Client commands against a running server.
    #[command(flatten)]
    Client(cwsm::cli::ClientCommand),
}

#[derive(clap::Args, Serialize)]
struct ServeArgs {
    /// Which service to run: matching, projects, reporting, accounts, or all.
    #[arg(default_value = "all")]
    #[serde(skip)]
    service: String,
    /// Settings file (TOML); also CWSM_CONFIG.
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:50051].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    /// Folder for SQLite files and the signing key [default: ./cwsm-data].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// sqlite://… or postgres://… [default: one SQLite file per service in the data folder].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    /// redis://… for Redis Streams [default: in-process bus].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    redis_url: Option<String>,
    /// human or json.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<String>,
    /// Also load a small demo marketplace (companies, water users, requests, projects).
    #[arg(long)]
    #[serde(skip)]
    demo: bool,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a bearer token signed with the server's key.
    Issue {
        /// company, water_user, admin or verifier. An operator's admin token administers the
        /// whole platform, every jurisdiction (a district office's people sign in instead:
        /// theirs reach their own jurisdiction only).
        #[arg(long)]
        role: String,
        /// The unified social credit code of the organization (companies and water users).
        #[arg(long)]
        org: Option<String>,
        /// Who the token is for, for the audit trail and request ids (default: this machine's
        /// user and host, e.g. li@office-pc).
        #[arg(long)]
        subject: Option<String>,
        /// Days the token stays valid (at most 366).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=366))]
        days: u64,
        /// Data folder holding the signing key (embedded mode).
        #[arg(long, env = "CWSM_DATA_DIR", default_value = "cwsm-data")]
        data_dir: PathBuf,
        /// Create the signing key when the data folder has none (else that is an error).
        #[arg(long)]
        init: bool,
        /// The server whose accounts service must know `--org` (registered, approved, of the
        /// kind whose members act in `--role`).
        #[arg(long, env = "CWSM_SERVER", default_value = "http://127.0.0.1:50051")]
        server: String,
        /// Sign for `--org` without asking the accounts service (bootstrapping a server that
        /// has no organizations yet).
        #[arg(long)]
        unregistered: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Token { command } => token(command).await,
            Command::Client(command) => cwsm::cli::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cwsm::cli::explain(&e));
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let services = Services::only(&args.service)?;
    let settings = Settings::load(args.config.as_deref(), &args)?;
    let name = if services == Services::ALL {
        "cwsm".to_string()
    } else {
        format!("cwsm-{}", args.service)
    };
    let _telemetry = cwsm_platform::telemetry::init(&name, settings.log_format, &settings.log)?;
    let keys = app::keys_for(&settings)?;
    let bus = app::bus_for(&settings).await?;
    let shutdown = cwsm_platform::server::shutdown_on_signals();
    let running = app::start(&settings, services, bus.clone(), keys.clone(), shutdown).await?;
    let url = format!("http://{}", running.addr);

    println!(
        "cwsm is serving {} on {url}",
        if services == Services::ALL {
            "matching, projects, reporting and accounts".to_string()
        } else {
            args.service.clone()
        }
    );
    for (service, db) in &running.databases {
        let url = settings.database_url_for(service);
        println!(
            "  {service:<9} {} {}",
            db.engine(),
            cwsm_platform::db::redact(&url)
        );
    }
    println!("  events    {}", bus.describe());
    if services.reporting {
        println!("  dashboard {url}/dashboard?token=$(cwsm token issue --role admin)");
    }
    if settings.jwt_secret.is_none() {
        println!(
            "  tokens    signed with {}",
            settings
                .data_dir
                .join(cwsm_platform::auth::KEY_FILE)
                .display()
        );
    }
    if args.demo {
        let channel = tonic::transport::Channel::from_shared(url.clone())?
            .connect()
            .await?;
        let summary = cwsm::demo::load(channel, &keys).await?;
        println!("  demo      {summary}");
    }
    println!("Next:");
    println!("  cwsm report                          # the action plan's indicators");
    println!("  cwsm offerings list                  # what service companies offer");
    println!(
        "  cwsm token issue --role admin        # a token for grpcurl: -H \"authorization: Bearer …\""
    );
    println!("  grpcurl -plaintext {} list", running.addr);
    println!("Ctrl-C stops.");
    running.wait().await
}

async fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Issue {
            role,
            org,
            subject,
            days,
            data_dir,
            init,
            server,
            unregistered,
        } => {
            // Only the roles people act in: `service` is for the services themselves.
            let role = Role::parse(&role)
                .filter(|r| *r != Role::Service)
                .ok_or_else(|| {
                    anyhow::anyhow!("unknown role {role:?}: company, water_user, admin or verifier")
                })?;
            if let Some(org) = &org {
                cwsm_platform::credit_code::check("--org", org)?;
            }
            let keys = match std::env::var("CWSM_JWT_SECRET") {
                Ok(secret) if !secret.is_empty() => {
                    cwsm_platform::auth::Keys::from_secret(secret.as_bytes())?
                }
                _ if init => cwsm_platform::auth::Keys::load_or_create(&data_dir)?,
                _ => cwsm_platform::auth::Keys::load(&data_dir)?,
            };
            let subject = subject.unwrap_or_else(cwsm_platform::auth::local_subject);
            let lifetime = days
                .checked_mul(86_400)
                .map(Duration::from_secs)
                .ok_or_else(|| anyhow::anyhow!("--days {days} is too many"))?;
            if let Some(org) = &org
                && !unregistered
            {
                registered_in_role(&server, &keys, org, role).await?;
            }
            let token = keys.issue(&subject, role, org.as_deref(), lifetime)?;
            println!("{token}");
            Ok(())
        }
    }
}

/// Checks with the accounts service at `server` (as an administrator, with a token of the same
/// key) that organization `code` is registered, approved, and of the kind whose members act in
/// `role`: an operator's token may not invent an organization or give it another role.
async fn registered_in_role(
    server: &str,
    keys: &cwsm_platform::auth::Keys,
    code: &str,
    role: Role,
) -> anyhow::Result<()> {
    use cwsm_proto::accounts::v1 as apb;
    let unreachable = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "cannot reach the accounts service at {server} to check --org {code} ({e}); is `cwsm serve` running (--server)? \
             --unregistered signs without the check"
        )
    };
    let channel = cwsm_platform::server::client_endpoint(server, &Default::default())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| unreachable(&e))?;
    let admin = keys.issue(
        &cwsm_platform::auth::local_subject(),
        Role::Admin,
        None,
        Duration::from_secs(300),
    )?;
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {admin}").parse()?;
    let mut request = tonic::Request::new(apb::GetOrganizationRequest {
        credit_code: code.to_string(),
    });
    request.metadata_mut().insert("authorization", bearer);
    let org = match apb::accounts_service_client::AccountsServiceClient::new(channel)
        .get_organization(request)
        .await
    {
        Ok(reply) => reply.into_inner().organization.unwrap_or_default(),
        Err(s) if s.code() == tonic::Code::NotFound => anyhow::bail!(
            "organization {code} is not registered in the accounts service at {server}: register it \
             (RegisterOrganization) and have it approved, or pass --unregistered"
        ),
        Err(s) if s.code() == tonic::Code::Unavailable => return Err(unreachable(&s.message())),
        Err(s) => anyhow::bail!("the accounts service at {server}: {}", s.message()),
    };
    let acts_as = match apb::OrganizationKind::try_from(org.kind) {
        Ok(apb::OrganizationKind::Company) => Role::Company,
        Ok(apb::OrganizationKind::WaterUser) => Role::WaterUser,
        Ok(apb::OrganizationKind::Verifier) => Role::Verifier,
        Ok(apb::OrganizationKind::DistrictOffice) => Role::Admin,
        _ => anyhow::bail!("organization {code} has no kind the accounts service knows"),
    };
    if acts_as != role {
        anyhow::bail!(
            "organization {code} ({}) is a {}: its members act as {acts_as}, not {role}",
            org.name,
            apb::OrganizationKind::try_from(org.kind)
                .map(|k| k.as_str_name())
                .unwrap_or("?")
        );
    }
    if org.status != apb::OrganizationStatus::Approved as i32 {
        anyhow::bail!(
            "organization {code} ({}) is {}: an administrator approves it first",
            org.name,
            apb::OrganizationStatus::try_from(org.status)
                .map(|s| s.as_str_name())
                .unwrap_or("?")
        );
    }
    Ok(())
}
