//! Measurement quality codes (SPEC §2.3): severity, and whether a sample may feed trends and
//! vital-sign rules. The single place that knows the code table.

use std::fmt;
use std::str::FromStr;

/// Severity of a quality code: 0 ok, 1 info, 2 warning, 3 error (needs review).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QualitySeverity {
    Ok = 0,
    Info = 1,
    Warning = 2,
    Error = 3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QualityFlag {
    Ok,
    Calibrating,
    UserRemoved,
    Motion,
    LowSignal,
    LowPerfusion,
    Noise,
    BatteryLow,
    SensorDrop,
    SignalLoss,
    OutOfRange,
    ChecksumFail,
    DeviceError,
    Flatline,
}

impl QualityFlag {
    pub const ALL: [QualityFlag; 14] = [
        QualityFlag::Ok,
        QualityFlag::Calibrating,
        QualityFlag::UserRemoved,
        QualityFlag::Motion,
        QualityFlag::LowSignal,
        QualityFlag::LowPerfusion,
        QualityFlag::Noise,
        QualityFlag::BatteryLow,
        QualityFlag::SensorDrop,
        QualityFlag::SignalLoss,
        QualityFlag::OutOfRange,
        QualityFlag::ChecksumFail,
        QualityFlag::DeviceError,
        QualityFlag::Flatline,
    ];

    pub fn code(self) -> &'static str {
        match self {
            QualityFlag::Ok => "ok",
            QualityFlag::Calibrating => "calibrating",
            QualityFlag::UserRemoved => "user_removed",
            QualityFlag::Motion => "motion",
            QualityFlag::LowSignal => "low_signal",
            QualityFlag::LowPerfusion => "low_perfusion",
            QualityFlag::Noise => "noise",
            QualityFlag::BatteryLow => "battery_low",
            QualityFlag::SensorDrop => "sensor_drop",
            QualityFlag::SignalLoss => "signal_loss",
            QualityFlag::OutOfRange => "out_of_range",
            QualityFlag::ChecksumFail => "checksum_fail",
            QualityFlag::DeviceError => "device_error",
            QualityFlag::Flatline => "flatline",
        }
    }

    pub fn severity(self) -> QualitySeverity {
        match self {
            QualityFlag::Ok => QualitySeverity::Ok,
            QualityFlag::Calibrating | QualityFlag::UserRemoved => QualitySeverity::Info,
            QualityFlag::Motion
            | QualityFlag::LowSignal
            | QualityFlag::LowPerfusion
            | QualityFlag::Noise
            | QualityFlag::BatteryLow => QualitySeverity::Warning,
            QualityFlag::SensorDrop
            | QualityFlag::SignalLoss
            | QualityFlag::OutOfRange
            | QualityFlag::ChecksumFail
            | QualityFlag::DeviceError
            | QualityFlag::Flatline => QualitySeverity::Error,
        }
    }

    /// Only `ok` and `battery_low` samples feed trends and vital-sign rules (SPEC §2.3): a low
    /// battery does not distort the optical reading, every other flag may.
    pub fn is_trend_eligible(self) -> bool {
        matches!(self, QualityFlag::Ok | QualityFlag::BatteryLow)
    }

    /// Severity-3 codes require human review.
    pub fn requires_review(self) -> bool {
        self.severity() == QualitySeverity::Error
    }

    pub fn description(self) -> &'static str {
        match self {
            QualityFlag::Ok => "valid measurement",
            QualityFlag::Calibrating => "sensor calibrating after being put on",
            QualityFlag::UserRemoved => "device not worn (removed or charging)",
            QualityFlag::Motion => "motion artefact during the reading",
            QualityFlag::LowSignal => "weak optical signal",
            QualityFlag::LowPerfusion => "low peripheral perfusion",
            QualityFlag::Noise => "noisy signal",
            QualityFlag::BatteryLow => "battery low; reading still valid",
            QualityFlag::SensorDrop => "sensor lost contact",
            QualityFlag::SignalLoss => "signal lost",
            QualityFlag::OutOfRange => "sensor reported a value outside its range",
            QualityFlag::ChecksumFail => "payload checksum failed on the device",
            QualityFlag::DeviceError => "device reported an internal error",
            QualityFlag::Flatline => "device detected a frozen signal",
        }
    }
}

impl fmt::Display for QualityFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown quality flag {0:?}")]
pub struct UnknownQualityFlag(pub String);

impl FromStr for QualityFlag {
    type Err = UnknownQualityFlag;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        QualityFlag::ALL
            .iter()
            .copied()
            .find(|q| q.code() == s)
            .ok_or_else(|| UnknownQualityFlag(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_codes_round_trip_and_have_spec_severities() {
        let expected = [
            ("ok", 0),
            ("calibrating", 1),
            ("user_removed", 1),
            ("motion", 2),
            ("low_signal", 2),
            ("low_perfusion", 2),
            ("noise", 2),
            ("battery_low", 2),
            ("sensor_drop", 3),
            ("signal_loss", 3),
            ("out_of_range", 3),
            ("checksum_fail", 3),
            ("device_error", 3),
            ("flatline", 3),
        ];
        for (code, sev) in expected {
            let q: QualityFlag = code.parse().expect("known code");
            assert_eq!(q.code(), code);
            assert_eq!(q.severity() as u8, sev, "{code}");
        }
        assert!("great".parse::<QualityFlag>().is_err());
    }

    #[test]
    fn quality_only_ok_and_battery_low_feed_trends() {
        let eligible: Vec<_> = QualityFlag::ALL
            .iter()
            .filter(|q| q.is_trend_eligible())
            .map(|q| q.code())
            .collect();
        assert_eq!(eligible, vec!["ok", "battery_low"]);
    }
}
