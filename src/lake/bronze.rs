//! Bronze and quarantine Parquet writers (SPEC §6). Bronze holds typed, valid records exactly as
//! received plus ingest metadata, partitioned by event date; quarantine holds every record that
//! failed validation with one reason code per failed rule and its raw payload, partitioned by
//! ingest date. Records in = Bronze + quarantine, always.

use super::layout;
use crate::domain::measurement::Rejection;
use crate::domain::time::UtcMillis;
use crate::domain::Measurement;
use crate::output::decimal_dictionary::ReadingColumn;
use crate::output::dictionary_column::DictionaryColumn;
use crate::output::parquet_groups::ParallelGroupWriter;
use crate::output::uuid_column::{uuid_array, UUID_COLUMNS};
use crate::output::{HashedFile, OutputError, SharedFile, WrittenFile};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Rows per Parquet row group: big enough for good compression and statistics, small enough
/// that a handful of open partitions stay within a few hundred MB.
const ROW_GROUP_ROWS: usize = 131_072;

/// A Bronze record: the measurement and where and when it came in.
pub struct Received<'a> {
    pub measurement: &'a Measurement,
    pub received_at: UtcMillis,
    /// Where it came from (`simulate`, `kafka:<topic>/<partition>`, a file).
    pub source: &'a std::sync::Arc<str>,
    pub source_offset: i64,
}

/// A row group of Bronze being filled, column by column. Ids, run, source, firmware and
/// quality flag repeat over the rows: they are kept as dictionaries of their distinct values
/// (`DictionaryColumn`), so only the distinct values are ever formatted as text and the Parquet
/// writer does not hash every row's text to find its dictionary.
#[derive(Default)]
struct BronzeBuffer {
    message_id: Vec<Uuid>,
    patient_id: DictionaryColumn<Uuid>,
    device_id: DictionaryColumn<Uuid>,
    recorded_at: Vec<i64>,
    spo2_pct: ReadingColumn,
    heart_rate_bpm: Vec<Option<i16>>,
    respiratory_rate_min: Vec<Option<i16>>,
    temperature_c: ReadingColumn,
    ambient_temperature_c: ReadingColumn,
    relative_humidity_pct: ReadingColumn,
    hydration_pct: ReadingColumn,
    activity_level: Vec<Option<i16>>,
    pain_scale: Vec<Option<i16>>,
    battery_pct: Vec<Option<i16>>,
    signal_quality_pct: Vec<Option<i16>>,
    firmware_version: DictionaryColumn<std::sync::Arc<str>>,
    quality_flag: DictionaryColumn<&'static str>,
    received_at: Vec<i64>,
    source: DictionaryColumn<std::sync::Arc<str>>,
    source_offset: Vec<i64>,
}

fn small(v: Option<i32>) -> Option<i16> {
    // Validated values fit: every integer field's range is within 0..=260.
    v.and_then(|x| i16::try_from(x).ok())
}

fn uuid_text(id: &Uuid, out: &mut String) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.push_str(id.hyphenated().encode_lower(&mut buf));
}

fn str_text(s: &impl AsRef<str>, out: &mut String) {
    out.push_str(s.as_ref());
}

fn time_column(name: &str, ms: Vec<i64>) -> Column {
    Int64Chunked::from_vec(name.into(), ms)
        .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
        .into_series()
        .into()
}

/// A small-integer column as an Arrow array, built in two tight passes (values, then null
/// bits where there are nulls) rather than through a builder's call per row.
fn i16_array(v: &[Option<i16>]) -> ArrayRef {
    use polars_arrow::array::PrimitiveArray;
    use polars_arrow::bitmap::MutableBitmap;
    let values: Vec<i16> = v.iter().map(|x| x.unwrap_or(0)).collect();
    let validity = v.iter().any(Option::is_none).then(|| {
        v.iter()
            .map(Option::is_some)
            .collect::<MutableBitmap>()
            .freeze()
    });
    Box::new(PrimitiveArray::new(
        ArrowDataType::Int16,
        values.into(),
        validity,
    ))
}

fn str_column<'s>(name: &str, values: impl Iterator<Item = &'s str>, len: usize) -> Column {
    let mut b = StringChunkedBuilder::new(name.into(), len);
    for v in values {
        b.append_value(v);
    }
    b.finish().into_series().into()
}

fn const_str_column(name: &str, value: &str, len: usize) -> Column {
    let mut b = StringChunkedBuilder::new(name.into(), len);
    for _ in 0..len {
        b.append_value(value);
    }
    b.finish().into_series().into()
}

/// Bronze's columns and their types (SPEC §6), in file order. `message_id` is text here but
/// stored as Parquet's UUID type, 16 bytes a row (`encode`, `output::uuid_column`).
fn bronze_schema() -> Schema {
    let time = || DataType::Datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC));
    let columns = [
        ("message_id", DataType::String),
        ("patient_id", DataType::String),
        ("device_id", DataType::String),
        ("recorded_at", time()),
        ("schema_version", DataType::Int16),
        ("spo2_pct", DataType::Float64),
        ("heart_rate_bpm", DataType::Int16),
        ("respiratory_rate_min", DataType::Int16),
        ("temperature_c", DataType::Float64),
        ("ambient_temperature_c", DataType::Float64),
        ("relative_humidity_pct", DataType::Float64),
        ("hydration_pct", DataType::Float64),
        ("activity_level", DataType::Int16),
        ("pain_scale", DataType::Int16),
        ("battery_pct", DataType::Int16),
        ("signal_quality_pct", DataType::Int16),
        ("firmware_version", DataType::String),
        ("quality_flag", DataType::String),
        ("received_at", time()),
        ("ingest_run_id", DataType::String),
        ("source", DataType::String),
        ("source_offset", DataType::Int64),
    ];
    Schema::from_iter(columns.map(|(name, dtype)| Field::new(name.into(), dtype)))
}

/// Calls the macro `$apply` with `BronzeBuffer`'s columns: the plain vectors, then the
/// columns that encode their values as they are pushed (dictionaries, readings). One list, so
/// that a column added to the buffer is reserved and appended too.
macro_rules! bronze_buffer_columns {
    ($apply:ident) => {
        $apply!(
            slices: message_id, recorded_at, heart_rate_bpm, respiratory_rate_min,
                activity_level, pain_scale, battery_pct, signal_quality_pct, received_at,
                source_offset;
            encoded: patient_id, device_id, spo2_pct, temperature_c, ambient_temperature_c,
                relative_humidity_pct, hydration_pct, firmware_version, quality_flag, source
        )
    };
}

impl BronzeBuffer {
    fn len(&self) -> usize {
        self.message_id.len()
    }

    /// An empty buffer with room for `rows` rows: a row group fills without its columns being
    /// reallocated and copied as they grow.
    fn with_capacity(rows: usize) -> Self {
        let mut buffer = BronzeBuffer::default();
        macro_rules! reserve {
            (slices: $($plain:ident),*; encoded: $($coded:ident),*) => {
                $(buffer.$plain.reserve(rows);)*
                $(buffer.$coded.reserve(rows);)*
            };
        }
        bronze_buffer_columns!(reserve);
        buffer
    }

    fn push(&mut self, r: &Received<'_>) {
        let m = r.measurement;
        let v = &m.vitals;
        self.message_id.push(m.message_id);
        self.patient_id.push(&m.patient_id);
        self.device_id.push(&m.device_id);
        self.recorded_at.push(m.recorded_at.0);
        self.spo2_pct.push(v.spo2_pct);
        self.heart_rate_bpm.push(small(v.heart_rate_bpm));
        self.respiratory_rate_min
            .push(small(v.respiratory_rate_min));
        self.temperature_c.push(v.temperature_c);
        self.ambient_temperature_c.push(v.ambient_temperature_c);
        self.relative_humidity_pct.push(v.relative_humidity_pct);
        self.hydration_pct.push(v.hydration_pct);
        self.activity_level.push(small(v.activity_level));
        self.pain_scale.push(small(v.pain_scale));
        self.battery_pct.push(small(m.device.battery_pct));
        self.signal_quality_pct
            .push(small(m.device.signal_quality_pct));
        self.firmware_version
            .push_option(m.device.firmware_version.as_ref());
        self.quality_flag.push(&m.quality_flag.code());
        self.received_at.push(r.received_at.0);
        self.source.push(r.source);
        self.source_offset.push(r.source_offset);
    }

    /// Appends rows `rows` of `other` (built on another core), as if they were pushed here.
    fn extend_from(&mut self, other: &BronzeBuffer, rows: std::ops::Range<usize>) {
        macro_rules! extend {
            (slices: $($plain:ident),*; encoded: $($coded:ident),*) => {
                $(self.$plain.extend_from_slice(&other.$plain[rows.clone()]);)*
                $(self.$coded.extend_from(&other.$coded, rows.clone());)*
            };
        }
        bronze_buffer_columns!(extend);
    }

    /// The row group as Arrow arrays in `bronze_schema` order.
    fn into_arrays(self, run_id: &str) -> PolarsResult<Vec<ArrayRef>> {
        let n = self.len();
        let arrow = |c: Column| -> ArrayRef {
            c.as_materialized_series()
                .rechunk()
                .to_arrow(0, CompatLevel::newest())
        };
        let mut run = DictionaryColumn::<&str>::default();
        for _ in 0..n {
            run.push(&run_id);
        }
        Ok(vec![
            uuid_array(self.message_id.into_iter()),
            self.patient_id.finish(uuid_text)?,
            self.device_id.finish(uuid_text)?,
            arrow(time_column("recorded_at", self.recorded_at)),
            arrow(
                Int16Chunked::full("schema_version".into(), 1, n)
                    .into_series()
                    .into(),
            ),
            self.spo2_pct.into_array(),
            i16_array(&self.heart_rate_bpm),
            i16_array(&self.respiratory_rate_min),
            self.temperature_c.into_array(),
            self.ambient_temperature_c.into_array(),
            self.relative_humidity_pct.into_array(),
            self.hydration_pct.into_array(),
            i16_array(&self.activity_level),
            i16_array(&self.pain_scale),
            i16_array(&self.battery_pct),
            i16_array(&self.signal_quality_pct),
            self.firmware_version.finish(str_text)?,
            self.quality_flag.finish(str_text)?,
            arrow(time_column("received_at", self.received_at)),
            run.finish(str_text)?,
            self.source.finish(str_text)?,
            arrow(
                Int64Chunked::from_vec("source_offset".into(), self.source_offset)
                    .into_series()
                    .into(),
            ),
        ])
    }
}

/// Accepted records of one slice of a delivery, by event day, built on any core and then
/// appended to the writer in delivery order (`BronzeWriter::append`): the rows end up where
/// `BronzeWriter::accept`, record by record, would have put them.
#[derive(Default)]
pub struct BronzePiece {
    /// In order of first appearance; a slice spans one day, or two around midnight.
    days: Vec<(i64, BronzeBuffer)>,
    /// Rows the first day's buffer is sized for.
    room: usize,
}

impl BronzePiece {
    /// A piece for a slice of up to `rows` records: its first day's columns are sized for all
    /// of them up front (growing them by doubling copied each column once more).
    pub fn with_room(rows: usize) -> Self {
        BronzePiece {
            days: Vec::new(),
            room: rows,
        }
    }

    pub fn accept(&mut self, r: &Received<'_>) {
        let day = r.measurement.recorded_at.epoch_day();
        let at = match self.days.iter().position(|(d, _)| *d == day) {
            Some(at) => at,
            None => {
                let buffer = BronzeBuffer::with_capacity(std::mem::take(&mut self.room));
                self.days.push((day, buffer));
                self.days.len() - 1
            }
        };
        self.days[at].1.push(r);
    }
}

type BronzeParquet = ParallelGroupWriter<SharedFile>;

struct OpenPartition {
    file: SharedFile,
    writer: Option<BronzeParquet>,
    /// The previous row group, being encoded on its own thread while the next one fills: the
    /// encoder and the record routing then use both cores.
    in_flight: Option<std::thread::JoinHandle<Result<BronzeParquet, OutputError>>>,
    path: PathBuf,
    buffer: BronzeBuffer,
    rows: u64,
}

impl OpenPartition {
    /// Waits for the row group in flight and takes its writer back.
    fn settle(&mut self) -> Result<(), OutputError> {
        if let Some(handle) = self.in_flight.take() {
            let writer = handle.join().map_err(|_| OutputError::Parquet {
                path: self.path.clone(),
                message: "the Parquet encoder thread panicked".into(),
            })??;
            self.writer = Some(writer);
        }
        Ok(())
    }
}

/// Turns a Polars error into ours, naming the file.
fn parquet_error(path: &Path) -> impl Fn(PolarsError) -> OutputError + '_ {
    move |e| OutputError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Encodes one row group, creating the writer from the first frame's schema.
fn encode(
    buffer: BronzeBuffer,
    writer: Option<BronzeParquet>,
    file: SharedFile,
    path: &Path,
    run_id: &str,
) -> Result<BronzeParquet, OutputError> {
    let perr = parquet_error(path);
    let arrays = buffer.into_arrays(run_id).map_err(&perr)?;
    let mut writer = match writer {
        Some(w) => w,
        // The lake's settings (zstd level 1, statistics): Bronze is written once at ingest
        // speed and read by one ETL run; higher levels cost more CPU than they save in bytes.
        None => measurement_encodings(
            ParallelGroupWriter::lake_with_uuids(file, &bronze_schema(), UUID_COLUMNS)
                .map_err(&perr)?,
        ),
    };
    writer.write_arrays(&arrays).map_err(&perr)?;
    Ok(writer)
}

/// The encodings of a measurement table's columns, Bronze's and Silver's alike. Timestamps and
/// offsets step by little from row to row: delta-packed, they take a few bits a row, and the
/// writer skips hashing them to estimate a cardinality close to the row count. Message ids are
/// random: written plain, without a min/max that would prune nothing. (Readings are given to
/// the writer as dictionaries already: `output::decimal_dictionary`.)
pub fn measurement_encodings<W: std::io::Write>(
    writer: ParallelGroupWriter<W>,
) -> ParallelGroupWriter<W> {
    writer
        .plain(&["message_id"])
        .without_min_max(&["message_id"])
        .encoded(
            &["recorded_at", "received_at", "source_offset"],
            polars_parquet::write::Encoding::DeltaBinaryPacked,
        )
}

/// A quarantined record.
pub struct Rejected {
    pub received_at: UtcMillis,
    pub source: std::sync::Arc<str>,
    pub source_offset: i64,
    pub message_id: Option<Uuid>,
    pub patient_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub recorded_at: Option<UtcMillis>,
    pub reasons: Vec<Rejection>,
    pub raw_payload: String,
}

/// Bronze and quarantine of one ingest run.
pub struct BronzeWriter {
    root: PathBuf,
    run_id: String,
    open: BTreeMap<i64, OpenPartition>,
    /// Next part number per event day (a partition reopened after closing gets a new file).
    next_part: BTreeMap<i64, u32>,
    quarantine: BTreeMap<i64, Vec<Rejected>>,
    files: Vec<WrittenFile>,
    pub bronze_rows: u64,
    pub quarantined_rows: u64,
    pub reasons: BTreeMap<String, u64>,
}

impl BronzeWriter {
    pub fn new(root: &Path, run_id: &str) -> Self {
        BronzeWriter {
            root: root.to_path_buf(),
            run_id: run_id.to_string(),
            open: BTreeMap::new(),
            next_part: BTreeMap::new(),
            quarantine: BTreeMap::new(),
            files: Vec::new(),
            bronze_rows: 0,
            quarantined_rows: 0,
            reasons: BTreeMap::new(),
        }
    }

    pub fn accept(&mut self, r: Received<'_>) -> Result<(), OutputError> {
        let day = r.measurement.recorded_at.epoch_day();
        let p = self.partition(day)?;
        p.buffer.push(&r);
        let full = p.buffer.len() >= ROW_GROUP_ROWS;
        self.bronze_rows += 1;
        if full {
            self.flush(day)?;
        }
        Ok(())
    }

    /// Appends a piece of accepted records (the next ones in delivery order).
    pub fn append(&mut self, piece: &BronzePiece) -> Result<(), OutputError> {
        for (day, rows) in &piece.days {
            let mut next = 0;
            while next < rows.len() {
                let p = self.partition(*day)?;
                // Up to the end of the row group being filled, so groups split where they would
                // have record by record.
                let take = (ROW_GROUP_ROWS - p.buffer.len()).min(rows.len() - next);
                p.buffer.extend_from(rows, next..next + take);
                let full = p.buffer.len() >= ROW_GROUP_ROWS;
                next += take;
                self.bronze_rows += take as u64;
                if full {
                    self.flush(*day)?;
                }
            }
        }
        Ok(())
    }

    /// The open partition of event day `day`, opened (with a new part file) if it is not.
    fn partition(&mut self, day: i64) -> Result<&mut OpenPartition, OutputError> {
        if !self.open.contains_key(&day) {
            let part = self.next_part.entry(day).or_insert(0);
            let date = UtcMillis(day * crate::domain::time::MS_PER_DAY).date();
            let relative = layout::bronze_part(date, &self.run_id, *part);
            *part += 1;
            let file = HashedFile::create(&self.root, &relative)?;
            let path = file.absolute.clone();
            // The Parquet writer is created on the first flush, from the first frame's schema.
            self.open.insert(
                day,
                OpenPartition {
                    file: SharedFile::new(file),
                    writer: None,
                    in_flight: None,
                    path,
                    buffer: BronzeBuffer::with_capacity(ROW_GROUP_ROWS),
                    rows: 0,
                },
            );
        }
        self.open.get_mut(&day).ok_or_else(|| OutputError::Parquet {
            path: self.root.clone(),
            message: "invariant: the partition was just opened".into(),
        })
    }

    fn flush(&mut self, day: i64) -> Result<(), OutputError> {
        let Some(p) = self.open.get_mut(&day) else {
            return Ok(());
        };
        if p.buffer.len() == 0 {
            return Ok(());
        }
        p.settle()?;
        let buffer = std::mem::replace(&mut p.buffer, BronzeBuffer::with_capacity(ROW_GROUP_ROWS));
        p.rows += buffer.len() as u64;
        let (writer, file, path) = (p.writer.take(), p.file.clone(), p.path.clone());
        let run_id = self.run_id.clone();
        p.in_flight = Some(std::thread::spawn(move || {
            encode(buffer, writer, file, &path, &run_id)
        }));
        Ok(())
    }

    pub fn reject(&mut self, r: Rejected) {
        for reason in &r.reasons {
            *self.reasons.entry(reason.qualified_code()).or_insert(0) += 1;
        }
        self.quarantined_rows += 1;
        self.quarantine
            .entry(r.received_at.epoch_day())
            .or_default()
            .push(r);
    }

    /// Closes the Bronze partitions of days before `day` (no record for them can still come).
    pub fn close_before(&mut self, day: i64) -> Result<(), OutputError> {
        let old: Vec<i64> = self.open.range(..day).map(|(d, _)| *d).collect();
        for d in old {
            self.close(d)?;
        }
        let old_q: Vec<i64> = self.quarantine.range(..day).map(|(d, _)| *d).collect();
        for d in old_q {
            self.write_quarantine(d)?;
        }
        Ok(())
    }

    fn close(&mut self, day: i64) -> Result<(), OutputError> {
        self.flush(day)?;
        let Some(mut p) = self.open.remove(&day) else {
            return Ok(());
        };
        p.settle()?;
        let Some(w) = p.writer else { return Ok(()) };
        let perr = parquet_error(&p.path);
        w.finish().map_err(&perr)?;
        let file = p.file.into_inner().ok_or_else(|| OutputError::Parquet {
            path: p.path.clone(),
            message: "writer still holds the file".into(),
        })?;
        self.files.push(file.finish(p.rows)?);
        Ok(())
    }

    fn write_quarantine(&mut self, day: i64) -> Result<(), OutputError> {
        let Some(rows) = self.quarantine.remove(&day) else {
            return Ok(());
        };
        let date = UtcMillis(day * crate::domain::time::MS_PER_DAY).date();
        let part = layout::quarantine_part(date, &self.run_id, 0);
        let mut file = HashedFile::create(&self.root, &part)?;
        let path = file.absolute.clone();
        let perr = parquet_error(&path);
        let opt_uuid = |name: &str, f: &dyn Fn(&Rejected) -> Option<Uuid>| -> Column {
            let mut b = StringChunkedBuilder::new(name.into(), rows.len());
            for r in &rows {
                b.append_option(f(r).map(|u| u.to_string()));
            }
            b.finish().into_series().into()
        };
        let strs = |name: &str, f: &dyn Fn(&Rejected) -> String| -> Column {
            let mut b = StringChunkedBuilder::new(name.into(), rows.len());
            for r in &rows {
                b.append_value(f(r));
            }
            b.finish().into_series().into()
        };
        let n = rows.len();
        let recorded: Vec<Option<i64>> = rows.iter().map(|r| r.recorded_at.map(|t| t.0)).collect();
        let mut df = DataFrame::new_infer_height(vec![
            time_column(
                "received_at",
                rows.iter().map(|r| r.received_at.0).collect::<Vec<_>>(),
            ),
            const_str_column("ingest_run_id", &self.run_id, n),
            str_column("source", rows.iter().map(|r| &*r.source), n),
            Int64Chunked::from_vec(
                "source_offset".into(),
                rows.iter().map(|r| r.source_offset).collect(),
            )
            .into_series()
            .into(),
            opt_uuid("message_id", &|r| r.message_id),
            opt_uuid("patient_id", &|r| r.patient_id),
            opt_uuid("device_id", &|r| r.device_id),
            Int64Chunked::from_slice_options("recorded_at".into(), &recorded)
                .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
                .into_series()
                .into(),
            strs("reason_codes", &|r| {
                r.reasons
                    .iter()
                    .map(Rejection::qualified_code)
                    .collect::<Vec<_>>()
                    .join(";")
            }),
            strs("reason_details", &|r| {
                r.reasons
                    .iter()
                    .map(|x| x.detail.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
            strs("raw_payload", &|r| r.raw_payload.clone()),
        ])
        .map_err(&perr)?;
        ParquetWriter::new(&mut file)
            .with_compression(ParquetCompression::Zstd(None))
            .finish(&mut df)
            .map_err(&perr)?;
        self.files.push(file.finish(n as u64)?);
        Ok(())
    }

    pub fn finish(mut self) -> Result<(Vec<WrittenFile>, u64, u64), OutputError> {
        self.close_before(i64::MAX)?;
        let mut files = self.files;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((files, self.bronze_rows, self.quarantined_rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::{cohort, SimulationConfig, Simulator};

    /// Every file under `root`, by relative path, with its bytes.
    fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("read dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let relative = path.strip_prefix(root).expect("under root");
                    out.insert(
                        relative.display().to_string(),
                        std::fs::read(&path).expect("read"),
                    );
                }
            }
        }
        out
    }

    /// What Bronze files give back is what was accepted, to the bit: message ids as 16-byte
    /// UUIDs, readings stored as
    /// dictionaries of tenths, a reading with more decimals (stored plainly), delta-packed
    /// timestamps and offsets.
    #[test]
    fn readings_and_times_read_back_exactly() {
        let cfg = SimulationConfig::new(9, 5, UtcMillis(1_772_323_200_000), 2);
        let cohort = cohort::generate(&cfg);
        let mut sim = Simulator::new(&cfg, &cohort);
        let source: std::sync::Arc<str> = std::sync::Arc::from("test");
        let dir = tempfile::tempdir().expect("dir");
        let mut writer = BronzeWriter::new(dir.path(), "run-1");
        let mut expected = Vec::new();
        let mut offset = 0i64;
        while let Some(chunk) = sim.next_chunk() {
            for r in chunk.ordered() {
                let mut m = r.measurement.clone();
                if m.validate(r.emit_at).is_empty() {
                    if offset == 5_000 {
                        // A device that reports hundredths: its day's column cannot be tenths.
                        m.vitals.spo2_pct = Some(97.25);
                    }
                    writer
                        .accept(Received {
                            measurement: &m,
                            received_at: r.emit_at,
                            source: &source,
                            source_offset: offset,
                        })
                        .expect("accept");
                    expected.push((
                        m.message_id,
                        m.vitals.spo2_pct.map(f64::to_bits),
                        m.vitals.temperature_c.map(f64::to_bits),
                        m.recorded_at.0,
                        r.emit_at.0,
                        offset,
                    ));
                    offset += 1;
                }
            }
        }
        writer.finish().expect("finish");
        let mut actual = Vec::new();
        let mut dictionary_readings = 0;
        for (name, bytes) in files(dir.path()) {
            if !name.ends_with(".parquet") || !name.starts_with("bronze") {
                continue;
            }
            let metadata = polars_parquet::read::read_metadata(&mut std::io::Cursor::new(&bytes))
                .expect("metadata");
            for group in &metadata.row_groups {
                let chunk = |column: &str| {
                    group
                        .parquet_columns()
                        .iter()
                        .find(|c| c.descriptor().path_in_schema[0].as_str() == column)
                        .expect("column")
                };
                assert!(
                    chunk("recorded_at").dictionary_page_offset().is_none(),
                    "delta, not a dictionary"
                );
                let id = &chunk("message_id").descriptor().descriptor.primitive_type;
                assert_eq!(
                    id.logical_type,
                    Some(polars_parquet::parquet::schema::types::PrimitiveLogicalType::Uuid)
                );
                dictionary_readings +=
                    usize::from(chunk("temperature_c").dictionary_page_offset().is_some());
            }
            let df = ParquetReader::new(std::io::Cursor::new(bytes))
                .finish()
                .expect("read");
            let column = |c: &str| {
                df.column(c)
                    .expect("column")
                    .as_materialized_series()
                    .clone()
            };
            let ids = column("message_id");
            let spo2 = column("spo2_pct");
            let temperature = column("temperature_c");
            let recorded = column("recorded_at").to_physical_repr().into_owned();
            let received = column("received_at").to_physical_repr().into_owned();
            let offsets = column("source_offset");
            for i in 0..df.height() {
                actual.push((
                    crate::output::uuid_column::uuid_from_bytes(
                        ids.binary().expect("16 bytes").get(i).expect("id"),
                    )
                    .expect("an id"),
                    spo2.f64().expect("f64").get(i).map(f64::to_bits),
                    temperature.f64().expect("f64").get(i).map(f64::to_bits),
                    recorded.i64().expect("i64").get(i).expect("time"),
                    received.i64().expect("i64").get(i).expect("time"),
                    offsets.i64().expect("i64").get(i).expect("offset"),
                ));
            }
        }
        assert!(dictionary_readings > 0);
        assert!(expected.iter().any(|e| e.1 == Some(97.25f64.to_bits())));
        expected.sort();
        actual.sort();
        assert_eq!(expected.len(), actual.len());
        assert!(expected == actual, "Bronze gives back other values");
    }

    /// Pieces of uneven sizes, appended in order, write the files that accepting the same
    /// records one by one writes: same partitions, same row groups (more rows than one group
    /// holds, days that straddle midnight), same bytes.
    #[test]
    fn appended_pieces_write_the_files_of_record_by_record_accepts() {
        // 50 patients over two days: ~140,000 records a day, more than a row group holds.
        let cfg = SimulationConfig::new(5, 50, UtcMillis(1_772_323_200_000), 2);
        let cohort = cohort::generate(&cfg);
        let mut sim = Simulator::new(&cfg, &cohort);
        let source: std::sync::Arc<str> = std::sync::Arc::from("test");
        let (one, pieces) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let mut by_record = BronzeWriter::new(one.path(), "run-1");
        let mut by_piece = BronzeWriter::new(pieces.path(), "run-1");
        let mut offset = 0i64;
        while let Some(chunk) = sim.next_chunk() {
            let records = chunk.ordered();
            let mut start = 0;
            for (n, size) in [1usize, 7_000, 50_000].into_iter().cycle().enumerate() {
                if start >= records.len() {
                    break;
                }
                let end = (start + size + n).min(records.len());
                let mut piece = BronzePiece::default();
                for r in &records[start..end] {
                    let received = Received {
                        measurement: &r.measurement,
                        received_at: r.emit_at,
                        source: &source,
                        source_offset: offset,
                    };
                    offset += 1;
                    piece.accept(&received);
                    by_record.accept(Received { ..received }).expect("accept");
                }
                by_piece.append(&piece).expect("append");
                start = end;
            }
        }
        let (_, rows_one, _) = by_record.finish().expect("finish");
        let (_, rows_pieces, _) = by_piece.finish().expect("finish");
        assert_eq!(rows_one, rows_pieces);
        assert!(rows_one > ROW_GROUP_ROWS as u64 * 2, "{rows_one} rows");
        let (a, b) = (files(one.path()), files(pieces.path()));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        assert!(a == b, "the files differ");
    }
}
