//! Measurement files: routing each row (unknown patient, repeated, bulk week, regular week),
//! then COPY into a bulk week's standalone table or staging + `ON CONFLICT DO NOTHING`.

use super::columns::{col, fields, optional, read_parquet, Col, Kind::*};
use super::stage::{copy_rows, create_stage};
use super::{LoadError, TableCounts};
use crate::db::copy::Field;
use crate::db::{query_error, DbError};
use crate::domain::heat_index::heat_index_c;
use chrono::{Duration as Days, NaiveDate};
use polars::prelude::DataFrame;
use postgres::Client;
use std::collections::HashSet;
use std::path::Path;

/// Measurements, in the column order of the `measurements` table. `heat_index_c` is computed
/// from ambient temperature and humidity when the input does not carry it (Bronze).
pub const MEASUREMENT_COLUMNS: &[Col] = &[
    col("device_id", "device_id", Uuid),
    col("recorded_at", "recorded_at", TimestampMs),
    col("patient_id", "patient_id", Uuid),
    col("message_id", "message_id", Uuid),
    optional("received_at", TimestampMs),
    optional("spo2_pct", F64),
    optional("heart_rate_bpm", I16),
    optional("respiratory_rate_min", I16),
    optional("temperature_c", F64),
    optional("ambient_temperature_c", F64),
    optional("relative_humidity_pct", F64),
    optional("hydration_pct", F64),
    optional("activity_level", I16),
    optional("pain_scale", I16),
    optional("heat_index_c", F64),
    optional("battery_pct", I16),
    optional("signal_quality_pct", I16),
    optional("firmware_version", Text),
    col("quality_flag", "quality_flag", Text),
];

/// Patient ids the database knows, fetched once per load: rows of other patients are counted
/// and left out before anything is sent.
pub type KnownPatients = HashSet<[u8; 16]>;

pub fn known_patients(client: &mut Client) -> Result<KnownPatients, DbError> {
    Ok(client
        .query("SELECT patient_id FROM patients", &[])
        .map_err(query_error("cannot read the known patients"))?
        .iter()
        .map(|r| *r.get::<_, uuid::Uuid>(0).as_bytes())
        .collect())
}

/// Where each row of a file goes: the standalone table of a bulk-loaded week (plain COPY: the
/// week is new, so nothing can conflict but a sample repeated in another file, which the attach
/// step removes), or `measurements` through the staging table and `ON CONFLICT DO NOTHING`.
#[derive(Default)]
struct Routes {
    bulk: std::collections::BTreeMap<NaiveDate, Vec<u32>>,
    regular: Vec<u32>,
    unknown_patient: u64,
    repeated_in_file: u64,
}

fn route(fields: &[Field<'_>], bulk: &BulkWeeks, known: &KnownPatients) -> Routes {
    let mut routes = Routes::default();
    let (Field::Uuid(devices), Field::TimestampMs(times), Field::Uuid(patients)) =
        (&fields[0], &fields[1], &fields[2])
    else {
        return routes;
    };
    let mut seen: HashSet<([u8; 16], i64)> = HashSet::with_capacity(times.len());
    for (i, ((device, time), patient)) in devices.iter().zip(times).zip(patients).enumerate() {
        let (Some(device), Some(time), Some(patient)) = (device, time, patient) else {
            routes.regular.push(i as u32); // NOT NULL violations are the database's to report
            continue;
        };
        if !known.contains(patient) {
            routes.unknown_patient += 1;
        } else if !seen.insert((*device, *time)) {
            routes.repeated_in_file += 1;
        } else if let Some((week, _)) = bulk
            .iter()
            .find(|(_, (_, (start, end)))| *start <= *time && *time < *end)
        {
            routes.bulk.entry(*week).or_default().push(i as u32);
        } else {
            routes.regular.push(i as u32);
        }
    }
    routes
}

/// Loads one Parquet file of measurements in its own transaction; returns its counts and the
/// partitions it had to create.
pub fn load_measurement_file(
    client: &mut Client,
    path: &Path,
    bulk: &BulkWeeks,
    known: &KnownPatients,
) -> Result<(TableCounts, Vec<String>), LoadError> {
    let name = path.display().to_string();
    let started = std::time::Instant::now();
    let df = read_parquet(path)?;
    let mut fields = fields(&df, &name, MEASUREMENT_COLUMNS)?;
    fill_heat_index(&df, &mut fields);
    let routes = route(&fields, bulk, known);
    let decoded = started.elapsed();
    let created = match regular_span(&fields[1], &routes.regular) {
        Some(span) => ensure_partitions(client, span, bulk)?,
        None => Vec::new(),
    };
    let mut tx = client
        .transaction()
        .map_err(query_error("cannot start a measurement load"))?;
    let mut inserted = 0;
    for (week, rows) in &routes.bulk {
        if let Some((table, _)) = bulk.get(week) {
            inserted += copy_rows(&mut tx, &name, table, MEASUREMENT_COLUMNS, &fields, rows)?;
        }
    }
    let copied = started.elapsed();
    let mut conflicts = 0;
    if !routes.regular.is_empty() {
        let stage = "kidjamo_stage_measurements";
        create_stage(&mut tx, stage, MEASUREMENT_COLUMNS, &fields)?;
        let staged = copy_rows(
            &mut tx,
            &name,
            stage,
            MEASUREMENT_COLUMNS,
            &fields,
            &routes.regular,
        )?;
        let added = tx
            .execute(
                &format!("INSERT INTO measurements SELECT * FROM {stage} ON CONFLICT DO NOTHING"),
                &[],
            )
            .map_err(|source| LoadError::Copy {
                file: name.clone(),
                source,
            })?;
        inserted += added;
        conflicts = staged - added;
    }
    tx.commit()
        .map_err(query_error(format!("{name}: cannot commit")))?;
    let read = fields.first().map_or(0, Field::len) as u64;
    tracing::debug!(
        file = %name,
        rows = read,
        decode_s = decoded.as_secs_f64(),
        bulk_copy_s = (copied - decoded).as_secs_f64(),
        regular_s = (started.elapsed() - copied).as_secs_f64(),
        "measurement file loaded"
    );
    Ok((
        TableCounts {
            table: "measurements".into(),
            read,
            inserted,
            already_present: routes.repeated_in_file + conflicts,
            unknown_patient: routes.unknown_patient,
            updated: 0,
        },
        created,
    ))
}

fn regular_span(recorded_at: &Field<'_>, rows: &[u32]) -> Option<(i64, i64)> {
    let Field::TimestampMs(times) = recorded_at else {
        return None;
    };
    let (min, max) = rows
        .iter()
        .filter_map(|&i| times[i as usize])
        .fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    (min <= max).then_some((min, max))
}

/// Weeks loaded in bulk: week start → (standalone table, [start, end) in Unix ms).
pub type BulkWeeks = std::collections::BTreeMap<NaiveDate, (String, (i64, i64))>;

/// Creates the weekly partitions the rows of a file need, before they are inserted (weeks being
/// bulk-loaded excepted: their partition is the standalone table, attached at the end).
fn ensure_partitions(
    client: &mut Client,
    (min, max): (i64, i64),
    bulk: &BulkWeeks,
) -> Result<Vec<String>, DbError> {
    let day = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.date_naive())
            .unwrap_or_default()
    };
    let mut created = Vec::new();
    let (mut d, last) = (day(min), day(max));
    loop {
        if !bulk.contains_key(&crate::db::partitions::iso_week_start(d)) {
            created.extend(ensure_partition(client, d)?);
        }
        if d >= last {
            break;
        }
        d = (d + Days::days(7)).min(last);
    }
    Ok(created)
}

/// The partition of the week holding `day`, created if missing; its name when created.
pub(super) fn ensure_partition(
    client: &mut Client,
    day: NaiveDate,
) -> Result<Option<String>, DbError> {
    let row = client
        .query_one(
            "SELECT partition_name, created FROM kidjamo_ensure_week_partition($1)",
            &[&day],
        )
        .map_err(query_error(format!(
            "cannot create the partition for {day}"
        )))?;
    Ok(row.get::<_, bool>(1).then(|| row.get(0)))
}

/// Bronze carries no heat index (it is derived, never sent): compute it like Silver does.
fn fill_heat_index(df: &DataFrame, fields: &mut [Field<'_>]) {
    if df.column("heat_index_c").is_ok() {
        return;
    }
    let position = |name: &str| MEASUREMENT_COLUMNS.iter().position(|c| c.target == name);
    let (Some(t), Some(h), Some(hi)) = (
        position("ambient_temperature_c"),
        position("relative_humidity_pct"),
        position("heat_index_c"),
    ) else {
        return;
    };
    let (Field::F64(temps), Field::F64(humidities)) = (&fields[t], &fields[h]) else {
        return;
    };
    let computed: Vec<Option<f64>> = temps
        .iter()
        .zip(humidities)
        .map(|(&t, &h)| heat_index_c(t, h))
        .collect();
    fields[hi] = Field::F64(computed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurement_columns_follow_the_table_order() {
        let sql = include_str!("../../../sql/0004_measurements_and_alerts.sql");
        let body = &sql[sql.find("CREATE TABLE measurements (").unwrap_or(0)..];
        let body = &body[..body.find(") PARTITION BY").unwrap_or(body.len())];
        let in_table: Vec<&str> = body
            .lines()
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.starts_with("--") && !l.starts_with("PRIMARY") && !l.is_empty())
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let ours: Vec<&str> = MEASUREMENT_COLUMNS.iter().map(|c| c.target).collect();
        assert_eq!(in_table, ours);
    }
}
