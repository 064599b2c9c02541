//! Accounts: who may act on the marketplace.
//!
//! - Organizations, named by their unified social credit code, with a kind (company, water
//!   user, verifier body, district office) that decides their members' role; registered with
//!   their first member and reviewed by an administrator: pending → approved → suspended (with
//!   a reason) → approved again. Each belongs to a jurisdiction (GB/T 2260 code; the platform's
//!   district when none is given) and a district office's department names its department:
//!   administrators review the organizations of their own jurisdiction only
//!   (`Principal::may_administer`), and access tokens carry the scope (`jur`, `dept`).
//! - People (a login: e-mail or phone, normalized) with an argon2id password hash
//!   ([`password`]); memberships person × organization × role; invitations (a code shown once,
//!   kept as its SHA-256) that a person redeems to join.
//! - Sign-in ([`Accounts::sign_in`]): one answer for a wrong password, an unknown login and a
//!   locked login ([`SIGN_IN_REFUSED`]); an unknown login verifies a dummy hash so it costs the
//!   same; failures are counted per login (known or not) in the store and lock it for a while.
//! - Tokens: an access token (EdDSA JWT, ≤ 15 minutes, `kid`) naming the person, the
//!   organization and the membership's role; an opaque refresh token, stored hashed, rotated on
//!   every use — one used twice revokes its whole session. Keys in [`keys`], published as a
//!   JWKS ([`Accounts::jwks`]); revocations (suspended organizations, removed memberships,
//!   ended sessions) for the verifiers ([`Accounts::revocations`]).
//! - API keys for machine clients ([`Accounts::create_api_key`]): `cwsm_ak_<id>_<secret>`,
//!   kept as a SHA-256, scoped to an organization in its role, expiring, revocable; exchanged
//!   ([`Accounts::exchange_api_key`]) for an access token whose session is the key, so the
//!   services verify JWTs only and a revoked key's tokens are in the revocation list.
//! - Suspended people ([`Accounts::suspend_person`]): no sign-in, no refresh, tokens revoked.
//! - Creates (registration, invitations, redemptions, API keys) follow the one idempotency
//!   rule (`platform::idempotency`).
//! - Every change and every sign-in is audited in the same transaction.
//!
//! The domain is plain Rust; [`grpc`] is the adapter, [`store`] the tables.

pub mod external;
pub mod grpc;
pub mod keys;
pub mod oidc;
pub mod password;
pub mod store;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cwsm_platform::auth::{
    ACCESS_AUDIENCE, ACCOUNTS_ISSUER, AccessClaims, Principal, Revocations, Role, TokenVerifier,
};
use cwsm_platform::db::Db;
use cwsm_platform::grpc::Page;
use cwsm_platform::idempotency::{self, RequestKey};
use cwsm_platform::jurisdiction::Jurisdiction;
use cwsm_platform::{Error, Result, new_id, now_ms};
use jsonwebtoken::jwk::JwkSet;

use crate::keys::StoredKey;
use crate::store::{ApiKeyRow, AuditEvent, Joiner, NewRefresh, Person, Store};

/// The fully qualified gRPC service name, for health and reflection.
pub const SERVICE_NAME: &str = "cwsm.accounts.v1.AccountsService";

/// The one answer to a failed sign-in, whatever failed: a wrong password, an unknown login or
/// a login locked after repeated failures.
pub const SIGN_IN_REFUSED: &str = "sign-in refused: the login or the password is wrong, or the login is locked after repeated failures (try again later)";

/// The longest an access token may live: revocation is checked at refresh, so this bounds
/// how long a token can outlive what revoked it were the revocation list not consulted.
pub const MAX_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);

/// The one answer to an API key that cannot be exchanged, whatever the reason (unknown,
/// expired, revoked, or of a suspended organization): the reason is in the audit log.
pub const API_KEY_REFUSED: &str =
    "API key not valid: unknown, expired or revoked, or its organization is suspended";

/// How an API key begins: `cwsm_ak_<id>_<secret>`.
pub const API_KEY_PREFIX: &str = "cwsm_ak_";

/// The subject of an access token exchanged for an API key: `apikey:<key id>`.
pub const API_KEY_SUBJECT: &str = "apikey:";

/// Longest an API key is valid, and its default (days).
pub const MAX_API_KEY_DAYS: i32 = 366;
pub const DEFAULT_API_KEY_DAYS: i32 = 90;

/// Keys neither revoked nor expired an organization may hold at once.
pub const MAX_LIVE_API_KEYS: i64 = 50;

/// Password length bounds (characters).
pub const MIN_PASSWORD: usize = 10;
pub const MAX_PASSWORD: usize = 128;

/// The policy of the service.
#[derive(Clone, Debug)]
pub struct Options {
    /// Access token lifetime (at most [`MAX_ACCESS_TTL`]).
    pub access_ttl: Duration,
    /// Refresh token (session) lifetime without use.
    pub refresh_ttl: Duration,
    /// How long a new signing key is published before it signs: at least the verifiers'
    /// refresh interval.
    pub key_publish_delay: Duration,
    /// Failed sign-ins of one login within `failure_window` that lock it…
    pub max_failures: i64,
    pub failure_window: Duration,
    /// …for this long.
    pub lockout: Duration,
    /// The district the platform serves: the jurisdiction of an organization registered
    /// without one, and of those registered before jurisdictions (the `district_code` setting).
    pub district: Jurisdiction,
    /// External OpenID Connect providers people may sign in through.
    pub oidc_providers: Vec<cwsm_platform::config::OidcProvider>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            access_ttl: MAX_ACCESS_TTL,
            refresh_ttl: Duration::from_secs(30 * 86_400),
            key_publish_delay: Duration::from_secs(120),
            max_failures: 5,
            failure_window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(15 * 60),
            district: Jurisdiction::default_district(),
            oidc_providers: Vec::new(),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What an organization is; decides its members' role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Company,
    WaterUser,
    Verifier,
    DistrictOffice,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Company => "company",
            Kind::WaterUser => "water_user",
            Kind::Verifier => "verifier",
            Kind::DistrictOffice => "district_office",
        }
    }
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "company" => Kind::Company,
            "water_user" => Kind::WaterUser,
            "verifier" => Kind::Verifier,
            "district_office" => Kind::DistrictOffice,
            _ => return None,
        })
    }
    /// The role its members act in. `service` is never a person's.
    pub fn role(self) -> Role {
        match self {
            Kind::Company => Role::Company,
            Kind::WaterUser => Role::WaterUser,
            Kind::Verifier => Role::Verifier,
            Kind::DistrictOffice => Role::Admin,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Approved,
    Suspended,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Suspended => "suspended",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "suspended" => Status::Suspended,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Organization {
    pub credit_code: String,
    pub name: String,
    pub kind: Kind,
    pub status: Status,
    pub status_reason: String,
    pub version: i64,
    pub registered_at_ms: i64,
    pub reviewed_at_ms: Option<i64>,
    pub reviewed_by: String,
    /// Where it belongs and is reviewed; for a district office, where its members administer.
    pub jurisdiction: Jurisdiction,
    /// For a department of a district office, its code as the plans name it.
    pub department: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub person_id: String,
    pub display_name: String,
    pub credit_code: String,
    pub role: String,
    pub joined_at_ms: i64,
}

/// A person's standing, as administrators see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonStanding {
    pub person_id: String,
    pub display_name: String,
    pub suspended_at_ms: Option<i64>,
    pub suspended_reason: String,
    pub suspended_by: String,
}

impl From<Person> for PersonStanding {
    fn from(p: Person) -> PersonStanding {
        PersonStanding {
            person_id: p.id,
            display_name: p.display_name,
            suspended_at_ms: p.suspended_at_ms,
            suspended_reason: p.suspended_reason,
            suspended_by: p.suspended_by,
        }
    }
}

/// An API key just created: its row and the key itself (empty when the creation was a retry:
/// the key is shown once).
#[derive(Clone, Debug)]
pub struct NewApiKey {
    pub key: ApiKeyRow,
    pub api_key: String,
    pub replayed: bool,
}

/// An access token exchanged for an API key.
#[derive(Clone, Debug)]
pub struct Exchanged {
    pub access_token: String,
    pub expires_at_ms: i64,
    pub key_id: String,
    pub credit_code: String,
    pub role: Role,
    pub status: Status,
}

/// Credentials of a person joining (registering or accepting an invitation).
#[derive(Clone, Debug)]
pub struct Credentials {
    pub login: String,
    pub password: String,
    pub display_name: String,
}

/// Where an organization registers, as the request gives it (empty: the platform's district;
/// no department).
#[derive(Clone, Copy, Debug, Default)]
pub struct Place<'a> {
    pub jurisdiction: &'a str,
    pub department: &'a str,
}

/// Tokens of a session, as handed out.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access_token: String,
    pub access_expires_at_ms: i64,
    pub refresh_token: String,
    pub refresh_expires_at_ms: i64,
    pub person_id: String,
    pub credit_code: String,
    pub role: Role,
    pub status: Status,
    pub jurisdiction: Jurisdiction,
    pub department: Option<String>,
}

/// A login as stored and compared: trimmed; an e-mail address in lower case; a phone number's
/// digits with an optional leading `+` (spaces and dashes dropped).
pub fn normalize_login(field: &str, login: &str) -> Result<String> {
    let login = login.trim();
    if login.is_empty() {
        return Err(Error::invalid(
            field,
            "required: an e-mail address or a phone number",
        ));
    }
    if login.chars().count() > 254 {
        return Err(Error::invalid(field, "at most 254 characters"));
    }
    if login.contains('@') {
        let lower = login.to_lowercase();
        let (local, domain) = lower.split_once('@').unwrap_or(("", ""));
        if local.is_empty() || !domain.contains('.') || lower.chars().any(char::is_whitespace) {
            return Err(Error::invalid(field, "not an e-mail address"));
        }
        return Ok(lower);
    }
    let plus = login.starts_with('+');
    let digits: String = login
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')') && *c != '+')
        .collect();
    if digits.len() < 5 || digits.len() > 20 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::invalid(
            field,
            "an e-mail address, or a phone number of 5 to 20 digits",
        ));
    }
    Ok(if plus { format!("+{digits}") } else { digits })
}

fn check_password(field: &str, password: &str) -> Result<()> {
    let n = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Err(Error::invalid(
            field,
            format!("a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters"),
        ));
    }
    Ok(())
}

/// A random opaque secret (refresh token, invitation code): 32 bytes, base64url.
fn secret(prefix: &str) -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(anyhow::anyhow!("no randomness: {e}")))?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The SHA-256 of a text (secrets are kept only as this).
fn sha256_hex(text: &str) -> String {
    cwsm_platform::documents::sha256_hex(text.as_bytes())
}

/// What is kept of an API key: its plain SHA-256. A slow password hash (argon2) exists to make
/// guessing a human's low-entropy password expensive; an API key carries 256 random bits, so
/// no dictionary exists and a brute force of 2^256 is out of reach at any hashing speed. A
/// fast hash also lets the key be found by an index look-up instead of one argon2 run per
/// stored key, and an exchange costs microseconds, not 19 MiB.
fn api_key_hash(api_key: &str) -> String {
    sha256_hex(api_key)
}

/// The key id in `cwsm_ak_<id>_<secret>`, when it looks like one of ours (for the audit log:
/// a stranger's text is not logged).
fn api_key_id(api_key: &str) -> Option<&str> {
    let (id, _) = api_key.strip_prefix(API_KEY_PREFIX)?.split_once('_')?;
    (id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')).then_some(id)
}

/// Whether `p` is a machine client's token exchanged for an API key.
pub fn is_api_key(p: &Principal) -> bool {
    p.subject.starts_with(API_KEY_SUBJECT)
}

/// PERMISSION_DENIED for a machine client's token: it acts on the marketplace, not on who may
/// act (else a stolen key could mint the next key before it is revoked).
fn refuse_api_key(p: &Principal, what: &str) -> Result<()> {
    if is_api_key(p) {
        return Err(Error::denied(format!(
            "an API key's token may not {what}: a member of the organization signs in for that"
        )));
    }
    Ok(())
}

/// The caller that sends a request without a token (registration, redemption), as the
/// idempotency key names it.
fn anonymous() -> Principal {
    Principal {
        subject: "anonymous".to_string(),
        role: Role::WaterUser,
        org: None,
        // Names the key only: a caller that is no administrator administers nothing.
        scope: cwsm_platform::auth::Scope::Platform,
    }
}

/// A login as the audit log names it: not the login itself (an unknown login may be someone's
/// password typed in the wrong box), a prefix of its hash.
fn login_tag(login: &str) -> String {
    format!("login:{}", &sha256_hex(login)[..16])
}

fn unauthenticated() -> Error {
    Error::Unauthenticated(SIGN_IN_REFUSED.to_string())
}

/// Why a person may not sign in or join, if they are suspended (told only to whoever proved
/// the password).
fn refuse_suspended_person(person: &Person) -> Result<()> {
    if person.suspended_at_ms.is_some() {
        return Err(Error::denied(format!(
            "the account is suspended: {}; an administrator may reinstate it",
            person.suspended_reason
        )));
    }
    Ok(())
}

/// The accounts service.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    hasher: password::Hasher,
    options: Options,
    /// Signing keys as last read (all of them, public and private).
    keys: Arc<RwLock<Vec<StoredKey>>>,
    /// The verifier of this process: fed the JWKS and revocations on every change.
    verifier: Arc<TokenVerifier>,
    /// External OpenID Connect providers, with their documents and keys as last fetched.
    providers: Arc<oidc::Providers>,
}

impl Accounts {
    /// Connects to its database, creates the first signing key if there is none, and feeds
    /// `verifier` (the one this process's services check tokens with).
    pub async fn connect(
        database_url: &str,
        options: Options,
        verifier: Arc<TokenVerifier>,
    ) -> anyhow::Result<Accounts> {
        if options.access_ttl > MAX_ACCESS_TTL || options.access_ttl.is_zero() {
            anyhow::bail!("access tokens live between 1 second and 15 minutes");
        }
        let providers = Arc::new(oidc::Providers::new(&options.oidc_providers)?);
        let store = Store::connect(database_url).await?;
        let settled = store.settle_jurisdictions(&options.district).await?;
        if settled > 0 {
            tracing::info!(
                organizations = settled,
                district = %options.district,
                "organizations registered before jurisdictions belong to the platform's district"
            );
        }
        let accounts = Accounts {
            store,
            hasher: password::Hasher::new()?,
            options,
            keys: Arc::default(),
            verifier,
            providers,
        };
        if accounts.store.keys().await?.is_empty() {
            // The first key signs at once: nothing was signed before it.
            let now = now_ms();
            let key = StoredKey::generate(now, now)?;
            if let Err(e) = accounts.store.add_key(&key, None).await {
                // Another replica made the first key at the same moment: use its.
                tracing::info!(error = %e, "first signing key made elsewhere");
            }
        }
        accounts.refresh().await?;
        Ok(accounts)
    }

    pub fn db(&self) -> &Db {
        &self.store.db
    }

    pub fn verifier(&self) -> &Arc<TokenVerifier> {
        &self.verifier
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Re-reads the keys and the revocations and hands them to this process's verifier.
    /// Called after every change here, and periodically for changes made by other replicas.
    pub async fn refresh(&self) -> Result<()> {
        let keys = self.store.keys().await?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        let jwks = self.jwks();
        self.verifier.set_jwks(&jwks)?;
        self.verifier.set_revocations(self.revocations().await?);
        Ok(())
    }

    /// Refreshes every `every` until `stop`.
    pub async fn follow(self, every: Duration, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "refreshing keys and revocations");
            }
        }
    }

    /// The public keys to publish now.
    pub fn jwks(&self) -> JwkSet {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        // Old keys stay until the last token they signed expired, with the verifiers' leeway.
        let keep = ms(self.options.access_ttl).saturating_add(60_000);
        keys::published(&keys, now_ms(), keep)
    }

    /// The revocation list now: entries older than any live access token are dropped.
    pub async fn revocations(&self) -> Result<Revocations> {
        let since = now_ms()
            .saturating_sub(ms(self.options.access_ttl))
            .saturating_sub(120_000);
        self.store.revocations(since).await
    }

    /// Applies a change to this process's verifier at once (other replicas' on their next
    /// refresh); a failure is logged, the periodic refresh retries.
    async fn publish(&self) {
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "publishing keys and revocations");
        }
    }

    fn sign(&self, claims: &AccessClaims) -> Result<String> {
        let key = {
            let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
            keys::signer(&keys, now_ms()).cloned()
        };
        let key = key.ok_or_else(|| Error::Internal(anyhow::anyhow!("no signing key")))?;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding_key()?)
            .map_err(|e| Error::Internal(anyhow::anyhow!("signing a token: {e}")))
    }

    /// Who joins: an existing person whose password is right, or a new person.
    async fn joiner(&self, creds: &Credentials, prefix: &str) -> Result<Joiner> {
        let login = normalize_login(&format!("{prefix}.login"), &creds.login)?;
        check_password(&format!("{prefix}.password"), &creds.password)?;
        let name = creds.display_name.trim();
        if name.is_empty() || name.chars().count() > cwsm_platform::input::MAX_NAME {
            return Err(Error::invalid(
                format!("{prefix}.display_name"),
                "required, at most 200 characters",
            ));
        }
        match self.store.person_by_login(&login).await? {
            Some(person) => {
                self.check_password_of(
                    &login,
                    &creds.password,
                    Some(person.password_hash.clone()),
                    "join",
                )
                .await?;
                refuse_suspended_person(&person)?;
                Ok(Joiner::Existing(person.id))
            }
            None => Ok(Joiner::New {
                id: new_id(),
                login,
                password_hash: self.hasher.hash(creds.password.clone()).await?,
                display_name: name.to_string(),
            }),
        }
    }

    /// The password check of a sign-in (or of joining as an existing login): locked logins
    /// are refused without a check, failures are counted, success clears them.
    async fn check_password_of(
        &self,
        login: &str,
        password: &str,
        hash: Option<String>,
        action: &str,
    ) -> Result<()> {
        let now = now_ms();
        let failures = self.store.failures(login).await?;
        if failures.locked_until_ms > now {
            self.store
                .audit(&AuditEvent::new(
                    now,
                    "anonymous",
                    "sign_in_failed",
                    &login_tag(login),
                    &format!("{action}: locked"),
                ))
                .await?;
            return Err(unauthenticated());
        }
        let known = hash.is_some();
        if self.hasher.verify(password.to_string(), hash).await? {
            if failures.failures > 0 {
                self.store.clear_failures(login).await?;
            }
            return Ok(());
        }
        let o = &self.options;
        let counted = self
            .store
            .count_failure(
                login,
                now,
                ms(o.failure_window),
                o.max_failures,
                ms(o.lockout),
                &AuditEvent::new(
                    now,
                    "anonymous",
                    "sign_in_failed",
                    &login_tag(login),
                    &format!(
                        "{action}: {}",
                        if known {
                            "wrong password"
                        } else {
                            "unknown login"
                        }
                    ),
                ),
            )
            .await?;
        if counted.locked_until_ms > now {
            tracing::info!(login = %login_tag(login), failures = counted.failures, "login locked");
        }
        Err(unauthenticated())
    }

    // -- organizations ------------------------------------------------------------------------

    /// Registers an organization with its first member, once per request id. `request` stands
    /// for the request in the idempotency fingerprint and must not hold the password: a fast
    /// hash of it would undo argon2, so a retry proves the password again instead.
    // The registration's fields one by one, as the request has them (left: a struct for them).
    #[allow(clippy::too_many_arguments)]
    pub async fn register(
        &self,
        credit_code: &str,
        name: &str,
        kind: Kind,
        place: &Place<'_>,
        registrant: &Credentials,
        request_id: &str,
        request: &[u8],
    ) -> Result<(Organization, String)> {
        cwsm_platform::credit_code::check("credit_code", credit_code)?;
        let key = RequestKey::from_bytes(
            &anonymous(),
            "RegisterOrganization",
            credit_code,
            request_id,
            request,
        )?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > cwsm_platform::input::MAX_NAME {
            return Err(Error::invalid("name", "required, at most 200 characters"));
        }
        let (jurisdiction, department) = self.place(kind, place)?;
        if let Some(person_id) = idempotency::recorded(self.db(), &key).await? {
            return self
                .registered_before(credit_code, &person_id, registrant)
                .await;
        }
        if self.store.organization(credit_code).await?.is_some() {
            return Err(Error::AlreadyExists(format!(
                "organization {credit_code} is registered already"
            )));
        }
        let joiner = self.joiner(registrant, "registrant").await?;
        let now = now_ms();
        let org = Organization {
            credit_code: credit_code.to_string(),
            name: name.to_string(),
            kind,
            status: Status::Pending,
            status_reason: String::new(),
            version: 1,
            registered_at_ms: now,
            reviewed_at_ms: None,
            reviewed_by: String::new(),
            jurisdiction,
            department,
        };
        let audit = AuditEvent::new(
            now,
            joiner.id(),
            "register",
            credit_code,
            &format!(
                "{} {name} in {}{}",
                kind.as_str(),
                org.jurisdiction,
                org.department
                    .as_deref()
                    .map(|d| format!(", department {d}"))
                    .unwrap_or_default()
            ),
        );
        let person_id = self
            .store
            .register(&key, &org, &joiner, kind.role().as_str(), &audit)
            .await?;
        if person_id != joiner.id() {
            // A retry that raced the first call: answered as a retry.
            return self
                .registered_before(credit_code, &person_id, registrant)
                .await;
        }
        Ok((org, person_id))
    }

    /// Where an organization registers: its jurisdiction (the platform's district when none
    /// is given) and, for a district office's department, the department.
    fn place(&self, kind: Kind, place: &Place<'_>) -> Result<(Jurisdiction, Option<String>)> {
        let jurisdiction = if place.jurisdiction.trim().is_empty() {
            self.options.district.clone()
        } else {
            Jurisdiction::parse("jurisdiction", place.jurisdiction)?
        };
        let department = cwsm_platform::jurisdiction::department("department", place.department)?;
        if department.is_some() && kind != Kind::DistrictOffice {
            return Err(Error::invalid(
                "department",
                format!(
                    "only a district office's department names a department, not a {}",
                    kind.as_str()
                ),
            ));
        }
        Ok((jurisdiction, department))
    }

    /// The organization `code` for a review by `p`: an administrator of its jurisdiction
    /// (reviews are the district office's, not a department's).
    async fn for_review(&self, p: &Principal, code: &str, act: &str) -> Result<Organization> {
        p.require_admin(&format!("{act} organizations"))?;
        let org = self
            .store
            .organization(code)
            .await?
            .ok_or_else(|| Error::not_found("organization", code))?;
        p.require_administer(
            &format!("{act} organization {code}"),
            &org.jurisdiction,
            None,
        )?;
        Ok(org)
    }

    /// The answer to a retried registration: the organization as it is now and its first
    /// member, once the retry has proved that member's password.
    async fn registered_before(
        &self,
        credit_code: &str,
        person_id: &str,
        registrant: &Credentials,
    ) -> Result<(Organization, String)> {
        self.prove_password_of(person_id, registrant, "registrant")
            .await?;
        let org = self
            .store
            .organization(credit_code)
            .await?
            .ok_or_else(|| Error::not_found("organization", credit_code))?;
        Ok((org, person_id.to_string()))
    }

    /// A retry of a request that made `person_id` join proves it is theirs: the password of
    /// `creds` is theirs (counted and locked like a sign-in).
    async fn prove_password_of(
        &self,
        person_id: &str,
        creds: &Credentials,
        prefix: &str,
    ) -> Result<()> {
        let login = normalize_login(&format!("{prefix}.login"), &creds.login)?;
        let person = self
            .store
            .person(person_id)
            .await?
            .filter(|p| p.login == login);
        self.check_password_of(
            &login,
            &creds.password,
            person.map(|p| p.password_hash),
            "retry",
        )
        .await
    }

    /// Approves a pending or suspended organization (`note` for the audit log).
    pub async fn approve(
        &self,
        p: &Principal,
        code: &str,
        note: &str,
        expected: i64,
    ) -> Result<Organization> {
        self.change_status(p, code, Status::Approved, note, expected)
            .await
    }

    /// Suspends a pending or approved organization, with a reason.
    pub async fn suspend(
        &self,
        p: &Principal,
        code: &str,
        reason: &str,
        expected: i64,
    ) -> Result<Organization> {
        self.change_status(p, code, Status::Suspended, reason, expected)
            .await
    }

    /// The one status change of an organization, by an administrator: approved from pending or
    /// suspended (`why` an optional note), suspended from pending or approved (`why` the
    /// required reason, kept on the organization). Audited; the revocation list follows.
    async fn change_status(
        &self,
        p: &Principal,
        code: &str,
        to: Status,
        why: &str,
        expected: i64,
    ) -> Result<Organization> {
        let (action, from, field): (&str, &[Status], &str) = match to {
            Status::Approved => ("approve", &[Status::Pending, Status::Suspended], "note"),
            Status::Suspended => ("suspend", &[Status::Pending, Status::Approved], "reason"),
            Status::Pending => {
                return Err(Error::precondition(
                    "an organization is pending only until its first review",
                ));
            }
        };
        self.for_review(p, code, action).await?;
        let why = why.trim();
        cwsm_platform::input::check_len(field, why, cwsm_platform::input::MAX_TEXT)?;
        if to == Status::Suspended && why.is_empty() {
            return Err(Error::invalid(
                field,
                "required: why the organization is suspended",
            ));
        }
        let reason = if to == Status::Suspended { why } else { "" };
        let audit = AuditEvent::new(now_ms(), &p.subject, action, code, why);
        let org = self
            .store
            .set_status(code, from, to, reason, expected, &p.subject, &audit)
            .await?;
        self.publish().await;
        Ok(org)
    }

    /// An organization, for its members and the administrators of its jurisdiction (others:
    /// NOT_FOUND, so that membership of codes is not probed).
    pub async fn organization(&self, p: &Principal, code: &str) -> Result<Organization> {
        match self.store.organization(code).await? {
            Some(org)
                if p.is(org.kind.role(), code) || p.may_administer(&org.jurisdiction, None) =>
            {
                Ok(org)
            }
            _ => Err(Error::not_found("organization", code)),
        }
    }

    pub async fn organizations(
        &self,
        p: &Principal,
        status: Option<Status>,
        page: &Page,
    ) -> Result<(Vec<Organization>, String)> {
        let within = p.administered_range("list organizations", None)?;
        let mut rows = self
            .store
            .organizations(status, within.as_ref(), page)
            .await?;
        let next = page.finish(&mut rows, |o| o.credit_code.clone());
        Ok((rows, next))
    }

    // -- memberships --------------------------------------------------------------------------

    /// An invitation to join `code`, once per request id: the code and when it expires. A
    /// retry gets the same invitation without its code (shown once: only its hash is kept),
    /// and `true` for "replayed".
    pub async fn invite(
        &self,
        p: &Principal,
        code: &str,
        valid_hours: i32,
        request_id: &str,
        request: &[u8],
    ) -> Result<(String, i64, bool)> {
        let key = RequestKey::from_bytes(p, "CreateInvitation", code, request_id, request)?;
        refuse_api_key(p, "invite members")?;
        let org = self.organization(p, code).await?;
        if org.status != Status::Approved && !p.is_admin() {
            return Err(Error::denied(format!(
                "organization {code} is {}: only an approved organization invites members",
                org.status.as_str()
            )));
        }
        let hours = match valid_hours {
            0 => 72,
            h if (1..=168).contains(&h) => i64::from(h),
            _ => return Err(Error::invalid("valid_hours", "1 to 168 (0: 72)")),
        };
        let invitation = secret("inv_")?;
        let hash = sha256_hex(&invitation);
        let now = now_ms();
        let expires = now.saturating_add(hours.saturating_mul(3_600_000));
        let audit = AuditEvent::new(now, &p.subject, "invite", code, &format!("valid {hours} h"));
        let stored = self
            .store
            .create_invitation(&key, &hash, code, org.kind.role().as_str(), expires, &audit)
            .await?;
        if stored == hash {
            return Ok((invitation, expires, false));
        }
        let (expires, _, _) = self
            .store
            .invitation_by_hash(&stored)
            .await?
            .ok_or_else(|| Error::not_found("invitation", "of this request"))?;
        Ok((String::new(), expires, true))
    }

    /// Redeems an invitation, once per request id (`request` without the password, as for
    /// [`Accounts::register`]): the person and their new membership.
    pub async fn accept(
        &self,
        invitation: &str,
        creds: &Credentials,
        request_id: &str,
        request: &[u8],
    ) -> Result<(String, Membership)> {
        cwsm_platform::input::check_len("code", invitation, cwsm_platform::input::MAX_CODE)?;
        let hash = sha256_hex(invitation.trim());
        // The target is the code's hash: the code itself is kept nowhere.
        let key =
            RequestKey::from_bytes(&anonymous(), "AcceptInvitation", &hash, request_id, request)?;
        if let Some(person_id) = idempotency::recorded(self.db(), &key).await? {
            return self.accepted_before(&hash, &person_id, creds).await;
        }
        let Some((code, role)) = self.store.invitation(&hash, now_ms()).await? else {
            return Err(Error::not_found(
                "invitation",
                "with this code (used or expired)",
            ));
        };
        let joiner = self.joiner(creds, "person").await?;
        let now = now_ms();
        let audit = AuditEvent::new(now, joiner.id(), "join", &code, &role);
        let person_id = self
            .store
            .accept_invitation(&key, &hash, &joiner, &code, &role, &audit)
            .await?;
        if person_id != joiner.id() {
            return self.accepted_before(&hash, &person_id, creds).await;
        }
        self.publish().await;
        let display_name = self
            .store
            .display_name(joiner.id())
            .await?
            .unwrap_or_default();
        Ok((
            joiner.id().to_string(),
            Membership {
                person_id: joiner.id().to_string(),
                display_name,
                credit_code: code,
                role,
                joined_at_ms: now,
            },
        ))
    }

    /// The answer to a retried redemption, once the retry proved the person's password.
    async fn accepted_before(
        &self,
        hash: &str,
        person_id: &str,
        creds: &Credentials,
    ) -> Result<(String, Membership)> {
        self.prove_password_of(person_id, creds, "person").await?;
        let (_, code, _) = self
            .store
            .invitation_by_hash(hash)
            .await?
            .ok_or_else(|| Error::not_found("invitation", "with this code"))?;
        let membership = self
            .store
            .membership(person_id, &code)
            .await?
            .ok_or_else(|| Error::not_found("membership", format!("{person_id} of {code}")))?;
        Ok((person_id.to_string(), membership))
    }

    pub async fn members(&self, p: &Principal, code: &str) -> Result<Vec<Membership>> {
        self.organization(p, code).await?;
        self.store.members(code).await
    }

    pub async fn remove_member(&self, p: &Principal, code: &str, person_id: &str) -> Result<()> {
        refuse_api_key(p, "remove members")?;
        self.organization(p, code).await?;
        let audit = AuditEvent::new(now_ms(), &p.subject, "remove_member", code, person_id);
        if !self.store.remove_member(person_id, code, &audit).await? {
            return Err(Error::not_found(
                "membership",
                format!("{person_id} of {code}"),
            ));
        }
        self.publish().await;
        Ok(())
    }

    // -- sign-in and sessions -----------------------------------------------------------------

    /// Tokens for `person_id` acting for `org` in `role`, in `session_id`.
    #[allow(clippy::too_many_arguments)]
    async fn tokens(
        &self,
        person_id: &str,
        org: &Organization,
        role: Role,
        session_id: &str,
        refresh_token: String,
        refresh_expires: i64,
        now: i64,
    ) -> Result<Tokens> {
        let exp_ms = now.saturating_add(ms(self.options.access_ttl));
        Ok(Tokens {
            access_token: self.access_token(person_id, org, role, session_id, now, exp_ms)?,
            access_expires_at_ms: exp_ms,
            refresh_token,
            refresh_expires_at_ms: refresh_expires,
            person_id: person_id.to_string(),
            credit_code: org.credit_code.clone(),
            role,
            status: org.status,
            jurisdiction: org.jurisdiction.clone(),
            department: org.department.clone(),
        })
    }

    /// A signed access token for `subject` acting for `org` in `role`, in `session_id`, from
    /// `now` until `exp_ms` (both milliseconds).
    fn access_token(
        &self,
        subject: &str,
        org: &Organization,
        role: Role,
        session_id: &str,
        now: i64,
        exp_ms: i64,
    ) -> Result<String> {
        self.sign(&AccessClaims {
            sub: subject.to_string(),
            role,
            org: org.credit_code.clone(),
            approved: org.status == Status::Approved,
            sid: session_id.to_string(),
            jur: org.jurisdiction.to_string(),
            dept: org.department.clone(),
            iat: now / 1000,
            exp: exp_ms / 1000,
            iss: ACCOUNTS_ISSUER.to_string(),
            aud: ACCESS_AUDIENCE.to_string(),
        })
    }

    /// Why `org` may not have a session, if it may not.
    fn refuse_suspended(org: &Organization) -> Result<()> {
        if org.status == Status::Suspended {
            return Err(Error::denied(format!(
                "organization {} is suspended: {}",
                org.credit_code, org.status_reason
            )));
        }
        Ok(())
    }

    pub async fn sign_in(&self, login: &str, password: &str, credit_code: &str) -> Result<Tokens> {
        if password.chars().count() > MAX_PASSWORD {
            return Err(unauthenticated());
        }
        let login = match normalize_login("login", login) {
            Ok(l) => l,
            // Not a login at all: the same answer, and as slow.
            Err(_) => {
                let _ = self.hasher.verify(password.to_string(), None).await?;
                return Err(unauthenticated());
            }
        };
        let person = self.store.person_by_login(&login).await?;
        self.check_password_of(
            &login,
            password,
            person.as_ref().map(|p| p.password_hash.clone()),
            "sign_in",
        )
        .await?;
        let person = person.ok_or_else(unauthenticated)?;
        // The password was right: from here on the person may learn about their memberships.
        self.open_session(&person.id, credit_code, "password").await
    }

    /// A session for a person who proved who they are (`via`: "password", "oidc:NAME"), for
    /// `credit_code` or their only organization: the membership and the organization are
    /// checked, the sign-in audited with the session's start.
    async fn open_session(&self, person_id: &str, credit_code: &str, via: &str) -> Result<Tokens> {
        // Whichever way they proved who they are, a suspended person gets no session.
        if let Some(person) = self.store.person(person_id).await? {
            refuse_suspended_person(&person)?;
        }
        let memberships = self.store.memberships_of(person_id).await?;
        let code = if credit_code.is_empty() {
            match memberships.as_slice() {
                [only] => only.clone(),
                [] => return Err(Error::denied("the account is a member of no organization")),
                many => {
                    return Err(Error::invalid(
                        "credit_code",
                        format!("the account is a member of {}: choose one", many.join(", ")),
                    ));
                }
            }
        } else if memberships.iter().any(|m| m == credit_code) {
            credit_code.to_string()
        } else {
            return Err(Error::denied(format!(
                "the account is not a member of {credit_code}"
            )));
        };
        let org = self
            .store
            .organization(&code)
            .await?
            .ok_or_else(|| Error::not_found("organization", &code))?;
        Self::refuse_suspended(&org)?;
        let role = self.role_of(person_id, &code).await?;
        let now = now_ms();
        let session = new_id();
        let refresh = secret("rt_")?;
        let refresh_expires = now.saturating_add(ms(self.options.refresh_ttl));
        let hash = sha256_hex(&refresh);
        self.store
            .start_session(
                &NewRefresh {
                    token_hash: &hash,
                    session_id: &session,
                    person_id,
                    credit_code: &code,
                    issued_at_ms: now,
                    expires_at_ms: refresh_expires,
                },
                &AuditEvent::new(
                    now,
                    person_id,
                    "sign_in",
                    &code,
                    &format!("{} via {via}", role.as_str()),
                ),
            )
            .await?;
        self.tokens(
            person_id,
            &org,
            role,
            &session,
            refresh,
            refresh_expires,
            now,
        )
        .await
    }

    async fn role_of(&self, person_id: &str, code: &str) -> Result<Role> {
        let role = self
            .store
            .membership_role(person_id, code)
            .await?
            .ok_or_else(|| Error::Unauthenticated("the membership was removed".into()))?;
        Role::parse(&role)
            .filter(|r| *r != Role::Service)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("membership with role {role:?}")))
    }

    pub async fn refresh_tokens(&self, refresh_token: &str) -> Result<Tokens> {
        let refused = || Error::Unauthenticated("refresh token not valid: sign in again".into());
        if refresh_token.len() > cwsm_platform::input::MAX_CODE {
            return Err(refused());
        }
        let hash = sha256_hex(refresh_token.trim());
        let Some(row) = self.store.refresh_row(&hash).await? else {
            return Err(refused());
        };
        let now = now_ms();
        // Said before "revoked" (a suspension revokes the sessions too): the holder of a
        // refresh token is the person, who may learn why.
        if let Some(person) = self.store.person(&row.person_id).await?
            && person.suspended_at_ms.is_some()
        {
            return Err(Error::Unauthenticated(format!(
                "the account is suspended: {}; an administrator may reinstate it",
                person.suspended_reason
            )));
        }
        if row.revoked_at_ms.is_some() {
            return Err(refused());
        }
        if row.used_at_ms.is_some() {
            // A used-up token again: stolen, or a client that kept an old copy. Either way the
            // whole session ends, the thief's tokens with the owner's.
            self.store
                .revoke_sessions(
                    std::slice::from_ref(&row.session_id),
                    &AuditEvent::new(
                        now,
                        &row.person_id,
                        "refresh_reused",
                        &row.credit_code,
                        &row.session_id,
                    ),
                )
                .await?;
            self.publish().await;
            return Err(Error::Unauthenticated(
                "refresh token used already: the session is revoked; sign in again".into(),
            ));
        }
        if row.expires_at_ms <= now {
            return Err(refused());
        }
        let org = self
            .store
            .organization(&row.credit_code)
            .await?
            .ok_or_else(refused)?;
        let end = |why: &'static str| {
            AuditEvent::new(now, &row.person_id, "session_ended", &row.credit_code, why)
        };
        if let Err(e) = Self::refuse_suspended(&org) {
            self.store
                .revoke_sessions(
                    std::slice::from_ref(&row.session_id),
                    &end("organization suspended"),
                )
                .await?;
            return Err(e);
        }
        let role = match self.role_of(&row.person_id, &row.credit_code).await {
            Ok(role) => role,
            Err(e) => {
                self.store
                    .revoke_sessions(
                        std::slice::from_ref(&row.session_id),
                        &end("membership removed"),
                    )
                    .await?;
                return Err(e);
            }
        };
        let refresh = secret("rt_")?;
        let refresh_expires = now.saturating_add(ms(self.options.refresh_ttl));
        let new_hash = sha256_hex(&refresh);
        let rotated = self
            .store
            .rotate(
                &hash,
                &NewRefresh {
                    token_hash: &new_hash,
                    session_id: &row.session_id,
                    person_id: &row.person_id,
                    credit_code: &row.credit_code,
                    issued_at_ms: now,
                    expires_at_ms: refresh_expires,
                },
            )
            .await?;
        if !rotated {
            // A concurrent refresh used it first: this is a second use.
            return Err(refused());
        }
        self.tokens(
            &row.person_id,
            &org,
            role,
            &row.session_id,
            refresh,
            refresh_expires,
            now,
        )
        .await
    }

    pub async fn sign_out(&self, refresh_token: &str) -> Result<()> {
        if refresh_token.len() > cwsm_platform::input::MAX_CODE {
            return Ok(());
        }
        if let Some(row) = self
            .store
            .refresh_row(&sha256_hex(refresh_token.trim()))
            .await?
        {
            self.store
                .revoke_sessions(
                    std::slice::from_ref(&row.session_id),
                    &AuditEvent::new(
                        now_ms(),
                        &row.person_id,
                        "sign_out",
                        &row.credit_code,
                        &row.session_id,
                    ),
                )
                .await?;
            self.publish().await;
        }
        Ok(())
    }

    /// Ends every session of the person `claims` names, the current one included.
    pub async fn sign_out_everywhere(&self, claims: &AccessClaims) -> Result<u64> {
        if claims.sub.starts_with(API_KEY_SUBJECT) {
            return Err(Error::precondition(
                "an API key's token has no sessions to end: revoke the key (RevokeApiKey)",
            ));
        }
        let mut sessions = self.store.live_sessions(&claims.sub).await?;
        if !sessions.contains(&claims.sid) {
            sessions.push(claims.sid.clone());
        }
        let n = self
            .store
            .revoke_sessions(
                &sessions,
                &AuditEvent::new(
                    now_ms(),
                    &claims.sub,
                    "sign_out_everywhere",
                    &claims.org,
                    &format!("{} sessions", sessions.len()),
                ),
            )
            .await?;
        self.publish().await;
        Ok(n)
    }

    // -- suspended people ---------------------------------------------------------------------

    async fn standing(&self, person_id: &str) -> Result<PersonStanding> {
        self.store
            .person(person_id)
            .await?
            .map(PersonStanding::from)
            .ok_or_else(|| Error::not_found("person", person_id))
    }

    /// PERMISSION_DENIED unless `p` administers every organization the person belongs to (its
    /// jurisdiction, as for reviewing it): a district's administrator may not stop a person who
    /// also acts for another district's organization. A person without memberships belongs to
    /// no jurisdiction: only the platform's operators.
    async fn require_administer_person(
        &self,
        p: &Principal,
        act: &str,
        person_id: &str,
    ) -> Result<()> {
        let codes = self.store.memberships_of(person_id).await?;
        if codes.is_empty() {
            return p.require_platform_admin(&format!(
                "{act} person {person_id}, who belongs to no organization"
            ));
        }
        for code in codes {
            let Some(org) = self.store.organization(&code).await? else {
                continue;
            };
            p.require_administer(
                &format!("{act} person {person_id}, a member of organization {code}"),
                &org.jurisdiction,
                None,
            )?;
        }
        Ok(())
    }

    /// Suspends a person (administrators of every organization they belong to): no sign-in or
    /// refresh, their sessions end and their tokens stop (here at once, elsewhere at the next
    /// revocation refresh). A person suspended already stays as they are.
    pub async fn suspend_person(
        &self,
        p: &Principal,
        person_id: &str,
        reason: &str,
    ) -> Result<PersonStanding> {
        p.require_admin("suspend people")?;
        let reason = reason.trim();
        cwsm_platform::input::check_len("reason", reason, cwsm_platform::input::MAX_TEXT)?;
        if reason.is_empty() {
            return Err(Error::invalid(
                "reason",
                "required: why the person is suspended",
            ));
        }
        if p.subject == person_id {
            return Err(Error::precondition(
                "administrators cannot suspend themselves: another administrator may",
            ));
        }
        self.standing(person_id).await?;
        self.require_administer_person(p, "suspend", person_id)
            .await?;
        let audit = AuditEvent::new(now_ms(), &p.subject, "suspend_person", person_id, reason);
        if self.store.suspend_person(person_id, reason, &audit).await? {
            self.publish().await;
        }
        self.standing(person_id).await
    }

    /// Lifts a person's suspension (administrators of every organization they belong to);
    /// their old sessions stay ended.
    pub async fn reinstate_person(&self, p: &Principal, person_id: &str) -> Result<PersonStanding> {
        p.require_admin("reinstate people")?;
        self.standing(person_id).await?;
        self.require_administer_person(p, "reinstate", person_id)
            .await?;
        let audit = AuditEvent::new(now_ms(), &p.subject, "reinstate_person", person_id, "");
        if self.store.reinstate_person(person_id, &audit).await? {
            self.publish().await;
        }
        self.standing(person_id).await
    }

    // -- API keys -----------------------------------------------------------------------------

    /// A new API key of `code` in its role, valid `valid_days` (0: 90, at most 366), once per
    /// request id. For members of the approved organization and administrators; not for a
    /// district office (an administrator acts in person) nor with an API key's token.
    pub async fn create_api_key(
        &self,
        p: &Principal,
        code: &str,
        name: &str,
        valid_days: i32,
        request_id: &str,
        request: &[u8],
    ) -> Result<NewApiKey> {
        let key = RequestKey::from_bytes(p, "CreateApiKey", code, request_id, request)?;
        refuse_api_key(p, "create API keys")?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > cwsm_platform::input::MAX_NAME {
            return Err(Error::invalid(
                "name",
                "required (what the key is for), at most 200 characters",
            ));
        }
        let days = match valid_days {
            0 => DEFAULT_API_KEY_DAYS,
            d if (1..=MAX_API_KEY_DAYS).contains(&d) => d,
            _ => {
                return Err(Error::invalid(
                    "valid_days",
                    format!("1 to {MAX_API_KEY_DAYS} (0: {DEFAULT_API_KEY_DAYS})"),
                ));
            }
        };
        let org = self.organization(p, code).await?;
        if org.kind == Kind::DistrictOffice {
            return Err(Error::denied(
                "API keys act for companies, water users and verifier bodies; a district office's \
                 administrators act in person",
            ));
        }
        if org.status != Status::Approved {
            return Err(Error::denied(format!(
                "organization {code} is {}: only an approved organization has API keys",
                org.status.as_str()
            )));
        }
        let id = new_id();
        // 256 bits from the OS, base64url: `cwsm_ak_<id>_<secret>`.
        let api_key = secret(&format!("{API_KEY_PREFIX}{id}_"))?;
        let now = now_ms();
        let row = ApiKeyRow {
            id: id.clone(),
            name: name.to_string(),
            credit_code: code.to_string(),
            role: org.kind.role().as_str().to_string(),
            created_by: p.subject.clone(),
            created_at_ms: now,
            expires_at_ms: now.saturating_add(i64::from(days).saturating_mul(86_400_000)),
            revoked_at_ms: None,
            revoked_by: String::new(),
            last_used_at_ms: None,
        };
        let audit = AuditEvent::new(
            now,
            &p.subject,
            "create_api_key",
            &id,
            &format!("{code} {}: {name}, {days} days", row.role),
        );
        let stored = self
            .store
            .create_api_key(
                &key,
                &row,
                &api_key_hash(&api_key),
                MAX_LIVE_API_KEYS,
                &audit,
            )
            .await?;
        if stored == id {
            return Ok(NewApiKey {
                key: row,
                api_key,
                replayed: false,
            });
        }
        let key = self
            .store
            .api_key(&stored)
            .await?
            .ok_or_else(|| Error::not_found("API key", &stored))?;
        Ok(NewApiKey {
            key,
            api_key: String::new(),
            replayed: true,
        })
    }

    /// The API keys of `code`, for its members and administrators.
    pub async fn api_keys(
        &self,
        p: &Principal,
        code: &str,
        page: &Page,
    ) -> Result<(Vec<ApiKeyRow>, String)> {
        self.organization(p, code).await?;
        let mut rows = self.store.api_keys(code, page).await?;
        let next = page.finish(&mut rows, |k| k.id.clone());
        Ok((rows, next))
    }

    /// Revokes an API key (members of its organization and administrators; to others it does
    /// not exist). Its tokens stop here at once and elsewhere at the next revocation refresh.
    pub async fn revoke_api_key(&self, p: &Principal, id: &str) -> Result<ApiKeyRow> {
        let not_found = || Error::not_found("API key", id);
        let key = self.store.api_key(id).await?.ok_or_else(not_found)?;
        self.organization(p, &key.credit_code)
            .await
            .map_err(|_| not_found())?;
        refuse_api_key(p, "revoke API keys")?;
        let audit = AuditEvent::new(
            now_ms(),
            &p.subject,
            "revoke_api_key",
            id,
            &format!("{} {}", key.credit_code, key.name),
        );
        if self.store.revoke_api_key(id, &audit).await? {
            self.publish().await;
        }
        self.store.api_key(id).await?.ok_or_else(not_found)
    }

    /// An access token for an API key: the key's organization in its role, in the key's
    /// session, for at most the access-token lifetime and never beyond the key's expiry. Every
    /// refusal is the one UNAUTHENTICATED answer ([`API_KEY_REFUSED`]); the audit log says why.
    pub async fn exchange_api_key(&self, api_key: &str) -> Result<Exchanged> {
        let api_key = api_key.trim();
        let now = now_ms();
        let found = if api_key.len() > cwsm_platform::input::MAX_CODE {
            None
        } else {
            self.store.api_key_by_hash(&api_key_hash(api_key)).await?
        };
        let org = match &found {
            Some(k) => self.store.organization(&k.credit_code).await?,
            None => None,
        };
        let refusal = match (&found, &org) {
            (None, _) => Some("unknown key"),
            (Some(k), _) if k.revoked_at_ms.is_some() => Some("revoked"),
            (Some(k), _) if k.expires_at_ms <= now => Some("expired"),
            (Some(_), Some(o)) if o.status == Status::Suspended => Some("organization suspended"),
            (Some(_), None) => Some("organization unknown"),
            (Some(_), Some(_)) => None,
        };
        let role = found
            .as_ref()
            .and_then(|k| Role::parse(&k.role))
            .filter(|r| *r != Role::Service);
        let (Some(key), Some(org), Some(role), None) = (&found, org, role, refusal) else {
            let target = match (&found, api_key_id(api_key)) {
                (Some(k), _) => k.id.clone(),
                (None, Some(id)) => format!("api_key:{id}"),
                (None, None) => "api_key:malformed".to_string(),
            };
            let audit = AuditEvent::new(
                now,
                "anonymous",
                "api_key_refused",
                &target,
                refusal.unwrap_or("a role no key has"),
            );
            self.store.audit(&audit).await?;
            return Err(Error::Unauthenticated(API_KEY_REFUSED.to_string()));
        };
        let exp_ms = now
            .saturating_add(ms(self.options.access_ttl))
            .min(key.expires_at_ms);
        let access_token = self.access_token(
            &format!("{API_KEY_SUBJECT}{}", key.id),
            &org,
            role,
            &key.id,
            now,
            exp_ms,
        )?;
        self.store.api_key_used(&key.id, now).await?;
        Ok(Exchanged {
            access_token,
            expires_at_ms: exp_ms,
            key_id: key.id.clone(),
            credit_code: org.credit_code.clone(),
            role,
            status: org.status,
        })
    }

    // -- keys and audit -----------------------------------------------------------------------

    pub async fn rotate_key(&self, p: &Principal) -> Result<(String, i64)> {
        p.require_platform_admin("rotate the signing key")?;
        let now = now_ms();
        let from = now.saturating_add(ms(self.options.key_publish_delay));
        let key = StoredKey::generate(now, from)?;
        let audit = AuditEvent::new(
            now,
            &p.subject,
            "rotate_key",
            &key.kid,
            &format!("signs from {from}"),
        );
        self.store.add_key(&key, Some(&audit)).await?;
        self.publish().await;
        Ok((key.kid, from))
    }

    pub async fn audit_events(
        &self,
        p: &Principal,
        action: &str,
        page: &Page,
    ) -> Result<(Vec<AuditEvent>, String)> {
        let within = p.administered_range("read the audit log", None)?;
        cwsm_platform::input::check_len("action", action, cwsm_platform::input::MAX_CODE)?;
        let mut rows = self
            .store
            .audit_events(action, within.as_ref(), page)
            .await?;
        let next = page.finish(&mut rows, |e| e.id.clone());
        Ok((rows, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_normalized() {
        assert_eq!(
            normalize_login("l", " Li.Wei@Example.CN ").ok().as_deref(),
            Some("li.wei@example.cn")
        );
        assert_eq!(
            normalize_login("l", "+86 138-0013-8000").ok().as_deref(),
            Some("+8613800138000")
        );
        assert!(normalize_login("l", "li wei").is_err());
        assert!(normalize_login("l", "").is_err());
    }

    #[test]
    fn api_keys_name_their_id_and_carry_256_random_bits() -> Result<()> {
        let id = new_id();
        let key = secret(&format!("{API_KEY_PREFIX}{id}_"))?;
        assert_eq!(api_key_id(&key), Some(id.as_str()));
        // 32 bytes in base64url without padding: 43 characters after the id's underscore.
        assert_eq!(key.len(), API_KEY_PREFIX.len() + 36 + 1 + 43);
        assert_ne!(key, secret(&format!("{API_KEY_PREFIX}{id}_"))?);
        // Strangers' text is not taken for an id.
        assert_eq!(api_key_id("cwsm_ak_<script>_x"), None);
        assert_eq!(api_key_id("hello"), None);
        Ok(())
    }
}
