//! The deterministic cohort and vital-sign simulator (SPEC §5). Pure: it produces records in
//! delivery order, chunk by chunk of event time, and never touches files or the clock; sinks
//! in `output`/`lake` write what it produces.

pub mod cohort;
pub mod config;
pub mod episodes;
pub mod patient;
pub mod record;
pub mod rng;

pub use cohort::Cohort;
pub use config::{EpisodeKind, FaultRates, SimulationConfig};
pub use episodes::Episode;
pub use record::{for_each_fetched, FaultKind, FaultRecord, SimRecord};

use crate::domain::time::{UtcMillis, MS_PER_HOUR};
use patient::PatientSim;
use rayon::prelude::*;

/// Records of one window of event time, and the faults injected in it. Records stay where
/// they were generated (moving ~200-byte records dominated the profile); `order` lists them in
/// delivery order.
#[derive(Debug, Default)]
pub struct Chunk {
    groups: Vec<Vec<SimRecord>>,
    order: Vec<(u32, u32)>,
    pub faults: Vec<FaultRecord>,
    /// Samples recorded before this instant have all been generated.
    pub window_end: UtcMillis,
}

impl Chunk {
    /// Records in delivery order.
    pub fn iter(&self) -> impl Iterator<Item = &SimRecord> + '_ {
        self.order
            .iter()
            .map(|&(g, i)| &self.groups[g as usize][i as usize])
    }

    /// Records in delivery order, as a slice-able list (for parallel formatting).
    pub fn ordered(&self) -> Vec<&SimRecord> {
        self.iter().collect()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Upper bound of records held in memory for one window: memory stays flat whatever `--days`.
const TARGET_RECORDS_PER_CHUNK: i64 = 250_000;

pub struct Simulator {
    patients: Vec<PatientSim>,
    /// Records generated already but delivered after the current window (late, resent).
    pending: Vec<SimRecord>,
    clock: i64,
    end: i64,
    chunk_ms: i64,
    interval_ms: i64,
    start: i64,
}

impl Simulator {
    pub fn new(cfg: &SimulationConfig, cohort: &Cohort) -> Self {
        let patients: Vec<PatientSim> = cohort
            .profiles
            .par_iter()
            .map(|p| PatientSim::new(cfg, p.clone(), episodes::generate(cfg, p)))
            .collect();
        let per_patient = (TARGET_RECORDS_PER_CHUNK / i64::from(cfg.patients).max(1)).max(1);
        let chunk_ms = (per_patient * cfg.interval_ms).clamp(cfg.interval_ms, MS_PER_HOUR);
        Simulator {
            patients,
            pending: Vec::new(),
            clock: cfg.start.0,
            end: cfg.end().0,
            chunk_ms,
            interval_ms: cfg.interval_ms,
            start: cfg.start.0,
        }
    }

    /// Shorter windows for `--live`, so that output follows the wall clock closely.
    pub fn set_window(&mut self, ms: i64) {
        self.chunk_ms = ms.max(1);
    }

    pub fn episodes(&self) -> impl Iterator<Item = &Episode> {
        self.patients.iter().flat_map(|p| p.episodes().iter())
    }

    /// Fraction of the event-time range generated so far.
    pub fn progress(&self) -> f64 {
        (self.clock - self.start) as f64 / (self.end - self.start).max(1) as f64
    }

    /// The next window, or `None` when the range is done and every pending record delivered.
    pub fn next_chunk(&mut self) -> Option<Chunk> {
        if self.clock >= self.end && self.pending.is_empty() {
            return None;
        }
        let window_end = (self.clock + self.chunk_ms).min(self.end);
        let last = window_end >= self.end;
        let mut chunk = Chunk {
            window_end: UtcMillis(window_end),
            ..Chunk::default()
        };
        if self.clock < self.end {
            // Room for a patient's samples of the window (and a few resent copies): growing
            // vectors of ~200-byte records by doubling was a tenth of the copying.
            let room = ((window_end - self.clock) / self.interval_ms.max(1)) as usize + 4;
            let generated: Vec<(Vec<SimRecord>, Vec<FaultRecord>)> = self
                .patients
                .par_iter_mut()
                .map(|p| {
                    let (mut recs, mut faults) = (Vec::with_capacity(room), Vec::new());
                    p.advance(window_end, &mut recs, &mut faults);
                    (recs, faults)
                })
                .collect();
            for (recs, faults) in generated {
                chunk.groups.push(recs);
                chunk.faults.extend(faults);
            }
        }
        self.clock = window_end;
        // A record is delivered in this window if it arrives before its end; on the last window
        // everything still in flight arrives. The few that arrive later wait in `pending`.
        let (due, later): (Vec<SimRecord>, Vec<SimRecord>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|r| last || r.emit_at.0 < window_end);
        self.pending = later;
        chunk.groups.push(due);
        let mut keyed = Vec::with_capacity(chunk.groups.iter().map(Vec::len).sum());
        for (g, group) in chunk.groups.iter().enumerate() {
            for (i, r) in group.iter().enumerate() {
                if last || r.emit_at.0 < window_end {
                    keyed.push((r.delivery_key(), (g as u32, i as u32)));
                } else {
                    self.pending.push(r.clone());
                }
            }
        }
        keyed.sort_unstable_by_key(|(k, _)| *k);
        chunk.order = keyed.into_iter().map(|(_, at)| at).collect();
        Some(chunk)
    }
}
