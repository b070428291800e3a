//! Making a stream micro-batch durable on a thread of its own, while the main loop goes on with
//! the next batch: writing Bronze, quarantine and alert files, waiting for the alerts topic's
//! acknowledgements and for fsync was a third of the main loop's time.
//!
//! One flush at a time, in batch order: the main loop waits for the previous flush before it
//! starts the next. A batch is cut with a snapshot of each partition's checkpoint (offset,
//! engine state, last record), so the engine can move on while the snapshot is written. The
//! order inside a flush is the module `consume` describes: files, alert acknowledgements,
//! checkpoints, offsets.

use super::checkpoint::{self, PartitionCheckpoint, RecordMark};
use super::metrics::Metrics;
use super::poller::StreamConsumer;
use super::produce::CountingProducer;
use super::StreamError;
use crate::domain::alerts::Alert;
use crate::domain::time::UtcMillis;
use crate::domain::Measurement;
use crate::lake::alerts::write_alerts;
use crate::lake::bronze::{BronzeWriter, Received, Rejected};
use crate::lake::layout;
use crate::output::{OutputError, WrittenFile};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::Producer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A valid record with when it was received, its source (topic/partition) and offset.
pub type Accepted = (Measurement, UtcMillis, Arc<str>, i64);

/// Where and how batches are made durable: the same for every flush of a run.
pub struct FlushTarget {
    pub lake: PathBuf,
    pub group: String,
    pub topic: String,
    pub alerts: Arc<CountingProducer>,
    pub consumer: Arc<StreamConsumer>,
    /// The poller's gate: held while checkpoints and offsets are written, so that no
    /// rebalance happens meanwhile.
    pub gate: Arc<Mutex<()>>,
    pub metrics: Arc<Metrics>,
}

/// A partition's checkpoint as of the cut, and which incarnation of the partition's state it
/// belongs to (a partition revoked and assigned again starts a new one).
pub struct Snapshot {
    pub incarnation: u64,
    pub checkpoint: PartitionCheckpoint,
}

/// A batch cut from the stream.
pub struct FlushJob {
    pub batch_id: String,
    pub accepted: Vec<Accepted>,
    pub rejected: Vec<Rejected>,
    pub alerts: Vec<Alert>,
    pub snapshots: Vec<Snapshot>,
    /// How much of the revocation log the main loop had applied at the cut: partitions revoked
    /// after it are no longer ours and are neither checkpointed nor committed.
    pub applied_revocations: usize,
}

/// A partition made durable by a flush.
pub struct Durable {
    pub partition: i32,
    pub incarnation: u64,
    pub next_offset: i64,
    pub last_record: Option<RecordMark>,
}

/// A finished flush.
pub struct Flushed {
    pub written: u64,
    pub quarantined: u64,
    pub reasons: BTreeMap<String, u64>,
    pub durable: Vec<Durable>,
    pub seconds: f64,
    /// The batch's record vector, emptied, for a later batch to reuse.
    spare: Vec<Accepted>,
}

/// Runs flushes one at a time on a background thread.
pub struct Flusher {
    target: Arc<FlushTarget>,
    in_flight: Option<JoinHandle<Result<Flushed, StreamError>>>,
    /// An emptied record vector: growing a fresh vector of a batch's size again cost copies and
    /// page faults on every batch.
    spare: Vec<Accepted>,
}

impl Flusher {
    pub fn new(target: FlushTarget) -> Self {
        Flusher {
            target: Arc::new(target),
            in_flight: None,
            spare: Vec::new(),
        }
    }

    /// A vector for the next batch's records (the room of an earlier batch when there is one).
    pub fn take_spare(&mut self) -> Vec<Accepted> {
        std::mem::take(&mut self.spare)
    }

    /// Starts making `job` durable. The previous flush must have been waited for.
    pub fn start(&mut self, job: FlushJob) {
        debug_assert!(self.in_flight.is_none(), "one flush at a time");
        let target = self.target.clone();
        self.in_flight = Some(std::thread::spawn(move || make_durable(&target, job)));
    }

    /// Waits for the flush in flight, if any.
    pub fn wait(&mut self) -> Result<Option<Flushed>, StreamError> {
        let Some(handle) = self.in_flight.take() else {
            return Ok(None);
        };
        let mut flushed = handle.join().map_err(|_| StreamError::Checkpoint {
            path: self.target.lake.display().to_string(),
            message: "the flushing thread failed".into(),
        })??;
        self.spare = std::mem::take(&mut flushed.spare);
        Ok(Some(flushed))
    }
}

fn make_durable(target: &FlushTarget, job: FlushJob) -> Result<Flushed, StreamError> {
    let started = Instant::now();
    let FlushJob {
        batch_id,
        mut accepted,
        rejected,
        alerts,
        snapshots,
        applied_revocations,
    } = job;
    let (written, quarantined, reasons) =
        write_batch(&target.lake, &batch_id, &accepted, rejected, alerts)?;
    accepted.clear();
    // Every alert published so far is acknowledged before the offsets move on.
    if target.alerts.flush(Duration::from_secs(30)).is_err() {
        let lost = target.alerts.in_flight_count();
        target
            .metrics
            .alert_delivery_failures
            .fetch_add(lost.max(0) as u64, Ordering::Relaxed);
        tracing::error!(
            lost,
            "the alerts topic did not acknowledge every alert within 30 s (they are in the lake)"
        );
    }
    let durable = {
        let _gate = target.gate.lock().unwrap_or_else(|e| e.into_inner());
        checkpoint_and_commit(target, snapshots, applied_revocations)?
    };
    let metrics = &target.metrics;
    metrics.written.fetch_add(written, Ordering::Relaxed);
    metrics
        .quarantined
        .fetch_add(quarantined, Ordering::Relaxed);
    metrics.batches.fetch_add(1, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    metrics.observe_flush(seconds);
    Ok(Flushed {
        written,
        quarantined,
        reasons,
        durable,
        seconds,
        spare: accepted,
    })
}

/// Writes the snapshots' checkpoints and commits their offsets, leaving out partitions
/// revoked since the cut (their new owner reads them from the last commit).
fn checkpoint_and_commit(
    target: &FlushTarget,
    snapshots: Vec<Snapshot>,
    applied_revocations: usize,
) -> Result<Vec<Durable>, StreamError> {
    let notes = target.consumer.context();
    let gone = notes.revoked_between(applied_revocations, notes.revocations());
    let mut offsets = TopicPartitionList::new();
    let mut durable = Vec::new();
    for Snapshot {
        incarnation,
        checkpoint: cp,
    } in snapshots
    {
        if gone.contains(&cp.partition) {
            continue;
        }
        checkpoint::store(&target.lake, &target.group, &cp)?;
        offsets
            .add_partition_offset(&target.topic, cp.partition, Offset::Offset(cp.next_offset))
            .map_err(|e| StreamError::Kafka {
                target: target.topic.clone(),
                what: "offset list".into(),
                message: e.to_string(),
            })?;
        durable.push(Durable {
            partition: cp.partition,
            incarnation,
            next_offset: cp.next_offset,
            last_record: cp.last_record,
        });
    }
    if offsets.count() > 0 {
        if let Err(e) = target.consumer.commit(&offsets, CommitMode::Sync) {
            // The data and the checkpoint are durable: a later commit, or the checkpoint on
            // restart, covers it.
            tracing::warn!(error = %e, "offset commit failed; the checkpoint keeps the position");
        }
    }
    Ok(durable)
}

/// Writes a batch's Bronze, quarantine and alert files durably into the lake: into a staging
/// folder first, then renamed into place.
fn write_batch(
    lake: &Path,
    batch_id: &str,
    accepted: &[Accepted],
    rejected: Vec<Rejected>,
    alerts: Vec<Alert>,
) -> Result<(u64, u64, BTreeMap<String, u64>), StreamError> {
    let staging = lake.join(format!(".kidjamo-staging-{batch_id}"));
    let io = |p: &Path, e: std::io::Error| StreamError::Output(OutputError::io(p, e));
    std::fs::create_dir_all(&staging).map_err(|e| io(&staging, e))?;
    let mut writer = BronzeWriter::new(&staging, batch_id);
    for (m, received_at, source, offset) in accepted {
        writer.accept(Received {
            measurement: m,
            received_at: *received_at,
            source,
            source_offset: *offset,
        })?;
    }
    for r in rejected {
        writer.reject(r);
    }
    let reasons = writer.reasons.clone();
    let (mut files, written, quarantined) = writer.finish()?;
    let mut by_day: BTreeMap<chrono::NaiveDate, Vec<Alert>> = BTreeMap::new();
    for a in alerts {
        by_day.entry(a.last_seen_at.date()).or_default().push(a);
    }
    for (day, alerts) in by_day {
        let rel = layout::alerts_part(layout::ALERT_DIRS[0], day, batch_id, 0);
        files.push(write_alerts(&staging, rel, &alerts)?);
    }
    publish_files(&staging, lake, &files)?;
    std::fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))?;
    Ok((written, quarantined, reasons))
}

/// Renames synced files from `staging` into `lake` and syncs the folders they land in.
fn publish_files(staging: &Path, lake: &Path, files: &[WrittenFile]) -> Result<(), StreamError> {
    let io = |p: &Path, e: std::io::Error| StreamError::Output(OutputError::io(p, e));
    let mut dirs = std::collections::BTreeSet::new();
    for f in files {
        let (from, to) = (staging.join(&f.path), lake.join(&f.path));
        let dir = to.parent().unwrap_or(lake).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        std::fs::rename(&from, &to).map_err(|e| io(&to, e))?;
        dirs.insert(dir);
    }
    for d in dirs {
        checkpoint::sync_dir(&d).map_err(|e| io(&d, e))?;
    }
    Ok(())
}
