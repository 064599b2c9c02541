//! OpenID Connect sign-in against a real provider (`tests/oidc`: the certified npm package
//! `oidc-provider`, run with the machine's Node.js), a person signing in at it in headless
//! Chromium, on SQLite + in-process bus and on PostgreSQL + Redis: linking by verified e-mail,
//! the tokens acting only within the membership, refusal of an unlinked identity, an
//! administrator's link and unlink, one use of a state, a code exchanged with another
//! sign-in's PKCE verifier, bad input, a provider that does not answer.
//!
//! What the real provider cannot be made to do wrong (a bad signature, another nonce, a
//! tampered token) is unit-tested on the verifier (`cwsm_accounts::oidc`).

use cwsm_platform::auth::Role;
use cwsm_proto::accounts::v1 as a;
use cwsm_proto::accounts::v1::accounts_service_client::AccountsServiceClient;
use cwsm_proto::matching::v1 as m;
use cwsm_proto::types;
use cwsm_tests::oidc::{IdentityProvider, Redirected, sign_in_in_browser};
use cwsm_tests::web::{Browser, free_port};
use cwsm_tests::{
    Backend, Bearer, TestApp, bearer, fresh_credit_code, postgres_and_redis_available,
};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

const PROVIDER: &str = "test-sso";
const DOWN: &str = "down-sso";
const CLI: &str = "cli-sso";
const PASSWORD: &str = "correct horse battery";

type Client = AccountsServiceClient<InterceptedService<Channel, Bearer>>;

fn accounts(app: &TestApp, token: &str) -> Client {
    AccountsServiceClient::with_interceptor(app.channel.clone(), bearer(token))
}

fn rid(label: &str) -> String {
    format!("{label}-{}", cwsm_platform::new_id())
}

/// The provider, the browser and the app configured with the provider (and with one that
/// does not answer); `None` when the provider or the browser cannot run here (and are not
/// required).
async fn start(backend: Backend) -> anyhow::Result<Option<(IdentityProvider, Browser, TestApp)>> {
    if backend == Backend::Postgres && !postgres_and_redis_available().await {
        return Ok(None);
    }
    let Some(idp) = IdentityProvider::start().await? else {
        return Ok(None);
    };
    let Some(browser) = Browser::start().await? else {
        return Ok(None);
    };
    let mut down = idp.settings(DOWN);
    // Nothing listens there: the provider "does not answer".
    down.issuer = format!("http://127.0.0.1:{}", free_port()?);
    let providers = vec![idp.settings(PROVIDER), down, idp.cli_settings(CLI)];
    let app = TestApp::start_with(backend, move |s| s.oidc_providers = providers).await?;
    Ok(Some((idp, browser, app)))
}

/// A water user registered and approved in accounts with a registrant whose login is `login`;
/// returns its credit code and the registrant's person id.
async fn water_user_with_person(app: &TestApp, login: &str) -> anyhow::Result<(String, String)> {
    let code = fresh_credit_code("12320411");
    let registered = accounts(app, "")
        .register_organization(a::RegisterOrganizationRequest {
            credit_code: code.clone(),
            name: "常州工学院新北校区".into(),
            kind: a::OrganizationKind::WaterUser as i32,
            registrant: Some(a::NewCredentials {
                login: login.into(),
                password: PASSWORD.into(),
                display_name: "李老师".into(),
            }),
            request_id: format!("oidc:register:{code}"),
            // The platform's district.
            ..Default::default()
        })
        .await?
        .into_inner();
    accounts(app, &app.token(Role::Admin, None))
        .approve_organization(a::ApproveOrganizationRequest {
            credit_code: code.clone(),
            note: "papers checked".into(),
            expected_version: 0,
        })
        .await?;
    Ok((code, registered.person_id))
}

async fn start_sign_in(
    app: &TestApp,
    redirect_uri: &str,
) -> anyhow::Result<a::StartExternalSignInResponse> {
    Ok(accounts(app, "")
        .start_external_sign_in(a::StartExternalSignInRequest {
            provider: PROVIDER.into(),
            redirect_uri: redirect_uri.into(),
        })
        .await?
        .into_inner())
}

async fn complete(app: &TestApp, state: &str, code: &str) -> Result<a::Tokens, tonic::Status> {
    accounts(app, "")
        .complete_external_sign_in(a::CompleteExternalSignInRequest {
            state: state.into(),
            code: code.into(),
            credit_code: String::new(),
        })
        .await?
        .into_inner()
        .tokens
        .ok_or_else(|| tonic::Status::internal("no tokens"))
}

/// A person signs in at the provider as `login` for a sign-in started now; the provider's
/// session is forgotten afterwards, so the next sign-in shows its login page again.
async fn at_provider(
    app: &TestApp,
    idp: &IdentityProvider,
    browser: &Browser,
    login: &str,
) -> anyhow::Result<(a::StartExternalSignInResponse, Redirected)> {
    let started = start_sign_in(app, &idp.redirect_uri()).await?;
    let back = sign_in_in_browser(
        browser,
        &started.authorization_url,
        &idp.redirect_uri(),
        login,
    )
    .await?;
    browser.delete_cookies().await?;
    Ok((started, back))
}

async fn audit(app: &TestApp, action: &str) -> anyhow::Result<Vec<a::AuditEvent>> {
    Ok(accounts(app, &app.token(Role::Admin, None))
        .list_audit_events(a::ListAuditEventsRequest {
            action: action.into(),
            page_size: 100,
            page_token: String::new(),
        })
        .await?
        .into_inner()
        .events)
}

async fn create_water_user(
    app: &TestApp,
    token: &str,
    code: &str,
) -> Result<m::WaterUser, tonic::Status> {
    app.matching(token)
        .create_water_user(m::CreateWaterUserRequest {
            request_id: rid("user"),
            water_user: Some(m::WaterUser {
                credit_code: code.into(),
                name: "常州工学院新北校区".into(),
                sector: types::Sector::School as i32,
                unit_type: "university".into(),
                town: "新桥街道".into(),
                annual_use_litres: 2_430_000_000,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .water_user
        .ok_or_else(|| tonic::Status::internal("no water user"))
}

async fn external_sign_in(backend: Backend) -> anyhow::Result<()> {
    let Some((idp, browser, app)) = start(backend).await? else {
        return Ok(());
    };
    let suffix = &cwsm_platform::new_id()[24..];
    let login = format!("li.wei-{suffix}@example.cn");
    let (code, person_id) = water_user_with_person(&app, &login).await?;

    // 1. The provider vouches for the e-mail, which is the person's login: linked, signed in.
    // The login at the provider differs in case: e-mails are compared lower-cased.
    let (started, back) = at_provider(
        &app,
        &idp,
        &browser,
        &format!("verified/{}", login.to_uppercase()),
    )
    .await?;
    assert!(
        started
            .authorization_url
            .contains("code_challenge_method=S256"),
        "PKCE S256: {}",
        started.authorization_url
    );
    assert_eq!(
        back.state, started.state,
        "the provider sends the state back"
    );
    assert!(!back.code.is_empty(), "a code in {}", back.url);
    let tokens = complete(&app, &back.state, &back.code).await?;
    assert_eq!(tokens.person_id, person_id);
    assert_eq!(tokens.credit_code, code);
    assert_eq!(tokens.role, a::Role::WaterUser as i32);

    // The tokens work on real RPCs, within the membership only: the water user's own records…
    let own = create_water_user(&app, &tokens.access_token, &code).await?;
    let request = app
        .matching(&tokens.access_token)
        .create_project_request(m::CreateProjectRequestRequest {
            request_id: rid("request"),
            project_request: Some(m::ProjectRequest {
                water_user_id: own.id.clone(),
                title: "Campus water network retrofit".into(),
                baseline_use_litres: 2_430_000_000,
                expected_savings_bp: 2000,
                price_fen_per_m3: 410,
                preferred_contract_models: vec![types::ContractModel::SharedSavings as i32],
                wanted_technologies: vec![types::Technology::LeakDetection as i32],
                investment_wanted_fen: 120_000_000,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .project_request
        .ok_or_else(|| anyhow::anyhow!("no request"))?;
    let read = app
        .matching(&tokens.access_token)
        .get_project_request(m::GetProjectRequestRequest {
            project_request_id: request.id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(read.project_request.map(|r| r.id), Some(request.id));
    // …and not another water user's.
    let other_code = fresh_credit_code("12320411");
    let other = create_water_user(
        &app,
        &app.token(Role::WaterUser, Some(&other_code)),
        &other_code,
    )
    .await?;
    let refused = app
        .matching(&tokens.access_token)
        .update_water_user(m::UpdateWaterUserRequest {
            request_id: rid("update"),
            water_user: Some(m::WaterUser {
                name: "not mine".into(),
                ..other
            }),
            expected_version: 0,
        })
        .await
        .expect_err("another water user's record");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // Linked and audited: the link by the verified e-mail, the sign-in through the provider.
    let admin = app.token(Role::Admin, None);
    let linked = accounts(&app, &admin)
        .list_external_identities(a::ListExternalIdentitiesRequest {
            person_id: person_id.clone(),
        })
        .await?
        .into_inner()
        .identities;
    assert_eq!(linked.len(), 1, "{linked:?}");
    assert_eq!(linked[0].issuer, idp.issuer);
    assert_eq!(linked[0].linked_by, "email_verified");
    // The test provider's subject is the login typed there.
    assert_eq!(
        linked[0].subject,
        format!("verified/{}", login.to_uppercase())
    );
    // The person sees their own; another caller is refused.
    let mine = accounts(&app, &tokens.access_token)
        .list_external_identities(a::ListExternalIdentitiesRequest {
            person_id: person_id.clone(),
        })
        .await?
        .into_inner()
        .identities;
    assert_eq!(mine.len(), 1);
    let sign_ins = audit(&app, "sign_in").await?;
    assert!(
        sign_ins
            .iter()
            .any(|e| e.actor == person_id && e.detail == format!("water_user via oidc:{PROVIDER}")),
        "{sign_ins:?}"
    );
    assert!(
        audit(&app, "link_external")
            .await?
            .iter()
            .any(|e| e.actor == person_id)
    );

    // 2. The state is used up: the same redirect completed again is refused.
    let again = complete(&app, &back.state, &back.code)
        .await
        .expect_err("a state used twice");
    assert_eq!(again.code(), Code::Unauthenticated, "{again:?}");

    // 3. Signed in again as the same identity: found by its link, the same person.
    let (_, back) = at_provider(
        &app,
        &idp,
        &browser,
        &format!("verified/{}", login.to_uppercase()),
    )
    .await?;
    assert_eq!(
        complete(&app, &back.state, &back.code).await?.person_id,
        person_id
    );

    // 4. A provider that does not vouch for the e-mail: refused, whatever the e-mail is.
    let login2 = format!("zhang.san-{suffix}@example.cn");
    let (code2, person2) = water_user_with_person(&app, &login2).await?;
    let unverified = format!("unverified/{login2}");
    let (_, back) = at_provider(&app, &idp, &browser, &unverified).await?;
    let refused = complete(&app, &back.state, &back.code)
        .await
        .expect_err("an unverified e-mail links nothing");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("an administrator can link it"),
        "{}",
        refused.message()
    );
    assert!(
        refused.message().contains(&unverified),
        "names the subject: {}",
        refused.message()
    );
    let failures = audit(&app, "sign_in_failed").await?;
    assert!(
        failures
            .iter()
            .any(|e| e.target == format!("oidc:{PROVIDER}") && e.detail.contains(&unverified)),
        "{failures:?}"
    );

    // 5. An administrator links it (once per request id), and only an administrator.
    let link = |request_id: &str, person: &str, subject: &str| a::LinkExternalIdentityRequest {
        request_id: request_id.into(),
        person_id: person.into(),
        provider: PROVIDER.into(),
        subject: subject.into(),
    };
    let not_admin = accounts(&app, &tokens.access_token)
        .link_external_identity(link(&rid("link"), &person_id, &unverified))
        .await
        .expect_err("a water user links nothing");
    assert_eq!(not_admin.code(), Code::PermissionDenied, "{not_admin:?}");
    let request_id = rid("link");
    let first = accounts(&app, &admin)
        .link_external_identity(link(&request_id, &person2, &unverified))
        .await?
        .into_inner()
        .identity;
    let retried = accounts(&app, &admin)
        .link_external_identity(link(&request_id, &person2, &unverified))
        .await?
        .into_inner()
        .identity;
    assert_eq!(first, retried, "a retry gets the first answer");
    let reused = accounts(&app, &admin)
        .link_external_identity(link(&request_id, &person2, "another-subject"))
        .await
        .expect_err("the request id of another request");
    assert_eq!(reused.code(), Code::InvalidArgument, "{reused:?}");
    let taken = accounts(&app, &admin)
        .link_external_identity(link(&rid("link"), &person_id, &unverified))
        .await
        .expect_err("linked to someone already");
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    let (_, back) = at_provider(&app, &idp, &browser, &unverified).await?;
    let tokens2 = complete(&app, &back.state, &back.code).await?;
    assert_eq!(
        (tokens2.person_id.as_str(), tokens2.credit_code.as_str()),
        (person2.as_str(), code2.as_str())
    );

    // Unlinked: refused again.
    accounts(&app, &admin)
        .unlink_external_identity(a::UnlinkExternalIdentityRequest {
            provider: PROVIDER.into(),
            subject: unverified.clone(),
        })
        .await?;
    let (_, back) = at_provider(&app, &idp, &browser, &unverified).await?;
    let refused = complete(&app, &back.state, &back.code)
        .await
        .expect_err("unlinked");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // 6. A code exchanged with another sign-in's PKCE verifier: the provider refuses it.
    let (a_started, a_back) =
        at_provider(&app, &idp, &browser, &format!("verified/{login}")).await?;
    let b_started = start_sign_in(&app, &idp.redirect_uri()).await?;
    assert_ne!(a_started.state, b_started.state);
    let wrong_verifier = complete(&app, &b_started.state, &a_back.code)
        .await
        .expect_err("another sign-in's verifier");
    assert_eq!(
        wrong_verifier.code(),
        Code::Unauthenticated,
        "{wrong_verifier:?}"
    );

    // 7. A code altered on its way: refused, and the state is used up by the attempt.
    let (_, back) = at_provider(&app, &idp, &browser, &format!("verified/{login}")).await?;
    let altered = complete(&app, &back.state, &format!("{}x", back.code))
        .await
        .expect_err("an altered code");
    assert_eq!(altered.code(), Code::Unauthenticated, "{altered:?}");
    let after = complete(&app, &back.state, &back.code)
        .await
        .expect_err("the state was used");
    assert_eq!(after.code(), Code::Unauthenticated, "{after:?}");

    // 8. Bad input names its field; a provider that does not answer is UNAVAILABLE.
    let field = |s: &tonic::Status| {
        use tonic_types::StatusExt;
        s.get_details_bad_request()
            .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
            .unwrap_or_default()
    };
    let unknown = accounts(&app, "")
        .start_external_sign_in(a::StartExternalSignInRequest {
            provider: "no-such-sso".into(),
            redirect_uri: idp.redirect_uri(),
        })
        .await
        .expect_err("unknown provider");
    assert_eq!(
        (unknown.code(), field(&unknown).as_str()),
        (Code::InvalidArgument, "provider")
    );
    let elsewhere = accounts(&app, "")
        .start_external_sign_in(a::StartExternalSignInRequest {
            provider: PROVIDER.into(),
            redirect_uri: "https://evil.example/steal".into(),
        })
        .await
        .expect_err("a redirect URI not allowed");
    assert_eq!(
        (elsewhere.code(), field(&elsewhere).as_str()),
        (Code::InvalidArgument, "redirect_uri")
    );
    let no_code = complete(&app, &b_started.state, "")
        .await
        .expect_err("no code");
    assert_eq!(
        (no_code.code(), field(&no_code).as_str()),
        (Code::InvalidArgument, "code")
    );
    let no_state = complete(&app, "no-such-state", "some-code")
        .await
        .expect_err("no state");
    assert_eq!(no_state.code(), Code::Unauthenticated, "{no_state:?}");
    let down = accounts(&app, "")
        .start_external_sign_in(a::StartExternalSignInRequest {
            provider: DOWN.into(),
            redirect_uri: idp.redirect_uri(),
        })
        .await
        .expect_err("nobody answers");
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");

    browser.quit().await;
    app.stop().await
}

/// A provider that rotated its signing key (started again on the same issuer with a new one):
/// the next ID token has a kid the service's kept key set does not hold, so it fetches the
/// provider's keys again, once, and the person signs in as before.
#[tokio::test]
async fn a_provider_that_rotated_its_key_is_followed() -> anyhow::Result<()> {
    let Some((idp, browser, app)) = start(Backend::Sqlite).await? else {
        return Ok(());
    };
    let result = async {
        let login = format!("wang.fang-{}@example.cn", &cwsm_platform::new_id()[24..]);
        let (_, person_id) = water_user_with_person(&app, &login).await?;
        let verified = format!("verified/{login}");
        let (_, back) = at_provider(&app, &idp, &browser, &verified).await?;
        assert_eq!(
            complete(&app, &back.state, &back.code).await?.person_id,
            person_id
        );
        let before = idp.kid.clone();
        let idp = idp.restart_with_a_new_key().await?;
        assert_ne!(idp.kid, before, "a new key");
        let (_, back) = at_provider(&app, &idp, &browser, &verified).await?;
        let tokens = complete(&app, &back.state, &back.code).await?;
        assert_eq!(tokens.person_id, person_id);
        anyhow::Ok(())
    }
    .await;
    let stopped = app.stop().await;
    result.and(stopped)
}

#[tokio::test]
async fn a_person_signs_in_through_a_real_openid_provider_on_sqlite() -> anyhow::Result<()> {
    external_sign_in(Backend::Sqlite).await
}

#[tokio::test]
async fn a_person_signs_in_through_a_real_openid_provider_on_postgres() -> anyhow::Result<()> {
    external_sign_in(Backend::Postgres).await
}

/// `cwsm sign-in --provider`: the CLI listens on a loopback port, prints the provider's address,
/// the person signs in there in the browser, which comes back to the CLI's port; the CLI
/// prints the tokens. The provider's client here is public (PKCE alone, no secret).
#[tokio::test]
async fn the_cli_signs_in_through_a_provider_with_a_loopback_redirect() -> anyhow::Result<()> {
    use std::io::BufRead;
    let Some((_idp, browser, app)) = start(Backend::Sqlite).await? else {
        return Ok(());
    };
    let login = format!("wang.gong-{}@example.cn", &cwsm_platform::new_id()[24..]);
    let (code, person_id) = water_user_with_person(&app, &login).await?;
    let addr = app
        .running
        .as_ref()
        .map(|r| r.addr)
        .ok_or_else(|| anyhow::anyhow!("not running"))?;
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_cwsm-serve"))
        .args(["sign-in", "--provider", CLI, "--json", "--server"])
        .arg(format!("http://{addr}"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stderr = cli
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    // The second line the CLI prints is the address to open.
    let url = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("http"))
    })
    .await?
    .ok_or_else(|| anyhow::anyhow!("the CLI printed no address"))?;
    let redirect_uri = url::Url::parse(&url)?
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    assert!(
        redirect_uri.starts_with("http://127.0.0.1:"),
        "{redirect_uri}"
    );
    sign_in_in_browser(&browser, &url, &redirect_uri, &format!("verified/{login}")).await?;
    let page = browser.eval("return document.body.innerText;").await?;
    assert!(
        page.as_str().unwrap_or_default().contains("可以关闭此窗口"),
        "{page}"
    );
    let out = tokio::task::spawn_blocking(move || cli.wait_with_output()).await??;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let access = printed["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The printed token is the person's, for their water user.
    let own = create_water_user(&app, &access, &code).await?;
    assert_eq!(own.credit_code, code);
    let mine = accounts(&app, &access)
        .list_external_identities(a::ListExternalIdentitiesRequest {
            person_id: person_id.clone(),
        })
        .await?
        .into_inner()
        .identities;
    assert_eq!(mine.len(), 1, "linked by the verified e-mail: {mine:?}");
    browser.quit().await;
    app.stop().await
}
