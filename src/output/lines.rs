//! Line-oriented measurement files (JSONL, CSV): records formatted on all cores, written in order.

use super::sink::{MeasurementSink, SinkReport};
use super::{HashedFile, OutputError};
use crate::simulate::{for_each_fetched, Chunk, SimRecord};
use rayon::prelude::*;
use std::io::Write;
use std::path::Path;

/// Records per formatting task: large enough to amortise the task, small enough to balance.
const FORMAT_BATCH: usize = 8_192;

/// A measurement file with one line per record, in delivery order (JSONL and CSV).
pub struct LineFileSink {
    file: HashedFile,
    rows: u64,
    line: fn(&SimRecord, &mut Vec<u8>),
    /// Formatting buffers kept from window to window: fresh multi-megabyte buffers cost a page
    /// fault per 4 KiB.
    buffers: Vec<Vec<u8>>,
}

impl LineFileSink {
    /// `header` is written first (CSV's column names; empty for JSONL).
    pub fn create(
        root: &Path,
        relative: &str,
        header: &[u8],
        line: fn(&SimRecord, &mut Vec<u8>),
    ) -> Result<Self, OutputError> {
        let mut file = HashedFile::create(root, relative)?;
        file.write_all(header)
            .map_err(|e| OutputError::io(&file.absolute, e))?;
        Ok(LineFileSink {
            file,
            rows: 0,
            line,
            buffers: Vec::new(),
        })
    }
}

/// Measurements as JSON Lines, the wire format (what `replay` reads).
pub fn jsonl_sink(root: &Path, relative: &str) -> Result<LineFileSink, OutputError> {
    LineFileSink::create(root, relative, b"", jsonl_line)
}

/// Formats records on all cores into `buffers` (one per batch, reused), keeping their order.
fn format_parallel(
    records: &[&SimRecord],
    line: fn(&SimRecord, &mut Vec<u8>),
    buffers: &mut Vec<Vec<u8>>,
) {
    let batches = records.len().div_ceil(FORMAT_BATCH);
    buffers.resize_with(batches, Vec::new);
    buffers.truncate(batches);
    buffers
        .par_iter_mut()
        .zip(records.par_chunks(FORMAT_BATCH))
        .for_each(|(buf, batch)| {
            buf.clear();
            for_each_fetched(batch, |_, r| line(r, buf));
        });
}

fn jsonl_line(r: &SimRecord, buf: &mut Vec<u8>) {
    r.write_wire(buf);
    buf.push(b'\n');
}

impl MeasurementSink for LineFileSink {
    fn write_chunk(&mut self, chunk: &Chunk) -> Result<(), OutputError> {
        format_parallel(&chunk.ordered(), self.line, &mut self.buffers);
        self.file.write_all_overlapped(&self.buffers)?;
        self.rows += chunk.len() as u64;
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
