//! `kidjamo db load`: the lake's reference tables, measurements and alerts into PostgreSQL.
//!
//! Everything travels as binary COPY encoded by kidjamo from the Parquet columns. Reference
//! tables and alerts go through a temporary staging table and one `INSERT … ON CONFLICT`
//! (a rerun inserts nothing new) in one transaction. Measurements go one file per transaction
//! over two connections: a week without rows yet is bulk-loaded into a standalone table attached
//! at the end, a week with rows goes through staging and `ON CONFLICT DO NOTHING`.
//!
//! Modules: `columns` (Parquet → COPY fields), `stage` (staging tables and COPY), `files`
//! (which lake files), `reference`, `measurements`, `alerts`.

mod alerts;
mod columns;
mod files;
mod measurements;
mod reference;
mod stage;

pub use alerts::ALERT_COLUMNS;
pub use columns::{fields, Col, Kind};
pub use files::{measurement_files, partition_files, MeasurementFile};
pub use measurements::{
    known_patients, load_measurement_file, BulkWeeks, KnownPatients, MEASUREMENT_COLUMNS,
};
pub use reference::{TableSpec, REFERENCE_TABLES};

use measurements::ensure_partition;
use reference::load_reference;

use super::{query_error, DbError};
use crate::lake::layout;
use crate::progress::Progress;
use chrono::NaiveDate;
use postgres::Client;
use std::path::Path;

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
    // Held until this connection closes, after the last bulk week is attached.
    crate::db::lock_bulk_weeks(&mut client)?;
    crate::db::leftover_weeks::sweep_locked(&mut client, None, true)?;
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
        .map(|f| crate::db::partitions::iso_week_start(f.event_date))
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
        report
            .tables
            .push(alerts::load_alert_files(&mut client, &alert_files)?);
    }
    Ok(report)
}

fn poisoned() -> LoadError {
    LoadError::Lake {
        path: "load".into(),
        reason: "a load worker panicked".into(),
    }
}
