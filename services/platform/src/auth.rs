//! Who is calling: every RPC (but health, reflection and the accounts service's sign-in) runs
//! as a [`Principal`] taken from a bearer token: an access token the accounts service signed
//! with Ed25519 (checked against its published keys and revocation list, [`TokenVerifier`]), or
//! an operator's HS256 token from `cwsm token issue`.
//!
//! Organizations are named by their unified social credit code (统一社会信用代码), the identifier
//! every Chinese company, school and agency already has; a token's `org` is that code. So a
//! company may edit the company record whose credit code is its own, and nobody else's.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::{Request, Status};

use crate::jurisdiction::Jurisdiction;

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

/// Where a caller's administrator rights reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole platform: an operator's token (`cwsm token issue`, HS256), whatever its `org`,
    /// and other services.
    Platform,
    /// The jurisdiction of the caller's organization, as its access token says (`jur`), and
    /// for a department of a district office that department (`dept`, the plan's code). An
    /// administrator reaches what lies inside the jurisdiction (a city's administrator its
    /// districts); a department's administrator only what is the department's. For callers
    /// of other roles it grants nothing.
    Within {
        jurisdiction: Jurisdiction,
        department: Option<String>,
    },
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Platform => f.write_str("the whole platform"),
            Scope::Within {
                jurisdiction,
                department: None,
            } => write!(f, "jurisdiction {jurisdiction}"),
            Scope::Within {
                jurisdiction,
                department: Some(d),
            } => write!(f, "department {d} of jurisdiction {jurisdiction}"),
        }
    }
}

/// Which stored rows an administrator reaches ([`Principal::reach`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// An operator: every row.
    Everything,
    /// An administrator of a jurisdiction: the rows whose code lies in it.
    Codes(Codes),
    /// Not an administrator of any jurisdiction's office.
    Nothing,
}

/// The stored jurisdiction codes inside an administrator's jurisdiction, for SQL:
/// `code BETWEEN lowest AND highest OR (without_code AND code = '')`; `without_code` when the
/// jurisdiction holds the platform's district, where rows without a code belong
/// ([`Jurisdiction::of_stored`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Codes {
    pub lowest: String,
    pub highest: String,
    pub without_code: bool,
}

impl Codes {
    /// Whether a row with stored `code` lies inside, as the SQL reads it.
    pub fn hold(&self, code: &str) -> bool {
        if code.is_empty() {
            self.without_code
        } else {
            self.lowest.as_str() <= code && code <= self.highest.as_str()
        }
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
    /// Where an administrator's rights reach ([`Principal::may_administer`]).
    pub scope: Scope,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether this caller administers what belongs to `jurisdiction` (and to `department`:
    /// `None` for what is the district office's as a whole, such as reviewing organizations).
    /// The one rule for administrator scope: an operator everything; an administrator what lies
    /// inside its jurisdiction; a department's administrator only its department's part of it.
    /// Rows known by a stored code go through [`Principal::may_administer_code`].
    pub fn may_administer(&self, jurisdiction: &Jurisdiction, department: Option<&str>) -> bool {
        self.is_admin()
            && match &self.scope {
                Scope::Platform => true,
                Scope::Within {
                    jurisdiction: own,
                    department: own_department,
                } => {
                    own.contains(jurisdiction)
                        && (own_department.is_none() || own_department.as_deref() == department)
                }
            }
    }

    /// PERMISSION_DENIED unless [`Principal::may_administer`], saying which jurisdiction the
    /// caller may act in. `what` is the act ("approve organization 91…"), for the message.
    pub fn require_administer(
        &self,
        what: &str,
        jurisdiction: &Jurisdiction,
        department: Option<&str>,
    ) -> Result<(), crate::Error> {
        self.require_admin(what)?;
        if self.may_administer(jurisdiction, department) {
            return Ok(());
        }
        let belongs = match department {
            Some(d) => format!("department {d} of jurisdiction {jurisdiction}"),
            None => format!("jurisdiction {jurisdiction}"),
        };
        Err(crate::Error::denied(format!(
            "may not {what}: it belongs to {belongs}, and the caller administers {} only",
            self.scope
        )))
    }

    /// For lists filtered in SQL: the lowest and highest jurisdiction code this caller
    /// administers for `department` (`jurisdiction BETWEEN lo AND hi`), `None` when it
    /// administers the whole platform; PERMISSION_DENIED saying why when it administers nothing
    /// of the kind (not an administrator, or a department asked for the office's).
    pub fn administered_range(
        &self,
        what: &str,
        department: Option<&str>,
    ) -> Result<Option<(String, String)>, crate::Error> {
        self.require_admin(what)?;
        match &self.scope {
            Scope::Platform => Ok(None),
            Scope::Within {
                jurisdiction,
                department: own,
            } => {
                if own.is_some() && own.as_deref() != department {
                    let theirs = match department {
                        Some(d) => format!("department {d}'s"),
                        None => "the district office's".to_string(),
                    };
                    return Err(crate::Error::denied(format!(
                        "may not {what}: that is {theirs}, and the caller administers {} only",
                        self.scope
                    )));
                }
                Ok(Some(jurisdiction.bounds()))
            }
        }
    }

    /// PERMISSION_DENIED unless this caller administers the whole platform (an operator): for
    /// what no jurisdiction owns, such as the signing keys.
    pub fn require_platform_admin(&self, what: &str) -> Result<(), crate::Error> {
        self.require_admin(what)?;
        match &self.scope {
            Scope::Platform => Ok(()),
            within => Err(crate::Error::denied(format!(
                "only the platform's operators may {what}; the caller administers {within} only"
            ))),
        }
    }

    /// Whether this caller acts for the organization with `credit_code` in `role`, the role
    /// that organization has on the platform (a company record is the company's, a water user's
    /// record the water user's), or administers the organization's `jurisdiction`. The one rule
    /// for "may act for": a token whose org is right but whose role is not (a verifier token
    /// naming a company) acts for nobody, and another district's administrator for nobody of
    /// this one.
    pub fn acts_as(&self, role: Role, credit_code: &str, jurisdiction: &Jurisdiction) -> bool {
        self.is(role, credit_code) || self.may_administer(jurisdiction, None)
    }

    /// [`Principal::may_administer`] for a resource known by its stored jurisdiction code (a
    /// water user's, a company's): a row without a code belongs to the platform's district
    /// ([`Jurisdiction::of_stored`]).
    pub fn may_administer_code(&self, code: &str, department: Option<&str>) -> bool {
        self.may_administer(&Jurisdiction::of_stored(code), department)
    }

    /// Which stored rows this caller administers as the office of a jurisdiction (not a
    /// department's part), for a list filtered in SQL.
    pub fn reach(&self) -> Reach {
        match (&self.role, &self.scope) {
            (Role::Admin, Scope::Platform) => Reach::Everything,
            (
                Role::Admin,
                Scope::Within {
                    jurisdiction,
                    department: None,
                },
            ) => {
                let (lowest, highest) = jurisdiction.bounds();
                Reach::Codes(Codes {
                    lowest,
                    highest,
                    without_code: jurisdiction.contains(&Jurisdiction::default_district()),
                })
            }
            // A department's administrator runs no organizations or contracts: it records the
            // plan's achievements of its department.
            _ => Reach::Nothing,
        }
    }

    /// PERMISSION_DENIED unless this caller is an administrator, saying what it may not do.
    pub fn require_admin(&self, what: &str) -> Result<(), crate::Error> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(crate::Error::denied(format!(
                "only administrators may {what}; the caller is a {}",
                self.role
            )))
        }
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

    /// Reads the key in `data_dir`; a missing key is an error naming the file (an operator
    /// who runs `cwsm token issue` in the wrong folder must not get a token no server accepts).
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(KEY_FILE);
        if !path.exists() {
            bail!(
                "no signing key at {}: run this where the server's data folder is (--data-dir), \
                 set CWSM_JWT_SECRET, or pass --init to create a new key",
                path.display()
            );
        }
        Self::load_or_create(data_dir)
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

    /// The caller an operator's token names: platform-wide whatever its `org` (an operator is
    /// no district's administrator).
    pub fn verify(&self, token: &str) -> Result<Principal, jsonwebtoken::errors::Error> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?;
        Ok(Principal {
            subject: data.claims.sub,
            role: data.claims.role,
            org: data.claims.org,
            scope: Scope::Platform,
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

/// The client side of [`bearer`]: adds `authorization: Bearer <token>` to every call, and
/// `accept-language` when it speaks a language ([`Bearer::speaking`]). The one interceptor of
/// the CLI, the demo loader, the benchmarks and the tests. An empty token adds no header (a
/// caller that signs in first).
#[derive(Clone, Debug)]
pub struct Bearer {
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    lang: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Bearer {
    /// For `token`; refused when it cannot be a header value (a pasted line break).
    pub fn new(token: &str) -> Result<Bearer, crate::Error> {
        let authorization = if token.is_empty() {
            None
        } else {
            Some(format!("Bearer {token}").parse().map_err(|_| {
                crate::Error::invalid("token", "holds characters a header cannot carry")
            })?)
        };
        Ok(Bearer {
            authorization,
            lang: None,
        })
    }

    /// Asks the services to answer their texts in `lang`.
    pub fn speaking(mut self, lang: crate::lang::Lang) -> Bearer {
        self.lang = Some(tonic::metadata::MetadataValue::from_static(lang.code()));
        self
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        if let Some(value) = &self.lang {
            request
                .metadata_mut()
                .insert("accept-language", value.clone());
        }
        Ok(request)
    }
}

/// The organization (credit code) a token says it acts for, read without checking its
/// signature: for a client choosing defaults from its own token, never for a decision (the
/// server verifies the token on every call). `None` for a token without one or not a JWT.
pub fn token_org_unverified(token: &str) -> Option<String> {
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
    claims
        .get("org")?
        .as_str()
        .filter(|org| !org.is_empty())
        .map(str::to_string)
}

/// The issuer of access tokens signed by the accounts service (EdDSA, with a `kid`).
pub const ACCOUNTS_ISSUER: &str = "cwsm-accounts";
/// The audience of those tokens: the cwsm services.
pub const ACCESS_AUDIENCE: &str = "cwsm";

/// The claims of an access token signed by the accounts service. Shared here so that the one
/// service that signs and every service that verifies read the same fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The person's id.
    pub sub: String,
    /// The role of the membership chosen at sign-in.
    pub role: Role,
    /// The organization's unified social credit code.
    pub org: String,
    /// Whether the organization was approved when the token was signed (a pending one may sign
    /// in to see its state, not act).
    pub approved: bool,
    /// The sign-in session (refresh-token family) the token belongs to: revoking a session
    /// revokes its access tokens through the revocation list.
    pub sid: String,
    /// The jurisdiction the organization is registered in (GB/T 2260, six digits): for an
    /// administrator, where its rights reach. Required: a token without it is refused, never
    /// read as platform-wide.
    pub jur: String,
    /// The department of a district office's department (the plan's code), if it is one: its
    /// administrators reach only that department's part of the jurisdiction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dept: Option<String>,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

impl AccessClaims {
    /// The caller these claims name (whether the organization is approved is the caller's
    /// business: see [`TokenVerifier::verify`]).
    pub fn principal(&self) -> Result<Principal, Status> {
        let refused = |e: crate::Error| Status::unauthenticated(format!("invalid token: {e}"));
        let jurisdiction = Jurisdiction::parse("jur", &self.jur).map_err(refused)?;
        let department = match &self.dept {
            Some(d) => crate::jurisdiction::department("dept", d).map_err(refused)?,
            None => None,
        };
        Ok(Principal {
            subject: self.sub.clone(),
            role: self.role,
            org: Some(self.org.clone()),
            scope: Scope::Within {
                jurisdiction,
                department,
            },
        })
    }
}

/// What must stop working before its tokens expire: suspended organizations and people, removed
/// memberships, revoked sessions. Kept small: an entry of a session or membership is needed only
/// while an access token signed before it can live (the accounts service drops them after).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocations {
    /// Credit codes of suspended organizations.
    pub organizations: BTreeSet<String>,
    /// Ids of suspended people.
    pub subjects: BTreeSet<String>,
    /// Revoked sessions (`sid`).
    pub sessions: BTreeSet<String>,
    /// Removed memberships, as `"{person id} {credit code}"`.
    pub memberships: BTreeSet<String>,
}

impl Revocations {
    pub fn membership_key(subject: &str, org: &str) -> String {
        format!("{subject} {org}")
    }

    /// Why `claims` no longer count, if they do not.
    pub fn reason(&self, claims: &AccessClaims) -> Option<&'static str> {
        if self.organizations.contains(&claims.org) {
            Some("the organization is suspended")
        } else if self.subjects.contains(&claims.sub) {
            Some("the account is suspended")
        } else if self.sessions.contains(&claims.sid) {
            Some("the session was signed out or revoked")
        } else if self
            .memberships
            .contains(&Self::membership_key(&claims.sub, &claims.org))
        {
            Some("the membership was removed")
        } else {
            None
        }
    }
}

/// Checks bearer tokens: EdDSA access tokens of the accounts service against its published key
/// set (JWKS) and the revocation list, and the operators' HS256 tokens (`cwsm token issue`)
/// against the operator key. Holds public keys only.
pub struct TokenVerifier {
    operator: Option<Arc<Keys>>,
    keys: RwLock<HashMap<String, DecodingKey>>,
    revoked: RwLock<Revocations>,
    validation: Validation,
    /// Access tokens whose signature and claims were checked, until they expire: the Ed25519
    /// check (tens of microseconds) is made once per token, not on every call. Revocation is
    /// checked on every call; the whole set is forgotten when the published keys change.
    verified: quick_cache::sync::Cache<String, Arc<AccessClaims>>,
}

/// Access tokens kept verified (a token is ~0.5 KB: a few MB at most).
const VERIFIED_TOKENS_KEPT: usize = 10_000;

/// Seconds since 1970 now (0 if the clock is before it).
fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenVerifier(..)")
    }
}

impl TokenVerifier {
    /// A verifier with no accounts keys yet (they come with [`TokenVerifier::set_jwks`]).
    pub fn new(operator: Option<Arc<Keys>>) -> Arc<TokenVerifier> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ACCOUNTS_ISSUER]);
        validation.set_audience(&[ACCESS_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        // Short: access tokens live minutes, and a lenient clock keeps a revoked one alive.
        validation.leeway = 30;
        Arc::new(TokenVerifier {
            operator,
            keys: RwLock::default(),
            revoked: RwLock::default(),
            validation,
            verified: quick_cache::sync::Cache::new(VERIFIED_TOKENS_KEPT),
        })
    }

    /// Replaces the accepted keys by the Ed25519 keys of `jwks` (a JWKS document). Keys of
    /// another type, without a `kid` or of a wrong length are refused as a whole: a set that
    /// cannot be read keeps the previous one.
    pub fn set_jwks(&self, jwks: &JwkSet) -> anyhow::Result<usize> {
        use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
        let mut keys = HashMap::new();
        for jwk in &jwks.keys {
            let kid = jwk
                .common
                .key_id
                .clone()
                .filter(|k| !k.is_empty())
                .context("a key without a kid")?;
            let AlgorithmParameters::OctetKeyPair(okp) = &jwk.algorithm else {
                bail!("key {kid} is not an Ed25519 key");
            };
            if okp.curve != EllipticCurve::Ed25519 {
                bail!("key {kid} is not on Ed25519");
            }
            // Checked here: the verifier slices the first 32 bytes and would panic on fewer.
            let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(okp.x.trim_end_matches('='))
                .with_context(|| format!("key {kid}: x is not base64url"))?;
            if x.len() != 32 {
                bail!(
                    "key {kid}: an Ed25519 public key has 32 bytes, not {}",
                    x.len()
                );
            }
            keys.insert(kid, DecodingKey::from_ed_der(&x));
        }
        let n = keys.len();
        let mut current = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let mut before: Vec<&String> = current.keys().collect();
        let mut after: Vec<&String> = keys.keys().collect();
        before.sort();
        after.sort();
        if before != after {
            // A withdrawn key's tokens must not outlive it here.
            self.verified.clear();
        }
        *current = keys;
        Ok(n)
    }

    /// Replaces the revocation list.
    pub fn set_revocations(&self, revocations: Revocations) {
        *self.revoked.write().unwrap_or_else(|e| e.into_inner()) = revocations;
    }

    /// The key ids accepted now.
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// Checks an accounts access token: signature by a published key, issuer, audience,
    /// expiry, and the revocation list. A pending organization's token is returned too (the
    /// caller decides whether it may act).
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, Status> {
        let claims = match self.verified.get(token) {
            // Within its lifetime as the full check counts it (the same leeway).
            Some(claims)
                if claims.exp.saturating_add(self.validation.leeway as i64) > now_secs() =>
            {
                claims
            }
            _ => {
                let claims = Arc::new(self.check_signature_and_claims(token)?);
                self.verified.insert(token.to_string(), claims.clone());
                claims
            }
        };
        if let Some(reason) = self
            .revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .reason(&claims)
        {
            return Err(Status::unauthenticated(format!("token revoked: {reason}")));
        }
        Ok(AccessClaims::clone(&claims))
    }

    /// The signature by a published key, issuer, audience and expiry of an access token.
    fn check_signature_and_claims(&self, token: &str) -> Result<AccessClaims, Status> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Status::unauthenticated(format!("invalid token: {e}")))?;
        if header.alg != Algorithm::EdDSA {
            return Err(Status::unauthenticated(
                "invalid token: not an access token of the accounts service",
            ));
        }
        let kid = header
            .kid
            .ok_or_else(|| Status::unauthenticated("invalid token: no key id (kid)"))?;
        let key = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&kid)
            .cloned()
            .ok_or_else(|| {
                Status::unauthenticated(format!("invalid token: key {kid:?} is not published"))
            })?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &self.validation)
            .map_err(|e| Status::unauthenticated(format!("invalid token: {e}")))?;
        Ok(data.claims)
    }

    /// The caller of a service RPC: an operator token, or an access token of an approved
    /// organization (a pending one is PERMISSION_DENIED saying so).
    pub fn verify(&self, token: &str) -> Result<Principal, Status> {
        // An access token verified before: no header to decode (the read path's common case).
        if self.verified.get(token).is_some() {
            return self.approved_principal(self.verify_access(token)?);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Status::unauthenticated(format!("invalid token: {e}")))?;
        match header.alg {
            Algorithm::HS256 => {
                let keys = self.operator.as_ref().ok_or_else(|| {
                    Status::unauthenticated("invalid token: operator tokens are not accepted here")
                })?;
                keys.verify(token)
                    .map_err(|e| Status::unauthenticated(format!("invalid token: {e}")))
            }
            Algorithm::EdDSA => self.approved_principal(self.verify_access(token)?),
            other => Err(Status::unauthenticated(format!(
                "invalid token: algorithm {other:?} is not accepted"
            ))),
        }
    }
}

impl TokenVerifier {
    /// The caller of verified access-token `claims`, if its organization was approved.
    fn approved_principal(&self, claims: AccessClaims) -> Result<Principal, Status> {
        if !claims.approved {
            return Err(Status::permission_denied(format!(
                "organization {} is not approved yet: an administrator of its district \
                 must review its registration before it can act",
                claims.org
            )));
        }
        claims.principal()
    }
}

/// The bearer token of a call's metadata.
pub fn bearer(metadata: &tonic::metadata::MetadataMap) -> Result<&str, Status> {
    let header = metadata
        .get("authorization")
        .ok_or_else(|| Status::unauthenticated("missing bearer token (authorization metadata)"))?;
    let value = header
        .to_str()
        .map_err(|_| Status::unauthenticated("authorization metadata is not text"))?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| Status::unauthenticated("authorization must be \"Bearer <token>\""))
}

/// Requires a valid bearer token on every call and puts its [`Principal`] into the request's
/// extensions.
#[derive(Clone)]
pub struct AuthInterceptor {
    verifier: Arc<TokenVerifier>,
}

impl AuthInterceptor {
    /// Operator (HS256) tokens only, signed with `keys`.
    pub fn new(keys: Arc<Keys>) -> Self {
        Self {
            verifier: TokenVerifier::new(Some(keys)),
        }
    }

    /// Tokens as `verifier` checks them (accounts' access tokens, and operator tokens).
    pub fn with_verifier(verifier: Arc<TokenVerifier>) -> Self {
        Self { verifier }
    }

    pub fn verifier(&self) -> &Arc<TokenVerifier> {
        &self.verifier
    }
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let principal = self.verifier.verify(bearer(request.metadata())?)?;
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

    /// The test key and a minute's company token of 91320411MA1N2B3C4D signed with it.
    fn company_token() -> (Keys, String) {
        let keys = Keys::from_secret(&[7u8; 32]).expect("keys");
        let token = keys
            .issue(
                "alice",
                Role::Company,
                Some("91320411MA1N2B3C4D"),
                Duration::from_secs(60),
            )
            .expect("token");
        (keys, token)
    }

    #[test]
    fn a_token_round_trips_and_another_key_rejects_it() {
        let (keys, token) = company_token();
        let p = keys.verify(&token).expect("valid");
        assert_eq!(p.role, Role::Company);
        assert_eq!(p.org.as_deref(), Some("91320411MA1N2B3C4D"));
        let xinbei = Jurisdiction::default_district();
        assert!(p.acts_as(Role::Company, "91320411MA1N2B3C4D", &xinbei));
        assert!(!p.acts_as(Role::Company, "91320411MA1N2B3C4X", &xinbei));
        // The right org in the wrong role acts for nobody.
        assert!(!p.acts_as(Role::WaterUser, "91320411MA1N2B3C4D", &xinbei));
        let verifier = Principal {
            role: Role::Verifier,
            ..p.clone()
        };
        assert!(!verifier.acts_as(Role::Company, "91320411MA1N2B3C4D", &xinbei));
        assert!(verifier.is(Role::Verifier, "91320411MA1N2B3C4D"));
        let admin = Principal {
            role: Role::Admin,
            org: None,
            ..p
        };
        assert!(admin.acts_as(Role::Company, "91320411MA1N2B3C4D", &xinbei));
        assert!(!admin.is(Role::Company, "91320411MA1N2B3C4D"));
        let other = Keys::from_secret(&[8u8; 32]).expect("keys");
        assert!(other.verify(&token).is_err());
    }

    #[test]
    fn a_client_reads_its_own_tokens_org_and_nothing_else_is_an_org() {
        let (keys, company) = company_token();
        assert_eq!(
            token_org_unverified(&company).as_deref(),
            Some("91320411MA1N2B3C4D")
        );
        let admin = keys
            .issue("ops", Role::Admin, None, Duration::from_secs(60))
            .expect("token");
        assert_eq!(token_org_unverified(&admin), None);
        assert_eq!(token_org_unverified("not a token"), None);
        assert_eq!(token_org_unverified("a.b.c"), None);
    }

    fn jur(code: &str) -> Jurisdiction {
        Jurisdiction::parse("j", code).unwrap_or_else(|e| panic!("{code}: {e}"))
    }

    fn admin_of(code: &str, department: Option<&str>) -> Principal {
        Principal {
            subject: "clerk".into(),
            role: Role::Admin,
            org: Some("11320411MB0000000X".into()),
            scope: Scope::Within {
                jurisdiction: jur(code),
                department: department.map(str::to_string),
            },
        }
    }

    #[test]
    fn administrators_reach_their_jurisdiction_and_operators_everything() {
        let (xinbei, wujin) = (jur("320411"), jur("320412"));
        let district = admin_of("320411", None);
        assert!(district.may_administer(&xinbei, None));
        assert!(district.may_administer(&xinbei, Some("agri")));
        assert!(!district.may_administer(&wujin, None));
        let err = district
            .require_administer("approve organization X", &wujin, None)
            .expect_err("another district");
        assert!(
            matches!(&err, crate::Error::PermissionDenied(m)
                if m.contains("jurisdiction 320412") && m.contains("administers jurisdiction 320411 only")),
            "{err:?}"
        );
        // A city's administrator reaches its districts, not another city's.
        let city = admin_of("320400", None);
        assert!(city.may_administer(&xinbei, None) && city.may_administer(&wujin, None));
        assert!(!city.may_administer(&jur("320505"), None));
        // A department reaches its own part only, not the office's.
        let agri = admin_of("320411", Some("agri"));
        assert!(agri.may_administer(&xinbei, Some("agri")));
        assert!(!agri.may_administer(&xinbei, Some("housing")));
        assert!(!agri.may_administer(&xinbei, None));
        assert_eq!(
            agri.administered_range("list", Some("agri")).ok(),
            Some(Some(("320411".into(), "320411999".into())))
        );
        assert!(agri.administered_range("list", None).is_err());
        assert_eq!(
            city.administered_range("list", None).ok(),
            Some(Some(("320400".into(), "320499999".into())))
        );
        // An operator everything, whatever its org; other roles nothing.
        let keys = Keys::from_secret(&[7u8; 32]).expect("keys");
        let token = keys
            .issue(
                "op",
                Role::Admin,
                Some("11320412MB0000000X"),
                Duration::from_secs(60),
            )
            .expect("token");
        let operator = keys.verify(&token).expect("valid");
        assert_eq!(operator.scope, Scope::Platform);
        assert!(operator.may_administer(&wujin, Some("agri")));
        assert!(operator.require_platform_admin("rotate keys").is_ok());
        assert_eq!(operator.administered_range("list", None).ok(), Some(None));
        assert!(district.require_platform_admin("rotate keys").is_err());
        let company = Principal {
            role: Role::Company,
            ..district.clone()
        };
        assert!(!company.may_administer(&xinbei, None));
    }

    #[test]
    fn an_administrator_acts_for_the_organizations_of_its_jurisdiction_only() {
        let (xinbei, wujin) = (jur("320411"), jur("320412"));
        let district = admin_of("320411", None);
        assert!(district.acts_as(Role::Company, "91320411MA1N2B3C4D", &xinbei));
        assert!(!district.acts_as(Role::Company, "91320412MA1N2B3C4D", &wujin));
        assert!(!admin_of("320411", Some("agri")).acts_as(Role::WaterUser, "x", &xinbei));
        // Rows without a code are the platform's district's.
        assert_eq!(Jurisdiction::of_stored(""), xinbei);
        assert_eq!(Jurisdiction::of_stored("320412003"), jur("320412003"));
        assert!(district.may_administer_code("", None));
        assert!(!admin_of("320412", None).may_administer_code("", None));
        assert!(admin_of("320412", None).may_administer_code("320412003", None));
    }

    #[test]
    fn reach_reads_as_the_sql_filters_do() {
        let Reach::Codes(xinbei) = admin_of("320411", None).reach() else {
            panic!("a district office reaches codes");
        };
        // 320411 and its towns 320411001..320411999, and rows without a code.
        assert!(xinbei.hold("320411") && xinbei.hold("320411004") && xinbei.hold(""));
        assert!(!xinbei.hold("320412") && !xinbei.hold("320412003"));
        let Reach::Codes(changzhou) = admin_of("320400", None).reach() else {
            panic!("a city office reaches codes");
        };
        assert!(changzhou.hold("320411004") && changzhou.hold("320412") && changzhou.hold(""));
        assert!(!changzhou.hold("320505"));
        let Reach::Codes(wujin) = admin_of("320412", None).reach() else {
            panic!("a district office reaches codes");
        };
        assert!(
            !wujin.hold(""),
            "rows without a code are Xinbei's, not Wujin's"
        );
        assert_eq!(admin_of("320411", Some("agri")).reach(), Reach::Nothing);
        let operator = Principal {
            scope: Scope::Platform,
            ..admin_of("320411", None)
        };
        assert_eq!(operator.reach(), Reach::Everything);
        let company = Principal {
            role: Role::Company,
            ..operator
        };
        assert_eq!(company.reach(), Reach::Nothing);
    }

    #[test]
    fn access_claims_without_a_valid_jurisdiction_name_nobody() {
        let claims = AccessClaims {
            sub: "p".into(),
            role: Role::Admin,
            org: "11320411MB0000000X".into(),
            approved: true,
            sid: "s".into(),
            jur: "320411".into(),
            dept: Some("agri".into()),
            iat: 0,
            exp: 0,
            iss: ACCOUNTS_ISSUER.into(),
            aud: ACCESS_AUDIENCE.into(),
        };
        assert_eq!(
            claims.principal().map(|p| p.scope).ok(),
            Some(Scope::Within {
                jurisdiction: jur("320411"),
                department: Some("agri".into())
            })
        );
        for bad in ["", "3204", "platform"] {
            let claims = AccessClaims {
                jur: bad.into(),
                ..claims.clone()
            };
            assert_eq!(
                claims.principal().map_err(|s| s.code()).err(),
                Some(tonic::Code::Unauthenticated),
                "{bad:?}"
            );
        }
        // A token signed before jurisdictions (no `jur`) does not decode: refused, not
        // platform-wide.
        let json = r#"{"sub":"p","role":"admin","org":"o","approved":true,"sid":"s","iat":0,"exp":0,"iss":"cwsm-accounts","aud":"cwsm"}"#;
        assert!(serde_json::from_str::<AccessClaims>(json).is_err());
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
