//! Validates simulated records the way ingestion does and routes them to Bronze or quarantine.

use super::bronze::{BronzePiece, BronzeWriter, Received, Rejected};
use crate::domain::measurement::{RejectReason, Rejection};
use crate::domain::wire;
use crate::output::sink::{MeasurementSink, SinkReport};
use crate::output::OutputError;
use crate::simulate::{for_each_fetched, Chunk, SimRecord};
use rayon::prelude::*;
use std::path::Path;
use uuid::Uuid;

type PatientSet = crate::id_hash::FastSet<Uuid>;

pub struct BronzeSink {
    writer: BronzeWriter,
    source: std::sync::Arc<str>,
    /// The reference patients' ids, by patient index (`SimRecord::patient_index`).
    patients: Vec<Uuid>,
    known_patients: PatientSet,
    offset: i64,
}

impl BronzeSink {
    /// A sink for the records of the reference patients `patients`, in patient-index order.
    pub fn new(root: &Path, run_id: &str, source: &str, patients: Vec<Uuid>) -> Self {
        BronzeSink {
            writer: BronzeWriter::new(root, run_id),
            source: std::sync::Arc::from(source),
            known_patients: patients.iter().copied().collect(),
            patients,
            offset: 0,
        }
    }

    /// Why a record cannot enter Bronze (empty when it can). Pure, so it runs on all cores.
    fn verdict(&self, r: &SimRecord) -> Option<Box<Rejected>> {
        let received_at = r.emit_at;
        if r.corruption.is_some() {
            // Broken on the wire: judge it from its bytes, exactly as a consumer would.
            let mut raw = Vec::new();
            r.write_wire(&mut raw);
            let reasons = match wire::parse_json(&raw) {
                Err(reasons) => reasons,
                Ok(m) => self.issues(&m, r.patient_index, received_at),
            };
            if !reasons.is_empty() {
                return Some(Box::new(Rejected {
                    received_at,
                    source: self.source.clone(),
                    source_offset: 0,
                    message_id: None,
                    patient_id: None,
                    device_id: None,
                    recorded_at: None,
                    reasons,
                    raw_payload: String::from_utf8_lossy(&raw).into_owned(),
                }));
            }
        }
        let m = &r.measurement;
        let reasons = self.issues(m, r.patient_index, received_at);
        (!reasons.is_empty()).then(|| {
            Box::new(Rejected {
                received_at,
                source: self.source.clone(),
                source_offset: 0,
                message_id: Some(m.message_id),
                patient_id: Some(m.patient_id),
                device_id: Some(m.device_id),
                recorded_at: Some(m.recorded_at),
                reasons,
                raw_payload: wire::to_json_string(m),
            })
        })
    }

    /// `m`'s admission issues; `patient_index` is the index of the patient whose sensor sent it.
    fn issues(
        &self,
        m: &crate::domain::Measurement,
        patient_index: u32,
        received_at: crate::domain::UtcMillis,
    ) -> Vec<Rejection> {
        // The id is nearly always the sending patient's own: one comparison, not a hash lookup.
        let own = self.patients.get(patient_index as usize);
        admission_issues(m, received_at, &|id| {
            own == Some(id) || self.known_patients.contains(id)
        })
    }
}

/// Why a parsed record cannot enter Bronze: its validation ranges, its time against the ingest
/// time, and whether its patient is known. One rule for every way into Bronze.
pub fn admission_issues(
    m: &crate::domain::Measurement,
    received_at: crate::domain::UtcMillis,
    known_patient: &dyn Fn(&Uuid) -> bool,
) -> Vec<Rejection> {
    let mut reasons = m.validate(received_at);
    if !known_patient(&m.patient_id) {
        reasons.push(Rejection::new(
            RejectReason::UnknownPatient,
            Some("patient_id"),
            format!(
                "patient_id {} is not in the reference patients",
                m.patient_id
            ),
        ));
    }
    reasons
}

impl MeasurementSink for BronzeSink {
    fn write_chunk(&mut self, chunk: &Chunk) -> Result<(), OutputError> {
        // Slices of the delivery are judged and laid out in columns on all cores, then appended
        // in order: each record is read once, by the core that judges it (the records of a
        // window are scattered over ~60 MB, and reading them twice missed the cache twice).
        const SLICE: usize = 16_384;
        let records = chunk.ordered();
        let first_offset = self.offset;
        let slices: Vec<(BronzePiece, Vec<Rejected>)> = records
            .par_chunks(SLICE)
            .enumerate()
            .map(|(s, slice)| {
                let (mut piece, mut rejected) = (BronzePiece::with_room(slice.len()), Vec::new());
                for_each_fetched(slice, |i, r| {
                    let source_offset = first_offset + (s * SLICE + i) as i64;
                    match self.verdict(r) {
                        None => piece.accept(&Received {
                            measurement: &r.measurement,
                            received_at: r.emit_at,
                            source: &self.source,
                            source_offset,
                        }),
                        Some(verdict) => rejected.push(Rejected {
                            source_offset,
                            ..*verdict
                        }),
                    }
                });
                (piece, rejected)
            })
            .collect();
        self.offset += records.len() as i64;
        for (piece, rejected) in slices {
            self.writer.append(&piece)?;
            for r in rejected {
                self.writer.reject(r);
            }
        }
        // Late records arrive at most hours after they were recorded: partitions two days
        // behind the window are complete.
        self.writer.close_before(chunk.window_end.epoch_day() - 1)
    }

    fn finish(self: Box<Self>) -> Result<SinkReport, OutputError> {
        let records_in = self.offset as u64;
        let (files, bronze, quarantined) = self.writer.finish()?;
        Ok(SinkReport {
            files,
            records_in,
            records_out: bronze,
            quarantined,
        })
    }
}
