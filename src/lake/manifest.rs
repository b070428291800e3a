//! Run manifests (`_runs/<run_id>.json`): what a run read and wrote, with row counts and
//! checksums. Deterministic content only (no wall-clock time), so the same run gives the same
//! bytes; durations are printed in the summary instead.

use crate::output::WrittenFile;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub run_id: String,
    pub command: String,
    pub kidjamo_version: String,
    pub thresholds_version: u32,
    pub arguments: BTreeMap<String, serde_json::Value>,
    pub counts: BTreeMap<String, u64>,
    pub outputs: Vec<WrittenFile>,
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}
