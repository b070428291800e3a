//! `kidjamo db load` and `kidjamo db partitions` from the command line, against the real
//! PostgreSQL: a simulated lake loaded twice, compared row by row with the Parquet it came from
//! (read here independently), partitions checked through `tableoid`, retention with archives.

mod support;

use assert_cmd::Command;
use polars::prelude::{ParquetReader, SerReader};
use std::collections::HashMap;
use std::path::Path;
use support::TestDb;

fn kidjamo(db: &TestDb) -> Command {
    let mut c = Command::cargo_bin("kidjamo").expect("binary");
    c.env_remove("KIDJAMO_CONFIG").env("DATABASE_URL", &db.url);
    c
}

fn stdout(c: &mut Command) -> String {
    let out = c.output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The counts printed on the `measurements` line of `db load`: read, inserted, skipped.
fn measurement_counts(out: &str) -> (u64, u64, u64) {
    let line = out
        .lines()
        .find(|l| l.starts_with("measurements "))
        .unwrap_or_else(|| panic!("no measurements line in {out}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1], n[2])
}

type Key = (String, i64);
type Row = (String, Option<f64>, Option<i16>, String);

/// Bronze measurements by (device_id, recorded_at ms), the first occurrence kept.
fn bronze_rows(lake: &Path) -> HashMap<Key, Row> {
    let mut rows = HashMap::new();
    let root = lake.join("bronze/measurements");
    let mut files: Vec<_> = walk(&root);
    files.sort();
    for f in files {
        let df = ParquetReader::new(std::fs::File::open(&f).expect("open"))
            .finish()
            .expect("parquet");
        let s = |c: &str| df.column(c).expect(c).as_materialized_series().clone();
        let device = s("device_id");
        let time = s("recorded_at")
            .cast(&polars::prelude::DataType::Int64)
            .expect("ms");
        let message = support::id_texts(df.column("message_id").expect("message_id"));
        let spo2 = s("spo2_pct");
        let hr = s("heart_rate_bpm");
        let quality = s("quality_flag");
        let (device, time, message, spo2, hr, quality) = (
            device.str().expect("str"),
            time.i64().expect("i64"),
            message,
            spo2.f64().expect("f64"),
            hr.i16().expect("i16"),
            quality.str().expect("str"),
        );
        for (i, message) in message.iter().enumerate() {
            let key = (
                device.get(i).expect("device").to_string(),
                time.get(i).expect("time"),
            );
            rows.entry(key).or_insert((
                message.clone().expect("message"),
                spo2.get(i),
                hr.get(i),
                quality.get(i).expect("quality").to_string(),
            ));
        }
    }
    rows
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out
}

#[test]
fn load_twice_inserts_once_and_the_database_equals_the_lake() {
    let db = TestDb::migrated("load");
    let lake = tempfile::tempdir().expect("tempdir");
    Command::cargo_bin("kidjamo")
        .expect("binary")
        .env_remove("KIDJAMO_CONFIG")
        .args(["simulate", "--patients", "12", "--days", "2", "--seed", "7"])
        .args(["--start", "2026-03-01"]) // a Sunday: the two days fall in two ISO weeks
        .args(["--format", "parquet", "--out"])
        .arg(lake.path())
        .assert()
        .success();

    // A second run over 2026-03-02 delivered the same samples again, in another file: the
    // bulk-loaded week must keep one copy of each.
    let day2 = lake
        .path()
        .join("bronze/measurements/event_date=2026-03-02");
    let original = walk(&day2).pop().expect("a Parquet file for 2026-03-02");
    std::fs::copy(&original, day2.join("part-again-0.parquet")).expect("copy");

    // The first week's partition exists, empty, as `db partitions` creates them ahead.
    stdout(kidjamo(&db).args(["db", "partitions", "--today", "2026-03-01", "--ahead", "0"]));
    // The first day alone: its week is bulk-loaded into a new partition. Then everything:
    // the first week now loads the regular way (all present), the second in bulk.
    let partial = stdout(
        kidjamo(&db)
            .args(["db", "load", "--to", "2026-03-01", "--lake"])
            .arg(lake.path()),
    );
    assert!(
        partial.contains("partitions created: measurements_2026w09"),
        "{partial}"
    );
    let first = stdout(kidjamo(&db).args(["db", "load", "--lake"]).arg(lake.path()));
    assert!(
        first.contains("partitions created: measurements_2026w10"),
        "{first}"
    );
    let second = stdout(kidjamo(&db).args(["db", "load", "--lake"]).arg(lake.path()));
    let (read, inserted, skipped) = measurement_counts(&first);
    let expected = bronze_rows(lake.path());
    let (_, inserted_before, _) = measurement_counts(&partial);
    assert_eq!(
        (inserted_before + inserted) as usize,
        expected.len(),
        "{partial}{first}"
    );
    assert_eq!(read, inserted + skipped);
    assert_eq!(measurement_counts(&second), (read, 0, read), "{second}");
    assert!(
        second.contains("patients                     12 read          0 inserted"),
        "{second}"
    );

    let mut client = db.client();
    let loaded: HashMap<Key, Row> = client
        .query(
            "SELECT device_id::text, (extract(epoch FROM recorded_at) * 1000)::bigint,
                    message_id::text, spo2_pct, heart_rate_bpm, quality_flag
             FROM measurements",
            &[],
        )
        .expect("select")
        .iter()
        .map(|r| {
            (
                (r.get(0), r.get(1)),
                (r.get(2), r.get(3), r.get(4), r.get(5)),
            )
        })
        .collect();
    assert_eq!(loaded.len(), expected.len());
    assert!(loaded == expected, "loaded measurements differ from Bronze");

    // Both load paths audited every row: one audit row per statement and patient.
    let audited: i64 = client
        .query_one(
            "SELECT sum(row_count)::bigint FROM audit_log WHERE table_name = 'measurements' AND operation = 'INSERT'",
            &[],
        )
        .expect("audit")
        .get(0);
    assert_eq!(audited as usize, expected.len());
    // Every row sits in the partition of its ISO week, none in DEFAULT.
    let misplaced: i64 = client
        .query_one(
            "SELECT count(*) FROM measurements
             WHERE tableoid::regclass::text <>
                   kidjamo_week_partition_name(kidjamo_iso_week_start((recorded_at AT TIME ZONE 'UTC')::date))",
            &[],
        )
        .expect("tableoid")
        .get(0);
    assert_eq!(misplaced, 0);
    // The heat index was derived for Bronze, where it is never sent.
    let with_heat_index: i64 = client
        .query_one(
            "SELECT count(*) FROM measurements WHERE heat_index_c IS NOT NULL",
            &[],
        )
        .expect("heat index")
        .get(0);
    assert!(with_heat_index > 0);
    // The dashboards refresh (concurrently the second time) over the loaded rows.
    stdout(kidjamo(&db).args(["db", "refresh"]));
    let out = stdout(kidjamo(&db).args(["db", "refresh"]));
    assert!(out.contains("refreshed mv_patient_latest"), "{out}");
    let latest: i64 = client
        .query_one(
            "SELECT count(*) FROM mv_patient_latest WHERE last_recorded_at IS NOT NULL",
            &[],
        )
        .expect("mv")
        .get(0);
    assert_eq!(latest, 12);
}

#[test]
fn load_refuses_a_lake_with_a_broken_reference_file_naming_it() {
    let db = TestDb::migrated("loadbad");
    let lake = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(lake.path().join("reference")).expect("dir");
    std::fs::write(lake.path().join("reference/users.parquet"), b"not parquet").expect("write");
    let out = kidjamo(&db)
        .args(["db", "load", "--lake"])
        .arg(lake.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("users.parquet: cannot read Parquet"), "{err}");
}

const DEVICE: &str = "00000000-0000-0000-0000-0000000000e1";
const PATIENT: &str = "00000000-0000-0000-0000-00000000aaaa";

/// One patient and one measurement per day in `days`, inserted while only DEFAULT exists.
fn patient_with_measurements(db: &TestDb, days: &[&str]) {
    let values: Vec<String> = days
        .iter()
        .map(|d| format!("('{DEVICE}', '{d}T12:00Z', '{PATIENT}', gen_random_uuid(), 'ok')"))
        .collect();
    db.client()
        .batch_execute(&format!(
            "SET ROLE kidjamo_owner;
             INSERT INTO users (user_id, role, given_name, family_name, created_at)
               VALUES ('00000000-0000-0000-0000-0000000000a1', 'patient', 'A', 'B', '2026-01-01Z');
             INSERT INTO patients (patient_id, user_id, sex, birth_date, genotype, country)
               VALUES ('{PATIENT}', '00000000-0000-0000-0000-0000000000a1', 'F', '2015-01-01', 'SS', 'CM');
             INSERT INTO measurements (device_id, recorded_at, patient_id, message_id, quality_flag)
               VALUES {};",
            values.join(", ")
        ))
        .expect("seed");
}

fn count(db: &TestDb, sql: &str) -> i64 {
    db.client().query_one(sql, &[]).expect(sql).get(0)
}

#[test]
fn partitions_are_created_ahead_and_the_default_partition_is_emptied() {
    let db = TestDb::migrated("parts");
    patient_with_measurements(&db, &["2026-01-07", "2026-03-11", "2026-03-12"]);
    assert_eq!(count(&db, "SELECT count(*) FROM measurements_default"), 3);
    let out =
        stdout(kidjamo(&db).args(["db", "partitions", "--today", "2026-03-10", "--ahead", "2"]));
    for expected in [
        "created  measurements_2026w02 (moved 1 rows out of DEFAULT)",
        "created  measurements_2026w11 (moved 2 rows out of DEFAULT)",
        "created  measurements_2026w12",
        "created  measurements_2026w13",
        "measurements 3 rows before, 0 after",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
    assert_eq!(count(&db, "SELECT count(*) FROM measurements_default"), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM audit_log_default"), 0);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM measurements WHERE tableoid = 'measurements_2026w11'::regclass"
        ),
        2
    );
    let again =
        stdout(kidjamo(&db).args(["db", "partitions", "--today", "2026-03-10", "--ahead", "2"]));
    assert!(again.contains("all partitions already exist"), "{again}");
}

#[test]
fn retention_detaches_only_weeks_whose_archive_is_verified() {
    let db = TestDb::migrated("retain");
    patient_with_measurements(&db, &["2026-01-07", "2026-01-08", "2026-03-11"]);
    let lake = tempfile::tempdir().expect("tempdir");
    let partitions = |extra: &[&str]| {
        let mut c = kidjamo(&db);
        c.args([
            "db",
            "partitions",
            "--today",
            "2026-03-10",
            "--ahead",
            "0",
            "--retain",
            "4",
        ])
        .args(extra);
        c.output().expect("run")
    };
    // No archive: the old week is kept, the answer is "no" (exit 1), nothing detached.
    let out = partitions(&["--lake", lake.path().to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("kept     measurements_2026w02: no archive at"),
        "{text}"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM measurements"), 3);

    let out = partitions(&["--lake", lake.path().to_str().expect("utf-8"), "--archive"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("detached measurements_2026w02 (2 rows; archive verified"),
        "{text}"
    );
    let archive = lake.path().join("archive/measurements/iso_week=2026-W02");
    let csv = std::fs::read_to_string(archive.join("measurements_2026w02.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 3, "header and two rows:\n{csv}");
    assert!(csv.contains(PATIENT));
    // The week left the table; its rows are still in the detached table.
    assert_eq!(count(&db, "SELECT count(*) FROM measurements"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM measurements_2026w02"), 2);
}

#[test]
fn retention_refuses_an_archive_that_does_not_match_and_force_overrides() {
    let db = TestDb::migrated("retainforce");
    patient_with_measurements(&db, &["2026-01-07", "2026-03-11"]);
    let lake = tempfile::tempdir().expect("tempdir");
    let archive = lake.path().join("archive/measurements/iso_week=2026-W02");
    std::fs::create_dir_all(&archive).expect("dir");
    std::fs::write(archive.join("measurements_2026w02.csv"), "header\n").expect("csv");
    std::fs::write(
        archive.join("_manifest.json"),
        r#"{"file": "measurements_2026w02.csv", "rows": 5, "sha256": "00"}"#,
    )
    .expect("manifest");
    let lake_arg = lake.path().to_str().expect("utf-8");
    let out = kidjamo(&db)
        .args([
            "db",
            "partitions",
            "--today",
            "2026-03-10",
            "--ahead",
            "0",
            "--retain",
            "4",
            "--lake",
            lake_arg,
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("archive holds 5 rows, the partition 1"),
        "{text}"
    );
    let out = stdout(kidjamo(&db).args([
        "db",
        "partitions",
        "--today",
        "2026-03-10",
        "--ahead",
        "0",
        "--retain",
        "4",
        "--force",
    ]));
    assert!(
        out.contains("detached measurements_2026w02 (1 rows; --force"),
        "{out}"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM measurements"), 1);
}

mod alerts {
    use super::*;
    use kidjamo::domain::alerts::{Alert, AlertStatus};
    use kidjamo::domain::{Severity, UtcMillis, Vitals};
    use kidjamo::lake::{alerts::write_alerts, layout};

    fn alert(
        id: u128,
        patient: uuid::Uuid,
        last_seen: i64,
        status: AlertStatus,
        occurrences: u32,
    ) -> Alert {
        Alert {
            alert_id: uuid::Uuid::from_u128(id),
            patient_id: patient,
            device_id: uuid::Uuid::from_u128(0xd1),
            rule_id: "spo2_emergency".into(),
            severity: Severity::Critical,
            title: "SpO2 critical".into(),
            message: format!("seen {occurrences} times"),
            first_seen_at: UtcMillis(1_772_352_000_000),
            last_seen_at: UtcMillis(last_seen),
            vitals_snapshot: Vitals {
                spo2_pct: Some(84.5),
                heart_rate_bpm: Some(121),
                ..Vitals::default()
            },
            trigger_conditions: vec!["spo2_pct 84.5 < 85".into(), "it's \"quoted\"".into()],
            suggested_actions: vec![],
            status,
            escalation_level: 0,
            occurrences,
        }
    }

    fn first_patient(lake: &Path) -> uuid::Uuid {
        let df = ParquetReader::new(
            std::fs::File::open(lake.join("reference/patients.parquet")).expect("open"),
        )
        .finish()
        .expect("parquet");
        let id = df
            .column("patient_id")
            .expect("col")
            .str()
            .expect("str")
            .get(0)
            .expect("id")
            .to_string();
        uuid::Uuid::parse_str(&id).expect("uuid")
    }

    #[test]
    fn alerts_load_once_and_newer_states_update_only_what_the_engine_owns() {
        let db = TestDb::migrated("alerts");
        let lake = tempfile::tempdir().expect("tempdir");
        Command::cargo_bin("kidjamo")
            .expect("binary")
            .env_remove("KIDJAMO_CONFIG")
            .args([
                "simulate",
                "--patients",
                "3",
                "--days",
                "1",
                "--format",
                "parquet",
                "--out",
            ])
            .arg(lake.path())
            .assert()
            .success();
        let patient = first_patient(lake.path());
        let t0 = 1_772_352_060_000;
        let day = chrono::NaiveDate::from_ymd_opt(2026, 3, 1).expect("date");
        write_alerts(
            lake.path(),
            layout::alerts_part(layout::ALERT_DIRS[0], day, "run1", 0),
            &[
                alert(1, patient, t0, AlertStatus::Open, 1),
                alert(2, patient, t0, AlertStatus::Open, 1),
                alert(3, uuid::Uuid::from_u128(0xbad), t0, AlertStatus::Open, 1),
            ],
        )
        .expect("write alerts");
        let out = stdout(kidjamo(&db).args(["db", "load", "--lake"]).arg(lake.path()));
        assert!(out.contains("alerts                        3 read          2 inserted          0 duplicate or already present, 1 rejected (unknown patient)"), "{out}");
        let mut client = db.client();
        let row = client
            .query_one(
                "SELECT vitals_snapshot->>'spo2_pct', trigger_conditions, suggested_actions, status
                 FROM alerts WHERE alert_id = '00000000-0000-0000-0000-000000000001'",
                &[],
            )
            .expect("alert 1");
        assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("84.5"));
        assert_eq!(
            row.get::<_, Vec<String>>(1),
            vec!["spo2_pct 84.5 < 85", "it's \"quoted\""]
        );
        assert_eq!(row.get::<_, Vec<String>>(2), Vec::<String>::new());
        assert_eq!(row.get::<_, String>(3), "open");

        // Someone acknowledges alert 1 in the database; later the engine auto-resolves both.
        client
            .batch_execute(
                "UPDATE alerts SET status = 'acknowledged', acknowledged_at = now()
                 WHERE alert_id = '00000000-0000-0000-0000-000000000001'",
            )
            .expect("acknowledge");
        write_alerts(
            lake.path(),
            layout::alerts_part(
                layout::ALERT_DIRS[0],
                day.succ_opt().expect("day"),
                "run2",
                0,
            ),
            &[
                alert(1, patient, t0 + 600_000, AlertStatus::AutoResolved, 7),
                alert(2, patient, t0 + 600_000, AlertStatus::AutoResolved, 3),
            ],
        )
        .expect("write alerts");
        let out = stdout(kidjamo(&db).args(["db", "load", "--lake"]).arg(lake.path()));
        assert!(out.contains("2 updated to a newer state"), "{out}");
        let states: Vec<(String, i32, String)> = client
            .query(
                "SELECT alert_id::text, occurrences, status FROM alerts ORDER BY 1",
                &[],
            )
            .expect("alerts")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(
            states,
            vec![
                (
                    "00000000-0000-0000-0000-000000000001".to_string(),
                    7,
                    "acknowledged".to_string()
                ),
                (
                    "00000000-0000-0000-0000-000000000002".to_string(),
                    3,
                    "auto_resolved".to_string()
                ),
            ]
        );
        // A rerun changes nothing.
        let again = stdout(kidjamo(&db).args(["db", "load", "--lake"]).arg(lake.path()));
        assert!(again.contains("alerts                        5 read          0 inserted          4 duplicate or already present, 1 rejected"), "{again}");

        // An auto-resolution keeps the time of the last sample that met the rule: at an equal
        // last_seen_at it is still the newer state, whether it comes in the same load or later.
        let status_of = |client: &mut postgres::Client, id: &str| -> String {
            client
                .query_one(
                    &format!("SELECT status FROM alerts WHERE alert_id = '{id}'"),
                    &[],
                )
                .expect("alert")
                .get(0)
        };
        for (id, together) in [(4u128, false), (5u128, true)] {
            let open = alert(id, patient, t0, AlertStatus::Open, 2);
            let resolved = alert(id, patient, t0, AlertStatus::AutoResolved, 2);
            let part = |run: &str| layout::alerts_part(layout::ALERT_DIRS[0], day, run, 0);
            if together {
                write_alerts(lake.path(), part(&format!("r{id}a")), &[open]).expect("write");
                write_alerts(lake.path(), part(&format!("r{id}b")), &[resolved]).expect("write");
                stdout(kidjamo(&db).args(["db", "load", "--lake"]).arg(lake.path()));
            } else {
                write_alerts(lake.path(), part(&format!("r{id}a")), &[open]).expect("write");
                stdout(kidjamo(&db).args(["db", "load", "--lake"]).arg(lake.path()));
                write_alerts(lake.path(), part(&format!("r{id}b")), &[resolved]).expect("write");
                stdout(kidjamo(&db).args(["db", "load", "--lake"]).arg(lake.path()));
            }
            let id = uuid::Uuid::from_u128(id).to_string();
            assert_eq!(status_of(&mut client, &id), "auto_resolved", "alert {id}");
        }
    }
}
