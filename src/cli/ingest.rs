//! `mxpulse ingest`: runs the Kafka to Delta lake ingest until SIGINT or SIGTERM, then flushes
//! and commits what it holds before leaving its consumer group.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use mxpulse_ingest::maintenance::{MaintenancePlan, background_maintenance};
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
        dead_letter_deadline: Duration::from_millis(section.dead_letter_deadline_ms),
    })
}

/// The maintenance the ingest runs beside consuming: rollups and retention.
pub fn maintenance_plan(config: &Config) -> MaintenancePlan {
    let lake = &config.lake;
    MaintenancePlan {
        rollup: super::lake::rollup_config(config),
        rollup_interval: (lake.rollup_interval_ms > 0)
            .then(|| Duration::from_millis(lake.rollup_interval_ms)),
        retention_days: (lake.retention_days > 0)
            .then(|| u32::try_from(lake.retention_days).unwrap_or(u32::MAX)),
    }
}

pub fn run(_args: &IngestArgs, config: &Config) -> anyhow::Result<()> {
    let ingest = ingest_config(config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        mxpulse_ingest::store::check_writers(&ingest.lake, config.lake.single_writer)
            .await
            .context("lake.root")?;
        let metrics = Arc::new(IngestMetrics::default());
        let bound = http::serve(config.ingest.listen, metrics.clone()).await?;
        tracing::info!(%bound, "ingest /metrics and /health listening");
        let (stop_maintenance, stopped) = tokio::sync::watch::channel(false);
        let maintenance = background_maintenance(
            ingest.lake.clone(),
            maintenance_plan(config),
            metrics.clone(),
            stopped,
        );
        let result = pipeline::run(ingest, metrics, super::shutdown_signal()).await;
        let _ = stop_maintenance.send(true);
        // A rollup run in progress finishes (or its commit is simply not made).
        let _ = tokio::time::timeout(Duration::from_secs(30), maintenance).await;
        result?;
        anyhow::Ok(())
    })
}
