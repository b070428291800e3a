//! `kidjamo db migrate|status` against the real PostgreSQL, a fresh database per test.

mod support;

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::Path;
use support::TestDb;

fn kidjamo(db: &TestDb) -> Command {
    let mut c = Command::cargo_bin("kidjamo").expect("binary");
    c.env_remove("KIDJAMO_CONFIG").env("DATABASE_URL", &db.url);
    c
}

fn write_migrations(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).expect("dir");
    for (name, sql) in files {
        std::fs::write(dir.join(name), sql).expect("write");
    }
}

const FIRST: (&str, &str) = (
    "0001_people.sql",
    "CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL);",
);
const SECOND: (&str, &str) = (
    "0002_pets.sql",
    "CREATE TABLE pets (id int PRIMARY KEY, owner int REFERENCES people);",
);
const CONCURRENT: (&str, &str) = (
    "0003_pets_owner.sql",
    "-- kidjamo: no-transaction\nCREATE INDEX CONCURRENTLY pets_owner ON pets (owner);",
);

#[test]
fn migrate_applies_in_order_records_the_ledger_and_reruns_as_a_no_op() {
    let db = TestDb::new("apply");
    let dir = tempfile::tempdir().expect("tempdir");
    write_migrations(dir.path(), &[FIRST, SECOND, CONCURRENT]);
    kidjamo(&db)
        .args(["db", "status", "--migrations"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("pending  0001_people.sql"));
    kidjamo(&db)
        .args(["db", "migrate", "--migrations"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "applied 3 migration(s): 0001_people.sql, 0002_pets.sql, 0003_pets_owner.sql",
        ));
    let mut c = db.client();
    let rows = c.query("SELECT version, name, length(checksum), applied_by = current_user, duration_ms >= 0 FROM kidjamo_schema_migrations ORDER BY version", &[]).expect("ledger");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2].get::<_, String>(1), "pets_owner");
    assert_eq!(rows[0].get::<_, i32>(2), 64);
    assert!(rows
        .iter()
        .all(|r| r.get::<_, bool>(3) && r.get::<_, bool>(4)));
    let index: Option<String> = c
        .query_one("SELECT to_regclass('pets_owner')::text", &[])
        .expect("index")
        .get(0);
    assert_eq!(index.as_deref(), Some("pets_owner"));
    kidjamo(&db)
        .args(["db", "migrate", "--migrations"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to apply"));
    kidjamo(&db)
        .args(["db", "status", "--migrations"])
        .arg(dir.path())
        .assert()
        .success();
}

#[test]
fn migrate_dry_run_and_target_apply_only_what_they_say() {
    let db = TestDb::new("dry");
    let dir = tempfile::tempdir().expect("tempdir");
    write_migrations(dir.path(), &[FIRST, SECOND]);
    kidjamo(&db)
        .args(["db", "migrate", "--dry-run", "--migrations"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(
            predicate::str::contains("would apply 2")
                .and(predicate::str::contains("0002_pets.sql (in a transaction)")),
        );
    let exists: bool = db
        .client()
        .query_one("SELECT to_regclass('people') IS NOT NULL", &[])
        .expect("q")
        .get(0);
    assert!(!exists, "a dry run changes nothing");
    kidjamo(&db)
        .args(["db", "migrate", "--target", "1", "--migrations"])
        .arg(dir.path())
        .assert()
        .success();
    kidjamo(&db)
        .args(["db", "status", "--migrations"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("applied  0001_people.sql")
                .and(predicate::str::contains("pending  0002_pets.sql")),
        );
}

#[test]
fn migrate_refuses_a_changed_applied_file_naming_both_checksums() {
    let db = TestDb::new("changed");
    let dir = tempfile::tempdir().expect("tempdir");
    write_migrations(dir.path(), &[FIRST]);
    kidjamo(&db)
        .args(["db", "migrate", "--migrations"])
        .arg(dir.path())
        .assert()
        .success();
    std::fs::write(
        dir.path().join(FIRST.0),
        "CREATE TABLE people (id bigint PRIMARY KEY);",
    )
    .expect("edit");
    kidjamo(&db)
        .args(["db", "migrate", "--migrations"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("migration 0001_people.sql changed after it was applied")
                .and(predicate::str::contains("applied checksum")),
        );
}

#[test]
fn migrate_failure_reports_what_was_applied_and_keeps_the_failed_file_out() {
    let db = TestDb::new("fail");
    let dir = tempfile::tempdir().expect("tempdir");
    write_migrations(
        dir.path(),
        &[
            FIRST,
            (
                "0002_broken.sql",
                "CREATE TABLE broken (id int); SELECT no_such_function();",
            ),
        ],
    );
    kidjamo(&db)
        .args(["db", "migrate", "--migrations"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "applied 0001_people.sql; migration 0002_broken.sql failed",
        ));
    let mut c = db.client();
    let broken: bool = c
        .query_one("SELECT to_regclass('broken') IS NOT NULL", &[])
        .expect("q")
        .get(0);
    assert!(!broken, "a failed migration is rolled back whole");
    let versions: i64 = c
        .query_one("SELECT count(*) FROM kidjamo_schema_migrations", &[])
        .expect("q")
        .get(0);
    assert_eq!(versions, 1);
}

#[test]
fn migrate_two_concurrent_migrators_one_applies_the_other_waits_then_finds_nothing() {
    let db = TestDb::new("race");
    let dir = tempfile::tempdir().expect("tempdir");
    // A slow first migration keeps the lock held long enough for the two runs to overlap.
    write_migrations(
        dir.path(),
        &[
            (
                "0001_slow.sql",
                "SELECT pg_sleep(2); CREATE TABLE people (id int PRIMARY KEY);",
            ),
            SECOND,
        ],
    );
    let spawn = || {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("kidjamo"));
        c.env_remove("KIDJAMO_CONFIG")
            .env("DATABASE_URL", &db.url)
            .args(["db", "migrate", "--migrations"])
            .arg(dir.path());
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    let outputs = [
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    ];
    for o in &outputs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let said: Vec<String> = outputs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .collect();
    assert_eq!(
        said.iter()
            .filter(|s| s.contains("applied 2 migration(s)"))
            .count(),
        1,
        "{said:?}"
    );
    assert_eq!(
        said.iter()
            .filter(|s| s.contains("nothing to apply"))
            .count(),
        1,
        "{said:?}"
    );
    let recorded: i64 = db
        .client()
        .query_one("SELECT count(*) FROM kidjamo_schema_migrations", &[])
        .expect("q")
        .get(0);
    assert_eq!(recorded, 2);
}

#[test]
fn migrate_gives_up_after_the_lock_timeout_naming_the_holder() {
    let db = TestDb::new("timeout");
    let dir = tempfile::tempdir().expect("tempdir");
    write_migrations(dir.path(), &[FIRST]);
    let mut holder = db.client();
    holder
        .query_one(
            "SELECT pg_advisory_lock($1)",
            &[&kidjamo::db::migrations::LOCK_KEY],
        )
        .expect("lock");
    kidjamo(&db)
        .args(["db", "migrate", "--lock-timeout", "1", "--migrations"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "another migrator holds the lock (pid",
        ));
}

#[test]
fn migrate_builtin_seeds_the_quality_codes_of_the_domain() {
    let db = TestDb::new("builtin");
    kidjamo(&db).args(["db", "migrate"]).assert().success();
    let rows = db.client().query("SELECT code, severity, trend_eligible, requires_review, description FROM measurement_quality ORDER BY code", &[]).expect("seeded");
    assert_eq!(rows.len(), kidjamo::domain::QualityFlag::ALL.len());
    for r in rows {
        let code: String = r.get(0);
        let q: kidjamo::domain::QualityFlag = code.parse().expect("known code");
        assert_eq!(r.get::<_, i16>(1), q.severity() as i16, "{code}");
        assert_eq!(r.get::<_, bool>(2), q.is_trend_eligible(), "{code}");
        assert_eq!(r.get::<_, bool>(3), q.requires_review(), "{code}");
        assert_eq!(
            r.get::<_, String>(4),
            q.description(),
            "{code}: the migration and the domain must describe it alike"
        );
    }
}

#[test]
fn db_commands_without_a_database_say_how_to_configure_one() {
    let mut c = Command::cargo_bin("kidjamo").expect("binary");
    c.env_remove("DATABASE_URL")
        .env_remove("KIDJAMO_CONFIG")
        .env_remove("KIDJAMO_DATABASE__URL");
    c.current_dir(tempfile::tempdir().expect("tempdir").path())
        .args(["db", "status"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no database configured"));
}
