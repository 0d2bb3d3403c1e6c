//! A throwaway Kafka-protocol broker: librdkafka's own mock cluster, with the mxpulse topics
//! created up front. It backs `mxpulse dev-broker` (tests, local work) and will back
//! `mxpulse demo`. Not for production: it keeps everything in memory, and like a broker with a
//! small retention it keeps at most 5 MB or 100,000 messages per partition (librdkafka's
//! fixed limits), dropping the oldest: a consumer that falls further behind starts at the
//! earliest offset left. Use more partitions (and compressed producers) for large backlogs.
//!
//! rdkafka wraps the mock cluster but not its rebalance delay, and a group join would then
//! wait librdkafka's default of seconds; so this module drives the C API directly, behind a
//! small safe type.

use std::ffi::{CStr, CString};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka_sys as rdsys;

#[derive(Debug, thiserror::Error)]
pub enum DevBrokerError {
    #[error("cannot create the librdkafka handle that hosts the mock cluster: {0}")]
    Handle(#[from] rdkafka::error::KafkaError),
    #[error("librdkafka refused to create a mock cluster of {brokers} broker(s)")]
    Cluster { brokers: i32 },
    #[error("cannot create topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
}

/// A running mock cluster; dropping it closes its listeners.
pub struct DevBroker {
    cluster: *mut rdsys::rd_kafka_mock_cluster_t,
    /// The handle the cluster lives in: it must outlive `cluster`, so it is dropped after it
    /// (see `Drop`).
    _host: BaseProducer,
}

// SAFETY: the mock cluster runs on its own librdkafka thread; the functions used here are
// documented as callable from any thread.
unsafe impl Send for DevBroker {}

impl DevBroker {
    /// Starts `brokers` brokers on loopback ports chosen by the kernel and creates each topic
    /// with `partitions` partitions.
    pub fn start(brokers: i32, topics: &[&str], partitions: i32) -> Result<Self, DevBrokerError> {
        let host: BaseProducer = ClientConfig::new().set("log_level", "3").create()?;
        // SAFETY: `host.client().native_ptr()` is a live rd_kafka_t for as long as `host`
        // is, and `DevBroker` keeps `host` until after the cluster is destroyed.
        let cluster =
            unsafe { rdsys::rd_kafka_mock_cluster_new(host.client().native_ptr(), brokers) };
        if cluster.is_null() {
            return Err(DevBrokerError::Cluster { brokers });
        }
        let broker = DevBroker {
            cluster,
            _host: host,
        };
        // SAFETY: `cluster` is live (checked non-null above, destroyed only in Drop).
        unsafe { rdsys::rd_kafka_mock_group_initial_rebalance_delay_ms(broker.cluster, 0) };
        for topic in topics {
            broker.create_topic(topic, partitions)?;
        }
        Ok(broker)
    }

    fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), DevBrokerError> {
        let name = CString::new(topic).map_err(|_| DevBrokerError::Topic {
            topic: topic.into(),
            reason: "NUL in name".into(),
        })?;
        let replication = 1;
        // SAFETY: live cluster, NUL-terminated name that outlives the call.
        let err = unsafe {
            rdsys::rd_kafka_mock_topic_create(self.cluster, name.as_ptr(), partitions, replication)
        };
        if err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Ok(())
        } else {
            Err(DevBrokerError::Topic {
                topic: topic.into(),
                reason: format!("{:?}", rdkafka::error::RDKafkaErrorCode::from(err)),
            })
        }
    }

    /// Takes every broker down (connections closed, new ones refused) or brings them back
    /// up; the data stays: an outage drill without losing what was stored.
    pub fn set_available(&self, brokers: i32, available: bool) {
        for id in 1..=brokers {
            // SAFETY: live cluster; unknown broker ids are an error code, not UB.
            unsafe {
                if available {
                    rdsys::rd_kafka_mock_broker_set_up(self.cluster, id);
                } else {
                    rdsys::rd_kafka_mock_broker_set_down(self.cluster, id);
                }
            }
        }
    }

    /// Makes `topic` unavailable (its metadata answers an error: producers find no leader
    /// and their messages time out) or available again: a topic-level fault drill.
    pub fn set_topic_unavailable(&self, topic: &str, unavailable: bool) {
        let Ok(name) = CString::new(topic) else {
            return;
        };
        let error = if unavailable {
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE
        } else {
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        };
        // SAFETY: live cluster, NUL-terminated name that outlives the call.
        unsafe { rdsys::rd_kafka_mock_topic_set_error(self.cluster, name.as_ptr(), error) };
    }

    /// `bootstrap.servers` for clients, e.g. `127.0.0.1:40123`.
    pub fn bootstrap_servers(&self) -> String {
        // SAFETY: live cluster; librdkafka returns a NUL-terminated string it owns for the
        // cluster's lifetime, copied out at once.
        unsafe { CStr::from_ptr(rdsys::rd_kafka_mock_cluster_bootstraps(self.cluster)) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for DevBroker {
    fn drop(&mut self) {
        // SAFETY: created in `start`, destroyed once, before `_host` (fields drop after this).
        unsafe { rdsys::rd_kafka_mock_cluster_destroy(self.cluster) };
    }
}
