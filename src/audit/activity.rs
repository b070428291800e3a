//! Who changed or accessed which patient's data, and the exports, backups, restores and
//! erasures, from `audit_log` and `patient_exports`.

use crate::db::{query_error, DbError};
use chrono::{DateTime, Utc};
use postgres::Client;
use serde::Serialize;
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PatientActivity {
    /// `null` for rows that name no patient (an erasure names the patient by digest only).
    pub patient_id: Option<Uuid>,
    /// `table.OPERATION` → rows affected.
    pub rows: BTreeMap<String, i64>,
    pub audit_records: i64,
    /// Distinct end users and database roles that acted.
    pub actors: i64,
    pub db_roles: Vec<String>,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DataRightsEvent {
    pub at: DateTime<Utc>,
    /// BACKUP, RESTORE, ERASE, EXPORT (from the audit log).
    pub operation: String,
    pub patient_id: Option<Uuid>,
    /// The row key: an archive digest, or `sha256:<digest of the id>` for an erasure.
    pub reference: Option<String>,
    pub db_role: String,
    pub details: Option<serde_json::Value>,
}

pub struct Period {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub patient: Option<Uuid>,
}

pub fn per_patient(client: &mut Client, p: &Period) -> Result<Vec<PatientActivity>, DbError> {
    let rows = client
        .query(
            "SELECT patient_id, table_name || '.' || operation, count(*), sum(row_count)::bigint,
                    min(logged_at), max(logged_at)
               FROM audit_log
              WHERE logged_at >= $1 AND logged_at < $2 AND ($3::uuid IS NULL OR patient_id = $3)
              GROUP BY 1, 2 ORDER BY 1 NULLS LAST, 2",
            &[&p.since, &p.until, &p.patient],
        )
        .map_err(query_error("cannot read the audit log"))?;
    let mut out: BTreeMap<Option<Uuid>, PatientActivity> = BTreeMap::new();
    for r in &rows {
        let patient: Option<Uuid> = r.get(0);
        let (first, last): (DateTime<Utc>, DateTime<Utc>) = (r.get(4), r.get(5));
        let a = out.entry(patient).or_insert_with(|| PatientActivity {
            patient_id: patient,
            rows: BTreeMap::new(),
            audit_records: 0,
            actors: 0,
            db_roles: Vec::new(),
            first,
            last,
        });
        a.rows.insert(r.get(1), r.get(3));
        a.audit_records += r.get::<_, i64>(2);
        a.first = a.first.min(first);
        a.last = a.last.max(last);
    }
    let actors = client
        .query(
            "SELECT patient_id, count(DISTINCT actor_user_id), array_agg(DISTINCT db_role ORDER BY db_role)
               FROM audit_log
              WHERE logged_at >= $1 AND logged_at < $2 AND ($3::uuid IS NULL OR patient_id = $3)
              GROUP BY 1",
            &[&p.since, &p.until, &p.patient],
        )
        .map_err(query_error("cannot read the audit log"))?;
    for r in &actors {
        if let Some(a) = out.get_mut(&r.get::<_, Option<Uuid>>(0)) {
            a.actors = r.get(1);
            a.db_roles = r.get(2);
        }
    }
    Ok(out.into_values().collect())
}

pub fn data_rights(client: &mut Client, p: &Period) -> Result<Vec<DataRightsEvent>, DbError> {
    let rows = client
        .query(
            "SELECT logged_at, operation, patient_id, row_key, db_role, new_values
               FROM audit_log
              WHERE operation IN ('BACKUP', 'RESTORE', 'ERASE', 'EXPORT')
                AND logged_at >= $1 AND logged_at < $2
                AND ($3::uuid IS NULL OR patient_id = $3
                     OR row_key = 'sha256:' || encode(sha256($3::text::bytea), 'hex'))
              ORDER BY logged_at, operation",
            &[&p.since, &p.until, &p.patient],
        )
        .map_err(query_error(
            "cannot read exports and erasures from the audit log",
        ))?;
    Ok(rows
        .iter()
        .map(|r| DataRightsEvent {
            at: r.get(0),
            operation: r.get(1),
            patient_id: r.get(2),
            reference: r.get(3),
            db_role: r.get(4),
            details: r.get(5),
        })
        .collect())
}
