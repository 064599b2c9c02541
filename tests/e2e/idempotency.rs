//! The one idempotency rule and concurrent writers, through the real gRPC API on both backends:
//! 32 concurrent steps of one project apply once; 32 concurrent retries of one request have
//! one effect and one answer; a request id is bound to its caller, method and target, and
//! reusing it for a different request is refused; updates and steps honour their request id;
//! so do accounts' creates (registration, invitations and their redemption, API keys), whose
//! secrets are shown once.

use std::collections::BTreeMap;

use cwsm_platform::auth::Role;
use cwsm_proto::accounts::v1 as a;
use cwsm_proto::matching::v1 as m;
use cwsm_proto::projects::v1 as p;
use cwsm_proto::types;
use cwsm_tests::{Backend, TestApp, credit_code, postgres_and_redis_available};
use tonic::Code;

use crate::projects::{
    Calendar, Parties, contracted, daily_readings, date, field, ingest, meter, move_to,
    set_baseline, to_operating,
};

const CALLERS: usize = 32;

fn rid(label: &str) -> String {
    format!("{label}-{}", cwsm_platform::new_id())
}

async fn shared_savings_project(app: &TestApp) -> anyhow::Result<Parties> {
    contracted(
        app,
        types::ContractModel::SharedSavings,
        types::ContractTerms {
            share_ratio_bp: 7000,
            sharing_period_months: 60,
            ..Default::default()
        },
        &[],
    )
    .await
}

fn ask(project_id: &str, request_id: &str, to: p::ProjectStage) -> p::TransitionProjectRequest {
    p::TransitionProjectRequest {
        request_id: request_id.to_string(),
        project_id: project_id.to_string(),
        to_stage: to as i32,
        reason: String::new(),
        expected_version: 0,
        evidence: String::new(),
        effective_date: String::new(),
    }
}

/// The codes of `results`, counted ("OK" for successes).
fn tally<T>(results: &[Result<T, tonic::Status>]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in results {
        let code = match r {
            Ok(_) => "OK".to_string(),
            Err(e) => format!("{:?}", e.code()),
        };
        *counts.entry(code).or_insert(0) += 1;
    }
    counts
}

/// How many recorded transitions of `project_id` went to `stage`.
async fn transitions_to(
    app: &TestApp,
    token: &str,
    project_id: &str,
    stage: p::ProjectStage,
) -> anyhow::Result<usize> {
    let list = app
        .projects(token)
        .list_project_transitions(p::ListProjectTransitionsRequest {
            project_id: project_id.to_string(),
            page_size: 500,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    Ok(list
        .transitions
        .iter()
        .filter(|t| t.to_stage == stage as i32)
        .count())
}

/// How many milestones of `project_id` the log holds.
async fn milestones_of(app: &TestApp, token: &str, project_id: &str) -> anyhow::Result<usize> {
    Ok(app
        .projects(token)
        .list_milestones(p::ListMilestonesRequest {
            after_sequence: 0,
            project_id: project_id.to_string(),
            page_size: 1000,
            page_token: String::new(),
        })
        .await?
        .into_inner()
        .milestones
        .len())
}

async fn concurrent_steps(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let parties = shared_savings_project(&app).await?;
    let id = parties.project_id.clone();
    move_to(
        &app,
        &parties.company,
        &id,
        p::ProjectStage::Implementing,
        "",
    )
    .await?;
    let milestones_before = milestones_of(&app, &parties.admin, &id).await?;

    // 32 callers ask "implementing → commissioned" at once, each with its own request id and
    // no expected_version: exactly one step is made.
    let calls = (0..CALLERS).map(|i| {
        let mut client = app.projects(&parties.company);
        let request = ask(
            &id,
            &rid(&format!("commission-{i}")),
            p::ProjectStage::Commissioned,
        );
        async move { client.transition_project(request).await }
    });
    let results = futures::future::join_all(calls).await;
    let counts = tally(&results);
    println!("32 concurrent different steps: {counts:?}");
    assert_eq!(counts.get("OK"), Some(&1), "{counts:?}");
    assert!(
        counts
            .keys()
            .all(|c| ["OK", "Aborted", "FailedPrecondition"].contains(&c.as_str())),
        "only ABORTED or FAILED_PRECONDITION for the others: {counts:?}"
    );
    assert_eq!(
        transitions_to(&app, &parties.admin, &id, p::ProjectStage::Commissioned).await?,
        1
    );
    assert_eq!(
        milestones_of(&app, &parties.admin, &id).await?,
        milestones_before + 1,
        "one milestone for the one step"
    );

    // 32 concurrent retries of one request: one effect, the same answer to all, never INTERNAL.
    let request_id = rid("accept");
    let accept = p::TransitionProjectRequest {
        evidence: "post-installation M&V report PIV-2026-11".into(),
        ..ask(&id, &request_id, p::ProjectStage::Accepted)
    };
    let calls = (0..CALLERS).map(|_| {
        let mut client = app.projects(&parties.user);
        let request = accept.clone();
        async move { client.transition_project(request).await }
    });
    let results = futures::future::join_all(calls).await;
    let counts = tally(&results);
    println!("32 concurrent retries of one request: {counts:?}");
    assert_eq!(counts.get("OK"), Some(&CALLERS), "{counts:?}");
    let answers: std::collections::BTreeSet<String> = results
        .into_iter()
        .filter_map(|r| r.ok())
        .filter_map(|r| r.into_inner().transition.map(|t| t.id))
        .collect();
    assert_eq!(answers.len(), 1, "one transition answered to every retry");
    assert_eq!(
        transitions_to(&app, &parties.admin, &id, p::ProjectStage::Accepted).await?,
        1
    );
    app.stop().await
}

/// A period of `parties`' project submitted for last month (meter, a year of baseline and a
/// month of daily readings).
async fn submitted_period(app: &TestApp, parties: &Parties) -> anyhow::Result<p::PeriodSavings> {
    let cal = Calendar::now();
    let id = &parties.project_id;
    set_baseline(app, &parties.user, id, &cal).await?;
    to_operating(app, parties).await?;
    let m = meter(app, &parties.company, id).await?;
    let ingested = ingest(
        app,
        &parties.company,
        &m.id,
        p::ReadingValueKind::IntervalUse,
        daily_readings(&cal),
    )
    .await?;
    anyhow::ensure!(ingested.rejected == 0, "{:?}", ingested.rejections);
    app.projects(&parties.company)
        .submit_period(p::SubmitPeriodRequest {
            request_id: rid("submit"),
            project_id: id.clone(),
            start_date: date(cal.period_start),
            note: String::new(),
        })
        .await?
        .into_inner()
        .period
        .ok_or_else(|| anyhow::anyhow!("no period"))
}

/// Period `id` of `project_id` as its savings report shows it now.
async fn period(
    app: &TestApp,
    token: &str,
    project_id: &str,
    id: &str,
) -> anyhow::Result<p::PeriodSavings> {
    app.projects(token)
        .get_savings_report(p::GetSavingsReportRequest {
            project_id: project_id.to_string(),
        })
        .await?
        .into_inner()
        .periods
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| anyhow::anyhow!("no period {id}"))
}

async fn keys_bound_to_their_target(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let a = shared_savings_project(&app).await?;
    let b = shared_savings_project(&app).await?;
    let period_a = submitted_period(&app, &a).await?;
    let period_b = submitted_period(&app, &b).await?;
    // Both projects have the test verifier body assigned (`contracted`).
    let verifier = app.token(Role::Verifier, Some(&cwsm_tests::test_verifier_org()));
    let verify = |period_id: &str, request_id: &str| p::VerifyPeriodRequest {
        request_id: request_id.to_string(),
        period_id: period_id.to_string(),
        expected_version: 0,
        note: "meter read on site".into(),
    };

    // The same request id on another period verifies that period (it used to answer OK with
    // period a and leave b unverified).
    let shared = rid("verify");
    app.projects(&verifier)
        .verify_period(verify(&period_a.id, &shared))
        .await?;
    let answered = app
        .projects(&verifier)
        .verify_period(verify(&period_b.id, &shared))
        .await?
        .into_inner()
        .period
        .unwrap_or_default();
    assert_eq!(answered.id, period_b.id, "the answer is about period b");
    assert_eq!(
        period(&app, &verifier, &b.project_id, &period_b.id)
            .await?
            .status,
        p::PeriodStatus::Verified as i32,
        "period b is verified"
    );

    // A retry of the same request is answered as the first was, and changes nothing.
    let again = app
        .projects(&verifier)
        .verify_period(verify(&period_a.id, &shared))
        .await?
        .into_inner()
        .period
        .unwrap_or_default();
    assert_eq!(again.id, period_a.id);
    assert_eq!(
        again.version,
        period(&app, &verifier, &a.project_id, &period_a.id)
            .await?
            .version
    );

    // The same key (caller, method, target, request id) with a different request: refused.
    let mut other = verify(&period_a.id, &shared);
    other.note = "something else".into();
    let err = app
        .projects(&verifier)
        .verify_period(other)
        .await
        .expect_err("a request id reused for a different request");
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert_eq!(field(&err), "request_id");

    // A transition with another project's request id moves that other project.
    let y = shared_savings_project(&app).await?;
    let z = shared_savings_project(&app).await?;
    let step = rid("implement");
    let moved_y = app
        .projects(&y.company)
        .transition_project(ask(&y.project_id, &step, p::ProjectStage::Implementing))
        .await?
        .into_inner();
    let moved_z = app
        .projects(&z.company)
        .transition_project(ask(&z.project_id, &step, p::ProjectStage::Implementing))
        .await?
        .into_inner();
    let (ty, tz) = (
        moved_y.transition.unwrap_or_default(),
        moved_z.transition.unwrap_or_default(),
    );
    assert_eq!(tz.project_id, z.project_id, "the answer is about project Z");
    assert_ne!(ty.id, tz.id, "Z got a transition of its own");
    assert_eq!(
        moved_z.project.unwrap_or_default().stage,
        p::ProjectStage::Implementing as i32
    );

    // ResolveDispute with an adjustment that would overflow the savings: INVALID_ARGUMENT on
    // the field, nothing changed (it used to store negative savings and settle −3.8e16 yuan).
    let c = shared_savings_project(&app).await?;
    let period_c = submitted_period(&app, &c).await?;
    app.projects(&c.user)
        .dispute_period(p::DisputePeriodRequest {
            request_id: rid("dispute"),
            period_id: period_c.id.clone(),
            expected_version: 0,
            reason: "the meter was replaced mid-month".into(),
        })
        .await?;
    let err = app
        .projects(&c.admin)
        .resolve_dispute(p::ResolveDisputeRequest {
            request_id: rid("resolve"),
            period_id: period_c.id.clone(),
            expected_version: 0,
            note: "agreed".into(),
            adjustment_litres: i64::MAX,
        })
        .await
        .expect_err("an adjustment beyond what can be stored");
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert_eq!(field(&err), "adjustment_litres");
    let still = period(&app, &c.admin, &c.project_id, &period_c.id).await?;
    assert_eq!(still.status, p::PeriodStatus::Disputed as i32);
    assert_eq!(still.savings_litres, period_c.savings_litres);
    app.stop().await
}

/// UpdateCompany (and every update) honours its request id: a retry after a lost reply gets
/// the first answer, not ABORTED for the version the first call moved.
async fn updates_honour_request_ids(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let code = credit_code("91320411MA1QX9D4B");
    let company = app.token(Role::Company, Some(&code));
    let created = app
        .matching(&company)
        .create_company(m::CreateCompanyRequest {
            request_id: rid("company"),
            company: Some(m::Company {
                credit_code: code.clone(),
                name: "常州澄波节水服务有限公司".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .company
        .unwrap_or_default();
    let update = m::UpdateCompanyRequest {
        request_id: rid("update"),
        company: Some(m::Company {
            description: "供水管网查漏与计量改造".into(),
            ..created.clone()
        }),
        expected_version: created.version,
    };
    let first = app
        .matching(&company)
        .update_company(update.clone())
        .await?
        .into_inner()
        .company
        .unwrap_or_default();
    let retried = app
        .matching(&company)
        .update_company(update.clone())
        .await?
        .into_inner()
        .company
        .unwrap_or_default();
    assert_eq!(retried.version, first.version, "the retry changed nothing");
    assert_eq!(retried.description, "供水管网查漏与计量改造");

    // The same request id for a different update: refused, naming the field.
    let mut other = update;
    if let Some(c) = other.company.as_mut() {
        c.description = "another text".into();
    }
    let err = app
        .matching(&company)
        .update_company(other)
        .await
        .expect_err("a request id reused for a different update");
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert_eq!(field(&err), "request_id");
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_steps_apply_once_and_retries_answer_alike_on_sqlite() -> anyhow::Result<()> {
    concurrent_steps(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_steps_apply_once_and_retries_answer_alike_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    concurrent_steps(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_bound_to_their_target_on_sqlite() -> anyhow::Result<()> {
    keys_bound_to_their_target(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_bound_to_their_target_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    keys_bound_to_their_target(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_honour_their_request_id_on_sqlite() -> anyhow::Result<()> {
    updates_honour_request_ids(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_honour_their_request_id_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    updates_honour_request_ids(Backend::Postgres).await
}

/// Accounts' creates follow the one rule: a retry answers the first result (a retried
/// registration or redemption proves the password again; a retried invitation or API key
/// comes without its secret, shown once), the same id with another request is refused, and
/// concurrent retries of one API key make one key.
async fn accounts_creates_honour_request_ids(backend: Backend) -> anyhow::Result<()> {
    use crate::accounts::{PASSWORD, accounts, approve, sign_in};
    let app = TestApp::start(backend).await?;
    let code = credit_code("91320411MA1N2B3R8");
    let login = format!("owner-{}@example.cn", cwsm_platform::new_id());
    let register = |request_id: &str, name: &str, password: &str| {
        let mut client = accounts(&app.channel, "");
        let request = a::RegisterOrganizationRequest {
            credit_code: code.clone(),
            name: name.to_string(),
            kind: a::OrganizationKind::Company as i32,
            registrant: Some(a::NewCredentials {
                login: login.clone(),
                password: password.to_string(),
                display_name: "王工".into(),
            }),
            request_id: request_id.to_string(),
            // The platform's district.
            ..Default::default()
        };
        async move {
            client
                .register_organization(request)
                .await
                .map(|r| r.into_inner())
        }
    };
    let r = rid("register");
    let first = register(&r, "清源节水", PASSWORD).await?;
    let again = register(&r, "清源节水", PASSWORD).await?;
    assert_eq!(
        again.person_id, first.person_id,
        "a retry answers the first person"
    );
    assert_eq!(again.organization, first.organization);
    // A retry with another password is not the registrant's: it is told what sign-in tells.
    let wrong = register(&r, "清源节水", "not the password at all")
        .await
        .expect_err("another password");
    assert_eq!(wrong.code(), Code::Unauthenticated, "{}", wrong.message());
    let other = register(&r, "另一个名字", PASSWORD)
        .await
        .expect_err("another request");
    assert_eq!(other.code(), Code::InvalidArgument, "{}", other.message());
    assert_eq!(field(&other), "request_id");
    // A new request id is a new registration: the code is taken.
    let taken = register(&rid("register"), "清源节水", PASSWORD)
        .await
        .expect_err("registered already");
    assert_eq!(taken.code(), Code::AlreadyExists);

    approve(&app, &code).await?;
    let owner = sign_in(&app, &login, PASSWORD).await?;
    let invite = |request_id: &str, hours: i32| {
        let mut client = accounts(&app.channel, &owner.access_token);
        let request = a::CreateInvitationRequest {
            credit_code: code.clone(),
            valid_hours: hours,
            request_id: request_id.to_string(),
        };
        async move {
            client
                .create_invitation(request)
                .await
                .map(|r| r.into_inner())
        }
    };
    let i = rid("invite");
    let invitation = invite(&i, 24).await?;
    assert!(!invitation.replayed && !invitation.code.is_empty());
    let retried = invite(&i, 24).await?;
    assert!(retried.replayed, "a retry says it is one");
    assert_eq!(retried.code, "", "the code is shown once");
    assert_eq!(retried.expires_at, invitation.expires_at);
    let other = invite(&i, 48).await.expect_err("another request");
    assert_eq!(field(&other), "request_id");

    let member_login = format!("member-{}@example.cn", cwsm_platform::new_id());
    let join = |request_id: &str, display_name: &str| {
        let mut client = accounts(&app.channel, "");
        let request = a::AcceptInvitationRequest {
            code: invitation.code.clone(),
            person: Some(a::NewCredentials {
                login: member_login.clone(),
                password: PASSWORD.into(),
                display_name: display_name.to_string(),
            }),
            request_id: request_id.to_string(),
        };
        async move {
            client
                .accept_invitation(request)
                .await
                .map(|r| r.into_inner())
        }
    };
    let j = rid("join");
    let joined = join(&j, "李工").await?;
    let rejoined = join(&j, "李工").await?;
    assert_eq!(rejoined.person_id, joined.person_id);
    assert_eq!(rejoined.membership, joined.membership);
    let other = join(&j, "李四").await.expect_err("another request");
    assert_eq!(field(&other), "request_id");
    let members = accounts(&app.channel, &owner.access_token)
        .list_members(a::ListMembersRequest {
            credit_code: code.clone(),
        })
        .await?
        .into_inner()
        .members;
    assert_eq!(members.len(), 2, "the owner and one member: {members:?}");

    // 8 concurrent sends of one API key request: one key, made once; the others answer it
    // without the secret.
    let k = rid("key");
    let create = |name: &str| {
        let mut client = accounts(&app.channel, &owner.access_token);
        let request = a::CreateApiKeyRequest {
            credit_code: code.clone(),
            name: name.to_string(),
            valid_days: 30,
            request_id: k.clone(),
        };
        async move { client.create_api_key(request).await.map(|r| r.into_inner()) }
    };
    let answers = futures::future::join_all((0..8).map(|_| create("网关"))).await;
    let answers: Vec<a::CreateApiKeyResponse> = answers.into_iter().collect::<Result<_, _>>()?;
    let made: Vec<&a::CreateApiKeyResponse> = answers.iter().filter(|a| !a.replayed).collect();
    assert_eq!(made.len(), 1, "one answer carries the key");
    assert!(made[0].api_key.starts_with("cwsm_ak_"));
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|a| a.key.clone().unwrap_or_default().id)
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(
        answers
            .iter()
            .filter(|a| a.replayed)
            .all(|a| a.api_key.is_empty())
    );
    let other = create("另一个网关").await.expect_err("another request");
    assert_eq!(field(&other), "request_id");
    let keys = accounts(&app.channel, &owner.access_token)
        .list_api_keys(a::ListApiKeysRequest {
            credit_code: code.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 1);
    // Without a request id, nothing is created.
    let err = accounts(&app.channel, &owner.access_token)
        .create_api_key(a::CreateApiKeyRequest {
            credit_code: code.clone(),
            name: "网关".into(),
            valid_days: 30,
            request_id: String::new(),
        })
        .await
        .expect_err("no request id");
    assert_eq!(field(&err), "request_id");
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_creates_honour_their_request_id_on_sqlite() -> anyhow::Result<()> {
    accounts_creates_honour_request_ids(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_creates_honour_their_request_id_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    accounts_creates_honour_request_ids(Backend::Postgres).await
}
