//! `kidjamo db partitions`: weekly measurement partitions ahead and behind, monthly audit
//! partitions, the DEFAULT partitions emptied into real ones, and retention that detaches a
//! week only once the lake holds a verified archive of it; tables left by a killed load or
//! restore are dropped.
//!
//! The current date is an operator's input here (`today`), never read inside: tests and
//! backfills can name any day.

use super::{query_error, DbError};
use chrono::{Datelike, Duration as Days, NaiveDate, Weekday};
use postgres::Client;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("{path}: {reason}")]
    Archive { path: String, reason: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub name: String,
    /// Rows moved out of the DEFAULT partition into the new one.
    pub moved_rows: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RetentionAction {
    Detached {
        name: String,
        rows: i64,
        archive: Option<PathBuf>,
    },
    /// Past retention but kept, with the reason (no archive, counts differ…).
    Kept { name: String, reason: String },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionReport {
    pub created: Vec<Created>,
    pub measurements_default_before: i64,
    pub measurements_default_after: i64,
    pub audit_default_before: i64,
    pub audit_default_after: i64,
    pub retention: Vec<RetentionAction>,
    /// Tables a killed load or restore left, dropped; `None` when a load or restore was
    /// running (its tables are in use, so none was looked at).
    pub leftovers_dropped: Option<Vec<super::leftover_weeks::Leftover>>,
}

#[derive(Debug, Clone)]
pub struct PartitionPlan {
    pub today: NaiveDate,
    pub weeks_ahead: u32,
    pub weeks_behind: u32,
    /// Detach weeks that ended more than this many weeks before the current one.
    pub retain_weeks: Option<u32>,
    /// Lake root where archives are looked for (and written with `write_archives`).
    pub lake: Option<PathBuf>,
    /// Write the archive of a partition past retention when the lake lacks one.
    pub write_archives: bool,
    /// Detach past retention even without an archive.
    pub force: bool,
}

pub fn iso_week_start(day: NaiveDate) -> NaiveDate {
    day - Days::days(i64::from(day.weekday().num_days_from_monday()))
}

/// `measurements_2026w11` → Monday of ISO week 11 of 2026.
pub fn week_of_partition(name: &str) -> Option<NaiveDate> {
    let rest = name.strip_prefix("measurements_")?;
    let (year, week) = rest.split_once('w')?;
    NaiveDate::from_isoywd_opt(year.parse().ok()?, week.parse().ok()?, Weekday::Mon)
}

/// `iso_week=2026-W11`, the folder of a week's archive in the lake.
pub fn archive_dir(lake: &Path, week_start: NaiveDate) -> PathBuf {
    let w = week_start.iso_week();
    lake.join(format!(
        "archive/measurements/iso_week={}-W{:02}",
        w.year(),
        w.week()
    ))
}

fn count(client: &mut Client, table: &str) -> Result<i64, DbError> {
    Ok(client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .map_err(query_error(format!("cannot count {table}")))?
        .get(0))
}

fn ensure(client: &mut Client, function: &str, day: NaiveDate) -> Result<Option<Created>, DbError> {
    let row = client
        .query_one(
            &format!("SELECT partition_name, created, moved_rows FROM {function}($1)"),
            &[&day],
        )
        .map_err(query_error(format!(
            "cannot create the partition for {day}"
        )))?;
    Ok(row.get::<_, bool>(1).then(|| Created {
        name: row.get(0),
        moved_rows: row.get(2),
    }))
}

pub fn maintain(
    client: &mut Client,
    plan: &PartitionPlan,
) -> Result<PartitionReport, PartitionError> {
    let mut report = PartitionReport {
        // First, so that the weeks they were to replace get their empty partitions again below.
        leftovers_dropped: super::leftover_weeks::sweep(client, true)?,
        measurements_default_before: count(client, "measurements_default")?,
        audit_default_before: count(client, "audit_log_default")?,
        ..PartitionReport::default()
    };
    let this_week = iso_week_start(plan.today);
    let mut days: Vec<NaiveDate> = (-i64::from(plan.weeks_behind)..=i64::from(plan.weeks_ahead))
        .map(|w| this_week + Days::weeks(w))
        .collect();
    // Every week that has rows waiting in DEFAULT gets its partition, which moves them there.
    let waiting = client
        .query(
            "SELECT DISTINCT kidjamo_iso_week_start((recorded_at AT TIME ZONE 'UTC')::date)
             FROM measurements_default",
            &[],
        )
        .map_err(query_error("cannot read the DEFAULT partition"))?;
    days.extend(waiting.iter().map(|r| r.get::<_, NaiveDate>(0)));
    days.sort();
    days.dedup();
    for day in days {
        report
            .created
            .extend(ensure(client, "kidjamo_ensure_week_partition", day)?);
    }
    let mut months: Vec<NaiveDate> = (0..=plan.weeks_ahead.div_ceil(4) + 1)
        .filter_map(|m| {
            plan.today
                .with_day(1)?
                .checked_add_months(chrono::Months::new(m))
        })
        .collect();
    let waiting = client
        .query(
            "SELECT DISTINCT (date_trunc('month', logged_at AT TIME ZONE 'UTC'))::date FROM audit_log_default",
            &[],
        )
        .map_err(query_error("cannot read the audit DEFAULT partition"))?;
    months.extend(waiting.iter().map(|r| r.get::<_, NaiveDate>(0)));
    months.sort();
    months.dedup();
    for month in months {
        report
            .created
            .extend(ensure(client, "kidjamo_ensure_month_partition", month)?);
    }
    if let Some(retain) = plan.retain_weeks {
        let cutoff = this_week - Days::weeks(i64::from(retain));
        report.retention = retention(client, plan, cutoff)?;
    }
    report.measurements_default_after = count(client, "measurements_default")?;
    report.audit_default_after = count(client, "audit_log_default")?;
    Ok(report)
}

/// Attached weekly partitions, oldest first.
pub fn weekly_partitions(client: &mut Client) -> Result<Vec<(String, NaiveDate)>, DbError> {
    let rows = client
        .query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'measurements'::regclass",
            &[],
        )
        .map_err(query_error("cannot list measurement partitions"))?;
    let mut weeks: Vec<(String, NaiveDate)> = rows
        .iter()
        .filter_map(|r| {
            let name: String = r.get(0);
            week_of_partition(&name).map(|w| (name, w))
        })
        .collect();
    weeks.sort_by_key(|(_, w)| *w);
    Ok(weeks)
}

fn retention(
    client: &mut Client,
    plan: &PartitionPlan,
    cutoff: NaiveDate,
) -> Result<Vec<RetentionAction>, PartitionError> {
    let mut actions = Vec::new();
    for (name, week) in weekly_partitions(client)? {
        if week + Days::weeks(1) > cutoff {
            continue;
        }
        let rows = count(client, &name)?;
        let archive = match &plan.lake {
            Some(lake) => {
                let dir = archive_dir(lake, week);
                if plan.write_archives && !dir.join(MANIFEST).exists() {
                    write_archive(client, &name, &dir)?;
                }
                Some(verify_archive(&dir, rows))
            }
            None => None,
        };
        let verdict = match archive {
            Some(Ok(dir)) => Ok(Some(dir)),
            Some(Err(reason)) if !plan.force => Err(reason),
            None if !plan.force => Err("no lake given to look for its archive (--lake)".into()),
            _ => Ok(None),
        };
        match verdict {
            Ok(archive) => {
                client
                    .batch_execute(&format!("ALTER TABLE measurements DETACH PARTITION {name}"))
                    .map_err(query_error(format!("cannot detach {name}")))?;
                actions.push(RetentionAction::Detached {
                    name,
                    rows,
                    archive,
                });
            }
            Err(reason) => actions.push(RetentionAction::Kept { name, reason }),
        }
    }
    Ok(actions)
}

const MANIFEST: &str = "_manifest.json";

/// The archive of one week: the partition's rows as CSV (PostgreSQL's text forms, exact for
/// every type it holds), its SHA-256 and row count in a manifest.
fn write_archive(client: &mut Client, partition: &str, dir: &Path) -> Result<(), PartitionError> {
    let err = |reason: String| PartitionError::Archive {
        path: dir.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let data_name = format!("{partition}.csv");
    let tmp = dir.join(format!("{data_name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(|e| err(e.to_string()))?;
    let mut reader = client
        .copy_out(&format!(
            "COPY (SELECT * FROM {partition} ORDER BY device_id, recorded_at) TO STDOUT (FORMAT csv, HEADER)"
        ))
        .map_err(query_error(format!("cannot export {partition}")))?;
    let mut hasher = Sha256::new();
    let mut rows: i64 = -1; // the header line
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut reader, &mut buf).map_err(|e| err(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        // CSV fields here hold no newlines (ids, numbers, timestamps, short codes).
        rows += buf[..n].iter().filter(|&&b| b == b'\n').count() as i64;
        file.write_all(&buf[..n]).map_err(|e| err(e.to_string()))?;
    }
    file.sync_all().map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, dir.join(&data_name)).map_err(|e| err(e.to_string()))?;
    let manifest = serde_json::json!({
        "partition": partition,
        "file": data_name,
        "rows": rows,
        "sha256": hex(&hasher.finalize()),
    });
    std::fs::write(dir.join(MANIFEST), format!("{manifest:#}\n")).map_err(|e| err(e.to_string()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The archive exists, its file has the checksum its manifest states, and it holds as many rows
/// as the partition.
fn verify_archive(dir: &Path, rows: i64) -> Result<PathBuf, String> {
    let manifest_path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|_| format!("no archive at {}", manifest_path.display()))?;
    let manifest: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not JSON: {e}", manifest_path.display()))?;
    let (Some(file), Some(archived), Some(sha)) = (
        manifest["file"].as_str(),
        manifest["rows"].as_i64(),
        manifest["sha256"].as_str(),
    ) else {
        return Err(format!(
            "{}: lacks file, rows or sha256",
            manifest_path.display()
        ));
    };
    if archived != rows {
        return Err(format!(
            "archive holds {archived} rows, the partition {rows}"
        ));
    }
    let data = std::fs::read(dir.join(file)).map_err(|e| format!("{file}: {e}"))?;
    let actual = hex(&Sha256::digest(&data));
    if actual != sha {
        return Err(format!(
            "{file}: checksum {actual} differs from the manifest's {sha}"
        ));
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_map_to_iso_weeks() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        assert_eq!(
            week_of_partition("measurements_2026w11"),
            Some(d("2026-03-09"))
        );
        // ISO week 1 of 2027 starts in 2027; 2026-W53 exists.
        assert_eq!(
            week_of_partition("measurements_2026w53"),
            Some(d("2026-12-28"))
        );
        assert_eq!(week_of_partition("measurements_default"), None);
        assert_eq!(iso_week_start(d("2026-03-15")), d("2026-03-09"));
        assert_eq!(
            archive_dir(Path::new("/l"), d("2027-01-04")),
            PathBuf::from("/l/archive/measurements/iso_week=2027-W01")
        );
    }
}
