//! The accounts service through real gRPC, on SQLite + in-process bus and PostgreSQL + Redis:
//! registration and review, password sign-in, tokens the other services accept, no user
//! enumeration, lockout, refresh rotation and reuse detection, suspension and its revocation,
//! the JWKS and foreign keys, acting before approval.

use std::time::Duration;

use cwsm::app::{self, Services};
use cwsm_platform::auth::{ACCESS_AUDIENCE, ACCOUNTS_ISSUER, AccessClaims, Role};
use cwsm_platform::config::Settings;
use cwsm_proto::accounts::v1 as a;
use cwsm_proto::accounts::v1::accounts_service_client::AccountsServiceClient;
use cwsm_proto::matching::v1 as m;
use cwsm_proto::projects::v1 as p;
use cwsm_proto::reporting::v1 as r;
use cwsm_tests::{
    Backend, Bearer, TestApp, bearer, credit_code, eventually, fresh_credit_code,
    postgres_and_redis_available,
};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub(crate) const PASSWORD: &str = "correct horse battery";

type Client = AccountsServiceClient<InterceptedService<Channel, Bearer>>;

pub(crate) fn accounts(channel: &Channel, token: &str) -> Client {
    AccountsServiceClient::with_interceptor(channel.clone(), bearer(token))
}

fn rid(label: &str) -> String {
    format!("{label}-{}", cwsm_platform::new_id())
}

fn login(label: &str) -> String {
    format!("{label}-{}@Example.CN", &cwsm_platform::new_id()[24..])
}

/// Registers an organization of `kind` with a new registrant; returns its credit code and the
/// registrant's login.
async fn register(
    app: &TestApp,
    body: &str,
    kind: a::OrganizationKind,
) -> anyhow::Result<(String, String)> {
    register_code(app, &credit_code(body), kind).await
}

/// Registers the organization with credit code `code` in the platform's district; returns its
/// code and the registrant's login.
pub(crate) async fn register_code(
    app: &TestApp,
    code: &str,
    kind: a::OrganizationKind,
) -> anyhow::Result<(String, String)> {
    let (org, login) = register_in(app, code, kind, "", "").await?;
    Ok((org.credit_code, login))
}

/// Registers organization `code` of `kind` in `jurisdiction` (empty: the platform's district)
/// and `department`, with a new registrant; returns it as registered and the registrant's login.
async fn register_in(
    app: &TestApp,
    code: &str,
    kind: a::OrganizationKind,
    jurisdiction: &str,
    department: &str,
) -> anyhow::Result<(a::Organization, String)> {
    let login = login("reg");
    let answer = accounts(&app.channel, "")
        .register_organization(a::RegisterOrganizationRequest {
            request_id: rid("reg"),
            credit_code: code.to_string(),
            name: format!("Org {code}"),
            kind: kind as i32,
            registrant: Some(a::NewCredentials {
                login: login.clone(),
                password: PASSWORD.into(),
                display_name: "Li Wei".into(),
            }),
            jurisdiction: jurisdiction.into(),
            department: department.into(),
        })
        .await?
        .into_inner();
    let org = answer
        .organization
        .ok_or_else(|| anyhow::anyhow!("no organization"))?;
    assert_eq!(org.status, a::OrganizationStatus::Pending as i32);
    Ok((org, login))
}

pub(crate) async fn approve(app: &TestApp, code: &str) -> anyhow::Result<()> {
    let admin = app.token(Role::Admin, None);
    accounts(&app.channel, &admin)
        .approve_organization(a::ApproveOrganizationRequest {
            credit_code: code.into(),
            note: "papers checked".into(),
            expected_version: 0,
        })
        .await?;
    Ok(())
}

pub(crate) async fn sign_in(
    app: &TestApp,
    login: &str,
    password: &str,
) -> Result<a::Tokens, tonic::Status> {
    accounts(&app.channel, "")
        .sign_in(a::SignInRequest {
            login: login.into(),
            password: password.into(),
            credit_code: String::new(),
        })
        .await?
        .into_inner()
        .tokens
        .ok_or_else(|| tonic::Status::internal("no tokens"))
}

async fn create_company(
    app: &TestApp,
    token: &str,
    code: &str,
) -> Result<m::Company, tonic::Status> {
    app.matching(token)
        .create_company(m::CreateCompanyRequest {
            request_id: rid("company"),
            company: Some(m::Company {
                credit_code: code.into(),
                name: "清源节水".into(),
                towns: vec!["新桥街道".into()],
                financing_capacity_fen: 100_000_000,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .company
        .ok_or_else(|| tonic::Status::internal("no company"))
}

async fn start(backend: Backend) -> anyhow::Result<Option<TestApp>> {
    if backend == Backend::Postgres && !postgres_and_redis_available().await {
        return Ok(None);
    }
    Ok(Some(TestApp::start(backend).await?))
}

// ---------------------------------------------------------------------------------------------

/// Register → approve → sign in with a password → the token acts for its company in matching,
/// and projects and reporting accept it; before approval it is PERMISSION_DENIED saying why.
async fn sign_in_and_act(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = start(backend).await? else {
        return Ok(());
    };
    let (code, login) = register(&app, "91320411MA1N2B3C4", a::OrganizationKind::Company).await?;

    // Pending: it may sign in, not act.
    let pending = sign_in(&app, &login, PASSWORD).await?;
    assert_eq!(
        pending.organization_status,
        a::OrganizationStatus::Pending as i32
    );
    let denied = create_company(&app, &pending.access_token, &code)
        .await
        .expect_err("pending");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains("not approved yet"),
        "{}",
        denied.message()
    );

    approve(&app, &code).await?;
    // The login is compared case-insensitively.
    let tokens = sign_in(&app, &login.to_uppercase(), PASSWORD).await?;
    assert_eq!(tokens.role, a::Role::Company as i32);
    assert_eq!(tokens.credit_code, code);
    let company = create_company(&app, &tokens.access_token, &code).await?;
    let updated = app
        .matching(&tokens.access_token)
        .update_company(m::UpdateCompanyRequest {
            request_id: rid("update"),
            company: Some(m::Company {
                name: "清源节水科技".into(),
                ..company.clone()
            }),
            expected_version: 0,
        })
        .await?
        .into_inner()
        .company
        .ok_or_else(|| anyhow::anyhow!("no company"))?;
    assert_eq!(updated.name, "清源节水科技");
    // Another company's token may not act for it.
    let (other_code, other_login) =
        register(&app, "91320411MA1N2B3C5", a::OrganizationKind::Company).await?;
    approve(&app, &other_code).await?;
    let other = sign_in(&app, &other_login, PASSWORD).await?;
    let refused = app
        .matching(&other.access_token)
        .update_company(m::UpdateCompanyRequest {
            request_id: rid("update"),
            company: Some(company),
            expected_version: 0,
        })
        .await
        .expect_err("another company");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    app.projects(&tokens.access_token)
        .list_projects(p::ListProjectsRequest::default())
        .await?;
    app.reporting(&tokens.access_token)
        .list_plans(r::ListPlansRequest::default())
        .await?;

    // Audited: the registration, the approval, the sign-ins.
    let admin = app.token(Role::Admin, None);
    let log = accounts(&app.channel, &admin)
        .list_audit_events(a::ListAuditEventsRequest {
            action: String::new(),
            page_size: 100,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    let actions: Vec<&str> = log
        .events
        .iter()
        .filter(|e| e.target == code)
        .map(|e| e.action.as_str())
        .collect();
    for action in ["register", "approve", "sign_in"] {
        assert!(actions.contains(&action), "{action} not in {actions:?}");
    }
    // Paged: one at a time, no event twice.
    let first = accounts(&app.channel, &admin)
        .list_audit_events(a::ListAuditEventsRequest {
            action: "sign_in".into(),
            page_size: 1,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(first.events.len(), 1);
    let second = accounts(&app.channel, &admin)
        .list_audit_events(a::ListAuditEventsRequest {
            action: "sign_in".into(),
            page_size: 1,
            page_token: first.next_page_token,
        })
        .await?
        .into_inner();
    assert_eq!(second.events.len(), 1);
    assert_ne!(first.events[0].id, second.events[0].id);
    // Not for others.
    let not_admin = accounts(&app.channel, &tokens.access_token)
        .list_audit_events(a::ListAuditEventsRequest::default())
        .await
        .expect_err("not an admin");
    assert_eq!(not_admin.code(), Code::PermissionDenied);

    // A malformed credit code names the field.
    let bad = accounts(&app.channel, "")
        .register_organization(a::RegisterOrganizationRequest {
            request_id: rid("reg"),
            credit_code: "notacode".into(),
            name: "X".into(),
            kind: a::OrganizationKind::Company as i32,
            registrant: Some(a::NewCredentials {
                login: login_str(),
                password: PASSWORD.into(),
                display_name: "X".into(),
            }),
            ..Default::default()
        })
        .await
        .expect_err("bad code");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("credit_code"), "{}", bad.message());
    app.stop().await
}

fn login_str() -> String {
    login("x")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_and_acts_for_their_approved_company_on_sqlite() -> anyhow::Result<()> {
    sign_in_and_act(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_and_acts_for_their_approved_company_on_postgres() -> anyhow::Result<()> {
    sign_in_and_act(Backend::Postgres).await
}

/// A wrong password and an unknown login get the same answer; five failures lock the login
/// (known or not) and then even the right password gets that answer.
async fn no_enumeration_and_lockout(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = start(backend).await? else {
        return Ok(());
    };
    let (code, login) = register(&app, "91320411MA1N2B3D4", a::OrganizationKind::WaterUser).await?;
    approve(&app, &code).await?;

    let wrong = sign_in(&app, &login, "not the password")
        .await
        .expect_err("wrong password");
    let unknown = sign_in(&app, &format!("nobody-{login}"), "not the password")
        .await
        .expect_err("unknown");
    let malformed = sign_in(&app, "not a login", "not the password")
        .await
        .expect_err("malformed");
    for e in [&wrong, &unknown, &malformed] {
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        assert_eq!(e.message(), wrong.message());
        assert!(e.details().is_empty());
    }
    // Registering with a taken login and a wrong password says no more than sign-in does.
    let taken = accounts(&app.channel, "")
        .register_organization(a::RegisterOrganizationRequest {
            request_id: rid("reg"),
            credit_code: credit_code("91320411MA1N2B3D5"),
            name: "X".into(),
            kind: a::OrganizationKind::Company as i32,
            registrant: Some(a::NewCredentials {
                login: login.clone(),
                password: "another password".into(),
                display_name: "X".into(),
            }),
            ..Default::default()
        })
        .await
        .expect_err("taken login");
    assert_eq!(taken.code(), Code::Unauthenticated);
    assert_eq!(taken.message(), wrong.message());

    // Two failures so far (wrong, taken); three more lock it.
    for _ in 0..3 {
        sign_in(&app, &login, "still not it")
            .await
            .expect_err("wrong");
    }
    let locked = sign_in(&app, &login, PASSWORD).await.expect_err("locked");
    assert_eq!(locked.code(), Code::Unauthenticated);
    assert_eq!(locked.message(), wrong.message());
    // An unknown login locks alike: its lock does not reveal that it is unknown.
    let ghost = format!("ghost-{login}");
    for _ in 0..5 {
        sign_in(&app, &ghost, "guess").await.expect_err("unknown");
    }
    let ghost_locked = sign_in(&app, &ghost, "guess").await.expect_err("locked");
    assert_eq!(ghost_locked.message(), wrong.message());
    // The failures are audited under a tag, not the login typed.
    let admin = app.token(Role::Admin, None);
    let log = accounts(&app.channel, &admin)
        .list_audit_events(a::ListAuditEventsRequest {
            action: "sign_in_failed".into(),
            page_size: 100,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    assert!(log.events.len() >= 10, "{}", log.events.len());
    assert!(log.events.iter().all(|e| !e.target.contains('@')));
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_and_unknown_logins_look_alike_and_lock_on_sqlite() -> anyhow::Result<()> {
    no_enumeration_and_lockout(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_and_unknown_logins_look_alike_and_lock_on_postgres() -> anyhow::Result<()>
{
    no_enumeration_and_lockout(Backend::Postgres).await
}

/// Refresh rotates; a used-up refresh token used again revokes the whole session, access
/// tokens included; sign-out everywhere ends every session.
async fn refresh_rotation(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = start(backend).await? else {
        return Ok(());
    };
    let (code, login) = register(&app, "91320411MA1N2B3E4", a::OrganizationKind::Company).await?;
    approve(&app, &code).await?;
    let first = sign_in(&app, &login, PASSWORD).await?;
    let refresh = |token: String| {
        let channel = app.channel.clone();
        async move {
            accounts(&channel, "")
                .refresh_token(a::RefreshTokenRequest {
                    refresh_token: token,
                })
                .await
                .map(|r| r.into_inner().tokens.unwrap_or_default())
        }
    };
    let second = refresh(first.refresh_token.clone()).await?;
    assert_ne!(second.refresh_token, first.refresh_token);
    let third = refresh(second.refresh_token.clone()).await?;
    create_company(&app, &third.access_token, &code).await?;

    // The first token again: a thief's copy. The whole session ends.
    let reused = refresh(first.refresh_token.clone())
        .await
        .expect_err("reuse");
    assert_eq!(reused.code(), Code::Unauthenticated);
    assert!(
        reused.message().contains("session is revoked"),
        "{}",
        reused.message()
    );
    let latest = refresh(third.refresh_token.clone())
        .await
        .expect_err("family revoked");
    assert_eq!(latest.code(), Code::Unauthenticated);
    let access = app
        .projects(&third.access_token)
        .list_projects(p::ListProjectsRequest::default())
        .await
        .expect_err("access token of the revoked session");
    assert_eq!(access.code(), Code::Unauthenticated, "{access:?}");

    // Sign out everywhere: two sessions, both end.
    let a1 = sign_in(&app, &login, PASSWORD).await?;
    let a2 = sign_in(&app, &login, PASSWORD).await?;
    let ended = accounts(&app.channel, &a1.access_token)
        .sign_out_everywhere(a::SignOutEverywhereRequest {})
        .await?
        .into_inner();
    assert_eq!(ended.sessions, 2);
    assert_eq!(
        refresh(a2.refresh_token.clone())
            .await
            .expect_err("ended")
            .code(),
        Code::Unauthenticated
    );
    let gone = app
        .projects(&a2.access_token)
        .list_projects(p::ListProjectsRequest::default())
        .await
        .expect_err("ended");
    assert_eq!(gone.code(), Code::Unauthenticated);
    // A new sign-in works.
    let again = sign_in(&app, &login, PASSWORD).await?;
    app.projects(&again.access_token)
        .list_projects(p::ListProjectsRequest::default())
        .await?;
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_reuse_revokes_the_session_on_sqlite() -> anyhow::Result<()> {
    refresh_rotation(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_reuse_revokes_the_session_on_postgres() -> anyhow::Result<()> {
    refresh_rotation(Backend::Postgres).await
}

/// Matching alone in a process of its own (its own SQLite folder), verifying tokens from the
/// accounts service of `app`, whose revocation list it fetches every second.
struct Remote {
    running: app::Running,
    channel: Channel,
    dir: std::path::PathBuf,
}

impl Remote {
    async fn start(app: &TestApp) -> anyhow::Result<Remote> {
        let dir =
            std::env::temp_dir().join(format!("cwsm-test-remote-{}", cwsm_platform::new_id()));
        let settings = Settings {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.clone(),
            accounts_url: Some(format!(
                "http://{}",
                app.running
                    .as_ref()
                    .map(|r| r.addr)
                    .ok_or_else(|| anyhow::anyhow!("not running"))?
            )),
            accounts_refresh_secs: 1,
            ..Settings::default()
        };
        let running = app::start(
            &settings,
            Services::only("matching")?,
            app.bus.clone(),
            app.keys.clone(),
            CancellationToken::new(),
        )
        .await?;
        let channel = Channel::from_shared(format!("http://{}", running.addr))?
            .connect()
            .await?;
        Ok(Remote {
            running,
            channel,
            dir,
        })
    }

    /// The code the remote matching answers a read with `token`.
    async fn answer(&self, token: &str) -> Code {
        let mut c = m::matching_service_client::MatchingServiceClient::with_interceptor(
            self.channel.clone(),
            bearer(token),
        );
        match c.list_companies(m::ListCompaniesRequest::default()).await {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        }
    }

    /// Whether the remote accepts `token` within 20 s (it fetches the keys first).
    async fn accepts(&self, token: &str) -> bool {
        eventually(Duration::from_secs(20), || async {
            (self.answer(token).await == Code::Ok).then_some(())
        })
        .await
        .is_some()
    }

    /// Whether the remote refuses `token` as UNAUTHENTICATED within 20 s (its next refresh of
    /// the revocation list).
    async fn refuses(&self, token: &str) -> bool {
        eventually(Duration::from_secs(20), || async {
            (self.answer(token).await == Code::Unauthenticated).then_some(())
        })
        .await
        .is_some()
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.running.stop().await?;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

/// A suspended organization: its refresh fails saying why, its access token stops at once in
/// this process and within the refresh interval in a process that fetches the revocations
/// from the accounts service (a matching-only process with `accounts_url`).
async fn suspension(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = start(backend).await? else {
        return Ok(());
    };
    let (code, login) = register(&app, "91320411MA1N2B3F4", a::OrganizationKind::Company).await?;
    approve(&app, &code).await?;
    let tokens = sign_in(&app, &login, PASSWORD).await?;

    let remote = Remote::start(&app).await?;
    assert!(
        remote.accepts(&tokens.access_token).await,
        "the remote matching never accepted the access token"
    );

    let admin = app.token(Role::Admin, None);
    accounts(&app.channel, &admin)
        .suspend_organization(a::SuspendOrganizationRequest {
            credit_code: code.clone(),
            reason: "forged certificate".into(),
            expected_version: 0,
        })
        .await?;
    // In process: at once.
    let here = create_company(&app, &tokens.access_token, &code)
        .await
        .expect_err("suspended");
    assert_eq!(here.code(), Code::Unauthenticated);
    assert!(here.message().contains("suspended"), "{}", here.message());
    // Elsewhere: within the refresh interval.
    assert!(
        remote.refuses(&tokens.access_token).await,
        "the remote matching kept accepting a suspended organization's token"
    );
    // Refresh: refused, saying why.
    let refused = accounts(&app.channel, "")
        .refresh_token(a::RefreshTokenRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await
        .expect_err("suspended");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let again = sign_in(&app, &login, PASSWORD)
        .await
        .expect_err("suspended");
    assert_eq!(again.code(), Code::PermissionDenied);
    assert!(
        again.message().contains("forged certificate"),
        "{}",
        again.message()
    );
    remote.stop().await?;
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_organization_stops_within_the_revocation_refresh_on_sqlite()
-> anyhow::Result<()> {
    suspension(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_organization_stops_within_the_revocation_refresh_on_postgres()
-> anyhow::Result<()> {
    suspension(Backend::Postgres).await
}

/// The JWKS is served over HTTP on the port; a token signed by a key not in it (an unknown
/// kid, or a published kid with another key's signature) is refused; a rotated key is
/// published before it signs.
async fn jwks(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = start(backend).await? else {
        return Ok(());
    };
    let addr = app
        .running
        .as_ref()
        .map(|r| r.addr)
        .ok_or_else(|| anyhow::anyhow!("not running"))?;
    let body = http_get(addr, "/.well-known/jwks.json").await?;
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&body)?;
    assert_eq!(set.keys.len(), 1, "{body}");
    let kid = set.keys[0].common.key_id.clone().unwrap_or_default();
    assert!(
        !body.contains("\"d\""),
        "a private part in the JWKS: {body}"
    );

    let (code, login) = register(&app, "91320411MA1N2B3G4", a::OrganizationKind::Company).await?;
    approve(&app, &code).await?;
    let tokens = sign_in(&app, &login, PASSWORD).await?;
    let header = jsonwebtoken::decode_header(&tokens.access_token)?;
    assert_eq!(header.kid.as_deref(), Some(kid.as_str()));

    // Forged: the claims of a real token, signed by a key of the attacker's.
    let claims: AccessClaims =
        jsonwebtoken::dangerous::insecure_decode(&tokens.access_token)?.claims;
    assert!(claims.exp - claims.iat <= 15 * 60);
    assert_eq!(
        (claims.iss.as_str(), claims.aud.as_str()),
        (ACCOUNTS_ISSUER, ACCESS_AUDIENCE)
    );
    let foreign = cwsm_accounts::keys::StoredKey::generate(0, 0)?;
    for forged_kid in [foreign.kid.clone(), kid.clone()] {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = Some(forged_kid.clone());
        let forged = jsonwebtoken::encode(&h, &claims, &foreign.encoding_key()?)?;
        let e = create_company(&app, &forged, &code)
            .await
            .expect_err("forged");
        assert_eq!(e.code(), Code::Unauthenticated, "{forged_kid}: {e:?}");
    }

    // Rotation: the new key is published at once, signs only after the publication delay.
    let admin = app.token(Role::Admin, None);
    let rotated = accounts(&app.channel, &admin)
        .rotate_signing_key(a::RotateSigningKeyRequest {})
        .await?
        .into_inner();
    let after: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&http_get(addr, "/.well-known/jwks.json").await?)?;
    let kids: Vec<String> = after
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.clone())
        .collect();
    assert!(
        kids.contains(&kid) && kids.contains(&rotated.kid),
        "{kids:?}"
    );
    let next = sign_in(&app, &login, PASSWORD).await?;
    assert_eq!(
        jsonwebtoken::decode_header(&next.access_token)?
            .kid
            .as_deref(),
        Some(kid.as_str())
    );
    create_company(&app, &next.access_token, &code).await?;
    // The same set over gRPC.
    let grpc = accounts(&app.channel, "")
        .get_verification_keys(a::GetVerificationKeysRequest {})
        .await?
        .into_inner();
    let via_grpc: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&grpc.jwks_json)?;
    assert_eq!(via_grpc.keys.len(), 2);
    app.stop().await
}

/// A plain HTTP/1.1 GET on loopback.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8(out)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no body: {text}"))?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "{head}");
    anyhow::ensure!(
        head.to_lowercase()
            .contains("content-type: application/jwk-set+json"),
        "{head}"
    );
    Ok(body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_is_served_and_other_keys_are_refused_on_sqlite() -> anyhow::Result<()> {
    jwks(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_is_served_and_other_keys_are_refused_on_postgres() -> anyhow::Result<()> {
    jwks(Backend::Postgres).await
}

/// An invitation brings a second member; removing the membership stops their tokens.
async fn invitations(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = start(backend).await? else {
        return Ok(());
    };
    let (code, login) = register(&app, "91320411MA1N2B3H4", a::OrganizationKind::WaterUser).await?;
    let owner = sign_in(&app, &login, PASSWORD).await?;
    // Pending: no invitations yet.
    let early = accounts(&app.channel, &owner.access_token)
        .create_invitation(a::CreateInvitationRequest {
            request_id: rid("inv"),
            credit_code: code.clone(),
            valid_hours: 0,
        })
        .await
        .expect_err("pending");
    assert_eq!(early.code(), Code::PermissionDenied);
    approve(&app, &code).await?;
    let owner = sign_in(&app, &login, PASSWORD).await?;
    let invitation = accounts(&app.channel, &owner.access_token)
        .create_invitation(a::CreateInvitationRequest {
            request_id: rid("inv"),
            credit_code: code.clone(),
            valid_hours: 1,
        })
        .await?
        .into_inner();
    let member_login = login_str();
    let joined = accounts(&app.channel, "")
        .accept_invitation(a::AcceptInvitationRequest {
            request_id: rid("join"),
            code: invitation.code.clone(),
            person: Some(a::NewCredentials {
                login: member_login.clone(),
                password: PASSWORD.into(),
                display_name: "Wang Fang".into(),
            }),
        })
        .await?
        .into_inner();
    assert_eq!(
        joined.membership.map(|m| m.role),
        Some(a::Role::WaterUser as i32)
    );
    let twice = accounts(&app.channel, "")
        .accept_invitation(a::AcceptInvitationRequest {
            request_id: rid("join"),
            code: invitation.code,
            person: Some(a::NewCredentials {
                login: login_str(),
                password: PASSWORD.into(),
                display_name: "X".into(),
            }),
        })
        .await
        .expect_err("used");
    assert_eq!(twice.code(), Code::NotFound);
    let member = sign_in(&app, &member_login, PASSWORD).await?;
    app.projects(&member.access_token)
        .list_projects(p::ListProjectsRequest::default())
        .await?;
    let members = accounts(&app.channel, &owner.access_token)
        .list_members(a::ListMembersRequest {
            credit_code: code.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(members.members.len(), 2);
    accounts(&app.channel, &owner.access_token)
        .remove_member(a::RemoveMemberRequest {
            credit_code: code.clone(),
            person_id: joined.person_id.clone(),
        })
        .await?;
    let removed = app
        .projects(&member.access_token)
        .list_projects(p::ListProjectsRequest::default())
        .await
        .expect_err("removed");
    assert_eq!(removed.code(), Code::Unauthenticated);
    let no_refresh = accounts(&app.channel, "")
        .refresh_token(a::RefreshTokenRequest {
            refresh_token: member.refresh_token,
        })
        .await
        .expect_err("removed");
    assert_eq!(no_refresh.code(), Code::Unauthenticated);
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_add_members_and_removal_stops_their_tokens_on_sqlite() -> anyhow::Result<()> {
    invitations(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_add_members_and_removal_stops_their_tokens_on_postgres() -> anyhow::Result<()>
{
    invitations(Backend::Postgres).await
}

/// `cwsm token issue` (the operators' tool) refuses what issue 10 found it accepting: a data
/// folder without a key (it used to create one silently and print a token no server
/// accepts), the `service` role, and an organization that is not a credit code.
///
/// And (below) an organization must be registered and approved in the accounts service, in
/// the role asked: `--org notacode`, an invented code and another role's code were accepted.
#[test]
fn token_issue_refuses_a_missing_key_the_service_role_and_bad_codes() -> anyhow::Result<()> {
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_cwsm-serve"));
    let dir = std::env::temp_dir().join(format!("cwsm-token-{}", cwsm_platform::new_id()));
    let run = |args: &[&str]| {
        std::process::Command::new(&bin)
            .args(["token", "issue"])
            .args(args)
            .arg("--data-dir")
            .arg(&dir)
            .env_remove("CWSM_JWT_SECRET")
            .output()
    };
    let missing = run(&["--role", "admin"])?;
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("--init"),
        "{missing:?}"
    );
    assert!(
        !dir.join(cwsm_platform::auth::KEY_FILE).exists(),
        "a key was created"
    );

    let init = run(&["--role", "admin", "--init"])?;
    assert!(init.status.success(), "{init:?}");
    assert!(dir.join(cwsm_platform::auth::KEY_FILE).exists());
    let again = run(&["--role", "admin"])?;
    assert!(again.status.success(), "{again:?}");

    let service = run(&["--role", "service"])?;
    assert!(!service.status.success(), "{service:?}");
    let bad_org = run(&["--role", "company", "--org", "notacode"])?;
    assert!(!bad_org.status.success(), "{bad_org:?}");
    assert!(
        String::from_utf8_lossy(&bad_org.stderr).contains("--org"),
        "{bad_org:?}"
    );
    // An organization is checked with the accounts service unless --unregistered.
    let unchecked = run(&[
        "--role",
        "company",
        "--org",
        &credit_code("91320411MA1N2B3C4"),
        "--server",
        "http://127.0.0.1:1",
    ])?;
    assert!(!unchecked.status.success(), "{unchecked:?}");
    assert!(
        String::from_utf8_lossy(&unchecked.stderr).contains("--unregistered"),
        "{unchecked:?}"
    );
    let good_org = run(&[
        "--role",
        "company",
        "--org",
        &credit_code("91320411MA1N2B3C4"),
        "--unregistered",
    ])?;
    assert!(good_org.status.success(), "{good_org:?}");
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// `cwsm token issue --org` asks the accounts service: a registered, approved company's code
/// signs a company token; the same code as a water user, an unregistered code and a pending
/// organization are refused, each saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_issue_signs_only_for_registered_organizations_in_their_role() -> anyhow::Result<()> {
    let app = TestApp::start(Backend::Sqlite).await?;
    let (approved, _) = register(&app, "91320411MA1TK7C2D", a::OrganizationKind::Company).await?;
    approve(&app, &approved).await?;
    let (pending, _) = register(&app, "91320411MA1TK7C3E", a::OrganizationKind::Company).await?;
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_cwsm-serve"));
    let server = format!(
        "http://{}",
        app.running
            .as_ref()
            .map(|r| r.addr)
            .ok_or_else(|| anyhow::anyhow!("not running"))?
    );
    let run = |role: &str, org: &str| {
        std::process::Command::new(&bin)
            .args([
                "token", "issue", "--role", role, "--org", org, "--server", &server,
            ])
            // The test server's key (32 bytes of 42, '*').
            .env("CWSM_JWT_SECRET", "*".repeat(32))
            .output()
    };
    let ok = run("company", &approved)?;
    assert!(ok.status.success(), "{ok:?}");
    let other_role = run("water_user", &approved)?;
    assert!(!other_role.status.success());
    assert!(
        String::from_utf8_lossy(&other_role.stderr).contains("act as company"),
        "{other_role:?}"
    );
    let invented = run("company", &credit_code("91320411MA1TK7C4F"))?;
    assert!(
        String::from_utf8_lossy(&invented.stderr).contains("not registered"),
        "{invented:?}"
    );
    let waiting = run("company", &pending)?;
    assert!(
        String::from_utf8_lossy(&waiting.stderr).contains("approves it first"),
        "{waiting:?}"
    );
    app.stop().await
}

// ---------------------------------------------------------------------------------------------
// Jurisdictions: administrators review the organizations of their own jurisdiction only.

/// A district office (or department) of `jurisdiction`, approved by an operator, and the access
/// token of its first member.
pub(crate) async fn office_admin(
    app: &TestApp,
    jurisdiction: &str,
    department: &str,
) -> anyhow::Result<(String, a::Tokens)> {
    let code = fresh_credit_code(&format!("11{jurisdiction}MB"));
    let (_, login) = register_in(
        app,
        &code,
        a::OrganizationKind::DistrictOffice,
        jurisdiction,
        department,
    )
    .await?;
    approve(app, &code).await?;
    Ok((code, sign_in(app, &login, PASSWORD).await?))
}

/// Every organization `token` lists, a page of `page_size` at a time.
async fn listed_organizations(
    app: &TestApp,
    token: &str,
    page_size: i32,
) -> anyhow::Result<Vec<a::Organization>> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = accounts(&app.channel, token)
            .list_organizations(a::ListOrganizationsRequest {
                status: 0,
                page_size,
                page_token,
            })
            .await?
            .into_inner();
        // Filtered in SQL: every page but the last is full.
        if !page.next_page_token.is_empty() {
            assert_eq!(page.organizations.len(), page_size as usize);
        }
        all.extend(page.organizations);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = page.next_page_token;
    }
}

/// The targets of the `approve` entries of the audit log as `token` sees it.
async fn approvals_seen(app: &TestApp, token: &str) -> anyhow::Result<Vec<String>> {
    Ok(accounts(&app.channel, token)
        .list_audit_events(a::ListAuditEventsRequest {
            action: "approve".into(),
            page_size: 100,
            page_token: String::new(),
        })
        .await?
        .into_inner()
        .events
        .into_iter()
        .map(|e| e.target)
        .collect())
}

/// A department of 新北区 (农业农村局, "agri"), approved by the district office (`office`, a
/// token): its token says so; organization reviews stay the office's.
async fn departments_review_no_organizations(app: &TestApp, office: &str) -> anyhow::Result<()> {
    let agri_code = fresh_credit_code("11320411MB");
    let (org, agri_login) = register_in(
        app,
        &agri_code,
        a::OrganizationKind::DistrictOffice,
        "320411",
        "agri",
    )
    .await?;
    assert_eq!(org.department, "agri");
    accounts(&app.channel, office)
        .approve_organization(a::ApproveOrganizationRequest {
            credit_code: agri_code.clone(),
            note: String::new(),
            expected_version: 0,
        })
        .await?;
    let agri = sign_in(app, &agri_login, PASSWORD).await?;
    assert_eq!(
        (agri.jurisdiction.as_str(), agri.department.as_str()),
        ("320411", "agri")
    );
    let pending = fresh_credit_code("91320411MA");
    register_in(app, &pending, a::OrganizationKind::Company, "", "").await?;
    let denied = accounts(&app.channel, &agri.access_token)
        .approve_organization(a::ApproveOrganizationRequest {
            credit_code: pending.clone(),
            note: String::new(),
            expected_version: 0,
        })
        .await
        .expect_err("a department does not review organizations");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied
            .message()
            .contains("department agri of jurisdiction 320411 only"),
        "{}",
        denied.message()
    );
    let denied = accounts(&app.channel, &agri.access_token)
        .list_organizations(a::ListOrganizationsRequest::default())
        .await
        .expect_err("a department does not list organizations");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    Ok(())
}

/// A malformed code, a province that does not exist, a department for a company:
/// INVALID_ARGUMENT naming the field.
async fn malformed_places_name_their_field(app: &TestApp) -> anyhow::Result<()> {
    for (jurisdiction, department, kind, field) in [
        ("32041", "", a::OrganizationKind::Company, "jurisdiction"),
        ("3204111", "", a::OrganizationKind::Company, "jurisdiction"),
        ("990411", "", a::OrganizationKind::WaterUser, "jurisdiction"),
        ("320411", "agri", a::OrganizationKind::Company, "department"),
        (
            "320411",
            "农业农村局",
            a::OrganizationKind::DistrictOffice,
            "department",
        ),
    ] {
        let bad = register_in(
            app,
            &fresh_credit_code("91320411MA"),
            kind,
            jurisdiction,
            department,
        )
        .await
        .expect_err("malformed");
        let status = bad
            .downcast_ref::<tonic::Status>()
            .ok_or_else(|| anyhow::anyhow!("{bad:#}"))?;
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(
            crate::projects::field(status),
            field,
            "{jurisdiction:?} {department:?}"
        );
    }
    Ok(())
}

async fn jurisdictions(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = start(backend).await? else {
        return Ok(());
    };
    // 新北区 320411's office and 武进区 320412's, each approved by an operator.
    let (xinbei_office, xinbei) = office_admin(&app, "320411", "").await?;
    let (wujin_office, wujin) = office_admin(&app, "320412", "").await?;
    // The token carries the scope.
    assert_eq!(
        (xinbei.jurisdiction.as_str(), xinbei.department.as_str()),
        ("320411", "")
    );
    assert_eq!(wujin.jurisdiction, "320412");
    let (xinbei, wujin) = (xinbei.access_token, wujin.access_token);

    // A company registered without a jurisdiction belongs to the platform's district (320411);
    // another registers in 武进区.
    let ours = fresh_credit_code("91320411MA");
    let (org, _) = register_in(&app, &ours, a::OrganizationKind::Company, "", "").await?;
    assert_eq!(org.jurisdiction, "320411");
    let theirs = fresh_credit_code("91320412MA");
    let (org, their_login) =
        register_in(&app, &theirs, a::OrganizationKind::Company, "320412", "").await?;
    assert_eq!(org.jurisdiction, "320412");

    // 新北区 approves its own, and is told which jurisdiction it may act in for 武进区's.
    let approved = accounts(&app.channel, &xinbei)
        .approve_organization(a::ApproveOrganizationRequest {
            credit_code: ours.clone(),
            note: "papers checked".into(),
            expected_version: 0,
        })
        .await?
        .into_inner()
        .organization
        .unwrap_or_default();
    assert_eq!(approved.status, a::OrganizationStatus::Approved as i32);
    let denied = accounts(&app.channel, &xinbei)
        .approve_organization(a::ApproveOrganizationRequest {
            credit_code: theirs.clone(),
            note: String::new(),
            expected_version: 0,
        })
        .await
        .expect_err("another district's organization");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains("jurisdiction 320412")
            && denied
                .message()
                .contains("administers jurisdiction 320411 only"),
        "{}",
        denied.message()
    );
    let denied = accounts(&app.channel, &xinbei)
        .suspend_organization(a::SuspendOrganizationRequest {
            credit_code: theirs.clone(),
            reason: "not ours".into(),
            expected_version: 0,
        })
        .await
        .expect_err("another district's organization");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    // … nor sees it (to it, it does not exist).
    let hidden = accounts(&app.channel, &xinbei)
        .get_organization(a::GetOrganizationRequest {
            credit_code: theirs.clone(),
        })
        .await
        .expect_err("another district's organization");
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");
    // 武进区 approves its own.
    accounts(&app.channel, &wujin)
        .approve_organization(a::ApproveOrganizationRequest {
            credit_code: theirs.clone(),
            note: String::new(),
            expected_version: 0,
        })
        .await?;

    // A person is stopped only by an administrator of every organization they belong to:
    // 新北区's may not suspend (nor reinstate) 武进区's company's registrant; 武进区's may.
    let theirs_person = sign_in(&app, &their_login, PASSWORD).await?.person_id;
    let suspend = |token: &str| {
        let mut client = accounts(&app.channel, token);
        let request = a::SuspendPersonRequest {
            person_id: theirs_person.clone(),
            reason: "审计 (audit)".into(),
        };
        async move { client.suspend_person(request).await }
    };
    let denied = suspend(&xinbei)
        .await
        .expect_err("another district's person");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains(&theirs) && denied.message().contains("jurisdiction 320412"),
        "{}",
        denied.message()
    );
    let person = suspend(&wujin)
        .await?
        .into_inner()
        .person
        .unwrap_or_default();
    assert!(person.suspended);
    let denied = accounts(&app.channel, &xinbei)
        .reinstate_person(a::ReinstatePersonRequest {
            person_id: theirs_person.clone(),
        })
        .await
        .expect_err("another district's person");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    accounts(&app.channel, &wujin)
        .reinstate_person(a::ReinstatePersonRequest {
            person_id: theirs_person.clone(),
        })
        .await?;

    // Lists: each administrator its own jurisdiction's (its office and its company: 2), pages
    // of 1 staying full; an operator all 4.
    let codes = |orgs: &[a::Organization]| -> Vec<String> {
        let mut c: Vec<String> = orgs.iter().map(|o| o.credit_code.clone()).collect();
        c.sort();
        c
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let seen = listed_organizations(&app, &xinbei, 1).await?;
    assert!(seen.iter().all(|o| o.jurisdiction == "320411"), "{seen:?}");
    assert_eq!(
        codes(&seen),
        sorted(vec![xinbei_office.clone(), ours.clone()])
    );
    let seen = listed_organizations(&app, &wujin, 1).await?;
    assert_eq!(
        codes(&seen),
        sorted(vec![wujin_office.clone(), theirs.clone()])
    );
    let operator = app.token(Role::Admin, None);
    let seen = listed_organizations(&app, &operator, 1).await?;
    assert_eq!(seen.len(), 2 + 2, "{seen:?}");

    // The audit log: approvals of its own jurisdiction's organizations only (the operator
    // approved both offices; each district approved its company).
    assert_eq!(
        sorted(approvals_seen(&app, &xinbei).await?),
        sorted(vec![xinbei_office.clone(), ours.clone()])
    );
    assert_eq!(
        sorted(approvals_seen(&app, &wujin).await?),
        sorted(vec![wujin_office.clone(), theirs.clone()])
    );
    assert_eq!(approvals_seen(&app, &operator).await?.len(), 4);
    // The signing keys are no district's.
    let denied = accounts(&app.channel, &xinbei)
        .rotate_signing_key(a::RotateSigningKeyRequest {})
        .await
        .expect_err("a district's administrator");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    // Changzhou city (320400) administers its districts: it suspends 武进区's company.
    let (_, city) = office_admin(&app, "320400", "").await?;
    accounts(&app.channel, &city.access_token)
        .suspend_organization(a::SuspendOrganizationRequest {
            credit_code: theirs.clone(),
            reason: "licence withdrawn".into(),
            expected_version: 0,
        })
        .await?;

    departments_review_no_organizations(&app, &xinbei).await?;
    malformed_places_name_their_field(&app).await?;
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_review_only_their_jurisdiction_on_sqlite() -> anyhow::Result<()> {
    jurisdictions(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_review_only_their_jurisdiction_on_postgres() -> anyhow::Result<()> {
    jurisdictions(Backend::Postgres).await
}

/// The district an organization registered without a jurisdiction belongs to is the
/// `district_code` setting; a malformed setting stops the server from starting, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platforms_district_is_a_setting() -> anyhow::Result<()> {
    let app = TestApp::start(Backend::Sqlite).await?;
    let dir = std::env::temp_dir().join(format!("cwsm-test-wujin-{}", cwsm_platform::new_id()));
    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.clone(),
        district_code: "320412".into(),
        ..Settings::default()
    };
    let stop = CancellationToken::new();
    let wujin = app::start(
        &settings,
        Services::only("accounts")?,
        app.bus.clone(),
        app.keys.clone(),
        stop.clone(),
    )
    .await?;
    let channel = Channel::from_shared(format!("http://{}", wujin.addr))?
        .connect()
        .await?;
    let org = AccountsServiceClient::new(channel)
        .register_organization(a::RegisterOrganizationRequest {
            request_id: rid("reg"),
            credit_code: fresh_credit_code("91320412MA"),
            name: "武进某节水服务公司".into(),
            kind: a::OrganizationKind::Company as i32,
            registrant: Some(a::NewCredentials {
                login: login("wujin"),
                password: PASSWORD.into(),
                display_name: "周工".into(),
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .organization
        .unwrap_or_default();
    assert_eq!(org.jurisdiction, "320412");
    stop.cancel();

    let malformed = Settings {
        district_code: "32041".into(),
        data_dir: dir.join("other"),
        ..settings
    };
    let refused = app::start(
        &malformed,
        Services::only("accounts")?,
        app.bus.clone(),
        app.keys.clone(),
        CancellationToken::new(),
    )
    .await
    .err()
    .ok_or_else(|| anyhow::anyhow!("a malformed district_code started"))?;
    assert!(
        format!("{refused:#}").contains("district_code"),
        "{refused:#}"
    );
    let _ = std::fs::remove_dir_all(dir);
    app.stop().await
}

// ---------------------------------------------------------------------------------------------
// API keys and suspended people
// ---------------------------------------------------------------------------------------------

/// Runs `sql` on the accounts database of `app` and returns its one text column.
async fn accounts_texts(app: &TestApp, sql: &str, bind: &str) -> anyhow::Result<Vec<String>> {
    let db = app
        .running
        .as_ref()
        .and_then(|r| r.databases.iter().find(|(name, _)| *name == "accounts"))
        .map(|(_, db)| db.clone())
        .ok_or_else(|| anyhow::anyhow!("no accounts database"))?;
    Ok(
        cwsm_platform::with_db!(&db, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).bind(bind).fetch_all(pool).await?),
    )
}

/// The credit code of a contracted project's company, registered and approved in accounts;
/// returns it and its first member's access token.
async fn company_in_accounts(
    app: &TestApp,
    project_id: &str,
) -> anyhow::Result<(String, a::Tokens)> {
    let project = app
        .projects(&app.token(Role::Admin, None))
        .get_project(p::GetProjectRequest {
            project_id: project_id.to_string(),
        })
        .await?
        .into_inner()
        .project
        .ok_or_else(|| anyhow::anyhow!("no project"))?;
    let code = project.company.unwrap_or_default().credit_code;
    let (_, login) = register_code(app, &code, a::OrganizationKind::Company).await?;
    approve(app, &code).await?;
    Ok((code, sign_in(app, &login, PASSWORD).await?))
}

async fn create_key(
    app: &TestApp,
    token: &str,
    code: &str,
    name: &str,
) -> Result<a::CreateApiKeyResponse, tonic::Status> {
    Ok(accounts(&app.channel, token)
        .create_api_key(a::CreateApiKeyRequest {
            credit_code: code.to_string(),
            name: name.to_string(),
            valid_days: 30,
            request_id: rid("key"),
        })
        .await?
        .into_inner())
}

async fn exchange(app: &TestApp, key: &str) -> Result<a::ExchangeApiKeyResponse, tonic::Status> {
    Ok(accounts(&app.channel, "")
        .exchange_api_key(a::ExchangeApiKeyRequest {
            api_key: key.to_string(),
        })
        .await?
        .into_inner())
}

/// A meter gateway with its company's API key streams readings through IngestReadings; the
/// key is kept as a hash only; it acts for its company alone; an expired key and a revoked one
/// are refused alike, and a revoked key's access token stops here at once and elsewhere at
/// the next revocation refresh.
async fn gateway_with_an_api_key(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = start(backend).await? else {
        return Ok(());
    };
    let ours = cwsm_tests::contract_a_project(&app, "新桥街道").await?;
    let theirs = cwsm_tests::contract_a_project(&app, "三井街道").await?;
    let (code, member) = company_in_accounts(&app, &ours.project_id).await?;
    let (their_code, their_member) = company_in_accounts(&app, &theirs.project_id).await?;

    // A member creates the key; it is shown once and names its id.
    let made = create_key(&app, &member.access_token, &code, "水表网关 泵房2").await?;
    let key = made.key.clone().unwrap_or_default();
    assert!(!made.replayed);
    assert!(
        made.api_key.starts_with(&format!("cwsm_ak_{}_", key.id)),
        "{}",
        made.api_key
    );
    assert_eq!(key.role, a::Role::Company as i32);
    assert_eq!(key.credit_code, code);

    // Only its SHA-256 is in the database: not the key, not its secret part, in any row.
    // (The secret is base64url, which has `_` and `-` too: cut after the id.)
    let secret = made
        .api_key
        .strip_prefix(&format!("cwsm_ak_{}_", key.id))
        .unwrap_or_default()
        .to_string();
    assert_eq!(secret.len(), 43, "256 bits in base64url");
    let hashes = accounts_texts(
        &app,
        "SELECT secret_hash FROM api_keys WHERE id = $1",
        &key.id,
    )
    .await?;
    assert_eq!(hashes.len(), 1);
    assert_eq!(hashes[0], sha256_hex(&made.api_key));
    for sql in [
        "SELECT id || name || credit_code || role || created_by || revoked_by || secret_hash FROM api_keys WHERE $1 <> ''",
        "SELECT scope || request_id || resource_id || request_hash FROM idempotency WHERE $1 <> ''",
        "SELECT actor || action || target || detail FROM audit_events WHERE $1 <> ''",
    ] {
        for row in accounts_texts(&app, sql, "x").await? {
            assert!(!row.contains(&secret), "the secret is stored: {row}");
        }
    }

    // The gateway exchanges it and streams readings as the company: 10 days sent, 10 stored.
    let meter = crate::projects::meter(&app, &ours.company_token, &ours.project_id).await?;
    let exchanged = exchange(&app, &made.api_key).await?;
    assert_eq!(exchanged.key_id, key.id);
    assert_eq!(exchanged.credit_code, code);
    let gateway = exchanged.access_token.clone();
    let ten: Vec<p::Reading> = crate::projects::daily_readings(&crate::projects::Calendar::now())
        .into_iter()
        .take(10)
        .collect();
    let sent = crate::projects::ingest(
        &app,
        &gateway,
        &meter.id,
        p::ReadingValueKind::IntervalUse,
        ten.clone(),
    )
    .await?;
    assert_eq!((sent.accepted, sent.rejected), (10, 0), "{sent:?}");
    // Its token lives at most 15 minutes (and no longer than the key).
    let claims = claims_of(&gateway)?;
    assert!(claims.exp - claims.iat <= 15 * 60, "{claims:?}");
    assert_eq!(claims.sid, key.id);
    assert_eq!(claims.sub, format!("apikey:{}", key.id));

    // Listed with its last use, never with its secret.
    let listed = accounts(&app.channel, &member.access_token)
        .list_api_keys(a::ListApiKeysRequest {
            credit_code: code.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(listed.keys.len(), 1);
    assert!(listed.keys[0].last_used_at.is_some());

    // It acts for its company only: the other company's meter is unknown to it, its record is
    // not its to edit, its keys are not its to see.
    let their_meter =
        crate::projects::meter(&app, &theirs.company_token, &theirs.project_id).await?;
    let foreign = crate::projects::ingest(
        &app,
        &gateway,
        &their_meter.id,
        p::ReadingValueKind::IntervalUse,
        ten.clone(),
    )
    .await?;
    assert_eq!(
        (foreign.accepted, foreign.unknown_meters),
        (0, 1),
        "{foreign:?}"
    );
    let err = accounts(&app.channel, &gateway)
        .list_api_keys(a::ListApiKeysRequest {
            credit_code: their_code.clone(),
            ..Default::default()
        })
        .await
        .expect_err("another organization's keys");
    assert_eq!(err.code(), Code::NotFound);
    let err = create_key(&app, &their_member.access_token, &code, "x")
        .await
        .expect_err("a key for another organization");
    assert_eq!(err.code(), Code::NotFound);
    // Nor does it make keys or invitations (a stolen key cannot outlive its revocation).
    let err = create_key(&app, &gateway, &code, "next")
        .await
        .expect_err("a key's token makes no keys");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // An expired key is refused with the same answer as an unknown one.
    let old = create_key(&app, &member.access_token, &code, "old gateway").await?;
    let old_id = old.key.clone().unwrap_or_default().id;
    accounts_texts(
        &app,
        "UPDATE api_keys SET expires_at_ms = 1000 WHERE id = $1 RETURNING id",
        &old_id,
    )
    .await?;
    let expired = exchange(&app, &old.api_key).await.expect_err("expired");
    let unknown = exchange(&app, &format!("cwsm_ak_{}_{}", old_id, "A".repeat(43)))
        .await
        .expect_err("unknown");
    assert_eq!(expired.code(), Code::Unauthenticated);
    assert_eq!(
        (unknown.code(), unknown.message()),
        (expired.code(), expired.message())
    );

    // Revoked: no new exchange, the same answer; the old token stops at once here and, in a
    // process that polls the revocation list, within its refresh.
    let remote = Remote::start(&app).await?;
    assert!(
        remote.accepts(&gateway).await,
        "the remote never accepted the gateway"
    );
    let revoked = accounts(&app.channel, &member.access_token)
        .revoke_api_key(a::RevokeApiKeyRequest { id: key.id.clone() })
        .await?
        .into_inner()
        .key
        .unwrap_or_default();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(revoked.revoked_by, member.person_id);
    let again = exchange(&app, &made.api_key).await.expect_err("revoked");
    assert_eq!(
        (again.code(), again.message()),
        (expired.code(), expired.message())
    );
    let here = crate::projects::ingest(
        &app,
        &gateway,
        &meter.id,
        p::ReadingValueKind::IntervalUse,
        ten,
    )
    .await
    .expect_err("revoked");
    assert_eq!(here.code(), Code::Unauthenticated, "{here:?}");
    assert!(
        remote.refuses(&gateway).await,
        "the remote kept the revoked key's token"
    );
    remote.stop().await?;

    // A key of a suspended organization: the same answer again.
    let spare = create_key(&app, &member.access_token, &code, "spare gateway").await?;
    let spare_id = spare.key.clone().unwrap_or_default().id;
    exchange(&app, &spare.api_key).await?;
    let admin = app.token(Role::Admin, None);
    accounts(&app.channel, &admin)
        .suspend_organization(a::SuspendOrganizationRequest {
            credit_code: code.clone(),
            reason: "meter tampering".into(),
            expected_version: 0,
        })
        .await?;
    let suspended = exchange(&app, &spare.api_key).await.expect_err("suspended");
    assert_eq!(
        (suspended.code(), suspended.message()),
        (expired.code(), expired.message())
    );

    // Audited: creation, revocation, the refused exchanges (expired, unknown, revoked,
    // suspended).
    let log = accounts(&app.channel, &admin)
        .list_audit_events(a::ListAuditEventsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await?
        .into_inner()
        .events;
    let about = |target: &str, action: &str| {
        log.iter()
            .filter(|e| e.target == target && e.action == action)
            .map(|e| e.detail.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(about(&key.id, "create_api_key").len(), 1);
    assert_eq!(about(&key.id, "revoke_api_key").len(), 1);
    assert_eq!(
        about(&key.id, "api_key_refused"),
        vec!["revoked".to_string()]
    );
    assert_eq!(
        about(&old_id, "api_key_refused"),
        vec!["expired".to_string()]
    );
    assert_eq!(
        about(&spare_id, "api_key_refused"),
        vec!["organization suspended".to_string()]
    );
    assert_eq!(
        about(&format!("api_key:{old_id}"), "api_key_refused"),
        vec!["unknown key".to_string()]
    );
    app.stop().await
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The claims of an access token, read without checking it (the services check it).
fn claims_of(token: &str) -> anyhow::Result<AccessClaims> {
    use base64::Engine;
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("not a JWT"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    Ok(serde_json::from_slice(&bytes)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_streams_readings_with_an_api_key_until_it_is_revoked_on_sqlite()
-> anyhow::Result<()> {
    gateway_with_an_api_key(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_streams_readings_with_an_api_key_until_it_is_revoked_on_postgres()
-> anyhow::Result<()> {
    gateway_with_an_api_key(Backend::Postgres).await
}

/// An administrator suspends a person: their token stops here at once and elsewhere within
/// the refresh, refresh and sign-in are refused saying why; reinstated, they sign in again
/// while the old token stays stopped.
async fn person_suspension(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = start(backend).await? else {
        return Ok(());
    };
    let (code, login) = register(&app, "91320411MA1N2B3P7", a::OrganizationKind::Company).await?;
    approve(&app, &code).await?;
    let tokens = sign_in(&app, &login, PASSWORD).await?;
    let remote = Remote::start(&app).await?;
    assert!(remote.accepts(&tokens.access_token).await);

    let admin = app.token(Role::Admin, None);
    let suspend = |reason: &str| {
        let mut client = accounts(&app.channel, &admin);
        let request = a::SuspendPersonRequest {
            person_id: tokens.person_id.clone(),
            reason: reason.to_string(),
        };
        async move { client.suspend_person(request).await }
    };
    let err = suspend("  ").await.expect_err("no reason");
    assert_eq!(err.code(), Code::InvalidArgument);
    let person = suspend("离职 (left the company)")
        .await?
        .into_inner()
        .person
        .unwrap_or_default();
    assert!(person.suspended);
    // Suspending again changes nothing: the first reason and time stay.
    let twice = suspend("another reason")
        .await?
        .into_inner()
        .person
        .unwrap_or_default();
    assert_eq!(
        (twice.suspended_reason.as_str(), twice.suspended_at),
        (person.suspended_reason.as_str(), person.suspended_at)
    );

    let here = create_company(&app, &tokens.access_token, &code)
        .await
        .expect_err("suspended");
    assert_eq!(here.code(), Code::Unauthenticated);
    assert!(
        here.message().contains("account is suspended"),
        "{}",
        here.message()
    );
    assert!(remote.refuses(&tokens.access_token).await);
    let refresh = accounts(&app.channel, "")
        .refresh_token(a::RefreshTokenRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await
        .expect_err("suspended");
    assert_eq!(refresh.code(), Code::Unauthenticated);
    assert!(
        refresh.message().contains("left the company"),
        "{}",
        refresh.message()
    );
    let again = sign_in(&app, &login, PASSWORD)
        .await
        .expect_err("suspended");
    assert_eq!(again.code(), Code::PermissionDenied);
    assert!(
        again.message().contains("left the company"),
        "{}",
        again.message()
    );
    // A wrong password learns nothing of the suspension.
    let wrong = sign_in(&app, &login, "not the password at all")
        .await
        .expect_err("wrong password");
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert!(
        !wrong.message().contains("suspended"),
        "{}",
        wrong.message()
    );

    let back = accounts(&app.channel, &admin)
        .reinstate_person(a::ReinstatePersonRequest {
            person_id: tokens.person_id.clone(),
        })
        .await?
        .into_inner()
        .person
        .unwrap_or_default();
    assert!(!back.suspended);
    let fresh = sign_in(&app, &login, PASSWORD).await?;
    create_company(&app, &fresh.access_token, &code).await?;
    // The token of before the suspension stays stopped: its session ended.
    let old = app
        .matching(&tokens.access_token)
        .list_companies(m::ListCompaniesRequest::default())
        .await
        .expect_err("its session ended");
    assert_eq!(old.code(), Code::Unauthenticated);

    let log = accounts(&app.channel, &admin)
        .list_audit_events(a::ListAuditEventsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await?
        .into_inner()
        .events;
    let actions: Vec<&str> = log
        .iter()
        .filter(|e| e.target == tokens.person_id)
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(actions, vec!["reinstate_person", "suspend_person"]);
    remote.stop().await?;
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_person_is_refused_and_their_tokens_stop_on_sqlite() -> anyhow::Result<()> {
    person_suspension(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_person_is_refused_and_their_tokens_stop_on_postgres() -> anyhow::Result<()> {
    person_suspension(Backend::Postgres).await
}

/// The CLI of a gateway's operator and of the gateway: `cwsm api-keys create|list|revoke`
/// with a member's token, then any command with `CWSM_API_KEY` (exchanged first), refused
/// once the key is revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_api_keys_and_runs_commands_with_one() -> anyhow::Result<()> {
    let app = TestApp::start(Backend::Sqlite).await?;
    let contracted = cwsm_tests::contract_a_project(&app, "新桥街道").await?;
    let (code, member) = company_in_accounts(&app, &contracted.project_id).await?;
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_cwsm-serve"));
    let server = format!(
        "http://{}",
        app.running
            .as_ref()
            .map(|r| r.addr)
            .ok_or_else(|| anyhow::anyhow!("not running"))?
    );
    let cli = |args: &[&str], env: (&str, &str)| {
        std::process::Command::new(&bin)
            .args(args)
            .args(["--server", &server, "--json"])
            .env_remove("CWSM_TOKEN")
            .env_remove("CWSM_API_KEY")
            .env(env.0, env.1)
            .output()
    };
    let as_member = ("CWSM_TOKEN", member.access_token.as_str());
    let made = cli(
        &[
            "api-keys",
            "create",
            "--org",
            &code,
            "--name",
            "泵房网关",
            "--valid-days",
            "30",
        ],
        as_member,
    )?;
    assert!(made.status.success(), "{made:?}");
    let made: serde_json::Value = serde_json::from_slice(&made.stdout)?;
    let key = made["api_key"].as_str().unwrap_or_default().to_string();
    let id = made["id"].as_str().unwrap_or_default().to_string();
    assert!(key.starts_with(&format!("cwsm_ak_{id}_")), "{made}");

    let listed = cli(&["api-keys", "list", "--org", &code], as_member)?;
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout)?;
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed[0]["role"], "company", "{listed}");

    // The gateway: any command with its key. It sees its company's project.
    let projects = cli(&["projects", "list"], ("CWSM_API_KEY", &key))?;
    assert!(projects.status.success(), "{projects:?}");
    let projects: serde_json::Value = serde_json::from_slice(&projects.stdout)?;
    assert_eq!(
        projects.as_array().map(Vec::len),
        Some(1),
        "its company's one project: {projects}"
    );

    let revoked = cli(&["api-keys", "revoke", &id], as_member)?;
    assert!(revoked.status.success(), "{revoked:?}");
    let refused = cli(&["projects", "list"], ("CWSM_API_KEY", &key))?;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("API key not valid"), "{stderr}");
    app.stop().await
}
