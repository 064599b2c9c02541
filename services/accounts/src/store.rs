//! Accounts' tables, on SQLite or PostgreSQL: one body of SQL for both engines (see
//! `cwsm_platform::db`). Every change and its audit entry commit in one transaction.

use cwsm_platform::db::{BeginWrite, Db, is_unique_violation};
use cwsm_platform::grpc::Page;
use cwsm_platform::idempotency::RequestKey;
use cwsm_platform::jurisdiction::Jurisdiction;
use cwsm_platform::{Error, Result, keyed_write, new_id, with_db};

use crate::keys::StoredKey;
use crate::{Kind, Membership, Organization, Status};

pub static MIGRATIONS: cwsm_platform::db::Migrations = cwsm_platform::db::Migrations {
    sqlite: &sqlx::migrate!("migrations/sqlite"),
    postgres: &sqlx::migrate!("migrations/postgres"),
};

#[derive(Clone, Debug)]
pub struct Store {
    pub db: Db,
}

/// An audit entry to write with a change.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEvent {
    pub id: String,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

impl AuditEvent {
    pub fn new(at_ms: i64, actor: &str, action: &str, target: &str, detail: &str) -> AuditEvent {
        AuditEvent {
            id: new_id(),
            at_ms,
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            detail: detail.to_string(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct OrgRow {
    credit_code: String,
    name: String,
    kind: String,
    status: String,
    status_reason: String,
    version: i64,
    registered_at_ms: i64,
    reviewed_at_ms: Option<i64>,
    reviewed_by: String,
    jurisdiction: String,
    department: String,
}

impl TryFrom<OrgRow> for Organization {
    type Error = Error;
    fn try_from(r: OrgRow) -> Result<Organization> {
        let bad = |what: &str| {
            Error::Internal(anyhow::anyhow!(
                "organization {} has an unknown {what}",
                r.credit_code
            ))
        };
        Ok(Organization {
            kind: Kind::parse(&r.kind).ok_or_else(|| bad("kind"))?,
            status: Status::parse(&r.status).ok_or_else(|| bad("status"))?,
            jurisdiction: Jurisdiction::parse("jurisdiction", &r.jurisdiction)
                .map_err(|_| bad("jurisdiction"))?,
            department: (!r.department.is_empty()).then_some(r.department),
            credit_code: r.credit_code,
            name: r.name,
            status_reason: r.status_reason,
            version: r.version,
            registered_at_ms: r.registered_at_ms,
            reviewed_at_ms: r.reviewed_at_ms,
            reviewed_by: r.reviewed_by,
        })
    }
}

const ORG_COLUMNS: &str = "credit_code, name, kind, status, status_reason, version, registered_at_ms, reviewed_at_ms, reviewed_by, jurisdiction, department";

/// A person as the sign-in needs them.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Person {
    pub id: String,
    pub login: String,
    pub password_hash: String,
    pub display_name: String,
    /// Set while an administrator has the person suspended.
    pub suspended_at_ms: Option<i64>,
    pub suspended_reason: String,
    pub suspended_by: String,
}

const PERSON_COLUMNS: &str =
    "id, login, password_hash, display_name, suspended_at_ms, suspended_reason, suspended_by";

/// An API key's row: everything but the secret, which is kept as its hash only.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub credit_code: String,
    pub role: String,
    pub created_by: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub revoked_by: String,
    pub last_used_at_ms: Option<i64>,
}

const API_KEY_COLUMNS: &str = "id, name, credit_code, role, created_by, created_at_ms, expires_at_ms, revoked_at_ms, revoked_by, last_used_at_ms";

/// Who registers or accepts an invitation: an existing person (password checked before) or a
/// new one.
#[derive(Clone, Debug)]
pub enum Joiner {
    Existing(String),
    New {
        id: String,
        login: String,
        password_hash: String,
        display_name: String,
    },
}

impl Joiner {
    pub fn id(&self) -> &str {
        match self {
            Joiner::Existing(id) => id,
            Joiner::New { id, .. } => id,
        }
    }
}

/// A refresh token's row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RefreshRow {
    pub session_id: String,
    pub person_id: String,
    pub credit_code: String,
    pub expires_at_ms: i64,
    pub used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// A new refresh token to store.
pub struct NewRefresh<'a> {
    pub token_hash: &'a str,
    pub session_id: &'a str,
    pub person_id: &'a str,
    pub credit_code: &'a str,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
}

/// An identity at an external OpenID provider, linked to a person.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ExternalIdentity {
    pub issuer: String,
    pub subject: String,
    pub provider: String,
    pub person_id: String,
    pub email: String,
    pub linked_at_ms: i64,
    pub linked_by: String,
}

/// A sign-in through an external provider, started and not yet completed.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ExternalSignIn {
    pub provider: String,
    pub redirect_uri: String,
    pub nonce: String,
    pub code_verifier: String,
    pub expires_at_ms: i64,
}

const IDENTITY_COLUMNS: &str =
    "issuer, subject, provider, person_id, email, linked_at_ms, linked_by";

/// What the failure counter said about a login.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Failures {
    pub failures: i64,
    pub first_failure_at_ms: i64,
    pub locked_until_ms: i64,
}

macro_rules! audit {
    ($tx:expr, $e:expr) => {{
        let e: &AuditEvent = $e;
        sqlx::query("INSERT INTO audit_events (id, at_ms, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&e.id).bind(e.at_ms).bind(&e.actor).bind(&e.action).bind(&e.target).bind(&e.detail)
            .execute(&mut *$tx).await?;
    }};
}

macro_rules! insert_joiner {
    ($tx:expr, $joiner:expr, $now:expr) => {{
        if let Joiner::New { id, login, password_hash, display_name } = $joiner {
            let r = sqlx::query("INSERT INTO people (id, login, password_hash, display_name, created_at_ms) VALUES ($1, $2, $3, $4, $5)")
                .bind(id).bind(login).bind(password_hash).bind(display_name).bind($now)
                .execute(&mut *$tx).await;
            if let Err(e) = r {
                // Two registrations of one new login at once: the second is told what a
                // wrong password is told, so nothing about the login leaks.
                return Err(if is_unique_violation(&e) { Error::Unauthenticated(crate::SIGN_IN_REFUSED.to_string()) } else { e.into() });
            }
        }
    }};
}

impl Store {
    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        Ok(Store {
            db: Db::connect(url, "accounts", &MIGRATIONS).await?,
        })
    }

    /// Gives organizations registered before jurisdictions (migration 0004 left them '') the
    /// platform's district: there was only one. Returns how many.
    pub async fn settle_jurisdictions(&self, district: &Jurisdiction) -> Result<u64> {
        Ok(with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query("UPDATE organizations SET jurisdiction = $1 WHERE jurisdiction = ''")
                .bind(district.as_str()).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            n
        }))
    }

    pub async fn person_by_login(&self, login: &str) -> Result<Option<Person>> {
        let sql = format!("SELECT {PERSON_COLUMNS} FROM people WHERE login = $1");
        Ok(
            with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(login).fetch_optional(pool).await?),
        )
    }

    pub async fn person(&self, id: &str) -> Result<Option<Person>> {
        let sql = format!("SELECT {PERSON_COLUMNS} FROM people WHERE id = $1");
        Ok(
            with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?),
        )
    }

    pub async fn display_name(&self, person_id: &str) -> Result<Option<String>> {
        Ok(
            with_db!(&self.db, pool => sqlx::query_scalar("SELECT display_name FROM people WHERE id = $1").bind(person_id).fetch_optional(pool).await?),
        )
    }

    /// Registers `org` with `joiner` as its first member, in one transaction, once per `key`.
    /// Returns the first member's person id (a retry: the first call's).
    pub async fn register(
        &self,
        key: &RequestKey,
        org: &Organization,
        joiner: &Joiner,
        role: &str,
        audit: &AuditEvent,
    ) -> Result<String> {
        Ok(keyed_write!(&self.db, key, tx => {
            let inserted = sqlx::query("INSERT INTO organizations (credit_code, name, kind, status, status_reason, version, registered_at_ms, reviewed_at_ms, reviewed_by, jurisdiction, department) VALUES ($1, $2, $3, $4, '', 1, $5, NULL, '', $6, $7)")
                .bind(&org.credit_code).bind(&org.name).bind(org.kind.as_str()).bind(org.status.as_str()).bind(org.registered_at_ms)
                .bind(org.jurisdiction.as_str()).bind(org.department.as_deref().unwrap_or(""))
                .execute(&mut *tx).await;
            if let Err(e) = inserted {
                return Err(if is_unique_violation(&e) {
                    Error::AlreadyExists(format!("organization {} is registered already", org.credit_code))
                } else { e.into() });
            }
            insert_joiner!(tx, joiner, org.registered_at_ms);
            sqlx::query("INSERT INTO memberships (person_id, credit_code, role, joined_at_ms) VALUES ($1, $2, $3, $4)")
                .bind(joiner.id()).bind(&org.credit_code).bind(role).bind(org.registered_at_ms)
                .execute(&mut *tx).await?;
            audit!(tx, audit);
            joiner.id().to_string()
        }))
    }

    pub async fn organization(&self, code: &str) -> Result<Option<Organization>> {
        let sql = format!("SELECT {ORG_COLUMNS} FROM organizations WHERE credit_code = $1");
        let row: Option<OrgRow> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(code).fetch_optional(pool).await?);
        row.map(Organization::try_from).transpose()
    }

    /// Organizations in `status` (None: any) whose jurisdiction lies in `within` (lowest and
    /// highest code; None: anywhere), in credit-code order after the page's key.
    pub async fn organizations(
        &self,
        status: Option<Status>,
        within: Option<&(String, String)>,
        page: &Page,
    ) -> Result<Vec<Organization>> {
        let sql = format!(
            "SELECT {ORG_COLUMNS} FROM organizations WHERE ($1 = '' OR status = $1) AND ($2 = '' OR jurisdiction BETWEEN $2 AND $3) AND credit_code > $4 ORDER BY credit_code LIMIT $5"
        );
        let (lo, hi) = within
            .map(|(lo, hi)| (lo.as_str(), hi.as_str()))
            .unwrap_or(("", ""));
        let rows: Vec<OrgRow> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(status.map(|s| s.as_str()).unwrap_or(""))
            .bind(lo)
            .bind(hi)
            .bind(page.after.as_deref().unwrap_or(""))
            .bind(page.fetch_limit())
            .fetch_all(pool).await?);
        rows.into_iter().map(Organization::try_from).collect()
    }

    /// Sets an organization's status if its version is `expected` (0: any) and its status one of
    /// `from`; returns the organization after.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_status(
        &self,
        code: &str,
        from: &[Status],
        to: Status,
        reason: &str,
        expected: i64,
        by: &str,
        audit: &AuditEvent,
    ) -> Result<Organization> {
        let Some(current) = self.organization(code).await? else {
            return Err(Error::not_found("organization", code));
        };
        if !from.contains(&current.status) {
            return Err(Error::precondition(format!(
                "organization {code} is {}; it can be made {} only when {}",
                current.status.as_str(),
                to.as_str(),
                from.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        if expected != 0 && expected != current.version {
            return Err(Error::Aborted(format!(
                "organization {code} is at version {}, not {expected}: read it again",
                current.version
            )));
        }
        let changed = with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query("UPDATE organizations SET status = $1, status_reason = $2, version = version + 1, reviewed_at_ms = $3, reviewed_by = $4 WHERE credit_code = $5 AND version = $6")
                .bind(to.as_str()).bind(reason).bind(audit.at_ms).bind(by).bind(code).bind(current.version)
                .execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                if to == Status::Suspended {
                    // Its sessions end: no refresh from now on.
                    sqlx::query("UPDATE refresh_tokens SET revoked_at_ms = $1 WHERE credit_code = $2 AND revoked_at_ms IS NULL")
                        .bind(audit.at_ms).bind(code).execute(&mut *tx).await?;
                }
                audit!(tx, audit);
                tx.commit().await?;
            }
            n == 1
        });
        if !changed {
            return Err(Error::Aborted(format!(
                "organization {code} changed meanwhile: read it again"
            )));
        }
        self.organization(code)
            .await?
            .ok_or_else(|| Error::not_found("organization", code))
    }

    pub async fn membership_role(&self, person_id: &str, code: &str) -> Result<Option<String>> {
        Ok(
            with_db!(&self.db, pool => sqlx::query_scalar("SELECT role FROM memberships WHERE person_id = $1 AND credit_code = $2").bind(person_id).bind(code).fetch_optional(pool).await?),
        )
    }

    /// The credit codes of a person's memberships.
    pub async fn memberships_of(&self, person_id: &str) -> Result<Vec<String>> {
        Ok(
            with_db!(&self.db, pool => sqlx::query_scalar("SELECT credit_code FROM memberships WHERE person_id = $1 ORDER BY credit_code").bind(person_id).fetch_all(pool).await?),
        )
    }

    pub async fn members(&self, code: &str) -> Result<Vec<Membership>> {
        let rows: Vec<(String, String, String, String, i64)> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT m.person_id, p.display_name, m.credit_code, m.role, m.joined_at_ms FROM memberships m JOIN people p ON p.id = m.person_id WHERE m.credit_code = $1 ORDER BY m.joined_at_ms, m.person_id")
            .bind(code).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .map(
                |(person_id, display_name, credit_code, role, joined_at_ms)| Membership {
                    person_id,
                    display_name,
                    credit_code,
                    role,
                    joined_at_ms,
                },
            )
            .collect())
    }

    /// Stores an invitation (its code's hash), once per `key`; returns the hash stored (a
    /// retry: the first call's).
    pub async fn create_invitation(
        &self,
        key: &RequestKey,
        code_hash: &str,
        credit_code: &str,
        role: &str,
        expires_at_ms: i64,
        audit: &AuditEvent,
    ) -> Result<String> {
        Ok(keyed_write!(&self.db, key, tx => {
            sqlx::query("INSERT INTO invitations (code_hash, credit_code, role, created_by, expires_at_ms) VALUES ($1, $2, $3, $4, $5)")
                .bind(code_hash).bind(credit_code).bind(role).bind(&audit.actor).bind(expires_at_ms)
                .execute(&mut *tx).await?;
            audit!(tx, audit);
            code_hash.to_string()
        }))
    }

    /// When an invitation expires, and the organization and role it is for (used or not).
    pub async fn invitation_by_hash(
        &self,
        code_hash: &str,
    ) -> Result<Option<(i64, String, String)>> {
        Ok(
            with_db!(&self.db, pool => sqlx::query_as("SELECT expires_at_ms, credit_code, role FROM invitations WHERE code_hash = $1")
            .bind(code_hash).fetch_optional(pool).await?),
        )
    }

    /// The organization and role of an unused, unexpired invitation.
    pub async fn invitation(
        &self,
        code_hash: &str,
        now_ms: i64,
    ) -> Result<Option<(String, String)>> {
        Ok(
            with_db!(&self.db, pool => sqlx::query_as("SELECT credit_code, role FROM invitations WHERE code_hash = $1 AND used_at_ms IS NULL AND expires_at_ms > $2")
            .bind(code_hash).bind(now_ms).fetch_optional(pool).await?),
        )
    }

    /// Uses an invitation: the joiner becomes a member, in one transaction, once per `key`.
    /// Returns the member's person id (a retry: the first call's).
    pub async fn accept_invitation(
        &self,
        key: &RequestKey,
        code_hash: &str,
        joiner: &Joiner,
        credit_code: &str,
        role: &str,
        audit: &AuditEvent,
    ) -> Result<String> {
        let now = audit.at_ms;
        Ok(keyed_write!(&self.db, key, tx => {
            let n = sqlx::query("UPDATE invitations SET used_at_ms = $1, used_by = $2 WHERE code_hash = $3 AND used_at_ms IS NULL AND expires_at_ms > $1")
                .bind(now).bind(joiner.id()).bind(code_hash).execute(&mut *tx).await?.rows_affected();
            if n != 1 {
                return Err(Error::not_found("invitation", "with this code (used or expired)"));
            }
            insert_joiner!(tx, joiner, now);
            let joined = sqlx::query("INSERT INTO memberships (person_id, credit_code, role, joined_at_ms) VALUES ($1, $2, $3, $4)")
                .bind(joiner.id()).bind(credit_code).bind(role).bind(now).execute(&mut *tx).await;
            if let Err(e) = joined {
                return Err(if is_unique_violation(&e) {
                    Error::AlreadyExists(format!("the person is a member of {credit_code} already"))
                } else { e.into() });
            }
            // A member again: the removal no longer applies.
            sqlx::query("DELETE FROM revocations WHERE kind = 'membership' AND value = $1")
                .bind(cwsm_platform::auth::Revocations::membership_key(joiner.id(), credit_code))
                .execute(&mut *tx).await?;
            audit!(tx, audit);
            joiner.id().to_string()
        }))
    }

    /// One membership.
    pub async fn membership(&self, person_id: &str, code: &str) -> Result<Option<Membership>> {
        Ok(self
            .members(code)
            .await?
            .into_iter()
            .find(|m| m.person_id == person_id))
    }

    /// Removes a membership, ends the person's sessions for the organization and lists the
    /// membership as revoked.
    pub async fn remove_member(
        &self,
        person_id: &str,
        code: &str,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let now = audit.at_ms;
        Ok(with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query("DELETE FROM memberships WHERE person_id = $1 AND credit_code = $2")
                .bind(person_id).bind(code).execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                sqlx::query("UPDATE refresh_tokens SET revoked_at_ms = $1 WHERE person_id = $2 AND credit_code = $3 AND revoked_at_ms IS NULL")
                    .bind(now).bind(person_id).bind(code).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO revocations (kind, value, at_ms) VALUES ('membership', $1, $2) ON CONFLICT (kind, value) DO UPDATE SET at_ms = excluded.at_ms")
                    .bind(cwsm_platform::auth::Revocations::membership_key(person_id, code)).bind(now)
                    .execute(&mut *tx).await?;
                audit!(tx, audit);
                tx.commit().await?;
            }
            n == 1
        }))
    }

    // -- sign-in failures ---------------------------------------------------------------------

    pub async fn failures(&self, login: &str) -> Result<Failures> {
        let row: Option<(i64, i64, i64)> = with_db!(&self.db, pool => sqlx::query_as("SELECT failures, first_failure_at_ms, locked_until_ms FROM login_failures WHERE login = $1").bind(login).fetch_optional(pool).await?);
        Ok(row
            .map(
                |(failures, first_failure_at_ms, locked_until_ms)| Failures {
                    failures,
                    first_failure_at_ms,
                    locked_until_ms,
                },
            )
            .unwrap_or_default())
    }

    /// Counts a failed sign-in of `login` (known or not): failures older than `window_ms` are
    /// forgotten; the `max`-th within it locks the login until `now + lockout_ms`.
    pub async fn count_failure(
        &self,
        login: &str,
        now_ms: i64,
        window_ms: i64,
        max: i64,
        lockout_ms: i64,
        audit: &AuditEvent,
    ) -> Result<Failures> {
        let since = now_ms.saturating_sub(window_ms);
        let until = now_ms.saturating_add(lockout_ms);
        let row: (i64, i64, i64) = with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            // One statement, so concurrent failures of a login are all counted.
            let row = sqlx::query_as(
                "INSERT INTO login_failures (login, failures, first_failure_at_ms, locked_until_ms) VALUES ($1, 1, $2, CASE WHEN 1 >= $4 THEN $5 ELSE 0 END)
                 ON CONFLICT (login) DO UPDATE SET
                   failures = CASE WHEN login_failures.first_failure_at_ms < $3 THEN 1 ELSE login_failures.failures + 1 END,
                   first_failure_at_ms = CASE WHEN login_failures.first_failure_at_ms < $3 THEN $2 ELSE login_failures.first_failure_at_ms END,
                   locked_until_ms = CASE WHEN (CASE WHEN login_failures.first_failure_at_ms < $3 THEN 1 ELSE login_failures.failures + 1 END) >= $4 THEN $5 ELSE login_failures.locked_until_ms END
                 RETURNING failures, first_failure_at_ms, locked_until_ms")
                .bind(login).bind(now_ms).bind(since).bind(max).bind(until)
                .fetch_one(&mut *tx).await?;
            audit!(tx, audit);
            tx.commit().await?;
            row
        });
        Ok(Failures {
            failures: row.0,
            first_failure_at_ms: row.1,
            locked_until_ms: row.2,
        })
    }

    pub async fn clear_failures(&self, login: &str) -> Result<()> {
        with_db!(&self.db, pool => { sqlx::query("DELETE FROM login_failures WHERE login = $1").bind(login).execute(pool).await?; });
        Ok(())
    }

    pub async fn audit(&self, audit: &AuditEvent) -> Result<()> {
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            audit!(tx, audit);
            tx.commit().await?;
        });
        Ok(())
    }

    // -- sessions -----------------------------------------------------------------------------

    /// Starts a session with its first refresh token.
    pub async fn start_session(&self, new: &NewRefresh<'_>, audit: &AuditEvent) -> Result<()> {
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id, person_id, credit_code, issued_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(new.token_hash).bind(new.session_id).bind(new.person_id).bind(new.credit_code).bind(new.issued_at_ms).bind(new.expires_at_ms)
                .execute(&mut *tx).await?;
            audit!(tx, audit);
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn refresh_row(&self, token_hash: &str) -> Result<Option<RefreshRow>> {
        Ok(
            with_db!(&self.db, pool => sqlx::query_as("SELECT session_id, person_id, credit_code, expires_at_ms, used_at_ms, revoked_at_ms FROM refresh_tokens WHERE token_hash = $1").bind(token_hash).fetch_optional(pool).await?),
        )
    }

    /// Uses up `old` and stores `new` in its session; false when `old` was used or revoked
    /// meanwhile (a concurrent refresh won).
    pub async fn rotate(&self, old_hash: &str, new: &NewRefresh<'_>) -> Result<bool> {
        Ok(with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query("UPDATE refresh_tokens SET used_at_ms = $1 WHERE token_hash = $2 AND used_at_ms IS NULL AND revoked_at_ms IS NULL")
                .bind(new.issued_at_ms).bind(old_hash).execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id, person_id, credit_code, issued_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(new.token_hash).bind(new.session_id).bind(new.person_id).bind(new.credit_code).bind(new.issued_at_ms).bind(new.expires_at_ms)
                    .execute(&mut *tx).await?;
                tx.commit().await?;
            }
            n == 1
        }))
    }

    /// Revokes sessions: their refresh tokens stop, and their access tokens are listed as
    /// revoked. Returns how many sessions were live.
    pub async fn revoke_sessions(&self, sessions: &[String], audit: &AuditEvent) -> Result<u64> {
        let now = audit.at_ms;
        Ok(with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let mut live = 0;
            for sid in sessions {
                let n = sqlx::query("UPDATE refresh_tokens SET revoked_at_ms = $1 WHERE session_id = $2 AND revoked_at_ms IS NULL")
                    .bind(now).bind(sid).execute(&mut *tx).await?.rows_affected();
                if n > 0 { live += 1; }
                sqlx::query("INSERT INTO revocations (kind, value, at_ms) VALUES ('session', $1, $2) ON CONFLICT (kind, value) DO NOTHING")
                    .bind(sid).bind(now).execute(&mut *tx).await?;
            }
            audit!(tx, audit);
            tx.commit().await?;
            live
        }))
    }

    /// The sessions of a person with a refresh token not revoked.
    pub async fn live_sessions(&self, person_id: &str) -> Result<Vec<String>> {
        Ok(
            with_db!(&self.db, pool => sqlx::query_scalar("SELECT DISTINCT session_id FROM refresh_tokens WHERE person_id = $1 AND revoked_at_ms IS NULL").bind(person_id).fetch_all(pool).await?),
        )
    }

    /// The revocation list: suspended organizations and people, and sessions (API keys
    /// among them) and memberships revoked
    /// since `since_ms` (older ones have no live access token left); older entries are pruned.
    pub async fn revocations(&self, since_ms: i64) -> Result<cwsm_platform::auth::Revocations> {
        #[allow(clippy::type_complexity)]
        let (orgs, people, rows): (Vec<String>, Vec<String>, Vec<(String, String)>) = with_db!(&self.db, pool => {
            sqlx::query("DELETE FROM revocations WHERE at_ms < $1").bind(since_ms).execute(pool).await?;
            let orgs = sqlx::query_scalar("SELECT credit_code FROM organizations WHERE status = 'suspended'").fetch_all(pool).await?;
            let people: Vec<String> = sqlx::query_scalar("SELECT id FROM people WHERE suspended_at_ms IS NOT NULL").fetch_all(pool).await?;
            let rows = sqlx::query_as("SELECT kind, value FROM revocations").fetch_all(pool).await?;
            (orgs, people, rows)
        });
        let mut r = cwsm_platform::auth::Revocations {
            organizations: orgs.into_iter().collect(),
            subjects: people.into_iter().collect(),
            ..Default::default()
        };
        for (kind, value) in rows {
            match kind.as_str() {
                "session" => r.sessions.insert(value),
                "membership" => r.memberships.insert(value),
                _ => r.subjects.insert(value),
            };
        }
        Ok(r)
    }

    // -- suspended people ---------------------------------------------------------------------

    /// Suspends a person not suspended: their sessions end (refresh tokens revoked, and listed
    /// as revoked so that their access tokens stay stopped after a reinstatement). False when
    /// the person was suspended already.
    pub async fn suspend_person(
        &self,
        person_id: &str,
        reason: &str,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let now = audit.at_ms;
        Ok(with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query("UPDATE people SET suspended_at_ms = $1, suspended_reason = $2, suspended_by = $3 WHERE id = $4 AND suspended_at_ms IS NULL")
                .bind(now).bind(reason).bind(&audit.actor).bind(person_id)
                .execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                sqlx::query("INSERT INTO revocations (kind, value, at_ms) SELECT DISTINCT 'session', session_id, $1 FROM refresh_tokens WHERE person_id = $2 AND revoked_at_ms IS NULL ON CONFLICT (kind, value) DO NOTHING")
                    .bind(now).bind(person_id).execute(&mut *tx).await?;
                sqlx::query("UPDATE refresh_tokens SET revoked_at_ms = $1 WHERE person_id = $2 AND revoked_at_ms IS NULL")
                    .bind(now).bind(person_id).execute(&mut *tx).await?;
                audit!(tx, audit);
                tx.commit().await?;
            }
            n == 1
        }))
    }

    /// Lifts a person's suspension; false when they were not suspended.
    pub async fn reinstate_person(&self, person_id: &str, audit: &AuditEvent) -> Result<bool> {
        Ok(with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query("UPDATE people SET suspended_at_ms = NULL, suspended_reason = '', suspended_by = '' WHERE id = $1 AND suspended_at_ms IS NOT NULL")
                .bind(person_id).execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                audit!(tx, audit);
                tx.commit().await?;
            }
            n == 1
        }))
    }

    // -- API keys -----------------------------------------------------------------------------

    /// Stores a new API key (its hash), once per `key`, unless its organization has `max_live`
    /// keys neither revoked nor expired already. Returns the key's id (a retry: the first
    /// call's).
    pub async fn create_api_key(
        &self,
        key: &RequestKey,
        row: &ApiKeyRow,
        secret_hash: &str,
        max_live: i64,
        audit: &AuditEvent,
    ) -> Result<String> {
        Ok(keyed_write!(&self.db, key, tx => {
            let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE credit_code = $1 AND revoked_at_ms IS NULL AND expires_at_ms > $2")
                .bind(&row.credit_code).bind(row.created_at_ms).fetch_one(&mut *tx).await?;
            if live >= max_live {
                return Err(Error::precondition(format!(
                    "organization {} has {live} live API keys, the most it may have: revoke one first (RevokeApiKey)",
                    row.credit_code
                )));
            }
            sqlx::query("INSERT INTO api_keys (id, secret_hash, name, credit_code, role, created_by, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(&row.id).bind(secret_hash).bind(&row.name).bind(&row.credit_code).bind(&row.role)
                .bind(&row.created_by).bind(row.created_at_ms).bind(row.expires_at_ms)
                .execute(&mut *tx).await?;
            audit!(tx, audit);
            row.id.clone()
        }))
    }

    pub async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRow>> {
        let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1");
        Ok(
            with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?),
        )
    }

    pub async fn api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKeyRow>> {
        let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE secret_hash = $1");
        Ok(
            with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(secret_hash).fetch_optional(pool).await?),
        )
    }

    /// An organization's API keys by id (oldest first: ids are time-ordered), after the page's
    /// key.
    pub async fn api_keys(&self, code: &str, page: &Page) -> Result<Vec<ApiKeyRow>> {
        let sql = format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE credit_code = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        Ok(
            with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(code).bind(page.after.as_deref().unwrap_or("")).bind(page.fetch_limit())
            .fetch_all(pool).await?),
        )
    }

    /// Revokes a key not revoked yet and lists its session (the key's id) as revoked, so the
    /// access tokens it was exchanged for stop; false when it was revoked already.
    pub async fn revoke_api_key(&self, id: &str, audit: &AuditEvent) -> Result<bool> {
        let now = audit.at_ms;
        Ok(with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query("UPDATE api_keys SET revoked_at_ms = $1, revoked_by = $2 WHERE id = $3 AND revoked_at_ms IS NULL")
                .bind(now).bind(&audit.actor).bind(id).execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                sqlx::query("INSERT INTO revocations (kind, value, at_ms) VALUES ('session', $1, $2) ON CONFLICT (kind, value) DO NOTHING")
                    .bind(id).bind(now).execute(&mut *tx).await?;
                audit!(tx, audit);
                tx.commit().await?;
            }
            n == 1
        }))
    }

    /// Notes that a key was exchanged at `now_ms`.
    pub async fn api_key_used(&self, id: &str, now_ms: i64) -> Result<()> {
        with_db!(&self.db, pool => { sqlx::query("UPDATE api_keys SET last_used_at_ms = $1 WHERE id = $2").bind(now_ms).bind(id).execute(pool).await?; });
        Ok(())
    }

    // -- keys and audit -----------------------------------------------------------------------

    pub async fn keys(&self) -> Result<Vec<StoredKey>> {
        Ok(
            with_db!(&self.db, pool => sqlx::query_as("SELECT kid, private_key, public_x, created_at_ms, signs_from_ms FROM signing_keys ORDER BY signs_from_ms, created_at_ms").fetch_all(pool).await?),
        )
    }

    pub async fn add_key(&self, key: &StoredKey, audit: Option<&AuditEvent>) -> Result<()> {
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("INSERT INTO signing_keys (kid, private_key, public_x, created_at_ms, signs_from_ms) VALUES ($1, $2, $3, $4, $5)")
                .bind(&key.kid).bind(&key.private_key).bind(&key.public_x).bind(key.created_at_ms).bind(key.signs_from_ms)
                .execute(&mut *tx).await?;
            if let Some(audit) = audit { audit!(tx, audit); }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Audit entries, newest first (ids are time-ordered), after the page's key; with
    /// `within` (lowest and highest jurisdiction code) only the entries about an organization of
    /// those jurisdictions (an entry's target is a credit code; entries about a login or a key
    /// belong to no jurisdiction).
    pub async fn audit_events(
        &self,
        action: &str,
        within: Option<&(String, String)>,
        page: &Page,
    ) -> Result<Vec<AuditEvent>> {
        let after = page.after.clone().unwrap_or_else(|| "~".to_string());
        let (lo, hi) = within
            .map(|(lo, hi)| (lo.as_str(), hi.as_str()))
            .unwrap_or(("", ""));
        Ok(with_db!(&self.db, pool => sqlx::query_as(
                "SELECT a.id, a.at_ms, a.actor, a.action, a.target, a.detail FROM audit_events a LEFT JOIN organizations o ON o.credit_code = a.target
                 WHERE ($1 = '' OR a.action = $1) AND ($2 = '' OR o.jurisdiction BETWEEN $2 AND $3) AND a.id < $4 ORDER BY a.id DESC LIMIT $5")
            .bind(action).bind(lo).bind(hi).bind(after).bind(page.fetch_limit()).fetch_all(pool).await?))
    }

    // -- external identities (OpenID Connect) -------------------------------------------------

    /// Keeps a started sign-in (and forgets the ones that expired).
    pub async fn start_external(
        &self,
        state_hash: &str,
        started: &ExternalSignIn,
        now_ms: i64,
    ) -> Result<()> {
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("DELETE FROM external_sign_ins WHERE expires_at_ms <= $1").bind(now_ms).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO external_sign_ins (state_hash, provider, redirect_uri, nonce, code_verifier, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(state_hash).bind(&started.provider).bind(&started.redirect_uri).bind(&started.nonce)
                .bind(&started.code_verifier).bind(started.expires_at_ms)
                .execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Takes a started sign-in: one use (the row is deleted, so of two concurrent completions
    /// one gets it); `None` when unknown, used or expired.
    pub async fn take_external(
        &self,
        state_hash: &str,
        now_ms: i64,
    ) -> Result<Option<ExternalSignIn>> {
        let row: Option<ExternalSignIn> = with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let row = sqlx::query_as("DELETE FROM external_sign_ins WHERE state_hash = $1 RETURNING provider, redirect_uri, nonce, code_verifier, expires_at_ms")
                .bind(state_hash).fetch_optional(&mut *tx).await?;
            tx.commit().await?;
            row
        });
        Ok(row.filter(|r| r.expires_at_ms > now_ms))
    }

    pub async fn external_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<ExternalIdentity>> {
        let sql = format!(
            "SELECT {IDENTITY_COLUMNS} FROM external_identities WHERE issuer = $1 AND subject = $2"
        );
        Ok(
            with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(issuer).bind(subject).fetch_optional(pool).await?),
        )
    }

    pub async fn external_identities(&self, person_id: &str) -> Result<Vec<ExternalIdentity>> {
        let sql = format!(
            "SELECT {IDENTITY_COLUMNS} FROM external_identities WHERE person_id = $1 ORDER BY provider, subject"
        );
        Ok(
            with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(person_id).fetch_all(pool).await?),
        )
    }

    pub async fn person_exists(&self, person_id: &str) -> Result<bool> {
        let n: i64 = with_db!(&self.db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM people WHERE id = $1").bind(person_id).fetch_one(pool).await?);
        Ok(n > 0)
    }

    /// Links an identity, with its audit entry; ALREADY_EXISTS when it is linked already.
    /// With `key` (an administrator's LinkExternalIdentity) a retry gets the first answer.
    pub async fn link_external(
        &self,
        key: Option<&RequestKey>,
        identity: &ExternalIdentity,
        audit: &AuditEvent,
    ) -> Result<()> {
        macro_rules! insert {
            ($tx:ident) => {{
                let inserted = sqlx::query("INSERT INTO external_identities (issuer, subject, provider, person_id, email, linked_at_ms, linked_by) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(&identity.issuer).bind(&identity.subject).bind(&identity.provider).bind(&identity.person_id)
                    .bind(&identity.email).bind(identity.linked_at_ms).bind(&identity.linked_by)
                    .execute(&mut *$tx).await;
                if let Err(e) = inserted {
                    return Err(if is_unique_violation(&e) {
                        Error::AlreadyExists(format!(
                            "subject {:?} of provider {} is linked already: unlink it first",
                            identity.subject, identity.provider
                        ))
                    } else { e.into() });
                }
                audit!($tx, audit);
            }};
        }
        match key {
            Some(key) => {
                keyed_write!(&self.db, key, tx => {
                    insert!(tx);
                    format!("{} {}", identity.issuer, identity.subject)
                });
            }
            None => with_db!(&self.db, pool => {
                let mut tx = pool.begin_write().await?;
                insert!(tx);
                tx.commit().await?;
            }),
        }
        Ok(())
    }

    /// Unlinks an identity; false when it was not linked.
    pub async fn unlink_external(
        &self,
        issuer: &str,
        subject: &str,
        audit: &AuditEvent,
    ) -> Result<bool> {
        Ok(with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query("DELETE FROM external_identities WHERE issuer = $1 AND subject = $2")
                .bind(issuer).bind(subject).execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                audit!(tx, audit);
                tx.commit().await?;
            }
            n == 1
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Organizations registered before jurisdictions (0004 left them '') get the platform's
    /// district when the service starts; those registered with one keep theirs.
    #[tokio::test]
    async fn organizations_from_before_jurisdictions_get_the_platforms_district() {
        let dir = std::env::temp_dir().join(format!("cwsm-accounts-{}", new_id()));
        cwsm_platform::db::create_private_dir(&dir).expect("dir");
        let url = format!("sqlite://{}", dir.join("accounts.db").display());
        let store = Store::connect(&url).await.expect("store");
        let insert = |code: &str, jurisdiction: &str| {
            format!(
                "INSERT INTO organizations (credit_code, name, kind, status, version, registered_at_ms, jurisdiction) VALUES ('{code}', 'x', 'company', 'approved', 1, 0, '{jurisdiction}')"
            )
        };
        for (code, jurisdiction) in [("OLD", ""), ("WUJIN", "320412")] {
            with_db!(&store.db, pool => {
                sqlx::query(sqlx::AssertSqlSafe(insert(code, jurisdiction))).execute(pool).await.expect("insert");
            });
        }
        // Unreadable until settled: no jurisdiction is never read as "anywhere".
        assert!(store.organization("OLD").await.is_err());
        let xinbei = Jurisdiction::default_district();
        assert_eq!(store.settle_jurisdictions(&xinbei).await.ok(), Some(1));
        let old = store.organization("OLD").await.ok().flatten().expect("old");
        assert_eq!(old.jurisdiction, xinbei);
        let wujin = store
            .organization("WUJIN")
            .await
            .ok()
            .flatten()
            .expect("wujin");
        assert_eq!(wujin.jurisdiction.as_str(), "320412");
        assert_eq!(store.settle_jurisdictions(&xinbei).await.ok(), Some(0));
        let _ = std::fs::remove_dir_all(dir);
    }
}
