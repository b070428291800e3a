//! One patient's data in the lake, for backups (`backup patient --with-lake`), erasure
//! (`erase patient --lake`) and restores (`restore patient --lake`).
//!
//! A row belongs to the patient when its `patient_id` is theirs, its `user_id` is their user's,
//! its `patient_key` is their key (Gold; needs the pseudonymisation key), or its `raw_payload`
//! (quarantine) mentions their id; a line of a text file (landing JSONL/CSV, ground truth) when
//! it mentions their id; the alert engine's state files hold them as a key. Run manifests
//! (`_runs/`) and research exports hold no patient id and are left alone.
//!
//! Erasure rewrites each file without the patient's rows (write aside, then rename) and adds
//! the SHA-256 of their id to `_tombstones/patients.json`, which `etl` honours: a late record
//! of an erased patient arriving afterwards is dropped and counted, never brought back.

use crate::etl::frame::read_files;
use crate::etl::keys::PatientKeyer;
use crate::etl::EtlError;
use crate::output::tables::write_parquet;
use polars::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use uuid::Uuid;

pub const TOMBSTONES: &str = "_tombstones/patients.json";

/// The folder of `TOMBSTONES` (what a mirrored lake downloads for it).
pub fn tombstones_dir() -> &'static str {
    TOMBSTONES
        .rsplit_once('/')
        .map_or(TOMBSTONES, |(dir, _)| dir)
}

/// How the patient is named in the lake.
pub struct PatientIds {
    pub patient_id: String,
    pub user_id: Option<String>,
    pub patient_key: Option<String>,
}

/// `sha256:<hex>` of the id text: how erased patients are named (as in the `ERASE` audit row).
pub fn digest(patient: &Uuid) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(patient.to_string().as_bytes()))
    )
}

impl PatientIds {
    /// Finds the patient's user id in `reference/patients.parquet` when there is one.
    pub fn find(
        root: &Path,
        patient: Uuid,
        keyer: Option<&PatientKeyer>,
    ) -> Result<PatientIds, EtlError> {
        let id = patient.to_string();
        let mut user_id = None;
        let reference = root.join("reference/patients.parquet");
        if reference.exists() {
            if let Some(df) = read_files(std::slice::from_ref(&reference))? {
                if let (Ok(p), Ok(u)) = (df.column("patient_id"), df.column("user_id")) {
                    if let (Ok(p), Ok(u)) = (p.str(), u.str()) {
                        user_id = p
                            .iter()
                            .zip(u.iter())
                            .find(|(p, _)| *p == Some(id.as_str()))
                            .and_then(|(_, u)| u.map(str::to_string));
                    }
                }
            }
        }
        Ok(PatientIds {
            patient_id: id,
            user_id,
            patient_key: keyer.map(|k| k.key(&patient)),
        })
    }

    /// How to recognise the patient in the file an archived part came from: the part's own
    /// `patient_key` or `user_id` tells, so a restore needs no key.
    pub fn of_part(patient: &Uuid, part: &Part) -> PatientIds {
        let first = |df: &DataFrame, col: &str| {
            df.column(col)
                .ok()
                .and_then(|c| c.str().ok().and_then(|s| s.get(0).map(str::to_string)))
        };
        let (user_id, patient_key) = match part {
            Part::Rows(df) if df.column("patient_id").is_err() => {
                (first(df, "user_id"), first(df, "patient_key"))
            }
            Part::Rows(df) => (None, first(df, "patient_key")),
            _ => (None, None),
        };
        PatientIds {
            patient_id: patient.to_string(),
            user_id,
            patient_key,
        }
    }

    fn mask(&self, df: &DataFrame) -> Result<BooleanChunked, EtlError> {
        let mut mask = BooleanChunked::full("m".into(), false, df.height());
        let eq = |col: &str, value: &str| -> Option<BooleanChunked> {
            let c = df.column(col).ok()?.str().ok()?;
            Some(c.iter().map(|v| Some(v == Some(value))).collect())
        };
        for (col, value) in [
            ("patient_id", Some(self.patient_id.as_str())),
            ("user_id", self.user_id.as_deref()),
            ("patient_key", self.patient_key.as_deref()),
        ] {
            if let (Some(value), true) = (value, df.column(col).is_ok()) {
                if let Some(m) = eq(col, value) {
                    mask = &mask | &m;
                }
            }
        }
        if let Ok(raw) = df.column("raw_payload").and_then(|c| c.str().cloned()) {
            let m: BooleanChunked = raw
                .iter()
                .map(|v| Some(v.is_some_and(|v| v.contains(&self.patient_id))))
                .collect();
            mask = &mask | &m;
        }
        Ok(mask)
    }
}

/// The lake's files that may hold patient data, sorted.
pub fn candidate_files(root: &Path) -> Result<Vec<PathBuf>, EtlError> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| EtlError::Io {
            path: dir.clone(),
            source,
        })?;
        for e in entries {
            let e = e.map_err(|source| EtlError::Io {
                path: dir.clone(),
                source,
            })?;
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            if rel == "_runs" || rel == "exports" || rel == "_tombstones" {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if [".parquet", ".jsonl", ".csv", ".json"]
                .iter()
                .any(|x| name.ends_with(x))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The patient's part of one file: `Parquet` rows, or text lines.
pub enum Part {
    Rows(DataFrame),
    Lines(Vec<u8>),
    /// The engine state's entry for the patient (JSON).
    State(serde_json::Value),
}

/// What a file holds of the patient, and the file without it.
pub struct Split {
    pub relative: String,
    pub patient: Part,
    pub rest: Part,
}

fn is_state(rel: &str) -> bool {
    rel.starts_with("_state/") && rel.ends_with(".json")
}

/// Splits `path` into the patient's part and the rest; `None` when the file holds nothing of theirs.
pub fn split(root: &Path, path: &Path, ids: &PatientIds) -> Result<Option<Split>, EtlError> {
    let relative = path
        .strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned();
    let name = path.to_string_lossy();
    if name.ends_with(".parquet") {
        let Some(df) = read_files(&[path.to_path_buf()])? else {
            return Ok(None);
        };
        let mask = ids.mask(&df)?;
        if !mask.any() {
            return Ok(None);
        }
        let theirs = df.filter(&mask).map_err(|e| EtlError::input(path, e))?;
        let rest = df.filter(&!&mask).map_err(|e| EtlError::input(path, e))?;
        return Ok(Some(Split {
            relative,
            patient: Part::Rows(theirs),
            rest: Part::Rows(rest),
        }));
    }
    let bytes = std::fs::read(path).map_err(|source| EtlError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if is_state(&relative) {
        let mut v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| EtlError::input(path, e))?;
        let Some(entry) = v
            .get_mut("patients")
            .and_then(|p| p.as_object_mut())
            .and_then(|p| p.remove(&ids.patient_id))
        else {
            return Ok(None);
        };
        return Ok(Some(Split {
            relative,
            patient: Part::State(entry),
            rest: Part::State(v),
        }));
    }
    if !name.ends_with(".jsonl") && !name.ends_with(".csv") {
        return Ok(None);
    }
    let needle = ids.patient_id.as_bytes();
    let (mut theirs, mut rest) = (Vec::new(), Vec::new());
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        if line.windows(needle.len()).any(|w| w == needle) {
            theirs.extend_from_slice(line);
        } else {
            rest.extend_from_slice(line);
        }
    }
    if theirs.is_empty() {
        return Ok(None);
    }
    Ok(Some(Split {
        relative,
        patient: Part::Lines(theirs),
        rest: Part::Lines(rest),
    }))
}

/// Replaces the file at `relative` with `part`, atomically (write aside, rename).
pub fn replace(root: &Path, relative: &str, part: Part) -> Result<(), EtlError> {
    let target = root.join(relative);
    let dir = target.parent().unwrap_or(root).to_path_buf();
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp_name = format!(".{name}.kidjamo-tmp");
    std::fs::create_dir_all(&dir).map_err(|source| EtlError::Io {
        path: dir.clone(),
        source,
    })?;
    match part {
        Part::Rows(df) => {
            write_parquet(&dir, tmp_name.clone(), df)?;
        }
        Part::Lines(bytes) => write_synced(&dir.join(&tmp_name), &bytes)?,
        Part::State(v) => write_synced(
            &dir.join(&tmp_name),
            &serde_json::to_vec(&v).map_err(|e| EtlError::Internal(e.to_string()))?,
        )?,
    }
    std::fs::rename(dir.join(&tmp_name), &target).map_err(|source| EtlError::Io {
        path: target.clone(),
        source,
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), EtlError> {
    use std::io::Write;
    let io = |source| EtlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::create(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Puts the patient's part back into the file at `relative` (merging with what it holds now);
/// nothing happens when the file already holds the patient's rows, so restoring twice is
/// restoring once.
pub fn merge_back(
    root: &Path,
    relative: &str,
    ids: &PatientIds,
    part: Part,
) -> Result<bool, EtlError> {
    let path = root.join(relative);
    if !path.exists() {
        replace(root, relative, part)?;
        return Ok(true);
    }
    if split(root, &path, ids)?.is_some() {
        return Ok(false);
    }
    let merged = match part {
        Part::Rows(theirs) => {
            let mut now = read_files(std::slice::from_ref(&path))?.unwrap_or_default();
            if now.width() == 0 {
                Part::Rows(theirs)
            } else {
                now.vstack_mut_owned(theirs).map_err(|e| {
                    EtlError::input(&path, format!("archived rows do not fit: {e}"))
                })?;
                Part::Rows(now)
            }
        }
        Part::Lines(theirs) => {
            let mut now = std::fs::read(&path).map_err(|source| EtlError::Io {
                path: path.clone(),
                source,
            })?;
            if !now.is_empty() && !now.ends_with(b"\n") {
                now.push(b'\n');
            }
            now.extend_from_slice(&theirs);
            Part::Lines(now)
        }
        Part::State(entry) => {
            let bytes = std::fs::read(&path).map_err(|source| EtlError::Io {
                path: path.clone(),
                source,
            })?;
            let mut v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| EtlError::input(&path, e))?;
            if let Some(p) = v.get_mut("patients").and_then(|p| p.as_object_mut()) {
                p.insert(ids.patient_id.clone(), entry);
            }
            Part::State(v)
        }
    };
    replace(root, relative, merged)?;
    Ok(true)
}

/// Digests of erased patients (`_tombstones/patients.json`).
pub fn tombstones(root: &Path) -> Result<BTreeSet<String>, EtlError> {
    let path = root.join(TOMBSTONES);
    if !path.exists() {
        return Ok(BTreeSet::new());
    }
    let bytes = std::fs::read(&path).map_err(|source| EtlError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| EtlError::input(&path, e))
}

pub fn set_tombstone(root: &Path, patient: &Uuid, present: bool) -> Result<(), EtlError> {
    let mut all = tombstones(root)?;
    let d = digest(patient);
    let changed = if present {
        all.insert(d)
    } else {
        all.remove(&d)
    };
    if changed {
        let bytes =
            serde_json::to_vec_pretty(&all).map_err(|e| EtlError::Internal(e.to_string()))?;
        replace(root, TOMBSTONES, Part::Lines(bytes))?;
    }
    Ok(())
}
