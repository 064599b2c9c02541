//! `cwsm sign-in`: a person signs in with a login and password and gets an access token for
//! the other commands (`export CWSM_TOKEN=$(cwsm sign-in --login …)`). The password is read
//! from `CWSM_PASSWORD` or, when that is not set, from the first line of standard input, never
//! from the command line (where other users of the machine could read it).

use std::io::BufRead;

use anyhow::Context;
use clap::Args;
use cwsm_proto::accounts::v1 as apb;
use cwsm_proto::accounts::v1::accounts_service_client::AccountsServiceClient;

use super::Connection;

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
