//! `kidjamo erase patient` (SPEC §8, right to erasure): the patient's rows leave every table
//! kidjamo manages, in one transaction, children first. The patient's own audit history goes too
//! (it holds their personal data); what stays is one audit row that says what was erased and
//! why, naming the patient only by the SHA-256 of their id (an auditor who holds the id can
//! check it; nobody can read it back). Devices stay (a registry, not personal data); caregivers'
//! and clinicians' own user rows stay (they are other people). Tables left by a killed load or
//! restore (`super::leftover_weeks`) are dropped, the patient's rows in them counted.

use super::{leftover_weeks, query_error, DbError};
use postgres::Client;
use uuid::Uuid;

/// In deletion order: what references the patient first.
const ERASED: &[(&str, &str)] = &[
    ("alert_status_logs", "patient_id = $1"),
    ("alerts", "patient_id = $1"),
    ("measurements", "patient_id = $1"),
    ("treatments", "patient_id = $1"),
    ("patient_clinicians", "patient_id = $1"),
    ("caregivers", "patient_id = $1"),
    ("device_assignments", "patient_id = $1"),
    ("patient_exports", "patient_id = $1"),
    // The patient's history, their own actions, and their user row's audit (written before the
    // user was a patient, so without a patient id).
    (
        "audit_log",
        "patient_id = $1
         OR actor_user_id = (SELECT user_id FROM kidjamo_erased_user)
         OR (table_name = 'users' AND row_key = (SELECT user_id::text FROM kidjamo_erased_user))",
    ),
    ("patients", "patient_id = $1"),
    (
        "users",
        "user_id = (SELECT user_id FROM kidjamo_erased_user)",
    ),
];

/// The name under which rows found in tables left by a killed load are counted.
pub const LEFTOVER_ROWS: &str = "unfinished_loads";

#[derive(Debug, Clone, PartialEq)]
pub struct Erasure {
    pub patient_id: Uuid,
    /// Rows per table, removed (or that would be, on a dry run).
    pub rows: Vec<(&'static str, u64)>,
    pub dry_run: bool,
}

pub fn erase(
    client: &mut Client,
    patient: Uuid,
    reason: &str,
    dry_run: bool,
) -> Result<Option<Erasure>, DbError> {
    let mut tx = client
        .transaction()
        .map_err(query_error("cannot start the erasure"))?;
    tx.batch_execute("SET LOCAL kidjamo.quiet_triggers = 'on'")
        .map_err(query_error("cannot prepare the erasure"))?;
    // A running load or restore may be filling weeks with this patient's rows outside
    // `measurements`: the erasure comes after it, and sees what it committed.
    leftover_weeks::lock_for_transaction(&mut tx)?;
    tx.execute(
        "CREATE TEMP TABLE kidjamo_erased_user ON COMMIT DROP AS
         SELECT user_id FROM patients WHERE patient_id = $1",
        &[&patient],
    )
    .map_err(query_error("cannot find the patient"))?;
    let found: i64 = tx
        .query_one("SELECT count(*) FROM kidjamo_erased_user", &[])
        .map_err(query_error("cannot find the patient"))?
        .get(0);
    let mut rows = Vec::new();
    for (table, condition) in ERASED {
        let n = if dry_run {
            let sql = format!("SELECT count(*) FROM {table} WHERE {condition}");
            let count: i64 = if condition.contains("$1") {
                tx.query_one(&sql, &[&patient])
            } else {
                tx.query_one(&sql, &[])
            }
            .map_err(query_error(format!("cannot count {table}")))?
            .get(0);
            count as u64
        } else {
            let sql = format!("DELETE FROM {table} WHERE {condition}");
            if condition.contains("$1") {
                tx.execute(&sql, &[&patient])
            } else {
                tx.execute(&sql, &[])
            }
            .map_err(query_error(format!("cannot erase from {table}")))?
        };
        rows.push((*table, n));
    }
    // Tables a killed load or restore left hold rows that never reached `measurements`: they
    // go (all of them: nothing in them was ever committed), the patient's rows counted.
    let leftovers = leftover_weeks::sweep_locked(&mut tx, Some(patient), !dry_run)?;
    if !leftovers.is_empty() {
        rows.push((LEFTOVER_ROWS, leftovers.iter().map(|l| l.rows as u64).sum()));
    }
    // No patient row and nothing left over of them: there is nothing to erase (or to audit).
    if found == 0 && rows.iter().all(|(_, n)| *n == 0) {
        tx.rollback()
            .map_err(query_error("cannot end the erasure"))?;
        return Ok(None);
    }
    if dry_run {
        tx.rollback()
            .map_err(query_error("cannot end the dry run"))?;
    } else {
        let counts: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(t, n)| (t.to_string(), (*n).into()))
            .collect();
        let total: i64 = rows.iter().map(|(_, n)| *n as i64).sum();
        tx.execute(
            "INSERT INTO audit_log (table_name, operation, row_key, row_count, new_values)
             VALUES ('patients', 'ERASE', 'sha256:' || encode(sha256($1::text::bytea), 'hex'), $2,
                     jsonb_build_object('reason', $3::text, 'rows', $4::text::jsonb))",
            &[
                &patient.to_string(),
                &total,
                &reason,
                &serde_json::Value::Object(counts).to_string(),
            ],
        )
        .map_err(query_error("cannot audit the erasure"))?;
        tx.commit()
            .map_err(query_error("cannot commit the erasure"))?;
    }
    Ok(Some(Erasure {
        patient_id: patient,
        rows,
        dry_run,
    }))
}
