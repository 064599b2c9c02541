//! A real OpenID Connect provider for the tests: `tests/oidc/provider.mjs` (the certified npm
//! package `oidc-provider`) run with the machine's Node.js on a free loopback port, and a
//! person signing in at it in the headless browser ([`crate::web::Browser`]).
//!
//! Skipped (with a message) when `node` or `tests/oidc/node_modules` is missing, unless
//! `CWSM_REQUIRE_OIDC=1` (as `.ci/run` sets after `npm ci --prefix tests/oidc`): then it fails.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cwsm_platform::config::OidcProvider;

use crate::eventually;
use crate::web::{Browser, http, which};

pub const CLIENT_ID: &str = "cwsm-test";
pub const CLIENT_SECRET: &str = "cwsm-test-secret";

/// The provider process; killed when dropped.
pub struct IdentityProvider {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub issuer: String,
    /// The kid of the key it signs ID tokens with, new at every start.
    pub kid: String,
}

fn required() -> bool {
    std::env::var("CWSM_REQUIRE_OIDC").as_deref() == Ok("1")
}

impl IdentityProvider {
    /// Starts the provider and waits for its discovery document; `None` when it cannot run
    /// here and is not required.
    pub async fn start() -> anyhow::Result<Option<IdentityProvider>> {
        Self::start_on(0).await
    }

    /// The provider started again where this one was (same issuer), with a new signing key:
    /// a provider that rotated its key. This one is stopped first.
    pub async fn restart_with_a_new_key(self) -> anyhow::Result<IdentityProvider> {
        let port: u16 = self.addr().rsplit(':').next().unwrap_or_default().parse()?;
        drop(self);
        // The port is free again once the process is gone; retry briefly while it closes.
        let mut last = None;
        for _ in 0..50 {
            match Self::start_on(port).await {
                Ok(Some(idp)) => return Ok(idp),
                Ok(None) => anyhow::bail!("the OpenID provider cannot run here"),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("the provider did not start again")))
    }

    /// [`IdentityProvider::start`] on `port` (0: a free one).
    async fn start_on(port: u16) -> anyhow::Result<Option<IdentityProvider>> {
        let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc");
        let node = which("node");
        if node.is_none() || !folder.join("node_modules/oidc-provider").is_dir() {
            let why = "node or tests/oidc/node_modules missing: npm ci --prefix tests/oidc";
            if required() {
                anyhow::bail!("the OpenID provider is required (CWSM_REQUIRE_OIDC=1): {why}");
            }
            eprintln!("skipped the OpenID provider: {why} (CWSM_REQUIRE_OIDC=1 fails instead)");
            return Ok(None);
        }
        let mut child = Command::new(node.unwrap_or_default())
            .arg(folder.join("provider.mjs"))
            .current_dir(&folder)
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout from the provider"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the provider never blocks on a full pipe.
            for _ in lines {}
        });
        let line = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
            .await?
            .map_err(|_| anyhow::anyhow!("the OpenID provider printed no issuer within 30 s"))?;
        let printed: serde_json::Value = serde_json::from_str(&line)?;
        let field = |name: &str| {
            printed[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow::anyhow!("the provider printed {line:?}, without {name}"))
        };
        let provider = IdentityProvider {
            issuer: field("issuer")?,
            kid: field("kid")?,
            child,
        };
        let addr = provider.addr();
        let up = eventually(Duration::from_secs(20), || {
            let addr = addr.clone();
            async move {
                let reply = http(&addr, "GET", "/.well-known/openid-configuration", &[], None)
                    .await
                    .ok()?;
                (reply.status == 200).then_some(())
            }
        })
        .await;
        if up.is_none() {
            anyhow::bail!(
                "the OpenID provider at {} never served its discovery document",
                provider.issuer
            );
        }
        Ok(Some(provider))
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        self.issuer.trim_start_matches("http://").to_string()
    }

    /// The page the provider sends the browser back to (it only says "signed in").
    pub fn redirect_uri(&self) -> String {
        format!("{}/signed-in", self.issuer)
    }

    /// The server's settings for the provider's public native client (`cwsm sign-in
    /// --provider`: a loopback redirect on any port, no secret), named `name`.
    pub fn cli_settings(&self, name: &str) -> OidcProvider {
        OidcProvider {
            name: name.to_string(),
            issuer: self.issuer.clone(),
            client_id: "cwsm-cli".to_string(),
            client_secret: String::new(),
            redirect_uris: vec!["http://127.0.0.1/callback".to_string()],
        }
    }

    /// The server's settings for this provider, named `name`.
    pub fn settings(&self, name: &str) -> OidcProvider {
        OidcProvider {
            name: name.to_string(),
            issuer: self.issuer.clone(),
            client_id: CLIENT_ID.to_string(),
            client_secret: CLIENT_SECRET.to_string(),
            redirect_uris: vec![self.redirect_uri()],
        }
    }
}

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the provider sent the browser back with.
#[derive(Clone, Debug)]
pub struct Redirected {
    pub code: String,
    pub state: String,
    pub url: String,
}

/// A person signs in at the provider in `browser`: opens `authorization_url`, types `login`
/// and a password on the login page, confirms the consent page, and lands on `redirect_uri`;
/// returns the code and state of that address.
pub async fn sign_in_in_browser(
    browser: &Browser,
    authorization_url: &str,
    redirect_uri: &str,
    login: &str,
) -> anyhow::Result<Redirected> {
    browser.open(authorization_url).await?;
    // Which steps are done (a page may be read several times while it loads).
    let typed = &std::cell::Cell::new(false);
    let confirmed = &std::cell::Cell::new(false);
    let url = eventually(Duration::from_secs(30), || async move {
        let url = browser.current_url().await.ok()?;
        if url.starts_with(redirect_uri) {
            return Some(url);
        }
        if !typed.get()
            && let Some(field) = browser.find("input[name=login]").await
        {
            let password = browser.find("input[name=password]").await?;
            browser.type_into(&field, login).await.ok()?;
            browser
                .type_into(
                    &password,
                    "any password: these are the provider's test pages",
                )
                .await
                .ok()?;
            let button = browser.find("button[type=submit]").await?;
            browser.click(&button).await.ok()?;
            typed.set(true);
        } else if typed.get()
            && !confirmed.get()
            && url.contains("/interaction/")
            && browser.find("input[name=login]").await.is_none()
            && let Some(button) = browser.find("button[type=submit]").await
        {
            browser.click(&button).await.ok()?;
            confirmed.set(true);
        }
        None
    })
    .await;
    let Some(url) = url else {
        let at = browser.current_url().await.unwrap_or_default();
        let page = browser
            .eval("return document.body ? document.body.innerText.slice(0, 600) : '';")
            .await
            .unwrap_or_default();
        anyhow::bail!(
            "the browser never came back to {redirect_uri} (typed: {}, confirmed: {}); it is at {at}: {page}",
            typed.get(),
            confirmed.get()
        );
    };
    let parsed = url::Url::parse(&url)?;
    let get = |name: &str| {
        parsed
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Redirected {
        code: get("code"),
        state: get("state"),
        url,
    })
}
