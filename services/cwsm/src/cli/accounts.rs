//! `cwsm sign-in`: a person signs in with a login and password and gets an access token for
//! the other commands (`export CWSM_TOKEN=$(cwsm sign-in --login …)`). The password is read
//! from `CWSM_PASSWORD` or, when that is not set, from the first line of standard input, never
//! from the command line (where other users of the machine could read it).
//!
//! `cwsm api-keys create|list|revoke`: API keys of a machine client (a meter-data gateway),
//! which then runs any command with `CWSM_API_KEY` set ([`exchange`]).

use std::io::BufRead;

use anyhow::Context;
use clap::{Args, Subcommand};
use cwsm_proto::accounts::v1 as apb;
use cwsm_proto::accounts::v1::accounts_service_client::AccountsServiceClient;
use tonic::transport::Channel;

use super::{Clients, Connection, Output, cst, request_id};

#[derive(Args)]
pub struct SignInArgs {
    /// Your login: an e-mail address or a phone number.
    #[arg(long)]
    pub login: String,
    /// The organization to act for (its credit code), when you are a member of several.
    #[arg(long, default_value = "")]
    pub org: String,
    #[command(flatten)]
    pub conn: Connection,
}

pub async fn sign_in(args: SignInArgs) -> anyhow::Result<()> {
    let password = match std::env::var("CWSM_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    let channel = super::channel(&args.conn).await?;
    let tokens = AccountsServiceClient::new(channel)
        .sign_in(apb::SignInRequest {
            login: args.login.clone(),
            password,
            credit_code: args.org.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .tokens
        .ok_or_else(|| anyhow::anyhow!("the accounts service answered no tokens"))?;
    if args.conn.json {
        println!(
            "{}",
            serde_json::json!({
                "access_token": tokens.access_token,
                "refresh_token": tokens.refresh_token,
            })
        );
    } else {
        println!("{}", tokens.access_token);
    }
    Ok(())
}

/// An access token for `api_key`, from the accounts service on `channel`.
pub(crate) async fn exchange(channel: &Channel, api_key: &str) -> anyhow::Result<String> {
    let exchanged = AccountsServiceClient::new(channel.clone())
        .exchange_api_key(apb::ExchangeApiKeyRequest {
            api_key: api_key.to_string(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("exchanging the API key: {}", s.message()))?
        .into_inner();
    Ok(exchanged.access_token)
}

#[derive(Args)]
pub struct ApiKeysArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: ApiKeysCommand,
}

#[derive(Subcommand)]
pub enum ApiKeysCommand {
    /// Create an API key for your organization (a member's token, or an administrator's);
    /// prints the key once: keep it in the gateway's CWSM_API_KEY.
    Create {
        /// The organization's credit code.
        #[arg(long)]
        org: String,
        /// What the key is for, e.g. "meter gateway, pump house 2".
        #[arg(long)]
        name: String,
        /// Days it stays valid (1..366).
        #[arg(long, default_value_t = 90)]
        valid_days: i32,
    },
    /// List an organization's API keys (never their secrets).
    List {
        #[arg(long)]
        org: String,
    },
    /// Revoke an API key by its id: its access tokens stop within a minute.
    Revoke { id: String },
}

fn key_row(k: &apb::ApiKey) -> Vec<String> {
    use cwsm_platform::grpc::millis;
    vec![
        k.id.clone(),
        k.name.clone(),
        k.credit_code.clone(),
        apb::Role::try_from(k.role)
            .map(|r| r.as_str_name().trim_start_matches("ROLE_").to_lowercase())
            .unwrap_or_default(),
        cst(k.created_at.as_ref().map(millis)),
        cst(k.expires_at.as_ref().map(millis)),
        cst(k.revoked_at.as_ref().map(millis)),
        cst(k.last_used_at.as_ref().map(millis)),
    ]
}

const KEY_HEADERS: [&str; 8] = [
    "id",
    "name",
    "credit_code",
    "role",
    "created_at",
    "expires_at",
    "revoked_at",
    "last_used_at",
];

pub async fn api_keys(args: ApiKeysArgs) -> anyhow::Result<()> {
    let ApiKeysArgs { conn, command } = args;
    let c = Clients::connect(&conn).await?;
    let mut accounts = c.accounts();
    let keys = match command {
        ApiKeysCommand::Create {
            org,
            name,
            valid_days,
        } => {
            let made = accounts
                .create_api_key(apb::CreateApiKeyRequest {
                    credit_code: org,
                    name,
                    valid_days,
                    request_id: request_id(),
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner();
            let key = made.key.unwrap_or_default();
            if conn.json {
                println!(
                    "{}",
                    serde_json::json!({ "id": key.id, "api_key": made.api_key })
                );
            } else {
                println!("{}", made.api_key);
                eprintln!(
                    "API key {} for {} (expires {} CST): shown this once; set it as CWSM_API_KEY \
                     on the gateway.",
                    key.id,
                    key.credit_code,
                    cst(key.expires_at.as_ref().map(cwsm_platform::grpc::millis))
                );
            }
            return Ok(());
        }
        ApiKeysCommand::List { org } => {
            let mut keys = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = accounts
                    .list_api_keys(apb::ListApiKeysRequest {
                        credit_code: org.clone(),
                        page_size: 500,
                        page_token,
                    })
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                    .into_inner();
                keys.extend(page.keys);
                if page.next_page_token.is_empty() {
                    break keys;
                }
                page_token = page.next_page_token;
            }
        }
        ApiKeysCommand::Revoke { id } => vec![
            accounts
                .revoke_api_key(apb::RevokeApiKeyRequest { id })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner()
                .key
                .unwrap_or_default(),
        ],
    };
    Output {
        headers: KEY_HEADERS.to_vec(),
        rows: keys.iter().map(key_row).collect(),
    }
    .print(conn.json);
    Ok(())
}
