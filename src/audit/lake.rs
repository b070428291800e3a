//! The lake's side of an audit: data quality per day from Gold (`quality_daily`,
//! `patient_daily`, `alerts_daily`) and the pipeline runs recorded in `_runs/`.

use crate::domain::QualityFlag;
use crate::etl::frame::{partition_files, read_files, Columns};
use crate::etl::EtlError;
use crate::lake::layout;
use chrono::NaiveDate;
use polars::prelude::ChunkAgg;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct DayQuality {
    pub date: NaiveDate,
    pub patients: usize,
    pub devices: usize,
    pub samples: i64,
    /// Mean of the patients' completeness, 0–1.
    pub completeness_mean: Option<f64>,
    /// Samples per quality flag.
    pub flags: BTreeMap<String, i64>,
    /// Alerts first seen that day, by severity.
    pub alerts: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PipelineRun {
    pub run_id: String,
    pub command: String,
    /// The day, week or month the run covered (empty for simulations).
    pub covers: String,
    pub counts: BTreeMap<String, u64>,
    pub outputs: usize,
}

fn read_day(
    root: &Path,
    table: &str,
    day: NaiveDate,
) -> Result<Option<polars::prelude::DataFrame>, EtlError> {
    let dir = root.join(layout::day_partition(&layout::gold(table), day));
    read_files(&partition_files(&dir)?)
}

pub fn quality_by_day(root: &Path, days: &[NaiveDate]) -> Result<Vec<DayQuality>, EtlError> {
    let mut out = Vec::new();
    for &date in days {
        let mut q = DayQuality {
            date,
            ..DayQuality::default()
        };
        let mut seen = false;
        if let Some(df) = read_day(root, "patient_daily", date)? {
            seen = true;
            let c = Columns::new(&df, format!("gold/patient_daily {date}"));
            let completeness = c.f64("completeness")?;
            q.patients = df.height();
            q.samples = c.i64("samples")?.sum().unwrap_or(0);
            q.completeness_mean = completeness.mean();
        }
        if let Some(df) = read_day(root, "quality_daily", date)? {
            seen = true;
            let c = Columns::new(&df, format!("gold/quality_daily {date}"));
            q.devices = df.height();
            for flag in QualityFlag::ALL {
                let n = c.i64(&format!("flag_{}", flag.code()))?.sum().unwrap_or(0);
                q.flags.insert(flag.code().to_string(), n);
            }
        }
        if let Some(df) = read_day(root, "alerts_daily", date)? {
            seen = true;
            let c = Columns::new(&df, format!("gold/alerts_daily {date}"));
            let (severity, opened) = (c.str("severity")?, c.bool("opened_this_day")?);
            for (s, o) in severity.iter().zip(opened.iter()) {
                if let (Some(s), Some(true)) = (s, o) {
                    *q.alerts.entry(s.to_string()).or_insert(0) += 1;
                }
            }
        }
        if seen {
            out.push(q);
        }
    }
    Ok(out)
}

/// Runs whose day or period falls in [since, until), and simulations (which cover no day).
pub fn pipeline_runs(
    root: &Path,
    since: NaiveDate,
    until: NaiveDate,
) -> Result<Vec<PipelineRun>, EtlError> {
    let dir = root.join(layout::RUNS_DIR);
    let mut runs = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(runs);
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read(&path).map_err(|source| EtlError::Io {
            path: path.clone(),
            source,
        })?;
        let v: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| EtlError::input(&path, e))?;
        let covers = v["date"]
            .as_str()
            .or(v["period"].as_str())
            .or(v["month"].as_str())
            .unwrap_or("")
            .to_string();
        let in_range = match NaiveDate::parse_from_str(&covers, "%Y-%m-%d") {
            Ok(d) => d >= since && d < until,
            // Weeks and months: kept when their label starts within the range's years; the
            // day-level runs are what an audit reconciles.
            Err(_) => true,
        };
        if !in_range {
            continue;
        }
        let counts = v["counts"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, n)| n.as_u64().map(|n| (k.clone(), n)))
                    .collect()
            })
            .unwrap_or_default();
        runs.push(PipelineRun {
            run_id: v["run_id"]
                .as_str()
                .or(v["export_id"].as_str())
                .unwrap_or("")
                .to_string(),
            command: v["command"]
                .as_str()
                .unwrap_or("etl export research")
                .to_string(),
            covers,
            counts,
            outputs: v["outputs"].as_array().map_or(0, Vec::len),
        });
    }
    Ok(runs)
}
