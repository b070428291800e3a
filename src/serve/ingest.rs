//! What a request's records become: each is parsed and validated with the same domain code as
//! `kidjamo stream` (schema-1 parsing, then the Bronze admission rule), and turned into the
//! Kafka record `replay` would send for it, or into a quarantine record with its reasons.
//! Pure: the caller produces the records and gives the receive time.

use super::auth::DeviceCredential;
use crate::domain::measurement::Rejection;
use crate::domain::time::UtcMillis;
use crate::domain::wire;
use crate::lake::bronze_sink::admission_issues;
use crate::stream::legacy;
use crate::stream::produce::OutRecord;
use crate::stream::source::peek;
use uuid::Uuid;

/// A record that passed validation, ready for the measurements topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Valid {
    pub index: usize,
    pub message_id: Uuid,
    pub record: OutRecord,
}

/// A record that failed, with one reason per failed rule, ready for the quarantine topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub index: usize,
    pub reasons: Vec<Rejection>,
    pub quarantine: OutRecord,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A record names a device or patient other than the authenticated device's: nothing of
    /// the request is taken.
    Forbidden,
    Judged {
        valid: Vec<Valid>,
        invalid: Vec<Invalid>,
    },
}

/// Judges every record of a request from `device`, received at `received_at`.
pub fn judge_request(
    records: &[&[u8]],
    legacy_shapes: bool,
    device: &DeviceCredential,
    received_at: UtcMillis,
) -> Verdict {
    let mut valid = Vec::with_capacity(records.len());
    let mut invalid = Vec::new();
    for (index, raw) in records.iter().enumerate() {
        let payload = if legacy_shapes {
            legacy::to_schema_v1(raw)
        } else {
            raw.to_vec()
        };
        let reasons = match wire::parse_json(&payload) {
            Ok(m) => {
                if m.device_id != device.device_id || m.patient_id != device.patient_id {
                    return Verdict::Forbidden;
                }
                let reasons = admission_issues(&m, received_at, &|id| *id == device.patient_id);
                if reasons.is_empty() {
                    let (key, timestamp_ms) = peek(&payload);
                    valid.push(Valid {
                        index,
                        message_id: m.message_id,
                        record: OutRecord {
                            key,
                            timestamp_ms,
                            payload,
                        },
                    });
                    continue;
                }
                reasons
            }
            Err(reasons) => reasons,
        };
        let quarantine = quarantine_record(index, &reasons, raw, device, received_at);
        invalid.push(Invalid {
            index,
            reasons,
            quarantine,
        });
    }
    Verdict::Judged { valid, invalid }
}

/// The quarantine topic's record: the raw payload as sent (before any legacy mapping), where
/// it came from, and why it was refused. Keyed by the device's patient, like its measurements.
fn quarantine_record(
    index: usize,
    reasons: &[Rejection],
    raw: &[u8],
    device: &DeviceCredential,
    received_at: UtcMillis,
) -> OutRecord {
    let reasons: Vec<serde_json::Value> = reasons.iter().map(reason_json).collect();
    let value = serde_json::json!({
        "received_at": received_at.to_rfc3339(),
        "source": "http",
        "device_id": device.device_id.to_string(),
        "index": index,
        "reasons": reasons,
        "raw_payload": String::from_utf8_lossy(raw),
    });
    OutRecord {
        key: Some(device.patient_id.to_string()),
        timestamp_ms: Some(received_at.0),
        payload: serde_json::to_vec(&value).unwrap_or_default(),
    }
}

/// A reason as the API shows it: `{code, field, message}`.
pub fn reason_json(r: &Rejection) -> serde_json::Value {
    serde_json::json!({
        "code": r.reason.code(),
        "field": r.field,
        "message": r.detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::auth::issue;

    const P: &str = "2f9a1c0e-7d33-4b7e-8f0e-6c1d2b3a4e5f";
    const D: &str = "d4c2b1a0-1111-4222-8333-944455556666";

    fn device() -> DeviceCredential {
        issue(
            Uuid::try_parse(D).expect("uuid"),
            Uuid::try_parse(P).expect("uuid"),
            [3; 32],
        )
        .credential
    }

    fn record(patient: &str, spo2: f64) -> String {
        format!(
            r#"{{"schema_version":1,"message_id":"5b0c3f6e-4d7b-4e61-9a4e-0f4a1f3c2d10","patient_id":"{patient}","device_id":"{D}","recorded_at":"2026-03-14T08:30:05.000Z","vitals":{{"spo2_pct":{spo2}}},"device":{{}},"quality_flag":"ok"}}"#
        )
    }

    fn received() -> UtcMillis {
        UtcMillis::parse_rfc3339("2026-03-14T08:30:06Z").expect("time")
    }

    #[test]
    fn valid_records_keep_their_bytes_and_invalid_ones_say_why() {
        let good = record(P, 96.5);
        let bad = record(P, 130.0);
        let records: Vec<&[u8]> = vec![good.as_bytes(), b"{oops", bad.as_bytes()];
        let Verdict::Judged { valid, invalid } =
            judge_request(&records, false, &device(), received())
        else {
            panic!("not forbidden");
        };
        assert_eq!(valid.len(), 1);
        assert_eq!(valid[0].index, 0);
        assert_eq!(valid[0].record.payload, good.as_bytes());
        assert_eq!(valid[0].record.key.as_deref(), Some(P));
        let indexes: Vec<usize> = invalid.iter().map(|i| i.index).collect();
        assert_eq!(indexes, vec![1, 2]);
        assert_eq!(invalid[0].reasons[0].reason.code(), "malformed_json");
        assert_eq!(
            invalid[1].reasons[0].qualified_code(),
            "out_of_range:spo2_pct"
        );
        let q: serde_json::Value =
            serde_json::from_slice(&invalid[1].quarantine.payload).expect("json");
        assert_eq!(q["raw_payload"], bad.as_str());
        assert_eq!(q["index"], 2);
    }

    #[test]
    fn a_record_for_another_patient_forbids_the_request() {
        let good = record(P, 96.5);
        let other = record("0f9a1c0e-7d33-4b7e-8f0e-6c1d2b3a4e5f", 96.5);
        let records: Vec<&[u8]> = vec![good.as_bytes(), other.as_bytes()];
        assert_eq!(
            judge_request(&records, false, &device(), received()),
            Verdict::Forbidden
        );
    }
}
