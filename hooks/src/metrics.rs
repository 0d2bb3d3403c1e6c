//! Counters of the hooks, rendered in the Prometheus text format on `/metrics`, and the state
//! `/health` reports (is the broker acknowledging, can each database tap read its database).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use mxpulse_schemas::Record;

/// Counters with one label, e.g. skipped events by reason.
#[derive(Debug, Default)]
pub struct LabeledCounter(Mutex<BTreeMap<String, u64>>);

impl LabeledCounter {
    pub fn add(&self, label: &str, n: u64) {
        if let Ok(mut map) = self.0.lock() {
            *map.entry(label.to_owned()).or_default() += n;
        }
    }

    pub fn get(&self, label: &str) -> u64 {
        self.0
            .lock()
            .map(|map| map.get(label).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|map| map.clone()).unwrap_or_default()
    }
}

/// What one database tap last did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TapHealth {
    pub reachable: bool,
    pub consecutive_errors: u64,
    pub last_error: Option<String>,
}

/// How one homeserver's transactions have fared: a homeserver whose transactions keep failing
/// or being refused has a stalled feed (Synapse retries the same transaction forever).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedHealth {
    /// Since when (milliseconds since the epoch) no transaction was accepted while some
    /// failed or were refused; `None` while they are accepted.
    pub failing_since_ms: Option<i64>,
    /// The last refusal or failure: its status and kind, never content.
    pub last_problem: Option<String>,
    pub last_accepted_ms: Option<i64>,
    /// Since when its transactions brought events of other servers' users only (none of its
    /// own), and how many: a `server_name` that does not match Synapse's looks like this.
    pub remote_only_since_ms: Option<i64>,
    pub remote_only_events: u64,
    remote_only_reported: bool,
}

/// What is known of the broker: nothing yet (no publish, no probe), reachable, or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerState {
    Unknown,
    Up,
    Down,
}

impl BrokerState {
    pub fn label(self) -> &'static str {
        match self {
            BrokerState::Unknown => "unknown",
            BrokerState::Up => "up",
            BrokerState::Down => "down",
        }
    }
}

#[derive(Debug)]
pub struct HooksMetrics {
    /// Transactions by outcome: accepted, repeated (a txnId already acknowledged), failed
    /// (the broker did not acknowledge), rejected (bad request or token).
    pub transactions: LabeledCounter,
    /// Records acknowledged by Kafka, by table.
    pub records: LabeledCounter,
    /// Events skipped, by reason.
    pub skipped: LabeledCounter,
    /// Events of senders from other homeservers (their own hooks report them).
    pub remote_events: AtomicU64,
    /// Ephemeral data counted, never published: typing, receipt, presence, to_device.
    pub ephemeral: LabeledCounter,
    pub broker_errors: AtomicU64,
    produce_micros: AtomicU64,
    produce_calls: AtomicU64,
    /// `BrokerState` as a number: 0 unknown, 1 up, 2 down.
    broker: AtomicU8,
    /// When a publish or a probe last reached the broker (milliseconds since the epoch).
    broker_seen_ms: AtomicI64,
    /// Polls of the Synapse databases, by server.
    pub tap_polls: LabeledCounter,
    pub tap_errors: LabeledCounter,
    taps: Mutex<BTreeMap<String, TapHealth>>,
    feeds: Mutex<BTreeMap<String, FeedHealth>>,
}

impl Default for HooksMetrics {
    fn default() -> Self {
        Self {
            transactions: LabeledCounter::default(),
            records: LabeledCounter::default(),
            skipped: LabeledCounter::default(),
            remote_events: AtomicU64::new(0),
            ephemeral: LabeledCounter::default(),
            broker_errors: AtomicU64::new(0),
            produce_micros: AtomicU64::new(0),
            produce_calls: AtomicU64::new(0),
            broker: AtomicU8::new(0),
            broker_seen_ms: AtomicI64::new(0),
            tap_polls: LabeledCounter::default(),
            tap_errors: LabeledCounter::default(),
            taps: Mutex::new(BTreeMap::new()),
            feeds: Mutex::new(BTreeMap::new()),
        }
    }
}

impl HooksMetrics {
    /// A transaction of `server` was accepted: its feed flows.
    pub fn feed_accepted(&self, server: &str) {
        if let Ok(mut feeds) = self.feeds.lock() {
            let feed = feeds.entry(server.to_owned()).or_default();
            feed.failing_since_ms = None;
            feed.last_accepted_ms = Some(chrono::Utc::now().timestamp_millis());
        }
    }

    /// A transaction of `server` failed or was refused (`problem`: status and kind).
    pub fn feed_failed(&self, server: &str, problem: &str) {
        if let Ok(mut feeds) = self.feeds.lock() {
            let feed = feeds.entry(server.to_owned()).or_default();
            feed.failing_since_ms
                .get_or_insert_with(|| chrono::Utc::now().timestamp_millis());
            feed.last_problem = Some(problem.to_owned());
        }
    }

    pub fn feeds(&self) -> BTreeMap<String, FeedHealth> {
        self.feeds.lock().map(|f| f.clone()).unwrap_or_default()
    }

    pub fn observe_produce(&self, elapsed: Duration) {
        self.produce_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.produce_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub fn records_published<R: Record>(&self, n: usize) {
        self.records.add(R::TABLE, n as u64);
    }

    /// The broker acknowledged a publish, or answered a probe.
    pub fn broker_ok(&self) {
        self.broker.store(1, Ordering::Relaxed);
        self.broker_seen_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// A probe found no broker.
    pub fn broker_unreachable(&self) {
        self.broker.store(2, Ordering::Relaxed);
    }

    /// When the broker was last reached (milliseconds since the epoch; 0: never).
    pub fn broker_seen_ms(&self) -> i64 {
        self.broker_seen_ms.load(Ordering::Relaxed)
    }

    pub fn broker_state(&self) -> BrokerState {
        match self.broker.load(Ordering::Relaxed) {
            1 => BrokerState::Up,
            2 => BrokerState::Down,
            _ => BrokerState::Unknown,
        }
    }

    /// A transaction of `server` brought `local` records of its own users and `remote`
    /// events of other servers' users.
    /// Returns true when this makes the homeserver suspect (only remote events for `after`,
    /// at least `events` of them): the moment to say so in the log, once.
    pub fn feed_senders(
        &self,
        server: &str,
        local: usize,
        remote: usize,
        after: Duration,
        events: u64,
    ) -> bool {
        if local == 0 && remote == 0 {
            return false;
        }
        let Ok(mut feeds) = self.feeds.lock() else {
            return false;
        };
        let feed = feeds.entry(server.to_owned()).or_default();
        if local > 0 {
            feed.remote_only_since_ms = None;
            feed.remote_only_events = 0;
            feed.remote_only_reported = false;
            return false;
        }
        let now = chrono::Utc::now().timestamp_millis();
        let since = *feed.remote_only_since_ms.get_or_insert(now);
        feed.remote_only_events += remote as u64;
        let suspect = feed.remote_only_events >= events
            && now - since >= i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        let first = suspect && !feed.remote_only_reported;
        feed.remote_only_reported |= suspect;
        first
    }

    pub fn broker_failed(&self, records: usize) {
        self.broker_errors
            .fetch_add(records as u64, Ordering::Relaxed);
        self.broker.store(2, Ordering::Relaxed);
    }

    pub fn broker_healthy(&self) -> bool {
        self.broker_state() == BrokerState::Up
    }

    pub fn tap_ok(&self, server: &str) {
        self.tap_polls.add(server, 1);
        if let Ok(mut taps) = self.taps.lock() {
            taps.insert(
                server.to_owned(),
                TapHealth {
                    reachable: true,
                    consecutive_errors: 0,
                    last_error: None,
                },
            );
        }
    }

    pub fn tap_failed(&self, server: &str, error: &str) {
        self.tap_errors.add(server, 1);
        if let Ok(mut taps) = self.taps.lock() {
            let health = taps.entry(server.to_owned()).or_default();
            health.reachable = false;
            health.consecutive_errors += 1;
            health.last_error = Some(error.to_owned());
        }
    }

    pub fn taps(&self) -> BTreeMap<String, TapHealth> {
        self.taps.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, label: &str, c: &LabeledCounter| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (value, n) in c.snapshot() {
                let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
            }
        };
        family(
            "mxpulse_hooks_transactions_total",
            "counter",
            "Appservice transactions by outcome.",
            "outcome",
            &self.transactions,
        );
        family(
            "mxpulse_hooks_records_total",
            "counter",
            "Records acknowledged by Kafka, by table.",
            "table",
            &self.records,
        );
        family(
            "mxpulse_hooks_events_skipped_total",
            "counter",
            "Events skipped because of unexpected content, by reason.",
            "reason",
            &self.skipped,
        );
        family(
            "mxpulse_hooks_ephemeral_total",
            "counter",
            "Ephemeral data received (counted, never published), by kind.",
            "kind",
            &self.ephemeral,
        );
        family(
            "mxpulse_hooks_synapse_db_polls_total",
            "counter",
            "Successful polls of a Synapse database, by server.",
            "server",
            &self.tap_polls,
        );
        family(
            "mxpulse_hooks_synapse_db_errors_total",
            "counter",
            "Failed polls of a Synapse database, by server.",
            "server",
            &self.tap_errors,
        );
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP mxpulse_hooks_remote_events_total Events of other homeservers' users (not reported here).\n\
             # TYPE mxpulse_hooks_remote_events_total counter\nmxpulse_hooks_remote_events_total {}",
            load(&self.remote_events)
        );
        let _ = writeln!(
            out,
            "# HELP mxpulse_hooks_broker_errors_total Records Kafka did not acknowledge.\n\
             # TYPE mxpulse_hooks_broker_errors_total counter\nmxpulse_hooks_broker_errors_total {}",
            load(&self.broker_errors)
        );
        let _ = writeln!(
            out,
            "# HELP mxpulse_hooks_produce_seconds Time from publishing a set of records to the last acknowledgement.\n\
             # TYPE mxpulse_hooks_produce_seconds summary\n\
             mxpulse_hooks_produce_seconds_sum {:.6}\nmxpulse_hooks_produce_seconds_count {}",
            load(&self.produce_micros) as f64 / 1e6,
            load(&self.produce_calls)
        );
        let _ = writeln!(
            out,
            "# HELP mxpulse_hooks_broker_up 1 when the last publish was acknowledged.\n\
             # TYPE mxpulse_hooks_broker_up gauge\nmxpulse_hooks_broker_up {}",
            u8::from(self.broker_healthy())
        );
        let _ = writeln!(
            out,
            "# HELP mxpulse_hooks_synapse_db_up 1 when the last poll of a Synapse database worked.\n\
             # TYPE mxpulse_hooks_synapse_db_up gauge"
        );
        for (server, health) in self.taps() {
            let _ = writeln!(
                out,
                "mxpulse_hooks_synapse_db_up{{server=\"{server}\"}} {}",
                u8::from(health.reachable)
            );
        }
        out
    }
}
