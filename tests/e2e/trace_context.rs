//! One trace follows a request from the client through matching and, across the events, into
//! projects and reporting: the trace context rides in gRPC metadata and in event envelopes.

use std::time::Duration;

use cwsm_platform::auth::Role;
use cwsm_proto::matching::v1 as m;
use cwsm_proto::projects::v1 as p;
use cwsm_proto::types;
use cwsm_tests::{Backend, TestApp, credit_code, eventually};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

fn rid() -> String {
    format!("trace-{}", cwsm_platform::new_id())
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

// One thread, so that the scoped subscriber sees the spans of every task the app spawns.
#[tokio::test(flavor = "current_thread")]
async fn one_trace_crosses_matching_projects_and_reporting() -> anyhow::Result<()> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);
    // tracing-core decides whether a callsite is enabled, when only one dispatcher is
    // registered, by asking the default dispatcher *of the thread that first reaches it*: a test
    // running beside this one (no subscriber) would switch our spans off for good. A second
    // registered dispatcher makes it ask all of them, this test's included.
    let _second_dispatcher = tracing::Dispatch::new(tracing_subscriber::registry());

    let app = TestApp::start(Backend::Sqlite).await?;
    let admin = app.token(Role::Admin, None);
    let company_code = credit_code("91320411MA1TR4C3E");
    let user_code = credit_code("12320411466007788");
    let company_token = app.token(Role::Company, Some(&company_code));
    let user_token = app.token(Role::WaterUser, Some(&user_code));
    let company = app
        .matching(&company_token)
        .create_company(m::CreateCompanyRequest {
            request_id: rid(),
            company: Some(m::Company {
                credit_code: company_code.clone(),
                name: "追踪节水".into(),
                financing_capacity_fen: 10_000_000,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .company
        .unwrap_or_default();
    let user = app
        .matching(&user_token)
        .create_water_user(m::CreateWaterUserRequest {
            request_id: rid(),
            water_user: Some(m::WaterUser {
                credit_code: user_code.clone(),
                name: "追踪学院".into(),
                sector: types::Sector::School as i32,
                town: "新桥街道".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .water_user
        .unwrap_or_default();
    let request = app
        .matching(&user_token)
        .create_project_request(m::CreateProjectRequestRequest {
            request_id: rid(),
            project_request: Some(m::ProjectRequest {
                water_user_id: user.id.clone(),
                title: "Traced retrofit".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .project_request
        .unwrap_or_default();
    app.matching(&user_token)
        .open_project_request(m::OpenProjectRequestRequest {
            request_id: rid(),
            project_request_id: request.id.clone(),
            expected_version: 0,
        })
        .await?;
    let proposal = app
        .matching(&company_token)
        .create_proposal(m::CreateProposalRequest {
            request_id: rid(),
            proposal: Some(m::Proposal {
                project_request_id: request.id.clone(),
                company_id: company.id.clone(),
                measures: "fixtures".into(),
                promised_savings_litres: 1_000_000,
                contract_model: types::ContractModel::SharedSavings as i32,
                terms: Some(types::ContractTerms {
                    share_ratio_bp: 6000,
                    ..Default::default()
                }),
                contract_term_months: 60,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .proposal
        .unwrap_or_default();

    // The client's own span, sent along as `traceparent`.
    let root = tracing::info_span!("client accepts");
    let trace_id = root.context().span().span_context().trace_id();
    assert_ne!(trace_id, opentelemetry::trace::TraceId::INVALID);
    let traceparent = {
        let _entered = root.enter();
        cwsm_platform::telemetry::propagation::current_traceparent()
    };
    let mut accept = tonic::Request::new(m::AcceptProposalRequest {
        request_id: rid(),
        proposal_id: proposal.id.clone(),
        expected_version: 0,
    });
    accept
        .metadata_mut()
        .insert("traceparent", traceparent.parse()?);
    let project_id = app
        .matching(&user_token)
        .accept_proposal(accept)
        .await?
        .into_inner()
        .project_id;
    drop(root);

    // Wait for the project, then for reporting to have handled its contracted milestone.
    eventually(Duration::from_secs(20), || {
        let mut client = app.projects(&admin);
        let id = project_id.clone();
        async move {
            client
                .get_project(p::GetProjectRequest { project_id: id })
                .await
                .ok()
        }
    })
    .await
    .expect("project created");
    let spans = eventually(Duration::from_secs(20), || {
        let spans = exporter.get_finished_spans().unwrap_or_default();
        let reporting_done = spans.iter().any(|s| {
            s.name == "event"
                && attribute(s, "consumer").as_deref() == Some("reporting")
                && s.span_context.trace_id() == trace_id
        });
        async move { reporting_done.then_some(spans) }
    })
    .await;
    let Some(spans) = spans else {
        let all = exporter.get_finished_spans().unwrap_or_default();
        let summary: Vec<String> = all
            .iter()
            .map(|s| {
                format!(
                    "{} {:?} {}",
                    s.name,
                    attribute(s, "consumer"),
                    s.span_context.trace_id() == trace_id
                )
            })
            .collect();
        panic!(
            "reporting did not handle the milestone inside the client's trace; spans: {summary:?}"
        );
    };

    let in_trace = |name: &str, key: &str, value: &str| {
        spans.iter().any(|s| {
            s.name == name
                && s.span_context.trace_id() == trace_id
                && attribute(s, key).is_some_and(|v| v.contains(value))
        })
    };
    assert!(
        in_trace("grpc", "method", "AcceptProposal"),
        "matching's server span joins the client's trace"
    );
    assert!(
        in_trace("event", "consumer", "projects"),
        "projects' consumer span continues it"
    );
    assert!(
        in_trace("event", "consumer", "reporting"),
        "reporting's consumer span continues it"
    );

    app.stop().await?;
    let _ = provider.shutdown();
    Ok(())
}
