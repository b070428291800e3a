//! What the simulator emits: samples in delivery order, how a deliberately broken one is
//! broken on the wire, and the ground-truth list of injected faults.

use crate::domain::time::UtcMillis;
use crate::domain::wire;
use crate::domain::Measurement;
use uuid::Uuid;

/// How a malformed record differs from its measurement on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// The JSON text is cut after this percentage of its bytes.
    TruncatedJson { keep_pct: u8 },
    /// `heart_rate_bpm` (or `battery_pct` when there is no heart rate) is sent as a string.
    WrongType,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimRecord {
    /// When the sample reaches the platform (the ingest time of a direct Bronze write).
    pub emit_at: UtcMillis,
    pub patient_index: u32,
    /// Per-patient sample number, so that delivery order has a total, stable key.
    pub seq: u32,
    /// 0 for the original, 1 for a resent duplicate.
    pub copy: u8,
    pub measurement: Measurement,
    pub corruption: Option<Corruption>,
}

impl SimRecord {
    /// The record as it travels: JSON, broken when the fault injection says so.
    pub fn write_wire(&self, out: &mut Vec<u8>) {
        let start = out.len();
        wire::write_json(&self.measurement, out);
        match self.corruption {
            None => {}
            Some(Corruption::TruncatedJson { keep_pct }) => {
                let len = out.len() - start;
                out.truncate(start + len * usize::from(keep_pct) / 100);
            }
            Some(Corruption::WrongType) => {
                let text = String::from_utf8_lossy(&out[start..]).into_owned();
                let broken = quote_first_number(&text, "\"heart_rate_bpm\":")
                    .or_else(|| quote_first_number(&text, "\"battery_pct\":"))
                    .unwrap_or_else(|| {
                        text.replacen("\"schema_version\":1", "\"schema_version\":\"1\"", 1)
                    });
                out.truncate(start);
                out.extend_from_slice(broken.as_bytes());
            }
        }
    }

    /// The record's place in delivery order: by arrival, then patient, then sample number —
    /// a total order, so the output is the same whatever the thread count.
    ///
    /// Packed into two integers, compared in two steps rather than four fields. `copy` needs
    /// no place: a resent copy arrives strictly after its original (`resend` is at least a
    /// second later), so arrival, patient and sample number never tie.
    pub fn delivery_key(&self) -> DeliveryKey {
        // Flipping the sign bit maps i64 onto u64 in the same order.
        let arrival = (self.emit_at.0 as u64) ^ (1 << 63);
        (
            arrival,
            (u64::from(self.patient_index) << 32) | u64::from(self.seq),
        )
    }
}

/// `SimRecord::delivery_key`: arrival time, then patient index and sample number.
pub type DeliveryKey = (u64, u64);

/// Records per block read ahead by `for_each_fetched`: ~7 KB, well within a core's L1 cache.
const FETCH_BLOCK: usize = 32;

/// Calls `each` with every record of `records` and its index, in order, a block at a time,
/// after first reading a few fields of every record of the block.
///
/// A window's records lie in per-patient vectors and are read in delivery order, which jumps
/// from patient to patient: each record is a cache miss, and the work on it stalls until its
/// line arrives (perf: most of the Bronze sink's own time on one load). Read together in a
/// short loop, the block's loads do not depend on each other and are in flight at once.
pub fn for_each_fetched<'a>(records: &[&'a SimRecord], mut each: impl FnMut(usize, &'a SimRecord)) {
    for (b, block) in records.chunks(FETCH_BLOCK).enumerate() {
        std::hint::black_box(touch(block));
        for (i, r) in block.iter().enumerate() {
            each(b * FETCH_BLOCK + i, r);
        }
    }
}

/// Reads fields spread over each record (Rust orders a struct's fields as it likes, so several
/// are read to reach each cache line it spans), combined so the reads are not optimised away.
fn touch(records: &[&SimRecord]) -> u64 {
    records.iter().fold(0u64, |acc, r| {
        let m = &r.measurement;
        acc ^ r.emit_at.0 as u64
            ^ m.recorded_at.0 as u64
            ^ m.message_id.as_u64_pair().0
            ^ m.patient_id.as_u64_pair().1
            ^ m.device_id.as_u64_pair().0
            ^ m.vitals.hydration_pct.map_or(1, f64::to_bits)
            ^ m.vitals.spo2_pct.map_or(1, f64::to_bits)
            ^ m.vitals.pain_scale.map_or(1, |v| v as u64)
            ^ m.device.battery_pct.map_or(1, |v| v as u64)
            ^ m.device
                .firmware_version
                .as_ref()
                .map_or(1, |f| f.len() as u64)
            ^ u64::from(r.corruption.is_some())
    })
}

/// `"key":88` → `"key":"88"`.
fn quote_first_number(text: &str, key: &str) -> Option<String> {
    let at = text.find(key)? + key.len();
    let len = text[at..].find([',', '}'])?;
    Some(format!(
        "{}\"{}\"{}",
        &text[..at],
        &text[at..at + len],
        &text[at + len..]
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    MalformedJson,
    WrongType,
    OutOfRange,
    UnknownPatient,
    Duplicate,
    Late,
    Motion,
    SensorDrop,
    Flatline,
    ClockSkew,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::MalformedJson => "malformed_json",
            FaultKind::WrongType => "wrong_type",
            FaultKind::OutOfRange => "out_of_range",
            FaultKind::UnknownPatient => "unknown_patient",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Late => "late",
            FaultKind::Motion => "motion_artefact",
            FaultKind::SensorDrop => "sensor_drop",
            FaultKind::Flatline => "flatline",
            FaultKind::ClockSkew => "clock_skew",
        }
    }

    /// Faults that make records invalid (they end in quarantine, not Bronze).
    pub fn breaks_records(self) -> bool {
        matches!(
            self,
            FaultKind::MalformedJson
                | FaultKind::WrongType
                | FaultKind::OutOfRange
                | FaultKind::UnknownPatient
        )
    }
}

/// One injected fault: a single record (`message_id` set) or a span of a device's time.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRecord {
    pub kind: FaultKind,
    pub patient_id: Uuid,
    pub device_id: Uuid,
    pub message_id: Option<Uuid>,
    pub start: UtcMillis,
    pub end: UtcMillis,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u32) -> SimRecord {
        SimRecord {
            emit_at: UtcMillis(i64::from(seq) * 1_000),
            patient_index: seq % 7,
            seq,
            copy: 0,
            measurement: Measurement {
                schema_version: 1,
                message_id: Uuid::from_u128(u128::from(seq)),
                patient_id: Uuid::from_u128(2),
                device_id: Uuid::from_u128(3),
                recorded_at: UtcMillis(i64::from(seq) * 1_000),
                vitals: Default::default(),
                device: Default::default(),
                quality_flag: crate::domain::QualityFlag::Ok,
            },
            corruption: None,
        }
    }

    #[test]
    fn for_each_fetched_visits_every_record_once_in_order_with_its_index() {
        // Two whole blocks and a short one, and an empty list.
        let records: Vec<SimRecord> = (0..2 * FETCH_BLOCK as u32 + 5).map(record).collect();
        let refs: Vec<&SimRecord> = records.iter().collect();
        let mut seen = Vec::new();
        for_each_fetched(&refs, |i, r| seen.push((i, r.seq)));
        let expected: Vec<(usize, u32)> = (0..records.len()).map(|i| (i, i as u32)).collect();
        assert_eq!(seen, expected);
        let mut calls = 0;
        for_each_fetched(&[], |_, _| calls += 1);
        assert_eq!(calls, 0);
    }

    /// The packed key orders records as (arrival, patient, sample, copy) does, across the sign
    /// of the time and the full range of indexes.
    #[test]
    fn delivery_key_orders_by_arrival_patient_and_sample() {
        let mut records = Vec::new();
        for emit in [-5_000i64, -1, 0, 1, 1_772_323_200_000, i64::MAX / 2] {
            for patient in [0u32, 1, 7, u32::MAX] {
                for seq in [0u32, 3, u32::MAX] {
                    let mut r = record(seq);
                    r.emit_at = UtcMillis(emit);
                    r.patient_index = patient;
                    records.push(r);
                }
            }
        }
        let mut by_tuple: Vec<&SimRecord> = records.iter().collect();
        by_tuple.sort_by_key(|r| (r.emit_at, r.patient_index, r.seq, r.copy));
        let mut by_key: Vec<&SimRecord> = records.iter().rev().collect();
        by_key.sort_unstable_by_key(|r| r.delivery_key());
        assert!(by_tuple == by_key);
    }

    /// What lets the key leave `copy` out: a resent copy never arrives with its original.
    #[test]
    fn a_resent_copy_arrives_after_its_original() {
        use crate::simulate::{cohort, SimulationConfig, Simulator};
        let mut cfg = SimulationConfig::new(3, 20, UtcMillis(1_772_323_200_000), 1);
        cfg.faults.duplicate = 0.2;
        let cohort = cohort::generate(&cfg);
        let mut sim = Simulator::new(&cfg, &cohort);
        let mut originals = std::collections::HashMap::new();
        let mut copies = Vec::new();
        while let Some(chunk) = sim.next_chunk() {
            for r in chunk.iter() {
                match r.copy {
                    0 => {
                        originals.insert((r.patient_index, r.seq), r.emit_at);
                    }
                    _ => copies.push(((r.patient_index, r.seq), r.emit_at)),
                }
            }
        }
        assert!(copies.len() > 100, "{} copies", copies.len());
        for (sample, resent) in copies {
            assert!(resent > originals[&sample], "{sample:?}");
        }
    }

    #[test]
    fn quote_first_number_turns_a_number_into_a_string() {
        let s = r#"{"vitals":{"heart_rate_bpm":88,"x":1}}"#;
        assert_eq!(
            quote_first_number(s, "\"heart_rate_bpm\":").as_deref(),
            Some(r#"{"vitals":{"heart_rate_bpm":"88","x":1}}"#)
        );
    }
}
