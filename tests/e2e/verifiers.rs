//! Who verifies a project (issue 10, item 4): a party proposes a verifier body, the other
//! party sees the proposal, an administrator approves it (assigning the body through the same
//! path as AssignVerifier, audited in the project's verifier history) or declines it; the body
//! is independent of both parties, also under another registration of the same organization.
//! And the adjustments: non-routine adjustments and dispute resolutions are bounded by the
//! baseline use and say who made them.

use cwsm_platform::auth::Role;
use cwsm_proto::projects::v1 as p;
use cwsm_tests::{
    Backend, TestApp, contract_a_project, credit_code, fresh_credit_code,
    postgres_and_redis_available, test_verifier_org,
};
use tonic::Code;

use crate::projects::{Calendar, daily_readings, date, field, ingest, meter, set_baseline};

fn rid(label: &str) -> String {
    format!("{label}-{}", cwsm_platform::new_id())
}

async fn propose(
    app: &TestApp,
    token: &str,
    project_id: &str,
    body: &str,
) -> Result<p::VerifierProposal, tonic::Status> {
    app.projects(token)
        .propose_verifier(p::ProposeVerifierRequest {
            request_id: rid("pv"),
            project_id: project_id.to_string(),
            verifier_credit_code: body.to_string(),
            note: "合同第三部分约定的核查机构".into(),
        })
        .await
        .map(|r| r.into_inner().proposal.unwrap_or_default())
}

async fn decide(
    app: &TestApp,
    token: &str,
    request_id: &str,
    proposal_id: &str,
    decision: p::VerifierDecision,
    reason: &str,
) -> Result<p::DecideVerifierProposalResponse, tonic::Status> {
    app.projects(token)
        .decide_verifier_proposal(p::DecideVerifierProposalRequest {
            request_id: request_id.to_string(),
            proposal_id: proposal_id.to_string(),
            decision: decision as i32,
            reason: reason.to_string(),
            expected_version: 0,
        })
        .await
        .map(|r| r.into_inner())
}

async fn proposals(
    app: &TestApp,
    token: &str,
    project_id: &str,
) -> Result<Vec<p::VerifierProposal>, tonic::Status> {
    app.projects(token)
        .list_verifier_proposals(p::ListVerifierProposalsRequest {
            project_id: project_id.to_string(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().proposals)
}

async fn project(app: &TestApp, project_id: &str) -> anyhow::Result<p::Project> {
    app.projects(&app.token(Role::Admin, None))
        .get_project(p::GetProjectRequest {
            project_id: project_id.to_string(),
        })
        .await?
        .into_inner()
        .project
        .ok_or_else(|| anyhow::anyhow!("no project"))
}

/// `code` registered again under another department, category and division: the same
/// subject identification code (characters 9–17), another credit code.
fn same_organization_elsewhere(code: &str) -> String {
    credit_code(&format!("12320412{}", &code[8..17]))
}

async fn propose_and_decide(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let admin = app.token(Role::Admin, None);
    let c = contract_a_project(&app, "新桥街道").await?;
    let id = c.project_id.clone();
    let before = project(&app, &id).await?;
    let company_code = before.company.clone().unwrap_or_default().credit_code;
    let user_code = before.water_user.clone().unwrap_or_default().credit_code;
    let body = test_verifier_org();

    // Independence at proposal time: neither party, nor a party under another registration.
    for not_independent in [
        company_code.clone(),
        user_code.clone(),
        same_organization_elsewhere(&company_code),
    ] {
        let err = propose(&app, &c.user_token, &id, &not_independent)
            .await
            .expect_err("not independent");
        assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
        assert!(err.message().contains("independent"), "{}", err.message());
    }
    let err = propose(&app, &c.company_token, &id, "notacode")
        .await
        .expect_err("not a credit code");
    assert_eq!(field(&err), "verifier_credit_code");
    // Administrators assign directly; a verifier body does not propose itself; strangers do
    // not know the project.
    let err = propose(&app, &admin, &id, &body).await.expect_err("admin");
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(
        err.message().contains("AssignVerifier"),
        "{}",
        err.message()
    );
    let itself = app.token(Role::Verifier, Some(&body));
    let stranger = contract_a_project(&app, "三井街道").await?;
    for outsider in [&itself, &stranger.company_token] {
        let err = propose(&app, outsider, &id, &body)
            .await
            .expect_err("outsider");
        assert_eq!(err.code(), Code::NotFound);
        let err = proposals(&app, outsider, &id).await.expect_err("outsider");
        assert_eq!(err.code(), Code::NotFound);
    }

    // The company proposes; the water user sees it, and cannot open a second one.
    let proposal = propose(&app, &c.company_token, &id, &body).await?;
    assert_eq!(proposal.state, p::VerifierProposalState::Open as i32);
    assert_eq!(
        (
            proposal.proposer_role.as_str(),
            proposal.proposer_org.as_str()
        ),
        ("company", company_code.as_str())
    );
    let seen = proposals(&app, &c.user_token, &id).await?;
    assert_eq!(
        seen.iter().map(|x| x.id.clone()).collect::<Vec<_>>(),
        vec![proposal.id.clone()]
    );
    let err = propose(&app, &c.user_token, &id, &fresh_credit_code("12320411"))
        .await
        .expect_err("one open proposal at a time");
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(err.message().contains(&proposal.id), "{}", err.message());

    // Only an administrator decides.
    for party in [&c.company_token, &c.user_token] {
        let err = decide(
            &app,
            party,
            &rid("d"),
            &proposal.id,
            p::VerifierDecision::Approve,
            "",
        )
        .await
        .expect_err("a party does not approve");
        assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    }
    let err = decide(
        &app,
        &admin,
        &rid("d"),
        &proposal.id,
        p::VerifierDecision::Unspecified,
        "",
    )
    .await
    .expect_err("no decision");
    assert_eq!(field(&err), "decision");

    // Approval assigns the body: one version more, one entry in the verifier history; a
    // retry of the same request changes nothing more.
    let key = rid("approve");
    let approved = decide(
        &app,
        &admin,
        &key,
        &proposal.id,
        p::VerifierDecision::Approve,
        "",
    )
    .await?;
    let again = decide(
        &app,
        &admin,
        &key,
        &proposal.id,
        p::VerifierDecision::Approve,
        "",
    )
    .await?;
    assert_eq!(
        approved.proposal.as_ref().map(|x| x.state),
        Some(p::VerifierProposalState::Approved as i32)
    );
    let assigned = approved.project.clone().unwrap_or_default();
    assert_eq!(assigned.verifier_org, body);
    assert_eq!(assigned.version, before.version + 1);
    assert_eq!(again.project.map(|x| x.version), Some(assigned.version));
    let after = project(&app, &id).await?;
    assert_eq!(after.version, before.version + 1, "assigned once");
    assert_eq!(after.verifier_history.len(), 1);
    let entry = after.verifier_history[0].clone();
    assert_eq!(
        (
            entry.verifier_org.as_str(),
            entry.previous_verifier_org.as_str()
        ),
        (body.as_str(), "")
    );
    assert_eq!(entry.proposal_id, proposal.id);
    assert_eq!(entry.actor, "test");
    // The body now reads the project and its proposals.
    assert_eq!(proposals(&app, &itself, &id).await?.len(), 1);
    // A decided proposal is not decided again.
    let err = decide(
        &app,
        &admin,
        &rid("d"),
        &proposal.id,
        p::VerifierDecision::Decline,
        "changed our mind",
    )
    .await
    .expect_err("decided");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("approved"), "{}", err.message());
    // The assigned body is not proposed again.
    let err = propose(&app, &c.user_token, &id, &body)
        .await
        .expect_err("already the verifier");
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());

    // The water user proposes another; a decline needs a reason and leaves the verifier.
    let other_body = fresh_credit_code("12320411");
    let second = propose(&app, &c.user_token, &id, &other_body).await?;
    let err = decide(
        &app,
        &admin,
        &rid("d"),
        &second.id,
        p::VerifierDecision::Decline,
        " ",
    )
    .await
    .expect_err("no reason");
    assert_eq!(field(&err), "reason");
    let declined = decide(
        &app,
        &admin,
        &rid("d"),
        &second.id,
        p::VerifierDecision::Decline,
        "not accredited for water metering",
    )
    .await?;
    let declined_proposal = declined.proposal.unwrap_or_default();
    assert_eq!(
        declined_proposal.state,
        p::VerifierProposalState::Declined as i32
    );
    assert_eq!(
        declined_proposal.decision_reason,
        "not accredited for water metering"
    );
    assert!(declined.project.is_none());
    assert_eq!(project(&app, &id).await?.verifier_org, body);
    let err = decide(
        &app,
        &admin,
        &rid("d"),
        &second.id,
        p::VerifierDecision::Approve,
        "",
    )
    .await
    .expect_err("decided");
    assert!(err.message().contains("declined"), "{}", err.message());

    // A direct assignment goes through the same path: the second entry names no proposal.
    app.projects(&admin)
        .assign_verifier(p::AssignVerifierRequest {
            request_id: rid("a"),
            project_id: id.clone(),
            verifier_org: other_body.clone(),
            expected_version: 0,
        })
        .await?;
    let history = project(&app, &id).await?.verifier_history;
    assert_eq!(history.len(), 2);
    assert_eq!(
        (
            history[1].verifier_org.as_str(),
            history[1].previous_verifier_org.as_str(),
            history[1].proposal_id.as_str()
        ),
        (other_body.as_str(), body.as_str(), "")
    );
    // Both proposals stay listed, oldest first.
    let listed: Vec<String> = proposals(&app, &c.company_token, &id)
        .await?
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(listed, vec![proposal.id.clone(), second.id.clone()]);

    // Eight proposals at once on another project: one is stored, seven are told of it.
    let calls = (0..8).map(|_| {
        let app = &app;
        let token = stranger.company_token.clone();
        let project_id = stranger.project_id.clone();
        async move { propose(app, &token, &project_id, &fresh_credit_code("12320411")).await }
    });
    let results = futures::future::join_all(calls).await;
    let stored = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(s) if s.code() == Code::AlreadyExists))
        .count();
    assert_eq!((stored, refused), (1, 7));
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_propose_verifiers_and_administrators_decide_on_sqlite() -> anyhow::Result<()> {
    propose_and_decide(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_propose_verifiers_and_administrators_decide_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    propose_and_decide(Backend::Postgres).await
}

/// AssignVerifier refuses a body that is a party's organization registered under another
/// code (issue 10: "must not be either party or share their organization").
async fn same_organization(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let c = contract_a_project(&app, "新桥街道").await?;
    let before = project(&app, &c.project_id).await?;
    for party in [
        before.company.clone().unwrap_or_default().credit_code,
        before.water_user.clone().unwrap_or_default().credit_code,
    ] {
        let err = app
            .projects(&app.token(Role::Admin, None))
            .assign_verifier(p::AssignVerifierRequest {
                request_id: rid("a"),
                project_id: c.project_id.clone(),
                verifier_org: same_organization_elsewhere(&party),
                expected_version: 0,
            })
            .await
            .expect_err("the same organization");
        assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
        assert!(err.message().contains(&party[8..17]), "{}", err.message());
    }
    assert_eq!(project(&app, &c.project_id).await?.verifier_org, "");
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_sharing_a_partys_organization_is_refused_on_sqlite() -> anyhow::Result<()> {
    same_organization(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_sharing_a_partys_organization_is_refused_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    same_organization(Backend::Postgres).await
}

async fn resolve(
    app: &TestApp,
    token: &str,
    period_id: &str,
    litres: i64,
) -> Result<p::PeriodSavings, tonic::Status> {
    app.projects(token)
        .resolve_dispute(p::ResolveDisputeRequest {
            request_id: rid("r"),
            period_id: period_id.to_string(),
            expected_version: 0,
            adjustment_litres: litres,
            note: "agreed on site".into(),
        })
        .await
        .map(|r| r.into_inner().period.unwrap_or_default())
}

async fn dispute(app: &TestApp, token: &str, period_id: &str) -> anyhow::Result<()> {
    app.projects(token)
        .dispute_period(p::DisputePeriodRequest {
            request_id: rid("d"),
            period_id: period_id.to_string(),
            expected_version: 0,
            reason: "the meter was replaced mid-month".into(),
        })
        .await?;
    Ok(())
}

/// Every adjustment is bounded and audited: a non-routine adjustment by the contract's
/// baseline use over its days, and says who documented it; a dispute's adjustments by the
/// period's adjusted baseline, in total.
async fn adjustments(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    // Baseline use 3,650,000 L a year in the contract: 10,000 L a day.
    let parties = crate::projects::contracted(
        &app,
        cwsm_proto::types::ContractModel::SharedSavings,
        cwsm_proto::types::ContractTerms::default(),
        &[],
    )
    .await?;
    let id = parties.project_id.clone();
    let cal = Calendar::now();
    let days = cal.period_days();
    let most = 3_650_000 * days / 365;
    assert_eq!(most, 10_000 * days);
    let adjust = |token: String, litres: i64| {
        let mut client = app.projects(&token);
        let project_id = id.clone();
        async move {
            client
                .create_non_routine_adjustment(p::CreateNonRoutineAdjustmentRequest {
                    request_id: rid("nra"),
                    adjustment: Some(p::NonRoutineAdjustment {
                        project_id,
                        start_date: date(cal.period_start),
                        end_date: date(cal.period_end),
                        litres,
                        reason: "new dormitory wing".into(),
                        evidence: "building permit 2026-031".into(),
                        ..Default::default()
                    }),
                })
                .await
                .map(|r| r.into_inner().adjustment.unwrap_or_default())
        }
    };
    for beyond in [most + 1, -most - 1] {
        let err = adjust(parties.company.clone(), beyond)
            .await
            .expect_err("beyond the baseline use");
        assert_eq!(field(&err), "adjustment.litres", "{}", err.message());
    }
    let made = adjust(parties.verifier.clone(), -most).await?;
    assert_eq!(made.litres, -most);
    assert_eq!(
        (made.recorded_by.as_str(), made.recorded_by_org.as_str()),
        ("test", test_verifier_org().as_str())
    );
    let listed = app
        .projects(&parties.user)
        .list_non_routine_adjustments(p::ListNonRoutineAdjustmentsRequest {
            project_id: id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .adjustments;
    assert_eq!(listed, vec![made]);

    // A submitted period, disputed by the company, resolved by the verifier.
    set_baseline(&app, &parties.company, &id, &cal).await?;
    crate::projects::to_operating(&app, &parties).await?;
    let m = meter(&app, &parties.company, &id).await?;
    ingest(
        &app,
        &parties.company,
        &m.id,
        p::ReadingValueKind::IntervalUse,
        daily_readings(&cal),
    )
    .await?;
    let period = app
        .projects(&parties.company)
        .submit_period(p::SubmitPeriodRequest {
            request_id: rid("s"),
            project_id: id.clone(),
            start_date: date(cal.period_start),
            note: String::new(),
        })
        .await?
        .into_inner()
        .period
        .unwrap_or_default();
    let baseline = period.adjusted_baseline_litres;
    assert!(baseline > 0);
    dispute(&app, &parties.company, &period.id).await?;
    let err = resolve(&app, &parties.verifier, &period.id, baseline + 1)
        .await
        .expect_err("more than the period's baseline use");
    assert_eq!(field(&err), "adjustment_litres", "{}", err.message());
    // −baseline is the most either way; then −1 more makes the total −(baseline + 1).
    let resolved = resolve(&app, &parties.verifier, &period.id, -baseline).await?;
    assert_eq!(resolved.dispute_adjustment_litres, -baseline);
    assert_eq!(resolved.savings_litres, period.savings_litres - baseline);
    assert!(
        resolved
            .notes
            .iter()
            .any(|n| n.contains(&format!("resolved by test with {:+} L", -baseline))),
        "{:?}",
        resolved.notes
    );
    dispute(&app, &parties.user, &period.id).await?;
    let err = resolve(&app, &parties.admin, &period.id, -1)
        .await
        .expect_err("the total is bounded");
    assert_eq!(field(&err), "adjustment_litres", "{}", err.message());
    resolve(&app, &parties.admin, &period.id, 1).await?;
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adjustments_are_bounded_and_say_who_made_them_on_sqlite() -> anyhow::Result<()> {
    adjustments(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adjustments_are_bounded_and_say_who_made_them_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    adjustments(Backend::Postgres).await
}
