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

use crate::etl::frame::{read_files, Columns};
use crate::etl::EtlError;
use polars::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
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

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn uuid_of(s: Option<&str>) -> Option<Uuid> {
    s.and_then(|s| Uuid::try_parse(s).ok())
}

/// Alerts of `alerts_dir` (one row per alert id: its earliest first fire time).
fn read_alerts(dir: &Path) -> Result<Vec<AlertRow>, EtlError> {
    let files = files_under(dir);
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
    for path in files_under(&root.join(super::layout::BRONZE_MEASUREMENTS)) {
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
    let episodes = read_files(&[episodes_path.clone()])?.unwrap_or_default();
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
