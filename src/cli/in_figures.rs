//! When what has been published is in the figures: the demo announces its history only once
//! a viewer would see it (docs/design.md §6: the rollups hold every raw version, and the
//! query service answers from every commit older than `query.refresh_ms`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mxpulse_ingest::LakeRoot;
use mxpulse_ingest::lake::{open_or_create, partition_offsets};
use mxpulse_schemas::{AccountRecord, DirectoryRecord, EventRecord, Record, VisitRecord};
use rdkafka::consumer::{BaseConsumer, Consumer as _};

use crate::config::Config;

/// What is not yet in the figures, as sentences (empty: everything is).
async fn still_missing(config: &Config, root: &LakeRoot) -> anyhow::Result<Vec<String>> {
    let mut missing = Vec::new();
    // The lake holds every offset Kafka has of the record topics.
    for (topic, table) in [
        (EventRecord::TOPIC, EventRecord::TABLE),
        (VisitRecord::TOPIC, VisitRecord::TABLE),
        (AccountRecord::TOPIC, AccountRecord::TABLE),
        (DirectoryRecord::TOPIC, DirectoryRecord::TABLE),
    ] {
        let highs = kafka_highs(config, topic).await?;
        let partitions = highs.len() as i32;
        let group = &config.ingest.group_id;
        let held = match table {
            "events" => {
                let table = open_or_create::<EventRecord>(root).await?;
                partition_offsets(&table, group, topic, partitions).await?
            }
            "visits" => {
                let table = open_or_create::<VisitRecord>(root).await?;
                partition_offsets(&table, group, topic, partitions).await?
            }
            "directory" => {
                let table = open_or_create::<DirectoryRecord>(root).await?;
                partition_offsets(&table, group, topic, partitions).await?
            }
            _ => {
                let table = open_or_create::<AccountRecord>(root).await?;
                partition_offsets(&table, group, topic, partitions).await?
            }
        };
        let behind: i64 = highs
            .iter()
            .map(|(partition, high)| high - held.get(partition).map_or(0, |o| o.0 + 1))
            .filter(|gap| *gap > 0)
            .sum();
        if behind > 0 {
            missing.push(format!("{behind} {table} records not yet in the lake"));
        }
    }
    // The rollups hold every raw table's current version.
    let state = mxpulse_ingest::rollup::state(root).await?;
    for table in [EventRecord::TABLE, VisitRecord::TABLE, AccountRecord::TABLE] {
        let url = mxpulse_ingest::lake::table_url_at(root, table);
        let Ok(raw) = mxpulse_ingest::lake::open_existing(&url).await else {
            continue;
        };
        let version = raw.version().map_or(-1, |v| v as i64);
        let held = state
            .as_ref()
            .and_then(|s| s.watermarks.get(table).copied())
            .unwrap_or(-1);
        if held < version {
            missing.push(format!(
                "the rollups hold {table} version {held} of {version}"
            ));
        }
    }
    Ok(missing)
}

/// The next offset of each partition of `topic`.
async fn kafka_highs(config: &Config, topic: &'static str) -> anyhow::Result<BTreeMap<i32, i64>> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let mut client = rdkafka::ClientConfig::new();
        client.set("bootstrap.servers", &config.kafka.brokers);
        for (key, value) in &config.kafka.properties {
            client.set(key, value);
        }
        let consumer: BaseConsumer = client
            .set("group.id", format!("{}-in-figures", config.ingest.group_id))
            .create()
            .context("Kafka client")?;
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("the partitions of {topic}"))?;
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len());
        (0..partitions as i32)
            .map(|partition| {
                let (_, high) = consumer
                    .fetch_watermarks(topic, partition, Duration::from_secs(10))
                    .with_context(|| format!("the offsets of {topic} partition {partition}"))?;
                Ok((partition, high))
            })
            .collect()
    })
    .await?
}

/// Waits until everything published so far is in the figures the query service answers,
/// at most `deadline`; what was still missing then is the error.
pub async fn wait(config: &Config, deadline: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let root = LakeRoot::parse(&config.lake.root).context("lake.root")?;
    loop {
        let missing = still_missing(config, &root).await?;
        if missing.is_empty() {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < deadline,
            "after {:.0} s: {}",
            deadline.as_secs_f64(),
            missing.join("; ")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The query service answers from every commit older than its refresh interval.
    let written_ms = mxpulse_ingest::rollup::state(&root)
        .await?
        .and_then(|s| s.written_ms)
        .unwrap_or(0);
    let served_from = written_ms + config.query.refresh_ms as i64 + 100;
    let wait_ms = served_from - chrono::Utc::now().timestamp_millis();
    if wait_ms > 0 {
        tokio::time::sleep(Duration::from_millis(wait_ms as u64)).await;
    }
    Ok(started.elapsed())
}
