//! The cohort and the ground truth as tables.

use crate::domain::time::UtcMillis;
use crate::output::tables::{Column, Table};
use crate::simulate::{Cohort, Episode};
use uuid::Uuid;

fn ids(v: impl Iterator<Item = Uuid>) -> Vec<Option<String>> {
    v.map(|u| Some(u.to_string())).collect()
}

fn strs<'a>(v: impl Iterator<Item = &'a str>) -> Vec<Option<String>> {
    v.map(|s| Some(s.to_string())).collect()
}

fn times(v: impl Iterator<Item = Option<UtcMillis>>) -> Vec<Option<i64>> {
    v.map(|t| t.map(|t| t.0)).collect()
}

pub fn cohort_tables(c: &Cohort) -> Vec<Table> {
    let u = &c.users;
    let p = &c.patients;
    let cg = &c.caregivers;
    let cl = &c.clinicians;
    let links = &c.clinician_links;
    let d = &c.devices;
    vec![
        Table {
            name: "users",
            columns: vec![
                Column::Str("user_id", ids(u.iter().map(|x| x.user_id))),
                Column::Str("role", strs(u.iter().map(|x| x.role.as_str()))),
                Column::Str("given_name", strs(u.iter().map(|x| x.given_name.as_str()))),
                Column::Str(
                    "family_name",
                    strs(u.iter().map(|x| x.family_name.as_str())),
                ),
                Column::Str("email", strs(u.iter().map(|x| x.email.as_str()))),
                Column::Str("phone", strs(u.iter().map(|x| x.phone.as_str()))),
                Column::Timestamp("created_at", times(u.iter().map(|x| Some(x.created_at)))),
            ],
        },
        Table {
            name: "patients",
            columns: vec![
                Column::Str("patient_id", ids(p.iter().map(|x| x.patient_id))),
                Column::Str("user_id", ids(p.iter().map(|x| x.user_id))),
                Column::Str("sex", strs(p.iter().map(|x| x.sex.as_str()))),
                Column::Date(
                    "birth_date",
                    p.iter()
                        .map(|x| Some(UtcMillis::from_date(x.birth_date).epoch_day() as i32))
                        .collect(),
                ),
                Column::Str("genotype", strs(p.iter().map(|x| x.genotype.as_str()))),
                Column::F64("weight_kg", p.iter().map(|x| Some(x.weight_kg)).collect()),
                Column::F64("height_cm", p.iter().map(|x| Some(x.height_cm)).collect()),
                Column::Str("city", strs(p.iter().map(|x| x.city.as_str()))),
                Column::Str("country", strs(p.iter().map(|x| x.country.as_str()))),
                Column::Str(
                    "emergency_contact_name",
                    strs(p.iter().map(|x| x.emergency_contact_name.as_str())),
                ),
                Column::Str(
                    "emergency_contact_phone",
                    strs(p.iter().map(|x| x.emergency_contact_phone.as_str())),
                ),
                Column::Str(
                    "current_device_id",
                    ids(p.iter().map(|x| x.current_device_id)),
                ),
            ],
        },
        Table {
            name: "caregivers",
            columns: vec![
                Column::Str(
                    "caregiver_user_id",
                    ids(cg.iter().map(|x| x.caregiver_user_id)),
                ),
                Column::Str("patient_id", ids(cg.iter().map(|x| x.patient_id))),
                Column::Str(
                    "relationship",
                    strs(cg.iter().map(|x| x.relationship.as_str())),
                ),
                Column::I64(
                    "priority",
                    cg.iter().map(|x| Some(i64::from(x.priority))).collect(),
                ),
                Column::Bool(
                    "can_acknowledge_alerts",
                    cg.iter().map(|x| Some(x.can_acknowledge_alerts)).collect(),
                ),
            ],
        },
        Table {
            name: "clinicians",
            columns: vec![
                Column::Str("user_id", ids(cl.iter().map(|x| x.user_id))),
                Column::Str(
                    "license_number",
                    strs(cl.iter().map(|x| x.license_number.as_str())),
                ),
                Column::Str("specialty", strs(cl.iter().map(|x| x.specialty.as_str()))),
                Column::Str("hospital", strs(cl.iter().map(|x| x.hospital.as_str()))),
            ],
        },
        Table {
            name: "patient_clinicians",
            columns: vec![
                Column::Str(
                    "clinician_user_id",
                    ids(links.iter().map(|x| x.clinician_user_id)),
                ),
                Column::Str("patient_id", ids(links.iter().map(|x| x.patient_id))),
                Column::Str("role", strs(links.iter().map(|x| x.role.as_str()))),
                Column::Bool(
                    "is_primary",
                    links.iter().map(|x| Some(x.is_primary)).collect(),
                ),
            ],
        },
        Table {
            name: "devices",
            columns: vec![
                Column::Str("device_id", ids(d.iter().map(|x| x.device_id))),
                Column::Str("model", strs(d.iter().map(|x| x.model.as_str()))),
                Column::Str(
                    "firmware_version",
                    strs(d.iter().map(|x| x.firmware_version.as_str())),
                ),
                Column::Str("patient_id", ids(d.iter().map(|x| x.patient_id))),
                Column::Timestamp(
                    "assigned_from",
                    times(d.iter().map(|x| Some(x.assigned_from))),
                ),
                Column::Timestamp("assigned_to", times(d.iter().map(|x| x.assigned_to))),
            ],
        },
    ]
}

pub fn episodes_table(episodes: &[&Episode]) -> Table {
    let e = episodes;
    Table {
        name: "episodes",
        columns: vec![
            Column::Str("episode_id", ids(e.iter().map(|x| x.episode_id))),
            Column::Str("patient_id", ids(e.iter().map(|x| x.patient_id))),
            Column::Str("episode_type", strs(e.iter().map(|x| x.kind.as_str()))),
            Column::Timestamp("start_at", times(e.iter().map(|x| Some(x.start)))),
            Column::Timestamp("end_at", times(e.iter().map(|x| Some(x.end)))),
            Column::F64(
                "peak_severity",
                e.iter()
                    .map(|x| Some((x.peak_severity * 1000.0).round() / 1000.0))
                    .collect(),
            ),
        ],
    }
}
