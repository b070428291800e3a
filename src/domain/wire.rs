//! The JSON wire format of a measurement (SPEC §2.1, schema_version 1): a fast writer and a
//! parser that reports every faulty field instead of stopping at the first.

use super::measurement::{
    check_range, DeviceStatus, Measurement, RejectReason, Rejection, Vitals, SCHEMA_VERSION,
};
use super::quality::QualityFlag;
use super::time::UtcMillis;
use serde_json::{Map, Value};
use std::borrow::Cow;
use uuid::Uuid;

/// Appends the record as one JSON object, without a trailing newline. Absent vitals are
/// omitted, never written as a default.
pub fn write_json(m: &Measurement, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"schema_version\":");
    push_int(out, i64::from(m.schema_version));
    out.extend_from_slice(b",\"message_id\":\"");
    push_uuid(out, &m.message_id);
    out.extend_from_slice(b"\",\"patient_id\":\"");
    push_uuid(out, &m.patient_id);
    out.extend_from_slice(b"\",\"device_id\":\"");
    push_uuid(out, &m.device_id);
    out.extend_from_slice(b"\",\"recorded_at\":\"");
    m.recorded_at.write_rfc3339(out);
    out.extend_from_slice(b"\",\"vitals\":{");
    let v = &m.vitals;
    let mut first = true;
    push_opt_float(out, &mut first, "spo2_pct", v.spo2_pct);
    push_opt_int(out, &mut first, "heart_rate_bpm", v.heart_rate_bpm);
    push_opt_int(
        out,
        &mut first,
        "respiratory_rate_min",
        v.respiratory_rate_min,
    );
    push_opt_float(out, &mut first, "temperature_c", v.temperature_c);
    push_opt_float(
        out,
        &mut first,
        "ambient_temperature_c",
        v.ambient_temperature_c,
    );
    push_opt_float(
        out,
        &mut first,
        "relative_humidity_pct",
        v.relative_humidity_pct,
    );
    push_opt_float(out, &mut first, "hydration_pct", v.hydration_pct);
    push_opt_int(out, &mut first, "activity_level", v.activity_level);
    push_opt_int(out, &mut first, "pain_scale", v.pain_scale);
    out.extend_from_slice(b"},\"device\":{");
    let mut first = true;
    push_opt_int(out, &mut first, "battery_pct", m.device.battery_pct);
    push_opt_int(
        out,
        &mut first,
        "signal_quality_pct",
        m.device.signal_quality_pct,
    );
    if let Some(fw) = &m.device.firmware_version {
        push_key(out, &mut first, "firmware_version");
        push_json_string(out, fw);
    }
    out.extend_from_slice(b"},\"quality_flag\":\"");
    out.extend_from_slice(m.quality_flag.code().as_bytes());
    out.extend_from_slice(b"\"}");
}

pub fn to_json_string(m: &Measurement) -> String {
    let mut buf = Vec::with_capacity(420);
    write_json(m, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

fn push_key(out: &mut Vec<u8>, first: &mut bool, key: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

fn push_opt_int(out: &mut Vec<u8>, first: &mut bool, key: &str, value: Option<i32>) {
    if let Some(v) = value {
        push_key(out, first, key);
        push_int(out, i64::from(v));
    }
}

fn push_opt_float(out: &mut Vec<u8>, first: &mut bool, key: &str, value: Option<f64>) {
    if let Some(v) = value {
        push_key(out, first, key);
        push_float(out, v);
    }
}

pub(crate) fn push_int(out: &mut Vec<u8>, v: i64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
}

/// Writes a float as the shortest text that reads back to the same value. Readings carry one
/// decimal almost always, so that case skips the general algorithm.
pub(crate) fn push_float(out: &mut Vec<u8>, v: f64) {
    if !v.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    let tenths = super::rounding::round(v * 10.0);
    if tenths.abs() < 1e15 && tenths / 10.0 == v {
        let t = tenths as i64;
        if t < 0 {
            out.push(b'-');
        }
        let abs = t.unsigned_abs();
        let mut b = itoa::Buffer::new();
        out.extend_from_slice(b.format(abs / 10).as_bytes());
        out.push(b'.');
        out.push(b'0' + (abs % 10) as u8);
    } else {
        out.extend_from_slice(format!("{v:?}").as_bytes());
    }
}

pub(crate) fn push_uuid(out: &mut Vec<u8>, id: &Uuid) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
}

pub(crate) fn push_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for ch in s.chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Parses one wire record. On failure returns every problem found; a record that is not a
/// JSON object at all yields a single `malformed_json`.
pub fn parse_json(bytes: &[u8]) -> Result<Measurement, Vec<Rejection>> {
    match parse_fast(bytes) {
        Some(m) => Ok(m),
        None => parse_general(bytes),
    }
}

/// The shape of a record whose every field has its expected type: deserialised straight into
/// typed fields, without building a JSON tree (the tree cost half the parse in the profile).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FastRecord<'a> {
    schema_version: u64,
    #[serde(borrow)]
    message_id: Cow<'a, str>,
    #[serde(borrow)]
    patient_id: Cow<'a, str>,
    #[serde(borrow)]
    device_id: Cow<'a, str>,
    #[serde(borrow)]
    recorded_at: Cow<'a, str>,
    vitals: MapOnly<FastVitals>,
    #[serde(borrow, default)]
    device: Option<MapOnly<FastDevice<'a>>>,
    #[serde(borrow)]
    quality_flag: Cow<'a, str>,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FastVitals {
    spo2_pct: Option<f64>,
    heart_rate_bpm: Option<i32>,
    respiratory_rate_min: Option<i32>,
    temperature_c: Option<f64>,
    ambient_temperature_c: Option<f64>,
    relative_humidity_pct: Option<f64>,
    hydration_pct: Option<f64>,
    activity_level: Option<i32>,
    pain_scale: Option<i32>,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FastDevice<'a> {
    battery_pct: Option<i32>,
    signal_quality_pct: Option<i32>,
    #[serde(borrow)]
    firmware_version: Option<Cow<'a, str>>,
}

/// A struct read from a JSON object only: serde_json also reads structs from arrays, which
/// the wire format does not allow.
struct MapOnly<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(ObjectVisitor(std::marker::PhantomData))
            .map(MapOnly)
    }
}

/// The common case, fast: a record whose fields all have their types and ranges. Anything
/// else (wrong type, missing or unknown field, value out of range, bad id or time…) gives
/// `None`, and the general parser then reports every issue. Both accept exactly the same
/// records with the same result (checked field by field in the tests).
fn parse_fast(bytes: &[u8]) -> Option<Measurement> {
    let MapOnly(r) = serde_json::from_slice::<MapOnly<FastRecord<'_>>>(bytes).ok()?;
    if r.schema_version != u64::from(SCHEMA_VERSION) {
        return None;
    }
    let v = &r.vitals.0;
    let floats = [
        ("spo2_pct", v.spo2_pct),
        ("temperature_c", v.temperature_c),
        ("ambient_temperature_c", v.ambient_temperature_c),
        ("relative_humidity_pct", v.relative_humidity_pct),
        ("hydration_pct", v.hydration_pct),
    ];
    let device = r.device.map(|d| d.0).unwrap_or_default();
    let ints = [
        ("heart_rate_bpm", v.heart_rate_bpm),
        ("respiratory_rate_min", v.respiratory_rate_min),
        ("activity_level", v.activity_level),
        ("pain_scale", v.pain_scale),
        ("battery_pct", device.battery_pct),
        ("signal_quality_pct", device.signal_quality_pct),
    ];
    let in_range = floats
        .iter()
        .filter_map(|(f, x)| x.map(|x| (*f, x)))
        .chain(
            ints.iter()
                .filter_map(|(f, x)| x.map(|x| (*f, f64::from(x)))),
        )
        .all(|(field, x)| check_range(field, x).is_none());
    if !in_range {
        return None;
    }
    Some(Measurement {
        schema_version: SCHEMA_VERSION,
        message_id: Uuid::try_parse(&r.message_id).ok()?,
        patient_id: Uuid::try_parse(&r.patient_id).ok()?,
        device_id: Uuid::try_parse(&r.device_id).ok()?,
        recorded_at: UtcMillis::parse_rfc3339(&r.recorded_at).ok()?,
        vitals: Vitals {
            spo2_pct: v.spo2_pct,
            heart_rate_bpm: v.heart_rate_bpm,
            respiratory_rate_min: v.respiratory_rate_min,
            temperature_c: v.temperature_c,
            ambient_temperature_c: v.ambient_temperature_c,
            relative_humidity_pct: v.relative_humidity_pct,
            hydration_pct: v.hydration_pct,
            activity_level: v.activity_level,
            pain_scale: v.pain_scale,
        },
        device: DeviceStatus {
            battery_pct: device.battery_pct,
            signal_quality_pct: device.signal_quality_pct,
            firmware_version: device.firmware_version.map(|f| f.as_ref().into()),
        },
        quality_flag: r.quality_flag.parse::<QualityFlag>().ok()?,
    })
}

/// The general parser: a JSON tree, every field checked, every issue reported.
fn parse_general(bytes: &[u8]) -> Result<Measurement, Vec<Rejection>> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        vec![Rejection::new(
            RejectReason::MalformedJson,
            None,
            format!("not valid JSON: {e}"),
        )]
    })?;
    let Value::Object(obj) = value else {
        return Err(vec![Rejection::new(
            RejectReason::MalformedJson,
            None,
            "expected a JSON object",
        )]);
    };
    let mut p = Parser::default();
    p.reject_unknown(
        &obj,
        "",
        &[
            "schema_version",
            "message_id",
            "patient_id",
            "device_id",
            "recorded_at",
            "vitals",
            "device",
            "quality_flag",
        ],
    );
    let schema_version = match obj.get("schema_version") {
        None => {
            p.missing("schema_version");
            SCHEMA_VERSION
        }
        Some(v) => match v.as_u64() {
            Some(n) if n == u64::from(SCHEMA_VERSION) => SCHEMA_VERSION,
            _ => {
                p.push(
                    RejectReason::UnsupportedSchemaVersion,
                    "schema_version",
                    format!("schema_version {v} is not supported (expected {SCHEMA_VERSION})"),
                );
                SCHEMA_VERSION
            }
        },
    };
    let message_id = p.uuid(&obj, "message_id");
    let patient_id = p.uuid(&obj, "patient_id");
    let device_id = p.uuid(&obj, "device_id");
    let recorded_at = match obj.get("recorded_at") {
        None | Some(Value::Null) => {
            p.missing("recorded_at");
            None
        }
        Some(Value::String(s)) => match UtcMillis::parse_rfc3339(s) {
            Ok(t) => Some(t),
            Err(e) => {
                p.push(
                    RejectReason::InvalidTimestamp,
                    "recorded_at",
                    format!("recorded_at {e}"),
                );
                None
            }
        },
        Some(other) => {
            p.wrong_type("recorded_at", "an RFC 3339 string", other);
            None
        }
    };
    let empty = Map::new();
    let vitals_obj = p.object(&obj, "vitals").unwrap_or(&empty);
    p.reject_unknown(
        vitals_obj,
        "vitals.",
        &[
            "spo2_pct",
            "heart_rate_bpm",
            "respiratory_rate_min",
            "temperature_c",
            "ambient_temperature_c",
            "relative_humidity_pct",
            "hydration_pct",
            "activity_level",
            "pain_scale",
        ],
    );
    let vitals = Vitals {
        spo2_pct: p.float(vitals_obj, "spo2_pct"),
        heart_rate_bpm: p.int(vitals_obj, "heart_rate_bpm"),
        respiratory_rate_min: p.int(vitals_obj, "respiratory_rate_min"),
        temperature_c: p.float(vitals_obj, "temperature_c"),
        ambient_temperature_c: p.float(vitals_obj, "ambient_temperature_c"),
        relative_humidity_pct: p.float(vitals_obj, "relative_humidity_pct"),
        hydration_pct: p.float(vitals_obj, "hydration_pct"),
        activity_level: p.int(vitals_obj, "activity_level"),
        pain_scale: p.int(vitals_obj, "pain_scale"),
    };
    let device_obj = match obj.get("device") {
        None | Some(Value::Null) => &empty,
        Some(_) => p.object(&obj, "device").unwrap_or(&empty),
    };
    p.reject_unknown(
        device_obj,
        "device.",
        &["battery_pct", "signal_quality_pct", "firmware_version"],
    );
    let device = DeviceStatus {
        battery_pct: p.int(device_obj, "battery_pct"),
        signal_quality_pct: p.int(device_obj, "signal_quality_pct"),
        firmware_version: match device_obj.get("firmware_version") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str().into()),
            Some(other) => {
                p.wrong_type("firmware_version", "a string", other);
                None
            }
        },
    };
    let quality_flag = match obj.get("quality_flag") {
        None | Some(Value::Null) => {
            p.missing("quality_flag");
            None
        }
        Some(Value::String(s)) => match s.parse::<QualityFlag>() {
            Ok(q) => Some(q),
            Err(e) => {
                p.push(
                    RejectReason::UnknownQualityFlag,
                    "quality_flag",
                    e.to_string(),
                );
                None
            }
        },
        Some(other) => {
            p.wrong_type("quality_flag", "a quality code string", other);
            None
        }
    };
    match (message_id, patient_id, device_id, recorded_at, quality_flag) {
        (
            Some(message_id),
            Some(patient_id),
            Some(device_id),
            Some(recorded_at),
            Some(quality_flag),
        ) if p.issues.is_empty() => Ok(Measurement {
            schema_version,
            message_id,
            patient_id,
            device_id,
            recorded_at,
            vitals,
            device,
            quality_flag,
        }),
        _ => Err(p.issues),
    }
}

#[derive(Default)]
struct Parser {
    issues: Vec<Rejection>,
}

impl Parser {
    fn push(&mut self, reason: RejectReason, field: &str, detail: String) {
        self.issues
            .push(Rejection::new(reason, Some(field), detail));
    }

    fn missing(&mut self, field: &str) {
        self.push(
            RejectReason::MissingField,
            field,
            format!("{field} is required"),
        );
    }

    fn wrong_type(&mut self, field: &str, expected: &str, got: &Value) {
        self.push(
            RejectReason::WrongType,
            field,
            format!("{field} must be {expected}, got {got}"),
        );
    }

    fn reject_unknown(&mut self, obj: &Map<String, Value>, prefix: &str, known: &[&str]) {
        for key in obj.keys() {
            if !known.contains(&key.as_str()) {
                let field = format!("{prefix}{key}");
                self.push(
                    RejectReason::UnknownField,
                    &field,
                    format!("unknown field {field}"),
                );
            }
        }
    }

    fn uuid(&mut self, obj: &Map<String, Value>, field: &str) -> Option<Uuid> {
        match obj.get(field) {
            None | Some(Value::Null) => {
                self.missing(field);
                None
            }
            Some(Value::String(s)) => match Uuid::try_parse(s) {
                Ok(id) => Some(id),
                Err(_) => {
                    self.push(
                        RejectReason::InvalidUuid,
                        field,
                        format!("{field} {s:?} is not a UUID"),
                    );
                    None
                }
            },
            Some(other) => {
                self.wrong_type(field, "a UUID string", other);
                None
            }
        }
    }

    fn object<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        field: &str,
    ) -> Option<&'a Map<String, Value>> {
        match obj.get(field) {
            None | Some(Value::Null) => {
                self.missing(field);
                None
            }
            Some(Value::Object(m)) => Some(m),
            Some(other) => {
                self.wrong_type(field, "an object", other);
                None
            }
        }
    }

    fn float(&mut self, obj: &Map<String, Value>, field: &str) -> Option<f64> {
        match obj.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => {
                let v = n.as_f64()?;
                self.range(field, v).then_some(v)
            }
            Some(other) => {
                self.wrong_type(field, "a number", other);
                None
            }
        }
    }

    fn int(&mut self, obj: &Map<String, Value>, field: &str) -> Option<i32> {
        match obj.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => {
                let v = n.as_f64()?;
                if v.fract() != 0.0 {
                    self.push(
                        RejectReason::WrongType,
                        field,
                        format!("{field} must be an integer, got {n}"),
                    );
                    return None;
                }
                // Range first, so 1e12 is reported as out of range rather than overflowing.
                self.range(field, v).then_some(v as i32)
            }
            Some(other) => {
                self.wrong_type(field, "an integer", other);
                None
            }
        }
    }

    fn range(&mut self, field: &str, v: f64) -> bool {
        match check_range(field, v) {
            None => true,
            Some(issue) => {
                self.issues.push(issue);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = r#"{
      "schema_version": 1,
      "message_id": "5b0c3f6e-4d7b-4e61-9a4e-0f4a1f3c2d10",
      "patient_id": "2f9a1c0e-7d33-4b7e-8f0e-6c1d2b3a4e5f",
      "device_id": "d4c2b1a0-1111-4222-8333-944455556666",
      "recorded_at": "2026-03-14T08:30:05.000Z",
      "vitals": {
        "spo2_pct": 95.4, "heart_rate_bpm": 88, "respiratory_rate_min": 18,
        "temperature_c": 36.9, "ambient_temperature_c": 29.5, "relative_humidity_pct": 71.0,
        "hydration_pct": 78.5, "activity_level": 3, "pain_scale": 2
      },
      "device": { "battery_pct": 77, "signal_quality_pct": 93, "firmware_version": "2.1.3" },
      "quality_flag": "ok"
    }"#;

    #[test]
    fn wire_parses_the_spec_example_and_writes_it_back_identically() {
        let m = parse_json(SPEC_EXAMPLE.as_bytes()).expect("spec example is valid");
        assert_eq!(m.vitals.spo2_pct, Some(95.4));
        assert_eq!(m.vitals.pain_scale, Some(2));
        let compact: Value = serde_json::from_str(SPEC_EXAMPLE).expect("json");
        let written: Value = serde_json::from_str(&to_json_string(&m)).expect("json");
        assert_eq!(written, compact);
        assert_eq!(parse_json(to_json_string(&m).as_bytes()), Ok(m));
    }

    #[test]
    fn wire_float_writer_is_shortest_round_trip() {
        for v in [0.0, 95.4, -12.3, 71.0, 36.95, 1e-7, 100.0, 0.1 + 0.2] {
            let mut out = Vec::new();
            push_float(&mut out, v);
            let text = String::from_utf8(out).expect("utf8");
            assert_eq!(text.parse::<f64>().expect("float"), v, "{text}");
        }
    }

    #[test]
    fn wire_reports_each_faulty_field() {
        let bad = SPEC_EXAMPLE
            .replace("95.4", "130")
            .replace("\"heart_rate_bpm\": 88", "\"heart_rate_bpm\": \"fast\"")
            .replace("\"ok\"", "\"great\"");
        let issues = parse_json(bad.as_bytes()).expect_err("invalid");
        let codes: Vec<_> = issues.iter().map(Rejection::qualified_code).collect();
        assert_eq!(
            codes,
            vec![
                "out_of_range:spo2_pct",
                "wrong_type:heart_rate_bpm",
                "unknown_quality_flag:quality_flag"
            ]
        );
    }

    #[test]
    fn wire_rejects_truncated_json_and_legacy_names() {
        let truncated = &SPEC_EXAMPLE[..120];
        let issues = parse_json(truncated.as_bytes()).expect_err("invalid");
        assert_eq!(issues[0].reason, RejectReason::MalformedJson);
        let legacy = SPEC_EXAMPLE.replace("heart_rate_bpm", "freq_card");
        let issues = parse_json(legacy.as_bytes()).expect_err("invalid");
        assert_eq!(issues[0].qualified_code(), "unknown_field:vitals.freq_card");
        assert!(parse_json(b"[1,2]").is_err());
        assert!(parse_json(b"").is_err());
    }

    /// The fast path may only ever accept what the general parser accepts, with the same
    /// result: every field of the SPEC example, replaced by values of every kind.
    #[test]
    fn wire_fast_path_agrees_with_the_general_parser() {
        let base: Value = serde_json::from_str(SPEC_EXAMPLE).expect("json");
        let replacements: Vec<Value> = [
            "null",
            "0",
            "1",
            "-1",
            "1.0",
            "1.5",
            "80",
            "80.0",
            "130",
            "1e12",
            "-1e12",
            "\"x\"",
            "\"2026-03-14T08:30:05Z\"",
            "\"2026-03-14 08:30\"",
            "\"5b0c3f6e-4d7b-4e61-9a4e-0f4a1f3c2d10\"",
            "\"5B0C3F6E4D7B4E619A4E0F4A1F3C2D10\"",
            "\"ok\"",
            "\"motion\"",
            "\"OK\"",
            "{}",
            "[]",
            "true",
            "2147483648",
        ]
        .iter()
        .map(|t| serde_json::from_str(t).expect("json"))
        .collect();
        let mut variants = vec![SPEC_EXAMPLE.as_bytes().to_vec()];
        let paths: Vec<Vec<&str>> = base
            .as_object()
            .expect("object")
            .iter()
            .flat_map(|(k, v)| match v {
                Value::Object(inner) => inner
                    .keys()
                    .map(|ik| vec![k.as_str(), ik.as_str()])
                    .chain([vec![k.as_str()]])
                    .collect::<Vec<_>>(),
                _ => vec![vec![k.as_str()]],
            })
            .collect();
        for path in &paths {
            for r in &replacements {
                let mut v = base.clone();
                let slot = path.iter().fold(&mut v, |node, k| &mut node[*k]);
                *slot = r.clone();
                variants.push(serde_json::to_vec(&v).expect("json"));
            }
            let mut v = base.clone();
            let (last, parents) = path.split_last().expect("non-empty");
            let parent = parents.iter().fold(&mut v, |node, k| &mut node[*k]);
            parent.as_object_mut().expect("object").remove(*last);
            variants.push(serde_json::to_vec(&v).expect("json"));
        }
        // Unknown and duplicated keys.
        variants.push(
            SPEC_EXAMPLE
                .replace("\"quality_flag\"", "\"extra\": 1, \"quality_flag\"")
                .into_bytes(),
        );
        variants.push(
            SPEC_EXAMPLE
                .replace(
                    "\"spo2_pct\": 95.4",
                    "\"spo2_pct\": 95.4, \"spo2_pct\": 96.0",
                )
                .into_bytes(),
        );
        variants.push(
            SPEC_EXAMPLE
                .replace("\"battery_pct\"", "\"x\": 1, \"battery_pct\"")
                .into_bytes(),
        );
        variants.push(
            serde_json::to_vec(&Value::Array(
                base.as_object()
                    .expect("object")
                    .values()
                    .cloned()
                    .collect(),
            ))
            .expect("json"),
        );
        let mut fast = 0;
        for bytes in &variants {
            let general = parse_general(bytes);
            match parse_fast(bytes) {
                Some(m) => {
                    fast += 1;
                    assert_eq!(general, Ok(m), "{}", String::from_utf8_lossy(bytes));
                }
                None => {
                    // Slower, never different: parse_json gives the general answer.
                    assert_eq!(parse_json(bytes), general);
                }
            }
        }
        assert!(
            fast > 50,
            "the fast path serves the valid variants ({fast})"
        );
    }

    #[test]
    fn wire_requires_identity_time_and_quality() {
        let issues = parse_json(br#"{"schema_version":1,"vitals":{}}"#).expect_err("invalid");
        let codes: Vec<_> = issues.iter().map(Rejection::qualified_code).collect();
        for field in [
            "message_id",
            "patient_id",
            "device_id",
            "recorded_at",
            "quality_flag",
        ] {
            assert!(
                codes.contains(&format!("missing_field:{field}")),
                "{field}: {codes:?}"
            );
        }
    }
}
