//! The adapter between `cwsm.accounts.v1` and [`crate::Accounts`], and the JWKS document on
//! the HTTP side of the port.
//!
//! The service is not behind the platform's interceptor: sign-in, registration, invitations
//! and the key set need no token. The RPCs that do read it here — an access token of a pending
//! organization is accepted (its members may see where they stand), operator tokens too.

use cwsm_platform::auth::{AccessClaims, Principal, Role};
use cwsm_platform::grpc::{Page, timestamp};
use cwsm_proto::accounts::v1 as pb;
use cwsm_proto::accounts::v1::accounts_service_server::{AccountsService, AccountsServiceServer};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::{Accounts, Credentials, Kind, Status as OrgStatus};

pub struct AccountsApi {
    accounts: Accounts,
}

impl Accounts {
    pub fn grpc_service(&self) -> AccountsServiceServer<AccountsApi> {
        AccountsServiceServer::new(AccountsApi {
            accounts: self.clone(),
        })
    }

    /// `GET /.well-known/jwks.json`: the public keys, for verifiers elsewhere.
    pub fn jwks_router(&self) -> axum::Router {
        let accounts = self.clone();
        axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let jwks = accounts.jwks();
                async move {
                    (
                        [
                            (axum::http::header::CONTENT_TYPE, "application/jwk-set+json"),
                            (axum::http::header::CACHE_CONTROL, "max-age=60"),
                        ],
                        serde_json::to_string(&jwks).unwrap_or_else(|_| "{\"keys\":[]}".into()),
                    )
                }
            }),
        )
    }
}

/// The caller: an accounts access token (pending organizations included) or an operator token.
fn caller<T>(
    accounts: &Accounts,
    request: &Request<T>,
) -> Result<(Principal, Option<AccessClaims>), Status> {
    let token = cwsm_platform::auth::bearer(request.metadata())?;
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| Status::unauthenticated(format!("invalid token: {e}")))?;
    if header.alg == jsonwebtoken::Algorithm::EdDSA {
        let claims = accounts.verifier().verify_access(token)?;
        let principal = claims.principal()?;
        // A pending organization's member acts for nobody yet, administrators included.
        let principal = if claims.approved {
            principal
        } else {
            Principal {
                role: if principal.role == Role::Admin {
                    Role::WaterUser
                } else {
                    principal.role
                },
                ..principal
            }
        };
        Ok((principal, Some(claims)))
    } else {
        Ok((accounts.verifier().verify(token)?, None))
    }
}

fn kind_from(k: i32) -> Result<Kind, Status> {
    Ok(
        match pb::OrganizationKind::try_from(k).unwrap_or(pb::OrganizationKind::Unspecified) {
            pb::OrganizationKind::Company => Kind::Company,
            pb::OrganizationKind::WaterUser => Kind::WaterUser,
            pb::OrganizationKind::Verifier => Kind::Verifier,
            pb::OrganizationKind::DistrictOffice => Kind::DistrictOffice,
            pb::OrganizationKind::Unspecified => {
                return Err(cwsm_platform::Error::invalid(
                    "kind",
                    "required: company, water_user, verifier or district_office",
                )
                .into());
            }
        },
    )
}

fn kind_to(k: Kind) -> pb::OrganizationKind {
    match k {
        Kind::Company => pb::OrganizationKind::Company,
        Kind::WaterUser => pb::OrganizationKind::WaterUser,
        Kind::Verifier => pb::OrganizationKind::Verifier,
        Kind::DistrictOffice => pb::OrganizationKind::DistrictOffice,
    }
}

fn status_to(s: OrgStatus) -> pb::OrganizationStatus {
    match s {
        OrgStatus::Pending => pb::OrganizationStatus::Pending,
        OrgStatus::Approved => pb::OrganizationStatus::Approved,
        OrgStatus::Suspended => pb::OrganizationStatus::Suspended,
    }
}

fn role_to(r: Role) -> pb::Role {
    match r {
        Role::Company => pb::Role::Company,
        Role::WaterUser => pb::Role::WaterUser,
        Role::Verifier => pb::Role::Verifier,
        Role::Admin => pb::Role::Admin,
        Role::Service => pb::Role::Unspecified,
    }
}

fn org_to(o: crate::Organization) -> pb::Organization {
    pb::Organization {
        credit_code: o.credit_code,
        name: o.name,
        kind: kind_to(o.kind) as i32,
        status: status_to(o.status) as i32,
        status_reason: o.status_reason,
        version: o.version,
        registered_at: Some(timestamp(o.registered_at_ms)),
        reviewed_at: o.reviewed_at_ms.map(timestamp),
        reviewed_by: o.reviewed_by,
        jurisdiction: o.jurisdiction.to_string(),
        department: o.department.unwrap_or_default(),
    }
}

fn membership_to(m: crate::Membership) -> pb::Membership {
    pb::Membership {
        person_id: m.person_id,
        display_name: m.display_name,
        credit_code: m.credit_code,
        role: Role::parse(&m.role)
            .map(role_to)
            .unwrap_or(pb::Role::Unspecified) as i32,
        joined_at: Some(timestamp(m.joined_at_ms)),
    }
}

fn tokens_to(t: crate::Tokens) -> pb::Tokens {
    pb::Tokens {
        access_token: t.access_token,
        access_token_expires_at: Some(timestamp(t.access_expires_at_ms)),
        refresh_token: t.refresh_token,
        refresh_token_expires_at: Some(timestamp(t.refresh_expires_at_ms)),
        person_id: t.person_id,
        credit_code: t.credit_code,
        role: role_to(t.role) as i32,
        organization_status: status_to(t.status) as i32,
        jurisdiction: t.jurisdiction.to_string(),
        department: t.department.unwrap_or_default(),
    }
}

fn creds(c: Option<pb::NewCredentials>, field: &str) -> Result<Credentials, Status> {
    let c = c.ok_or_else(|| Status::from(cwsm_platform::Error::invalid(field, "required")))?;
    Ok(Credentials {
        login: c.login,
        password: c.password,
        display_name: c.display_name,
    })
}

fn code(field: &str, value: &str) -> Result<(), Status> {
    cwsm_platform::input::check_len(field, value, cwsm_platform::input::MAX_CODE)
        .map_err(Status::from)
}

#[tonic::async_trait]
impl AccountsService for AccountsApi {
    async fn register_organization(
        &self,
        request: Request<pb::RegisterOrganizationRequest>,
    ) -> Result<Response<pb::RegisterOrganizationResponse>, Status> {
        let r = request.into_inner();
        code("credit_code", &r.credit_code)?;
        cwsm_platform::input::check_len("name", &r.name, cwsm_platform::input::MAX_NAME)?;
        code("jurisdiction", &r.jurisdiction)?;
        code("department", &r.department)?;
        let kind = kind_from(r.kind)?;
        // The fingerprint of the request leaves the password out (see `Accounts::register`).
        let mut fingerprinted = r.clone();
        if let Some(c) = fingerprinted.registrant.as_mut() {
            c.password.clear();
        }
        let registrant = creds(r.registrant, "registrant")?;
        let place = crate::Place {
            jurisdiction: &r.jurisdiction,
            department: &r.department,
        };
        let (org, person_id) = self
            .accounts
            .register(
                &r.credit_code,
                &r.name,
                kind,
                &place,
                &registrant,
                &r.request_id,
                &fingerprinted.encode_to_vec(),
            )
            .await?;
        Ok(Response::new(pb::RegisterOrganizationResponse {
            organization: Some(org_to(org)),
            person_id,
        }))
    }

    async fn approve_organization(
        &self,
        request: Request<pb::ApproveOrganizationRequest>,
    ) -> Result<Response<pb::ApproveOrganizationResponse>, Status> {
        let (p, _) = caller(&self.accounts, &request)?;
        let r = request.into_inner();
        code("credit_code", &r.credit_code)?;
        let org = self
            .accounts
            .approve(&p, &r.credit_code, &r.note, r.expected_version)
            .await?;
        Ok(Response::new(pb::ApproveOrganizationResponse {
            organization: Some(org_to(org)),
        }))
    }

    async fn suspend_organization(
        &self,
        request: Request<pb::SuspendOrganizationRequest>,
    ) -> Result<Response<pb::SuspendOrganizationResponse>, Status> {
        let (p, _) = caller(&self.accounts, &request)?;
        let r = request.into_inner();
        code("credit_code", &r.credit_code)?;
        let org = self
            .accounts
            .suspend(&p, &r.credit_code, &r.reason, r.expected_version)
            .await?;
        Ok(Response::new(pb::SuspendOrganizationResponse {
            organization: Some(org_to(org)),
        }))
    }

    async fn get_organization(
        &self,
        request: Request<pb::GetOrganizationRequest>,
    ) -> Result<Response<pb::GetOrganizationResponse>, Status> {
        let (p, _) = caller(&self.accounts, &request)?;
        let r = request.into_inner();
        code("credit_code", &r.credit_code)?;
        let org = self.accounts.organization(&p, &r.credit_code).await?;
        Ok(Response::new(pb::GetOrganizationResponse {
            organization: Some(org_to(org)),
        }))
    }

    async fn list_organizations(
        &self,
        request: Request<pb::ListOrganizationsRequest>,
    ) -> Result<Response<pb::ListOrganizationsResponse>, Status> {
        let (p, _) = caller(&self.accounts, &request)?;
        let r = request.into_inner();
        cwsm_platform::input::check_len(
            "page_token",
            &r.page_token,
            cwsm_platform::input::MAX_TOKEN,
        )?;
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let status = match pb::OrganizationStatus::try_from(r.status)
            .unwrap_or(pb::OrganizationStatus::Unspecified)
        {
            pb::OrganizationStatus::Unspecified => None,
            pb::OrganizationStatus::Pending => Some(OrgStatus::Pending),
            pb::OrganizationStatus::Approved => Some(OrgStatus::Approved),
            pb::OrganizationStatus::Suspended => Some(OrgStatus::Suspended),
        };
        let (orgs, next_page_token) = self.accounts.organizations(&p, status, &page).await?;
        Ok(Response::new(pb::ListOrganizationsResponse {
            organizations: orgs.into_iter().map(org_to).collect(),
            next_page_token,
        }))
    }

    async fn create_invitation(
        &self,
        request: Request<pb::CreateInvitationRequest>,
    ) -> Result<Response<pb::CreateInvitationResponse>, Status> {
        let (p, _) = caller(&self.accounts, &request)?;
        let r = request.into_inner();
        code("credit_code", &r.credit_code)?;
        let (code, expires, replayed) = self
            .accounts
            .invite(
                &p,
                &r.credit_code,
                r.valid_hours,
                &r.request_id,
                &r.encode_to_vec(),
            )
            .await?;
        Ok(Response::new(pb::CreateInvitationResponse {
            code,
            expires_at: Some(timestamp(expires)),
            replayed,
        }))
    }

    async fn accept_invitation(
        &self,
        request: Request<pb::AcceptInvitationRequest>,
    ) -> Result<Response<pb::AcceptInvitationResponse>, Status> {
        let r = request.into_inner();
        let mut fingerprinted = r.clone();
        if let Some(c) = fingerprinted.person.as_mut() {
            c.password.clear();
        }
        let person = creds(r.person, "person")?;
        let (person_id, m) = self
            .accounts
            .accept(
                &r.code,
                &person,
                &r.request_id,
                &fingerprinted.encode_to_vec(),
            )
            .await?;
        Ok(Response::new(pb::AcceptInvitationResponse {
            person_id,
            membership: Some(membership_to(m)),
        }))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let (p, _) = caller(&self.accounts, &request)?;
        let r = request.into_inner();
        code("credit_code", &r.credit_code)?;
        let members = self.accounts.members(&p, &r.credit_code).await?;
        Ok(Response::new(pb::ListMembersResponse {
            members: members.into_iter().map(membership_to).collect(),
        }))
    }

    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        let (p, _) = caller(&self.accounts, &request)?;
        let r = request.into_inner();
        code("credit_code", &r.credit_code)?;
        code("person_id", &r.person_id)?;
        self.accounts
            .remove_member(&p, &r.credit_code, &r.person_id)
            .await?;
        Ok(Response::new(pb::RemoveMemberResponse {}))
    }

    async fn sign_in(
        &self,
        request: Request<pb::SignInRequest>,
    ) -> Result<Response<pb::SignInResponse>, Status> {
        let r = request.into_inner();
        code("credit_code", &r.credit_code)?;
        let tokens = self
            .accounts
            .sign_in(&r.login, &r.password, &r.credit_code)
            .await?;
        Ok(Response::new(pb::SignInResponse {
            tokens: Some(tokens_to(tokens)),
        }))
    }

    async fn refresh_token(
        &self,
        request: Request<pb::RefreshTokenRequest>,
    ) -> Result<Response<pb::RefreshTokenResponse>, Status> {
        let r = request.into_inner();
        let tokens = self.accounts.refresh_tokens(&r.refresh_token).await?;
        Ok(Response::new(pb::RefreshTokenResponse {
            tokens: Some(tokens_to(tokens)),
        }))
    }

    async fn sign_out(
        &self,
        request: Request<pb::SignOutRequest>,
    ) -> Result<Response<pb::SignOutResponse>, Status> {
        let r = request.into_inner();
        self.accounts.sign_out(&r.refresh_token).await?;
        Ok(Response::new(pb::SignOutResponse {}))
    }

    async fn sign_out_everywhere(
        &self,
        request: Request<pb::SignOutEverywhereRequest>,
    ) -> Result<Response<pb::SignOutEverywhereResponse>, Status> {
        let (_, claims) = caller(&self.accounts, &request)?;
        let claims = claims.ok_or_else(|| {
            Status::failed_precondition("an operator token has no sessions to end")
        })?;
        let sessions = self.accounts.sign_out_everywhere(&claims).await?;
        Ok(Response::new(pb::SignOutEverywhereResponse {
            sessions: i64::try_from(sessions).unwrap_or(i64::MAX),
        }))
    }

    async fn get_verification_keys(
        &self,
        _request: Request<pb::GetVerificationKeysRequest>,
    ) -> Result<Response<pb::GetVerificationKeysResponse>, Status> {
        let jwks = serde_json::to_string(&self.accounts.jwks())
            .map_err(|e| cwsm_platform::Error::Internal(e.into()))?;
        let r = self.accounts.revocations().await?;
        Ok(Response::new(pb::GetVerificationKeysResponse {
            jwks_json: jwks,
            revoked_organizations: r.organizations.into_iter().collect(),
            revoked_people: r.subjects.into_iter().collect(),
            revoked_sessions: r.sessions.into_iter().collect(),
            removed_memberships: r.memberships.into_iter().collect(),
        }))
    }

    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Result<Response<pb::RotateSigningKeyResponse>, Status> {
        let (p, _) = caller(&self.accounts, &request)?;
        let (kid, from) = self.accounts.rotate_key(&p).await?;
        Ok(Response::new(pb::RotateSigningKeyResponse {
            kid,
            signs_from: Some(timestamp(from)),
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let (p, _) = caller(&self.accounts, &request)?;
        let r = request.into_inner();
        cwsm_platform::input::check_len(
            "page_token",
            &r.page_token,
            cwsm_platform::input::MAX_TOKEN,
        )?;
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let (events, next_page_token) = self.accounts.audit_events(&p, &r.action, &page).await?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: events
                .into_iter()
                .map(|e| pb::AuditEvent {
                    id: e.id,
                    at: Some(timestamp(e.at_ms)),
                    actor: e.actor,
                    action: e.action,
                    target: e.target,
                    detail: e.detail,
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let (p, _) = caller(&self.accounts, &request)?;
        let r = request.into_inner();
        code("credit_code", &r.credit_code)?;
        cwsm_platform::input::check_len("name", &r.name, cwsm_platform::input::MAX_NAME)?;
        let made = self
            .accounts
            .create_api_key(
                &p,
                &r.credit_code,
                &r.name,
                r.valid_days,
                &r.request_id,
                &r.encode_to_vec(),
            )
            .await?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            key: Some(api_key_to(made.key)),
            api_key: made.api_key,
            replayed: made.replayed,
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let (p, _) = caller(&self.accounts, &request)?;
        let r = request.into_inner();
        code("credit_code", &r.credit_code)?;
        cwsm_platform::input::check_len(
            "page_token",
            &r.page_token,
            cwsm_platform::input::MAX_TOKEN,
        )?;
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let (keys, next_page_token) = self.accounts.api_keys(&p, &r.credit_code, &page).await?;
        Ok(Response::new(pb::ListApiKeysResponse {
            keys: keys.into_iter().map(api_key_to).collect(),
            next_page_token,
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let (p, _) = caller(&self.accounts, &request)?;
        let r = request.into_inner();
        code("id", &r.id)?;
        let key = self.accounts.revoke_api_key(&p, &r.id).await?;
        Ok(Response::new(pb::RevokeApiKeyResponse {
            key: Some(api_key_to(key)),
        }))
    }

    async fn exchange_api_key(
        &self,
        request: Request<pb::ExchangeApiKeyRequest>,
    ) -> Result<Response<pb::ExchangeApiKeyResponse>, Status> {
        let r = request.into_inner();
        let t = self.accounts.exchange_api_key(&r.api_key).await?;
        Ok(Response::new(pb::ExchangeApiKeyResponse {
            access_token: t.access_token,
            access_token_expires_at: Some(timestamp(t.expires_at_ms)),
            key_id: t.key_id,
            credit_code: t.credit_code,
            role: role_to(t.role) as i32,
            organization_status: status_to(t.status) as i32,
        }))
    }

    async fn suspend_person(
        &self,
        request: Request<pb::SuspendPersonRequest>,
    ) -> Result<Response<pb::SuspendPersonResponse>, Status> {
        let (p, _) = caller(&self.accounts, &request)?;
        let r = request.into_inner();
        code("person_id", &r.person_id)?;
        let person = self
            .accounts
            .suspend_person(&p, &r.person_id, &r.reason)
            .await?;
        Ok(Response::new(pb::SuspendPersonResponse {
            person: Some(person_to(person)),
        }))
    }

    async fn reinstate_person(
        &self,
        request: Request<pb::ReinstatePersonRequest>,
    ) -> Result<Response<pb::ReinstatePersonResponse>, Status> {
        let (p, _) = caller(&self.accounts, &request)?;
        let r = request.into_inner();
        code("person_id", &r.person_id)?;
        let person = self.accounts.reinstate_person(&p, &r.person_id).await?;
        Ok(Response::new(pb::ReinstatePersonResponse {
            person: Some(person_to(person)),
        }))
    }

    async fn start_external_sign_in(
        &self,
        request: Request<pb::StartExternalSignInRequest>,
    ) -> Result<Response<pb::StartExternalSignInResponse>, Status> {
        let r = request.into_inner();
        let (authorization_url, state, expires) = self
            .accounts
            .start_external_sign_in(&r.provider, &r.redirect_uri)
            .await?;
        Ok(Response::new(pb::StartExternalSignInResponse {
            authorization_url,
            state,
            expires_at: Some(timestamp(expires)),
        }))
    }

    async fn complete_external_sign_in(
        &self,
        request: Request<pb::CompleteExternalSignInRequest>,
    ) -> Result<Response<pb::CompleteExternalSignInResponse>, Status> {
        let r = request.into_inner();
        let tokens = self
            .accounts
            .complete_external_sign_in(&r.state, &r.code, &r.credit_code)
            .await?;
        Ok(Response::new(pb::CompleteExternalSignInResponse {
            tokens: Some(tokens_to(tokens)),
        }))
    }

    async fn link_external_identity(
        &self,
        request: Request<pb::LinkExternalIdentityRequest>,
    ) -> Result<Response<pb::LinkExternalIdentityResponse>, Status> {
        let (p, _) = caller(&self.accounts, &request)?;
        let r = request.into_inner();
        let key = cwsm_platform::idempotency::RequestKey::new(
            &p,
            "LinkExternalIdentity",
            &r.person_id,
            &r.request_id,
            &r,
        )?;
        let identity = self
            .accounts
            .link_external_identity(&p, &key, &r.person_id, &r.provider, &r.subject)
            .await?;
        Ok(Response::new(pb::LinkExternalIdentityResponse {
            identity: Some(identity_to(identity)),
        }))
    }

    async fn list_external_identities(
        &self,
        request: Request<pb::ListExternalIdentitiesRequest>,
    ) -> Result<Response<pb::ListExternalIdentitiesResponse>, Status> {
        let (p, _) = caller(&self.accounts, &request)?;
        let r = request.into_inner();
        let identities = self.accounts.external_identities(&p, &r.person_id).await?;
        Ok(Response::new(pb::ListExternalIdentitiesResponse {
            identities: identities.into_iter().map(identity_to).collect(),
        }))
    }

    async fn unlink_external_identity(
        &self,
        request: Request<pb::UnlinkExternalIdentityRequest>,
    ) -> Result<Response<pb::UnlinkExternalIdentityResponse>, Status> {
        let (p, _) = caller(&self.accounts, &request)?;
        let r = request.into_inner();
        self.accounts
            .unlink_external_identity(&p, &r.provider, &r.subject)
            .await?;
        Ok(Response::new(pb::UnlinkExternalIdentityResponse {}))
    }
}

fn api_key_to(k: crate::store::ApiKeyRow) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id,
        name: k.name,
        credit_code: k.credit_code,
        role: Role::parse(&k.role)
            .map(role_to)
            .unwrap_or(pb::Role::Unspecified) as i32,
        created_by: k.created_by,
        created_at: Some(timestamp(k.created_at_ms)),
        expires_at: Some(timestamp(k.expires_at_ms)),
        revoked_at: k.revoked_at_ms.map(timestamp),
        revoked_by: k.revoked_by,
        last_used_at: k.last_used_at_ms.map(timestamp),
    }
}

fn person_to(p: crate::PersonStanding) -> pb::Person {
    pb::Person {
        person_id: p.person_id,
        display_name: p.display_name,
        suspended: p.suspended_at_ms.is_some(),
        suspended_reason: p.suspended_reason,
        suspended_at: p.suspended_at_ms.map(timestamp),
        suspended_by: p.suspended_by,
    }
}

fn identity_to(i: crate::store::ExternalIdentity) -> pb::ExternalIdentity {
    pb::ExternalIdentity {
        person_id: i.person_id,
        provider: i.provider,
        issuer: i.issuer,
        subject: i.subject,
        email: i.email,
        linked_at: Some(timestamp(i.linked_at_ms)),
        linked_by: i.linked_by,
    }
}

/// Reads a verification response back into a key set and a revocation list (for verifiers in
/// other processes).
pub fn verification_from(
    r: pb::GetVerificationKeysResponse,
) -> anyhow::Result<(jsonwebtoken::jwk::JwkSet, cwsm_platform::auth::Revocations)> {
    let jwks = serde_json::from_str(&r.jwks_json)?;
    Ok((
        jwks,
        cwsm_platform::auth::Revocations {
            organizations: r.revoked_organizations.into_iter().collect(),
            subjects: r.revoked_people.into_iter().collect(),
            sessions: r.revoked_sessions.into_iter().collect(),
            memberships: r.removed_memberships.into_iter().collect(),
        },
    ))
}
