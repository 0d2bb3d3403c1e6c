//! Kafka positions and where the lake records them: each Delta commit carries, per consumed
//! partition, an application transaction `app_id = <group>-<topic>-<partition>` whose
//! `version` is the last offset the commit covers (the kafka-delta-ingest method).

use std::fmt;

/// An offset in one Kafka partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub i64);

impl Offset {
    /// The offset right after this one: where to resume once this one is in the lake.
    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The Delta application-transaction id of one partition of one topic for one consumer group.
pub fn app_id(group: &str, topic: &str, partition: i32) -> String {
    format!("{group}-{topic}-{partition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids_keep_group_topic_and_partition_apart() {
        assert_eq!(
            app_id("mxpulse-ingest", "mxpulse.events.v1", 3),
            "mxpulse-ingest-mxpulse.events.v1-3"
        );
        assert_ne!(app_id("a", "t", 1), app_id("a", "t", 11));
        assert_eq!(Offset(41).next(), Offset(42));
    }
}
