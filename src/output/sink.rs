//! The seam between the simulator (or any record source) and the files it fills.

use super::OutputError;
use crate::simulate::Chunk;
use serde::Serialize;

/// A file written by a run, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WrittenFile {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// What a sink did: its files and how the records it received were routed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SinkReport {
    pub files: Vec<WrittenFile>,
    pub records_in: u64,
    pub records_out: u64,
    pub quarantined: u64,
}

pub trait MeasurementSink: Send {
    fn write_chunk(&mut self, chunk: &Chunk) -> Result<(), OutputError>;
    fn finish(self: Box<Self>) -> Result<SinkReport, OutputError>;
}
