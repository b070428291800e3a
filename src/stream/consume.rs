//! `kidjamo stream`: a consumer group member that turns the measurements topic into Bronze
//! micro-batches, quarantine and alerts.
//!
//! Records are taken off the consumer on a thread of their own (`poller`) and handed over in
//! chunks. Each record is parsed and validated as it arrives; a valid one feeds the alert engine at
//! once (alerts are published to the alerts topic without waiting for the batch, which is what
//! keeps alert latency under a second). Every `flush_interval` or `flush_records` records, the
//! micro-batch is made durable in this order:
//!
//! 1. Bronze, quarantine and alert files are written into a private staging folder in the lake,
//!    synced, and renamed into place (a reader never sees a partial file);
//! 2. the alerts topic acknowledges every alert published so far;
//! 3. each partition's checkpoint (next offset + engine state) is written, atomically;
//! 4. the offsets are committed to Kafka.
//!
//! A crash before 3 replays the batch: Bronze gets copies that Silver removes by `message_id`,
//! the engine recomputes the same alerts (same ids, same content). A crash between 3 and 4
//! re-reads records that are already durable; they are recognised by their offset (below the
//! checkpoint) and skipped. A partition taken away by a rebalance drops its unflushed records
//! and state: its new owner reads them again from the committed offset and the checkpoint.

use super::alerter::{Fed, StreamAlerter};
use super::checkpoint::{self, PartitionCheckpoint, RecordMark};
use super::flush::{Accepted, FlushJob, FlushTarget, Flusher, Snapshot};
use super::kafka::{consumer_config, Compression, KafkaTarget};
use super::legacy;
use super::metrics::Metrics;
use super::poller::{ConsumerNotes, Polled, Poller, PollerGone, StreamConsumer, Taken};
use super::produce::{connect_producer, produce, CountingProducer, OutRecord};
use super::source::InputFormat;
use super::StreamError;
use crate::domain::alerts::{Alert, AlertEvent, PatientContext};
use crate::domain::thresholds::Thresholds;
use crate::domain::time::UtcMillis;
use crate::domain::{wire, Measurement};
use crate::etl::silver::Reference;
use crate::lake::bronze::Rejected;
use crate::lake::bronze_sink::admission_issues;
use rayon::prelude::*;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, OwnedHeaders};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub struct StreamSettings {
    pub brokers: String,
    pub topic: String,
    pub alerts_topic: String,
    pub group: String,
    pub lake: PathBuf,
    pub flush_interval: Duration,
    pub flush_records: usize,
    pub input_format: InputFormat,
    pub compression: Compression,
    /// Partitions of topics this process creates.
    pub partitions: i32,
    /// Stop (after a last flush) when no record has come for this long.
    pub until_idle: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StreamReport {
    pub run_id: String,
    pub consumed: u64,
    pub written: u64,
    pub quarantined: u64,
    pub skipped_durable: u64,
    pub stale: u64,
    pub alerts_opened: u64,
    pub batches: u64,
    pub reasons: BTreeMap<String, u64>,
    /// From the first record to the last, plus the last flush: the time spent working (an
    /// `--until-idle` run also waits that long before it stops).
    pub active_secs: f64,
    /// Time the polling thread spent inside the consumer's poll (waiting for records or
    /// taking them).
    pub polling_secs: f64,
    /// Time the main loop waited for the polling thread.
    pub waiting_secs: f64,
    /// Time spent making batches durable (on the flushing thread).
    pub flushing_secs: f64,
    /// Time the main loop waited for a flush to finish before cutting the next batch.
    pub flush_wait_secs: f64,
}

struct PartitionState<'t> {
    alerter: StreamAlerter<'t>,
    /// Which state this is: a partition revoked and assigned again starts a new one.
    incarnation: u64,
    /// Offsets below this are durable (from the checkpoint).
    durable_next: i64,
    /// The offset after the last record taken into the current batch.
    next: i64,
    /// `next` when the last batch was cut (that batch may still be being flushed).
    cut_next: i64,
    /// The last durable record (from the checkpoint, then from each flush).
    durable_mark: Option<RecordMark>,
    /// The last record taken into the current batch.
    mark: Option<RecordMark>,
    /// The offset of the last record received (taken or skipped): offsets going back below
    /// it mean the consumer was rewound, which is when the topic's identity is checked.
    last_seen: Option<i64>,
    source: Arc<str>,
}

#[derive(Default)]
struct Batch {
    accepted: Vec<Accepted>,
    rejected: Vec<Rejected>,
    /// Each alert touched in this batch, with its partition.
    alerts: BTreeMap<Uuid, (i32, Touched)>,
}

/// An alert touched in a batch: its latest state, or (updated and still open) where to find it.
enum Touched {
    Copy(Box<Alert>),
    Open { patient_id: Uuid },
}

impl Batch {
    fn records(&self) -> usize {
        self.accepted.len() + self.rejected.len()
    }
}

pub struct Streamer<'a> {
    settings: &'a StreamSettings,
    thresholds: &'a Thresholds,
    reference: &'a Reference,
    metrics: Arc<Metrics>,
    consumer: Arc<StreamConsumer>,
    /// How much of the consumer's revocation log has been applied to the partitions and batch.
    applied_revocations: usize,
    alerts: Arc<CountingProducer>,
    partitions: HashMap<i32, PartitionState<'a>>,
    /// Partition states created so far (numbers their incarnations).
    incarnations: u64,
    batch: Batch,
    report: StreamReport,
    batch_seq: u64,
    alert_headers: OwnedHeaders,
}

impl<'a> Streamer<'a> {
    /// Connects, checking within 10 s that the cluster answers (a broker that is down at start
    /// is an error, not a wait).
    pub fn connect(
        settings: &'a StreamSettings,
        thresholds: &'a Thresholds,
        reference: &'a Reference,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StreamError> {
        let target = KafkaTarget {
            brokers: settings.brokers.clone(),
            topic: settings.topic.clone(),
        };
        let timeout = Duration::from_secs(10);
        super::topics::ensure_topic(
            &settings.brokers,
            &settings.topic,
            settings.partitions,
            timeout,
        )?;
        let alerts_target = KafkaTarget {
            brokers: settings.brokers.clone(),
            topic: settings.alerts_topic.clone(),
        };
        let alerts = connect_producer(
            &alerts_target,
            settings.compression,
            settings.partitions,
            timeout,
        )?;
        let consumer: StreamConsumer = consumer_config(&settings.brokers, &settings.group)
            .create_with_context(ConsumerNotes::new(&settings.topic))
            .map_err(|e| StreamError::kafka(&target, "cannot create a consumer", e))?;
        consumer
            .subscribe(&[&settings.topic])
            .map_err(|e| StreamError::kafka(&target, "cannot subscribe", e))?;
        let abandoned = remove_abandoned_staging(&settings.lake, STAGING_ABANDONED_AFTER);
        if abandoned > 0 {
            tracing::info!(
                abandoned,
                "removed staging folders of stream runs killed mid-flush"
            );
        }
        let run_id = format!("stream-{}", &Uuid::new_v4().simple().to_string()[..12]);
        Ok(Streamer {
            settings,
            thresholds,
            reference,
            metrics,
            consumer: Arc::new(consumer),
            applied_revocations: 0,
            alerts: Arc::new(alerts),
            partitions: HashMap::new(),
            incarnations: 0,
            batch: Batch::default(),
            report: StreamReport {
                run_id,
                ..StreamReport::default()
            },
            batch_seq: 0,
            alert_headers: OwnedHeaders::new().insert(Header {
                key: "content-type",
                value: Some("application/json"),
            }),
        })
    }

    pub fn run_id(&self) -> &str {
        &self.report.run_id
    }

    /// Consumes until `stop` is set (SIGINT/SIGTERM) or, with `until_idle`, until the topic
    /// has been quiet that long; then flushes, commits and returns.
    pub fn run(
        mut self,
        stop: &AtomicBool,
        status: &mut dyn FnMut(&Metrics),
    ) -> Result<StreamReport, StreamError> {
        let poller = Poller::start(self.consumer.clone());
        let mut flusher = Flusher::new(FlushTarget {
            lake: self.settings.lake.clone(),
            group: self.settings.group.clone(),
            topic: self.settings.topic.clone(),
            alerts: self.alerts.clone(),
            consumer: self.consumer.clone(),
            gate: poller.gate(),
            metrics: self.metrics.clone(),
        });
        let mut last_flush = Instant::now();
        let mut last_record = Instant::now();
        let mut first_record: Option<Instant> = None;
        let mut last_status = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let waited = Instant::now();
            let polled = poller
                .next(Duration::from_millis(50))
                .map_err(|PollerGone| self.poller_gone())?;
            self.report.waiting_secs += waited.elapsed().as_secs_f64();
            if let Some(polled) = polled {
                if self.take_polled(polled)? {
                    last_record = Instant::now();
                    first_record.get_or_insert(last_record);
                }
            }
            self.alerts.poll(Duration::ZERO);
            let due = last_flush.elapsed() >= self.settings.flush_interval;
            if self.batch.records() >= self.settings.flush_records
                || (due && self.batch.records() > 0)
            {
                self.flush(&mut flusher)?;
                last_flush = Instant::now();
            } else if due {
                last_flush = Instant::now();
            }
            if last_status.elapsed() >= Duration::from_secs(2) {
                self.update_gauges();
                status(&self.metrics);
                last_status = Instant::now();
            }
            if self
                .settings
                .until_idle
                .is_some_and(|idle| last_record.elapsed() >= idle)
            {
                break;
            }
        }
        self.report.polling_secs = poller.polling_secs();
        // Records already taken off the consumer go into the last batch rather than being
        // read again by the next run.
        for polled in poller.stop() {
            if self.take_polled(polled)? {
                last_record = Instant::now();
                first_record.get_or_insert(last_record);
            }
        }
        let final_flush = Instant::now();
        self.flush(&mut flusher)?;
        self.finish_flush(&mut flusher)?;
        if let Some(first) = first_record {
            self.report.active_secs =
                (last_record - first).as_secs_f64() + final_flush.elapsed().as_secs_f64();
        }
        self.update_gauges();
        status(&self.metrics);
        self.report.alerts_opened = self.metrics.alerts_opened();
        let report = std::mem::take(&mut self.report);
        // Only the consumer's last holder closes it, and that must be `close_within`.
        let consumer = self.consumer.clone();
        drop(flusher);
        drop(self);
        close_within(consumer, CLOSE_LIMIT);
        Ok(report)
    }

    fn poller_gone(&self) -> StreamError {
        StreamError::Kafka {
            target: self.settings.topic.clone(),
            what: "consumer".into(),
            message: "the polling thread ended unexpectedly".into(),
        }
    }

    /// Applies a chunk from the poller: the revocations that came before it, then its records.
    /// Says whether it held records.
    fn take_polled(&mut self, polled: Polled) -> Result<bool, StreamError> {
        self.drop_revoked(polled.revocations);
        if polled.records.is_empty() {
            return Ok(false);
        }
        self.take_chunk(polled.records)?;
        Ok(true)
    }

    /// Forgets partitions a rebalance took away (the revocation log up to `upto`): their
    /// unflushed records will be read again by their new owner.
    fn drop_revoked(&mut self, upto: usize) {
        if upto <= self.applied_revocations {
            return;
        }
        let revoked = self
            .consumer
            .context()
            .revoked_between(self.applied_revocations, upto);
        self.applied_revocations = upto;
        for p in &revoked {
            self.partitions.remove(p);
        }
        let source_of = |s: &str| {
            s.rsplit('/')
                .next()
                .and_then(|p| p.parse::<i32>().ok())
                .is_some_and(|p| revoked.contains(&p))
        };
        self.batch.accepted.retain(|(_, _, s, _)| !source_of(s));
        self.batch.rejected.retain(|r| !source_of(&r.source));
        // Published alerts stay published; their lake rows come again when the new owner
        // replays the records from the checkpoint.
        self.batch.alerts.retain(|_, (p, _)| !revoked.contains(p));
        tracing::info!(
            ?revoked,
            "partitions revoked; their unflushed records are left to the new owner"
        );
    }

    fn partition(&mut self, partition: i32) -> Result<&mut PartitionState<'a>, StreamError> {
        if !self.partitions.contains_key(&partition) {
            let cp = checkpoint::load(
                &self.settings.lake,
                &self.settings.group,
                &self.settings.topic,
                partition,
            )?;
            let (alerter, durable_next, durable_mark) = match cp {
                Some(cp) => (
                    StreamAlerter::resume(self.thresholds, cp.engine, cp.watermark),
                    cp.next_offset,
                    cp.last_record,
                ),
                None => (StreamAlerter::new(self.thresholds), 0, None),
            };
            self.incarnations += 1;
            self.partitions.insert(
                partition,
                PartitionState {
                    alerter,
                    incarnation: self.incarnations,
                    durable_next,
                    next: durable_next,
                    cut_next: durable_next,
                    mark: durable_mark.clone(),
                    durable_mark,
                    last_seen: None,
                    source: Arc::from(format!("kafka:{}/{partition}", self.settings.topic)),
                },
            );
        }
        Ok(self
            .partitions
            .get_mut(&partition)
            .expect("invariant: inserted above"))
    }

    /// A topic deleted and created again starts its offsets afresh: a checkpoint of the old
    /// topic must be forgotten, or the new records below it would be skipped as durable. The
    /// new incarnation shows either by ending below the checkpoint or, once it has grown past
    /// it, by holding another record at the checkpoint's last offset.
    fn forget_offsets_if_topic_recreated(&mut self, partition: i32) {
        let Some(state) = self.partitions.get(&partition) else {
            return;
        };
        let durable_next = state.durable_next;
        if durable_next == 0 {
            return;
        }
        let timeout = Duration::from_secs(5);
        let Ok((low, high)) =
            self.consumer
                .fetch_watermarks(&self.settings.topic, partition, timeout)
        else {
            return;
        };
        let recreated = if high < durable_next {
            true
        } else {
            match &state.durable_mark {
                Some(mark) if mark.offset == durable_next - 1 => {
                    // None: the record is gone (retention) or unreadable now; nothing proves a
                    // new topic, so the checkpoint stands.
                    let found = super::kafka::payload_at(
                        &self.settings.brokers,
                        &self.settings.topic,
                        partition,
                        mark.offset,
                        low,
                        timeout,
                    )
                    .map(|payload| RecordMark::of(mark.offset, &payload));
                    found.is_some_and(|found| found != *mark)
                }
                _ => false,
            }
        };
        if recreated {
            tracing::warn!(
                partition,
                checkpoint = durable_next,
                end = high,
                "the topic is not the one of the checkpoint (deleted and recreated); reading it from its start"
            );
            if let Some(state) = self.partitions.get_mut(&partition) {
                state.durable_next = 0;
                state.next = 0;
                state.cut_next = 0;
                state.durable_mark = None;
                state.mark = None;
            }
        }
    }

    /// Judges a chunk of records (parse and validate on all cores), runs the engine over each
    /// partition's valid records (partitions in parallel, each in offset order), then routes
    /// the records to the batch and publishes the alerts.
    fn take_chunk(&mut self, chunk: Vec<Taken>) -> Result<(), StreamError> {
        let n = chunk.len() as u64;
        self.metrics.consumed.fetch_add(n, Ordering::Relaxed);
        self.report.consumed += n;
        let received_at = UtcMillis(chrono::Utc::now().timestamp_millis());
        let mut work = Vec::with_capacity(chunk.len());
        for t in chunk {
            let state = self.partition(t.partition)?;
            let rewound = state.last_seen.is_none_or(|seen| t.offset <= seen);
            state.last_seen = Some(t.offset);
            if t.offset < state.durable_next && rewound {
                // The first record below the checkpoint, or offsets going back: records
                // re-read after a crash, or a topic recreated under us. Checked once per
                // rewind, not per record.
                self.forget_offsets_if_topic_recreated(t.partition);
            }
            let state = self.partition(t.partition)?;
            if t.offset < state.durable_next {
                self.metrics.skipped_durable.fetch_add(1, Ordering::Relaxed);
                self.report.skipped_durable += 1;
                continue;
            }
            state.next = t.offset + 1;
            work.push((state.source.clone(), t));
        }
        // The last record of each partition in this chunk marks the checkpoint (a digest per
        // partition per chunk, not per record).
        let mut marked: Vec<i32> = Vec::new();
        for (_, t) in work.iter().rev() {
            if !marked.contains(&t.partition) {
                marked.push(t.partition);
                if let Some(state) = self.partitions.get_mut(&t.partition) {
                    state.mark = Some(RecordMark::of(t.offset, &t.raw));
                }
            }
        }
        let reference = self.reference;
        let legacy = self.settings.input_format == InputFormat::Legacy;
        let judged: Vec<Result<Measurement, Box<Rejected>>> = work
            .par_iter()
            .map(|(source, t)| judge(t, source, received_at, reference, legacy))
            .collect();
        let mut valid: BTreeMap<i32, Vec<(i64, Measurement)>> = BTreeMap::new();
        for ((_, t), verdict) in work.iter().zip(judged) {
            match verdict {
                Ok(m) => valid.entry(t.partition).or_default().push((t.offset, m)),
                Err(r) => self.batch.rejected.push(*r),
            }
        }
        let jobs: Vec<PartitionJob<'_, 'a>> = self
            .partitions
            .iter_mut()
            .filter_map(|(p, st)| valid.remove(p).map(|records| (*p, st, records)))
            .collect();
        let outcomes: Vec<PartitionOutcome> = jobs
            .into_par_iter()
            .map(|(partition, state, records)| {
                let mut out = PartitionOutcome {
                    partition,
                    records: Vec::with_capacity(records.len()),
                    events: Vec::new(),
                    stale: 0,
                };
                for (offset, m) in records {
                    // Admission checked the patient: every valid record has one.
                    if let Some(patient) = reference.get(&m.patient_id) {
                        let ctx = PatientContext {
                            patient_id: m.patient_id,
                            birth_date: patient.birth_date,
                        };
                        match state.alerter.on_measurement(&ctx, &m) {
                            Fed::Stale => out.stale += 1,
                            Fed::Evaluated(events) if !events.is_empty() => {
                                out.events.push((offset, events))
                            }
                            Fed::Evaluated(_) => {}
                        }
                    }
                    out.records.push((offset, m));
                }
                out
            })
            .collect();
        for out in outcomes {
            let source = self
                .partitions
                .get(&out.partition)
                .map(|s| s.source.clone());
            let Some(source) = source else { continue };
            self.metrics.stale.fetch_add(out.stale, Ordering::Relaxed);
            self.report.stale += out.stale;
            for (offset, m) in out.records {
                self.batch
                    .accepted
                    .push((m, received_at, source.clone(), offset));
            }
            for (offset, events) in out.events {
                self.publish(events, out.partition, offset)?;
            }
        }
        Ok(())
    }

    /// Publishes alert events at once and keeps their latest state for the lake.
    fn publish(
        &mut self,
        events: Vec<AlertEvent>,
        partition: i32,
        offset: i64,
    ) -> Result<(), StreamError> {
        for event in events {
            let (kind, alert) = match event {
                AlertEvent::Opened(alert) => ("opened", alert),
                AlertEvent::AutoResolved(alert) => ("auto_resolved", alert),
                // An update (the condition seen again while open) goes to the lake only, in its
                // state at the flush; the topic carries what a clinician acts on, an alert
                // opening and its resolution.
                AlertEvent::Updated {
                    patient_id,
                    alert_id,
                } => {
                    self.batch
                        .alerts
                        .insert(alert_id, (partition, Touched::Open { patient_id }));
                    continue;
                }
            };
            if kind == "opened" {
                self.metrics
                    .alert_opened(&alert.rule_id, alert.severity.as_str());
            }
            let record = OutRecord {
                key: Some(alert.patient_id.to_string()),
                timestamp_ms: Some(alert.last_seen_at.0),
                payload: alert_json(&alert, kind),
            };
            let trigger = format!("{partition}:{offset}");
            let headers = self.alert_headers.clone().insert(Header {
                key: "kidjamo-trigger",
                value: Some(trigger.as_str()),
            });
            if let Err(e) = produce(&self.alerts, &self.settings.alerts_topic, &record, &headers) {
                tracing::error!(error = %e, "alert not handed to the producer");
                self.metrics
                    .alert_delivery_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
            self.batch
                .alerts
                .insert(alert.alert_id, (partition, Touched::Copy(Box::new(alert))));
        }
        Ok(())
    }

    /// The batch's alerts in their latest state: updated ones read from their partition's
    /// engine.
    fn touched_alerts(&self, touched: BTreeMap<Uuid, (i32, Touched)>) -> Vec<Alert> {
        touched
            .into_iter()
            .filter_map(|(alert_id, (partition, t))| match t {
                Touched::Copy(alert) => Some(*alert),
                Touched::Open { patient_id } => {
                    let latest = self
                        .partitions
                        .get(&partition)
                        .and_then(|p| p.alerter.open_alert(&patient_id, &alert_id))
                        .cloned();
                    // Cannot happen: a resolution later in the batch replaces the entry, and a
                    // revoked partition's entries are dropped. Said aloud if it ever does.
                    if latest.is_none() {
                        tracing::warn!(%alert_id, partition, "an updated alert is no longer open; its update is not written");
                    }
                    latest
                }
            })
            .collect()
    }

    fn update_gauges(&self) {
        let open: usize = self
            .partitions
            .values()
            .map(|p| p.alerter.open_alerts())
            .sum();
        self.metrics
            .open_alerts
            .store(open as i64, Ordering::Relaxed);
        self.metrics
            .consumer_lag
            .store(self.consumer.context().lag(), Ordering::Relaxed);
    }

    /// Cuts the batch and starts making it durable in the background, once the previous
    /// batch's flush has finished (see the module's documentation).
    fn flush(&mut self, flusher: &mut Flusher) -> Result<(), StreamError> {
        self.finish_flush(flusher)?;
        let dirty: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(_, st)| st.next > st.cut_next)
            .map(|(p, _)| *p)
            .collect();
        if dirty.is_empty() {
            return Ok(());
        }
        let Batch {
            accepted,
            rejected,
            alerts,
        } = std::mem::take(&mut self.batch);
        self.batch.accepted = flusher.take_spare();
        let alerts = self.touched_alerts(alerts);
        self.batch_seq += 1;
        let batch_id = format!("{}-{}", self.report.run_id, self.batch_seq);
        let mut snapshots = Vec::with_capacity(dirty.len());
        for p in dirty {
            let Some(st) = self.partitions.get_mut(&p) else {
                continue;
            };
            st.cut_next = st.next;
            snapshots.push(Snapshot {
                incarnation: st.incarnation,
                checkpoint: PartitionCheckpoint {
                    topic: self.settings.topic.clone(),
                    partition: p,
                    next_offset: st.next,
                    watermark: st.alerter.watermark(),
                    engine: st.alerter.state(),
                    last_record: st.mark.clone(),
                },
            });
        }
        flusher.start(FlushJob {
            batch_id,
            accepted,
            rejected,
            alerts,
            snapshots,
            applied_revocations: self.applied_revocations,
        });
        Ok(())
    }

    /// Waits for the flush in flight and takes note of what it made durable.
    fn finish_flush(&mut self, flusher: &mut Flusher) -> Result<(), StreamError> {
        let waited = Instant::now();
        let flushed = flusher.wait()?;
        self.report.flush_wait_secs += waited.elapsed().as_secs_f64();
        let Some(flushed) = flushed else {
            return Ok(());
        };
        for d in flushed.durable {
            // A partition revoked and assigned again since the cut has started afresh from
            // its checkpoint; this flush is not about its new state.
            if let Some(st) = self
                .partitions
                .get_mut(&d.partition)
                .filter(|st| st.incarnation == d.incarnation)
            {
                st.durable_next = d.next_offset;
                st.durable_mark = d.last_record;
            }
        }
        for (r, n) in flushed.reasons {
            *self.report.reasons.entry(r).or_insert(0) += n;
        }
        self.report.flushing_secs += flushed.seconds;
        self.report.written += flushed.written;
        self.report.quarantined += flushed.quarantined;
        self.report.batches += 1;
        Ok(())
    }
}

/// How long leaving the consumer group may take at exit.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// Closes the consumer (leaving the group) on another thread and waits at most `limit`.
/// librdkafka's close can wait forever when the broker has lost the group (a broker without
/// durable storage restarted under us); by now every record is flushed, checkpointed and
/// committed, so an unfinished close is abandoned: the broker expires the membership after
/// `session.timeout.ms`.
fn close_within(consumer: Arc<StreamConsumer>, limit: Duration) {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(consumer);
        let _ = done.send(());
    });
    if finished.recv_timeout(limit).is_err() {
        tracing::warn!(
            limit_s = limit.as_secs(),
            "leaving the consumer group did not finish in time; exiting anyway"
        );
    }
}

/// A flush takes seconds: a stream staging folder this old belongs to a killed process (its
/// records were never committed, so they are read again; the folder is only litter).
const STAGING_ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// Removes `.kidjamo-staging-stream-*` folders older than `age` from the lake root; other
/// processes' live folders are younger. Returns how many it removed.
fn remove_abandoned_staging(lake: &Path, age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(lake) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|elapsed| elapsed > age);
        if name.starts_with(".kidjamo-staging-stream-")
            && old
            && std::fs::remove_dir_all(e.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// A partition's state and its valid records of a chunk, for the engine.
type PartitionJob<'s, 'a> = (i32, &'s mut PartitionState<'a>, Vec<(i64, Measurement)>);

/// What the engine made of one partition's records of a chunk.
struct PartitionOutcome {
    partition: i32,
    records: Vec<(i64, Measurement)>,
    events: Vec<(i64, Vec<AlertEvent>)>,
    stale: u64,
}

/// Parses and validates one record: a measurement for Bronze, or a quarantine row with one
/// reason per failed rule and the raw payload.
fn judge(
    t: &Taken,
    source: &Arc<str>,
    received_at: UtcMillis,
    reference: &Reference,
    legacy_input: bool,
) -> Result<Measurement, Box<Rejected>> {
    let converted;
    let raw: &[u8] = if legacy_input {
        converted = legacy::to_schema_v1(&t.raw);
        &converted
    } else {
        &t.raw
    };
    let parsed = wire::parse_json(raw);
    let reasons = match &parsed {
        Ok(m) => admission_issues(m, received_at, &|id| reference.contains_key(id)),
        Err(reasons) => reasons.clone(),
    };
    match parsed {
        Ok(m) if reasons.is_empty() => Ok(m),
        parsed => {
            // Ids are kept when the record parsed (they help find the sender).
            let ids = parsed.ok();
            Err(Box::new(Rejected {
                received_at,
                source: source.clone(),
                source_offset: t.offset,
                message_id: ids.as_ref().map(|m| m.message_id),
                patient_id: ids.as_ref().map(|m| m.patient_id),
                device_id: ids.as_ref().map(|m| m.device_id),
                recorded_at: ids.as_ref().map(|m| m.recorded_at),
                reasons,
                raw_payload: String::from_utf8_lossy(raw).into_owned(),
            }))
        }
    }
}

/// The alert as the alerts topic carries it: SPEC §4.5's fields, times in RFC 3339, and what
/// happened (`opened`, `auto_resolved`).
pub fn alert_json(a: &Alert, event: &str) -> Vec<u8> {
    let value = serde_json::json!({
        "event": event,
        "alert_id": a.alert_id,
        "patient_id": a.patient_id,
        "device_id": a.device_id,
        "rule_id": a.rule_id,
        "severity": a.severity.as_str(),
        "title": a.title,
        "message": a.message,
        "first_seen_at": a.first_seen_at.to_rfc3339(),
        "last_seen_at": a.last_seen_at.to_rfc3339(),
        "vitals_snapshot": a.vitals_snapshot,
        "trigger_conditions": a.trigger_conditions,
        "suggested_actions": a.suggested_actions,
        "status": crate::lake::alerts::status_str(a.status),
        "escalation_level": a.escalation_level,
        "occurrences": a.occurrences,
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_stream_staging_folders_are_removed() {
        let lake = tempfile::tempdir().expect("tempdir");
        let make = |name: &str, age_s: u64| {
            let dir = lake.path().join(name);
            std::fs::create_dir_all(dir.join("bronze")).expect("mkdir");
            let when = std::time::SystemTime::now() - Duration::from_secs(age_s);
            std::fs::File::open(&dir)
                .expect("open")
                .set_modified(when)
                .expect("mtime");
        };
        make(".kidjamo-staging-stream-aaaa-1", 7200);
        make(".kidjamo-staging-stream-bbbb-3", 10);
        make(".kidjamo-staging-etl-daily-x", 7200);
        assert_eq!(
            remove_abandoned_staging(lake.path(), STAGING_ABANDONED_AFTER),
            1
        );
        assert!(!lake.path().join(".kidjamo-staging-stream-aaaa-1").exists());
        assert!(
            lake.path().join(".kidjamo-staging-stream-bbbb-3").exists(),
            "a live flush"
        );
        assert!(
            lake.path().join(".kidjamo-staging-etl-daily-x").exists(),
            "not the stream's"
        );
        assert_eq!(
            remove_abandoned_staging(&lake.path().join("missing"), STAGING_ABANDONED_AFTER),
            0
        );
    }
}
