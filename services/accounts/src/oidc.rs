//! OpenID Connect sign-in with an external provider (a government's or a company's single
//! sign-on): the authorization-code flow with PKCE (S256), as a confidential or public client.
//!
//! What is trusted, and why:
//! - the provider's endpoints come from its discovery document at
//!   `{issuer}/.well-known/openid-configuration`, whose `issuer` must be the configured one
//!   (OpenID Connect Discovery §4.3), fetched over the system's TLS roots;
//! - the ID token comes straight from the token endpoint (a back-channel call with the PKCE
//!   verifier, and the client secret when there is one), and is still verified in full: its
//!   signature with a key of the provider's JWKS (`jwks_uri`; cached, fetched again once when a
//!   token names a key not in it, so the provider may rotate), `iss`, `aud` (our client id; `azp`
//!   too when there are several audiences), `exp` and `iat` (60 s of clock skew) and the `nonce`
//!   this server made for the sign-in;
//! - only asymmetric algorithms are accepted (RS*, PS*, ES256/384, EdDSA): never `none`, never
//!   an HMAC whose key would be our client secret.
//!
//! Errors: a provider that does not answer or answers nonsense is UNAVAILABLE; a code or a token
//! that does not check out is UNAUTHENTICATED. Neither is INTERNAL.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cwsm_platform::config::OidcProvider;
use cwsm_platform::{Error, Result};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// How long a started sign-in may wait for its completion.
pub const SIGN_IN_TTL: Duration = Duration::from_secs(10 * 60);

/// Clock skew allowed on `exp` and `iat`.
const LEEWAY_SECS: u64 = 60;

/// An ID token issued further in the future than this (beyond the leeway) is refused.
const MAX_IAT_AHEAD_SECS: i64 = 60;

/// Longest authorization code accepted from a client (they are opaque; providers' are < 1 KiB).
pub const MAX_CODE_LEN: usize = 2048;

/// Longest redirect URI accepted.
pub const MAX_REDIRECT_URI_LEN: usize = 2048;

/// The algorithms an ID token may be signed with.
const ACCEPTED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The parts of the discovery document used here.
#[derive(Clone, Debug, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
}

/// What this server reads from a verified ID token.
#[derive(Clone, Debug, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(default)]
    pub azp: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// A boolean by the spec; some providers send the string "true".
    #[serde(default)]
    pub email_verified: Option<serde_json::Value>,
}

impl IdClaims {
    /// The e-mail the provider vouches for, if it does.
    pub fn verified_email(&self) -> Option<&str> {
        let verified = match &self.email_verified {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        };
        self.email.as_deref().filter(|_| verified)
    }
}

/// What the server keeps of a started sign-in, and what the browser is sent to.
#[derive(Clone, Debug)]
pub struct Started {
    pub authorization_url: String,
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
}

/// Why an ID token was refused, or that its key is not (yet) known.
#[derive(Debug)]
pub enum TokenCheck {
    /// The token names a key that is not in the set (fetch it again, once).
    UnknownKey(String),
    Refused(String),
}

/// A random value for `state`, `nonce` and the PKCE verifier: 32 bytes, base64url (43
/// characters, within RFC 7636's 43..128 for the verifier).
pub fn random_value() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(anyhow::anyhow!("no randomness: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The S256 code challenge of a verifier (RFC 7636 §4.2).
pub fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `asked` is one of the provider's `allowed` redirect URIs: equal, or — for an
/// allowed loopback URI without a port (`http://127.0.0.1/cb`) — the same with any port
/// (RFC 8252 §7.3, for native apps' loopback listeners).
pub fn redirect_allowed(allowed: &[String], asked: &str) -> bool {
    let Ok(asked_url) = url::Url::parse(asked) else {
        return false;
    };
    allowed.iter().any(|a| {
        if a == asked {
            return true;
        }
        let Ok(a) = url::Url::parse(a) else {
            return false;
        };
        let loopback = matches!(
            a.host_str(),
            Some("127.0.0.1") | Some("[::1]") | Some("localhost")
        );
        loopback
            && a.scheme() == "http"
            && a.port().is_none()
            && asked_url.scheme() == "http"
            && asked_url.host_str() == a.host_str()
            && asked_url.path() == a.path()
            && asked_url.query() == a.query()
            && asked_url.fragment().is_none()
            && asked_url.username().is_empty()
            && asked_url.password().is_none()
    })
}

/// Checks an ID token against a key set: signature, `iss`, `aud`/`azp`, `exp`, `iat` and the
/// nonce. `now_s` is the current time in seconds.
pub fn check_id_token(
    token: &str,
    jwks: &JwkSet,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now_s: i64,
) -> std::result::Result<IdClaims, TokenCheck> {
    let refused = |why: String| TokenCheck::Refused(why);
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| refused(format!("the ID token is malformed: {e}")))?;
    if !ACCEPTED.contains(&header.alg) {
        return Err(refused(format!(
            "the ID token is signed with {:?}, which is not accepted",
            header.alg
        )));
    }
    let jwk = match &header.kid {
        Some(kid) => jwks
            .find(kid)
            .ok_or_else(|| TokenCheck::UnknownKey(kid.clone()))?,
        // No kid: only unambiguous when the set has one key.
        None => match jwks.keys.as_slice() {
            [only] => only,
            _ => return Err(TokenCheck::UnknownKey(String::new())),
        },
    };
    if let Some(alg) = jwk.common.key_algorithm
        && alg.to_string() != format!("{:?}", header.alg)
    {
        return Err(refused(format!(
            "the ID token says {:?} but its key is for {alg}",
            header.alg
        )));
    }
    let key = DecodingKey::from_jwk(jwk)
        .map_err(|e| refused(format!("the provider's key cannot be used: {e}")))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.leeway = LEEWAY_SECS;
    let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .map_err(|e| refused(format!("the ID token does not check out: {e}")))?;
    let audiences = match &data.claims["aud"] {
        serde_json::Value::Array(a) => a.len(),
        _ => 1,
    };
    let claims: IdClaims = serde_json::from_value(data.claims)
        .map_err(|e| refused(format!("the ID token's claims are malformed: {e}")))?;
    if audiences > 1 && claims.azp.as_deref() != Some(client_id) {
        return Err(refused(
            "the ID token has several audiences and is not authorized for us (azp)".into(),
        ));
    }
    match claims.iat {
        None => return Err(refused("the ID token has no iat".into())),
        Some(iat) if iat > now_s.saturating_add(MAX_IAT_AHEAD_SECS) => {
            return Err(refused("the ID token is issued in the future (iat)".into()));
        }
        Some(_) => {}
    }
    if claims.nonce.as_deref() != Some(nonce) {
        return Err(refused(
            "the ID token's nonce is not this sign-in's: start the sign-in again".into(),
        ));
    }
    if claims.sub.is_empty() || claims.sub.len() > 255 {
        return Err(refused(
            "the ID token's subject is empty or too long".into(),
        ));
    }
    Ok(claims)
}

/// Reads a JWKS document, keeping the keys this library can use (a provider may publish
/// encryption keys or types it does not know; those are skipped, not fatal).
pub fn parse_jwks(body: &serde_json::Value) -> JwkSet {
    let keys = body["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter(|k| k["use"].as_str().is_none_or(|u| u == "sig"))
                .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
                .filter(|k| DecodingKey::from_jwk(k).is_ok())
                .collect()
        })
        .unwrap_or_default();
    JwkSet { keys }
}

/// One configured provider, with its discovery document and key set as last fetched.
pub struct Provider {
    pub config: OidcProvider,
    http: reqwest::Client,
    discovery: tokio::sync::Mutex<Option<(Discovery, std::time::Instant)>>,
    jwks: RwLock<JwkSet>,
}

/// How long a discovery document is used before it is fetched again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

impl Provider {
    fn unavailable(&self, what: &str, e: impl std::fmt::Display) -> Error {
        tracing::warn!(provider = %self.config.name, error = %e, "{what}");
        Error::Unavailable(format!(
            "identity provider {:?} could not be reached or answered badly ({what}): try again later",
            self.config.name
        ))
    }

    async fn get_json(&self, url: &str, what: &str) -> Result<serde_json::Value> {
        let reply = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.unavailable(what, e))?;
        if !reply.status().is_success() {
            return Err(self.unavailable(what, format!("HTTP {}", reply.status())));
        }
        reply
            .json::<serde_json::Value>()
            .await
            .map_err(|e| self.unavailable(what, e))
    }

    /// The discovery document, fetched at most once an hour.
    pub async fn discovery(&self) -> Result<Discovery> {
        let mut cached = self.discovery.lock().await;
        if let Some((d, at)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(d.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let body = self.get_json(&url, "discovery").await?;
        let d: Discovery =
            serde_json::from_value(body).map_err(|e| self.unavailable("discovery", e))?;
        if d.issuer != self.config.issuer {
            return Err(self.unavailable(
                "discovery",
                format!(
                    "the document names issuer {:?}, not {:?}",
                    d.issuer, self.config.issuer
                ),
            ));
        }
        if let Some(methods) = &d.code_challenge_methods_supported
            && !methods.iter().any(|m| m == "S256")
        {
            return Err(self.unavailable("discovery", "the provider does not support PKCE S256"));
        }
        *cached = Some((d.clone(), std::time::Instant::now()));
        Ok(d)
    }

    async fn fetch_jwks(&self, jwks_uri: &str) -> Result<()> {
        let body = self.get_json(jwks_uri, "key set").await?;
        *self.jwks.write().unwrap_or_else(|e| e.into_inner()) = parse_jwks(&body);
        Ok(())
    }

    /// Where to send the person, for a sign-in with these values.
    pub async fn start(&self, redirect_uri: &str) -> Result<Started> {
        let d = self.discovery().await?;
        let (state, nonce, code_verifier) = (random_value()?, random_value()?, random_value()?);
        let mut url = url::Url::parse(&d.authorization_endpoint)
            .map_err(|e| self.unavailable("discovery: authorization_endpoint", e))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "openid email")
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &code_challenge(&code_verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(Started {
            authorization_url: url.into(),
            state,
            nonce,
            code_verifier,
        })
    }

    /// Exchanges `code` at the token endpoint and verifies the ID token it answers with.
    pub async fn complete(
        &self,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
        nonce: &str,
    ) -> Result<IdClaims> {
        let d = self.discovery().await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ];
        let mut request = self.http.post(&d.token_endpoint);
        if self.config.client_secret.is_empty() {
            form.push(("client_id", &self.config.client_id));
        } else {
            // client_secret_basic (RFC 6749 §2.3.1: both parts form-urlencoded first).
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
            let (id, secret): (String, String) =
                (enc(&self.config.client_id), enc(&self.config.client_secret));
            request = request.basic_auth(id, Some(secret));
        }
        let reply = request
            .form(&form)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.unavailable("token endpoint", e))?;
        let status = reply.status();
        let body: serde_json::Value = reply
            .json()
            .await
            .map_err(|e| self.unavailable("token endpoint", e))?;
        if status == reqwest::StatusCode::BAD_REQUEST {
            // invalid_grant (a wrong, used or expired code, a wrong verifier), invalid_request:
            // the client's to fix by signing in again.
            let error = body["error"].as_str().unwrap_or("error");
            let description = body["error_description"].as_str().unwrap_or("");
            let description: String = description.chars().take(200).collect();
            return Err(Error::Unauthenticated(format!(
                "the identity provider refused the authorization code ({error}: {description}): start the sign-in again"
            )));
        }
        if !status.is_success() {
            // 401 invalid_client is our registration's fault, 5xx the provider's: neither is
            // the person's to fix, and an operator reads the log.
            return Err(self.unavailable("token endpoint", format!("HTTP {status}: {body}")));
        }
        let Some(id_token) = body["id_token"].as_str() else {
            return Err(self.unavailable("token endpoint", "no id_token in the answer"));
        };
        self.verify(id_token, &d.jwks_uri, nonce).await
    }

    /// Verifies an ID token with the provider's keys, fetching them again once when it names
    /// a key not in the set as last fetched.
    pub async fn verify(&self, id_token: &str, jwks_uri: &str, nonce: &str) -> Result<IdClaims> {
        let mut fetched = false;
        if self
            .jwks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys
            .is_empty()
        {
            self.fetch_jwks(jwks_uri).await?;
            fetched = true;
        }
        loop {
            let checked = {
                let jwks = self.jwks.read().unwrap_or_else(|e| e.into_inner());
                check_id_token(
                    id_token,
                    &jwks,
                    &self.config.issuer,
                    &self.config.client_id,
                    nonce,
                    cwsm_platform::now_ms() / 1000,
                )
            };
            match checked {
                Ok(claims) => return Ok(claims),
                Err(TokenCheck::UnknownKey(kid)) if !fetched => {
                    tracing::info!(provider = %self.config.name, kid, "unknown key: fetching the provider's keys again");
                    self.fetch_jwks(jwks_uri).await?;
                    fetched = true;
                }
                Err(TokenCheck::UnknownKey(kid)) => {
                    return Err(Error::Unauthenticated(format!(
                        "the ID token is signed with a key the provider does not publish ({kid:?})"
                    )));
                }
                Err(TokenCheck::Refused(why)) => return Err(Error::Unauthenticated(why)),
            }
        }
    }
}

/// The configured providers, by name.
#[derive(Clone, Default)]
pub struct Providers {
    by_name: HashMap<String, Arc<Provider>>,
}

/// The HTTP client for providers: rustls on ring with the system's roots, short timeouts, no
/// redirects followed (the token endpoint's answer is taken from where discovery said).
fn http_client() -> anyhow::Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        // A system certificate rustls cannot parse is skipped, as tonic and sqlx do.
        let _ = roots.add(cert);
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("cwsm-accounts/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

impl Providers {
    /// Checks the configuration (nothing is fetched yet: a provider that is down must not stop
    /// the service from starting).
    pub fn new(configs: &[OidcProvider]) -> anyhow::Result<Providers> {
        if configs.is_empty() {
            return Ok(Providers::default());
        }
        let http = http_client()?;
        let mut by_name = HashMap::new();
        for c in configs {
            anyhow::ensure!(
                !c.name.trim().is_empty() && c.name.len() <= 64,
                "an OpenID provider needs a name (at most 64 characters)"
            );
            let issuer = url::Url::parse(&c.issuer)
                .map_err(|e| anyhow::anyhow!("OpenID provider {}: issuer: {e}", c.name))?;
            anyhow::ensure!(
                issuer.scheme() == "https"
                    || matches!(issuer.host_str(), Some("127.0.0.1" | "[::1]" | "localhost")),
                "OpenID provider {}: the issuer must be https (http only on the loopback, for tests)",
                c.name
            );
            anyhow::ensure!(
                !c.client_id.is_empty(),
                "OpenID provider {}: client_id is required",
                c.name
            );
            anyhow::ensure!(
                !c.redirect_uris.is_empty(),
                "OpenID provider {}: at least one redirect URI is required",
                c.name
            );
            for r in &c.redirect_uris {
                url::Url::parse(r).map_err(|e| {
                    anyhow::anyhow!("OpenID provider {}: redirect URI {r:?}: {e}", c.name)
                })?;
            }
            let provider = Provider {
                config: c.clone(),
                http: http.clone(),
                discovery: tokio::sync::Mutex::new(None),
                jwks: RwLock::new(JwkSet { keys: Vec::new() }),
            };
            anyhow::ensure!(
                by_name.insert(c.name.clone(), Arc::new(provider)).is_none(),
                "two OpenID providers are named {}",
                c.name
            );
        }
        Ok(Providers { by_name })
    }

    /// The provider named `name`, or INVALID_ARGUMENT on `field` naming the configured ones.
    pub fn get(&self, field: &str, name: &str) -> Result<Arc<Provider>> {
        self.by_name.get(name).cloned().ok_or_else(|| {
            let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
            names.sort_unstable();
            Error::invalid(
                field,
                if names.is_empty() {
                    "no external identity provider is configured here".to_string()
                } else {
                    format!("unknown provider; configured: {}", names.join(", "))
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::StoredKey;

    const ISSUER: &str = "https://sso.example.gov.cn";
    const CLIENT: &str = "cwsm";
    const NONCE: &str = "n-0S6_WzA2Mj";

    fn now() -> i64 {
        cwsm_platform::now_ms() / 1000
    }

    /// A provider key made here (Ed25519: the same checks as RS256, without an RSA key
    /// generator among the dependencies; the real provider's RS256 is tested end to end).
    fn key() -> (StoredKey, JwkSet) {
        let key = StoredKey::generate(0, 0).expect("key");
        let set = JwkSet {
            keys: vec![key.jwk()],
        };
        (key, set)
    }

    fn sign(key: &StoredKey, claims: serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &key.encoding_key().expect("key")).expect("sign")
    }

    fn claims() -> serde_json::Value {
        serde_json::json!({
            "iss": ISSUER, "aud": CLIENT, "sub": "person-1", "nonce": NONCE,
            "iat": now(), "exp": now() + 300,
            "email": "li.wei@example.cn", "email_verified": true,
        })
    }

    fn check(token: &str, set: &JwkSet) -> std::result::Result<IdClaims, String> {
        check_id_token(token, set, ISSUER, CLIENT, NONCE, now()).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn a_good_id_token_is_accepted_with_its_verified_email() {
        let (key, set) = key();
        let c = check(&sign(&key, claims()), &set).expect("accepted");
        assert_eq!(c.sub, "person-1");
        assert_eq!(c.verified_email(), Some("li.wei@example.cn"));
        let mut unverified = claims();
        unverified["email_verified"] = serde_json::json!(false);
        let c = check(&sign(&key, unverified), &set).expect("accepted");
        assert_eq!(c.verified_email(), None);
    }

    #[test]
    fn each_claim_is_checked() {
        let (key, set) = key();
        let with = |name: &str, value: serde_json::Value| {
            let mut c = claims();
            c[name] = value;
            check(&sign(&key, c), &set)
        };
        for (name, value, why) in [
            ("iss", serde_json::json!("https://evil.example"), "iss"),
            ("aud", serde_json::json!("another-client"), "aud"),
            // Expired 2 minutes ago: beyond the 60 s leeway.
            ("exp", serde_json::json!(now() - 120), "exp"),
            ("nonce", serde_json::json!("a-replayed-nonce"), "nonce"),
            ("iat", serde_json::json!(now() + 3600), "iat"),
        ] {
            let answer = with(name, value);
            assert!(answer.is_err(), "{why}: a wrong {name} is refused");
        }
        let mut no_nonce = claims();
        no_nonce.as_object_mut().map(|o| o.remove("nonce"));
        assert!(check(&sign(&key, no_nonce), &set).is_err(), "no nonce");
        let mut no_iat = claims();
        no_iat.as_object_mut().map(|o| o.remove("iat"));
        assert!(check(&sign(&key, no_iat), &set).is_err(), "no iat");
        // Several audiences: only with azp naming us.
        assert!(with("aud", serde_json::json!([CLIENT, "other"])).is_err());
        let mut azp = claims();
        azp["aud"] = serde_json::json!([CLIENT, "other"]);
        azp["azp"] = serde_json::json!(CLIENT);
        assert!(check(&sign(&key, azp), &set).is_ok());
    }

    #[test]
    fn a_tampered_or_foreign_token_is_refused() {
        let (key, set) = key();
        let token = sign(&key, claims());
        // Another subject pasted into the payload: the signature no longer matches.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut payload = claims();
        payload["sub"] = serde_json::json!("admin");
        parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
        assert!(matches!(
            check_id_token(&parts.join("."), &set, ISSUER, CLIENT, NONCE, now()),
            Err(TokenCheck::Refused(_))
        ));
        // Signed by a key the provider does not publish under this kid: refused.
        let (other, _) = self::key();
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        let forged = jsonwebtoken::encode(&header, &claims(), &other.encoding_key().expect("k"))
            .expect("sign");
        assert!(matches!(
            check_id_token(&forged, &set, ISSUER, CLIENT, NONCE, now()),
            Err(TokenCheck::Refused(_))
        ));
        // A kid not in the set: fetch the set again (the provider may have rotated).
        assert!(matches!(
            check_id_token(&sign(&other, claims()), &set, ISSUER, CLIENT, NONCE, now()),
            Err(TokenCheck::UnknownKey(_))
        ));
    }

    #[test]
    fn hmac_and_none_are_never_accepted() {
        let (_, set) = key();
        // HS256 "signed" with the client id as key: an attacker's trick against clients that
        // pick the algorithm from the token.
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims(),
            &jsonwebtoken::EncodingKey::from_secret(CLIENT.as_bytes()).expect("key"),
        )
        .expect("sign");
        assert!(matches!(
            check_id_token(&hs, &set, ISSUER, CLIENT, NONCE, now()),
            Err(TokenCheck::Refused(_))
        ));
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        assert!(check_id_token(&none, &set, ISSUER, CLIENT, NONCE, now()).is_err());
    }

    #[test]
    fn pkce_s256_is_the_rfc_7636_example() {
        // RFC 7636 Appendix B.
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn redirect_uris_match_exactly_or_on_the_loopback_with_any_port() {
        let allowed = vec![
            "https://cwsm.example.cn/signed-in".to_string(),
            "http://127.0.0.1/callback".to_string(),
        ];
        assert!(redirect_allowed(
            &allowed,
            "https://cwsm.example.cn/signed-in"
        ));
        assert!(!redirect_allowed(
            &allowed,
            "https://cwsm.example.cn/signed-in/../evil"
        ));
        assert!(!redirect_allowed(
            &allowed,
            "https://evil.example/signed-in"
        ));
        assert!(redirect_allowed(
            &allowed,
            "http://127.0.0.1:49152/callback"
        ));
        assert!(!redirect_allowed(&allowed, "http://127.0.0.1:49152/other"));
        assert!(!redirect_allowed(
            &allowed,
            "http://127.0.0.2:49152/callback"
        ));
        assert!(!redirect_allowed(&allowed, "not a url"));
    }

    #[test]
    fn a_key_set_keeps_the_signing_keys_it_can_read() {
        let (key, _) = key();
        let mut good = serde_json::to_value(key.jwk()).expect("jwk");
        good["use"] = serde_json::json!("sig");
        let body = serde_json::json!({"keys": [
            good,
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB", "kid": "enc"},
            {"kty": "unknown-type", "kid": "odd"},
        ]});
        let set = parse_jwks(&body);
        assert_eq!(set.keys.len(), 1);
        assert!(set.find(&key.kid).is_some());
    }
}
