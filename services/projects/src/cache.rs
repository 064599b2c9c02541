//! Projects as last read (the row and its stage history), kept in memory so that GetProject —
//! what the parties' screens and the administrators' tools poll — is answered without a
//! database round trip.
//!
//! An entry is never served after the project changed, in this replica or another:
//! - every write to a project forgets its entry here right after the commit (the store does it),
//!   and PostgreSQL tells the other replicas: a trigger on `projects` notifies
//!   [`CHANGED_CHANNEL`] with the project's id at commit, and [`ProjectCache::follow`] forgets
//!   what it names;
//! - a read that raced a write cannot put back what it read before the write: an entry is kept
//!   only if nothing was forgotten between the start of its read and its filling (a generation
//!   number counts the forgets);
//! - while the listener is not listening (at start, or after its connection dropped) the cache
//!   serves nothing, and it starts empty each time it listens again, since what was notified in
//!   between is gone.
//!
//! On SQLite one process owns the database (the embedded mode), so the local forget is enough
//! and the cache serves from the start.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cwsm_platform::db::{Notice, follow_notifications};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::domain::{Project, Transition};

/// The channel the `projects` trigger notifies (payload: the project id); see the migration
/// `0004_project_changes.sql`.
pub const CHANGED_CHANNEL: &str = "cwsm_project_changed";

/// Projects kept by default (0 keeps none).
pub const DEFAULT_ENTRIES: usize = 10_000;

/// A project as GetProject shows it.
#[derive(Clone, Debug)]
pub struct ProjectView {
    pub project: Project,
    /// The first transitions, oldest first (as many as GetProject shows).
    pub history: Vec<Transition>,
    /// The verifier assignments, oldest first.
    pub verifiers: Vec<crate::verifiers::VerifierAssignment>,
}

pub struct ProjectCache {
    entries: Option<quick_cache::sync::Cache<String, Arc<ProjectView>>>,
    /// Counts forgets: a fill is kept only if none happened since its read began.
    generation: AtomicU64,
    /// Whether entries may be served (false while changes could go unheard).
    serving: AtomicBool,
}

/// Where a read began, for [`ProjectCache::fill`].
#[derive(Clone, Copy, Debug)]
pub struct ReadStart(u64);

impl ProjectCache {
    /// A cache of up to `entries` projects, serving from the start or only once
    /// [`ProjectCache::follow`] listens.
    pub fn new(entries: usize, serving: bool) -> ProjectCache {
        ProjectCache {
            entries: (entries > 0).then(|| quick_cache::sync::Cache::new(entries)),
            generation: AtomicU64::new(0),
            serving: AtomicBool::new(serving),
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<ProjectView>> {
        if !self.serving.load(Ordering::SeqCst) {
            return None;
        }
        self.entries.as_ref()?.get(id)
    }

    /// Call before reading the project from the database.
    pub fn read_start(&self) -> ReadStart {
        ReadStart(self.generation.load(Ordering::SeqCst))
    }

    /// Keeps `view`, read since `start`, unless something was forgotten meanwhile.
    pub fn fill(&self, view: Arc<ProjectView>, start: ReadStart) {
        let Some(entries) = &self.entries else {
            return;
        };
        if !self.serving.load(Ordering::SeqCst) || self.generation.load(Ordering::SeqCst) != start.0
        {
            return;
        }
        let id = view.project.id.clone();
        entries.insert(id.clone(), view);
        // A forget between the check above and the insert has already run its remove: take the
        // entry back out ourselves.
        if self.generation.load(Ordering::SeqCst) != start.0 {
            entries.remove(&id);
        }
    }

    /// Forgets project `id` (after a commit that changed it).
    pub fn forget(&self, id: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(entries) = &self.entries {
            entries.remove(id);
        }
    }

    /// Forgets project `id` when the guard drops: put it before a commit, and the project is
    /// forgotten after it however the writing call ends (a caller that hangs up mid-commit drops
    /// the call, and the commit may still land).
    pub fn forget_when_done<'a>(&'a self, id: &'a str) -> ForgetWhenDone<'a> {
        ForgetWhenDone { cache: self, id }
    }

    fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(entries) = &self.entries {
            entries.clear();
        }
    }

    fn hear(&self, notice: Notice<'_>) {
        match notice {
            Notice::Changed(id) => self.forget(id),
            Notice::Listening => {
                self.forget_all();
                self.serving.store(true, Ordering::SeqCst);
            }
            Notice::Lost => {
                self.serving.store(false, Ordering::SeqCst);
                self.forget_all();
            }
        }
    }

    /// Follows other replicas' changes (PostgreSQL) until `stop`.
    pub async fn follow(self: Arc<Self>, pool: PgPool, stop: CancellationToken) {
        follow_notifications(pool, CHANGED_CHANNEL, stop, move |notice| self.hear(notice)).await;
    }
}

/// See [`ProjectCache::forget_when_done`].
pub struct ForgetWhenDone<'a> {
    cache: &'a ProjectCache,
    id: &'a str,
}

impl Drop for ForgetWhenDone<'_> {
    fn drop(&mut self) {
        self.cache.forget(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Contract, ContractTerms, Party, Stage};
    use cwsm_platform::vocab::{ContractModel, MvOption, Sector};

    fn view(id: &str, stage: Stage) -> Arc<ProjectView> {
        let party = || Party {
            id: String::new(),
            name: String::new(),
            credit_code: String::new(),
        };
        let project = Project {
            id: id.to_string(),
            contract: Contract {
                proposal_id: String::new(),
                project_request_id: String::new(),
                company: party(),
                water_user: party(),
                sector: Sector::PublicInstitution,
                unit_type: String::new(),
                town: String::new(),
                jurisdiction_code: String::new(),
                title: "Campus pipe-network retrofit".into(),
                measures: String::new(),
                contract_model: ContractModel::SharedSavings,
                terms: ContractTerms::default(),
                investment_fen: 0,
                promised_savings_litres: 0,
                promised_savings_bp: 0,
                contract_term_months: 0,
                baseline_use_litres: 0,
                mv_option: MvOption::C,
                drivers: vec![],
                price_fen_per_m3: 0,
                indicator_tags: vec![],
            },
            sites: vec![],
            baseline_start_date: String::new(),
            baseline_end_date: String::new(),
            stage,
            suspended_from: None,
            reporting_period_months: 1,
            mv_model_description: String::new(),
            quality_rules: Default::default(),
            verifier_org: String::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
            version: 1,
        };
        Arc::new(ProjectView {
            project,
            history: vec![],
            verifiers: vec![],
        })
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_kept() {
        let cache = ProjectCache::new(10, true);
        let start = cache.read_start();
        cache.forget("p1"); // a write committed while the read was under way
        cache.fill(view("p1", Stage::Contracted), start);
        assert!(cache.get("p1").is_none());

        let start = cache.read_start();
        cache.fill(view("p1", Stage::Accepted), start);
        assert_eq!(
            cache.get("p1").map(|v| v.project.stage),
            Some(Stage::Accepted)
        );
        cache.forget("p1");
        assert!(cache.get("p1").is_none());
    }

    #[test]
    fn nothing_is_served_while_changes_could_go_unheard() {
        let cache = ProjectCache::new(10, false);
        cache.fill(view("p1", Stage::Contracted), cache.read_start());
        assert!(cache.get("p1").is_none(), "not listening yet");

        cache.hear(Notice::Listening);
        cache.fill(view("p1", Stage::Contracted), cache.read_start());
        assert!(cache.get("p1").is_some());

        cache.hear(Notice::Lost);
        assert!(cache.get("p1").is_none());
        cache.hear(Notice::Listening);
        assert!(
            cache.get("p1").is_none(),
            "emptied: changes meanwhile are unknown"
        );
    }

    #[test]
    fn a_write_forgets_its_project_when_its_call_ends() {
        let cache = ProjectCache::new(10, true);
        cache.fill(view("p1", Stage::Contracted), cache.read_start());
        {
            let _forget = cache.forget_when_done("p1");
            assert!(cache.get("p1").is_some(), "not before the commit");
        }
        assert!(cache.get("p1").is_none());
    }

    #[test]
    fn no_entries_keeps_nothing() {
        let cache = ProjectCache::new(0, true);
        cache.fill(view("p1", Stage::Contracted), cache.read_start());
        assert!(cache.get("p1").is_none());
    }
}
