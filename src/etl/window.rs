//! Per-patient summaries over several days of `patient_daily`: `features_ml` (the 7 days ending
//! on a date) and `patient_weekly` (an ISO week). Days are real calendar days: a day without
//! data counts in the denominators (completeness, compliance) — the earlier platform counted
//! rows, not time (reference §9.2).

use super::frame::Columns;
use super::EtlError;
use polars::prelude::*;
use std::collections::BTreeMap;

/// One day of `patient_daily`, with its position in the window (0 = first day).
pub struct DayFrame {
    pub day_index: i64,
    pub frame: DataFrame,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientWindow {
    pub patient_key: String,
    pub genotype: Option<String>,
    /// Age group on the patient's last day with data in the window.
    pub age_group: Option<String>,
    pub days_with_data: i64,
    pub samples: i64,
    spo2: Weighted,
    heart_rate: Weighted,
    hydration: Weighted,
    hrv: Weighted,
    pub spo2_min: Option<f64>,
    pub temperature_max: Option<f64>,
    /// (day index, that day's mean SpO₂)
    pub spo2_daily: Vec<(i64, f64)>,
    pub minutes_alert_or_worse: f64,
    pub days_in_emergency_tier: i64,
    pub alerts: [i64; 4],
    pub days_with_critical_alert: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Weighted {
    sum: f64,
    weight: f64,
}

impl Weighted {
    fn add(&mut self, value: Option<f64>, weight: f64) {
        if let Some(v) = value {
            if weight > 0.0 {
                self.sum += v * weight;
                self.weight += weight;
            }
        }
    }
    fn mean(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| self.sum / self.weight)
    }
}

impl PatientWindow {
    pub fn spo2_mean(&self) -> Option<f64> {
        self.spo2.mean()
    }
    pub fn heart_rate_mean(&self) -> Option<f64> {
        self.heart_rate.mean()
    }
    pub fn hydration_mean(&self) -> Option<f64> {
        self.hydration.mean()
    }

    /// Least-squares slope of the daily mean SpO₂, in points per day; needs 3 days.
    pub fn spo2_slope_per_day(&self) -> Option<f64> {
        slope(&self.spo2_daily)
    }
}

pub fn slope(points: &[(i64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0 as f64).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 as f64 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 as f64 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// Summarises the days per patient; sorted by `patient_key`.
pub fn summarise(days: &[DayFrame]) -> Result<Vec<PatientWindow>, EtlError> {
    let mut by_patient: BTreeMap<String, PatientWindow> = BTreeMap::new();
    let mut ordered: Vec<&DayFrame> = days.iter().collect();
    ordered.sort_by_key(|d| d.day_index);
    for day in ordered {
        let c = Columns::new(&day.frame, format!("patient_daily (day {})", day.day_index));
        let key = c.str("patient_key")?;
        let genotype = c.str("genotype")?;
        let age_group = c.str("age_group")?;
        let samples = c.i64("samples")?;
        let eligible = c.i64("trend_eligible_samples")?;
        let spo2_mean = c.f64("spo2_mean")?;
        let spo2_min = c.f64("spo2_min")?;
        let hr_mean = c.f64("heart_rate_mean")?;
        let hrv = c.f64("heart_rate_variability")?;
        let temp_max = c.f64("temperature_max")?;
        let hydration = c.f64("hydration_mean")?;
        let minutes_alert = c.f64("minutes_alert")?;
        let minutes_emergency = c.f64("minutes_emergency")?;
        let alerts = [
            c.i64("alerts_info")?,
            c.i64("alerts_warn")?,
            c.i64("alerts_alert")?,
            c.i64("alerts_critical")?,
        ];
        for i in 0..day.frame.height() {
            let Some(k) = key.get(i) else { continue };
            let w = by_patient
                .entry(k.to_string())
                .or_insert_with(|| PatientWindow {
                    patient_key: k.to_string(),
                    ..PatientWindow::default()
                });
            w.genotype = genotype.get(i).map(str::to_string).or(w.genotype.take());
            w.age_group = age_group.get(i).map(str::to_string).or(w.age_group.take());
            let n = samples.get(i).unwrap_or(0);
            if n > 0 {
                w.days_with_data += 1;
            }
            w.samples += n;
            let weight = eligible.get(i).unwrap_or(0) as f64;
            w.spo2.add(spo2_mean.get(i), weight);
            w.heart_rate.add(hr_mean.get(i), weight);
            w.hydration.add(hydration.get(i), weight);
            w.hrv.add(hrv.get(i), 1.0);
            w.spo2_min = min_opt(w.spo2_min, spo2_min.get(i));
            w.temperature_max = max_opt(w.temperature_max, temp_max.get(i));
            if let Some(m) = spo2_mean.get(i) {
                w.spo2_daily.push((day.day_index, m));
            }
            w.minutes_alert_or_worse +=
                minutes_alert.get(i).unwrap_or(0.0) + minutes_emergency.get(i).unwrap_or(0.0);
            if minutes_emergency.get(i).unwrap_or(0.0) > 0.0 {
                w.days_in_emergency_tier += 1;
            }
            for (slot, a) in alerts.iter().enumerate() {
                w.alerts[slot] += a.get(i).unwrap_or(0);
            }
            if alerts[3].get(i).unwrap_or(0) > 0 {
                w.days_with_critical_alert += 1;
            }
        }
    }
    Ok(by_patient.into_values().collect())
}

/// Crisis risk score of the reference §5.4, with its inputs taken over the window: genotype
/// (SS and Sβ0 +30, SC and Sβ+ +20, AS +10), mean SpO₂ (< 92 +25, < 95 +15), critical alerts
/// (> 5 +20, > 2 +10), compliance (< 70 % of days monitored +15). High ≥ 70, medium ≥ 40.
pub fn risk_score(w: &PatientWindow, window_days: i64) -> (i64, &'static str) {
    let mut score = match w.genotype.as_deref() {
        Some("SS" | "Sβ0") => 30,
        Some("SC" | "Sβ+") => 20,
        Some("AS") => 10,
        _ => 0,
    };
    score += match w.spo2_mean() {
        Some(m) if m < 92.0 => 25,
        Some(m) if m < 95.0 => 15,
        _ => 0,
    };
    score += match w.alerts[3] {
        n if n > 5 => 20,
        n if n > 2 => 10,
        _ => 0,
    };
    if (w.days_with_data as f64) < 0.7 * window_days as f64 {
        score += 15;
    }
    let category = if score >= 70 {
        "high"
    } else if score >= 40 {
        "medium"
    } else {
        "low"
    };
    (score, category)
}

/// The window as a table. `weekly` adds the clinical columns of `patient_weekly`.
pub fn to_frame(
    windows: &[PatientWindow],
    window_days: i64,
    expected_per_day: i64,
    weekly: bool,
) -> Result<DataFrame, EtlError> {
    let f64s =
        |f: &dyn Fn(&PatientWindow) -> Option<f64>| windows.iter().map(f).collect::<Vec<_>>();
    let i64s = |f: &dyn Fn(&PatientWindow) -> i64| windows.iter().map(f).collect::<Vec<_>>();
    let mut cols = vec![Column::new(
        "patient_key".into(),
        windows
            .iter()
            .map(|w| w.patient_key.clone())
            .collect::<Vec<_>>(),
    )];
    if weekly {
        cols.push(Column::new(
            "genotype".into(),
            windows
                .iter()
                .map(|w| w.genotype.clone())
                .collect::<Vec<_>>(),
        ));
        cols.push(Column::new(
            "age_group".into(),
            windows
                .iter()
                .map(|w| w.age_group.clone())
                .collect::<Vec<_>>(),
        ));
    }
    let denominator = (window_days * expected_per_day).max(1) as f64;
    cols.extend([
        Column::new("window_days".into(), vec![window_days; windows.len()]),
        Column::new("days_with_data".into(), i64s(&|w| w.days_with_data)),
        Column::new("samples".into(), i64s(&|w| w.samples)),
        Column::new(
            "completeness".into(),
            f64s(&|w| Some((w.samples as f64 / denominator).min(1.0))),
        ),
        Column::new("spo2_mean".into(), f64s(&|w| w.spo2_mean())),
        Column::new("spo2_min".into(), f64s(&|w| w.spo2_min)),
        Column::new(
            "spo2_slope_per_day".into(),
            f64s(&|w| w.spo2_slope_per_day()),
        ),
        Column::new("heart_rate_mean".into(), f64s(&|w| w.heart_rate_mean())),
        Column::new("heart_rate_variability".into(), f64s(&|w| w.hrv.mean())),
        Column::new("temperature_max".into(), f64s(&|w| w.temperature_max)),
        Column::new("hydration_mean".into(), f64s(&|w| w.hydration.mean())),
        Column::new(
            "minutes_alert_or_worse".into(),
            f64s(&|w| Some(w.minutes_alert_or_worse)),
        ),
        Column::new("alerts_warn".into(), i64s(&|w| w.alerts[1])),
        Column::new("alerts_alert".into(), i64s(&|w| w.alerts[2])),
        Column::new("alerts_critical".into(), i64s(&|w| w.alerts[3])),
        Column::new(
            "days_with_critical_alert".into(),
            i64s(&|w| w.days_with_critical_alert),
        ),
    ]);
    if weekly {
        cols.push(Column::new(
            "days_in_emergency_tier".into(),
            i64s(&|w| w.days_in_emergency_tier),
        ));
        let risks: Vec<(i64, &str)> = windows.iter().map(|w| risk_score(w, window_days)).collect();
        cols.push(Column::new(
            "risk_score".into(),
            risks.iter().map(|r| r.0).collect::<Vec<_>>(),
        ));
        cols.push(Column::new(
            "risk_category".into(),
            risks.iter().map(|r| r.1).collect::<Vec<_>>(),
        ));
    }
    DataFrame::new_infer_height(cols).map_err(|e| EtlError::polars("window", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_is_per_day_and_needs_three_days() {
        assert_eq!(slope(&[(0, 95.0), (1, 94.0)]), None);
        let s = slope(&[(0, 96.0), (1, 95.0), (3, 93.0)]).expect("slope");
        assert!((s + 1.0).abs() < 1e-12, "{s}");
    }

    #[test]
    fn risk_score_follows_the_reference_formula() {
        let mut w = PatientWindow {
            genotype: Some("SS".into()),
            days_with_data: 4,
            alerts: [0, 0, 0, 3],
            ..PatientWindow::default()
        };
        w.spo2.add(Some(91.0), 10.0);
        // 30 (SS) + 25 (SpO2 < 92) + 10 (3 critical) + 15 (4 of 7 days) = 80
        assert_eq!(risk_score(&w, 7), (80, "high"));
        w.genotype = Some("AS".into());
        w.days_with_data = 7;
        w.alerts = [0; 4];
        assert_eq!(risk_score(&w, 7), (35, "low"));
    }
}
