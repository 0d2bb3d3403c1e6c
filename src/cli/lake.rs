//! `mxpulse lake`: maintenance of the Delta lake: `status` (each table's version, files, rows,
//! bytes, days, last commit, offsets per Kafka partition; the rollups and what they hold),
//! `rollup`, `compact`, `vacuum`, `purge`.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mxpulse_ingest::LakeRoot;
use mxpulse_ingest::maintenance;
use mxpulse_ingest::rollup::{self, RollupConfig, RollupMode};

use crate::config::Config;

#[derive(Debug, Args)]
pub struct LakeArgs {
    #[command(subcommand)]
    pub command: LakeCommand,
}

#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// Tables, files, rows, bytes, days held, last commit, per-partition offsets; the rollups.
    Status,
    /// Bring the rollups (what the figures are read from) up to date with the raw tables:
    /// only the months whose days changed since the last run.
    Rollup {
        /// Recount every month the raw tables hold (months whose raw records were purged
        /// stay as they are).
        #[arg(long)]
        rebuild: bool,
    },
    /// Rewrite each day's small files into large ones sorted by time (safe while ingesting).
    Compact,
    /// Delete files no table version younger than --retain-hours still uses.
    Vacuum {
        #[arg(long, default_value_t = 168)]
        retain_hours: i64,
    },
    /// Accept that a partition's messages before an offset will not be read (gone from Kafka:
    /// a retention that ran out, a re-created topic, a new cluster), after the ingest stopped
    /// that partition and said why. Restart the ingest afterwards.
    ResetOffsets {
        /// The topic (`mxpulse.events.v1`) or its table (`events`).
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        /// The first offset to read next: a number, `earliest` or `latest` (asked of Kafka).
        #[arg(long)]
        to: String,
        /// Why: kept in the table's history with the reset.
        #[arg(long)]
        reason: String,
    },
    /// Forget a published value everywhere the lake kept it: rows whose COLUMN is FROM get TO
    /// (a domain of fewer than k users, a field to coarsen), the rollups are recounted, and
    /// the old files and commits that held it are deleted. Stop the ingest first (its commits
    /// would conflict with the rewrite).
    Rewrite {
        /// The column: `domain`.
        #[arg(long, value_parser = ["domain"])]
        column: String,
        #[arg(long)]
        from: String,
        /// Default: `other`, what the hooks publish for a domain they cannot trust.
        #[arg(long, default_value = "other")]
        to: String,
    },
    /// Remove raw records older than a period: 400d, 57w, 13m (30-day months), 2y. The
    /// rollups are brought up to date first and keep every published figure of those months.
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

/// The rollups' configuration: months in the query service's time zone.
pub fn rollup_config(config: &Config) -> RollupConfig {
    RollupConfig {
        timezone: config.query.timezone.clone(),
    }
}

pub fn run(args: &LakeArgs, config: &Config) -> anyhow::Result<()> {
    let root = LakeRoot::parse(&config.lake.root).context("lake.root")?;
    let runtime = tokio::runtime::Runtime::new()?;
    if !matches!(args.command, LakeCommand::Status) {
        // Every other command writes: it must not lose a commit to a concurrent writer.
        runtime
            .block_on(mxpulse_ingest::store::check_writers(
                &root,
                config.lake.single_writer,
            ))
            .context("lake.root")?;
    }
    match args.command {
        LakeCommand::Status => {
            let tables = runtime.block_on(maintenance::status(&root, &config.ingest.group_id))?;
            println!("lake {}", root.url());
            for t in &tables {
                let last = t
                    .last_commit_ms
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map_or("never".to_owned(), |at| at.to_rfc3339());
                let days = t.days.map_or("none".to_owned(), |(first, last)| {
                    format!("{first} to {last}")
                });
                println!(
                    "{:<9} version {:>6}  files {:>6}  rows {:>10}  bytes {:>12}  days {days}  last commit {last}",
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
            match runtime.block_on(rollup::state(&root))? {
                None => println!(
                    "rollups   none yet: figures are counted from the raw tables (`mxpulse lake rollup`)"
                ),
                Some(state) => {
                    let written = state
                        .written_ms
                        .and_then(chrono::DateTime::from_timestamp_millis)
                        .map_or("never".to_owned(), |at| at.to_rfc3339());
                    let behind: Vec<String> = tables
                        .iter()
                        .map(|t| {
                            let held = state.watermarks.get(t.table).copied();
                            match held {
                                Some(v) if v >= t.version => format!("{} up to date", t.table),
                                Some(v) => format!("{} {} commits behind", t.table, t.version - v),
                                None => format!("{} not yet rolled up", t.table),
                            }
                        })
                        .collect();
                    println!(
                        "rollups   version {:>6}  months in {}  written {written}  ({})",
                        state.version,
                        state.timezone.as_deref().unwrap_or("?"),
                        behind.join(", ")
                    );
                    match state.purged_before {
                        Some(before) => println!(
                            "          raw records kept from {before}; earlier months are kept in the rollups only (frozen)"
                        ),
                        None => println!(
                            "          nothing purged: every month can be recounted from raw records"
                        ),
                    }
                }
            }
            Ok(())
        }
        LakeCommand::Rollup { rebuild } => {
            let mode = if rebuild {
                RollupMode::Rebuild
            } else {
                RollupMode::Incremental
            };
            let report = runtime.block_on(rollup::run(&root, &rollup_config(config), mode))?;
            println!(
                "rollups up to date in {:.1} s: {} months recounted ({}), {} cells, {} rooms changed, raw versions {:?}",
                report.elapsed.as_secs_f64(),
                report.months.len(),
                summarize_months(&report.months),
                report.cells,
                report.rooms_changed,
                report.versions
            );
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
        LakeCommand::ResetOffsets {
            ref topic,
            partition,
            ref to,
            ref reason,
        } => {
            anyhow::ensure!(!reason.trim().is_empty(), "--reason must say why");
            let topic = match topic.as_str() {
                "events" => mxpulse_schemas::topics::EVENTS,
                "visits" => mxpulse_schemas::topics::VISITS,
                "accounts" => mxpulse_schemas::topics::ACCOUNTS,
                other => other,
            };
            let next = match to.as_str() {
                "earliest" | "latest" => {
                    let (low, high) = watermarks(config, topic, partition)?;
                    if to == "earliest" { low } else { high }
                }
                number => number
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .with_context(|| format!("--to {number:?}: an offset, earliest or latest"))?,
            };
            let reset = runtime.block_on(maintenance::reset_offsets(
                &root,
                &config.ingest.group_id,
                topic,
                partition,
                mxpulse_ingest::offsets::Offset(next),
                reason,
            ))?;
            println!(
                "{} partition {partition} of {topic}: the lake held up to offset {}; the ingest reads from offset {} at its next start (table version {})",
                reset.table,
                reset.before.map_or("none".to_owned(), |o| o.to_string()),
                reset.next,
                reset.version
            );
            Ok(())
        }
        LakeCommand::Rewrite {
            ref column,
            ref from,
            ref to,
        } => {
            anyhow::ensure!(from != to, "--from and --to are the same");
            let rewritten = runtime.block_on(maintenance::rewrite(
                &root,
                &rollup_config(config),
                column,
                from,
                to,
            ))?;
            for (table, rows) in &rewritten.rows {
                println!("{table:<9} {rows} rows: {column} {from:?} is now {to:?}");
            }
            println!(
                "rollups recounted; {} old files and {} old commit files deleted",
                rewritten.files_deleted, rewritten.logs_deleted
            );
            Ok(())
        }
        LakeCommand::Purge { older_than } => {
            let cutoff = chrono::Utc::now().date_naive() - older_than;
            println!("purging raw records before {cutoff} (the rollups keep their figures)");
            let purged =
                runtime.block_on(maintenance::purge(&root, &rollup_config(config), cutoff))?;
            println!(
                "rollups up to date first: {} months recounted",
                purged.rollup.months.len()
            );
            report("purge", purged.tables)
        }
    }
}

/// The first and next offsets Kafka holds for a partition.
fn watermarks(config: &Config, topic: &str, partition: i32) -> anyhow::Result<(i64, i64)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut client = rdkafka::ClientConfig::new();
    client.set("bootstrap.servers", &config.kafka.brokers);
    for (key, value) in &config.kafka.properties {
        client.set(key, value);
    }
    let consumer: BaseConsumer = client
        .set(
            "group.id",
            format!("{}-reset-offsets", config.ingest.group_id),
        )
        .create()
        .context("Kafka client")?;
    consumer
        .fetch_watermarks(topic, partition, std::time::Duration::from_secs(10))
        .with_context(|| format!("asking Kafka for the offsets of {topic} partition {partition}"))
}

/// `2023-01 .. 2024-12` for a run of months, or the months themselves.
fn summarize_months(months: &[String]) -> String {
    match months {
        [] => "none".into(),
        [one] => one.clone(),
        [first, .., last] if months.len() > 3 => format!("{first} .. {last}"),
        _ => months.join(", "),
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
