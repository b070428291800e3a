//! Typed access to the columns of a lake table, with errors that name the file set and column.

use super::EtlError;
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// Reads and stacks every Parquet file of a partition (files in name order, so the result is
/// the same on every run), each column in one chunk. `None` when there is none.
pub fn read_files(files: &[PathBuf]) -> Result<Option<DataFrame>, EtlError> {
    let mut stacked = read_files_in_chunks(files)?;
    if let Some(df) = &mut stacked {
        df.rechunk_mut_par();
    }
    Ok(stacked)
}

/// `read_files` with each column left in chunks (one per file and row group): joining them is
/// a copy of the whole partition, which a caller that reads some columns only in order can
/// spare (`etl::silver::build` joins just the columns it reads row by row).
pub fn read_files_in_chunks(files: &[PathBuf]) -> Result<Option<DataFrame>, EtlError> {
    let mut stacked: Option<DataFrame> = None;
    for path in files {
        let file = std::fs::File::open(path).map_err(|source| EtlError::Io {
            path: path.clone(),
            source,
        })?;
        let df = ParquetReader::new(file)
            .finish()
            .map_err(|e| EtlError::input(path, e))?;
        match &mut stacked {
            None => stacked = Some(df),
            Some(all) => {
                all.vstack_mut_owned(df).map_err(|e| {
                    EtlError::input(
                        path,
                        format!("its columns differ from the first file's: {e}"),
                    )
                })?;
            }
        }
    }
    Ok(stacked)
}

/// The data files under a folder and its partition folders, recursively (hidden and `_`
/// folders skipped, as in `partition_files`), sorted by path. A missing folder has none.
pub fn parquet_files_under(dir: &Path) -> Result<Vec<PathBuf>, EtlError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        out.extend(partition_files(&d)?);
        if !d.is_dir() {
            continue;
        }
        let entries = std::fs::read_dir(&d).map_err(|source| EtlError::Io {
            path: d.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !name.starts_with('.') && !name.starts_with('_') {
                stack.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The data files of a partition folder: `*.parquet`, without hidden or `_` files (the
/// convention Spark, DuckDB and pyarrow follow), sorted by name.
pub fn partition_files(dir: &Path) -> Result<Vec<PathBuf>, EtlError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|source| EtlError::Io {
        path: dir.to_path_buf(),
        source,
    })? {
        let entry = entry.map_err(|source| EtlError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".parquet") && !name.starts_with('.') && !name.starts_with('_') {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// A named column of the expected type.
pub struct Columns<'a> {
    pub df: &'a DataFrame,
    pub what: String,
}

impl<'a> Columns<'a> {
    pub fn new(df: &'a DataFrame, what: impl Into<String>) -> Self {
        Columns {
            df,
            what: what.into(),
        }
    }

    fn column(&self, name: &str) -> Result<&'a Column, EtlError> {
        self.df.column(name).map_err(|_| EtlError::Schema {
            input: self.what.clone(),
            message: format!("no column {name}"),
        })
    }

    fn wrong(&self, name: &str, expected: &str) -> EtlError {
        let found = self
            .df
            .column(name)
            .map(|c| c.dtype().to_string())
            .unwrap_or_default();
        EtlError::Schema {
            input: self.what.clone(),
            message: format!("column {name} is {found}, expected {expected}"),
        }
    }

    pub fn str(&self, name: &str) -> Result<&'a StringChunked, EtlError> {
        self.column(name)?
            .str()
            .map_err(|_| self.wrong(name, "a string"))
    }

    /// A column of ids, stored as 16 bytes or as text (`rows::IdRows`).
    pub(crate) fn ids(&self, name: &str) -> Result<super::rows::IdRows<'a>, EtlError> {
        let column = self.column(name)?;
        match column.dtype() {
            DataType::Binary => Ok(super::rows::IdRows::bytes(
                column.binary().map_err(|_| self.wrong(name, "ids"))?,
            )),
            _ => Ok(super::rows::IdRows::text(
                column
                    .str()
                    .map_err(|_| self.wrong(name, "ids (16 bytes or text)"))?,
            )),
        }
    }

    pub fn f64(&self, name: &str) -> Result<&'a Float64Chunked, EtlError> {
        self.column(name)?
            .f64()
            .map_err(|_| self.wrong(name, "a float64"))
    }

    pub fn i16(&self, name: &str) -> Result<&'a Int16Chunked, EtlError> {
        self.column(name)?
            .i16()
            .map_err(|_| self.wrong(name, "an int16"))
    }

    pub fn i64(&self, name: &str) -> Result<&'a Int64Chunked, EtlError> {
        self.column(name)?
            .i64()
            .map_err(|_| self.wrong(name, "an int64"))
    }

    pub fn bool(&self, name: &str) -> Result<&'a BooleanChunked, EtlError> {
        self.column(name)?
            .bool()
            .map_err(|_| self.wrong(name, "a boolean"))
    }

    /// A UTC timestamp column in milliseconds.
    pub fn millis(&self, name: &str) -> Result<&'a Int64Chunked, EtlError> {
        let c = self.column(name)?;
        match c.dtype() {
            DataType::Datetime(TimeUnit::Milliseconds, _) => Ok(c
                .datetime()
                .map_err(|_| self.wrong(name, "a timestamp"))?
                .physical()),
            _ => Err(self.wrong(name, "a millisecond timestamp")),
        }
    }

    /// A date column as days since 1970-01-01.
    pub fn days(&self, name: &str) -> Result<&'a Int32Chunked, EtlError> {
        let c = self.column(name)?;
        match c.dtype() {
            DataType::Date => Ok(c.date().map_err(|_| self.wrong(name, "a date"))?.physical()),
            _ => Err(self.wrong(name, "a date")),
        }
    }
}

pub fn time_column(name: &str, ms: Vec<i64>) -> Column {
    Int64Chunked::from_vec(name.into(), ms)
        .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
        .into_series()
        .into()
}

pub fn opt_time_column(name: &str, ms: Vec<Option<i64>>) -> Column {
    Int64Chunked::from_iter_options(name.into(), ms.into_iter())
        .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
        .into_series()
        .into()
}

pub fn date_column(name: &str, days: Vec<i32>) -> Column {
    Int32Chunked::from_vec(name.into(), days)
        .into_date()
        .into_series()
        .into()
}
