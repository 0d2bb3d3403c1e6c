//! `mxpulse dev-broker`: hosts librdkafka's mock cluster in its own process, so that the
//! clients under test can be killed while the broker lives on. It prints the bootstrap
//! address and can write it to a file for scripts; it runs until SIGINT or SIGTERM. Each
//! partition keeps at most 5 MB or 100,000 messages (see `dev_broker.rs`).
//!
//! Outage drill: SIGUSR1 takes the brokers down (clients see connections refused), SIGUSR2
//! brings them back with every message they held. Dead-letter drill: SIGHUP makes the
//! dead-letter topic unavailable (producers find no leader), the next SIGHUP available again.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use mxpulse_schemas::topics;

use crate::dev_broker::DevBroker;

#[derive(Debug, Args)]
pub struct DevBrokerArgs {
    /// Number of brokers in the mock cluster.
    #[arg(long, default_value_t = 1, env = "MXPULSE_DEV_BROKER_BROKERS")]
    pub brokers: i32,
    /// Partitions of each mxpulse topic.
    #[arg(long, default_value_t = 4, env = "MXPULSE_DEV_BROKER_PARTITIONS")]
    pub partitions: i32,
    /// Write `host:port` of the bootstrap server to this file once it listens (removed on exit).
    #[arg(long)]
    pub address_file: Option<PathBuf>,
}

pub fn run(args: &DevBrokerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.brokers >= 1, "--brokers must be at least 1");
    anyhow::ensure!(args.partitions >= 1, "--partitions must be at least 1");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let broker = DevBroker::start(args.brokers, &topics::ALL, args.partitions)
        .context("starting the mock cluster")?;
    let bootstrap = broker.bootstrap_servers();
    if let Some(path) = &args.address_file {
        // Written whole then renamed, so a reader never sees half an address.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, &bootstrap)
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("bootstrap.servers={bootstrap}");
    tracing::info!(%bootstrap, topics = ?topics::ALL, partitions = args.partitions, "dev broker listening");

    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (mut down, mut up, mut dead_letters) = (
            signal(SignalKind::user_defined1())?,
            signal(SignalKind::user_defined2())?,
            signal(SignalKind::hangup())?,
        );
        let mut dead_letters_unavailable = false;
        let shutdown = super::shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = down.recv() => {
                    broker.set_available(args.brokers, false);
                    tracing::warn!("dev broker down (SIGUSR1); SIGUSR2 brings it back");
                }
                _ = up.recv() => {
                    broker.set_available(args.brokers, true);
                    tracing::info!("dev broker up again (SIGUSR2)");
                }
                _ = dead_letters.recv() => {
                    dead_letters_unavailable = !dead_letters_unavailable;
                    broker.set_topic_unavailable(topics::DEADLETTER, dead_letters_unavailable);
                    tracing::warn!(unavailable = dead_letters_unavailable, "dead-letter topic drill (SIGHUP)");
                }
            }
        }
        anyhow::Ok(())
    })?;
    tracing::info!("dev broker stopping");
    drop(broker);
    if let Some(path) = &args.address_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
