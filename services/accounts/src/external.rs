//! Sign-in through an external OpenID Connect provider ([`crate::oidc`] speaks the protocol),
//! and the identities linked to people.
//!
//! 1. `start_external_sign_in(provider, redirect_uri)`: the redirect URI must be one the
//!    provider's settings allow; the server keeps the state (as SHA-256), the nonce and the
//!    PKCE verifier for ten minutes and answers the provider's authorization URL.
//! 2. The person signs in at the provider, whose browser lands on `redirect_uri?code&state`.
//! 3. `complete_external_sign_in(state, code, credit_code)`: the state is used up (one use),
//!    the code exchanged with the verifier, the ID token verified; then the person is the one
//!    the identity (issuer, subject) is linked to, or — when the provider vouches for the
//!    e-mail (`email_verified`) and it is a person's login — that person, linked now (audited);
//!    otherwise the sign-in is refused, saying an administrator can link the identity. Then
//!    the same session as a password sign-in, within the person's memberships.

use cwsm_platform::auth::Principal;
use cwsm_platform::idempotency::RequestKey;
use cwsm_platform::{Error, Result, now_ms};

use crate::oidc::{self, SIGN_IN_TTL};
use crate::store::{AuditEvent, ExternalIdentity, ExternalSignIn};
use crate::{Accounts, Tokens, ms, normalize_login, sha256_hex};

/// The answer to a state that is unknown, used already or expired.
pub const STATE_REFUSED: &str =
    "sign-in state unknown, used already or expired: start the sign-in again";

/// Longest provider subject accepted in requests (OpenID Connect Core: at most 255 ASCII).
const MAX_SUBJECT: usize = 255;

fn audit_target(provider: &str) -> String {
    format!("oidc:{provider}")
}

impl Accounts {
    async fn external_failed(&self, provider: &str, why: &str) -> Result<()> {
        self.store
            .audit(&AuditEvent::new(
                now_ms(),
                "anonymous",
                "sign_in_failed",
                &audit_target(provider),
                why,
            ))
            .await
    }

    /// Starts a sign-in at `provider`: the URL to send the person to, the state and when it
    /// expires (ms).
    pub async fn start_external_sign_in(
        &self,
        provider: &str,
        redirect_uri: &str,
    ) -> Result<(String, String, i64)> {
        cwsm_platform::input::check_len("provider", provider, cwsm_platform::input::MAX_CODE)?;
        cwsm_platform::input::check_len("redirect_uri", redirect_uri, oidc::MAX_REDIRECT_URI_LEN)?;
        let idp = self.providers.get("provider", provider)?;
        if !oidc::redirect_allowed(&idp.config.redirect_uris, redirect_uri) {
            return Err(Error::invalid(
                "redirect_uri",
                format!(
                    "not one of provider {provider}'s redirect URIs: {}",
                    idp.config.redirect_uris.join(", ")
                ),
            ));
        }
        let started = idp.start(redirect_uri).await?;
        let now = now_ms();
        let expires = now.saturating_add(ms(SIGN_IN_TTL));
        self.store
            .start_external(
                &sha256_hex(&started.state),
                &ExternalSignIn {
                    provider: provider.to_string(),
                    redirect_uri: redirect_uri.to_string(),
                    nonce: started.nonce,
                    code_verifier: started.code_verifier,
                    expires_at_ms: expires,
                },
                now,
            )
            .await?;
        Ok((started.authorization_url, started.state, expires))
    }

    /// Completes a sign-in started by [`Accounts::start_external_sign_in`].
    pub async fn complete_external_sign_in(
        &self,
        state: &str,
        code: &str,
        credit_code: &str,
    ) -> Result<Tokens> {
        cwsm_platform::input::check_len("state", state, cwsm_platform::input::MAX_CODE)?;
        cwsm_platform::input::check_len("code", code, oidc::MAX_CODE_LEN)?;
        cwsm_platform::input::check_len(
            "credit_code",
            credit_code,
            cwsm_platform::input::MAX_CODE,
        )?;
        if code.trim().is_empty() {
            return Err(Error::invalid(
                "code",
                "required: the code the provider sent to the redirect URI",
            ));
        }
        let Some(started) = self
            .store
            .take_external(&sha256_hex(state.trim()), now_ms())
            .await?
        else {
            self.external_failed("", "unknown, used or expired state")
                .await?;
            return Err(Error::Unauthenticated(STATE_REFUSED.into()));
        };
        let provider = started.provider.as_str();
        let idp = self.providers.get("state", provider).map_err(|_| {
            Error::Unauthenticated(format!(
                "provider {provider} is no longer configured here: start the sign-in again"
            ))
        })?;
        let claims = match idp
            .complete(
                code.trim(),
                &started.code_verifier,
                &started.redirect_uri,
                &started.nonce,
            )
            .await
        {
            Ok(claims) => claims,
            Err(e) => {
                if !matches!(e, Error::Unavailable(_)) {
                    self.external_failed(provider, &e.to_string()).await?;
                }
                return Err(e);
            }
        };
        let person_id = match self
            .store
            .external_identity(&claims.iss, &claims.sub)
            .await?
        {
            Some(linked) => linked.person_id,
            None => self.link_by_verified_email(provider, &claims).await?,
        };
        self.open_session(&person_id, credit_code, &audit_target(provider))
            .await
    }

    /// The person whose login is the e-mail the provider vouches for, linked now; else the
    /// refusal (the same whether or not such a login exists).
    async fn link_by_verified_email(
        &self,
        provider: &str,
        claims: &oidc::IdClaims,
    ) -> Result<String> {
        let email = claims
            .verified_email()
            .and_then(|e| normalize_login("email", e).ok())
            .filter(|e| e.contains('@'));
        let person = match &email {
            Some(e) => self.store.person_by_login(e).await?,
            None => None,
        };
        let Some(person) = person else {
            self.external_failed(
                provider,
                &format!(
                    "no linked account: subject {:?}, e-mail {:?} ({})",
                    claims.sub,
                    claims.email.as_deref().unwrap_or(""),
                    if email.is_some() {
                        "verified"
                    } else {
                        "not verified"
                    }
                ),
            )
            .await?;
            return Err(Error::denied(format!(
                "no account is linked to this identity (provider {provider}, subject {:?}) and the provider vouches for no e-mail that is a login here; an administrator can link it",
                claims.sub
            )));
        };
        let now = now_ms();
        let identity = ExternalIdentity {
            issuer: claims.iss.clone(),
            subject: claims.sub.clone(),
            provider: provider.to_string(),
            person_id: person.id.clone(),
            email: person.login.clone(),
            linked_at_ms: now,
            linked_by: "email_verified".into(),
        };
        let audit = AuditEvent::new(
            now,
            &person.id,
            "link_external",
            &audit_target(provider),
            &format!("subject {:?} by the provider's verified e-mail", claims.sub),
        );
        match self.store.link_external(None, &identity, &audit).await {
            // A concurrent sign-in of the same identity linked it first: the same person.
            Ok(()) | Err(Error::AlreadyExists(_)) => Ok(person.id),
            Err(e) => Err(e),
        }
    }

    /// An administrator links `subject` at `provider` to `person_id`.
    pub async fn link_external_identity(
        &self,
        p: &Principal,
        key: &RequestKey,
        person_id: &str,
        provider: &str,
        subject: &str,
    ) -> Result<ExternalIdentity> {
        p.require_admin("link external identities")?;
        cwsm_platform::input::check_len("person_id", person_id, cwsm_platform::input::MAX_CODE)?;
        cwsm_platform::input::check_len("subject", subject, MAX_SUBJECT)?;
        if subject.is_empty() {
            return Err(Error::invalid(
                "subject",
                "required: the identity's `sub` at the provider (the audit log's failed sign-ins name it)",
            ));
        }
        let idp = self.providers.get("provider", provider)?;
        if !self.store.person_exists(person_id).await? {
            return Err(Error::not_found("person", person_id));
        }
        let now = now_ms();
        let identity = ExternalIdentity {
            issuer: idp.config.issuer.clone(),
            subject: subject.to_string(),
            provider: provider.to_string(),
            person_id: person_id.to_string(),
            email: String::new(),
            linked_at_ms: now,
            linked_by: p.subject.clone(),
        };
        let audit = AuditEvent::new(
            now,
            &p.subject,
            "link_external",
            &audit_target(provider),
            &format!("subject {subject:?} to person {person_id}"),
        );
        self.store
            .link_external(Some(key), &identity, &audit)
            .await?;
        self.store
            .external_identity(&identity.issuer, subject)
            .await?
            .ok_or_else(|| Error::not_found("external identity", subject))
    }

    /// The identities linked to a person: administrators, and the person themself.
    pub async fn external_identities(
        &self,
        p: &Principal,
        person_id: &str,
    ) -> Result<Vec<ExternalIdentity>> {
        cwsm_platform::input::check_len("person_id", person_id, cwsm_platform::input::MAX_CODE)?;
        if !p.is_admin() && p.subject != person_id {
            return Err(Error::denied(
                "only administrators and the person themself list a person's external identities",
            ));
        }
        self.store.external_identities(person_id).await
    }

    /// An administrator unlinks `subject` at `provider`.
    pub async fn unlink_external_identity(
        &self,
        p: &Principal,
        provider: &str,
        subject: &str,
    ) -> Result<()> {
        p.require_admin("unlink external identities")?;
        cwsm_platform::input::check_len("subject", subject, MAX_SUBJECT)?;
        let idp = self.providers.get("provider", provider)?;
        let audit = AuditEvent::new(
            now_ms(),
            &p.subject,
            "unlink_external",
            &audit_target(provider),
            &format!("subject {subject:?}"),
        );
        if !self
            .store
            .unlink_external(&idp.config.issuer, subject, &audit)
            .await?
        {
            return Err(Error::not_found(
                "external identity",
                format!("{subject} of {provider}"),
            ));
        }
        Ok(())
    }
}
