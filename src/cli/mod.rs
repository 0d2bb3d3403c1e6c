//! The command line: one subcommand per job, each in its own module with its clap `Args`
//! and its `run`. Flags common to several jobs are clap blocks flattened into them.

mod backfill;
mod config_cmd;
mod demo;
mod dev_broker;
mod generate;
mod hooks;
mod in_figures;
mod ingest;
mod lake;
pub mod owner_only;
mod report;
mod serve;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;

/// Usage analytics for federations of Matrix homeservers.
#[derive(Debug, Parser)]
#[command(name = "mxpulse", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file (TOML; every key is documented in mxpulse.example.toml).
    #[arg(long, global = true, env = "MXPULSE_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Appservice endpoint and Synapse database tap: anonymized records to Kafka.
    Hooks(hooks::HooksArgs),
    /// Kafka to the Delta lake, exactly once.
    Ingest(ingest::IngestArgs),
    /// Figures API, read-only SQL over HTTP and the PostgreSQL wire protocol.
    Serve(serve::ServeArgs),
    /// A local federation flowing end to end into the figures: the first command to run.
    Demo(demo::DemoArgs),
    /// Deterministic federation simulator calibrated to the published figures.
    Generate(generate::GenerateArgs),
    /// A month's report for managers: PDF, XLSX, CSV, PNG charts, offline HTML.
    Report(report::ReportArgs),
    /// Replay a homeserver's history from its database.
    Backfill(backfill::BackfillArgs),
    /// Lake maintenance: status, compact, vacuum, purge.
    Lake(lake::LakeArgs),
    /// A throwaway in-memory Kafka-protocol broker on loopback, for tests and local work.
    DevBroker(dev_broker::DevBrokerArgs),
    /// Show or check the effective configuration.
    Config(config_cmd::ConfigArgs),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match &self.command {
            Command::DevBroker(args) => dev_broker::run(args),
            Command::Config(args) => config_cmd::run(args, &load_config(&self.global)?),
            Command::Hooks(args) => hooks::run(args, &load_config(&self.global)?),
            Command::Ingest(args) => ingest::run(args, &load_config(&self.global)?),
            Command::Lake(args) => lake::run(args, &load_config(&self.global)?),
            Command::Serve(args) => serve::run(args, &load_config(&self.global)?),
            Command::Demo(args) => demo::run(args),
            Command::Generate(args) => generate::run(args, &load_config(&self.global)?),
            Command::Report(args) => report::run(args, &load_config(&self.global)?),
            Command::Backfill(args) => backfill::run(args, &load_config(&self.global)?),
        }
    }
}

/// The configuration from `--config` and the process environment.
pub fn load_config(global: &GlobalArgs) -> anyhow::Result<Config> {
    let config = Config::load(global.config.as_deref(), std::env::vars())
        .context("invalid configuration")?;
    owner_only::warn_about_readable_secrets(global.config.as_deref(), &config);
    // (Parsing a local root would create its directory: only an s3:// one is parsed here.)
    if config.lake.root.trim().starts_with("s3://")
        && let Ok(root) = mxpulse_ingest::LakeRoot::parse(config.lake.root.trim())
    {
        mxpulse_ingest::store::use_s3(&root, config.lake.s3_settings());
    }
    Ok(config)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM: how every long-running job is asked to stop.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Logs go to stderr, filtered by `MXPULSE_LOG` (`info` by default; `RUST_LOG` syntax), in
/// colour on a terminal only: a file or journald gets plain text to search. The Delta kernel's
/// own logs are off by default: it logs every snapshot it builds, and an ERROR for every
/// table it probes that does not exist yet; delta-rs returns the errors that matter to us.
pub fn init_logging() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MXPULSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,buoyant_kernel=off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
