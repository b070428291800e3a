//! How good the alerts are, against the simulator's ground truth (`ground_truth/episodes`):
//! sensitivity per episode type, false alerts per patient-day, time to detection.
//!
//! Definitions (README, "Alert quality"):
//! - a clinical alert is one of severity `alert` or `critical` from a vital, pain or combination
//!   rule (device rules are about the sensor, not the patient);
//! - an episode is detected when a clinical alert of its patient first fires between the
//!   episode's start and end; the time to detection is from the start to the first such alert;
//! - a false alert is a clinical alert that first fires outside every episode of its patient,
//!   widened by one hour before (prodrome) and six hours after (recovery);
//! - patient-days are the distinct (patient, UTC day) pairs with at least one Bronze record.

use crate::etl::frame::{parquet_files_under, read_files, Columns};
use crate::etl::EtlError;
use polars::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use uuid::Uuid;

const BEFORE_MS: i64 = 3_600_000;
const AFTER_MS: i64 = 6 * 3_600_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EpisodeTypeQuality {
    pub episodes: u64,
    pub detected: u64,
    pub sensitivity: f64,
    pub median_minutes_to_detection: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlertQuality {
    pub alerts_dir: String,
    pub clinical_alerts: u64,
    pub false_alerts: u64,
    pub patient_days: u64,
    pub false_alerts_per_patient_day: f64,
    pub warnings_per_patient_day: f64,
    pub by_episode_type: BTreeMap<String, EpisodeTypeQuality>,
}

struct AlertRow {
    patient: Uuid,
    first_ms: i64,
    clinical: bool,
}

fn uuid_of(s: Option<&str>) -> Option<Uuid> {
    s.and_then(|s| Uuid::try_parse(s).ok())
}

/// Alerts of `alerts_dir` (one row per alert id: its earliest first fire time).
fn read_alerts(dir: &Path) -> Result<Vec<AlertRow>, EtlError> {
    let files = parquet_files_under(dir)?;
    let Some(df) = read_files(&files)? else {
        return Ok(Vec::new());
    };
    let c = Columns::new(&df, dir.display().to_string());
    let (id, patient, rule, severity, first) = (
        c.str("alert_id")?,
        c.str("patient_id")?,
        c.str("rule_id")?,
        c.str("severity")?,
        c.millis("first_seen_at")?,
    );
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for i in 0..df.height() {
        if !seen.insert(id.get(i).unwrap_or_default().to_string()) {
            continue;
        }
        let (Some(p), Some(f)) = (uuid_of(patient.get(i)), first.get(i)) else {
            continue;
        };
        let clinical = !rule.get(i).unwrap_or_default().starts_with("device_")
            && matches!(severity.get(i), Some("alert") | Some("critical"));
        let warn = severity.get(i) == Some("warn")
            && !rule.get(i).unwrap_or_default().starts_with("device_");
        if clinical || warn {
            out.push(AlertRow {
                patient: p,
                first_ms: f,
                clinical,
            });
        }
    }
    Ok(out)
}

fn patient_days(root: &Path) -> Result<u64, EtlError> {
    let mut days: HashSet<(String, i64)> = HashSet::new();
    for path in parquet_files_under(&root.join(super::layout::BRONZE_MEASUREMENTS))? {
        let f = std::fs::File::open(&path).map_err(|source| EtlError::Io {
            path: path.clone(),
            source,
        })?;
        let df = ParquetReader::new(f)
            .with_columns(Some(vec!["patient_id".into(), "recorded_at".into()]))
            .finish()
            .map_err(|e| EtlError::input(&path, e))?;
        let c = Columns::new(&df, path.display().to_string());
        let (p, t) = (c.str("patient_id")?, c.millis("recorded_at")?);
        for (p, t) in p.iter().zip(t.iter()) {
            if let (Some(p), Some(t)) = (p, t) {
                days.insert((p.to_string(), t.div_euclid(86_400_000)));
            }
        }
    }
    Ok(days.len() as u64)
}

pub fn evaluate(root: &Path, alerts_dir: &str) -> Result<AlertQuality, EtlError> {
    let episodes_path = root
        .join(super::layout::GROUND_TRUTH_DIR)
        .join("episodes.parquet");
    if !episodes_path.exists() {
        return Err(EtlError::MissingInput {
            path: episodes_path,
            hint: "alert quality needs the ground truth `kidjamo simulate` writes".into(),
        });
    }
    let episodes = read_files(std::slice::from_ref(&episodes_path))?.unwrap_or_default();
    let c = Columns::new(&episodes, episodes_path.display().to_string());
    let (patient, kind, start, end) = (
        c.str("patient_id")?,
        c.str("episode_type")?,
        c.millis("start_at")?,
        c.millis("end_at")?,
    );
    let alerts = read_alerts(&root.join(alerts_dir))?;
    let mut clinical_by_patient: HashMap<Uuid, Vec<i64>> = HashMap::new();
    for a in alerts.iter().filter(|a| a.clinical) {
        clinical_by_patient
            .entry(a.patient)
            .or_default()
            .push(a.first_ms);
    }
    for v in clinical_by_patient.values_mut() {
        v.sort_unstable();
    }
    let mut windows: HashMap<Uuid, Vec<(i64, i64)>> = HashMap::new();
    let mut delays: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut by_type: BTreeMap<String, EpisodeTypeQuality> = BTreeMap::new();
    for i in 0..episodes.height() {
        let (Some(p), Some(k), Some(s), Some(e)) = (
            uuid_of(patient.get(i)),
            kind.get(i),
            start.get(i),
            end.get(i),
        ) else {
            continue;
        };
        windows
            .entry(p)
            .or_default()
            .push((s - BEFORE_MS, e + AFTER_MS));
        let q = by_type.entry(k.to_string()).or_default();
        q.episodes += 1;
        let first = clinical_by_patient
            .get(&p)
            .and_then(|v| v.iter().find(|t| **t >= s && **t <= e));
        if let Some(t) = first {
            q.detected += 1;
            delays
                .entry(k.to_string())
                .or_default()
                .push((t - s) as f64 / 60_000.0);
        }
    }
    for (k, q) in by_type.iter_mut() {
        q.sensitivity = if q.episodes == 0 {
            0.0
        } else {
            q.detected as f64 / q.episodes as f64
        };
        if let Some(d) = delays.get_mut(k) {
            d.sort_by(f64::total_cmp);
            q.median_minutes_to_detection = Some(if d.len() % 2 == 1 {
                d[d.len() / 2]
            } else {
                (d[d.len() / 2 - 1] + d[d.len() / 2]) / 2.0
            });
        }
    }
    let in_episode = |a: &AlertRow| {
        windows
            .get(&a.patient)
            .is_some_and(|w| w.iter().any(|(s, e)| a.first_ms >= *s && a.first_ms <= *e))
    };
    let clinical: Vec<&AlertRow> = alerts.iter().filter(|a| a.clinical).collect();
    let false_alerts = clinical.iter().filter(|a| !in_episode(a)).count() as u64;
    let warnings = alerts.iter().filter(|a| !a.clinical).count() as f64;
    let patient_days = patient_days(root)?;
    let per_day = |n: f64| {
        if patient_days == 0 {
            0.0
        } else {
            n / patient_days as f64
        }
    };
    Ok(AlertQuality {
        alerts_dir: alerts_dir.to_string(),
        clinical_alerts: clinical.len() as u64,
        false_alerts,
        patient_days,
        false_alerts_per_patient_day: per_day(false_alerts as f64),
        warnings_per_patient_day: per_day(warnings),
        by_episode_type: by_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alerts::{Alert, AlertStatus};
    use crate::domain::thresholds::Severity;
    use crate::domain::time::UtcMillis;
    use crate::output::tables::{Column, Table};

    const H: i64 = 3_600_000;
    const T0: i64 = 1_772_409_600_000; // 2026-03-02T00:00Z

    fn alert(patient: u128, rule: &str, severity: Severity, first: i64) -> Alert {
        Alert {
            alert_id: Uuid::new_v4(),
            patient_id: Uuid::from_u128(patient),
            device_id: Uuid::from_u128(99),
            rule_id: rule.into(),
            severity,
            title: String::new(),
            message: String::new(),
            first_seen_at: UtcMillis(first),
            last_seen_at: UtcMillis(first),
            vitals_snapshot: Default::default(),
            trigger_conditions: Vec::new(),
            suggested_actions: Vec::new(),
            status: AlertStatus::Open,
            escalation_level: 0,
            occurrences: 1,
        }
    }

    #[test]
    fn sensitivity_false_alerts_and_delay_are_counted_as_documented() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        // Two crises (patients 1 and 2), one fever (patient 1).
        let ids = |v: &[u128]| {
            v.iter()
                .map(|i| Some(Uuid::from_u128(*i).to_string()))
                .collect()
        };
        Table {
            name: "episodes",
            columns: vec![
                Column::Str("episode_id", ids(&[10, 11, 12])),
                Column::Str("patient_id", ids(&[1, 2, 1])),
                Column::Str(
                    "episode_type",
                    vec![
                        Some("vaso_occlusive_crisis".into()),
                        Some("vaso_occlusive_crisis".into()),
                        Some("infection_fever".into()),
                    ],
                ),
                Column::Timestamp(
                    "start_at",
                    vec![Some(T0 + H), Some(T0 + H), Some(T0 + 30 * H)],
                ),
                Column::Timestamp(
                    "end_at",
                    vec![Some(T0 + 5 * H), Some(T0 + 5 * H), Some(T0 + 40 * H)],
                ),
            ],
        }
        .write(root, layout_dir())
        .expect("episodes");
        let alerts = vec![
            alert(1, "pain_critical", Severity::Critical, T0 + H + 20 * 60_000), // detects crisis 1 after 20 min
            alert(1, "spo2_alert", Severity::Alert, T0 + 2 * H), // same crisis, later
            alert(2, "spo2_warn", Severity::Warn, T0 + 2 * H),   // a warning does not detect
            alert(2, "device_battery_low", Severity::Warn, T0 + 3 * H), // nor a device rule
            alert(2, "heart_rate_alert", Severity::Alert, T0 + 20 * H), // outside any episode: false
            alert(1, "temperature_alert", Severity::Alert, T0 + 41 * H), // within 6 h after the fever: not false
        ];
        crate::lake::alerts::write_alerts(
            root,
            "alerts/stream/event_date=2026-03-02/part-x-0.parquet".into(),
            &alerts,
        )
        .expect("alerts");
        // Bronze: patient 1 on two days, patient 2 on one → 3 patient-days.
        let mut w = crate::lake::bronze::BronzeWriter::new(root, "t");
        let source: std::sync::Arc<str> = std::sync::Arc::from("test");
        for (p, t) in [(1u128, T0), (1, T0 + 30 * H), (2, T0), (2, T0 + H)] {
            let m = crate::domain::Measurement {
                schema_version: 1,
                message_id: Uuid::new_v4(),
                patient_id: Uuid::from_u128(p),
                device_id: Uuid::from_u128(99),
                recorded_at: UtcMillis(t),
                vitals: Default::default(),
                device: Default::default(),
                quality_flag: crate::domain::QualityFlag::Ok,
            };
            w.accept(crate::lake::bronze::Received {
                measurement: &m,
                received_at: UtcMillis(t),
                source: &source,
                source_offset: 0,
            })
            .expect("accept");
        }
        w.finish().expect("bronze");

        let q = evaluate(root, "alerts/stream").expect("evaluate");
        assert_eq!(q.patient_days, 3);
        assert_eq!(q.clinical_alerts, 4);
        assert_eq!(q.false_alerts, 1);
        assert!((q.false_alerts_per_patient_day - 1.0 / 3.0).abs() < 1e-12);
        assert!(
            (q.warnings_per_patient_day - 1.0 / 3.0).abs() < 1e-12,
            "device rules are not warnings"
        );
        let crisis = &q.by_episode_type["vaso_occlusive_crisis"];
        assert_eq!((crisis.episodes, crisis.detected), (2, 1));
        assert_eq!(crisis.sensitivity, 0.5);
        assert_eq!(crisis.median_minutes_to_detection, Some(20.0));
        let fever = &q.by_episode_type["infection_fever"];
        assert_eq!(
            (
                fever.episodes,
                fever.detected,
                fever.median_minutes_to_detection
            ),
            (1, 0, None)
        );
        assert!(
            evaluate(&root.join("nowhere"), "alerts/stream").is_err(),
            "missing ground truth is an error"
        );
    }

    fn layout_dir() -> &'static str {
        super::super::layout::GROUND_TRUTH_DIR
    }
}
