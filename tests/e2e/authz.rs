//! Authorization: the matrix (every RPC of matching, projects and reporting × every kind of
//! caller → the code it gets, through the real gRPC API) and the findings of issue 10 it
//! guards, each as its own scenario. The RPCs are read from the proto descriptors, so an RPC
//! added without a row fails `the_matrix_*`.
//!
//! The rows send each RPC a real request about a real project (contracted through the
//! marketplace, with a verifier assigned, a meter, a year of readings and a submitted period).
//! Writes are chosen to fail *after* the authorization check where the caller may make them
//! (a stale version, a missing field, a step the period's status does not allow), so the
//! authorized callers get that code and the matrix changes nothing that later rows read.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use cwsm_platform::auth::Role;
use cwsm_proto::matching::v1 as m;
use cwsm_proto::projects::v1 as p;
use cwsm_proto::reporting::v1 as r;
use cwsm_proto::types;
use cwsm_tests::{
    Backend, Contracted, TestApp, contract_a_project, credit_code, fresh_credit_code,
    postgres_and_redis_available, test_verifier_org,
};
use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use crate::projects::{
    Calendar, Parties, daily_readings, date, ingest, meter, set_baseline, to_operating,
};

fn rid(label: &str) -> String {
    format!("{label}-{}", cwsm_platform::new_id())
}

// ---------------------------------------------------------------------------------------
// A generic gRPC call: a method path and the request's bytes.
// ---------------------------------------------------------------------------------------

/// Sends and receives raw protobuf bytes.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut out = vec![0u8; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// An RPC as the descriptors name it.
#[derive(Clone, Debug)]
struct Rpc {
    /// `/cwsm.projects.v1.ProjectsService/GetProject`
    path: String,
    client_streaming: bool,
    server_streaming: bool,
}

/// Every RPC of the three services, from the descriptors compiled into `cwsm_proto`.
fn every_rpc() -> anyhow::Result<BTreeMap<String, Rpc>> {
    let set = prost_types::FileDescriptorSet::decode(cwsm_proto::FILE_DESCRIPTOR_SET)?;
    let mut out = BTreeMap::new();
    for file in &set.file {
        let package = file.package();
        if !["cwsm.matching.v1", "cwsm.projects.v1", "cwsm.reporting.v1"].contains(&package) {
            continue;
        }
        for service in &file.service {
            for method in &service.method {
                let path = format!("/{package}.{}/{}", service.name(), method.name());
                out.insert(
                    method.name().to_string(),
                    Rpc {
                        path,
                        client_streaming: method.client_streaming(),
                        server_streaming: method.server_streaming(),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// The code `rpc` answers `body` sent with `token` (none: no authorization metadata).
async fn call(channel: &Channel, rpc: &Rpc, token: Option<&str>, body: &[u8]) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if let Err(e) = grpc.ready().await {
        panic!("channel not ready: {e}");
    }
    let path = match PathAndQuery::from_str(&rpc.path) {
        Ok(p) => p,
        Err(e) => panic!("{}: {e}", rpc.path),
    };
    fn with_token<T>(mut request: tonic::Request<T>, token: Option<&str>) -> tonic::Request<T> {
        if let Some(t) = token
            && let Ok(value) = format!("Bearer {t}").parse()
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
    let result = if rpc.client_streaming {
        let messages = tokio_stream::iter(vec![body.to_vec()]);
        grpc.client_streaming(with_token(tonic::Request::new(messages), token), path, Raw)
            .await
            .map(|_| ())
    } else if rpc.server_streaming {
        // The first message (or the error) is enough; dropping the stream ends it.
        match grpc
            .server_streaming(
                with_token(tonic::Request::new(body.to_vec()), token),
                path,
                Raw,
            )
            .await
        {
            Ok(response) => response.into_inner().message().await.map(|_| ()),
            Err(status) => Err(status),
        }
    } else {
        grpc.unary(
            with_token(tonic::Request::new(body.to_vec()), token),
            path,
            Raw,
        )
        .await
        .map(|_| ())
    };
    match result {
        Ok(()) => Code::Ok,
        Err(status) => status.code(),
    }
}

// ---------------------------------------------------------------------------------------
// The callers
// ---------------------------------------------------------------------------------------

/// The kinds of caller every RPC is tried with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Caller {
    /// No authorization metadata.
    NoToken,
    /// An administrator's token that expired an hour ago.
    Expired,
    Admin,
    /// Another cwsm service (reporting reading the milestone log).
    Service,
    /// The project's company, acting for its own org.
    Company,
    /// The project's water user, acting for its own org.
    User,
    /// The verifier body assigned to the project.
    Verifier,
    /// The company of another project.
    OtherParty,
    /// A company-role token whose org is the project's water user (an org with another role).
    UserAsCompany,
    /// A verifier-role token whose org is the project's company (an org with another role).
    CompanyAsVerifier,
    /// A verifier body not assigned to the project.
    UnassignedVerifier,
}

const CALLERS: [Caller; 11] = [
    Caller::NoToken,
    Caller::Expired,
    Caller::Admin,
    Caller::Service,
    Caller::Company,
    Caller::User,
    Caller::Verifier,
    Caller::OtherParty,
    Caller::UserAsCompany,
    Caller::CompanyAsVerifier,
    Caller::UnassignedVerifier,
];

use Caller::*;

/// What each caller gets from one RPC.
struct Expect(BTreeMap<Caller, Code>);

impl Expect {
    /// Every signed-in caller gets `code`; without a valid token UNAUTHENTICATED.
    fn all(code: Code) -> Expect {
        Expect(
            CALLERS
                .iter()
                .map(|c| {
                    let code = match c {
                        NoToken | Expired => Code::Unauthenticated,
                        _ => code,
                    };
                    (*c, code)
                })
                .collect(),
        )
    }

    /// `callers` get `code`, every other signed-in caller `others`.
    fn only(callers: &[Caller], code: Code, others: Code) -> Expect {
        let mut e = Expect::all(others);
        for c in callers {
            e.0.insert(*c, code);
        }
        e
    }

    /// About the project: `callers` get `code`; the others who may read it (administrators,
    /// the parties, the assigned verifier) PERMISSION_DENIED; everyone else NOT_FOUND.
    fn project(callers: &[Caller], code: Code) -> Expect {
        let mut e = Expect::all(Code::NotFound);
        for c in [Admin, Company, User, Verifier] {
            e.0.insert(c, Code::PermissionDenied);
        }
        for c in callers {
            e.0.insert(*c, code);
        }
        e
    }

    /// A read of the project: its readers OK, everyone else NOT_FOUND.
    fn project_read() -> Expect {
        Expect::project(&[Admin, Company, User, Verifier], Code::Ok)
    }

    fn with(mut self, caller: Caller, code: Code) -> Expect {
        self.0.insert(caller, code);
        self
    }
}

/// The world the matrix runs in, and the tokens of its callers.
struct World {
    tokens: BTreeMap<Caller, Option<String>>,
    project: p::Project,
    company: m::Company,
    user: m::WaterUser,
    offering_id: String,
    meter_id: String,
    period: p::PeriodSavings,
    reading: p::Reading,
}

/// A project contracted through the marketplace with the test verifier assigned, measured
/// (baseline year and last month of daily readings) and its last month submitted; another
/// project for the other party.
async fn world(app: &TestApp) -> anyhow::Result<World> {
    let admin = app.token(Role::Admin, None);
    let contracted: Contracted = contract_a_project(app, "新桥街道").await?;
    let other = contract_a_project(app, "三井街道").await?;
    let project_id = contracted.project_id.clone();
    let verifier = cwsm_tests::assign_verifier(app, &project_id).await?;
    let cal = Calendar::now();
    set_baseline(app, &contracted.company_token, &project_id, &cal).await?;
    let parties = Parties {
        project_id: project_id.clone(),
        company: contracted.company_token.clone(),
        user: contracted.user_token.clone(),
        admin: admin.clone(),
        verifier: verifier.clone(),
    };
    to_operating(app, &parties).await?;
    let meter = meter(app, &contracted.company_token, &project_id).await?;
    let readings = daily_readings(&cal);
    let reading = readings.first().cloned().unwrap_or_default();
    let sent = ingest(
        app,
        &contracted.company_token,
        &meter.id,
        p::ReadingValueKind::IntervalUse,
        readings,
    )
    .await?;
    anyhow::ensure!(sent.rejected == 0, "{:?}", sent.rejections);
    let period = app
        .projects(&contracted.company_token)
        .submit_period(p::SubmitPeriodRequest {
            request_id: rid("submit"),
            project_id: project_id.clone(),
            start_date: date(cal.period_start),
            note: String::new(),
        })
        .await?
        .into_inner()
        .period
        .ok_or_else(|| anyhow::anyhow!("no period"))?;
    let project = app
        .projects(&admin)
        .get_project(p::GetProjectRequest {
            project_id: project_id.clone(),
        })
        .await?
        .into_inner()
        .project
        .ok_or_else(|| anyhow::anyhow!("no project"))?;
    let company_ref = project.company.clone().unwrap_or_default();
    let user_ref = project.water_user.clone().unwrap_or_default();
    let company = app
        .matching(&admin)
        .get_company(m::GetCompanyRequest {
            company_id: company_ref.id.clone(),
            credit_code: String::new(),
        })
        .await?
        .into_inner()
        .company
        .unwrap_or_default();
    let user = app
        .matching(&admin)
        .get_water_user(m::GetWaterUserRequest {
            water_user_id: user_ref.id.clone(),
            credit_code: String::new(),
        })
        .await?
        .into_inner()
        .water_user
        .unwrap_or_default();
    let offering_id = app
        .matching(&admin)
        .list_offerings(m::ListOfferingsRequest {
            company_id: company.id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .offerings
        .first()
        .map(|o| o.id.clone())
        .ok_or_else(|| anyhow::anyhow!("no offering"))?;
    let tokens = BTreeMap::from([
        (NoToken, None),
        (Expired, Some(app.expired_token(Role::Admin, None))),
        (Admin, Some(admin)),
        (Service, Some(app.token(Role::Service, None))),
        (Company, Some(contracted.company_token.clone())),
        (User, Some(contracted.user_token.clone())),
        (Verifier, Some(verifier)),
        (OtherParty, Some(other.company_token.clone())),
        (
            UserAsCompany,
            Some(app.token(Role::Company, Some(&user_ref.credit_code))),
        ),
        (
            CompanyAsVerifier,
            Some(app.token(Role::Verifier, Some(&company_ref.credit_code))),
        ),
        (
            UnassignedVerifier,
            Some(app.token(Role::Verifier, Some(&fresh_credit_code("12320411")))),
        ),
    ]);
    Ok(World {
        tokens,
        project,
        company,
        user,
        offering_id,
        meter_id: meter.id,
        period,
        reading,
    })
}

/// One row per RPC: the request sent and what each caller gets.
fn rows(w: &World) -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Code::*;
    let project_id = w.project.id.clone();
    let period_id = w.period.id.clone();
    let request_id = w.project.project_request_id.clone();
    let proposal_id = w.project.proposal_id.clone();
    let company_code = w.company.credit_code.clone();
    const STALE: i64 = 9_999;
    vec![
        // -- matching: companies and offerings (records are public; writes are the owner's) --
        (
            "CreateCompany",
            m::CreateCompanyRequest {
                request_id: rid("c"),
                company: Some(w.company.clone()),
            }
            .encode_to_vec(),
            Expect::only(&[Admin, Company], AlreadyExists, PermissionDenied),
        ),
        (
            "GetCompany",
            m::GetCompanyRequest {
                company_id: w.company.id.clone(),
                credit_code: String::new(),
            }
            .encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            "ListCompanies",
            m::ListCompaniesRequest::default().encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            "UpdateCompany",
            m::UpdateCompanyRequest {
                request_id: rid("u"),
                company: Some(m::Company {
                    id: w.company.id.clone(),
                    ..Default::default()
                }),
                expected_version: STALE,
            }
            .encode_to_vec(),
            Expect::only(&[Admin, Company], InvalidArgument, PermissionDenied),
        ),
        (
            "CreateOffering",
            m::CreateOfferingRequest {
                request_id: rid("o"),
                offering: Some(m::Offering {
                    company_id: w.company.id.clone(),
                    title: "Cooling tower retrofit".into(),
                    technologies: vec![types::Technology::LeakDetection as i32],
                    contract_models: vec![types::ContractModel::SharedSavings as i32],
                    ..Default::default()
                }),
            }
            .encode_to_vec(),
            Expect::only(&[Admin, Company], Ok, PermissionDenied),
        ),
        (
            "GetOffering",
            m::GetOfferingRequest {
                offering_id: w.offering_id.clone(),
            }
            .encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            "ListOfferings",
            m::ListOfferingsRequest::default().encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            "UpdateOffering",
            m::UpdateOfferingRequest {
                request_id: rid("uo"),
                offering: Some(m::Offering {
                    id: w.offering_id.clone(),
                    ..Default::default()
                }),
                expected_version: STALE,
            }
            .encode_to_vec(),
            Expect::only(&[Admin, Company], InvalidArgument, PermissionDenied),
        ),
        (
            // Published already: publishing again answers it as it is.
            "PublishOffering",
            m::PublishOfferingRequest {
                request_id: rid("po"),
                offering_id: w.offering_id.clone(),
                expected_version: STALE,
            }
            .encode_to_vec(),
            Expect::only(&[Admin, Company], Ok, PermissionDenied),
        ),
        (
            "WithdrawOffering",
            m::WithdrawOfferingRequest {
                request_id: rid("wo"),
                offering_id: w.offering_id.clone(),
                expected_version: STALE,
                reason: String::new(),
            }
            .encode_to_vec(),
            Expect::only(&[Admin, Company], Aborted, PermissionDenied),
        ),
        // -- matching: water users and their requests --
        (
            "CreateWaterUser",
            m::CreateWaterUserRequest {
                request_id: rid("w"),
                water_user: Some(w.user.clone()),
            }
            .encode_to_vec(),
            Expect::only(&[Admin, User], AlreadyExists, PermissionDenied),
        ),
        (
            "GetWaterUser",
            m::GetWaterUserRequest {
                water_user_id: w.user.id.clone(),
                credit_code: String::new(),
            }
            .encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            "ListWaterUsers",
            m::ListWaterUsersRequest::default().encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            "UpdateWaterUser",
            m::UpdateWaterUserRequest {
                request_id: rid("uw"),
                water_user: Some(m::WaterUser {
                    id: w.user.id.clone(),
                    ..Default::default()
                }),
                expected_version: STALE,
            }
            .encode_to_vec(),
            Expect::only(&[Admin, User], InvalidArgument, PermissionDenied),
        ),
        (
            "CreateProjectRequest",
            m::CreateProjectRequestRequest {
                request_id: rid("r"),
                project_request: Some(m::ProjectRequest {
                    water_user_id: w.user.id.clone(),
                    title: "Canteen water".into(),
                    baseline_use_litres: 100_000_000,
                    expected_savings_bp: 1000,
                    price_fen_per_m3: 410,
                    ..Default::default()
                }),
            }
            .encode_to_vec(),
            Expect::only(&[Admin, User], Ok, PermissionDenied),
        ),
        (
            "GetProjectRequest",
            m::GetProjectRequestRequest {
                project_request_id: request_id.clone(),
            }
            .encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            "ListProjectRequests",
            m::ListProjectRequestsRequest::default().encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            "UpdateProjectRequest",
            m::UpdateProjectRequestRequest {
                request_id: rid("ur"),
                project_request: Some(m::ProjectRequest {
                    id: request_id.clone(),
                    ..Default::default()
                }),
                expected_version: STALE,
            }
            .encode_to_vec(),
            Expect::only(&[Admin, User], InvalidArgument, PermissionDenied),
        ),
        (
            "OpenProjectRequest",
            m::OpenProjectRequestRequest {
                request_id: rid("or"),
                project_request_id: request_id.clone(),
                expected_version: STALE,
            }
            .encode_to_vec(),
            Expect::only(&[Admin, User], FailedPrecondition, PermissionDenied),
        ),
        (
            "CloseProjectRequest",
            m::CloseProjectRequestRequest {
                request_id: rid("cr"),
                project_request_id: request_id.clone(),
                expected_version: STALE,
                reason: String::new(),
            }
            .encode_to_vec(),
            Expect::only(&[Admin, User], FailedPrecondition, PermissionDenied),
        ),
        (
            "CancelProjectRequest",
            m::CancelProjectRequestRequest {
                request_id: rid("xr"),
                project_request_id: request_id.clone(),
                expected_version: STALE,
                reason: String::new(),
            }
            .encode_to_vec(),
            Expect::only(&[Admin, User], FailedPrecondition, PermissionDenied),
        ),
        (
            "RankOfferings",
            m::RankOfferingsRequest {
                project_request_id: request_id.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            "ListFittingRequests",
            m::ListFittingRequestsRequest {
                company_id: w.company.id.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::all(Ok),
        ),
        // -- matching: proposals (seen by their company, the request's water user, admins) --
        (
            "CreateProposal",
            m::CreateProposalRequest {
                request_id: rid("p"),
                proposal: Some(m::Proposal {
                    project_request_id: request_id.clone(),
                    company_id: w.company.id.clone(),
                    measures: "more meters".into(),
                    investment_fen: 1_000_000,
                    promised_savings_litres: 1_000_000,
                    promised_savings_bp: 1000,
                    contract_model: types::ContractModel::SharedSavings as i32,
                    terms: Some(types::ContractTerms {
                        share_ratio_bp: 7000,
                        sharing_period_months: 60,
                        ..Default::default()
                    }),
                    contract_term_months: 60,
                    mv_option: types::MvOption::C as i32,
                    ..Default::default()
                }),
            }
            .encode_to_vec(),
            Expect::only(&[Admin, Company], FailedPrecondition, PermissionDenied),
        ),
        (
            "GetProposal",
            m::GetProposalRequest {
                proposal_id: proposal_id.clone(),
            }
            .encode_to_vec(),
            Expect::only(&[Admin, Service, Company, User], Ok, NotFound),
        ),
        (
            "ListProposals",
            m::ListProposalsRequest::default().encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            // Accepted already: a repeat answers the acceptance made.
            "AcceptProposal",
            m::AcceptProposalRequest {
                request_id: rid("ap"),
                proposal_id: proposal_id.clone(),
                expected_version: STALE,
            }
            .encode_to_vec(),
            Expect::only(&[Admin, User], Ok, PermissionDenied),
        ),
        (
            "DeclineProposal",
            m::DeclineProposalRequest {
                request_id: rid("dp"),
                proposal_id: proposal_id.clone(),
                expected_version: STALE,
                reason: String::new(),
            }
            .encode_to_vec(),
            Expect::only(&[Admin, User], FailedPrecondition, PermissionDenied),
        ),
        (
            "WithdrawProposal",
            m::WithdrawProposalRequest {
                request_id: rid("wp"),
                proposal_id: proposal_id.clone(),
                expected_version: STALE,
                reason: String::new(),
            }
            .encode_to_vec(),
            Expect::only(&[Admin, Company], FailedPrecondition, PermissionDenied),
        ),
        // -- projects: read by the parties, the assigned verifier and administrators --
        (
            "CreateProject",
            p::CreateProjectRequest::default().encode_to_vec(),
            Expect::all(Unimplemented),
        ),
        (
            "GetProject",
            p::GetProjectRequest {
                project_id: project_id.clone(),
            }
            .encode_to_vec(),
            Expect::project_read(),
        ),
        (
            // Everyone lists; each sees only its own (the scenarios check what).
            "ListProjects",
            p::ListProjectsRequest::default().encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            // Independence: the company cannot be the verifier.
            "AssignVerifier",
            p::AssignVerifierRequest {
                request_id: rid("av"),
                project_id: project_id.clone(),
                verifier_org: company_code.clone(),
                expected_version: 0,
            }
            .encode_to_vec(),
            Expect::project(&[Admin], FailedPrecondition),
        ),
        (
            "UpdateProject",
            p::UpdateProjectRequest {
                request_id: rid("up"),
                project: Some(p::Project {
                    id: project_id.clone(),
                    title: "retitled".into(),
                    ..Default::default()
                }),
                expected_version: STALE,
            }
            .encode_to_vec(),
            Expect::project(&[Admin, Company, User], Aborted),
        ),
        (
            "TransitionProject",
            p::TransitionProjectRequest {
                request_id: rid("tp"),
                project_id: project_id.clone(),
                to_stage: p::ProjectStage::Closed as i32,
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::project(&[Admin, Company, User], FailedPrecondition),
        ),
        (
            "ListProjectTransitions",
            p::ListProjectTransitionsRequest {
                project_id: project_id.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::project_read(),
        ),
        (
            "CreateMeter",
            p::CreateMeterRequest {
                request_id: rid("cm"),
                meter: Some(p::Meter {
                    project_id: project_id.clone(),
                    name: "no kind".into(),
                    interval_seconds: 86_400,
                    ..Default::default()
                }),
            }
            .encode_to_vec(),
            Expect::project(&[Admin, Company], InvalidArgument),
        ),
        (
            "ListMeters",
            p::ListMetersRequest {
                project_id: project_id.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::project_read(),
        ),
        (
            // The first reading again (a duplicate). A meter the caller may not read is
            // answered as unknown (counted, not stored): OK with nothing taken.
            "IngestReadings",
            p::IngestReadingsRequest {
                meter_id: w.meter_id.clone(),
                value_kind: p::ReadingValueKind::IntervalUse as i32,
                readings: vec![w.reading.clone()],
            }
            .encode_to_vec(),
            Expect::all(Ok)
                .with(User, PermissionDenied)
                .with(Verifier, PermissionDenied),
        ),
        (
            "ListReadings",
            p::ListReadingsRequest {
                meter_id: w.meter_id.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::project_read(),
        ),
        (
            "GetSavingsReport",
            p::GetSavingsReportRequest {
                project_id: project_id.clone(),
            }
            .encode_to_vec(),
            Expect::project_read(),
        ),
        (
            "RecordDriverValues",
            p::RecordDriverValuesRequest {
                project_id: project_id.clone(),
                driver: "not-a-driver".into(),
                values: vec![],
            }
            .encode_to_vec(),
            Expect::project(&[Admin, Company, Verifier], InvalidArgument),
        ),
        (
            "CreateNonRoutineAdjustment",
            p::CreateNonRoutineAdjustmentRequest {
                request_id: rid("na"),
                adjustment: Some(p::NonRoutineAdjustment {
                    project_id: project_id.clone(),
                    ..Default::default()
                }),
            }
            .encode_to_vec(),
            Expect::project(&[Admin, Company, Verifier], InvalidArgument),
        ),
        (
            "ListNonRoutineAdjustments",
            p::ListNonRoutineAdjustmentsRequest {
                project_id: project_id.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::project_read(),
        ),
        (
            // Submitted already.
            "SubmitPeriod",
            p::SubmitPeriodRequest {
                request_id: rid("sp"),
                project_id: project_id.clone(),
                start_date: w.period.start_date.clone(),
                note: String::new(),
            }
            .encode_to_vec(),
            Expect::project(&[Admin, Company], FailedPrecondition),
        ),
        (
            // Only the assigned verifier verifies (not even an administrator).
            "VerifyPeriod",
            p::VerifyPeriodRequest {
                request_id: rid("vp"),
                period_id: period_id.clone(),
                expected_version: STALE,
                note: String::new(),
            }
            .encode_to_vec(),
            Expect::project(&[Verifier], Aborted),
        ),
        (
            // Raised by a party or the assigned verifier; administrators resolve.
            "DisputePeriod",
            p::DisputePeriodRequest {
                request_id: rid("dp"),
                period_id: period_id.clone(),
                expected_version: STALE,
                reason: "the meter was replaced".into(),
            }
            .encode_to_vec(),
            Expect::project(&[Company, User, Verifier], Aborted),
        ),
        (
            // Not disputed: the resolvers get past the check to the period's status.
            "ResolveDispute",
            p::ResolveDisputeRequest {
                request_id: rid("rd"),
                period_id: period_id.clone(),
                expected_version: STALE,
                adjustment_litres: 0,
                note: "agreed".into(),
            }
            .encode_to_vec(),
            Expect::project(&[Admin, Verifier], FailedPrecondition),
        ),
        (
            // Not verified yet.
            "SettlePeriod",
            p::SettlePeriodRequest {
                request_id: rid("st"),
                period_id: period_id.clone(),
                expected_version: STALE,
            }
            .encode_to_vec(),
            Expect::project(&[Admin, Company, User], FailedPrecondition),
        ),
        (
            "ListSettlements",
            p::ListSettlementsRequest {
                project_id: project_id.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::project_read(),
        ),
        (
            // Services (reporting's RebuildCounts) read the whole log.
            "ListMilestones",
            p::ListMilestonesRequest {
                project_id: project_id.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::project_read().with(Service, Ok),
        ),
        // -- reporting: the plan's report is the district's, read by every member; plans,
        // achievements, rebuilds and dead letters are the administrators' --
        (
            "LoadPlan",
            r::LoadPlanRequest {
                request_id: rid("lp"),
                plan_toml: "code = \"x\"\nyear = [\n".into(),
                validate_only: true,
            }
            .encode_to_vec(),
            Expect::only(&[Admin], InvalidArgument, PermissionDenied),
        ),
        (
            "GetPlan",
            r::GetPlanRequest {
                code: "xinbei-2020".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            "ListPlans",
            r::ListPlansRequest::default().encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            "GetReport",
            r::GetReportRequest {
                plan_code: "xinbei-2020".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            "WatchReport",
            r::WatchReportRequest {
                plan_code: "xinbei-2020".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            "RecordAchievement",
            r::RecordAchievementRequest {
                request_id: rid("ra"),
                plan_code: "xinbei-2020".into(),
                indicator_code: "NO-SUCH-INDICATOR".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::only(&[Admin], InvalidArgument, PermissionDenied),
        ),
        (
            "ListAchievements",
            r::ListAchievementsRequest {
                plan_code: "xinbei-2020".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            "CorrectAchievement",
            r::CorrectAchievementRequest {
                request_id: rid("ca"),
                achievement_id: "no-such-achievement".into(),
                reason: "typo".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::only(&[Admin], NotFound, PermissionDenied),
        ),
        (
            "ListCountedProjects",
            r::ListCountedProjectsRequest {
                plan_code: "xinbei-2020".into(),
                indicator_code: "A8-CONTRACT-PROJECTS".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            "RebuildCounts",
            r::RebuildCountsRequest::default().encode_to_vec(),
            Expect::only(&[Admin], InvalidArgument, PermissionDenied),
        ),
        (
            "ExportReport",
            r::ExportReportRequest {
                plan_code: "xinbei-2020".into(),
                format: r::ExportFormat::Csv as i32,
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            "ListDeadLetters",
            r::ListDeadLettersRequest::default().encode_to_vec(),
            Expect::only(&[Admin], Ok, PermissionDenied),
        ),
    ]
}

async fn the_matrix(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let w = world(&app).await?;
    let rpcs = every_rpc()?;
    let rows = rows(&w);
    // Every RPC has exactly one row, and every row an RPC.
    let named: BTreeSet<&str> = rows.iter().map(|(name, _, _)| *name).collect();
    assert_eq!(named.len(), rows.len(), "an RPC has two rows");
    let missing: Vec<&String> = rpcs
        .keys()
        .filter(|k| !named.contains(k.as_str()))
        .collect();
    assert!(missing.is_empty(), "RPCs without a row: {missing:?}");
    let unknown: Vec<&&str> = named.iter().filter(|n| !rpcs.contains_key(**n)).collect();
    assert!(unknown.is_empty(), "rows without an RPC: {unknown:?}");

    let mut wrong = Vec::new();
    let mut calls = 0;
    for (name, body, expect) in &rows {
        let rpc = &rpcs[*name];
        for caller in CALLERS {
            let token = w.tokens.get(&caller).cloned().flatten();
            let got = call(&app.channel, rpc, token.as_deref(), body).await;
            calls += 1;
            let want = expect.0.get(&caller).copied().unwrap_or(Code::Unknown);
            if got != want {
                wrong.push(format!("{name} as {caller:?}: got {got:?}, want {want:?}"));
            }
        }
    }
    eprintln!(
        "authorization matrix on {backend:?}: {} RPCs x {} callers = {calls} calls",
        rows.len(),
        CALLERS.len()
    );
    assert!(
        wrong.is_empty(),
        "{} of {calls} calls answered otherwise:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_matrix_sqlite() -> anyhow::Result<()> {
    the_matrix(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_matrix_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    the_matrix(Backend::Postgres).await
}
