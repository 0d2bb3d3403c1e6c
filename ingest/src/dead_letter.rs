//! Messages that are not records (undecodable, unknown version, invalid) go to
//! `mxpulse.deadletter.v1` with the original bytes and headers saying why and where they came
//! from. They never block their partition: their offset is committed with the next batch,
//! once the dead letter is acknowledged. A crash between the two sends it again (dead letters
//! are at least once; the lake stays exactly once).

use std::time::Duration;

use futures::future::join_all;
use mxpulse_schemas::topics;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::error::IngestError;

pub const REASON_HEADER: &str = "mxpulse-deadletter-reason";
pub const TOPIC_HEADER: &str = "mxpulse-source-topic";
pub const PARTITION_HEADER: &str = "mxpulse-source-partition";
pub const OFFSET_HEADER: &str = "mxpulse-source-offset";

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

/// Sends dead letters without waiting, and waits for all of them before a commit.
pub struct DeadLetterQueue {
    producer: FutureProducer,
    pending: Vec<(DeadLetter, DeliveryFuture)>,
}

impl DeadLetterQueue {
    pub fn new(producer: FutureProducer) -> Self {
        Self {
            producer,
            pending: Vec::new(),
        }
    }

    pub fn send(&mut self, letter: DeadLetter) -> Result<(), IngestError> {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: REASON_HEADER,
                value: Some(letter.reason.as_bytes()),
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
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topics::DEADLETTER)
            .payload(letter.payload.as_slice())
            .headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        let delivery = self
            .producer
            .send_result(record)
            .map_err(|(e, _)| IngestError::Kafka(e))?;
        self.pending.push((letter, delivery));
        Ok(())
    }

    /// Waits until every dead letter sent so far is acknowledged by the broker.
    pub async fn settle(&mut self) -> Result<usize, IngestError> {
        let pending = std::mem::take(&mut self.pending);
        let count = pending.len();
        let (letters, deliveries): (Vec<_>, Vec<_>) = pending.into_iter().unzip();
        for (letter, outcome) in letters.into_iter().zip(join_all(deliveries).await) {
            let reason = match outcome {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => e.to_string(),
                Err(_) => "producer dropped the message".to_owned(),
            };
            return Err(IngestError::DeadLetter {
                topic: letter.topic,
                partition: letter.partition,
                offset: letter.offset,
                reason,
            });
        }
        Ok(count)
    }

    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }
}
