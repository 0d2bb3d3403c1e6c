//! `mxpulse demo`: a local federation flowing end to end into the figures, on embedded
//! defaults. It starts a dev broker, the hooks, the ingest and the query service (child
//! processes of this binary, configured by a file it writes), generates the history with the
//! simulator (events as appservice transactions to the hooks, visits and accounts through
//! Synapse-schema databases replayed by the hooks' backfill), then keeps a live trickle
//! flowing (the hooks' database tap picks up today's visits) until Ctrl-C, which stops
//! everything it started.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use mxpulse_hooks::backfill::{BackfillParts, backfill};
use mxpulse_hooks::metrics::HooksMetrics;
use mxpulse_hooks::synapse_db::SynapseDb;
use mxpulse_simulator::synapse_sqlite::SynapseDatabases;
use mxpulse_simulator::{Simulation, day_ms, next_month};

use super::generate::{SimulationArgs, hooks_tokens, run_months};
use crate::config::Config;
use crate::generation::{GenerationTotals, HooksSender, Sinks};
use crate::services::ServiceProcess;

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub simulation: SimulationArgs,
    /// Working directory (lake, databases, logs); emptied at start if a previous demo made it.
    #[arg(long, default_value = "mxpulse-demo")]
    pub dir: PathBuf,
    /// Figures API and SQL over HTTP.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: String,
    /// PostgreSQL wire protocol (psql). Not 5432, so a local PostgreSQL does not collide.
    #[arg(long, default_value = "127.0.0.1:5433")]
    pub pgwire: String,
    /// The hooks' appservice endpoint.
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub hooks_listen: String,
    /// The ingest's /metrics and /health.
    #[arg(long, default_value = "127.0.0.1:9101")]
    pub ingest_listen: String,
    /// Live activity: one slice every this many milliseconds...
    #[arg(long, default_value_t = 2_000)]
    pub trickle_interval_ms: u64,
    /// ...of this many messages.
    #[arg(long, default_value_t = 20)]
    pub trickle_messages: usize,
}

/// Marks a directory `mxpulse demo` made, so that it never empties anything else.
const MARKER: &str = ".mxpulse-demo";
const GRACE: Duration = Duration::from_secs(20);
/// How long the history may take to reach the figures after it was sent.
const IN_FIGURES_WITHIN: Duration = Duration::from_secs(900);

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let mut sim = Simulation::new(args.simulation.spec())?;
    let dir = prepare_dir(&args.dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut services = Vec::new();
        let outcome = tokio::select! {
            result = run_demo(args, &dir, &mut sim, &mut services) => result,
            () = super::shutdown_signal() => {
                println!("stopping…");
                Ok(())
            }
        };
        // Stop in the order data flows, so each one can hand over what it holds.
        for name in ["hooks", "ingest", "serve", "dev-broker"] {
            if let Some(i) = services
                .iter()
                .position(|s: &ServiceProcess| s.name == name)
            {
                let service = services.remove(i);
                match service.stop(GRACE).await {
                    Ok(status) => tracing::info!(service = name, %status, "stopped"),
                    Err(error) => tracing::warn!(service = name, "stopping: {error:#}"),
                }
            }
        }
        println!("demo stopped; its files are in {}", dir.display());
        outcome
    })
}

/// Creates the working directory, or empties one a previous demo left.
fn prepare_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        let is_demo = dir.join(MARKER).exists();
        let is_empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        anyhow::ensure!(
            is_demo || is_empty,
            "{} exists and was not made by `mxpulse demo`: choose another --dir",
            dir.display()
        );
        if is_demo {
            std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
        }
    }
    for sub in ["logs", "synapse", "hooks-state"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(
        dir.join(MARKER),
        b"made by mxpulse demo; emptied by the next one\n",
    )?;
    std::path::absolute(dir).context("resolving the demo directory")
}

/// A random token (hex of 16 bytes from the OS).
fn token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

struct DemoAccess {
    analyst: String,
    viewer: String,
}

/// The configuration every service of the demo reads.
fn write_config(
    args: &DemoArgs,
    dir: &Path,
    brokers: &str,
    sim: &Simulation,
) -> anyhow::Result<(PathBuf, DemoAccess)> {
    let key_path = dir.join("pseudonym.key");
    std::fs::write(&key_path, format!("{}{}\n", token()?, token()?))?;
    let access = DemoAccess {
        analyst: token()?,
        viewer: token()?,
    };
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut config = format!(
        "# Written by `mxpulse demo`.\n[kafka]\nbrokers = {}\n\n[pseudonym]\nkey_file = {}\n\n\
         [lake]\nroot = {}\n# Figures fill in month by month: the rollups follow the lake closely.\nrollup_interval_ms = 10000\n\n[hooks]\nlisten = {}\nstate_dir = {}\ntap_interval_ms = 2000\n\n\
         [ingest]\nlisten = {}\n\n\
         [query]\nlisten = {}\npgwire_listen = {}\nrefresh_ms = 1000\n\n\
         [reports]\n# The history arrives months after they closed: reports are made when asked, not\n# frozen ahead of the history.\nprepare_interval_ms = 0\n\n\
         [[query.principals]]\nname = \"analyst\"\nrole = \"analyst\"\ntoken = {}\n\n\
         [[query.principals]]\nname = \"viewer\"\nrole = \"viewer\"\ntoken = {}\n",
        quote(brokers),
        quote(&key_path.display().to_string()),
        quote(&dir.join("lake").display().to_string()),
        quote(&args.hooks_listen),
        quote(&dir.join("hooks-state").display().to_string()),
        quote(&args.ingest_listen),
        quote(&args.http),
        quote(&args.pgwire),
        quote(&access.analyst),
        quote(&access.viewer),
    );
    // The rollout the simulated history carries (an assumption: docs/design.md §8), drawn on
    // the charts like any operator's annotation.
    let (y, m, d) = mxpulse_simulator::population::TCHAP_X_LAUNCH;
    let launch = chrono::NaiveDate::from_ymd_opt(y, m, d)
        .ok_or_else(|| anyhow::anyhow!("the Tchap X launch {y}-{m}-{d} is no day"))?;
    let annotations = dir.join("annotations.toml");
    std::fs::write(
        &annotations,
        format!(
            "# Written by `mxpulse demo`: the rollouts of the simulated history.\n\
             [[annotation]]\nfrom = {launch}\nto = {end}\n\
             fr = \"Tchap X publié (hypothèse de la démo)\"\n\
             en = \"Tchap X released (the demo's assumption)\"\n",
            end = launch + chrono::Days::new(6),
        ),
    )?;
    config.push_str(&format!(
        "\n[dashboards]\nannotations_file = {}\n",
        quote(&annotations.display().to_string())
    ));
    for server in &sim.spec.federation.servers {
        config.push_str(&format!(
            "\n[[hooks.homeservers]]\nserver_name = {}\nhs_token = {}\nsynapse_db = {}\n",
            quote(&server.name),
            quote(&token()?),
            quote(&database_path(dir, &server.name).display().to_string()),
        ));
    }
    let path = dir.join("mxpulse.toml");
    std::fs::write(&path, config)?;
    Ok((path, access))
}

fn database_path(dir: &Path, server: &str) -> PathBuf {
    dir.join("synapse").join(format!("{server}.sqlite"))
}

async fn wait_for_file(path: &Path, broker: &mut ServiceProcess) -> anyhow::Result<String> {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Ok(text.trim().to_owned());
        }
        if let Some(status) = broker.exited() {
            anyhow::bail!("the dev broker exited ({status})");
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the dev broker did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_demo(
    args: &DemoArgs,
    dir: &Path,
    sim: &mut Simulation,
    services: &mut Vec<ServiceProcess>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let logs = dir.join("logs");
    let address_file = dir.join("broker.address");
    services.push(ServiceProcess::spawn(
        "dev-broker",
        &[
            "dev-broker",
            "--partitions",
            "8",
            "--address-file",
            &address_file.display().to_string(),
        ],
        None,
        &logs.join("dev-broker.log"),
    )?);
    let brokers = wait_for_file(&address_file, services.last_mut().context("broker")?).await?;
    let (config_path, access) = write_config(args, dir, &brokers, sim)?;
    let config = Config::load(Some(&config_path), std::iter::empty::<(String, String)>())
        .context("the demo's own configuration")?;

    // The homeservers' databases exist before the hooks' taps look for them.
    let databases = SynapseDatabases::create(&dir.join("synapse"), sim).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    for (name, health) in [
        ("hooks", format!("http://{}/health", args.hooks_listen)),
        ("ingest", format!("http://{}/health", args.ingest_listen)),
        ("serve", format!("http://{}/health", args.http)),
    ] {
        let mut service = ServiceProcess::spawn(
            name,
            &[name],
            Some(&config_path),
            &logs.join(format!("{name}.log")),
        )?;
        let waited = service
            .wait_healthy(&client, &health, Duration::from_secs(60))
            .await;
        services.push(service);
        waited.with_context(|| format!("see {}", logs.join(format!("{name}.log")).display()))?;
    }
    print_where_to_look(args, dir, sim, &access, started.elapsed());

    let mut sinks = Sinks {
        databases: Some(databases),
        database_events: false,
        hooks: Some(HooksSender::new(
            &format!("http://{}", args.hooks_listen),
            hooks_tokens(&config, sim)?,
        )?),
        kafka: None,
        lake: None,
    };
    let history = Backfiller::new(&config, dir, sim).await?;
    let generation_started = Instant::now();
    let totals = run_months(sim, &mut sinks, |month| history.month(month)).await?;
    report_history(&totals, generation_started.elapsed());
    compact(dir, &config_path, &logs).await?;
    // Announce the history only once a viewer sees it whole.
    match super::in_figures::wait(&config, IN_FIGURES_WITHIN).await {
        Ok(took) => println!(
            "history in the figures after {:.1} s; live activity flowing",
            took.as_secs_f64()
        ),
        Err(error) => println!(
            "the figures do not hold all the history yet ({error:#}); live activity flowing"
        ),
    }

    // The live trickle: now, in the current month.
    let interval = Duration::from_millis(args.trickle_interval_ms.max(100));
    let mut last = now_ms();
    let mut live = GenerationTotals::default();
    let mut tick = 0u64;
    let mut last_report = Instant::now();
    loop {
        tokio::time::sleep(interval).await;
        let now = now_ms();
        tick += 1;
        let slice = sim.live_slice(last, now, args.trickle_messages, tick);
        sinks
            .deliver(sim, &format!("live{tick}"), last, &slice, &mut live)
            .await
            .context("live activity")?;
        last = now;
        if last_report.elapsed() > Duration::from_secs(60) {
            println!(
                "live: {} events, {} visits so far",
                live.events, live.visits
            );
            last_report = Instant::now();
        }
        for service in services.iter_mut() {
            if let Some(status) = service.exited() {
                anyhow::bail!("{} exited ({status}); see {}", service.name, logs.display());
            }
        }
    }
}

/// The history arrived in many small commits; one file per day and table makes every later
/// query open a few hundred files instead of thousands (`mxpulse lake compact`, safe while
/// the ingest keeps writing).
async fn compact(dir: &Path, config: &Path, logs: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut compaction = ServiceProcess::spawn(
        "lake-compact",
        &["lake", "compact"],
        Some(config),
        &logs.join("lake-compact.log"),
    )?;
    let status = compaction.wait().await?;
    anyhow::ensure!(
        status.success(),
        "lake compaction failed; see {}",
        logs.join("lake-compact.log").display()
    );
    println!(
        "lake compacted in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        dir.join("lake").display()
    );
    Ok(())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn print_where_to_look(
    args: &DemoArgs,
    dir: &Path,
    sim: &Simulation,
    access: &DemoAccess,
    took: Duration,
) {
    let spec = &sim.spec;
    let last = spec.to.pred_opt().unwrap_or(spec.to);
    println!(
        "mxpulse demo: {} homeservers at scale {}, history {} to {}, then live activity (services up in {:.1} s)",
        spec.federation.servers.len(),
        spec.scale,
        spec.from.format("%Y-%m"),
        last.format("%Y-%m"),
        took.as_secs_f64()
    );
    println!("  analyst token  {}", access.analyst);
    println!("  viewer token   {}", access.viewer);
    // The history's last 24 months (a period of more is refused).
    let first_shown = last
        .checked_sub_months(chrono::Months::new(23))
        .unwrap_or(spec.from)
        .max(spec.from);
    println!(
        "  dashboards     http://{}/d/overview?from={}&to={}   (log in with a token)",
        args.http,
        first_shown.format("%Y-%m"),
        last.format("%Y-%m")
    );
    // A month of the Games if the history has it, else its last month.
    let report_month = chrono::NaiveDate::from_ymd_opt(2024, 7, 1)
        .filter(|july| (spec.from..=last).contains(july))
        .unwrap_or(last);
    println!(
        "  reports        http://{}/reports   curl -OJ -H 'Authorization: Bearer {}' http://{}/reports/{}.pdf",
        args.http,
        access.viewer,
        args.http,
        report_month.format("%Y-%m")
    );
    println!(
        "  figures        http://{}/api/v1/figures/monthly?from={}&to={}",
        args.http,
        spec.from.format("%Y-%m"),
        chrono::Utc::now().format("%Y-%m")
    );
    println!(
        "                 curl -H 'Authorization: Bearer {}' 'http://{}/api/v1/figures/monthly?from={}&to={}'",
        access.viewer,
        args.http,
        spec.from.format("%Y-%m"),
        last.format("%Y-%m")
    );
    println!(
        "  SQL            curl -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' -d '{{\"sql\": \"SELECT kind, count(*) FROM rooms GROUP BY kind\"}}' http://{}/api/v1/sql",
        access.analyst, args.http
    );
    let (host, port) = args
        .pgwire
        .rsplit_once(':')
        .unwrap_or((&args.pgwire, "5433"));
    println!(
        "  psql           PGPASSWORD={} psql -h {host} -p {port} -U analyst mxpulse",
        access.analyst
    );
    println!(
        "  API docs       http://{}/api/openapi.json   metrics: http://{}/metrics http://{}/metrics http://{}/metrics",
        args.http, args.hooks_listen, args.ingest_listen, args.http
    );
    println!(
        "  files          {} (logs in logs/, configuration mxpulse.toml)",
        dir.display()
    );
    println!(
        "Generating the history now; figures fill in month by month. Ctrl-C stops everything."
    );
}

fn report_history(totals: &GenerationTotals, took: Duration) {
    let seconds = took.as_secs_f64().max(1e-9);
    println!(
        "history generated: {} months, {} events in {} transactions, {} visits, {} accounts in {:.1} s ({:.0} events/s)",
        totals.months,
        totals.events,
        totals.transactions,
        totals.visits,
        totals.accounts_created,
        seconds,
        totals.events as f64 / seconds
    );
}

/// Replays each generated month's visits and accounts from the databases, with the hooks'
/// own backfill (what an operator runs when connecting a homeserver with history).
struct Backfiller {
    servers: Vec<(SynapseDb, mxpulse_hooks::Anonymizer)>,
    producer: mxpulse_hooks::producer::RecordProducer,
}

impl Backfiller {
    async fn new(config: &Config, dir: &Path, sim: &Simulation) -> anyhow::Result<Self> {
        let key = super::hooks::pseudonym_key(config)?;
        let producer = super::hooks::producer(config, Arc::new(HooksMetrics::default()))?;
        let mut servers = Vec::new();
        for server in &sim.spec.federation.servers {
            let db =
                SynapseDb::connect(&database_path(dir, &server.name).display().to_string()).await?;
            servers.push((db, super::hooks::anonymizer(config, &key, &server.name)));
        }
        Ok(Self { servers, producer })
    }

    async fn month(&self, month: chrono::NaiveDate) -> anyhow::Result<()> {
        let parts = BackfillParts {
            events: false,
            visits: true,
            accounts: true,
        };
        let (from, until) = (day_ms(month), day_ms(next_month(month)));
        // The homeservers side by side, as their operators would run it.
        let servers = self.servers.iter().map(|(db, anonymizer)| {
            backfill(db, anonymizer, &self.producer, from, until, parts, false)
        });
        futures::future::try_join_all(servers).await?;
        Ok(())
    }
}
