//! One lake table and what is on its way into it: `Delivery{partition, offset, bytes} ->
//! record -> TableBuffer -> RecordBatch -> Delta commit{files, txn(app_id, offset)}`.
//!
//! The offsets in the table are the truth. On the first message of a partition after an
//! assignment, the sink reads what the table holds for it (its last offset, and the
//! fingerprint of the message there), sends the consumer back to that offset
//! (`Admission::Seek`) and checks the message it finds there and every offset after it
//! (`position.rs`): a gap or offsets going backwards stop the partition (`Admission::Stopped`)
//! instead of skipping messages silently. Before each commit the sink checks that nobody else
//! advanced its partitions (a zombie after a rebalance), and the commit's own application
//! transactions make delta-rs refuse a concurrent one.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Instant;

use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Transaction};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use mxpulse_schemas::{Record, decode};

use crate::buffer::{FlushPolicy, Pushed, TableBuffer};
use crate::error::IngestError;
use crate::identity::IdentityIndex;
use crate::lake::{committed_offset, identities_of_day};
use crate::offsets::{Offset, app_id};
use crate::position::{
    self, Committed, Position, PositionProblem, Step, fingerprint, fingerprint_app_id,
};

/// What the sink did with one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Buffered,
    /// Its identity is already buffered: dropped.
    Repeat,
    /// The lake already holds this offset: skipped.
    AlreadyInLake,
    /// Not a record: the caller sends it to the dead-letter topic. Its offset is buffered.
    DeadLetter(mxpulse_schemas::DecodeError),
    /// Read the partition from here first (`None`: the beginning), to check its position.
    Seek(Option<Offset>),
    /// The partition cannot go on without losing or repeating messages: it is stopped.
    Stopped(PositionProblem),
}

/// What a commit stored.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CommitReport {
    pub table: &'static str,
    pub version: i64,
    pub rows: usize,
    /// Records dropped as repeats since the last commit: in the buffer, or because the lake
    /// already held their identity.
    pub repeats: usize,
    /// Parquet files the commit added.
    pub files: usize,
    /// Offsets now in the lake, per partition.
    pub offsets: BTreeMap<i32, Offset>,
    /// Partitions whose buffered data was dropped because another writer advanced them.
    pub fenced: Vec<i32>,
    /// Where the commit's time went.
    pub timings: CommitTimings,
}

/// Where a commit's time went, for the log and the benchmarks: checking the lake's offsets and
/// identities, building the Arrow batch and writing Parquet, and the Delta commit itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitTimings {
    pub check: std::time::Duration,
    pub write: std::time::Duration,
    pub commit: std::time::Duration,
}

/// A flush that did not commit: its data was dropped, to be read again from these partitions.
#[derive(Debug)]
pub struct FlushFailure {
    pub error: IngestError,
    pub partitions: Vec<i32>,
}

pub struct TableSink<R: Record> {
    buffer: TableBuffer<R>,
    /// What the lake holds per partition, loaded on the first message after an assignment.
    committed: HashMap<i32, Option<Committed>>,
    /// Where each partition's reading stands since its assignment.
    positions: HashMap<i32, Position>,
    /// The table and what commits need, here between commits; with the commit while one runs.
    committer: Option<Committer<R>>,
    /// The commit running on a task of its own, while the loop reads the next batch.
    in_flight: Option<tokio::task::JoinHandle<(Committer<R>, CommitOutcome)>>,
    /// The outcome of a commit that finished while the sink waited for its committer (to read
    /// a new partition's offsets), for `join` to give.
    finished: Option<Result<CommitReport, FlushFailure>>,
    /// A rebalance happened while a commit was in flight: the identity index is dropped when
    /// the committer is back.
    identities_stale: bool,
    /// Repeats the buffer dropped since the last batch was taken.
    repeats_buffered: usize,
}

/// What a commit hands back to its sink.
struct CommitOutcome {
    result: Result<CommitReport, IngestError>,
    /// The batch's partitions.
    partitions: Vec<i32>,
    /// What the lake now holds for the batch's partitions that were committed.
    now_held: Vec<(i32, Committed)>,
    /// Partitions outside the batch that another writer advanced: read again from the lake.
    moved: Vec<i32>,
}

/// The table and the state of commits: owned by the commit while it runs, so that it can run on
/// another core while the loop decodes the next batch.
struct Committer<R: Record> {
    table: DeltaTable,
    group: String,
    identities: IdentityIndex,
    /// The table version the identity index holds every commit of: a newer version that is
    /// not our own commit (another instance's, or maintenance) makes the index reload.
    identities_as_of: Option<i64>,
    /// The table version as of which the sink's `committed` holds what the lake holds for every
    /// partition in it: our own last commit. While the table is still at it, nobody else
    /// advanced our partitions and the check before a commit needs no reading (each reading
    /// replays the Delta log, twice per partition: it took a third of the ingest's time at 64
    /// partitions).
    offsets_as_of: Option<i64>,
    writer_properties: WriterProperties,
    _records: std::marker::PhantomData<fn() -> R>,
}

/// A batch on its way to a commit, with what the sink believed the lake held for every
/// partition it knows (the fencing check compares against it).
struct Batch<R> {
    records: Vec<crate::buffer::Buffered<R>>,
    offsets: crate::buffer::Consumed,
    known: HashMap<i32, Option<Committed>>,
    /// Repeats the buffer dropped since the last batch: the commit reports them with those
    /// the lake already held, so its log line and `/metrics` say the same.
    repeats: usize,
}

impl<R: Record> TableSink<R> {
    pub fn new(table: DeltaTable, group: &str, identity_days: usize) -> Self {
        Self {
            buffer: TableBuffer::default(),
            committed: HashMap::new(),
            positions: HashMap::new(),
            committer: Some(Committer {
                table,
                group: group.to_owned(),
                identities: IdentityIndex::new(identity_days),
                identities_as_of: None,
                offsets_as_of: None,
                writer_properties: crate::lake::writer_properties(),
                _records: std::marker::PhantomData,
            }),
            in_flight: None,
            finished: None,
            identities_stale: false,
            repeats_buffered: 0,
        }
    }

    /// What the lake holds for `partition` (loaded once per assignment; waits for a commit in
    /// flight, whose outcome `join` then gives).
    pub async fn committed(&mut self, partition: i32) -> Result<Option<Committed>, IngestError> {
        if let Some(known) = self.committed.get(&partition) {
            return Ok(*known);
        }
        let committer = self.committer_home().await?;
        committer.refresh().await?;
        let committed = committer.read_committed(partition).await?;
        self.committed.insert(partition, committed);
        Ok(committed)
    }

    /// The committer, after the commit in flight (if any) finished; its outcome is kept for
    /// `join`.
    async fn committer_home(&mut self) -> Result<&mut Committer<R>, IngestError> {
        if let Some(outcome) = self.wait_in_flight().await? {
            self.finished = Some(outcome);
        }
        self.committer.as_mut().ok_or(IngestError::CommitTask {
            table: R::TABLE,
            reason: "the table was lost with a failed commit task".into(),
        })
    }

    /// Decodes a message into the buffer, or says why not.
    pub async fn admit(
        &mut self,
        partition: i32,
        offset: Offset,
        header: Option<&[u8]>,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<Admission, IngestError> {
        let committed = self.committed(partition).await?;
        let print = fingerprint(key, payload);
        let (step, position) = position::step(
            self.positions.get(&partition).copied(),
            committed,
            offset,
            print,
        );
        self.positions.insert(partition, position);
        match step {
            Step::Take => {}
            Step::SeekTo(to) => return Ok(Admission::Seek(to)),
            Step::Stop(problem) => return Ok(Admission::Stopped(problem)),
        }
        if committed.is_some_and(|c| offset <= c.offset) {
            return Ok(Admission::AlreadyInLake);
        }
        match decode::<R>(header, payload) {
            Ok(record) => Ok(
                match self
                    .buffer
                    .push(partition, offset, print, record, payload.len())
                {
                    Pushed::Added => Admission::Buffered,
                    Pushed::Repeat => {
                        self.repeats_buffered += 1;
                        Admission::Repeat
                    }
                },
            ),
            Err(error) => {
                self.buffer
                    .dead_letter(partition, offset, print, payload.len());
                Ok(Admission::DeadLetter(error))
            }
        }
    }

    pub fn is_due(&self, policy: &FlushPolicy, now: Instant) -> bool {
        self.buffer.is_due(policy, now)
    }

    /// The buffer holds twice its row or byte limit: with a commit in flight, the loop waits
    /// for it rather than buffer more (at most three batches of a table in memory; one batch
    /// of slack keeps the loop reading while a commit runs a little long).
    pub fn is_backlogged(&self, policy: &FlushPolicy) -> bool {
        self.buffer.holds_batches(policy, 2)
    }

    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Whether a commit is running (the next one starts once it is over).
    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Partitions were revoked: their buffered data is dropped (the next owner reads it again
    /// from the lake's offsets) and what was known of them forgotten. A commit in flight goes
    /// on: if another instance read the lake before it landed, Delta refuses that instance's
    /// commit of the same partitions (their application transactions), and it reads again.
    pub fn revoke(&mut self, partitions: &[i32]) {
        tracing::debug!(
            table = R::TABLE,
            ?partitions,
            buffered = self.buffer.len(),
            "revoke"
        );
        self.forget(partitions);
        self.drop_identities();
    }

    /// Partitions were assigned: their offsets and the identity index are read afresh.
    pub fn assign(&mut self, partitions: &[i32]) {
        tracing::debug!(
            table = R::TABLE,
            ?partitions,
            buffered = self.buffer.len(),
            "assign"
        );
        for partition in partitions {
            self.committed.remove(partition);
            self.positions.remove(partition);
        }
        self.drop_identities();
    }

    fn forget(&mut self, partitions: &[i32]) {
        self.buffer.forget(partitions);
        for partition in partitions {
            self.committed.remove(partition);
            self.positions.remove(partition);
        }
    }

    fn drop_identities(&mut self) {
        match &mut self.committer {
            Some(committer) => committer.identities.clear(),
            None => self.identities_stale = true,
        }
    }

    /// Hands the buffer to a commit on a task of its own, and returns at once: the loop reads
    /// the next batch meanwhile. Nothing happens if the buffer is empty or a commit is already
    /// running, or the last one's outcome is not collected by `join` yet (one at a time per
    /// table: commits land in offset order, and no outcome is overwritten).
    pub fn start_flush(&mut self) {
        if self.buffer.is_empty() || self.in_flight.is_some() || self.finished.is_some() {
            return;
        }
        let Some(mut committer) = self.committer.take() else {
            return;
        };
        if std::mem::take(&mut self.identities_stale) {
            committer.identities.clear();
        }
        let (records, offsets) = self.buffer.take();
        let batch = Batch {
            records,
            offsets,
            known: self.committed.clone(),
            repeats: std::mem::take(&mut self.repeats_buffered),
        };
        self.in_flight = Some(tokio::spawn(async move {
            let outcome = committer.commit(batch).await;
            (committer, outcome)
        }));
    }

    /// The outcome of the commit in flight once it is over (`None` if none runs), its effects
    /// on this sink applied: the lake's new offsets known; partitions fenced, moved by another
    /// writer or in a failed batch forgotten, with what was buffered of them since (they are
    /// read again from the lake's offsets: the caller seeks them). `Err` only if the commit's
    /// task itself died (a bug): the table went with it, and the ingest must restart.
    pub async fn join(
        &mut self,
    ) -> Result<Option<Result<CommitReport, FlushFailure>>, IngestError> {
        match self.finished.take() {
            Some(finished) => Ok(Some(finished)),
            None => self.wait_in_flight().await,
        }
    }

    /// Waits for the commit in flight, if any, and applies its outcome.
    async fn wait_in_flight(
        &mut self,
    ) -> Result<Option<Result<CommitReport, FlushFailure>>, IngestError> {
        let Some(handle) = self.in_flight.as_mut() else {
            return Ok(None);
        };
        let joined = handle.await;
        self.in_flight = None;
        self.finish(joined).map(Some)
    }

    fn finish(
        &mut self,
        joined: Result<(Committer<R>, CommitOutcome), tokio::task::JoinError>,
    ) -> Result<Result<CommitReport, FlushFailure>, IngestError> {
        let (mut committer, outcome) = joined.map_err(|error| IngestError::CommitTask {
            table: R::TABLE,
            reason: error.to_string(),
        })?;
        if std::mem::take(&mut self.identities_stale) {
            committer.identities.clear();
        }
        self.committer = Some(committer);
        self.forget(&outcome.moved);
        match outcome.result {
            Ok(report) => {
                self.forget(&report.fenced);
                for (partition, held) in outcome.now_held {
                    // Still ours (not revoked, fenced or moved while the commit ran).
                    if let Some(known) = self.committed.get_mut(&partition) {
                        *known = Some(held);
                    }
                }
                Ok(Ok(report))
            }
            Err(error) => {
                // Start again from the truth: what the lake holds.
                self.forget(&outcome.partitions);
                Ok(Err(FlushFailure {
                    error,
                    partitions: outcome.partitions,
                }))
            }
        }
    }

    /// `join` as a poll, for the loop's `select!`: pending while nothing is in flight.
    pub fn poll_join(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Result<CommitReport, FlushFailure>, IngestError>> {
        use std::task::Poll;
        if let Some(finished) = self.finished.take() {
            return Poll::Ready(Ok(finished));
        }
        let Some(handle) = self.in_flight.as_mut() else {
            return Poll::Pending;
        };
        match std::pin::Pin::new(handle).poll(cx) {
            Poll::Ready(joined) => {
                self.in_flight = None;
                Poll::Ready(self.finish(joined))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Commits the buffer and waits for it (after the commit in flight, if any, whose outcome
    /// is then dropped: the loop uses `start_flush` and `join`).
    pub async fn flush(&mut self) -> Result<Option<CommitReport>, FlushFailure> {
        let lost = |error| FlushFailure {
            error,
            partitions: Vec::new(),
        };
        self.join().await.map_err(lost)?;
        if self.buffer.is_empty() {
            return Ok(None);
        }
        self.start_flush();
        match self.join().await.map_err(lost)? {
            Some(outcome) => outcome.map(Some),
            None => Ok(None),
        }
    }
}

impl<R: Record> Committer<R> {
    fn app_id(&self, partition: i32) -> String {
        app_id(&self.group, R::TOPIC, partition)
    }

    async fn read_committed(&self, partition: i32) -> Result<Option<Committed>, IngestError> {
        let app_id = self.app_id(partition);
        // A negative offset is a reset to before the first message: read from the beginning.
        let Some(offset) = committed_offset(&self.table, &app_id)
            .await?
            .filter(|o| o.0 >= 0)
        else {
            return Ok(None);
        };
        let fingerprint = committed_offset(&self.table, &fingerprint_app_id(&app_id))
            .await?
            .map(|f| f.0)
            .filter(|f| *f != 0);
        Ok(Some(Committed {
            offset,
            fingerprint,
        }))
    }

    async fn refresh(&mut self) -> Result<(), IngestError> {
        self.table
            .update_state()
            .await
            .map_err(
                |source: deltalake::DeltaTableError| IngestError::OpenTable {
                    table: R::TABLE,
                    source: Box::new(source),
                },
            )
    }

    async fn commit(&mut self, batch: Batch<R>) -> CommitOutcome {
        let partitions: Vec<i32> = batch.offsets.keys().copied().collect();
        let mut moved = Vec::new();
        let mut now_held = Vec::new();
        let result = self
            .write_and_commit(batch, &mut moved, &mut now_held)
            .await;
        if result.is_err() {
            self.offsets_as_of = None;
            self.identities.clear();
        }
        CommitOutcome {
            result,
            partitions,
            now_held,
            moved,
        }
    }

    async fn write_and_commit(
        &mut self,
        batch: Batch<R>,
        moved: &mut Vec<i32>,
        now_held: &mut Vec<(i32, Committed)>,
    ) -> Result<CommitReport, IngestError> {
        let Batch {
            records,
            mut offsets,
            known,
            repeats: repeats_buffered,
        } = batch;
        let started = Instant::now();
        self.refresh().await?;
        let read_version = self.table.version().map(|v| v as i64);
        let unmoved = read_version.is_some() && read_version == self.offsets_as_of;
        let mut fenced = Vec::new();
        if !unmoved {
            // Every partition we know, not only this batch's: `offsets_as_of` below vouches for
            // all of them. One another writer advanced is fenced if in this batch, else
            // forgotten (its next message reads the lake again and seeks).
            let partitions: std::collections::BTreeSet<i32> =
                known.keys().chain(offsets.keys()).copied().collect();
            for partition in partitions {
                let now = self.read_committed(partition).await?.map(|c| c.offset);
                let ours = known.get(&partition).copied().flatten().map(|c| c.offset);
                if ours == now {
                    continue;
                }
                if offsets.contains_key(&partition) {
                    tracing::warn!(table = R::TABLE, partition, lake = ?now, ?ours, "another writer advanced this partition; dropping our batch for it");
                    fenced.push(partition);
                } else {
                    moved.push(partition);
                }
            }
        }
        for partition in &fenced {
            offsets.remove(partition);
        }

        // Identities another writer committed since the index was loaded are not in it: a
        // record repeated on another partition (another instance's), or written by another
        // producer, would be written twice. So a table that moved by anything but our own
        // commits is read afresh, day by day as needed; and the commit below names the days it
        // writes, so that a commit of the same days by another writer in the meantime makes
        // ours fail (a conflict) and its batch read again, rather than doubled.
        if read_version != self.identities_as_of {
            self.identities.clear();
            self.identities_as_of = read_version;
        }
        // Day by day, so that a batch spanning more days than the index keeps is still checked
        // against each day right after that day is loaded.
        let mut by_day: BTreeMap<i32, Vec<R>> = BTreeMap::new();
        for buffered in records {
            if !fenced.contains(&buffered.partition) {
                by_day
                    .entry(buffered.record.partition_day())
                    .or_default()
                    .push(buffered.record);
            }
        }
        let mut repeats = repeats_buffered;
        let mut kept: Vec<R> = Vec::new();
        for (day, records) in by_day {
            if !self.identities.is_loaded(day) {
                let keys = identities_of_day::<R>(&self.table, day).await?;
                self.identities.load(day, keys);
            }
            for record in records {
                if self.identities.contains(day, &record.key_print()) {
                    repeats += 1;
                } else {
                    kept.push(record);
                }
            }
        }
        if offsets.is_empty() {
            return Ok(CommitReport {
                table: R::TABLE,
                version: self.table.version().map_or(-1, |v| v as i64),
                fenced,
                ..Default::default()
            });
        }
        let checked = Instant::now();
        kept.sort_by_key(Record::time_micros);
        let kept_days: std::collections::BTreeSet<i32> =
            kept.iter().map(Record::partition_day).collect();

        // Per partition: the last offset, and the fingerprint of the message at it.
        let txns = offsets
            .iter()
            .flat_map(|(&p, (o, print))| {
                [
                    Transaction::new(self.app_id(p), o.0),
                    Transaction::new(fingerprint_app_id(&self.app_id(p)), *print),
                ]
            })
            .collect();
        let commit_err = |source: deltalake::DeltaTableError| IngestError::Commit {
            table: R::TABLE,
            offsets: format!("{offsets:?}"),
            source: Box::new(source),
        };
        let mut writer = RecordBatchWriter::for_table(&self.table)
            .map_err(commit_err)?
            .with_writer_properties(self.writer_properties.clone());
        if !kept.is_empty() {
            let batch = R::to_record_batch(&kept).map_err(|source| IngestError::Batch {
                table: R::TABLE,
                source,
            })?;
            writer
                .write(batch)
                .await
                .map_err(
                    |source: deltalake::DeltaTableError| IngestError::WriteTable {
                        table: R::TABLE,
                        source: Box::new(source),
                    },
                )?;
        }
        // flush, then commit ourselves: the same as `flush_and_commit`, but we learn the files.
        let adds = writer.flush().await.map_err(commit_err)?;
        let written = Instant::now();
        let files = adds.len();
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: Some(vec![R::PARTITION_COLUMN.to_owned()]),
            predicate: days_predicate(R::PARTITION_COLUMN, &kept_days),
        };
        let snapshot = self.table.snapshot().map_err(commit_err)?;
        let finalized =
            CommitBuilder::from(CommitProperties::default().with_application_transactions(txns))
                .with_actions(adds.into_iter().map(Action::Add).collect())
                .build(Some(snapshot), self.table.log_store(), operation)
                .await
                .map_err(|source| match source {
                    deltalake::DeltaTableError::Transaction {
                        source: deltalake::kernel::transaction::TransactionError::CommitConflict(_),
                    } => IngestError::CommitRace { table: R::TABLE },
                    other => commit_err(other),
                })?;
        let version = finalized.version();
        // Our commit right after the version we read: the index holds every commit. Another
        // writer's commit in between (of other days) leaves it behind: the next commit reloads.
        if read_version.map(|v| v + 1) == Some(version as i64) {
            self.identities_as_of = Some(version as i64);
            self.offsets_as_of = Some(version as i64);
        }
        // Read the new version now, while the loop is busy decoding: the next commit's refresh
        // then finds nothing new to read.
        if let Err(error) = self.table.update_state().await {
            tracing::warn!(table = R::TABLE, %error, "refreshing the table after a commit failed");
        }

        for (&partition, &(offset, print)) in &offsets {
            now_held.push((
                partition,
                Committed {
                    offset,
                    fingerprint: Some(print),
                },
            ));
        }
        for record in &kept {
            self.identities
                .committed(record.partition_day(), record.key_print());
        }
        Ok(CommitReport {
            table: R::TABLE,
            version: version as i64,
            files,
            rows: kept.len(),
            repeats,
            offsets: offsets.into_iter().map(|(p, (o, _))| (p, o)).collect(),
            fenced,
            timings: CommitTimings {
                check: checked - started,
                write: written - checked,
                commit: written.elapsed(),
            },
        })
    }
}

/// The predicate a commit of `days` reads: `date IN (DATE '2024-07-15', ...)`; the Delta
/// conflict check fails our commit when another writer added files to one of these days after
/// the version we read. `None` for a commit of offsets only.
fn days_predicate(column: &str, days: &std::collections::BTreeSet<i32>) -> Option<String> {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    let dates: Vec<String> = days
        .iter()
        .filter_map(|d| epoch.checked_add_signed(chrono::Duration::days(i64::from(*d))))
        .map(|d| format!("DATE '{d}'"))
        .collect();
    (!dates.is_empty()).then(|| format!("{column} IN ({})", dates.join(", ")))
}
