//! `kidjamo backup patient` / `kidjamo restore patient` from the command line, against the real
//! PostgreSQL: a loaded lake, one patient backed up, restored into an empty database and compared
//! table by table; restoring twice; corrupt, incomplete and foreign-schema archives refused with
//! nothing written.

mod support;

use assert_cmd::Command;
use kidjamo::db::patient_archive::PATIENT_TABLES;
use std::io::Read;
use std::path::Path;
use support::TestDb;

fn kidjamo(db: &TestDb) -> Command {
    let mut c = Command::cargo_bin("kidjamo").expect("binary");
    c.env_remove("KIDJAMO_CONFIG").env("DATABASE_URL", &db.url);
    c
}

fn run(c: &mut Command) -> std::process::Output {
    c.output().expect("run")
}

fn ok(c: &mut Command) -> String {
    let out = run(c);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Backs `patient` of `db` up into `archive`.
fn back_up(db: &TestDb, patient: &str, archive: &Path) {
    ok(kidjamo(db)
        .args(["backup", "patient", patient, "--out"])
        .arg(archive));
}

/// What `erase patient --dry-run` prints for `patient` of `db`.
fn erase_dry_run(db: &TestDb, patient: &str) -> String {
    ok(kidjamo(db).args(["erase", "patient", patient, "--reason", "test", "--dry-run"]))
}

/// A database holding a small simulated cohort, one of whose patients has an acknowledged alert.
fn loaded() -> (TestDb, String) {
    let db = TestDb::migrated("backup");
    let lake = tempfile::tempdir().expect("tempdir");
    Command::cargo_bin("kidjamo")
        .expect("binary")
        .env_remove("KIDJAMO_CONFIG")
        .args([
            "simulate",
            "--patients",
            "4",
            "--days",
            "1",
            "--format",
            "parquet",
            "--out",
        ])
        .arg(lake.path())
        .assert()
        .success();
    ok(kidjamo(&db).args(["db", "load", "--lake"]).arg(lake.path()));
    let mut client = db.client();
    let patient: String = client
        .query_one(
            "SELECT patient_id::text FROM patients ORDER BY patient_id LIMIT 1",
            &[],
        )
        .expect("patient")
        .get(0);
    client
        .batch_execute(&format!(
            "INSERT INTO alerts (alert_id, patient_id, rule_id, severity, title, message, first_seen_at, last_seen_at)
             VALUES (gen_random_uuid(), '{patient}', 'spo2_emergency', 'critical', 'SpO2', 'low', now(), now());
             UPDATE alerts SET status = 'acknowledged', acknowledged_at = now();
             INSERT INTO treatments (treatment_id, patient_id, drug_name, start_date)
             VALUES (gen_random_uuid(), '{patient}', 'hydroxyurea', '2026-01-01');"
        ))
        .expect("alert and treatment");
    (db, patient)
}

/// The patient's rows of `table`, as sorted text, selected the way the backup selects them.
fn rows(db: &TestDb, table: &str, patient: &str) -> Vec<String> {
    let t = PATIENT_TABLES
        .iter()
        .find(|t| t.table == table)
        .expect("table");
    let select = t.select.replace("{p}", &format!("'{patient}'::uuid"));
    let mut rows: Vec<String> = db
        .client()
        .query(&format!("SELECT t::text FROM ({select}) t"), &[])
        .expect(table)
        .iter()
        .map(|r| r.get(0))
        .collect();
    rows.sort();
    rows
}

#[test]
fn backup_then_restore_into_an_empty_database_gives_the_same_rows_and_twice_changes_nothing() {
    let (source, patient) = loaded();
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("patient.tar");
    // What the archive must hold, read before the backup adds its own records.
    let before: Vec<Vec<String>> = PATIENT_TABLES
        .iter()
        .map(|t| rows(&source, t.table, &patient))
        .collect();
    let out = ok(kidjamo(&source)
        .args([
            "backup",
            "patient",
            &patient,
            "--reason",
            "gdpr-access",
            "--out",
        ])
        .arg(&archive));
    assert!(out.contains("measurements"), "{out}");

    let target = TestDb::migrated("restore");
    ok(kidjamo(&target).args(["restore", "patient"]).arg(&archive));
    for (t, before) in PATIENT_TABLES.iter().zip(&before) {
        let after = rows(&target, t.table, &patient);
        assert!(
            !before.is_empty() || t.table == "clinicians" || t.table == "patient_exports",
            "no {} rows to check",
            t.table
        );
        if t.table == "audit_log" || t.table == "patient_exports" {
            // The backup and the restore add their own records; everything archived is back.
            for row in before {
                assert!(after.contains(row), "{}: {row} not restored", t.table);
            }
        } else {
            assert_eq!(before, &after, "{} differs after restore", t.table);
        }
    }
    // Restoring again inserts nothing.
    let again = ok(kidjamo(&target).args(["restore", "patient"]).arg(&archive));
    assert!(again.contains("(0 rows inserted"), "{again}");
    // The backup was audited in the source with its reason.
    let audited: i64 = source
        .client()
        .query_one(
            &format!("SELECT count(*) FROM audit_log WHERE operation = 'BACKUP' AND patient_id = '{patient}' AND new_values->>'reason' = 'gdpr_access'"),
            &[],
        )
        .expect("audit")
        .get(0);
    assert_eq!(audited, 1);
}

/// Changes (or, returning None, drops) one archive member given its name and bytes.
type MemberEdit = dyn Fn(&str, Vec<u8>) -> Option<Vec<u8>>;

/// Copies a tar archive, letting `edit` change or drop members by name.
fn rewrite(from: &Path, to: &Path, edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>) {
    let mut input = tar::Archive::new(std::fs::File::open(from).expect("open"));
    let mut output = tar::Builder::new(std::fs::File::create(to).expect("create"));
    for entry in input.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read");
        if let Some(data) = edit(&name, data) {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            output
                .append_data(&mut header, &name, data.as_slice())
                .expect("append");
        }
    }
    output.finish().expect("finish");
}

#[test]
fn corrupt_incomplete_or_foreign_archives_are_refused_and_nothing_is_written() {
    let (source, patient) = loaded();
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("patient.tar");
    back_up(&source, &patient, &archive);
    let cases: [(&str, Box<MemberEdit>, &str); 3] = [
        (
            "flipped.tar",
            Box::new(|name: &str, mut data: Vec<u8>| {
                if name == "measurements.pgcopy" {
                    let middle = data.len() / 2;
                    data[middle] ^= 0x40;
                }
                Some(data)
            }),
            "member measurements.pgcopy is corrupt",
        ),
        (
            "missing.tar",
            Box::new(|name: &str, data: Vec<u8>| (name != "alerts.pgcopy").then_some(data)),
            "member alerts.pgcopy is missing",
        ),
        (
            "schema.tar",
            Box::new(|name: &str, data: Vec<u8>| {
                if name != "manifest.json" {
                    return Some(data);
                }
                let mut m: serde_json::Value = serde_json::from_slice(&data).expect("json");
                m["schema_version"] = 99.into();
                Some(serde_json::to_vec(&m).expect("json"))
            }),
            "made with schema version 99",
        ),
    ];
    let target = TestDb::migrated("refuse");
    for (name, edit, expected) in cases {
        let bad = dir.path().join(name);
        rewrite(&archive, &bad, edit);
        let out = run(kidjamo(&target).args(["restore", "patient"]).arg(&bad));
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{name}: {err}");
        let written: i64 = target
            .client()
            .query_one(
                "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM measurements)",
                &[],
            )
            .expect("count")
            .get(0);
        assert_eq!(written, 0, "{name} wrote rows");
    }
    let out = run(kidjamo(&source)
        .args([
            "backup",
            "patient",
            "00000000-0000-0000-0000-000000000000",
            "--out",
        ])
        .arg(dir.path().join("none.tar")));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

/// The partitions of `measurements` and any standalone loading table, by name.
fn measurement_tables(db: &TestDb) -> Vec<String> {
    db.client()
        .query(
            "SELECT relname::text FROM pg_class
              WHERE relkind IN ('r', 'p') AND relname LIKE 'measurements%' ORDER BY 1",
            &[],
        )
        .expect("tables")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn a_restore_that_fails_in_the_database_leaves_no_rows_no_loading_table_and_the_same_partitions() {
    let (source, patient) = loaded();
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("patient.tar");
    back_up(&source, &patient, &archive);
    let target = TestDb::migrated("restore_fails");
    let mut client = target.client();
    // An empty partition made ahead for the archive's first day: the bulk path replaces it, and
    // must put it back when the restore fails.
    let first_day: chrono::NaiveDate = source
        .client()
        .query_one(
            "SELECT min(recorded_at AT TIME ZONE 'UTC')::date FROM measurements",
            &[],
        )
        .expect("first day")
        .get(0);
    client
        .execute("SELECT kidjamo_ensure_week_partition($1)", &[&first_day])
        .expect("partition ahead");
    // Alerts are restored after measurements: the failure comes once every week is filled.
    client
        .batch_execute("ALTER TABLE alerts ADD CONSTRAINT refuse_restore CHECK (false) NOT VALID")
        .expect("constraint");
    let before = measurement_tables(&target);
    assert!(
        before.len() >= 3,
        "parent, DEFAULT and the week made ahead: {before:?}"
    );

    let out = run(kidjamo(&target).args(["restore", "patient"]).arg(&archive));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("alerts") && err.contains("refuse_restore"),
        "{err}"
    );
    assert_eq!(
        measurement_tables(&target),
        before,
        "loading tables left or partitions lost"
    );
    let written: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM measurements)",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(written, 0);

    // Once the obstacle is gone, the same archive restores every measurement.
    client
        .batch_execute("ALTER TABLE alerts DROP CONSTRAINT refuse_restore")
        .expect("drop constraint");
    ok(kidjamo(&target).args(["restore", "patient"]).arg(&archive));
    assert_eq!(
        rows(&target, "measurements", &patient),
        rows(&source, "measurements", &patient)
    );
}

/// Tables (partitions included) whose rows mention `id` anywhere, as text.
fn tables_mentioning(db: &TestDb, id: &str) -> Vec<String> {
    let mut client = db.client();
    let tables: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'm')",
            &[],
        )
        .expect("tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables
        .into_iter()
        .filter(|t| {
            let n: i64 = client
                .query_one(
                    &format!("SELECT count(*) FROM {t} x WHERE x::text LIKE '%{id}%'"),
                    &[],
                )
                .expect(t)
                .get(0);
            n > 0
        })
        .collect()
}

#[test]
fn erase_leaves_no_trace_but_its_audit_row_and_backup_erase_restore_gives_the_rows_back() {
    let (db, patient) = loaded();
    let user: String = db
        .client()
        .query_one(
            &format!("SELECT user_id::text FROM patients WHERE patient_id = '{patient}'"),
            &[],
        )
        .expect("user")
        .get(0);
    db.client()
        .batch_execute("REFRESH MATERIALIZED VIEW mv_patient_latest")
        .expect("refresh");
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("patient.tar");
    let before: Vec<Vec<String>> = PATIENT_TABLES
        .iter()
        .map(|t| rows(&db, t.table, &patient))
        .collect();
    ok(kidjamo(&db)
        .args(["backup", "patient", &patient, "--out"])
        .arg(&archive));

    let dry = erase_dry_run(&db, &patient);
    assert!(dry.contains("would remove"), "{dry}");
    assert_eq!(rows(&db, "patients", &patient).len(), 1, "a dry run erased");

    let out = ok(kidjamo(&db).args(["erase", "patient", &patient, "--reason", "gdpr art. 17"]));
    assert!(out.contains("erase: removed"), "{out}");
    // Refresh the dashboards as operations would; then nothing anywhere names the patient.
    ok(kidjamo(&db).args(["db", "refresh"]));
    for id in [&patient, &user] {
        assert_eq!(
            tables_mentioning(&db, id),
            Vec::<String>::new(),
            "{id} still present"
        );
    }
    let audit: String = db
        .client()
        .query_one(
            "SELECT new_values->>'reason' FROM audit_log WHERE operation = 'ERASE'",
            &[],
        )
        .expect("the erasure is audited")
        .get(0);
    assert_eq!(audit, "gdpr art. 17");

    ok(kidjamo(&db).args(["restore", "patient"]).arg(&archive));
    for (t, before) in PATIENT_TABLES.iter().zip(&before) {
        let after = rows(&db, t.table, &patient);
        if t.table == "audit_log" || t.table == "patient_exports" {
            for row in before {
                assert!(after.contains(row), "{}: {row} not restored", t.table);
            }
        } else {
            assert_eq!(
                before, &after,
                "{} differs after erase and restore",
                t.table
            );
        }
    }
}

#[test]
fn every_patient_of_a_cohort_round_trips_into_one_database() {
    // The first restore bulk-loads its weeks; the next ones land in weeks that already hold
    // rows and take the regular path: both must give every patient's rows back.
    let (source, _) = loaded();
    let patients: Vec<String> = source
        .client()
        .query("SELECT patient_id::text FROM patients ORDER BY 1", &[])
        .expect("patients")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(patients.len() >= 4);
    let dir = tempfile::tempdir().expect("tempdir");
    let target = TestDb::migrated("cohort");
    for (i, patient) in patients.iter().enumerate() {
        let before: Vec<Vec<String>> = PATIENT_TABLES
            .iter()
            .map(|t| rows(&source, t.table, patient))
            .collect();
        let archive = dir.path().join(format!("p{i}.tar"));
        back_up(&source, patient, &archive);
        ok(kidjamo(&target).args(["restore", "patient"]).arg(&archive));
        for (t, before) in PATIENT_TABLES.iter().zip(&before) {
            let after = rows(&target, t.table, patient);
            if t.table == "audit_log" || t.table == "patient_exports" {
                assert!(
                    before.iter().all(|r| after.contains(r)),
                    "{patient}: {}",
                    t.table
                );
            } else {
                assert_eq!(before, &after, "{patient}: {} differs", t.table);
            }
        }
    }
    let total = |db: &TestDb| -> i64 {
        db.client()
            .query_one("SELECT count(*) FROM measurements", &[])
            .expect("count")
            .get(0)
    };
    assert_eq!(total(&source), total(&target));
}

#[test]
fn two_patients_restored_at_once_into_one_database_both_arrive_whole() {
    // Both restores want to bulk-load the same new weeks; one waits for the other's standalone
    // tables to be attached instead of starting them over under it.
    let (source, _) = loaded();
    let patients: Vec<String> = source
        .client()
        .query(
            "SELECT patient_id::text FROM patients ORDER BY 1 LIMIT 2",
            &[],
        )
        .expect("patients")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let archives: Vec<_> = patients
        .iter()
        .enumerate()
        .map(|(i, patient)| {
            let archive = dir.path().join(format!("p{i}.tar"));
            back_up(&source, patient, &archive);
            archive
        })
        .collect();
    for round in 0..2 {
        let target = TestDb::migrated(&format!("together{round}"));
        let running: Vec<_> = archives
            .iter()
            .map(|archive| {
                std::process::Command::new(assert_cmd::cargo::cargo_bin("kidjamo"))
                    .env_remove("KIDJAMO_CONFIG")
                    .env("DATABASE_URL", &target.url)
                    .args(["restore", "patient"])
                    .arg(archive)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for child in running {
            let out = child.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for patient in &patients {
            assert_eq!(
                rows(&target, "measurements", patient),
                rows(&source, "measurements", patient),
                "round {round}: {patient}"
            );
        }
        assert_eq!(
            measurement_tables(&target)
                .iter()
                .filter(|t| t.ends_with("_loading"))
                .count(),
            0
        );
    }
}

/// Polls `query` (one bigint) on `client` until it returns `want`; panics after 60 s.
fn wait_for(client: &mut postgres::Client, query: &str, want: i64, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let n: i64 = client.query_one(query, &[]).expect(what).get(0);
        if n == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_killed_restore_leaves_tables_that_audit_names_and_erase_and_db_partitions_clear() {
    let (source, patient) = loaded();
    let measured = rows(&source, "measurements", &patient).len();
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("patient.tar");
    back_up(&source, &patient, &archive);
    let target = TestDb::migrated("killed");

    // Kill a real restore once its weeks are filled and committed outside `measurements`: a
    // lock on `alerts` (restored after the measurements) holds its transaction there.
    let mut locker = target.client();
    let mut hold = locker.transaction().expect("begin");
    hold.batch_execute("LOCK TABLE alerts IN ACCESS EXCLUSIVE MODE")
        .expect("lock alerts");
    let mut watch = target.client();
    let mut restore = std::process::Command::new(assert_cmd::cargo::cargo_bin("kidjamo"))
        .env_remove("KIDJAMO_CONFIG")
        .env("DATABASE_URL", &target.url)
        .args(["restore", "patient"])
        .arg(&archive)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for(
        &mut watch,
        "SELECT count(*) FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock'",
        1,
        "the restore waits for alerts",
    );
    restore.kill().expect("SIGKILL");
    restore.wait().expect("reap");
    // Its helper connection ends with the process (the advisory lock with it); its transaction
    // ends, rolled back, once it can move again.
    let advisory = "SELECT count(*) FROM pg_locks
                     WHERE locktype = 'advisory'
                       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    wait_for(&mut watch, advisory, 0, "the helper's lock goes");
    hold.commit().expect("unlock alerts");
    wait_for(
        &mut watch,
        "SELECT count(*) FROM pg_stat_activity
          WHERE datname = current_database() AND backend_type = 'client backend'
            AND pid <> pg_backend_pid() AND state <> 'idle'",
        0,
        "the killed restore's transaction ends",
    );
    let leftovers: Vec<String> = measurement_tables(&target)
        .into_iter()
        .filter(|t| t.ends_with("_loading"))
        .collect();
    assert!(!leftovers.is_empty(), "the kill left no loading table");
    assert!(rows(&target, "patients", &patient).is_empty());

    // The audit names them, with the fix; exit 1.
    let out = run(kidjamo(&target).args(["audit", "report"]));
    assert_eq!(out.status.code(), Some(1));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("no_unfinished_loads") && report.contains(&leftovers[0]),
        "{report}"
    );

    // The patient is nowhere but in those tables: erasure still finds and removes them.
    let dry = erase_dry_run(&target, &patient);
    assert!(
        dry.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["unfinished_loads", &measured.to_string()]),
        "{dry}"
    );
    assert!(
        measurement_tables(&target).contains(&leftovers[0]),
        "a dry run dropped"
    );
    let erased = ok(kidjamo(&target).args(["erase", "patient", &patient, "--reason", "gdpr"]));
    assert!(erased.contains("unfinished_loads"), "{erased}");
    assert_eq!(tables_mentioning(&target, &patient), Vec::<String>::new());
    assert!(!measurement_tables(&target)
        .iter()
        .any(|t| t.ends_with("_loading")));

    // Tables of a running loader are in use: `db partitions` leaves them, and drops them once
    // nobody holds the bulk-weeks lock.
    let begun: String = watch
        .query_one("SELECT kidjamo_bulk_week_begin('2030-01-07')", &[])
        .expect("begin a week")
        .get(0);
    let mut loader = target.client();
    loader
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&kidjamo::db::BULK_WEEKS_LOCK],
        )
        .expect("take the loaders' lock");
    let out = ok(kidjamo(&target).args(["db", "partitions"]));
    assert!(out.contains("a load or restore is running"), "{out}");
    assert!(measurement_tables(&target).contains(&begun));
    // Released on the spot: a closed connection's lock goes only once its backend has exited.
    loader
        .execute(
            "SELECT pg_advisory_unlock($1)",
            &[&kidjamo::db::BULK_WEEKS_LOCK],
        )
        .expect("release the loaders' lock");
    let out = ok(kidjamo(&target).args(["db", "partitions"]));
    assert!(out.contains(&format!("dropped  {begun} (0 rows")), "{out}");
    assert!(!measurement_tables(&target).contains(&begun));

    // And the killed restore, run again, brings the patient back whole.
    ok(kidjamo(&target).args(["restore", "patient"]).arg(&archive));
    assert_eq!(
        rows(&target, "measurements", &patient),
        rows(&source, "measurements", &patient)
    );
}

#[test]
fn an_encrypted_archive_restores_only_with_its_identity() {
    use age::secrecy::ExposeSecret;
    let (source, patient) = loaded();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = age::x25519::Identity::generate();
    let identity = dir.path().join("key.txt");
    std::fs::write(&identity, format!("{}\n", key.to_string().expose_secret())).expect("key");
    let other = dir.path().join("other.txt");
    std::fs::write(
        &other,
        format!(
            "{}\n",
            age::x25519::Identity::generate()
                .to_string()
                .expose_secret()
        ),
    )
    .expect("key");
    let archive = dir.path().join("p.tar.age");
    ok(kidjamo(&source)
        .args(["backup", "patient", &patient, "--encrypt-to"])
        .arg(key.to_public().to_string())
        .arg("--out")
        .arg(&archive));
    let bytes = std::fs::read(&archive).expect("archive");
    assert!(bytes.starts_with(b"age-encryption.org/v1"));
    assert!(
        !bytes.windows(13).any(|w| w == b"manifest.json"),
        "plaintext in the encrypted archive"
    );

    let target = TestDb::migrated("decrypt");
    for (extra, expected) in [
        (vec![], "the archive is encrypted; pass --identity"),
        (
            vec!["--identity".to_string(), other.display().to_string()],
            "cannot decrypt with",
        ),
    ] {
        let out = run(kidjamo(&target)
            .args(["restore", "patient"])
            .arg(&archive)
            .args(&extra));
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{err}");
    }
    ok(kidjamo(&target)
        .args(["restore", "patient"])
        .arg(&archive)
        .arg("--identity")
        .arg(&identity));
    assert_eq!(
        rows(&source, "measurements", &patient),
        rows(&target, "measurements", &patient)
    );
    let out = run(kidjamo(&source)
        .args([
            "backup",
            "patient",
            &patient,
            "--encrypt-to",
            "age1nope",
            "--out",
        ])
        .arg(dir.path().join("x")));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an age recipient"));
}

/// Every row of a frame as text, sorted: a frame compared as a multiset of rows.
fn row_strings(df: &polars::prelude::DataFrame) -> Vec<String> {
    let mut out: Vec<String> = (0..df.height())
        .map(|i| {
            df.columns()
                .iter()
                .map(|c| format!("{:?}", c.get(i).expect("cell")))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    out.sort();
    out
}

/// The patient's part of every lake file, as comparable text.
fn lake_parts(
    root: &Path,
    ids: &kidjamo::lake::patient_data::PatientIds,
) -> std::collections::BTreeMap<String, Vec<String>> {
    use kidjamo::lake::patient_data::{self, Part};
    let mut out = std::collections::BTreeMap::new();
    for path in patient_data::candidate_files(root).expect("files") {
        if let Some(split) = patient_data::split(root, &path, ids).expect("split") {
            let text = match split.patient {
                Part::Rows(df) => row_strings(&df),
                Part::Lines(b) => {
                    let mut l: Vec<String> = String::from_utf8_lossy(&b)
                        .lines()
                        .map(str::to_string)
                        .collect();
                    l.sort();
                    l
                }
                Part::State(v) => vec![v.to_string()],
            };
            out.insert(split.relative, text);
        }
    }
    out
}

#[test]
fn the_lake_follows_backup_erase_and_restore_and_a_late_record_stays_erased() {
    const KEY: &str = "lake-test-key-0123456789";
    let db = TestDb::migrated("lake");
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let with_key = |c: &mut Command| {
        c.env("KIDJAMO_PSEUDONYMISATION__KEY", KEY);
    };
    let mut sim = kidjamo(&db);
    sim.args([
        "simulate",
        "--patients",
        "4",
        "--days",
        "2",
        "--start",
        "2026-03-01",
        "--out",
    ])
    .arg(&lake);
    ok(&mut sim);
    let mut etl = kidjamo(&db);
    with_key(&mut etl);
    ok(etl
        .args([
            "etl",
            "daily",
            "--from",
            "2026-03-01",
            "--to",
            "2026-03-02",
            "--lake",
        ])
        .arg(&lake));
    ok(kidjamo(&db).args(["db", "load", "--lake"]).arg(&lake));
    let patient: String = db
        .client()
        .query_one(
            "SELECT patient_id::text FROM patients ORDER BY patient_id LIMIT 1",
            &[],
        )
        .expect("patient")
        .get(0);
    let id = uuid::Uuid::parse_str(&patient).expect("uuid");
    let keyer = kidjamo::etl::keys::PatientKeyer::new(KEY.as_bytes(), None).expect("key");
    let ids = kidjamo::lake::patient_data::PatientIds::find(&lake, id, Some(&keyer)).expect("ids");
    let before = lake_parts(&lake, &ids);
    for layer in [
        "bronze/",
        "silver/",
        "gold/patient_daily/",
        "gold/features_ml/",
        "alerts/batch/",
        "reference/patients",
        "reference/users",
        "_state/",
    ] {
        assert!(
            before.keys().any(|k| k.starts_with(layer)),
            "the patient has data in {layer}: {:?}",
            before.keys()
        );
    }

    // Without the key, a lake with Gold cannot be searched completely: refused.
    let archive = dir.path().join("p.tar");
    let out = run(kidjamo(&db)
        .args(["backup", "patient", &patient, "--out"])
        .arg(&archive)
        .arg("--with-lake")
        .arg(&lake));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KIDJAMO_PSEUDONYMISATION__KEY"));
    let mut backup = kidjamo(&db);
    with_key(&mut backup);
    let said = ok(backup
        .args(["backup", "patient", &patient, "--out"])
        .arg(&archive)
        .arg("--with-lake")
        .arg(&lake));
    assert!(
        said.contains(&format!("from {} files", before.len())),
        "{said}"
    );

    let mut erase = kidjamo(&db);
    with_key(&mut erase);
    let said = ok(erase
        .args(["erase", "patient", &patient, "--reason", "test", "--lake"])
        .arg(&lake));
    assert!(said.contains("tombstoned as sha256:"), "{said}");
    assert!(
        lake_parts(&lake, &ids).is_empty(),
        "nothing of the patient left in the lake"
    );
    let tombstones =
        std::fs::read_to_string(lake.join("_tombstones/patients.json")).expect("tombstones");
    assert!(
        !tombstones.contains(&patient),
        "tombstones hold digests, not ids"
    );

    // A late record of the erased patient arrives in Bronze; the next ETL run drops it.
    let bronze_key = before
        .keys()
        .find(|k| k.starts_with("bronze/measurements/event_date=2026-03-01"))
        .expect("bronze")
        .clone();
    let late = lake.join("bronze/measurements/event_date=2026-03-01/part-late-0.parquet");
    {
        // One of the patient's samples, resent: the first archived Bronze row.
        let parts = {
            let mut f = std::fs::File::open(&archive).expect("archive");
            let mut a = tar::Archive::new(&mut f);
            let mut found = None;
            for e in a.entries().expect("entries") {
                let mut e = e.expect("entry");
                if e.path().expect("path").to_string_lossy() == format!("lake/{bronze_key}") {
                    let mut bytes = Vec::new();
                    e.read_to_end(&mut bytes).expect("member");
                    found = Some(bytes);
                }
            }
            found.expect("the Bronze file is in the archive")
        };
        use polars::prelude::SerReader;
        let df = polars::prelude::ParquetReader::new(std::io::Cursor::new(parts))
            .finish()
            .expect("parquet");
        kidjamo::output::tables::write_parquet(
            late.parent().expect("dir"),
            "part-late-0.parquet".to_string(),
            df.head(Some(1)),
        )
        .expect("late file");
    }
    let mut rerun = kidjamo(&db);
    with_key(&mut rerun);
    let said = ok(rerun
        .args(["etl", "daily", "--date", "2026-03-01", "--lake"])
        .arg(&lake));
    assert!(said.contains("Silver"), "{said}");
    std::fs::remove_file(&late).expect("remove the late file");
    let silver = kidjamo::etl::frame::read_files(
        &kidjamo::etl::frame::partition_files(
            &lake.join("silver/measurements/event_date=2026-03-01"),
        )
        .expect("files"),
    )
    .expect("silver")
    .expect("rows");
    let pids = silver
        .column("patient_id")
        .expect("p")
        .str()
        .expect("s")
        .clone();
    assert!(pids.iter().all(|p| p != Some(patient.as_str())));
    let manifests: Vec<String> = std::fs::read_dir(lake.join("_runs"))
        .expect("runs")
        .map(|e| std::fs::read_to_string(e.expect("e").path()).expect("manifest"))
        .filter(|m| m.contains("\"date\": \"2026-03-01\"") && m.contains("\"erased\": 1"))
        .collect();
    assert_eq!(
        manifests.len(),
        1,
        "the rerun counted the late record as erased"
    );

    // Restore puts every archived lake row back where it was and lifts the tombstone; twice is once.
    ok(kidjamo(&db)
        .args(["restore", "patient"])
        .arg(&archive)
        .arg("--lake")
        .arg(&lake));
    let after = lake_parts(&lake, &ids);
    // Files the rerun replaced come back under their archived names, holding the patient's rows.
    for (file, rows) in &before {
        assert_eq!(after.get(file), Some(rows), "{file}");
    }
    assert!(
        !std::fs::read_to_string(lake.join("_tombstones/patients.json"))
            .expect("t")
            .contains("sha256:")
    );
    let snapshot = lake_parts(&lake, &ids);
    ok(kidjamo(&db)
        .args(["restore", "patient"])
        .arg(&archive)
        .arg("--lake")
        .arg(&lake));
    assert_eq!(snapshot, lake_parts(&lake, &ids));
}

mod round_trip_properties {
    use super::*;
    use proptest::prelude::*;

    /// Backup → restore into an empty database, or backup → erase → restore into the same
    /// one: the patient's rows come back identical, for cohorts drawn at random.
    fn round_trip(seed: u64, patients: u32, days: u32, pick: usize, erase_first: bool) {
        let source = TestDb::migrated("prop");
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = dir.path().join("lake");
        ok(kidjamo(&source)
            .args([
                "simulate",
                "--patients",
                &patients.to_string(),
                "--days",
                &days.to_string(),
            ])
            .args(["--seed", &seed.to_string(), "--out"])
            .arg(&lake));
        ok(kidjamo(&source).args(["db", "load", "--lake"]).arg(&lake));
        let ids: Vec<String> = source
            .client()
            .query("SELECT patient_id::text FROM patients ORDER BY 1", &[])
            .expect("patients")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let patient = &ids[pick % ids.len()];
        let before: Vec<Vec<String>> = PATIENT_TABLES
            .iter()
            .map(|t| rows(&source, t.table, patient))
            .collect();
        let archive = dir.path().join("p.tar");
        back_up(&source, patient, &archive);
        let target = if erase_first {
            ok(kidjamo(&source).args(["erase", "patient", patient, "--reason", "property test"]));
            None
        } else {
            Some(TestDb::migrated("prop_target"))
        };
        let db = target.as_ref().unwrap_or(&source);
        ok(kidjamo(db).args(["restore", "patient"]).arg(&archive));
        for (t, before) in PATIENT_TABLES.iter().zip(&before) {
            let after = rows(db, t.table, patient);
            if t.table == "audit_log" || t.table == "patient_exports" {
                assert!(before.iter().all(|r| after.contains(r)), "{}", t.table);
            } else {
                assert_eq!(before, &after, "{} differs", t.table);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]
        #[test]
        fn any_patient_of_any_cohort_round_trips(
            seed in 0u64..1_000_000, patients in 2u32..5, days in 1u32..3,
            pick in 0usize..5, erase_first in any::<bool>(),
        ) {
            round_trip(seed, patients, days, pick, erase_first);
        }
    }
}
