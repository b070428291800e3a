//! `cohort_monthly`: per genotype and age group, over a calendar month of `patient_daily`.
//! Compliance is days with data over the days of the month (the earlier platform divided by
//! days + 1, reference §5.3); rates are per patient-month.

use super::window::{summarise, DayFrame};
use super::EtlError;
use polars::prelude::*;
use std::collections::BTreeMap;

#[derive(Default)]
struct Cell {
    patients: i64,
    patient_days: i64,
    compliance_sum: f64,
    high_compliance: i64,
    low_compliance: i64,
    spo2_sum: f64,
    spo2_weight: f64,
    critical_alerts: i64,
    alerts: i64,
    crisis_days: i64,
}

pub fn cohort_monthly(days: &[DayFrame], days_in_month: i64) -> Result<DataFrame, EtlError> {
    let mut cells: BTreeMap<(String, String), Cell> = BTreeMap::new();
    for w in summarise(days)? {
        let key = (
            w.genotype.clone().unwrap_or_default(),
            w.age_group.clone().unwrap_or_default(),
        );
        let cell = cells.entry(key).or_default();
        let compliance = 100.0 * w.days_with_data as f64 / days_in_month as f64;
        cell.patients += 1;
        cell.patient_days += w.days_with_data;
        cell.compliance_sum += compliance;
        cell.high_compliance += i64::from(compliance >= 80.0);
        cell.low_compliance += i64::from(compliance < 50.0);
        if let Some(m) = w.spo2_mean() {
            cell.spo2_sum += m * w.samples as f64;
            cell.spo2_weight += w.samples as f64;
        }
        cell.critical_alerts += w.alerts[3];
        cell.alerts += w.alerts[1] + w.alerts[2] + w.alerts[3];
        cell.crisis_days += w.days_with_critical_alert;
    }
    let rows: Vec<(&(String, String), &Cell)> = cells.iter().collect();
    let per_patient = |f: &dyn Fn(&Cell) -> f64| {
        rows.iter()
            .map(|(_, c)| f(c) / c.patients.max(1) as f64)
            .collect::<Vec<f64>>()
    };
    DataFrame::new_infer_height(vec![
        Column::new(
            "genotype".into(),
            rows.iter().map(|r| r.0 .0.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "age_group".into(),
            rows.iter().map(|r| r.0 .1.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "patients".into(),
            rows.iter().map(|r| r.1.patients).collect::<Vec<_>>(),
        ),
        Column::new(
            "patient_days".into(),
            rows.iter().map(|r| r.1.patient_days).collect::<Vec<_>>(),
        ),
        Column::new("days_in_month".into(), vec![days_in_month; rows.len()]),
        Column::new(
            "compliance_pct_mean".into(),
            per_patient(&|c| c.compliance_sum),
        ),
        Column::new(
            "patients_high_compliance".into(),
            rows.iter().map(|r| r.1.high_compliance).collect::<Vec<_>>(),
        ),
        Column::new(
            "patients_low_compliance".into(),
            rows.iter().map(|r| r.1.low_compliance).collect::<Vec<_>>(),
        ),
        Column::new(
            "spo2_mean".into(),
            rows.iter()
                .map(|r| (r.1.spo2_weight > 0.0).then(|| r.1.spo2_sum / r.1.spo2_weight))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "critical_alerts".into(),
            rows.iter().map(|r| r.1.critical_alerts).collect::<Vec<_>>(),
        ),
        Column::new(
            "alerts_per_patient_month".into(),
            per_patient(&|c| c.alerts as f64),
        ),
        Column::new(
            "critical_alerts_per_patient_month".into(),
            per_patient(&|c| c.critical_alerts as f64),
        ),
        Column::new(
            "crisis_days_per_patient_month".into(),
            per_patient(&|c| c.crisis_days as f64),
        ),
    ])
    .map_err(|e| EtlError::polars("cohort_monthly", e))
}
