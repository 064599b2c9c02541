//! The demo marketplace: loads `seeds/demo/marketplace.toml` through the public gRPC API, as
//! the parties themselves would, with their own bearer tokens.
//!
//! 1. Companies register and publish their offerings.
//! 2. Water users register.
//! 3. Water users create and open project requests.
//! 4. Companies propose to the requests their offerings fit.
//! 5. Some water users accept a proposal; the projects service creates the project from the
//!    `ProposalAccepted` event, which the loader waits for.
//! 6. Accepted projects are moved along the normal lifecycle path to their target stage, each
//!    step by the party whose step it is (the company builds, commissions and operates; the
//!    water user accepts the works and takes them over).
//! 7. The accounts' people (one per role) sign in with the demo password.
//! 8. The plans' year, 2020: the other districts' plans ([`DEMO_PLANS`]: Wujin), the projects
//!    signed outside the platform in 2020 (`[[history]]`, entered by the district office with
//!    their signing date, then moved on their milestones' 2020 dates with evidence) and the
//!    2020 achievements (`[[achievements]]`). Steps 1–6 are dated today, outside 2020's window.
//!
//! Every call carries a deterministic `request_id` ("demo:…"), so a replayed call returns the
//! first result instead of duplicating it. The loader does nothing when any company already
//! exists ("demo data already loaded"), and it touches no database.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use cwsm_platform::auth::{Keys, Role};
use cwsm_platform::vocab::{
    CertificationGrade, ContractModel, IndicatorTag, MvOption, Sector, Technology,
};
use cwsm_proto::accounts::v1 as apb;
use cwsm_proto::accounts::v1::accounts_service_client::AccountsServiceClient;
use cwsm_proto::matching::v1 as mpb;
use cwsm_proto::matching::v1::matching_service_client::MatchingServiceClient;
use cwsm_proto::projects::v1 as ppb;
use cwsm_proto::projects::v1::projects_service_client::ProjectsServiceClient;
use cwsm_proto::reporting::v1 as rpb;
use cwsm_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use cwsm_proto::types;
use serde::Deserialize;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The demo data, embedded in the binary.
const MARKETPLACE: &str = include_str!("../../../seeds/demo/marketplace.toml");

/// How many parties the loader registers at once.
const LOAD_CONCURRENCY: usize = 16;

/// How long the loader's tokens live.
const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// How often and how long to wait for the projects service to create an accepted project.
const PROJECT_POLL_INTERVAL: Duration = Duration::from_millis(100);
const PROJECT_POLL_ATTEMPTS: u32 = 100;

/// What [`load`] created (all zeros when the demo data was already there).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub people: usize,
    pub companies: usize,
    pub water_users: usize,
    pub requests: usize,
    pub proposals: usize,
    pub projects: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} companies, {} water users, {} project requests, {} proposals, {} projects, {} people who sign in",
            self.companies,
            self.water_users,
            self.requests,
            self.proposals,
            self.projects,
            self.people
        )
    }
}

/// Loads the demo marketplace through the matching and projects services behind `channel`,
/// signing each party's token with `keys`. Returns zeros without changing anything when a
/// company already exists.
pub async fn load(channel: Channel, keys: &Keys) -> Result<Summary> {
    let data = Marketplace::parse(MARKETPLACE)?;
    let loader = Loader { channel, keys };

    let admin = loader.token("cwsm demo loader", Role::Admin, None)?;
    let existing = loader
        .matching(&admin)?
        .list_companies(mpb::ListCompaniesRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .context("listing companies to see whether the demo data is already loaded")?
        .into_inner();
    if !existing.companies.is_empty() {
        tracing::info!("demo data already loaded (companies exist); nothing to do");
        return Ok(Summary::default());
    }

    loader.run(&data).await
}

// ------------------------------------------------------------------------------------------
// The data file
// ------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Marketplace {
    towns: Vec<String>,
    companies: Vec<CompanyData>,
    water_users: Vec<WaterUserData>,
    requests: Vec<RequestData>,
    /// The rest of the district, generated from a seed (see [`Generated`]).
    #[serde(default)]
    generated: Option<Generated>,
    /// Projects signed outside the platform in the plans' year, entered by the district office
    /// with their dated milestones (CreateProject, TransitionProject.effective_date).
    #[serde(default)]
    history: Vec<HistoryData>,
    /// Achievements the district offices recorded in the plans' year (RecordAchievement).
    #[serde(default)]
    achievements: Vec<AchievementData>,
}

/// A project signed outside the platform, with its milestones' dates and evidence.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryData {
    key: String,
    /// Key of the demo company that carried it out.
    company: String,
    title: String,
    water_user: HistoricUserData,
    contract_model: ContractModel,
    investment_fen: i64,
    promised_savings_litres: i64,
    #[serde(default)]
    indicator_tags: Vec<IndicatorTag>,
    /// In order, starting with the signing (`contracted`); each step on the normal path.
    milestones: Vec<MilestoneData>,
}

/// The water user of a project entered from history (not one of the marketplace's parties).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoricUserData {
    /// First 17 characters; the check character is appended.
    credit_code: String,
    name: String,
    sector: Sector,
    unit_type: String,
    /// A town of the gazetteer (any district's).
    town: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MilestoneData {
    stage: Stage,
    /// "YYYY-MM-DD", China Standard Time.
    date: chrono::NaiveDate,
    evidence: String,
}

/// An achievement of a plan's recorded indicator, recorded by the plan's district office.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AchievementData {
    key: String,
    plan: String,
    indicator: String,
    unit_name: String,
    achieved_date: chrono::NaiveDate,
    evidence: String,
    value: f64,
    #[serde(default)]
    department: String,
    #[serde(default)]
    town: String,
    /// Recorded by a person of this department's office (one of [`DEMO_DEPARTMENTS`]) rather
    /// than by the district office: a participating department's entry waits for approval.
    #[serde(default)]
    recorded_by: String,
    /// Rejected by the district office with this reason (the entry must be pending).
    #[serde(default)]
    rejected: String,
}

/// The demo's plans besides the built-in Xinbei plan, loaded through LoadPlan.
const DEMO_PLANS: [(&str, &str); 1] = [(
    "wujin-2020",
    include_str!("../../../seeds/plans/wujin-2020.toml"),
)];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactData {
    name: String,
    phone: String,
    #[serde(default)]
    email: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompanyData {
    key: String,
    /// First 17 characters; the check character is appended.
    credit_code: String,
    name: String,
    description: String,
    contact: ContactData,
    #[serde(default)]
    towns: Vec<String>,
    #[serde(default)]
    sectors: Vec<Sector>,
    certification_grade: CertificationGrade,
    financing_capacity_fen: i64,
    offerings: Vec<OfferingData>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OfferingData {
    key: String,
    title: String,
    description: String,
    technologies: Vec<Technology>,
    contract_models: Vec<ContractModel>,
    min_investment_fen: i64,
    max_investment_fen: i64,
    typical_savings_bp: i32,
    typical_term_months: i32,
    #[serde(default)]
    sectors: Vec<Sector>,
    #[serde(default)]
    towns: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaterUserData {
    key: String,
    /// First 17 characters; the check character is appended.
    credit_code: String,
    name: String,
    sector: Sector,
    unit_type: String,
    town: String,
    annual_use_litres: i64,
    annual_quota_litres: i64,
    contact: ContactData,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestData {
    key: String,
    water_user: String,
    title: String,
    problem: String,
    scope: String,
    baseline_use_litres: i64,
    expected_savings_bp: i32,
    price_fen_per_m3: i64,
    #[serde(default)]
    preferred_contract_models: Vec<ContractModel>,
    #[serde(default)]
    wanted_technologies: Vec<Technology>,
    investment_wanted_fen: i64,
    proposal_deadline_days: u32,
    #[serde(default)]
    indicator_tags: Vec<IndicatorTag>,
    /// Key of the company whose proposal the water user accepts.
    #[serde(default)]
    accept: Option<String>,
    /// Stage the accepted project is taken to; contracted when absent.
    #[serde(default)]
    stage: Option<Stage>,
    #[serde(default)]
    proposals: Vec<ProposalData>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposalData {
    company: String,
    offering: String,
    measures: String,
    investment_fen: i64,
    promised_savings_bp: i32,
    contract_model: ContractModel,
    #[serde(default)]
    terms: TermsData,
    contract_term_months: i32,
    mv_option: MvOption,
    #[serde(default)]
    drivers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TermsData {
    share_ratio_bp: i32,
    sharing_period_months: i32,
    guaranteed_savings_litres: i64,
    shortfall_price_fen_per_m3: i64,
    bonus_share_bp: i32,
    hosting_fee_fen: i64,
    water_rights_share_bp: i32,
    /// Annual terms by days over the contract year, not by months.
    #[serde(default)]
    pro_rate_by_days: bool,
}

/// The stages of the normal path a demo project can be taken to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Stage {
    Contracted,
    Implementing,
    Commissioned,
    Accepted,
    Operating,
    HandedOver,
}

impl Stage {
    /// The normal path after signing, in order.
    const PATH: [Stage; 6] = [
        Stage::Contracted,
        Stage::Implementing,
        Stage::Commissioned,
        Stage::Accepted,
        Stage::Operating,
        Stage::HandedOver,
    ];

    fn code(self) -> &'static str {
        match self {
            Stage::Contracted => "contracted",
            Stage::Implementing => "implementing",
            Stage::Commissioned => "commissioned",
            Stage::Accepted => "accepted",
            Stage::Operating => "operating",
            Stage::HandedOver => "handed_over",
        }
    }

    fn proto(self) -> ppb::ProjectStage {
        match self {
            Stage::Contracted => ppb::ProjectStage::Contracted,
            Stage::Implementing => ppb::ProjectStage::Implementing,
            Stage::Commissioned => ppb::ProjectStage::Commissioned,
            Stage::Accepted => ppb::ProjectStage::Accepted,
            Stage::Operating => ppb::ProjectStage::Operating,
            Stage::HandedOver => ppb::ProjectStage::HandedOver,
        }
    }

    fn from_proto(stage: i32) -> Option<Stage> {
        Stage::PATH.into_iter().find(|s| s.proto() as i32 == stage)
    }

    /// Whose step it is: the water user accepts the works and takes them over.
    fn by_water_user(self) -> bool {
        matches!(self, Stage::Accepted | Stage::HandedOver)
    }

    /// Why and on what evidence the demo project enters this stage.
    fn reason(self) -> &'static str {
        match self {
            Stage::Contracted => "合同签订",
            Stage::Implementing => "施工单位进场，节水改造开工",
            Stage::Commissioned => "设备安装完成，系统调试合格",
            Stage::Accepted => "第三方核查后组织竣工验收，改造内容与节水效果符合合同约定",
            Stage::Operating => "进入运营期，按月计量、核查和结算节水量",
            Stage::HandedOver => "合同期满（演示数据），节水设施及运维资料移交用水单位",
        }
    }

    fn evidence_kind(self) -> &'static str {
        match self {
            Stage::Contracted => "合同",
            Stage::Implementing => "开工令",
            Stage::Commissioned => "调试报告",
            Stage::Accepted => "竣工验收报告",
            Stage::Operating => "运营启动确认单",
            Stage::HandedOver => "移交清单",
        }
    }
}

/// The demo's password of every person in [`DEMO_PEOPLE`] (a demo, not a secret).
pub const DEMO_PASSWORD: &str = "cwsm-demo-2026";

/// The demo's people who sign in with [`DEMO_PASSWORD`] (login, name): a member of the first
/// company, of the first water user, of the verifier body and of the district water office.
pub const DEMO_PEOPLE: [(&str, &str); 4] = [
    ("company@demo.cwsm.cn", "王工 (公司销售工程师)"),
    ("user@demo.cwsm.cn", "李老师 (后勤处)"),
    ("verifier@demo.cwsm.cn", "赵工 (第三方核验)"),
    ("office@demo.cwsm.cn", "陈科长 (区水利局)"),
];

/// The jurisdiction of the demo's organizations: 常州市新北区 (GB/T 2260). The district
/// office's people administer it, and only it.
pub const DEMO_JURISDICTION: &str = "320411";

/// The first 17 characters of the district water office's credit code (a government agency).
const DEMO_DISTRICT_OFFICE: &str = "11320411MB1A2B3C4";

/// A demo office of a district department that records achievements itself: its department
/// code as the plans name it, name, first 17 characters of its credit code, and the person who
/// signs in with [`DEMO_PASSWORD`] (login, name).
type DepartmentOffice = (
    &'static str,
    &'static str,
    &'static str,
    (&'static str, &'static str),
);

/// The demo's departments' offices: a participating department's entries are pending until the
/// district office (or a lead department) approves or rejects them.
pub const DEMO_DEPARTMENTS: [DepartmentOffice; 1] = [(
    "ecoenv",
    "常州市新北区生态环境局",
    "11320411MB1A2B3D5",
    ("ecoenv@demo.cwsm.cn", "周科员 (区生态环境局)"),
)];

fn department_office(code: &str) -> Option<&'static DepartmentOffice> {
    DEMO_DEPARTMENTS.iter().find(|d| d.0 == code)
}

/// The first 17 characters of the demo's verifier body (a public institution: a district water
/// testing centre), whose verifier tokens verify the demo's periods.
const DEMO_VERIFIER_BODY: &str = "123204117205K4X1A";

/// The full 18-character code for the first 17 characters `body`: `body` plus its GB 32100
/// check character.
pub(crate) fn credit_code(body: &str) -> Result<String> {
    cwsm_platform::credit_code::with_check_character(body)
        .map_err(|why| anyhow!("credit code {body:?}: {why}"))
}

impl Marketplace {
    fn parse(text: &str) -> Result<Self> {
        let mut data: Marketplace =
            toml::from_str(text).context("reading seeds/demo/marketplace.toml")?;
        if let Some(generated) = data.generated.take() {
            generated
                .generate(&mut data)
                .context("generating the demo parties of seeds/demo/marketplace.toml")?;
        }
        data.check()
            .context("checking seeds/demo/marketplace.toml")?;
        Ok(data)
    }

    fn company(&self, key: &str) -> Option<&CompanyData> {
        self.companies.iter().find(|c| c.key == key)
    }

    fn water_user(&self, key: &str) -> Option<&WaterUserData> {
        self.water_users.iter().find(|u| u.key == key)
    }

    /// Checks that the file is consistent before anything is sent: unique keys and codes,
    /// known towns, references that resolve, proposals that fit their offerings, terms that
    /// match their contract models.
    fn check(&self) -> Result<()> {
        let towns: HashSet<&str> = self.towns.iter().map(String::as_str).collect();
        let known_town = |what: &str, town: &str| -> Result<()> {
            ensure!(towns.contains(town), "{what}: {town:?} is not in `towns`");
            Ok(())
        };
        let mut keys = HashSet::new();
        let mut codes = HashSet::new();
        for c in &self.companies {
            let what = format!("company {}", c.key);
            ensure!(keys.insert(format!("c:{}", c.key)), "{what}: duplicate key");
            ensure!(
                codes.insert(credit_code(&c.credit_code).context(what.clone())?),
                "{what}: duplicate credit code"
            );
            ensure!(!c.name.trim().is_empty(), "{what}: name is empty");
            ensure!(
                c.financing_capacity_fen >= 0,
                "{what}: negative financing capacity"
            );
            for t in &c.towns {
                known_town(&what, t)?;
            }
            ensure!(
                !c.offerings.is_empty(),
                "{what}: publish at least one offering"
            );
            let mut offering_keys = HashSet::new();
            for o in &c.offerings {
                let what = format!("offering {}/{}", c.key, o.key);
                ensure!(offering_keys.insert(&o.key), "{what}: duplicate key");
                ensure!(!o.technologies.is_empty(), "{what}: no technology");
                ensure!(!o.contract_models.is_empty(), "{what}: no contract model");
                ensure!(
                    0 <= o.min_investment_fen
                        && (o.max_investment_fen == 0
                            || o.min_investment_fen <= o.max_investment_fen),
                    "{what}: investment range is wrong"
                );
                ensure!(
                    (0..=10_000).contains(&o.typical_savings_bp),
                    "{what}: savings out of 0–10000 bp"
                );
                for t in &o.towns {
                    known_town(&what, t)?;
                }
            }
        }
        for u in &self.water_users {
            let what = format!("water user {}", u.key);
            ensure!(keys.insert(format!("u:{}", u.key)), "{what}: duplicate key");
            ensure!(
                codes.insert(credit_code(&u.credit_code).context(what.clone())?),
                "{what}: duplicate credit code"
            );
            known_town(&what, &u.town)?;
            ensure!(
                u.annual_use_litres >= 0 && u.annual_quota_litres >= 0,
                "{what}: negative volume"
            );
        }
        let mut titles = HashSet::new();
        for r in &self.requests {
            let what = format!("request {}", r.key);
            ensure!(keys.insert(format!("r:{}", r.key)), "{what}: duplicate key");
            ensure!(
                titles.insert((&r.water_user, &r.title)),
                "{what}: duplicate title"
            );
            let user = self
                .water_user(&r.water_user)
                .ok_or_else(|| anyhow!("{what}: no water user {:?}", r.water_user))?;
            ensure!(
                r.baseline_use_litres > 0,
                "{what}: baseline use must be positive"
            );
            ensure!(
                (0..=10_000).contains(&r.expected_savings_bp),
                "{what}: savings out of 0–10000 bp"
            );
            ensure!(r.price_fen_per_m3 > 0, "{what}: price must be positive");
            ensure!(r.investment_wanted_fen >= 0, "{what}: negative investment");
            ensure!(
                r.proposal_deadline_days > 0,
                "{what}: the deadline must be in the future"
            );
            let mut proposers = HashSet::new();
            for p in &r.proposals {
                let what = format!("{what}, proposal of {}", p.company);
                ensure!(
                    proposers.insert(&p.company),
                    "{what}: the company proposes twice"
                );
                let company = self
                    .company(&p.company)
                    .ok_or_else(|| anyhow!("{what}: no company {:?}", p.company))?;
                let offering = company
                    .offerings
                    .iter()
                    .find(|o| o.key == p.offering)
                    .ok_or_else(|| {
                        anyhow!("{what}: {} has no offering {:?}", p.company, p.offering)
                    })?;
                check_fit(company, offering, user, r, p).context(what)?;
            }
            match (&r.accept, r.stage) {
                (Some(company), _) => ensure!(
                    r.proposals.iter().any(|p| &p.company == company),
                    "{what}: accepts {company:?}, which does not propose"
                ),
                (None, Some(_)) => bail!("{what}: a stage needs an accepted proposal (`accept`)"),
                (None, None) => {}
            }
        }
        for h in &self.history {
            let what = format!("history {}", h.key);
            ensure!(keys.insert(format!("h:{}", h.key)), "{what}: duplicate key");
            ensure!(
                self.company(&h.company).is_some(),
                "{what}: no company {:?}",
                h.company
            );
            ensure!(
                codes.insert(credit_code(&h.water_user.credit_code).context(what.clone())?),
                "{what}: duplicate credit code"
            );
            cwsm_platform::gazetteer::Gazetteer::builtin()
                .town("water_user.town", &h.water_user.town)
                .map_err(|e| anyhow!("{what}: {e:?}"))?;
            let stages: Vec<Stage> = h.milestones.iter().map(|m| m.stage).collect();
            ensure!(
                stages.first() == Some(&Stage::Contracted),
                "{what}: the first milestone is the signing (contracted)"
            );
            ensure!(
                stages.iter().zip(Stage::PATH).all(|(a, b)| *a == b),
                "{what}: the milestones follow the normal path ({:?})",
                Stage::PATH.map(Stage::code)
            );
            ensure!(
                h.milestones.windows(2).all(|w| w[0].date <= w[1].date),
                "{what}: the milestones' dates are in order"
            );
            ensure!(
                h.milestones.iter().all(|m| !m.evidence.trim().is_empty()),
                "{what}: a back-dated milestone needs evidence"
            );
        }
        for a in &self.achievements {
            let what = format!("achievement {}", a.key);
            ensure!(keys.insert(format!("a:{}", a.key)), "{what}: duplicate key");
            ensure!(!a.evidence.trim().is_empty(), "{what}: no evidence");
            ensure!(
                a.recorded_by.is_empty() || department_office(&a.recorded_by).is_some(),
                "{what}: recorded_by {:?} is none of the demo's departments",
                a.recorded_by
            );
            ensure!(
                a.rejected.is_empty() || !a.recorded_by.is_empty(),
                "{what}: only a department's pending entry can be rejected"
            );
        }
        Ok(())
    }
}

/// The generated part of the demo marketplace: counts, name parts and per-sector habits, from
/// which [`Generated::generate`] makes companies (with offerings), water users of every sector
/// and open requests, the same ones on every load (a fixed seed).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Generated {
    seed: u64,
    companies: usize,
    water_users: usize,
    /// One open request for every this many generated water users (0: none).
    requests_every: usize,
    company_places: Vec<String>,
    company_words: Vec<String>,
    company_suffixes: Vec<String>,
    surnames: Vec<String>,
    given_names: Vec<String>,
    /// A title for offerings of each technology (by code).
    technology_titles: HashMap<String, String>,
    /// Middle parts of water users' names.
    user_stems: Vec<String>,
    sectors: Vec<GeneratedSector>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeneratedSector {
    sector: Sector,
    /// The first 8 characters of its units' credit codes (kind of organization and district).
    code_prefix: String,
    /// Kinds of unit: [unit type, end of the name].
    units: Vec<[String; 2]>,
    /// Yearly use of one unit, m³: [least, most].
    annual_use_m3: [i64; 2],
    price_fen_per_m3: i64,
    /// What its requests ask for.
    technologies: Vec<Technology>,
    #[serde(default)]
    indicator_tags: Vec<IndicatorTag>,
}

use cwsm_platform::sample::XorShift;

/// One of `all`, drawn by `rng`.
fn pick<'a, T>(rng: &mut XorShift, all: &'a [T]) -> Result<&'a T> {
    rng.pick(all).ok_or_else(|| anyhow!("nothing to pick from"))
}

/// The first 17 characters of a credit code starting with `prefix`, not in `taken`.
fn fresh_credit_code(
    rng: &mut XorShift,
    prefix: &str,
    taken: &mut HashSet<String>,
) -> Result<String> {
    let alphabet: Vec<char> = cwsm_platform::credit_code::ALPHABET.chars().collect();
    for _ in 0..1000 {
        let mut code = prefix.to_string();
        while code.chars().count() < 17 {
            code.push(*pick(rng, &alphabet)?);
        }
        if taken.insert(code.clone()) {
            return Ok(code);
        }
    }
    bail!("no free credit code with prefix {prefix}")
}

/// `name`, or `name` with a number when it is taken.
fn unique_name(name: String, taken: &mut HashSet<String>) -> String {
    if taken.insert(name.clone()) {
        return name;
    }
    let mut n = 2;
    loop {
        let numbered = format!("{name}（{n}）");
        if taken.insert(numbered.clone()) {
            return numbered;
        }
        n += 1;
    }
}

impl Generated {
    /// Adds the generated parties to `data` (after its hand-written ones).
    fn generate(&self, data: &mut Marketplace) -> Result<()> {
        ensure!(
            !self.company_places.is_empty()
                && !self.company_words.is_empty()
                && !self.company_suffixes.is_empty()
                && !self.surnames.is_empty()
                && !self.given_names.is_empty()
                && !self.user_stems.is_empty()
                && !self.sectors.is_empty(),
            "every list of name parts and sectors needs at least one entry"
        );
        let mut rng = XorShift::new(self.seed);
        let towns = data.towns.clone();
        let mut codes: HashSet<String> = data
            .companies
            .iter()
            .map(|c| c.credit_code.clone())
            .chain(data.water_users.iter().map(|u| u.credit_code.clone()))
            .collect();
        let mut names: HashSet<String> = data
            .companies
            .iter()
            .map(|c| c.name.clone())
            .chain(data.water_users.iter().map(|u| u.name.clone()))
            .collect();
        let technologies: Vec<Technology> = Technology::ALL
            .iter()
            .copied()
            .filter(|t| *t != Technology::Other)
            .collect();
        let title = |t: Technology| {
            self.technology_titles
                .get(t.code())
                .cloned()
                .unwrap_or_else(|| t.label().to_string())
        };
        let contact = |rng: &mut XorShift| -> Result<ContactData> {
            Ok(ContactData {
                name: format!(
                    "{}{}",
                    pick(rng, &self.surnames)?,
                    pick(rng, &self.given_names)?
                ),
                phone: format!("+86 519 8{:03} {:04}", rng.below(1000), rng.below(10_000)),
                email: String::new(),
            })
        };

        for i in 0..self.companies {
            let name = unique_name(
                format!(
                    "常州{}{}{}",
                    pick(&mut rng, &self.company_places)?,
                    pick(&mut rng, &self.company_words)?,
                    pick(&mut rng, &self.company_suffixes)?
                ),
                &mut names,
            );
            let credit_code = fresh_credit_code(&mut rng, "91320411MA2", &mut codes)?;
            let mut offerings = Vec::new();
            let mut services = Vec::new();
            for j in 0..1 + rng.below(2) {
                let techs = rng.some(&technologies, 3);
                let first = techs.first().copied().unwrap_or(Technology::LeakDetection);
                let min = rng.between(0, 50) * 1_000_000;
                services.push(title(first));
                offerings.push(OfferingData {
                    key: format!("o{j}"),
                    title: format!("{}合同节水服务", title(first)),
                    description: format!(
                        "{}；企业投资或托管，按核查后的节水量结算。",
                        techs
                            .iter()
                            .map(|t| title(*t))
                            .collect::<Vec<_>>()
                            .join("、")
                    ),
                    technologies: techs,
                    contract_models: rng.some(ContractModel::ALL, 2),
                    min_investment_fen: min,
                    max_investment_fen: if rng.below(3) == 0 {
                        0
                    } else {
                        min + rng.between(20, 300) * 10_000_000
                    },
                    typical_savings_bp: rng.between(1500, 4000) as i32,
                    typical_term_months: *pick(&mut rng, &[60, 72, 84, 96, 120])?,
                    sectors: vec![],
                    towns: vec![],
                });
            }
            data.companies.push(CompanyData {
                key: format!("gen-company-{i:03}"),
                credit_code,
                name,
                description: format!("新北区合同节水服务企业，主营{}。", services.join("、")),
                contact: contact(&mut rng)?,
                towns: if rng.below(2) == 0 {
                    vec![]
                } else {
                    rng.some(&towns, 5)
                },
                sectors: if rng.below(5) == 0 {
                    vec![]
                } else {
                    rng.some(Sector::ALL, 4)
                },
                certification_grade: *pick(&mut rng, CertificationGrade::ALL)?,
                financing_capacity_fen: rng.between(2_000, 80_000) * 100_000,
                offerings,
            });
        }

        for i in 0..self.water_users {
            let s = &self.sectors[i % self.sectors.len()];
            let [unit_type, ending] = pick(&mut rng, &s.units)?.clone();
            let town = pick(&mut rng, &towns)?.clone();
            let name = unique_name(
                format!("{town}{}{ending}", pick(&mut rng, &self.user_stems)?),
                &mut names,
            );
            let m3 = rng.between(s.annual_use_m3[0], s.annual_use_m3[1]);
            let key = format!("gen-user-{i:03}");
            if self.requests_every > 0 && i % self.requests_every == 0 {
                let baseline_m3 = (m3 * 9 / 10).max(1);
                data.requests.push(RequestData {
                    key: format!("gen-request-{i:03}"),
                    water_user: key.clone(),
                    title: format!("{name}合同节水改造"),
                    problem: format!("年用水约{m3} m³，用水偏高，希望查明损失并改造。"),
                    scope: format!("{name}全部用水系统"),
                    baseline_use_litres: baseline_m3 * 1000,
                    expected_savings_bp: rng.between(1500, 3500) as i32,
                    price_fen_per_m3: s.price_fen_per_m3,
                    preferred_contract_models: rng.some(&ContractModel::ALL[..3], 2),
                    wanted_technologies: rng.some(&s.technologies, 2),
                    investment_wanted_fen: baseline_m3 * rng.between(50, 200),
                    proposal_deadline_days: rng.between(20, 60) as u32,
                    indicator_tags: s.indicator_tags.clone(),
                    accept: None,
                    stage: None,
                    proposals: vec![],
                });
            }
            data.water_users.push(WaterUserData {
                key,
                credit_code: fresh_credit_code(&mut rng, &s.code_prefix, &mut codes)?,
                name,
                sector: s.sector,
                unit_type,
                town,
                annual_use_litres: m3 * 1000,
                annual_quota_litres: if m3 >= 6_000 {
                    m3 * rng.between(95, 115) / 100 * 1000
                } else {
                    0
                },
                contact: contact(&mut rng)?,
            });
        }
        Ok(())
    }
}

/// Checks that a proposal fits its offering, its company and the request, and that its terms
/// carry what its contract model needs.
fn check_fit(
    company: &CompanyData,
    offering: &OfferingData,
    user: &WaterUserData,
    request: &RequestData,
    p: &ProposalData,
) -> Result<()> {
    let sectors = if offering.sectors.is_empty() {
        &company.sectors
    } else {
        &offering.sectors
    };
    ensure!(
        sectors.is_empty() || sectors.contains(&user.sector),
        "the offering does not serve sector {}",
        user.sector
    );
    let towns = if offering.towns.is_empty() {
        &company.towns
    } else {
        &offering.towns
    };
    ensure!(
        towns.is_empty() || towns.contains(&user.town),
        "the offering does not serve {}",
        user.town
    );
    ensure!(
        offering.contract_models.contains(&p.contract_model),
        "the offering does not support {}",
        p.contract_model
    );
    ensure!(
        request.preferred_contract_models.is_empty()
            || request
                .preferred_contract_models
                .contains(&p.contract_model),
        "the request does not prefer {}",
        p.contract_model
    );
    ensure!(
        p.investment_fen >= offering.min_investment_fen
            && (offering.max_investment_fen == 0
                || p.investment_fen <= offering.max_investment_fen),
        "investment {} fen is outside the offering's range",
        p.investment_fen
    );
    ensure!(
        p.investment_fen <= company.financing_capacity_fen,
        "investment {} fen is beyond the company's financing capacity",
        p.investment_fen
    );
    ensure!(!p.measures.trim().is_empty(), "measures are empty");
    ensure!(
        (1..=10_000).contains(&p.promised_savings_bp),
        "promised savings out of 1–10000 bp"
    );
    ensure!(
        (60..=120).contains(&p.contract_term_months),
        "contract term {} months is outside 60–120",
        p.contract_term_months
    );
    let t = &p.terms;
    for (name, bp) in [
        ("share_ratio_bp", t.share_ratio_bp),
        ("bonus_share_bp", t.bonus_share_bp),
        ("water_rights_share_bp", t.water_rights_share_bp),
    ] {
        ensure!((0..=10_000).contains(&bp), "terms.{name} out of 0–10000 bp");
    }
    let sharing = matches!(
        p.contract_model,
        ContractModel::SharedSavings
            | ContractModel::GuaranteePlusSharing
            | ContractModel::SavingsPlusWaterRights
    );
    let guarantee = matches!(
        p.contract_model,
        ContractModel::GuaranteedSavings
            | ContractModel::HostingPlusGuarantee
            | ContractModel::GuaranteePlusSharing
    );
    let hosting = matches!(
        p.contract_model,
        ContractModel::WaterCostHosting | ContractModel::HostingPlusGuarantee
    );
    ensure!(
        sharing == (t.share_ratio_bp > 0),
        "terms.share_ratio_bp must be set exactly for sharing models ({})",
        p.contract_model
    );
    ensure!(
        !sharing
            || t.sharing_period_months > 0
            || p.contract_model == ContractModel::SavingsPlusWaterRights,
        "terms.sharing_period_months is missing"
    );
    ensure!(
        guarantee == (t.guaranteed_savings_litres > 0),
        "terms.guaranteed_savings_litres must be set exactly for guarantee models ({})",
        p.contract_model
    );
    ensure!(
        t.guaranteed_savings_litres <= promised_savings_litres(request, p),
        "the guaranteed saving exceeds the promised one"
    );
    ensure!(
        hosting == (t.hosting_fee_fen > 0),
        "terms.hosting_fee_fen must be set exactly for hosting models ({})",
        p.contract_model
    );
    ensure!(
        (p.contract_model == ContractModel::SavingsPlusWaterRights)
            == (t.water_rights_share_bp > 0),
        "terms.water_rights_share_bp must be set exactly for savings_plus_water_rights"
    );
    Ok(())
}

/// Litres a year: the request's baseline × the promised rate.
fn promised_savings_litres(request: &RequestData, p: &ProposalData) -> i64 {
    request.baseline_use_litres * i64::from(p.promised_savings_bp) / 10_000
}

// ------------------------------------------------------------------------------------------
// The API, as each party
// ------------------------------------------------------------------------------------------

use cwsm_platform::auth::Bearer;

type Matching = MatchingServiceClient<InterceptedService<Channel, Bearer>>;
type Projects = ProjectsServiceClient<InterceptedService<Channel, Bearer>>;
type Reporting = ReportingServiceClient<InterceptedService<Channel, Bearer>>;

fn bearer(token: &str) -> Result<Bearer> {
    Ok(Bearer::new(token)?)
}

/// A party of the demo with its token.
struct Party {
    /// Id in the matching service.
    id: String,
    name: String,
    token: String,
}

struct Loader<'a> {
    channel: Channel,
    keys: &'a Keys,
}

impl Loader<'_> {
    fn token(&self, subject: &str, role: Role, org: Option<&str>) -> Result<String> {
        self.keys
            .issue(subject, role, org, TOKEN_TTL)
            .with_context(|| format!("issuing a {role} token for {subject}"))
    }

    fn matching(&self, token: &str) -> Result<Matching> {
        Ok(MatchingServiceClient::with_interceptor(
            self.channel.clone(),
            bearer(token)?,
        ))
    }

    fn projects(&self, token: &str) -> Result<Projects> {
        Ok(ProjectsServiceClient::with_interceptor(
            self.channel.clone(),
            bearer(token)?,
        ))
    }

    fn reporting(&self, token: &str) -> Result<Reporting> {
        Ok(ReportingServiceClient::with_interceptor(
            self.channel.clone(),
            bearer(token)?,
        ))
    }

    async fn run(&self, data: &Marketplace) -> Result<Summary> {
        let mut summary = Summary::default();
        let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();

        // 1. Companies and their offerings (LOAD_CONCURRENCY parties at a time: they are
        // independent, and a round trip waits on the network more than on the server).
        let mut companies: HashMap<&str, Party> = HashMap::new();
        let mut offerings: HashMap<(&str, &str), String> = HashMap::new();
        for chunk in data.companies.chunks(LOAD_CONCURRENCY) {
            let loaded = futures::future::join_all(chunk.iter().map(|c| async move {
                let party = self.company(c).await?;
                let mut ids = Vec::new();
                for o in &c.offerings {
                    ids.push((o.key.as_str(), self.offering(c, o, &party).await?));
                }
                Ok::<_, anyhow::Error>((c, party, ids))
            }))
            .await;
            for result in loaded {
                let (c, party, ids) = result?;
                for (key, id) in ids {
                    offerings.insert((c.key.as_str(), key), id);
                }
                companies.insert(c.key.as_str(), party);
                summary.companies += 1;
            }
        }

        // 2. Water users.
        let mut users: HashMap<&str, Party> = HashMap::new();
        for chunk in data.water_users.chunks(LOAD_CONCURRENCY) {
            let loaded =
                futures::future::join_all(chunk.iter().map(|u| async move {
                    Ok::<_, anyhow::Error>((u, self.water_user(u).await?))
                }))
                .await;
            for result in loaded {
                let (u, party) = result?;
                users.insert(u.key.as_str(), party);
                summary.water_users += 1;
            }
        }

        // 3. Project requests, opened.
        let mut requests: HashMap<&str, String> = HashMap::new();
        for chunk in data.requests.chunks(LOAD_CONCURRENCY) {
            let users = &users;
            let loaded = futures::future::join_all(chunk.iter().map(|r| async move {
                let user = party(users, &r.water_user)?;
                let deadline = today
                    .checked_add_days(chrono::Days::new(u64::from(r.proposal_deadline_days)))
                    .ok_or_else(|| anyhow!("request {}: deadline out of range", r.key))?;
                let id = self
                    .request(r, user, &deadline.format("%Y-%m-%d").to_string())
                    .await?;
                Ok::<_, anyhow::Error>((r, id))
            }))
            .await;
            for result in loaded {
                let (r, id) = result?;
                requests.insert(r.key.as_str(), id);
                summary.requests += 1;
            }
        }

        // 4. Proposals.
        let mut proposals: HashMap<(&str, &str), String> = HashMap::new();
        for r in &data.requests {
            let request_id = lookup(&requests, &r.key)?;
            for p in &r.proposals {
                let company = party(&companies, &p.company)?;
                let offering_id = offerings
                    .get(&(p.company.as_str(), p.offering.as_str()))
                    .ok_or_else(|| {
                        anyhow!("offering {}/{} was not loaded", p.company, p.offering)
                    })?;
                let id = self
                    .proposal(r, p, request_id, company, offering_id)
                    .await?;
                proposals.insert((r.key.as_str(), p.company.as_str()), id);
                summary.proposals += 1;
            }
        }

        // 5 and 6. Acceptance, then the project's stages.
        for r in &data.requests {
            let Some(accepted) = &r.accept else { continue };
            let user = party(&users, &r.water_user)?;
            let company = party(&companies, accepted)?;
            let proposal_id = proposals
                .get(&(r.key.as_str(), accepted.as_str()))
                .ok_or_else(|| anyhow!("request {}: no proposal of {accepted}", r.key))?;
            let project_id = self.accept(r, user, company, proposal_id).await?;
            let project = self.wait_for_project(&project_id, user, &r.key).await?;
            summary.projects += 1;
            self.advance(r, project, user, company).await?;
        }

        // 7. People who sign in with a password, one per role (README: "Sign in as each role").
        let first_company = data
            .companies
            .first()
            .ok_or_else(|| anyhow!("the demo has no company"))?;
        let first_user = data
            .water_users
            .first()
            .ok_or_else(|| anyhow!("the demo has no water user"))?;
        let organizations = [
            (
                credit_code(&first_company.credit_code)?,
                first_company.name.as_str(),
                apb::OrganizationKind::Company,
                DEMO_PEOPLE[0],
            ),
            (
                credit_code(&first_user.credit_code)?,
                first_user.name.as_str(),
                apb::OrganizationKind::WaterUser,
                DEMO_PEOPLE[1],
            ),
            (
                credit_code(DEMO_VERIFIER_BODY)?,
                "常州市新北区水资源监测中心",
                apb::OrganizationKind::Verifier,
                DEMO_PEOPLE[2],
            ),
            (
                credit_code(DEMO_DISTRICT_OFFICE)?,
                "常州市新北区水利局",
                apb::OrganizationKind::DistrictOffice,
                DEMO_PEOPLE[3],
            ),
        ];
        let admin = self.token("demo-admin", Role::Admin, None)?;
        for (code, name, kind, (login, person)) in organizations {
            self.person(&admin, &code, name, kind, "", (login, person))
                .await?;
            summary.people += 1;
        }
        // The departments' offices whose people record their own achievements.
        let mut department_tokens: HashMap<&str, String> = HashMap::new();
        for (department, name, body, person) in DEMO_DEPARTMENTS {
            let code = credit_code(body)?;
            self.person(
                &admin,
                &code,
                name,
                apb::OrganizationKind::DistrictOffice,
                department,
                person,
            )
            .await?;
            department_tokens.insert(department, self.sign_in(person.0, &code).await?);
            summary.people += 1;
        }

        // 8. The plans' year: the other districts' plans, projects signed outside the platform
        // in 2020 with their dated milestones, and recorded achievements.
        for (code, toml) in DEMO_PLANS {
            self.reporting(&admin)?
                .load_plan(rpb::LoadPlanRequest {
                    request_id: format!("demo:plan:{code}"),
                    plan_toml: toml.to_string(),
                    validate_only: false,
                })
                .await
                .with_context(|| format!("loading plan {code}"))?;
        }
        for h in &data.history {
            let code = data
                .company(&h.company)
                .ok_or_else(|| anyhow!("history {}: no company {}", h.key, h.company))
                .and_then(|c| credit_code(&c.credit_code))?;
            self.history(h, party(&companies, &h.company)?, code)
                .await?;
            summary.projects += 1;
        }
        for a in &data.achievements {
            let recorder = match a.recorded_by.as_str() {
                "" => &admin,
                d => department_tokens
                    .get(d)
                    .ok_or_else(|| anyhow!("achievement {}: no department {d}", a.key))?,
            };
            let recorded = self
                .reporting(recorder)?
                .record_achievement(rpb::RecordAchievementRequest {
                    request_id: format!("demo:achievement:{}", a.key),
                    plan_code: a.plan.clone(),
                    indicator_code: a.indicator.clone(),
                    unit_name: a.unit_name.clone(),
                    achieved_date: a.achieved_date.to_string(),
                    evidence: a.evidence.clone(),
                    value: a.value,
                    department: a.department.clone(),
                    town: a.town.clone(),
                    ..Default::default()
                })
                .await
                .with_context(|| format!("recording achievement {}", a.key))?
                .into_inner()
                .achievement
                .ok_or_else(|| anyhow!("achievement {}: not returned", a.key))?;
            if !a.rejected.is_empty() {
                self.reporting(&admin)?
                    .reject_achievement(rpb::RejectAchievementRequest {
                        request_id: format!("demo:achievement-rejected:{}", a.key),
                        achievement_id: recorded.id,
                        expected_version: 0,
                        reason: a.rejected.clone(),
                    })
                    .await
                    .with_context(|| format!("rejecting achievement {}", a.key))?;
            }
        }

        tracing::info!(%summary, "demo data loaded");
        Ok(summary)
    }

    /// Registers organization `code` in the accounts service with `login` as its first member,
    /// and approves it as the district office would.
    async fn person(
        &self,
        admin: &str,
        code: &str,
        name: &str,
        kind: apb::OrganizationKind,
        department: &str,
        (login, display_name): (&str, &str),
    ) -> Result<()> {
        let mut accounts =
            AccountsServiceClient::with_interceptor(self.channel.clone(), bearer(admin)?);
        accounts
            .register_organization(apb::RegisterOrganizationRequest {
                credit_code: code.to_string(),
                name: name.to_string(),
                kind: kind as i32,
                registrant: Some(apb::NewCredentials {
                    login: login.to_string(),
                    password: DEMO_PASSWORD.to_string(),
                    display_name: display_name.to_string(),
                }),
                // The demo is Xinbei's: every organization, the district office too, belongs
                // to 320411, so the office's people administer Xinbei (and only Xinbei).
                jurisdiction: DEMO_JURISDICTION.to_string(),
                department: department.to_string(),
                request_id: format!("demo:register:{code}"),
            })
            .await
            .with_context(|| format!("registering {name} ({code}) in accounts"))?;
        accounts
            .approve_organization(apb::ApproveOrganizationRequest {
                credit_code: code.to_string(),
                note: "demo".into(),
                expected_version: 0,
            })
            .await
            .with_context(|| format!("approving {name} ({code})"))?;
        Ok(())
    }

    /// Signs `login` in with [`DEMO_PASSWORD`] for organization `code`: an access token that
    /// carries the organization's department (the loader's own keys sign none that do).
    async fn sign_in(&self, login: &str, code: &str) -> Result<String> {
        let mut accounts = AccountsServiceClient::new(self.channel.clone());
        let tokens = accounts
            .sign_in(apb::SignInRequest {
                login: login.to_string(),
                password: DEMO_PASSWORD.to_string(),
                credit_code: code.to_string(),
            })
            .await
            .with_context(|| format!("signing {login} in"))?
            .into_inner()
            .tokens
            .ok_or_else(|| anyhow!("signing {login} in: no tokens"))?;
        Ok(tokens.access_token)
    }

    async fn company(&self, c: &CompanyData) -> Result<Party> {
        let code = credit_code(&c.credit_code).with_context(|| format!("company {}", c.name))?;
        let token = self.token(&c.contact.name, Role::Company, Some(&code))?;
        let mut client = self.matching(&token)?;
        let profile = mpb::Company {
            credit_code: code.clone(),
            name: c.name.clone(),
            description: c.description.clone(),
            contact: Some(contact(&c.contact)),
            towns: c.towns.clone(),
            sectors: c.sectors.iter().map(|s| s.number()).collect(),
            certification_grade: c.certification_grade.number(),
            certification_evidence: format!("demo certificate CWS-{}", c.key),
            financing_capacity_fen: c.financing_capacity_fen,
            ..Default::default()
        };
        let created = client
            .create_company(mpb::CreateCompanyRequest {
                request_id: format!("demo:company:{}", c.key),
                company: Some(profile),
            })
            .await;
        let company = match created {
            Ok(resp) => resp.into_inner().company,
            Err(status) if status.code() == Code::AlreadyExists => {
                tracing::info!(company = %c.name, "company exists; using it");
                client
                    .get_company(mpb::GetCompanyRequest {
                        credit_code: code.clone(),
                        ..Default::default()
                    })
                    .await
                    .with_context(|| format!("getting the existing company {} ({code})", c.name))?
                    .into_inner()
                    .company
            }
            Err(status) => {
                return Err(status)
                    .with_context(|| format!("creating company {} ({code})", c.name));
            }
        }
        .ok_or_else(|| anyhow!("company {}: the response has no company", c.name))?;
        // The district office checks the claimed grade and confirms it (only confirmed grades
        // are ranked); once per company, so a rerun changes nothing.
        if c.certification_grade != CertificationGrade::None
            && company.certification_grade == c.certification_grade.number()
            && company.confirmed_certification_grade != c.certification_grade.number()
        {
            let admin = self.token("demo-admin", Role::Admin, None)?;
            self.matching(&admin)?
                .confirm_certification(mpb::ConfirmCertificationRequest {
                    request_id: format!("demo:confirm-grade:{}", c.key),
                    company_id: company.id.clone(),
                    grade: c.certification_grade.number(),
                    note: "demo: certificate checked by the district office".into(),
                    expected_version: 0,
                })
                .await
                .with_context(|| format!("confirming the grade of company {}", c.name))?;
        }
        tracing::info!(company = %c.name, id = %company.id, credit_code = %code, "company registered");
        Ok(Party {
            id: company.id,
            name: c.name.clone(),
            token,
        })
    }

    async fn offering(&self, c: &CompanyData, o: &OfferingData, company: &Party) -> Result<String> {
        let mut client = self.matching(&company.token)?;
        let offering = client
            .create_offering(mpb::CreateOfferingRequest {
                request_id: format!("demo:offering:{}:{}", c.key, o.key),
                offering: Some(mpb::Offering {
                    company_id: company.id.clone(),
                    title: o.title.clone(),
                    description: o.description.clone(),
                    technologies: o.technologies.iter().map(|t| t.number()).collect(),
                    contract_models: o.contract_models.iter().map(|m| m.number()).collect(),
                    min_investment_fen: o.min_investment_fen,
                    max_investment_fen: o.max_investment_fen,
                    typical_savings_bp: o.typical_savings_bp,
                    typical_term_months: o.typical_term_months,
                    sectors: o.sectors.iter().map(|s| s.number()).collect(),
                    towns: o.towns.clone(),
                    ..Default::default()
                }),
            })
            .await
            .with_context(|| format!("creating offering {:?} of {}", o.title, c.name))?
            .into_inner()
            .offering
            .ok_or_else(|| anyhow!("offering {:?}: the response has no offering", o.title))?;
        if offering.status != mpb::OfferingStatus::Published as i32 {
            client
                .publish_offering(mpb::PublishOfferingRequest {
                    request_id: format!("demo:publish:{}:{}", c.key, o.key),
                    offering_id: offering.id.clone(),
                    expected_version: 0,
                })
                .await
                .with_context(|| format!("publishing offering {:?} of {}", o.title, c.name))?;
        }
        tracing::info!(company = %c.name, offering = %o.title, id = %offering.id, "offering published");
        Ok(offering.id)
    }

    async fn water_user(&self, u: &WaterUserData) -> Result<Party> {
        let code = credit_code(&u.credit_code).with_context(|| format!("water user {}", u.name))?;
        let token = self.token(&u.contact.name, Role::WaterUser, Some(&code))?;
        let mut client = self.matching(&token)?;
        let profile = mpb::WaterUser {
            credit_code: code.clone(),
            name: u.name.clone(),
            sector: u.sector.number(),
            unit_type: u.unit_type.clone(),
            town: u.town.clone(),
            annual_use_litres: u.annual_use_litres,
            annual_quota_litres: u.annual_quota_litres,
            contact: Some(contact(&u.contact)),
            ..Default::default()
        };
        let created = client
            .create_water_user(mpb::CreateWaterUserRequest {
                request_id: format!("demo:water-user:{}", u.key),
                water_user: Some(profile),
            })
            .await;
        let user = match created {
            Ok(resp) => resp.into_inner().water_user,
            Err(status) if status.code() == Code::AlreadyExists => {
                tracing::info!(water_user = %u.name, "water user exists; using it");
                client
                    .get_water_user(mpb::GetWaterUserRequest {
                        credit_code: code.clone(),
                        ..Default::default()
                    })
                    .await
                    .with_context(|| {
                        format!("getting the existing water user {} ({code})", u.name)
                    })?
                    .into_inner()
                    .water_user
            }
            Err(status) => {
                return Err(status)
                    .with_context(|| format!("creating water user {} ({code})", u.name));
            }
        }
        .ok_or_else(|| anyhow!("water user {}: the response has no water user", u.name))?;
        tracing::info!(water_user = %u.name, id = %user.id, credit_code = %code, "water user registered");
        Ok(Party {
            id: user.id,
            name: u.name.clone(),
            token,
        })
    }

    async fn request(&self, r: &RequestData, user: &Party, deadline: &str) -> Result<String> {
        let mut client = self.matching(&user.token)?;
        let mut tags: Vec<i32> = r.indicator_tags.iter().map(|t| t.number()).collect();
        if !r.indicator_tags.contains(&IndicatorTag::ContractProject) {
            tags.insert(0, IndicatorTag::ContractProject.number());
        }
        let created = client
            .create_project_request(mpb::CreateProjectRequestRequest {
                request_id: format!("demo:request:{}", r.key),
                project_request: Some(mpb::ProjectRequest {
                    water_user_id: user.id.clone(),
                    title: r.title.clone(),
                    problem: r.problem.clone(),
                    scope: r.scope.clone(),
                    baseline_use_litres: r.baseline_use_litres,
                    expected_savings_bp: r.expected_savings_bp,
                    price_fen_per_m3: r.price_fen_per_m3,
                    preferred_contract_models: r
                        .preferred_contract_models
                        .iter()
                        .map(|m| m.number())
                        .collect(),
                    wanted_technologies: r.wanted_technologies.iter().map(|t| t.number()).collect(),
                    investment_wanted_fen: r.investment_wanted_fen,
                    proposal_deadline: deadline.to_string(),
                    visibility: mpb::RequestVisibility::Public as i32,
                    indicator_tags: tags,
                    ..Default::default()
                }),
            })
            .await;
        let request = match created {
            Ok(resp) => resp.into_inner().project_request,
            Err(status) if status.code() == Code::AlreadyExists => {
                self.find_request(&mut client, user, &r.title).await?
            }
            Err(status) => {
                return Err(status).with_context(|| {
                    format!("creating project request {:?} of {}", r.title, user.name)
                });
            }
        }
        .ok_or_else(|| anyhow!("project request {:?}: the response has no request", r.title))?;
        if request.status == mpb::ProjectRequestStatus::Draft as i32 {
            client
                .open_project_request(mpb::OpenProjectRequestRequest {
                    request_id: format!("demo:open:{}", r.key),
                    project_request_id: request.id.clone(),
                    expected_version: 0,
                })
                .await
                .with_context(|| {
                    format!("opening project request {:?} of {}", r.title, user.name)
                })?;
        }
        tracing::info!(water_user = %user.name, request = %r.title, id = %request.id, deadline, "project request open");
        Ok(request.id)
    }

    /// The water user's request with this title, if there is one.
    async fn find_request(
        &self,
        client: &mut Matching,
        user: &Party,
        title: &str,
    ) -> Result<Option<mpb::ProjectRequest>> {
        let mut page_token = String::new();
        loop {
            let page = client
                .list_project_requests(mpb::ListProjectRequestsRequest {
                    page_size: 100,
                    page_token: page_token.clone(),
                    water_user_id: user.id.clone(),
                    ..Default::default()
                })
                .await
                .with_context(|| format!("listing the project requests of {}", user.name))?
                .into_inner();
            if let Some(found) = page.project_requests.into_iter().find(|r| r.title == title) {
                tracing::info!(water_user = %user.name, request = %title, "project request exists; using it");
                return Ok(Some(found));
            }
            if page.next_page_token.is_empty() {
                return Ok(None);
            }
            page_token = page.next_page_token;
        }
    }

    async fn proposal(
        &self,
        r: &RequestData,
        p: &ProposalData,
        request_id: &str,
        company: &Party,
        offering_id: &str,
    ) -> Result<String> {
        let t = &p.terms;
        let proposal = self
            .matching(&company.token)?
            .create_proposal(mpb::CreateProposalRequest {
                request_id: format!("demo:proposal:{}:{}", r.key, p.company),
                proposal: Some(mpb::Proposal {
                    project_request_id: request_id.to_string(),
                    company_id: company.id.clone(),
                    offering_id: offering_id.to_string(),
                    measures: p.measures.clone(),
                    investment_fen: p.investment_fen,
                    promised_savings_litres: promised_savings_litres(r, p),
                    promised_savings_bp: p.promised_savings_bp,
                    contract_model: p.contract_model.number(),
                    terms: Some(types::ContractTerms {
                        share_ratio_bp: t.share_ratio_bp,
                        sharing_period_months: t.sharing_period_months,
                        guaranteed_savings_litres: t.guaranteed_savings_litres,
                        shortfall_price_fen_per_m3: t.shortfall_price_fen_per_m3,
                        bonus_share_bp: t.bonus_share_bp,
                        hosting_fee_fen: t.hosting_fee_fen,
                        water_rights_share_bp: t.water_rights_share_bp,
                        pro_rate_by_days: t.pro_rate_by_days,
                    }),
                    contract_term_months: p.contract_term_months,
                    mv_option: p.mv_option.number(),
                    drivers: p.drivers.clone(),
                    ..Default::default()
                }),
            })
            .await
            .with_context(|| format!("proposal of {} to {:?}", company.name, r.title))?
            .into_inner()
            .proposal
            .ok_or_else(|| {
                anyhow!(
                    "proposal of {} to {:?}: the response has no proposal",
                    company.name,
                    r.title
                )
            })?;
        tracing::info!(company = %company.name, request = %r.title, model = %p.contract_model, id = %proposal.id, "proposal submitted");
        Ok(proposal.id)
    }

    /// The water user accepts the proposal; returns the project id allocated for it.
    async fn accept(
        &self,
        r: &RequestData,
        user: &Party,
        company: &Party,
        proposal_id: &str,
    ) -> Result<String> {
        let resp = self
            .matching(&user.token)?
            .accept_proposal(mpb::AcceptProposalRequest {
                request_id: format!("demo:accept:{}", r.key),
                proposal_id: proposal_id.to_string(),
                expected_version: 0,
            })
            .await
            .with_context(|| {
                format!(
                    "{} accepting the proposal of {} to {:?}",
                    user.name, company.name, r.title
                )
            })?
            .into_inner();
        ensure!(
            !resp.project_id.is_empty(),
            "accepting the proposal of {} to {:?}: no project id in the response",
            company.name,
            r.title
        );
        tracing::info!(water_user = %user.name, company = %company.name, project = %resp.project_id, "proposal accepted");
        Ok(resp.project_id)
    }

    /// Enters a project signed outside the platform (as the district office) and takes it
    /// through its milestones on their dates, each step by its party, with its evidence.
    async fn history(&self, h: &HistoryData, company: &Party, company_code: String) -> Result<()> {
        let (signing, steps) = h
            .milestones
            .split_first()
            .ok_or_else(|| anyhow!("history {}: no milestones", h.key))?;
        let user_code = credit_code(&h.water_user.credit_code)?;
        let admin = self.token("demo-district-office", Role::Admin, None)?;
        let project = self
            .projects(&admin)?
            .create_project(ppb::CreateProjectRequest {
                request_id: format!("demo:history:{}", h.key),
                project: Some(ppb::Project {
                    proposal_id: format!("demo-history-{}", h.key),
                    company: Some(types::CompanyRef {
                        id: company.id.clone(),
                        name: company.name.clone(),
                        credit_code: company_code,
                    }),
                    water_user: Some(types::WaterUserRef {
                        name: h.water_user.name.clone(),
                        credit_code: user_code.clone(),
                        sector: h.water_user.sector.number(),
                        unit_type: h.water_user.unit_type.clone(),
                        town: h.water_user.town.clone(),
                        ..Default::default()
                    }),
                    title: h.title.clone(),
                    contract_model: h.contract_model.number(),
                    investment_fen: h.investment_fen,
                    promised_savings_litres: h.promised_savings_litres,
                    indicator_tags: h.indicator_tags.iter().map(|t| t.number()).collect(),
                    ..Default::default()
                }),
                project_id: String::new(),
                signing_date: signing.date.to_string(),
                evidence: signing.evidence.clone(),
            })
            .await
            .with_context(|| format!("entering project {} ({})", h.key, h.title))?
            .into_inner()
            .project
            .ok_or_else(|| anyhow!("history {}: no project in the response", h.key))?;
        let user_token = self.token(&h.water_user.name, Role::WaterUser, Some(&user_code))?;
        for m in steps {
            let token = if m.stage.by_water_user() {
                &user_token
            } else {
                &company.token
            };
            self.projects(token)?
                .transition_project(ppb::TransitionProjectRequest {
                    request_id: format!("demo:history:{}:{}", h.key, m.stage.code()),
                    project_id: project.id.clone(),
                    to_stage: m.stage.proto() as i32,
                    reason: m.stage.reason().to_string(),
                    expected_version: 0,
                    evidence: m.evidence.clone(),
                    effective_date: m.date.to_string(),
                })
                .await
                .with_context(|| {
                    format!(
                        "moving project {} ({}) to {} on {}",
                        project.id,
                        h.key,
                        m.stage.code(),
                        m.date
                    )
                })?;
        }
        tracing::info!(project = %project.id, title = %h.title, "demo project entered from 2020");
        Ok(())
    }

    /// Polls until the projects service has created the project from the acceptance event.
    async fn wait_for_project(
        &self,
        project_id: &str,
        user: &Party,
        key: &str,
    ) -> Result<ppb::Project> {
        let mut client = self.projects(&user.token)?;
        for _ in 0..PROJECT_POLL_ATTEMPTS {
            match client
                .get_project(ppb::GetProjectRequest {
                    project_id: project_id.to_string(),
                })
                .await
            {
                Ok(resp) => {
                    return resp.into_inner().project.ok_or_else(|| {
                        anyhow!("project {project_id} ({key}): the response has no project")
                    });
                }
                Err(status) if status.code() == Code::NotFound => {
                    tokio::time::sleep(PROJECT_POLL_INTERVAL).await;
                }
                Err(status) => {
                    return Err(status)
                        .with_context(|| format!("getting project {project_id} ({key})"));
                }
            }
        }
        bail!(
            "project {project_id} ({key}) was not created by the projects service within {} s of \
             the acceptance; is the projects service consuming ProposalAccepted events?",
            (PROJECT_POLL_INTERVAL * PROJECT_POLL_ATTEMPTS).as_secs()
        )
    }

    /// Sets a project's baseline year (the 365 days before last calendar month).
    async fn set_demo_baseline(
        &self,
        r: &RequestData,
        project: &ppb::Project,
        user: &Party,
    ) -> Result<()> {
        let (baseline_start, baseline_end, _, _) = demo_measurement_dates()?;
        let mut p = project.clone();
        p.baseline_start_date = baseline_start.to_string();
        p.baseline_end_date = baseline_end.to_string();
        p.stage_history.clear();
        self.projects(&user.token)?
            .update_project(ppb::UpdateProjectRequest {
                request_id: format!("demo:baseline:{}", r.key),
                project: Some(p),
                expected_version: 0,
            })
            .await
            .with_context(|| {
                format!("setting the baseline of project {} ({})", project.id, r.key)
            })?;
        Ok(())
    }

    /// Measures and settles last month, as hand-over requires: a whole-site meter, daily
    /// readings over the baseline year and the month (about 20% less after the retrofit), the
    /// month submitted by the company, verified by a verifier and settled.
    async fn settle_demo_period(
        &self,
        r: &RequestData,
        project_id: &str,
        company: &Party,
    ) -> Result<()> {
        let (baseline_start, baseline_end, period_start, period_end) = demo_measurement_dates()?;
        let mut client = self.projects(&company.token)?;
        let meter = client
            .create_meter(ppb::CreateMeterRequest {
                request_id: format!("demo:meter:{}", r.key),
                meter: Some(ppb::Meter {
                    project_id: project_id.to_string(),
                    name: "总表 DN150".into(),
                    kind: ppb::MeterKind::WholeSite as i32,
                    interval_seconds: 86_400,
                    ..Default::default()
                }),
            })
            .await
            .with_context(|| format!("registering the meter of project {project_id}"))?
            .into_inner()
            .meter
            .ok_or_else(|| anyhow!("project {project_id}: no meter in the response"))?;
        let per_day = (r.baseline_use_litres / 365).max(1_000);
        let mut readings = Vec::new();
        let mut day = baseline_start;
        let mut i: i64 = 0;
        while day <= period_end {
            // ±5% from day to day, deterministic.
            let wobble = per_day * ((i * 7_919) % 101 - 50) / 1_000;
            let litres = if day <= baseline_end {
                per_day + wobble
            } else {
                per_day * 8 / 10 + wobble
            };
            // Read at noon China Standard Time (04:00 UTC).
            let at = day
                .and_hms_opt(4, 0, 0)
                .ok_or_else(|| anyhow!("no noon on {day}"))?
                .and_utc()
                .timestamp_millis();
            readings.push(ppb::Reading {
                read_time: Some(cwsm_platform::grpc::timestamp(at)),
                value_litres: litres,
                estimated: false,
            });
            day = day.succ_opt().ok_or_else(|| anyhow!("date out of range"))?;
            i += 1;
        }
        let messages: Vec<ppb::IngestReadingsRequest> = readings
            .chunks(500)
            .map(|c| ppb::IngestReadingsRequest {
                meter_id: meter.id.clone(),
                value_kind: ppb::ReadingValueKind::IntervalUse as i32,
                readings: c.to_vec(),
                ..Default::default()
            })
            .collect();
        client
            .ingest_readings(tokio_stream::iter(messages))
            .await
            .with_context(|| format!("sending the readings of project {project_id}"))?;
        let period = client
            .submit_period(ppb::SubmitPeriodRequest {
                request_id: format!("demo:submit:{}", r.key),
                project_id: project_id.to_string(),
                start_date: period_start.to_string(),
                note: "演示数据：远传水表日读数".into(),
            })
            .await
            .with_context(|| format!("submitting the last period of project {project_id}"))?
            .into_inner()
            .period
            .ok_or_else(|| anyhow!("project {project_id}: no period in the response"))?;
        // The district office assigns the demo's verifier body, independent of both parties;
        // only it verifies the project's periods.
        let verifier_org = credit_code(DEMO_VERIFIER_BODY)?;
        let admin = self.token("demo-admin", Role::Admin, None)?;
        self.projects(&admin)?
            .assign_verifier(ppb::AssignVerifierRequest {
                request_id: format!("demo:assign-verifier:{}", r.key),
                project_id: project_id.to_string(),
                verifier_org: verifier_org.clone(),
                expected_version: 0,
            })
            .await
            .with_context(|| format!("assigning the verifier of project {project_id}"))?;
        let verifier = self.token("demo-verifier", Role::Verifier, Some(&verifier_org))?;
        self.projects(&verifier)?
            .verify_period(ppb::VerifyPeriodRequest {
                request_id: format!("demo:verify:{}", r.key),
                period_id: period.id.clone(),
                expected_version: 0,
                note: "第三方核查：抄表记录与远传数据一致".into(),
            })
            .await
            .with_context(|| format!("verifying period {} of project {project_id}", period.id))?;
        client
            .settle_period(ppb::SettlePeriodRequest {
                request_id: format!("demo:settle:{}", r.key),
                period_id: period.id.clone(),
                expected_version: 0,
            })
            .await
            .with_context(|| format!("settling period {} of project {project_id}", period.id))?;
        tracing::info!(project = %project_id, period = %period.id, savings_litres = period.savings_litres, "demo period verified and settled");
        Ok(())
    }

    /// Takes the project along the normal path to the request's target stage.
    async fn advance(
        &self,
        r: &RequestData,
        project: ppb::Project,
        user: &Party,
        company: &Party,
    ) -> Result<()> {
        let target = r.stage.unwrap_or(Stage::Contracted);
        let current = Stage::from_proto(project.stage).ok_or_else(|| {
            anyhow!(
                "project {} ({}) is in stage {}, off the normal path",
                project.id,
                r.key,
                project.stage
            )
        })?;
        // Hand-over needs a settled period, measured against a baseline year that is set
        // while the project is contracted.
        if target >= Stage::HandedOver && current == Stage::Contracted {
            self.set_demo_baseline(r, &project, user).await?;
        }
        for step in Stage::PATH
            .into_iter()
            .filter(|s| *s > current && *s <= target)
        {
            if step == Stage::HandedOver {
                self.settle_demo_period(r, &project.id, company).await?;
            }
            let actor = if step.by_water_user() { user } else { company };
            self.projects(&actor.token)?
                .transition_project(ppb::TransitionProjectRequest {
                    request_id: format!("demo:stage:{}:{}", r.key, step.code()),
                    project_id: project.id.clone(),
                    to_stage: step.proto() as i32,
                    reason: step.reason().to_string(),
                    expected_version: 0,
                    evidence: format!(
                        "{} DEMO-{}-{}",
                        step.evidence_kind(),
                        r.key.to_uppercase(),
                        step.code().to_uppercase()
                    ),
                    effective_date: String::new(),
                })
                .await
                .with_context(|| {
                    format!(
                        "{} moving project {} ({:?}) to {}",
                        actor.name,
                        project.id,
                        r.title,
                        step.code()
                    )
                })?;
            tracing::info!(project = %project.id, request = %r.title, stage = step.code(), by = %actor.name, "project moved");
        }
        tracing::info!(project = %project.id, request = %r.title, stage = target.code(), "project at its demo stage");
        Ok(())
    }
}

/// The demo's measured dates: last calendar month (China Standard Time) is the reporting
/// period, the 365 days before it the baseline: (baseline start, baseline end, period start,
/// period end).
fn demo_measurement_dates() -> Result<(
    chrono::NaiveDate,
    chrono::NaiveDate,
    chrono::NaiveDate,
    chrono::NaiveDate,
)> {
    use chrono::Datelike;
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    let this_month = today
        .with_day(1)
        .ok_or_else(|| anyhow!("no first day of {today}"))?;
    let period_start = this_month
        .checked_sub_months(chrono::Months::new(1))
        .ok_or_else(|| anyhow!("date out of range"))?;
    let period_end = this_month
        .pred_opt()
        .ok_or_else(|| anyhow!("date out of range"))?;
    let baseline_end = period_start
        .pred_opt()
        .ok_or_else(|| anyhow!("date out of range"))?;
    Ok((
        period_start - chrono::Duration::days(365),
        baseline_end,
        period_start,
        period_end,
    ))
}

fn contact(c: &ContactData) -> types::Contact {
    types::Contact {
        name: c.name.clone(),
        phone: c.phone.clone(),
        email: c.email.clone(),
    }
}

fn party<'m>(parties: &'m HashMap<&str, Party>, key: &str) -> Result<&'m Party> {
    parties
        .get(key)
        .ok_or_else(|| anyhow!("{key:?} was not loaded"))
}

fn lookup<'m>(ids: &'m HashMap<&str, String>, key: &str) -> Result<&'m str> {
    ids.get(key)
        .map(String::as_str)
        .ok_or_else(|| anyhow!("{key:?} was not loaded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_characters_follow_gb_32100() {
        // The standard's worked example.
        assert_eq!(
            credit_code("91350100M000100Y4").ok().as_deref(),
            Some("91350100M000100Y43")
        );
        assert!(credit_code("91350100M000100Y").is_err());
        assert!(credit_code("91350100M000100I4").is_err());
    }

    #[test]
    fn the_demo_data_is_consistent() {
        let data = match Marketplace::parse(MARKETPLACE) {
            Ok(d) => d,
            Err(e) => panic!("{e:#}"),
        };
        // Dozens of companies and a hundred water users of every sector, the hand-written ones
        // first, then the generated ones; the same on every parse.
        assert!((36..=60).contains(&data.companies.len()));
        assert_eq!(data.water_users.len(), 100);
        assert!((20..=50).contains(&data.requests.len()));
        for sector in Sector::ALL {
            let n = data
                .water_users
                .iter()
                .filter(|u| u.sector == *sector)
                .count();
            assert!(n >= 5, "{n} water users of {sector}");
        }
        let again = match Marketplace::parse(MARKETPLACE) {
            Ok(d) => d,
            Err(e) => panic!("{e:#}"),
        };
        let codes = |m: &Marketplace| -> Vec<String> {
            m.companies
                .iter()
                .map(|c| format!("{} {}", c.credit_code, c.name))
                .chain(
                    m.water_users
                        .iter()
                        .map(|u| format!("{} {}", u.credit_code, u.name)),
                )
                .collect()
        };
        assert_eq!(codes(&data), codes(&again), "generated deterministically");
        let accepted: Vec<_> = data
            .requests
            .iter()
            .filter(|r| r.accept.is_some())
            .collect();
        assert!((3..=4).contains(&accepted.len()));
        assert!(accepted.iter().any(|r| r.stage == Some(Stage::HandedOver)));
        // Every code passes the matching service's own check.
        let bodies = data.companies.iter().map(|c| &c.credit_code);
        for body in bodies.chain(data.water_users.iter().map(|u| &u.credit_code)) {
            let code = match credit_code(body) {
                Ok(c) => c,
                Err(e) => panic!("{e:#}"),
            };
            assert!(
                cwsm_matching::domain::check_credit_code("credit_code", &code).is_ok(),
                "{code}"
            );
        }
    }

    #[test]
    fn vocabulary_codes_deserialize_as_the_platform_writes_them() {
        #[derive(Deserialize)]
        struct Codes {
            sector: Vec<Sector>,
            model: Vec<ContractModel>,
            technology: Vec<Technology>,
            grade: Vec<CertificationGrade>,
            tag: Vec<IndicatorTag>,
            mv: Vec<MvOption>,
        }
        fn quoted<T: Copy>(all: &[T], code: fn(T) -> &'static str) -> String {
            let codes: Vec<String> = all.iter().map(|v| format!("{:?}", code(*v))).collect();
            format!("[{}]", codes.join(", "))
        }
        let text = format!(
            "sector = {}\nmodel = {}\ntechnology = {}\ngrade = {}\ntag = {}\nmv = {}\n",
            quoted(Sector::ALL, Sector::code),
            quoted(ContractModel::ALL, ContractModel::code),
            quoted(Technology::ALL, Technology::code),
            quoted(CertificationGrade::ALL, CertificationGrade::code),
            quoted(IndicatorTag::ALL, IndicatorTag::code),
            quoted(MvOption::ALL, MvOption::code),
        );
        let codes: Codes = match toml::from_str(&text) {
            Ok(c) => c,
            Err(e) => panic!("{e}\n{text}"),
        };
        assert_eq!(codes.sector, Sector::ALL);
        assert_eq!(codes.model, ContractModel::ALL);
        assert_eq!(codes.technology, Technology::ALL);
        assert_eq!(codes.grade, CertificationGrade::ALL);
        assert_eq!(codes.tag, IndicatorTag::ALL);
        assert_eq!(codes.mv, MvOption::ALL);
    }

    #[test]
    fn vocabulary_numbers_match_the_proto_enums() {
        assert_eq!(Sector::School.number(), types::Sector::School as i32);
        assert_eq!(
            Sector::WaterSupply.number(),
            types::Sector::WaterSupply as i32
        );
        assert_eq!(
            ContractModel::SavingsPlusWaterRights.number(),
            types::ContractModel::SavingsPlusWaterRights as i32
        );
        assert_eq!(
            CertificationGrade::Aaaaa.number(),
            types::CertificationGrade::Aaaaa as i32
        );
        assert_eq!(MvOption::C.number(), types::MvOption::C as i32);
        assert_eq!(
            IndicatorTag::TechnicalRetrofit.number(),
            types::IndicatorTag::TechnicalRetrofit as i32
        );
    }
}
