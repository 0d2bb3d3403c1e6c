//! `RecordProducer`: publishes records to their topics and returns only once the brokers
//! acknowledged every one of them (idempotent producer, `acks=all`). This is what lets the
//! appservice endpoint answer Synapse 200 only for records that are safe in Kafka.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use mxpulse_schemas::{Record, SCHEMA_VERSION_HEADER, encode};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use crate::metrics::HooksMetrics;

/// Why records were not all acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot create the Kafka producer: {0}")]
    Create(#[source] rdkafka::error::KafkaError),
    #[error("{failed} of {total} records were not acknowledged by Kafka: {first}")]
    NotAcknowledged {
        failed: usize,
        total: usize,
        first: rdkafka::error::KafkaError,
    },
}

/// The producer settings that the delivery guarantee rests on.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    pub brokers: String,
    /// Further librdkafka properties (`client.id`, TLS, SASL).
    pub properties: BTreeMap<String, String>,
    /// How long a record may wait for its acknowledgement before the publish fails.
    pub delivery_timeout: Duration,
}

/// Cheap to clone: clones share one librdkafka producer.
#[derive(Clone)]
pub struct RecordProducer {
    /// Replaced by a new instance when the brokers refuse the current one's idempotence
    /// state (a broker that lost it, e.g. after a restart, or a fatal error): librdkafka's
    /// rule is that such a producer must be destroyed and created again.
    producer: Arc<RwLock<FutureProducer>>,
    client: ClientConfig,
    metrics: Arc<HooksMetrics>,
}

impl RecordProducer {
    pub fn new(config: &ProducerConfig, metrics: Arc<HooksMetrics>) -> Result<Self, PublishError> {
        let mut client = ClientConfig::new();
        for (key, value) in &config.properties {
            client.set(key, value);
        }
        client
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                config.delivery_timeout.as_millis().max(1).to_string(),
            );
        let producer = client.create().map_err(PublishError::Create)?;
        Ok(Self {
            producer: Arc::new(RwLock::new(producer)),
            client,
            metrics,
        })
    }

    /// Publishes `records` and waits for every acknowledgement. On error some records may
    /// have been stored anyway: the caller retries the whole set, and the ingest drops the
    /// repeats by record identity (the message key).
    pub async fn publish<R: Record>(&self, records: &[R]) -> Result<(), PublishError> {
        if records.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let header = mxpulse_schemas::Envelope::version_header();
        let envelopes: Vec<_> = records.iter().map(encode).collect();
        let producer = match self.producer.read() {
            Ok(producer) => producer.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let deliveries = envelopes.iter().map(|envelope| {
            let headers = OwnedHeaders::new().insert(Header {
                key: SCHEMA_VERSION_HEADER,
                value: Some(header.as_str()),
            });
            let message = FutureRecord::to(envelope.topic)
                .key(envelope.key.0.as_str())
                .payload(envelope.payload.as_slice())
                .headers(headers);
            // The message timeout bounds the wait; a full local queue waits for room.
            producer.send(message, rdkafka::util::Timeout::Never)
        });
        let results = futures::future::join_all(deliveries).await;
        self.metrics.observe_produce(started.elapsed());
        let mut failed = 0;
        let mut first = None;
        for result in results {
            if let Err((error, _message)) = result {
                failed += 1;
                first.get_or_insert(error);
            }
        }
        match first {
            None => {
                self.metrics.records_published::<R>(records.len());
                self.metrics.broker_ok();
                Ok(())
            }
            Some(first) => {
                self.metrics.broker_failed(failed);
                let fatal = rdkafka::client::Client::fatal_error(producer.client()).is_some();
                if fatal
                    || !matches!(
                        first,
                        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
                    )
                {
                    self.renew(&first);
                }
                Err(PublishError::NotAcknowledged {
                    failed,
                    total: records.len(),
                    first,
                })
            }
        }
    }
}

impl RecordProducer {
    /// Asks the brokers for the events topic's metadata, within `timeout`: reachable or not,
    /// recorded for `/health` (a probe failure counts no record as lost).
    pub async fn probe(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = match self.producer.read() {
            Ok(producer) => producer.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let answered = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(mxpulse_schemas::topics::EVENTS), timeout)
                .map(|_| ())
        })
        .await
        .unwrap_or(Err(KafkaError::Canceled));
        match &answered {
            Ok(()) => self.metrics.broker_ok(),
            Err(_) => self.metrics.broker_unreachable(),
        }
        answered
    }

    /// Replaces the producer after the brokers refused it (not after a mere timeout: a
    /// broker that is away gets the same producer back when it returns). The next publish
    /// starts a new idempotent session; what the old one may have stored is dropped as
    /// repeats by the ingest.
    fn renew(&self, cause: &KafkaError) {
        match self.client.create::<FutureProducer>() {
            Ok(fresh) => {
                if let Ok(mut producer) = self.producer.write() {
                    *producer = fresh;
                    tracing::warn!(%cause, "Kafka producer replaced after an error the brokers returned");
                }
            }
            Err(error) => tracing::error!(%error, "cannot create a new Kafka producer"),
        }
    }
}
