//! Where a stream of wire records goes: a Kafka topic (idempotent, compressed, every record
//! accounted for) or a JSONL file. `replay` and `simulate --to kafka://` talk to the trait only,
//! so the code above the sink is the same whatever the destination.

use super::kafka::{producer_config, Compression, KafkaTarget};
use super::topics::ensure_topic;
use super::StreamError;
use crate::output::{HashedFile, WrittenFile};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Counts delivery reports; librdkafka calls it from `poll`.
#[derive(Default)]
pub struct DeliveryCounter {
    acknowledged: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
}

impl DeliveryCounter {
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    pub fn record_failure(&self, reason: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = self.failures.lock() {
            *f.entry(reason).or_insert(0) += 1;
        }
    }
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => self.record_failure(e.to_string()),
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
    let producer: CountingProducer = producer_config(&target.brokers, compression)
        .create_with_context(DeliveryCounter::default())
        .map_err(|e| StreamError::kafka(target, "cannot create a producer", e))?;
    ensure_topic(&target.brokers, &target.topic, partitions, timeout)?;
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

pub struct KafkaSink {
    producer: CountingProducer,
    headers: OwnedHeaders,
    target: KafkaTarget,
    sent: u64,
    /// How long `finish` waits for the last acknowledgements.
    flush_timeout: Duration,
}

impl KafkaSink {
    pub fn connect(
        target: KafkaTarget,
        compression: Compression,
        partitions: i32,
    ) -> Result<KafkaSink, StreamError> {
        let producer = connect_producer(&target, compression, partitions, Duration::from_secs(10))?;
        Ok(KafkaSink {
            producer,
            headers: wire_headers(),
            target,
            sent: 0,
            flush_timeout: Duration::from_secs(60),
        })
    }
}

impl RecordSink for KafkaSink {
    fn send(&mut self, record: &OutRecord) -> Result<(), StreamError> {
        self.sent += 1;
        if let Err(e) = produce(&self.producer, &self.target.topic, record, &self.headers) {
            // Refused before it left: counted like a failed delivery, reported at the end.
            self.producer.context().record_failure(e.to_string());
        }
        if self.sent % 1024 == 0 {
            self.producer.poll(Duration::ZERO);
        }
        Ok(())
    }

    fn in_flight(&self) -> u64 {
        let c = self.producer.context();
        self.sent - c.acknowledged.load(Ordering::Relaxed) - c.failed.load(Ordering::Relaxed)
    }

    fn acknowledged(&self) -> u64 {
        self.producer.context().acknowledged.load(Ordering::Relaxed)
    }

    fn finish(self: Box<Self>) -> Result<Delivery, StreamError> {
        // A flush that times out leaves records unacknowledged: they count as lost below.
        let _ = self.producer.flush(self.flush_timeout);
        let c = self.producer.context();
        let acknowledged = c.acknowledged.load(Ordering::Relaxed);
        let failed = c.failed.load(Ordering::Relaxed);
        let mut failures = c.failures.lock().map(|f| f.clone()).unwrap_or_default();
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
