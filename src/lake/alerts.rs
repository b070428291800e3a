//! Alerts in the lake (SPEC §4.5, §6): the Parquet shape that `kidjamo stream` writes under
//! `alerts/stream/` and `etl` under `alerts/batch/`, and that `db load` reads. One row
//! per alert state: a later row for the same `alert_id` (larger `last_seen_at`) supersedes it.
//! List columns are Parquet lists of strings; `vitals_snapshot` is the wire JSON of the sample.

use crate::domain::alerts::{Alert, AlertStatus};
use crate::output::tables::write_parquet;
use crate::output::{OutputError, WrittenFile};
use polars::prelude::*;
use std::path::Path;

pub fn status_str(s: AlertStatus) -> &'static str {
    match s {
        AlertStatus::Open => "open",
        AlertStatus::Acknowledged => "acknowledged",
        AlertStatus::Escalated => "escalated",
        AlertStatus::Resolved => "resolved",
        AlertStatus::AutoResolved => "auto_resolved",
    }
}

pub fn alerts_frame(alerts: &[Alert]) -> PolarsResult<DataFrame> {
    let str_col = |name: &str, f: &dyn Fn(&Alert) -> String| {
        Column::new(name.into(), alerts.iter().map(f).collect::<Vec<String>>())
    };
    let time_col = |name: &str, f: &dyn Fn(&Alert) -> i64| -> PolarsResult<Column> {
        Ok(
            Int64Chunked::from_vec(name.into(), alerts.iter().map(f).collect())
                .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
                .into_series()
                .into(),
        )
    };
    let list_col = |name: &str, f: &dyn Fn(&Alert) -> &Vec<String>| {
        // One builder for the whole column. A `Series` per alert, stacked, cost a string
        // buffer per alert (8 KiB or more each): about 1 GB of short-lived allocations for a
        // day's 120,000 alerts, which the allocator then kept (it was `etl daily`'s peak).
        let values = alerts.iter().map(|a| f(a).len()).sum();
        let mut list = ListStringChunkedBuilder::new(name.into(), alerts.len(), values);
        for a in alerts {
            list.append_values_iter(f(a).iter().map(String::as_str));
        }
        Column::from(list.finish().into_series())
    };
    let snapshot = |a: &Alert| serde_json::to_string(&a.vitals_snapshot).unwrap_or_default();
    DataFrame::new_infer_height(vec![
        str_col("alert_id", &|a| a.alert_id.to_string()),
        str_col("patient_id", &|a| a.patient_id.to_string()),
        str_col("device_id", &|a| a.device_id.to_string()),
        str_col("rule_id", &|a| a.rule_id.clone()),
        str_col("severity", &|a| a.severity.as_str().to_string()),
        str_col("title", &|a| a.title.clone()),
        str_col("message", &|a| a.message.clone()),
        time_col("first_seen_at", &|a| a.first_seen_at.0)?,
        time_col("last_seen_at", &|a| a.last_seen_at.0)?,
        str_col("vitals_snapshot", &snapshot),
        list_col("trigger_conditions", &|a| &a.trigger_conditions),
        list_col("suggested_actions", &|a| &a.suggested_actions),
        str_col("status", &|a| status_str(a.status).to_string()),
        Column::new(
            "escalation_level".into(),
            alerts
                .iter()
                .map(|a| i16::from(a.escalation_level))
                .collect::<Vec<i16>>(),
        ),
        Column::new(
            "occurrences".into(),
            alerts
                .iter()
                .map(|a| i64::from(a.occurrences))
                .collect::<Vec<i64>>(),
        ),
    ])
}

/// Writes `alerts` as one Parquet file at `relative` under `root`.
pub fn write_alerts(
    root: &Path,
    relative: String,
    alerts: &[Alert],
) -> Result<WrittenFile, OutputError> {
    let df = alerts_frame(alerts).map_err(|e| OutputError::Parquet {
        path: root.join(&relative),
        message: e.to_string(),
    })?;
    write_parquet(root, relative, df)
}
