//! `--input-format legacy`: the earlier platform's message shapes (reference §1.1–1.2), mapped
//! to schema_version 1. Nothing else in the code knows these names.
//!
//! - cloud API: `{device_id, patient_id, timestamp, vitals{spo2, heart_rate, temperature,
//!   ambient_temp_celsius|ambient_temp, respiratory_rate, hydration_percent|hydration_pct,
//!   activity_level (0–10), pain_scale}, metadata{battery_level, signal_quality,
//!   firmware_version}}` (+ `ingestion_id`, `received_at`, `api_version` added by the server);
//! - Kafka API: `{…, measurements{freq_card, freq_resp, spo2_pct, temp_corp, temp_ambiente,
//!   pct_hydratation, activity (0–100), heat_index}, device_info{battery_level,
//!   signal_strength, firmware_version, …}, quality_indicators{quality_flag, …}}` with the
//!   envelope `message_id`, `ingestion_timestamp`, `api_version`;
//! - flat `/ingest`: `{patient_id, device_id, timestamp, freq_card, freq_resp, spo2_pct,
//!   temp_corp, temp_ambiante, pct_hydratation, activity (0–100), heat_index, quality_flag}`.
//!
//! Choices: activity 0–100 becomes 0–10 by rounding /10 (SPEC §2.1); `heat_index` is dropped
//! (kidjamo derives it); relative humidity did not exist and stays missing; a message without a
//! quality flag is `ok` (the old platform had no other notion); a message without a usable
//! UUID id gets a UUID v5 of its bytes, so a resent copy keeps its id and is deduplicated.
//! Values are copied as they are: range and type checks stay with the schema-1 validation, so a
//! bad legacy value is quarantined with the same reason codes as a bad schema-1 value.

use serde_json::{json, Map, Value};
use uuid::Uuid;

const LEGACY_NAMESPACE: Uuid = Uuid::from_u128(0x1e9a_c0de_5a1d_4b1e_9c0f_77aa_0b5e_1e9a);

/// Maps one legacy message to schema-1 JSON. A payload that is not a JSON object is returned
/// unchanged, so that validation rejects it as malformed, as it would any other.
pub fn to_schema_v1(raw: &[u8]) -> Vec<u8> {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(raw) else {
        return raw.to_vec();
    };
    let get = |o: &Map<String, Value>, keys: &[&str]| -> Value {
        keys.iter()
            .find_map(|k| o.get(*k).filter(|v| !v.is_null()).cloned())
            .unwrap_or(Value::Null)
    };
    let empty = Map::new();
    let section = |name: &str| match obj.get(name) {
        Some(Value::Object(m)) => m,
        _ => &empty,
    };
    let activity_0_100 = |v: Value| match v.as_f64() {
        Some(x) => json!((x / 10.0).round() as i64),
        None => v,
    };
    let (vitals, device, quality) = if obj.contains_key("measurements") {
        let m = section("measurements");
        let d = section("device_info");
        let q = section("quality_indicators");
        (
            json!({
                "spo2_pct": get(m, &["spo2_pct"]),
                "heart_rate_bpm": get(m, &["freq_card"]),
                "respiratory_rate_min": get(m, &["freq_resp"]),
                "temperature_c": get(m, &["temp_corp"]),
                "ambient_temperature_c": get(m, &["temp_ambiente", "temp_ambiante"]),
                "hydration_pct": get(m, &["pct_hydratation"]),
                "activity_level": activity_0_100(get(m, &["activity"])),
            }),
            json!({
                "battery_pct": get(d, &["battery_level"]),
                "signal_quality_pct": get(d, &["signal_strength"]),
                "firmware_version": get(d, &["firmware_version"]),
            }),
            get(q, &["quality_flag"]),
        )
    } else if obj.contains_key("vitals") {
        let v = section("vitals");
        let md = section("metadata");
        (
            json!({
                "spo2_pct": get(v, &["spo2"]),
                "heart_rate_bpm": get(v, &["heart_rate"]),
                "respiratory_rate_min": get(v, &["respiratory_rate"]),
                "temperature_c": get(v, &["temperature"]),
                "ambient_temperature_c": get(v, &["ambient_temp_celsius", "ambient_temp"]),
                "hydration_pct": get(v, &["hydration_percent", "hydration_pct"]),
                "activity_level": get(v, &["activity_level"]),
                "pain_scale": get(v, &["pain_scale"]),
            }),
            json!({
                "battery_pct": get(md, &["battery_level"]),
                "signal_quality_pct": get(md, &["signal_quality"]),
                "firmware_version": get(md, &["firmware_version"]),
            }),
            Value::Null,
        )
    } else {
        (
            json!({
                "spo2_pct": get(&obj, &["spo2_pct"]),
                "heart_rate_bpm": get(&obj, &["freq_card"]),
                "respiratory_rate_min": get(&obj, &["freq_resp"]),
                "temperature_c": get(&obj, &["temp_corp"]),
                "ambient_temperature_c": get(&obj, &["temp_ambiante", "temp_ambiente"]),
                "hydration_pct": get(&obj, &["pct_hydratation"]),
                "activity_level": activity_0_100(get(&obj, &["activity"])),
            }),
            json!({}),
            get(&obj, &["quality_flag"]),
        )
    };
    let message_id = ["message_id", "ingestion_id"]
        .iter()
        .filter_map(|k| obj.get(*k).and_then(Value::as_str))
        .find_map(|s| Uuid::try_parse(s).ok())
        .unwrap_or_else(|| Uuid::new_v5(&LEGACY_NAMESPACE, raw));
    let drop_nulls = |v: Value| match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, x)| !x.is_null()).collect()),
        other => other,
    };
    let mut out = json!({
        "schema_version": 1,
        "message_id": message_id.to_string(),
        "patient_id": get(&obj, &["patient_id"]),
        "device_id": get(&obj, &["device_id"]),
        "recorded_at": get(&obj, &["timestamp"]),
        "vitals": drop_nulls(vitals),
        "device": drop_nulls(device),
        "quality_flag": if quality.is_null() { json!("ok") } else { quality },
    });
    if let Value::Object(m) = &mut out {
        m.retain(|_, v| !v.is_null());
    }
    serde_json::to_vec(&out).unwrap_or_else(|_| raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{wire, QualityFlag};

    const P: &str = "2f9a1c0e-7d33-4b7e-8f0e-6c1d2b3a4e5f";
    const D: &str = "d4c2b1a0-1111-4222-8333-944455556666";

    #[test]
    fn kafka_api_shape_maps_every_field() {
        let raw = format!(
            r#"{{"device_id":"{D}","patient_id":"{P}","timestamp":"2026-03-14T08:30:05Z",
            "measurements":{{"freq_card":88,"freq_resp":18,"spo2_pct":95.4,"temp_corp":36.9,
            "temp_ambiente":29.5,"pct_hydratation":78.5,"activity":34,"heat_index":31.2}},
            "device_info":{{"device_id":"{D}","firmware_version":"2.1.3","battery_level":77,
            "signal_strength":93,"status":"connected","last_sync":"x"}},
            "quality_indicators":{{"quality_flag":"motion","confidence_score":90}},
            "message_id":"5b0c3f6e-4d7b-4e61-9a4e-0f4a1f3c2d10","api_version":"1.0.0"}}"#
        );
        let m = wire::parse_json(&to_schema_v1(raw.as_bytes())).expect("valid schema 1");
        assert_eq!(
            m.message_id.to_string(),
            "5b0c3f6e-4d7b-4e61-9a4e-0f4a1f3c2d10"
        );
        assert_eq!(m.patient_id.to_string(), P);
        assert_eq!(m.vitals.heart_rate_bpm, Some(88));
        assert_eq!(m.vitals.respiratory_rate_min, Some(18));
        assert_eq!(m.vitals.spo2_pct, Some(95.4));
        assert_eq!(m.vitals.temperature_c, Some(36.9));
        assert_eq!(m.vitals.ambient_temperature_c, Some(29.5));
        assert_eq!(m.vitals.hydration_pct, Some(78.5));
        assert_eq!(m.vitals.activity_level, Some(3), "34/100 → 3/10");
        assert_eq!(m.vitals.relative_humidity_pct, None, "never invented");
        assert_eq!(m.device.battery_pct, Some(77));
        assert_eq!(m.device.signal_quality_pct, Some(93));
        assert_eq!(m.quality_flag, QualityFlag::Motion);
    }

    #[test]
    fn cloud_and_flat_shapes_map_and_ids_are_stable() {
        let cloud = format!(
            r#"{{"device_id":"{D}","patient_id":"{P}","timestamp":"2026-03-14T09:30:05+01:00",
            "vitals":{{"spo2":91.0,"heart_rate":120,"temperature":38.6,"pain_scale":6,
            "activity_level":2}},"metadata":{{"battery_level":12}}}}"#
        );
        let m = wire::parse_json(&to_schema_v1(cloud.as_bytes())).expect("valid");
        assert_eq!(m.recorded_at.to_rfc3339(), "2026-03-14T08:30:05.000Z");
        assert_eq!(m.vitals.pain_scale, Some(6));
        assert_eq!(
            m.vitals.activity_level,
            Some(2),
            "already 0–10 in this shape"
        );
        assert_eq!(m.device.battery_pct, Some(12));
        assert_eq!(m.quality_flag, QualityFlag::Ok);
        let again = wire::parse_json(&to_schema_v1(cloud.as_bytes())).expect("valid");
        assert_eq!(m.message_id, again.message_id, "a resent copy keeps its id");

        let flat = format!(
            r#"{{"patient_id":"{P}","device_id":"{D}","timestamp":"2026-03-14T08:30:05Z",
            "freq_card":70,"freq_resp":15,"spo2_pct":98.0,"temp_corp":36.6,"temp_ambiante":25.0,
            "pct_hydratation":80.0,"activity":95,"heat_index":25.0,"quality_flag":"ok"}}"#
        );
        let m = wire::parse_json(&to_schema_v1(flat.as_bytes())).expect("valid");
        assert_eq!(m.vitals.activity_level, Some(10));
        assert_eq!(m.vitals.ambient_temperature_c, Some(25.0));
    }

    #[test]
    fn bad_legacy_values_get_schema_1_reasons() {
        let raw = format!(
            r#"{{"patient_id":"{P}","device_id":"{D}","timestamp":"2026-03-14T08:30:05Z",
            "freq_card":300,"spo2_pct":"high"}}"#
        );
        let reasons = wire::parse_json(&to_schema_v1(raw.as_bytes())).expect_err("invalid");
        let codes: Vec<String> = reasons.iter().map(|r| r.qualified_code()).collect();
        assert!(codes.iter().any(|c| c.contains("spo2_pct")), "{codes:?}");
        assert_eq!(to_schema_v1(b"not json"), b"not json".to_vec());
    }
}
