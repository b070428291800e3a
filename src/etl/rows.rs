//! Measurements back from a Bronze or Silver frame, row by row (the alert engine and `replay`
//! read frames this way).

use super::frame::Columns;
use super::EtlError;
use crate::domain::measurement::{DeviceStatus, Measurement, Vitals};
use crate::domain::time::UtcMillis;
use crate::domain::QualityFlag;
use polars::prelude::*;
use std::sync::Arc;
use uuid::Uuid;

/// The columns of a Bronze or Silver frame that make up a measurement, fetched once.
pub struct MeasurementRows<'a> {
    /// Absent from frames the caller does not need ids from.
    message_id: Option<&'a StringChunked>,
    pub patient: &'a StringChunked,
    device: &'a StringChunked,
    recorded: &'a Int64Chunked,
    spo2: &'a Float64Chunked,
    heart_rate: &'a Int16Chunked,
    respiratory_rate: &'a Int16Chunked,
    temperature: &'a Float64Chunked,
    ambient: &'a Float64Chunked,
    humidity: &'a Float64Chunked,
    hydration: &'a Float64Chunked,
    activity: &'a Int16Chunked,
    pain: &'a Int16Chunked,
    battery: &'a Int16Chunked,
    signal: &'a Int16Chunked,
    firmware: &'a StringChunked,
    quality: &'a StringChunked,
}

impl<'a> MeasurementRows<'a> {
    /// Also reads `message_id` (the engine does not need it; `replay` does).
    pub fn with_message_ids(c: &Columns<'a>) -> Result<Self, EtlError> {
        Ok(MeasurementRows {
            message_id: Some(c.str("message_id")?),
            ..Self::new(c)?
        })
    }

    pub fn new(c: &Columns<'a>) -> Result<Self, EtlError> {
        Ok(MeasurementRows {
            message_id: None,
            patient: c.str("patient_id")?,
            device: c.str("device_id")?,
            recorded: c.millis("recorded_at")?,
            spo2: c.f64("spo2_pct")?,
            heart_rate: c.i16("heart_rate_bpm")?,
            respiratory_rate: c.i16("respiratory_rate_min")?,
            temperature: c.f64("temperature_c")?,
            ambient: c.f64("ambient_temperature_c")?,
            humidity: c.f64("relative_humidity_pct")?,
            hydration: c.f64("hydration_pct")?,
            activity: c.i16("activity_level")?,
            pain: c.i16("pain_scale")?,
            battery: c.i16("battery_pct")?,
            signal: c.i16("signal_quality_pct")?,
            firmware: c.str("firmware_version")?,
            quality: c.str("quality_flag")?,
        })
    }

    /// Rows were validated on the way in: unparsable values cannot occur here.
    pub fn measurement(
        &self,
        i: usize,
        patient_id: Uuid,
        firmware: &mut Option<Arc<str>>,
    ) -> Measurement {
        let id = |ca: &StringChunked| {
            ca.get(i)
                .and_then(|s| Uuid::try_parse(s).ok())
                .unwrap_or_default()
        };
        let fw = self.firmware.get(i);
        if firmware.as_deref() != fw {
            *firmware = fw.map(Arc::from);
        }
        let int = |ca: &Int16Chunked| ca.get(i).map(i32::from);
        Measurement {
            schema_version: 1,
            // Parsed only when asked for: the engine does not read it, and it is a third of
            // the row's decoding.
            message_id: self.message_id.map(id).unwrap_or_default(),
            patient_id,
            device_id: id(self.device),
            recorded_at: UtcMillis(self.recorded.get(i).unwrap_or_default()),
            vitals: Vitals {
                spo2_pct: self.spo2.get(i),
                heart_rate_bpm: int(self.heart_rate),
                respiratory_rate_min: int(self.respiratory_rate),
                temperature_c: self.temperature.get(i),
                ambient_temperature_c: self.ambient.get(i),
                relative_humidity_pct: self.humidity.get(i),
                hydration_pct: self.hydration.get(i),
                activity_level: int(self.activity),
                pain_scale: int(self.pain),
            },
            device: DeviceStatus {
                battery_pct: int(self.battery),
                signal_quality_pct: int(self.signal),
                firmware_version: firmware.clone(),
            },
            quality_flag: self
                .quality
                .get(i)
                .and_then(|q| q.parse().ok())
                .unwrap_or(QualityFlag::DeviceError),
        }
    }
}
