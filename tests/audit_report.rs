//! `kidjamo audit report` against the real PostgreSQL: a healthy database passes every posture
//! check and the report shows the period's activity, data-rights events, Gold quality and
//! pipeline runs; each posture check, broken on purpose, is reported by name with its fix and
//! makes the command exit 1; the HTML is one self-contained page with its charts.

mod support;

use assert_cmd::Command;
use std::path::Path;
use support::TestDb;

const AS_OF: &str = "2026-03-02";
const KEY: &str = "audit-test-key-0123456789";

fn kidjamo(db: &TestDb) -> Command {
    let mut c = Command::cargo_bin("kidjamo").expect("binary");
    c.env_remove("KIDJAMO_CONFIG")
        .env("DATABASE_URL", &db.url)
        .env("KIDJAMO_PSEUDONYMISATION__KEY", KEY);
    c
}

fn ok(c: &mut Command) -> String {
    let out = c.output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn report(db: &TestDb, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let out = kidjamo(db)
        .args([
            "audit",
            "report",
            "--format",
            "json",
            "--as-of",
            AS_OF,
            "--since",
            "2026-03-01",
            "--until",
            "2026-03-03",
        ])
        .args(extra)
        .output()
        .expect("run");
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn failed(json: &serde_json::Value) -> Vec<String> {
    json["security_checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect()
}

fn healthy(tag: &str) -> TestDb {
    let db = TestDb::migrated(tag);
    ok(kidjamo(&db).args(["db", "partitions", "--today", AS_OF]));
    // Audit rows of this run are written now: their month needs its partition too.
    ok(kidjamo(&db).args(["db", "partitions"]));
    db
}

fn lake_with_gold(db: &TestDb, root: &Path) {
    ok(kidjamo(db)
        .args([
            "simulate",
            "--patients",
            "6",
            "--days",
            "1",
            "--start",
            "2026-03-01",
            "--seed",
            "3",
            "--out",
        ])
        .arg(root));
    ok(kidjamo(db)
        .args(["etl", "daily", "--date", "2026-03-01", "--lake"])
        .arg(root));
    ok(kidjamo(db).args(["db", "load", "--lake"]).arg(root));
}

#[test]
fn a_healthy_database_passes_and_the_report_shows_the_period() {
    let db = healthy("audit_ok");
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("lake");
    lake_with_gold(&db, &root);
    let mut client = db.client();
    let patients: Vec<uuid::Uuid> = client
        .query("SELECT patient_id FROM patients ORDER BY patient_id", &[])
        .expect("patients")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let archive = tmp.path().join("p0.tar");
    ok(kidjamo(&db)
        .args([
            "backup",
            "patient",
            &patients[0].to_string(),
            "--reason",
            "gdpr-access",
            "--out",
        ])
        .arg(&archive));
    ok(kidjamo(&db).args([
        "erase",
        "patient",
        &patients[1].to_string(),
        "--reason",
        "patient request",
    ]));

    // The audit rows carry the wall-clock time of this run: report on a period around now.
    let today = chrono::Utc::now().date_naive();
    let since = (today - chrono::Days::new(1)).to_string();
    let until = (today + chrono::Days::new(1)).to_string();
    let out = kidjamo(&db)
        .args([
            "audit", "report", "--format", "json", "--as-of", AS_OF, "--since", &since, "--until",
            &until, "--lake",
        ])
        .arg(&root)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["report_version"], 1);
    assert_eq!(json["security_checks"].as_array().expect("checks").len(), 9);
    assert!(failed(&json).is_empty());
    assert_eq!(json["failed_checks"], 0);
    let ops: Vec<&str> = json["data_rights"]
        .as_array()
        .expect("rights")
        .iter()
        .map(|e| e["operation"].as_str().expect("op"))
        .collect();
    assert!(ops.contains(&"BACKUP") && ops.contains(&"ERASE"), "{ops:?}");
    let erased = patients[1].to_string();
    let activity = json["activity"].as_array().expect("activity");
    assert!(activity
        .iter()
        .any(|a| a["patient_id"] == patients[0].to_string()));
    assert!(
        !activity.iter().any(|a| a["patient_id"] == erased),
        "the erased patient's history is gone"
    );
    assert!(
        !out.stdout
            .windows(erased.len())
            .any(|w| w == erased.as_bytes()),
        "no clear id of the erased patient"
    );

    // Gold quality and pipeline runs of the lake, for the simulated day.
    let (code, json, _) = report(&db, &["--lake", &root.display().to_string()]);
    assert_eq!(code, 0);
    let days = json["data_quality"].as_array().expect("days");
    assert_eq!(days.len(), 1);
    assert_eq!(days[0]["date"], "2026-03-01");
    assert_eq!(days[0]["patients"], 6);
    let runs = json["pipeline_runs"].as_array().expect("runs");
    assert!(runs
        .iter()
        .any(|r| r["command"] == "etl daily" && r["covers"] == "2026-03-01"));

    // HTML: one self-contained page with three charts, nothing to fetch, no script.
    let html_path = tmp.path().join("report.html");
    ok(kidjamo(&db)
        .args([
            "audit",
            "report",
            "--format",
            "html",
            "--as-of",
            AS_OF,
            "--since",
            "2026-03-01",
            "--until",
            "2026-03-02",
            "--lake",
        ])
        .arg(&root)
        .arg("--out")
        .arg(&html_path));
    let html = std::fs::read_to_string(&html_path).expect("html");
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("<svg").count(), 3);
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    for external in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(external), "{external} in the page");
    }
    assert!(html.contains("Alerts per day by severity"));
    let md = ok(kidjamo(&db).args(["audit", "report", "--as-of", AS_OF]));
    assert!(md.contains("## Security posture: 0 of 9 checks failed"));
}

#[test]
fn each_broken_posture_check_is_named_with_its_fix_and_exit_1() {
    let db = healthy("audit_broken");
    let mut client = db.client();
    let role = format!("kidjamo_app_bypass_{}", std::process::id());
    let (code, json, _) = report(&db, &[]);
    assert_eq!((code, failed(&json)), (0, vec![]));

    let mut expected: Vec<&str> = Vec::new();
    let mut breakage = |sql: &str, check: &'static str, extra: &[&str]| {
        client
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        expected.push(check);
        let (code, json, stderr) = report(&db, extra);
        assert_eq!(code, 1, "{check}");
        let mut got = failed(&json);
        got.sort();
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want);
        assert!(
            stderr.contains(&format!("({check})")) && stderr.contains("fix:"),
            "{stderr}"
        );
    };
    breakage(
        "ALTER TABLE treatments NO FORCE ROW LEVEL SECURITY",
        "rls_forced",
        &[],
    );
    breakage(
        "DO $$ DECLARE p record; BEGIN FOR p IN SELECT policyname FROM pg_policies WHERE tablename = 'patient_exports' LOOP EXECUTE format('DROP POLICY %I ON patient_exports', p.policyname); END LOOP; END $$",
        "policies_present",
        &[],
    );
    breakage(
        "GRANT SELECT ON patients TO PUBLIC",
        "no_public_grants",
        &[],
    );
    breakage(
        "GRANT SELECT ON measurements_2026w10 TO kidjamo_app",
        "partitions_not_granted",
        &[],
    );
    breakage("DROP TABLE measurements_2026w12", "partitions_ahead", &[]);
    breakage(
        "INSERT INTO audit_log (logged_at, table_name, operation) VALUES ('2031-01-01', 'patients', 'ACCESS')",
        "default_partitions_empty",
        &[],
    );
    // What a load or restore killed mid-way leaves: a week begun outside `measurements`.
    breakage(
        "SELECT kidjamo_bulk_week_begin('2030-01-07')",
        "no_unfinished_loads",
        &[],
    );
    breakage(
        "UPDATE kidjamo_schema_migrations SET checksum = 'changed' WHERE version = 8",
        "migrations_applied",
        &[],
    );
    // A login role with BYPASSRLS, as the application's role (roles are cluster-wide: a role
    // of this test's own, dropped at the end).
    let created = client.batch_execute(&format!("CREATE ROLE {role} LOGIN BYPASSRLS"));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        created.expect("create role");
        let (code, json, stderr) = report(&db, &["--app-role", &role]);
        assert_eq!(code, 1);
        assert!(failed(&json).contains(&"app_role".to_string()), "{stderr}");
        // All but partitions_not_granted, whose grant went to kidjamo_app, not to this role.
        assert_eq!(failed(&json).len(), 8);
        assert!(!failed(&json).contains(&"partitions_not_granted".to_string()));
        assert!(stderr.contains("has BYPASSRLS"));
    }));
    let _ = client.batch_execute(&format!("DROP ROLE IF EXISTS {role}"));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
