//! `mxpulse backfill`: replays a homeserver's history from its database: the events of local
//! senders (from `events` + `event_json`, mapped exactly as the appservice maps them), the
//! visits of `user_daily_visits` (never pruned by Synapse, so complete) and the accounts of
//! `users`. Records keep their identity, so a backfill over days the appservice already
//! reported, or a second backfill, stores nothing twice.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use mxpulse_schemas::vocabulary::Source;

use crate::Anonymizer;
use crate::db_tap::TapError;
use crate::event_mapping::Mapped;
use crate::producer::RecordProducer;
use crate::synapse_db::SynapseDb;

const DAY_MS: i64 = 86_400_000;
const PAGE: i64 = 5_000;

/// What a backfill published and left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackfillReport {
    pub events: usize,
    pub events_skipped: usize,
    pub visits: usize,
    pub accounts: usize,
}

/// Which of a homeserver's tables a backfill replays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackfillParts {
    pub events: bool,
    pub visits: bool,
    pub accounts: bool,
}

impl BackfillParts {
    pub const ALL: Self = Self {
        events: true,
        visits: true,
        accounts: true,
    };
}

/// Replays `parts` of `[from_ms, until_ms)`. `progress` shows bars on stderr (hidden when it is not a
/// terminal).
pub async fn backfill(
    db: &SynapseDb,
    anonymizer: &Anonymizer,
    producer: &RecordProducer,
    from_ms: i64,
    until_ms: i64,
    parts: BackfillParts,
    progress: bool,
) -> Result<BackfillReport, TapError> {
    let mut report = BackfillReport::default();
    let bar = |total: u64, what: &str| {
        let bar = if progress {
            ProgressBar::new(total)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    };

    if parts.events {
        (report.events, report.events_skipped) =
            backfill_events(db, anonymizer, producer, from_ms, until_ms, &bar).await?;
    }
    if parts.visits {
        report.visits = backfill_visits(db, anonymizer, producer, from_ms, until_ms, &bar).await?;
    }
    if parts.accounts {
        report.accounts = backfill_accounts(db, anonymizer, producer, from_ms, until_ms).await?;
    }
    Ok(report)
}

/// Events of local senders, page by page in stream order: (published, skipped).
async fn backfill_events(
    db: &SynapseDb,
    anonymizer: &Anonymizer,
    producer: &RecordProducer,
    from_ms: i64,
    until_ms: i64,
    bar: &impl Fn(u64, &str) -> ProgressBar,
) -> Result<(usize, usize), TapError> {
    let server = anonymizer.server();
    let (mut published, mut skipped) = (0, 0);
    let total = db.count_local_events(server, from_ms, until_ms).await?;
    let events_bar = bar(u64::try_from(total).unwrap_or(0), "events");
    let mut after = i64::MIN;
    loop {
        let page = db
            .local_events_page(server, from_ms, until_ms, after, PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.stream_ordering;
        let mut records = Vec::with_capacity(page.len());
        for stored in &page {
            match anonymizer.event(&stored.event, Source::SynapseDb) {
                Ok(Mapped::Record(record)) => records.push(*record),
                Ok(Mapped::Remote) => {}
                Err(reason) => {
                    tracing::debug!(reason = reason.label(), "event skipped");
                    skipped += 1;
                }
            }
        }
        producer.publish(&records).await?;
        published += records.len();
        events_bar.inc(page.len() as u64);
    }
    events_bar.finish();
    Ok((published, skipped))
}

/// Visits, one day at a time (a day's rows fit in memory at any federation's size).
async fn backfill_visits(
    db: &SynapseDb,
    anonymizer: &Anonymizer,
    producer: &RecordProducer,
    from_ms: i64,
    until_ms: i64,
    bar: &impl Fn(u64, &str) -> ProgressBar,
) -> Result<usize, TapError> {
    let mut published = 0;
    if let Some((first, last)) = db.visit_day_range(from_ms).await? {
        let last = last.min(until_ms - 1);
        let days = if last >= first {
            (last - first) / DAY_MS + 1
        } else {
            0
        };
        let visits_bar = bar(u64::try_from(days).unwrap_or(0), "days");
        let mut day = first;
        while day <= last {
            let records: Vec<_> = db
                .visits_of_day(day)
                .await?
                .iter()
                .filter_map(|row| anonymizer.visit(row))
                .collect();
            producer.publish(&records).await?;
            published += records.len();
            visits_bar.inc(1);
            day += DAY_MS;
        }
        visits_bar.finish();
    }
    Ok(published)
}

/// Accounts created in the window, and accounts deactivated in it: dated with the user's last
/// trace in the database, as the tap dates them (`SynapseDb::last_trace_ms`), so that a
/// deactivation both report is stored once.
async fn backfill_accounts(
    db: &SynapseDb,
    anonymizer: &Anonymizer,
    producer: &RecordProducer,
    from_ms: i64,
    until_ms: i64,
) -> Result<usize, TapError> {
    let users = db.users_created_since(from_ms.div_euclid(1000)).await?;
    let mut records: Vec<_> = users
        .iter()
        .filter(|user| user.creation_ts_s.saturating_mul(1000) < until_ms)
        .map(|user| anonymizer.account_created(user))
        .collect();
    for user in db.deactivated_users().await? {
        let at = db.last_trace_ms(&user.name, user.creation_ts_s).await?;
        if (from_ms..until_ms).contains(&at) {
            records.push(anonymizer.account_deactivated(&user, at));
        }
    }
    for chunk in records.chunks(PAGE as usize) {
        producer.publish(chunk).await?;
    }
    Ok(records.len())
}
