//! Reference tables (`reference/*.parquet`, written by `kidjamo simulate`), in foreign-key order.

use super::columns::{col, fields, read_parquet, Col, Kind::*};
use super::stage::{column_list, copy_into_stage};
use super::{LoadError, TableCounts};
use crate::db::query_error;
use postgres::Client;
use std::path::Path;

/// A reference table: the lake file it is read from and the database table it fills.
pub struct TableSpec {
    pub table: &'static str,
    pub file: &'static str,
    pub columns: &'static [Col],
}

/// In foreign-key order: users and devices before patients, patients before their links.
pub const REFERENCE_TABLES: &[TableSpec] = &[
    TableSpec {
        table: "users",
        file: "users.parquet",
        columns: &[
            col("user_id", "user_id", Uuid),
            col("role", "role", Text),
            col("given_name", "given_name", Text),
            col("family_name", "family_name", Text),
            col("email", "email", Text),
            col("phone", "phone", Text),
            col("created_at", "created_at", TimestampMs),
        ],
    },
    TableSpec {
        table: "devices",
        file: "devices.parquet",
        columns: &[
            col("device_id", "device_id", Uuid),
            col("model", "model", Text),
            col("firmware_version", "firmware_version", Text),
        ],
    },
    TableSpec {
        table: "patients",
        file: "patients.parquet",
        columns: &[
            col("patient_id", "patient_id", Uuid),
            col("user_id", "user_id", Uuid),
            col("sex", "sex", Text),
            col("birth_date", "birth_date", Date),
            col("genotype", "genotype", Text),
            col("weight_kg", "weight_kg", F64),
            col("height_cm", "height_cm", F64),
            col("city", "city", Text),
            col("country", "country", Text),
            col("emergency_contact_name", "emergency_contact_name", Text),
            col("emergency_contact_phone", "emergency_contact_phone", Text),
            col("current_device_id", "current_device_id", Uuid),
        ],
    },
    TableSpec {
        table: "device_assignments",
        file: "devices.parquet",
        columns: &[
            col("device_id", "device_id", Uuid),
            col("patient_id", "patient_id", Uuid),
            col("assigned_from", "assigned_from", TimestampMs),
            col("assigned_to", "assigned_to", TimestampMs),
        ],
    },
    TableSpec {
        table: "caregivers",
        file: "caregivers.parquet",
        columns: &[
            col("user_id", "caregiver_user_id", Uuid),
            col("patient_id", "patient_id", Uuid),
            col("relationship", "relationship", Text),
            col("priority", "priority", I16),
            col("can_acknowledge_alerts", "can_acknowledge_alerts", Bool),
        ],
    },
    TableSpec {
        table: "clinicians",
        file: "clinicians.parquet",
        columns: &[
            col("user_id", "user_id", Uuid),
            col("license_number", "license_number", Text),
            col("specialty", "specialty", Text),
            col("hospital", "hospital", Text),
        ],
    },
    TableSpec {
        table: "patient_clinicians",
        file: "patient_clinicians.parquet",
        columns: &[
            col("patient_id", "patient_id", Uuid),
            col("clinician_user_id", "clinician_user_id", Uuid),
            col("role", "role", Text),
            col("is_primary", "is_primary", Bool),
        ],
    },
];

pub(super) fn load_reference(
    client: &mut Client,
    dir: &Path,
) -> Result<Vec<TableCounts>, LoadError> {
    let mut tx = client
        .transaction()
        .map_err(query_error("cannot start the reference load"))?;
    let mut counts = Vec::new();
    for spec in REFERENCE_TABLES {
        let path = dir.join(spec.file);
        if !path.exists() {
            return Err(LoadError::Lake {
                path: path.display().to_string(),
                reason:
                    "reference table missing (the lake should hold what `kidjamo simulate` writes)"
                        .into(),
            });
        }
        let df = read_parquet(&path)?;
        let name = path.display().to_string();
        let fields = fields(&df, &name, spec.columns)?;
        let stage = format!("kidjamo_stage_{}", spec.table);
        let read = copy_into_stage(&mut tx, &name, &stage, spec.columns, &fields)?;
        let targets = column_list(spec.columns);
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO {} ({targets}) SELECT {targets} FROM {stage} ON CONFLICT DO NOTHING",
                    spec.table
                ),
                &[],
            )
            .map_err(|source| LoadError::Copy {
                file: name.clone(),
                source,
            })?;
        counts.push(TableCounts {
            table: spec.table.into(),
            read,
            inserted,
            already_present: read - inserted,
            unknown_patient: 0,
            updated: 0,
        });
    }
    tx.commit()
        .map_err(query_error("cannot commit the reference load"))?;
    Ok(counts)
}
