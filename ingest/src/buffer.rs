//! Records decoded since the last commit of one table, with the highest offset consumed per
//! Kafka partition (dead letters and repeats included: their offsets must be committed too,
//! or they would be read again after a restart).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mxpulse_schemas::Record;

use crate::identity::KeySet;
use crate::offsets::Offset;

/// When a table's buffer is written: whichever limit is reached first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlushPolicy {
    pub max_rows: usize,
    pub max_bytes: usize,
    /// Age of the oldest buffered message; bounds how stale a figure can be.
    pub max_latency: Duration,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        Self {
            max_rows: 100_000,
            max_bytes: 64 << 20,
            max_latency: Duration::from_secs(5),
        }
    }
}

/// One decoded record and the partition it came from.
#[derive(Debug)]
pub struct Buffered<R> {
    pub partition: i32,
    pub record: R,
}

#[derive(Debug)]
pub struct TableBuffer<R> {
    records: Vec<Buffered<R>>,
    keys: KeySet,
    bytes: usize,
    /// Dead letters since the last commit: they count toward the limits like records.
    dead_letters: usize,
    opened: Option<Instant>,
    /// Highest offset consumed per partition since the last commit, with the fingerprint of
    /// the message at it.
    consumed: Consumed,
}

/// Per partition, the highest offset consumed and the fingerprint of the message at it.
pub type Consumed = BTreeMap<i32, (Offset, i64)>;

impl<R> Default for TableBuffer<R> {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            keys: KeySet::default(),
            bytes: 0,
            dead_letters: 0,
            opened: None,
            consumed: BTreeMap::new(),
        }
    }
}

/// What became of a pushed record.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Added,
    /// Its identity is already in this buffer.
    Repeat,
}

impl<R: Record> TableBuffer<R> {
    pub fn push(
        &mut self,
        partition: i32,
        offset: Offset,
        print: i64,
        record: R,
        size: usize,
    ) -> Pushed {
        self.consumed(partition, offset, print);
        if !self.keys.insert(record.key_print()) {
            return Pushed::Repeat;
        }
        self.bytes += size;
        self.records.push(Buffered { partition, record });
        Pushed::Added
    }

    /// A dead letter of `size` bytes: its offset is consumed, and it counts toward the flush
    /// limits (a flood of them is committed, and their letters settled, like records).
    pub fn dead_letter(&mut self, partition: i32, offset: Offset, print: i64, size: usize) {
        self.consumed(partition, offset, print);
        self.dead_letters += 1;
        self.bytes += size;
    }

    /// An offset consumed (`print`: the message's fingerprint).
    fn consumed(&mut self, partition: i32, offset: Offset, print: i64) {
        self.opened.get_or_insert_with(Instant::now);
        let entry = self.consumed.entry(partition).or_insert((offset, print));
        if offset >= entry.0 {
            *entry = (offset, print);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.consumed.is_empty()
    }

    pub fn is_due(&self, policy: &FlushPolicy, now: Instant) -> bool {
        self.is_full(policy)
            || self
                .opened
                .is_some_and(|opened| now.duration_since(opened) >= policy.max_latency)
    }

    /// At the row or byte limit (the age aside).
    pub fn is_full(&self, policy: &FlushPolicy) -> bool {
        self.holds_batches(policy, 1)
    }

    /// At `batches` times the row or byte limit.
    pub fn holds_batches(&self, policy: &FlushPolicy, batches: usize) -> bool {
        self.records.len() + self.dead_letters >= policy.max_rows.saturating_mul(batches)
            || self.bytes >= policy.max_bytes.saturating_mul(batches)
    }

    /// Drops what came from `partitions` (revoked, or fenced by another writer): it will be
    /// read again from the offsets in the lake.
    pub fn forget(&mut self, partitions: &[i32]) {
        self.records.retain(|b| !partitions.contains(&b.partition));
        self.keys = self.records.iter().map(|b| b.record.key_print()).collect();
        for partition in partitions {
            self.consumed.remove(partition);
        }
        if self.consumed.is_empty() {
            self.clear();
        }
    }

    /// Empties the buffer, handing over its records and offsets (with their fingerprints).
    pub fn take(&mut self) -> (Vec<Buffered<R>>, Consumed) {
        let taken = (
            std::mem::take(&mut self.records),
            std::mem::take(&mut self.consumed),
        );
        self.clear();
        taken
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    fn clear(&mut self) {
        self.records.clear();
        self.keys.clear();
        self.consumed.clear();
        self.bytes = 0;
        self.dead_letters = 0;
        self.opened = None;
    }
}

#[cfg(test)]
mod tests {
    use mxpulse_schemas::vocabulary::{AccountChange, UserType};
    use mxpulse_schemas::{AccountRecord, KeyId, SchemaVersion, UnixMillis, UserPseudonym};

    use super::*;

    fn account(user: u64) -> AccountRecord {
        AccountRecord {
            v: SchemaVersion::CURRENT,
            key_id: KeyId([0; 4]),
            ts: UnixMillis(1_700_000_000_000),
            server: "s".into(),
            user: UserPseudonym(user),
            domain: None,
            change: AccountChange::Created,
            user_type: UserType::Regular,
        }
    }

    #[test]
    fn repeats_are_dropped_but_their_offsets_count() {
        let mut buffer = TableBuffer::default();
        assert_eq!(buffer.push(0, Offset(5), 1, account(1), 10), Pushed::Added);
        assert_eq!(buffer.push(1, Offset(9), 2, account(1), 10), Pushed::Repeat);
        buffer.dead_letter(0, Offset(7), 3, 10);
        assert_eq!(buffer.len(), 1);
        let (_, offsets) = buffer.take();
        assert_eq!(
            offsets,
            BTreeMap::from([(0, (Offset(7), 3)), (1, (Offset(9), 2))]),
            "the highest offset of each partition, with its message's fingerprint"
        );
    }

    #[test]
    fn due_on_rows_bytes_or_age() {
        let policy = FlushPolicy {
            max_rows: 2,
            max_bytes: 100,
            max_latency: Duration::from_secs(60),
        };
        let mut buffer = TableBuffer::default();
        let now = Instant::now();
        assert!(!buffer.is_due(&policy, now));
        buffer.push(0, Offset(0), 1, account(1), 10);
        assert!(!buffer.is_due(&policy, now));
        assert!(buffer.is_due(&policy, now + Duration::from_secs(61)));
        assert!(!buffer.is_full(&policy), "old, not full");
        buffer.push(0, Offset(1), 1, account(2), 10);
        assert!(buffer.is_due(&policy, now));
        assert!(buffer.is_full(&policy));
        assert!(!buffer.holds_batches(&policy, 2), "one batch, not two");
        let mut heavy = TableBuffer::default();
        heavy.push(0, Offset(0), 1, account(3), 100);
        assert!(heavy.is_due(&policy, now));
    }

    #[test]
    fn dead_letters_count_toward_the_limits() {
        let policy = FlushPolicy {
            max_rows: 3,
            max_bytes: 1 << 20,
            max_latency: Duration::from_secs(60),
        };
        let now = Instant::now();
        let mut flood = TableBuffer::<AccountRecord>::default();
        flood.dead_letter(0, Offset(0), 1, 10);
        flood.dead_letter(0, Offset(1), 1, 10);
        assert!(!flood.is_due(&policy, now));
        flood.dead_letter(0, Offset(2), 1, 10);
        assert!(
            flood.is_due(&policy, now),
            "three dead letters reach max_rows"
        );
        let mut big = TableBuffer::<AccountRecord>::default();
        big.dead_letter(0, Offset(0), 1, 1 << 20);
        assert!(
            big.is_due(&policy, now),
            "a 1 MB dead letter reaches max_bytes"
        );
        assert!(!big.is_empty());
    }

    #[test]
    fn forgetting_a_partition_keeps_the_others() {
        let mut buffer = TableBuffer::default();
        buffer.push(0, Offset(1), 1, account(1), 1);
        buffer.push(1, Offset(1), 1, account(2), 1);
        buffer.forget(&[0]);
        let (records, offsets) = buffer.take();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].partition, 1);
        assert_eq!(offsets.keys().copied().collect::<Vec<_>>(), [1]);
        assert!(buffer.is_empty());
        // The forgotten record's identity is free again.
        assert_eq!(buffer.push(0, Offset(1), 1, account(1), 1), Pushed::Added);
    }
}
