//! The embedded server killed in a loop (issue 17, item 5): the real `cwsm serve` binary (SQLite
//! files, in-process bus) runs as a child process on one data folder; projects move through the
//! marketplace and their lifecycle over gRPC, several at once; the server is killed with SIGKILL
//! 0 to 3 ms after the first, second or third call of a run whose event the test can check
//! returns (an acceptance of a proposal, or a project's acceptance step), 20 times, and started
//! again on the same folder, where the interrupted calls are retried with their request ids. At the end every
//! accepted proposal has its project, and the A7 indicator (technical retrofits accepted) counts
//! exactly the projects the projects service holds as accepted: nothing lost, nothing doubled.
//!
//! The kill lands just after a call's transaction committed, which is when its event sits in
//! the outbox or on the bus, on its way to a consumer in the same process.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use cwsm_platform::auth::{Keys, Role};
use cwsm_proto::matching::v1 as m;
use cwsm_proto::projects::v1 as p;
use cwsm_proto::types;
use cwsm_tests::{Clients, ServeProcess, eventually, fresh_credit_code};
use tonic::Code;

const A7: &str = "A7-TECH-RETROFITS";
const PLAN: &str = "xinbei-2020";
const TOWN: &str = "新桥街道";
const SECRET: &str = "embedded-crash-test-secret-of-32-bytes-or-more";
/// Server runs killed; one more run finishes the work uncut.
const KILLS: usize = 20;
/// Projects in all; each run starts a few more, so several are in flight at every kill.
const LANES: usize = 24;
const NEW_LANES_PER_RUN: usize = 2;
/// How long a run waits for a project to appear after its acceptance before calling it lost.
const PROJECT_WAIT: Duration = Duration::from_secs(5);
/// Steps of one lane: five marketplace calls, then three lifecycle steps.
const STEPS: usize = 8;

/// The company and its published offering, made once.
struct Market {
    run: String,
    company_token: String,
    company_id: String,
    offering_id: String,
}

/// One project's way from a water user to acceptance. Each step keeps its request id, so a
/// step cut by a kill is retried after the restart and answers the first result if it had
/// committed.
#[derive(Clone, Debug)]
struct Lane {
    n: usize,
    user_code: String,
    user_token: String,
    step: usize,
    water_user_id: String,
    project_request_id: String,
    proposal_id: String,
    project_id: String,
    /// Accepted, but the project never appeared.
    lost: bool,
}

impl Lane {
    fn done(&self) -> bool {
        self.step == STEPS || self.lost
    }
}

enum Outcome {
    Done,
    /// The project is not there yet (projects has not consumed the acceptance).
    NotYet,
}

fn missing(what: &str) -> tonic::Status {
    tonic::Status::internal(format!("the reply carries no {what}"))
}

/// Does `lane`'s next step.
async fn advance(c: &Clients, market: &Market, lane: &mut Lane) -> Result<Outcome, tonic::Status> {
    let rid = |label: &str| format!("{}-{}-{label}", market.run, lane.n);
    match lane.step {
        0 => {
            lane.water_user_id = c
                .matching(&lane.user_token)
                .create_water_user(m::CreateWaterUserRequest {
                    request_id: rid("user"),
                    water_user: Some(m::WaterUser {
                        credit_code: lane.user_code.clone(),
                        name: format!("常州精密机械厂 {}", lane.n),
                        sector: types::Sector::IndustrialEnterprise as i32,
                        unit_type: "factory".into(),
                        town: TOWN.into(),
                        annual_use_litres: 2_430_000_000,
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner()
                .water_user
                .ok_or_else(|| missing("water user"))?
                .id;
        }
        1 => {
            lane.project_request_id = c
                .matching(&lane.user_token)
                .create_project_request(m::CreateProjectRequestRequest {
                    request_id: rid("request"),
                    project_request: Some(m::ProjectRequest {
                        water_user_id: lane.water_user_id.clone(),
                        title: format!("Cooling water recycling {}", lane.n),
                        baseline_use_litres: 2_430_000_000,
                        expected_savings_bp: 2000,
                        price_fen_per_m3: 410,
                        preferred_contract_models: vec![types::ContractModel::SharedSavings as i32],
                        wanted_technologies: vec![types::Technology::LeakDetection as i32],
                        investment_wanted_fen: 120_000_000,
                        indicator_tags: vec![types::IndicatorTag::TechnicalRetrofit as i32],
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner()
                .project_request
                .ok_or_else(|| missing("project request"))?
                .id;
        }
        2 => {
            c.matching(&lane.user_token)
                .open_project_request(m::OpenProjectRequestRequest {
                    request_id: rid("open"),
                    project_request_id: lane.project_request_id.clone(),
                    expected_version: 0,
                })
                .await?;
        }
        3 => {
            lane.proposal_id = c
                .matching(&market.company_token)
                .create_proposal(m::CreateProposalRequest {
                    request_id: rid("proposal"),
                    proposal: Some(m::Proposal {
                        project_request_id: lane.project_request_id.clone(),
                        company_id: market.company_id.clone(),
                        offering_id: market.offering_id.clone(),
                        measures: "closed-loop cooling, leak repair".into(),
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
                        drivers: vec!["production".into()],
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner()
                .proposal
                .ok_or_else(|| missing("proposal"))?
                .id;
        }
        4 => {
            lane.project_id = c
                .matching(&lane.user_token)
                .accept_proposal(m::AcceptProposalRequest {
                    request_id: rid("accept"),
                    proposal_id: lane.proposal_id.clone(),
                    expected_version: 0,
                })
                .await?
                .into_inner()
                .project_id;
        }
        step => {
            let (stage, token) = match step {
                5 => (p::ProjectStage::Implementing, &market.company_token),
                6 => (p::ProjectStage::Commissioned, &market.company_token),
                _ => (p::ProjectStage::Accepted, &lane.user_token),
            };
            let moved = c
                .projects(token)
                .transition_project(p::TransitionProjectRequest {
                    request_id: rid(stage.as_str_name()),
                    project_id: lane.project_id.clone(),
                    to_stage: stage as i32,
                    reason: String::new(),
                    expected_version: 0,
                    evidence: format!("{} report {}", stage.as_str_name(), lane.n),
                    effective_date: String::new(),
                })
                .await;
            match moved {
                Err(status) if step == 5 && status.code() == Code::NotFound => {
                    return Ok(Outcome::NotYet);
                }
                other => {
                    other?;
                }
            }
        }
    }
    lane.step += 1;
    Ok(Outcome::Done)
}

/// What one run of the server did.
#[derive(Default)]
struct RunFigures {
    calls: usize,
    killed: bool,
}

/// Drives `lanes` on the server until it is killed `kill_after.1` after the `kill_after.0`-th
/// checked call returned (or, with `None`, until every lane is done). A call failing before the kill fails the test.
async fn drive(
    server: Arc<ServeProcess>,
    c: &Clients,
    market: &Arc<Market>,
    lanes: Vec<Lane>,
    kill_after: Option<(usize, Duration)>,
) -> anyhow::Result<(Vec<Lane>, RunFigures)> {
    let returned = Arc::new(AtomicUsize::new(0));
    let checked_calls = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, mut lane) in lanes.into_iter().enumerate() {
        let (c, market, server) = (c.clone(), market.clone(), server.clone());
        let (returned, killed) = (returned.clone(), killed.clone());
        let checked_calls = checked_calls.clone();
        tasks.spawn(async move {
            let mut waiting_since: Option<tokio::time::Instant> = None;
            while !lane.done() && !killed.load(Ordering::SeqCst) {
                match advance(&c, &market, &mut lane).await {
                    Ok(Outcome::Done) => {
                        waiting_since = None;
                        returned.fetch_add(1, Ordering::SeqCst);
                        // The calls whose events the test can check afterwards: an acceptance
                        // (its project must appear) and a project's acceptance (A7 counts it).
                        let checked = lane.step == 5 || lane.step == STEPS;
                        let n = if checked {
                            checked_calls.fetch_add(1, Ordering::SeqCst) + 1
                        } else {
                            0
                        };
                        if let Some((after, delay)) = kill_after
                            && n == after
                        {
                            // Right after the call returned: its transaction has committed,
                            // its event is on its way. (A spin: sleeps are too coarse.)
                            let start = std::time::Instant::now();
                            while start.elapsed() < delay {
                                std::hint::spin_loop();
                            }
                            killed.store(true, Ordering::SeqCst);
                            server.kill();
                        }
                    }
                    Ok(Outcome::NotYet) => {
                        let since = *waiting_since.get_or_insert_with(tokio::time::Instant::now);
                        if since.elapsed() > PROJECT_WAIT {
                            lane.lost = true;
                        } else {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    Err(_) if killed.load(Ordering::SeqCst) => break,
                    Err(status) => {
                        return Err(anyhow::anyhow!(
                            "lane {} step {} failed with the server up: {status:?}",
                            lane.n,
                            lane.step
                        ));
                    }
                }
            }
            Ok((index, lane))
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        out.push(joined??);
    }
    out.sort_by_key(|(index, _)| *index);
    let figures = RunFigures {
        calls: returned.load(Ordering::SeqCst),
        killed: killed.load(Ordering::SeqCst),
    };
    Ok((out.into_iter().map(|(_, lane)| lane).collect(), figures))
}

async fn setup(c: &Clients, run: &str) -> anyhow::Result<Market> {
    // The projects of this test take effect today: counted by a plan for this year.
    cwsm_tests::count_this_year(c.reporting(&c.token(Role::Admin, None))).await?;
    let code = fresh_credit_code("91320411MA");
    let company_token = c.token(Role::Company, Some(&code));
    let company = c
        .matching(&company_token)
        .create_company(m::CreateCompanyRequest {
            request_id: format!("{run}-company"),
            company: Some(m::Company {
                credit_code: code.clone(),
                name: "常州清源节水科技有限公司".into(),
                towns: vec![TOWN.into()],
                sectors: vec![types::Sector::IndustrialEnterprise as i32],
                certification_grade: types::CertificationGrade::Aaa as i32,
                financing_capacity_fen: 5_000_000_000,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .company
        .ok_or_else(|| anyhow::anyhow!("no company"))?;
    let offering = c
        .matching(&company_token)
        .create_offering(m::CreateOfferingRequest {
            request_id: format!("{run}-offering"),
            offering: Some(m::Offering {
                company_id: company.id.clone(),
                title: "Industrial cooling water retrofit".into(),
                technologies: vec![types::Technology::LeakDetection as i32],
                contract_models: vec![types::ContractModel::SharedSavings as i32],
                typical_savings_bp: 2500,
                typical_term_months: 96,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .offering
        .ok_or_else(|| anyhow::anyhow!("no offering"))?;
    c.matching(&company_token)
        .publish_offering(m::PublishOfferingRequest {
            request_id: format!("{run}-publish"),
            offering_id: offering.id.clone(),
            expected_version: 0,
        })
        .await?;
    Ok(Market {
        run: run.to_string(),
        company_token,
        company_id: company.id,
        offering_id: offering.id,
    })
}

/// A7's actual value, when the report answers.
async fn a7(c: &Clients, admin: &str) -> anyhow::Result<f64> {
    cwsm_tests::indicator_actual(c.reporting(admin), PLAN, A7).await
}

/// The projects A7 counted, every page (listed, so a double shows).
async fn counted(c: &Clients, admin: &str) -> anyhow::Result<Vec<String>> {
    cwsm_tests::counted_projects(c.reporting(admin), PLAN, A7).await
}

/// The projects service's own list of what A7 should count: accepted technical retrofits of
/// industrial enterprises.
async fn accepted_retrofits(c: &Clients, admin: &str) -> anyhow::Result<Vec<String>> {
    let mut projects = Vec::new();
    let mut page_token = String::new();
    for _ in 0..100 {
        let page = c
            .projects(admin)
            .list_projects(p::ListProjectsRequest {
                page_size: 100,
                page_token: page_token.clone(),
                stage: p::ProjectStage::Accepted as i32,
                sector: types::Sector::IndustrialEnterprise as i32,
                indicator_tag: types::IndicatorTag::TechnicalRetrofit as i32,
                ..Default::default()
            })
            .await?
            .into_inner();
        projects.extend(page.projects.into_iter().map(|p| p.id));
        if page.next_page_token.is_empty() {
            return Ok(projects);
        }
        page_token = page.next_page_token;
    }
    anyhow::bail!("more than 100 pages of projects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_server_killed_in_a_loop_loses_and_doubles_nothing_on_sqlite() -> anyhow::Result<()>
{
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_cwsm-serve"));
    let id = cwsm_platform::new_id().replace('-', "");
    let root = std::env::temp_dir().join(format!("cwsm-crash-{id}"));
    let data_dir = root.join("data");
    std::fs::create_dir_all(&root)?;
    let log = root.join("serve.log");
    let keys = Arc::new(Keys::from_secret(SECRET.as_bytes())?);
    let run = format!("crash-{id}");
    let result = async {
        let mut market = None;
        let mut lanes: Vec<Lane> = Vec::new();
        let mut calls = 0;
        let mut kills = 0;
        // (run, A7 short by) for the runs that started with counts missing.
        let mut short: Vec<(usize, f64)> = Vec::new();
        for life in 0..=KILLS {
            let server = Arc::new(ServeProcess::start(&bin, &data_dir, SECRET, &log)?);
            let c = server.clients(keys.clone())?;
            let market = match &market {
                Some(m) => Arc::clone(m),
                None => market.insert(Arc::new(setup(&c, &run).await?)).clone(),
            };
            let last = life == KILLS;
            if life > 0 {
                // What the last kill cost, if anything: A7 behind the accepted projects once the
                // restarted server has caught up (2 s at most).
                let admin = c.token(Role::Admin, None);
                let behind = || async {
                    let accepted = accepted_retrofits(&c, &admin).await.ok()?.len() as f64;
                    Some(accepted - a7(&c, &admin).await.ok()?)
                };
                let caught_up = eventually(Duration::from_secs(2), || async {
                    behind().await.filter(|b| *b == 0.0)
                })
                .await;
                if caught_up.is_none() {
                    short.push((life, behind().await.unwrap_or(f64::NAN)));
                }
            }
            let wanted = if last {
                LANES
            } else {
                (lanes.len() + NEW_LANES_PER_RUN).min(LANES)
            };
            while lanes.len() < wanted {
                let n = lanes.len();
                let user_code = fresh_credit_code("91320411MA");
                lanes.push(Lane {
                    n,
                    user_token: c.token(Role::WaterUser, Some(&user_code)),
                    user_code,
                    step: 0,
                    water_user_id: String::new(),
                    project_request_id: String::new(),
                    proposal_id: String::new(),
                    project_id: String::new(),
                    lost: false,
                });
            }
            // Killed 0 to 3 ms after the first, second or third checked call of this run
            // returned, a different moment each run.
            let kill_after = (!last).then(|| {
                (
                    1 + life % 3,
                    Duration::from_micros([0, 250, 500, 1000, 1500, 2000, 3000][life % 7]),
                )
            });
            let (done, figures) = drive(server.clone(), &c, &market, lanes, kill_after).await?;
            lanes = done;
            calls += figures.calls;
            if !last {
                // A run whose lanes all finished before the k-th call is killed now.
                server.kill();
                kills += 1;
            } else {
                anyhow::ensure!(!figures.killed, "the last run is not killed");
            }
            if last {
                let admin = c.token(Role::Admin, None);
                let lost: Vec<usize> = lanes.iter().filter(|l| l.lost).map(|l| l.n).collect();
                let expected = accepted_retrofits(&c, &admin).await?;
                let want = expected.len() as f64;
                let reached = eventually(Duration::from_secs(10), || async {
                    a7(&c, &admin).await.ok().filter(|v| *v == want)
                })
                .await;
                let actual = a7(&c, &admin).await?;
                let listed = counted(&c, &admin).await?;
                eprintln!(
                    "embedded_crash: {kills} kills of cwsm serve, {calls} calls returned, \
                     {} projects accepted by their water users ({} milestone events and {} \
                     acceptances), {} projects lost (acceptance consumed by nobody); A7 {actual} \
                     for {} accepted in the projects service, {} listed; runs that started with A7 \
                     short (run, short by): {short:?}",
                    lanes.len() - lost.len(),
                    3 * (lanes.len() - lost.len()),
                    lanes.len(),
                    lost.len(),
                    expected.len(),
                    listed.len()
                );
                anyhow::ensure!(
                    lost.is_empty(),
                    "lanes {lost:?}: the proposal was accepted but its project never appeared"
                );
                anyhow::ensure!(
                    lanes.iter().all(|l| l.step == STEPS),
                    "every lane reached acceptance"
                );
                assert_eq!(expected.len(), LANES, "projects accepted");
                assert!(
                    reached.is_some(),
                    "A7 counts {actual}, the projects service holds {want} accepted"
                );
                let unique: HashSet<&String> = listed.iter().collect();
                assert_eq!(unique.len(), listed.len(), "no project counted twice");
                let expected: HashSet<&String> = expected.iter().collect();
                assert_eq!(unique, expected, "A7 counts exactly the accepted projects");
            }
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        eprintln!("cwsm serve's output: {}", log.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}
