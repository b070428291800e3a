//! Small column-oriented tables (reference data, ground truth) written both as CSV and as
//! Parquet from one definition, so the two can never disagree.

use super::csv::push_csv_field;
use super::parquet_groups::ParallelGroupWriter;
use super::uuid_column;
use super::{HashedFile, OutputError, WrittenFile};
use crate::domain::wire::push_float;
use polars::prelude::*;
use std::io::Write;
use std::path::Path;

pub enum Column {
    Str(&'static str, Vec<Option<String>>),
    F64(&'static str, Vec<Option<f64>>),
    I64(&'static str, Vec<Option<i64>>),
    Bool(&'static str, Vec<Option<bool>>),
    /// Days since 1970-01-01.
    Date(&'static str, Vec<Option<i32>>),
    /// UTC milliseconds since the epoch.
    Timestamp(&'static str, Vec<Option<i64>>),
}

impl Column {
    pub fn name(&self) -> &'static str {
        match self {
            Column::Str(n, _)
            | Column::F64(n, _)
            | Column::I64(n, _)
            | Column::Bool(n, _)
            | Column::Date(n, _)
            | Column::Timestamp(n, _) => n,
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::Str(_, v) => v.len(),
            Column::F64(_, v) => v.len(),
            Column::I64(_, v) => v.len(),
            Column::Bool(_, v) => v.len(),
            Column::Date(_, v) => v.len(),
            Column::Timestamp(_, v) => v.len(),
        }
    }

    fn write_cell(&self, row: usize, buf: &mut Vec<u8>) {
        match self {
            Column::Str(_, v) => {
                if let Some(s) = &v[row] {
                    push_csv_field(buf, s);
                }
            }
            Column::F64(_, v) => {
                if let Some(x) = v[row] {
                    push_float(buf, x);
                }
            }
            Column::I64(_, v) => {
                if let Some(x) = v[row] {
                    buf.extend_from_slice(itoa::Buffer::new().format(x).as_bytes());
                }
            }
            Column::Bool(_, v) => {
                if let Some(x) = v[row] {
                    buf.extend_from_slice(if x { b"true" } else { b"false" });
                }
            }
            Column::Date(_, v) => {
                if let Some(d) = v[row] {
                    let date =
                        crate::domain::UtcMillis(i64::from(d) * crate::domain::time::MS_PER_DAY)
                            .date();
                    buf.extend_from_slice(date.format("%Y-%m-%d").to_string().as_bytes());
                }
            }
            Column::Timestamp(_, v) => {
                if let Some(t) = v[row] {
                    crate::domain::UtcMillis(t).write_rfc3339(buf);
                }
            }
        }
    }

    fn to_polars(&self) -> polars::prelude::Column {
        let name: PlSmallStr = self.name().into();
        let series = match self {
            Column::Str(_, v) => Series::new(name, v),
            Column::F64(_, v) => Series::new(name, v),
            Column::I64(_, v) => Series::new(name, v),
            Column::Bool(_, v) => Series::new(name, v),
            Column::Date(_, v) => Series::new(name, v).into_date(),
            Column::Timestamp(_, v) => {
                Series::new(name, v).into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
            }
        };
        series.into()
    }
}

pub struct Table {
    pub name: &'static str,
    pub columns: Vec<Column>,
}

impl Table {
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    /// Writes `<dir>/<name>.csv` and `<dir>/<name>.parquet` under `root`.
    pub fn write(&self, root: &Path, dir: &str) -> Result<Vec<WrittenFile>, OutputError> {
        Ok(vec![
            self.write_csv(root, dir)?,
            self.write_parquet(root, dir)?,
        ])
    }

    fn write_csv(&self, root: &Path, dir: &str) -> Result<WrittenFile, OutputError> {
        let mut file = HashedFile::create(root, format!("{dir}/{}.csv", self.name))?;
        let mut buf = Vec::with_capacity(1 << 16);
        let header: Vec<&str> = self.columns.iter().map(Column::name).collect();
        buf.extend_from_slice(header.join(",").as_bytes());
        buf.push(b'\n');
        for row in 0..self.rows() {
            for (i, col) in self.columns.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                col.write_cell(row, &mut buf);
            }
            buf.push(b'\n');
            if buf.len() > 1 << 16 {
                file.write_all(&buf)
                    .map_err(|e| OutputError::io(&file.absolute, e))?;
                buf.clear();
            }
        }
        file.write_all(&buf)
            .map_err(|e| OutputError::io(&file.absolute, e))?;
        file.finish(self.rows() as u64)
    }

    fn write_parquet(&self, root: &Path, dir: &str) -> Result<WrittenFile, OutputError> {
        let columns: Vec<polars::prelude::Column> =
            self.columns.iter().map(Column::to_polars).collect();
        let relative = format!("{dir}/{}.parquet", self.name);
        let df = DataFrame::new_infer_height(columns).map_err(|e| OutputError::Parquet {
            path: root.join(&relative),
            message: e.to_string(),
        })?;
        write_parquet(root, relative, df)
    }
}

/// A data frame as one Parquet file (`parquet_groups::ParallelGroupWriter::lake`: zstd level 1,
/// full statistics), hashed for the manifest.
pub fn write_parquet(
    root: &Path,
    relative: String,
    df: DataFrame,
) -> Result<WrittenFile, OutputError> {
    let mut file = HashedFile::create(root, relative)?;
    let path = file.absolute.clone();
    // Ids read back from a lake file as bytes are written as the UUIDs they were.
    let uuids: Vec<&str> = uuid_column::UUID_COLUMNS
        .iter()
        .copied()
        .filter(|name| {
            df.column(name)
                .is_ok_and(|c| c.dtype() == &DataType::Binary)
        })
        .collect();
    let written = ParallelGroupWriter::lake_with_uuids(&mut file, df.schema(), &uuids).and_then(
        |mut writer| {
            writer.write(&df)?;
            writer.finish()
        },
    );
    written.map_err(|e| OutputError::Parquet {
        path,
        message: e.to_string(),
    })?;
    let rows = df.height() as u64;
    file.finish(rows)
}
