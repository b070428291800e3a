//! Which lake files a load reads: `event_date=YYYY-MM-DD/` partitions of a layer.

use super::{LoadError, MeasurementSelection};
use crate::lake::layout;
use chrono::NaiveDate;
use polars::prelude::{ParquetReader, SerReader};
use std::path::{Path, PathBuf};

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
