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
        })
        .await
        .expect_err("a 5,000-character reason");
    assert_eq!(field(&err), "reason");
    app.stop().await
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
