//! Drives a `Simulation` month by month into where a homeserver's activity goes: its
//! database (Synapse-schema SQLite files, for the database tap and `mxpulse backfill`), its
//! appservice transactions (sent to a running `mxpulse hooks`), and,
//! for large benchmark runs, records straight to Kafka, or straight into the lake, through
//! the hooks' own anonymizer.
//! `mxpulse generate` and `mxpulse demo` both run this.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use mxpulse_hooks::Anonymizer;
use mxpulse_hooks::anonymizer::{UserRow, VisitRow};
use mxpulse_hooks::event_mapping::Mapped;
use mxpulse_hooks::producer::RecordProducer;
use mxpulse_schemas::vocabulary::{AccountChange, Source, UserType};
use mxpulse_schemas::{AccountRecord, EventRecord, UnixMillis, VisitRecord};
use mxpulse_simulator::synapse_sqlite::SynapseDatabases;
use mxpulse_simulator::{Activity, SimEvent, Simulation, matrix};

/// How long a transaction is retried while the hooks answer 5xx or cannot be reached (Synapse
/// retries forever; a generator run gives up and says so).
const HOOKS_RETRY_FOR: Duration = Duration::from_secs(600);

/// Sends appservice transactions to `mxpulse hooks`, as each homeserver's Synapse would: one
/// server's transactions in order, the servers side by side.
pub struct HooksSender {
    client: reqwest::Client,
    url: String,
    /// The hs_token of each simulated server, by index.
    tokens: Vec<String>,
    sent: Vec<u64>,
}

impl HooksSender {
    pub fn new(url: &str, tokens: Vec<String>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            client,
            url: url.trim_end_matches('/').to_owned(),
            sent: vec![0; tokens.len()],
            tokens,
        })
    }

    /// Sends `events` in transactions of at most 100; returns how many transactions.
    pub async fn send(
        &mut self,
        sim: &Simulation,
        events: &[SimEvent],
        label: &str,
    ) -> anyhow::Result<usize> {
        let batches = matrix::per_server_batches(sim, events);
        let mut per_server = Vec::new();
        for (server, batches) in batches.iter().enumerate() {
            let bodies: Vec<(String, Vec<u8>)> = batches
                .iter()
                .enumerate()
                .map(|(i, batch)| {
                    let txn_id = format!("{label}.{}", self.sent[server] + i as u64);
                    (txn_id, sim.transaction_body(batch))
                })
                .collect();
            self.sent[server] += bodies.len() as u64;
            per_server.push((server, bodies));
        }
        let this = &*self;
        let sends = per_server.iter().map(|(server, bodies)| async move {
            for (txn_id, body) in bodies {
                this.put(*server, txn_id, body).await?;
            }
            anyhow::Ok(bodies.len())
        });
        let counts = futures::future::try_join_all(sends).await?;
        Ok(counts.into_iter().sum())
    }

    async fn put(&self, server: usize, txn_id: &str, body: &[u8]) -> anyhow::Result<()> {
        let url = format!("{}/_matrix/app/v1/transactions/{txn_id}", self.url);
        let started = Instant::now();
        let mut wait = Duration::from_millis(250);
        loop {
            let answer = self
                .client
                .put(&url)
                .bearer_auth(&self.tokens[server])
                .header("content-type", "application/json")
                .body(body.to_vec())
                .send()
                .await;
            let retry_reason = match answer {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) if response.status().is_server_error() => {
                    format!("hooks answered {}", response.status())
                }
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    anyhow::bail!("hooks refused transaction {txn_id}: {status} {text}");
                }
                Err(error) => format!("hooks unreachable: {error}"),
            };
            if started.elapsed() > HOOKS_RETRY_FOR {
                anyhow::bail!(
                    "transaction {txn_id} not accepted after {HOOKS_RETRY_FOR:?}: {retry_reason}"
                );
            }
            tracing::warn!(txn_id, %retry_reason, "retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }
}

/// The hooks' own mapping of simulated activity to records (one `Anonymizer` per simulated
/// server, by index), without the HTTP hop: the fast paths' records are the hooks'.
pub struct FastMapping {
    pub anonymizers: Vec<Anonymizer>,
}

impl FastMapping {
    fn events(&self, sim: &Simulation, events: &[SimEvent]) -> Vec<EventRecord> {
        events
            .iter()
            .filter_map(|event| {
                let anonymizer = &self.anonymizers[sim.origin_server(event)];
                match anonymizer.event(&sim.render(event), Source::Appservice) {
                    Ok(Mapped::Record(record)) => Some(*record),
                    _ => None,
                }
            })
            .collect()
    }

    fn visits(&self, sim: &Simulation, activity: &Activity) -> Vec<VisitRecord> {
        activity
            .visits
            .iter()
            .filter_map(|visit| {
                let server = sim.population.accounts[visit.account as usize].server as usize;
                let (user_id, device_id, timestamp_ms, user_agent) = sim.visit_row(visit);
                self.anonymizers[server].visit(&VisitRow {
                    user_id,
                    device_id: Some(device_id),
                    timestamp_ms,
                    user_agent: Some(user_agent.to_owned()),
                })
            })
            .collect()
    }

    fn accounts(
        &self,
        sim: &Simulation,
        month_start_ms: i64,
        activity: &Activity,
    ) -> Vec<AccountRecord> {
        let mut accounts: Vec<_> = activity
            .created
            .iter()
            .map(|&account| {
                let a = &sim.population.accounts[account as usize];
                self.anonymizers[a.server as usize].account_created(&UserRow {
                    name: sim.user_id(account),
                    creation_ts_s: a.created_s,
                    user_type: None,
                    is_guest: false,
                    appservice_id: None,
                    deactivated: false,
                })
            })
            .collect();
        for &account in &activity.deactivated {
            let a = &sim.population.accounts[account as usize];
            let ts = a.deactivated_s.map_or(month_start_ms, |s| s * 1000);
            accounts.push(self.anonymizers[a.server as usize].account(
                &sim.user_id(account),
                UnixMillis(ts),
                AccountChange::Deactivated,
                UserType::Regular,
            ));
        }
        accounts
    }
}

/// Records straight to Kafka: the hooks' mapping without the HTTP hop, for large runs.
pub struct KafkaFastPath {
    pub mapping: FastMapping,
    pub producer: RecordProducer,
    /// Waits for the ingest when it falls behind, so that the broker never has to drop what
    /// was not read yet (a broker keeps a partition up to its retention: the dev broker 5 MB).
    pub lag: Option<LagGuard>,
    /// Records published, per table.
    pub published: [u64; 3],
}

/// How far behind the ingest's consumer group may fall, per partition, before publishing
/// waits for it.
pub struct LagGuard {
    consumer: rdkafka::consumer::BaseConsumer,
    group: String,
    max_lag: i64,
    /// How long the lag may stay over the bound without the ingest reading anything.
    patience: Duration,
}

impl LagGuard {
    pub fn new(client: &rdkafka::ClientConfig, group: &str, max_lag: i64) -> anyhow::Result<Self> {
        let consumer = client
            .clone()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .context("Kafka client for the lag")?;
        Ok(Self {
            consumer,
            group: group.to_owned(),
            max_lag,
            patience: Duration::from_secs(120),
        })
    }

    /// The largest lag of the group over the record topics' partitions, and where.
    fn lag(&self) -> anyhow::Result<(i64, String)> {
        use rdkafka::consumer::Consumer as _;
        let timeout = Duration::from_secs(10);
        let mut list = rdkafka::TopicPartitionList::new();
        let mut highs = Vec::new();
        for topic in mxpulse_schemas::topics::RECORD_TOPICS {
            let metadata = self.consumer.fetch_metadata(Some(topic), timeout)?;
            let partitions = metadata
                .topics()
                .first()
                .map_or(0, |t| t.partitions().len());
            for partition in 0..partitions as i32 {
                let (low, high) = self.consumer.fetch_watermarks(topic, partition, timeout)?;
                list.add_partition(topic, partition);
                highs.push((topic, partition, low, high));
            }
        }
        let committed = self.consumer.committed_offsets(list, timeout)?;
        let mut worst = (0, String::new());
        for (topic, partition, low, high) in highs {
            let at = committed
                .find_partition(topic, partition)
                .and_then(|e| e.offset().to_raw())
                .filter(|o| *o >= 0)
                .unwrap_or(low);
            if high - at > worst.0 {
                worst = (high - at, format!("{topic} partition {partition}"));
            }
        }
        Ok(worst)
    }

    /// Returns once the group's lag is under the bound; fails when the ingest reads nothing
    /// for `patience` while it is over.
    pub async fn wait(&self) -> anyhow::Result<()> {
        let mut since_progress = Instant::now();
        let mut last = i64::MAX;
        let mut said = false;
        loop {
            let (lag, where_) = tokio::task::block_in_place(|| self.lag())?;
            if lag <= self.max_lag {
                return Ok(());
            }
            if lag < last {
                since_progress = Instant::now();
                last = lag;
            }
            if !said {
                tracing::info!(lag, %where_, group = %self.group, "waiting for the ingest to read what is published");
                said = true;
            }
            anyhow::ensure!(
                since_progress.elapsed() < self.patience,
                "the ingest (group {}) read nothing for {:?} while {lag} messages of {where_} wait: \
                 start `mxpulse ingest`; publishing more would make the broker drop messages \
                 before they are read (--max-lag bounds what waits)",
                self.group,
                self.patience
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Records per publish call, or per lake commit.
const PUBLISH_CHUNK: usize = 10_000;
const LAKE_CHUNK: usize = 2_000_000;

impl KafkaFastPath {
    async fn publish(
        &mut self,
        sim: &Simulation,
        month_start_ms: i64,
        activity: &Activity,
    ) -> anyhow::Result<()> {
        for chunk in activity.events.chunks(PUBLISH_CHUNK) {
            let records = self.mapping.events(sim, chunk);
            self.producer.publish(&records).await?;
            self.published[0] += records.len() as u64;
            self.keep_pace().await?;
        }
        for chunk in self.mapping.visits(sim, activity).chunks(PUBLISH_CHUNK) {
            self.producer.publish(chunk).await?;
            self.published[1] += chunk.len() as u64;
            self.keep_pace().await?;
        }
        let accounts = self.mapping.accounts(sim, month_start_ms, activity);
        self.producer.publish(&accounts).await?;
        self.published[2] += accounts.len() as u64;
        Ok(())
    }

    async fn keep_pace(&self) -> anyhow::Result<()> {
        match &self.lag {
            Some(lag) => lag.wait().await,
            None => Ok(()),
        }
    }
}

/// Records straight into the lake through the ingest's writer, without Kafka: the same
/// records as the Kafka path, for building a large lake to measure the figures on. Each
/// record is written once (a fresh lake; nothing here deduplicates).
pub struct LakeFastPath {
    pub mapping: FastMapping,
    pub events: deltalake::DeltaTable,
    pub visits: deltalake::DeltaTable,
    pub accounts: deltalake::DeltaTable,
    /// Records written, per table.
    pub written: [u64; 3],
}

impl LakeFastPath {
    async fn write(
        &mut self,
        sim: &Simulation,
        month_start_ms: i64,
        activity: &Activity,
    ) -> anyhow::Result<()> {
        for chunk in activity.events.chunks(LAKE_CHUNK) {
            let records = self.mapping.events(sim, chunk);
            self.written[0] += records.len() as u64;
            mxpulse_ingest::lake::append(&mut self.events, records).await?;
        }
        let visits = self.mapping.visits(sim, activity);
        self.written[1] += visits.len() as u64;
        mxpulse_ingest::lake::append(&mut self.visits, visits).await?;
        let accounts = self.mapping.accounts(sim, month_start_ms, activity);
        self.written[2] += accounts.len() as u64;
        mxpulse_ingest::lake::append(&mut self.accounts, accounts).await?;
        Ok(())
    }
}

/// Where generated activity goes; any combination.
#[derive(Default)]
pub struct Sinks {
    pub databases: Option<SynapseDatabases>,
    /// Whether the databases get the `events` and `event_json` rows (a homeserver's history
    /// for `mxpulse backfill`); off when the events reach the hooks as transactions.
    pub database_events: bool,
    pub hooks: Option<HooksSender>,
    pub kafka: Option<KafkaFastPath>,
    pub lake: Option<LakeFastPath>,
}

/// What a run produced.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenerationTotals {
    pub months: usize,
    pub events: usize,
    pub visits: usize,
    pub accounts_created: usize,
    pub transactions: usize,
}

impl Sinks {
    /// Writes the accounts that exist before the first month (databases only: they are
    /// history, not activity of the period).
    pub async fn start(&mut self, sim: &Simulation) -> anyhow::Result<()> {
        if let Some(databases) = &self.databases {
            databases.write_accounts(sim, sim.accounts_before()).await?;
        }
        Ok(())
    }

    /// Hands one month (or live slice) of activity to every sink. `label` prefixes the
    /// transaction IDs (unique per run).
    pub async fn deliver(
        &mut self,
        sim: &Simulation,
        label: &str,
        period_start_ms: i64,
        activity: &Activity,
        totals: &mut GenerationTotals,
    ) -> anyhow::Result<()> {
        if let Some(databases) = &mut self.databases {
            databases
                .write_accounts(sim, activity.created.iter().copied())
                .await?;
            databases
                .write_deactivations(sim, &activity.deactivated)
                .await?;
            databases.write_visits(sim, &activity.visits).await?;
            databases.write_directory(sim, &activity.events).await?;
            if self.database_events {
                databases.write_events(sim, &activity.events).await?;
            }
        }
        if let Some(hooks) = &mut self.hooks {
            totals.transactions += hooks.send(sim, &activity.events, label).await?;
        }
        if let Some(kafka) = &mut self.kafka {
            kafka.publish(sim, period_start_ms, activity).await?;
        }
        if let Some(lake) = &mut self.lake {
            lake.write(sim, period_start_ms, activity).await?;
        }
        totals.events += activity.events.len();
        totals.visits += activity.visits.len();
        totals.accounts_created += activity.created.len();
        Ok(())
    }

    pub async fn finish(self) {
        if let Some(databases) = self.databases {
            databases.close().await;
        }
    }
}
