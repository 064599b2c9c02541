//! Input a careless or hostile client sends to matching and projects: `LIKE` wildcards in
//! filters match themselves, and strings and lists have length limits (INVALID_ARGUMENT naming
//! the field); on both backends.

use cwsm_platform::auth::Role;
use cwsm_proto::matching::v1 as m;
use cwsm_proto::projects::v1 as p;
use cwsm_proto::types;
use cwsm_tests::{Backend, TestApp, credit_code, postgres_and_redis_available};
use tonic::Code;

use crate::projects::{contracted, field};

fn rid(label: &str) -> String {
    format!("{label}-{}", cwsm_platform::new_id())
}

async fn project_titles(app: &TestApp, token: &str, query: &str) -> anyhow::Result<Vec<String>> {
    Ok(app
        .projects(token)
        .list_projects(p::ListProjectsRequest {
            query: query.to_string(),
            page_size: 500,
            ..Default::default()
        })
        .await?
        .into_inner()
        .projects
        .into_iter()
        .map(|p| p.title)
        .collect())
}

async fn filters_and_limits(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let parties = contracted(
        &app,
        types::ContractModel::SharedSavings,
        types::ContractTerms {
            share_ratio_bp: 7000,
            sharing_period_months: 60,
            ..Default::default()
        },
        &[],
    )
    .await?;
    let admin = &parties.admin;

    // The project is titled "Campus water network retrofit": `_` and `%` used to be wildcards.
    assert_eq!(project_titles(&app, admin, "campus water").await?.len(), 1);
    assert!(
        project_titles(&app, admin, "campus_water")
            .await?
            .is_empty()
    );
    assert!(project_titles(&app, admin, "%").await?.is_empty());

    // A town filter in matching is literal too (towns are free text).
    let code = credit_code("91320411MA1QX6E5C");
    let company = app.token(Role::Company, Some(&code));
    app.matching(&company)
        .create_company(m::CreateCompanyRequest {
            request_id: rid("company"),
            company: Some(m::Company {
                credit_code: code.clone(),
                name: "常州新桥节水服务有限公司".into(),
                towns: vec!["新桥街道".into()],
                ..Default::default()
            }),
        })
        .await?;
    let in_town = |town: &str| m::ListCompaniesRequest {
        town: town.to_string(),
        page_size: 500,
        ..Default::default()
    };
    let listed = |r: m::ListCompaniesResponse| {
        r.companies
            .into_iter()
            .filter(|c| c.credit_code == code)
            .count()
    };
    let exact = app
        .matching(admin)
        .list_companies(in_town("新桥街道"))
        .await?;
    assert_eq!(listed(exact.into_inner()), 1);
    let wild = app.matching(admin).list_companies(in_town("新桥%")).await?;
    assert_eq!(listed(wild.into_inner()), 0, "新桥% is not a pattern");

    // Strings and lists of projects have limits: a 3 MB title, 10,000 sites.
    let mut project = app
        .projects(admin)
        .get_project(p::GetProjectRequest {
            project_id: parties.project_id.clone(),
        })
        .await?
        .into_inner()
        .project
        .unwrap_or_default();
    project.stage_history.clear();
    let update = |project: p::Project| p::UpdateProjectRequest {
        request_id: rid("update"),
        project: Some(project),
        expected_version: 0,
    };
    let mut long_title = project.clone();
    long_title.title = "水".repeat(1_000_000);
    let err = app
        .projects(admin)
        .update_project(update(long_title))
        .await
        .expect_err("a 3 MB title");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(field(&err), "project.title");
    assert!(err.message().len() < 300, "the title is not echoed back");
    let mut many_sites = project.clone();
    many_sites.sites = (0..10_000).map(|i| format!("楼 {i}")).collect();
    let err = app
        .projects(admin)
        .update_project(update(many_sites))
        .await
        .expect_err("10,000 sites");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(field(&err), "project.sites");
    let err = app
        .projects(&parties.company)
        .transition_project(p::TransitionProjectRequest {
            request_id: rid("move"),
            project_id: parties.project_id.clone(),
            to_stage: p::ProjectStage::Implementing as i32,
            reason: "x".repeat(5_000),
            expected_version: 0,
            evidence: String::new(),
            effective_date: String::new(),
        })
        .await
        .expect_err("a 5,000-character reason");
    assert_eq!(field(&err), "reason");
    app.stop().await
}

/// A change to a valid proposal.
type Change<'a> = &'a dyn Fn(&mut m::Proposal);

/// Contract terms and amounts out of range are refused naming the field: an investment of
/// i64::MAX fen, a negative guaranteed volume, fee or sharing period (all once accepted), and a
/// non-routine adjustment of i64::MAX litres (with one of i64::MIN it once "summed to 4").
async fn amounts_and_terms(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let code = credit_code("91320411MA1QX5F6D");
    let company = app.token(Role::Company, Some(&code));
    let proposal = |f: Change| {
        let mut p = m::Proposal {
            project_request_id: "request-1".into(),
            company_id: "company-1".into(),
            measures: "leak repair".into(),
            investment_fen: 1_000_000,
            promised_savings_litres: 730_000,
            promised_savings_bp: 2000,
            contract_model: types::ContractModel::GuaranteedSavings as i32,
            terms: Some(types::ContractTerms {
                guaranteed_savings_litres: 500_000,
                sharing_period_months: 12,
                ..Default::default()
            }),
            contract_term_months: 60,
            mv_option: types::MvOption::C as i32,
            ..Default::default()
        };
        f(&mut p);
        m::CreateProposalRequest {
            request_id: rid("proposal"),
            proposal: Some(p),
        }
    };
    let cases: [(&str, Change); 5] = [
        ("proposal.investment_fen", &|p| p.investment_fen = i64::MAX),
        ("proposal.promised_savings_litres", &|p| {
            p.promised_savings_litres = i64::MAX
        }),
        ("proposal.terms.guaranteed_savings_litres", &|p| {
            if let Some(t) = p.terms.as_mut() {
                t.guaranteed_savings_litres = -500_000;
            }
        }),
        ("proposal.terms.hosting_fee_fen", &|p| {
            if let Some(t) = p.terms.as_mut() {
                t.hosting_fee_fen = -1;
            }
        }),
        ("proposal.terms.sharing_period_months", &|p| {
            if let Some(t) = p.terms.as_mut() {
                t.sharing_period_months = -12;
            }
        }),
    ];
    for (expected, change) in cases {
        let err = app
            .matching(&company)
            .create_proposal(proposal(change))
            .await
            .expect_err(expected);
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{expected}: {}",
            err.message()
        );
        assert_eq!(field(&err), expected);
    }

    let parties = contracted(
        &app,
        types::ContractModel::SharedSavings,
        types::ContractTerms {
            share_ratio_bp: 7000,
            sharing_period_months: 60,
            ..Default::default()
        },
        &[],
    )
    .await?;
    for litres in [i64::MAX, i64::MIN] {
        let err = app
            .projects(&parties.company)
            .create_non_routine_adjustment(p::CreateNonRoutineAdjustmentRequest {
                request_id: rid("adjustment"),
                adjustment: Some(p::NonRoutineAdjustment {
                    project_id: parties.project_id.clone(),
                    start_date: "2026-01-01".into(),
                    end_date: "2026-01-31".into(),
                    litres,
                    reason: "a new dormitory wing".into(),
                    evidence: "drawing 2026-017".into(),
                    ..Default::default()
                }),
            })
            .await
            .expect_err("beyond any volume");
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
        assert_eq!(field(&err), "adjustment.litres");
    }
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amounts_and_terms_out_of_range_are_refused_on_sqlite() -> anyhow::Result<()> {
    amounts_and_terms(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_are_literal_and_strings_bounded_on_sqlite() -> anyhow::Result<()> {
    filters_and_limits(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_are_literal_and_strings_bounded_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    filters_and_limits(Backend::Postgres).await
}

/// The measurement RPCs of issue 12 name the field a careless client got wrong, before
/// anything is looked up.
async fn measurement_requests_name_their_field(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let parties = crate::projects::shared_savings(&app, &[]).await?;
    let (company, verifier) = (parties.company.clone(), parties.verifier.clone());
    let invalid = |err: tonic::Status, expected: &str| {
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{expected}: {}",
            err.message()
        );
        assert_eq!(field(&err), expected);
    };
    let waive = |check: i32, reason: &str| p::WaivePeriodCheckRequest {
        request_id: rid("w"),
        project_id: parties.project_id.clone(),
        start_date: "2026-11-01".into(),
        check,
        reason: reason.into(),
    };
    invalid(
        app.projects(&verifier)
            .waive_period_check(waive(0, "checked on site"))
            .await
            .expect_err("no check"),
        "check",
    );
    invalid(
        app.projects(&verifier)
            .waive_period_check(waive(1, ""))
            .await
            .expect_err("no reason"),
        "reason",
    );
    let correction = |c: p::ReadingCorrection| p::ProposeReadingCorrectionRequest {
        request_id: rid("c"),
        correction: Some(c),
    };
    let good = p::ReadingCorrection {
        meter_id: cwsm_platform::new_id(),
        read_time: Some(cwsm_platform::grpc::timestamp(1_767_196_800_000)),
        action: p::CorrectionAction::Exclude as i32,
        reason: "a burst main".into(),
        evidence: "repair order 7".into(),
        ..Default::default()
    };
    for (broken, expected) in [
        (
            p::ReadingCorrection {
                read_time: None,
                ..good.clone()
            },
            "correction.read_time",
        ),
        (
            p::ReadingCorrection {
                action: 0,
                ..good.clone()
            },
            "correction.action",
        ),
        (
            p::ReadingCorrection {
                evidence: " ".into(),
                ..good.clone()
            },
            "correction.evidence",
        ),
        (
            p::ReadingCorrection {
                reason: "x".into(),
                ..good.clone()
            },
            "correction.reason",
        ),
        (
            p::ReadingCorrection {
                meter_id: String::new(),
                ..good.clone()
            },
            "correction.meter_id",
        ),
    ] {
        invalid(
            app.projects(&company)
                .propose_reading_correction(correction(broken))
                .await
                .expect_err(expected),
            expected,
        );
    }
    // A good request about a meter nobody has: NOT_FOUND, not INVALID_ARGUMENT.
    let err = app
        .projects(&company)
        .propose_reading_correction(correction(good))
        .await
        .expect_err("no such meter");
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());
    let err = app
        .projects(&company)
        .get_verification_report(p::GetVerificationReportRequest {
            period_id: cwsm_platform::new_id(),
            format: 99,
            ..Default::default()
        })
        .await
        .expect_err("format 99");
    invalid(err, "format");
    let err = app
        .projects(&company)
        .ingest_readings(tokio_stream::iter(vec![p::IngestReadingsRequest {
            meter_id: cwsm_platform::new_id(),
            value_kind: p::ReadingValueKind::IntervalUse as i32,
            readings: vec![],
            timestamps: 99,
        }]))
        .await
        .expect_err("timestamps 99");
    invalid(err, "messages[0].timestamps");
    let upload = |file_name: &str| p::UploadEvidenceRequest {
        project_id: parties.project_id.clone(),
        file_name: file_name.into(),
        chunk: b"%PDF-1.7".to_vec(),
    };
    let err = app
        .projects(&company)
        .upload_evidence(tokio_stream::iter(vec![upload(" ")]))
        .await
        .expect_err("no file name");
    invalid(err, "file_name");
    let err = app
        .projects(&company)
        .upload_evidence(tokio_stream::iter(Vec::<p::UploadEvidenceRequest>::new()))
        .await
        .expect_err("no message");
    invalid(err, "project_id");
    let err = app
        .projects(&company)
        .get_evidence(p::GetEvidenceRequest {
            project_id: parties.project_id.clone(),
            sha256: "not-a-hash".into(),
        })
        .await
        .expect_err("not a hash");
    invalid(err, "sha256");
    let decide = p::DecideReadingCorrectionRequest {
        request_id: rid("d"),
        correction_id: String::new(),
        ..Default::default()
    };
    invalid(
        app.projects(&verifier)
            .decide_reading_correction(decide)
            .await
            .expect_err("no id"),
        "correction_id",
    );
    let decide = p::DecideNonRoutineAdjustmentRequest {
        request_id: rid("d"),
        adjustment_id: cwsm_platform::new_id(),
        approve: false,
        ..Default::default()
    };
    invalid(
        app.projects(&verifier)
            .decide_non_routine_adjustment(decide)
            .await
            .expect_err("a rejection without a note"),
        "note",
    );
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measurement_requests_name_their_field_on_sqlite() -> anyhow::Result<()> {
    measurement_requests_name_their_field(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measurement_requests_name_their_field_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    measurement_requests_name_their_field(Backend::Postgres).await
}
