//! `mxpulse lake`: maintenance of the Delta lake: `status` (each table's version, files, rows,
//! bytes, last commit, offsets per Kafka partition), `compact`, `vacuum`, `purge`.

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
    /// Rewrite each day's small files into large ones sorted by time (safe while ingesting).
    Compact,
    /// Delete files no table version younger than --retain-hours still uses.
    Vacuum {
        #[arg(long, default_value_t = 168)]
        retain_hours: i64,
    },
    /// Remove raw records older than a period: 400d, 57w, 13m (30-day months), 2y.
    Purge {
        #[arg(long, value_parser = parse_period)]
        older_than: chrono::Duration,
    },
}

/// `400d`, `57w`, `13m` (months of 30 days), `2y` (years of 365 days).
fn parse_period(text: &str) -> Result<chrono::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: add a unit: d, w, m or y"))?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number then d, w, m or y"))?;
    let days = match unit {
        "d" => n,
        "w" => n * 7,
        "m" => n * 30,
        "y" => n * 365,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (d, w, m or y)")),
    };
    chrono::Duration::try_days(days)
        .filter(|d| *d > chrono::Duration::zero())
        .ok_or_else(|| format!("{text:?}: out of range"))
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
        LakeCommand::Compact => report("compact", runtime.block_on(maintenance::compact(&root))?),
        LakeCommand::Vacuum { retain_hours } => {
            let retain = chrono::Duration::try_hours(retain_hours)
                .filter(|d| *d >= chrono::Duration::zero())
                .context("--retain-hours out of range")?;
            report(
                "vacuum",
                runtime.block_on(maintenance::vacuum(&root, retain))?,
            )
        }
        LakeCommand::Purge { older_than } => {
            let cutoff = chrono::Utc::now().date_naive() - older_than;
            let before_day = mxpulse_schemas::time::date_to_days(cutoff);
            println!("purging raw records before {cutoff}");
            report(
                "purge",
                runtime.block_on(maintenance::purge(&root, before_day))?,
            )
        }
    }
}

fn report(what: &str, tables: Vec<maintenance::MaintenanceReport>) -> anyhow::Result<()> {
    for t in tables {
        println!(
            "{what} {:<9} files added {:>5}  files removed {:>5}",
            t.table, t.files_added, t.files_removed
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        assert_eq!(parse_period("400d"), Ok(chrono::Duration::days(400)));
        assert_eq!(parse_period("2w"), Ok(chrono::Duration::days(14)));
        assert_eq!(parse_period("13m"), Ok(chrono::Duration::days(390)));
        assert_eq!(parse_period("2y"), Ok(chrono::Duration::days(730)));
        for bad in ["", "12", "d", "3h", "-1d", "0d", "99999999999999y"] {
            assert!(parse_period(bad).is_err(), "{bad}");
        }
    }
}
