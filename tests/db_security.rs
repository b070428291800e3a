//! Row-level security, audit and the alert workflow, checked as the application role
//! (`kidjamo_app`, a login role without BYPASSRLS) — never as the owner or a superuser, which
//! is how the earlier platform's "RLS tests" missed that caregivers saw nothing.

mod support;

use postgres::Client;
use support::TestDb;

const ADMIN: &str = "00000000-0000-0000-0000-0000000000ad";
const P1_USER: &str = "00000000-0000-0000-0000-0000000000a1";
const P2_USER: &str = "00000000-0000-0000-0000-0000000000b1";
const CARER_READ_ONLY: &str = "00000000-0000-0000-0000-0000000000c1";
const CARER_ACK: &str = "00000000-0000-0000-0000-0000000000c2";
const DOCTOR: &str = "00000000-0000-0000-0000-0000000000d1";
const P1: &str = "00000000-0000-0000-0000-00000000aaaa";
const P2: &str = "00000000-0000-0000-0000-00000000bbbb";
const ALERT_P1: &str = "00000000-0000-0000-0000-0000000000f1";
const ALERT_P2: &str = "00000000-0000-0000-0000-0000000000f2";

/// Tables holding patient data, each with a `patient_id` column.
const PATIENT_TABLES: [&str; 10] = [
    "patients",
    "device_assignments",
    "caregivers",
    "patient_clinicians",
    "treatments",
    "measurements",
    "alerts",
    "alert_status_logs",
    "audit_log",
    "patient_exports",
];

/// Two patients with rows in every patient table, loaded by the owner role.
fn seeded() -> TestDb {
    let db = TestDb::migrated("rls");
    let sql = format!(
        "SET ROLE kidjamo_owner;
        SELECT kidjamo_ensure_week_partition('2026-03-14');
        INSERT INTO users (user_id, role, given_name, family_name, email, password_hash, created_at) VALUES
          ('{ADMIN}', 'admin', 'Ada', 'Admin', 'ada@example.org', NULL, '2026-01-01Z'),
          ('{P1_USER}', 'patient', 'Ann', 'One', 'ann@example.org', 'argon2-secret-1', '2026-01-01Z'),
          ('{P2_USER}', 'patient', 'Bob', 'Two', 'bob@example.org', NULL, '2026-01-01Z'),
          ('{CARER_READ_ONLY}', 'caregiver', 'Cal', 'One', NULL, NULL, '2026-01-01Z'),
          ('{CARER_ACK}', 'caregiver', 'Cat', 'One', NULL, NULL, '2026-01-01Z'),
          ('{DOCTOR}', 'clinician', 'Dee', 'Doc', NULL, NULL, '2026-01-01Z');
        INSERT INTO devices VALUES
          ('00000000-0000-0000-0000-0000000000e1', 'KJ-Band 2', '2.1.3'),
          ('00000000-0000-0000-0000-0000000000e2', 'KJ-Band 2', '2.1.3');
        INSERT INTO patients (patient_id, user_id, sex, birth_date, genotype, country) VALUES
          ('{P1}', '{P1_USER}', 'F', '2015-06-01', 'SS', 'CM'),
          ('{P2}', '{P2_USER}', 'M', '1990-06-01', 'SC', 'CM');
        INSERT INTO device_assignments VALUES
          ('00000000-0000-0000-0000-0000000000e1', '{P1}', '2026-01-01Z', NULL),
          ('00000000-0000-0000-0000-0000000000e2', '{P2}', '2026-01-01Z', NULL);
        INSERT INTO caregivers VALUES
          ('{CARER_READ_ONLY}', '{P1}', 'family', 2, false),
          ('{CARER_ACK}', '{P1}', 'parent', 1, true);
        INSERT INTO clinicians VALUES ('{DOCTOR}', 'CM-1', 'haematology', 'Yaoundé');
        INSERT INTO patient_clinicians VALUES ('{P2}', '{DOCTOR}', 'primary_physician', true);
        INSERT INTO treatments (treatment_id, patient_id, drug_name, start_date) VALUES
          (gen_random_uuid(), '{P1}', 'hydroxyurea', '2026-01-01'),
          (gen_random_uuid(), '{P2}', 'folic acid', '2026-01-01');
        INSERT INTO measurements (device_id, recorded_at, patient_id, message_id, spo2_pct, quality_flag) VALUES
          ('00000000-0000-0000-0000-0000000000e1', '2026-03-14T08:00Z', '{P1}', gen_random_uuid(), 95, 'ok'),
          ('00000000-0000-0000-0000-0000000000e1', '2026-03-14T08:01Z', '{P1}', gen_random_uuid(), 94, 'ok'),
          ('00000000-0000-0000-0000-0000000000e2', '2026-03-14T08:00Z', '{P2}', gen_random_uuid(), 97, 'ok');
        INSERT INTO alerts (alert_id, patient_id, rule_id, severity, title, message, first_seen_at, last_seen_at) VALUES
          ('{ALERT_P1}', '{P1}', 'spo2_emergency', 'critical', 'SpO2 critical', 'SpO2 84 %', '2026-03-14T08:00Z', '2026-03-14T08:00Z'),
          ('{ALERT_P2}', '{P2}', 'spo2_emergency', 'critical', 'SpO2 critical', 'SpO2 84 %', '2026-03-14T08:00Z', '2026-03-14T08:00Z');
        INSERT INTO patient_exports (export_id, patient_id, kind) VALUES
          (gen_random_uuid(), '{P1}', 'backup'), (gen_random_uuid(), '{P2}', 'backup');
        RESET ROLE;"
    );
    db.client().batch_execute(&sql).expect("seed");
    db
}

/// The server's message (postgres::Error's Display says only "db error").
fn message(e: postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

fn app(db: &TestDb) -> Client {
    postgres::Client::connect(&db.url_as("kidjamo_app"), postgres::NoTls)
        .expect("connect as kidjamo_app")
}

/// Runs `f` in a transaction whose end user is `user` (None: nobody named).
fn as_user<T>(
    client: &mut Client,
    user: Option<&str>,
    f: impl FnOnce(&mut postgres::Transaction) -> T,
) -> T {
    let mut tx = client.transaction().expect("begin");
    if let Some(u) = user {
        tx.batch_execute(&format!("SET LOCAL kidjamo.user_id = '{u}'"))
            .expect("set user");
    }
    let out = f(&mut tx);
    tx.rollback().expect("rollback");
    out
}

/// Distinct patient ids `user` can read in `table`.
fn visible_patients(client: &mut Client, user: Option<&str>, table: &str) -> Vec<String> {
    as_user(client, user, |tx| {
        tx.query(
            &format!("SELECT DISTINCT patient_id::text FROM {table} WHERE patient_id IS NOT NULL ORDER BY 1"),
            &[],
        )
        .unwrap_or_else(|e| panic!("{table}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
    })
}

#[test]
fn the_app_role_owns_nothing_and_cannot_bypass_row_level_security() {
    let db = TestDb::migrated("roles");
    let row = db
        .client()
        .query_one(
            "SELECT rolsuper, rolbypassrls, rolcanlogin,
                    (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid)
             FROM pg_roles r WHERE rolname = 'kidjamo_app'",
            &[],
        )
        .expect("role");
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2),
            row.get::<_, i64>(3)
        ),
        (false, false, true, 0)
    );
    let unprotected: Vec<String> = db
        .client()
        .query(
            "SELECT relname::text FROM pg_class
             WHERE relname = ANY($1) AND NOT (relrowsecurity AND relforcerowsecurity)",
            &[&PATIENT_TABLES
                .iter()
                .chain(&["users"])
                .map(|s| s.to_string())
                .collect::<Vec<_>>()],
        )
        .expect("pg_class")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        unprotected.is_empty(),
        "RLS not enabled and forced on {unprotected:?}"
    );
    // Materialized views are not readable by the application directly.
    let err = app(&db)
        .query("SELECT * FROM mv_patient_latest", &[])
        .expect_err("the app must not read the materialized view");
    let err = message(err);
    assert!(err.contains("permission denied"), "{err}");
}

#[test]
fn each_user_sees_exactly_the_patients_they_are_linked_to_in_every_patient_table() {
    let db = seeded();
    let mut app = app(&db);
    let mut owner = db.client();
    owner
        .batch_execute("SET ROLE kidjamo_owner")
        .expect("owner");
    let linked: [(Option<&str>, Vec<&str>); 6] = [
        (Some(P1_USER), vec![P1]),
        (Some(P2_USER), vec![P2]),
        (Some(CARER_READ_ONLY), vec![P1]),
        (Some(DOCTOR), vec![P2]),
        (Some(ADMIN), vec![P1, P2]),
        (None, vec![]),
    ];
    for table in PATIENT_TABLES {
        // What the table holds, read by the owner; each user must see exactly their share of it.
        let present = visible_patients(&mut owner, None, table);
        assert!(!present.is_empty(), "the fixture has no rows in {table}");
        for (user, patients) in &linked {
            let expected: Vec<String> = present
                .iter()
                .filter(|p| patients.contains(&p.as_str()))
                .cloned()
                .collect();
            assert_eq!(
                visible_patients(&mut app, *user, table),
                expected,
                "{user:?} in {table}"
            );
        }
    }
    for table in ["patients", "measurements", "alerts"] {
        assert_eq!(visible_patients(&mut app, Some(P2_USER), table), vec![P2]);
    }
    // Users: a patient sees themself and the people around them, never another patient.
    let users: Vec<String> = as_user(&mut app, Some(P1_USER), |tx| {
        tx.query("SELECT user_id::text FROM users ORDER BY 1", &[])
            .expect("users")
            .iter()
            .map(|r| r.get(0))
            .collect()
    });
    assert_eq!(users, vec![P1_USER, CARER_READ_ONLY, CARER_ACK]);
    // Security-invoker views and the dashboard function apply the same rules.
    let via_view: i64 = as_user(&mut app, Some(DOCTOR), |tx| {
        tx.query_one(
            &format!("SELECT count(*) FROM v_measurements_enriched WHERE patient_id <> '{P2}'"),
            &[],
        )
        .expect("view")
        .get(0)
    });
    assert_eq!(via_view, 0);
    db.client()
        .batch_execute("REFRESH MATERIALIZED VIEW mv_patient_latest")
        .expect("refresh");
    let latest: Vec<String> = as_user(&mut app, Some(CARER_READ_ONLY), |tx| {
        tx.query("SELECT patient_id::text FROM kidjamo_latest_vitals()", &[])
            .expect("latest")
            .iter()
            .map(|r| r.get(0))
            .collect()
    });
    assert_eq!(latest, vec![P1]);
}

#[test]
fn nobody_writes_rows_for_a_patient_they_are_not_linked_to() {
    let db = seeded();
    let mut app = app(&db);
    let insert = |user: &str, patient: &str, app: &mut Client| {
        as_user(app, Some(user), |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO measurements (device_id, recorded_at, patient_id, message_id, spo2_pct, quality_flag)
                     VALUES ('00000000-0000-0000-0000-0000000000e9', '2026-03-14T09:00Z', '{patient}', gen_random_uuid(), 95, 'ok')"
                ),
                &[],
            )
            .map_err(message)
        })
    };
    assert_eq!(insert(P1_USER, P1, &mut app), Ok(1));
    assert_eq!(insert(DOCTOR, P2, &mut app), Ok(1));
    for (user, patient) in [(P1_USER, P2), (DOCTOR, P1), (CARER_ACK, P1)] {
        let err = insert(user, patient, &mut app).expect_err("must be refused");
        assert!(
            err.contains("row-level security"),
            "{user} → {patient}: {err}"
        );
    }
    // An update of an unlinked patient touches nothing; moving a row to another patient is refused.
    let touched = as_user(&mut app, Some(DOCTOR), |tx| {
        tx.execute(
            &format!("UPDATE patients SET city = 'Douala' WHERE patient_id = '{P1}'"),
            &[],
        )
        .expect("update")
    });
    assert_eq!(touched, 0);
    let err = as_user(&mut app, Some(ADMIN), |tx| {
        tx.batch_execute(&format!("SET LOCAL kidjamo.user_id = '{P1_USER}'"))
            .expect("switch");
        tx.execute(
            &format!("INSERT INTO audit_log (actor_user_id, table_name, operation, patient_id) VALUES ('{P1_USER}', 'patients', 'ACCESS', '{P2}')"),
            &[],
        )
        .map_err(message)
    });
    assert!(err
        .expect_err("forged audit row")
        .contains("row-level security"));
    // A patient cannot change their own genotype: the column is not granted to the app.
    let err = as_user(&mut app, Some(P1_USER), |tx| {
        tx.execute("UPDATE patients SET genotype = 'AS'", &[])
            .map_err(message)
    });
    assert!(err
        .expect_err("genotype is read-only")
        .contains("permission denied"));
    // Audit rows can be added, never changed or removed.
    for statement in [
        "UPDATE audit_log SET table_name = 'x'",
        "DELETE FROM audit_log",
    ] {
        let err = as_user(&mut app, Some(ADMIN), |tx| {
            tx.execute(statement, &[]).map_err(message)
        });
        assert!(
            err.expect_err(statement).contains("permission denied"),
            "{statement}"
        );
    }
}

#[test]
fn every_change_is_audited_with_its_author_and_without_secrets() {
    let db = seeded();
    let mut app = app(&db);
    let mut tx = app.transaction().expect("begin");
    tx.batch_execute(&format!(
        "SET LOCAL kidjamo.user_id = '{P1_USER}';
         UPDATE users SET phone = '+237 650 000 111' WHERE user_id = '{P1_USER}';"
    ))
    .expect("patient updates own phone");
    tx.commit().expect("commit");
    let mut owner = db.client();
    owner
        .batch_execute(&format!(
            "SET ROLE kidjamo_owner; UPDATE users SET password_hash = 'argon2-secret-2' WHERE user_id = '{P1_USER}'"
        ))
        .expect("owner changes the password hash");
    let rows = owner
        .query(
            "SELECT table_name, operation, actor_user_id::text, patient_id::text, changed_columns,
                    coalesce(old_values::text, '') || coalesce(new_values::text, ''), row_count
             FROM audit_log ORDER BY audit_id",
            &[],
        )
        .expect("audit");
    let all_text: String = rows.iter().map(|r| r.get::<_, String>(5)).collect();
    assert!(
        !all_text.contains("argon2-secret"),
        "a secret reached the audit log"
    );
    let phone = rows
        .iter()
        .find(|r| r.get::<_, String>(0) == "users" && r.get::<_, String>(1) == "UPDATE")
        .expect("the phone update is audited");
    assert_eq!(phone.get::<_, Option<String>>(2).as_deref(), Some(P1_USER));
    assert_eq!(phone.get::<_, Option<String>>(3).as_deref(), Some(P1));
    assert_eq!(phone.get::<_, Vec<String>>(4), vec!["phone"]);
    assert!(phone.get::<_, String>(5).contains("+237 650 000 111"));
    let secret = rows.last().expect("password change audited");
    assert_eq!(secret.get::<_, Vec<String>>(4), vec!["password_hash"]);
    // Measurements: one audit row per statement and patient, with the row count.
    let m: std::collections::BTreeSet<(String, i64)> = rows
        .iter()
        .filter(|r| r.get::<_, String>(0) == "measurements")
        .map(|r| (r.get::<_, Option<String>>(3).unwrap_or_default(), r.get(6)))
        .collect();
    assert_eq!(
        m,
        [(P1.to_string(), 2), (P2.to_string(), 1)]
            .into_iter()
            .collect()
    );
    for table in [
        "users",
        "patients",
        "device_assignments",
        "caregivers",
        "patient_clinicians",
        "treatments",
        "alerts",
        "alert_status_logs",
        "patient_exports",
    ] {
        assert!(
            rows.iter()
                .any(|r| r.get::<_, String>(0) == table && r.get::<_, String>(1) == "INSERT"),
            "no audit row for inserts into {table}"
        );
    }
    // Each patient reads only their own audit history.
    assert_eq!(
        visible_patients(&mut app, Some(P2_USER), "audit_log"),
        vec![P2]
    );
}

#[test]
fn alerts_are_acknowledged_escalated_and_resolved_with_a_status_log() {
    let db = seeded();
    let mut app = app(&db);
    let call = |app: &mut Client, user: &str, sql: &str| -> bool {
        let mut tx = app.transaction().expect("begin");
        tx.batch_execute(&format!("SET LOCAL kidjamo.user_id = '{user}'"))
            .expect("user");
        let ok: bool = tx.query_one(sql, &[]).expect(sql).get(0);
        tx.commit().expect("commit");
        ok
    };
    // The read-only caregiver may not acknowledge; the other one may; the doctor of P2 may not touch P1's.
    let ack = format!("SELECT kidjamo_acknowledge_alert('{ALERT_P1}', 'calling')");
    assert!(!call(&mut app, CARER_READ_ONLY, &ack));
    assert!(!call(&mut app, DOCTOR, &ack));
    assert!(call(&mut app, CARER_ACK, &ack));
    // Escalation is the tool's job: P2's critical alert, raised at 08:00, is overdue at 08:20.
    let mut owner = db.client();
    let escalated: i32 = owner
        .query_one(
            "SELECT kidjamo_escalate_overdue_alerts(900, '2026-03-14T08:20Z')",
            &[],
        )
        .expect("escalate")
        .get(0);
    assert_eq!(escalated, 1, "only the unacknowledged alert escalates");
    let err = app
        .query("SELECT kidjamo_escalate_overdue_alerts(900)", &[])
        .expect_err("the app cannot escalate");
    assert!(message(err).contains("permission denied"));
    assert!(call(
        &mut app,
        DOCTOR,
        &format!("SELECT kidjamo_resolve_alert('{ALERT_P2}', 'treated')")
    ));
    let history: Vec<(String, String, Option<String>, Option<String>)> = owner
        .query(
            "SELECT alert_id::text, status, changed_by::text, comment FROM alert_status_logs ORDER BY log_id",
            &[],
        )
        .expect("logs")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        history,
        vec![
            (s(ALERT_P1), s("open"), None, None),
            (s(ALERT_P2), s("open"), None, None),
            (
                s(ALERT_P1),
                s("acknowledged"),
                Some(s(CARER_ACK)),
                Some(s("calling"))
            ),
            (
                s(ALERT_P2),
                s("escalated"),
                None,
                Some(s("unacknowledged for 900 s"))
            ),
            (
                s(ALERT_P2),
                s("resolved"),
                Some(s(DOCTOR)),
                Some(s("treated"))
            ),
        ]
    );
}
