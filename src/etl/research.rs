//! The research export (`kidjamo etl export research --month M`): one row per patient and
//! month, pseudonymised with a key of its own (so two exports, or an export and Gold, cannot
//! be joined), ages in bands, dates coarsened to the month, and k-anonymity on the
//! quasi-identifiers (age band, sex, genotype, country): a row whose combination is shared by
//! fewer than k rows is suppressed and counted. A `metadata.json` describes every column.
//!
//! The earlier platform used `"ANON_" + MD5(patient_id)[..8]`, unsalted, and right-closed age
//! bins that put 18-year-olds in "0-17" (reference §5.4); none of that here.

use super::commit::PartitionWriter;
use super::frame::{partition_files, read_files};
use super::keys::PatientKeyer;
use super::periodic::Period;
use super::silver::Reference;
use super::window::{self, DayFrame};
use super::EtlError;
use crate::lake::layout;
use crate::output::tables::write_parquet;
use crate::output::{HashedFile, WrittenFile};
use chrono::NaiveDate;
use polars::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

/// Half-open age bands [lo, hi) in years.
pub const AGE_BANDS: [(u32, u32, &str); 9] = [
    (0, 5, "0-4"),
    (5, 10, "5-9"),
    (10, 15, "10-14"),
    (15, 20, "15-19"),
    (20, 30, "20-29"),
    (30, 40, "30-39"),
    (40, 50, "40-49"),
    (50, 60, "50-59"),
    (60, 200, "60+"),
];

pub const QUASI_IDENTIFIERS: [&str; 4] = ["age_band", "sex", "genotype", "country"];

pub fn age_band(birth: NaiveDate, on: NaiveDate) -> &'static str {
    let years = on.years_since(birth).unwrap_or(0);
    AGE_BANDS
        .iter()
        .find(|(lo, hi, _)| years >= *lo && years < *hi)
        .map_or("60+", |b| b.2)
}

pub struct ResearchJob<'a> {
    pub root: &'a Path,
    pub month: Period,
    pub k: usize,
    /// The Gold key, to find each `patient_key`'s reference row.
    pub gold_keyer: &'a PatientKeyer,
    /// The export's own key.
    pub export_keyer: &'a PatientKeyer,
    pub reference: &'a Reference,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnDoc {
    pub name: &'static str,
    pub r#type: &'static str,
    pub description: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResearchReport {
    pub export_id: String,
    pub month: String,
    pub k: usize,
    pub quasi_identifiers: Vec<&'static str>,
    pub rows_before_suppression: usize,
    pub rows_suppressed: usize,
    pub rows: usize,
    pub pseudonym: &'static str,
    pub export_key_id: String,
    pub columns: Vec<ColumnDoc>,
    pub outputs: Vec<WrittenFile>,
}

const COLUMNS: [(&str, &str, &str); 16] = [
    ("research_id", "string", "HMAC-SHA256 of the Gold patient_key with this export's own key; stable within the export only"),
    ("month", "string", "calendar month of the data, YYYY-MM (no finer date)"),
    ("age_band", "string", "age in years on the first day of the month, banded 0-4, 5-9, 10-14, 15-19, 20-29, 30-39, 40-49, 50-59, 60+"),
    ("sex", "string", "F or M"),
    ("genotype", "string", "SS, SC, AS, Sβ0 or Sβ+"),
    ("country", "string", "country of residence"),
    ("days_monitored", "int64", "days of the month with at least one sample"),
    ("compliance_pct", "float64", "100 × days_monitored / days in the month"),
    ("completeness", "float64", "samples / expected samples over the month"),
    ("spo2_mean", "float64", "mean SpO₂ (%) over trend-eligible samples"),
    ("spo2_min", "float64", "lowest daily minimum SpO₂ (%)"),
    ("heart_rate_mean", "float64", "mean heart rate (bpm) over trend-eligible samples"),
    ("temperature_max", "float64", "highest temperature (°C)"),
    ("hydration_mean", "float64", "mean hydration (%)"),
    ("alerts_critical", "int64", "critical alerts first seen in the month"),
    ("days_with_critical_alert", "int64", "days of the month with a critical alert"),
];

/// The lake folders an export for `month` reads (see `daily::inputs`).
pub fn inputs(month: Period) -> Vec<String> {
    let mut out = vec![layout::REFERENCE_DIR.to_string()];
    out.extend(super::periodic::inputs(month));
    out
}

pub fn export(job: &ResearchJob<'_>, expected_interval_s: f64) -> Result<ResearchReport, EtlError> {
    let days = job.month.days();
    let first = *days
        .first()
        .ok_or_else(|| EtlError::Argument("empty month".into()))?;
    let mut frames = Vec::new();
    for (i, day) in days.iter().enumerate() {
        let dir = job
            .root
            .join(layout::day_partition(&layout::gold("patient_daily"), *day));
        if let Some(frame) = read_files(&partition_files(&dir)?)? {
            frames.push(DayFrame {
                day_index: i as i64,
                frame,
            });
        }
    }
    if frames.is_empty() {
        return Err(EtlError::MissingInput {
            path: job.root.join(layout::gold("patient_daily")),
            hint: format!(
                "no patient_daily partition inside {}; run `kidjamo etl daily` for its days first",
                job.month.label()
            ),
        });
    }
    let by_key: HashMap<String, &super::silver::ReferencePatient> = job
        .reference
        .iter()
        .map(|(id, p)| (job.gold_keyer.key(id), p))
        .collect();
    let month_days = days.len() as i64;
    let expected =
        month_days as f64 * super::gold_daily::expected_samples_per_day(expected_interval_s) as f64;
    struct Out {
        research_id: String,
        qi: [String; 4],
        w: window::PatientWindow,
    }
    let mut rows: Vec<Out> = Vec::new();
    for w in window::summarise(&frames)? {
        let Some(p) = by_key.get(&w.patient_key) else {
            return Err(EtlError::Schema {
                input: "patient_daily".into(),
                message: "a patient_key matches no patient of reference/patients.parquet \
                          under the configured key (was Gold made with another key?)"
                    .into(),
            });
        };
        rows.push(Out {
            research_id: job.export_keyer.key_text(&w.patient_key),
            qi: [
                age_band(p.birth_date, first).to_string(),
                p.sex.clone(),
                p.genotype.clone(),
                p.country.clone(),
            ],
            w,
        });
    }
    let before = rows.len();
    let mut class_size: BTreeMap<[String; 4], usize> = BTreeMap::new();
    for r in &rows {
        *class_size.entry(r.qi.clone()).or_default() += 1;
    }
    rows.retain(|r| class_size[&r.qi] >= job.k);
    // Sorted by pseudonym: the order says nothing about the patients.
    rows.sort_by(|a, b| a.research_id.cmp(&b.research_id));
    let label = job.month.label();
    let s = |f: &dyn Fn(&Out) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let o = |f: &dyn Fn(&Out) -> Option<f64>| rows.iter().map(f).collect::<Vec<Option<f64>>>();
    let n = |f: &dyn Fn(&Out) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    let df = DataFrame::new_infer_height(vec![
        Column::new("research_id".into(), s(&|r| r.research_id.clone())),
        Column::new("month".into(), vec![label.clone(); rows.len()]),
        Column::new("age_band".into(), s(&|r| r.qi[0].clone())),
        Column::new("sex".into(), s(&|r| r.qi[1].clone())),
        Column::new("genotype".into(), s(&|r| r.qi[2].clone())),
        Column::new("country".into(), s(&|r| r.qi[3].clone())),
        Column::new("days_monitored".into(), n(&|r| r.w.days_with_data)),
        Column::new(
            "compliance_pct".into(),
            o(&|r| Some(100.0 * r.w.days_with_data as f64 / month_days as f64)),
        ),
        Column::new(
            "completeness".into(),
            o(&|r| Some((r.w.samples as f64 / expected.max(1.0)).min(1.0))),
        ),
        Column::new("spo2_mean".into(), o(&|r| r.w.spo2_mean())),
        Column::new("spo2_min".into(), o(&|r| r.w.spo2_min)),
        Column::new("heart_rate_mean".into(), o(&|r| r.w.heart_rate_mean())),
        Column::new("temperature_max".into(), o(&|r| r.w.temperature_max)),
        Column::new("hydration_mean".into(), o(&|r| r.w.hydration_mean())),
        Column::new("alerts_critical".into(), n(&|r| r.w.alerts[3])),
        Column::new(
            "days_with_critical_alert".into(),
            n(&|r| r.w.days_with_critical_alert),
        ),
    ])
    .map_err(|e| EtlError::polars("research export", e))?;

    let export_id = format!(
        "research-{label}-{}",
        &hex::encode(Sha256::digest(job.export_keyer.key_id().as_bytes()))[..12]
    );
    let mut writer = PartitionWriter::create(job.root, &export_id)?;
    let partition = format!("exports/research/month={label}/export={export_id}");
    writer.replace(&partition)?;
    let staging = writer.staging().to_path_buf();
    let height = df.height();
    let mut csv = HashedFile::create(&staging, format!("{partition}/data.csv"))?;
    csv.write_all(&to_csv(&df)).map_err(|source| EtlError::Io {
        path: staging.join(&partition),
        source,
    })?;
    writer.add(csv.finish(height as u64)?);
    writer.add(write_parquet(
        &staging,
        format!("{partition}/data.parquet"),
        df,
    )?);
    let mut report = ResearchReport {
        export_id: export_id.clone(),
        month: label,
        k: job.k,
        quasi_identifiers: QUASI_IDENTIFIERS.to_vec(),
        rows_before_suppression: before,
        rows_suppressed: before - height,
        rows: height,
        pseudonym:
            "research_id = HMAC-SHA256(export key, patient_key); the export key is not stored",
        export_key_id: job.export_keyer.key_id().to_string(),
        columns: COLUMNS
            .iter()
            .map(|(name, t, d)| ColumnDoc {
                name,
                r#type: t,
                description: d,
            })
            .collect(),
        outputs: Vec::new(),
    };
    let mut meta = HashedFile::create(&staging, format!("{partition}/metadata.json"))?;
    let mut json =
        serde_json::to_vec_pretty(&report).map_err(|e| EtlError::Internal(e.to_string()))?;
    json.push(b'\n');
    meta.write_all(&json).map_err(|source| EtlError::Io {
        path: staging.join(&partition),
        source,
    })?;
    writer.add(meta.finish(0)?);
    report.outputs = writer.files().to_vec();
    let mut manifest =
        serde_json::to_vec_pretty(&report).map_err(|e| EtlError::Internal(e.to_string()))?;
    manifest.push(b'\n');
    let m = writer.commit(&layout::manifest(&export_id), &manifest)?;
    report.outputs.push(m);
    Ok(report)
}

/// RFC 4180 CSV of a table of strings and numbers; nulls are empty fields.
fn to_csv(df: &DataFrame) -> Vec<u8> {
    let mut out = Vec::new();
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    out.extend_from_slice(names.join(",").as_bytes());
    out.extend_from_slice(b"\r\n");
    for i in 0..df.height() {
        let fields: Vec<String> = df
            .columns()
            .iter()
            .map(|c| match c.get(i) {
                Ok(AnyValue::Null) | Err(_) => String::new(),
                Ok(AnyValue::String(s)) => format!("\"{}\"", s.replace('"', "\"\"")),
                Ok(AnyValue::StringOwned(s)) => format!("\"{}\"", s.replace('"', "\"\"")),
                Ok(v) => v.to_string(),
            })
            .collect();
        out.extend_from_slice(fields.join(",").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}
