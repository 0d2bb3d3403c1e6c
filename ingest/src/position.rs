//! Where a partition is read from, checked against what the lake holds, so that no message is
//! skipped silently: not by a retention that deleted messages before they were read (a gap),
//! not by a topic re-created or a new cluster under the same consumer group (offsets that
//! restart below the lake's, or a different message at the lake's last offset).
//!
//! With each commit the lake holds, per partition, the last offset and a fingerprint of the
//! message at it (both Delta application transactions). After an assignment the partition is
//! read again from that offset: the message found there must be the same one (else the topic
//! is not the one the lake was filled from), and the next must follow it; then offsets must
//! follow one another (our topics are neither compacted nor transactional: offsets are
//! contiguous). Any other offset stops the partition with a `PositionProblem` that says what
//! is missing and how to go on (`mxpulse lake reset-offsets`, with a reason).

use sha2::{Digest, Sha256};

use crate::offsets::Offset;

/// A message's fingerprint: the first 8 bytes of SHA-256 over its key and payload, as the
/// `i64` a Delta application transaction's version holds. Never 0 (0 means unknown).
pub fn fingerprint(key: Option<&[u8]>, payload: &[u8]) -> i64 {
    let mut digest = Sha256::new();
    digest.update(key.map_or(0u64, |k| k.len() as u64 + 1).to_be_bytes());
    digest.update(key.unwrap_or_default());
    digest.update(payload);
    let bytes = digest.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    match i64::from_be_bytes(first) {
        0 => 1,
        value => value,
    }
}

/// The Delta application-transaction id holding the fingerprint of the message at a
/// partition's last committed offset.
pub fn fingerprint_app_id(offsets_app_id: &str) -> String {
    format!("{offsets_app_id}-fingerprint")
}

/// What the lake holds for a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    pub offset: Offset,
    /// `None`: unknown (a lake written before fingerprints, or after a reset).
    pub fingerprint: Option<i64>,
}

/// Why a partition stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PositionProblem {
    #[error(
        "offsets {from} to {to} are no longer in Kafka (retention deleted them before they \
         were read, or the topic was re-created): the lake holds up to {held}"
    )]
    Gap {
        from: Offset,
        to: Offset,
        held: String,
    },
    #[error(
        "offset {offset} comes after {last}: offsets went backwards (the topic was re-created, \
         or this is another cluster under the same consumer group); the lake holds up to {held}"
    )]
    Rewound {
        offset: Offset,
        last: Offset,
        held: String,
    },
    #[error(
        "the message at offset {offset} is not the one the lake holds for it (the topic was \
         re-created, or this is another cluster under the same consumer group)"
    )]
    Mismatch { offset: Offset },
}

/// Where a partition's reading stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Sent back to the lake's last offset (or the beginning): the next message is checked.
    Verifying,
    /// Read from here on: the next offset must be `last + 1`.
    Reading {
        last: Offset,
    },
    Stopped,
}

/// What to do with a message, given the partition's position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Process it (buffer it, or skip it if the lake holds it already).
    Take,
    /// Read the partition from here first (`None`: the beginning).
    SeekTo(Option<Offset>),
    Stop(PositionProblem),
}

fn held(committed: Option<Committed>) -> String {
    committed.map_or("nothing".to_owned(), |c| format!("offset {}", c.offset))
}

/// The step for a message at `offset` with `print`, the partition at `position` (`None`: its
/// first message since an assignment) and the lake holding `committed`; and the new position.
pub fn step(
    position: Option<Position>,
    committed: Option<Committed>,
    offset: Offset,
    print: i64,
) -> (Step, Position) {
    match position {
        Some(Position::Stopped) => (
            Step::Stop(PositionProblem::Rewound {
                offset,
                last: offset,
                held: held(committed),
            }),
            Position::Stopped,
        ),
        None => {
            let start = committed.map(|c| c.offset);
            if offset == start.unwrap_or(Offset(0)) {
                step(Some(Position::Verifying), committed, offset, print)
            } else {
                (Step::SeekTo(start), Position::Verifying)
            }
        }
        Some(Position::Verifying) => match committed {
            None if offset == Offset(0) => (Step::Take, Position::Reading { last: offset }),
            None => stop(PositionProblem::Gap {
                from: Offset(0),
                to: Offset(offset.0 - 1),
                held: held(committed),
            }),
            Some(c) if offset == c.offset => match c.fingerprint {
                Some(known) if known != print => stop(PositionProblem::Mismatch { offset }),
                _ => (Step::Take, Position::Reading { last: offset }),
            },
            // The last committed message is gone (retention), the next one is there.
            Some(c) if offset == c.offset.next() => {
                (Step::Take, Position::Reading { last: offset })
            }
            Some(c) if offset > c.offset => stop(PositionProblem::Gap {
                from: c.offset.next(),
                to: Offset(offset.0 - 1),
                held: held(committed),
            }),
            Some(c) => stop(PositionProblem::Rewound {
                offset,
                last: c.offset,
                held: held(committed),
            }),
        },
        Some(Position::Reading { last }) if offset == last.next() => {
            (Step::Take, Position::Reading { last: offset })
        }
        Some(Position::Reading { last }) if offset > last => stop(PositionProblem::Gap {
            from: last.next(),
            to: Offset(offset.0 - 1),
            held: held(committed),
        }),
        Some(Position::Reading { last }) => stop(PositionProblem::Rewound {
            offset,
            last,
            held: held(committed),
        }),
    }
}

fn stop(problem: PositionProblem) -> (Step, Position) {
    (Step::Stop(problem), Position::Stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(offset: i64, fingerprint: Option<i64>) -> Option<Committed> {
        Some(Committed {
            offset: Offset(offset),
            fingerprint,
        })
    }

    /// Feeds offsets (with fingerprints) from an assignment on; the steps taken.
    fn check(lake: Option<Committed>, messages: &[(i64, i64)], expected: &[&str]) {
        let mut position = None;
        let mut steps = Vec::new();
        for (offset, print) in messages {
            let (step, next) = step(position, lake, Offset(*offset), *print);
            position = Some(next);
            steps.push(match step {
                Step::Take => "take".to_owned(),
                Step::SeekTo(to) => format!("seek {to:?}"),
                Step::Stop(problem) => format!("stop: {problem}"),
            });
        }
        let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
        assert_eq!(steps, expected);
    }

    #[test]
    fn read_from_the_lakes_offset_the_same_message_then_contiguous() {
        check(
            committed(9, Some(77)),
            &[(10, 1), (9, 77), (10, 1), (11, 1)],
            &["seek Some(Offset(9))", "take", "take", "take"],
        );
        // An empty lake reads from the beginning.
        check(None, &[(0, 1), (1, 1)], &["take", "take"]);
        check(None, &[(5, 1), (0, 1)], &["seek None", "take"]);
        // The last committed message expired, the next is there.
        check(committed(9, Some(77)), &[(9, 77)], &["take"]);
        check(
            committed(9, Some(77)),
            &[(3, 0), (10, 5)],
            &["seek Some(Offset(9))", "take"],
        );
        // Unknown fingerprint (an older lake, or after a reset): accepted.
        check(committed(9, None), &[(9, 5), (10, 6)], &["take", "take"]);
    }

    #[test]
    fn gaps_rewinds_and_other_topics_stop_the_partition() {
        check(
            committed(9, Some(77)),
            &[(9, 78)],
            &[
                "stop: the message at offset 9 is not the one the lake holds for it (the topic was re-created, or this is another cluster under the same consumer group)",
            ],
        );
        check(
            committed(9, Some(77)),
            &[(50, 1), (40, 1)],
            &[
                "seek Some(Offset(9))",
                "stop: offsets 10 to 39 are no longer in Kafka (retention deleted them before they were read, or the topic was re-created): the lake holds up to offset 9",
            ],
        );
        check(
            committed(9, Some(77)),
            &[(50, 1), (0, 1)],
            &[
                "seek Some(Offset(9))",
                "stop: offset 0 comes after 9: offsets went backwards (the topic was re-created, or this is another cluster under the same consumer group); the lake holds up to offset 9",
            ],
        );
        check(
            None,
            &[(5, 1), (5, 1)],
            &[
                "seek None",
                "stop: offsets 0 to 4 are no longer in Kafka (retention deleted them before they were read, or the topic was re-created): the lake holds up to nothing",
            ],
        );
        // Mid-stream: a jump forward, or back.
        check(
            None,
            &[(0, 1), (1, 1), (7, 1)],
            &[
                "take",
                "take",
                "stop: offsets 2 to 6 are no longer in Kafka (retention deleted them before they were read, or the topic was re-created): the lake holds up to nothing",
            ],
        );
        let (step, _) = step(
            Some(Position::Reading { last: Offset(5) }),
            None,
            Offset(2),
            1,
        );
        assert!(matches!(step, Step::Stop(PositionProblem::Rewound { .. })));
        assert_ne!(fingerprint(Some(b"k"), b"v"), fingerprint(None, b"v"));
        assert_ne!(fingerprint(Some(b"k"), b"v"), fingerprint(Some(b"k"), b"w"));
    }
}
