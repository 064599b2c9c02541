//! Ranking offerings for a project request, with every part of the score explained.
//!
//! First hard filters (an offering that fails one is listed as excluded, with the reason), then
//! a weighted score of six parts in 0..=1. A company without history gets a neutral track-record
//! value (0.5) instead of 0, so newcomers are ranked on what they offer rather than starved by
//! incumbents; the track record moves away from 0.5 only as verified projects accumulate (its
//! weight grows with the number of completed projects, full at three).
//!
//! The hot path ([`rank_catalog`]) reads, for every candidate, only a small packed record of
//! the numbers the filters and the score need (sectors, towns, models and technologies as bit
//! sets; see [`Catalog`]), so one pass over 100,000 offerings stays in cache; it writes the
//! words (the explanations) only for the offerings it returns.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::domain::{Company, Offering, OfferingStatus, ProjectRequest, Visibility, WaterUser};
use cwsm_platform::lang::{Lang, Text};
use cwsm_platform::vocab::CertificationGrade;

#[derive(Clone, Debug, PartialEq)]
pub struct ScorePart {
    pub name: &'static str,
    pub weight: f64,
    pub value: f64,
    /// Why, in both languages.
    pub explanation: Text,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ranked {
    pub offering: Offering,
    pub company: Company,
    pub score: f64,
    pub parts: Vec<ScorePart>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Excluded {
    pub offering: Offering,
    pub company: Company,
    /// The hard filter that failed: `status`, `not_invited`, `sector`, `town`,
    /// `contract_model`, `investment_range`, `capacity`.
    pub filter: &'static str,
    /// Why, in both languages.
    pub explanation: Text,
}

/// A ranking cut to what is returned, with the totals.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The best `limit`, best first.
    pub ranked: Vec<Ranked>,
    /// How many offerings passed the hard filters.
    pub ranked_total: usize,
    /// The first `excluded_limit` excluded offerings, in candidate order.
    pub excluded: Vec<Excluded>,
    /// How many offerings a hard filter excluded.
    pub excluded_total: usize,
}

pub const WEIGHTS: [(&str, f64); 6] = [
    ("technology", 0.25),
    ("contract_model", 0.15),
    ("capacity", 0.15),
    ("certification", 0.15),
    ("track_record", 0.15),
    ("savings", 0.15),
];

/// A company's track record counts fully from this many completed projects on.
const TRUSTED_AFTER_PROJECTS: f64 = 3.0;

/// Towns get a bit each in the packed records, up to this many; a candidate serving a town
/// beyond them is compared by name.
const TOWN_BITS: usize = 128;

/// What the filters and the score read of a candidate, packed (sets as bits of the proto
/// numbers, towns as bits of the catalogue's town index).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Packed {
    published: bool,
    /// Sectors served; 0 when all.
    sectors: u16,
    /// Towns served; `towns_all` when all; compare names when not `towns_exact`.
    towns: u128,
    towns_all: bool,
    towns_exact: bool,
    models: u16,
    technologies: u16,
    min_investment_fen: i64,
    max_investment_fen: i64,
    capacity_fen: i64,
    typical_savings_bp: i32,
    certification: f64,
    track_record: f64,
}

fn bit(number: i32) -> u16 {
    u16::try_from(number)
        .ok()
        .and_then(|n| 1u16.checked_shl(u32::from(n)))
        .unwrap_or(0)
}

impl Packed {
    fn of(offering: &Offering, company: &Company, towns: Option<&HashMap<String, u32>>) -> Packed {
        let o = &offering.draft;
        let served = towns_served(offering, company);
        let mut town_bits = 0u128;
        let mut exact = towns.is_some();
        for t in served {
            match towns.and_then(|index| index.get(t)) {
                Some(i) if (*i as usize) < TOWN_BITS => town_bits |= 1u128 << i,
                _ => exact = false,
            }
        }
        let t = &company.track_record;
        Packed {
            published: offering.status == OfferingStatus::Published,
            sectors: sectors_served(offering, company)
                .iter()
                .fold(0, |acc, s| acc | bit(s.number())),
            towns: town_bits,
            towns_all: served.is_empty(),
            towns_exact: exact,
            models: o
                .contract_models
                .iter()
                .fold(0, |acc, m| acc | bit(m.number())),
            technologies: o
                .technologies
                .iter()
                .fold(0, |acc, t| acc | bit(t.number())),
            min_investment_fen: o.min_investment_fen,
            max_investment_fen: o.max_investment_fen,
            capacity_fen: company.profile.financing_capacity_fen,
            typical_savings_bp: o.typical_savings_bp,
            // Only the district's confirmed grade counts: a claim alone scores as no certification.
            certification: certification_steps(company.confirmed_grade()) / 5.0,
            track_record: if t.projects_completed <= 0 || t.promised_savings_litres <= 0 {
                0.5
            } else {
                let delivery =
                    (t.verified_savings_litres as f64 / t.promised_savings_litres as f64).min(1.0);
                let confidence = (t.projects_completed as f64 / TRUSTED_AFTER_PROJECTS).min(1.0);
                0.5 + (delivery - 0.5) * confidence
            },
        }
    }
}

/// The published catalogue ready for ranking: the candidates (in offering id order) and their
/// packed records. Built once per change of the catalogue (see `Store::published_offerings`).
#[derive(Debug, Default)]
pub struct Catalog {
    candidates: Vec<(Offering, Company)>,
    packed: Vec<Packed>,
    towns: HashMap<String, u32>,
}

impl Catalog {
    pub fn new(candidates: Vec<(Offering, Company)>) -> Catalog {
        let mut towns: HashMap<String, u32> = HashMap::new();
        for (o, c) in &candidates {
            for t in towns_served(o, c) {
                if towns.len() < TOWN_BITS && !towns.contains_key(t) {
                    let next = u32::try_from(towns.len()).unwrap_or(u32::MAX);
                    towns.insert(t.clone(), next);
                }
            }
        }
        let packed = candidates
            .iter()
            .map(|(o, c)| Packed::of(o, c, Some(&towns)))
            .collect();
        Catalog {
            candidates,
            packed,
            towns,
        }
    }
}

impl std::ops::Deref for Catalog {
    type Target = [(Offering, Company)];
    fn deref(&self) -> &Self::Target {
        &self.candidates
    }
}

/// Ranks every candidate for `request` of `user`: best first, ties broken by certification,
/// then financing capacity, then offering id (so the order is the same every time).
pub fn rank(
    request: &ProjectRequest,
    user: &WaterUser,
    candidates: &[(Offering, Company)],
) -> (Vec<Ranked>, Vec<Excluded>) {
    let o = rank_top(request, user, candidates, usize::MAX, usize::MAX);
    (o.ranked, o.excluded)
}

/// Ranks `candidates` for `request` of `user` and returns the best `limit` with their score
/// parts, and the first `excluded_limit` excluded offerings with the filter that failed.
pub fn rank_top(
    request: &ProjectRequest,
    user: &WaterUser,
    candidates: &[(Offering, Company)],
    limit: usize,
    excluded_limit: usize,
) -> Outcome {
    let packed: Vec<Packed> = candidates
        .iter()
        .map(|(o, c)| Packed::of(o, c, None))
        .collect();
    rank_packed(
        request,
        user,
        candidates,
        &packed,
        None,
        limit,
        excluded_limit,
    )
}

/// [`rank_top`] over a prepared [`Catalog`]: the hot path of RankOfferings.
pub fn rank_catalog(
    request: &ProjectRequest,
    user: &WaterUser,
    catalog: &Catalog,
    limit: usize,
    excluded_limit: usize,
) -> Outcome {
    rank_packed(
        request,
        user,
        &catalog.candidates,
        &catalog.packed,
        Some(&catalog.towns),
        limit,
        excluded_limit,
    )
}

/// What the filters need of the request and its water user, prepared once.
struct Asked<'a> {
    request: &'a ProjectRequest,
    user: &'a WaterUser,
    sector: u16,
    /// The user's town as a bit of the catalogue's index (0 when no candidate names it).
    town: u128,
    models: u16,
}

#[allow(clippy::too_many_arguments)]
fn rank_packed(
    request: &ProjectRequest,
    user: &WaterUser,
    candidates: &[(Offering, Company)],
    packed: &[Packed],
    towns: Option<&HashMap<String, u32>>,
    limit: usize,
    excluded_limit: usize,
) -> Outcome {
    let asked = Asked {
        request,
        user,
        sector: bit(user.profile.sector.number()),
        town: towns
            .and_then(|index| index.get(&user.profile.town))
            .filter(|i| (**i as usize) < TOWN_BITS)
            .map_or(0, |i| 1u128 << i),
        models: request
            .draft
            .preferred_contract_models
            .iter()
            .fold(0, |acc, m| acc | bit(m.number())),
    };
    let mut scored: Vec<(f64, usize)> = Vec::new();
    let mut excluded: Vec<(usize, &'static str)> = Vec::new();
    for (i, ((offering, company), p)) in candidates.iter().zip(packed).enumerate() {
        match failed_filter(&asked, offering, company, p) {
            Some(filter) => excluded.push((i, filter)),
            None => {
                let values = values(request, p);
                let score = WEIGHTS
                    .iter()
                    .zip(values)
                    .map(|((_, w), v)| w * v)
                    .sum::<f64>();
                scored.push((score, i));
            }
        }
    }
    let ranked_total = scored.len();
    let order = |a: &(f64, usize), b: &(f64, usize)| -> Ordering {
        let (oa, ca) = &candidates[a.1];
        let (ob, cb) = &candidates[b.1];
        b.0.partial_cmp(&a.0)
            .unwrap_or(Ordering::Equal)
            .then(cb.confirmed_grade().cmp(&ca.confirmed_grade()))
            .then(
                cb.profile
                    .financing_capacity_fen
                    .cmp(&ca.profile.financing_capacity_fen),
            )
            .then(oa.id.cmp(&ob.id))
    };
    if limit < scored.len() {
        if limit > 0 {
            scored.select_nth_unstable_by(limit - 1, order);
        }
        scored.truncate(limit);
    }
    scored.sort_by(order);
    let ranked = scored
        .iter()
        .map(|&(score, i)| {
            let (offering, company) = &candidates[i];
            Ranked {
                offering: offering.clone(),
                company: company.clone(),
                score,
                parts: explain(request, offering, company),
            }
        })
        .collect();
    let excluded_total = excluded.len();
    let excluded = excluded
        .iter()
        .take(excluded_limit)
        .map(|&(i, filter)| {
            let (offering, company) = &candidates[i];
            Excluded {
                offering: offering.clone(),
                company: company.clone(),
                filter,
                explanation: filter_explanation(filter, request, user, offering, company),
            }
        })
        .collect();
    Outcome {
        ranked,
        ranked_total,
        excluded,
        excluded_total,
    }
}

fn sectors_served<'a>(
    offering: &'a Offering,
    company: &'a Company,
) -> &'a [cwsm_platform::vocab::Sector] {
    if offering.draft.sectors.is_empty() {
        &company.profile.sectors
    } else {
        &offering.draft.sectors
    }
}

fn towns_served<'a>(offering: &'a Offering, company: &'a Company) -> &'a [String] {
    if offering.draft.towns.is_empty() {
        &company.profile.towns
    } else {
        &offering.draft.towns
    }
}

/// The first hard filter the offering fails, if any. Reads the packed record; the offering and
/// company only for an invited-only request and for towns beyond the packed index.
fn failed_filter(
    asked: &Asked<'_>,
    offering: &Offering,
    company: &Company,
    p: &Packed,
) -> Option<&'static str> {
    let r = &asked.request.draft;
    if !p.published {
        return Some("status");
    }
    if r.visibility == Visibility::Invited && !asked.request.admits(&company.id) {
        return Some("not_invited");
    }
    if p.sectors != 0 && p.sectors & asked.sector == 0 {
        return Some("sector");
    }
    if !p.towns_all {
        let serves = if p.towns_exact {
            p.towns & asked.town != 0
        } else {
            towns_served(offering, company)
                .iter()
                .any(|t| t == &asked.user.profile.town)
        };
        if !serves {
            return Some("town");
        }
    }
    if asked.models != 0 && p.models & asked.models == 0 {
        return Some("contract_model");
    }
    let ask = r.investment_wanted_fen;
    if ask > 0
        && (ask < p.min_investment_fen || (p.max_investment_fen > 0 && ask > p.max_investment_fen))
    {
        return Some("investment_range");
    }
    if p.capacity_fen < ask {
        return Some("capacity");
    }
    None
}

fn filter_explanation(
    filter: &str,
    request: &ProjectRequest,
    user: &WaterUser,
    offering: &Offering,
    company: &Company,
) -> Text {
    let o = &offering.draft;
    let r = &request.draft;
    let sector = user.profile.sector;
    let town = &user.profile.town;
    let yuan = |fen: i64| fen / 100;
    match filter {
        "status" => Text::new(
            format!("服务方案处于{}状态，未发布", offering.status.code()),
            format!("the offering is {}, not published", offering.status.code()),
        ),
        "not_invited" => Text::new(
            "该需求仅向受邀企业开放",
            "the request is open to invited companies only",
        ),
        "sector" => Text::new(
            format!("不服务{}领域", sector.name(Lang::Zh)),
            format!("does not serve the {} sector", sector.code()),
        ),
        "town" => Text::new(format!("不服务{town}"), format!("does not serve {town}")),
        "contract_model" => Text::new(
            "不支持用水单位倾向的任何合同模式",
            "supports none of the contract models the user prefers",
        ),
        "investment_range" => {
            let (max_zh, max_en) = if o.max_investment_fen > 0 {
                (
                    format!("{} 元", yuan(o.max_investment_fen)),
                    yuan(o.max_investment_fen).to_string(),
                )
            } else {
                ("不限".to_string(), "any amount".to_string())
            };
            Text::new(
                format!(
                    "投资额 {} 元至 {max_zh}；用水单位需要 {} 元",
                    yuan(o.min_investment_fen),
                    yuan(r.investment_wanted_fen)
                ),
                format!(
                    "invests {} to {max_en} yuan; the user asks for {} yuan",
                    yuan(o.min_investment_fen),
                    yuan(r.investment_wanted_fen)
                ),
            )
        }
        "capacity" => Text::new(
            format!(
                "融资能力 {} 元，低于所需的 {} 元",
                yuan(company.profile.financing_capacity_fen),
                yuan(r.investment_wanted_fen)
            ),
            format!(
                "financing capacity {} yuan is below the {} yuan asked",
                yuan(company.profile.financing_capacity_fen),
                yuan(r.investment_wanted_fen)
            ),
        ),
        other => Text::new(
            format!("未通过 {other} 条件"),
            format!("fails the {other} filter"),
        ),
    }
}

/// The certification part in words: what the district confirmed, and a claim it has not.
fn certification_words(company: &Company) -> Text {
    let claimed = company.profile.claimed_certification;
    let confirmed = company.confirmed_grade();
    if confirmed == CertificationGrade::None && claimed != CertificationGrade::None {
        Text::new(
            format!("自称{}，尚未经区里确认", claimed.name(Lang::Zh)),
            format!(
                "claimed {}, not yet confirmed by the district",
                claimed.name(Lang::En)
            ),
        )
    } else if confirmed < claimed {
        Text::new(
            format!(
                "资质{}（经区里确认；自称{}）",
                confirmed.name(Lang::Zh),
                claimed.name(Lang::Zh)
            ),
            format!(
                "certification {} (confirmed by the district; claimed {})",
                confirmed.name(Lang::En),
                claimed.name(Lang::En)
            ),
        )
    } else {
        Text::new(
            format!("资质{}", confirmed.name(Lang::Zh)),
            format!("certification {}", confirmed.name(Lang::En)),
        )
    }
}

fn certification_steps(grade: CertificationGrade) -> f64 {
    match grade {
        CertificationGrade::None => 0.0,
        CertificationGrade::A => 1.0,
        CertificationGrade::Aa => 2.0,
        CertificationGrade::Aaa => 3.0,
        CertificationGrade::Aaaa => 4.0,
        CertificationGrade::Aaaaa => 5.0,
    }
}

/// The values of the six parts, in the order of [`WEIGHTS`], each in 0..=1.
fn values(request: &ProjectRequest, p: &Packed) -> [f64; 6] {
    let r = &request.draft;

    // Technology: the share of wanted technologies the offering covers.
    let technology = if r.wanted_technologies.is_empty() {
        1.0
    } else {
        let covered = r
            .wanted_technologies
            .iter()
            .filter(|t| p.technologies & bit(t.number()) != 0)
            .count();
        covered as f64 / r.wanted_technologies.len() as f64
    };

    // Contract model: 1 for the user's first preference, less for later ones.
    let model = match r
        .preferred_contract_models
        .iter()
        .position(|m| p.models & bit(m.number()) != 0)
    {
        None => 1.0,
        Some(i) => 1.0 - 0.25 * i as f64,
    };

    // Capacity: headroom of financing over the investment asked (twice the ask scores 1).
    let ask = r.investment_wanted_fen;
    let capacity = if ask <= 0 {
        1.0
    } else {
        p.capacity_fen as f64 / (2.0 * ask as f64)
    };

    // Savings: how close the offering's typical savings rate is to what the user expects.
    let savings = if r.expected_savings_bp <= 0 || p.typical_savings_bp <= 0 {
        0.5
    } else {
        let gap = f64::from((p.typical_savings_bp - r.expected_savings_bp).abs());
        1.0 - gap / f64::from(r.expected_savings_bp.max(1000))
    };

    // Certification (A … AAAAA on a 0..1 scale) and the track record (verified against
    // promised savings, trusted more with more projects; neutral without history) are the
    // company's, packed.
    [
        technology,
        model,
        capacity,
        p.certification,
        p.track_record,
        savings,
    ]
    .map(|v| v.clamp(0.0, 1.0))
}

/// The parts of the score with their words; the values are those of [`values`].
fn explain(request: &ProjectRequest, offering: &Offering, company: &Company) -> Vec<ScorePart> {
    let o = &offering.draft;
    let r = &request.draft;
    let values = values(request, &Packed::of(offering, company, None));
    let t = &company.track_record;
    let words = [
        if r.wanted_technologies.is_empty() {
            Text::new("需求未指定技术", "the request names no technology")
        } else {
            let covered = r
                .wanted_technologies
                .iter()
                .filter(|t| o.technologies.contains(t))
                .count();
            let wanted = r.wanted_technologies.len();
            Text::new(
                format!("覆盖所需 {wanted} 项技术中的 {covered} 项"),
                format!("covers {covered} of {wanted} wanted technologies"),
            )
        },
        match r
            .preferred_contract_models
            .iter()
            .position(|m| o.contract_models.contains(m))
        {
            None => Text::new(
                "需求未说明倾向的合同模式",
                "the request states no preferred model",
            ),
            Some(i) => {
                let model = r.preferred_contract_models[i];
                Text::new(
                    format!("提供{}，为用水单位第 {} 倾向", model.name(Lang::Zh), i + 1),
                    format!("offers {}, the user's preference #{}", model.code(), i + 1),
                )
            }
        },
        if r.investment_wanted_fen <= 0 {
            Text::new("用水单位不需要企业投资", "the user asks for no investment")
        } else {
            let times =
                company.profile.financing_capacity_fen as f64 / r.investment_wanted_fen as f64;
            Text::new(
                format!("融资能力为所需投资的 {times:.1} 倍"),
                format!("financing capacity is {times:.1}× the investment asked"),
            )
        },
        certification_words(company),
        if t.projects_completed <= 0 || t.promised_savings_litres <= 0 {
            Text::new(
                "尚无核查通过的项目：取中性值，新企业按其方案排名",
                "no verified projects yet: neutral, so a newcomer is ranked on its offer",
            )
        } else {
            let verified = (t.verified_savings_litres as f64 / t.promised_savings_litres as f64)
                .min(1.0)
                * 100.0;
            Text::new(
                format!(
                    "已完成 {} 个项目；承诺节水量的 {verified:.0}% 经核查",
                    t.projects_completed
                ),
                format!(
                    "{} projects completed; {verified:.0}% of promised savings verified",
                    t.projects_completed
                ),
            )
        },
        if r.expected_savings_bp <= 0 || o.typical_savings_bp <= 0 {
            Text::new("无节水率可比较", "no savings rate to compare")
        } else {
            let typical = f64::from(o.typical_savings_bp) / 100.0;
            let expected = f64::from(r.expected_savings_bp) / 100.0;
            Text::new(
                format!("通常节水 {typical:.1}%，用水单位期望 {expected:.1}%"),
                format!("typically saves {typical:.1}%, the user expects {expected:.1}%"),
            )
        },
    ];
    WEIGHTS
        .iter()
        .zip(values)
        .zip(words)
        .map(|(((name, weight), value), explanation)| ScorePart {
            name,
            weight: *weight,
            value,
            explanation,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;
    use cwsm_platform::vocab::{ContractModel, Sector, Technology};

    fn company(id: &str, grade: CertificationGrade, capacity: i64) -> Company {
        Company {
            id: id.into(),
            profile: CompanyProfile {
                credit_code: String::new(),
                name: id.into(),
                description: String::new(),
                contact: Contact::default(),
                towns: vec![],
                sectors: vec![],
                claimed_certification: grade,
                certification_evidence: String::new(),
                financing_capacity_fen: capacity,
                jurisdiction_code: String::new(),
            },
            // Confirmed as claimed, as the district would.
            certification: Certification {
                grade: Some(grade),
                ..Default::default()
            },
            track_record: TrackRecord::default(),
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 1,
        }
    }

    fn offering(id: &str, company_id: &str) -> Offering {
        Offering {
            id: id.into(),
            draft: OfferingDraft {
                company_id: company_id.into(),
                title: id.into(),
                description: String::new(),
                technologies: vec![Technology::LeakDetection],
                contract_models: vec![ContractModel::SharedSavings],
                sectors: vec![],
                towns: vec![],
                min_investment_fen: 0,
                max_investment_fen: 0,
                typical_savings_bp: 2000,
                typical_term_months: 96,
            },
            status: OfferingStatus::Published,
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 1,
        }
    }

    fn request() -> (ProjectRequest, WaterUser) {
        let request = ProjectRequest {
            id: "r".into(),
            draft: RequestDraft {
                water_user_id: "u".into(),
                title: "t".into(),
                problem: String::new(),
                scope: String::new(),
                baseline_use_litres: 1_000_000_000,
                expected_savings_bp: 2000,
                price_fen_per_m3: 410,
                preferred_contract_models: vec![ContractModel::SharedSavings],
                wanted_technologies: vec![Technology::LeakDetection],
                investment_wanted_fen: 100_000_000,
                proposal_deadline: String::new(),
                visibility: Visibility::Public,
                invited_company_ids: vec![],
                indicator_tags: vec![],
            },
            status: RequestStatus::Open,
            status_reason: String::new(),
            awarded_proposal_id: String::new(),
            proposal_count: 0,
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 1,
        };
        let user = WaterUser {
            id: "u".into(),
            profile: WaterUserProfile {
                credit_code: String::new(),
                name: "u".into(),
                sector: Sector::School,
                unit_type: String::new(),
                town: "新桥街道".into(),
                jurisdiction_code: "320411004".into(),
                annual_use_litres: 0,
                annual_quota_litres: 0,
                contact: Contact::default(),
            },
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 1,
        };
        (request, user)
    }

    #[test]
    fn only_a_confirmed_grade_counts_and_a_claim_is_explained_as_such() {
        let (r, u) = request();
        // Claims AAA, confirmed nothing; the other claims and has confirmed A.
        let mut claimant = company("c1", CertificationGrade::Aaa, 500_000_000);
        claimant.certification = Certification::default();
        let confirmed = company("c2", CertificationGrade::A, 500_000_000);
        let candidates = vec![
            (offering("o-a", "c1"), claimant.clone()),
            (offering("o-b", "c2"), confirmed),
        ];
        let (ranked, _) = rank(&r, &u, &candidates);
        assert_eq!(ranked[0].offering.id, "o-b", "the confirmed A ranks first");
        let part = |x: &Ranked| {
            x.parts
                .iter()
                .find(|p| p.name == "certification")
                .cloned()
                .expect("a certification part")
        };
        assert_eq!(part(&ranked[1]).value, 0.0);
        assert_eq!(
            part(&ranked[1]).explanation.en,
            "claimed AAA, not yet confirmed by the district"
        );

        // Confirmed lower than claimed: ranked on the confirmed grade, both said.
        claimant.certification.grade = Some(CertificationGrade::Aa);
        let candidates = vec![(offering("o-a", "c1"), claimant)];
        let (ranked, _) = rank(&r, &u, &candidates);
        assert_eq!(part(&ranked[0]).value, 0.4);
        assert_eq!(
            part(&ranked[0]).explanation.en,
            "certification AA (confirmed by the district; claimed AAA)"
        );
    }

    #[test]
    fn equal_scores_are_ordered_by_capacity_then_offering_id_whatever_the_input_order() {
        let (r, u) = request();
        // Equal scores: the same grade and capacity (its part is capped at twice the ask).
        let same = |id: &str, oid: &str| {
            (
                offering(oid, id),
                company(id, CertificationGrade::Aa, 500_000_000),
            )
        };
        let candidates = vec![same("c2", "o-b"), same("c1", "o-a"), same("c3", "o-c")];
        let (ranked, _) = rank(&r, &u, &candidates);
        let ids: Vec<&str> = ranked.iter().map(|x| x.offering.id.as_str()).collect();
        assert_eq!(
            ids,
            ["o-a", "o-b", "o-c"],
            "equal everything: by offering id"
        );
        assert!(ranked.windows(2).all(|w| w[0].score == w[1].score));

        // Same score but a higher financing capacity (beyond the capped part) ranks first.
        let candidates = vec![
            (
                offering("o-a", "c1"),
                company("c1", CertificationGrade::Aa, 300_000_000),
            ),
            (
                offering("o-b", "c2"),
                company("c2", CertificationGrade::Aa, 900_000_000),
            ),
        ];
        let (ranked, _) = rank(&r, &u, &candidates);
        assert_eq!(ranked[0].score, ranked[1].score);
        assert_eq!(ranked[0].offering.id, "o-b");

        // The order does not depend on the order of the candidates.
        let mut reversed = candidates.clone();
        reversed.reverse();
        assert_eq!(rank(&r, &u, &reversed).0, ranked);
    }

    #[test]
    fn a_company_that_cannot_finance_the_ask_is_excluded() {
        let (r, u) = request();
        let candidates = vec![
            (
                offering("o-a", "c1"),
                company("c1", CertificationGrade::Aa, 200_000_000),
            ),
            (
                offering("o-b", "c2"),
                company("c2", CertificationGrade::Aaaaa, 80_000_000),
            ),
        ];
        let (ranked, excluded) = rank(&r, &u, &candidates);
        assert_eq!(ranked.len(), 1);
        assert_eq!(excluded.len(), 1);
        assert_eq!(excluded[0].filter, "capacity");
        assert!(
            excluded[0]
                .explanation
                .en
                .contains("800000 yuan is below the 1000000 yuan")
        );
    }

    #[test]
    fn a_newcomer_gets_a_neutral_track_record_and_can_outrank_a_weak_incumbent() {
        let (r, u) = request();
        let newcomer = company("new", CertificationGrade::Aa, 500_000_000);
        let mut incumbent = company("old", CertificationGrade::Aa, 500_000_000);
        incumbent.track_record = TrackRecord {
            projects_completed: 4,
            verified_savings_litres: 300,
            promised_savings_litres: 1000,
        };
        let candidates = vec![
            (offering("o-old", "old"), incumbent.clone()),
            (offering("o-new", "new"), newcomer),
        ];
        let (ranked, _) = rank(&r, &u, &candidates);
        let track = |x: &Ranked| {
            x.parts
                .iter()
                .find(|p| p.name == "track_record")
                .map(|p| (p.value, p.explanation.en.clone()))
                .expect("track part")
        };
        assert_eq!(
            ranked[0].offering.id, "o-new",
            "30% delivery ranks below no history"
        );
        assert_eq!(track(&ranked[0]).0, 0.5);
        assert!(track(&ranked[0]).1.contains("newcomer"));
        assert!((track(&ranked[1]).0 - 0.3).abs() < 1e-9);

        // A strong incumbent ranks above the newcomer, but one project alone moves the value
        // only a third of the way.
        incumbent.track_record = TrackRecord {
            projects_completed: 1,
            verified_savings_litres: 1000,
            promised_savings_litres: 1000,
        };
        let candidates = vec![
            (offering("o-old", "old"), incumbent),
            (
                offering("o-new", "new"),
                company("new", CertificationGrade::Aa, 500_000_000),
            ),
        ];
        let (ranked, _) = rank(&r, &u, &candidates);
        assert_eq!(ranked[0].offering.id, "o-old");
        assert!((track(&ranked[0]).0 - (0.5 + 0.5 / 3.0)).abs() < 1e-9);
        assert!(ranked[0].score - ranked[1].score < 0.15 * 0.5 / 3.0 + 1e-9);
    }

    #[test]
    fn hard_filters_exclude_with_the_reason_and_the_six_parts_are_explained() {
        let (mut r, u) = request();
        r.draft.visibility = Visibility::Invited;
        r.draft.invited_company_ids = vec!["c1".into()];
        let mut narrow = offering("o-range", "c1");
        narrow.draft.max_investment_fen = 50_000_000;
        let mut far = offering("o-town", "c1");
        far.draft.towns = vec!["罗溪镇".into()];
        let mut draft = offering("o-draft", "c1");
        draft.status = OfferingStatus::Draft;
        let c1 = company("c1", CertificationGrade::Aaa, 500_000_000);
        let candidates = vec![
            (offering("o-ok", "c1"), c1.clone()),
            (
                offering("o-other", "c2"),
                company("c2", CertificationGrade::Aaa, 500_000_000),
            ),
            (narrow, c1.clone()),
            (far, c1.clone()),
            (draft, c1),
        ];
        let out = rank_top(&r, &u, &candidates, 10, 2);
        assert_eq!(out.ranked_total, 1);
        assert_eq!(out.excluded_total, 4);
        assert_eq!(out.excluded.len(), 2, "cut to excluded_limit");
        let (ranked, excluded) = rank(&r, &u, &candidates);
        let filters: Vec<&str> = excluded.iter().map(|x| x.filter).collect();
        assert_eq!(
            filters,
            ["not_invited", "investment_range", "town", "status"]
        );
        let names: Vec<&str> = ranked[0].parts.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "technology",
                "contract_model",
                "capacity",
                "certification",
                "track_record",
                "savings"
            ]
        );
        let total: f64 = ranked[0].parts.iter().map(|p| p.weight * p.value).sum();
        assert!((total - ranked[0].score).abs() < 1e-12);
        assert!((ranked[0].parts.iter().map(|p| p.weight).sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_packed_catalogue_ranks_exactly_as_the_plain_candidates() {
        let (mut r, u) = request();
        let towns = ["新桥街道", "罗溪镇", "孟河镇"];
        let candidates: Vec<_> = (0..300)
            .map(|i| {
                let mut o = offering(&format!("o-{i:03}"), &format!("c{}", i % 11));
                o.draft.typical_savings_bp = 1000 + (i * 37 % 2000) as i32;
                o.draft.technologies = Technology::ALL[..1 + i % 4].to_vec();
                o.draft.contract_models = vec![ContractModel::ALL[i % 6]];
                o.draft.towns = match i % 5 {
                    0 => vec![],
                    1 => vec![towns[i % 3].to_string()],
                    _ => vec![towns[(i + 1) % 3].to_string(), towns[i % 3].to_string()],
                };
                o.draft.sectors = if i % 3 == 0 {
                    vec![]
                } else {
                    vec![Sector::ALL[i % 9]]
                };
                o.draft.min_investment_fen = (i as i64 % 4) * 40_000_000;
                o.draft.max_investment_fen = (i as i64 % 7) * 30_000_000;
                if i % 13 == 0 {
                    o.status = OfferingStatus::Withdrawn;
                }
                let mut c = company(
                    &format!("c{}", i % 11),
                    CertificationGrade::ALL[i % 6],
                    60_000_000 + (i as i64 % 5) * 50_000_000,
                );
                c.track_record = TrackRecord {
                    projects_completed: i as i64 % 4,
                    verified_savings_litres: (i as i64 % 10) * 10,
                    promised_savings_litres: 100,
                };
                (o, c)
            })
            .collect();
        r.draft.preferred_contract_models = vec![
            ContractModel::GuaranteedSavings,
            ContractModel::SharedSavings,
        ];
        r.draft.wanted_technologies = vec![Technology::LeakDetection, Technology::SmartMetering];
        let catalog = Catalog::new(candidates.clone());
        for invited in [false, true] {
            if invited {
                r.draft.visibility = Visibility::Invited;
                r.draft.invited_company_ids = vec!["c3".into(), "c4".into()];
            }
            let plain = rank_top(&r, &u, &candidates, 25, 40);
            let packed = rank_catalog(&r, &u, &catalog, 25, 40);
            assert!(plain.ranked_total > 0 && plain.excluded_total > 0);
            assert_eq!(plain, packed);
        }
        // A town no candidate names: only those serving every town pass.
        let mut far = u.clone();
        far.profile.town = "奔牛镇".into();
        assert_eq!(
            rank_top(&r, &far, &candidates, 25, 40),
            rank_catalog(&r, &far, &catalog, 25, 40)
        );
    }

    #[test]
    fn the_top_of_a_large_ranking_equals_the_head_of_the_full_ranking() {
        let (r, u) = request();
        let candidates: Vec<_> = (0..200)
            .map(|i| {
                let mut o = offering(&format!("o-{i:03}"), &format!("c{}", i % 7));
                o.draft.typical_savings_bp = 1000 + (i * 37 % 2000) as i32;
                let grade = CertificationGrade::ALL[i % 6];
                (
                    o,
                    company(
                        &format!("c{}", i % 7),
                        grade,
                        200_000_000 + (i as i64 % 5) * 1000,
                    ),
                )
            })
            .collect();
        let (all, _) = rank(&r, &u, &candidates);
        let top = rank_top(&r, &u, &candidates, 10, 0);
        assert_eq!(top.ranked, all[..10].to_vec());
        assert_eq!(top.ranked_total, all.len());
    }
}
