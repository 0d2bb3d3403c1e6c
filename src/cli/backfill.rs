//! `mxpulse backfill`: replays one homeserver's history from its Synapse database into Kafka
//! (events of local senders, visits, accounts), with progress bars.

use std::sync::Arc;

use anyhow::Context as _;
use chrono::NaiveDate;
use clap::Args;
use mxpulse_hooks::backfill::{BackfillParts, backfill};
use mxpulse_hooks::metrics::HooksMetrics;
use mxpulse_hooks::synapse_db::SynapseDb;

use crate::config::Config;

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The Synapse database: `postgresql://user@host/db` or a SQLite file (opened read-only).
    #[arg(long)]
    synapse_db: String,
    /// Synapse's server_name (its users are the local senders).
    #[arg(long)]
    server: String,
    /// First UTC day to replay (YYYY-MM-DD).
    #[arg(long)]
    since: NaiveDate,
    /// Day after the last one to replay (default: no end).
    #[arg(long)]
    until: Option<NaiveDate>,
    /// Replay only these tables (default: all three).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<BackfillPart>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BackfillPart {
    Events,
    Visits,
    Accounts,
}

impl BackfillArgs {
    fn parts(&self) -> BackfillParts {
        if self.only.is_empty() {
            return BackfillParts::ALL;
        }
        BackfillParts {
            events: self.only.contains(&BackfillPart::Events),
            visits: self.only.contains(&BackfillPart::Visits),
            accounts: self.only.contains(&BackfillPart::Accounts),
        }
    }
}

fn day_ms(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp_millis())
}

pub fn run(args: &BackfillArgs, config: &Config) -> anyhow::Result<()> {
    let key = super::hooks::pseudonym_key(config)?;
    let anonymizer = super::hooks::anonymizer(config, &key, &args.server);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let metrics = Arc::new(HooksMetrics::default());
        let producer = super::hooks::producer(config, metrics)?;
        let db = SynapseDb::connect(&args.synapse_db).await?;
        // Every account first: the domains are learned before any record is published.
        for name in db.user_names().await? {
            anonymizer.domain_of(&name);
        }
        let until = args.until.map_or(i64::MAX, day_ms);
        let report = backfill(
            &db,
            &anonymizer,
            &producer,
            day_ms(args.since),
            until,
            args.parts(),
            !args.quiet,
        )
        .await
        .context("backfill stopped; running it again is safe (records keep their identity)")?;
        println!(
            "backfill of {}: {} events ({} skipped), {} visits, {} accounts published",
            args.server, report.events, report.events_skipped, report.visits, report.accounts
        );
        super::hooks::save_domains(config, &anonymizer)?;
        anyhow::Ok(())
    })
}
