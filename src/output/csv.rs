//! Measurements as CSV (one flat row per sample, empty cells for absent values), and a small
//! CSV writer for the reference tables.

use super::lines::LineFileSink;
use super::OutputError;
use crate::domain::wire::{push_float, push_int, push_uuid};
use crate::simulate::record::Corruption;
use crate::simulate::SimRecord;
use std::path::Path;

pub const MEASUREMENT_COLUMNS: [&str; 18] = [
    "schema_version",
    "message_id",
    "patient_id",
    "device_id",
    "recorded_at",
    "spo2_pct",
    "heart_rate_bpm",
    "respiratory_rate_min",
    "temperature_c",
    "ambient_temperature_c",
    "relative_humidity_pct",
    "hydration_pct",
    "activity_level",
    "pain_scale",
    "battery_pct",
    "signal_quality_pct",
    "firmware_version",
    "quality_flag",
];

/// Measurements as CSV: a header, then one flat row per record.
pub fn csv_sink(root: &Path, relative: &str) -> Result<LineFileSink, OutputError> {
    let header = format!("{}\n", MEASUREMENT_COLUMNS.join(","));
    LineFileSink::create(root, relative, header.as_bytes(), csv_line)
}

fn opt_f(buf: &mut Vec<u8>, v: Option<f64>) {
    if let Some(v) = v {
        push_float(buf, v);
    }
    buf.push(b',');
}

fn opt_i(buf: &mut Vec<u8>, v: Option<i32>) {
    if let Some(v) = v {
        push_int(buf, i64::from(v));
    }
    buf.push(b',');
}

fn csv_line(r: &SimRecord, buf: &mut Vec<u8>) {
    let start = buf.len();
    let m = &r.measurement;
    push_int(buf, i64::from(m.schema_version));
    buf.push(b',');
    push_uuid(buf, &m.message_id);
    buf.push(b',');
    push_uuid(buf, &m.patient_id);
    buf.push(b',');
    push_uuid(buf, &m.device_id);
    buf.push(b',');
    m.recorded_at.write_rfc3339(buf);
    buf.push(b',');
    let v = &m.vitals;
    opt_f(buf, v.spo2_pct);
    if r.corruption == Some(Corruption::WrongType) {
        buf.extend_from_slice(b"fast,");
    } else {
        opt_i(buf, v.heart_rate_bpm);
    }
    opt_i(buf, v.respiratory_rate_min);
    opt_f(buf, v.temperature_c);
    opt_f(buf, v.ambient_temperature_c);
    opt_f(buf, v.relative_humidity_pct);
    opt_f(buf, v.hydration_pct);
    opt_i(buf, v.activity_level);
    opt_i(buf, v.pain_scale);
    opt_i(buf, m.device.battery_pct);
    opt_i(buf, m.device.signal_quality_pct);
    if let Some(fw) = &m.device.firmware_version {
        push_csv_field(buf, fw);
    }
    buf.push(b',');
    buf.extend_from_slice(m.quality_flag.code().as_bytes());
    if let Some(Corruption::TruncatedJson { keep_pct }) = r.corruption {
        let len = buf.len() - start;
        buf.truncate(start + len * usize::from(keep_pct) / 100);
    }
    buf.push(b'\n');
}

/// RFC 4180 quoting: only when the value needs it.
pub fn push_csv_field(buf: &mut Vec<u8>, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        buf.push(b'"');
        buf.extend_from_slice(value.replace('"', "\"\"").as_bytes());
        buf.push(b'"');
    } else {
        buf.extend_from_slice(value.as_bytes());
    }
}
