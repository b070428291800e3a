//! `kidjamo simulate` and `kidjamo config` end to end, through the built binary.

use assert_cmd::Command;
use polars::prelude::*;
use predicates::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn kidjamo() -> Command {
    let mut c = Command::cargo_bin("kidjamo").expect("binary built");
    c.env_remove("KIDJAMO_CONFIG")
        .env_remove("RUST_LOG")
        .env_remove("DATABASE_URL");
    c
}

fn files_under(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).expect("under root").to_path_buf();
                out.insert(rel, std::fs::read(&path).expect("file"));
            }
        }
    }
    out
}

/// Every Parquet file under a Hive-partitioned folder, partition columns included.
fn read_partitioned(dir: &Path) -> DataFrame {
    let args = ScanArgsParquet {
        hive_options: HiveOptions::new_enabled(),
        ..Default::default()
    };
    LazyFrame::scan_parquet(
        PlRefPath::new(format!("{}/**/*.parquet", dir.display())),
        args,
    )
    .and_then(LazyFrame::collect)
    .unwrap_or_else(|e| panic!("{} is not readable Parquet: {e}", dir.display()))
}

fn simulate(out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    simulate_in_zone(out, extra, "UTC")
}

/// `tz` is the machine's time zone as the process sees it; the output must not depend on it.
fn simulate_in_zone(out: &Path, extra: &[&str], tz: &str) -> assert_cmd::assert::Assert {
    kidjamo()
        .env("TZ", tz)
        .args([
            "simulate",
            "--patients",
            "12",
            "--days",
            "2",
            "--start",
            "2026-03-01",
            "--seed",
            "5",
            "--crisis-rate",
            "10",
            "--fault-rate",
            "0.01",
            "--quiet",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .assert()
}

#[test]
fn simulate_same_seed_gives_identical_bytes_whatever_the_threads_or_time_zone() {
    let dir = tempfile::tempdir().expect("tempdir");
    for format in ["parquet", "jsonl"] {
        let a = dir.path().join(format!("a-{format}"));
        let b = dir.path().join(format!("b-{format}"));
        simulate(&a, &["--format", format, "--threads", "1"]).success();
        simulate_in_zone(
            &b,
            &["--format", format, "--threads", "2"],
            "Pacific/Kiritimati",
        )
        .success();
        let (fa, fb) = (files_under(&a), files_under(&b));
        assert!(fa.len() >= 10, "{format}: too few files: {:?}", fa.keys());
        assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
        for (path, bytes) in &fa {
            assert!(
                bytes == &fb[path],
                "{format}: {} differs between thread counts",
                path.display()
            );
        }
    }
    let c = dir.path().join("c");
    kidjamo()
        .args([
            "simulate",
            "--patients",
            "12",
            "--days",
            "2",
            "--start",
            "2026-03-01",
            "--seed",
            "6",
            "--quiet",
            "--format",
            "jsonl",
            "--out",
        ])
        .arg(&c)
        .assert()
        .success();
    assert_ne!(
        std::fs::read(c.join("landing/measurements.jsonl")).expect("jsonl"),
        std::fs::read(dir.path().join("a-jsonl/landing/measurements.jsonl")).expect("jsonl"),
        "another seed must give other data"
    );
}

#[test]
fn simulate_parquet_bronze_reconciles_with_quarantine_and_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("lake");
    simulate(&out, &["--format", "parquet"]).success().stdout(
        predicate::str::contains("measurements emitted")
            .and(predicate::str::contains("quarantined")),
    );
    let manifests: Vec<_> = std::fs::read_dir(out.join("_runs"))
        .expect("runs")
        .collect();
    assert_eq!(manifests.len(), 1);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(manifests[0].as_ref().expect("entry").path()).expect("manifest"),
    )
    .expect("json");
    let count = |k: &str| manifest["counts"][k].as_u64().unwrap_or(0);

    let bronze = read_partitioned(&out.join("bronze/measurements"));
    let quarantine = read_partitioned(&out.join("quarantine/measurements"));
    assert_eq!(bronze.height() as u64, count("records.written"));
    assert_eq!(quarantine.height() as u64, count("records.quarantined"));
    assert_eq!(
        count("records.emitted"),
        count("records.written") + count("records.quarantined"),
        "records in = bronze + quarantine"
    );
    assert!(
        quarantine.height() > 0,
        "a 1 % fault rate must quarantine something"
    );
    // Every quarantined row says why; every Bronze row sits in the partition of its event date.
    let reasons = quarantine
        .column("reason_codes")
        .expect("column")
        .str()
        .expect("strings")
        .clone();
    assert!((0..reasons.len()).all(|i| reasons.get(i).is_some_and(|r| !r.is_empty())));
    let dates = bronze
        .column("event_date")
        .expect("hive column")
        .cast(&DataType::String)
        .expect("cast");
    let recorded = bronze
        .column("recorded_at")
        .expect("column")
        .cast(&DataType::Date)
        .expect("date")
        .cast(&DataType::String)
        .expect("cast");
    assert!(dates
        .as_materialized_series()
        .equal(recorded.as_materialized_series())
        .expect("compare")
        .all());
    // The ground truth sits beside the data.
    for f in [
        "ground_truth/episodes.csv",
        "ground_truth/faults.csv",
        "reference/patients.parquet",
        "reference/devices.csv",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(!out
        .join(format!(
            ".kidjamo-staging-{}",
            manifest["run_id"].as_str().unwrap_or("")
        ))
        .exists());
}

#[test]
fn simulate_help_lists_its_flags() {
    kidjamo()
        .args(["simulate", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--patients").and(predicate::str::contains("--seed")));
    kidjamo()
        .args(["config", "show", "--help"])
        .assert()
        .success();
    kidjamo()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("simulate"));
}

#[test]
fn simulate_rejects_bad_arguments_with_exit_2_and_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("never");
    let cases: [(&[&str], &str); 8] = [
        (
            &["--patients", "-5"],
            "--patients must be at least 1 (got -5)",
        ),
        (&["--days", "0"], "--days must be at least 1"),
        (
            &["--start", "2026-03-05", "--end", "2026-03-01"],
            "is not after --start",
        ),
        (&["--format", "xml"], "invalid value 'xml'"),
        (
            &["--interval", "soon"],
            "--interval \"soon\" is not a duration",
        ),
        (&["--fault-rate", "2"], "must be a probability"),
        (
            &["--crisis-rate", "1e308"],
            "crisis_rate: 1e308 must be a number in 0..=1000",
        ),
        (&["--start", "9999-12-30"], "is outside 1970..2200"),
    ];
    for (args, message) in cases {
        kidjamo()
            .args(["simulate", "--quiet", "--out"])
            .arg(&out)
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(message));
        assert!(!out.exists(), "{args:?} left output behind");
    }
    kidjamo().args(["simulate", "--bogus"]).assert().code(2);
}

#[test]
fn simulate_refuses_an_invalid_thresholds_file_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("t.yaml");
    let text = std::fs::read_to_string("fixtures/thresholds.yaml")
        .expect("fixture")
        .replace(
            "alert_max: 92, emergency_max: 88 }",
            "alert_max: 97, emergency_max: 88 }",
        );
    std::fs::write(&bad, text).expect("write");
    kidjamo()
        .args(["simulate", "--quiet", "--thresholds"])
        .arg(&bad)
        .arg("--out")
        .arg(dir.path().join("out"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "vitals.spo2_pct.groups.G4.alert_max",
        ));
    assert!(!dir.path().join("out").exists());
}

#[test]
fn simulate_reports_an_unwritable_output_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    kidjamo()
        .args([
            "simulate",
            "--quiet",
            "--patients",
            "2",
            "--days",
            "1",
            "--out",
        ])
        .arg(file.join("lake"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("a-file"));
    let nonempty = dir.path().join("full");
    std::fs::create_dir(&nonempty).expect("dir");
    std::fs::write(nonempty.join("keep.txt"), "mine").expect("write");
    kidjamo()
        .args([
            "simulate",
            "--quiet",
            "--patients",
            "2",
            "--days",
            "1",
            "--out",
        ])
        .arg(&nonempty)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not empty").and(predicate::str::contains("--overwrite")));
    kidjamo()
        .args([
            "simulate",
            "--quiet",
            "--patients",
            "2",
            "--days",
            "1",
            "--overwrite",
            "--out",
        ])
        .arg(&nonempty)
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(nonempty.join("keep.txt")).expect("kept"),
        "mine",
        "--overwrite touches only kidjamo's folders"
    );
}

#[test]
fn simulate_writes_through_object_store_file_urls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}/remote", dir.path().display());
    std::fs::create_dir(dir.path().join("remote")).expect("dir");
    kidjamo()
        .args([
            "simulate",
            "--quiet",
            "--patients",
            "3",
            "--days",
            "1",
            "--format",
            "csv",
            "--out",
            &url,
        ])
        .assert()
        .success();
    let csv = std::fs::read_to_string(dir.path().join("remote/landing/measurements.csv"))
        .expect("uploaded");
    assert!(csv.starts_with("schema_version,message_id,patient_id"));
    assert!(csv.lines().count() > 3 * 2000);
    assert!(dir.path().join("remote/_runs").is_dir());
}

#[test]
fn config_show_applies_file_then_environment_and_redacts_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("kidjamo.yaml");
    std::fs::write(
        &cfg,
        "simulate:\n  patients: 12\ndatabase:\n  url: postgres://app:s3cret@db/k\n",
    )
    .expect("write");
    kidjamo()
        .args(["config", "show", "--config"])
        .arg(&cfg)
        .env("KIDJAMO_SIMULATE__SEED", "99")
        .assert()
        .success()
        .stdout(
            predicate::str::contains("patients: 12")
                .and(predicate::str::contains("seed: 99"))
                .and(predicate::str::contains("s3cret").not()),
        );
    std::fs::write(&cfg, "simulate:\n  patient: 12\n").expect("write");
    kidjamo()
        .args(["config", "show", "--config"])
        .arg(&cfg)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown field `patient`"));
}

#[test]
fn simulate_live_follows_the_wall_clock_and_keeps_its_output_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("live");
    let bin = assert_cmd::cargo::cargo_bin("kidjamo");
    let child = std::process::Command::new(bin)
        .args([
            "simulate",
            "--quiet",
            "--live",
            "--patients",
            "2",
            "--interval",
            "1s",
            "--format",
            "jsonl",
            "--start",
            "2026-03-01",
            "--out",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = child.wait_with_output().expect("exit");
    assert!(output.status.success(), "a stopped live run exits 0");
    let lines = std::fs::read_to_string(out.join("landing/measurements.jsonl"))
        .expect("committed")
        .lines()
        .count();
    // Two patients at 1 Hz for about 3.5 s: a handful of records, not a day's worth.
    assert!((2..=16).contains(&lines), "{lines} records after 3.5 s");
    let manifest = std::fs::read_dir(out.join("_runs"))
        .expect("runs")
        .next()
        .expect("manifest")
        .expect("entry")
        .path();
    assert!(std::fs::read_to_string(manifest)
        .expect("read")
        .contains("stopped_at"));
}
