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

    pub fn delivery_key(&self) -> (UtcMillis, u32, u32, u8) {
        (self.emit_at, self.patient_index, self.seq, self.copy)
    }
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

    #[test]
    fn quote_first_number_turns_a_number_into_a_string() {
        let s = r#"{"vitals":{"heart_rate_bpm":88,"x":1}}"#;
        assert_eq!(
            quote_first_number(s, "\"heart_rate_bpm\":").as_deref(),
            Some(r#"{"vitals":{"heart_rate_bpm":"88","x":1}}"#)
        );
    }
}
