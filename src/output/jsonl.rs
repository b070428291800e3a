//! Measurements as JSON Lines, the wire format, in delivery order (what `replay` reads).

use super::sink::{MeasurementSink, SinkReport};
use super::{HashedFile, OutputError};
use crate::simulate::{Chunk, SimRecord};
use rayon::prelude::*;
use std::io::Write;
use std::path::Path;

/// Records per formatting task: large enough to amortise the task, small enough to balance.
pub(crate) const FORMAT_BATCH: usize = 8_192;

pub struct JsonlSink {
    file: HashedFile,
    rows: u64,
}

impl JsonlSink {
    pub fn create(root: &Path, relative: &str) -> Result<Self, OutputError> {
        Ok(JsonlSink {
            file: HashedFile::create(root, relative)?,
            rows: 0,
        })
    }
}

/// Formats records on all cores, keeping their order.
pub(crate) fn format_parallel(
    records: &[SimRecord],
    line: fn(&SimRecord, &mut Vec<u8>),
) -> Vec<Vec<u8>> {
    records
        .par_chunks(FORMAT_BATCH)
        .map(|batch| {
            let mut buf = Vec::with_capacity(batch.len() * 440);
            for r in batch {
                line(r, &mut buf);
            }
            buf
        })
        .collect()
}

fn jsonl_line(r: &SimRecord, buf: &mut Vec<u8>) {
    r.write_wire(buf);
    buf.push(b'\n');
}

impl MeasurementSink for JsonlSink {
    fn write_chunk(&mut self, chunk: &Chunk) -> Result<(), OutputError> {
        for buf in format_parallel(&chunk.records, jsonl_line) {
            self.file
                .write_all(&buf)
                .map_err(|e| OutputError::io(&self.file.absolute, e))?;
        }
        self.rows += chunk.records.len() as u64;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<SinkReport, OutputError> {
        let rows = self.rows;
        let file = self.file.finish(rows)?;
        Ok(SinkReport {
            files: vec![file],
            records_in: rows,
            records_out: rows,
            quarantined: 0,
        })
    }
}
