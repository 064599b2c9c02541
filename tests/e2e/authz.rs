//! Authorization: the matrix (every RPC of accounts, matching, projects and reporting × every kind of
//! caller, a gateway's API key among them → the code it gets, through the real gRPC API) and the findings of issue 10 it
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
use cwsm_proto::accounts::v1 as a;
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
    let mut found = Vec::new();
    for file in &set.file {
        let package = file.package();
        if !package.starts_with("cwsm.")
            || package.starts_with("cwsm.events.")
            || package.starts_with("cwsm.type.")
        {
            continue;
        }
        for service in &file.service {
            for method in &service.method {
                let path = format!("/{package}.{}/{}", service.name(), method.name());
                found.push((
                    service.name().to_string(),
                    method.name().to_string(),
                    Rpc {
                        path,
                        client_streaming: method.client_streaming(),
                        server_streaming: method.server_streaming(),
                    },
                ));
            }
        }
    }
    // A row is named by its method, or by "Service.Method" where two services share the name.
    let mut out = BTreeMap::new();
    for (service, method, rpc) in &found {
        let shared = found.iter().filter(|(_, m, _)| m == method).count() > 1;
        let name = if shared {
            format!("{service}.{method}")
        } else {
            method.clone()
        };
        out.insert(name, rpc.clone());
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
    /// A person signed in for a company that an administrator then suspended.
    Suspended,
    /// A person who signed out everywhere: their access token is revoked.
    SignedOut,
    /// A person of the district office of 320411 (新北区, the project's district) signed in:
    /// an administrator scoped to that jurisdiction.
    DistrictAdmin,
    /// A person of another district's office (320412 武进区) signed in: an administrator, but
    /// not of 320411's organizations (it may not act for them), projects and proposals (a
    /// stranger to them: NOT_FOUND) or plans; what every member sees it sees.
    OtherDistrictAdmin,
    /// A machine client (a meter gateway) with the project company's API key, exchanged for
    /// an access token: the company's rights, but not over who may act for it.
    Gateway,
}

const CALLERS: [Caller; 16] = [
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
    Caller::Suspended,
    Caller::SignedOut,
    Caller::DistrictAdmin,
    Caller::OtherDistrictAdmin,
    Caller::Gateway,
];

use Caller::*;

/// What each caller gets from one RPC.
struct Expect(BTreeMap<Caller, Code>);

impl Expect {
    /// Every signed-in caller gets `code`; without a valid token UNAUTHENTICATED. The signed-in
    /// administrators get what `Admin` gets unless a row says otherwise ([`Expect::want`]).
    fn all(code: Code) -> Expect {
        Expect(
            CALLERS
                .iter()
                .filter(|c| !matches!(c, DistrictAdmin | OtherDistrictAdmin))
                .map(|c| {
                    let code = match c {
                        NoToken | Expired | Suspended | SignedOut => Code::Unauthenticated,
                        _ => code,
                    };
                    (*c, code)
                })
                .collect(),
        )
    }

    /// Open to anyone, with a token or without (sign-in, registration, the public keys):
    /// every caller gets `code`.
    fn public(code: Code) -> Expect {
        Expect(CALLERS.iter().map(|c| (*c, code)).collect())
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
    /// Another district's administrator is a stranger to the project (it is in 320411).
    fn project(callers: &[Caller], code: Code) -> Expect {
        let mut e = Expect::all(Code::NotFound);
        for c in [Admin, Company, User, Verifier] {
            e.0.insert(c, Code::PermissionDenied);
        }
        e.0.insert(OtherDistrictAdmin, Code::NotFound);
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

    /// What `caller` gets: its own entry, or for the signed-in administrators without one what
    /// an operator's administrator token gets (the RPCs where jurisdiction does not matter yet).
    fn want(&self, caller: Caller) -> Code {
        let fallback = match caller {
            DistrictAdmin | OtherDistrictAdmin => self.0.get(&Admin),
            _ => None,
        };
        self.0
            .get(&caller)
            .or(fallback)
            .copied()
            .unwrap_or(Code::Unknown)
    }
}

/// The world the matrix runs in, and the tokens of its callers.
struct World {
    tokens: BTreeMap<Caller, Option<String>>,
    /// An API key of the project's company (not the gateway's).
    api_key_id: String,
    project: p::Project,
    company: m::Company,
    user: m::WaterUser,
    offering_id: String,
    meter_id: String,
    period: p::PeriodSavings,
    reading: p::Reading,
    /// A verifier proposal the water user made and an administrator declined.
    declined_proposal_id: String,
    /// A correction of the period's last reading the company proposed before submitting it.
    correction_id: String,
    /// A non-routine adjustment the company documented (proposed, for the verifier).
    adjustment_id: String,
    /// The SHA-256 of an evidence document the company uploaded.
    evidence_sha256: String,
    /// The SHA-256 of an evidence document of the Xinbei plan's achievements.
    plan_evidence_sha256: String,
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
    let reading = readings.first().copied().unwrap_or_default();
    let sent = ingest(
        app,
        &contracted.company_token,
        &meter.id,
        p::ReadingValueKind::IntervalUse,
        readings,
    )
    .await?;
    anyhow::ensure!(sent.rejected == 0, "{:?}", sent.rejections);
    let last = daily_readings(&cal).last().copied().unwrap_or_default();
    let correction = app
        .projects(&contracted.company_token)
        .propose_reading_correction(p::ProposeReadingCorrectionRequest {
            request_id: rid("pc"),
            correction: Some(p::ReadingCorrection {
                meter_id: meter.id.clone(),
                read_time: last.read_time,
                action: p::CorrectionAction::Exclude as i32,
                reason: "the meter was being replaced".into(),
                evidence: "site log 12".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .correction
        .ok_or_else(|| anyhow::anyhow!("no correction"))?;
    let evidence = app
        .projects(&contracted.company_token)
        .upload_evidence(tokio_stream::iter(vec![p::UploadEvidenceRequest {
            project_id: project_id.clone(),
            file_name: "合同.pdf".into(),
            chunk: b"%PDF-1.4 a contract".to_vec(),
        }]))
        .await?
        .into_inner()
        .document
        .ok_or_else(|| anyhow::anyhow!("no document"))?;
    let plan_evidence = app
        .reporting(&admin)
        .upload_evidence(tokio_stream::iter(vec![r::UploadEvidenceRequest {
            plan_code: "xinbei-2020".into(),
            file_name: "申报表.pdf".into(),
            chunk: b"%PDF-1.4 a declaration".to_vec(),
        }]))
        .await?
        .into_inner()
        .document
        .ok_or_else(|| anyhow::anyhow!("no plan document"))?;
    let adjustment = app
        .projects(&contracted.company_token)
        .create_non_routine_adjustment(p::CreateNonRoutineAdjustmentRequest {
            request_id: rid("na"),
            adjustment: Some(p::NonRoutineAdjustment {
                project_id: project_id.clone(),
                start_date: date(cal.period_start),
                end_date: date(cal.period_end),
                litres: 1_000,
                reason: "a summer school on campus".into(),
                evidence: "registrar's notice 9".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .adjustment
        .ok_or_else(|| anyhow::anyhow!("no adjustment"))?;
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
    let proposed = app
        .projects(&contracted.user_token)
        .propose_verifier(p::ProposeVerifierRequest {
            request_id: rid("pv"),
            project_id: project_id.clone(),
            verifier_credit_code: fresh_credit_code("12320411"),
            note: String::new(),
        })
        .await?
        .into_inner()
        .proposal
        .ok_or_else(|| anyhow::anyhow!("no proposal"))?;
    app.projects(&admin)
        .decide_verifier_proposal(p::DecideVerifierProposalRequest {
            request_id: rid("dv"),
            proposal_id: proposed.id.clone(),
            decision: p::VerifierDecision::Decline as i32,
            reason: "the contract names another body".into(),
            expected_version: 0,
        })
        .await?;
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
    // The company is registered and approved in accounts too, so the membership rows have an
    // organization to answer about (its members act for it; others are not told it exists).
    let mut accounts =
        cwsm_proto::accounts::v1::accounts_service_client::AccountsServiceClient::with_interceptor(
            app.channel.clone(),
            cwsm_tests::bearer(&admin),
        );
    accounts
        .register_organization(a::RegisterOrganizationRequest {
            request_id: rid("reg"),
            credit_code: company.credit_code.clone(),
            name: company.name.clone(),
            kind: a::OrganizationKind::Company as i32,
            registrant: Some(a::NewCredentials {
                login: format!("sales-{}@example.com", cwsm_platform::new_id()),
                password: "a long enough password".into(),
                display_name: "李工".into(),
            }),
            ..Default::default()
        })
        .await?;
    accounts
        .approve_organization(a::ApproveOrganizationRequest {
            credit_code: company.credit_code.clone(),
            note: "checked".into(),
            expected_version: 0,
        })
        .await?;
    // A person of a company suspended after they signed in, and one who signed out everywhere.
    let suspended = signed_in_person(app, &mut accounts).await?;
    accounts
        .suspend_organization(a::SuspendOrganizationRequest {
            credit_code: suspended.1.clone(),
            reason: "licence withdrawn".into(),
            expected_version: 0,
        })
        .await?;
    let signed_out = signed_in_person(app, &mut accounts).await?;
    let district_admin = signed_in_member(
        app,
        &mut accounts,
        a::OrganizationKind::DistrictOffice,
        "11320411MB",
        "320411",
    )
    .await?;
    let other_district_admin = signed_in_member(
        app,
        &mut accounts,
        a::OrganizationKind::DistrictOffice,
        "11320412MB",
        "320412",
    )
    .await?;
    cwsm_proto::accounts::v1::accounts_service_client::AccountsServiceClient::with_interceptor(
        app.channel.clone(),
        cwsm_tests::bearer(&signed_out.0),
    )
    .sign_out_everywhere(a::SignOutEverywhereRequest::default())
    .await?;
    // The company's gateway, with an API key of its own; and another key, for the row that
    // revokes one.
    let gateway_key = api_key(&mut accounts, &company.credit_code).await?;
    let revocable_key = api_key(&mut accounts, &company.credit_code).await?;
    let gateway = cwsm_proto::accounts::v1::accounts_service_client::AccountsServiceClient::new(
        app.channel.clone(),
    )
    .exchange_api_key(a::ExchangeApiKeyRequest {
        api_key: gateway_key.1,
    })
    .await?
    .into_inner()
    .access_token;
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
        (Suspended, Some(suspended.0)),
        (SignedOut, Some(signed_out.0)),
        (DistrictAdmin, Some(district_admin.0)),
        (OtherDistrictAdmin, Some(other_district_admin.0)),
        (Gateway, Some(gateway)),
    ]);
    Ok(World {
        tokens,
        api_key_id: revocable_key.0,
        project,
        company,
        user,
        offering_id,
        meter_id: meter.id,
        period,
        reading,
        declined_proposal_id: proposed.id,
        correction_id: correction.id,
        adjustment_id: adjustment.id,
        evidence_sha256: evidence.sha256,
        plan_evidence_sha256: plan_evidence.sha256,
    })
}

type AdminAccounts = cwsm_proto::accounts::v1::accounts_service_client::AccountsServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, cwsm_tests::Bearer>,
>;
/// A new API key of `credit_code`, made by the administrator of `accounts`: (id, key).
async fn api_key(
    accounts: &mut cwsm_proto::accounts::v1::accounts_service_client::AccountsServiceClient<
        tonic::service::interceptor::InterceptedService<Channel, cwsm_tests::Bearer>,
    >,
    credit_code: &str,
) -> anyhow::Result<(String, String)> {
    let made = accounts
        .create_api_key(a::CreateApiKeyRequest {
            credit_code: credit_code.to_string(),
            name: "水表网关".into(),
            valid_days: 30,
            request_id: rid("key"),
        })
        .await?
        .into_inner();
    Ok((made.key.unwrap_or_default().id, made.api_key))
}

/// A company registered and approved in accounts, and the access token of its first member
/// signed in with a password: (token, the company's credit code).
async fn signed_in_person(
    app: &TestApp,
    accounts: &mut AdminAccounts,
) -> anyhow::Result<(String, String)> {
    signed_in_member(
        app,
        accounts,
        a::OrganizationKind::Company,
        "91320411MA",
        "",
    )
    .await
}

/// An organization of `kind` (credit code starting with `prefix`) registered in
/// `jurisdiction` (empty: the platform's district) and approved, and the access token of its
/// first member signed in with a password: (token, its credit code).
async fn signed_in_member(
    app: &TestApp,
    accounts: &mut AdminAccounts,
    kind: a::OrganizationKind,
    prefix: &str,
    jurisdiction: &str,
) -> anyhow::Result<(String, String)> {
    let code = fresh_credit_code(prefix);
    let login = format!("p-{}@example.com", cwsm_platform::new_id());
    let password = "a long enough password";
    accounts
        .register_organization(a::RegisterOrganizationRequest {
            request_id: rid("reg"),
            credit_code: code.clone(),
            name: match kind {
                a::OrganizationKind::DistrictOffice => "区水利局",
                _ => "常州某节水服务公司",
            }
            .into(),
            kind: kind as i32,
            jurisdiction: jurisdiction.into(),
            registrant: Some(a::NewCredentials {
                login: login.clone(),
                password: password.into(),
                display_name: "张工".into(),
            }),
            ..Default::default()
        })
        .await?;
    accounts
        .approve_organization(a::ApproveOrganizationRequest {
            credit_code: code.clone(),
            note: "checked".into(),
            expected_version: 0,
        })
        .await?;
    let tokens = cwsm_proto::accounts::v1::accounts_service_client::AccountsServiceClient::new(
        app.channel.clone(),
    )
    .sign_in(a::SignInRequest {
        login,
        password: password.into(),
        credit_code: String::new(),
    })
    .await?
    .into_inner()
    .tokens
    .ok_or_else(|| anyhow::anyhow!("no tokens"))?;
    Ok((tokens.access_token, code))
}

/// One row per RPC: the request sent and what each caller gets. The company's gateway gets
/// what the company gets, except where an API key's token would decide who may act for the
/// company (new keys, revocations, invitations, removals): PERMISSION_DENIED.
fn rows(w: &World) -> Vec<(&'static str, Vec<u8>, Expect)> {
    let mut rows = rows_for_people(w);
    for (name, _, expect) in &mut rows {
        let code = match *name {
            "CreateApiKey" | "RevokeApiKey" | "CreateInvitation" | "RemoveMember" => {
                Code::PermissionDenied
            }
            _ => expect.0.get(&Company).copied().unwrap_or(Code::Unknown),
        };
        expect.0.insert(Gateway, code);
    }
    rows
}

/// The rows, as people's and operators' tokens get them.
fn rows_for_people(w: &World) -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Code::*;
    let project_id = w.project.id.clone();
    let period_id = w.period.id.clone();
    let request_id = w.project.project_request_id.clone();
    let proposal_id = w.project.proposal_id.clone();
    let company_code = w.company.credit_code.clone();
    const STALE: i64 = 9_999;
    vec![
        // -- accounts: sign-in and registration are open to anyone; the rest by membership --
        (
            "RegisterOrganization",
            a::RegisterOrganizationRequest {
                request_id: rid("reg"),
                credit_code: "not-a-code".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::public(InvalidArgument),
        ),
        (
            // The company (of 320411) is approved already: its administrators are told it is,
            // another district's is denied before that.
            "ApproveOrganization",
            a::ApproveOrganizationRequest {
                credit_code: company_code.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::only(&[Admin], FailedPrecondition, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
        ),
        (
            "SuspendOrganization",
            a::SuspendOrganizationRequest {
                credit_code: company_code.clone(),
                reason: "audit".into(),
                expected_version: STALE,
            }
            .encode_to_vec(),
            Expect::only(&[Admin], Aborted, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
        ),
        (
            "GetOrganization",
            a::GetOrganizationRequest {
                credit_code: company_code.clone(),
            }
            .encode_to_vec(),
            Expect::only(&[Admin, Company], Ok, NotFound).with(OtherDistrictAdmin, NotFound),
        ),
        (
            "ListOrganizations",
            a::ListOrganizationsRequest::default().encode_to_vec(),
            Expect::only(&[Admin], Ok, PermissionDenied),
        ),
        (
            "CreateInvitation",
            a::CreateInvitationRequest {
                request_id: rid("inv"),
                credit_code: company_code.clone(),
                valid_hours: 24,
            }
            .encode_to_vec(),
            Expect::only(&[Admin, Company], Ok, NotFound).with(OtherDistrictAdmin, NotFound),
        ),
        (
            "AcceptInvitation",
            a::AcceptInvitationRequest {
                request_id: rid("join"),
                code: "no-such-invitation".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::public(InvalidArgument),
        ),
        (
            "ListMembers",
            a::ListMembersRequest {
                credit_code: company_code.clone(),
            }
            .encode_to_vec(),
            Expect::only(&[Admin, Company], Ok, NotFound).with(OtherDistrictAdmin, NotFound),
        ),
        (
            "RemoveMember",
            a::RemoveMemberRequest {
                credit_code: company_code.clone(),
                person_id: "no-such-person".into(),
            }
            .encode_to_vec(),
            Expect::only(&[Admin, Company], NotFound, NotFound),
        ),
        (
            "SignIn",
            a::SignInRequest {
                login: "nobody@example.com".into(),
                password: "not the password".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::all(Unauthenticated),
        ),
        (
            "RefreshToken",
            a::RefreshTokenRequest {
                refresh_token: "not-a-refresh-token".into(),
            }
            .encode_to_vec(),
            Expect::all(Unauthenticated),
        ),
        (
            "SignOut",
            a::SignOutRequest {
                refresh_token: "not-a-refresh-token".into(),
            }
            .encode_to_vec(),
            Expect::public(Ok),
        ),
        (
            // Operators' tokens have no sessions; a person's are ended (the matrix runs this
            // row last, so the signed-in administrators' tokens serve every other row).
            "SignOutEverywhere",
            a::SignOutEverywhereRequest::default().encode_to_vec(),
            Expect::all(FailedPrecondition)
                .with(DistrictAdmin, Ok)
                .with(OtherDistrictAdmin, Ok),
        ),
        (
            "GetVerificationKeys",
            a::GetVerificationKeysRequest::default().encode_to_vec(),
            Expect::public(Ok),
        ),
        (
            // The keys are the platform's: its operators only, no district's administrator.
            "RotateSigningKey",
            a::RotateSigningKeyRequest::default().encode_to_vec(),
            Expect::only(&[Admin], Ok, PermissionDenied)
                .with(DistrictAdmin, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
        ),
        (
            "ListAuditEvents",
            a::ListAuditEventsRequest::default().encode_to_vec(),
            Expect::only(&[Admin], Ok, PermissionDenied),
        ),
        // -- accounts: sign-in through an external OpenID provider (none is configured here) --
        (
            "StartExternalSignIn",
            a::StartExternalSignInRequest {
                provider: "no-such-sso".into(),
                redirect_uri: "https://cwsm.example.cn/signed-in".into(),
            }
            .encode_to_vec(),
            Expect::public(InvalidArgument),
        ),
        (
            "CompleteExternalSignIn",
            a::CompleteExternalSignInRequest {
                state: "no-such-state".into(),
                code: "some-code".into(),
                credit_code: String::new(),
            }
            .encode_to_vec(),
            Expect::public(Unauthenticated),
        ),
        (
            // The provider is checked after the caller: administrators are told it is unknown.
            "LinkExternalIdentity",
            a::LinkExternalIdentityRequest {
                request_id: rid("link"),
                person_id: "no-such-person".into(),
                provider: "no-such-sso".into(),
                subject: "someone".into(),
            }
            .encode_to_vec(),
            Expect::only(&[Admin], InvalidArgument, PermissionDenied),
        ),
        (
            "ListExternalIdentities",
            a::ListExternalIdentitiesRequest {
                person_id: "no-such-person".into(),
            }
            .encode_to_vec(),
            Expect::only(&[Admin], Ok, PermissionDenied),
        ),
        (
            "UnlinkExternalIdentity",
            a::UnlinkExternalIdentityRequest {
                provider: "no-such-sso".into(),
                subject: "someone".into(),
            }
            .encode_to_vec(),
            Expect::only(&[Admin], InvalidArgument, PermissionDenied),
        ),
        (
            "CreateApiKey",
            a::CreateApiKeyRequest {
                credit_code: company_code.clone(),
                name: "gateway".into(),
                valid_days: 30,
                request_id: rid("key"),
            }
            .encode_to_vec(),
            // A company of 320411: another district's administrator does not see it.
            Expect::only(&[Admin, Company], Ok, NotFound).with(OtherDistrictAdmin, NotFound),
        ),
        (
            "ListApiKeys",
            a::ListApiKeysRequest {
                credit_code: company_code.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            // A company of 320411: another district's administrator does not see it.
            Expect::only(&[Admin, Company], Ok, NotFound).with(OtherDistrictAdmin, NotFound),
        ),
        (
            // Revoking a revoked key answers it as it is, so both who may revoke get OK.
            "RevokeApiKey",
            a::RevokeApiKeyRequest {
                id: w.api_key_id.clone(),
            }
            .encode_to_vec(),
            // A company of 320411: another district's administrator does not see it.
            Expect::only(&[Admin, Company], Ok, NotFound).with(OtherDistrictAdmin, NotFound),
        ),
        (
            "ExchangeApiKey",
            a::ExchangeApiKeyRequest {
                api_key: "cwsm_ak_not-a-key_x".into(),
            }
            .encode_to_vec(),
            Expect::public(Unauthenticated),
        ),
        (
            "SuspendPerson",
            a::SuspendPersonRequest {
                person_id: "no-such-person".into(),
                reason: "audit".into(),
            }
            .encode_to_vec(),
            Expect::only(&[Admin], NotFound, PermissionDenied),
        ),
        (
            "ReinstatePerson",
            a::ReinstatePersonRequest {
                person_id: "no-such-person".into(),
            }
            .encode_to_vec(),
            Expect::only(&[Admin], NotFound, PermissionDenied),
        ),
        // -- matching: companies and offerings (records are public; writes are the owner's) --
        (
            "CreateCompany",
            m::CreateCompanyRequest {
                request_id: rid("c"),
                company: Some(w.company.clone()),
            }
            .encode_to_vec(),
            Expect::only(&[Admin, Company], AlreadyExists, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
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
            Expect::only(&[Admin, Company], InvalidArgument, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
        ),
        (
            // The company's district confirms grades, never the company itself nor another
            // district; at a stale version, so the administrators' calls change nothing.
            "ConfirmCertification",
            m::ConfirmCertificationRequest {
                company_id: w.company.id.clone(),
                grade: types::CertificationGrade::A as i32,
                note: String::new(),
                request_id: rid("cc"),
                expected_version: STALE,
            }
            .encode_to_vec(),
            Expect::only(&[Admin], Aborted, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
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
            Expect::only(&[Admin, Company], Ok, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
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
            Expect::only(&[Admin, Company], InvalidArgument, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
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
            Expect::only(&[Admin, Company], Ok, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
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
            Expect::only(&[Admin, Company], Aborted, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
        ),
        // -- matching: water users and their requests --
        (
            "CreateWaterUser",
            m::CreateWaterUserRequest {
                request_id: rid("w"),
                water_user: Some(w.user.clone()),
            }
            .encode_to_vec(),
            Expect::only(&[Admin, User], AlreadyExists, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
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
            Expect::only(&[Admin, User], InvalidArgument, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
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
            Expect::only(&[Admin, User], Ok, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
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
            Expect::only(&[Admin, User], InvalidArgument, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
        ),
        (
            "OpenProjectRequest",
            m::OpenProjectRequestRequest {
                request_id: rid("or"),
                project_request_id: request_id.clone(),
                expected_version: STALE,
            }
            .encode_to_vec(),
            Expect::only(&[Admin, User], FailedPrecondition, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
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
            Expect::only(&[Admin, User], FailedPrecondition, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
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
            Expect::only(&[Admin, User], FailedPrecondition, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
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
            Expect::only(&[Admin, Company], FailedPrecondition, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
        ),
        (
            "GetProposal",
            m::GetProposalRequest {
                proposal_id: proposal_id.clone(),
            }
            .encode_to_vec(),
            Expect::only(&[Admin, Service, Company, User], Ok, NotFound)
                .with(OtherDistrictAdmin, NotFound),
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
            Expect::only(&[Admin, User], Ok, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
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
            Expect::only(&[Admin, User], FailedPrecondition, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
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
            Expect::only(&[Admin, Company], FailedPrecondition, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
        ),
        // -- projects: read by the parties, the assigned verifier and administrators --
        (
            // An administrator enters a project signed outside the platform; the empty
            // request is then INVALID_ARGUMENT (request_id), for anyone else PERMISSION_DENIED.
            "CreateProject",
            p::CreateProjectRequest::default().encode_to_vec(),
            Expect::only(&[Admin], InvalidArgument, PermissionDenied),
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
            // The parties propose (here a body that is not independent); administrators
            // assign directly.
            "ProposeVerifier",
            p::ProposeVerifierRequest {
                request_id: rid("pv"),
                project_id: project_id.clone(),
                verifier_credit_code: company_code.clone(),
                note: String::new(),
            }
            .encode_to_vec(),
            Expect::project(&[Company, User], FailedPrecondition),
        ),
        (
            "ListVerifierProposals",
            p::ListVerifierProposalsRequest {
                project_id: project_id.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::project_read(),
        ),
        (
            // Declined already: administrators get past the check to its state.
            "DecideVerifierProposal",
            p::DecideVerifierProposalRequest {
                request_id: rid("dv"),
                proposal_id: w.declined_proposal_id.clone(),
                decision: p::VerifierDecision::Approve as i32,
                reason: String::new(),
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
                readings: vec![w.reading],
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::all(Ok)
                .with(User, PermissionDenied)
                .with(Verifier, PermissionDenied),
        ),
        (
            // The first reading is in the baseline, agreed since the period was submitted:
            // the parties get past the check to that.
            "ProposeReadingCorrection",
            p::ProposeReadingCorrectionRequest {
                request_id: rid("prc"),
                correction: Some(p::ReadingCorrection {
                    meter_id: w.meter_id.clone(),
                    read_time: w.reading.read_time,
                    action: p::CorrectionAction::Exclude as i32,
                    reason: "a burst main, repaired".into(),
                    evidence: "repair order 7".into(),
                    ..Default::default()
                }),
            }
            .encode_to_vec(),
            Expect::project(&[Admin, Company, User], FailedPrecondition),
        ),
        (
            // Only the assigned verifier decides.
            "DecideReadingCorrection",
            p::DecideReadingCorrectionRequest {
                request_id: rid("drc"),
                correction_id: w.correction_id.clone(),
                expected_version: STALE,
                accept: true,
                note: String::new(),
            }
            .encode_to_vec(),
            Expect::project(&[Verifier], Aborted),
        ),
        (
            "ListReadingCorrections",
            p::ListReadingCorrectionsRequest {
                project_id: w.project.id.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::project_read(),
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
            // Only the assigned verifier decides.
            "DecideNonRoutineAdjustment",
            p::DecideNonRoutineAdjustmentRequest {
                request_id: rid("dna"),
                adjustment_id: w.adjustment_id.clone(),
                expected_version: STALE,
                approve: true,
                note: String::new(),
            }
            .encode_to_vec(),
            Expect::project(&[Verifier], Aborted),
        ),
        (
            // Not a document type: the uploaders get past the check to that.
            "ProjectsService.UploadEvidence",
            p::UploadEvidenceRequest {
                project_id: project_id.clone(),
                file_name: "x.pdf".into(),
                chunk: b"MZ not a pdf".to_vec(),
            }
            .encode_to_vec(),
            Expect::project(&[Admin, Company, User, Verifier], InvalidArgument),
        ),
        (
            "ProjectsService.GetEvidence",
            p::GetEvidenceRequest {
                project_id: project_id.clone(),
                sha256: w.evidence_sha256.clone(),
            }
            .encode_to_vec(),
            Expect::project_read(),
        ),
        (
            "ProjectsService.ListEvidence",
            p::ListEvidenceRequest {
                project_id: project_id.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::project_read(),
        ),
        (
            "ListDriverValueChanges",
            p::ListDriverValueChangesRequest {
                project_id: project_id.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::project_read(),
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
            // Only the assigned verifier waives; this period is submitted already.
            "WaivePeriodCheck",
            p::WaivePeriodCheckRequest {
                request_id: rid("wc"),
                project_id: project_id.clone(),
                start_date: w.period.start_date.clone(),
                check: p::MeasurementCheck::BaselineG14 as i32,
                reason: "checked by hand".into(),
            }
            .encode_to_vec(),
            Expect::project(&[Verifier], FailedPrecondition),
        ),
        (
            // The submitted period's report, drawn now (not verified yet).
            "GetVerificationReport",
            p::GetVerificationReportRequest {
                period_id: period_id.clone(),
                format: p::ReportFormat::Html as i32,
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::project_read(),
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
            // Raised by a party only; the assigned verifier or an administrator resolves.
            "DisputePeriod",
            p::DisputePeriodRequest {
                request_id: rid("dp"),
                period_id: period_id.clone(),
                expected_version: STALE,
                reason: "the meter was replaced".into(),
            }
            .encode_to_vec(),
            Expect::project(&[Company, User], Aborted),
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
            // Xinbei's plan: Wujin's administrators may not record toward it.
            Expect::only(&[Admin], InvalidArgument, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
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
            // The projects of Xinbei's plan, by name: its administrators (and the operators).
            Expect::only(&[Admin], Ok, PermissionDenied).with(OtherDistrictAdmin, PermissionDenied),
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
        (
            "ApproveAchievement",
            r::ApproveAchievementRequest {
                request_id: rid("aa"),
                achievement_id: "no-such-achievement".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::only(&[Admin], NotFound, PermissionDenied),
        ),
        (
            "RejectAchievement",
            r::RejectAchievementRequest {
                request_id: rid("rj"),
                achievement_id: "no-such-achievement".into(),
                reason: "no evidence".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::only(&[Admin], NotFound, PermissionDenied),
        ),
        (
            "GetRollup",
            r::GetRollupRequest {
                jurisdiction_code: "320400".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            // Public like the reports it is made of.
            Expect::all(Ok),
        ),
        (
            // Not a document type: those who record the plan's achievements get past the
            // check to that; Wujin's administrators may not upload to Xinbei's plan.
            "ReportingService.UploadEvidence",
            r::UploadEvidenceRequest {
                plan_code: "xinbei-2020".into(),
                file_name: "x.pdf".into(),
                chunk: b"MZ not a pdf".to_vec(),
            }
            .encode_to_vec(),
            Expect::only(&[Admin], InvalidArgument, PermissionDenied)
                .with(OtherDistrictAdmin, PermissionDenied),
        ),
        (
            // Read like the achievements it backs: every signed-in caller.
            "ReportingService.GetEvidence",
            r::GetEvidenceRequest {
                plan_code: "xinbei-2020".into(),
                sha256: w.plan_evidence_sha256.clone(),
            }
            .encode_to_vec(),
            Expect::all(Ok),
        ),
        (
            "ReportingService.ListEvidence",
            r::ListEvidenceRequest {
                plan_code: "xinbei-2020".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            Expect::all(Ok),
        ),
    ]
}

async fn the_matrix(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let w = world(&app).await?;
    let rpcs = every_rpc()?;
    let mut rows = rows(&w);
    // SignOutEverywhere ends the signed-in callers' sessions: last (a stable sort).
    rows.sort_by_key(|(name, _, _)| *name == "SignOutEverywhere");
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
            let want = expect.want(caller);
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

// ---------------------------------------------------------------------------------------
// The findings, one scenario each
// ---------------------------------------------------------------------------------------

/// The parties of a project contracted through the marketplace, as the admin reads them.
async fn parties_of(app: &TestApp, project_id: &str) -> anyhow::Result<p::Project> {
    app.projects(&app.token(Role::Admin, None))
        .get_project(p::GetProjectRequest {
            project_id: project_id.to_string(),
        })
        .await?
        .into_inner()
        .project
        .ok_or_else(|| anyhow::anyhow!("no project"))
}

/// Finding 1: a token acts for an organization only in the role the organization has here.
async fn acts_only_in_its_role(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let c = contract_a_project(&app, "新桥街道").await?;
    let project = parties_of(&app, &c.project_id).await?;
    let company = project.company.clone().unwrap_or_default();
    let user = project.water_user.clone().unwrap_or_default();
    let admin = app.token(Role::Admin, None);

    // A verifier-role token whose org is the company's: not the company.
    let verifier_as_company = app.token(Role::Verifier, Some(&company.credit_code));
    let mut record = app
        .matching(&admin)
        .get_company(m::GetCompanyRequest {
            company_id: company.id.clone(),
            credit_code: String::new(),
        })
        .await?
        .into_inner()
        .company
        .unwrap_or_default();
    record.name = "改名".into();
    let err = app
        .matching(&verifier_as_company)
        .update_company(m::UpdateCompanyRequest {
            request_id: rid("u"),
            company: Some(record.clone()),
            expected_version: 0,
        })
        .await
        .expect_err("a verifier token does not act for a company");
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    // … nor measure the company's project (to it the project does not exist).
    let err = meter(&app, &verifier_as_company, &c.project_id)
        .await
        .expect_err("a verifier token does not register the company's meters");
    assert_eq!(
        err.downcast_ref::<tonic::Status>().map(|s| s.code()),
        Some(Code::NotFound)
    );
    // The company's own token may.
    app.matching(&c.company_token)
        .update_company(m::UpdateCompanyRequest {
            request_id: rid("u"),
            company: Some(record),
            expected_version: 0,
        })
        .await?;

    // A company-role token whose org is the water user's: not the water user.
    let company_as_user = app.token(Role::Company, Some(&user.credit_code));
    let err = app
        .matching(&company_as_user)
        .accept_proposal(m::AcceptProposalRequest {
            request_id: rid("a"),
            proposal_id: project.proposal_id.clone(),
            expected_version: 0,
        })
        .await
        .expect_err("a company token does not accept for a water user");
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    let err = app
        .matching(&company_as_user)
        .create_project_request(m::CreateProjectRequestRequest {
            request_id: rid("r"),
            project_request: Some(m::ProjectRequest {
                water_user_id: user.id.clone(),
                title: "Canteen water".into(),
                baseline_use_litres: 100_000_000,
                expected_savings_bp: 1000,
                price_fen_per_m3: 410,
                ..Default::default()
            }),
        })
        .await
        .expect_err("a company token does not ask for a water user");
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    let err = app
        .projects(&company_as_user)
        .get_project(p::GetProjectRequest {
            project_id: c.project_id.clone(),
        })
        .await
        .expect_err("a company token does not read as the water user");
    assert_eq!(err.code(), Code::NotFound);
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_acts_for_its_organization_only_in_its_role_on_sqlite() -> anyhow::Result<()> {
    acts_only_in_its_role(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_acts_for_its_organization_only_in_its_role_on_postgres() -> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    acts_only_in_its_role(Backend::Postgres).await
}

/// Every project a caller lists, page by page (`page_size` a page).
async fn listed(app: &TestApp, token: &str, page_size: i32) -> anyhow::Result<Vec<Vec<String>>> {
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .projects(token)
            .list_projects(p::ListProjectsRequest {
                page_size,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        pages.push(page.projects.iter().map(|p| p.id.clone()).collect());
        if page.next_page_token.is_empty() {
            return Ok(pages);
        }
        anyhow::ensure!(pages.len() < 100, "paging does not end");
        page_token = page.next_page_token;
    }
}

/// Finding 2: projects, their history, milestones and measurements are read by the parties,
/// the assigned verifier and administrators only; lists are filtered before paging.
async fn projects_read_by_their_own(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let mut ours = Vec::new();
    let mut parties = None;
    for _ in 0..3 {
        // The same company and water user each time, the test verifier assigned.
        let p = crate::projects::contracted(
            &app,
            types::ContractModel::SharedSavings,
            types::ContractTerms::default(),
            &[],
        )
        .await?;
        ours.push(p.project_id.clone());
        parties = Some(p);
    }
    let parties = parties.ok_or_else(|| anyhow::anyhow!("no project"))?;
    ours.sort();
    let other = contract_a_project(&app, "三井街道").await?;

    // Each party lists its three projects, two a page, and nothing else; so does the verifier.
    for token in [&parties.company, &parties.user, &parties.verifier] {
        let pages = listed(&app, token, 2).await?;
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1]);
        let mut seen: Vec<String> = pages.concat();
        seen.sort();
        assert_eq!(seen, ours);
    }
    assert_eq!(
        listed(&app, &other.company_token, 2).await?.concat(),
        vec![other.project_id.clone()]
    );
    let unassigned = app.token(Role::Verifier, Some(&fresh_credit_code("12320411")));
    assert!(listed(&app, &unassigned, 2).await?.concat().is_empty());
    assert_eq!(
        listed(&app, &parties.admin, 100).await?.concat().len(),
        4,
        "operators list every project"
    );
    // Administrators list the projects of their jurisdiction (all four are in 新北区 320411):
    // the city's (常州市 320400) all, another district's (武进区 320412) none; a department's
    // administrator none either (departments run no contracts).
    let mut accounts =
        cwsm_proto::accounts::v1::accounts_service_client::AccountsServiceClient::with_interceptor(
            app.channel.clone(),
            cwsm_tests::bearer(&parties.admin),
        );
    for (prefix, jurisdiction, expected) in [
        ("11320400MB", "320400", 4),
        ("11320411MB", "320411", 4),
        ("11320412MB", "320412", 0),
    ] {
        let (token, _) = signed_in_member(
            &app,
            &mut accounts,
            a::OrganizationKind::DistrictOffice,
            prefix,
            jurisdiction,
        )
        .await?;
        assert_eq!(
            listed(&app, &token, 3).await?.concat().len(),
            expected,
            "the administrators of {jurisdiction}"
        );
        let read = app
            .projects(&token)
            .get_project(p::GetProjectRequest {
                project_id: ours[0].clone(),
            })
            .await
            .map(|_| ())
            .map_err(|e| e.code());
        let want = if expected == 0 {
            Err(tonic::Code::NotFound)
        } else {
            Ok(())
        };
        assert_eq!(
            read, want,
            "the administrators of {jurisdiction} read ours[0]"
        );
    }

    // The other project's company reads none of ours: not the project, its history, its
    // milestones.
    let outsider = &other.company_token;
    let err = app
        .projects(outsider)
        .get_project(p::GetProjectRequest {
            project_id: ours[0].clone(),
        })
        .await
        .expect_err("not its project");
    assert_eq!(err.code(), Code::NotFound);
    let err = app
        .projects(outsider)
        .list_project_transitions(p::ListProjectTransitionsRequest {
            project_id: ours[0].clone(),
            ..Default::default()
        })
        .await
        .expect_err("not its project");
    assert_eq!(err.code(), Code::NotFound);
    let milestones = |token: String| {
        let mut client = app.projects(&token);
        async move {
            client
                .list_milestones(p::ListMilestonesRequest {
                    page_size: 100,
                    ..Default::default()
                })
                .await
                .map(|r| {
                    r.into_inner()
                        .milestones
                        .iter()
                        .map(|m| m.project_id.clone())
                        .collect::<BTreeSet<String>>()
                })
        }
    };
    assert_eq!(
        milestones(outsider.clone()).await?,
        BTreeSet::from([other.project_id.clone()])
    );
    // A service (reporting rebuilding its counts) reads the whole log, but no project.
    let service = app.token(Role::Service, None);
    assert_eq!(milestones(service.clone()).await?.len(), 4);
    let err = app
        .projects(&service)
        .get_project(p::GetProjectRequest {
            project_id: ours[0].clone(),
        })
        .await
        .expect_err("a service reads the log only");
    assert_eq!(err.code(), Code::NotFound);
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_are_read_by_their_parties_verifier_and_admins_only_on_sqlite()
-> anyhow::Result<()> {
    projects_read_by_their_own(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_are_read_by_their_parties_verifier_and_admins_only_on_postgres()
-> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    projects_read_by_their_own(Backend::Postgres).await
}

async fn step(
    app: &TestApp,
    token: &str,
    period_id: &str,
    what: &str,
) -> Result<p::PeriodSavings, tonic::Status> {
    let mut client = app.projects(token);
    let period_id = period_id.to_string();
    let period = match what {
        "verify" => {
            client
                .verify_period(p::VerifyPeriodRequest {
                    request_id: rid("v"),
                    period_id,
                    expected_version: 0,
                    note: String::new(),
                })
                .await?
                .into_inner()
                .period
        }
        "dispute" => {
            client
                .dispute_period(p::DisputePeriodRequest {
                    request_id: rid("d"),
                    period_id,
                    expected_version: 0,
                    reason: "the meter was replaced mid-month".into(),
                })
                .await?
                .into_inner()
                .period
        }
        _ => {
            client
                .resolve_dispute(p::ResolveDisputeRequest {
                    request_id: rid("r"),
                    period_id,
                    expected_version: 0,
                    adjustment_litres: -1_000,
                    note: "agreed on site".into(),
                })
                .await?
                .into_inner()
                .period
        }
    };
    Ok(period.unwrap_or_default())
}

/// Finding 3: an administrator assigns an independent verifier; only it verifies; disputes
/// are raised by a party (not the verifier) and never resolved by their raiser.
async fn assigned_verifier(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let admin = app.token(Role::Admin, None);
    let c = contract_a_project(&app, "新桥街道").await?;
    let project = parties_of(&app, &c.project_id).await?;
    assert_eq!(
        project.verifier_org, "",
        "no verifier until one is assigned"
    );
    let assign = |token: &str, org: &str, request_id: &str| {
        let mut client = app.projects(token);
        let req = p::AssignVerifierRequest {
            request_id: request_id.to_string(),
            project_id: c.project_id.clone(),
            verifier_org: org.to_string(),
            expected_version: 0,
        };
        async move { client.assign_verifier(req).await }
    };
    let body = test_verifier_org();
    let err = assign(&c.company_token, &body, &rid("a"))
        .await
        .expect_err("the company does not choose its verifier");
    assert_eq!(err.code(), Code::PermissionDenied);
    for party in [
        project.company.clone().unwrap_or_default().credit_code,
        project.water_user.clone().unwrap_or_default().credit_code,
    ] {
        let err = assign(&admin, &party, &rid("a"))
            .await
            .expect_err("a party is not independent");
        assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
        assert!(err.message().contains("independent"), "{}", err.message());
    }
    let err = assign(&admin, "notacode", &rid("a"))
        .await
        .expect_err("not a credit code");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(crate::projects::field(&err), "verifier_org");
    let key = rid("a");
    let first = assign(&admin, &body, &key).await?.into_inner().project;
    let again = assign(&admin, &body, &key).await?.into_inner().project;
    let first = first.unwrap_or_default();
    assert_eq!(first.verifier_org, body);
    assert_eq!(first.version, project.version + 1);
    assert_eq!(
        again.map(|p| p.version),
        Some(first.version),
        "a retry assigns once"
    );
    assert_eq!(
        parties_of(&app, &c.project_id).await?.version,
        first.version
    );

    // A measured, submitted period of a project with the test verifier assigned.
    let parties = crate::projects::contracted(
        &app,
        types::ContractModel::SharedSavings,
        types::ContractTerms::default(),
        &[],
    )
    .await?;
    let cal = Calendar::now();
    set_baseline(&app, &parties.company, &parties.project_id, &cal).await?;
    to_operating(&app, &parties).await?;
    let m = meter(&app, &parties.company, &parties.project_id).await?;
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
            project_id: parties.project_id.clone(),
            start_date: date(cal.period_start),
            note: String::new(),
        })
        .await?
        .into_inner()
        .period
        .unwrap_or_default();
    let unassigned = app.token(Role::Verifier, Some(&credit_code("12320411MB9K8J7H6")));
    let code = |r: Result<p::PeriodSavings, tonic::Status>| r.err().map(|s| s.code());
    // Another verifier body does not know the project; the parties and administrators are
    // told verification is the assigned verifier's.
    assert_eq!(
        code(step(&app, &unassigned, &period.id, "verify").await),
        Some(Code::NotFound)
    );
    for token in [&parties.admin, &parties.company, &parties.user] {
        let err = step(&app, token, &period.id, "verify")
            .await
            .expect_err("not the assigned verifier");
        assert_eq!(err.code(), Code::PermissionDenied);
        assert!(err.message().contains("assigned"), "{}", err.message());
    }
    // The verifier does not raise disputes (issue 10 §4: a party raises them, the assigned
    // verifier or an administrator resolves them); the water user does, an administrator resolves.
    let err = step(&app, &parties.verifier, &period.id, "dispute")
        .await
        .expect_err("a verifier raises no dispute");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message()
            .contains("raised by its company or its water user"),
        "{}",
        err.message()
    );
    step(&app, &parties.user, &period.id, "dispute").await?;
    let err = step(&app, &parties.user, &period.id, "resolve")
        .await
        .expect_err("its own dispute");
    assert_eq!(err.code(), Code::PermissionDenied);
    let resolved = step(&app, &parties.admin, &period.id, "resolve").await?;
    assert_eq!(resolved.status, p::PeriodStatus::Verified as i32);
    // The company disputes; it cannot resolve; another verifier cannot; the assigned one does.
    step(&app, &parties.company, &period.id, "dispute").await?;
    assert_eq!(
        code(step(&app, &parties.company, &period.id, "resolve").await),
        Some(Code::PermissionDenied)
    );
    assert_eq!(
        code(step(&app, &unassigned, &period.id, "resolve").await),
        Some(Code::NotFound)
    );
    step(&app, &parties.verifier, &period.id, "resolve").await?;
    // Administrators resolve disputes; they do not raise them.
    assert_eq!(
        code(step(&app, &parties.admin, &period.id, "dispute").await),
        Some(Code::PermissionDenied)
    );
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_assigned_verifier_verifies_and_no_one_resolves_their_own_dispute_on_sqlite()
-> anyhow::Result<()> {
    assigned_verifier(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_assigned_verifier_verifies_and_no_one_resolves_their_own_dispute_on_postgres()
-> anyhow::Result<()> {
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    assigned_verifier(Backend::Postgres).await
}

/// Finding 4: contact details are shown to the organization itself, administrators and a
/// counterparty a proposal links; others get the record with the contact empty.
async fn contacts(backend: Backend) -> anyhow::Result<()> {
    let app = TestApp::start(backend).await?;
    let admin = app.token(Role::Admin, None);
    let c = contract_a_project(&app, "新桥街道").await?;
    let project = parties_of(&app, &c.project_id).await?;
    let company_id = project.company.clone().unwrap_or_default().id;
    let user_id = project.water_user.clone().unwrap_or_default().id;
    // Both give their contact.
    let mut user = app
        .matching(&c.user_token)
        .get_water_user(m::GetWaterUserRequest {
            water_user_id: user_id.clone(),
            credit_code: String::new(),
        })
        .await?
        .into_inner()
        .water_user
        .unwrap_or_default();
    user.contact = Some(types::Contact {
        name: "王老师".into(),
        phone: "13800000000".into(),
        email: "wang@example.edu.cn".into(),
    });
    app.matching(&c.user_token)
        .update_water_user(m::UpdateWaterUserRequest {
            request_id: rid("u"),
            water_user: Some(user.clone()),
            expected_version: 0,
        })
        .await?;
    let mut company = app
        .matching(&c.company_token)
        .get_company(m::GetCompanyRequest {
            company_id: company_id.clone(),
            credit_code: String::new(),
        })
        .await?
        .into_inner()
        .company
        .unwrap_or_default();
    company.contact = Some(types::Contact {
        name: "李经理".into(),
        phone: "+86 519 8512 0000".into(),
        email: "li@qingyuan.example.com".into(),
    });
    app.matching(&c.company_token)
        .update_company(m::UpdateCompanyRequest {
            request_id: rid("c"),
            company: Some(company.clone()),
            expected_version: 0,
        })
        .await?;
    // Another company and another water user, linked to neither by any proposal.
    let stranger = contract_a_project(&app, "三井街道").await?;

    let user_contact = |token: String| {
        let mut client = app.matching(&token);
        let id = user_id.clone();
        async move {
            let got = client
                .get_water_user(m::GetWaterUserRequest {
                    water_user_id: id.clone(),
                    credit_code: String::new(),
                })
                .await?
                .into_inner()
                .water_user
                .and_then(|u| u.contact)
                .unwrap_or_default();
            let listed = client
                .list_water_users(m::ListWaterUsersRequest {
                    page_size: 100,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .water_users
                .into_iter()
                .find(|u| u.id == id)
                .and_then(|u| u.contact)
                .unwrap_or_default();
            anyhow::ensure!(got == listed, "Get and List show the same contact");
            anyhow::Ok(got)
        }
    };
    let company_contact = |token: String| {
        let mut client = app.matching(&token);
        let id = company_id.clone();
        async move {
            let got = client
                .get_company(m::GetCompanyRequest {
                    company_id: id.clone(),
                    credit_code: String::new(),
                })
                .await?
                .into_inner()
                .company
                .and_then(|c| c.contact)
                .unwrap_or_default();
            let listed = client
                .list_companies(m::ListCompaniesRequest {
                    page_size: 100,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .companies
                .into_iter()
                .find(|c| c.id == id)
                .and_then(|c| c.contact)
                .unwrap_or_default();
            anyhow::ensure!(got == listed, "Get and List show the same contact");
            anyhow::Ok(got)
        }
    };
    let full_user = user.contact.clone().unwrap_or_default();
    let full_company = company.contact.clone().unwrap_or_default();
    for token in [&c.user_token, &c.company_token, &admin] {
        assert_eq!(user_contact(token.clone()).await?, full_user);
        assert_eq!(company_contact(token.clone()).await?, full_company);
    }
    for token in [
        &stranger.company_token,
        &stranger.user_token,
        &app.token(Role::Verifier, Some(&test_verifier_org())),
    ] {
        assert_eq!(
            user_contact(token.clone()).await?,
            types::Contact::default()
        );
        assert_eq!(
            company_contact(token.clone()).await?,
            types::Contact::default()
        );
    }
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_details_are_shown_only_to_linked_counterparties_on_sqlite() -> anyhow::Result<()> {
    contacts(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_details_are_shown_only_to_linked_counterparties_on_postgres() -> anyhow::Result<()>
{
    if !postgres_and_redis_available().await {
        return Ok(());
    }
    contacts(Backend::Postgres).await
}
