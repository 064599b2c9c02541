//! Ranking offerings for a project request, with every part of the score explained.
//!
//! First hard filters (an offering that fails one is listed as excluded, with the reason), then
//! a weighted score of six parts in 0..=1. A company without history gets a neutral track-record
//! value (0.5) instead of 0, so newcomers are ranked on what they offer rather than starved by
//! incumbents; the track record moves away from 0.5 only as verified projects accumulate.

use std::cmp::Ordering;

use crate::domain::{Company, Offering, OfferingStatus, ProjectRequest, WaterUser};
use cwsm_platform::vocab::CertificationGrade;

#[derive(Clone, Debug, PartialEq)]
pub struct ScorePart {
    pub name: &'static str,
    pub weight: f64,
    pub value: f64,
    pub explanation: String,
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
    /// The hard filter that failed: `sector`, `town`, `contract_model`, `capacity`, `status`.
    pub filter: &'static str,
    pub explanation: String,
}

pub const WEIGHTS: [(&str, f64); 6] = [
    ("technology", 0.25),
    ("contract_model", 0.15),
    ("capacity", 0.15),
    ("certification", 0.15),
    ("track_record", 0.15),
    ("savings", 0.15),
];

/// Ranks `candidates` for `request` of `user`: best first, ties broken by certification, then
/// financing capacity, then offering id (so the order is the same every time).
pub fn rank(
    request: &ProjectRequest,
    user: &WaterUser,
    candidates: Vec<(Offering, Company)>,
) -> (Vec<Ranked>, Vec<Excluded>) {
    let mut ranked = Vec::new();
    let mut excluded = Vec::new();
    for (offering, company) in candidates {
        match hard_filter(request, user, &offering, &company) {
            Err((filter, explanation)) => excluded.push(Excluded {
                offering,
                company,
                filter,
                explanation,
            }),
            Ok(()) => {
                let parts = score_parts(request, &offering, &company);
                let score = parts.iter().map(|p| p.weight * p.value).sum();
                ranked.push(Ranked {
                    offering,
                    company,
                    score,
                    parts,
                });
            }
        }
    }
    ranked.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(Ordering::Equal)
            .then(
                b.company
                    .profile
                    .certification
                    .cmp(&a.company.profile.certification),
            )
            .then(
                b.company
                    .profile
                    .financing_capacity_fen
                    .cmp(&a.company.profile.financing_capacity_fen),
            )
            .then(a.offering.id.cmp(&b.offering.id))
    });
    (ranked, excluded)
}

fn hard_filter(
    request: &ProjectRequest,
    user: &WaterUser,
    offering: &Offering,
    company: &Company,
) -> Result<(), (&'static str, String)> {
    let o = &offering.draft;
    let r = &request.draft;
    if offering.status != OfferingStatus::Published {
        return Err(("status", "the offering is not published".into()));
    }
    let sectors = if o.sectors.is_empty() {
        &company.profile.sectors
    } else {
        &o.sectors
    };
    if !sectors.is_empty() && !sectors.contains(&user.profile.sector) {
        return Err((
            "sector",
            format!("does not serve the {} sector", user.profile.sector.code()),
        ));
    }
    let towns = if o.towns.is_empty() {
        &company.profile.towns
    } else {
        &o.towns
    };
    if !towns.is_empty() && !towns.iter().any(|t| t == &user.profile.town) {
        return Err(("town", format!("does not serve {}", user.profile.town)));
    }
    if !r.preferred_contract_models.is_empty()
        && !o
            .contract_models
            .iter()
            .any(|m| r.preferred_contract_models.contains(m))
    {
        return Err((
            "contract_model",
            "supports none of the contract models the user prefers".into(),
        ));
    }
    if company.profile.financing_capacity_fen < r.investment_wanted_fen {
        return Err((
            "capacity",
            format!(
                "financing capacity {} yuan is below the {} yuan asked",
                company.profile.financing_capacity_fen / 100,
                r.investment_wanted_fen / 100
            ),
        ));
    }
    Ok(())
}

fn score_parts(request: &ProjectRequest, offering: &Offering, company: &Company) -> Vec<ScorePart> {
    let o = &offering.draft;
    let r = &request.draft;
    let mut parts = Vec::with_capacity(WEIGHTS.len());
    let mut push = |value: f64, explanation: String| {
        let (name, weight) = WEIGHTS[parts.len()];
        parts.push(ScorePart {
            name,
            weight,
            value: value.clamp(0.0, 1.0),
            explanation,
        });
    };

    // Technology: the share of wanted technologies the offering covers.
    if r.wanted_technologies.is_empty() {
        push(1.0, "the request names no technology".into());
    } else {
        let covered = r
            .wanted_technologies
            .iter()
            .filter(|t| o.technologies.contains(t))
            .count();
        push(
            covered as f64 / r.wanted_technologies.len() as f64,
            format!(
                "covers {covered} of {} wanted technologies",
                r.wanted_technologies.len()
            ),
        );
    }

    // Contract model: 1 for the user's first preference, less for later ones.
    match r
        .preferred_contract_models
        .iter()
        .position(|m| o.contract_models.contains(m))
    {
        None => push(1.0, "the request states no preferred model".into()),
        Some(i) => push(
            1.0 - 0.25 * i as f64,
            format!(
                "offers {}, the user's preference #{}",
                r.preferred_contract_models[i].code(),
                i + 1
            ),
        ),
    }

    // Capacity: headroom of financing over the investment asked (twice the ask scores 1).
    let ask = r.investment_wanted_fen;
    let capacity = company.profile.financing_capacity_fen;
    if ask <= 0 {
        push(1.0, "the user asks for no investment".into());
    } else {
        push(
            capacity as f64 / (2.0 * ask as f64),
            format!(
                "financing capacity is {:.1}× the investment asked",
                capacity as f64 / ask as f64
            ),
        );
    }

    // Certification: A … AAAAA on a 0..1 scale.
    let grade = company.profile.certification;
    let steps = match grade {
        CertificationGrade::None => 0.0,
        CertificationGrade::A => 1.0,
        CertificationGrade::Aa => 2.0,
        CertificationGrade::Aaa => 3.0,
        CertificationGrade::Aaaa => 4.0,
        CertificationGrade::Aaaaa => 5.0,
    };
    push(steps / 5.0, format!("certification {}", grade.label()));

    // Track record: verified against promised savings, trusted more with more projects.
    let t = &company.track_record;
    if t.projects_completed == 0 || t.promised_savings_litres <= 0 {
        push(0.5, "no verified projects yet: neutral".into());
    } else {
        let delivery =
            (t.verified_savings_litres as f64 / t.promised_savings_litres as f64).min(1.0);
        let confidence = (t.projects_completed as f64 / 3.0).min(1.0);
        push(
            0.5 + (delivery - 0.5) * confidence,
            format!(
                "{} projects delivered {:.0}% of promised savings",
                t.projects_completed,
                delivery * 100.0
            ),
        );
    }

    // Savings: how close the offering's typical savings rate is to what the user expects.
    if r.expected_savings_bp <= 0 || o.typical_savings_bp <= 0 {
        push(0.5, "no savings rate to compare".into());
    } else {
        let gap = f64::from((o.typical_savings_bp - r.expected_savings_bp).abs());
        push(
            1.0 - gap / f64::from(r.expected_savings_bp.max(1000)),
            format!(
                "typically saves {:.1}%, the user expects {:.1}%",
                f64::from(o.typical_savings_bp) / 100.0,
                f64::from(r.expected_savings_bp) / 100.0
            ),
        );
    }
    parts
}
