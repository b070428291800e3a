//! Security posture checks (SPEC §7–8): each names what it found wrong and how to fix it.
//! Read-only; run as a role that can read the catalogs (the owner or a superuser).

use crate::db::migrations::{self, Migration};
use crate::db::partitions::{iso_week_start, weekly_partitions};
use crate::db::{query_error, DbError};
use chrono::{Datelike, Days, NaiveDate};
use postgres::Client;
use serde::Serialize;

/// The tables that hold patient data: row-level security must be enabled and forced on each.
pub const PATIENT_DATA_TABLES: [&str; 11] = [
    "users",
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

/// Weeks of measurement partitions that must exist from the current week on.
pub const WEEKS_AHEAD: u64 = 4;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub id: &'static str,
    pub title: &'static str,
    pub passed: bool,
    /// What was found wrong, one item per problem; empty when passed.
    pub problems: Vec<String>,
    /// How to fix it; empty when passed.
    pub fix: String,
}

fn check(id: &'static str, title: &'static str, problems: Vec<String>, fix: &str) -> Check {
    Check {
        id,
        title,
        passed: problems.is_empty(),
        fix: if problems.is_empty() {
            String::new()
        } else {
            fix.to_string()
        },
        problems,
    }
}

pub struct PostureSettings<'a> {
    pub app_role: &'a str,
    pub today: NaiveDate,
}

pub fn run(client: &mut Client, s: &PostureSettings<'_>) -> Result<Vec<Check>, DbError> {
    Ok(vec![
        rls_forced(client)?,
        policies_present(client)?,
        app_role(client, s.app_role)?,
        no_public_grants(client)?,
        partitions_not_granted(client, s.app_role)?,
        partitions_ahead(client, s.today)?,
        default_partitions_empty(client)?,
        no_unfinished_loads(client)?,
        migrations_applied(client)?,
    ])
}

fn rls_forced(client: &mut Client) -> Result<Check, DbError> {
    let mut problems = Vec::new();
    for t in PATIENT_DATA_TABLES {
        let row = client
            .query_opt(
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_class
                 WHERE oid = to_regclass($1)",
                &[&t],
            )
            .map_err(query_error("cannot read row-level security settings"))?;
        match row {
            None => problems.push(format!("{t}: table missing")),
            Some(r) => {
                let (enabled, forced): (bool, bool) = (r.get(0), r.get(1));
                if !enabled {
                    problems.push(format!("{t}: row-level security disabled"));
                } else if !forced {
                    problems.push(format!(
                        "{t}: row-level security not forced (the owner bypasses it)"
                    ));
                }
            }
        }
    }
    Ok(check(
        "rls_forced",
        "Row-level security enabled and forced on every patient-data table",
        problems,
        "ALTER TABLE <table> ENABLE ROW LEVEL SECURITY; ALTER TABLE <table> FORCE ROW LEVEL SECURITY; (migration 0005 does both)",
    ))
}

fn policies_present(client: &mut Client) -> Result<Check, DbError> {
    let mut problems = Vec::new();
    for t in PATIENT_DATA_TABLES {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_policies WHERE schemaname = current_schema() AND tablename = $1",
                &[&t],
            )
            .map_err(query_error("cannot read policies"))?
            .get(0);
        let app: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_policies WHERE schemaname = current_schema() AND tablename = $1
                   AND policyname <> 'tool_all'",
                &[&t],
            )
            .map_err(query_error("cannot read policies"))?
            .get(0);
        if n == 0 {
            problems.push(format!(
                "{t}: no policy (with RLS forced, nobody sees a row)"
            ));
        } else if app == 0 {
            problems.push(format!(
                "{t}: only the tool's policy, none for patients, caregivers and clinicians"
            ));
        }
    }
    Ok(check(
        "policies_present",
        "Policies present on every patient-data table",
        problems,
        "recreate the policies of migration 0005 (a fresh database with `kidjamo db migrate` has them)",
    ))
}

fn app_role(client: &mut Client, role: &str) -> Result<Check, DbError> {
    let row = client
        .query_opt(
            "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .map_err(query_error("cannot read roles"))?;
    let mut problems = Vec::new();
    match row {
        None => problems.push(format!("role {role} does not exist")),
        Some(r) => {
            let (superuser, bypass): (bool, bool) = (r.get(0), r.get(1));
            if superuser {
                problems.push(format!(
                    "{role} is a superuser: row-level security does not apply to it"
                ));
            }
            if bypass {
                problems.push(format!("{role} has BYPASSRLS"));
            }
            let owned: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
                     WHERE r.rolname = $1 AND c.relnamespace = current_schema()::regnamespace",
                    &[&role],
                )
                .map_err(query_error("cannot read owners"))?
                .get(0);
            if owned > 0 {
                problems.push(format!(
                    "{role} owns {owned} relation(s): owners can switch security off"
                ));
            }
        }
    }
    Ok(check(
        "app_role",
        "The application role is not superuser, has no BYPASSRLS and owns nothing",
        problems,
        "ALTER ROLE <app role> NOSUPERUSER NOBYPASSRLS; ALTER TABLE … OWNER TO kidjamo_owner for what it owns",
    ))
}

fn no_public_grants(client: &mut Client) -> Result<Check, DbError> {
    let rows = client
        .query(
            "SELECT c.relname, a.privilege_type
               FROM pg_class c, aclexplode(c.relacl) a
              WHERE a.grantee = 0 AND c.relname = ANY($1)
              ORDER BY 1, 2",
            &[&PATIENT_DATA_TABLES.to_vec()],
        )
        .map_err(query_error("cannot read grants"))?;
    let problems = rows
        .iter()
        .map(|r| {
            format!(
                "{}: {} granted to PUBLIC",
                r.get::<_, String>(0),
                r.get::<_, String>(1)
            )
        })
        .collect();
    Ok(check(
        "no_public_grants",
        "No privilege on patient-data tables granted to PUBLIC",
        problems,
        "REVOKE ALL ON <table> FROM PUBLIC",
    ))
}

fn partitions_not_granted(client: &mut Client, role: &str) -> Result<Check, DbError> {
    // A partition queried directly is not filtered by its parent's policies.
    let rows = client
        .query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent IN ('measurements'::regclass, 'audit_log'::regclass)
                AND EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = $1)
                AND (has_table_privilege($1, c.oid, 'SELECT') OR has_table_privilege($1, c.oid, 'INSERT'))
              ORDER BY 1",
            &[&role],
        )
        .map_err(query_error("cannot read partition privileges"))?;
    let problems = rows
        .iter()
        .map(|r| {
            format!(
                "{}: {role} can query it directly, around the parent's policies",
                r.get::<_, String>(0)
            )
        })
        .collect();
    Ok(check(
        "partitions_not_granted",
        "Partitions are reachable only through their parent table",
        problems,
        "REVOKE ALL ON <partition> FROM <app role>",
    ))
}

fn partitions_ahead(client: &mut Client, today: NaiveDate) -> Result<Check, DbError> {
    let have: Vec<NaiveDate> = weekly_partitions(client)?
        .into_iter()
        .map(|(_, w)| w)
        .collect();
    let this_week = iso_week_start(today);
    let mut problems = Vec::new();
    for k in 0..=WEEKS_AHEAD {
        let week = this_week + Days::new(7 * k);
        if !have.contains(&week) {
            let iso = week.iso_week();
            problems.push(format!(
                "no measurements partition for {}-W{:02} (from {week})",
                iso.year(),
                iso.week()
            ));
        }
    }
    let next_month = NaiveDate::from_ymd_opt(
        if today.month() == 12 {
            today.year() + 1
        } else {
            today.year()
        },
        today.month() % 12 + 1,
        1,
    );
    if let Some(m) = next_month {
        let name = format!("audit_log_{}m{:02}", m.year(), m.month());
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .map_err(query_error("cannot look for audit partitions"))?
            .get(0);
        if !exists {
            problems.push(format!(
                "no audit_log partition for {}-{:02}",
                m.year(),
                m.month()
            ));
        }
    }
    Ok(check(
        "partitions_ahead",
        "Partitions exist ahead (this week and the next 4; next month's audit log)",
        problems,
        "kidjamo db partitions (schedule it weekly)",
    ))
}

fn default_partitions_empty(client: &mut Client) -> Result<Check, DbError> {
    let mut problems = Vec::new();
    for t in ["measurements_default", "audit_log_default"] {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .map_err(query_error(format!("cannot count {t}")))?
            .get(0);
        if n > 0 {
            problems.push(format!("{t} holds {n} row(s)"));
        }
    }
    Ok(check(
        "default_partitions_empty",
        "DEFAULT partitions are empty",
        problems,
        "kidjamo db partitions --behind <weeks> creates the missing partitions and moves the rows into them",
    ))
}

fn no_unfinished_loads(client: &mut Client) -> Result<Check, DbError> {
    // Only tables no running load or restore is using: those are left over, and read-only here.
    let leftovers = crate::db::leftover_weeks::sweep(client, false)?.unwrap_or_default();
    let problems = leftovers
        .iter()
        .map(|l| {
            format!(
                "{} holds {} row(s) outside measurements and its row-level security, left by a load or restore that was killed",
                l.table, l.rows
            )
        })
        .collect();
    Ok(check(
        "no_unfinished_loads",
        "No tables left by a killed load or restore",
        problems,
        "kidjamo db partitions drops them (their rows never reached measurements); then rerun the load or restore",
    ))
}

fn migrations_applied(client: &mut Client) -> Result<Check, DbError> {
    let mut problems = Vec::new();
    let files: Vec<Migration> = match migrations::embedded() {
        Ok(f) => f,
        Err(e) => {
            problems.push(e.to_string());
            Vec::new()
        }
    };
    match migrations::plan(client, &files, None) {
        Ok(plan) => {
            for m in plan.pending {
                problems.push(format!("{} not applied", m.file_name()));
            }
        }
        Err(e) => problems.push(e.to_string()),
    }
    Ok(check(
        "migrations_applied",
        "Every migration applied, with matching checksums",
        problems,
        "kidjamo db migrate (an applied file that changed must be restored to what was applied)",
    ))
}
