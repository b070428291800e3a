//! `kidjamo etl weekly` and `etl monthly`: Gold over Gold. `patient_weekly` summarises the
//! seven days of an ISO week (Monday to Sunday, UTC) of `patient_daily`; `cohort_monthly` a
//! calendar month. Each run replaces its one partition atomically and writes a manifest.

use super::cohort::cohort_monthly;
use super::commit::PartitionWriter;
use super::frame::{partition_files, read_files};
use super::window::{self, DayFrame};
use super::EtlError;
use crate::lake::layout;
use crate::output::tables::write_parquet;
use crate::output::WrittenFile;
use chrono::{Datelike, NaiveDate, Weekday};
use polars::prelude::DataFrame;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// ISO year and week.
    Week(i32, u32),
    Month(i32, u32),
}

impl Period {
    /// `2026-W11`.
    pub fn parse_week(text: &str) -> Result<Period, EtlError> {
        let bad =
            || EtlError::Argument(format!("--week {text:?}: expected YYYY-Www, e.g. 2026-W11"));
        let (y, w) = text.split_once("-W").ok_or_else(bad)?;
        let (y, w): (i32, u32) = (y.parse().map_err(|_| bad())?, w.parse().map_err(|_| bad())?);
        NaiveDate::from_isoywd_opt(y, w, Weekday::Mon).ok_or_else(bad)?;
        Ok(Period::Week(y, w))
    }

    /// `2026-03`.
    pub fn parse_month(text: &str) -> Result<Period, EtlError> {
        let bad =
            || EtlError::Argument(format!("--month {text:?}: expected YYYY-MM, e.g. 2026-03"));
        let (y, m) = text.split_once('-').ok_or_else(bad)?;
        let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad)?;
        Ok(Period::Month(y, m))
    }

    pub fn label(&self) -> String {
        match self {
            Period::Week(y, w) => format!("{y}-W{w:02}"),
            Period::Month(y, m) => format!("{y}-{m:02}"),
        }
    }

    pub fn days(&self) -> Vec<NaiveDate> {
        match *self {
            Period::Week(y, w) => {
                let monday = NaiveDate::from_isoywd_opt(y, w, Weekday::Mon).unwrap_or_default();
                monday.iter_days().take(7).collect()
            }
            Period::Month(y, m) => {
                let first = NaiveDate::from_ymd_opt(y, m, 1).unwrap_or_default();
                first.iter_days().take_while(|d| d.month() == m).collect()
            }
        }
    }

    fn partition(&self, table: &str) -> String {
        match self {
            Period::Week(..) => format!("{}/week={}", layout::gold(table), self.label()),
            Period::Month(..) => format!("{}/month={}", layout::gold(table), self.label()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PeriodReport {
    pub run_id: String,
    pub command: String,
    pub period: String,
    pub kidjamo_version: String,
    pub inputs: Vec<String>,
    pub days_with_input: usize,
    pub counts: BTreeMap<String, u64>,
    pub outputs: Vec<WrittenFile>,
}

/// The lake folders a run for `period` reads (see `daily::inputs`).
pub fn inputs(period: Period) -> Vec<String> {
    period
        .days()
        .into_iter()
        .map(|d| layout::day_partition(&layout::gold("patient_daily"), d))
        .collect()
}

/// The days of `patient_daily` inside the period, with their index.
fn daily_frames(root: &Path, period: Period) -> Result<(Vec<DayFrame>, Vec<String>), EtlError> {
    let mut frames = Vec::new();
    let mut inputs = Vec::new();
    for (i, day) in period.days().into_iter().enumerate() {
        let dir = root.join(layout::day_partition(&layout::gold("patient_daily"), day));
        let files = partition_files(&dir)?;
        for f in &files {
            inputs.push(
                f.strip_prefix(root)
                    .unwrap_or(f)
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        if let Some(frame) = read_files(&files)? {
            frames.push(DayFrame {
                day_index: i as i64,
                frame,
            });
        }
    }
    Ok((frames, inputs))
}

/// Builds and commits the period's table (`patient_weekly` or `cohort_monthly`).
pub fn run(
    root: &Path,
    period: Period,
    expected_interval_s: f64,
) -> Result<PeriodReport, EtlError> {
    let (frames, inputs) = daily_frames(root, period)?;
    if frames.is_empty() {
        return Err(EtlError::MissingInput {
            path: root.join(layout::gold("patient_daily")),
            hint: format!(
                "no patient_daily partition inside {}; run `kidjamo etl daily` for its days first",
                period.label()
            ),
        });
    }
    let days = period.days().len() as i64;
    let expected_per_day = super::gold_daily::expected_samples_per_day(expected_interval_s);
    let (table, df): (&str, DataFrame) = match period {
        Period::Week(..) => (
            "patient_weekly",
            window::to_frame(&window::summarise(&frames)?, days, expected_per_day, true)?,
        ),
        Period::Month(..) => ("cohort_monthly", cohort_monthly(&frames, days)?),
    };
    let mut h = Sha256::new();
    for i in &inputs {
        h.update(i.as_bytes());
    }
    let run_id = format!(
        "etl-{}-{}-{}",
        if table == "patient_weekly" {
            "weekly"
        } else {
            "monthly"
        },
        period.label(),
        &hex::encode(h.finalize())[..12]
    );
    let mut writer = PartitionWriter::create(root, &run_id)?;
    let partition = period.partition(table);
    writer.replace(&partition)?;
    let rows = df.height() as u64;
    let file = write_parquet(
        writer.staging(),
        layout::batch_part(&partition, &run_id),
        df,
    )?;
    writer.add(file);
    let mut report = PeriodReport {
        run_id: run_id.clone(),
        command: format!(
            "etl {}",
            if table == "patient_weekly" {
                "weekly"
            } else {
                "monthly"
            }
        ),
        period: period.label(),
        kidjamo_version: env!("CARGO_PKG_VERSION").into(),
        days_with_input: frames.len(),
        inputs,
        counts: BTreeMap::from([(format!("rows.gold.{table}"), rows)]),
        outputs: writer.files().to_vec(),
    };
    let mut json =
        serde_json::to_vec_pretty(&report).map_err(|e| EtlError::Internal(e.to_string()))?;
    json.push(b'\n');
    let manifest = writer.commit(&layout::manifest(&run_id), &json)?;
    report.outputs.push(manifest);
    Ok(report)
}
