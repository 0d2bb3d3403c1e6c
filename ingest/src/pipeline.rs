//! The consumer loop: one consumer group over the three record topics, each topic feeding its
//! table's sink; starts a table's commit when its buffer is due (on a task of its own: the loop
//! reads on meanwhile) and settles it when it is over; follows rebalances; on shutdown, waits
//! for the commits in flight, commits what is buffered and leaves the group.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;

use mxpulse_schemas::{
    AccountRecord, DirectoryRecord, EventRecord, Record, SCHEMA_VERSION_HEADER, VisitRecord, topics,
};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, ClientContext, Message, TopicPartitionList};

use crate::IngestConfig;
use crate::dead_letter::{DeadLetter, DeadLetterQueue};
use crate::error::IngestError;
use crate::lake::open_or_create;
use crate::metrics::IngestMetrics;
use crate::offsets::Offset;
use crate::sink::{Admission, CommitReport, FlushFailure, TableSink};

/// A change of assignment, recorded by the rebalance callback and acted on by the loop (the
/// callback runs inside librdkafka's poll and must not block).
#[derive(Debug)]
enum RebalanceEvent {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

struct IngestContext {
    events: Arc<Mutex<Vec<RebalanceEvent>>>,
    metrics: Arc<IngestMetrics>,
}

impl ClientContext for IngestContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Ok(mut lag) = self.metrics.lag.lock() {
            lag.clear();
            for (topic, stats) in statistics.topics {
                for (partition, p) in stats.partitions {
                    // Partition -1 is librdkafka's internal one; -1 lag means unknown.
                    if partition >= 0 && p.consumer_lag >= 0 {
                        lag.insert((topic.clone(), partition), p.consumer_lag);
                    }
                }
            }
        }
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance
            && let Ok(mut events) = self.events.lock()
        {
            events.push(RebalanceEvent::Revoked(partitions(list)));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance
            && let Ok(mut events) = self.events.lock()
        {
            events.push(RebalanceEvent::Assigned(partitions(list)));
        }
    }
}

/// The record tables, dispatched by topic.
struct Sinks {
    events: TableSink<EventRecord>,
    visits: TableSink<VisitRecord>,
    accounts: TableSink<AccountRecord>,
    directory: TableSink<DirectoryRecord>,
}

/// What became of a commit: its report, or the failure that dropped its batch.
type FlushOutcome = Result<CommitReport, FlushFailure>;

impl Sinks {
    /// The next commit to finish, of any table, with its topic; pending while none runs.
    fn next_joined(
        &mut self,
    ) -> impl Future<Output = (&'static str, Result<FlushOutcome, IngestError>)> + '_ {
        std::future::poll_fn(move |cx| {
            use std::task::Poll;
            if let Poll::Ready(outcome) = self.events.poll_join(cx) {
                return Poll::Ready((EventRecord::TOPIC, outcome));
            }
            if let Poll::Ready(outcome) = self.visits.poll_join(cx) {
                return Poll::Ready((VisitRecord::TOPIC, outcome));
            }
            if let Poll::Ready(outcome) = self.accounts.poll_join(cx) {
                return Poll::Ready((AccountRecord::TOPIC, outcome));
            }
            if let Poll::Ready(outcome) = self.directory.poll_join(cx) {
                return Poll::Ready((DirectoryRecord::TOPIC, outcome));
            }
            Poll::Pending
        })
    }
}

/// Calls `$body` with `$sink` bound to the sink of `$topic` (a macro because the sinks are
/// of different types).
macro_rules! with_sink {
    ($sinks:expr, $topic:expr, |$sink:ident| $body:expr, else $other:expr) => {
        match $topic {
            t if t == topics::EVENTS => {
                let $sink = &mut $sinks.events;
                $body
            }
            t if t == topics::VISITS => {
                let $sink = &mut $sinks.visits;
                $body
            }
            t if t == topics::ACCOUNTS => {
                let $sink = &mut $sinks.accounts;
                $body
            }
            t if t == topics::DIRECTORY => {
                let $sink = &mut $sinks.directory;
                $body
            }
            _ => $other,
        }
    };
}

/// Runs the ingest until `shutdown` resolves, then flushes, commits and leaves the group.
pub async fn run(
    config: IngestConfig,
    metrics: Arc<IngestMetrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), IngestError> {
    let root = &config.lake;
    let mut sinks = Sinks {
        events: TableSink::new(
            open_or_create::<EventRecord>(root).await?,
            &config.group_id,
            config.identity_days,
        ),
        visits: TableSink::new(
            open_or_create::<VisitRecord>(root).await?,
            &config.group_id,
            config.identity_days,
        ),
        accounts: TableSink::new(
            open_or_create::<AccountRecord>(root).await?,
            &config.group_id,
            config.identity_days,
        ),
        directory: TableSink::new(
            open_or_create::<DirectoryRecord>(root).await?,
            &config.group_id,
            config.identity_days,
        ),
    };

    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    // librdkafka stops fetching a partition whose local queue is full for this long (1 s by
    // default): the queue fills while a commit runs, then the loop drained it and waited for the
    // next fetch, half of its time (BENCHMARKS.md, the ingest). A short pause keeps it fed.
    client.set("fetch.queue.backoff.ms", "20");
    for (key, value) in &config.kafka_properties {
        client.set(key, value);
    }
    let rebalances = Arc::new(Mutex::new(Vec::new()));
    let consumer: StreamConsumer<IngestContext> = client
        .clone()
        .set("group.id", &config.group_id)
        // The lake's offsets are the truth; Kafka's are committed after each Delta commit as
        // information (and as a hint for where to start).
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000")
        .create_with_context(IngestContext {
            events: rebalances.clone(),
            metrics: metrics.clone(),
        })?;
    let producer: FutureProducer = client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    let mut dead_letters = DeadLetterQueue::new(producer, config.dead_letter_deadline);
    consumer.subscribe(&topics::RECORD_TOPICS)?;
    tracing::info!(group = %config.group_id, lake = %root.url(), "ingest consuming {:?}", topics::RECORD_TOPICS);

    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    // One stream for the whole run: `recv()` would register and drop a waker slot per message.
    let mut messages = consumer.stream();
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            (topic, outcome) = sinks.next_joined() => {
                apply_rebalances(&rebalances, &mut sinks, &metrics);
                settle(&consumer, &mut sinks, &metrics, topic, outcome?).await;
                // The table may be due again: its next commit starts now.
                flush(&consumer, &mut sinks, &mut dead_letters, &metrics, &config, false).await?;
            }
            Some(message) = messages.next() => {
                apply_rebalances(&rebalances, &mut sinks, &metrics);
                match message {
                    Ok(message) => {
                        handle(&consumer, &mut sinks, &mut dead_letters, &metrics, &message).await?;
                        // Row and byte limits are checked at once, not only on the tick.
                        flush(&consumer, &mut sinks, &mut dead_letters, &metrics, &config, false).await?;
                    }
                    Err(error) => {
                        metrics.kafka_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(%error, "Kafka consumer error");
                    }
                }
            }
            _ = ticker.tick() => {
                apply_rebalances(&rebalances, &mut sinks, &metrics);
                flush(&consumer, &mut sinks, &mut dead_letters, &metrics, &config, false).await?;
            }
        }
    }
    tracing::info!("ingest stopping: flushing and committing");
    apply_rebalances(&rebalances, &mut sinks, &metrics);
    let flushed = flush(
        &consumer,
        &mut sinks,
        &mut dead_letters,
        &metrics,
        &config,
        true,
    )
    .await;
    dead_letters.flush(Duration::from_secs(5));
    flushed
}

fn apply_rebalances(
    rebalances: &Mutex<Vec<RebalanceEvent>>,
    sinks: &mut Sinks,
    metrics: &IngestMetrics,
) {
    let events = match rebalances.lock() {
        Ok(mut events) => std::mem::take(&mut *events),
        Err(_) => return,
    };
    for event in events {
        metrics
            .rebalances
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(?event, "rebalance");
        let (list, assigned) = match &event {
            RebalanceEvent::Assigned(list) => (list, true),
            RebalanceEvent::Revoked(list) => (list, false),
        };
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in list {
            by_topic.entry(topic.as_str()).or_default().push(*partition);
        }
        for (topic, partitions) in by_topic {
            with_sink!(sinks, topic, |sink| if assigned { sink.assign(&partitions) } else { sink.revoke(&partitions) }, else ());
        }
    }
}

async fn handle(
    consumer: &StreamConsumer<IngestContext>,
    sinks: &mut Sinks,
    dead_letters: &mut DeadLetterQueue,
    metrics: &IngestMetrics,
    message: &BorrowedMessage<'_>,
) -> Result<(), IngestError> {
    metrics
        .messages
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (topic, partition, offset) = (
        message.topic(),
        message.partition(),
        Offset(message.offset()),
    );
    let header = message
        .headers()
        .and_then(|h| h.iter().find(|h| h.key == SCHEMA_VERSION_HEADER))
        .and_then(|h| h.value);
    let payload = message.payload().unwrap_or_default();
    let key = message.key();
    let admission = with_sink!(sinks, topic, |sink| sink.admit(partition, offset, header, key, payload).await?, else return Ok(()));
    match admission {
        // A repeat is counted with the commit that reports it (`CommitReport::repeats`).
        Admission::Buffered | Admission::AlreadyInLake | Admission::Repeat => {}
        Admission::DeadLetter(error) => {
            // The kind and the size only: the message's content never goes to the log.
            tracing::warn!(topic, partition, %offset, kind = %error.kind(), bytes = payload.len(), "dead letter");
            dead_letters.send(DeadLetter {
                topic: topic.to_owned(),
                partition,
                offset: offset.0,
                key: message.key().map(<[u8]>::to_vec),
                payload: payload.to_vec(),
                reason: error.to_string(),
            });
            metrics.dead_letters_pending.store(
                dead_letters.pending() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        Admission::Seek(to) => {
            tracing::debug!(topic, partition, %offset, "reading from the lake's offset first");
            seek(consumer, topic, partition, to)
        }
        Admission::Stopped(problem) => {
            let newly = metrics
                .stopped
                .lock()
                .map(|mut stopped| {
                    stopped
                        .insert((topic.to_owned(), partition), problem.to_string())
                        .is_none()
                })
                .unwrap_or(false);
            if newly {
                metrics
                    .position_problems
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(
                    topic,
                    partition,
                    %problem,
                    "partition stopped: nothing more is read from it. If the missing messages are \
                     gone for good, accept it with `mxpulse lake reset-offsets --topic {topic} \
                     --partition {partition} --to <offset> --reason <why>`, then restart the ingest"
                );
                let mut list = TopicPartitionList::new();
                if list
                    .add_partition(topic, partition)
                    .set_offset(rdkafka::Offset::Stored)
                    .is_ok()
                    && let Err(error) = consumer.pause(&list)
                {
                    tracing::warn!(%error, "pausing the stopped partition failed");
                }
            }
        }
    }
    Ok(())
}

fn table_of(topic: &str) -> &'static str {
    match topic {
        t if t == topics::EVENTS => EventRecord::TABLE,
        t if t == topics::VISITS => VisitRecord::TABLE,
        t if t == topics::DIRECTORY => DirectoryRecord::TABLE,
        _ => AccountRecord::TABLE,
    }
}

fn seek(consumer: &StreamConsumer<IngestContext>, topic: &str, partition: i32, to: Option<Offset>) {
    let target = to.map_or(rdkafka::Offset::Beginning, |o| rdkafka::Offset::Offset(o.0));
    tracing::info!(
        topic,
        partition,
        ?target,
        "positioning at the offset the lake holds"
    );
    if let Err(error) = consumer.seek(topic, partition, target, Duration::from_secs(10)) {
        tracing::warn!(topic, partition, %error, "seek failed; the partition will be positioned on its next assignment");
    }
}

/// Starts the commit of each table that is due and has none running (dead letters settled
/// first: their offsets are in the commits). With `force` (shutdown), waits for the commits
/// in flight, commits everything buffered and waits for that too.
async fn flush(
    consumer: &StreamConsumer<IngestContext>,
    sinks: &mut Sinks,
    dead_letters: &mut DeadLetterQueue,
    metrics: &IngestMetrics,
    config: &IngestConfig,
    force: bool,
) -> Result<(), IngestError> {
    use std::sync::atomic::Ordering::Relaxed;
    if force {
        join_all(consumer, sinks, metrics).await?;
    }
    // A backlogged buffer waits for its table's commit in flight: a slow store (a full disk,
    // a distant object store) holds the loop back instead of filling memory.
    for topic in topics::RECORD_TOPICS {
        if with_sink!(sinks, topic, |sink| sink.in_flight() && sink.is_backlogged(&config.flush), else false)
            && let Some(outcome) = with_sink!(sinks, topic, |sink| sink.join().await?, else None)
        {
            settle(consumer, sinks, metrics, topic, outcome).await;
        }
    }
    let now = Instant::now();
    let events_due =
        !sinks.events.in_flight() && (force || sinks.events.is_due(&config.flush, now));
    let visits_due =
        !sinks.visits.in_flight() && (force || sinks.visits.is_due(&config.flush, now));
    let accounts_due =
        !sinks.accounts.in_flight() && (force || sinks.accounts.is_due(&config.flush, now));
    let directory_due =
        !sinks.directory.in_flight() && (force || sinks.directory.is_due(&config.flush, now));
    if (events_due || visits_due || accounts_due || directory_due) && dead_letters.pending() > 0 {
        // Dead letters first: their offsets are in the commits below. A table whose topic
        // still has letters pending does not commit this time.
        let acknowledged = match dead_letters.settle().await {
            Ok(acknowledged) => acknowledged,
            Err((acknowledged, unsettled)) => {
                metrics.dead_letters.fetch_add(acknowledged as u64, Relaxed);
                metrics
                    .dead_letters_pending
                    .store(dead_letters.pending() as u64, Relaxed);
                if let Some(error) = unsettled.clone().into_error() {
                    return Err(error);
                }
                tracing::warn!(
                    ?unsettled,
                    "dead letters pending: their tables' commits wait"
                );
                0
            }
        };
        metrics.dead_letters.fetch_add(acknowledged as u64, Relaxed);
        metrics
            .dead_letters_pending
            .store(dead_letters.pending() as u64, Relaxed);
    }
    if events_due && !dead_letters.holds(EventRecord::TOPIC) {
        sinks.events.start_flush();
    }
    if visits_due && !dead_letters.holds(VisitRecord::TOPIC) {
        sinks.visits.start_flush();
    }
    if accounts_due && !dead_letters.holds(AccountRecord::TOPIC) {
        sinks.accounts.start_flush();
    }
    if directory_due && !dead_letters.holds(DirectoryRecord::TOPIC) {
        sinks.directory.start_flush();
    }
    if force {
        join_all(consumer, sinks, metrics).await?;
    }
    Ok(())
}

/// Waits for every commit in flight and settles its outcome.
async fn join_all(
    consumer: &StreamConsumer<IngestContext>,
    sinks: &mut Sinks,
    metrics: &IngestMetrics,
) -> Result<(), IngestError> {
    for topic in topics::RECORD_TOPICS {
        while let Some(outcome) = with_sink!(sinks, topic, |sink| sink.join().await?, else None) {
            settle(consumer, sinks, metrics, topic, outcome).await;
        }
    }
    Ok(())
}

/// What follows a commit: the log, the metrics, Kafka's offsets (for information), and the
/// partitions whose batch was dropped (fenced, or a failed commit) sent back to the lake's
/// offsets.
async fn settle(
    consumer: &StreamConsumer<IngestContext>,
    sinks: &mut Sinks,
    metrics: &IngestMetrics,
    topic: &'static str,
    outcome: FlushOutcome,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let counters = metrics.table(table_of(topic));
    let mut kafka_offsets = TopicPartitionList::new();
    match outcome {
        Ok(report) => {
            tracing::info!(table = report.table, version = report.version, rows = report.rows, files = report.files, repeats = report.repeats, check_ms = report.timings.check.as_millis(), write_ms = report.timings.write.as_millis(), commit_ms = report.timings.commit.as_millis(), offsets = ?report.offsets, "committed");
            counters.commits.fetch_add(1, Relaxed);
            counters.rows_written.fetch_add(report.rows as u64, Relaxed);
            counters
                .files_written
                .fetch_add(report.files as u64, Relaxed);
            counters
                .repeats_dropped
                .fetch_add(report.repeats as u64, Relaxed);
            let timings = report.timings;
            counters.commit_micros.fetch_add(
                (timings.check + timings.write + timings.commit).as_micros() as u64,
                Relaxed,
            );
            counters
                .last_commit_unix_ms
                .store(chrono::Utc::now().timestamp_millis(), Relaxed);
            metrics.consecutive_failures.store(0, Relaxed);
            for (&partition, offset) in &report.offsets {
                let _ = kafka_offsets.add_partition_offset(
                    topic,
                    partition,
                    rdkafka::Offset::Offset(offset.next().0),
                );
            }
            for &partition in &report.fenced {
                let to = with_sink!(sinks, topic, |sink| sink.committed(partition).await.ok().flatten(), else None);
                seek(consumer, topic, partition, to.map(|c| c.offset));
            }
        }
        Err(failure) => {
            counters.commit_failures.fetch_add(1, Relaxed);
            metrics.consecutive_failures.fetch_add(1, Relaxed);
            if matches!(failure.error, IngestError::CommitRace { .. }) {
                tracing::info!(error = %failure.error, topic, "commit raced another writer");
                metrics.commit_races.fetch_add(1, Relaxed);
            } else {
                tracing::error!(error = %failure.error, topic, "commit failed; reading the batch again from the lake's offsets");
            }
            for partition in failure.partitions {
                let to = with_sink!(sinks, topic, |sink| sink.committed(partition).await.ok().flatten(), else None);
                seek(consumer, topic, partition, to.map(|c| c.offset));
            }
        }
    }
    if kafka_offsets.count() > 0
        && let Err(error) = consumer.commit(&kafka_offsets, CommitMode::Async)
    {
        // Informational only: the lake's offsets are the truth.
        tracing::debug!(%error, "Kafka offset commit refused");
    }
}
