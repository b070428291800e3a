//! `kidjamo etl`: hand-built Bronze with hand-computed Silver and Gold; a simulated cohort end
//! to end checked against independent computations; reruns; alerts equal to a continuous run;
//! errors from the command line.

mod support;

use assert_cmd::Command;
use chrono::NaiveDate;
use kidjamo::domain::thresholds::Thresholds;
use kidjamo::etl::batch_alerts;
use kidjamo::etl::daily::{self, DailyJob};
use kidjamo::etl::keys::PatientKeyer;
use kidjamo::etl::periodic::{self, Period};
use kidjamo::etl::silver;
use kidjamo::output::tables::write_parquet;
use kidjamo::progress::NoProgress;
use polars::prelude::*;
use predicates::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use uuid::Uuid;

const KEY: &str = "test-key-0123456789abcdef";

fn kidjamo() -> Command {
    let mut c = Command::cargo_bin("kidjamo").expect("binary built");
    c.env_remove("KIDJAMO_CONFIG")
        .env_remove("RUST_LOG")
        .env("KIDJAMO_PSEUDONYMISATION__KEY", KEY);
    c
}

fn keyer() -> PatientKeyer {
    PatientKeyer::new(KEY.as_bytes(), None).expect("key")
}

fn ms(date: &str, hms: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(&format!("{date}T{hms}Z"))
        .expect("time")
        .timestamp_millis()
}

/// One Bronze row, with the fields the tests vary.
#[derive(Clone)]
struct Row {
    message: Uuid,
    patient: Uuid,
    device: Uuid,
    at: i64,
    spo2: Option<f64>,
    hr: Option<i16>,
    flag: &'static str,
    received: i64,
    run: &'static str,
    offset: i64,
}

fn row(
    message: u128,
    patient: Uuid,
    device: Uuid,
    at: i64,
    spo2: f64,
    hr: i16,
    flag: &'static str,
) -> Row {
    Row {
        message: Uuid::from_u128(message),
        patient,
        device,
        at,
        spo2: Some(spo2),
        hr: Some(hr),
        flag,
        received: at + 1_000,
        run: "run-a",
        offset: message as i64,
    }
}

fn time_col(name: &str, v: Vec<i64>) -> Column {
    Int64Chunked::from_vec(name.into(), v)
        .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
        .into_series()
        .into()
}

/// A DataFrame with Bronze's schema (see `lake::bronze`).
fn bronze_frame(rows: &[Row]) -> DataFrame {
    let s = |f: &dyn Fn(&Row) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let n = rows.len();
    let none_f = vec![None::<f64>; n];
    let none_i = vec![None::<i16>; n];
    DataFrame::new_infer_height(vec![
        Column::new("message_id".into(), s(&|r| r.message.to_string())),
        Column::new("patient_id".into(), s(&|r| r.patient.to_string())),
        Column::new("device_id".into(), s(&|r| r.device.to_string())),
        time_col("recorded_at", rows.iter().map(|r| r.at).collect()),
        Column::new("schema_version".into(), vec![1i16; n]),
        Column::new(
            "spo2_pct".into(),
            rows.iter().map(|r| r.spo2).collect::<Vec<_>>(),
        ),
        Column::new(
            "heart_rate_bpm".into(),
            rows.iter().map(|r| r.hr).collect::<Vec<_>>(),
        ),
        Column::new("respiratory_rate_min".into(), none_i.clone()),
        Column::new("temperature_c".into(), none_f.clone()),
        Column::new("ambient_temperature_c".into(), none_f.clone()),
        Column::new("relative_humidity_pct".into(), none_f.clone()),
        Column::new("hydration_pct".into(), none_f),
        Column::new("activity_level".into(), none_i.clone()),
        Column::new("pain_scale".into(), none_i),
        Column::new("battery_pct".into(), vec![Some(50i16); n]),
        Column::new("signal_quality_pct".into(), vec![Some(90i16); n]),
        Column::new("firmware_version".into(), vec![Some("2.1.3"); n]),
        Column::new(
            "quality_flag".into(),
            rows.iter().map(|r| r.flag).collect::<Vec<_>>(),
        ),
        time_col("received_at", rows.iter().map(|r| r.received).collect()),
        Column::new(
            "ingest_run_id".into(),
            rows.iter().map(|r| r.run).collect::<Vec<_>>(),
        ),
        Column::new("source".into(), vec!["test"; n]),
        Column::new(
            "source_offset".into(),
            rows.iter().map(|r| r.offset).collect::<Vec<_>>(),
        ),
    ])
    .expect("bronze frame")
}

fn write_reference(root: &Path, patients: &[(Uuid, &str, &str)]) {
    let days: Vec<i32> = patients
        .iter()
        .map(|p| {
            (NaiveDate::parse_from_str(p.1, "%Y-%m-%d").expect("date")
                - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch"))
            .num_days() as i32
        })
        .collect();
    let df = DataFrame::new_infer_height(vec![
        Column::new(
            "patient_id".into(),
            patients.iter().map(|p| p.0.to_string()).collect::<Vec<_>>(),
        ),
        Int32Chunked::from_vec("birth_date".into(), days)
            .into_date()
            .into_series()
            .into(),
        Column::new(
            "genotype".into(),
            patients.iter().map(|p| p.2).collect::<Vec<_>>(),
        ),
        Column::new("sex".into(), vec!["F"; patients.len()]),
        Column::new("country".into(), vec!["Cameroun"; patients.len()]),
    ])
    .expect("reference");
    write_parquet(root, "reference/patients.parquet".to_string(), df).expect("write reference");
}

fn read_dir_frame(dir: &Path) -> DataFrame {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.expect("entry").path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "parquet"));
    files.sort();
    kidjamo::etl::frame::read_files(&files)
        .expect("readable")
        .unwrap_or_default()
}

fn f(df: &DataFrame, key_col: &str, key: &str, col: &str) -> Option<f64> {
    let keys = df.column(key_col).expect("key").str().expect("str").clone();
    let i = keys
        .iter()
        .position(|k| k == Some(key))
        .expect("row present");
    let c = df
        .column(col)
        .expect(col)
        .cast(&DataType::Float64)
        .expect("cast");
    c.f64().expect("f64").get(i)
}

const DAY: &str = "2026-03-10";

struct HandLake {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    p1: Uuid,
    p2: Uuid,
    d1: Uuid,
}

/// The hand-built day of the README's worked example:
/// P1 (13 today, so G4): r1 08:00 SpO₂ 95 HR 80; r1 resent (same message id) and another
/// message at the same device and time (both duplicates); 09:00 93/100; 10:00 70/140 flagged
/// `motion` (excluded from trends); 12:00 97/90 `battery_low` (eligible); a late record for
/// 11:00 96/85 in a second Bronze file received the next day. P2 (12 until tomorrow: G3):
/// 08:00 99/70. An unknown patient, and a record of another day filed under this one.
fn hand_lake() -> HandLake {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().to_path_buf();
    let (p1, p2, p3) = (
        Uuid::from_u128(0x11),
        Uuid::from_u128(0x22),
        Uuid::from_u128(0x33),
    );
    let (d1, d2, d3) = (
        Uuid::from_u128(0xd1),
        Uuid::from_u128(0xd2),
        Uuid::from_u128(0xd3),
    );
    write_reference(&root, &[(p1, "2013-03-10", "SS"), (p2, "2013-03-11", "SC")]);
    let mut resent = row(1, p1, d1, ms(DAY, "08:00:00"), 95.0, 80, "ok");
    resent.received += 60_000;
    let mut same_time = row(2, p1, d1, ms(DAY, "08:00:00"), 94.0, 81, "ok");
    same_time.received += 120_000;
    let first_file = vec![
        row(1, p1, d1, ms(DAY, "08:00:00"), 95.0, 80, "ok"),
        resent,
        same_time,
        row(4, p1, d1, ms(DAY, "09:00:00"), 93.0, 100, "ok"),
        row(5, p1, d1, ms(DAY, "10:00:00"), 70.0, 140, "motion"),
        row(6, p1, d1, ms(DAY, "12:00:00"), 97.0, 90, "battery_low"),
        row(8, p2, d2, ms(DAY, "08:00:00"), 99.0, 70, "ok"),
        row(9, p3, d3, ms(DAY, "08:00:00"), 98.0, 70, "ok"),
        row(10, p2, d2, ms("2026-03-09", "23:00:00"), 98.0, 70, "ok"),
    ];
    let mut late = row(7, p1, d1, ms(DAY, "11:00:00"), 96.0, 85, "ok");
    late.received = ms("2026-03-11", "06:00:00");
    late.run = "run-b";
    let partition = format!("bronze/measurements/event_date={DAY}");
    write_parquet(
        &root,
        format!("{partition}/part-run-a-0.parquet"),
        bronze_frame(&first_file),
    )
    .expect("bronze a");
    // The second file's writer spells the ids in capitals: the same patient and device.
    let mut shouting = bronze_frame(&[late]);
    for name in ["patient_id", "device_id"] {
        let upper: Vec<String> = shouting
            .column(name)
            .expect("id column")
            .str()
            .expect("text")
            .iter()
            .map(|t| t.unwrap_or_default().to_uppercase())
            .collect();
        shouting
            .with_column(Column::new(name.into(), upper))
            .expect("upper-case ids");
    }
    write_parquet(&root, format!("{partition}/part-run-b-0.parquet"), shouting).expect("bronze b");
    HandLake {
        _tmp: tmp,
        root,
        p1,
        p2,
        d1,
    }
}

fn run_daily(root: &Path, dates: Vec<NaiveDate>, interval_s: f64) -> Vec<daily::DayReport> {
    let thresholds = Thresholds::reference();
    let keyer = keyer();
    let job = DailyJob {
        root: root.to_path_buf(),
        dates,
        thresholds: &thresholds,
        keyer: &keyer,
        expected_interval_s: interval_s,
    };
    daily::run(&job, &NoProgress).expect("etl daily")
}

fn day() -> NaiveDate {
    NaiveDate::parse_from_str(DAY, "%Y-%m-%d").expect("date")
}

#[test]
fn hand_built_day_gives_the_hand_computed_silver_and_gold() {
    let lake = hand_lake();
    let reports = run_daily(&lake.root, vec![day()], 3600.0);
    let r = &reports[0];
    let c = |k: &str| r.counts.get(k).copied().unwrap_or(u64::MAX);
    assert_eq!(c("bronze_rows"), 10);
    assert_eq!(c("duplicate_message_id"), 1);
    assert_eq!(c("duplicate_device_time"), 1);
    assert_eq!(c("quarantined.unknown_patient"), 1);
    assert_eq!(c("quarantined.wrong_partition"), 1);
    assert_eq!(c("silver_rows"), 6);

    let silver = read_dir_frame(
        &lake
            .root
            .join(format!("silver/measurements/event_date={DAY}")),
    );
    assert_eq!(silver.height(), 6);
    let ids: Vec<String> = support::id_texts(silver.column("message_id").expect("col"))
        .into_iter()
        .map(|s| s.expect("id"))
        .collect();
    // Sorted by patient then time; the first received copy of message 1 kept, the late
    // record included at its event time.
    let expected: Vec<String> = [1u128, 4, 5, 7, 6, 8]
        .iter()
        .map(|i| Uuid::from_u128(*i).to_string())
        .collect();
    assert_eq!(ids, expected);
    // Ids in their canonical text, the capitals of the late record's file included.
    let texts = |name: &str| -> Vec<String> {
        silver
            .column(name)
            .expect("id column")
            .str()
            .expect("text")
            .iter()
            .map(|t| t.unwrap_or_default().to_string())
            .collect()
    };
    let (p1, p2, d1) = (
        lake.p1.to_string(),
        lake.p2.to_string(),
        lake.d1.to_string(),
    );
    let d2 = Uuid::from_u128(0xd2).to_string();
    assert_eq!(
        texts("patient_id"),
        [&p1, &p1, &p1, &p1, &p1, &p2].map(String::from)
    );
    assert_eq!(
        texts("device_id"),
        [&d1, &d1, &d1, &d1, &d1, &d2].map(String::from)
    );
    let groups: Vec<Option<&str>> = silver
        .column("age_group")
        .expect("ag")
        .str()
        .expect("s")
        .iter()
        .collect();
    assert_eq!(
        groups,
        [
            Some("G4"),
            Some("G4"),
            Some("G4"),
            Some("G4"),
            Some("G4"),
            Some("G3")
        ]
    );
    let spo2_tiers: Vec<Option<&str>> = silver
        .column("spo2_tier")
        .expect("t")
        .str()
        .expect("s")
        .iter()
        .collect();
    // G4: normal ≥ 94, alert ≤ 92, emergency ≤ 88.
    assert_eq!(
        spo2_tiers[..5],
        [
            Some("normal"),
            Some("vigilance"),
            Some("emergency"),
            Some("normal"),
            Some("normal")
        ]
    );
    let eligible: Vec<Option<bool>> = silver
        .column("trend_eligible")
        .expect("e")
        .bool()
        .expect("b")
        .iter()
        .collect();
    assert_eq!(
        eligible,
        [
            Some(true),
            Some(true),
            Some(false),
            Some(true),
            Some(true),
            Some(true)
        ]
    );
    for name in silver.get_column_names() {
        assert!(!["given_name", "family_name", "email", "phone"].contains(&name.as_str()));
    }

    let quarantine = read_dir_frame(
        &lake
            .root
            .join(format!("quarantine/silver_measurements/event_date={DAY}")),
    );
    let mut reasons: Vec<String> = quarantine
        .column("reason_codes")
        .expect("r")
        .str()
        .expect("s")
        .iter()
        .map(|s| s.expect("reason").to_string())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["unknown_patient", "wrong_partition"]);
    // Both keep their message id as text, as the ingest quarantine does: one set aside before
    // deduplication (wrong partition), one by enrichment (unknown patient).
    let quarantined_ids: Vec<String> = quarantine
        .column("message_id")
        .expect("m")
        .str()
        .expect("ids as text")
        .iter()
        .map(|s| s.expect("id").to_string())
        .collect();
    assert_eq!(quarantined_ids.len(), 2);
    for id in &quarantined_ids {
        assert!(uuid::Uuid::try_parse(id).is_ok(), "{id}");
        assert!(!ids.contains(id), "{id} is in Silver too");
    }

    let pd = read_dir_frame(
        &lake
            .root
            .join(format!("gold/patient_daily/event_date={DAY}")),
    );
    assert_eq!(pd.height(), 2);
    let k1 = keyer().key(&lake.p1);
    let g = |col: &str| f(&pd, "patient_key", &k1, col);
    assert_eq!(g("samples"), Some(5.0));
    assert_eq!(g("trend_eligible_samples"), Some(4.0));
    assert_eq!(g("expected_samples"), Some(24.0));
    assert!((g("completeness").expect("c") - 5.0 / 24.0).abs() < 1e-12);
    // Trend-eligible SpO₂: 95, 93, 97, 96 (the motion sample's 70 is excluded).
    assert_eq!(g("spo2_min"), Some(93.0));
    assert_eq!(g("spo2_max"), Some(97.0));
    assert!((g("spo2_mean").expect("m") - 95.25).abs() < 1e-12);
    // Linear interpolation on [93, 95, 96, 97]: p5 at 0.15 → 93.3, p95 at 2.85 → 96.85.
    assert!((g("spo2_p5").expect("p5") - 93.3).abs() < 1e-9);
    assert!((g("spo2_p95").expect("p95") - 96.85).abs() < 1e-9);
    assert!((g("heart_rate_mean").expect("hr") - 88.75).abs() < 1e-12);
    // |100-80| (1 h), |85-100| (2 h, within 2 intervals), |90-85|: 40/3.
    assert!((g("heart_rate_variability").expect("hrv") - 40.0 / 3.0).abs() < 1e-9);
    // One sample of an hour each: three normal, one vigilance (SpO₂ 93).
    assert_eq!(g("minutes_normal"), Some(180.0));
    assert_eq!(g("minutes_vigilance"), Some(60.0));
    assert_eq!(g("minutes_emergency"), Some(0.0));
    assert_eq!(
        g("temperature_mean"),
        None,
        "no temperature was sent: no value, not a default"
    );
    for name in pd.get_column_names() {
        assert_ne!(name.as_str(), "patient_id", "no clear id in Gold");
    }

    let qd = read_dir_frame(
        &lake
            .root
            .join(format!("gold/quality_daily/event_date={DAY}")),
    );
    let q = |col: &str| f(&qd, "device_id", &lake.d1.to_string(), col);
    assert_eq!(q("samples"), Some(5.0));
    assert_eq!(q("flag_ok"), Some(3.0));
    assert_eq!(q("flag_motion"), Some(1.0));
    assert_eq!(q("flag_battery_low"), Some(1.0));
    // Silences over 10 min: midnight→08:00, each hour between samples (4), 12:00→midnight.
    assert_eq!(q("gaps"), Some(6.0));
    assert_eq!(q("longest_gap_s"), Some(12.0 * 3600.0));

    // Alerts: a device silent between hourly samples is reported (first seen 10 min after
    // the last sample), and patient_daily counts the day's alerts by severity.
    let ad = read_dir_frame(
        &lake
            .root
            .join(format!("gold/alerts_daily/event_date={DAY}")),
    );
    let rules: Vec<(String, String)> = (0..ad.height())
        .map(|i| {
            let s = |c: &str| {
                ad.column(c)
                    .expect(c)
                    .str()
                    .expect("s")
                    .get(i)
                    .expect("v")
                    .to_string()
            };
            (s("patient_key"), s("rule_id"))
        })
        .collect();
    let silent_p1 = rules
        .iter()
        .filter(|r| r.0 == k1 && r.1 == "device_silent")
        .count();
    assert_eq!(silent_p1, 5, "{rules:?}");
    let warn_p1 = f(&pd, "patient_key", &k1, "alerts_warn").expect("warn") as usize;
    let opened_warn = (0..ad.height())
        .filter(|&i| {
            ad.column("patient_key")
                .expect("k")
                .str()
                .expect("s")
                .get(i)
                == Some(k1.as_str())
                && ad.column("severity").expect("s").str().expect("s").get(i) == Some("warn")
        })
        .count();
    assert_eq!(warn_p1, opened_warn);
    let k2 = keyer().key(&lake.p2);
    assert!(rules.iter().any(|r| r.0 == k2 && r.1 == "device_silent"));

    // The manifest lists every output with its checksum and says which key made the keys.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lake.root.join(format!("_runs/{}.json", r.run_id))).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["patient_key_id"], keyer().key_id());
    assert_eq!(manifest["counts"]["silver_rows"], 6);
    for out in manifest["outputs"].as_array().expect("outputs") {
        let path = lake.root.join(out["path"].as_str().expect("path"));
        let bytes = std::fs::read(&path).expect("listed output exists");
        use sha2::Digest;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            out["sha256"].as_str().expect("sha")
        );
    }
}

#[test]
fn a_rerun_replaces_the_day_with_identical_files() {
    let lake = hand_lake();
    run_daily(&lake.root, vec![day()], 3600.0);
    let snapshot = |root: &Path| -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        for table in [
            "silver/measurements",
            "gold/patient_daily",
            "gold/quality_daily",
            "gold/alerts_daily",
            "gold/features_ml",
            "alerts/batch",
        ] {
            let dir = root.join(format!("{table}/event_date={DAY}"));
            for e in std::fs::read_dir(&dir).expect("partition") {
                let p = e.expect("e").path();
                out.insert(p.display().to_string(), std::fs::read(&p).expect("file"));
            }
        }
        out
    };
    let first = snapshot(&lake.root);
    run_daily(&lake.root, vec![day()], 3600.0);
    assert_eq!(first, snapshot(&lake.root));
    let leftovers: Vec<_> = std::fs::read_dir(&lake.root)
        .expect("root")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".kidjamo-staging"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn command_line_runs_the_day_and_refuses_bad_input_clearly() {
    let lake = hand_lake();
    let root = lake.root.display().to_string();
    kidjamo()
        .args(["etl", "daily", "--lake", &root, "--date", DAY])
        .assert()
        .success()
        .stdout(predicate::str::contains("10 Bronze rows → 6 Silver"));
    // 2 of 10 rows quarantined is above 10 %: the run commits and exits 1, saying why.
    kidjamo()
        .args([
            "etl",
            "daily",
            "--lake",
            &root,
            "--date",
            DAY,
            "--max-reject-ratio",
            "0.1",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("2 of 10 Bronze rows quarantined"));
    kidjamo()
        .args(["etl", "daily", "--lake", &root, "--date", DAY])
        .env_remove("KIDJAMO_PSEUDONYMISATION__KEY")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("KIDJAMO_PSEUDONYMISATION__KEY"));
    kidjamo()
        .args(["etl", "daily", "--lake", &root, "--date", "2026-02-30"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--date \"2026-02-30\" is not a date",
        ));
    kidjamo()
        .args(["etl", "weekly", "--lake", &root, "--week", "2026-11"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("expected YYYY-Www"));
    kidjamo()
        .args(["etl", "weekly", "--lake", &root, "--week", "2026-W20"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no patient_daily partition inside 2026-W20",
        ));
    kidjamo()
        .args(["etl", "weekly", "--lake", &root, "--week", "2026-W11"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "1 day(s) of patient_daily → 2 rows",
        ));
    std::fs::remove_file(lake.root.join("reference/patients.parquet")).expect("rm");
    kidjamo()
        .args(["etl", "daily", "--lake", &root, "--date", DAY])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "reference/patients.parquet is missing",
        ));
    // A corrupt Bronze file is named.
    let bad = lake.root.join(format!(
        "bronze/measurements/event_date={DAY}/part-run-a-0.parquet"
    ));
    std::fs::write(&bad, b"not parquet").expect("corrupt");
    write_reference(&lake.root, &[(lake.p1, "2013-03-10", "SS")]);
    kidjamo()
        .args(["etl", "daily", "--lake", &root, "--date", DAY])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("part-run-a-0.parquet"));
}

fn simulate(root: &Path, patients: u32, days: u32) {
    kidjamo()
        .args([
            "simulate",
            "--patients",
            &patients.to_string(),
            "--days",
            &days.to_string(),
            "--start",
            "2026-03-02",
            "--seed",
            "7",
            "--out",
        ])
        .arg(root)
        .assert()
        .success();
}

#[test]
fn a_simulated_week_end_to_end_matches_independent_computations() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("lake");
    simulate(&root, 200, 7);
    let start = NaiveDate::from_ymd_opt(2026, 3, 2).expect("date");
    let dates: Vec<NaiveDate> = start.iter_days().take(7).collect();
    let reports = run_daily(&root, dates.clone(), 30.0);
    assert_eq!(reports[0].alert_state, "cold");
    assert!(reports[1..].iter().all(|r| r.alert_state == "continued"));

    for (date, r) in dates.iter().zip(&reports) {
        let c = |k: &str| r.counts[k];
        // Independent: distinct message ids, then distinct (device, time), straight from Bronze.
        let bronze = read_dir_frame(&root.join(format!("bronze/measurements/event_date={date}")));
        let msgs = support::id_texts(bronze.column("message_id").expect("m"));
        let devs = bronze.column("device_id").expect("d").str().expect("s");
        let at = bronze
            .column("recorded_at")
            .expect("t")
            .cast(&DataType::Int64)
            .expect("i");
        let at = at.i64().expect("i64");
        let mut seen_m = HashSet::new();
        let mut seen_s = HashSet::new();
        let mut kept = 0u64;
        // Any copy of a resent sample is identical, so arrival order does not matter here.
        for (i, message) in msgs.iter().enumerate() {
            if seen_m.insert(message) && seen_s.insert((devs.get(i), at.get(i))) {
                kept += 1;
            }
        }
        assert_eq!(c("bronze_rows"), bronze.height() as u64);
        assert_eq!(c("silver_rows") + c("quarantined"), kept, "{date}");
        assert_eq!(
            c("quarantined"),
            0,
            "every simulated patient is in the reference"
        );
        assert!(
            c("duplicate_message_id") > 0,
            "the simulator resends some samples"
        );

        // patient_daily against Silver, patient by patient.
        let silver = read_dir_frame(&root.join(format!("silver/measurements/event_date={date}")));
        let pd = read_dir_frame(&root.join(format!("gold/patient_daily/event_date={date}")));
        let total: i64 = pd
            .column("samples")
            .expect("s")
            .i64()
            .expect("i")
            .sum()
            .expect("sum");
        assert_eq!(total as u64, c("silver_rows"));
        let pids = silver.column("patient_id").expect("p").str().expect("s");
        let spo2 = silver.column("spo2_pct").expect("s").f64().expect("f");
        let elig = silver
            .column("trend_eligible")
            .expect("e")
            .bool()
            .expect("b");
        let mut sums: HashMap<&str, (f64, f64)> = HashMap::new();
        for i in 0..silver.height() {
            if let (Some(p), Some(v), Some(true)) = (pids.get(i), spo2.get(i), elig.get(i)) {
                let e = sums.entry(p).or_default();
                e.0 += v;
                e.1 += 1.0;
            }
        }
        for (p, (sum, n)) in sums.iter().take(20) {
            let key = keyer().key(&Uuid::parse_str(p).expect("uuid"));
            let got = f(&pd, "patient_key", &key, "spo2_mean").expect("mean");
            assert!((got - sum / n).abs() < 1e-9, "{p}: {got} vs {}", sum / n);
        }
    }

    // Batch alerts, day after day, equal one continuous run of the engine over the week —
    // what `kidjamo stream` does with the same records.
    let reference = silver::read_reference(&root).expect("reference");
    let thresholds = Thresholds::reference();
    let mut week = DataFrame::empty();
    for date in &dates {
        let day = read_dir_frame(&root.join(format!("silver/measurements/event_date={date}")));
        if week.height() == 0 {
            week = day;
        } else {
            week.vstack_mut_owned(day).expect("stack");
        }
    }
    let week = week
        .sort(
            ["patient_id", "recorded_at", "device_id"],
            SortMultipleOptions::default(),
        )
        .expect("sort");
    let end = kidjamo::domain::UtcMillis(ms("2026-03-09", "00:00:00"));
    let continuous = batch_alerts::run_day(&week, &reference, &thresholds, Default::default(), end)
        .expect("continuous");
    let mut batch: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for date in &dates {
        let a = read_dir_frame(&root.join(format!("alerts/batch/event_date={date}")));
        let ids = a.column("alert_id").expect("id").str().expect("s").clone();
        let last = a
            .column("last_seen_at")
            .expect("l")
            .cast(&DataType::Int64)
            .expect("i");
        let status = a.column("status").expect("st").str().expect("s").clone();
        for i in 0..a.height() {
            batch.insert(
                ids.get(i).expect("id").to_string(),
                (
                    last.i64().expect("i").get(i).expect("t"),
                    status.get(i).expect("s").to_string(),
                ),
            );
        }
    }
    let expected: BTreeMap<String, (i64, String)> = continuous
        .alerts
        .iter()
        .map(|a| {
            (
                a.alert_id.to_string(),
                (
                    a.last_seen_at.0,
                    kidjamo::lake::alerts::status_str(a.status).to_string(),
                ),
            )
        })
        .collect();
    assert!(expected.len() > 50, "the week raises alerts");
    assert_eq!(batch, expected);

    // Weekly and monthly over the same days.
    let week_report =
        periodic::run(&root, Period::parse_week("2026-W10").expect("week"), 30.0).expect("weekly");
    assert_eq!(week_report.days_with_input, 7);
    let weekly = read_dir_frame(&root.join("gold/patient_weekly/week=2026-W10"));
    assert_eq!(weekly.height(), 200);
    let days_with_data = weekly
        .column("days_with_data")
        .expect("d")
        .i64()
        .expect("i");
    assert!(days_with_data.iter().all(|d| d == Some(7)));
    let weekly_samples: i64 = weekly
        .column("samples")
        .expect("s")
        .i64()
        .expect("i")
        .sum()
        .expect("sum");
    let silver_total: u64 = reports.iter().map(|r| r.counts["silver_rows"]).sum();
    assert_eq!(weekly_samples as u64, silver_total);
    let scores = weekly.column("risk_score").expect("r").i64().expect("i");
    assert!(scores
        .iter()
        .all(|s| s.is_some_and(|s| (0..=90).contains(&s))));

    periodic::run(&root, Period::parse_month("2026-03").expect("month"), 30.0).expect("monthly");
    let monthly = read_dir_frame(&root.join("gold/cohort_monthly/month=2026-03"));
    let patients: i64 = monthly
        .column("patients")
        .expect("p")
        .i64()
        .expect("i")
        .sum()
        .expect("sum");
    assert_eq!(patients, 200);
    let compliance = monthly
        .column("compliance_pct_mean")
        .expect("c")
        .f64()
        .expect("f");
    // Seven days of 31, for everybody.
    assert!(compliance
        .iter()
        .all(|c| c.is_some_and(|c| (c - 700.0 / 31.0).abs() < 1e-9)));

    research_export_is_k_anonymous_and_unlinkable(&root, &weekly);
}

fn research_export_is_k_anonymous_and_unlinkable(root: &Path, weekly: &DataFrame) {
    let key_file = root.join("export.key");
    std::fs::write(&key_file, b"research-export-key-0123456789").expect("key file");
    let run = || {
        kidjamo()
            .args([
                "etl", "export", "research", "--month", "2026-03", "--k", "5", "--lake",
            ])
            .arg(root)
            .arg("--export-key-file")
            .arg(&key_file)
            .assert()
            .success()
            .stdout(predicate::str::contains("200 patient-months"));
    };
    run();
    let exports = root.join("exports/research/month=2026-03");
    let dirs: Vec<PathBuf> = std::fs::read_dir(&exports)
        .expect("exports")
        .map(|e| e.expect("e").path())
        .collect();
    assert_eq!(dirs.len(), 1);
    let data = read_dir_frame(&dirs[0]);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dirs[0].join("metadata.json")).expect("metadata"))
            .expect("json");
    let suppressed = meta["rows_suppressed"].as_u64().expect("n") as usize;
    assert_eq!(data.height() + suppressed, 200);
    assert!(data.height() > 0);
    // Every combination of quasi-identifiers is shared by at least k = 5 rows.
    let mut classes: HashMap<Vec<String>, usize> = HashMap::new();
    for i in 0..data.height() {
        let qi: Vec<String> = ["age_band", "sex", "genotype", "country"]
            .iter()
            .map(|c| {
                data.column(c)
                    .expect(c)
                    .str()
                    .expect("s")
                    .get(i)
                    .expect("v")
                    .to_string()
            })
            .collect();
        *classes.entry(qi).or_default() += 1;
    }
    assert!(classes.values().all(|n| *n >= 5), "{classes:?}");
    // No identifier in clear, no Gold key, dates coarsened to the month; every column documented.
    let names: Vec<String> = data
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    for forbidden in ["patient_id", "patient_key", "birth_date", "event_date"] {
        assert!(!names.contains(&forbidden.to_string()));
    }
    let documented: Vec<String> = meta["columns"]
        .as_array()
        .expect("cols")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(documented, names);
    let gold_keys: HashSet<&str> = weekly
        .column("patient_key")
        .expect("k")
        .str()
        .expect("s")
        .iter()
        .flatten()
        .collect();
    let research_ids = data.column("research_id").expect("r").str().expect("s");
    assert!(research_ids
        .iter()
        .flatten()
        .all(|r| !gold_keys.contains(r)));
    // The same key gives the same export, byte for byte.
    let before = std::fs::read(dirs[0].join("data.parquet")).expect("data");
    run();
    assert_eq!(
        before,
        std::fs::read(dirs[0].join("data.parquet")).expect("data")
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn arb_rows() -> impl Strategy<Value = Vec<(u8, u8, u8, u8, u16)>> {
        // (message id, patient 0..3 with 2 unknown, minute slot 0..6 with 6 = another day,
        //  flag, arrival delay)
        prop::collection::vec((0u8..16, 0u8..3, 0u8..7, 0u8..3, 0u16..500), 0..40)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn silver_accounts_for_every_bronze_row_and_is_stable(spec in arb_rows()) {
            let patients = [Uuid::from_u128(0xa1), Uuid::from_u128(0xa2), Uuid::from_u128(0xa3)];
            let mut reference = silver::Reference::new();
            for p in &patients[..2] {
                reference.insert(*p, silver::ReferencePatient {
                    birth_date: NaiveDate::from_ymd_opt(2000, 1, 1).expect("date"),
                    genotype: "SS".into(), sex: "F".into(), country: "Cameroun".into(),
                });
            }
            let rows: Vec<Row> = spec.iter().enumerate().map(|(i, &(m, p, slot, flag, delay))| {
                let at = if slot == 6 { ms("2026-03-11", "00:00:00") } else { ms(DAY, "06:00:00") + i64::from(slot) * 60_000 };
                let patient = patients[p as usize];
                let mut r = row(u128::from(m), patient, Uuid::from_u128(0xd0 + u128::from(p)), at, 95.0, 80,
                    ["ok", "motion", "battery_low"][flag as usize]);
                r.received = at + i64::from(delay) * 1000;
                r.offset = i as i64;
                r
            }).collect();
            let bronze = bronze_frame(&rows);
            let thresholds = Thresholds::reference();
            let a = silver::build(bronze.clone(), day(), &reference, &thresholds, &Default::default()).expect("silver");
            prop_assert!(a.counts.reconciles(), "{:?}", a.counts);
            prop_assert!(a.silver.height() <= bronze.height());
            prop_assert_eq!(a.silver.height() + a.quarantine.height()
                + (a.counts.duplicate_message_id + a.counts.duplicate_device_time) as usize, rows.len());
            prop_assert_eq!(a.message_ids.len(), a.silver.height(), "one message id per row");
            let ids: HashSet<_> = a.message_ids.iter().collect();
            prop_assert_eq!(ids.len(), a.message_ids.len(), "message ids unique");
            let dev = a.silver.column("device_id").expect("d").str().expect("s");
            let at = a.silver.column("recorded_at").expect("t").cast(&DataType::Int64).expect("i");
            let pairs: HashSet<_> = dev.iter().zip(at.i64().expect("i").iter()).collect();
            prop_assert_eq!(pairs.len(), a.silver.height(), "one sample per device and time");
            let b = silver::build(bronze.clone(), day(), &reference, &thresholds, &Default::default()).expect("silver");
            prop_assert!(a.silver.equals_missing(&b.silver));
            prop_assert_eq!(&a.message_ids, &b.message_ids);
            prop_assert!(a.quarantine.equals_missing(&b.quarantine));
        }
    }
}

/// Every file under `folders` of a local lake: relative path → bytes.
fn lake_files(root: &Path, folders: &[&str]) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("under root");
                out.insert(
                    rel.to_string_lossy().into_owned(),
                    std::fs::read(&p).expect("read"),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    for f in folders {
        walk(root, &root.join(f), &mut out);
    }
    out
}

/// The outputs of etl, compared between a local lake and an S3 one (manifests hold durations,
/// so only their names are compared).
const ETL_OUTPUTS: [&str; 5] = [
    "silver",
    "gold",
    "quarantine/silver_measurements",
    "alerts/batch",
    "_state",
];

/// `s3://` lakes against a real S3-protocol server: the same simulated lake, one copy local and
/// one in a bucket, gives byte-identical Silver, Gold, quarantine, alerts and engine state; a
/// rerun replaces rather than adds; a failing run publishes nothing and names the URL.
#[test]
fn an_s3_lake_gives_the_same_outputs_as_a_local_one() {
    let s3 = support::s3::S3Server::start("kidjamo-lake");
    let tmp = tempfile::tempdir().expect("tmp");
    let local = tmp.path().join("lake");
    let url = s3.url("lake");
    simulate(&local, 20, 2);
    kidjamo()
        .envs(s3.env())
        .args([
            "simulate",
            "--patients",
            "20",
            "--days",
            "2",
            "--start",
            "2026-03-02",
            "--seed",
            "7",
            "--out",
            &url,
        ])
        .assert()
        .success();
    for lake in [local.display().to_string(), url.clone()] {
        for run in [
            vec!["daily", "--from", "2026-03-02", "--to", "2026-03-03"],
            vec!["weekly", "--week", "2026-W10"],
            vec!["monthly", "--month", "2026-03"],
        ] {
            kidjamo()
                .envs(s3.env())
                .arg("etl")
                .args(&run)
                .args(["--lake", &lake])
                .assert()
                .success();
        }
    }
    let fetch = |folders: &[&str]| {
        let prefixes: Vec<String> = folders.iter().map(|f| f.to_string()).collect();
        let mirror = kidjamo::lake::remote::Mirror::open(&url, &s3.options(), &prefixes)
            .expect("the bucket lists");
        lake_files(mirror.root(), folders)
    };
    let expected = lake_files(&local, &ETL_OUTPUTS);
    assert!(
        expected
            .keys()
            .any(|k| k.starts_with("gold/patient_weekly"))
            && expected
                .keys()
                .any(|k| k.starts_with("gold/cohort_monthly"))
            && expected.len() >= 16,
        "{:?}",
        expected.keys()
    );
    let got = fetch(&ETL_OUTPUTS);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert!(got == expected, "same bytes in the bucket as on disk");
    let runs = |files: BTreeMap<String, Vec<u8>>| files.into_keys().collect::<Vec<_>>();
    assert_eq!(
        runs(fetch(&["_runs"])),
        runs(lake_files(&local, &["_runs"]))
    );

    // A rerun replaces its partitions: same objects, none added.
    kidjamo()
        .args(["etl", "daily", "--date", "2026-03-02", "--lake", &url])
        .envs(s3.env())
        .assert()
        .success();
    assert!(fetch(&ETL_OUTPUTS) == expected, "a rerun adds nothing");

    // A run that fails publishes nothing, and its error names the lake, not a private folder.
    let out = kidjamo()
        .args(["etl", "weekly", "--week", "2026-W20", "--lake", &url])
        .envs(s3.env())
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        err.contains("s3://kidjamo-lake/lake") && !err.contains("kidjamo-lake-mirror"),
        "{err}"
    );
    assert!(fetch(&ETL_OUTPUTS) == expected, "nothing published");
    let out = kidjamo()
        .args([
            "etl",
            "weekly",
            "--week",
            "2026-W10",
            "--lake",
            "s3://no-such-bucket/lake",
        ])
        .envs(s3.env())
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("s3://no-such-bucket/lake"), "{err}");
}
