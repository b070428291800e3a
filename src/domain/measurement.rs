//! The measurement of the data contract (SPEC §2.1) and its validity rules. Validity is about
//! the plausibility of a reading, never about the patient's condition: an alarming value inside
//! its range is valid (alerting is the engine's job).

use super::quality::QualityFlag;
use super::time::{UtcMillis, MS_PER_MINUTE};
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

pub const SCHEMA_VERSION: u32 = 1;

/// How far in the future of its ingest time a sample may be stamped (device clock drift).
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * MS_PER_MINUTE;

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Vitals {
    pub spo2_pct: Option<f64>,
    pub heart_rate_bpm: Option<i32>,
    pub respiratory_rate_min: Option<i32>,
    pub temperature_c: Option<f64>,
    pub ambient_temperature_c: Option<f64>,
    pub relative_humidity_pct: Option<f64>,
    pub hydration_pct: Option<f64>,
    pub activity_level: Option<i32>,
    pub pain_scale: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceStatus {
    pub battery_pct: Option<i32>,
    pub signal_quality_pct: Option<i32>,
    /// Shared: a device sends the same firmware string in every sample.
    pub firmware_version: Option<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub schema_version: u32,
    pub message_id: Uuid,
    pub patient_id: Uuid,
    pub device_id: Uuid,
    pub recorded_at: UtcMillis,
    pub vitals: Vitals,
    pub device: DeviceStatus,
    pub quality_flag: QualityFlag,
}

/// Why a record cannot enter Bronze. One per failed rule; the code is stable (quarantine
/// column, metrics label), the detail is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    MalformedJson,
    UnsupportedSchemaVersion,
    MissingField,
    UnknownField,
    WrongType,
    InvalidUuid,
    InvalidTimestamp,
    FutureTimestamp,
    OutOfRange,
    UnknownQualityFlag,
    UnknownPatient,
}

impl RejectReason {
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::UnsupportedSchemaVersion => "unsupported_schema_version",
            RejectReason::MissingField => "missing_field",
            RejectReason::UnknownField => "unknown_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::InvalidUuid => "invalid_uuid",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::UnknownQualityFlag => "unknown_quality_flag",
            RejectReason::UnknownPatient => "unknown_patient",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: RejectReason,
    /// The field at fault, when there is one (`vitals.spo2_pct`).
    pub field: Option<String>,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, field: Option<&str>, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            field: field.map(str::to_string),
            detail: detail.into(),
        }
    }

    /// `out_of_range:spo2_pct` — the reason code qualified by its field.
    pub fn qualified_code(&self) -> String {
        match &self.field {
            Some(f) => format!("{}:{}", self.reason.code(), f),
            None => self.reason.code().to_string(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// An inclusive validity range of one numeric field.
#[derive(Debug, Clone, Copy)]
pub struct ValidRange {
    pub field: &'static str,
    pub min: f64,
    pub max: f64,
}

/// SPEC §2.1 validity ranges, the only copy.
pub const VALID_RANGES: [ValidRange; 11] = [
    ValidRange {
        field: "spo2_pct",
        min: 50.0,
        max: 100.0,
    },
    ValidRange {
        field: "heart_rate_bpm",
        min: 20.0,
        max: 260.0,
    },
    ValidRange {
        field: "respiratory_rate_min",
        min: 4.0,
        max: 90.0,
    },
    ValidRange {
        field: "temperature_c",
        min: 30.0,
        max: 45.0,
    },
    ValidRange {
        field: "ambient_temperature_c",
        min: -30.0,
        max: 60.0,
    },
    ValidRange {
        field: "relative_humidity_pct",
        min: 0.0,
        max: 100.0,
    },
    ValidRange {
        field: "hydration_pct",
        min: 0.0,
        max: 100.0,
    },
    ValidRange {
        field: "activity_level",
        min: 0.0,
        max: 10.0,
    },
    ValidRange {
        field: "pain_scale",
        min: 0.0,
        max: 10.0,
    },
    ValidRange {
        field: "battery_pct",
        min: 0.0,
        max: 100.0,
    },
    ValidRange {
        field: "signal_quality_pct",
        min: 0.0,
        max: 100.0,
    },
];

pub fn valid_range(field: &str) -> Option<ValidRange> {
    VALID_RANGES.iter().copied().find(|r| r.field == field)
}

impl Vitals {
    /// The numeric vitals by field name, in wire order.
    pub fn numeric_fields(&self) -> [(&'static str, Option<f64>); 9] {
        [
            ("spo2_pct", self.spo2_pct),
            ("heart_rate_bpm", self.heart_rate_bpm.map(f64::from)),
            (
                "respiratory_rate_min",
                self.respiratory_rate_min.map(f64::from),
            ),
            ("temperature_c", self.temperature_c),
            ("ambient_temperature_c", self.ambient_temperature_c),
            ("relative_humidity_pct", self.relative_humidity_pct),
            ("hydration_pct", self.hydration_pct),
            ("activity_level", self.activity_level.map(f64::from)),
            ("pain_scale", self.pain_scale.map(f64::from)),
        ]
    }
}

impl Measurement {
    /// Range and time checks of SPEC §2.1 against the time the record was received. Returns
    /// every failed rule, not only the first.
    pub fn validate(&self, received_at: UtcMillis) -> Vec<Rejection> {
        let mut issues = Vec::new();
        if self.schema_version != SCHEMA_VERSION {
            issues.push(Rejection::new(
                RejectReason::UnsupportedSchemaVersion,
                Some("schema_version"),
                format!(
                    "schema_version {} is not supported (expected {SCHEMA_VERSION})",
                    self.schema_version
                ),
            ));
        }
        if self.recorded_at.0 > received_at.0 + MAX_FUTURE_SKEW_MS {
            issues.push(Rejection::new(
                RejectReason::FutureTimestamp,
                Some("recorded_at"),
                format!(
                    "recorded_at {} is more than 5 min after ingest time {}",
                    self.recorded_at, received_at
                ),
            ));
        }
        let device = [
            ("battery_pct", self.device.battery_pct.map(f64::from)),
            (
                "signal_quality_pct",
                self.device.signal_quality_pct.map(f64::from),
            ),
        ];
        // VALID_RANGES lists the fields in this same order (a test checks it): no name lookup
        // on the hot path.
        let fields = self.vitals.numeric_fields().into_iter().chain(device);
        for (range, (_, value)) in VALID_RANGES.iter().zip(fields) {
            if let Some(v) = value {
                if !(v >= range.min && v <= range.max) {
                    issues.extend(check_range(range.field, v));
                }
            }
        }
        issues
    }
}

/// `None` when `value` is inside the field's range (NaN is never inside).
pub fn check_range(field: &str, value: f64) -> Option<Rejection> {
    let range = valid_range(field)?;
    if value >= range.min && value <= range.max {
        return None;
    }
    Some(Rejection::new(
        RejectReason::OutOfRange,
        Some(field),
        format!("{field} {value} is outside {}..={}", range.min, range.max),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Measurement {
        Measurement {
            schema_version: 1,
            message_id: Uuid::from_u128(1),
            patient_id: Uuid::from_u128(2),
            device_id: Uuid::from_u128(3),
            recorded_at: UtcMillis(1_773_477_005_000),
            vitals: Vitals {
                spo2_pct: Some(95.4),
                heart_rate_bpm: Some(88),
                respiratory_rate_min: Some(18),
                temperature_c: Some(36.9),
                ambient_temperature_c: Some(29.5),
                relative_humidity_pct: Some(71.0),
                hydration_pct: Some(78.5),
                activity_level: Some(3),
                pain_scale: Some(2),
            },
            device: DeviceStatus {
                battery_pct: Some(77),
                signal_quality_pct: Some(93),
                firmware_version: Some("2.1.3".into()),
            },
            quality_flag: QualityFlag::Ok,
        }
    }

    #[test]
    fn validate_ranges_follow_the_field_order_of_a_measurement() {
        let m = sample();
        let fields: Vec<&str> = m
            .vitals
            .numeric_fields()
            .iter()
            .map(|(f, _)| *f)
            .chain(["battery_pct", "signal_quality_pct"])
            .collect();
        let ranges: Vec<&str> = VALID_RANGES.iter().map(|r| r.field).collect();
        assert_eq!(fields, ranges);
    }

    #[test]
    fn validate_accepts_every_range_boundary() {
        for range in VALID_RANGES {
            assert!(
                check_range(range.field, range.min).is_none(),
                "{}",
                range.field
            );
            assert!(
                check_range(range.field, range.max).is_none(),
                "{}",
                range.field
            );
        }
        assert!(sample().validate(UtcMillis(1_773_477_005_000)).is_empty());
    }

    #[test]
    fn validate_rejects_just_outside_each_range() {
        for range in VALID_RANGES {
            let below = check_range(range.field, range.min - 0.1).expect("below is rejected");
            assert_eq!(below.reason, RejectReason::OutOfRange);
            assert_eq!(
                below.qualified_code(),
                format!("out_of_range:{}", range.field)
            );
            assert!(check_range(range.field, range.max + 0.1).is_some());
        }
        assert!(check_range("spo2_pct", f64::NAN).is_some());
    }

    #[test]
    fn validate_reports_every_failed_rule_with_its_value() {
        let mut m = sample();
        m.vitals.spo2_pct = Some(130.0);
        m.vitals.heart_rate_bpm = Some(400);
        let issues = m.validate(m.recorded_at);
        let codes: Vec<_> = issues.iter().map(Rejection::qualified_code).collect();
        assert_eq!(
            codes,
            vec!["out_of_range:spo2_pct", "out_of_range:heart_rate_bpm"]
        );
        assert_eq!(issues[0].detail, "spo2_pct 130 is outside 50..=100");
    }

    #[test]
    fn validate_rejects_samples_stamped_beyond_five_minutes_ahead() {
        let m = sample();
        let just_ok = UtcMillis(m.recorded_at.0 - MAX_FUTURE_SKEW_MS);
        assert!(m.validate(just_ok).is_empty());
        let too_early = UtcMillis(just_ok.0 - 1);
        assert_eq!(
            m.validate(too_early)[0].reason,
            RejectReason::FutureTimestamp
        );
    }

    #[test]
    fn validate_treats_missing_vitals_as_valid_not_as_defaults() {
        let mut m = sample();
        m.vitals = Vitals::default();
        assert!(m.validate(m.recorded_at).is_empty());
        assert_eq!(m.vitals.spo2_pct, None);
    }
}
