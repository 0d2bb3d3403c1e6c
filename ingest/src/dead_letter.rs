//! Messages that are not records (undecodable, unknown version, invalid) go to
//! `mxpulse.deadletter.v1` with a copy of the original bytes and headers saying why and where
//! they came from (topic, partition, offset: the original stays findable in its topic).
//!
//! A dead letter is never lost: it stays pending until the broker acknowledged it, failed
//! deliveries are sent again, and the commit of a table waits while letters of its topic are
//! pending (their offsets are in it). If they cannot be delivered within the deadline, the
//! ingest stops without committing, rather than committing past them. A crash between the
//! acknowledgement and the commit sends a letter again: dead letters are at least once; the
//! lake stays exactly once.
//!
//! One bad message never stops the ingest: the copy is cut to fit under the producer's message
//! limit (saying so in a header), the reason is bounded, and a refusal by the producer (queue
//! full, too large) keeps the letter pending for the next attempt.

use std::time::{Duration, Instant};

use futures::future::join_all;
use mxpulse_schemas::topics;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::error::IngestError;

pub const REASON_HEADER: &str = "mxpulse-deadletter-reason";
pub const TOPIC_HEADER: &str = "mxpulse-source-topic";
pub const PARTITION_HEADER: &str = "mxpulse-source-partition";
pub const OFFSET_HEADER: &str = "mxpulse-source-offset";
/// Present when the copy of the payload (or key) was cut: the original sizes, in bytes.
pub const TRUNCATED_HEADER: &str = "mxpulse-deadletter-truncated";

/// The longest reason a header carries.
pub const MAX_REASON_BYTES: usize = 1024;
/// The longest payload copy: with its headers and key, a letter stays under librdkafka's
/// default `message.max.bytes` (1,000,000) and Kafka's default `max.message.bytes` (1 MiB).
pub const MAX_PAYLOAD_BYTES: usize = 900 * 1024;
/// The longest key copy (keys are identities: a few dozen bytes when sound).
pub const MAX_KEY_BYTES: usize = 4 * 1024;

/// A message that is not a record, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub reason: String,
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn bounded(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Why pending letters hold their tables' commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsettled {
    /// Some letters are not acknowledged yet; the commits of their topics wait.
    Waiting { pending: usize },
    /// They have not been for longer than the deadline: stop without committing.
    Deadline { pending: usize, since: Duration },
}

struct Pending {
    letter: DeadLetter,
    /// In flight, or `None`: to be sent (again).
    delivery: Option<DeliveryFuture>,
}

/// The dead letters not yet acknowledged by the broker.
pub struct DeadLetterQueue {
    producer: FutureProducer,
    pending: Vec<Pending>,
    /// Since when letters have failed to be delivered (reset when none is pending).
    failing_since: Option<Instant>,
    deadline: Duration,
}

impl DeadLetterQueue {
    pub fn new(producer: FutureProducer, deadline: Duration) -> Self {
        Self {
            producer,
            pending: Vec::new(),
            failing_since: None,
            deadline,
        }
    }

    /// Queues `letter` and sends it now if the producer takes it; never fails: a letter the
    /// producer refuses stays pending and is sent again at the next `settle`.
    pub fn send(&mut self, letter: DeadLetter) {
        let delivery = self.dispatch(&letter);
        self.pending.push(Pending { letter, delivery });
    }

    /// Hands one letter to the producer.
    fn dispatch(&self, letter: &DeadLetter) -> Option<DeliveryFuture> {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let payload = &letter.payload[..letter.payload.len().min(MAX_PAYLOAD_BYTES)];
        let key = letter
            .key
            .as_deref()
            .map(|k| &k[..k.len().min(MAX_KEY_BYTES)]);
        let cut = payload.len() < letter.payload.len()
            || key.map(<[u8]>::len) < letter.key.as_deref().map(<[u8]>::len);
        let truncated = format!(
            "payload {} bytes, key {} bytes",
            letter.payload.len(),
            letter.key.as_deref().map_or(0, <[u8]>::len)
        );
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: REASON_HEADER,
                value: Some(bounded(&letter.reason, MAX_REASON_BYTES).as_bytes()),
            })
            .insert(Header {
                key: TOPIC_HEADER,
                value: Some(letter.topic.as_bytes()),
            })
            .insert(Header {
                key: PARTITION_HEADER,
                value: Some(partition.as_bytes()),
            })
            .insert(Header {
                key: OFFSET_HEADER,
                value: Some(offset.as_bytes()),
            });
        if cut {
            headers = headers.insert(Header {
                key: TRUNCATED_HEADER,
                value: Some(truncated.as_bytes()),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topics::DEADLETTER)
            .payload(payload)
            .headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        match self.producer.send_result(record) {
            Ok(delivery) => Some(delivery),
            Err((error, _)) => {
                tracing::warn!(topic = %letter.topic, partition = letter.partition, offset = letter.offset, %error, "the producer refused a dead letter; it stays pending");
                None
            }
        }
    }

    /// Whether letters of `topic` are pending (the commit of its table must wait for them).
    pub fn holds(&self, topic: &str) -> bool {
        self.pending.iter().any(|p| p.letter.topic == topic)
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Sends again what is not in flight, waits for every delivery, and keeps what failed.
    /// Returns how many letters were acknowledged, or why some are still pending.
    pub async fn settle(&mut self) -> Result<usize, (usize, Unsettled)> {
        let mut in_flight = Vec::new();
        let mut waiting = Vec::new();
        for mut pending in std::mem::take(&mut self.pending) {
            if pending.delivery.is_none() {
                pending.delivery = self.dispatch(&pending.letter);
            }
            match pending.delivery.take() {
                Some(delivery) => in_flight.push((pending.letter, delivery)),
                None => waiting.push(pending),
            }
        }
        let (letters, deliveries): (Vec<_>, Vec<_>) = in_flight.into_iter().unzip();
        let mut acknowledged = 0;
        for (letter, outcome) in letters.into_iter().zip(join_all(deliveries).await) {
            let error = match outcome {
                Ok(Ok(_)) => {
                    acknowledged += 1;
                    continue;
                }
                Ok(Err((e, _))) => e.to_string(),
                Err(_) => "producer dropped the message".to_owned(),
            };
            tracing::warn!(topic = %letter.topic, partition = letter.partition, offset = letter.offset, %error, "dead letter not delivered; it stays pending and will be sent again");
            waiting.push(Pending {
                letter,
                delivery: None,
            });
        }
        self.pending = waiting;
        if self.pending.is_empty() {
            self.failing_since = None;
            return Ok(acknowledged);
        }
        let since = self
            .failing_since
            .get_or_insert_with(Instant::now)
            .elapsed();
        let pending = self.pending.len();
        if since > self.deadline {
            Err((acknowledged, Unsettled::Deadline { pending, since }))
        } else {
            Err((acknowledged, Unsettled::Waiting { pending }))
        }
    }

    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }
}

impl Unsettled {
    /// The error that stops the ingest when the deadline passed.
    pub fn into_error(self) -> Option<IngestError> {
        match self {
            Unsettled::Waiting { .. } => None,
            Unsettled::Deadline { pending, since } => Some(IngestError::DeadLetter {
                pending,
                since_s: since.as_secs(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_at_a_character() {
        assert_eq!(bounded("abc", 10), "abc");
        assert_eq!(bounded("é", 1), "");
        assert_eq!(bounded("aé", 2), "a");
        let long = "x".repeat(510_000);
        assert_eq!(bounded(&long, MAX_REASON_BYTES).len(), MAX_REASON_BYTES);
    }
}
