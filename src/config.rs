//! The one configuration file (TOML) with environment overrides, as the binary reads it before
//! handing each library crate its plain config.
//!
//! Precedence: built-in defaults, then the file, then `MXPULSE_<SECTION>_<KEY>` variables
//! (`MXPULSE_KAFKA_BROKERS`, `MXPULSE_PRIVACY_MIN_USERS`), then a subcommand's own flags. An
//! unknown key or a bad value, in the file or in a variable, is an error that names it.
//! Every key is documented, with its default, in `mxpulse.example.toml`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Variable holding the pseudonymization key itself (never a file key: it must not be written down).
pub const PSEUDONYM_KEY_VAR: &str = "MXPULSE_PSEUDONYM_KEY";
/// Variables that share the prefix but are not configuration keys.
pub const RESERVED_VARS: &[&str] = &["MXPULSE_CONFIG", "MXPULSE_LOG", PSEUDONYM_KEY_VAR];

const ENV_PREFIX: &str = "MXPULSE_";
const REDACTED: &str = "<redacted>";

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaSection,
    pub pseudonym: PseudonymSection,
    pub privacy: PrivacySection,
    pub lake: LakeSection,
    pub hooks: HooksSection,
    pub ingest: IngestSection,
    pub query: QuerySection,
    pub dashboards: DashboardsSection,
    pub reports: ReportsSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsSection {
    /// Where closed months' reports are frozen; empty: `_reports` in the lake's directory.
    pub dir: String,
    /// Days after a month's end (late data) before its report is frozen.
    pub grace_days: u64,
    /// Reports counted at once, in slots of their own (not the pages' query slots).
    pub max_concurrent: u64,
    /// How long a report request waits for a slot before it is answered "busy" (503).
    pub queue_timeout_ms: u64,
    /// How often `serve` makes the newest closed month's reports ahead of requests (and sees a
    /// late record's revision); 0: only when asked.
    pub prepare_interval_ms: u64,
}

impl Default for ReportsSection {
    fn default() -> Self {
        Self {
            dir: String::new(),
            grace_days: 3,
            max_concurrent: 1,
            queue_timeout_ms: 60_000,
            prepare_interval_ms: 600_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardsSection {
    /// A directory of an operator's own dashboard files (`*.toml`), beside the shipped ones.
    pub dir: String,
    /// A TOML file of known events drawn on the charts, beside the built-in ones.
    pub annotations_file: String,
    /// The key session cookies are signed with (hex, at least 32 bytes); empty: a random key
    /// at each start (sessions end when the service restarts, and work on one instance only).
    pub session_key: String,
    /// How long a login lasts (hours).
    pub session_hours: u64,
    /// Mark the session cookie `Secure` (the pages are served over HTTPS by a proxy).
    pub cookie_secure: bool,
}

impl Default for DashboardsSection {
    fn default() -> Self {
        Self {
            dir: String::new(),
            annotations_file: String::new(),
            session_key: String::new(),
            session_hours: 12,
            cookie_secure: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub client_id: String,
    /// Further librdkafka properties (`security.protocol`, `sasl.*`, ...), passed as they are.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaSection {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            client_id: "mxpulse".into(),
            properties: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PseudonymSection {
    /// File holding the key; empty means the key comes from `MXPULSE_PSEUDONYM_KEY`.
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacySection {
    /// k: a published figure built from fewer distinct users is withheld (docs/design.md §4).
    pub min_users: u32,
    /// The largest move of a published count, in steps (docs/design.md §4: one person for
    /// counts of people). 0 publishes exact counts, which differencing can undo.
    pub noise: u32,
}

impl Default for PrivacySection {
    fn default() -> Self {
        Self {
            min_users: 3,
            noise: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeSection {
    /// Directory (or object store URL) under which the Delta tables live.
    pub root: String,
    /// Raw records older than this many days are purged (rollups and published figures
    /// stay); 0 keeps everything.
    pub retention_days: u64,
    /// The ingest brings the rollups up to date at most this often (milliseconds); 0 leaves
    /// them to `mxpulse lake rollup`.
    pub rollup_interval_ms: u64,
    /// An `s3://` root's store: its endpoint (MinIO, Ceph RGW, a test server); empty: AWS, or
    /// `AWS_ENDPOINT_URL`.
    pub s3_endpoint: String,
    /// Empty: `AWS_REGION` (or `us-east-1`).
    pub s3_region: String,
    /// Empty: `AWS_ACCESS_KEY_ID` (and the other standard AWS variables).
    pub s3_access_key_id: String,
    /// Empty: `AWS_SECRET_ACCESS_KEY`. Redacted by `mxpulse config`.
    pub s3_secret_access_key: String,
    /// Plain HTTP to `s3_endpoint` (loopback, a private network).
    pub s3_allow_http: bool,
    /// Exactly one process ever writes this lake: lets the writers start on a store that
    /// ignores conditional writes (where two writers could lose a commit).
    pub single_writer: bool,
}

impl LakeSection {
    /// How to reach an `s3://` root's store.
    pub fn s3_settings(&self) -> mxpulse_ingest::store::S3Settings {
        let set = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_owned());
        mxpulse_ingest::store::S3Settings {
            endpoint: set(&self.s3_endpoint),
            region: set(&self.s3_region),
            access_key_id: set(&self.s3_access_key_id),
            secret_access_key: set(&self.s3_secret_access_key),
            allow_http: self.s3_allow_http,
        }
    }
}

impl Default for LakeSection {
    fn default() -> Self {
        Self {
            root: "./mxpulse-lake".into(),
            retention_days: 0,
            rollup_interval_ms: 60_000,
            s3_endpoint: String::new(),
            s3_region: String::new(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: String::new(),
            s3_allow_http: false,
            single_writer: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksSection {
    /// Address of the appservice endpoint, `/metrics` and `/health`.
    pub listen: SocketAddr,
    /// E-mail domains tried first when reading a domain out of a localpart, added to the
    /// built-in list of the State's domains.
    pub known_domains: Vec<String>,
    /// The homeservers this process serves, each with its appservice token and optionally
    /// its database for the tap.
    pub homeservers: Vec<HomeserverSection>,
    /// A transaction body over this size is refused with 413 (see the example file: it must
    /// fit the largest transaction Synapse sends).
    pub max_body_bytes: u64,
    /// A homeserver whose transactions all failed or were refused for this long makes
    /// `/health` fail, naming it.
    pub feed_stall_ms: u64,
    /// How long records may wait for Kafka's acknowledgement before a transaction is
    /// answered 503 (and Synapse retries it).
    pub delivery_timeout_ms: u64,
    /// Interval between two polls of each Synapse database.
    pub tap_interval_ms: u64,
    /// Where each database tap keeps its cursor.
    pub state_dir: PathBuf,
    /// Connections the listener serves at once (the next wait to be accepted).
    pub max_connections: u64,
    /// A request's headers, and then its body, must arrive within this time.
    pub read_timeout_ms: u64,
    /// With no publish for this long, the broker is asked for its metadata, so that `/health`
    /// says whether it is reachable before any traffic, and while there is none.
    pub broker_probe_ms: u64,
    /// A homeserver whose transactions bring only events of other servers' users for this
    /// long (and at least 100 of them) is reported: its `server_name` likely does not match
    /// Synapse's, and none of its users' activity is counted.
    pub remote_only_ms: u64,
    /// Publish the rooms of each homeserver's public room directory with their name and
    /// topic line (what the directory shows every user), for the forums directory; no other
    /// room is ever named. `false` publishes nothing of the directory.
    pub public_directory: bool,
    /// The operator's user-agent rules (`[[hooks.client_rules]]`: `like`, `family`,
    /// `platform`), tried before the shipped ones (docs/design.md §3): a new app is counted
    /// under its own family without a release.
    pub client_rules: Vec<mxpulse_hooks::user_agent::ClientRule>,
}

impl Default for HooksSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9100)),
            known_domains: Vec::new(),
            homeservers: Vec::new(),
            // 100 events of 64 KiB with their `unsigned` previous content (~13 MiB), 100
            // to-device messages (~7 MiB), and room to spare.
            max_body_bytes: 32 << 20,
            feed_stall_ms: 300_000,
            delivery_timeout_ms: 10_000,
            tap_interval_ms: 60_000,
            state_dir: PathBuf::from("./mxpulse-hooks-state"),
            max_connections: 256,
            read_timeout_ms: 30_000,
            broker_probe_ms: 10_000,
            remote_only_ms: 3_600_000,
            public_directory: true,
            client_rules: Vec::new(),
        }
    }
}

/// One homeserver of `[[hooks.homeservers]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeserverSection {
    /// Synapse's `server_name`: its users are the local senders reported.
    pub server_name: String,
    /// The `hs_token` of its appservice registration (`mxpulse hooks registration`).
    pub hs_token: String,
    /// Database URL for the tap (`postgresql://...` or a SQLite file); empty for none.
    #[serde(default)]
    pub synapse_db: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    /// Kafka consumer group; the lake's offsets are recorded under it.
    pub group_id: String,
    /// Address of the ingest's `/metrics` and `/health`.
    pub listen: SocketAddr,
    /// A table's buffer is committed when it holds this many records...
    pub flush_max_rows: u64,
    /// ... or this many bytes of messages...
    pub flush_max_bytes: u64,
    /// ... or when its oldest message is this old (milliseconds).
    pub flush_max_latency_ms: u64,
    /// Day partitions whose identities are kept in memory to drop repeats.
    pub identity_days: u64,
    /// Dead letters unacknowledged for longer stop the ingest rather than commit past them.
    pub dead_letter_deadline_ms: u64,
}

impl Default for IngestSection {
    fn default() -> Self {
        Self {
            group_id: "mxpulse-ingest".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 9101)),
            flush_max_rows: 100_000,
            flush_max_bytes: 64 << 20,
            flush_max_latency_ms: 5_000,
            identity_days: 16,
            dead_letter_deadline_ms: 300_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuerySection {
    /// Address of the figures API, the SQL API, `/metrics` and `/health`.
    pub listen: SocketAddr,
    /// Address of the PostgreSQL wire endpoint (psql).
    pub pgwire_listen: SocketAddr,
    /// PEM certificate (chain) offered to PostgreSQL clients for TLS; empty: no TLS.
    pub pgwire_tls_cert: String,
    /// PEM private key of `pgwire_tls_cert`.
    pub pgwire_tls_key: String,
    /// Refuse PostgreSQL clients that do not use TLS (passwords are sent in clear otherwise).
    pub pgwire_tls_required: bool,
    /// Time zone of calendar months and days in the figures (IANA name).
    pub timezone: String,
    /// A query's answer stops after this many rows (and says it was truncated).
    pub max_rows: u64,
    /// A query running longer is cancelled (milliseconds).
    pub query_timeout_ms: u64,
    /// A figures request running longer is cancelled (milliseconds).
    pub figures_timeout_ms: u64,
    /// A request waiting longer than this for a query slot gets 503 with Retry-After.
    pub queue_timeout_ms: u64,
    /// The longest period of one monthly figures request, in months...
    pub max_months: u64,
    /// ... and of one daily request, in days.
    pub max_days: u64,
    /// Memory one query may use; a query needing more fails (nothing spills to disk).
    pub query_memory_bytes: u64,
    /// Analysts' statements running at once; with `query_memory_bytes`, the service's memory
    /// bound.
    pub max_concurrent_queries: u64,
    /// Figures requests (dashboards, API) running at once, in slots apart from the
    /// statements', so that analysts' heavy SQL never keeps a dashboard waiting.
    pub max_concurrent_figures: u64,
    /// Analysts' statements waiting for a slot, beyond which one is answered "busy" (503) at
    /// once.
    pub max_queued: u64,
    /// Figures requests waiting for a slot, likewise. Many more than statements: each takes
    /// milliseconds from the rollups, and 100 people on the dashboards at once queue ~100.
    pub max_queued_figures: u64,
    /// Figures answers, and dashboard pages, kept for the lake's current version (each; 0:
    /// none, every request counts and renders afresh).
    pub kept_answers: u64,
    /// Threads DataFusion runs analysts' SQL on, apart from the HTTP handlers.
    pub threads: u64,
    /// Threads the figures are counted on, apart from the SQL's.
    pub figures_threads: u64,
    /// New lake commits are visible after at most this long (milliseconds).
    pub refresh_ms: u64,
    /// Who may ask: bearer tokens with a role and an optional server scope.
    pub principals: Vec<PrincipalSection>,
}

impl Default for QuerySection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            pgwire_listen: SocketAddr::from(([127, 0, 0, 1], 5433)),
            pgwire_tls_cert: String::new(),
            pgwire_tls_key: String::new(),
            pgwire_tls_required: false,
            timezone: "Europe/Paris".into(),
            max_rows: 100_000,
            query_timeout_ms: 30_000,
            figures_timeout_ms: 120_000,
            queue_timeout_ms: 10_000,
            max_months: 120,
            max_days: 400,
            query_memory_bytes: 512 << 20,
            max_concurrent_queries: 4,
            max_concurrent_figures: 4,
            max_queued: 64,
            max_queued_figures: 1024,
            kept_answers: 512,
            threads: 2,
            figures_threads: 1,
            refresh_ms: 2_000,
            principals: Vec::new(),
        }
    }
}

/// One of `[[query.principals]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSection {
    /// Shown in the logs next to every query.
    pub name: String,
    /// `viewer` (figures), `analyst` (figures and SQL) or `admin`.
    pub role: String,
    /// The bearer token (at least 16 characters).
    pub token: String,
    /// Only this server's rows; empty for all.
    #[serde(default)]
    pub server: String,
}

/// What is wrong with the configuration, naming where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("configuration key {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

impl Config {
    /// Reads the file (if any) and applies the `MXPULSE_*` variables among `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table =
            toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Invalid {
                key: "(defaults)",
                message: e.to_string(),
            })?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            // Deserializing the file on its own first gives errors with its line and column.
            let _: Config = toml::from_str(&text).map_err(|e| ConfigError::File {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
            let from_file: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::File {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
            merge(&mut table, from_file);
        }
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| {
                name.starts_with(ENV_PREFIX) && !RESERVED_VARS.contains(&name.as_str())
            })
            .collect();
        vars.sort();
        for (var, raw) in vars {
            let Some((section, key)) = env_key(&var, &table) else {
                continue;
            };
            let env_err = |message: String| ConfigError::Env {
                var: var.clone(),
                message,
            };
            let section_table = table
                .get_mut(&section)
                .and_then(toml::Value::as_table_mut)
                .ok_or_else(|| env_err(format!("no section [{section}]")))?;
            let current = section_table
                .get(&key)
                .ok_or_else(|| env_err(format!("[{section}] has no key `{key}`")))?;
            let value = env_value(current, &raw).map_err(env_err)?;
            section_table.insert(key, value);
            // Check after each variable, so the error names the one at fault.
            let _: Config = table
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| env_err(e.message().to_owned()))?;
        }
        let config: Config =
            table
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    key: "(merged)",
                    message: e.to_string(),
                })?;
        config.validate()?;
        Ok(config)
    }

    /// The user-agent rules of the hooks: the operator's, then the shipped ones.
    pub fn client_rules(&self) -> Result<mxpulse_hooks::user_agent::ClientRules, ConfigError> {
        mxpulse_hooks::user_agent::ClientRules::with_operator_rules(&self.hooks.client_rules)
            .map_err(|e| ConfigError::Invalid {
                key: "hooks.client_rules",
                message: e.to_string(),
            })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.client_rules()?;
        if self.privacy.min_users == 0 {
            return Err(ConfigError::Invalid {
                key: "privacy.min_users",
                message: "must be at least 1 (3 is the public-statistics rule)".into(),
            });
        }
        if self.kafka.brokers.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "kafka.brokers",
                message: "must name at least one broker".into(),
            });
        }
        if self.ingest.group_id.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "ingest.group_id",
                message: "must not be empty".into(),
            });
        }
        for (key, value) in [
            ("ingest.flush_max_rows", self.ingest.flush_max_rows),
            ("ingest.flush_max_bytes", self.ingest.flush_max_bytes),
            (
                "ingest.flush_max_latency_ms",
                self.ingest.flush_max_latency_ms,
            ),
            ("ingest.identity_days", self.ingest.identity_days),
            (
                "ingest.dead_letter_deadline_ms",
                self.ingest.dead_letter_deadline_ms,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be at least 1".into(),
                });
            }
        }
        if !self.dashboards.session_key.is_empty()
            && hex::decode(&self.dashboards.session_key).map_or(true, |k| k.len() < 32)
        {
            return Err(ConfigError::Invalid {
                key: "dashboards.session_key",
                message: "hex of at least 32 bytes (openssl rand -hex 32)".into(),
            });
        }
        for (key, value) in [
            ("dashboards.session_hours", self.dashboards.session_hours),
            ("reports.max_concurrent", self.reports.max_concurrent),
            ("reports.queue_timeout_ms", self.reports.queue_timeout_ms),
            ("query.queue_timeout_ms", self.query.queue_timeout_ms),
            ("query.max_months", self.query.max_months),
            ("query.max_days", self.query.max_days),
            ("hooks.max_body_bytes", self.hooks.max_body_bytes),
            ("hooks.feed_stall_ms", self.hooks.feed_stall_ms),
            ("hooks.max_connections", self.hooks.max_connections),
            ("hooks.read_timeout_ms", self.hooks.read_timeout_ms),
            ("hooks.broker_probe_ms", self.hooks.broker_probe_ms),
            ("hooks.remote_only_ms", self.hooks.remote_only_ms),
            ("hooks.delivery_timeout_ms", self.hooks.delivery_timeout_ms),
            ("hooks.tap_interval_ms", self.hooks.tap_interval_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be at least 1".into(),
                });
            }
        }
        let mut servers = std::collections::BTreeSet::new();
        for homeserver in &self.hooks.homeservers {
            if homeserver.server_name.trim().is_empty()
                || homeserver.server_name.contains(['/', ' '])
            {
                return Err(ConfigError::Invalid {
                    key: "hooks.homeservers.server_name",
                    message: format!("{:?} is not a server name", homeserver.server_name),
                });
            }
            if !servers.insert(&homeserver.server_name) {
                return Err(ConfigError::Invalid {
                    key: "hooks.homeservers.server_name",
                    message: format!("{} is listed twice", homeserver.server_name),
                });
            }
            // A token names the homeserver a transaction comes from: shared, one server's
            // events would be counted as the other's.
            if let Some(other) = self.hooks.homeservers.iter().find(|other| {
                other.server_name != homeserver.server_name && other.hs_token == homeserver.hs_token
            }) {
                return Err(ConfigError::Invalid {
                    key: "hooks.homeservers.hs_token",
                    message: format!(
                        "{} and {} have the same hs_token: each registration needs its own (`mxpulse hooks registration`)",
                        homeserver.server_name, other.server_name
                    ),
                });
            }
            if homeserver.hs_token.len() < 16 {
                return Err(ConfigError::Invalid {
                    key: "hooks.homeservers.hs_token",
                    message: format!(
                        "the token of {} must be at least 16 characters (`mxpulse hooks registration` makes one)",
                        homeserver.server_name
                    ),
                });
            }
        }
        for (key, value) in [
            ("query.max_rows", self.query.max_rows),
            ("query.query_timeout_ms", self.query.query_timeout_ms),
            ("query.figures_timeout_ms", self.query.figures_timeout_ms),
            ("query.query_memory_bytes", self.query.query_memory_bytes),
            (
                "query.max_concurrent_queries",
                self.query.max_concurrent_queries,
            ),
            (
                "query.max_concurrent_figures",
                self.query.max_concurrent_figures,
            ),
            ("query.threads", self.query.threads),
            ("query.figures_threads", self.query.figures_threads),
            ("query.refresh_ms", self.query.refresh_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be at least 1".into(),
                });
            }
        }
        let (cert, key) = (&self.query.pgwire_tls_cert, &self.query.pgwire_tls_key);
        if cert.is_empty() != key.is_empty() {
            return Err(ConfigError::Invalid {
                key: "query.pgwire_tls_cert",
                message: "pgwire_tls_cert and pgwire_tls_key go together".into(),
            });
        }
        if self.query.pgwire_tls_required && cert.is_empty() {
            return Err(ConfigError::Invalid {
                key: "query.pgwire_tls_required",
                message: "needs pgwire_tls_cert and pgwire_tls_key".into(),
            });
        }
        for (i, principal) in self.query.principals.iter().enumerate() {
            // A name is who the audit log says asked; a token is who asks: either shared, one
            // principal would act, or be logged, as another.
            for other in &self.query.principals[..i] {
                if other.name == principal.name {
                    return Err(ConfigError::Invalid {
                        key: "query.principals.name",
                        message: format!(
                            "{} is the name of two principals: the audit log could not tell them apart",
                            principal.name
                        ),
                    });
                }
                if other.token == principal.token {
                    return Err(ConfigError::Invalid {
                        key: "query.principals.token",
                        message: format!(
                            "{} and {} have the same token: each principal needs its own",
                            other.name, principal.name
                        ),
                    });
                }
            }
            if !["viewer", "analyst", "admin"].contains(&principal.role.as_str()) {
                return Err(ConfigError::Invalid {
                    key: "query.principals.role",
                    message: format!(
                        "{:?} of {} is not viewer, analyst or admin",
                        principal.role, principal.name
                    ),
                });
            }
            if principal.token.len() < 16 {
                return Err(ConfigError::Invalid {
                    key: "query.principals.token",
                    message: format!(
                        "the token of {} must be at least 16 characters",
                        principal.name
                    ),
                });
            }
        }
        if self.lake.root.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "lake.root",
                message: "must not be empty".into(),
            });
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets redacted: appservice and principals'
    /// tokens, the session key, Kafka properties that hold secrets (passwords, keys such as
    /// `ssl.key.pem`, tokens), the passwords of database URLs (the pseudonymization key is never
    /// a file key).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        for homeserver in &mut shown.hooks.homeservers {
            homeserver.hs_token = REDACTED.into();
            homeserver.synapse_db = mxpulse_hooks::synapse_db::display_url(&homeserver.synapse_db);
        }
        for principal in &mut shown.query.principals {
            principal.token = REDACTED.into();
        }
        if !shown.lake.s3_secret_access_key.is_empty() {
            shown.lake.s3_secret_access_key = REDACTED.into();
        }
        if !shown.dashboards.session_key.is_empty() {
            shown.dashboards.session_key = REDACTED.into();
        }
        for (key, value) in &mut shown.kafka.properties {
            if mxpulse_hooks::synapse_db::is_secret_name(key) {
                *value = REDACTED.into();
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_default()
    }
}

/// `MXPULSE_PRIVACY_MIN_USERS` -> (`privacy`, `min_users`); `None` for a variable whose second
/// word is no section (another tool's, or a test's).
fn env_key(var: &str, table: &toml::Table) -> Option<(String, String)> {
    let rest = var.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
    let (section, key) = rest.split_once('_')?;
    table
        .contains_key(section)
        .then(|| (section.to_owned(), key.to_owned()))
}

/// A variable's text as a value of the type the key already has.
fn env_value(current: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    Ok(match current {
        toml::Value::String(_) => toml::Value::String(raw.to_owned()),
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("{raw:?} is not an integer"))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(
            raw.trim()
                .parse()
                .map_err(|_| format!("{raw:?} is not true or false"))?,
        ),
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_owned()))
                .collect(),
        ),
        toml::Value::Float(_) => toml::Value::Float(
            raw.trim()
                .parse()
                .map_err(|_| format!("{raw:?} is not a number"))?,
        ),
        toml::Value::Table(_) | toml::Value::Datetime(_) => {
            return Err("this key can only be set in the configuration file".into());
        }
    })
}

/// Overlays `top` on `base`, table by table.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(top_table)) => {
                merge(base_table, top_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mxpulse.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn example_path() -> PathBuf {
        PathBuf::from(
            // At run time first: cargo may reuse a test binary built in another checkout.
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("mxpulse.example.toml")
    }

    fn key_paths(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(inner) if !inner.is_empty() => key_paths(inner, &path, out),
                _ => out.push(path),
            }
        }
    }

    #[test]
    fn example_file_documents_every_key_with_its_default() {
        let text = std::fs::read_to_string(example_path()).unwrap();
        let example: Config = toml::from_str(&text).unwrap();
        assert_eq!(
            example,
            Config::default(),
            "mxpulse.example.toml must show the defaults"
        );
        let (mut documented, mut known) = (Vec::new(), Vec::new());
        key_paths(&toml::from_str(&text).unwrap(), "", &mut documented);
        key_paths(
            &toml::Table::try_from(Config::default()).unwrap(),
            "",
            &mut known,
        );
        assert_eq!(
            documented, known,
            "every key must appear in mxpulse.example.toml"
        );
    }

    #[test]
    fn file_then_environment_override_defaults() {
        let (_dir, path) =
            file("[kafka]\nbrokers = \"kafka-1:9092,kafka-2:9092\"\n[privacy]\nmin_users = 5\n");
        let config = Config::load(
            Some(&path),
            vars(&[
                ("MXPULSE_PRIVACY_MIN_USERS", "10"),
                ("MXPULSE_HOOKS_KNOWN_DOMAINS", "a.fr, b.fr"),
            ]),
        )
        .unwrap();
        assert_eq!(config.kafka.brokers, "kafka-1:9092,kafka-2:9092");
        assert_eq!(config.privacy.min_users, 10);
        assert_eq!(config.hooks.known_domains, ["a.fr", "b.fr"]);
        assert_eq!(config.lake.root, LakeSection::default().root);
    }

    #[test]
    fn operator_client_rules_come_from_the_file_and_are_checked_at_load() {
        let (_dir, path) = file(
            "[[hooks.client_rules]]\nlike = \"Tchap Pro/%Android%\"\nfamily = \"tchap_x_pro\"\nplatform = \"android\"\n",
        );
        let config = Config::load(Some(&path), vars(&[])).unwrap();
        let rules = config.client_rules().unwrap();
        let pro = rules.classify(Some("Tchap Pro/1.0 (Fairphone 5; Android 14)"));
        assert_eq!(pro.family.as_str(), "tchap_x_pro");
        // The shipped rules still follow.
        let classic = rules.classify(Some("Tchap/2.12.3 (Pixel 8; Android 14)"));
        assert_eq!(classic.family.as_str(), "tchap_android");

        let (_dir, path) = file(
            "[[hooks.client_rules]]\nlike = \"Tchap Pro/%\"\nfamily = \"Tchap Pro\"\nplatform = \"android\"\n",
        );
        let err = Config::load(Some(&path), vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("hooks.client_rules") && err.contains("client rule 0"),
            "{err}"
        );
    }

    #[test]
    fn a_string_key_keeps_digits_as_text() {
        let config = Config::load(None, vars(&[("MXPULSE_LAKE_ROOT", "2024")])).unwrap();
        assert_eq!(config.lake.root, "2024");
    }

    #[test]
    fn unknown_keys_are_errors_that_name_them() {
        let (_dir, path) = file("[kafka]\nbrokrs = \"x:1\"\n");
        let err = Config::load(Some(&path), vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("brokrs") && err.contains("mxpulse.toml") && err.contains("line 2"),
            "{err}"
        );

        let (_dir, path) = file("[kafak]\nbrokers = \"x:1\"\n");
        let err = Config::load(Some(&path), vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("kafak"), "{err}");

        let err = Config::load(None, vars(&[("MXPULSE_KAFKA_BROKRS", "x:1")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "environment variable MXPULSE_KAFKA_BROKRS: [kafka] has no key `brokrs`"
        );
    }

    #[test]
    fn two_principals_never_share_a_name_or_a_token() {
        let principal = |name: &str, token: &str| {
            format!(
                "[[query.principals]]\nname = \"{name}\"\nrole = \"analyst\"\ntoken = \"{token}\"\n"
            )
        };
        let (_dir, path) = file(&format!(
            "{}{}",
            principal("dinum", "token-one-0123456789"),
            principal("dinum", "token-two-0123456789")
        ));
        let err = Config::load(Some(&path), vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("query.principals.name") && err.contains("dinum"),
            "{err}"
        );
        let (_dir, path) = file(&format!(
            "{}{}",
            principal("dinum", "the-same-token-0123456789"),
            principal("finances", "the-same-token-0123456789")
        ));
        let err = Config::load(Some(&path), vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("query.principals.token")
                && err.contains("finances")
                && !err.contains("the-same-token"),
            "{err}"
        );
        let (_dir, path) = file(&format!(
            "{}{}",
            principal("dinum", "token-one-0123456789"),
            principal("finances", "token-two-0123456789")
        ));
        assert!(Config::load(Some(&path), vars(&[])).is_ok());
    }

    #[test]
    fn bad_values_are_errors_that_name_them() {
        let (_dir, path) = file("[hooks]\nlisten = \"not an address\"\n");
        let err = Config::load(Some(&path), vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen") && err.contains("line 2"), "{err}");

        let err = Config::load(None, vars(&[("MXPULSE_PRIVACY_MIN_USERS", "three")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "environment variable MXPULSE_PRIVACY_MIN_USERS: \"three\" is not an integer"
        );

        let err = Config::load(None, vars(&[("MXPULSE_HOOKS_LISTEN", "127.0.0.1")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("environment variable MXPULSE_HOOKS_LISTEN:"),
            "{err}"
        );

        let err = Config::load(None, vars(&[("MXPULSE_PRIVACY_MIN_USERS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("configuration key privacy.min_users:"),
            "{err}"
        );

        // TLS: a certificate needs its key, and requiring TLS needs a certificate.
        let err = Config::load(None, vars(&[("MXPULSE_QUERY_PGWIRE_TLS_CERT", "/c.pem")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("query.pgwire_tls_cert"), "{err}");
        let err = Config::load(None, vars(&[("MXPULSE_QUERY_PGWIRE_TLS_REQUIRED", "true")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("query.pgwire_tls_required"), "{err}");
    }

    #[test]
    fn other_variables_with_the_prefix_are_left_alone() {
        let config = Config::load(
            None,
            vars(&[
                ("MXPULSE_PSEUDONYM_KEY", "secret"),
                ("MXPULSE_TEST_BROKERS", "x"),
                ("MXPULSE_LOG", "debug"),
            ]),
        )
        .unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn printed_configuration_hides_tokens_and_passwords() {
        let (_dir, path) = file(
            "[kafka.properties]\n\"sasl.password\" = \"pw-123\"\n\"ssl.key.pem\" = \"-----BEGIN PRIVATE KEY----- k-456\"\n\
             [[hooks.homeservers]]\nserver_name = \"a.fr\"\nhs_token = \"token-0123456789abcdef\"\n\
             synapse_db = \"postgresql://ro:db-789@h/synapse?sslpassword=ssl-012\"\n",
        );
        let config = Config::load(Some(&path), vars(&[])).unwrap();
        assert_eq!(
            config.hooks.homeservers[0].hs_token,
            "token-0123456789abcdef"
        );
        let shown = config.to_toml();
        for secret in [
            "token-0123456789abcdef",
            "pw-123",
            "k-456",
            "db-789",
            "ssl-012",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("postgresql://***@h/synapse"), "{shown}");
        assert!(shown.contains("server_name = \"a.fr\""), "{shown}");
    }

    #[test]
    fn a_short_or_repeated_homeserver_is_refused() {
        let (_dir, path) =
            file("[[hooks.homeservers]]\nserver_name = \"a.fr\"\nhs_token = \"short\"\n");
        let err = Config::load(Some(&path), vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("hooks.homeservers.hs_token"), "{err}");
        let twice = "[[hooks.homeservers]]\nserver_name = \"a.fr\"\nhs_token = \"token-0123456789abcdef\"\n";
        let (_dir, path) = file(&format!("{twice}{twice}"));
        let err = Config::load(Some(&path), vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listed twice"), "{err}");
        // Two registrations sharing one token: one server's events would count as the other's.
        let (_dir, path) = file(
            "[[hooks.homeservers]]\nserver_name = \"a.fr\"\nhs_token = \"token-0123456789abcdef\"\n\
             [[hooks.homeservers]]\nserver_name = \"b.fr\"\nhs_token = \"token-0123456789abcdef\"\n",
        );
        let err = Config::load(Some(&path), vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("hs_token") && err.contains("a.fr and b.fr"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let err = Config::load(Some(Path::new("/nonexistent/mxpulse.toml")), vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/mxpulse.toml"), "{err}");
    }
}
