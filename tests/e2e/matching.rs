//! End-to-end tests of the matching service in depth (see its issue): the verified track record
//! kept from project events, who sees invited-only requests, the proposal deadline, pagination
//! under inserts, filters, and bad input. Each scenario runs on SQLite + the in-process bus and,
//! when they answer, on PostgreSQL + Redis Streams.

use std::time::Duration;

use cwsm_platform::auth::Role;
use cwsm_platform::bus::{Envelope, topics};
use cwsm_proto::events::v1::ProjectMilestone;
use cwsm_proto::matching::v1 as m;
use cwsm_proto::types;
use cwsm_tests::{Backend, TestApp, credit_code, eventually, postgres_and_redis_available};
use tonic::Code;
use tonic_types::StatusExt;

const WAIT: Duration = Duration::from_secs(20);

fn rid(label: &str) -> String {
    format!("{label}-{}", cwsm_platform::new_id())
}

/// Runs a scenario on SQLite, then on PostgreSQL + Redis when they answer.
macro_rules! on_both_backends {
    ($sqlite:ident, $postgres:ident, $scenario:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() -> anyhow::Result<()> {
            $scenario(Backend::Sqlite).await
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() -> anyhow::Result<()> {
            if !postgres_and_redis_available().await {
                return Ok(());
            }
            $scenario(Backend::Postgres).await
        }
    };
}

/// A marketplace under test: the app, an administrator, and helpers that register parties.
struct Market {
    app: TestApp,
    admin: String,
}

/// A registered company or water user with its token.
#[derive(Clone)]
struct Party {
    id: String,
    token: String,
}

impl Market {
    async fn start(backend: Backend) -> anyhow::Result<Market> {
        let app = TestApp::start(backend).await?;
        let admin = app.token(Role::Admin, None);
        Ok(Market { app, admin })
    }

    fn admin(
        &self,
    ) -> cwsm_proto::matching::v1::matching_service_client::MatchingServiceClient<
        tonic::service::interceptor::InterceptedService<
            tonic::transport::Channel,
            cwsm_tests::Bearer,
        >,
    > {
        self.app.matching(&self.admin)
    }

    /// A company (credit code from `body`, 17 characters), with a published offering, its
    /// claimed grade confirmed by an administrator as the district would.
    async fn company(
        &self,
        body: &str,
        name: &str,
        grade: types::CertificationGrade,
        sectors: Vec<types::Sector>,
    ) -> anyhow::Result<(Party, String)> {
        let (party, offering) = self.claiming_company(body, name, grade, sectors).await?;
        if grade != types::CertificationGrade::None {
            self.confirm(&party.id, grade).await?;
        }
        Ok((party, offering))
    }

    /// The administrator confirms `grade` for company `id`.
    async fn confirm(
        &self,
        id: &str,
        grade: types::CertificationGrade,
    ) -> anyhow::Result<m::Company> {
        self.admin()
            .confirm_certification(m::ConfirmCertificationRequest {
                company_id: id.into(),
                grade: grade as i32,
                note: "certificate checked".into(),
                request_id: rid("confirm"),
                expected_version: 0,
            })
            .await?
            .into_inner()
            .company
            .ok_or_else(|| anyhow::anyhow!("no company"))
    }

    /// A company that claims `grade` (nobody confirmed it), with a published offering.
    async fn claiming_company(
        &self,
        body: &str,
        name: &str,
        grade: types::CertificationGrade,
        sectors: Vec<types::Sector>,
    ) -> anyhow::Result<(Party, String)> {
        let code = credit_code(body);
        let token = self.app.token(Role::Company, Some(&code));
        let company = self
            .app
            .matching(&token)
            .create_company(m::CreateCompanyRequest {
                request_id: rid("company"),
                company: Some(m::Company {
                    credit_code: code,
                    name: name.into(),
                    towns: vec!["新桥街道".into()],
                    sectors: sectors.iter().map(|s| *s as i32).collect(),
                    certification_grade: grade as i32,
                    financing_capacity_fen: 500_000_000,
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .company
            .ok_or_else(|| anyhow::anyhow!("no company"))?;
        let party = Party {
            id: company.id,
            token,
        };
        let offering = self
            .offering(
                &party,
                &format!("{name} leak detection"),
                "DMA and leak repair",
            )
            .await?;
        Ok((party, offering))
    }

    async fn offering(&self, c: &Party, title: &str, description: &str) -> anyhow::Result<String> {
        let offering = self
            .app
            .matching(&c.token)
            .create_offering(m::CreateOfferingRequest {
                request_id: rid("offering"),
                offering: Some(m::Offering {
                    company_id: c.id.clone(),
                    title: title.into(),
                    description: description.into(),
                    technologies: vec![types::Technology::LeakDetection as i32],
                    contract_models: vec![types::ContractModel::SharedSavings as i32],
                    typical_savings_bp: 2000,
                    typical_term_months: 96,
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .offering
            .ok_or_else(|| anyhow::anyhow!("no offering"))?;
        self.app
            .matching(&c.token)
            .publish_offering(m::PublishOfferingRequest {
                request_id: rid("publish"),
                offering_id: offering.id.clone(),
                expected_version: 0,
            })
            .await?;
        Ok(offering.id)
    }

    async fn water_user(&self, body: &str, name: &str) -> anyhow::Result<Party> {
        let code = credit_code(body);
        let token = self.app.token(Role::WaterUser, Some(&code));
        let user = self
            .app
            .matching(&token)
            .create_water_user(m::CreateWaterUserRequest {
                request_id: rid("user"),
                water_user: Some(m::WaterUser {
                    credit_code: code,
                    name: name.into(),
                    sector: types::Sector::School as i32,
                    unit_type: "university".into(),
                    town: "新桥街道".into(),
                    annual_use_litres: 2_000_000_000,
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .water_user
            .ok_or_else(|| anyhow::anyhow!("no water user"))?;
        Ok(Party { id: user.id, token })
    }

    /// A request of `user`, opened unless `draft`.
    async fn request(
        &self,
        user: &Party,
        title: &str,
        invited: &[&str],
        draft: bool,
    ) -> anyhow::Result<String> {
        let request = self
            .app
            .matching(&user.token)
            .create_project_request(m::CreateProjectRequestRequest {
                request_id: rid("request"),
                project_request: Some(m::ProjectRequest {
                    water_user_id: user.id.clone(),
                    title: title.into(),
                    problem: "night flow 40 m³/h".into(),
                    baseline_use_litres: 1_000_000_000,
                    expected_savings_bp: 2000,
                    price_fen_per_m3: 410,
                    preferred_contract_models: vec![types::ContractModel::SharedSavings as i32],
                    wanted_technologies: vec![types::Technology::LeakDetection as i32],
                    investment_wanted_fen: 100_000_000,
                    visibility: if invited.is_empty() {
                        m::RequestVisibility::Public as i32
                    } else {
                        m::RequestVisibility::Invited as i32
                    },
                    invited_company_ids: invited.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .project_request
            .ok_or_else(|| anyhow::anyhow!("no request"))?;
        if !draft {
            self.app
                .matching(&user.token)
                .open_project_request(m::OpenProjectRequestRequest {
                    request_id: rid("open"),
                    project_request_id: request.id.clone(),
                    expected_version: 0,
                })
                .await?;
        }
        Ok(request.id)
    }

    async fn propose(&self, c: &Party, request_id: &str) -> Result<m::Proposal, tonic::Status> {
        self.app
            .matching(&c.token)
            .create_proposal(m::CreateProposalRequest {
                request_id: rid("proposal"),
                proposal: Some(proposal(&c.id, request_id)),
            })
            .await
            .map(|r| r.into_inner().proposal.unwrap_or_default())
    }

    async fn company_record(&self, id: &str) -> anyhow::Result<m::Company> {
        self.admin()
            .get_company(m::GetCompanyRequest {
                company_id: id.into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .company
            .ok_or_else(|| anyhow::anyhow!("no company"))
    }

    /// Runs SQL on matching's own database (to put a request past its deadline).
    async fn matching_sql(&self, sql: &str) -> anyhow::Result<()> {
        let running = self
            .app
            .running
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("stopped"))?;
        let db = running
            .databases
            .iter()
            .find(|(name, _)| *name == "matching")
            .map(|(_, db)| db.clone())
            .ok_or_else(|| anyhow::anyhow!("no matching database"))?;
        cwsm_platform::with_db!(&db, pool => {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(pool).await?;
        });
        Ok(())
    }
}

fn proposal(company_id: &str, request_id: &str) -> m::Proposal {
    m::Proposal {
        project_request_id: request_id.into(),
        company_id: company_id.into(),
        measures: "DMA zoning and leak repair".into(),
        investment_fen: 100_000_000,
        promised_savings_litres: 200_000_000,
        promised_savings_bp: 2000,
        contract_model: types::ContractModel::SharedSavings as i32,
        terms: Some(types::ContractTerms {
            share_ratio_bp: 7000,
            sharing_period_months: 96,
            ..Default::default()
        }),
        contract_term_months: 96,
        mv_option: types::MvOption::C as i32,
        ..Default::default()
    }
}

fn milestone_envelope(event: &ProjectMilestone) -> Envelope {
    Envelope {
        event_id: event.event_id.clone(),
        topic: topics::PROJECT_MILESTONES.into(),
        kind: topics::PROJECT_MILESTONE_KIND.into(),
        payload: prost::Message::encode_to_vec(event),
        occurred_at_ms: 0,
        trace_parent: String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// The verified track record

async fn track_record_from_project_events(backend: Backend) -> anyhow::Result<()> {
    let market = Market::start(backend).await?;
    let (company, _) = market
        .company(
            "91320411MA1TR0010",
            "常州践诺节水",
            types::CertificationGrade::Aa,
            vec![],
        )
        .await?;
    let user = market
        .water_user("12320411466TR0011", "新北实验学校")
        .await?;
    let request = market.request(&user, "校园管网改造", &[], false).await?;
    let bus = &market.app.bus;
    let base = ProjectMilestone {
        project_id: "project-1".into(),
        company_id: company.id.clone(),
        company_credit_code: credit_code("91320411MA1TR0010"),
        ..Default::default()
    };

    // A verified period (running totals at sequence 3), the hand-over delivered twice and
    // re-emitted under another event id, then an older period arriving late.
    let period = ProjectMilestone {
        event_id: rid("period"),
        sequence: 3,
        milestone: types::Milestone::PeriodVerified as i32,
        verified_savings_litres: 90_000_000,
        promised_savings_litres: 100_000_000,
        period_id: "2026-Q1".into(),
        period_savings_litres: 90_000_000,
        ..base.clone()
    };
    let handed_over = ProjectMilestone {
        event_id: rid("handed-over"),
        sequence: 5,
        milestone: types::Milestone::HandedOver as i32,
        ..base.clone()
    };
    let late = ProjectMilestone {
        event_id: rid("late"),
        sequence: 2,
        milestone: types::Milestone::PeriodVerified as i32,
        verified_savings_litres: 40_000_000,
        promised_savings_litres: 50_000_000,
        ..base.clone()
    };
    bus.publish(&milestone_envelope(&period)).await?;
    bus.publish(&milestone_envelope(&period)).await?;
    bus.publish(&milestone_envelope(&handed_over)).await?;
    bus.publish(&milestone_envelope(&handed_over)).await?;
    bus.publish(&milestone_envelope(&ProjectMilestone {
        event_id: rid("re-emitted"),
        ..handed_over.clone()
    }))
    .await?;
    bus.publish(&milestone_envelope(&late)).await?;
    // Another project's hand-over, found by credit code only, published last: once it counts,
    // the consumer has been through everything before it.
    bus.publish(&milestone_envelope(&ProjectMilestone {
        event_id: rid("other"),
        project_id: "project-2".into(),
        company_id: String::new(),
        sequence: 9,
        milestone: types::Milestone::HandedOver as i32,
        ..base.clone()
    }))
    .await?;
    let record = eventually(WAIT, || async {
        market
            .company_record(&company.id)
            .await
            .ok()
            .and_then(|c| c.track_record)
            .filter(|t| t.projects_completed >= 2)
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("the hand-overs were not counted"))?;
    assert_eq!(
        record,
        m::TrackRecord {
            projects_completed: 2,
            verified_savings_litres: 90_000_000,
            promised_savings_litres: 100_000_000,
        },
        "each project counts once; the latest totals win over a late older period"
    );

    // The ranking explains it.
    let ranking = market
        .app
        .matching(&user.token)
        .rank_offerings(m::RankOfferingsRequest {
            project_request_id: request.clone(),
            page_size: 5,
        })
        .await?
        .into_inner();
    let track = ranking.ranked_offerings[0]
        .parts
        .iter()
        .find(|p| p.name == "track_record")
        .ok_or_else(|| anyhow::anyhow!("no track part"))?
        .clone();
    assert!(
        track.explanation.contains("2 projects completed"),
        "{track:?}"
    );
    assert!(
        (track.value - (0.5 + 0.4 * 2.0 / 3.0)).abs() < 1e-9,
        "{track:?}"
    );

    market.app.stop().await
}

on_both_backends!(
    track_record_counts_each_project_once_on_sqlite,
    track_record_counts_each_project_once_on_postgres,
    track_record_from_project_events
);

// ---------------------------------------------------------------------------------------------
// Visibility and the deadline

async fn invited_only_requests(backend: Backend) -> anyhow::Result<()> {
    let market = Market::start(backend).await?;
    let grade = types::CertificationGrade::Aaa;
    let (invited, _) = market
        .company("91320411MA1YQ0010", "受邀节水公司", grade, vec![])
        .await?;
    let (outsider, _) = market
        .company("91320411MA1QU0010", "未受邀节水公司", grade, vec![])
        .await?;
    let user = market.water_user("12320411466YQ0011", "邀请制学校").await?;
    let hidden = market
        .request(&user, "仅邀请的改造项目", &[&invited.id], false)
        .await?;
    let draft = market.request(&user, "草稿项目", &[], true).await?;

    // The outsider sees neither the invited-only request nor the draft: NOT_FOUND everywhere.
    let out = market.app.matching(&outsider.token);
    for id in [&hidden, &draft] {
        let err = out
            .clone()
            .get_project_request(m::GetProjectRequestRequest {
                project_request_id: id.clone(),
            })
            .await
            .expect_err("hidden");
        assert_eq!(err.code(), Code::NotFound, "{}", err.message());
        let err = out
            .clone()
            .rank_offerings(m::RankOfferingsRequest {
                project_request_id: id.clone(),
                page_size: 5,
            })
            .await
            .expect_err("hidden");
        assert_eq!(err.code(), Code::NotFound);
    }
    let err = market
        .propose(&outsider, &hidden)
        .await
        .expect_err("not invited");
    assert_eq!(err.code(), Code::NotFound);
    let listed = out
        .clone()
        .list_project_requests(m::ListProjectRequestsRequest::default())
        .await?
        .into_inner()
        .project_requests;
    assert!(listed.is_empty(), "{listed:?}");
    let fitting = out
        .clone()
        .list_fitting_requests(m::ListFittingRequestsRequest {
            company_id: outsider.id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .fitting_requests;
    assert!(fitting.is_empty());

    // The invited company sees it, finds it fitting and proposes; the owner and an
    // administrator see both requests.
    let inv = market.app.matching(&invited.token);
    inv.clone()
        .get_project_request(m::GetProjectRequestRequest {
            project_request_id: hidden.clone(),
        })
        .await?;
    let fitting = inv
        .clone()
        .list_fitting_requests(m::ListFittingRequestsRequest {
            company_id: invited.id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .fitting_requests;
    assert_eq!(fitting.len(), 1);
    let proposed = market.propose(&invited, &hidden).await?;
    for token in [&user.token, &market.admin] {
        let all = market
            .app
            .matching(token)
            .list_project_requests(m::ListProjectRequestsRequest::default())
            .await?
            .into_inner()
            .project_requests;
        assert_eq!(all.len(), 2);
    }

    // An administrator sees the request, but the outsider still may not propose to it, and
    // its offering is excluded from the ranking as not invited.
    let err = market
        .admin()
        .create_proposal(m::CreateProposalRequest {
            request_id: rid("admin-proposal"),
            proposal: Some(proposal(&outsider.id, &hidden)),
        })
        .await
        .expect_err("not invited");
    assert_eq!(err.code(), Code::PermissionDenied);
    let ranking = market
        .app
        .matching(&user.token)
        .rank_offerings(m::RankOfferingsRequest {
            project_request_id: hidden.clone(),
            page_size: 5,
        })
        .await?
        .into_inner();
    assert_eq!(ranking.ranked_total, 1);
    assert_eq!(ranking.excluded_total, 1);
    assert_eq!(ranking.excluded_offerings[0].filter, "not_invited");
    assert_eq!(ranking.excluded_offerings[0].company_id, outsider.id);

    // Proposals are seen by their company and the request's water user only.
    let err = out
        .clone()
        .get_proposal(m::GetProposalRequest {
            proposal_id: proposed.id.clone(),
        })
        .await
        .expect_err("another company's proposal");
    assert_eq!(err.code(), Code::NotFound);
    let theirs = out
        .clone()
        .list_proposals(m::ListProposalsRequest::default())
        .await?
        .into_inner()
        .proposals;
    assert!(theirs.is_empty());
    let mine = market
        .app
        .matching(&user.token)
        .list_proposals(m::ListProposalsRequest {
            project_request_id: hidden.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .proposals;
    assert_eq!(mine.len(), 1);

    market.app.stop().await
}

on_both_backends!(
    invited_only_request_is_hidden_from_others_on_sqlite,
    invited_only_request_is_hidden_from_others_on_postgres,
    invited_only_requests
);

async fn proposal_deadline(backend: Backend) -> anyhow::Result<()> {
    let market = Market::start(backend).await?;
    let (company, _) = market
        .company(
            "91320411MA1DL0010",
            "截止日节水",
            types::CertificationGrade::A,
            vec![],
        )
        .await?;
    let user = market.water_user("12320411466DL0011", "截止日医院").await?;

    // A deadline in the past is refused at creation.
    let err = market
        .app
        .matching(&user.token)
        .create_project_request(m::CreateProjectRequestRequest {
            request_id: rid("past"),
            project_request: Some(m::ProjectRequest {
                water_user_id: user.id.clone(),
                title: "过期".into(),
                proposal_deadline: "2020-12-31".into(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("past deadline");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.get_error_details()
            .bad_request()
            .map(|b| b.field_violations[0].field.clone()),
        Some("project_request.proposal_deadline".to_string())
    );

    // A request whose deadline passed while it was open takes no more proposals.
    let request = market.request(&user, "到期的项目", &[], false).await?;
    market
        .matching_sql(&format!(
            "UPDATE project_requests SET proposal_deadline = '2021-01-31' WHERE id = '{request}'"
        ))
        .await?;
    let err = market
        .propose(&company, &request)
        .await
        .expect_err("after the deadline");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("deadline"), "{}", err.message());

    market.app.stop().await
}

on_both_backends!(
    proposal_after_the_deadline_is_refused_on_sqlite,
    proposal_after_the_deadline_is_refused_on_postgres,
    proposal_deadline
);

// ---------------------------------------------------------------------------------------------
// Pagination and filters

/// All pages of ListCompanies with `page_size`, inserting `insert` companies after page one.
async fn companies_paged(
    market: &Market,
    request: m::ListCompaniesRequest,
    mut between_pages: impl AsyncFnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<m::Company>> {
    let mut all = Vec::new();
    let mut token = String::new();
    for page_number in 0.. {
        let page = market
            .admin()
            .list_companies(m::ListCompaniesRequest {
                page_token: token.clone(),
                ..request.clone()
            })
            .await?
            .into_inner();
        assert!(
            page.companies.len() <= usize::try_from(request.page_size).unwrap_or(0),
            "a page holds at most page_size"
        );
        if !page.next_page_token.is_empty() {
            assert_eq!(
                page.companies.len(),
                usize::try_from(request.page_size).unwrap_or(0),
                "every page but the last is full"
            );
        }
        all.extend(page.companies);
        between_pages(page_number).await?;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    Ok(all)
}

async fn pagination_and_filters(backend: Backend) -> anyhow::Result<()> {
    let market = Market::start(backend).await?;
    let grades = [
        types::CertificationGrade::None,
        types::CertificationGrade::Aaaa,
        types::CertificationGrade::A,
        types::CertificationGrade::Aaaaa,
        types::CertificationGrade::Aa,
        types::CertificationGrade::Aaa,
        types::CertificationGrade::Aaaa,
    ];
    let mut companies = Vec::new();
    for (i, grade) in grades.iter().enumerate() {
        let sectors = if i % 2 == 0 {
            vec![]
        } else {
            vec![types::Sector::Hospital]
        };
        let (c, _) = market
            .company(
                &format!("91320411MA1PG00{i}0"),
                &format!("分页节水{i}"),
                *grade,
                sectors,
            )
            .await?;
        companies.push(c);
    }

    // Page one, then new companies arrive: nothing skipped, nothing repeated.
    let mut inserted = Vec::new();
    let seen = companies_paged(
        &market,
        m::ListCompaniesRequest {
            page_size: 3,
            ..Default::default()
        },
        async |page| {
            if page == 0 {
                for j in 0..2 {
                    let (c, _) = market
                        .company(
                            &format!("91320411MA1PN00{j}0"),
                            &format!("新来节水{j}"),
                            types::CertificationGrade::None,
                            vec![],
                        )
                        .await?;
                    inserted.push(c.id);
                }
            }
            Ok(())
        },
    )
    .await?;
    let ids: Vec<&str> = seen.iter().map(|c| c.id.as_str()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no company twice");
    for c in &companies {
        assert!(ids.contains(&c.id.as_str()), "no company skipped");
    }

    // The certification filter is applied before paging: pages stay full, tokens right.
    let certified = companies_paged(
        &market,
        m::ListCompaniesRequest {
            page_size: 1,
            min_certification_grade: types::CertificationGrade::Aaaa as i32,
            ..Default::default()
        },
        async |_| Ok(()),
    )
    .await?;
    assert_eq!(certified.len(), 3, "AAAA, AAAAA, AAAA");
    assert!(
        certified
            .iter()
            .all(|c| c.certification_grade >= types::CertificationGrade::Aaaa as i32)
    );

    // Sector: companies naming no sector serve all.
    let hospital = companies_paged(
        &market,
        m::ListCompaniesRequest {
            page_size: 50,
            sector: types::Sector::Hospital as i32,
            ..Default::default()
        },
        async |_| Ok(()),
    )
    .await?;
    assert_eq!(hospital.len(), 9, "all of them serve hospitals");
    let schools = companies_paged(
        &market,
        m::ListCompaniesRequest {
            page_size: 50,
            sector: types::Sector::School as i32,
            ..Default::default()
        },
        async |_| Ok(()),
    )
    .await?;
    assert_eq!(schools.len(), 6, "4 of the first 7 and the 2 new ones");

    // Text search on names and (case-insensitive) credit codes; LIKE's wildcards are literal.
    let by_name = companies_paged(
        &market,
        m::ListCompaniesRequest {
            page_size: 50,
            query: "新来".into(),
            ..Default::default()
        },
        async |_| Ok(()),
    )
    .await?;
    assert_eq!(by_name.len(), 2);
    let by_code = companies_paged(
        &market,
        m::ListCompaniesRequest {
            page_size: 50,
            query: "ma1pg003".into(),
            ..Default::default()
        },
        async |_| Ok(()),
    )
    .await?;
    assert_eq!(by_code.len(), 1);
    let wildcard = companies_paged(
        &market,
        m::ListCompaniesRequest {
            page_size: 50,
            query: "%".into(),
            ..Default::default()
        },
        async |_| Ok(()),
    )
    .await?;
    assert!(wildcard.is_empty());

    // Offerings: search in descriptions; technology and model filters.
    let c0 = &companies[0];
    market
        .offering(c0, "Cooling loop", "cooling tower blow-down reuse")
        .await?;
    let found = market
        .admin()
        .list_offerings(m::ListOfferingsRequest {
            query: "BLOW-DOWN".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .offerings;
    assert_eq!(found.len(), 1);
    let cooling = market
        .admin()
        .list_offerings(m::ListOfferingsRequest {
            technology: types::Technology::CoolingWaterReuse as i32,
            ..Default::default()
        })
        .await?
        .into_inner()
        .offerings;
    assert!(cooling.is_empty(), "the offering names leak detection only");

    // Companies with an offering of a technology.
    let leak = market
        .admin()
        .list_companies(m::ListCompaniesRequest {
            technology: types::Technology::LeakDetection as i32,
            page_size: 100,
            ..Default::default()
        })
        .await?
        .into_inner()
        .companies;
    assert_eq!(leak.len(), 9);

    // Requests: filters by status and text (title, problem, the water user's name), and the
    // reverse ranking pages without skipping or repeating under inserts.
    let user = market
        .water_user("12320411466PG0011", "分页用水单位")
        .await?;
    let mut requests = Vec::new();
    for i in 0..5 {
        requests.push(
            market
                .request(&user, &format!("分页请求{i}"), &[], false)
                .await?,
        );
    }
    let draft = market.request(&user, "草稿请求", &[], true).await?;
    let open = market
        .admin()
        .list_project_requests(m::ListProjectRequestsRequest {
            status: m::ProjectRequestStatus::Open as i32,
            query: "分页".into(),
            page_size: 100,
            ..Default::default()
        })
        .await?
        .into_inner()
        .project_requests;
    assert_eq!(open.len(), 5);
    assert!(open.iter().all(|r| r.id != draft));
    let by_problem = market
        .admin()
        .list_project_requests(m::ListProjectRequestsRequest {
            query: "NIGHT FLOW".into(),
            page_size: 100,
            ..Default::default()
        })
        .await?
        .into_inner()
        .project_requests;
    assert_eq!(by_problem.len(), 6);

    let fitting = |token: String| {
        let client = market.app.matching(&market.admin);
        let company_id = c0.id.clone();
        async move {
            client
                .clone()
                .list_fitting_requests(m::ListFittingRequestsRequest {
                    company_id,
                    page_size: 2,
                    page_token: token,
                })
                .await
                .map(|r| r.into_inner())
        }
    };
    let first = fitting(String::new()).await?;
    assert_eq!(first.fitting_requests.len(), 2);
    market.request(&user, "分页请求-后来", &[], false).await?;
    let mut seen: Vec<String> = first
        .fitting_requests
        .iter()
        .filter_map(|f| f.project_request.as_ref().map(|r| r.id.clone()))
        .collect();
    let mut token = first.next_page_token;
    while !token.is_empty() {
        let page = fitting(token).await?;
        seen.extend(
            page.fitting_requests
                .iter()
                .filter_map(|f| f.project_request.as_ref().map(|r| r.id.clone())),
        );
        token = page.next_page_token;
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no request twice");
    for r in &requests {
        assert!(seen.contains(r), "no request skipped");
    }

    // Water users: by sector and (case-insensitive) credit code.
    let schools = market
        .admin()
        .list_water_users(m::ListWaterUsersRequest {
            sector: types::Sector::School as i32,
            query: "466pg".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .water_users;
    assert_eq!(schools.len(), 1);
    let none = market
        .admin()
        .list_water_users(m::ListWaterUsersRequest {
            sector: types::Sector::Hospital as i32,
            ..Default::default()
        })
        .await?
        .into_inner()
        .water_users;
    assert!(none.is_empty());

    // A draft offering is its company's: others neither list nor get it.
    let draft_offering = market
        .app
        .matching(&c0.token)
        .create_offering(m::CreateOfferingRequest {
            request_id: rid("draft-offering"),
            offering: Some(m::Offering {
                company_id: c0.id.clone(),
                title: "Draft rainwater".into(),
                technologies: vec![types::Technology::RainwaterHarvesting as i32],
                contract_models: vec![types::ContractModel::GuaranteedSavings as i32],
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .offering
        .ok_or_else(|| anyhow::anyhow!("no offering"))?;
    let rain = m::ListOfferingsRequest {
        technology: types::Technology::RainwaterHarvesting as i32,
        ..Default::default()
    };
    let other = &companies[1];
    let seen_by_other = market
        .app
        .matching(&other.token)
        .list_offerings(rain.clone())
        .await?
        .into_inner()
        .offerings;
    assert!(seen_by_other.is_empty());
    let err = market
        .app
        .matching(&other.token)
        .get_offering(m::GetOfferingRequest {
            offering_id: draft_offering.id.clone(),
        })
        .await
        .expect_err("another company's draft");
    assert_eq!(err.code(), Code::NotFound);
    let seen_by_owner = market
        .app
        .matching(&c0.token)
        .list_offerings(rain)
        .await?
        .into_inner()
        .offerings;
    assert_eq!(seen_by_owner.len(), 1);

    // Proposals: search on the company's name.
    for c in &companies[..3] {
        market.propose(c, &requests[0]).await?;
    }
    let named = market
        .admin()
        .list_proposals(m::ListProposalsRequest {
            project_request_id: requests[0].clone(),
            query: "分页节水1".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .proposals;
    assert_eq!(named.len(), 1);
    assert_eq!(named[0].company_id, companies[1].id);

    market.app.stop().await
}

on_both_backends!(
    pagination_is_stable_and_filters_apply_before_paging_on_sqlite,
    pagination_is_stable_and_filters_apply_before_paging_on_postgres,
    pagination_and_filters
);

// ---------------------------------------------------------------------------------------------
// Bad input

fn violation(err: &tonic::Status) -> String {
    err.get_error_details()
        .bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
        .unwrap_or_default()
}

async fn bad_input(backend: Backend) -> anyhow::Result<()> {
    let market = Market::start(backend).await?;

    // Credit codes: wrong length, a forbidden letter, a wrong check character.
    let good = credit_code("91320411MA1BD0010");
    let mut wrong_check = good.clone();
    wrong_check.replace_range(17.., if good.ends_with('0') { "1" } else { "0" });
    for (code, says) in [
        (good[..17].to_string(), "18 characters"),
        (format!("{}I{}", &good[..8], &good[9..]), "not allowed"),
        (wrong_check, "check character"),
    ] {
        let err = market
            .admin()
            .create_company(m::CreateCompanyRequest {
                request_id: rid("bad-code"),
                company: Some(m::Company {
                    credit_code: code.clone(),
                    name: "坏代码".into(),
                    ..Default::default()
                }),
            })
            .await
            .expect_err("bad credit code");
        assert_eq!(err.code(), Code::InvalidArgument, "{code}");
        assert_eq!(violation(&err), "company.credit_code");
        assert!(err.message().contains(says), "{}", err.message());
    }
    let err = market
        .admin()
        .create_water_user(m::CreateWaterUserRequest {
            request_id: rid("bad-code"),
            water_user: Some(m::WaterUser {
                credit_code: "12320411466BD001".into(),
                name: "坏代码".into(),
                sector: types::Sector::School as i32,
                town: "新桥街道".into(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("bad credit code");
    assert_eq!(violation(&err), "water_user.credit_code");

    let (company, offering) = market
        .company(
            "91320411MA1BD0010",
            "坏输入节水",
            types::CertificationGrade::A,
            vec![],
        )
        .await?;
    let user = market.water_user("12320411466BD0011", "坏输入学校").await?;
    let other_user = market.water_user("12320411466BD0021", "另一所学校").await?;
    let request = market.request(&user, "坏输入项目", &[], false).await?;

    // A negative investment, a share ratio above 100%, an unknown technology.
    let mut negative = proposal(&company.id, &request);
    negative.investment_fen = -1;
    let mut share = proposal(&company.id, &request);
    share.terms = Some(types::ContractTerms {
        share_ratio_bp: 12_000,
        ..Default::default()
    });
    for (p, field) in [
        (negative, "proposal.investment_fen"),
        (share, "proposal.terms.share_ratio_bp"),
    ] {
        let err = market
            .app
            .matching(&company.token)
            .create_proposal(m::CreateProposalRequest {
                request_id: rid("bad"),
                proposal: Some(p),
            })
            .await
            .expect_err("bad proposal");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(violation(&err), field);
    }
    let err = market
        .app
        .matching(&company.token)
        .update_offering(m::UpdateOfferingRequest {
            request_id: rid("bad"),
            offering: Some(m::Offering {
                id: offering.clone(),
                title: "x".into(),
                technologies: vec![99],
                contract_models: vec![types::ContractModel::SharedSavings as i32],
                ..Default::default()
            }),
            expected_version: 0,
        })
        .await
        .expect_err("unknown technology");
    assert_eq!(violation(&err), "offering.technologies");

    // An invited-only request inviting a company that does not exist.
    let err = market
        .app
        .matching(&user.token)
        .create_project_request(m::CreateProjectRequestRequest {
            request_id: rid("bad-invite"),
            project_request: Some(m::ProjectRequest {
                water_user_id: user.id.clone(),
                title: "邀请不存在的公司".into(),
                visibility: m::RequestVisibility::Invited as i32,
                invited_company_ids: vec!["no-such-company".into()],
                ..Default::default()
            }),
        })
        .await
        .expect_err("unknown invited company");
    assert_eq!(violation(&err), "project_request.invited_company_ids");

    // A company proposing twice.
    let first = market.propose(&company, &request).await?;
    let err = market.propose(&company, &request).await.expect_err("twice");
    assert_eq!(err.code(), Code::AlreadyExists);

    // A user accepting on a request that is not theirs.
    let err = market
        .app
        .matching(&other_user.token)
        .accept_proposal(m::AcceptProposalRequest {
            request_id: rid("accept"),
            proposal_id: first.id.clone(),
            expected_version: 0,
        })
        .await
        .expect_err("not theirs");
    assert_eq!(err.code(), Code::PermissionDenied);

    // A proposal on a closed request.
    market
        .app
        .matching(&user.token)
        .close_project_request(m::CloseProjectRequestRequest {
            request_id: rid("close"),
            project_request_id: request.clone(),
            expected_version: 0,
            reason: "enough".into(),
        })
        .await?;
    let (late, _) = market
        .company(
            "91320411MA1BD0030",
            "迟到节水",
            types::CertificationGrade::A,
            vec![],
        )
        .await?;
    let err = market.propose(&late, &request).await.expect_err("closed");
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Accepting declines the others, with the reason recorded for their companies.
    let accepted = market
        .app
        .matching(&user.token)
        .accept_proposal(m::AcceptProposalRequest {
            request_id: rid("accept"),
            proposal_id: first.id.clone(),
            expected_version: 0,
        })
        .await?
        .into_inner();
    assert!(!accepted.project_id.is_empty());

    market.app.stop().await
}

on_both_backends!(
    bad_input_is_refused_with_its_reason_on_sqlite,
    bad_input_is_refused_with_its_reason_on_postgres,
    bad_input
);

// ---------------------------------------------------------------------------------------------
// Certification: a claim until the district confirms it

async fn certification_is_confirmed_by_the_district(backend: Backend) -> anyhow::Result<()> {
    use types::CertificationGrade as G;
    let market = Market::start(backend).await?;
    // Equal in everything but the grade: one claims AAA, unconfirmed; one has a confirmed A.
    let (claimant, claimant_offering) = market
        .claiming_company("91320411MA1GR0110", "自称节水", G::Aaa, vec![])
        .await?;
    let (_, confirmed_offering) = market
        .company("91320411MA1GR0220", "认证节水", G::A, vec![])
        .await?;
    let user = market.water_user("12320411466GR0011", "评级学校").await?;
    let request = market.request(&user, "Leaks", &[], false).await?;
    let rank = async || -> anyhow::Result<Vec<m::RankedOffering>> {
        Ok(market
            .app
            .matching(&user.token)
            .rank_offerings(m::RankOfferingsRequest {
                project_request_id: request.clone(),
                page_size: 5,
            })
            .await?
            .into_inner()
            .ranked_offerings)
    };
    let offering_id = |r: &m::RankedOffering| {
        r.offering
            .as_ref()
            .map(|o| o.id.clone())
            .unwrap_or_default()
    };
    let certification = |r: &m::RankedOffering| {
        r.parts
            .iter()
            .find(|p| p.name == "certification")
            .cloned()
            .unwrap_or_default()
    };

    // The unconfirmed claim scores as no certification, and says so.
    let ranked = rank().await?;
    assert_eq!(
        offering_id(&ranked[0]),
        confirmed_offering,
        "the confirmed A first"
    );
    assert_eq!(offering_id(&ranked[1]), claimant_offering);
    assert_eq!(certification(&ranked[1]).value, 0.0);
    assert_eq!(
        certification(&ranked[1]).explanation,
        "claimed AAA, not yet confirmed by the district"
    );
    // The certification filter counts confirmed grades only.
    let listed = market
        .admin()
        .list_companies(m::ListCompaniesRequest {
            min_certification_grade: G::A as i32,
            ..Default::default()
        })
        .await?
        .into_inner()
        .companies;
    assert_eq!(listed.len(), 1, "only the confirmed A: {listed:?}");
    assert_ne!(listed[0].id, claimant.id);

    // A company cannot confirm its own grade.
    let own = market
        .app
        .matching(&claimant.token)
        .confirm_certification(m::ConfirmCertificationRequest {
            company_id: claimant.id.clone(),
            grade: G::Aaa as i32,
            note: String::new(),
            request_id: rid("self"),
            expected_version: 0,
        })
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("a company confirmed its own grade"))?;
    assert_eq!(own.code(), Code::PermissionDenied, "{own:?}");
    assert!(own.message().contains("only an administrator"), "{own:?}");
    assert_eq!(
        market
            .company_record(&claimant.id)
            .await?
            .confirmed_certification_grade,
        0
    );

    // Not above the claim.
    let above = market
        .confirm(&claimant.id, G::Aaaa)
        .await
        .err()
        .and_then(|e| e.downcast::<tonic::Status>().ok())
        .ok_or_else(|| anyhow::anyhow!("confirmed above the claim"))?;
    assert_eq!(above.code(), Code::InvalidArgument, "{above:?}");
    assert_eq!(violation(&above), "grade");

    // The administrator confirms: once per request id, guarded by the version.
    let before = market.company_record(&claimant.id).await?;
    let confirm = m::ConfirmCertificationRequest {
        company_id: claimant.id.clone(),
        grade: G::Aaa as i32,
        note: "certificate CWS-2024-0117 checked".into(),
        request_id: rid("confirm"),
        expected_version: before.version,
    };
    let first = market
        .admin()
        .confirm_certification(confirm.clone())
        .await?
        .into_inner()
        .company
        .unwrap_or_default();
    let again = market
        .admin()
        .confirm_certification(confirm.clone())
        .await?
        .into_inner()
        .company
        .unwrap_or_default();
    assert_eq!(first.confirmed_certification_grade, G::Aaa as i32);
    assert_eq!(
        first.certification_note,
        "certificate CWS-2024-0117 checked"
    );
    assert!(!first.certification_confirmed_by.is_empty());
    assert!(first.certification_confirm_time.is_some());
    assert_eq!(first.version, before.version + 1);
    assert_eq!(again.version, first.version, "a retry changes nothing");
    let stale = market
        .admin()
        .confirm_certification(m::ConfirmCertificationRequest {
            request_id: rid("stale"),
            ..confirm
        })
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("a stale version was accepted"))?;
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");

    // Confirmed, the AAA outranks the A.
    let ranked = rank().await?;
    assert_eq!(
        offering_id(&ranked[0]),
        claimant_offering,
        "the confirmed AAA first"
    );
    assert_eq!(certification(&ranked[0]).explanation, "certification AAA");

    // Claiming another grade clears the confirmation; the same grade keeps it.
    let update = |grade: G, record: m::Company| m::UpdateCompanyRequest {
        request_id: rid("update"),
        company: Some(m::Company {
            certification_grade: grade as i32,
            ..record
        }),
        expected_version: 0,
    };
    let same = market
        .app
        .matching(&claimant.token)
        .update_company(update(G::Aaa, market.company_record(&claimant.id).await?))
        .await?
        .into_inner()
        .company
        .unwrap_or_default();
    assert_eq!(same.confirmed_certification_grade, G::Aaa as i32);
    let changed = market
        .app
        .matching(&claimant.token)
        .update_company(update(G::Aaaaa, same))
        .await?
        .into_inner()
        .company
        .unwrap_or_default();
    assert_eq!(changed.certification_grade, G::Aaaaa as i32);
    assert_eq!(
        changed.confirmed_certification_grade, 0,
        "a new claim is unconfirmed"
    );
    assert!(changed.certification_confirmed_by.is_empty());
    let ranked = rank().await?;
    assert_eq!(
        offering_id(&ranked[0]),
        confirmed_offering,
        "back behind the A"
    );
    assert_eq!(
        certification(&ranked[1]).explanation,
        "claimed AAAAA, not yet confirmed by the district"
    );

    market.app.stop().await
}

on_both_backends!(
    certification_is_confirmed_by_the_district_on_sqlite,
    certification_is_confirmed_by_the_district_on_postgres,
    certification_is_confirmed_by_the_district
);

/// Issue 11 §1: a water user's site is a town of the gazetteer. "新桥" is not one (the
/// sub-district is 新桥街道, 320411004): INVALID_ARGUMENT naming the valid towns. With
/// "新桥街道" the water user carries the code, and so does its project's milestone event.
async fn sites_are_towns_of_the_gazetteer(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let admin = app.token(Role::Admin, None);
    let user_code = cwsm_tests::fresh_credit_code("12320411");
    let user_token = app.token(Role::WaterUser, Some(&user_code));
    let water_user = |town: &str| m::CreateWaterUserRequest {
        request_id: format!("user-{}", cwsm_platform::new_id()),
        water_user: Some(m::WaterUser {
            credit_code: user_code.clone(),
            name: "常州市新桥实验小学".into(),
            sector: types::Sector::School as i32,
            town: town.into(),
            ..Default::default()
        }),
    };
    let field_of = |e: &tonic::Status| {
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        e.get_error_details()
            .bad_request()
            .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
            .unwrap_or_default()
    };
    let e = app
        .matching(&user_token)
        .create_water_user(water_user("新桥"))
        .await
        .expect_err("新桥 is not a town");
    assert_eq!(field_of(&e), "water_user.town");
    assert!(
        e.message().contains("320411004 新桥街道"),
        "{}",
        e.message()
    );
    // Nothing stored: the unit registers afterwards with the same credit code.
    let created = app
        .matching(&user_token)
        .create_water_user(water_user("320411004"))
        .await?
        .into_inner()
        .water_user
        .unwrap_or_default();
    assert_eq!(
        (created.town.as_str(), created.jurisdiction_code.as_str()),
        ("新桥街道", "320411004"),
        "a code is read as its town, stored by its Chinese name"
    );

    // A company's towns served are gazetteer towns too.
    let company_code = cwsm_tests::fresh_credit_code("91320411MA");
    let e = app
        .matching(&app.token(Role::Company, Some(&company_code)))
        .create_company(m::CreateCompanyRequest {
            request_id: format!("company-{}", cwsm_platform::new_id()),
            company: Some(m::Company {
                credit_code: company_code.clone(),
                name: "常州清源节水科技有限公司".into(),
                towns: vec!["新桥街道".into(), "Luoxi".into()],
                ..Default::default()
            }),
        })
        .await
        .expect_err("Luoxi is not a town of the gazetteer");
    assert_eq!(field_of(&e), "company.towns[1]");

    // Through the marketplace: the project of a school in 新桥街道 carries 320411004 to its
    // water user, and to its CONTRACTED milestone, which takes effect on the day of acceptance.
    let today_cst = || (cwsm_platform::now_ms() + 8 * 3_600_000).div_euclid(86_400_000);
    let before = today_cst();
    let contracted = cwsm_tests::contract_a_project(&app, "新桥街道").await?;
    let after = today_cst();
    let project = app
        .projects(&admin)
        .get_project(cwsm_proto::projects::v1::GetProjectRequest {
            project_id: contracted.project_id.clone(),
        })
        .await?
        .into_inner()
        .project
        .unwrap_or_default();
    let user = project.water_user.unwrap_or_default();
    assert_eq!(user.jurisdiction_code, "320411004");
    let milestones = app
        .projects(&admin)
        .list_milestones(cwsm_proto::projects::v1::ListMilestonesRequest {
            project_id: contracted.project_id.clone(),
            page_size: 10,
            ..Default::default()
        })
        .await?
        .into_inner()
        .milestones;
    let signed = milestones
        .iter()
        .find(|e| e.milestone == types::Milestone::Contracted as i32)
        .expect("the CONTRACTED milestone");
    assert_eq!(signed.jurisdiction_code, "320411004");
    // (Across midnight China Standard Time either day is right.)
    assert!(
        [crate::projects::date(before), crate::projects::date(after)]
            .contains(&signed.effective_date),
        "{}",
        signed.effective_date
    );
    app.stop().await
}

on_both_backends!(
    sites_are_towns_of_the_gazetteer_on_sqlite,
    sites_are_towns_of_the_gazetteer_on_postgres,
    sites_are_towns_of_the_gazetteer
);

/// Administrators act in the marketplace for the organizations of their jurisdiction only: a
/// company is registered in a district (checked: a town or an unknown code is INVALID_ARGUMENT,
/// and UpdateCompany does not move it); that district's office confirms its grade and sees its
/// contact, another's may not; a water user's draft request and its proposals are seen by its
/// district's office, not by another's, which may not act for it either.
async fn marketplace_administrators_within(backend: Backend) -> anyhow::Result<()> {
    use cwsm_tests::fresh_credit_code;
    let market = Market::start(backend).await?;
    let app = &market.app;
    let (_, xinbei) = crate::accounts::office_admin(app, "320411", "").await?;
    let (_, wujin) = crate::accounts::office_admin(app, "320412", "").await?;
    let (xinbei, wujin) = (xinbei.access_token, wujin.access_token);

    // A Wujin company registers in 320412; a town or an unknown code is refused.
    let code = fresh_credit_code("91320412MA");
    let token = app.token(Role::Company, Some(&code));
    let registering = |jurisdiction: &str| m::CreateCompanyRequest {
        request_id: rid("company"),
        company: Some(m::Company {
            credit_code: code.clone(),
            name: "武进节水服务公司".into(),
            certification_grade: types::CertificationGrade::Aa as i32,
            contact: Some(types::Contact {
                name: "王经理".into(),
                phone: "0519-86000000".into(),
                email: String::new(),
            }),
            jurisdiction_code: jurisdiction.into(),
            ..Default::default()
        }),
    };
    for bad in ["320412100", "320499"] {
        let err = app
            .matching(&token)
            .create_company(registering(bad))
            .await
            .expect_err(bad);
        assert_eq!(
            violation(&err),
            "company.jurisdiction_code",
            "{bad}: {err:?}"
        );
    }
    let company = app
        .matching(&token)
        .create_company(registering("320412"))
        .await?
        .into_inner()
        .company
        .ok_or_else(|| anyhow::anyhow!("no company"))?;
    assert_eq!(company.jurisdiction_code, "320412");
    let moved = app
        .matching(&token)
        .update_company(m::UpdateCompanyRequest {
            request_id: rid("move"),
            company: Some(m::Company {
                jurisdiction_code: "320411".into(),
                ..company.clone()
            }),
            expected_version: 0,
        })
        .await
        .expect_err("moved");
    assert_eq!(violation(&moved), "company.jurisdiction_code", "{moved:?}");

    // Xinbei's office may not confirm its grade, nor see its contact; Wujin's does both.
    let confirm = |token: &str| {
        let mut client = app.matching(token);
        let company_id = company.id.clone();
        async move {
            client
                .confirm_certification(m::ConfirmCertificationRequest {
                    company_id,
                    grade: types::CertificationGrade::Aa as i32,
                    note: "证书已核".into(),
                    request_id: rid("confirm"),
                    expected_version: 0,
                })
                .await
        }
    };
    let denied = confirm(&xinbei).await.expect_err("another district");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains("jurisdiction 320412")
            && denied.message().contains("jurisdiction 320411 only"),
        "{}",
        denied.message()
    );
    let confirmed = confirm(&wujin)
        .await?
        .into_inner()
        .company
        .unwrap_or_default();
    assert_eq!(
        confirmed.confirmed_certification_grade,
        types::CertificationGrade::Aa as i32
    );
    let contact = |token: &str| {
        let mut client = app.matching(token);
        let company_id = company.id.clone();
        async move {
            anyhow::Ok(
                client
                    .get_company(m::GetCompanyRequest {
                        company_id,
                        credit_code: String::new(),
                    })
                    .await?
                    .into_inner()
                    .company
                    .and_then(|c| c.contact)
                    .unwrap_or_default()
                    .name,
            )
        }
    };
    assert_eq!(contact(&wujin).await?, "王经理");
    assert_eq!(contact(&xinbei).await?, "");

    // A Xinbei school's draft request and a proposal on its open one.
    let school = market
        .water_user(&format!("1232041146{}", &code[10..17]), "新桥学校")
        .await?;
    let draft = market.request(&school, "Draft", &[], true).await?;
    let open = market.request(&school, "Open", &[], false).await?;
    let (bidder, _) = market
        .claiming_company(
            &format!("91320411MA{}", &code[10..17]),
            "新北节水",
            types::CertificationGrade::None,
            vec![],
        )
        .await?;
    let proposal = market.propose(&bidder, &open).await?;
    let requests = |token: &str| {
        let mut client = app.matching(token);
        let water_user_id = school.id.clone();
        async move {
            anyhow::Ok(
                client
                    .list_project_requests(m::ListProjectRequestsRequest {
                        water_user_id,
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .project_requests
                    .into_iter()
                    .map(|r| r.id)
                    .collect::<Vec<_>>(),
            )
        }
    };
    let proposals = |token: &str| {
        let mut client = app.matching(token);
        let project_request_id = open.clone();
        async move {
            anyhow::Ok(
                client
                    .list_proposals(m::ListProposalsRequest {
                        project_request_id,
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .proposals
                    .len(),
            )
        }
    };
    // Xinbei's office: the draft listed and read, the proposal listed and read.
    assert!(requests(&xinbei).await?.contains(&draft));
    app.matching(&xinbei)
        .get_project_request(m::GetProjectRequestRequest {
            project_request_id: draft.clone(),
        })
        .await?;
    assert_eq!(proposals(&xinbei).await?, 1);
    app.matching(&xinbei)
        .get_proposal(m::GetProposalRequest {
            proposal_id: proposal.id.clone(),
        })
        .await?;
    // Wujin's office: the open request as any member sees it, not the draft nor the proposal.
    let seen = requests(&wujin).await?;
    assert!(seen.contains(&open) && !seen.contains(&draft), "{seen:?}");
    let hidden = app
        .matching(&wujin)
        .get_project_request(m::GetProjectRequestRequest {
            project_request_id: draft.clone(),
        })
        .await
        .expect_err("a draft of another district");
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");
    assert_eq!(proposals(&wujin).await?, 0);
    let hidden = app
        .matching(&wujin)
        .get_proposal(m::GetProposalRequest {
            proposal_id: proposal.id.clone(),
        })
        .await
        .expect_err("a proposal of another district");
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");
    // Nor may it act for the school.
    let acting = app
        .matching(&wujin)
        .decline_proposal(m::DeclineProposalRequest {
            request_id: rid("decline"),
            proposal_id: proposal.id.clone(),
            expected_version: 0,
            reason: "不合适".into(),
        })
        .await
        .expect_err("acting for another district's school");
    assert_eq!(acting.code(), Code::PermissionDenied, "{acting:?}");
    assert!(
        acting.message().contains("jurisdiction 320411"),
        "{}",
        acting.message()
    );
    market.app.stop().await
}

on_both_backends!(
    marketplace_administrators_within_on_sqlite,
    marketplace_administrators_within_on_postgres,
    marketplace_administrators_within
);
