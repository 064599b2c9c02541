//! Live reports shared by their watchers (WatchReport streams and the dashboard's event
//! streams): one feed per plan code, version and date computes the report once per change and
//! publishes it on a `watch` channel to every watcher of that key. A watcher that lags skips to
//! the latest report; it never queues a backlog. The feed ends with its last watcher.
//!
//! Before, every watcher recomputed the report on every change: 3,000 watchers made one change
//! 3,000 computations, which took 23 s to reach them and starved the database pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::NaiveDate;
use cwsm_platform::{Error, Result};
use tokio::sync::watch;

use crate::Reporting;
use crate::report::Report;

/// How often a feed recomputes without a change notice: it catches changes made by other
/// replicas, and the date moving on for reports "as of today".
pub const POLL: Duration = Duration::from_secs(30);

/// What a watcher watches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WatchKey {
    pub plan_code: String,
    /// 0: the latest version.
    pub version: i64,
    /// `None`: today (China Standard Time), moving with the date.
    pub date: Option<NaiveDate>,
}

/// The report as every watcher of one key sees it.
#[derive(Debug)]
pub struct Snapshot {
    /// The same `Arc` for as long as the report's content is unchanged (a new dead-letter count
    /// alone makes a new snapshot with the same report).
    pub report: Arc<Report>,
    pub dead_letters: i64,
    /// The change generation read before computing it.
    pub generation: u64,
}

/// `None` until the first computation; then the latest snapshot, or the first computation's
/// error (after which the feed ends).
type Slot = Option<std::result::Result<Arc<Snapshot>, Arc<Error>>>;

/// The live feeds by key.
#[derive(Default)]
pub(crate) struct Feeds {
    map: Mutex<HashMap<WatchKey, Arc<watch::Sender<Slot>>>>,
}

impl Feeds {
    fn lock(&self) -> MutexGuard<'_, HashMap<WatchKey, Arc<watch::Sender<Slot>>>> {
        // The map stays consistent whatever panicked while holding it.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes the feed of `key` when it has no watcher left; false when one subscribed
    /// meanwhile. Watchers subscribe under the same lock, so none can be missed.
    fn retire(&self, key: &WatchKey, tx: &Arc<watch::Sender<Slot>>, force: bool) -> bool {
        let mut map = self.lock();
        if !force && tx.receiver_count() > 0 {
            return false;
        }
        if map.get(key).is_some_and(|t| Arc::ptr_eq(t, tx)) {
            map.remove(key);
        }
        true
    }

    /// How many feeds are live (for tests).
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// One watcher's view of a feed.
pub struct ReportWatch {
    rx: watch::Receiver<Slot>,
}

impl ReportWatch {
    /// The latest snapshot, marked as seen.
    pub fn latest(&mut self) -> Option<Arc<Snapshot>> {
        match &*self.rx.borrow_and_update() {
            Some(Ok(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// Waits for a snapshot newer than the last seen and returns the latest (those in between
    /// are skipped); `None` when the feed ended.
    pub async fn changed(&mut self) -> Option<Arc<Snapshot>> {
        self.rx.changed().await.ok()?;
        self.latest()
    }
}

/// The same error for another watcher (an internal error keeps its message only).
fn owned(e: &Error) -> Error {
    match e {
        Error::InvalidArgument { field, reason } => Error::invalid(field.clone(), reason.clone()),
        Error::NotFound { kind, id } => Error::not_found(kind, id.clone()),
        Error::AlreadyExists(m) => Error::AlreadyExists(m.clone()),
        Error::FailedPrecondition(m) => Error::FailedPrecondition(m.clone()),
        Error::PermissionDenied(m) => Error::PermissionDenied(m.clone()),
        Error::Aborted(m) => Error::Aborted(m.clone()),
        Error::ResourceExhausted(m) => Error::ResourceExhausted(m.clone()),
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        Error::Unauthenticated(m) => Error::Unauthenticated(m.clone()),
        Error::Internal(inner) => Error::Internal(anyhow::anyhow!("{inner:#}")),
    }
}

fn same_content(a: &Report, b: &Report) -> bool {
    a.plan == b.plan && a.as_of == b.as_of && a.lines == b.lines
}

impl Reporting {
    /// Watches the report of `key`: joins the live feed of that key, or starts it. Returns once
    /// the first report is there (computed once for every watcher that joined meanwhile), or the
    /// error of that first computation (an unknown plan, a bad version).
    pub async fn watch(&self, key: WatchKey) -> Result<ReportWatch> {
        let mut rx = {
            let mut map = self.feeds.lock();
            match map.get(&key) {
                Some(tx) => tx.subscribe(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    let tx = Arc::new(tx);
                    map.insert(key.clone(), tx.clone());
                    tokio::spawn(feed(self.clone(), key, tx));
                    rx
                }
            }
        };
        let first = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::Internal(anyhow::anyhow!("the report feed ended")))?
            .clone();
        match first {
            Some(Ok(_)) => Ok(ReportWatch { rx }),
            Some(Err(e)) => Err(owned(&e)),
            None => Err(Error::Internal(anyhow::anyhow!("the report feed ended"))),
        }
    }

    /// How many report feeds are live (one per watched plan, version and date).
    pub fn live_feeds(&self) -> usize {
        self.feeds.len()
    }
}

/// Computes the report of `key` on every change (and every [`POLL`]), publishing it when its
/// content or the dead-letter count changed, until no watcher is left.
async fn feed(reporting: Reporting, key: WatchKey, tx: Arc<watch::Sender<Slot>>) {
    // Subscribed before the first computation, so a change during it is not missed.
    let mut changes = reporting.subscribe();
    let mut last: Option<Arc<Snapshot>> = None;
    loop {
        let generation = *changes.borrow_and_update();
        let computed = async {
            let as_of = reporting
                .as_of(&key.plan_code, key.version, key.date)
                .await?;
            let report = reporting.report(&key.plan_code, key.version, as_of).await?;
            let dead_letters = reporting.dead_letter_count().await?;
            Ok::<_, Error>((report, dead_letters))
        }
        .await;
        match (computed, &last) {
            (Ok((report, dead_letters)), Some(l)) if same_content(&l.report, &report) => {
                if l.dead_letters != dead_letters {
                    let s = Arc::new(Snapshot {
                        report: l.report.clone(),
                        dead_letters,
                        generation,
                    });
                    tx.send_replace(Some(Ok(s.clone())));
                    last = Some(s);
                }
            }
            (Ok((report, dead_letters)), _) => {
                let s = Arc::new(Snapshot {
                    report: Arc::new(report),
                    dead_letters,
                    generation,
                });
                tx.send_replace(Some(Ok(s.clone())));
                last = Some(s);
            }
            (Err(e), None) => {
                // The watchers waiting for the first report get the error; the feed ends.
                tx.send_replace(Some(Err(Arc::new(e))));
                reporting.feeds.retire(&key, &tx, true);
                return;
            }
            (Err(e), Some(_)) => {
                // Keep the last report; the next change or poll tries again.
                tracing::warn!(plan = %key.plan_code, error = %format!("{e:#}"), "recomputing a watched report");
            }
        }
        let poll = tokio::time::sleep(POLL);
        tokio::pin!(poll);
        loop {
            tokio::select! {
                _ = tx.closed() => {
                    if reporting.feeds.retire(&key, &tx, false) {
                        return;
                    }
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        reporting.feeds.retire(&key, &tx, true);
                        return;
                    }
                    break;
                }
                _ = &mut poll => break,
            }
        }
    }
}
