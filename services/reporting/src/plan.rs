//! The action plan as data: the TOML schema of `seeds/README.md`, read with serde (unknown keys
//! rejected) and checked on load, into the plain-Rust model the reports are computed from.

use std::collections::HashSet;
use std::fmt;

use chrono::NaiveDate;
use cwsm_platform::gazetteer::Gazetteer;
use cwsm_platform::jurisdiction::{Jurisdiction, Level};
use cwsm_platform::vocab::{IndicatorTag, Milestone, Sector};
use serde::Deserialize;
use toml::Spanned;

// ---------------------------------------------------------------------------------------------
// The model

/// How an indicator's actual value is compared with its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparator {
    AtLeast,
    AtMost,
    PercentReduction,
    RateAtLeast,
    RateAtMost,
    Coverage,
}

impl Comparator {
    pub const ALL: &'static [Comparator] = &[
        Comparator::AtLeast,
        Comparator::AtMost,
        Comparator::PercentReduction,
        Comparator::RateAtLeast,
        Comparator::RateAtMost,
        Comparator::Coverage,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Comparator::AtLeast => "at_least",
            Comparator::AtMost => "at_most",
            Comparator::PercentReduction => "percent_reduction",
            Comparator::RateAtLeast => "rate_at_least",
            Comparator::RateAtMost => "rate_at_most",
            Comparator::Coverage => "coverage",
        }
    }

    pub fn from_code(code: &str) -> Option<Comparator> {
        Comparator::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// Met when the actual value is at most the target (a cap), rather than at least.
    pub fn is_cap(self) -> bool {
        matches!(self, Comparator::AtMost | Comparator::RateAtMost)
    }
}

/// Where an indicator's actual value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Counted from project milestone events by the counting rule.
    Counted,
    /// Recorded by administrators with evidence.
    Recorded,
    /// Both: the projects the rule counts plus the entries recorded with evidence for what
    /// happened outside the platform (A7: retrofits declared, in the contract mode or not).
    CountedAndRecorded,
    /// In a city's or province's plan: the sum of the indicators `rolled_up_from` names in the
    /// plans of the districts inside it, of the same year, as of the same date (the mapping of
    /// a higher plan's indicator onto its districts' codes).
    RolledUp,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::Counted => "counted",
            Kind::Recorded => "recorded",
            Kind::CountedAndRecorded => "counted_and_recorded",
            Kind::RolledUp => "rolled_up",
        }
    }

    /// Whether a counting rule makes (part of) its actual value.
    pub fn counts(self) -> bool {
        matches!(self, Kind::Counted | Kind::CountedAndRecorded)
    }

    /// Whether administrators record achievements toward it.
    pub fn records(self) -> bool {
        matches!(self, Kind::Recorded | Kind::CountedAndRecorded)
    }
}

/// What a counting rule sums over the facts it counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Distinct projects (the default).
    Projects,
    /// The savings of PERIOD_VERIFIED facts, each verified period once, in litres, shown in m³.
    VerifiedM3,
    /// The investment of each counted project (from its milestone fact), in fen, shown in yuan.
    InvestmentYuan,
    /// Distinct sites of water users (the water user's credit code and its site's
    /// jurisdiction code; a project without a credit code is its own site).
    Sites,
}

impl Measure {
    pub const ALL: [Measure; 4] = [
        Measure::Projects,
        Measure::VerifiedM3,
        Measure::InvestmentYuan,
        Measure::Sites,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Measure::Projects => "projects",
            Measure::VerifiedM3 => "verified_m3",
            Measure::InvestmentYuan => "investment_yuan",
            Measure::Sites => "sites",
        }
    }

    pub fn from_code(code: &str) -> Option<Measure> {
        Measure::ALL.into_iter().find(|m| m.code() == code)
    }

    /// How many stored units (litres, fen, or 1 for a count) make one unit of the indicator.
    pub fn per_unit(self) -> i64 {
        match self {
            Measure::Projects | Measure::Sites => 1,
            Measure::VerifiedM3 => 1000,
            Measure::InvestmentYuan => 100,
        }
    }

    /// A summed amount (exact, in litres, fen or units) in the indicator's unit.
    pub fn display(self, amount: i128) -> f64 {
        amount as f64 / self.per_unit() as f64
    }

    /// Whether an indicator in `unit` can show this measure: m³ only for verified_m3, yuan
    /// only for investment_yuan, and counts (projects, sites) on neither.
    pub fn fits_unit(self, unit: &str) -> bool {
        let u = unit.trim().to_lowercase();
        let volume = matches!(
            u.as_str(),
            "m³" | "m3" | "cubic metres" | "cubic meters" | "立方米"
        );
        let money = matches!(u.as_str(), "yuan" | "元" | "cny" | "rmb");
        let other_quantity = u.contains("m³")
            || u.contains("m3")
            || u.contains('%')
            || u.contains("yuan")
            || u.contains('元');
        match self {
            Measure::VerifiedM3 => volume,
            Measure::InvestmentYuan => money,
            Measure::Projects | Measure::Sites => !volume && !money && !other_quantity,
        }
    }
}

/// How the achievements of a recorded indicator make its actual value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    Sum,
    Latest,
}

impl Aggregation {
    pub fn code(self) -> &'static str {
        match self {
            Aggregation::Sum => "sum",
            Aggregation::Latest => "latest",
        }
    }
}

/// What happens to a counted project that is later terminated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTerminated {
    Keep,
    Remove,
}

/// Which project milestones a counted indicator counts; an empty filter matches every project.
#[derive(Clone, Debug, PartialEq)]
pub struct CountingRule {
    pub milestone: Milestone,
    pub sectors: Vec<Sector>,
    /// Compared case-insensitively.
    pub unit_types: Vec<String>,
    pub towns: Vec<String>,
    /// The project must carry all of them.
    pub tags: Vec<IndicatorTag>,
    pub on_terminated: OnTerminated,
    /// What is summed over the matching facts.
    pub measure: Measure,
}

/// A district goal (action 0) or an indicator of an action.
#[derive(Clone, Debug, PartialEq)]
pub struct Indicator {
    pub code: String,
    pub name: String,
    pub name_zh: String,
    /// 0 for district goals.
    pub action: i32,
    pub unit: String,
    pub comparator: Comparator,
    pub target: f64,
    /// Only with [`Comparator::PercentReduction`]; 0 otherwise.
    pub base_year: i32,
    /// Inclusive.
    pub deadline: NaiveDate,
    pub lead: Vec<String>,
    pub participants: Vec<String>,
    pub kind: Kind,
    /// `Some` exactly for counted indicators.
    pub rule: Option<CountingRule>,
    /// How recorded achievements add up (also set, unused, for counted ones).
    pub aggregation: Aggregation,
    pub note: String,
    /// The district plans' indicator codes a [`Kind::RolledUp`] indicator sums; empty for
    /// every other kind.
    pub rolled_up_from: Vec<String>,
}

impl Indicator {
    pub fn is_goal(&self) -> bool {
        self.action == 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Department {
    pub code: String,
    pub name: String,
    pub name_zh: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub number: i32,
    pub name: String,
    pub name_zh: String,
    pub summary: String,
    pub lead: Vec<String>,
    pub participants: Vec<String>,
}

/// The days a plan counts facts in, inclusive at both ends, China Standard Time: "2020年" is
/// 2020-01-01..2020-12-31.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Window {
    pub fn contains(&self, date: NaiveDate) -> bool {
        self.from <= date && date <= self.to
    }
}

/// A water-saving action plan, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub code: String,
    pub title: String,
    pub title_zh: String,
    pub district: String,
    pub district_zh: String,
    /// The district, city or province the plan is for (a gazetteer code): only facts inside it
    /// count.
    pub jurisdiction: Jurisdiction,
    /// Only facts dated inside it count; every deadline lies inside it.
    pub window: Window,
    pub year: i32,
    pub source: String,
    pub departments: Vec<Department>,
    pub goals: Vec<Indicator>,
    pub actions: Vec<Action>,
    pub indicators: Vec<Indicator>,
}

impl Plan {
    /// Goals first, then the indicators by action number (as reports list them).
    pub fn all_indicators(&self) -> Vec<&Indicator> {
        let mut indicators: Vec<&Indicator> = self.indicators.iter().collect();
        indicators.sort_by_key(|i| i.action);
        self.goals.iter().chain(indicators).collect()
    }

    pub fn indicator(&self, code: &str) -> Option<&Indicator> {
        self.goals
            .iter()
            .chain(self.indicators.iter())
            .find(|i| i.code == code)
    }

    /// The first day of the counting window (January 1st of the plan year for a yearly plan):
    /// where "time elapsed" starts for the on-track judgement.
    pub fn year_start(&self) -> NaiveDate {
        self.window.from
    }

    /// Whether an indicator sums the plans of the districts inside (a city's or province's).
    pub fn rolls_up(&self) -> bool {
        self.indicators.iter().any(|i| i.kind == Kind::RolledUp)
    }
}

/// A plan as loaded: immutable, a reload makes a new version of its code.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredPlan {
    pub id: String,
    /// 1 for the first load of the code, then 2, 3, …
    pub version: i64,
    pub plan: Plan,
    /// The TOML as loaded.
    pub document: String,
    /// SHA-256 of the TOML, hex.
    pub sha256: String,
    pub loaded_by: String,
    pub loaded_at_ms: i64,
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a plan file was rejected: the line (1-based) where known, and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError {
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for PlanError {}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

// ---------------------------------------------------------------------------------------------
// The file, as serde reads it

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    code: Spanned<String>,
    title: String,
    #[serde(default)]
    title_zh: String,
    #[serde(default)]
    district: String,
    #[serde(default)]
    district_zh: String,
    /// Required for a plan loaded now; `None` only in documents stored before plans had one
    /// (read back as the platform's district, see [`parse_stored`]).
    #[serde(default)]
    jurisdiction: Option<Spanned<String>>,
    #[serde(default)]
    window: Option<Spanned<WindowFile>>,
    year: Spanned<i32>,
    #[serde(default)]
    source: String,
    #[serde(default)]
    departments: Vec<DepartmentFile>,
    #[serde(default)]
    goals: Vec<IndicatorFile>,
    #[serde(default)]
    actions: Vec<ActionFile>,
    #[serde(default)]
    indicators: Vec<IndicatorFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowFile {
    from: String,
    to: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DepartmentFile {
    code: Spanned<String>,
    name: String,
    #[serde(default)]
    name_zh: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionFile {
    number: Spanned<i32>,
    name: String,
    #[serde(default)]
    name_zh: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    lead: Vec<String>,
    #[serde(default)]
    participants: Vec<String>,
}

/// Goals and indicators share one shape; goals have no `action`, `kind` or `rule`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IndicatorFile {
    code: Spanned<String>,
    #[serde(default)]
    action: Option<i32>,
    name: String,
    #[serde(default)]
    name_zh: String,
    #[serde(default)]
    unit: String,
    comparator: String,
    target: f64,
    #[serde(default)]
    base_year: Option<i32>,
    deadline: String,
    #[serde(default)]
    lead: Vec<String>,
    #[serde(default)]
    participants: Vec<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    aggregation: Option<String>,
    #[serde(default)]
    note: String,
    #[serde(default)]
    rule: Option<RuleFile>,
    /// Only with `kind = "rolled_up"`.
    #[serde(default)]
    from: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    milestone: String,
    #[serde(default)]
    sectors: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    towns: Vec<String>,
    #[serde(default)]
    unit_types: Vec<String>,
    #[serde(default)]
    on_terminated: Option<String>,
    #[serde(default)]
    measure: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------------------------
// Parsing and validation

/// Parses and validates a plan file as loaded now: `jurisdiction` and `window` are required.
pub fn parse(text: &str) -> Result<Plan, PlanError> {
    parse_as(text, false)
}

/// Parses a plan document kept by the store. Documents stored before plans named their
/// jurisdiction and window read back as the platform's default district (新北区) and the plan
/// year, which is what they meant then; everything else is checked as [`parse`] does.
pub fn parse_stored(text: &str) -> Result<Plan, PlanError> {
    parse_as(text, true)
}

fn parse_as(text: &str, legacy: bool) -> Result<Plan, PlanError> {
    let file: PlanFile = toml::from_str(text).map_err(|e| PlanError {
        line: e.span().map(|s| line_of(text, s.start)),
        message: e.message().trim().to_string(),
    })?;
    Checker { text, legacy }.plan(file)
}

struct Checker<'a> {
    text: &'a str,
    legacy: bool,
}

impl Checker<'_> {
    fn err(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> PlanError {
        PlanError {
            line: Some(line_of(self.text, span.start)),
            message: message.into(),
        }
    }

    fn plan(&self, f: PlanFile) -> Result<Plan, PlanError> {
        let code = f.code.get_ref().trim();
        if code.is_empty()
            || !code
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(self.err(
                f.code.span(),
                format!("plan code {code:?} must be lower-case letters, digits, '-' or '_'"),
            ));
        }
        let year = *f.year.get_ref();
        if !(1900..=2200).contains(&year) {
            return Err(self.err(f.year.span(), format!("year {year} is out of range")));
        }
        let jurisdiction = self.jurisdiction(f.jurisdiction.as_ref(), &f.year)?;
        let window = self.window(f.window.as_ref(), &f.year)?;

        let mut departments = Vec::new();
        let mut department_codes = HashSet::new();
        for d in f.departments {
            let code = d.code.get_ref().trim().to_string();
            if code.is_empty() {
                return Err(self.err(d.code.span(), "department code is empty"));
            }
            if !department_codes.insert(code.clone()) {
                return Err(self.err(d.code.span(), format!("duplicate department code {code:?}")));
            }
            departments.push(Department {
                code,
                name: d.name,
                name_zh: d.name_zh,
            });
        }
        let check_departments = |what: &str,
                                 span: std::ops::Range<usize>,
                                 codes: &[String]|
         -> Result<(), PlanError> {
            for c in codes {
                if !department_codes.contains(c) {
                    return Err(self.err(
                        span,
                        format!("{what}: unknown department code {c:?} (not in [[departments]])"),
                    ));
                }
            }
            Ok(())
        };

        let mut actions = Vec::new();
        let mut action_numbers = HashSet::new();
        for a in f.actions {
            let number = *a.number.get_ref();
            if number <= 0 {
                return Err(self.err(
                    a.number.span(),
                    format!("action number {number} must be positive"),
                ));
            }
            if !action_numbers.insert(number) {
                return Err(self.err(a.number.span(), format!("duplicate action number {number}")));
            }
            let what = format!("action {number}");
            check_departments(&what, a.number.span(), &a.lead)?;
            check_departments(&what, a.number.span(), &a.participants)?;
            actions.push(Action {
                number,
                name: a.name,
                name_zh: a.name_zh,
                summary: a.summary,
                lead: a.lead,
                participants: a.participants,
            });
        }

        let mut indicator_codes = HashSet::new();
        let mut goals = Vec::new();
        for g in f.goals {
            let i = self.indicator(g, true, &action_numbers, &mut indicator_codes)?;
            goals.push(i);
        }
        let mut indicators = Vec::new();
        for i in f.indicators {
            indicators.push(self.indicator(i, false, &action_numbers, &mut indicator_codes)?);
        }
        // Every deadline inside the window: a target judged outside the days that count for it
        // could never be met (or would count another year's facts).
        for i in goals.iter().chain(indicators.iter()) {
            if !window.contains(i.deadline) {
                return Err(PlanError {
                    line: self.line_of_code(&i.code),
                    message: format!(
                        "indicator {}: deadline {} is outside the plan's window {}..{}",
                        i.code, i.deadline, window.from, window.to
                    ),
                });
            }
        }
        // A district's plan has no districts inside it to roll up.
        if matches!(jurisdiction.level(), Level::District | Level::Town)
            && let Some(i) = indicators.iter().find(|i| i.kind == Kind::RolledUp)
        {
            return Err(PlanError {
                line: self.line_of_code(&i.code),
                message: format!(
                    "indicator {}: rolled_up sums the plans of the districts inside a city or province; jurisdiction {jurisdiction} is a district",
                    i.code
                ),
            });
        }
        // Department references of goals and indicators (after the shape checks above, so
        // that the message names the indicator).
        for i in goals.iter().chain(indicators.iter()) {
            for c in i.lead.iter().chain(i.participants.iter()) {
                if !department_codes.contains(c) {
                    return Err(PlanError {
                        line: self.line_of_code(&i.code),
                        message: format!(
                            "indicator {}: unknown department code {c:?} (not in [[departments]])",
                            i.code
                        ),
                    });
                }
            }
        }

        Ok(Plan {
            code: code.to_string(),
            title: f.title,
            title_zh: f.title_zh,
            district: f.district,
            district_zh: f.district_zh,
            jurisdiction,
            window,
            year,
            source: f.source,
            departments,
            goals,
            actions,
            indicators,
        })
    }

    /// The plan's jurisdiction: a district, city or province of the gazetteer.
    fn jurisdiction(
        &self,
        field: Option<&Spanned<String>>,
        year: &Spanned<i32>,
    ) -> Result<Jurisdiction, PlanError> {
        let Some(field) = field else {
            return if self.legacy {
                Ok(Jurisdiction::default_district())
            } else {
                Err(self.err(
                    year.span(),
                    "missing field `jurisdiction`: the gazetteer code of the district, city or province the plan is for, e.g. jurisdiction = \"320411\" (常州市新北区)",
                ))
            };
        };
        let place = Gazetteer::builtin()
            .place("jurisdiction", field.get_ref())
            .map_err(|e| self.err(field.span(), e.to_string()))?;
        if place.level() == Level::Town {
            return Err(self.err(
                field.span(),
                format!(
                    "jurisdiction {} {} is a town: plans are for a district, city or province",
                    place.code, place.name_zh
                ),
            ));
        }
        Ok(place.code.clone())
    }

    /// The counting window; a stored legacy plan's is its year.
    fn window(
        &self,
        field: Option<&Spanned<WindowFile>>,
        year: &Spanned<i32>,
    ) -> Result<Window, PlanError> {
        let Some(field) = field else {
            let y = *year.get_ref();
            return match (
                self.legacy,
                NaiveDate::from_ymd_opt(y, 1, 1),
                NaiveDate::from_ymd_opt(y, 12, 31),
            ) {
                (true, Some(from), Some(to)) => Ok(Window { from, to }),
                _ => Err(self.err(
                    year.span(),
                    "missing field `window`: the days the plan counts, e.g. window = { from = \"2020-01-01\", to = \"2020-12-31\" }",
                )),
            };
        };
        let w = field.get_ref();
        let date = |name: &str, text: &str| {
            NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
                self.err(
                    field.span(),
                    format!("window.{name} {text:?} is not a date YYYY-MM-DD"),
                )
            })
        };
        let (from, to) = (date("from", &w.from)?, date("to", &w.to)?);
        if from > to {
            return Err(self.err(
                field.span(),
                format!("window: from {from} is after to {to}"),
            ));
        }
        Ok(Window { from, to })
    }

    /// The line of `code = "<code>"` in the file, for messages about an indicator.
    fn line_of_code(&self, code: &str) -> Option<usize> {
        let needle = format!("\"{code}\"");
        self.text
            .lines()
            .position(|l| l.trim_start().starts_with("code") && l.contains(&needle))
            .map(|p| p + 1)
    }

    fn indicator(
        &self,
        f: IndicatorFile,
        goal: bool,
        actions: &HashSet<i32>,
        codes: &mut HashSet<String>,
    ) -> Result<Indicator, PlanError> {
        let span = f.code.span();
        let code = f.code.get_ref().trim().to_string();
        let bad = |reason: String| self.err(span.clone(), format!("indicator {code}: {reason}"));
        if code.is_empty() {
            return Err(self.err(span.clone(), "indicator code is empty"));
        }
        if !codes.insert(code.clone()) {
            return Err(bad(
                "duplicate code (codes are unique across goals and indicators)".into(),
            ));
        }
        let action = if goal {
            if f.action.is_some() || f.kind.is_some() || f.rule.is_some() {
                return Err(bad("a goal has no action, kind or rule".into()));
            }
            0
        } else {
            let a = f
                .action
                .ok_or_else(|| bad("missing field `action`".into()))?;
            if !actions.contains(&a) {
                return Err(bad(format!("action {a} is not in [[actions]]")));
            }
            a
        };
        let comparator = Comparator::from_code(&f.comparator).ok_or_else(|| {
            bad(format!(
                "unknown comparator {:?} (expected one of {})",
                f.comparator,
                Comparator::ALL
                    .iter()
                    .map(|c| c.code())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        if !f.target.is_finite() || f.target < 0.0 {
            return Err(bad(format!("target {} must be a number ≥ 0", f.target)));
        }
        let base_year = match (comparator, f.base_year) {
            (Comparator::PercentReduction, Some(y)) if (1900..=2200).contains(&y) => y,
            (Comparator::PercentReduction, _) => {
                return Err(bad("percent_reduction needs a base_year".into()));
            }
            (_, Some(_)) => return Err(bad("base_year is only for percent_reduction".into())),
            (_, None) => 0,
        };
        let deadline = NaiveDate::parse_from_str(&f.deadline, "%Y-%m-%d").map_err(|_| {
            bad(format!(
                "deadline {:?} is not a date YYYY-MM-DD",
                f.deadline
            ))
        })?;
        let kinds = "counted, recorded, counted_and_recorded or rolled_up";
        let kind = match f.kind.as_deref() {
            None if goal => Kind::Recorded,
            Some("counted") => Kind::Counted,
            Some("recorded") => Kind::Recorded,
            Some("counted_and_recorded") => Kind::CountedAndRecorded,
            Some("rolled_up") => Kind::RolledUp,
            None => return Err(bad(format!("missing field `kind` ({kinds})"))),
            Some(other) => {
                return Err(bad(format!("unknown kind {other:?} ({kinds})")));
            }
        };
        let rule = match (kind.counts(), f.rule) {
            (true, Some(r)) => Some(self.rule(r, &f.unit, &bad)?),
            (true, None) => {
                return Err(bad(format!(
                    "a {} indicator needs [indicators.rule]",
                    kind.code()
                )));
            }
            (false, Some(_)) => {
                return Err(bad(format!("a {} indicator has no rule", kind.code())));
            }
            (false, None) => None,
        };
        let mut rolled_up_from: Vec<String> = Vec::with_capacity(f.from.len());
        for c in &f.from {
            let c = c.trim();
            if c.is_empty() {
                return Err(bad("from: an empty indicator code".into()));
            }
            if !rolled_up_from.iter().any(|o| o == c) {
                rolled_up_from.push(c.to_string());
            }
        }
        match (kind, rolled_up_from.is_empty()) {
            (Kind::RolledUp, true) => {
                return Err(bad(
                    "a rolled_up indicator names the district plans' indicators it sums: from = [\"A8-CONTRACT-PROJECTS\"]"
                        .into(),
                ));
            }
            (Kind::RolledUp, false) => {
                if !matches!(comparator, Comparator::AtLeast | Comparator::AtMost) {
                    return Err(bad(format!(
                        "a rolled_up indicator sums its districts' values: comparator must be at_least or at_most, not {}",
                        comparator.code()
                    )));
                }
                if f.aggregation.is_some() {
                    return Err(bad("aggregation is only for recorded indicators".into()));
                }
            }
            (_, false) => {
                return Err(bad(format!(
                    "from is only for rolled_up indicators, not {}",
                    kind.code()
                )));
            }
            (_, true) => {}
        }
        if kind.counts() && !matches!(comparator, Comparator::AtLeast | Comparator::AtMost) {
            return Err(bad(format!(
                "a {} indicator sums what its rule counts: comparator must be at_least or at_most, not {}",
                kind.code(),
                comparator.code()
            )));
        }
        let default_aggregation = if goal
            || matches!(
                comparator,
                Comparator::RateAtLeast
                    | Comparator::RateAtMost
                    | Comparator::Coverage
                    | Comparator::PercentReduction
            ) {
            Aggregation::Latest
        } else {
            Aggregation::Sum
        };
        let aggregation = match f.aggregation.as_deref() {
            None => default_aggregation,
            Some("sum") => Aggregation::Sum,
            Some("latest") => Aggregation::Latest,
            Some(other) => {
                return Err(bad(format!(
                    "unknown aggregation {other:?} (sum or latest)"
                )));
            }
        };
        if kind == Kind::Counted && f.aggregation.is_some() {
            return Err(bad("aggregation is only for recorded indicators".into()));
        }
        // Recorded entries add to what the rule counts: a sum, nothing else.
        if kind == Kind::CountedAndRecorded && aggregation != Aggregation::Sum {
            return Err(bad(
                "a counted_and_recorded indicator adds its entries to the count: aggregation is sum"
                    .into(),
            ));
        }
        Ok(Indicator {
            code,
            name: f.name,
            name_zh: f.name_zh,
            action,
            unit: f.unit,
            comparator,
            target: f.target,
            base_year,
            deadline,
            lead: f.lead,
            participants: f.participants,
            kind,
            rule,
            aggregation,
            note: f.note,
            rolled_up_from,
        })
    }

    fn rule(
        &self,
        r: RuleFile,
        unit: &str,
        bad: &dyn Fn(String) -> PlanError,
    ) -> Result<CountingRule, PlanError> {
        let milestone = Milestone::from_code(&r.milestone)
            .ok_or_else(|| bad(format!("rule: unknown milestone {:?}", r.milestone)))?;
        if matches!(
            milestone,
            Milestone::Suspended | Milestone::Terminated | Milestone::Resumed
        ) {
            return Err(bad(format!(
                "rule: milestone {} is not an achievement to count",
                milestone.code()
            )));
        }
        let sectors = cwsm_platform::vocab::parse_codes(&r.sectors, Sector::from_code)
            .map_err(|e| bad(format!("rule.sectors: {e}")))?;
        let tags = cwsm_platform::vocab::parse_codes(&r.tags, IndicatorTag::from_code)
            .map_err(|e| bad(format!("rule.tags: {e}")))?;
        let on_terminated = match r.on_terminated.as_deref() {
            None | Some("keep") => OnTerminated::Keep,
            Some("remove") => OnTerminated::Remove,
            Some(other) => {
                return Err(bad(format!(
                    "rule: unknown on_terminated {other:?} (keep or remove)"
                )));
            }
        };
        let measure = match &r.measure {
            None => Measure::Projects,
            Some(m) => {
                // Errors about the measure name its own line.
                let at = |message: String| {
                    let e = bad(message);
                    PlanError {
                        line: Some(line_of(self.text, m.span().start)),
                        message: e.message,
                    }
                };
                let measure = Measure::from_code(m.get_ref().trim()).ok_or_else(|| {
                    at(format!(
                        "rule.measure: unknown measure {:?} (expected one of {})",
                        m.get_ref(),
                        Measure::ALL.map(|m| m.code()).join(", ")
                    ))
                })?;
                if !measure.fits_unit(unit) {
                    return Err(at(format!(
                        "rule.measure: {} does not fit the indicator's unit {unit:?} ({})",
                        measure.code(),
                        match measure {
                            Measure::VerifiedM3 => "verified_m3 sums m³: the unit is \"m³\"",
                            Measure::InvestmentYuan =>
                                "investment_yuan sums yuan: the unit is \"yuan\"",
                            Measure::Projects | Measure::Sites =>
                                "a count of projects or sites is not a volume, an amount or a rate",
                        }
                    )));
                }
                if measure == Measure::VerifiedM3 && milestone != Milestone::PeriodVerified {
                    return Err(at(format!(
                        "rule.measure: verified_m3 sums the savings of verified periods: the rule's milestone is period_verified, not {}",
                        milestone.code()
                    )));
                }
                measure
            }
        };
        if measure == Measure::Projects && !Measure::Projects.fits_unit(unit) {
            return Err(bad(format!(
                "rule.measure: the rule counts projects (the default measure) but the unit is {unit:?}: set measure = \"verified_m3\" or \"investment_yuan\""
            )));
        }
        // Verified savings stay saved, and a site stays the site it was, whatever later
        // happens to one contract: only project counts and investments are taken off.
        if on_terminated == OnTerminated::Remove
            && matches!(measure, Measure::VerifiedM3 | Measure::Sites)
        {
            return Err(bad(format!(
                "rule: on_terminated = \"remove\" is for the measures projects and investment_yuan, not {}",
                measure.code()
            )));
        }
        Ok(CountingRule {
            milestone,
            sectors,
            unit_types: r.unit_types,
            towns: r.towns,
            tags,
            on_terminated,
            measure,
        })
    }
}

/// The plan every fresh installation starts with.
pub const DEFAULT_PLAN_TOML: &str = include_str!("../../../seeds/plans/xinbei-2020.toml");

/// The seed plan with its counting window and deadlines moved from 2020 to `year`: what the
/// tests and the load benchmark count projects against, since the projects they run through
/// today take effect today, outside the 2020 window. Loaded, it is the next version of
/// `xinbei-2020`.
pub fn seed_plan_for_year(year: i32) -> String {
    DEFAULT_PLAN_TOML
        .replace(
            "window = { from = \"2020-01-01\", to = \"2020-12-31\" }",
            &format!("window = {{ from = \"{year}-01-01\", to = \"{year}-12-31\" }}"),
        )
        .replace("deadline = \"2020-", &format!("deadline = \"{year}-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_plan_loads() {
        let plan = parse(DEFAULT_PLAN_TOML).expect("seed plan");
        assert_eq!(plan.code, "xinbei-2020");
        assert_eq!(plan.year, 2020);
        assert_eq!(plan.departments.len(), 15);
        assert_eq!(plan.goals.len(), 6);
        assert_eq!(plan.actions.len(), 10);
        assert_eq!(plan.indicators.len(), 12);
        let counted: Vec<_> = plan.indicators.iter().filter(|i| i.kind.counts()).collect();
        assert_eq!(counted.len(), 2);
        let a8 = plan.indicator("A8-CONTRACT-PROJECTS").expect("A8");
        let rule = a8.rule.as_ref().expect("rule");
        // 开展: a project counts when its contract is signed.
        assert_eq!(rule.milestone, Milestone::Contracted);
        assert_eq!(rule.measure, Measure::Projects);
        assert_eq!(
            plan.indicator("A7-TECH-RETROFITS").expect("A7").kind,
            Kind::CountedAndRecorded
        );
        assert_eq!(rule.tags, vec![IndicatorTag::ContractProject]);
        assert_eq!(rule.sectors.len(), 6);
        assert_eq!(a8.deadline, NaiveDate::from_ymd_opt(2020, 12, 31).unwrap());
        let g2 = plan.indicator("G2").expect("G2");
        assert_eq!(g2.base_year, 2015);
        assert_eq!(g2.aggregation, Aggregation::Latest);
        assert_eq!(
            plan.indicator("A2-GOV-AGENCIES").unwrap().aggregation,
            Aggregation::Sum
        );
        let order: Vec<_> = plan.all_indicators().iter().map(|i| i.action).collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(order.len(), 18);
    }

    #[test]
    fn an_unknown_key_names_its_line() {
        let broken = DEFAULT_PLAN_TOML.replacen(
            "name_zh = \"农业农村局\"",
            "name_zh = \"农业农村局\"\ncolour = \"red\"",
            1,
        );
        let line = broken
            .lines()
            .position(|l| l.starts_with("colour"))
            .unwrap()
            + 1;
        let e = parse(&broken).expect_err("unknown key");
        assert_eq!(e.line, Some(line), "{e}");
        assert!(e.message.contains("colour"), "{e}");
    }

    #[test]
    fn bad_toml_names_its_line() {
        let e = parse("code = \"x\"\ntitle = \"t\"\nyear = 2020\nbroken =\n").expect_err("syntax");
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.to_string().starts_with("line 4: "), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_indicator_and_line() {
        let cases = [
            (
                "sectors = [\"industrial_enterprise\"]",
                "sectors = [\"factory\"]",
                "factory",
            ),
            (
                "deadline = \"2020-11-30\"\nlead = [\"agri\", \"econ\"]",
                "deadline = \"2020-11-31\"\nlead = [\"agri\", \"econ\"]",
                "2020-11-31",
            ),
            (
                "milestone = \"accepted\"",
                "milestone = \"finished\"",
                "finished",
            ),
            (
                "tags = [\"technical_retrofit\"]",
                "tags = [\"retrofit\"]",
                "retrofit",
            ),
        ];
        let line = DEFAULT_PLAN_TOML
            .lines()
            .position(|l| l.contains("\"A7-TECH-RETROFITS\""))
            .unwrap()
            + 1;
        for (from, to, word) in cases {
            let broken = DEFAULT_PLAN_TOML.replacen(from, to, 1);
            assert_ne!(broken, DEFAULT_PLAN_TOML, "{from}");
            let e = parse(&broken).expect_err(to);
            assert!(e.message.contains("A7-TECH-RETROFITS"), "{e}");
            assert!(e.message.contains(word), "{e}");
            assert_eq!(e.line, Some(line), "{e}");
        }
    }

    #[test]
    fn unknown_departments_and_duplicates_are_rejected() {
        let broken = DEFAULT_PLAN_TOML.replacen(
            "lead = [\"agri\", \"edu\", \"youth\"]\nparticipants = []\nkind",
            "lead = [\"agri\", \"edu\", \"scouts\"]\nparticipants = []\nkind",
            1,
        );
        assert_ne!(broken, DEFAULT_PLAN_TOML);
        let e = parse(&broken).expect_err("unknown department");
        assert!(
            e.message.contains("A9-WATER-OF-LIFE-PARK") && e.message.contains("scouts"),
            "{e}"
        );
        assert!(e.line.is_some());

        let dup = DEFAULT_PLAN_TOML.replacen(
            "code = \"A2-GOV-AGENCIES\"",
            "code = \"A2-IRRIGATION-DISTRICT\"",
            1,
        );
        let e = parse(&dup).expect_err("duplicate");
        assert!(e.message.contains("duplicate"), "{e}");

        let dup_dept = DEFAULT_PLAN_TOML.replacen("code = \"housing\"", "code = \"agri\"", 1);
        let e = parse(&dup_dept).expect_err("duplicate department");
        assert!(e.message.contains("duplicate department"), "{e}");
    }

    #[test]
    fn the_seed_plan_moves_to_another_year() {
        let plan = parse(&seed_plan_for_year(2027)).expect("moved plan");
        assert_eq!(
            plan.window.from,
            NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()
        );
        assert_eq!(
            plan.window.to,
            NaiveDate::from_ymd_opt(2027, 12, 31).unwrap()
        );
        assert!(
            plan.all_indicators()
                .iter()
                .all(|i| chrono::Datelike::year(&i.deadline) == 2027)
        );
    }

    #[test]
    fn a_plan_names_its_jurisdiction_and_window() {
        let plan = parse(DEFAULT_PLAN_TOML).expect("seed plan");
        assert_eq!(plan.jurisdiction.as_str(), "320411");
        assert_eq!(
            (plan.window.from.to_string(), plan.window.to.to_string()),
            ("2020-01-01".into(), "2020-12-31".into())
        );
        let line_of = |text: &str, needle: &str| {
            text.lines()
                .position(|l| l.starts_with(needle))
                .map(|p| p + 1)
        };
        let jurisdiction = "jurisdiction = \"320411\"";
        let window = "window = { from = \"2020-01-01\", to = \"2020-12-31\" }";
        let cases = [
            (
                jurisdiction,
                "jurisdiction = \"320499\"",
                "jurisdiction",
                "not in the gazetteer",
            ),
            (
                jurisdiction,
                "jurisdiction = \"3204\"",
                "jurisdiction",
                "six digits",
            ),
            (
                jurisdiction,
                "jurisdiction = \"320411004\"",
                "jurisdiction",
                "is a town",
            ),
            (
                window,
                "window = { from = \"2020-01-01\", to = \"2020-13-01\" }",
                "window",
                "window.to",
            ),
            (
                window,
                "window = { from = \"2021-01-01\", to = \"2020-12-31\" }",
                "window",
                "after",
            ),
        ];
        for (from, to, key, expected) in cases {
            let broken = DEFAULT_PLAN_TOML.replacen(from, to, 1);
            assert_ne!(broken, DEFAULT_PLAN_TOML, "{to}");
            let e = parse(&broken).expect_err(to);
            assert!(e.message.contains(expected), "{to}: {e}");
            assert_eq!(e.line, line_of(&broken, key), "{to}: {e}");
        }
        // A deadline outside the window names the indicator.
        let narrow = DEFAULT_PLAN_TOML.replacen(
            window,
            "window = { from = \"2020-01-01\", to = \"2020-11-30\" }",
            1,
        );
        let e = parse(&narrow).expect_err("deadline outside");
        assert!(
            e.message.contains("outside the plan's window") && e.message.contains("2020-12-31"),
            "{e}"
        );
        // Required now; documents stored before read back as the default district's year.
        let old = DEFAULT_PLAN_TOML
            .replacen(jurisdiction, "", 1)
            .replacen(window, "", 1);
        let e = parse(&old).expect_err("missing");
        assert!(e.message.contains("missing field `jurisdiction`"), "{e}");
        let stored = parse_stored(&old).expect("a stored plan of before");
        assert_eq!(stored.jurisdiction, Jurisdiction::default_district());
        assert_eq!(stored.window, plan.window);
    }

    /// A `rolled_up` indicator: only in a city's or province's plan, with `from`, summing
    /// (at_least / at_most), without a rule; `from` on any other kind is refused.
    #[test]
    fn rolled_up_indicators_belong_to_higher_plans_and_name_what_they_sum() {
        let city = |jurisdiction: &str, body: &str| {
            format!(
                "code = \"cz\"\ntitle = \"t\"\ndistrict = \"d\"\nyear = 2020\njurisdiction = \"{jurisdiction}\"\n\
                 window = {{ from = \"2020-01-01\", to = \"2020-12-31\" }}\nsource = \"s\"\n\
                 [[actions]]\nnumber = 1\nname = \"a\"\n\
                 [[indicators]]\ncode = \"CZ1\"\naction = 1\nname = \"n\"\nunit = \"projects\"\n\
                 target = 3.0\ndeadline = \"2020-12-31\"\n{body}\n"
            )
        };
        let ok = parse(&city(
            "320400",
            "comparator = \"at_least\"\nkind = \"rolled_up\"\nfrom = [\"A8-CONTRACT-PROJECTS\", \"A8-CONTRACT-PROJECTS\"]",
        ))
        .expect("a city's rolled-up indicator");
        assert!(ok.rolls_up());
        assert_eq!(ok.indicators[0].rolled_up_from, ["A8-CONTRACT-PROJECTS"]);
        let cases = [
            (
                "320411",
                "comparator = \"at_least\"\nkind = \"rolled_up\"\nfrom = [\"A8\"]",
                "320411 is a district",
            ),
            (
                "320400",
                "comparator = \"at_least\"\nkind = \"rolled_up\"",
                "from = [",
            ),
            (
                "320400",
                "comparator = \"rate_at_least\"\nkind = \"rolled_up\"\nfrom = [\"A8\"]",
                "comparator must be at_least or at_most",
            ),
            (
                "320400",
                "comparator = \"at_least\"\nkind = \"recorded\"\nfrom = [\"A8\"]",
                "from is only for rolled_up indicators",
            ),
            (
                "320400",
                "comparator = \"at_least\"\nkind = \"rolled_up\"\nfrom = [\" \"]",
                "empty indicator code",
            ),
        ];
        for (jurisdiction, body, expected) in cases {
            let e = parse(&city(jurisdiction, body)).expect_err(body);
            assert!(e.message.contains("CZ1"), "{e}");
            assert!(e.message.contains(expected), "{body}: {e}");
            assert!(e.line.is_some(), "{body}: {e}");
        }
    }

    /// Issue 11 "bad input": a measure that does not fit the indicator's unit names its line.
    #[test]
    fn a_measure_that_does_not_fit_the_unit_names_its_line() {
        let a8_rule = "measure = \"projects\"\nmilestone = \"contracted\"";
        let cases = [
            // m³ summed on a count of projects.
            (
                a8_rule,
                "measure = \"verified_m3\"\nmilestone = \"period_verified\"",
                "does not fit the indicator's unit \"projects\"",
            ),
            (
                a8_rule,
                "measure = \"investment_yuan\"\nmilestone = \"contracted\"",
                "does not fit",
            ),
            (
                a8_rule,
                "measure = \"litres\"\nmilestone = \"contracted\"",
                "unknown measure",
            ),
            (
                "unit = \"projects\"\ncomparator = \"at_least\"\ntarget = 1.0\ndeadline = \"2020-12-31\"\nlead = [\"agri\"]\nparticipants = []\nkind = \"counted\"",
                "unit = \"m³\"\ncomparator = \"at_least\"\ntarget = 1.0\ndeadline = \"2020-12-31\"\nlead = [\"agri\"]\nparticipants = []\nkind = \"counted\"",
                "projects does not fit the indicator's unit \"m³\"",
            ),
        ];
        for (from, to, expected) in cases {
            let broken = DEFAULT_PLAN_TOML.replacen(from, to, 1);
            assert_ne!(broken, DEFAULT_PLAN_TOML, "{to}");
            let e = parse(&broken).expect_err(to);
            assert!(e.message.contains("A8-CONTRACT-PROJECTS"), "{e}");
            assert!(e.message.contains(expected), "{to}: {e}");
            // The line of A8's `measure = …`.
            let a8 = broken
                .lines()
                .position(|l| l.contains("\"A8-CONTRACT-PROJECTS\""))
                .expect("a8");
            let line = broken
                .lines()
                .enumerate()
                .skip(a8)
                .find(|(_, l)| l.starts_with("measure = "))
                .map(|(n, _)| n + 1);
            assert_eq!(e.line, line, "{to}: {e}");
        }
        // Verified m³ on an m³ indicator loads; on another milestone it does not.
        let volume = DEFAULT_PLAN_TOML
            .replacen("unit = \"projects\"\ncomparator = \"at_least\"\ntarget = 1.0\ndeadline = \"2020-12-31\"", "unit = \"m³\"\ncomparator = \"at_least\"\ntarget = 1000.0\ndeadline = \"2020-12-31\"", 1)
            .replacen(a8_rule, "measure = \"verified_m3\"\nmilestone = \"period_verified\"", 1);
        let plan = parse(&volume).expect("a volume indicator");
        assert_eq!(
            plan.indicator("A8-CONTRACT-PROJECTS")
                .and_then(|i| i.rule.as_ref())
                .map(|r| r.measure),
            Some(Measure::VerifiedM3)
        );
        let e = parse(&volume.replacen(
            "milestone = \"period_verified\"",
            "milestone = \"accepted\"",
            1,
        ))
        .expect_err("verified m³ of acceptances");
        assert!(e.message.contains("period_verified"), "{e}");
    }
}
