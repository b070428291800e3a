//! `kidjamo backup patient` / `kidjamo restore patient` (SPEC §8): every row that belongs to one
//! patient, from one REPEATABLE READ snapshot, as a tar archive holding a manifest and one
//! PostgreSQL binary COPY member per table (lossless, typed, streamed through a temporary file so
//! millions of measurements never sit in memory). Restore checks the schema version and every
//! checksum before it writes anything, then inserts in one transaction, idempotently.

use super::{query_error, DbError};
use crate::lake::patient_data::{self, PatientIds};
use postgres::Client;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, Write};
use std::path::Path;
use uuid::Uuid;

pub const FORMAT_VERSION: u32 = 1;
/// How every age file starts; an archive that starts so is decrypted before it is read.
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1";

/// Where the tar stream goes: the file itself, or the age encryption of it.
enum Sink {
    Plain(std::fs::File),
    Age(age::stream::StreamWriter<std::fs::File>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(f) => f.write(buf),
            Sink::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(f) => f.flush(),
            Sink::Age(w) => w.flush(),
        }
    }
}

impl Sink {
    fn finish(self) -> std::io::Result<std::fs::File> {
        match self {
            Sink::Plain(f) => Ok(f),
            Sink::Age(w) => w.finish(),
        }
    }
}
const MANIFEST: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("{path}: not a kidjamo patient archive: {reason}")]
    Invalid { path: String, reason: String },
    #[error("{path}: member {member} is corrupt (SHA-256 {actual}, manifest says {expected}); nothing was restored")]
    Corrupt {
        path: String,
        member: String,
        actual: String,
        expected: String,
    },
    #[error("{path}: made with schema version {archive}, this database is at {database}; migrate one of them first (kidjamo db migrate); nothing was restored")]
    SchemaMismatch {
        path: String,
        archive: i32,
        database: i32,
    },
    #[error("patient {0} does not exist in this database")]
    NoSuchPatient(Uuid),
    #[error("{0:?} is not an age recipient (expected age1…)")]
    BadRecipient(String),
    #[error(
        "{path}: the archive is encrypted; pass --identity FILE with the matching age identity"
    )]
    NeedsIdentity { path: String },
    #[error("{path}: cannot decrypt with {identity}: {reason}; nothing was restored")]
    Decrypt {
        path: String,
        identity: String,
        reason: String,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("lake: {0}")]
    Lake(#[from] crate::etl::EtlError),
}

/// One table of a patient's data: how to select the patient's rows, in restore order
/// (foreign keys first).
pub struct PatientTable {
    pub table: &'static str,
    /// SELECT list and FROM … WHERE, `{p}` standing for the patient id literal.
    pub select: &'static str,
    /// Identity columns are restored with their original values.
    pub identity: bool,
}

pub const PATIENT_TABLES: &[PatientTable] = &[
    PatientTable {
        table: "users",
        // Linked caregivers and clinicians: identity only, never their password hash.
        select: "SELECT u.user_id, u.role, u.given_name, u.family_name, u.email, u.phone,
                        CASE WHEN u.user_id = (SELECT user_id FROM patients WHERE patient_id = {p})
                             THEN u.password_hash END,
                        u.is_active, u.created_at, u.updated_at
                 FROM users u WHERE u.user_id IN (
                     SELECT user_id FROM patients WHERE patient_id = {p}
                     UNION SELECT user_id FROM caregivers WHERE patient_id = {p}
                     UNION SELECT clinician_user_id FROM patient_clinicians WHERE patient_id = {p}
                     UNION SELECT prescriber_user_id FROM treatments WHERE patient_id = {p}
                     UNION SELECT acknowledged_by FROM alerts WHERE patient_id = {p})",
        identity: false,
    },
    PatientTable {
        table: "devices",
        select: "SELECT d.* FROM devices d WHERE d.device_id IN (
                     SELECT device_id FROM device_assignments WHERE patient_id = {p}
                     UNION SELECT current_device_id FROM patients WHERE patient_id = {p})",
        identity: false,
    },
    PatientTable {
        table: "patients",
        select: "SELECT * FROM patients WHERE patient_id = {p}",
        identity: false,
    },
    PatientTable {
        table: "device_assignments",
        select: "SELECT * FROM device_assignments WHERE patient_id = {p}",
        identity: false,
    },
    PatientTable {
        table: "caregivers",
        select: "SELECT * FROM caregivers WHERE patient_id = {p}",
        identity: false,
    },
    PatientTable {
        table: "clinicians",
        select: "SELECT c.* FROM clinicians c WHERE c.user_id IN (
                     SELECT clinician_user_id FROM patient_clinicians WHERE patient_id = {p}
                     UNION SELECT prescriber_user_id FROM treatments WHERE patient_id = {p})",
        identity: false,
    },
    PatientTable {
        table: "patient_clinicians",
        select: "SELECT * FROM patient_clinicians WHERE patient_id = {p}",
        identity: false,
    },
    PatientTable {
        table: "treatments",
        select: "SELECT * FROM treatments WHERE patient_id = {p}",
        identity: false,
    },
    PatientTable {
        table: "measurements",
        select: "SELECT * FROM measurements WHERE patient_id = {p}",
        identity: false,
    },
    PatientTable {
        table: "alerts",
        select: "SELECT * FROM alerts WHERE patient_id = {p}",
        identity: false,
    },
    PatientTable {
        table: "alert_status_logs",
        select: "SELECT * FROM alert_status_logs WHERE patient_id = {p}",
        identity: true,
    },
    PatientTable {
        table: "audit_log",
        select: "SELECT * FROM audit_log WHERE patient_id = {p}",
        identity: true,
    },
    PatientTable {
        table: "patient_exports",
        select: "SELECT * FROM patient_exports WHERE patient_id = {p}",
        identity: false,
    },
];

fn identity_column(table: &str) -> Option<&'static str> {
    match table {
        "audit_log" => Some("audit_id"),
        "alert_status_logs" => Some("log_id"),
        _ => None,
    }
}

fn select_for(t: &PatientTable, patient: Uuid) -> String {
    t.select.replace("{p}", &format!("'{patient}'::uuid"))
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub table: String,
    pub file: String,
    pub rows: i64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub schema_version: i32,
    pub tool_version: String,
    pub created_at: String,
    pub created_by: String,
    pub patient_id: Uuid,
    pub reason: String,
    pub members: Vec<Member>,
    /// The patient's lake data (`backup --with-lake`): one member per lake file holding any of
    /// it, named `lake/<path in the lake>`, with only the patient's rows or lines.
    #[serde(default)]
    pub lake: Vec<Member>,
}

/// Copies `from` into `to` and returns the SHA-256 of what went through, in hex.
fn copy_hashed(from: &mut dyn Read, to: &mut dyn Write) -> std::io::Result<String> {
    let mut hashing = HashingReader::new(from);
    std::io::copy(&mut hashing, to)?;
    Ok(hashing.hex())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The newest applied migration: what an archive must match to be restored.
pub fn schema_version(client: &mut Client) -> Result<i32, DbError> {
    Ok(client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM kidjamo_schema_migrations",
            &[],
        )
        .map_err(query_error(
            "cannot read the migration ledger; run `kidjamo db migrate`",
        ))?
        .get(0))
}

/// Writes the archive of `patient` to `out` and records the export; returns the manifest.
pub fn backup(
    client: &mut Client,
    patient: Uuid,
    out: &Path,
    reason: &str,
    encrypt_to: Option<&str>,
    lake: Option<(&Path, &PatientIds)>,
) -> Result<Manifest, ArchiveError> {
    // Checked before any work: a typo in the recipient must not cost a snapshot.
    let recipient = match encrypt_to {
        Some(r) => Some(
            r.parse::<age::x25519::Recipient>()
                .map_err(|_| ArchiveError::BadRecipient(r.to_string()))?,
        ),
        None => None,
    };
    let file_err = |reason: String| ArchiveError::File {
        path: out.display().to_string(),
        reason,
    };
    let started = std::time::Instant::now();
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(query_error("cannot start the backup snapshot"))?;
    let exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM patients WHERE patient_id = $1)",
            &[&patient],
        )
        .map_err(query_error("cannot look up the patient"))?
        .get(0);
    if !exists {
        return Err(ArchiveError::NoSuchPatient(patient));
    }
    let schema_version: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM kidjamo_schema_migrations",
            &[],
        )
        .map_err(query_error("cannot read the migration ledger"))?
        .get(0);
    let (created_at, created_by): (String, String) = {
        let row = tx
            .query_one(
                "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), session_user::text",
                &[],
            )
            .map_err(query_error("cannot read the clock"))?;
        (row.get(0), row.get(1))
    };
    let tmp_path = out.with_extension("partial");
    let file = std::fs::File::create(&tmp_path).map_err(|e| file_err(e.to_string()))?;
    // Encrypted archives are encrypted as they stream: the archive file never holds plaintext.
    let sink = match &recipient {
        None => Sink::Plain(file),
        Some(r) => Sink::Age(
            age::Encryptor::with_recipients(std::iter::once(r as &dyn age::Recipient))
                .map_err(|e| file_err(e.to_string()))?
                .wrap_output(file)
                .map_err(|e| file_err(e.to_string()))?,
        ),
    };
    let mut archive = tar::Builder::new(sink);
    let mut members = Vec::new();
    for t in PATIENT_TABLES {
        let select = select_for(t, patient);
        let mut reader = tx
            .copy_out(&format!("COPY ({select}) TO STDOUT (FORMAT binary)"))
            .map_err(query_error(format!("cannot export {}", t.table)))?;
        let name = format!("{}.pgcopy", t.table);
        let (sha256, rows) = append_streamed(&mut archive, &name, |out| {
            // Rows are counted in the stream: a `count(*)` would scan the patient's rows twice.
            let mut counted = super::copy_count::TupleCounter::new(out);
            let sha256 = copy_hashed(&mut reader, &mut counted)?;
            let (rows, _) = counted
                .finish()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            Ok((sha256, rows as i64))
        })
        .map_err(|e| file_err(format!("{name}: {e}")))?;
        drop(reader);
        members.push(Member {
            table: t.table.into(),
            file: name,
            rows,
            sha256,
        });
    }
    tx.commit()
        .map_err(query_error("cannot end the backup snapshot"))?;
    tracing::info!(
        "backup: {} tables exported at {:.2} s",
        members.len(),
        started.elapsed().as_secs_f64()
    );
    let mut lake_members = Vec::new();
    if let Some((root, ids)) = lake {
        for path in patient_data::candidate_files(root)? {
            let Some(split) = patient_data::split(root, &path, ids)? else {
                continue;
            };
            let (rows, mut spool) = part_bytes(split.patient).map_err(&file_err)?;
            let size = spool
                .stream_position()
                .map_err(|e| file_err(e.to_string()))?;
            spool.rewind().map_err(|e| file_err(e.to_string()))?;
            let name = format!("lake/{}", split.relative);
            let mut hashing = HashingReader::new(&mut spool);
            append(&mut archive, &name, size, &mut hashing).map_err(|e| file_err(e.to_string()))?;
            lake_members.push(Member {
                table: "lake".into(),
                file: name,
                rows,
                sha256: hashing.hex(),
            });
        }
    }
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        schema_version,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        created_at,
        created_by,
        patient_id: patient,
        reason: reason.into(),
        members,
        lake: lake_members,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| file_err(e.to_string()))?;
    append(
        &mut archive,
        MANIFEST,
        json.len() as u64,
        &mut json.as_slice(),
    )
    .map_err(|e| file_err(e.to_string()))?;
    let file = archive
        .into_inner()
        .and_then(Sink::finish)
        .map_err(|e| file_err(e.to_string()))?;
    file.sync_all().map_err(|e| file_err(e.to_string()))?;
    std::fs::rename(&tmp_path, out).map_err(|e| file_err(e.to_string()))?;
    tracing::info!(
        "backup: archive written and synced at {:.2} s",
        started.elapsed().as_secs_f64()
    );
    record(client, &manifest, "BACKUP", "backup")?;
    Ok(manifest)
}

/// Appends a member whose bytes `body` writes, its size unknown until it is done. A plain
/// archive takes them in place: a header is reserved, then rewritten with the size. An
/// encrypted one cannot seek back, so they go through a temporary file (memory must not hold
/// them). Either way writes are buffered: a COPY hands over one row per read.
fn append_streamed<T>(
    archive: &mut tar::Builder<Sink>,
    name: &str,
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<T>,
) -> std::io::Result<T> {
    const BLOCK: u64 = 512;
    const BUFFER: usize = 1 << 20;
    if let Sink::Plain(file) = archive.get_mut() {
        let start = file.stream_position()?;
        file.write_all(&[0; BLOCK as usize])?;
        let second_handle = file.try_clone()?;
        let synced = crate::output::early_sync::EarlySync::new(&mut *file, second_handle)?;
        let mut buffered = std::io::BufWriter::with_capacity(BUFFER, synced);
        let out = body(&mut buffered)?;
        buffered
            .into_inner()
            .map_err(|e| e.into_error())?
            .finish()?;
        let size = file.stream_position()? - start - BLOCK;
        file.write_all(&vec![0; ((BLOCK - size % BLOCK) % BLOCK) as usize])?;
        // Table members only: their names are short enough for the header itself.
        let mut header = member_header(size);
        header.set_path(name)?;
        header.set_cksum();
        file.seek(std::io::SeekFrom::Start(start))?;
        file.write_all(header.as_bytes())?;
        file.seek(std::io::SeekFrom::End(0))?;
        return Ok(out);
    }
    let mut spool = std::io::BufWriter::with_capacity(BUFFER, tempfile::tempfile()?);
    let out = body(&mut spool)?;
    let mut spool = spool.into_inner().map_err(|e| e.into_error())?;
    let size = spool.stream_position()?;
    spool.rewind()?;
    append(archive, name, size, &mut spool)?;
    Ok(out)
}

/// A member's header but its path: fixed mode and time, so that members stay byte-stable (the
/// manifest carries the time).
fn member_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(0);
    header
}

fn append(
    archive: &mut tar::Builder<Sink>,
    name: &str,
    size: u64,
    data: &mut dyn Read,
) -> std::io::Result<()> {
    archive.append_data(&mut member_header(size), name, data)
}

/// A lake part as archive bytes (Parquet, lines or JSON) in a temporary file, with its rows.
fn part_bytes(part: patient_data::Part) -> Result<(i64, std::fs::File), String> {
    let mut spool = tempfile::tempfile().map_err(|e| e.to_string())?;
    let rows = match part {
        patient_data::Part::Rows(mut df) => {
            let rows = df.height() as i64;
            polars::prelude::ParquetWriter::new(&mut spool)
                .with_compression(polars::prelude::ParquetCompression::Zstd(None))
                .finish(&mut df)
                .map_err(|e| e.to_string())?;
            rows
        }
        patient_data::Part::Lines(bytes) => {
            spool.write_all(&bytes).map_err(|e| e.to_string())?;
            bytes.iter().filter(|b| **b == b'\n').count() as i64
        }
        patient_data::Part::State(v) => {
            spool
                .write_all(&serde_json::to_vec(&v).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            1
        }
    };
    Ok((rows, spool))
}

/// A lake member back as a part of the file it came from.
fn member_part(relative: &str, mut file: Spool) -> Result<patient_data::Part, String> {
    use polars::prelude::SerReader;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if relative.ends_with(".parquet") {
        let df = polars::prelude::ParquetReader::new(std::io::Cursor::new(bytes))
            .finish()
            .map_err(|e| e.to_string())?;
        return Ok(patient_data::Part::Rows(df));
    }
    if relative.starts_with("_state/") {
        return serde_json::from_slice(&bytes)
            .map(patient_data::Part::State)
            .map_err(|e| e.to_string());
    }
    Ok(patient_data::Part::Lines(bytes))
}

/// Hashes what is read through it.
struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: Sha256,
}

impl<'a> HashingReader<'a> {
    fn new(inner: &'a mut dyn Read) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }
    fn hex(self) -> String {
        hex(&self.hasher.finalize())
    }
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// An `audit_log` row and a `patient_exports` row for a backup or restore.
fn record(
    client: &mut Client,
    manifest: &Manifest,
    operation: &str,
    kind: &str,
) -> Result<(), DbError> {
    let counts: serde_json::Value = manifest
        .members
        .iter()
        .map(|m| (m.table.clone(), serde_json::Value::from(m.rows)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let counts = counts.to_string();
    let mut tx = client
        .transaction()
        .map_err(query_error("cannot record the operation"))?;
    tx.execute(
        "INSERT INTO patient_exports (export_id, patient_id, kind, row_counts)
         VALUES (gen_random_uuid(), $1, $2, $3::text::jsonb)",
        &[&manifest.patient_id, &kind, &counts],
    )
    .map_err(query_error("cannot record the export"))?;
    tx.execute(
        "INSERT INTO audit_log (table_name, operation, row_key, patient_id, row_count, new_values)
         VALUES ('patients', $1, $2, $3, $4, jsonb_build_object('reason', $5::text, 'row_counts', $6::text::jsonb))",
        &[
            &operation,
            &manifest.patient_id.to_string(),
            &manifest.patient_id,
            &manifest.members.iter().map(|m| m.rows).sum::<i64>(),
            &manifest.reason,
            &counts,
        ],
    )
    .map_err(query_error("cannot audit the operation"))?;
    tx.commit()
        .map_err(query_error("cannot record the operation"))?;
    Ok(())
}

/// A verified member: in memory up to `SPOOL_IN_MEMORY`, in a temporary file beyond (a restore
/// reads every member again right after verifying it; a round trip through the disk for a
/// 200 MB member cost a tenth of the restore).
type Spool = tempfile::SpooledTempFile;
const SPOOL_IN_MEMORY: usize = 512 << 20;

/// Reads and checks an archive: manifest, every member's checksum. Returns the manifest and the
/// members' bytes spooled to temporary files, in manifest order.
fn open_verified(
    path: &Path,
    identity: Option<&Path>,
) -> Result<(Manifest, Vec<Spool>, Vec<Spool>), ArchiveError> {
    let p = path.display().to_string();
    let invalid = |reason: String| ArchiveError::Invalid {
        path: p.clone(),
        reason,
    };
    let mut file =
        std::io::BufReader::new(std::fs::File::open(path).map_err(|e| ArchiveError::File {
            path: p.clone(),
            reason: e.to_string(),
        })?);
    let encrypted = std::io::BufRead::fill_buf(&mut file)
        .map_err(|e| invalid(e.to_string()))?
        .starts_with(AGE_MAGIC);
    let reader: Box<dyn Read> = if encrypted {
        let identity = identity.ok_or_else(|| ArchiveError::NeedsIdentity { path: p.clone() })?;
        let decrypt_err = |reason: String| ArchiveError::Decrypt {
            path: p.clone(),
            identity: identity.display().to_string(),
            reason,
        };
        let identities = age::IdentityFile::from_file(identity.display().to_string())
            .map_err(|e| decrypt_err(e.to_string()))?
            .into_identities()
            .map_err(|e| decrypt_err(e.to_string()))?;
        let decryptor =
            age::Decryptor::new_buffered(file).map_err(|e| decrypt_err(e.to_string()))?;
        Box::new(
            decryptor
                .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
                .map_err(|e| decrypt_err(e.to_string()))?,
        )
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    let mut manifest: Option<Manifest> = None;
    let mut spooled: Vec<(String, String, Spool)> = Vec::new();
    let entries = archive.entries().map_err(|e| invalid(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| invalid(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| invalid(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        if name == MANIFEST {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| invalid(e.to_string()))?;
            manifest =
                Some(serde_json::from_str(&text).map_err(|e| invalid(format!("manifest: {e}")))?);
            continue;
        }
        let mut spool = tempfile::spooled_tempfile(SPOOL_IN_MEMORY);
        let sha256 = copy_hashed(&mut entry, &mut spool).map_err(|e| invalid(e.to_string()))?;
        spool.rewind().map_err(|e| invalid(e.to_string()))?;
        spooled.push((name, sha256, spool));
    }
    let manifest = manifest.ok_or_else(|| invalid("no manifest.json".into()))?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(invalid(format!(
            "format version {} (this kidjamo reads {FORMAT_VERSION})",
            manifest.format_version
        )));
    }
    // Every member the manifest lists must be there with its checksum.
    let mut take_verified = |m: &Member| -> Result<Spool, ArchiveError> {
        let Some(i) = spooled.iter().position(|(name, _, _)| *name == m.file) else {
            return Err(invalid(format!("member {} is missing", m.file)));
        };
        let (name, actual, file) = spooled.swap_remove(i);
        if actual != m.sha256 {
            return Err(ArchiveError::Corrupt {
                path: p.clone(),
                member: name,
                actual,
                expected: m.sha256.clone(),
            });
        }
        Ok(file)
    };
    let mut files = Vec::new();
    for m in &manifest.members {
        if !PATIENT_TABLES.iter().any(|t| t.table == m.table) {
            return Err(invalid(format!("unknown table {}", m.table)));
        }
        files.push(take_verified(m)?);
    }
    let lake_files = manifest
        .lake
        .iter()
        .map(&mut take_verified)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((manifest, files, lake_files))
}

/// The measurements member cut by ISO week, each week with the way it goes in.
///
/// A week without rows in the database (a restore into another database, or after an
/// erasure) takes the bulk path of `db load`: `kidjamo_bulk_week_begin` makes a standalone
/// table, which a second connection fills and commits while the restore's transaction keys
/// and attaches the week before (`kidjamo_bulk_week_finish`), so that the two busiest steps
/// run on two cores. Nothing of it is in `measurements` until the transaction commits; if the
/// restore fails, `abandon_weeks` drops the standalone tables and puts back the empty
/// partitions the bulk path had replaced. A week that has rows goes through a staging table
/// and `ON CONFLICT DO NOTHING` inside the transaction.
struct PreparedMeasurements {
    data: Vec<u8>,
    weeks: Vec<PreparedWeek>,
}

struct PreparedWeek {
    week: chrono::NaiveDate,
    tuples: super::copy_split::WeekTuples,
    /// The standalone table to fill, or None for the staged path.
    bulk_table: Option<String>,
    /// The week had an empty partition, which the bulk path dropped.
    had_partition: bool,
}

/// Reads and splits the measurements member and begins the bulk weeks, committed together
/// on `helper` before the restore's transaction starts (beginning drops a partition, which
/// could not wait behind the transaction's own locks on `measurements`). Weeks begun are in
/// `prepared.weeks` even when this fails, for `abandon_weeks`.
fn prepare_measurements(
    helper: &mut Client,
    archive: &Path,
    mut member: Spool,
    prepared: &mut PreparedMeasurements,
) -> Result<(), ArchiveError> {
    let file_err = |reason: String| ArchiveError::File {
        path: archive.display().to_string(),
        reason: format!("measurements.pgcopy: {reason}"),
    };
    member
        .read_to_end(&mut prepared.data)
        .map_err(|e| file_err(e.to_string()))?;
    let time_field: i64 = helper
        .query_one(
            "SELECT count(*) FROM pg_attribute a
              WHERE a.attrelid = 'measurements'::regclass AND a.attnum > 0 AND NOT a.attisdropped
                AND a.attnum < (SELECT attnum FROM pg_attribute
                                 WHERE attrelid = 'measurements'::regclass AND attname = 'recorded_at')",
            &[],
        )
        .map_err(query_error("cannot read the measurements table's columns"))?
        .get(0);
    let weeks =
        super::copy_split::split_by_week(&prepared.data, time_field as usize).map_err(file_err)?;
    // Held until `helper` closes: no other loader may start these weeks over meanwhile.
    super::lock_bulk_weeks(helper)?;
    super::leftover_weeks::sweep_locked(helper, None, true)?;
    // One commit for all weeks, not one (and its WAL flush) per week.
    let mut begin = helper
        .transaction()
        .map_err(query_error("cannot prepare the measurements' weeks"))?;
    for (week, tuples) in weeks {
        let had_partition: bool = begin
            .query_one(
                "SELECT to_regclass('public.' || quote_ident(
                            kidjamo_week_partition_name(kidjamo_iso_week_start($1)))) IS NOT NULL",
                &[&week],
            )
            .map_err(query_error(format!("cannot prepare the week of {week}")))?
            .get(0);
        let bulk_table: Option<String> = begin
            .query_one("SELECT kidjamo_bulk_week_begin($1)", &[&week])
            .map_err(query_error(format!("cannot prepare the week of {week}")))?
            .get(0);
        prepared.weeks.push(PreparedWeek {
            week,
            tuples,
            bulk_table,
            had_partition,
        });
    }
    begin
        .commit()
        .map_err(query_error("cannot prepare the measurements' weeks"))?;
    Ok(())
}

/// COPYs one week's tuples into `table`; returns the rows copied.
fn copy_week(
    client: &mut impl postgres::GenericClient,
    archive: &Path,
    table: &str,
    data: &[u8],
    tuples: &super::copy_split::WeekTuples,
) -> Result<u64, ArchiveError> {
    let mut writer = client
        .copy_in(&format!("COPY {table} FROM STDIN (FORMAT binary)"))
        .map_err(query_error(format!("cannot restore into {table}")))?;
    let io = |e: std::io::Error| file_error(archive, &e.to_string());
    writer.write_all(super::copy::HEADER).map_err(io)?;
    for slice in tuples.slices(data) {
        writer.write_all(slice).map_err(io)?;
    }
    writer.write_all(super::copy::TRAILER).map_err(io)?;
    Ok(writer.finish().map_err(query_error(format!(
        "{}: measurements do not load",
        archive.display()
    )))?)
}

/// Loads the prepared weeks inside the restore's transaction, the bulk weeks filled on
/// `helper` one week ahead (see `PreparedMeasurements`); returns the rows inserted.
fn restore_measurements(
    tx: &mut postgres::Transaction<'_>,
    helper: &mut Client,
    archive: &Path,
    prepared: &PreparedMeasurements,
) -> Result<u64, ArchiveError> {
    let (data, weeks) = (&prepared.data, &prepared.weeks);
    let (sender, filled) = std::sync::mpsc::channel::<usize>();
    std::thread::scope(|scope| {
        let filler = scope.spawn(move || -> Result<(), ArchiveError> {
            for (i, w) in weeks.iter().enumerate() {
                if let Some(table) = &w.bulk_table {
                    copy_week(helper, archive, table, data, &w.tuples)?;
                }
                if sender.send(i).is_err() {
                    break; // the transaction failed: it says why
                }
            }
            Ok(())
        });
        let loaded = load_weeks(tx, archive, prepared, filled);
        let filling = filler
            .join()
            .unwrap_or_else(|_| Err(file_error(archive, "the loading thread failed")));
        // When the filler fails, the loader sees the weeks stop: the filler's error is the cause.
        filling?;
        loaded
    })
}

fn file_error(archive: &Path, reason: &str) -> ArchiveError {
    ArchiveError::File {
        path: archive.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Attaches each bulk week once filled, and restores each staged week, in order.
fn load_weeks(
    tx: &mut postgres::Transaction<'_>,
    archive: &Path,
    prepared: &PreparedMeasurements,
    filled: std::sync::mpsc::Receiver<usize>,
) -> Result<u64, ArchiveError> {
    let mut inserted = 0;
    let mut staged = false;
    let mut done = 0;
    // Time spent waiting for the filling connection: near zero means the attaching side is
    // the bound, a large share means the filling side is.
    let mut waited = std::time::Duration::ZERO;
    loop {
        let asked = std::time::Instant::now();
        let Ok(i) = filled.recv() else {
            break;
        };
        waited += asked.elapsed();
        let w = &prepared.weeks[i];
        let week = w.week;
        done += 1;
        if w.bulk_table.is_some() {
            // Rows repeated within the week are removed by the key, as `db load` does.
            let duplicates: i64 = tx
                .query_one(
                    "SELECT duplicates FROM kidjamo_bulk_week_finish($1)",
                    &[&week],
                )
                .map_err(query_error(format!("cannot attach the week of {week}")))?
                .get(0);
            inserted += w.tuples.rows.saturating_sub(duplicates as u64);
            continue;
        }
        let stage = "kidjamo_restore_week";
        if !staged {
            tx.batch_execute(&format!(
                "CREATE TEMP TABLE {stage} (LIKE measurements INCLUDING DEFAULTS) ON COMMIT DROP"
            ))
            .map_err(query_error("cannot stage measurements"))?;
            staged = true;
        }
        tx.batch_execute(&format!("TRUNCATE {stage}"))
            .map_err(query_error("cannot stage measurements"))?;
        tx.execute("SELECT kidjamo_ensure_week_partition($1)", &[&week])
            .map_err(query_error(format!(
                "cannot create the partition of {week}"
            )))?;
        copy_week(tx, archive, stage, &prepared.data, &w.tuples)?;
        inserted += tx
            .execute(
                &format!("INSERT INTO measurements SELECT * FROM {stage} ON CONFLICT DO NOTHING"),
                &[],
            )
            .map_err(query_error(format!("cannot restore the week of {week}")))?;
    }
    if done != prepared.weeks.len() {
        return Err(file_error(archive, "measurements stopped loading early"));
    }
    tracing::info!(
        "restore: {done} weeks loaded; {:.2} s of it waiting for weeks to be filled",
        waited.as_secs_f64()
    );
    Ok(inserted)
}

/// Undoes `prepare_measurements` after a failed restore (its transaction rolled back): drops
/// the standalone tables — they hold the patient's rows, committed, outside `measurements` —
/// and puts back the empty partitions they were to replace. What cannot be undone is named.
fn abandon_weeks(helper: &mut Client, prepared: &PreparedMeasurements) {
    for w in &prepared.weeks {
        let Some(table) = &w.bulk_table else {
            continue;
        };
        let undone = helper
            .batch_execute(&format!("DROP TABLE IF EXISTS public.{table}"))
            .and_then(|()| {
                if w.had_partition {
                    helper.execute("SELECT kidjamo_ensure_week_partition($1)", &[&w.week])?;
                }
                Ok(())
            });
        if let Err(e) = undone {
            tracing::warn!(
                "restore failed and table {table} could not be dropped ({e}); \
                 drop it as kidjamo_owner (it holds the week's restored rows)"
            );
        }
    }
}

/// Restored rows per table (rows already present are not inserted again).
pub type RestoreCounts = Vec<(String, u64, u64)>;

/// Every member but the lake's, in one transaction (rolled back on error).
fn restore_tables(
    client: &mut Client,
    helper: &mut Client,
    path: &Path,
    manifest: &Manifest,
    files: Vec<Option<Spool>>,
    prepared: &PreparedMeasurements,
) -> Result<RestoreCounts, ArchiveError> {
    let mut tx = client
        .transaction()
        .map_err(query_error("cannot start the restore"))?;
    // Triggers stay quiet for rows that come back as they were (honoured only for
    // kidjamo_owner members, see sql/0006); the restore itself is audited once, below.
    tx.batch_execute("SET LOCAL kidjamo.quiet_triggers = 'on'")
        .map_err(query_error("cannot prepare the restore"))?;
    let mut counts = Vec::new();
    for (m, file) in manifest.members.iter().zip(files) {
        if m.table == "measurements" {
            let inserted = restore_measurements(&mut tx, helper, path, prepared)?;
            counts.push((m.table.clone(), m.rows as u64, inserted));
            continue;
        }
        let Some(mut file) = file else {
            continue;
        };
        let stage = format!("kidjamo_restore_{}", m.table);
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE {stage} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP",
            m.table
        ))
        .map_err(query_error(format!("cannot stage {}", m.table)))?;
        let mut writer = tx
            .copy_in(&format!("COPY {stage} FROM STDIN (FORMAT binary)"))
            .map_err(query_error(format!("cannot restore {}", m.table)))?;
        std::io::copy(&mut file, &mut writer).map_err(|e| ArchiveError::File {
            path: path.display().to_string(),
            reason: format!("{}: {e}", m.file),
        })?;
        writer.finish().map_err(query_error(format!(
            "{}: member {} does not load",
            path.display(),
            m.file
        )))?;
        let overriding = if PATIENT_TABLES
            .iter()
            .any(|t| t.table == m.table && t.identity)
        {
            "OVERRIDING SYSTEM VALUE"
        } else {
            ""
        };
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO {} {overriding} SELECT * FROM {stage} ON CONFLICT DO NOTHING",
                    m.table
                ),
                &[],
            )
            .map_err(query_error(format!("cannot restore {}", m.table)))?;
        if let Some(column) = identity_column(&m.table) {
            // Rows came back with their ids: move the sequence past them.
            tx.execute(
                &format!(
                    "SELECT setval(s, greatest(coalesce(pg_sequence_last_value(s::regclass), 1),
                                              (SELECT coalesce(max({column}), 1) FROM {table})))
                     FROM pg_get_serial_sequence('{table}', '{column}') s",
                    table = m.table
                ),
                &[],
            )
            .map_err(query_error(format!(
                "cannot advance the ids of {}",
                m.table
            )))?;
        }
        counts.push((m.table.clone(), m.rows as u64, inserted));
    }
    tx.commit()
        .map_err(query_error("cannot commit the restore"))?;
    Ok(counts)
}

/// Restores an archive in one transaction; returns (table, rows in archive, rows inserted).
/// `helper` is a second connection to the same database (see `PreparedMeasurements`).
pub fn restore(
    client: &mut Client,
    helper: &mut Client,
    path: &Path,
    identity: Option<&Path>,
    lake: Option<&Path>,
) -> Result<(Manifest, RestoreCounts), ArchiveError> {
    let started = std::time::Instant::now();
    let (manifest, files, lake_files) = open_verified(path, identity)?;
    let database = schema_version(client)?;
    if manifest.schema_version != database {
        return Err(ArchiveError::SchemaMismatch {
            path: path.display().to_string(),
            archive: manifest.schema_version,
            database,
        });
    }
    tracing::info!(
        "restore: archive read and verified in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let mut files: Vec<Option<Spool>> = files.into_iter().map(Some).collect();
    let mut prepared = PreparedMeasurements {
        data: Vec::new(),
        weeks: Vec::new(),
    };
    let measurements = manifest
        .members
        .iter()
        .position(|m| m.table == "measurements")
        .and_then(|i| files[i].take());
    let restored = match measurements {
        Some(member) => prepare_measurements(helper, path, member, &mut prepared),
        None => Ok(()),
    }
    .and_then(|()| {
        tracing::info!(
            "restore: {} weeks of measurements cut and begun at {:.2} s",
            prepared.weeks.len(),
            started.elapsed().as_secs_f64()
        );
        restore_tables(client, helper, path, &manifest, files, &prepared)
    });
    let mut counts = match restored {
        Ok(counts) => counts,
        Err(e) => {
            abandon_weeks(helper, &prepared);
            return Err(e);
        }
    };
    if let Some(root) = lake {
        let mut written = 0;
        for (m, file) in manifest.lake.iter().zip(lake_files) {
            let relative = m.file.trim_start_matches("lake/");
            let part = member_part(relative, file).map_err(|reason| ArchiveError::File {
                path: path.display().to_string(),
                reason: format!("{}: {reason}", m.file),
            })?;
            let ids = PatientIds::of_part(&manifest.patient_id, &part);
            if patient_data::merge_back(root, relative, &ids, part)? {
                written += m.rows as u64;
            }
        }
        patient_data::set_tombstone(root, &manifest.patient_id, false)?;
        counts.push((
            "lake".into(),
            manifest.lake.iter().map(|m| m.rows as u64).sum(),
            written,
        ));
    }
    record(client, &manifest, "RESTORE", "restore")?;
    tracing::info!(
        "restore: committed and audited at {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok((manifest, counts))
}
