//! The daily Gold tables (SPEC §6), from one day of Silver and that day's batch alerts.
//! Patients appear as `patient_key` only. Grain and columns are documented in the README.
//!
//! Corrections to the earlier platform (reference §5.1, §9.2): counts are distinct by
//! construction (Silver is deduplicated), completeness uses the real expected sampling rate,
//! vital statistics use trend-eligible samples only, time is event time.

use super::batch_alerts::PatientRanges;
use super::frame::Columns;
use super::keys::PatientKeyer;
use super::patient_summary::{self, PatientDay};
use super::rows::Rows;
use super::silver::Reference;
use super::EtlError;
use crate::domain::alerts::Alert;
use crate::domain::thresholds::{Severity, Thresholds};
use crate::domain::time::{UtcMillis, MS_PER_DAY};
use crate::domain::QualityFlag;
use polars::prelude::*;
use std::collections::HashMap;
use uuid::Uuid;

/// The vitals summarised per day: (Silver column, prefix in Gold).
pub const VITAL_STATS: [(&str, &str); 5] = [
    ("spo2_pct", "spo2"),
    ("heart_rate_bpm", "heart_rate"),
    ("respiratory_rate_min", "respiratory_rate"),
    ("temperature_c", "temperature"),
    ("hydration_pct", "hydration"),
];

pub const TIER_LEVELS: [&str; 4] = ["normal", "vigilance", "alert", "emergency"];

const SEVERITIES: [Severity; 4] = [
    Severity::Info,
    Severity::Warn,
    Severity::Alert,
    Severity::Critical,
];

#[derive(Debug, Clone, Copy)]
pub struct DaySettings {
    pub date: chrono::NaiveDate,
    /// The sampling interval devices are configured for: the denominator of completeness.
    pub expected_interval_s: f64,
}

/// Samples a device configured for `interval_s` sends in a day: completeness's denominator.
pub fn expected_samples_per_day(interval_s: f64) -> i64 {
    (86_400.0 / interval_s).round() as i64
}

impl DaySettings {
    pub fn expected_samples(&self) -> i64 {
        expected_samples_per_day(self.expected_interval_s)
    }

    fn completeness(&self, samples: i64) -> f64 {
        let expected = self.expected_samples().max(1);
        samples.min(expected) as f64 / expected as f64
    }
}

pub struct DailyGold {
    pub patient_daily: DataFrame,
    pub quality_daily: DataFrame,
    pub alerts_daily: DataFrame,
}

fn perr(table: &'static str) -> impl Fn(PolarsError) -> EtlError {
    move |e| EtlError::polars(table, e)
}

/// The daily Gold tables of `silver`, whose patient ranges (`batch_alerts::patient_ranges`)
/// are `ranges`.
pub fn build(
    silver: &DataFrame,
    ranges: &PatientRanges,
    alerts: &[Alert],
    reference: &Reference,
    thresholds: &Thresholds,
    keyer: &PatientKeyer,
    day: DaySettings,
) -> Result<DailyGold, EtlError> {
    let step = super::step_timer("gold");
    let patient_daily = patient_daily(silver, ranges, alerts, reference, thresholds, keyer, day)?;
    step("patient_daily");
    let quality_daily = quality_daily(silver, ranges, keyer, thresholds, day)?;
    step("quality_daily");
    let alerts_daily = alerts_daily(alerts, keyer, day)?;
    step("alerts_daily");
    Ok(DailyGold {
        patient_daily,
        quality_daily,
        alerts_daily,
    })
}

fn patient_daily(
    silver: &DataFrame,
    ranges: &PatientRanges,
    alerts: &[Alert],
    reference: &Reference,
    thresholds: &Thresholds,
    keyer: &PatientKeyer,
    day: DaySettings,
) -> Result<DataFrame, EtlError> {
    let max_gap_ms = (2.0 * day.expected_interval_s * 1000.0) as i64;
    let days = patient_summary::summarise(
        silver,
        ranges,
        thresholds.device.signal_poor_pct,
        max_gap_ms,
    )?;
    let ids: Vec<&str> = ranges.iter().map(|(id, _)| id.as_str()).collect();
    let mut opened: HashMap<Uuid, [i64; 4]> = HashMap::new();
    let day_start = UtcMillis::from_date(day.date).0;
    for a in alerts {
        if (day_start..day_start + MS_PER_DAY).contains(&a.first_seen_at.0) {
            let slot = SEVERITIES
                .iter()
                .position(|s| *s == a.severity)
                .unwrap_or(0);
            opened.entry(a.patient_id).or_default()[slot] += 1;
        }
    }
    let uuids: Vec<Uuid> = ids
        .iter()
        .map(|s| Uuid::try_parse(s).unwrap_or_default())
        .collect();
    let minutes_per_sample = day.expected_interval_s / 60.0;
    let f64s = |name: String, f: &dyn Fn(&PatientDay) -> Option<f64>| {
        Column::new(name.into(), days.iter().map(f).collect::<Vec<_>>())
    };
    let mut columns = vec![
        Column::new(
            "patient_key".into(),
            uuids.iter().map(|u| keyer.key(u)).collect::<Vec<_>>(),
        ),
        Column::new(
            "genotype".into(),
            uuids
                .iter()
                .map(|u| reference.get(u).map(|p| p.genotype.clone()))
                .collect::<Vec<_>>(),
        ),
        // Silver's age group is a code in memory: Gold has its id.
        Column::new(
            "age_group".into(),
            days.iter()
                .map(|d| {
                    d.age_group
                        .and_then(|g| super::silver::age_group_from_code(thresholds, g))
                })
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "samples".into(),
            days.iter().map(|d| d.samples).collect::<Vec<_>>(),
        ),
        Column::new(
            "expected_samples".into(),
            vec![day.expected_samples(); days.len()],
        ),
        Column::new(
            "completeness".into(),
            days.iter()
                .map(|d| day.completeness(d.samples))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "trend_eligible_samples".into(),
            days.iter()
                .map(|d| d.trend_eligible_samples)
                .collect::<Vec<_>>(),
        ),
    ];
    for (k, (_, prefix)) in VITAL_STATS.iter().enumerate() {
        columns.extend([
            f64s(format!("{prefix}_min"), &|d| d.vitals[k].min),
            f64s(format!("{prefix}_mean"), &|d| d.vitals[k].mean),
            f64s(format!("{prefix}_p5"), &|d| d.vitals[k].p5),
            f64s(format!("{prefix}_p95"), &|d| d.vitals[k].p95),
            f64s(format!("{prefix}_max"), &|d| d.vitals[k].max),
        ]);
    }
    columns.push(f64s("heart_rate_variability".into(), &|d| d.hr_variability));
    for (level, name) in TIER_LEVELS.iter().enumerate() {
        columns.push(Column::new(
            format!("minutes_{name}").into(),
            days.iter()
                .map(|d| d.tier_samples[level] as f64 * minutes_per_sample)
                .collect::<Vec<f64>>(),
        ));
    }
    for (slot, s) in SEVERITIES.iter().enumerate() {
        columns.push(Column::new(
            format!("alerts_{}", s.as_str()).into(),
            uuids
                .iter()
                .map(|u| opened.get(u).map_or(0, |o| o[slot]))
                .collect::<Vec<i64>>(),
        ));
    }
    columns.extend([
        Column::new(
            "battery_min".into(),
            days.iter().map(|d| d.battery_min).collect::<Vec<_>>(),
        ),
        f64s("battery_mean".into(), &|d| d.battery_mean),
        f64s("signal_mean".into(), &|d| d.signal_mean),
        f64s("signal_poor_share".into(), &|d| d.signal_poor_share),
    ]);
    DataFrame::new(days.len(), columns)
        .and_then(|d| d.sort(["patient_key"], SortMultipleOptions::default()))
        .map_err(perr("patient_daily"))
}

/// One device's day, as `quality_daily` counts it.
struct DeviceDay<'a> {
    device_id: &'a str,
    /// The patient of the device's first row in Silver order.
    patient_id: &'a str,
    samples: i64,
    /// Rows per flag, in `QualityFlag::ALL` order.
    flags: [i64; QualityFlag::ALL.len()],
    needs_review: i64,
    /// Event times, ascending within each patient's run.
    times: Vec<i64>,
}

/// Every device's day, sorted by device id: one pass over Silver's patient runs. A patient's
/// rows hold a device or two, so the device's entry is looked up when the device changes,
/// not on every row (a group-by hashed each of ten million ids, then a map of times hashed
/// them again).
fn device_days<'a>(
    silver: &'a DataFrame,
    ranges: &'a PatientRanges,
) -> Result<Vec<DeviceDay<'a>>, EtlError> {
    let c = Columns::new(silver, "Silver");
    let device = c.str("device_id")?;
    if device.null_count() > 0 {
        return Err(EtlError::Internal(
            "Silver has rows without a device_id".into(),
        ));
    }
    let (device, recorded) = (Rows::new(device), Rows::new(c.millis("recorded_at")?));
    let quality = Rows::new(c.str("quality_flag")?);
    let severity = Rows::new(c.i16("quality_severity")?);
    let codes = QualityFlag::ALL.map(QualityFlag::code);
    let mut days: Vec<DeviceDay<'a>> = Vec::new();
    let mut index: crate::id_hash::FastMap<&'a str, usize> = Default::default();
    for (patient_id, range) in ranges {
        let mut current: Option<(&str, usize)> = None;
        for i in range.clone() {
            let d = device.text(i).unwrap_or_default();
            let at = match current {
                Some((last, at)) if last == d => at,
                _ => {
                    let at = *index.entry(d).or_insert_with(|| {
                        days.push(DeviceDay {
                            device_id: d,
                            patient_id,
                            samples: 0,
                            flags: [0; QualityFlag::ALL.len()],
                            needs_review: 0,
                            times: Vec::new(),
                        });
                        days.len() - 1
                    });
                    current = Some((d, at));
                    at
                }
            };
            let day = &mut days[at];
            day.samples += 1;
            if let Some(k) = quality
                .text(i)
                .and_then(|q| codes.iter().position(|c| *c == q))
            {
                day.flags[k] += 1;
            }
            if severity.get(i) == Some(3) {
                day.needs_review += 1;
            }
            if let Some(t) = recorded.get(i) {
                day.times.push(t);
            }
        }
    }
    days.sort_unstable_by(|a, b| a.device_id.cmp(b.device_id));
    Ok(days)
}

fn quality_daily(
    silver: &DataFrame,
    ranges: &PatientRanges,
    keyer: &PatientKeyer,
    thresholds: &Thresholds,
    day: DaySettings,
) -> Result<DataFrame, EtlError> {
    let mut devices = device_days(silver, ranges)?;

    // Gaps: silences longer than the device-silent rule, the day's edges included.
    let day_start = UtcMillis::from_date(day.date).0;
    let day_end = day_start + MS_PER_DAY;
    let gap_ms = thresholds.device.silent_after_s as i64 * 1000;
    let mut gaps = Vec::with_capacity(devices.len());
    let mut longest = Vec::with_capacity(devices.len());
    for d in &mut devices {
        let mut t = std::mem::take(&mut d.times);
        t.sort_unstable();
        let mut edges = vec![day_start];
        edges.extend(t);
        edges.push(day_end);
        let silences: Vec<i64> = edges
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|g| *g > gap_ms)
            .collect();
        gaps.push(silences.len() as i64);
        longest.push(silences.iter().max().copied().unwrap_or(0) as f64 / 1000.0);
    }
    let keys: Vec<String> = devices
        .iter()
        .map(|d| keyer.key(&Uuid::try_parse(d.patient_id).unwrap_or_default()))
        .collect();
    let mut columns = vec![
        Column::new(
            "device_id".into(),
            devices.iter().map(|d| d.device_id).collect::<Vec<_>>(),
        ),
        Column::new("patient_key".into(), keys),
        Column::new(
            "samples".into(),
            devices.iter().map(|d| d.samples).collect::<Vec<_>>(),
        ),
        Column::new(
            "expected_samples".into(),
            vec![day.expected_samples(); devices.len()],
        ),
        Column::new(
            "completeness".into(),
            devices
                .iter()
                .map(|d| day.completeness(d.samples))
                .collect::<Vec<_>>(),
        ),
        Column::new("gaps".into(), gaps),
        Column::new("longest_gap_s".into(), longest),
        Column::new(
            "needs_review".into(),
            devices.iter().map(|d| d.needs_review).collect::<Vec<_>>(),
        ),
    ];
    for (k, flag) in QualityFlag::ALL.iter().enumerate() {
        columns.push(Column::new(
            format!("flag_{}", flag.code()).into(),
            devices.iter().map(|d| d.flags[k]).collect::<Vec<_>>(),
        ));
    }
    DataFrame::new(devices.len(), columns).map_err(perr("quality_daily"))
}

fn alerts_daily(
    alerts: &[Alert],
    keyer: &PatientKeyer,
    day: DaySettings,
) -> Result<DataFrame, EtlError> {
    let day_start = UtcMillis::from_date(day.date).0;
    let mut rows: Vec<(String, &Alert)> = alerts
        .iter()
        .map(|a| (keyer.key(&a.patient_id), a))
        .collect();
    rows.sort_by(|a, b| {
        (&a.0, a.1.first_seen_at, &a.1.rule_id).cmp(&(&b.0, b.1.first_seen_at, &b.1.rule_id))
    });
    let str_col = |name: &str, f: &dyn Fn(&(String, &Alert)) -> String| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<String>>())
    };
    let time_col = |name: &str, f: &dyn Fn(&Alert) -> i64| {
        super::frame::time_column(name, rows.iter().map(|r| f(r.1)).collect())
    };
    DataFrame::new_infer_height(vec![
        str_col("patient_key", &|r| r.0.clone()),
        str_col("rule_id", &|r| r.1.rule_id.clone()),
        str_col("severity", &|r| r.1.severity.as_str().to_string()),
        str_col("status", &|r| {
            crate::lake::alerts::status_str(r.1.status).to_string()
        }),
        time_col("first_seen_at", &|a| a.first_seen_at.0),
        time_col("last_seen_at", &|a| a.last_seen_at.0),
        Column::new(
            "opened_this_day".into(),
            rows.iter()
                .map(|r| (day_start..day_start + MS_PER_DAY).contains(&r.1.first_seen_at.0))
                .collect::<Vec<bool>>(),
        ),
        Column::new(
            "duration_s".into(),
            rows.iter()
                .map(|r| (r.1.last_seen_at.0 - r.1.first_seen_at.0) as f64 / 1000.0)
                .collect::<Vec<f64>>(),
        ),
        Column::new(
            "occurrences".into(),
            rows.iter()
                .map(|r| i64::from(r.1.occurrences))
                .collect::<Vec<i64>>(),
        ),
    ])
    .map_err(perr("alerts_daily"))
}
