//! `mxpulse lake`: maintenance of the Delta lake. `status` shows each table's version, files,
//! rows, bytes, last commit and the offsets it holds per Kafka partition.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mxpulse_ingest::LakeRoot;
use mxpulse_ingest::maintenance;

use crate::config::Config;

#[derive(Debug, Args)]
pub struct LakeArgs {
    #[command(subcommand)]
    pub command: LakeCommand,
}

#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// Tables, files, rows, bytes, last commit, per-partition offsets.
    Status,
}

pub fn run(args: &LakeArgs, config: &Config) -> anyhow::Result<()> {
    let root = LakeRoot::parse(&config.lake.root).context("lake.root")?;
    let runtime = tokio::runtime::Runtime::new()?;
    match args.command {
        LakeCommand::Status => {
            let tables = runtime.block_on(maintenance::status(&root, &config.ingest.group_id))?;
            println!("lake {}", root.url());
            for t in tables {
                let last = t
                    .last_commit_ms
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map_or("never".to_owned(), |at| at.to_rfc3339());
                println!(
                    "{:<9} version {:>6}  files {:>6}  rows {:>10}  bytes {:>12}  last commit {last}",
                    t.table, t.version, t.files, t.rows, t.bytes
                );
                let offsets: Vec<String> =
                    t.offsets.iter().map(|(p, o)| format!("{p}:{o}")).collect();
                println!(
                    "          offsets of group {}: {}",
                    config.ingest.group_id,
                    if offsets.is_empty() {
                        "none".to_owned()
                    } else {
                        offsets.join(" ")
                    }
                );
            }
            Ok(())
        }
    }
}
