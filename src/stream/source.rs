//! What `replay` reads: wire JSON Lines (as `simulate` writes them, or as sensors sent them) or
//! Bronze Parquet, in the order they were received, as records ready to send.

use super::legacy;
use super::produce::OutRecord;
use super::StreamError;
use crate::domain::time::UtcMillis;
use crate::domain::wire;
use crate::etl::frame::Columns;
use crate::etl::rows::MeasurementRows;
use polars::prelude::*;
use serde::Deserialize;
use std::borrow::Cow;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The shape of the records in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum InputFormat {
    /// Schema-1 wire JSON (SPEC §2.1), or Bronze Parquet.
    #[default]
    V1,
    /// The earlier platform's JSON shapes, mapped to schema 1 on the way.
    Legacy,
}

/// Whether to go on after a record (the caller may be interrupted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// The input a path names.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Jsonl(PathBuf),
    /// Bronze Parquet files, replayed in the order they were received.
    Parquet(Vec<PathBuf>),
}

impl Input {
    /// A `.jsonl` file; a `.parquet` file; a folder of Parquet files (searched recursively,
    /// e.g. `bronze/measurements`); or a lake root, whose `landing/measurements.jsonl` or
    /// else `bronze/measurements` is used.
    pub fn resolve(path: &Path) -> Result<Input, StreamError> {
        let err = |message: &str| StreamError::Input {
            input: path.display().to_string(),
            message: message.to_string(),
        };
        if path.is_file() {
            return match path.extension().and_then(|e| e.to_str()) {
                Some("parquet") => Ok(Input::Parquet(vec![path.to_path_buf()])),
                _ => Ok(Input::Jsonl(path.to_path_buf())),
            };
        }
        if !path.is_dir() {
            return Err(err("no such file or folder"));
        }
        let landing = path
            .join(crate::lake::layout::LANDING_DIR)
            .join("measurements.jsonl");
        if landing.is_file() {
            return Ok(Input::Jsonl(landing));
        }
        let bronze = path.join(crate::lake::layout::BRONZE_MEASUREMENTS);
        let dir = if bronze.is_dir() {
            bronze
        } else {
            path.to_path_buf()
        };
        let files = parquet_files_under(&dir)?;
        if files.is_empty() {
            return Err(err(
                "holds no landing/measurements.jsonl and no Parquet files",
            ));
        }
        Ok(Input::Parquet(files))
    }

    pub fn describe(&self) -> String {
        match self {
            Input::Jsonl(p) => p.display().to_string(),
            Input::Parquet(files) => format!("{} Parquet file(s)", files.len()),
        }
    }

    /// A size for the progress bar: bytes of JSON Lines, or rows of Parquet (known once read).
    pub fn size_hint(&self) -> u64 {
        match self {
            Input::Jsonl(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            Input::Parquet(_) => 0,
        }
    }
}

fn parquet_files_under(dir: &Path) -> Result<Vec<PathBuf>, StreamError> {
    crate::etl::frame::parquet_files_under(dir).map_err(|e| StreamError::Input {
        input: dir.display().to_string(),
        message: e.to_string(),
    })
}

/// The two fields a producer needs before sending: the key and the record timestamp.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    patient_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    recorded_at: Option<Cow<'a, str>>,
}

/// Key and timestamp of a wire record; a record too broken to tell has neither (it is still
/// sent: quarantining it is the consumer's job).
pub fn peek(payload: &[u8]) -> (Option<String>, Option<i64>) {
    match serde_json::from_slice::<Peek<'_>>(payload) {
        Ok(p) => (
            p.patient_id.map(|s| s.into_owned()),
            p.recorded_at
                .and_then(|t| UtcMillis::parse_rfc3339(&t).ok())
                .map(|t| t.0),
        ),
        Err(_) => (None, None),
    }
}

/// Calls `f` with every record of `input`, in order. `progress` receives bytes (JSONL) or rows
/// (Parquet) as they are consumed.
pub fn for_each_record(
    input: &Input,
    format: InputFormat,
    progress: &mut dyn FnMut(u64),
    f: &mut dyn FnMut(OutRecord) -> Result<Flow, StreamError>,
) -> Result<(), StreamError> {
    match input {
        Input::Jsonl(path) => read_jsonl(path, format, progress, f),
        Input::Parquet(files) => {
            if format == InputFormat::Legacy {
                return Err(StreamError::Input {
                    input: input.describe(),
                    message: "--input-format legacy reads JSON Lines; Bronze is schema 1 already"
                        .into(),
                });
            }
            read_bronze(files, progress, f)
        }
    }
}

fn read_jsonl(
    path: &Path,
    format: InputFormat,
    progress: &mut dyn FnMut(u64),
    f: &mut dyn FnMut(OutRecord) -> Result<Flow, StreamError>,
) -> Result<(), StreamError> {
    let io_err = |e: std::io::Error| StreamError::Input {
        input: path.display().to_string(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io_err)?;
        if n == 0 {
            return Ok(());
        }
        progress(n as u64);
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let payload = match format {
            InputFormat::V1 => line.clone(),
            InputFormat::Legacy => legacy::to_schema_v1(&line),
        };
        let (key, timestamp_ms) = peek(&payload);
        let record = OutRecord {
            key,
            timestamp_ms,
            payload,
        };
        if f(record)? == Flow::Stop {
            return Ok(());
        }
    }
}

/// Bronze rows back to wire JSON, ordered by arrival (`received_at`, then `source_offset`).
fn read_bronze(
    files: &[PathBuf],
    progress: &mut dyn FnMut(u64),
    f: &mut dyn FnMut(OutRecord) -> Result<Flow, StreamError>,
) -> Result<(), StreamError> {
    let input_err = |message: String| StreamError::Input {
        input: format!("{} Bronze file(s)", files.len()),
        message,
    };
    let Some(df) = crate::etl::frame::read_files(files).map_err(|e| input_err(e.to_string()))?
    else {
        return Ok(());
    };
    let df = df
        .lazy()
        .sort(
            ["received_at", "source_offset"],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .collect()
        .map_err(|e| input_err(e.to_string()))?;
    let columns = Columns::new(&df, "Bronze");
    let rows = MeasurementRows::with_message_ids(&columns).map_err(|e| input_err(e.to_string()))?;
    let mut repeats = crate::etl::rows::Repeats::default();
    let mut payload = Vec::with_capacity(512);
    for i in 0..df.height() {
        let patient = rows
            .patient
            .get(i)
            .and_then(|s| uuid::Uuid::try_parse(s).ok())
            .unwrap_or_default();
        let m = rows.measurement(i, patient, &mut repeats);
        payload.clear();
        wire::write_json(&m, &mut payload);
        progress(1);
        let record = OutRecord {
            key: Some(patient.to_string()),
            timestamp_ms: Some(m.recorded_at.0),
            payload: payload.clone(),
        };
        if f(record)? == Flow::Stop {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_reads_key_and_time_and_survives_garbage() {
        let (k, t) = peek(br#"{"patient_id":"p-1","recorded_at":"2026-03-14T08:30:05.000Z","vitals":{"spo2_pct":95}}"#);
        assert_eq!(k.as_deref(), Some("p-1"));
        assert_eq!(
            t,
            Some(
                UtcMillis::parse_rfc3339("2026-03-14T08:30:05Z")
                    .expect("t")
                    .0
            )
        );
        assert_eq!(peek(b"{\"patient_id\":12"), (None, None));
        assert_eq!(
            peek(br#"{"patient_id":"p","recorded_at":"yesterday"}"#).1,
            None
        );
    }
}
