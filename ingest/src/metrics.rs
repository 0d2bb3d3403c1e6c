//! Counters of the ingest, rendered in the Prometheus text format on `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Per-table counters.
#[derive(Debug, Default)]
pub struct TableCounters {
    pub rows_written: AtomicU64,
    pub files_written: AtomicU64,
    pub repeats_dropped: AtomicU64,
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    pub commit_micros: AtomicU64,
    pub last_commit_unix_ms: AtomicI64,
}

#[derive(Debug, Default)]
pub struct IngestMetrics {
    pub messages: AtomicU64,
    /// Dead letters the broker acknowledged...
    pub dead_letters: AtomicU64,
    /// ... and those not yet (their tables' commits wait for them).
    pub dead_letters_pending: AtomicU64,
    pub kafka_errors: AtomicU64,
    pub rebalances: AtomicU64,
    pub consecutive_failures: AtomicU64,
    /// Messages between what the group committed to Kafka and the end of each partition, as
    /// librdkafka's statistics report it (Kafka's offsets follow the lake's commits).
    pub lag: Mutex<BTreeMap<(String, i32), i64>>,
    pub events: TableCounters,
    pub visits: TableCounters,
    pub accounts: TableCounters,
    /// The background maintenance: rollup runs, their failures, the last one's duration and
    /// end, and retention purges.
    /// Partitions stopped because messages were missing or offsets went backwards, and why.
    pub stopped: Mutex<BTreeMap<(String, i32), String>>,
    pub position_problems: AtomicU64,
    /// Commits refused because another writer committed records of the same days meanwhile.
    pub commit_races: AtomicU64,
    pub rollup_runs: AtomicU64,
    pub rollup_failures: AtomicU64,
    pub rollup_last_micros: AtomicU64,
    pub rollup_last_unix_ms: AtomicI64,
    pub purges: AtomicU64,
}

impl IngestMetrics {
    pub fn table(&self, table: &str) -> &TableCounters {
        match table {
            "events" => &self.events,
            "visits" => &self.visits,
            _ => &self.accounts,
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "mxpulse_ingest_messages_total",
            "Kafka messages consumed.",
            load(&self.messages),
        );
        counter(
            "mxpulse_ingest_dead_letters_total",
            "Dead letters the dead-letter topic acknowledged.",
            load(&self.dead_letters),
        );
        counter(
            "mxpulse_ingest_kafka_errors_total",
            "Errors reported by the Kafka consumer.",
            load(&self.kafka_errors),
        );
        counter(
            "mxpulse_ingest_rebalances_total",
            "Partition assignments and revocations.",
            load(&self.rebalances),
        );
        counter(
            "mxpulse_ingest_position_problems_total",
            "Partitions stopped: messages missing (retention, re-created topic) or offsets going backwards.",
            load(&self.position_problems),
        );
        counter(
            "mxpulse_ingest_commit_races_total",
            "Commits refused because another writer committed records of the same days at the same time (their batch is read again).",
            load(&self.commit_races),
        );
        counter(
            "mxpulse_ingest_rollup_runs_total",
            "Rollup runs that brought the rollups up to date.",
            load(&self.rollup_runs),
        );
        counter(
            "mxpulse_ingest_rollup_failures_total",
            "Rollup runs that failed (the next one does their work).",
            load(&self.rollup_failures),
        );
        counter(
            "mxpulse_ingest_retention_purges_total",
            "Retention purges of raw records.",
            load(&self.purges),
        );
        let tables = [
            ("events", &self.events),
            ("visits", &self.visits),
            ("accounts", &self.accounts),
        ];
        let mut family =
            |name: &str, kind: &str, help: &str, value: &dyn Fn(&TableCounters) -> String| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for (table, counters) in tables {
                    let _ = writeln!(out, "{name}{{table=\"{table}\"}} {}", value(counters));
                }
            };
        family(
            "mxpulse_ingest_rows_written_total",
            "counter",
            "Rows committed to the lake.",
            &|c| load(&c.rows_written).to_string(),
        );
        family(
            "mxpulse_ingest_files_written_total",
            "counter",
            "Parquet files committed to the lake.",
            &|c| load(&c.files_written).to_string(),
        );
        family(
            "mxpulse_ingest_repeats_dropped_total",
            "counter",
            "Records dropped because their identity was already stored.",
            &|c| load(&c.repeats_dropped).to_string(),
        );
        family(
            "mxpulse_ingest_commits_total",
            "counter",
            "Delta commits.",
            &|c| load(&c.commits).to_string(),
        );
        family(
            "mxpulse_ingest_commit_failures_total",
            "counter",
            "Delta commits that failed (their batch is read again).",
            &|c| load(&c.commit_failures).to_string(),
        );
        family(
            "mxpulse_ingest_commit_seconds_sum",
            "counter",
            "Time spent committing.",
            &|c| format!("{:.6}", load(&c.commit_micros) as f64 / 1e6),
        );
        family(
            "mxpulse_ingest_last_commit_timestamp_seconds",
            "gauge",
            "When the table was last committed to.",
            &|c| {
                format!(
                    "{:.3}",
                    c.last_commit_unix_ms.load(Ordering::Relaxed) as f64 / 1e3
                )
            },
        );
        let _ = writeln!(
            out,
            "# HELP mxpulse_ingest_dead_letters_pending Dead letters not yet acknowledged: the commits of their tables wait.\n# TYPE mxpulse_ingest_dead_letters_pending gauge\nmxpulse_ingest_dead_letters_pending {}",
            load(&self.dead_letters_pending)
        );
        let _ = writeln!(
            out,
            "# HELP mxpulse_ingest_rollup_last_seconds Duration of the last rollup run.\n# TYPE mxpulse_ingest_rollup_last_seconds gauge\nmxpulse_ingest_rollup_last_seconds {:.6}",
            load(&self.rollup_last_micros) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "# HELP mxpulse_ingest_rollup_last_timestamp_seconds When the rollups were last brought up to date.\n# TYPE mxpulse_ingest_rollup_last_timestamp_seconds gauge\nmxpulse_ingest_rollup_last_timestamp_seconds {:.3}",
            self.rollup_last_unix_ms.load(Ordering::Relaxed) as f64 / 1e3
        );
        if let Ok(stopped) = self.stopped.lock()
            && !stopped.is_empty()
        {
            let _ = writeln!(
                out,
                "# HELP mxpulse_ingest_partition_stopped Partitions nothing more is read from (see /health and the log).\n# TYPE mxpulse_ingest_partition_stopped gauge"
            );
            for (topic, partition) in stopped.keys() {
                let _ = writeln!(
                    out,
                    "mxpulse_ingest_partition_stopped{{topic=\"{topic}\",partition=\"{partition}\"}} 1"
                );
            }
        }
        if let Ok(lag) = self.lag.lock()
            && !lag.is_empty()
        {
            let _ = writeln!(
                out,
                "# HELP mxpulse_ingest_consumer_lag Messages not yet in the lake, per partition.\n# TYPE mxpulse_ingest_consumer_lag gauge"
            );
            for ((topic, partition), value) in lag.iter() {
                let _ = writeln!(
                    out,
                    "mxpulse_ingest_consumer_lag{{topic=\"{topic}\",partition=\"{partition}\"}} {value}"
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_its_values() {
        let metrics = IngestMetrics::default();
        metrics.messages.store(7, Ordering::Relaxed);
        metrics
            .table("visits")
            .rows_written
            .store(5, Ordering::Relaxed);
        metrics
            .lag
            .lock()
            .unwrap()
            .insert(("mxpulse.events.v1".into(), 2), 42);
        let text = metrics.render();
        assert!(text.contains("mxpulse_ingest_messages_total 7\n"), "{text}");
        assert!(
            text.contains("mxpulse_ingest_rows_written_total{table=\"visits\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("mxpulse_ingest_rows_written_total{table=\"events\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "mxpulse_ingest_consumer_lag{topic=\"mxpulse.events.v1\",partition=\"2\"} 42\n"
            ),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE").count(), 20);
    }
}
