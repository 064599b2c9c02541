//! `cwsm requests bench-rank`: how long ranking one request takes against 1,000, 10,000 and
//! 100,000 published offerings. A benchmark that prints figures, not a timed test.
//!
//! It starts its own matching service (a temporary SQLite file, the in-process bus, a random
//! port), writes a synthetic catalogue generated from a fixed seed (so every run ranks the same
//! data), and for each size prints, per ranking:
//! - `rank`: the ranking itself on the in-memory catalogue (hard filters, six parts, top-k);
//! - `handler`: what the RankOfferings handler does without the network (the request and its
//!   water user read, the catalogue-version check, the ranking);
//! - `grpc`: one RankOfferings call at a time over loopback gRPC (page of 20 plus up to 100
//!   excluded offerings in the reply);
//! - `load`: `--concurrency` callers of RankOfferings at once for `--seconds`: requests per
//!   second and latency.
//!
//! The gRPC figures are taken against the server as `cwsm serve` runs it (with `TCP_NODELAY` on
//! its sockets: without it, Nagle's algorithm meeting delayed ACKs cost about 40 ms a call).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use cwsm_matching::domain::*;
use cwsm_matching::ranking;
use cwsm_matching::store::Store;
use cwsm_platform::auth::{Keys, Role};
use cwsm_platform::bus::InProcessBus;
use cwsm_platform::config::Settings;
use cwsm_platform::idempotency::RequestKey;
use cwsm_platform::vocab::{CertificationGrade, ContractModel, Sector, Technology};
use cwsm_proto::matching::v1 as mpb;
use tokio_util::sync::CancellationToken;

use crate::app::{self, Services};
use crate::cli::Clients;
use cwsm_platform::sample::p50_p99_ms as percentiles;

#[derive(Args, Clone)]
pub struct BenchArgs {
    /// Catalogue sizes (published offerings), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    sizes: Vec<usize>,
    /// Rankings timed one at a time per size and way (rank, handler, grpc).
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// Concurrent gRPC callers of the load run; 0 skips it.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds of the load run per size.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Ranked offerings returned per call.
    #[arg(long, default_value_t = 20)]
    page_size: i32,
}

use cwsm_platform::sample::XorShift;

const TOWNS: [&str; 9] = [
    "新桥街道",
    "罗溪镇",
    "孟河镇",
    "春江街道",
    "西夏墅镇",
    "薛家镇",
    "三井街道",
    "龙虎塘街道",
    "河海街道",
];

/// Companies and offerings `from..to` of the synthetic catalogue (four offerings a company).
fn catalogue(from: usize, to: usize) -> (Vec<Company>, Vec<Offering>) {
    let mut companies = Vec::new();
    let mut offerings = Vec::new();
    for i in from..to {
        let c = i / 4;
        let mut rng =
            XorShift::new(0x9E37_79B9_7F4A_7C15 ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let company_id = format!("bench-company-{c:06}");
        if i % 4 == 0 {
            let mut crng =
                XorShift::new(0xC0FF_EE00_D15E_A5E5 ^ (c as u64 + 1).wrapping_mul(0x9E37_79B9));
            let projects = crng.below(6) as i64;
            let promised = projects * 100_000_000;
            let mut company = Company {
                id: company_id.clone(),
                profile: CompanyProfile {
                    credit_code: format!("BENCH{c:013}"),
                    name: format!("基准节水服务公司{c}"),
                    description: String::new(),
                    contact: Contact::default(),
                    towns: if crng.chance(30) {
                        vec![]
                    } else {
                        crng.some(&TOWNS, 4).into_iter().map(String::from).collect()
                    },
                    sectors: if crng.chance(30) {
                        vec![]
                    } else {
                        crng.some(Sector::ALL, 4)
                    },
                    claimed_certification: CertificationGrade::ALL
                        [crng.below(CertificationGrade::ALL.len())],
                    certification_evidence: String::new(),
                    financing_capacity_fen: 10_000_000 * (1 + crng.below(500) as i64),
                    jurisdiction_code: String::new(),
                },
                certification: Certification::default(),
                track_record: TrackRecord {
                    projects_completed: projects,
                    verified_savings_litres: promised * (60 + crng.below(50) as i64) / 100,
                    promised_savings_litres: promised,
                },
                created_at_ms: 0,
                updated_at_ms: 0,
                version: 1,
            };
            // Confirmed as claimed, so the benchmark ranks on grades as the district would.
            company.certification.grade = Some(company.profile.claimed_certification);
            companies.push(company);
        }
        let min = if rng.chance(50) {
            0
        } else {
            10_000_000 * rng.below(100) as i64
        };
        offerings.push(Offering {
            id: format!("bench-offering-{i:07}"),
            draft: OfferingDraft {
                company_id,
                title: format!("节水方案 {i}"),
                description: String::new(),
                technologies: rng.some(Technology::ALL, 3),
                contract_models: rng.some(ContractModel::ALL, 2),
                sectors: if rng.chance(70) {
                    vec![]
                } else {
                    rng.some(Sector::ALL, 3)
                },
                towns: vec![],
                min_investment_fen: min,
                max_investment_fen: if rng.chance(50) {
                    0
                } else {
                    min + 10_000_000 * (1 + rng.below(500) as i64)
                },
                typical_savings_bp: 1000 + rng.below(3500) as i32,
                typical_term_months: 60 + rng.below(61) as i32,
            },
            status: OfferingStatus::Published,
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 1,
        });
    }
    (companies, offerings)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("cwsm-bench-{}", cwsm_platform::new_id()));
    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.clone(),
        ..Settings::default()
    };
    let secret = format!("{}{}", cwsm_platform::new_id(), cwsm_platform::new_id());
    let keys = Arc::new(Keys::from_secret(secret.as_bytes())?);
    let running = app::start(
        &settings,
        Services::only("matching")?,
        Arc::new(InProcessBus::new()),
        keys.clone(),
        CancellationToken::new(),
    )
    .await
    .context("starting a matching service for the benchmark")?;
    let result = bench(&args, &running, &keys).await;
    running.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// p50 and p99 of `runs` RankOfferings calls one at a time, then requests per second, p50 and
/// p99 of `concurrency` callers for `seconds`, in ms.
async fn grpc_figures(
    args: &BenchArgs,
    clients: &Clients,
    call: &mpb::RankOfferingsRequest,
) -> anyhow::Result<[f64; 5]> {
    let mut one = Vec::with_capacity(args.runs);
    let mut client = clients.matching();
    for _ in 0..args.runs {
        let started = Instant::now();
        let reply = client.rank_offerings(call.clone()).await?;
        one.push(started.elapsed());
        std::hint::black_box(reply);
    }
    let (mut rps, mut load) = (0.0, Vec::new());
    if args.concurrency > 0 {
        let until = Instant::now() + Duration::from_secs(args.seconds);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..args.concurrency {
            let mut client = clients.matching();
            let call = call.clone();
            tasks.spawn(async move {
                let mut times = Vec::new();
                while Instant::now() < until {
                    let t = Instant::now();
                    client.rank_offerings(call.clone()).await?;
                    times.push(t.elapsed());
                }
                Ok::<_, tonic::Status>(times)
            });
        }
        while let Some(done) = tasks.join_next().await {
            load.extend(done??);
        }
        rps = load.len() as f64 / started.elapsed().as_secs_f64();
    }
    let (g50, g99) = percentiles(one);
    let (l50, l99) = percentiles(load);
    Ok([g50, g99, rps, l50, l99])
}

async fn bench(args: &BenchArgs, running: &app::Running, keys: &Keys) -> anyhow::Result<()> {
    let db = running
        .databases
        .iter()
        .find(|(name, _)| *name == "matching")
        .map(|(_, db)| db.clone())
        .context("no matching database")?;
    let store = Store::new(db);
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", running.addr))?
        .connect()
        .await?;
    let token = keys.issue("bench", Role::Admin, None, Duration::from_secs(3600))?;
    let clients = Clients::new(channel, token)?;

    // Written through the store, as the bench's own administrator.
    let bench = cwsm_platform::auth::Principal {
        subject: "bench".into(),
        role: Role::Admin,
        org: None,
        scope: cwsm_platform::auth::Scope::Platform,
    };
    let key = |id: &str| RequestKey::from_bytes(&bench, "bench", "", id, id.as_bytes());
    // The request: a university in 新桥街道 wanting leak detection and metering.
    let user = store
        .create_water_user(
            &key("bench-user")?,
            &WaterUserProfile {
                credit_code: "BENCHUSER000000001".into(),
                name: "基准大学".into(),
                sector: Sector::School,
                unit_type: "university".into(),
                town: "新桥街道".into(),
                jurisdiction_code: "320411004".into(),
                annual_use_litres: 2_430_000_000,
                annual_quota_litres: 0,
                contact: Contact::default(),
            },
        )
        .await?;
    let request = store
        .create_request(
            &key("bench-request")?,
            &RequestDraft {
                water_user_id: user.id.clone(),
                title: "校园供水管网节水改造".into(),
                problem: String::new(),
                scope: String::new(),
                baseline_use_litres: 2_430_000_000,
                expected_savings_bp: 2000,
                price_fen_per_m3: 410,
                preferred_contract_models: vec![
                    ContractModel::SharedSavings,
                    ContractModel::GuaranteedSavings,
                ],
                wanted_technologies: vec![Technology::LeakDetection, Technology::SmartMetering],
                investment_wanted_fen: 120_000_000,
                proposal_deadline: String::new(),
                visibility: Visibility::Public,
                invited_company_ids: vec![],
                indicator_tags: vec![],
            },
        )
        .await?;
    store
        .set_request_status(
            &key("bench-open")?,
            &request.id,
            0,
            &[RequestStatus::Draft],
            RequestStatus::Open,
            "",
        )
        .await?;

    let limit = usize::try_from(args.page_size).unwrap_or(20);
    println!(
        "Ranking one request against N published offerings (times per ranking, ms; {} runs; \
         load: {} callers for {} s)",
        args.runs, args.concurrency, args.seconds
    );
    println!(
        "{:>8} {:>7} {:>9} | {:>7} {:>7} | {:>7} {:>7} | {:>7} {:>7} | {:>8} {:>7} {:>7}",
        "N",
        "passed",
        "load_ms",
        "rank50",
        "rank99",
        "hand50",
        "hand99",
        "grpc50",
        "grpc99",
        "load_rps",
        "load50",
        "load99"
    );
    let mut have = 0;
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    for n in sizes {
        if n > have {
            let (companies, offerings) = catalogue(have, n);
            store.insert_catalog(&companies, &offerings).await?;
            have = n;
        }
        // The first ranking after a change loads the catalogue.
        let started = Instant::now();
        let catalog = store.published_offerings().await?;
        let load_ms = started.elapsed().as_secs_f64() * 1000.0;

        let mut rank = Vec::with_capacity(args.runs);
        let mut passed = 0;
        for _ in 0..args.runs {
            let started = Instant::now();
            let outcome = ranking::rank_catalog(&request, &user, &catalog, limit, 100);
            rank.push(started.elapsed());
            passed = outcome.ranked_total;
            std::hint::black_box(outcome);
        }

        let mut handler = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            let started = Instant::now();
            let found = store.request(&request.id).await?;
            let who = store.water_user(&found.draft.water_user_id).await?;
            let catalog = store.published_offerings().await?;
            let outcome = ranking::rank_catalog(&found, &who, &catalog, limit, 100);
            handler.push(started.elapsed());
            std::hint::black_box(outcome);
        }

        let call = mpb::RankOfferingsRequest {
            project_request_id: request.id.clone(),
            page_size: args.page_size,
        };
        let [g50, g99, rps, l50, l99] = grpc_figures(args, &clients, &call).await?;

        let (r50, r99) = percentiles(rank);
        let (h50, h99) = percentiles(handler);
        println!(
            "{n:>8} {passed:>7} {load_ms:>9.1} | {r50:>7.3} {r99:>7.3} | {h50:>7.3} {h99:>7.3} | {g50:>7.3} {g99:>7.3} | {rps:>8.0} {l50:>7.2} {l99:>7.2}"
        );
    }
    println!(
        "load_ms: the first ranking after a change reloads the catalogue; later ones check \
         catalog_version only."
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_the_same_every_time_and_in_any_slices() {
        let (c1, o1) = catalogue(0, 40);
        let (c2a, o2a) = catalogue(0, 20);
        let (c2b, o2b) = catalogue(20, 40);
        assert_eq!(c1.len(), 10);
        assert_eq!(c1, [c2a, c2b].concat());
        assert_eq!(o1, [o2a, o2b].concat());
        assert!(o1.iter().all(|o| o.draft.clone().validate("o").is_ok()));
        assert_eq!(percentiles(vec![]), (0.0, 0.0));
    }
}
