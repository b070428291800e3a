//! Staging tables and binary COPY of chosen rows.

use super::columns::Col;
use super::LoadError;
use crate::db::copy::{self, Field};
use crate::db::query_error;
use std::io::Write;

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
pub(super) fn create_stage(
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
pub(super) fn copy_rows(
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
