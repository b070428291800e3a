//! Where device credentials live: a JSON Lines file (mode 0600) or PostgreSQL's
//! `device_credentials` table (migration 0011). Only hashes and signing keys are stored; the
//! token itself is printed once, when issued.

use super::auth::DeviceCredential;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("credentials file {path}: {message}")]
    File { path: String, message: String },
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("device {0} is not assigned to any patient now")]
    Unassigned(Uuid),
    #[error("cannot read random bytes from the operating system: {0}")]
    Random(std::io::Error),
}

/// Where credentials are kept.
#[derive(Debug, Clone)]
pub enum CredentialStore {
    File(PathBuf),
    Postgres(String),
}

/// One line of the credentials file. A later line for the same device replaces the earlier
/// one (issuing a new token revokes the old).
#[derive(Serialize, Deserialize)]
struct FileLine {
    device_id: Uuid,
    patient_id: Uuid,
    token_sha256: String,
    signing_key: String,
    issued_at: String,
}

impl CredentialStore {
    pub fn describe(&self) -> String {
        match self {
            CredentialStore::File(p) => p.display().to_string(),
            CredentialStore::Postgres(url) => crate::db::redact_url(url),
        }
    }

    /// Every valid credential, by device. Blocking (call it off the async runtime).
    pub fn load(&self) -> Result<HashMap<Uuid, DeviceCredential>, CredentialError> {
        match self {
            CredentialStore::File(path) => load_file(path),
            CredentialStore::Postgres(url) => load_db(url),
        }
    }

    /// Stores a new credential, replacing any earlier one for the device.
    pub fn save(&self, c: &DeviceCredential, issued_at: &str) -> Result<(), CredentialError> {
        match self {
            CredentialStore::File(path) => append_file(path, c, issued_at),
            CredentialStore::Postgres(url) => save_db(url, c),
        }
    }

    /// The patient a device is assigned to now, from the database (file stores have no
    /// assignments: the caller finds the patient in the lake's reference tables).
    pub fn assigned_patient(&self, device: Uuid) -> Result<Option<Uuid>, CredentialError> {
        match self {
            CredentialStore::File(_) => Ok(None),
            CredentialStore::Postgres(url) => {
                let mut client = crate::db::connect(url)?;
                let row = client
                    .query_opt(
                        "SELECT patient_id FROM device_assignments WHERE device_id = $1 \
                         AND assigned_from <= now() AND (assigned_to IS NULL OR assigned_to > now())",
                        &[&device],
                    )
                    .map_err(crate::db::query_error("device assignment"))?;
                Ok(row.map(|r| r.get(0)))
            }
        }
    }
}

/// The patient a device is assigned to in a lake's reference tables (as `simulate` writes
/// them: `reference/devices.parquet`, the latest assignment of the device).
pub fn patient_in_reference(lake: &Path, device: Uuid) -> Result<Option<Uuid>, CredentialError> {
    let path = lake
        .join(crate::lake::layout::REFERENCE_DIR)
        .join("devices.parquet");
    let bad = |e: &dyn std::fmt::Display| file_error(&path, e);
    if !path.is_file() {
        return Err(bad(
            &"no such file (pass --patient, or point --lake at a simulated lake)",
        ));
    }
    let Some(df) =
        crate::etl::frame::read_files(std::slice::from_ref(&path)).map_err(|e| bad(&e))?
    else {
        return Ok(None);
    };
    let columns = crate::etl::frame::Columns::new(&df, path.display().to_string());
    let devices = columns.str("device_id").map_err(|e| bad(&e))?;
    let patients = columns.str("patient_id").map_err(|e| bad(&e))?;
    let wanted = device.to_string();
    let mut found = None;
    for (d, p) in devices.iter().zip(patients.iter()) {
        if d == Some(wanted.as_str()) {
            found = p.and_then(|p| Uuid::try_parse(p).ok());
        }
    }
    Ok(found)
}

/// 32 bytes from the operating system's generator.
pub fn os_random() -> Result<[u8; 32], CredentialError> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(CredentialError::Random)?;
    Ok(bytes)
}

fn file_error(path: &Path, message: impl ToString) -> CredentialError {
    CredentialError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn decode32(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok()?.try_into().ok()
}

fn load_file(path: &Path) -> Result<HashMap<Uuid, DeviceCredential>, CredentialError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(file_error(path, e)),
    };
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| file_error(path, format!("line {}: {why}", i + 1));
        let l: FileLine = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let (Some(token_sha256), Some(signing_key)) =
            (decode32(&l.token_sha256), decode32(&l.signing_key))
        else {
            return Err(bad("token_sha256 and signing_key must be 64 hex digits"));
        };
        out.insert(
            l.device_id,
            DeviceCredential {
                device_id: l.device_id,
                patient_id: l.patient_id,
                token_sha256,
                signing_key,
            },
        );
    }
    Ok(out)
}

fn append_file(path: &Path, c: &DeviceCredential, issued_at: &str) -> Result<(), CredentialError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| file_error(path, e))?;
    }
    let line = serde_json::to_string(&FileLine {
        device_id: c.device_id,
        patient_id: c.patient_id,
        token_sha256: hex::encode(c.token_sha256),
        signing_key: hex::encode(c.signing_key),
        issued_at: issued_at.to_string(),
    })
    .map_err(|e| file_error(path, e))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| file_error(path, e))?;
    writeln!(file, "{line}")
        .and_then(|_| file.sync_all())
        .map_err(|e| file_error(path, e))
}

fn load_db(url: &str) -> Result<HashMap<Uuid, DeviceCredential>, CredentialError> {
    let mut client = crate::db::connect(url)?;
    let rows = client
        .query(
            "SELECT c.device_id, a.patient_id, c.token_sha256, c.signing_key \
             FROM device_credentials c \
             JOIN device_assignments a ON a.device_id = c.device_id \
              AND a.assigned_from <= now() AND (a.assigned_to IS NULL OR a.assigned_to > now()) \
             WHERE c.revoked_at IS NULL",
            &[],
        )
        .map_err(crate::db::query_error("reading device_credentials"))?;
    let mut out = HashMap::new();
    for row in rows {
        let token: Vec<u8> = row.get(2);
        let key: Vec<u8> = row.get(3);
        let (Ok(token_sha256), Ok(signing_key)) = (token.try_into(), key.try_into()) else {
            continue; // the table's CHECKs make this unreachable
        };
        let device_id: Uuid = row.get(0);
        out.insert(
            device_id,
            DeviceCredential {
                device_id,
                patient_id: row.get(1),
                token_sha256,
                signing_key,
            },
        );
    }
    Ok(out)
}

fn save_db(url: &str, c: &DeviceCredential) -> Result<(), CredentialError> {
    let mut client = crate::db::connect(url)?;
    client
        .execute(
            "INSERT INTO device_credentials (device_id, token_sha256, signing_key) \
             VALUES ($1, $2, $3) \
             ON CONFLICT (device_id) DO UPDATE SET token_sha256 = excluded.token_sha256, \
               signing_key = excluded.signing_key, issued_at = now(), revoked_at = NULL",
            &[
                &c.device_id,
                &c.token_sha256.as_slice(),
                &c.signing_key.as_slice(),
            ],
        )
        .map_err(crate::db::query_error("storing the device credential"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::auth::issue;

    #[test]
    fn a_reissued_token_replaces_the_old_one_in_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CredentialStore::File(dir.path().join("sub/credentials.jsonl"));
        let d = Uuid::from_u128(1);
        let first = issue(d, Uuid::from_u128(2), [1; 32]).credential;
        let second = issue(d, Uuid::from_u128(2), [2; 32]).credential;
        store.save(&first, "t1").expect("save");
        store.save(&second, "t2").expect("save");
        let loaded = store.load().expect("load");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[&d], second);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("sub/credentials.jsonl"))
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
