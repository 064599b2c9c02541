//! `cwsm sign-in`: a person signs in with a login and password and gets an access token for
//! the other commands (`export CWSM_TOKEN=$(cwsm sign-in --login …)`). The password is read
//! from `CWSM_PASSWORD` or, when that is not set, from the first line of standard input, never
//! from the command line (where other users of the machine could read it).
//!
//! `cwsm api-keys create|list|revoke`: API keys of a machine client (a meter-data gateway),
//! which then runs any command with `CWSM_API_KEY` set ([`exchange`]).
//! `cwsm sign-in --provider NAME` signs in through an external OpenID Connect provider instead
//! (RFC 8252, a native app): it listens on a loopback port of its own, prints the provider's
//! address to open in a browser, and takes the code the browser brings back to
//! `http://127.0.0.1:PORT/callback` (the provider's settings must allow
//! `http://127.0.0.1/callback`).

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
    #[arg(
        long,
        required_unless_present = "provider",
        conflicts_with = "provider"
    )]
    pub login: Option<String>,
    /// Sign in through this external OpenID Connect provider (its name in the server's
    /// settings) in a browser, instead of with a password.
    #[arg(long)]
    pub provider: Option<String>,
    /// The organization to act for (its credit code), when you are a member of several.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub org: String,
    #[command(flatten)]
    pub conn: Connection,
}

pub async fn sign_in(args: SignInArgs) -> anyhow::Result<()> {
    let tokens = match (&args.login, &args.provider) {
        (_, Some(provider)) => external_sign_in(&args, provider).await?,
        (Some(login), None) => password_sign_in(&args, login).await?,
        (None, None) => anyhow::bail!("--login or --provider is required"),
    };
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

async fn password_sign_in(args: &SignInArgs, login: &str) -> anyhow::Result<apb::Tokens> {
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
            login: login.to_string(),
            password,
            credit_code: args.org.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .tokens
        .ok_or_else(|| anyhow::anyhow!("the accounts service answered no tokens"))?;
    Ok(tokens)
}

/// The loopback redirect's path.
const CALLBACK: &str = "/callback";

async fn external_sign_in(args: &SignInArgs, provider: &str) -> anyhow::Result<apb::Tokens> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("listening on a loopback port for the provider's redirect")?;
    let port = listener.local_addr()?.port();
    let redirect_uri = format!("http://127.0.0.1:{port}{CALLBACK}");
    let channel = super::channel(&args.conn).await?;
    let mut client = AccountsServiceClient::new(channel);
    let started = client
        .start_external_sign_in(apb::StartExternalSignInRequest {
            provider: provider.to_string(),
            redirect_uri: redirect_uri.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    eprintln!("在浏览器中打开此地址登录 / Open this address in a browser to sign in:");
    eprintln!("{}", started.authorization_url);
    // The sign-in lives ten minutes on the server; so does this wait.
    let (code, state) = tokio::time::timeout(
        std::time::Duration::from_secs(600),
        redirected(&listener, &started.state),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no sign-in came back within 10 minutes"))??;
    let tokens = client
        .complete_external_sign_in(apb::CompleteExternalSignInRequest {
            state,
            code,
            credit_code: args.org.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .tokens
        .ok_or_else(|| anyhow::anyhow!("the accounts service answered no tokens"))?;
    Ok(tokens)
}

/// Waits for the browser's request to the callback with this sign-in's state; answers it with
/// a page saying what happened. Other requests (a favicon) get 404.
async fn redirected(
    listener: &tokio::net::TcpListener,
    state: &str,
) -> anyhow::Result<(String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let (mut stream, _) = listener.accept().await?;
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        // The request line and headers, at most 16 KiB.
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&head);
        let target = head.split_whitespace().nth(1).unwrap_or("/");
        let url = url::Url::parse(&format!("http://127.0.0.1{target}"))?;
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        if url.path() != CALLBACK || param("state").as_deref() != Some(state) {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            continue;
        }
        let (page, outcome) = match (param("code"), param("error")) {
            (Some(code), _) => (
                "已返回 cwsm，可以关闭此窗口。/ Back in cwsm: you may close this window.",
                Ok((code, state.to_string())),
            ),
            (None, error) => (
                "登录未完成。/ The sign-in did not complete.",
                Err(anyhow::anyhow!(
                    "the provider answered {}: {}",
                    error.unwrap_or_else(|| "no code".into()),
                    param("error_description").unwrap_or_default()
                )),
            ),
        };
        let body =
            format!("<!doctype html><meta charset=\"utf-8\"><title>cwsm</title><p>{page}</p>");
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes()).await;
        return outcome;
    }
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
            every!(
                c.accounts(),
                list_api_keys,
                apb::ListApiKeysRequest {
                    credit_code: org.clone(),
                    ..Default::default()
                },
                keys
            )
            .await?
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
    .print(conn.format());
    Ok(())
}
