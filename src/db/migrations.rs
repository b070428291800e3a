//! Versioned SQL migrations (SPEC §7): files `NNNN_description.sql`, embedded in the binary or
//! read from a folder, applied in order, each in its own transaction unless its first line is
//! `-- kidjamo: no-transaction` (for `CREATE INDEX CONCURRENTLY`). A ledger records version,
//! name, SHA-256, time, duration and user; an applied file that changed is refused; a
//! session-level advisory lock, polled with a timeout, keeps two migrators from racing and is
//! released by PostgreSQL if the process dies.

use super::{query_error, DbError};
use postgres::Client;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::{Duration, Instant};

/// Migrations shipped with kidjamo (a test checks this list against `sql/`).
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "0001_measurement_quality.sql",
        include_str!("../../sql/0001_measurement_quality.sql"),
    ),
    ("0002_roles.sql", include_str!("../../sql/0002_roles.sql")),
    (
        "0003_people_and_devices.sql",
        include_str!("../../sql/0003_people_and_devices.sql"),
    ),
    (
        "0004_measurements_and_alerts.sql",
        include_str!("../../sql/0004_measurements_and_alerts.sql"),
    ),
    (
        "0005_row_level_security.sql",
        include_str!("../../sql/0005_row_level_security.sql"),
    ),
    ("0006_audit.sql", include_str!("../../sql/0006_audit.sql")),
    (
        "0007_alert_workflow.sql",
        include_str!("../../sql/0007_alert_workflow.sql"),
    ),
    (
        "0008_dashboards.sql",
        include_str!("../../sql/0008_dashboards.sql"),
    ),
    (
        "0009_open_alert_index.sql",
        include_str!("../../sql/0009_open_alert_index.sql"),
    ),
    (
        "0010_bulk_week_load.sql",
        include_str!("../../sql/0010_bulk_week_load.sql"),
    ),
    (
        "0011_device_credentials.sql",
        include_str!("../../sql/0011_device_credentials.sql"),
    ),
];

/// Marker on a file's first line for statements that cannot run inside a transaction.
pub const NO_TRANSACTION_MARKER: &str = "-- kidjamo: no-transaction";
/// Advisory lock key: "kidjamo" in ASCII, so `pg_locks` shows who holds it.
pub const LOCK_KEY: i64 = 0x006b_6964_6a61_6d6f;
const LEDGER: &str = "kidjamo_schema_migrations";

#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    pub version: i32,
    pub name: String,
    pub sql: String,
    pub checksum: String,
    pub transactional: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("{file}: migration file names must look like 0001_description.sql")]
    BadName { file: String },
    #[error("{first} and {second} have the same version")]
    DuplicateVersion { first: String, second: String },
    #[error("cannot read migrations from {dir}: {source}")]
    Read { dir: String, source: std::io::Error },
    #[error("migration {file} changed after it was applied (applied checksum {applied}, file now {now}); add a new migration instead of editing an applied one")]
    Changed {
        file: String,
        applied: String,
        now: String,
    },
    #[error("migration {version} ({name}) is recorded as applied but no such file exists")]
    Missing { version: i32, name: String },
    #[error("another migrator holds the lock ({holder}); gave up after {waited_s} s")]
    Locked { holder: String, waited_s: u64 },
    #[error("applied {applied}; migration {file} failed: {source}")]
    Failed {
        applied: String,
        file: String,
        source: postgres::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Migration {
    pub fn file_name(&self) -> String {
        format!("{:04}_{}.sql", self.version, self.name)
    }

    pub fn parse(file: &str, sql: &str) -> Result<Migration, MigrationError> {
        let bad = || MigrationError::BadName {
            file: file.to_string(),
        };
        let stem = file.strip_suffix(".sql").ok_or_else(bad)?;
        let (num, name) = stem.split_once('_').ok_or_else(bad)?;
        if num.len() != 4 || !num.chars().all(|c| c.is_ascii_digit()) || name.is_empty() {
            return Err(bad());
        }
        let version: i32 = num.parse().map_err(|_| bad())?;
        Ok(Migration {
            version,
            name: name.to_string(),
            sql: sql.to_string(),
            checksum: hex::encode(Sha256::digest(sql.as_bytes())),
            transactional: sql.lines().next().map(str::trim) != Some(NO_TRANSACTION_MARKER),
        })
    }
}

fn sorted(mut list: Vec<Migration>) -> Result<Vec<Migration>, MigrationError> {
    list.sort_by_key(|m| m.version);
    for pair in list.windows(2) {
        if pair[0].version == pair[1].version {
            return Err(MigrationError::DuplicateVersion {
                first: pair[0].file_name(),
                second: pair[1].file_name(),
            });
        }
    }
    Ok(list)
}

pub fn embedded() -> Result<Vec<Migration>, MigrationError> {
    sorted(
        EMBEDDED
            .iter()
            .map(|(f, sql)| Migration::parse(f, sql))
            .collect::<Result<_, _>>()?,
    )
}

/// Every `*.sql` file of `dir`.
pub fn from_dir(dir: &Path) -> Result<Vec<Migration>, MigrationError> {
    let read = |e| MigrationError::Read {
        dir: dir.display().to_string(),
        source: e,
    };
    let mut list = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let path = entry.map_err(read)?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") {
            continue;
        }
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default()
            .to_string();
        let sql = std::fs::read_to_string(&path).map_err(read)?;
        list.push(Migration::parse(&file, &sql)?);
    }
    sorted(list)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub version: i32,
    pub name: String,
    pub checksum: String,
}

/// Applied and pending migrations, after checking that no applied file changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub applied: Vec<Applied>,
    pub pending: Vec<Migration>,
}

fn ensure_ledger(client: &mut Client) -> Result<(), DbError> {
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {LEDGER} (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                duration_ms bigint NOT NULL,
                applied_by text NOT NULL DEFAULT current_user
            )"
        ))
        .map_err(query_error("cannot create the migration ledger"))
}

fn read_ledger(client: &mut Client) -> Result<Vec<Applied>, DbError> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&LEDGER])
        .map_err(query_error("cannot look for the migration ledger"))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!("SELECT version, name, checksum FROM {LEDGER} ORDER BY version"),
            &[],
        )
        .map_err(query_error("cannot read the migration ledger"))?;
    Ok(rows
        .iter()
        .map(|r| Applied {
            version: r.get(0),
            name: r.get(1),
            checksum: r.get(2),
        })
        .collect())
}

/// Compares the ledger with the files. Read-only.
pub fn plan(
    client: &mut Client,
    migrations: &[Migration],
    target: Option<i32>,
) -> Result<Plan, MigrationError> {
    let applied = read_ledger(client)?;
    for a in &applied {
        match migrations.iter().find(|m| m.version == a.version) {
            None => {
                return Err(MigrationError::Missing {
                    version: a.version,
                    name: a.name.clone(),
                })
            }
            Some(m) if m.checksum != a.checksum => {
                return Err(MigrationError::Changed {
                    file: m.file_name(),
                    applied: a.checksum.clone(),
                    now: m.checksum.clone(),
                });
            }
            Some(_) => {}
        }
    }
    let pending = migrations
        .iter()
        .filter(|m| applied.iter().all(|a| a.version != m.version))
        .filter(|m| target.is_none_or(|t| m.version <= t))
        .cloned()
        .collect();
    Ok(Plan { applied, pending })
}

fn lock_holder(client: &mut Client) -> String {
    let row = client.query_opt(
        "SELECT a.pid, coalesce(a.usename::text, '?'), coalesce(a.application_name, ''), coalesce(a.client_addr::text, 'local'), a.backend_start::text
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted AND ((l.classid::bigint << 32) | l.objid::bigint) = $1
          LIMIT 1",
        &[&LOCK_KEY],
    );
    match row {
        Ok(Some(r)) => {
            let (pid, user, app, addr, since): (i32, String, String, String, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            format!(
                "pid {pid}, user {user}, application {app:?}, from {addr}, connected since {since}"
            )
        }
        _ => "holder unknown".into(),
    }
}

/// Takes the migration lock, polling until `timeout`.
pub fn lock(client: &mut Client, timeout: Duration) -> Result<(), MigrationError> {
    let started = Instant::now();
    loop {
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
            .map_err(query_error("cannot take the migration lock"))?
            .get(0);
        if got {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(MigrationError::Locked {
                holder: lock_holder(client),
                waited_s: started.elapsed().as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn unlock(client: &mut Client) -> Result<(), DbError> {
    client
        .query_one("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .map(|_| ())
        .map_err(query_error("cannot release the migration lock"))
}

/// Applies what is pending (up to `target`) under the lock; returns what it applied.
pub fn migrate(
    client: &mut Client,
    migrations: &[Migration],
    target: Option<i32>,
    lock_timeout: Duration,
) -> Result<Vec<Migration>, MigrationError> {
    lock(client, lock_timeout)?;
    let result = apply_locked(client, migrations, target);
    let released = unlock(client);
    let applied = result?;
    released?;
    Ok(applied)
}

fn apply_locked(
    client: &mut Client,
    migrations: &[Migration],
    target: Option<i32>,
) -> Result<Vec<Migration>, MigrationError> {
    ensure_ledger(client)?;
    // Planned after taking the lock: a migrator that waited finds the other's work done.
    let plan = plan(client, migrations, target)?;
    let mut done: Vec<Migration> = Vec::new();
    for m in plan.pending {
        let started = Instant::now();
        let fail = |done: &[Migration], source| MigrationError::Failed {
            applied: if done.is_empty() {
                "nothing".into()
            } else {
                done.iter()
                    .map(Migration::file_name)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            file: m.file_name(),
            source,
        };
        let record = format!(
            "INSERT INTO {LEDGER} (version, name, checksum, duration_ms) VALUES ($1, $2, $3, $4)"
        );
        if m.transactional {
            let mut tx = client.transaction().map_err(|e| fail(&done, e))?;
            tx.batch_execute(&m.sql).map_err(|e| fail(&done, e))?;
            let ms = started.elapsed().as_millis() as i64;
            tx.execute(&record, &[&m.version, &m.name, &m.checksum, &ms])
                .map_err(|e| fail(&done, e))?;
            tx.commit().map_err(|e| fail(&done, e))?;
        } else {
            client.batch_execute(&m.sql).map_err(|e| fail(&done, e))?;
            let ms = started.elapsed().as_millis() as i64;
            client
                .execute(&record, &[&m.version, &m.name, &m.checksum, &ms])
                .map_err(|e| fail(&done, e))?;
        }
        done.push(m);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_names_are_parsed_strictly() {
        let m = Migration::parse("0003_add_alerts.sql", "SELECT 1;").expect("valid");
        assert_eq!(
            (m.version, m.name.as_str(), m.transactional),
            (3, "add_alerts", true)
        );
        assert_eq!(m.checksum.len(), 64);
        for bad in [
            "3_x.sql",
            "0003.sql",
            "0003_.sql",
            "abcd_x.sql",
            "0003_x.txt",
        ] {
            assert!(Migration::parse(bad, "").is_err(), "{bad}");
        }
        let c = Migration::parse(
            "0004_idx.sql",
            "-- kidjamo: no-transaction\nCREATE INDEX CONCURRENTLY i ON t (x);",
        )
        .expect("valid");
        assert!(!c.transactional);
    }

    #[test]
    fn embedded_migrations_match_the_sql_folder() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
        let on_disk = if dir.exists() {
            from_dir(&dir).expect("readable")
        } else {
            Vec::new()
        };
        assert_eq!(
            embedded().expect("valid"),
            on_disk,
            "list every sql/ file in migrations::EMBEDDED"
        );
    }
}
