//! Where a stream of wire records goes: a Kafka topic (idempotent, compressed, every record
//! accounted for) or a JSONL file. `replay` and `simulate --to kafka://` talk to the trait only,
//! so the code above the sink is the same whatever the destination.

use super::kafka::{producer_config, Compression, KafkaTarget};
use super::topics::ensure_topic;
use super::StreamError;
use crate::output::{HashedFile, WrittenFile};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use rdkafka::ClientContext;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// One record on its way out: the wire JSON, its key (the patient id) and its event time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutRecord {
    pub key: Option<String>,
    /// `recorded_at` in epoch milliseconds, the Kafka record timestamp (CreateTime).
    pub timestamp_ms: Option<i64>,
    pub payload: Vec<u8>,
}

/// Every record sent, and what became of it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Delivery {
    pub sent: u64,
    pub acknowledged: u64,
    pub failed: u64,
    /// Records handed again to the broker after a fenced producer could not deliver them
    /// (each may then be in the topic twice).
    pub resent: u64,
    /// Failure reason → records.
    pub failures: BTreeMap<String, u64>,
    /// Files written (a file sink).
    pub files: Vec<WrittenFile>,
}

impl Delivery {
    /// One line saying how many records were lost and why, when any were.
    pub fn loss(&self) -> Option<String> {
        let lost = self.sent.saturating_sub(self.acknowledged);
        (lost > 0).then(|| {
            let reasons: Vec<String> = self
                .failures
                .iter()
                .map(|(r, n)| format!("{n} × {r}"))
                .collect();
            format!(
                "{lost} of {} records were not acknowledged ({})",
                self.sent,
                if reasons.is_empty() {
                    "no delivery report".to_string()
                } else {
                    reasons.join("; ")
                }
            )
        })
    }
}

pub trait RecordSink {
    fn send(&mut self, record: &OutRecord) -> Result<(), StreamError>;
    /// Records handed over but not yet acknowledged.
    fn in_flight(&self) -> u64;
    fn acknowledged(&self) -> u64;
    /// Waits for every acknowledgement (or its failure) and reports.
    fn finish(self: Box<Self>) -> Result<Delivery, StreamError>;
}

/// Counts delivery reports; librdkafka calls it from `poll`. Clones share the counts, so a
/// producer that replaces a fenced one (see [`KafkaSink`]) adds to the same tally.
#[derive(Default, Clone)]
pub struct DeliveryCounter {
    tally: std::sync::Arc<Tally>,
}

#[derive(Default)]
struct Tally {
    acknowledged: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
    /// Whether a record the producer could not deliver for want of a fresh producer is kept
    /// for resending (a [`KafkaSink`]) rather than counted as failed.
    resending: AtomicBool,
    to_resend: Mutex<Vec<OutRecord>>,
}

impl DeliveryCounter {
    /// A counter that keeps, for resending, what a fenced producer could not deliver.
    fn resending() -> DeliveryCounter {
        let counter = DeliveryCounter::default();
        counter.tally.resending.store(true, Ordering::Relaxed);
        counter
    }

    pub fn acknowledged(&self) -> u64 {
        self.tally.acknowledged.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.tally.failed.load(Ordering::Relaxed)
    }

    pub fn record_failure(&self, reason: String) {
        self.tally.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = self.tally.failures.lock() {
            *f.entry(reason).or_insert(0) += 1;
        }
    }

    /// Keeps `record` for the next producer when `error` is one a fresh producer cures and
    /// resending is on; counts it as failed otherwise.
    fn undelivered(&self, record: OutRecord, error: &KafkaError) {
        if self.tally.resending.load(Ordering::Relaxed) && needs_fresh_producer(error) {
            if let Ok(mut queue) = self.tally.to_resend.lock() {
                queue.push(record);
                return;
            }
        }
        self.record_failure(error.to_string());
    }

    fn take_resends(&self) -> Vec<OutRecord> {
        self.tally
            .to_resend
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }

    fn has_resends(&self) -> bool {
        self.tally
            .to_resend
            .lock()
            .map(|q| !q.is_empty())
            .unwrap_or(false)
    }

    fn stop_resending(&self) {
        self.tally.resending.store(false, Ordering::Relaxed);
    }
}

/// Errors that say the producer's idempotence state is gone or was purged (a broker that
/// restarted and forgot the producer id, a fatal error, our own purge of a fenced producer):
/// the record itself is fine and a new producer can deliver it.
fn needs_fresh_producer(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fatal
                | RDKafkaErrorCode::PurgeQueue
                | RDKafkaErrorCode::PurgeInflight
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::InvalidProducerEpoch
        )
    )
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.tally.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, message)) => self.undelivered(OutRecord::from_message(message), e),
        }
    }
}

impl OutRecord {
    /// The record a delivery report is about, to send it again.
    fn from_message(message: &rdkafka::message::BorrowedMessage<'_>) -> OutRecord {
        OutRecord {
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            timestamp_ms: message.timestamp().to_millis(),
            payload: message.payload().unwrap_or_default().to_vec(),
        }
    }
}

pub type CountingProducer = BaseProducer<DeliveryCounter>;

/// Creates a producer and checks, within `timeout`, that the cluster answers and the topic
/// exists (creating it with `partitions` when it does not).
pub fn connect_producer(
    target: &KafkaTarget,
    compression: Compression,
    partitions: i32,
    timeout: Duration,
) -> Result<CountingProducer, StreamError> {
    connect_counting(
        target,
        compression,
        Some(partitions),
        timeout,
        DeliveryCounter::default(),
    )
}

/// A producer counting into `counter`; the topic is created with `create_with` partitions
/// when given and missing.
fn connect_counting(
    target: &KafkaTarget,
    compression: Compression,
    create_with: Option<i32>,
    timeout: Duration,
    counter: DeliveryCounter,
) -> Result<CountingProducer, StreamError> {
    let producer: CountingProducer = producer_config(&target.brokers, compression)
        .create_with_context(counter)
        .map_err(|e| StreamError::kafka(target, "cannot create a producer", e))?;
    if let Some(partitions) = create_with {
        ensure_topic(&target.brokers, &target.topic, partitions, timeout)?;
    }
    producer
        .client()
        .fetch_metadata(Some(&target.topic), timeout)
        .map_err(|e| StreamError::kafka(target, "the broker does not answer", e))?;
    Ok(producer)
}

/// The record headers of SPEC §3.
pub fn wire_headers() -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(2)
        .insert(Header {
            key: "schema_version",
            value: Some("1"),
        })
        .insert(Header {
            key: "content-type",
            value: Some("application/json"),
        })
}

/// Hands one record to librdkafka, waiting while its queue is full.
pub fn produce(
    producer: &CountingProducer,
    topic: &str,
    record: &OutRecord,
    headers: &OwnedHeaders,
) -> Result<(), KafkaError> {
    loop {
        let mut r: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic)
            .payload(record.payload.as_slice())
            .headers(headers.clone());
        if let Some(k) = &record.key {
            r = r.key(k.as_str());
        }
        if let Some(t) = record.timestamp_ms {
            r = r.timestamp(t);
        }
        match producer.send(r) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// A topic as a [`RecordSink`]. When the idempotent producer is fenced — a fatal error, or the
/// broker forgot its producer id (a restart) and refused its sequence numbers — the records it
/// could not deliver are handed to a fresh producer instead of being lost: delivery is
/// at-least-once (a record may then be in the topic twice; `stream` and Silver deduplicate by
/// `message_id`), and only a sink that needed more than [`KafkaSink::MAX_PRODUCERS`] producers
/// reports such records as failed.
pub struct KafkaSink {
    producer: CountingProducer,
    counter: DeliveryCounter,
    headers: OwnedHeaders,
    target: KafkaTarget,
    compression: Compression,
    /// Partitions to create the topic with, if it is missing.
    create_with: Option<i32>,
    sent: u64,
    resent: u64,
    producers: u32,
    /// How long `finish` waits for the last acknowledgements.
    flush_timeout: Duration,
}

impl KafkaSink {
    /// Producers a sink may go through before it stops resending.
    pub const MAX_PRODUCERS: u32 = 4;

    pub fn connect(
        target: KafkaTarget,
        compression: Compression,
        partitions: i32,
    ) -> Result<KafkaSink, StreamError> {
        Self::open(target, compression, Some(partitions))
    }

    fn open(
        target: KafkaTarget,
        compression: Compression,
        create_with: Option<i32>,
    ) -> Result<KafkaSink, StreamError> {
        let counter = DeliveryCounter::resending();
        let producer = connect_counting(
            &target,
            compression,
            create_with,
            Duration::from_secs(10),
            counter.clone(),
        )?;
        Ok(KafkaSink {
            producer,
            counter,
            headers: wire_headers(),
            target,
            compression,
            create_with,
            sent: 0,
            resent: 0,
            producers: 1,
            flush_timeout: Duration::from_secs(60),
        })
    }

    fn hand_over(&self, record: &OutRecord) {
        if let Err(e) = produce(&self.producer, &self.target.topic, record, &self.headers) {
            // Refused before it left: kept for a fresh producer or counted as failed.
            self.counter.undelivered(record.clone(), &e);
        }
    }

    /// Replaces a fenced producer and hands it what the old one could not deliver.
    fn recover(&mut self) -> Result<(), StreamError> {
        let fatal = self.producer.client().fatal_error();
        if let Some((code, reason)) = fatal.filter(|_| self.producers < Self::MAX_PRODUCERS) {
            // What the fenced producer still holds comes back through its delivery reports
            // (purged), into the resend queue.
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
            let _ = self.producer.flush(Duration::from_secs(5));
            let fresh = connect_counting(
                &self.target,
                self.compression,
                self.create_with,
                Duration::from_secs(10),
                self.counter.clone(),
            )?;
            drop(std::mem::replace(&mut self.producer, fresh));
            self.producers += 1;
            tracing::warn!(
                error = ?code,
                reason = %reason,
                producers = self.producers,
                "the producer was fenced; its undelivered records go to a new one"
            );
            if self.producers >= Self::MAX_PRODUCERS {
                self.counter.stop_resending();
            }
        }
        for record in self.counter.take_resends() {
            self.resent += 1;
            self.hand_over(&record);
        }
        Ok(())
    }
}

impl RecordSink for KafkaSink {
    fn send(&mut self, record: &OutRecord) -> Result<(), StreamError> {
        self.sent += 1;
        self.hand_over(record);
        if self.sent % 1024 == 0 {
            self.producer.poll(Duration::ZERO);
            self.recover()?;
        }
        Ok(())
    }

    fn in_flight(&self) -> u64 {
        let c = &self.counter;
        self.sent - c.acknowledged() - c.failed()
    }

    fn acknowledged(&self) -> u64 {
        self.counter.acknowledged()
    }

    fn finish(mut self: Box<Self>) -> Result<Delivery, StreamError> {
        loop {
            // A flush that times out leaves records unacknowledged: they count as lost below.
            let _ = self.producer.flush(self.flush_timeout);
            let fenced = self.producer.client().fatal_error().is_some();
            let exhausted = self.producers >= Self::MAX_PRODUCERS;
            if !self.counter.has_resends() && (!fenced || exhausted) {
                break;
            }
            // Ends: each round replaces the producer or, past the limit, counts what is left
            // as failed.
            self.recover()?;
        }
        let c = &self.counter;
        let acknowledged = c.acknowledged();
        let failed = c.failed();
        let mut failures = c
            .tally
            .failures
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default();
        let unreported = self.sent.saturating_sub(acknowledged + failed);
        if unreported > 0 {
            failures.insert(
                format!(
                    "no acknowledgement within {} s",
                    self.flush_timeout.as_secs()
                ),
                unreported,
            );
        }
        Ok(Delivery {
            sent: self.sent,
            acknowledged,
            failed: failed + unreported,
            resent: self.resent,
            failures,
            files: Vec::new(),
        })
    }
}

/// The same stream as JSON Lines in a file (`--to file://…`): a record is acknowledged once
/// written, and the file is synced before the report.
pub struct FileSink {
    file: HashedFile,
    sent: u64,
}

impl FileSink {
    pub fn create(path: &Path) -> Result<FileSink, StreamError> {
        let (root, name) = match (path.parent(), path.file_name()) {
            (Some(p), Some(n)) => (p.to_path_buf(), n.to_os_string()),
            _ => {
                return Err(StreamError::Input {
                    input: path.display().to_string(),
                    message: "not a file path".into(),
                })
            }
        };
        let file = HashedFile::create(&root, name).map_err(StreamError::Output)?;
        Ok(FileSink { file, sent: 0 })
    }
}

impl RecordSink for FileSink {
    fn send(&mut self, record: &OutRecord) -> Result<(), StreamError> {
        let write = |f: &mut HashedFile| -> std::io::Result<()> {
            f.write_all(&record.payload)?;
            f.write_all(b"\n")
        };
        write(&mut self.file).map_err(|e| {
            StreamError::Output(crate::output::OutputError::io(&self.file.absolute, e))
        })?;
        self.sent += 1;
        Ok(())
    }

    fn in_flight(&self) -> u64 {
        0
    }

    fn acknowledged(&self) -> u64 {
        self.sent
    }

    fn finish(self: Box<Self>) -> Result<Delivery, StreamError> {
        let sent = self.sent;
        let file = self.file.finish(sent).map_err(StreamError::Output)?;
        Ok(Delivery {
            sent,
            acknowledged: sent,
            failed: 0,
            resent: 0,
            failures: BTreeMap::new(),
            files: vec![file],
        })
    }
}

/// `simulate --to kafka://…`: the simulator's records, in delivery order, straight to a topic.
pub struct SimulatedToKafka {
    sink: KafkaSink,
    payload: Vec<u8>,
}

impl SimulatedToKafka {
    pub fn connect(
        target: KafkaTarget,
        compression: Compression,
        partitions: i32,
    ) -> Result<Self, StreamError> {
        Ok(SimulatedToKafka {
            sink: KafkaSink::connect(target, compression, partitions)?,
            payload: Vec::with_capacity(512),
        })
    }
}

impl crate::output::MeasurementSink for SimulatedToKafka {
    fn write_chunk(
        &mut self,
        chunk: &crate::simulate::Chunk,
    ) -> Result<(), crate::output::OutputError> {
        for r in chunk.iter() {
            self.payload.clear();
            r.write_wire(&mut self.payload);
            let record = OutRecord {
                key: Some(r.measurement.patient_id.to_string()),
                timestamp_ms: Some(r.measurement.recorded_at.0),
                payload: std::mem::take(&mut self.payload),
            };
            self.sink
                .send(&record)
                .map_err(|e| crate::output::OutputError::Delivery(e.to_string()))?;
            self.payload = record.payload;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<crate::output::SinkReport, crate::output::OutputError> {
        let target = self.sink.target.to_string();
        let delivery = Box::new(self.sink)
            .finish()
            .map_err(|e| crate::output::OutputError::Delivery(e.to_string()))?;
        if let Some(loss) = delivery.loss() {
            return Err(crate::output::OutputError::Delivery(format!(
                "{target}: {loss}"
            )));
        }
        Ok(crate::output::SinkReport {
            files: Vec::new(),
            records_in: delivery.sent,
            records_out: delivery.acknowledged,
            quarantined: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use std::collections::HashSet;

    fn record(i: u32) -> OutRecord {
        OutRecord {
            key: Some(format!("patient-{}", i % 7)),
            timestamp_ms: Some(1_772_323_200_000 + i64::from(i)),
            payload: format!("record {i}").into_bytes(),
        }
    }

    /// The distinct payloads of a one-partition topic, read from its start.
    fn payloads(brokers: &str, topic: &str, expected: usize) -> HashSet<Vec<u8>> {
        let consumer: BaseConsumer = super::super::kafka::consumer_config(brokers, "check")
            .create()
            .expect("consumer");
        let mut assignment = rdkafka::TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
            .expect("partition");
        consumer.assign(&assignment).expect("assign");
        let mut seen = HashSet::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while seen.len() < expected && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                seen.insert(m.payload().unwrap_or_default().to_vec());
            }
        }
        seen
    }

    /// librdkafka's in-process mock cluster answers produce requests with the errors a broker
    /// that lost the producer's state gives (the real-broker case is `tests/stream.rs`'s
    /// restart test, where it happens only now and then).
    fn refused_then_delivered(errors: &[RDKafkaRespErr]) -> (Delivery, HashSet<Vec<u8>>) {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("fenced", 1, 1).expect("topic");
        let brokers = cluster.bootstrap_servers();
        let target = KafkaTarget {
            brokers: brokers.clone(),
            topic: "fenced".into(),
        };
        // (The mock cluster does not create topics on request: the topic exists already.)
        let mut sink = KafkaSink::open(target, Compression::Lz4, None).expect("sink");
        for i in 0..2_000 {
            if i == 1_000 {
                // Whatever is in flight now is acknowledged first, so that the refusals
                // below meet the next requests.
                let _ = sink.producer.flush(Duration::from_secs(10));
                cluster.request_errors(RDKafkaApiKey::Produce, errors);
            }
            sink.send(&record(i)).expect("send");
        }
        let delivery = Box::new(sink).finish().expect("finish");
        let held = payloads(&brokers, "fenced", 2_000);
        (delivery, held)
    }

    fn assert_all_delivered(delivery: &Delivery, held: &HashSet<Vec<u8>>) {
        assert_eq!(
            (delivery.sent, delivery.acknowledged, delivery.failed),
            (2_000, 2_000, 0),
            "{:?}",
            delivery.failures
        );
        let missing: Vec<u32> = (0..2_000)
            .filter(|i| !held.contains(&record(*i).payload))
            .collect();
        assert!(missing.is_empty(), "missing from the topic: {missing:?}");
    }

    #[test]
    fn records_refused_for_an_out_of_order_sequence_are_resent() {
        let (delivery, held) = refused_then_delivered(&[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
        ]);
        assert_all_delivered(&delivery, &held);
    }

    #[test]
    fn records_refused_for_an_unknown_producer_are_delivered() {
        // librdkafka recovers from this one itself (a new epoch, the batch retried).
        let (delivery, held) =
            refused_then_delivered(&[RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID]);
        assert_all_delivered(&delivery, &held);
    }

    #[test]
    fn only_errors_a_fresh_producer_cures_are_resent() {
        let code = |c| KafkaError::MessageProduction(c);
        assert!(needs_fresh_producer(&code(RDKafkaErrorCode::Fatal)));
        assert!(needs_fresh_producer(&code(
            RDKafkaErrorCode::OutOfOrderSequenceNumber
        )));
        assert!(needs_fresh_producer(&code(RDKafkaErrorCode::PurgeInflight)));
        assert!(!needs_fresh_producer(&code(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
        assert!(!needs_fresh_producer(&code(
            RDKafkaErrorCode::TopicAuthorizationFailed
        )));
        // A counter that does not resend (the alerts producer's) counts them as failed.
        let counter = DeliveryCounter::default();
        counter.undelivered(record(1), &code(RDKafkaErrorCode::Fatal));
        assert_eq!((counter.failed(), counter.has_resends()), (1, false));
        let resending = DeliveryCounter::resending();
        resending.undelivered(record(1), &code(RDKafkaErrorCode::Fatal));
        resending.undelivered(record(2), &code(RDKafkaErrorCode::MessageSizeTooLarge));
        assert_eq!(resending.failed(), 1);
        assert_eq!(resending.take_resends(), vec![record(1)]);
        resending.stop_resending();
        resending.undelivered(record(3), &code(RDKafkaErrorCode::Fatal));
        assert_eq!((resending.failed(), resending.has_resends()), (2, false));
    }
}
