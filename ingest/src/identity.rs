//! Which identities a table already holds, per day partition: how repeats from upstream (a
//! transaction Synapse delivered twice, an event both the appservice and the database tap
//! reported) are dropped at commit, so the lake holds each identity once.
//!
//! Why per day: a record's identity fixes its day (the event's timestamp, the visit's day), so
//! a repeat always lands in the partition of the original. The index is only what this
//! instance knows: its own commits since it loaded a day. Copies of an identity may arrive on
//! several Kafka partitions (another producer's partitioner, partitions added), owned by other
//! instances; so the sink (`sink.rs`) drops the index whenever the table moved by a commit not
//! its own, and names the days it writes in its commit, so that two writers committing the
//! same days at once cannot both pass Delta's conflict check.

use std::collections::HashMap;

use mxpulse_schemas::KeyPrint;

/// A set of identities (as [`KeyPrint`]s), hashed with foldhash (seeded per process): SipHash,
/// the standard library's default, took a tenth of the ingest's CPU.
pub type KeySet = foldhash::HashSet<KeyPrint>;

/// Identities per day (days since 1970-01-01), the most recently used days kept.
#[derive(Debug)]
pub struct IdentityIndex {
    days: HashMap<i32, Day>,
    max_days: usize,
    clock: u64,
}

#[derive(Debug)]
struct Day {
    keys: KeySet,
    last_used: u64,
}

impl IdentityIndex {
    pub fn new(max_days: usize) -> Self {
        Self {
            days: HashMap::new(),
            max_days: max_days.max(1),
            clock: 0,
        }
    }

    pub fn is_loaded(&self, day: i32) -> bool {
        self.days.contains_key(&day)
    }

    /// Installs what the lake holds for `day`, evicting the least recently used day if full.
    pub fn load(&mut self, day: i32, keys: KeySet) {
        if !self.days.contains_key(&day)
            && self.days.len() >= self.max_days
            && let Some(oldest) = self
                .days
                .iter()
                .min_by_key(|(_, d)| d.last_used)
                .map(|(day, _)| *day)
        {
            self.days.remove(&oldest);
        }
        self.clock += 1;
        self.days.insert(
            day,
            Day {
                keys,
                last_used: self.clock,
            },
        );
    }

    /// Whether the lake holds `key` in `day`; the day must be loaded.
    pub fn contains(&mut self, day: i32, key: &KeyPrint) -> bool {
        self.clock += 1;
        match self.days.get_mut(&day) {
            Some(d) => {
                d.last_used = self.clock;
                d.keys.contains(key)
            }
            None => false,
        }
    }

    /// Notes keys that a commit just stored (only for days already loaded; an unloaded day
    /// will read them from the lake).
    pub fn committed(&mut self, day: i32, key: KeyPrint) {
        if let Some(d) = self.days.get_mut(&day) {
            d.keys.insert(key);
        }
    }

    /// Forgets everything: after a rebalance, partitions this instance now owns may have
    /// identities another instance wrote.
    pub fn clear(&mut self) {
        self.days.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> KeyPrint {
        KeyPrint::of(&mxpulse_schemas::RecordKey(s.into()))
    }

    #[test]
    fn answers_for_loaded_days_and_learns_commits() {
        let mut index = IdentityIndex::new(2);
        index.load(1, KeySet::from_iter([key("a")]));
        assert!(index.contains(1, &key("a")));
        assert!(!index.contains(1, &key("b")));
        index.committed(1, key("b"));
        assert!(index.contains(1, &key("b")));
        // A commit into an unloaded day is not recorded: that day will be read from the lake.
        index.committed(2, key("c"));
        assert!(!index.is_loaded(2));
    }

    #[test]
    fn evicts_the_least_recently_used_day() {
        let mut index = IdentityIndex::new(2);
        index.load(1, KeySet::default());
        index.load(2, KeySet::default());
        index.contains(1, &key("x"));
        index.load(3, KeySet::default());
        assert!(index.is_loaded(1) && index.is_loaded(3) && !index.is_loaded(2));
        index.clear();
        assert!(!index.is_loaded(1));
    }
}
