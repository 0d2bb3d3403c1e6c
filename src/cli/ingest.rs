//! `mxpulse ingest`: runs the Kafka to Delta lake ingest until SIGINT or SIGTERM, then flushes
//! and commits what it holds before leaving its consumer group.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use mxpulse_ingest::metrics::IngestMetrics;
use mxpulse_ingest::{FlushPolicy, IngestConfig, LakeRoot, http, pipeline};

use crate::config::Config;

#[derive(Debug, Args)]
pub struct IngestArgs {}

/// The ingest's config from the file's sections.
pub fn ingest_config(config: &Config) -> anyhow::Result<IngestConfig> {
    let section = &config.ingest;
    let mut kafka_properties = config.kafka.properties.clone();
    kafka_properties
        .entry("client.id".into())
        .or_insert_with(|| config.kafka.client_id.clone());
    Ok(IngestConfig {
        brokers: config.kafka.brokers.clone(),
        group_id: section.group_id.clone(),
        kafka_properties,
        lake: LakeRoot::parse(&config.lake.root).context("lake.root")?,
        flush: FlushPolicy {
            max_rows: section.flush_max_rows as usize,
            max_bytes: section.flush_max_bytes as usize,
            max_latency: Duration::from_millis(section.flush_max_latency_ms),
        },
        identity_days: section.identity_days as usize,
    })
}

pub fn run(_args: &IngestArgs, config: &Config) -> anyhow::Result<()> {
    let ingest = ingest_config(config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let metrics = Arc::new(IngestMetrics::default());
        let bound = http::serve(config.ingest.listen, metrics.clone()).await?;
        tracing::info!(%bound, "ingest /metrics and /health listening");
        pipeline::run(ingest, metrics, super::shutdown_signal()).await?;
        anyhow::Ok(())
    })
}
