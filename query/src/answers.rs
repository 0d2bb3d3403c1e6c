//! `AnswerCache`: answers already given, for the lake at one version.
//!
//! The figures (and the pages built from them) are a function of the lake's tables at their
//! versions, the principal's scope and the question: the publication settings and the limits are
//! fixed for the service's life. A hundred viewers on the same dashboard ask the same questions;
//! counting and rendering each time made the answer wait behind the others (p99 ~270 ms at 100
//! clients, BENCHMARKS.md). So the answers are kept until the lake moves to another version:
//! then every one is dropped at once, and the next request counts again. Nothing is kept from
//! one version to the next, so a cached answer is exactly the one a recount would give.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use crate::lake::LakeVersion;

/// Answers by question, all for one `LakeVersion`; at most `capacity` of them.
#[derive(Debug)]
pub struct AnswerCache<K, V> {
    kept: Mutex<Kept<K, V>>,
    capacity: usize,
}

#[derive(Debug)]
struct Kept<K, V> {
    version: Option<LakeVersion>,
    answers: HashMap<K, V>,
}

impl<K: Eq + Hash, V: Clone> AnswerCache<K, V> {
    /// Keeps at most `capacity` answers (0: none, every request counts again).
    pub fn new(capacity: usize) -> Self {
        Self {
            kept: Mutex::new(Kept {
                version: None,
                answers: HashMap::new(),
            }),
            capacity,
        }
    }

    /// The answer to `key` given for the lake at `version`, if any.
    pub fn get(&self, version: &LakeVersion, key: &K) -> Option<V> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.version.as_ref() != Some(version) {
            return None;
        }
        kept.answers.get(key).cloned()
    }

    /// Keeps `answer` to `key` for the lake at `version`. An answer for another version than the
    /// kept ones replaces them all if it is newer (an answer computed on an older snapshot,
    /// finished late, is dropped); a full cache starts over.
    pub fn put(&self, version: &LakeVersion, key: K, answer: V) {
        if self.capacity == 0 {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        match &kept.version {
            Some(current) if current == version => {}
            Some(current) if current.is_newer_than(version) => return,
            _ => {
                kept.version = Some(version.clone());
                kept.answers.clear();
            }
        }
        if kept.answers.len() >= self.capacity {
            kept.answers.clear();
        }
        kept.answers.insert(key, answer);
    }

    /// How many answers are kept.
    pub fn len(&self) -> usize {
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .answers
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(v: &[Option<u64>]) -> LakeVersion {
        LakeVersion::of(v.to_vec())
    }

    #[test]
    fn an_answer_is_given_back_for_its_version_only() {
        let cache = AnswerCache::new(8);
        let v1 = version(&[Some(1), Some(4), None]);
        let v2 = version(&[Some(2), Some(4), None]);
        cache.put(&v1, "overview", 10);
        assert_eq!(cache.get(&v1, &"overview"), Some(10));
        assert_eq!(cache.get(&v1, &"forums"), None);
        assert_eq!(
            cache.get(&v2, &"overview"),
            None,
            "another version recounts"
        );
    }

    #[test]
    fn a_newer_version_drops_every_older_answer_and_a_late_older_one_is_not_kept() {
        let cache = AnswerCache::new(8);
        let v1 = version(&[Some(1), Some(4)]);
        let v2 = version(&[Some(2), Some(4)]);
        cache.put(&v1, "a", 1);
        cache.put(&v1, "b", 2);
        cache.put(&v2, "a", 3);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&v2, &"a"), Some(3));
        // Counted on the older snapshot, finished after the newer answer.
        cache.put(&v1, "b", 2);
        assert_eq!(cache.get(&v1, &"b"), None);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = AnswerCache::new(3);
        let v = version(&[Some(1)]);
        for i in 0..10 {
            cache.put(&v, i, i);
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.get(&v, &9), Some(9));
        let none = AnswerCache::new(0);
        none.put(&v, 1, 1);
        assert_eq!(none.get(&v, &1), None);
    }
}
