//! `kidjamo db load`: the lake's reference tables and measurements into PostgreSQL.
//!
//! Every table goes the same way: Parquet → binary COPY into a temporary staging table →
//! `INSERT … SELECT … ON CONFLICT DO NOTHING`. The conflict clause is what makes a rerun insert
//! nothing new; the staging table is what lets one statement (and one audit row per patient)
//! cover a whole file. Reference tables load in one transaction; measurements one file per
//! transaction, so an interrupted load keeps the files it finished and a rerun adds the rest.

use super::copy::{self, Field};
use super::{query_error, DbError};
use crate::domain::heat_index::heat_index_c;
use crate::lake::layout;
use crate::progress::Progress;
use chrono::{Duration as Days, NaiveDate};
use polars::prelude::{DataFrame, DataType, ParquetReader, SerReader, TimeUnit};
use postgres::Client;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}: cannot read Parquet: {reason}")]
    Parquet { file: String, reason: String },
    #[error("{file}: column {column} is missing")]
    MissingColumn { file: String, column: String },
    #[error("{file}: column {column} has type {found}, expected {expected}")]
    WrongType {
        file: String,
        column: String,
        found: String,
        expected: &'static str,
    },
    #[error("{file}: row {row}: {column} {value:?} is not a UUID")]
    BadUuid {
        file: String,
        row: usize,
        column: String,
        value: String,
    },
    #[error("{path}: {reason}")]
    Lake { path: String, reason: String },
    #[error("{file}: {source}")]
    Copy {
        file: String,
        source: postgres::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What a staging column holds; decides how a Parquet column is read and encoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Uuid,
    Text,
    F64,
    I16,
    Bool,
    Date,
    TimestampMs,
    I32,
    TextList,
}

/// One staging column: the database column it feeds, the Parquet column it comes from.
pub struct Col {
    pub target: &'static str,
    pub source: &'static str,
    pub kind: Kind,
    /// A missing optional column loads as NULLs (Bronze written by older tools, for instance).
    pub required: bool,
}

pub(crate) const fn col(target: &'static str, source: &'static str, kind: Kind) -> Col {
    Col {
        target,
        source,
        kind,
        required: true,
    }
}

const fn optional(target: &'static str, kind: Kind) -> Col {
    Col {
        target,
        source: target,
        kind,
        required: false,
    }
}

/// A reference table: the lake file it is read from and the database table it fills.
pub struct TableSpec {
    pub table: &'static str,
    pub file: &'static str,
    pub columns: &'static [Col],
}

use Kind::*;

/// In foreign-key order: users and devices before patients, patients before their links.
pub const REFERENCE_TABLES: &[TableSpec] = &[
    TableSpec {
        table: "users",
        file: "users.parquet",
        columns: &[
            col("user_id", "user_id", Uuid),
            col("role", "role", Text),
            col("given_name", "given_name", Text),
            col("family_name", "family_name", Text),
            col("email", "email", Text),
            col("phone", "phone", Text),
            col("created_at", "created_at", TimestampMs),
        ],
    },
    TableSpec {
        table: "devices",
        file: "devices.parquet",
        columns: &[
            col("device_id", "device_id", Uuid),
            col("model", "model", Text),
            col("firmware_version", "firmware_version", Text),
        ],
    },
    TableSpec {
        table: "patients",
        file: "patients.parquet",
        columns: &[
            col("patient_id", "patient_id", Uuid),
            col("user_id", "user_id", Uuid),
            col("sex", "sex", Text),
            col("birth_date", "birth_date", Date),
            col("genotype", "genotype", Text),
            col("weight_kg", "weight_kg", F64),
            col("height_cm", "height_cm", F64),
            col("city", "city", Text),
            col("country", "country", Text),
            col("emergency_contact_name", "emergency_contact_name", Text),
            col("emergency_contact_phone", "emergency_contact_phone", Text),
            col("current_device_id", "current_device_id", Uuid),
        ],
    },
    TableSpec {
        table: "device_assignments",
        file: "devices.parquet",
        columns: &[
            col("device_id", "device_id", Uuid),
            col("patient_id", "patient_id", Uuid),
            col("assigned_from", "assigned_from", TimestampMs),
            col("assigned_to", "assigned_to", TimestampMs),
        ],
    },
    TableSpec {
        table: "caregivers",
        file: "caregivers.parquet",
        columns: &[
            col("user_id", "caregiver_user_id", Uuid),
            col("patient_id", "patient_id", Uuid),
            col("relationship", "relationship", Text),
            col("priority", "priority", I16),
            col("can_acknowledge_alerts", "can_acknowledge_alerts", Bool),
        ],
    },
    TableSpec {
        table: "clinicians",
        file: "clinicians.parquet",
        columns: &[
            col("user_id", "user_id", Uuid),
            col("license_number", "license_number", Text),
            col("specialty", "specialty", Text),
            col("hospital", "hospital", Text),
        ],
    },
    TableSpec {
        table: "patient_clinicians",
        file: "patient_clinicians.parquet",
        columns: &[
            col("patient_id", "patient_id", Uuid),
            col("clinician_user_id", "clinician_user_id", Uuid),
            col("role", "role", Text),
            col("is_primary", "is_primary", Bool),
        ],
    },
];

/// Measurements, in the column order of the `measurements` table. `heat_index_c` is computed
/// from ambient temperature and humidity when the input does not carry it (Bronze).
pub const MEASUREMENT_COLUMNS: &[Col] = &[
    col("device_id", "device_id", Uuid),
    col("recorded_at", "recorded_at", TimestampMs),
    col("patient_id", "patient_id", Uuid),
    col("message_id", "message_id", Uuid),
    optional("received_at", TimestampMs),
    optional("spo2_pct", F64),
    optional("heart_rate_bpm", I16),
    optional("respiratory_rate_min", I16),
    optional("temperature_c", F64),
    optional("ambient_temperature_c", F64),
    optional("relative_humidity_pct", F64),
    optional("hydration_pct", F64),
    optional("activity_level", I16),
    optional("pain_scale", I16),
    optional("heat_index_c", F64),
    optional("battery_pct", I16),
    optional("signal_quality_pct", I16),
    optional("firmware_version", Text),
    col("quality_flag", "quality_flag", Text),
];

/// Rows per table: read from the lake, inserted, already present, rejected (with why).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableCounts {
    pub table: String,
    pub read: u64,
    pub inserted: u64,
    pub already_present: u64,
    /// Rows of patients the database does not know (no reference row).
    pub unknown_patient: u64,
    /// Alerts whose newer state replaced the stored one.
    pub updated: u64,
}

#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub tables: Vec<TableCounts>,
    pub measurement_layer: Option<String>,
    pub measurement_files: usize,
    pub partitions_created: Vec<String>,
}

/// Which measurements to load.
#[derive(Debug, Clone)]
pub struct MeasurementSelection {
    /// `silver` or `bronze`; `None` picks Silver when the lake has it, else Bronze.
    pub layer: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

/// Loads the lake. `connect` opens a connection; reference tables use one, measurement files
/// are spread over `workers` connections (the server does most of the work of a load, and one
/// backend uses one core: two connections keep both cores of a small machine busy).
pub fn load_lake(
    connect: &(dyn Fn() -> Result<Client, DbError> + Sync),
    lake: &Path,
    selection: &MeasurementSelection,
    workers: usize,
    progress: &dyn Progress,
) -> Result<LoadReport, LoadError> {
    let mut report = LoadReport::default();
    let started = std::time::Instant::now();
    let mut client = connect()?;
    let reference = lake.join(layout::REFERENCE_DIR);
    if reference.is_dir() {
        report.tables = load_reference(&mut client, &reference)?;
    }
    let alert_files = layout::ALERT_DIRS
        .iter()
        .map(|dir| partition_files(&lake.join(dir), selection))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    let (layer, files) = measurement_files(lake, selection)?;
    report.measurement_layer = layer;
    report.measurement_files = files.len();
    // Partitions first, from the files' event dates, so that workers never create one while
    // another inserts (a file holding rows outside its date still gets them, one at a time).
    // A week without a partition is bulk-loaded into a standalone table attached at the end.
    let mut weeks: Vec<NaiveDate> = files
        .iter()
        .map(|f| super::partitions::iso_week_start(f.event_date))
        .collect();
    weeks.sort();
    weeks.dedup();
    let mut bulk = BulkWeeks::new();
    for week in weeks {
        let table: Option<String> = client
            .query_one("SELECT kidjamo_bulk_week_begin($1)", &[&week])
            .map_err(query_error(format!("cannot prepare the week of {week}")))?
            .get(0);
        match table {
            Some(table) => {
                let start = week
                    .and_time(chrono::NaiveTime::MIN)
                    .and_utc()
                    .timestamp_millis();
                bulk.insert(week, (table, (start, start + 7 * 86_400_000)));
            }
            None => report
                .partitions_created
                .extend(ensure_partition(&mut client, week)?),
        }
    }

    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        bulk_weeks = bulk.len(),
        "reference tables loaded, partitions prepared"
    );
    let known = known_patients(&mut client)?;
    let rows_total: u64 = files.iter().map(|f| f.rows).sum();
    progress.on_start(rows_total);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, files.len().max(1)) {
            scope.spawn(|| {
                let outcome = (|| -> Result<(), LoadError> {
                    let mut client = connect()?;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(file) = files.get(i) else {
                            return Ok(());
                        };
                        let loaded = load_measurement_file(&mut client, &file.path, &bulk, &known)?;
                        progress.on_advance(loaded.0.read);
                        results.lock().map_err(|_| poisoned())?.push(Ok(loaded));
                    }
                })();
                if let Err(e) = outcome {
                    // Stop the other workers after their current file.
                    next.store(usize::MAX / 2, std::sync::atomic::Ordering::Relaxed);
                    if let Ok(mut r) = results.lock() {
                        r.push(Err(e));
                    }
                }
            });
        }
    });
    progress.on_finish();
    let mut totals = TableCounts {
        table: "measurements".into(),
        ..TableCounts::default()
    };
    for result in results.into_inner().map_err(|_| poisoned())? {
        let (counts, created) = result?;
        totals.read += counts.read;
        totals.inserted += counts.inserted;
        totals.already_present += counts.already_present;
        totals.unknown_patient += counts.unknown_patient;
        report.partitions_created.extend(created);
    }
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "measurement files loaded"
    );
    // Every file is in: index, audit and attach the bulk-loaded weeks.
    for week in bulk.keys() {
        let row = client
            .query_one(
                "SELECT partition_name, duplicates FROM kidjamo_bulk_week_finish($1)",
                &[week],
            )
            .map_err(query_error(format!(
                "cannot attach the partition of the week of {week}"
            )))?;
        let name: String = row.get(0);
        // The same sample in two files of the week: one copy was removed before the key.
        let duplicates = row.get::<_, i64>(1) as u64;
        totals.inserted -= duplicates;
        totals.already_present += duplicates;
        tracing::info!(seconds = started.elapsed().as_secs_f64(), partition = %name, "attached");
        report.partitions_created.push(name);
    }
    report.tables.push(totals);
    if !alert_files.is_empty() {
        report.tables.push(super::load_alerts::load_alert_files(
            &mut client,
            &alert_files,
        )?);
    }
    Ok(report)
}

fn poisoned() -> LoadError {
    LoadError::Lake {
        path: "load".into(),
        reason: "a load worker panicked".into(),
    }
}

fn load_reference(client: &mut Client, dir: &Path) -> Result<Vec<TableCounts>, LoadError> {
    let mut tx = client
        .transaction()
        .map_err(query_error("cannot start the reference load"))?;
    let mut counts = Vec::new();
    for spec in REFERENCE_TABLES {
        let path = dir.join(spec.file);
        if !path.exists() {
            return Err(LoadError::Lake {
                path: path.display().to_string(),
                reason:
                    "reference table missing (the lake should hold what `kidjamo simulate` writes)"
                        .into(),
            });
        }
        let df = read_parquet(&path)?;
        let name = path.display().to_string();
        let fields = fields(&df, &name, spec.columns)?;
        let stage = format!("kidjamo_stage_{}", spec.table);
        let read = copy_into_stage(&mut tx, &name, &stage, spec.columns, &fields)?;
        let targets = column_list(spec.columns);
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO {} ({targets}) SELECT {targets} FROM {stage} ON CONFLICT DO NOTHING",
                    spec.table
                ),
                &[],
            )
            .map_err(|source| LoadError::Copy {
                file: name.clone(),
                source,
            })?;
        counts.push(TableCounts {
            table: spec.table.into(),
            read,
            inserted,
            already_present: read - inserted,
            unknown_patient: 0,
            updated: 0,
        });
    }
    tx.commit()
        .map_err(query_error("cannot commit the reference load"))?;
    Ok(counts)
}

/// Patient ids the database knows, fetched once per load: rows of other patients are counted
/// and left out before anything is sent.
pub type KnownPatients = HashSet<[u8; 16]>;

pub fn known_patients(client: &mut Client) -> Result<KnownPatients, DbError> {
    Ok(client
        .query("SELECT patient_id FROM patients", &[])
        .map_err(query_error("cannot read the known patients"))?
        .iter()
        .map(|r| *r.get::<_, uuid::Uuid>(0).as_bytes())
        .collect())
}

/// Where each row of a file goes: the standalone table of a bulk-loaded week (plain COPY: the
/// week is new, so nothing can conflict but a sample repeated in another file, which the attach
/// step removes), or `measurements` through the staging table and `ON CONFLICT DO NOTHING`.
#[derive(Default)]
struct Routes {
    bulk: std::collections::BTreeMap<NaiveDate, Vec<u32>>,
    regular: Vec<u32>,
    unknown_patient: u64,
    repeated_in_file: u64,
}

fn route(fields: &[Field<'_>], bulk: &BulkWeeks, known: &KnownPatients) -> Routes {
    let mut routes = Routes::default();
    let (Field::Uuid(devices), Field::TimestampMs(times), Field::Uuid(patients)) =
        (&fields[0], &fields[1], &fields[2])
    else {
        return routes;
    };
    let mut seen: HashSet<([u8; 16], i64)> = HashSet::with_capacity(times.len());
    for (i, ((device, time), patient)) in devices.iter().zip(times).zip(patients).enumerate() {
        let (Some(device), Some(time), Some(patient)) = (device, time, patient) else {
            routes.regular.push(i as u32); // NOT NULL violations are the database's to report
            continue;
        };
        if !known.contains(patient) {
            routes.unknown_patient += 1;
        } else if !seen.insert((*device, *time)) {
            routes.repeated_in_file += 1;
        } else if let Some((week, _)) = bulk
            .iter()
            .find(|(_, (_, (start, end)))| *start <= *time && *time < *end)
        {
            routes.bulk.entry(*week).or_default().push(i as u32);
        } else {
            routes.regular.push(i as u32);
        }
    }
    routes
}

/// Loads one Parquet file of measurements in its own transaction; returns its counts and the
/// partitions it had to create.
pub fn load_measurement_file(
    client: &mut Client,
    path: &Path,
    bulk: &BulkWeeks,
    known: &KnownPatients,
) -> Result<(TableCounts, Vec<String>), LoadError> {
    let name = path.display().to_string();
    let started = std::time::Instant::now();
    let df = read_parquet(path)?;
    let mut fields = fields(&df, &name, MEASUREMENT_COLUMNS)?;
    fill_heat_index(&df, &mut fields);
    let routes = route(&fields, bulk, known);
    let decoded = started.elapsed();
    let created = match regular_span(&fields[1], &routes.regular) {
        Some(span) => ensure_partitions(client, span, bulk)?,
        None => Vec::new(),
    };
    let mut tx = client
        .transaction()
        .map_err(query_error("cannot start a measurement load"))?;
    let mut inserted = 0;
    for (week, rows) in &routes.bulk {
        if let Some((table, _)) = bulk.get(week) {
            inserted += copy_rows(&mut tx, &name, table, MEASUREMENT_COLUMNS, &fields, rows)?;
        }
    }
    let copied = started.elapsed();
    let mut conflicts = 0;
    if !routes.regular.is_empty() {
        let stage = "kidjamo_stage_measurements";
        create_stage(&mut tx, stage, MEASUREMENT_COLUMNS, &fields)?;
        let staged = copy_rows(
            &mut tx,
            &name,
            stage,
            MEASUREMENT_COLUMNS,
            &fields,
            &routes.regular,
        )?;
        let added = tx
            .execute(
                &format!("INSERT INTO measurements SELECT * FROM {stage} ON CONFLICT DO NOTHING"),
                &[],
            )
            .map_err(|source| LoadError::Copy {
                file: name.clone(),
                source,
            })?;
        inserted += added;
        conflicts = staged - added;
    }
    tx.commit()
        .map_err(query_error(format!("{name}: cannot commit")))?;
    let read = fields.first().map_or(0, Field::len) as u64;
    tracing::debug!(
        file = %name,
        rows = read,
        decode_s = decoded.as_secs_f64(),
        bulk_copy_s = (copied - decoded).as_secs_f64(),
        regular_s = (started.elapsed() - copied).as_secs_f64(),
        "measurement file loaded"
    );
    Ok((
        TableCounts {
            table: "measurements".into(),
            read,
            inserted,
            already_present: routes.repeated_in_file + conflicts,
            unknown_patient: routes.unknown_patient,
            updated: 0,
        },
        created,
    ))
}

fn regular_span(recorded_at: &Field<'_>, rows: &[u32]) -> Option<(i64, i64)> {
    let Field::TimestampMs(times) = recorded_at else {
        return None;
    };
    let (min, max) = rows
        .iter()
        .filter_map(|&i| times[i as usize])
        .fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    (min <= max).then_some((min, max))
}

/// Weeks loaded in bulk: week start → (standalone table, [start, end) in Unix ms).
pub type BulkWeeks = std::collections::BTreeMap<NaiveDate, (String, (i64, i64))>;

/// Creates the weekly partitions the rows of a file need, before they are inserted (weeks being
/// bulk-loaded excepted: their partition is the standalone table, attached at the end).
fn ensure_partitions(
    client: &mut Client,
    (min, max): (i64, i64),
    bulk: &BulkWeeks,
) -> Result<Vec<String>, DbError> {
    let day = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.date_naive())
            .unwrap_or_default()
    };
    let mut created = Vec::new();
    let (mut d, last) = (day(min), day(max));
    loop {
        if !bulk.contains_key(&super::partitions::iso_week_start(d)) {
            created.extend(ensure_partition(client, d)?);
        }
        if d >= last {
            break;
        }
        d = (d + Days::days(7)).min(last);
    }
    Ok(created)
}

/// The partition of the week holding `day`, created if missing; its name when created.
fn ensure_partition(client: &mut Client, day: NaiveDate) -> Result<Option<String>, DbError> {
    let row = client
        .query_one(
            "SELECT partition_name, created FROM kidjamo_ensure_week_partition($1)",
            &[&day],
        )
        .map_err(query_error(format!(
            "cannot create the partition for {day}"
        )))?;
    Ok(row.get::<_, bool>(1).then(|| row.get(0)))
}

pub(crate) fn column_list(columns: &[Col]) -> String {
    columns
        .iter()
        .map(|c| c.target)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Creates (or empties) the staging table and fills it with binary COPY; returns the row count.
pub(crate) fn copy_into_stage(
    tx: &mut postgres::Transaction<'_>,
    file: &str,
    stage: &str,
    columns: &[Col],
    fields: &[Field<'_>],
) -> Result<u64, LoadError> {
    create_stage(tx, stage, columns, fields)?;
    let all: Vec<u32> = (0..fields.first().map_or(0, Field::len) as u32).collect();
    copy_rows(tx, file, stage, columns, fields, &all)
}

/// A temporary table with one column per field, empty, dropped at commit.
fn create_stage(
    tx: &mut postgres::Transaction<'_>,
    stage: &str,
    columns: &[Col],
    fields: &[Field<'_>],
) -> Result<(), LoadError> {
    let definition = columns
        .iter()
        .zip(fields)
        .map(|(c, f)| format!("{} {}", c.target, f.pg_type()))
        .collect::<Vec<_>>()
        .join(", ");
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {stage} ({definition}) ON COMMIT DROP; TRUNCATE {stage}"
    ))
    .map_err(query_error(format!("cannot create staging table {stage}")))?;
    Ok(())
}

/// Binary COPY of the given rows of `fields` into `table`; returns the row count.
fn copy_rows(
    tx: &mut postgres::Transaction<'_>,
    file: &str,
    table: &str,
    columns: &[Col],
    fields: &[Field<'_>],
    rows: &[u32],
) -> Result<u64, LoadError> {
    let copy_error = |source| LoadError::Copy {
        file: file.to_string(),
        source,
    };
    let mut writer = tx
        .copy_in(&format!(
            "COPY {table} ({}) FROM STDIN (FORMAT binary)",
            column_list(columns)
        ))
        .map_err(copy_error)?;
    let io_error = |e: std::io::Error| LoadError::Lake {
        path: file.to_string(),
        reason: format!("COPY stream failed: {e}"),
    };
    let mut buf = Vec::with_capacity(1 << 21);
    buf.extend_from_slice(copy::HEADER);
    for batch in rows.chunks(8192) {
        copy::encode_rows(fields, batch.iter().map(|&i| i as usize), &mut buf);
        if buf.len() >= 1 << 20 {
            writer.write_all(&buf).map_err(io_error)?;
            buf.clear();
        }
    }
    buf.extend_from_slice(copy::TRAILER);
    writer.write_all(&buf).map_err(io_error)?;
    writer.finish().map_err(copy_error)
}

pub(crate) fn read_parquet(path: &Path) -> Result<DataFrame, LoadError> {
    let err = |reason: String| LoadError::Parquet {
        file: path.display().to_string(),
        reason,
    };
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    ParquetReader::new(f)
        .finish()
        .map_err(|e| err(e.to_string()))
}

/// Reads the columns of `spec` from a data frame, in order, as COPY fields.
pub fn fields<'a>(
    df: &'a DataFrame,
    file: &str,
    spec: &[Col],
) -> Result<Vec<Field<'a>>, LoadError> {
    spec.iter().map(|c| field(df, file, c)).collect()
}

fn field<'a>(df: &'a DataFrame, file: &str, c: &Col) -> Result<Field<'a>, LoadError> {
    let n = df.height();
    let Ok(column) = df.column(c.source) else {
        if c.required {
            return Err(LoadError::MissingColumn {
                file: file.into(),
                column: c.source.into(),
            });
        }
        return Ok(match c.kind {
            Uuid => Field::Uuid(vec![None; n]),
            Text => Field::Text(vec![None; n]),
            F64 => Field::F64(vec![None; n]),
            I16 => Field::I16(vec![None; n]),
            Bool => Field::Bool(vec![None; n]),
            Date => Field::Date(vec![None; n]),
            TimestampMs => Field::TimestampMs(vec![None; n]),
            I32 => Field::I32(vec![None; n]),
            TextList => Field::TextList(vec![None; n]),
        });
    };
    let series = column.as_materialized_series();
    let wrong = |expected: &'static str| LoadError::WrongType {
        file: file.into(),
        column: c.source.into(),
        found: series.dtype().to_string(),
        expected,
    };
    let cast = |to: &DataType, expected: &'static str| {
        if series.dtype().is_primitive_numeric() || series.dtype() == to {
            series.cast(to).map_err(|_| wrong(expected))
        } else {
            Err(wrong(expected))
        }
    };
    Ok(match c.kind {
        Uuid => {
            let ca = series.str().map_err(|_| wrong("a UUID string"))?;
            let mut out = Vec::with_capacity(n);
            for (row, v) in ca.iter().enumerate() {
                out.push(match v {
                    None => None,
                    Some(s) => Some(
                        uuid::Uuid::try_parse(s)
                            .map_err(|_| LoadError::BadUuid {
                                file: file.into(),
                                row,
                                column: c.source.into(),
                                value: s.chars().take(60).collect(),
                            })?
                            .into_bytes(),
                    ),
                });
            }
            Field::Uuid(out)
        }
        Text => Field::Text(
            series
                .str()
                .map_err(|_| wrong("a string"))?
                .iter()
                .collect(),
        ),
        F64 => {
            let s = cast(&DataType::Float64, "a number")?;
            Field::F64(s.f64().map_err(|_| wrong("a number"))?.iter().collect())
        }
        I16 => {
            let s = cast(&DataType::Int16, "an integer")?;
            Field::I16(s.i16().map_err(|_| wrong("an integer"))?.iter().collect())
        }
        I32 => {
            let s = cast(&DataType::Int32, "an integer")?;
            Field::I32(s.i32().map_err(|_| wrong("an integer"))?.iter().collect())
        }
        TextList => {
            let lists = series.list().map_err(|_| wrong("a list of strings"))?;
            let mut out = Vec::with_capacity(n);
            for item in lists.series_iter() {
                out.push(match item {
                    None => None,
                    Some(inner) => Some(
                        inner
                            .str()
                            .map_err(|_| wrong("a list of strings"))?
                            .iter()
                            .map(|v| v.unwrap_or_default().to_string())
                            .collect(),
                    ),
                });
            }
            Field::TextList(out)
        }
        Bool => Field::Bool(
            series
                .bool()
                .map_err(|_| wrong("a boolean"))?
                .iter()
                .collect(),
        ),
        Date => {
            if series.dtype() != &DataType::Date {
                return Err(wrong("a date"));
            }
            let s = series.cast(&DataType::Int32).map_err(|_| wrong("a date"))?;
            Field::Date(s.i32().map_err(|_| wrong("a date"))?.iter().collect())
        }
        TimestampMs => {
            let per_ms = match series.dtype() {
                DataType::Datetime(TimeUnit::Milliseconds, _) => (1, 1),
                DataType::Datetime(TimeUnit::Microseconds, _) => (1, 1000),
                DataType::Datetime(TimeUnit::Nanoseconds, _) => (1, 1_000_000),
                _ => return Err(wrong("a timestamp")),
            };
            let s = series
                .cast(&DataType::Int64)
                .map_err(|_| wrong("a timestamp"))?;
            let ca = s.i64().map_err(|_| wrong("a timestamp"))?;
            Field::TimestampMs(
                ca.iter()
                    .map(|v| v.map(|x| x * per_ms.0 / per_ms.1))
                    .collect(),
            )
        }
    })
}

/// Bronze carries no heat index (it is derived, never sent): compute it like Silver does.
fn fill_heat_index(df: &DataFrame, fields: &mut [Field<'_>]) {
    if df.column("heat_index_c").is_ok() {
        return;
    }
    let position = |name: &str| MEASUREMENT_COLUMNS.iter().position(|c| c.target == name);
    let (Some(t), Some(h), Some(hi)) = (
        position("ambient_temperature_c"),
        position("relative_humidity_pct"),
        position("heat_index_c"),
    ) else {
        return;
    };
    let (Field::F64(temps), Field::F64(humidities)) = (&fields[t], &fields[h]) else {
        return;
    };
    let computed: Vec<Option<f64>> = temps
        .iter()
        .zip(humidities)
        .map(|(&t, &h)| heat_index_c(t, h))
        .collect();
    fields[hi] = Field::F64(computed);
}

pub struct MeasurementFile {
    pub path: PathBuf,
    pub event_date: NaiveDate,
    pub rows: u64,
}

/// The measurement files of the chosen layer, in event-date order, with their row counts from
/// the Parquet footers (for the progress bar).
pub fn measurement_files(
    lake: &Path,
    selection: &MeasurementSelection,
) -> Result<(Option<String>, Vec<MeasurementFile>), LoadError> {
    let layer = match selection.layer.as_deref() {
        Some(l @ ("silver" | "bronze")) => l.to_string(),
        Some(other) => {
            return Err(LoadError::Lake {
                path: lake.display().to_string(),
                reason: format!("unknown layer {other:?}; use silver or bronze"),
            })
        }
        None if lake.join("silver/measurements").is_dir() => "silver".into(),
        None if lake.join(layout::BRONZE_MEASUREMENTS).is_dir() => "bronze".into(),
        None => return Ok((None, Vec::new())),
    };
    let files = partition_files(&lake.join(format!("{layer}/measurements")), selection)?;
    Ok((Some(layer), files))
}

/// The Parquet files under `root/event_date=YYYY-MM-DD/`, in date order, filtered by the
/// selection's dates, with row counts from their footers. A missing `root` has none.
pub fn partition_files(
    root: &Path,
    selection: &MeasurementSelection,
) -> Result<Vec<MeasurementFile>, LoadError> {
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let lake_error = |path: &Path, e: std::io::Error| LoadError::Lake {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut files = Vec::new();
    let entries = std::fs::read_dir(root).map_err(|e| lake_error(root, e))?;
    for entry in entries {
        let dir = entry.map_err(|e| lake_error(root, e))?.path();
        let Some(date) = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("event_date="))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            continue;
        };
        if selection.from.is_some_and(|f| date < f) || selection.to.is_some_and(|t| date > t) {
            continue;
        }
        for part in std::fs::read_dir(&dir).map_err(|e| lake_error(&dir, e))? {
            let path = part.map_err(|e| lake_error(&dir, e))?.path();
            if path.extension().is_some_and(|e| e == "parquet") {
                let rows = parquet_rows(&path)?;
                files.push(MeasurementFile {
                    path,
                    event_date: date,
                    rows,
                });
            }
        }
    }
    files.sort_by(|a, b| (a.event_date, &a.path).cmp(&(b.event_date, &b.path)));
    Ok(files)
}

fn parquet_rows(path: &Path) -> Result<u64, LoadError> {
    let err = |reason: String| LoadError::Parquet {
        file: path.display().to_string(),
        reason,
    };
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut reader = ParquetReader::new(f);
    reader
        .num_rows()
        .map(|n| n as u64)
        .map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurement_columns_follow_the_table_order() {
        let sql = include_str!("../../sql/0004_measurements_and_alerts.sql");
        let body = &sql[sql.find("CREATE TABLE measurements (").unwrap_or(0)..];
        let body = &body[..body.find(") PARTITION BY").unwrap_or(body.len())];
        let in_table: Vec<&str> = body
            .lines()
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.starts_with("--") && !l.starts_with("PRIMARY") && !l.is_empty())
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let ours: Vec<&str> = MEASUREMENT_COLUMNS.iter().map(|c| c.target).collect();
        assert_eq!(in_table, ours);
    }

    #[test]
    fn a_bad_uuid_names_file_row_and_column() {
        let df = DataFrame::new(
            1,
            vec![polars::prelude::Column::new(
                "patient_id".into(),
                ["not-a-uuid"],
            )],
        )
        .expect("frame");
        let err = field(&df, "x.parquet", &col("patient_id", "patient_id", Uuid))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("x.parquet: row 0: patient_id \"not-a-uuid\" is not a UUID")
        );
    }
}
