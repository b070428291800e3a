//! `kidjamo db load`, alerts: the lake's alert files (`alerts/stream/`, `alerts/batch/`,
//! shape in `lake::alerts`) into `alerts`. A row newer than the stored one (larger
//! `last_seen_at`) updates what the engine owns — last sample, occurrences, snapshot, message,
//! and an auto-resolution of an alert still open — but never what people did in the database
//! (acknowledgement, escalation, resolution). A rerun changes nothing.

use super::columns::{col, fields, read_parquet, Col, Kind};
use super::files::MeasurementFile;
use super::stage::{column_list, copy_into_stage};
use super::{LoadError, TableCounts};
use crate::db::query_error;
use postgres::Client;

pub const ALERT_COLUMNS: &[Col] = &[
    col("alert_id", "alert_id", Kind::Uuid),
    col("patient_id", "patient_id", Kind::Uuid),
    col("device_id", "device_id", Kind::Uuid),
    col("rule_id", "rule_id", Kind::Text),
    col("severity", "severity", Kind::Text),
    col("title", "title", Kind::Text),
    col("message", "message", Kind::Text),
    col("first_seen_at", "first_seen_at", Kind::TimestampMs),
    col("last_seen_at", "last_seen_at", Kind::TimestampMs),
    col("vitals_snapshot", "vitals_snapshot", Kind::Text),
    col("trigger_conditions", "trigger_conditions", Kind::TextList),
    col("suggested_actions", "suggested_actions", Kind::TextList),
    col("status", "status", Kind::Text),
    col("escalation_level", "escalation_level", Kind::I16),
    col("occurrences", "occurrences", Kind::I32),
];

/// Loads every alert file in one transaction (alerts are few; one statement sees them all, so
/// the newest state of each alert wins whichever file holds it).
pub fn load_alert_files(
    client: &mut Client,
    files: &[MeasurementFile],
) -> Result<TableCounts, LoadError> {
    let mut tx = client
        .transaction()
        .map_err(query_error("cannot start the alert load"))?;
    let stage = "kidjamo_stage_alerts";
    let mut read = 0;
    for file in files {
        let name = file.path.display().to_string();
        let df = read_parquet(&file.path)?;
        let fields = fields(&df, &name, ALERT_COLUMNS)?;
        // The stage is emptied per file by copy_into_stage; accumulate in a second table.
        read += copy_into_stage(&mut tx, &name, stage, ALERT_COLUMNS, &fields)?;
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS kidjamo_stage_alerts_all (LIKE {stage}) ON COMMIT DROP;
             INSERT INTO kidjamo_stage_alerts_all SELECT * FROM {stage};"
        ))
        .map_err(query_error(format!("{name}: cannot stage alerts")))?;
    }
    let columns = column_list(ALERT_COLUMNS);
    let selected = columns.replace("vitals_snapshot", "vitals_snapshot::jsonb");
    let known = "EXISTS (SELECT 1 FROM patients p WHERE p.patient_id = s.patient_id)";
    let unknown: i64 = tx
        .query_one(
            &format!("SELECT count(*) FROM kidjamo_stage_alerts_all s WHERE NOT {known}"),
            &[],
        )
        .map_err(query_error("cannot check the alerts' patients"))?
        .get(0);
    let row = tx
        .query_one(
            &format!(
                "WITH newest AS (
                     SELECT DISTINCT ON (alert_id) {selected}
                     FROM kidjamo_stage_alerts_all s WHERE {known}
                     -- A resolution keeps the last sample's time: at equal times it is the later state.
                     ORDER BY alert_id, last_seen_at DESC, (status = 'auto_resolved') DESC
                 ), written AS (
                     INSERT INTO alerts ({columns}) SELECT * FROM newest
                     ON CONFLICT (alert_id) DO UPDATE SET
                         last_seen_at = EXCLUDED.last_seen_at,
                         occurrences = EXCLUDED.occurrences,
                         vitals_snapshot = EXCLUDED.vitals_snapshot,
                         message = EXCLUDED.message,
                         status = CASE WHEN alerts.status IN ('open', 'escalated')
                                        AND EXCLUDED.status = 'auto_resolved'
                                       THEN 'auto_resolved' ELSE alerts.status END
                     WHERE EXCLUDED.last_seen_at > alerts.last_seen_at
                        OR (EXCLUDED.last_seen_at = alerts.last_seen_at
                            AND EXCLUDED.status = 'auto_resolved'
                            AND alerts.status IN ('open', 'escalated'))
                     RETURNING (xmax = 0) AS inserted
                 )
                 SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)
                 FROM written"
            ),
            &[],
        )
        .map_err(|source| LoadError::Copy {
            file: "alerts".into(),
            source,
        })?;
    tx.commit()
        .map_err(query_error("cannot commit the alert load"))?;
    let (inserted, updated) = (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64);
    let unknown = unknown as u64;
    Ok(TableCounts {
        table: "alerts".into(),
        read,
        inserted,
        already_present: read.saturating_sub(unknown + inserted + updated),
        unknown_patient: unknown,
        updated,
    })
}
