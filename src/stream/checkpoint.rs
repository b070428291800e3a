//! The stream's checkpoint, one file per topic partition: the next offset to read and the
//! alert engine's state for the patients of that partition (a patient's records all land in
//! one partition, keyed by patient id). Written after the micro-batch's files are durable and
//! before the offsets are committed to Kafka, so a restart — or another group member taking
//! the partition over — resumes with state and position that match.

use super::StreamError;
use crate::domain::alerts::EngineState;
use crate::domain::time::UtcMillis;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionCheckpoint {
    pub topic: String,
    pub partition: i32,
    /// Records before this offset are in Bronze (or quarantine) and in `engine`.
    pub next_offset: i64,
    pub watermark: Option<UtcMillis>,
    pub engine: EngineState,
    /// The last record before `next_offset` (absent in checkpoints of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_record: Option<RecordMark>,
}

/// A record's offset and a digest of its payload. A topic deleted and created again numbers
/// its records from 0 afresh: once it has grown past the checkpoint, only the content found at
/// the checkpoint's last offset tells the new incarnation from the old one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordMark {
    pub offset: i64,
    /// SHA-256 of the payload, first 16 bytes in hex (a fingerprint, not a secret).
    pub payload_digest: String,
}

impl RecordMark {
    pub fn of(offset: i64, payload: &[u8]) -> RecordMark {
        use sha2::{Digest, Sha256};
        RecordMark {
            offset,
            payload_digest: hex::encode(&Sha256::digest(payload)[..16]),
        }
    }
}

/// `_state/stream/<group>/<topic>/partition=<p>.json` under the lake root.
pub fn path(root: &Path, group: &str, topic: &str, partition: i32) -> PathBuf {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    root.join("_state/stream")
        .join(safe(group))
        .join(safe(topic))
        .join(format!("partition={partition}.json"))
}

fn err(path: &Path, message: impl std::fmt::Display) -> StreamError {
    StreamError::Checkpoint {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

pub fn load(
    root: &Path,
    group: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<PartitionCheckpoint>, StreamError> {
    let p = path(root, group, topic, partition);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            err(
                &p,
                format!("unreadable ({e}); move it aside to start this partition afresh"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(&p, e)),
    }
}

/// Writes the checkpoint atomically and durably: a temporary file, synced, renamed over the
/// old one, then the folder synced.
pub fn store(root: &Path, group: &str, cp: &PartitionCheckpoint) -> Result<(), StreamError> {
    let p = path(root, group, &cp.topic, cp.partition);
    let dir = p.parent().unwrap_or(root);
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let tmp = p.with_extension(format!("json.tmp-{}", std::process::id()));
    let bytes = serde_json::to_vec(cp).map_err(|e| err(&p, e))?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| err(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| err(&tmp, e))?;
    f.sync_all().map_err(|e| err(&tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| err(&p, e))?;
    sync_dir(dir).map_err(|e| err(dir, e))
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_corruption_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path(), "g", "t", 0).expect("none"), None);
        let cp = PartitionCheckpoint {
            topic: "kidjamo.measurements".into(),
            partition: 3,
            next_offset: 42,
            watermark: Some(UtcMillis(7)),
            engine: EngineState::default(),
            last_record: Some(RecordMark::of(41, b"{}")),
        };
        store(dir.path(), "my group", &cp).expect("store");
        let p = path(dir.path(), "my group", "kidjamo.measurements", 3);
        assert!(p.ends_with("_state/stream/my_group/kidjamo.measurements/partition=3.json"));
        assert_eq!(
            load(dir.path(), "my group", "kidjamo.measurements", 3).expect("load"),
            Some(cp)
        );
        // A checkpoint of an earlier version, without the last record's mark, still loads.
        let mut old: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("json");
        old.as_object_mut().expect("object").remove("last_record");
        std::fs::write(&p, old.to_string()).expect("old checkpoint");
        let loaded = load(dir.path(), "my group", "kidjamo.measurements", 3).expect("old");
        assert_eq!(loaded.map(|c| c.last_record), Some(None));
        assert_ne!(RecordMark::of(41, b"{}"), RecordMark::of(41, b"{ }"));
        std::fs::write(&p, b"{").expect("corrupt");
        let e = load(dir.path(), "my group", "kidjamo.measurements", 3).expect_err("corrupt");
        assert!(e.to_string().contains("partition=3.json"), "{e}");
    }
}
