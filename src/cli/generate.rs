//! `mxpulse generate`: the deterministic federation simulator (`simulator/`), month by month
//! into Synapse-schema databases, appservice transactions (to a running `mxpulse hooks` or
//! as JSON lines) and, for large runs, straight to Kafka.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use chrono::NaiveDate;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mxpulse_hooks::metrics::HooksMetrics;
use mxpulse_simulator::synapse_sqlite::SynapseDatabases;
use mxpulse_simulator::{Federation, Simulation, SimulationSpec, day_ms, next_month};

use crate::config::Config;
use crate::generation::{
    FastMapping, GenerationTotals, HooksSender, KafkaFastPath, LagGuard, LakeFastPath, Sinks,
};

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub simulation: SimulationArgs,
    /// Directory for the Synapse databases (`<server>.sqlite`: users, user_daily_visits and,
    /// without --hooks, events and event_json, which `mxpulse backfill` replays).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Send the transactions to `mxpulse hooks` at this URL (hs_tokens from the
    /// configuration's [[hooks.homeservers]]).
    #[arg(long)]
    pub hooks: Option<String>,
    /// Fast path for large runs: records straight to Kafka through the hooks' mapping
    /// (brokers and pseudonymization key from the configuration).
    #[arg(long)]
    pub kafka: bool,
    /// With --kafka: publishing waits while the ingest (`ingest.group_id`) is more than this
    /// many messages behind on a partition, so the broker never drops unread messages (the
    /// dev broker keeps 5 MB a partition); 0 publishes without waiting.
    #[arg(long, default_value_t = 10_000)]
    pub max_lag: i64,
    /// Fast path for building a large lake: the same records straight into the lake at this
    /// directory (which must hold no table yet), through the ingest's writer, without Kafka.
    #[arg(long)]
    pub lake: Option<PathBuf>,
}

/// What to simulate (shared with `mxpulse demo`).
#[derive(Clone, Debug, Args)]
pub struct SimulationArgs {
    /// Same seed and scale, same output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// 1 is the public federation's size (~240k monthly active users, ~6.5M messages a month).
    #[arg(long, default_value_t = 0.01)]
    pub scale: f64,
    /// First month (YYYY-MM).
    #[arg(long, default_value = "2023-01", value_parser = parse_month)]
    pub from: NaiveDate,
    /// Last month, included (YYYY-MM).
    #[arg(long, default_value = "2024-12", value_parser = parse_month)]
    pub to: NaiveDate,
    /// Servers by short name (`interieur` is agent.interieur.tchap.gouv.fr) or full name;
    /// default: the 17 of the public federation.
    #[arg(long, value_delimiter = ',')]
    pub servers: Vec<String>,
}

impl SimulationArgs {
    pub fn spec(&self) -> SimulationSpec {
        let federation = if self.servers.is_empty() {
            Federation::tchap()
        } else {
            Federation::from_short_names(self.servers.iter().map(String::as_str))
        };
        SimulationSpec {
            seed: self.seed,
            scale: self.scale,
            from: self.from,
            to: next_month(self.to),
            federation,
        }
    }
}

fn parse_month(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d")
        .map_err(|_| format!("`{text}` is not a month (YYYY-MM)"))
}

/// The hs_token of each simulated server, from the configuration.
pub fn hooks_tokens(config: &Config, sim: &Simulation) -> anyhow::Result<Vec<String>> {
    sim.spec
        .federation
        .servers
        .iter()
        .map(|server| {
            config
                .hooks
                .homeservers
                .iter()
                .find(|h| h.server_name == server.name)
                .map(|h| h.hs_token.clone())
                .with_context(|| {
                    format!(
                        "no [[hooks.homeservers]] for {} in the configuration",
                        server.name
                    )
                })
        })
        .collect()
}

/// Runs every month of `sim` into `sinks`, a progress bar on stderr; `after_month` runs
/// once a month is delivered (the demo backfills its visits there).
pub async fn run_months<F, Fut>(
    sim: &mut Simulation,
    sinks: &mut Sinks,
    mut after_month: F,
) -> anyhow::Result<GenerationTotals>
where
    F: FnMut(NaiveDate) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let bar = ProgressBar::new(sim.months_left() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} months {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix("generate");
    let mut totals = GenerationTotals::default();
    sinks.start(sim).await?;
    while let Some((month, activity)) = sim.next_month() {
        let label = month.format("%Y%m").to_string();
        sinks
            .deliver(sim, &label, day_ms(month), &activity, &mut totals)
            .await
            .with_context(|| format!("delivering {}", month.format("%Y-%m")))?;
        after_month(month).await?;
        totals.months += 1;
        bar.set_message(format!(
            "{}: {} events, {} visits",
            month.format("%Y-%m"),
            activity.events.len(),
            activity.visits.len()
        ));
        bar.inc(1);
    }
    bar.finish();
    Ok(totals)
}

/// The lake fast path into `dir`, refused when the lake already holds records (the counts
/// would mix two runs, and nothing deduplicates on this path).
async fn lake_fast_path(
    dir: &std::path::Path,
    mapping: FastMapping,
) -> anyhow::Result<LakeFastPath> {
    use mxpulse_ingest::lake::open_or_create;
    use mxpulse_schemas::{AccountRecord, EventRecord, VisitRecord};
    let root = mxpulse_ingest::LakeRoot::parse(&dir.to_string_lossy())
        .with_context(|| format!("lake {}", dir.display()))?;
    let lake = LakeFastPath {
        mapping,
        events: open_or_create::<EventRecord>(&root).await?,
        visits: open_or_create::<VisitRecord>(&root).await?,
        accounts: open_or_create::<AccountRecord>(&root).await?,
        written: [0; 3],
    };
    for table in [&lake.events, &lake.visits, &lake.accounts] {
        anyhow::ensure!(
            table.version().unwrap_or(0) == 0,
            "the lake at {} already holds records: --lake needs a new directory",
            dir.display()
        );
    }
    Ok(lake)
}

/// Counts the rows of each table against the records written: every one must be there.
async fn check_lake_holds(lake: &LakeFastPath) -> anyhow::Result<()> {
    let mut held = Vec::new();
    for (table, written) in [&lake.events, &lake.visits, &lake.accounts]
        .into_iter()
        .zip(lake.written)
    {
        let mut table = table.clone();
        table.update_state().await?;
        let rows = mxpulse_ingest::lake::row_count(&table).await?;
        anyhow::ensure!(
            rows == written,
            "the lake holds {rows} rows where {written} records were written"
        );
        held.push(rows);
    }
    println!(
        "lake holds every record written: {} events, {} visits, {} account changes",
        held[0], held[1], held[2]
    );
    Ok(())
}

pub fn run(args: &GenerateArgs, config: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.out.is_some() || args.kafka || args.lake.is_some(),
        "nowhere to write: give --out DIR (and --hooks URL to send the events as transactions), --kafka or --lake DIR"
    );
    anyhow::ensure!(
        args.hooks.is_none() || args.out.is_some(),
        "--hooks needs --out: visits and accounts reach the hooks through the database files there"
    );
    let mut sim = Simulation::new(args.simulation.spec())?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut sinks = Sinks::default();
        if let Some(out) = &args.out {
            sinks.databases = Some(SynapseDatabases::create(out, &sim).await?);
            sinks.database_events = args.hooks.is_none();
        }
        if let Some(url) = &args.hooks {
            sinks.hooks = Some(HooksSender::new(url, hooks_tokens(config, &sim)?)?);
        }
        let mapping = || -> anyhow::Result<FastMapping> {
            let key = super::hooks::pseudonym_key(config)?;
            let anonymizers = sim
                .spec
                .federation
                .servers
                .iter()
                .map(|s| super::hooks::anonymizer(config, &key, &s.name))
                .collect();
            Ok(FastMapping { anonymizers })
        };
        if args.kafka {
            let producer = super::hooks::producer(config, Arc::new(HooksMetrics::default()))?;
            let lag = (args.max_lag > 0)
                .then(|| {
                    let mut client = rdkafka::ClientConfig::new();
                    client.set("bootstrap.servers", &config.kafka.brokers);
                    for (key, value) in &config.kafka.properties {
                        client.set(key, value);
                    }
                    LagGuard::new(&client, &config.ingest.group_id, args.max_lag)
                })
                .transpose()?;
            sinks.kafka = Some(KafkaFastPath {
                mapping: mapping()?,
                producer,
                lag,
                published: [0; 3],
            });
        }
        if let Some(dir) = &args.lake {
            sinks.lake = Some(lake_fast_path(dir, mapping()?).await?);
        }
        let started = Instant::now();
        let totals = run_months(&mut sim, &mut sinks, |_| async { Ok(()) }).await?;
        if let Some(lake) = &sinks.lake {
            check_lake_holds(lake).await?;
        }
        if let Some(kafka) = &sinks.kafka {
            println!(
                "published to Kafka: {} events, {} visits, {} account changes",
                kafka.published[0], kafka.published[1], kafka.published[2]
            );
        }
        sinks.finish().await;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "generated {} months: {} events, {} visits, {} accounts created, {} transactions in {:.1} s ({:.0} events/s)",
            totals.months,
            totals.events,
            totals.visits,
            totals.accounts_created,
            totals.transactions,
            seconds,
            totals.events as f64 / seconds.max(1e-9)
        );
        anyhow::Ok(())
    })
}
