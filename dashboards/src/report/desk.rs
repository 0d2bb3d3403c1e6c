//! The report desk: what a request for a month's report gets, and at what cost.
//!
//! - A closed month (over in the federation's time zone, plus `grace_days` for late data) is
//!   frozen: counted and written once, stored (`store.rs`), then served as stored while the
//!   data it was counted from is unchanged (a digest of its months' rollup cells, looked up in
//!   memory: no recount). When that data changed, the report is recounted: the same figures
//!   keep the stored revision; different figures make a new revision that says what changed.
//! - A month still open (provisional) is counted for the data of the moment and kept in
//!   memory until the data changes.
//! - Requests for the same report at once wait for one count (single flight), and counts run
//!   in the reports' own slots (`slots`), never in the pages' query slots: a hundred managers
//!   during a peak cost one count, and the dashboards do not wait behind them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mxpulse_query::QueryError;
use mxpulse_query::access::Principal;
use mxpulse_query::figures::periods;
use mxpulse_query::service::QueryService;
use tokio::sync::{OnceCell, Semaphore};

use super::files::RenderedReport;
use super::store::{Frozen, ReportStore, SeriesKey};
use super::{ReportError, Revision};
use crate::annotations::Annotation;
use crate::i18n::Lang;

/// How the desk works, from the configuration.
#[derive(Clone, Debug)]
pub struct ReportSettings {
    /// Where frozen reports are stored; `None`: never frozen (every count is provisional).
    pub dir: Option<PathBuf>,
    /// Days after a month's end before its report is frozen.
    pub grace_days: u32,
    /// Reports counted at once.
    pub slots: usize,
    /// How long a request waits for a report slot before it is answered "busy".
    pub queue_timeout: Duration,
}

/// One report as served: its files and what they are.
#[derive(Debug)]
pub struct Served {
    pub rendered: RenderedReport,
    pub digest: String,
    /// The frozen revision; `None`: counted for this request's data, not stored.
    pub revision: Option<u32>,
    pub provisional: bool,
    /// The data it was counted from (or found unchanged against).
    data: Option<String>,
    /// `mxpulse-2024-07-fr`.
    pub file_stem: String,
}

type Flight = Arc<OnceCell<Result<Arc<Served>, (u16, String)>>>;

/// The reports of one query service.
pub struct ReportDesk {
    pub service: Arc<QueryService>,
    annotations: Vec<Annotation>,
    store: Option<ReportStore>,
    settings: ReportSettings,
    slots: Semaphore,
    /// Counts in progress, by report and data.
    flights: tokio::sync::Mutex<HashMap<(SeriesKey, Option<String>), Flight>>,
    /// The last report served of each series.
    served: Mutex<HashMap<SeriesKey, Arc<Served>>>,
}

/// At most this many reports are kept in memory (a few hundred kilobytes each).
const KEPT: usize = 64;

impl ReportDesk {
    pub fn new(
        service: Arc<QueryService>,
        annotations: Vec<Annotation>,
        settings: ReportSettings,
    ) -> Self {
        Self {
            service,
            annotations,
            store: settings.dir.clone().map(ReportStore::new),
            slots: Semaphore::new(settings.slots.max(1)),
            settings,
            flights: Default::default(),
            served: Default::default(),
        }
    }

    pub fn store(&self) -> Option<&ReportStore> {
        self.store.as_ref()
    }

    /// Whether `month` is over, plus the grace period, in the federation's time zone.
    pub fn is_closed(&self, month: &str) -> Result<bool, QueryError> {
        let end = periods::month_end(month)?;
        let today = periods::today_in(&self.service.timezone);
        Ok(end
            .checked_add_days(chrono::Days::new(u64::from(self.settings.grace_days)))
            .is_some_and(|last| today > last))
    }

    /// The newest closed month that has figures, if any.
    pub async fn latest_closed_month(&self) -> Result<Option<String>, QueryError> {
        let months = self.service.months_with_data().await?;
        for month in months.iter().rev() {
            if self.is_closed(month)? {
                return Ok(Some(month.clone()));
            }
        }
        Ok(None)
    }

    /// What a month's report is counted from: the digest of its months' cells and the events
    /// it names. `None` when the rollups do not answer.
    async fn data_of(&self, month: &str) -> Result<Option<String>, QueryError> {
        let months = super::months_read(month);
        let months: Vec<&str> = months.iter().map(String::as_str).collect();
        let Some((_, cells)) = self.service.months_digest(&months).await? else {
            return Ok(None);
        };
        let events: Vec<String> = self
            .annotations
            .iter()
            .map(|a| format!("{}|{}|{}|{}", a.from, a.to, a.label.fr, a.label.en))
            .collect();
        use sha2::{Digest as _, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(cells.as_bytes());
        hasher.update(events.join("\n").as_bytes());
        Ok(Some(hex::encode(&hasher.finalize()[..16])))
    }

    fn remember(&self, key: &SeriesKey, served: &Arc<Served>) {
        if let Ok(mut kept) = self.served.lock() {
            if kept.len() >= KEPT && !kept.contains_key(key) {
                // Any one: the next request for it recounts or reads it back from disk.
                if let Some(evicted) = kept.keys().next().cloned() {
                    kept.remove(&evicted);
                }
            }
            kept.insert(key.clone(), served.clone());
        }
    }

    /// `month`'s report for `who` (its scope) in `lang`.
    pub async fn report(
        &self,
        who: &Principal,
        month: &str,
        lang: Lang,
    ) -> Result<Arc<Served>, ReportError> {
        let start = periods::month_start(month)?;
        let today = periods::today_in(&self.service.timezone);
        if start > today {
            return Err(ReportError::Invalid(format!(
                "{month} has not begun: no report yet"
            )));
        }
        let key = SeriesKey {
            scope: who.server.clone(),
            month: month.to_owned(),
            lang,
        };
        let closed = self.is_closed(month)?;
        let data = self.data_of(month).await?;
        if data.is_some() {
            let kept = self.served.lock().ok().and_then(|k| k.get(&key).cloned());
            if let Some(kept) = kept.filter(|k| k.data == data) {
                return Ok(kept);
            }
        }
        if closed && let Some(store) = &self.store {
            let frozen = store.latest(&key)?;
            if let Some(frozen) = frozen.filter(|f| f.counted_from(data.as_deref())) {
                let served = Arc::new(self.served_of(store, &key, &frozen, data.clone()).await?);
                self.remember(&key, &served);
                return Ok(served);
            }
        }
        self.count_once(who, key, closed, data).await
    }

    /// A frozen revision read back from disk.
    async fn served_of(
        &self,
        store: &ReportStore,
        key: &SeriesKey,
        frozen: &Frozen,
        data: Option<String>,
    ) -> Result<Served, ReportError> {
        let (store, frozen_copy) = (store.clone(), frozen.clone());
        let rendered = tokio::task::spawn_blocking(move || store.load(&frozen_copy))
            .await
            .map_err(|e| ReportError::Invalid(format!("reading a report: {e}")))??;
        Ok(Served {
            rendered,
            digest: frozen.manifest.digest.clone(),
            revision: Some(frozen.manifest.revision),
            provisional: false,
            data,
            file_stem: stem(key),
        })
    }

    /// One count for every request of the same report and data.
    async fn count_once(
        &self,
        who: &Principal,
        key: SeriesKey,
        closed: bool,
        data: Option<String>,
    ) -> Result<Arc<Served>, ReportError> {
        let flight_key = (key.clone(), data.clone());
        let flight: Flight = self
            .flights
            .lock()
            .await
            .entry(flight_key.clone())
            .or_default()
            .clone();
        let result = flight
            .get_or_init(|| async {
                self.count(who, &key, closed, data.clone())
                    .await
                    .map(Arc::new)
                    .map_err(|e| (e.status(), e.to_string()))
            })
            .await
            .clone();
        {
            let mut flights = self.flights.lock().await;
            if flights
                .get(&flight_key)
                .is_some_and(|f| Arc::ptr_eq(f, &flight))
            {
                flights.remove(&flight_key);
            }
        }
        match result {
            Ok(served) => {
                self.remember(&key, &served);
                Ok(served)
            }
            Err((status, message)) => Err(ReportError::Shared { status, message }),
        }
    }

    /// Counts the report in a report slot, then freezes it when its month is closed.
    async fn count(
        &self,
        who: &Principal,
        key: &SeriesKey,
        closed: bool,
        data: Option<String>,
    ) -> Result<Served, ReportError> {
        let _slot = match tokio::time::timeout(self.settings.queue_timeout, self.slots.acquire())
            .await
        {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Err(QueryError::Internal("the service is stopping".into()).into()),
            Err(_) => return Err(QueryError::Busy(self.settings.queue_timeout).into()),
        };
        let started = std::time::Instant::now();
        let mut report = super::build(
            &self.service,
            who,
            &key.month,
            key.lang,
            &self.annotations,
            !closed,
        )
        .await?;
        let digest = report.digest();
        let store = self.store.as_ref().filter(|_| closed);
        let latest = match store {
            Some(store) => store.latest(key)?,
            None => None,
        };
        if let (Some(store), Some(latest)) = (store, &latest)
            && latest.manifest.digest == digest
        {
            // The lake changed, not this report: keep serving the stored revision.
            if let Some(data) = &data {
                store.mark_checked(key, latest, data);
            }
            return self.served_of(store, key, latest, data).await;
        }
        if store.is_some() {
            report.revision = Some(Revision {
                number: latest.as_ref().map_or(1, |l| l.manifest.revision + 1),
                replaces: latest.as_ref().map(|l| l.manifest.frozen_at.clone()),
                changes: latest
                    .as_ref()
                    .map(|l| report.changes_since(&l.manifest.values))
                    .unwrap_or_default(),
            });
        }
        let report = Arc::new(report);
        let rendered = {
            let report = report.clone();
            tokio::task::spawn_blocking(move || super::files::render(&report))
                .await
                .map_err(|e| ReportError::Invalid(format!("writing a report: {e}")))??
        };
        let mut revision = None;
        if let Some(store) = store {
            match store.freeze(key, &report, &rendered, data.clone()) {
                Ok(frozen) => {
                    revision = Some(frozen.manifest.revision);
                    tracing::info!(
                        month = %key.month,
                        scope = key.scope.as_deref().unwrap_or("federation"),
                        lang = key.lang.code(),
                        revision = frozen.manifest.revision,
                        changed_cells = frozen.manifest.changes.len(),
                        ms = started.elapsed().as_millis() as u64,
                        "report frozen"
                    );
                }
                // Served all the same, not stored: the next request tries again.
                Err(e) => tracing::error!(error = %e, "cannot freeze a report"),
            }
        }
        Ok(Served {
            rendered,
            digest,
            revision,
            provisional: report.provisional,
            data,
            file_stem: report.file_stem(),
        })
    }

    /// Makes the newest closed month's report of every scope (the federation's and each
    /// scoped principal's server), in both languages, so that it is ready before anyone asks,
    /// and a late record's revision is made without waiting for a request.
    pub async fn prepare(&self) -> Result<Option<String>, QueryError> {
        let Some(month) = self.latest_closed_month().await? else {
            return Ok(None);
        };
        let mut scopes: Vec<Option<String>> = std::iter::once(None)
            .chain(
                self.service
                    .access
                    .principals()
                    .filter_map(|p| p.server.clone())
                    .map(Some),
            )
            .collect();
        scopes.sort();
        scopes.dedup();
        for scope in scopes {
            for lang in [Lang::Fr, Lang::En] {
                if let Err(e) = self
                    .report(&super::operator(scope.clone()), &month, lang)
                    .await
                {
                    tracing::warn!(error = %e, %month, "cannot prepare a report");
                }
            }
        }
        Ok(Some(month))
    }
}

fn stem(key: &SeriesKey) -> String {
    super::file_stem(key.scope.as_deref(), &key.month, key.lang)
}
