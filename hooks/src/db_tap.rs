//! The Synapse database tap: polls `user_daily_visits` and `users` and publishes visit and
//! account records, with a cursor persisted per homeserver so that a restart neither skips
//! nor repeats.
//!
//! The cursor is a watermark plus the identities already published for the rows that may
//! still change under it (Synapse adds visit rows to today and, just after midnight, to
//! yesterday; accounts are read back an hour). Records are written to the state file as
//! pending before they are published and moved to "published" after Kafka acknowledged them:
//! a crash in between republishes exactly those records, with the same keys, which the
//! ingest drops as repeats. The state file holds pseudonyms and e-mail domains, never a
//! Matrix ID.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mxpulse_schemas::vocabulary::{AccountChange, UserType};
use mxpulse_schemas::{
    AccountRecord, DirectoryRecord, Record, RoomPseudonym, SchemaVersion, UserPseudonym,
    VisitRecord,
};
use serde::{Deserialize, Serialize};

use crate::Anonymizer;
use crate::metrics::HooksMetrics;
use crate::producer::{PublishError, RecordProducer};
use crate::synapse_db::{SynapseDb, SynapseDbError};

const DAY_MS: i64 = 86_400_000;
/// Accounts are read back this far behind the newest one seen, for rows committed late.
const ACCOUNT_OVERLAP_S: i64 = 3_600;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error(transparent)]
    Database(#[from] SynapseDbError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("tap state {}: {message}", path.display())]
    State { path: PathBuf, message: String },
}

/// Times at or after `from` are open: identities published for them are remembered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Watermark {
    pub from: i64,
    pub published: BTreeMap<i64, BTreeSet<String>>,
}

impl Watermark {
    fn contains(&self, at: i64, key: &str) -> bool {
        self.published
            .get(&at)
            .is_some_and(|keys| keys.contains(key))
    }

    fn insert(&mut self, at: i64, key: String) {
        self.published.entry(at).or_default().insert(key);
    }

    fn advance(&mut self, from: i64) {
        if from > self.from {
            self.from = from;
            self.published = self.published.split_off(&from);
        }
    }
}

/// What the tap knows of a deactivated account without keeping its Matrix ID.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeactivatedAccount {
    pub domain: Option<String>,
    pub user_type: UserType,
    /// The deactivation's date as published (`SynapseDb::last_trace_ms`); `None` for an
    /// account already deactivated when the tap first ran (the backfill reports those).
    #[serde(default)]
    pub since_ms: Option<i64>,
}

/// The persisted cursor of one homeserver's tap.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TapState {
    pub visits: Watermark,
    pub accounts: Watermark,
    /// Deactivated accounts by user pseudonym; `None` until the first snapshot.
    pub deactivated: Option<BTreeMap<String, DeactivatedAccount>>,
    pub pending_visits: Vec<VisitRecord>,
    pub pending_accounts: Vec<AccountRecord>,
    /// The creation time (seconds, as Synapse wrote it) of each pending created account, by
    /// key: the watermark counts in Synapse's times, the record carries the hour only.
    #[serde(default)]
    pub pending_created_s: BTreeMap<String, i64>,
    /// The public room directory as last published; `None` until the first read.
    #[serde(default)]
    pub directory: Option<DirectoryState>,
    #[serde(default)]
    pub pending_directory: Vec<DirectoryRecord>,
}

/// The public room directory as the tap last published it: each listed room (by pseudonym)
/// with its name and topic line, and the UTC day (days since the epoch) they were all said.
/// Every listed room is said again on a new day, so that a reader knows which rooms a
/// server's directory holds from its newest day alone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectoryState {
    pub day: i64,
    pub listed: BTreeMap<i64, (Option<String>, Option<String>)>,
}

impl TapState {
    /// A fresh tap starts at the beginning of yesterday (UTC); older history is what
    /// `mxpulse backfill` is for.
    pub fn starting_at(now_ms: i64) -> Self {
        let yesterday = now_ms.div_euclid(DAY_MS) * DAY_MS - DAY_MS;
        Self {
            visits: Watermark {
                from: yesterday,
                published: BTreeMap::new(),
            },
            accounts: Watermark {
                from: yesterday / 1000,
                published: BTreeMap::new(),
            },
            ..Self::default()
        }
    }

    pub fn load(path: &Path, now_ms: i64) -> Result<Self, TapError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| TapError::State {
                path: path.to_owned(),
                message: format!("unreadable ({e}); move it away to start the tap afresh"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::starting_at(now_ms)),
            Err(e) => Err(TapError::State {
                path: path.to_owned(),
                message: e.to_string(),
            }),
        }
    }

    /// Writes the state atomically: a temporary file, fsync, rename.
    pub fn save(&self, path: &Path) -> Result<(), TapError> {
        let error = |e: std::io::Error| TapError::State {
            path: path.to_owned(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(error)?;
        }
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(self).map_err(|e| error(std::io::Error::other(e)))?;
        {
            use std::io::Write as _;
            let mut file = std::fs::File::create(&tmp).map_err(error)?;
            file.write_all(&bytes).map_err(error)?;
            file.sync_all().map_err(error)?;
        }
        std::fs::rename(&tmp, path).map_err(error)
    }
}

/// One homeserver's tap.
pub struct DbTap {
    pub anonymizer: Anonymizer,
    pub database_url: String,
    pub state_path: PathBuf,
    /// Publish the public room directory (`hooks.public_directory`).
    pub public_directory: bool,
}

/// What one poll published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollOutcome {
    pub visits: usize,
    pub accounts: usize,
    pub directory: usize,
}

impl DbTap {
    /// Publishes what is pending, reads what is new, publishes it, saves the cursor.
    pub async fn poll(
        &self,
        db: &SynapseDb,
        producer: &RecordProducer,
        now_ms: i64,
    ) -> Result<PollOutcome, TapError> {
        let mut state = TapState::load(&self.state_path, now_ms)?;
        self.flush_pending(&mut state, producer).await?;

        // Identities already waiting, so each row is checked in O(1).
        let mut pending: std::collections::HashSet<String> = state
            .pending_visits
            .iter()
            .map(|r| r.key().0)
            .chain(state.pending_accounts.iter().map(|r| r.key().0))
            .collect();

        // Visits.
        let rows = db.visits_since(state.visits.from).await?;
        let mut newest_day = state.visits.from;
        for row in &rows {
            let Some(record) = self.anonymizer.visit(row) else {
                continue;
            };
            newest_day = newest_day.max(row.timestamp_ms);
            let key = record.key().0;
            if !state.visits.contains(row.timestamp_ms, &key) && pending.insert(key) {
                state.pending_visits.push(record);
            }
        }

        // Accounts created.
        let users = db.users_created_since(state.accounts.from).await?;
        let mut newest_s = state.accounts.from;
        for user in &users {
            newest_s = newest_s.max(user.creation_ts_s);
            let record = self.anonymizer.account_created(user);
            let key = record.key().0;
            if !state.accounts.contains(user.creation_ts_s, &key) && pending.insert(key.clone()) {
                state.pending_created_s.insert(key, user.creation_ts_s);
                state.pending_accounts.push(record);
            }
        }

        // Deactivations and reactivations. Synapse keeps no date of either: a deactivation is
        // dated with the user's last trace in the database, a reactivation just after the
        // deactivation it ends. Neither date depends on when the tap looked, so a record seen
        // again (a state file restored from a backup, a backfill over the same days) has the
        // same identity, and the ingest drops it as a repeat.
        let mut deactivated_now: BTreeMap<String, DeactivatedAccount> = BTreeMap::new();
        for user in db.deactivated_users().await? {
            let pseudonym = self.anonymizer.pseudonymizer().user(&user.name).to_string();
            let known = state
                .deactivated
                .as_ref()
                .map(|before| before.get(&pseudonym));
            let since_ms = match known {
                // Deactivated before the tap's first run: the backfill reports it.
                None => None,
                Some(Some(before)) => before.since_ms,
                Some(None) => Some(db.last_trace_ms(&user.name, user.creation_ts_s).await?),
            };
            let account = DeactivatedAccount {
                domain: self.anonymizer.domain_of(&user.name),
                user_type: user.user_type(),
                since_ms,
            };
            if let (Some(None), Some(at)) = (known, since_ms) {
                state.pending_accounts.push(self.change(
                    &pseudonym,
                    &account,
                    AccountChange::Deactivated,
                    at,
                ));
            }
            deactivated_now.insert(pseudonym, account);
        }
        if let Some(before) = &state.deactivated {
            for (user, account) in before {
                if !deactivated_now.contains_key(user) {
                    let at = account.since_ms.map_or(now_ms, |since| since + 1);
                    state.pending_accounts.push(self.change(
                        user,
                        account,
                        AccountChange::Reactivated,
                        at,
                    ));
                }
            }
        }
        state.deactivated = Some(deactivated_now);

        if self.public_directory {
            // The directory is not worth the visits and accounts: read on the next poll.
            if let Err(error) = self.read_directory(&mut state, db, now_ms).await {
                tracing::warn!(server = self.anonymizer.server(), %error, "public room directory not read");
            }
        }

        // Synapse adds rows to today and yesterday only; older days are closed. A row dated
        // ahead of the database's own clock (a wrong clock, a bad row) moves nothing: the
        // rows still to come would be skipped.
        let db_now_ms = db.now_ms().await?;
        state
            .visits
            .advance(newest_day.min(db_now_ms.div_euclid(DAY_MS) * DAY_MS) - DAY_MS);
        state
            .accounts
            .advance(newest_s.min(db_now_ms.div_euclid(1000)) - ACCOUNT_OVERLAP_S);
        state.save(&self.state_path)?;
        self.flush_pending(&mut state, producer).await
    }

    /// Compares the public room directory with what was last published: a room that came
    /// in or whose name or topic changed is said, one that left is said to have left, and on
    /// a new UTC day every listed room is said again.
    async fn read_directory(
        &self,
        state: &mut TapState,
        db: &SynapseDb,
        now_ms: i64,
    ) -> Result<(), TapError> {
        let rooms = db.public_rooms().await?;
        let today = now_ms.div_euclid(DAY_MS);
        let said = state.directory.take().unwrap_or_default();
        let new_day = said.day != today;
        let mut listed = BTreeMap::new();
        for room in rooms {
            let pseudonym = self.anonymizer.pseudonymizer().room(&room.room_id);
            let entry = (
                room.name.as_deref().and_then(DirectoryRecord::one_line),
                room.topic.as_deref().and_then(DirectoryRecord::one_line),
            );
            if new_day || said.listed.get(&pseudonym.to_i64()) != Some(&entry) {
                state
                    .pending_directory
                    .push(self.anonymizer.directory_entry(
                        pseudonym,
                        true,
                        entry.0.clone(),
                        entry.1.clone(),
                        now_ms,
                    ));
            }
            listed.insert(pseudonym.to_i64(), entry);
        }
        for room in said.listed.keys().filter(|room| !listed.contains_key(room)) {
            state
                .pending_directory
                .push(self.anonymizer.directory_entry(
                    RoomPseudonym::from_i64(*room),
                    false,
                    None,
                    None,
                    now_ms,
                ));
        }
        state.directory = Some(DirectoryState { day: today, listed });
        Ok(())
    }

    fn change(
        &self,
        user: &str,
        account: &DeactivatedAccount,
        change: AccountChange,
        now_ms: i64,
    ) -> AccountRecord {
        AccountRecord {
            v: SchemaVersion::CURRENT,
            key_id: self.anonymizer.pseudonymizer().key_id(),
            ts: crate::anonymizer::coarsened(now_ms, crate::anonymizer::ACCOUNT_TIME_MS),
            server: self.anonymizer.server().to_owned(),
            user: user.parse().unwrap_or(UserPseudonym(0)),
            domain: account.domain.clone(),
            change,
            user_type: account.user_type,
        }
    }

    /// Publishes the pending records and records them as published.
    async fn flush_pending(
        &self,
        state: &mut TapState,
        producer: &RecordProducer,
    ) -> Result<PollOutcome, TapError> {
        let outcome = PollOutcome {
            visits: state.pending_visits.len(),
            accounts: state.pending_accounts.len(),
            directory: state.pending_directory.len(),
        };
        if outcome == PollOutcome::default() {
            return Ok(outcome);
        }
        producer.publish(&state.pending_visits).await?;
        producer.publish(&state.pending_accounts).await?;
        producer.publish(&state.pending_directory).await?;
        state.pending_directory.clear();
        for record in std::mem::take(&mut state.pending_visits) {
            let day_ms = i64::from(record.partition_day()) * DAY_MS;
            if day_ms >= state.visits.from {
                state.visits.insert(day_ms, record.key().0);
            }
        }
        let created_s = std::mem::take(&mut state.pending_created_s);
        for record in std::mem::take(&mut state.pending_accounts) {
            let key = record.key().0;
            let at_s = created_s
                .get(&key)
                .copied()
                .unwrap_or_else(|| record.ts.0.div_euclid(1000));
            if record.change == AccountChange::Created && at_s >= state.accounts.from {
                state.accounts.insert(at_s, key);
            }
        }
        state.save(&self.state_path)?;
        Ok(outcome)
    }

    /// Polls every `interval` until `stop` turns true. An unreachable database is retried
    /// with a doubling backoff (up to 8 intervals, at most 60 s) and reported in `/health`;
    /// it never stops the hooks.
    pub async fn run(
        self,
        producer: RecordProducer,
        metrics: std::sync::Arc<HooksMetrics>,
        interval: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let server = self.anonymizer.server().to_owned();
        let mut db: Option<SynapseDb> = None;
        let mut failures: u32 = 0;
        loop {
            let result = async {
                if db.is_none() {
                    db = Some(SynapseDb::connect(&self.database_url).await?);
                }
                match &db {
                    Some(db) => self.poll(db, &producer, now_ms()).await,
                    None => Ok(PollOutcome::default()),
                }
            }
            .await;
            let wait = match result {
                Ok(outcome) => {
                    failures = 0;
                    metrics.tap_ok(&server);
                    if outcome != PollOutcome::default() {
                        tracing::info!(
                            server,
                            visits = outcome.visits,
                            accounts = outcome.accounts,
                            directory = outcome.directory,
                            "database tap published"
                        );
                    }
                    interval
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    if matches!(error, TapError::Database(SynapseDbError::Connect { .. })) {
                        db = None;
                    }
                    metrics.tap_failed(&server, &error.to_string());
                    let backoff = interval.saturating_mul(1 << failures.min(6)).min(
                        interval
                            .saturating_mul(8)
                            .min(Duration::from_secs(60))
                            .max(interval),
                    );
                    tracing::warn!(server, %error, retry_in = ?backoff, "database tap failed");
                    backoff
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_forgets_closed_times() {
        let mut w = Watermark::default();
        w.insert(10, "a".into());
        w.insert(20, "b".into());
        w.advance(15);
        assert!(!w.contains(10, "a"));
        assert!(w.contains(20, "b"));
        w.advance(5);
        assert_eq!(w.from, 15, "a watermark never goes back");
    }

    #[test]
    fn state_survives_a_round_trip_and_an_unreadable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.tap.json");
        let mut state = TapState::starting_at(3 * DAY_MS + 5);
        assert_eq!(state.visits.from, 2 * DAY_MS);
        state.visits.insert(2 * DAY_MS, "k".into());
        state.save(&path).unwrap();
        assert_eq!(TapState::load(&path, 0).unwrap(), state);
        std::fs::write(&path, b"{half").unwrap();
        let err = TapState::load(&path, 0).unwrap_err().to_string();
        assert!(err.contains("unreadable"), "{err}");
    }
}
