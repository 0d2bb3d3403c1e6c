//! `mxpulse hooks`: the appservice endpoint and the database taps of every configured
//! homeserver, in one process, until SIGINT or SIGTERM. `mxpulse hooks registration` writes
//! the Synapse registration of a new homeserver.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mxpulse_hooks::appservice::{self, AppserviceState, Homeserver};
use mxpulse_hooks::db_tap::DbTap;
use mxpulse_hooks::email_domain::Learned;
use mxpulse_hooks::metrics::HooksMetrics;
use mxpulse_hooks::producer::{ProducerConfig, RecordProducer};
use mxpulse_hooks::registration::Registration;
use mxpulse_hooks::{Anonymizer, DomainReader, PseudonymKey, Pseudonymizer, TCHAP_DOMAINS};
use zeroize::Zeroizing;

use crate::config::{Config, PSEUDONYM_KEY_VAR};

#[derive(Debug, Args)]
pub struct HooksArgs {
    #[command(subcommand)]
    command: Option<HooksCommand>,
}

#[derive(Debug, Subcommand)]
enum HooksCommand {
    /// Write a Synapse appservice registration for a homeserver and the matching
    /// [[hooks.homeservers]] table (to stdout and stderr without --out and --table).
    Registration {
        /// Synapse's server_name.
        #[arg(long)]
        server: String,
        /// The address Synapse reaches the hooks at.
        #[arg(long, default_value = "http://127.0.0.1:9100")]
        url: String,
        /// Write the registration to this new file, readable by its owner only (it holds
        /// both tokens).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Write the [[hooks.homeservers]] table to this new file, owner only too.
        #[arg(long)]
        table: Option<std::path::PathBuf>,
    },
    /// Show the client family and platform the configured rules give user agents (the
    /// arguments, else one per line of standard input, e.g. Synapse's
    /// `SELECT user_agent FROM user_daily_visits`), then how many of each family: to try an
    /// operator's [[hooks.client_rules]] before deploying them. Nothing is published.
    Classify {
        /// User agents to classify; none: read standard input.
        user_agents: Vec<String>,
    },
}

/// Writes `text` to the new file `path`, 0600 (an existing file is not replaced: its tokens
/// may be in use).
fn write_secret(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn run(args: &HooksArgs, config: &Config) -> anyhow::Result<()> {
    match &args.command {
        Some(HooksCommand::Registration {
            server,
            url,
            out,
            table,
        }) => {
            let registration = Registration::generate(server, url)?;
            let table_text = format!(
                "# Add to the mxpulse configuration file:\n{}",
                registration.to_config_toml()
            );
            match out {
                Some(path) => write_secret(path, &registration.to_yaml())?,
                None => print!("{}", registration.to_yaml()),
            }
            match table {
                Some(path) => write_secret(path, &table_text)?,
                None => eprintln!("{table_text}"),
            }
            Ok(())
        }
        Some(HooksCommand::Classify { user_agents }) => classify(config, user_agents),
        None => serve(config),
    }
}

/// `mxpulse hooks classify`: each user agent with its family and platform, then the count of
/// each family. The user agents are the operator's own input and are printed back to them
/// only.
fn classify(config: &Config, user_agents: &[String]) -> anyhow::Result<()> {
    use std::io::{BufRead as _, Write as _};
    let rules = config.client_rules()?;
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    let mut out = std::io::stdout().lock();
    let mut one = |ua: &str| -> std::io::Result<()> {
        let found = rules.classify(Some(ua));
        *counts.entry(found.family.to_string()).or_default() += 1;
        writeln!(out, "{}\t{}\t{ua}", found.family, found.platform.as_str())
    };
    if user_agents.is_empty() {
        for line in std::io::stdin().lock().lines() {
            let line = line.context("cannot read standard input")?;
            if !line.trim().is_empty() {
                one(&line)?;
            }
        }
    } else {
        for ua in user_agents {
            one(ua)?;
        }
    }
    for (family, count) in &counts {
        eprintln!("{family}: {count}");
    }
    Ok(())
}

/// The pseudonymization key from `pseudonym.key_file` or `MXPULSE_PSEUDONYM_KEY`.
pub fn pseudonym_key(config: &Config) -> anyhow::Result<PseudonymKey> {
    if !config.pseudonym.key_file.as_os_str().is_empty() {
        return Ok(PseudonymKey::read_file(&config.pseudonym.key_file)?);
    }
    match std::env::var(PSEUDONYM_KEY_VAR) {
        Ok(value) => Ok(PseudonymKey::from_bytes(
            Zeroizing::new(value.into_bytes()),
            PSEUDONYM_KEY_VAR,
        )?),
        Err(_) => Err(mxpulse_hooks::KeyError::Missing {
            env_var: PSEUDONYM_KEY_VAR,
        }
        .into()),
    }
}

/// One anonymizer per homeserver, all under the one key; its domain reader starts from what
/// was learned of the server's domains before (`{state_dir}/{server}.domains.json`).
pub fn anonymizer(config: &Config, key: &PseudonymKey, server: &str) -> Anonymizer {
    let learned = std::fs::read(domains_file(config, server))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Learned>(&bytes).ok())
        .unwrap_or_default();
    let domains = DomainReader::new(
        TCHAP_DOMAINS
            .iter()
            .copied()
            .chain(config.hooks.known_domains.iter().map(String::as_str)),
    )
    .learning(
        config.privacy.min_users as usize,
        learned,
        Pseudonymizer::new(key),
    );
    // The rules were checked when the configuration was loaded (`Config::validate`).
    let clients = config.client_rules().unwrap_or_default();
    Anonymizer::new(server, Arc::new(Pseudonymizer::new(key)), Arc::new(domains))
        .with_client_rules(clients)
}

fn domains_file(config: &Config, server: &str) -> std::path::PathBuf {
    config
        .hooks
        .state_dir
        .join(format!("{server}.domains.json"))
}

/// Writes what `anonymizer` learned of its server's domains, merged with the file (another
/// process of the same server, a backfill, may have learned others), atomically.
pub fn save_domains(config: &Config, anonymizer: &Anonymizer) -> anyhow::Result<()> {
    let Some(mut learned) = anonymizer.domains().take_learned() else {
        return Ok(());
    };
    let path = domains_file(config, anonymizer.server());
    if let Some(before) = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Learned>(&bytes).ok())
    {
        learned.domains.extend(before.domains);
        for (domain, users) in before.candidates {
            if !learned.domains.contains(&domain) {
                learned.candidates.entry(domain).or_default().extend(users);
            }
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&learned)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// Learns the server's domains from every account in its database before anything is
/// published: the first users of a domain are not published as `other` for want of the others.
async fn learn_domains(anonymizer: &Anonymizer, database_url: &str) {
    let learned = async {
        let db = mxpulse_hooks::synapse_db::SynapseDb::connect(database_url).await?;
        let names = db.user_names().await?;
        for name in &names {
            anonymizer.domain_of(name);
        }
        Ok::<usize, mxpulse_hooks::synapse_db::SynapseDbError>(names.len())
    }
    .await;
    match learned {
        Ok(users) => tracing::info!(
            server = anonymizer.server(),
            users,
            "domains learned from the accounts"
        ),
        Err(error) => {
            tracing::warn!(server = anonymizer.server(), %error, "cannot learn domains from the database; learning from traffic")
        }
    }
}

pub fn producer(config: &Config, metrics: Arc<HooksMetrics>) -> anyhow::Result<RecordProducer> {
    let mut properties = config.kafka.properties.clone();
    properties
        .entry("client.id".into())
        .or_insert_with(|| config.kafka.client_id.clone());
    Ok(RecordProducer::new(
        &ProducerConfig {
            brokers: config.kafka.brokers.clone(),
            properties,
            delivery_timeout: Duration::from_millis(config.hooks.delivery_timeout_ms),
        },
        metrics,
    )?)
}

fn serve(config: &Config) -> anyhow::Result<()> {
    let hooks = &config.hooks;
    anyhow::ensure!(
        !hooks.homeservers.is_empty(),
        "no homeserver configured: add a [[hooks.homeservers]] table (see `mxpulse hooks registration`)"
    );
    let key = pseudonym_key(config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let metrics = Arc::new(HooksMetrics::default());
        let producer = producer(config, metrics.clone())?;
        let (stop_taps, stop) = tokio::sync::watch::channel(false);
        let mut taps = Vec::new();
        let mut homeservers = Vec::new();
        let mut anonymizers = Vec::new();
        for homeserver in &hooks.homeservers {
            let anonymizer = anonymizer(config, &key, &homeserver.server_name);
            anonymizers.push(anonymizer.clone());
            if !homeserver.synapse_db.is_empty() {
                learn_domains(&anonymizer, &homeserver.synapse_db).await;
                let tap = DbTap {
                    anonymizer: anonymizer.clone(),
                    database_url: homeserver.synapse_db.clone(),
                    state_path: hooks
                        .state_dir
                        .join(format!("{}.tap.json", homeserver.server_name)),
                    public_directory: hooks.public_directory,
                };
                taps.push(tokio::spawn(tap.run(
                    producer.clone(),
                    metrics.clone(),
                    Duration::from_millis(hooks.tap_interval_ms),
                    stop.clone(),
                )));
            }
            homeservers.push(Homeserver::new(
                anonymizer,
                Zeroizing::new(homeserver.hs_token.clone()),
            ));
        }
        let state = Arc::new(AppserviceState {
            homeservers,
            producer,
            metrics,
            stall_after: Duration::from_millis(hooks.feed_stall_ms),
            remote_only_after: Duration::from_millis(hooks.remote_only_ms),
            max_body_bytes: usize::try_from(hooks.max_body_bytes).unwrap_or(usize::MAX),
            read_timeout: Duration::from_millis(hooks.read_timeout_ms),
        });
        let keeper = {
            let (config, anonymizers) = (config.clone(), anonymizers.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    for anonymizer in &anonymizers {
                        if let Err(error) = save_domains(&config, anonymizer) {
                            tracing::warn!(%error, "cannot save the learned domains");
                        }
                    }
                }
            })
        };
        let probe = tokio::spawn(probe_broker(
            state.producer.clone(),
            state.metrics.clone(),
            Duration::from_millis(hooks.broker_probe_ms),
        ));
        let limits = mxpulse_hooks::listener::ListenerLimits {
            max_connections: usize::try_from(hooks.max_connections).unwrap_or(usize::MAX),
            read_timeout: Duration::from_millis(hooks.read_timeout_ms),
        };
        let (bound, server) = appservice::serve(
            hooks.listen,
            state,
            limits,
            super::shutdown_signal(),
        )
        .await
        .with_context(|| format!("cannot listen on {}", hooks.listen))?;
        tracing::info!(%bound, homeservers = hooks.homeservers.len(), taps = taps.len(), "hooks listening");
        server.await??;
        probe.abort();
        keeper.abort();
        for anonymizer in &anonymizers {
            if let Err(error) = save_domains(config, anonymizer) {
                tracing::warn!(%error, "cannot save the learned domains");
            }
        }
        let _ = stop_taps.send(true);
        for tap in taps {
            let _ = tap.await;
        }
        tracing::info!("hooks stopped");
        anyhow::Ok(())
    })
}

/// Asks the broker for its metadata at once, then whenever nothing reached it for `every`:
/// `/health` knows whether it is reachable before any transaction, and while there is none.
async fn probe_broker(producer: RecordProducer, metrics: Arc<HooksMetrics>, every: Duration) {
    let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
    loop {
        let quiet_for = chrono::Utc::now().timestamp_millis() - metrics.broker_seen_ms();
        if quiet_for >= every_ms {
            // Within the interval, so that a dead broker shows within one.
            if let Err(error) = producer.probe(every.min(Duration::from_secs(10))).await {
                tracing::warn!(%error, "the Kafka broker does not answer");
            }
        }
        tokio::time::sleep(
            every
                .min(Duration::from_secs(1))
                .max(Duration::from_millis(100)),
        )
        .await;
    }
}
