//! End-to-end: the marketplace flow through gRPC across matching, projects and reporting, on
//! SQLite with the in-process bus and on PostgreSQL with Redis Streams; and what bad input gets.

mod accounts;
mod authz;
mod bus;
mod counting;
mod data_dir;
mod demo;
mod embedded_crash;
mod faults;
mod idempotency;
mod ingest;
mod input;
mod limits;
mod matching;
mod metrics;
mod mv_check;
mod oidc;
mod projects;
mod readme;
mod reflection;
mod reporting;
mod rollup;
mod tidy;
mod tls;
mod trace_context;
mod verifiers;

use std::time::Duration;

use cwsm_platform::auth::Role;
use cwsm_platform::bus::{Envelope, topics};
use cwsm_proto::events::v1::ProjectMilestone;
use cwsm_proto::matching::v1 as m;
use cwsm_proto::projects::v1 as p;
use cwsm_proto::reporting::v1 as r;
use cwsm_proto::types;
use cwsm_tests::{Backend, TestApp, credit_code, eventually, postgres_and_redis_available};
use tonic::Code;
use tonic_types::StatusExt;

const A8: &str = "A8-CONTRACT-PROJECTS";
const WAIT: Duration = Duration::from_secs(20);

fn rid(label: &str) -> String {
    format!("{label}-{}", cwsm_platform::new_id())
}

/// The A8 indicator's actual value now.
async fn contract_projects_counted(app: &TestApp, admin: &str) -> Option<f64> {
    let report = app
        .reporting(admin)
        .get_report(r::GetReportRequest {
            plan_code: "xinbei-2020".into(),
            plan_version: 0,
            as_of_date: String::new(),
        })
        .await
        .ok()?
        .into_inner()
        .report?;
    report
        .indicators
        .iter()
        .find(|s| s.indicator.as_ref().is_some_and(|i| i.code == A8))
        .map(|s| s.actual)
}

async fn marketplace_flow(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    // The project below takes effect today: counted by a plan for this year.
    cwsm_tests::count_this_year(app.reporting(&app.token(Role::Admin, None))).await?;
    let admin = app.token(Role::Admin, None);
    let company_code = credit_code("91320411MA1QX7B2F");
    let user_code = credit_code("12320411466001122");
    let company_token = app.token(Role::Company, Some(&company_code));
    let user_token = app.token(Role::WaterUser, Some(&user_code));

    // A service company registers and lists an offering.
    let company = app
        .matching(&company_token)
        .create_company(m::CreateCompanyRequest {
            request_id: rid("company"),
            company: Some(m::Company {
                credit_code: company_code.clone(),
                name: "常州清源节水科技有限公司".into(),
                towns: vec!["新桥街道".into()],
                sectors: vec![types::Sector::School as i32],
                certification_grade: types::CertificationGrade::Aaa as i32,
                financing_capacity_fen: 500_000_000,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .company
        .expect("company");
    let offering = app
        .matching(&company_token)
        .create_offering(m::CreateOfferingRequest {
            request_id: rid("offering"),
            offering: Some(m::Offering {
                company_id: company.id.clone(),
                title: "Campus leak detection and smart metering".into(),
                technologies: vec![
                    types::Technology::LeakDetection as i32,
                    types::Technology::SmartMetering as i32,
                ],
                contract_models: vec![types::ContractModel::SharedSavings as i32],
                typical_savings_bp: 2500,
                typical_term_months: 96,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .offering
        .expect("offering");
    app.matching(&company_token)
        .publish_offering(m::PublishOfferingRequest {
            request_id: rid("publish"),
            offering_id: offering.id.clone(),
            expected_version: 0,
        })
        .await?;

    // A university asks for a project.
    let user = app
        .matching(&user_token)
        .create_water_user(m::CreateWaterUserRequest {
            request_id: rid("user"),
            water_user: Some(m::WaterUser {
                credit_code: user_code.clone(),
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
        .expect("water user");
    assert!(
        user.planned_use_supervised,
        "2.43 million m³ a year is under planned-use supervision"
    );
    let request = app
        .matching(&user_token)
        .create_project_request(m::CreateProjectRequestRequest {
            request_id: rid("request"),
            project_request: Some(m::ProjectRequest {
                water_user_id: user.id.clone(),
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
        .expect("request");
    app.matching(&user_token)
        .open_project_request(m::OpenProjectRequestRequest {
            request_id: rid("open"),
            project_request_id: request.id.clone(),
            expected_version: 0,
        })
        .await?;

    // Matching ranks the offering, and says why.
    let ranking = app
        .matching(&user_token)
        .rank_offerings(m::RankOfferingsRequest {
            project_request_id: request.id.clone(),
            page_size: 10,
        })
        .await?
        .into_inner();
    let first = &ranking.ranked_offerings[0];
    assert_eq!(
        first.offering.as_ref().map(|o| o.id.as_str()),
        Some(offering.id.as_str())
    );
    assert_eq!(first.rank, 1);
    assert_eq!(first.parts.len(), 6, "every part of the score is returned");
    let technology = first
        .parts
        .iter()
        .find(|p| p.name == "technology")
        .expect("technology part");
    assert_eq!(technology.value, 1.0);
    assert!(technology.explanation.contains("1 of 1"));

    // The company proposes; the university accepts.
    let proposal = app
        .matching(&company_token)
        .create_proposal(m::CreateProposalRequest {
            request_id: rid("proposal"),
            proposal: Some(m::Proposal {
                project_request_id: request.id.clone(),
                company_id: company.id.clone(),
                offering_id: offering.id.clone(),
                measures: "DMA zoning, leak repair, smart meters on 40 buildings".into(),
                investment_fen: 120_000_000,
                promised_savings_litres: 486_000_000,
                promised_savings_bp: 2000,
                contract_model: types::ContractModel::SharedSavings as i32,
                terms: Some(types::ContractTerms {
                    share_ratio_bp: 7000,
                    sharing_period_months: 96,
                    ..Default::default()
                }),
                contract_term_months: 96,
                mv_option: types::MvOption::C as i32,
                drivers: vec!["occupancy".into()],
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .proposal
        .expect("proposal");
    let accept = m::AcceptProposalRequest {
        request_id: rid("accept"),
        proposal_id: proposal.id.clone(),
        expected_version: 0,
    };
    let accepted = app
        .matching(&user_token)
        .accept_proposal(accept.clone())
        .await?
        .into_inner();
    assert!(!accepted.project_id.is_empty());
    let again = app
        .matching(&user_token)
        .accept_proposal(accept)
        .await?
        .into_inner();
    assert_eq!(
        again.project_id, accepted.project_id,
        "a retried acceptance starts no second project"
    );

    // Projects holds a contracted project.
    let project_id = accepted.project_id.clone();
    let project = eventually(WAIT, || {
        let mut client = app.projects(&admin);
        let id = project_id.clone();
        async move {
            client
                .get_project(p::GetProjectRequest { project_id: id })
                .await
                .ok()
                .and_then(|r| r.into_inner().project)
        }
    })
    .await
    .expect("the accepted proposal becomes a project");
    assert_eq!(project.stage, p::ProjectStage::Contracted as i32);
    assert_eq!(
        project.company.as_ref().map(|c| c.credit_code.as_str()),
        Some(company_code.as_str())
    );

    // A step out of order is refused, naming the steps allowed; a company cannot sign the
    // water user's acceptance.
    let skip = app
        .projects(&user_token)
        .transition_project(p::TransitionProjectRequest {
            request_id: rid("skip"),
            project_id: project_id.clone(),
            to_stage: p::ProjectStage::HandedOver as i32,
            reason: String::new(),
            expected_version: 0,
            evidence: String::new(),
            effective_date: String::new(),
        })
        .await
        .expect_err("contracted cannot jump to handed over");
    assert_eq!(skip.code(), Code::FailedPrecondition);
    assert!(
        skip.message().contains("allowed next: implementing"),
        "{}",
        skip.message()
    );
    let stale = app
        .projects(&company_token)
        .transition_project(p::TransitionProjectRequest {
            request_id: rid("stale"),
            project_id: project_id.clone(),
            to_stage: p::ProjectStage::Implementing as i32,
            reason: String::new(),
            expected_version: project.version + 5,
            evidence: String::new(),
            effective_date: String::new(),
        })
        .await
        .expect_err("stale version");
    assert_eq!(stale.code(), Code::Aborted);
    let outsider = app.token(Role::Company, Some(&credit_code("91320411MA1QX7B2K")));
    let denied = app
        .projects(&outsider)
        .transition_project(p::TransitionProjectRequest {
            request_id: rid("outsider"),
            project_id: project_id.clone(),
            to_stage: p::ProjectStage::Implementing as i32,
            reason: String::new(),
            expected_version: 0,
            evidence: String::new(),
            effective_date: String::new(),
        })
        .await
        .expect_err("not a party");
    // To someone who is not a party the project does not exist.
    assert_eq!(denied.code(), Code::NotFound);

    // It is moved to completion (handed over), each step by the party whose step it is:
    // acceptance names its post-installation verification, and hand-over needs a settled
    // period (a baseline year set while contracted, readings, submitted, verified, settled).
    let calendar = projects::Calendar::now();
    projects::set_baseline(&app, &user_token, &project_id, &calendar).await?;
    for (stage, token) in [
        (p::ProjectStage::Implementing, &company_token),
        (p::ProjectStage::Commissioned, &company_token),
        (p::ProjectStage::Accepted, &user_token),
        (p::ProjectStage::Operating, &company_token),
        (p::ProjectStage::HandedOver, &user_token),
    ] {
        if stage == p::ProjectStage::HandedOver {
            let settled =
                projects::measure_and_settle(&app, &project_id, &company_token, &calendar).await?;
            assert!(settled.company_due_fen > 0, "{settled:?}");
        }
        let moved = app
            .projects(token)
            .transition_project(p::TransitionProjectRequest {
                request_id: rid("move"),
                project_id: project_id.clone(),
                to_stage: stage as i32,
                reason: String::new(),
                expected_version: 0,
                evidence: format!("{} report 2026-001", stage.as_str_name()),
                effective_date: String::new(),
            })
            .await?
            .into_inner();
        assert_eq!(moved.project.map(|p| p.stage), Some(stage as i32));
    }

    // Reporting counts the project once toward "contract water-saving projects".
    let counted = eventually(WAIT, || async {
        contract_projects_counted(&app, &admin)
            .await
            .filter(|n| *n >= 1.0)
    })
    .await;
    assert_eq!(counted, Some(1.0));

    // The signing event (what A8 counts: 开展, carried out) delivered twice, and re-emitted
    // under another event id: still one.
    let log = app
        .projects(&admin)
        .list_milestones(p::ListMilestonesRequest {
            after_sequence: 0,
            page_size: 100,
            page_token: String::new(),
            project_id: project_id.clone(),
        })
        .await?
        .into_inner()
        .milestones;
    let handed_over = log
        .iter()
        .find(|e| e.milestone == types::Milestone::Contracted as i32)
        .expect("the milestone log holds the signing")
        .clone();
    let envelope = |event: &ProjectMilestone| Envelope {
        event_id: event.event_id.clone(),
        topic: topics::PROJECT_MILESTONES.into(),
        kind: topics::PROJECT_MILESTONE_KIND.into(),
        payload: prost::Message::encode_to_vec(event),
        occurred_at_ms: 0,
        trace_parent: String::new(),
    };
    app.bus.publish(&envelope(&handed_over)).await?;
    let reemitted = ProjectMilestone {
        event_id: rid("reemitted"),
        ..handed_over.clone()
    };
    app.bus.publish(&envelope(&reemitted)).await?;
    // A signing of another project, published after the duplicates: once it is counted, the
    // consumer has been through the duplicates too.
    let other = ProjectMilestone {
        event_id: rid("other"),
        project_id: rid("other-project"),
        ..handed_over.clone()
    };
    app.bus.publish(&envelope(&other)).await?;
    let after = eventually(WAIT, || async {
        contract_projects_counted(&app, &admin)
            .await
            .filter(|n| *n >= 2.0)
    })
    .await;
    assert_eq!(
        after,
        Some(2.0),
        "duplicates add nothing; the other project adds one"
    );

    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketplace_flow_on_sqlite_with_the_in_process_bus() -> anyhow::Result<()> {
    marketplace_flow(Backend::Sqlite).await?;
    eprintln!("backend ran: sqlite + in-process bus");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketplace_flow_on_postgres_with_redis_streams() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    marketplace_flow(Backend::Postgres).await?;
    eprintln!("backend ran: postgres + redis streams");
    Ok(())
}

async fn bad_input(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let admin = app.token(Role::Admin, None);
    let code = credit_code("91320411MA1QX7B2G");
    let other_code = credit_code("91320411MA1QX7B2H");
    let company_token = app.token(Role::Company, Some(&code));
    let company = |code: &str| m::Company {
        credit_code: code.to_string(),
        name: "常州节水服务有限公司".into(),
        ..Default::default()
    };

    // No token: UNAUTHENTICATED. Health needs none.
    let err = app
        .matching("")
        .list_companies(m::ListCompaniesRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    for service in [
        "cwsm.matching.v1.MatchingService",
        "cwsm.projects.v1.ProjectsService",
        "cwsm.reporting.v1.ReportingService",
    ] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }

    // A wrong check character: INVALID_ARGUMENT naming the field.
    let mut wrong = code.clone();
    wrong.replace_range(17.., if code.ends_with('0') { "1" } else { "0" });
    let err = app
        .matching(&app.token(Role::Company, Some(&wrong)))
        .create_company(m::CreateCompanyRequest {
            request_id: rid("bad"),
            company: Some(company(&wrong)),
        })
        .await
        .expect_err("bad credit code");
    assert_eq!(err.code(), Code::InvalidArgument);
    let violations = err
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.clone())
        .unwrap_or_default();
    assert_eq!(violations[0].field, "company.credit_code");

    // A missing request id: INVALID_ARGUMENT on request_id.
    let err = app
        .matching(&company_token)
        .create_company(m::CreateCompanyRequest {
            request_id: String::new(),
            company: Some(company(&code)),
        })
        .await
        .expect_err("no request id");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("request_id"));

    // A retried create returns the first result and creates nothing new.
    let create = m::CreateCompanyRequest {
        request_id: rid("create"),
        company: Some(company(&code)),
    };
    let first = app
        .matching(&company_token)
        .create_company(create.clone())
        .await?
        .into_inner()
        .company
        .expect("company");
    let retry = app
        .matching(&company_token)
        .create_company(create)
        .await?
        .into_inner()
        .company
        .expect("company");
    assert_eq!(first.id, retry.id);
    let listed = app
        .matching(&admin)
        .list_companies(m::ListCompaniesRequest::default())
        .await?
        .into_inner()
        .companies;
    assert_eq!(listed.len(), 1);
    // The same company under a new request id: ALREADY_EXISTS.
    let err = app
        .matching(&company_token)
        .create_company(m::CreateCompanyRequest {
            request_id: rid("again"),
            company: Some(company(&code)),
        })
        .await
        .expect_err("duplicate");
    assert_eq!(err.code(), Code::AlreadyExists);

    // Another company may not edit it, nor register in its name.
    let other_token = app.token(Role::Company, Some(&other_code));
    let err = app
        .matching(&other_token)
        .update_company(m::UpdateCompanyRequest {
            request_id: rid("update"),
            company: Some(m::Company {
                id: first.id.clone(),
                ..company(&code)
            }),
            expected_version: 0,
        })
        .await
        .expect_err("not its company");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = app
        .matching(&other_token)
        .create_company(m::CreateCompanyRequest {
            request_id: rid("impersonate"),
            company: Some(company(&credit_code("91320411MA1QX7B2J"))),
        })
        .await
        .expect_err("not its credit code");
    assert_eq!(err.code(), Code::PermissionDenied);

    // A stale version: ABORTED.
    let err = app
        .matching(&company_token)
        .update_company(m::UpdateCompanyRequest {
            request_id: rid("stale"),
            company: Some(m::Company {
                id: first.id.clone(),
                ..company(&code)
            }),
            expected_version: 7,
        })
        .await
        .expect_err("stale");
    assert_eq!(err.code(), Code::Aborted);

    // Unknown ids: NOT_FOUND.
    let err = app
        .matching(&admin)
        .get_offering(m::GetOfferingRequest {
            offering_id: "no-such-offering".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    let err = app
        .projects(&admin)
        .get_project(p::GetProjectRequest {
            project_id: "no-such-project".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    let err = app
        .reporting(&admin)
        .get_report(r::GetReportRequest {
            plan_code: "no-such-plan".into(),
            plan_version: 0,
            as_of_date: String::new(),
        })
        .await
        .expect_err("unknown plan");
    assert_eq!(err.code(), Code::NotFound);

    // A step out of order: FAILED_PRECONDITION. Publishing a withdrawn offering is one.
    let offering = app
        .matching(&company_token)
        .create_offering(m::CreateOfferingRequest {
            request_id: rid("offering"),
            offering: Some(m::Offering {
                company_id: first.id.clone(),
                title: "Cooling tower water reuse".into(),
                technologies: vec![types::Technology::CoolingWaterReuse as i32],
                contract_models: vec![types::ContractModel::GuaranteedSavings as i32],
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .offering
        .expect("offering");
    app.matching(&company_token)
        .withdraw_offering(m::WithdrawOfferingRequest {
            request_id: rid("withdraw"),
            offering_id: offering.id.clone(),
            expected_version: 0,
            reason: "replaced".into(),
        })
        .await?;
    let err = app
        .matching(&company_token)
        .publish_offering(m::PublishOfferingRequest {
            request_id: rid("publish"),
            offering_id: offering.id,
            expected_version: 0,
        })
        .await
        .expect_err("withdrawn");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("withdrawn"));

    // A bad page token: INVALID_ARGUMENT.
    let err = app
        .matching(&admin)
        .list_companies(m::ListCompaniesRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad token");
    assert_eq!(err.code(), Code::InvalidArgument);

    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_status_on_sqlite() -> anyhow::Result<()> {
    bad_input(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_status_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    bad_input(Backend::Postgres).await
}
