//! Who is calling: every RPC (but health and reflection) runs as a [`Principal`] taken from a
//! bearer token, a JWT signed with HS256.
//!
//! Organizations are named by their unified social credit code (统一社会信用代码), the identifier
//! every Chinese company, school and agency already has; a token's `org` is that code. So a
//! company may edit the company record whose credit code is its own, and nobody else's.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::{Request, Status};

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A water-saving service company (节水服务企业).
    Company,
    /// A water user (用水单位): a university, a factory, an agency …
    WaterUser,
    /// The district water office or a department.
    Admin,
    /// An independent third party who checks measured savings.
    Verifier,
    /// Another cwsm service calling on its own behalf.
    Service,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Company => "company",
            Role::WaterUser => "water_user",
            Role::Admin => "admin",
            Role::Verifier => "verifier",
            Role::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "company" | "service_company" => Role::Company,
            "water_user" | "user" => Role::WaterUser,
            "admin" | "administrator" => Role::Admin,
            "verifier" => Role::Verifier,
            "service" => Role::Service,
            _ => return None,
        })
    }

    /// Roles that act for an organization and must name it (a verifier names its verifier
    /// body: projects are assigned to the body, not to whoever holds a verifier token).
    pub fn needs_org(self) -> bool {
        matches!(self, Role::Company | Role::WaterUser | Role::Verifier)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The caller of an RPC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Who, for the audit trail (a person's or a system's name).
    pub subject: String,
    pub role: Role,
    /// The unified social credit code of the organization acted for (companies, water users,
    /// verifier bodies).
    pub org: Option<String>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether this caller acts for the organization with `credit_code` in `role`, the role
    /// that organization has on the platform (a company record is the company's, a water user's
    /// record the water user's), or is an administrator. The one rule for "may act for": a
    /// token whose org is right but whose role is not (a verifier token naming a company) acts
    /// for nobody.
    pub fn acts_as(&self, role: Role, credit_code: &str) -> bool {
        self.is_admin() || self.is(role, credit_code)
    }

    /// Whether this caller is exactly `role` for `credit_code` (administrators are not).
    pub fn is(&self, role: Role, credit_code: &str) -> bool {
        self.role == role && !credit_code.is_empty() && self.org.as_deref() == Some(credit_code)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    org: Option<String>,
    iat: i64,
    exp: i64,
    iss: String,
}

const ISSUER: &str = "cwsm";

/// The signing key, and what signs and checks tokens with it.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// The longest a token may live: an operator's token is renewed, not kept for years.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(366 * 86_400);

/// Who a token made on this machine is for when nobody says: the local account and host
/// (`li@office-pc`), so that two people's request ids never share one caller.
pub fn local_subject() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "someone".to_string());
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_string());
    format!("{user}@{host}")
}

/// File under the data folder that holds the embedded mode's signing key (hex).
pub const KEY_FILE: &str = "jwt-signing-key";

impl Keys {
    pub fn from_secret(secret: &[u8]) -> anyhow::Result<Self> {
        if secret.len() < 32 {
            bail!("the JWT signing secret must be at least 32 bytes");
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.leeway = 30;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret)?,
            decoding: DecodingKey::from_secret(secret)?,
            validation,
        })
    }

    /// Reads the key in `data_dir`, creating a random one on first use (readable by the owner
    /// only).
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(KEY_FILE);
        if path.exists() {
            // A key an older version left readable by others is tightened.
            crate::db::make_private(&path)?;
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let secret = hex::decode(text.trim())
                .with_context(|| format!("{} is not hex", path.display()))?;
            return Self::from_secret(&secret);
        }
        crate::db::create_private_dir(data_dir)?;
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        write_private(&path, &hex::encode(secret))?;
        Self::from_secret(&secret)
    }

    /// A signed token for `role` acting for `org`, valid for `ttl`.
    pub fn issue(
        &self,
        subject: &str,
        role: Role,
        org: Option<&str>,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        if role.needs_org() && org.is_none() {
            bail!("a {role} token must name its organization (--org CREDIT_CODE)");
        }
        if ttl > MAX_TOKEN_LIFETIME || ttl.is_zero() {
            bail!(
                "a token lives between 1 second and {} days",
                MAX_TOKEN_LIFETIME.as_secs() / 86_400
            );
        }
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: subject.to_string(),
            role,
            org: org.map(str::to_string),
            iat: now,
            // At most MAX_TOKEN_LIFETIME, checked above: no overflow.
            exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            iss: ISSUER.to_string(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    pub fn verify(&self, token: &str) -> Result<Principal, jsonwebtoken::errors::Error> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?;
        Ok(Principal {
            subject: data.claims.sub,
            role: data.claims.role,
            org: data.claims.org,
        })
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("creating {}", path.display()))
}

/// Requires a valid bearer token on every call and puts its [`Principal`] into the request's
/// extensions.
#[derive(Clone)]
pub struct AuthInterceptor {
    keys: Arc<Keys>,
}

impl AuthInterceptor {
    pub fn new(keys: Arc<Keys>) -> Self {
        Self { keys }
    }
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request.metadata().get("authorization").ok_or_else(|| {
            Status::unauthenticated("missing bearer token (authorization metadata)")
        })?;
        let value = header
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization metadata is not text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be \"Bearer <token>\""))?;
        let principal = self
            .keys
            .verify(token.trim())
            .map_err(|e| Status::unauthenticated(format!("invalid token: {e}")))?;
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

/// The caller of `request`, as the interceptor found it.
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no principal on the request"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_another_key_rejects_it() {
        let keys = Keys::from_secret(&[7u8; 32]).expect("keys");
        let token = keys
            .issue(
                "alice",
                Role::Company,
                Some("91320411MA1N2B3C4D"),
                Duration::from_secs(60),
            )
            .expect("token");
        let p = keys.verify(&token).expect("valid");
        assert_eq!(p.role, Role::Company);
        assert_eq!(p.org.as_deref(), Some("91320411MA1N2B3C4D"));
        assert!(p.acts_as(Role::Company, "91320411MA1N2B3C4D"));
        assert!(!p.acts_as(Role::Company, "91320411MA1N2B3C4X"));
        // The right org in the wrong role acts for nobody.
        assert!(!p.acts_as(Role::WaterUser, "91320411MA1N2B3C4D"));
        let verifier = Principal {
            role: Role::Verifier,
            ..p.clone()
        };
        assert!(!verifier.acts_as(Role::Company, "91320411MA1N2B3C4D"));
        assert!(verifier.is(Role::Verifier, "91320411MA1N2B3C4D"));
        let admin = Principal {
            role: Role::Admin,
            org: None,
            ..p
        };
        assert!(admin.acts_as(Role::Company, "91320411MA1N2B3C4D"));
        assert!(!admin.is(Role::Company, "91320411MA1N2B3C4D"));
        let other = Keys::from_secret(&[8u8; 32]).expect("keys");
        assert!(other.verify(&token).is_err());
    }

    #[test]
    fn company_tokens_must_name_their_organization() {
        let keys = Keys::from_secret(&[7u8; 32]).expect("keys");
        assert!(
            keys.issue("x", Role::Company, None, Duration::from_secs(60))
                .is_err()
        );
        assert!(
            keys.issue("x", Role::Admin, None, Duration::from_secs(60))
                .is_ok()
        );
    }

    #[test]
    fn token_lifetimes_are_capped_not_wrapped() {
        let keys = Keys::from_secret(&[7u8; 32]).expect("keys");
        let year = Duration::from_secs(366 * 86_400);
        assert!(keys.issue("x", Role::Admin, None, year).is_ok());
        let longer = year + Duration::from_secs(1);
        let err = keys
            .issue("x", Role::Admin, None, longer)
            .expect_err("over a year");
        assert!(err.to_string().contains("366 days"), "{err}");
        assert!(keys.issue("x", Role::Admin, None, Duration::ZERO).is_err());
    }

    #[test]
    fn key_file_is_created_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("cwsm-keys-{}", crate::new_id()));
        let a = Keys::load_or_create(&dir).expect("create");
        let token = a
            .issue("x", Role::Admin, None, Duration::from_secs(60))
            .expect("token");
        let b = Keys::load_or_create(&dir).expect("reuse");
        assert!(b.verify(&token).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }
}
