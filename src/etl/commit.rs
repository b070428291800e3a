//! Atomic partition replacement: a run writes every output into a private staging folder
//! beside the lake, then swaps each partition folder into place with one `renameat2` call
//! (`RENAME_EXCHANGE`), so a reader sees either the previous complete partition or the new one,
//! never a mix. A run that fails or crashes before its commit leaves the lake as it was; the
//! staging folder is removed when the run is dropped (or by the next run with the same id).
//! The manifest goes last: a reader that finds it finds every partition it lists.

use super::EtlError;
use crate::output::{HashedFile, WrittenFile};
use rustix::fs::{renameat_with, RenameFlags, CWD};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct PartitionWriter {
    root: PathBuf,
    staging: PathBuf,
    partitions: BTreeSet<String>,
    files: Vec<WrittenFile>,
    committed: bool,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> EtlError + '_ {
    move |source| EtlError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl PartitionWriter {
    pub fn create(root: &Path, run_id: &str) -> Result<PartitionWriter, EtlError> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        // Inside the lake root: the swap is a rename on one file system.
        let staging = root.join(format!(".kidjamo-staging-{run_id}"));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        std::fs::create_dir_all(&staging).map_err(io(&staging))?;
        Ok(PartitionWriter {
            root: root.to_path_buf(),
            staging,
            partitions: BTreeSet::new(),
            files: Vec::new(),
            committed: false,
        })
    }

    /// Where outputs are written before the commit.
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// Declares `partition` (a folder relative to the root) replaced by this run: after the
    /// commit it holds exactly what the run wrote into it, possibly nothing (an empty day).
    pub fn replace(&mut self, partition: &str) -> Result<(), EtlError> {
        let dir = self.staging.join(partition);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        self.partitions.insert(partition.to_string());
        Ok(())
    }

    /// Records a file written under the staging folder (inside a declared partition).
    pub fn add(&mut self, file: WrittenFile) {
        self.files.push(file);
    }

    pub fn files(&self) -> &[WrittenFile] {
        &self.files
    }

    /// Swaps every partition into place, then writes the manifest at `manifest_path`.
    pub fn commit(mut self, manifest_path: &str, manifest: &[u8]) -> Result<WrittenFile, EtlError> {
        for partition in &self.partitions {
            let new = self.staging.join(partition);
            let live = self.root.join(partition);
            if live.exists() {
                renameat_with(CWD, &new, CWD, &live, RenameFlags::EXCHANGE).map_err(|e| {
                    EtlError::Io {
                        path: live.clone(),
                        source: e.into(),
                    }
                })?;
                // `new` now holds the previous content.
                std::fs::remove_dir_all(&new).map_err(io(&new))?;
            } else {
                if let Some(parent) = live.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                }
                std::fs::rename(&new, &live).map_err(io(&live))?;
            }
        }
        let mut file = HashedFile::create(&self.staging, manifest_path)?;
        file.write_all(manifest).map_err(io(&self.staging))?;
        let written = file.finish(0)?;
        let (from, to) = (
            self.staging.join(manifest_path),
            self.root.join(manifest_path),
        );
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::rename(&from, &to).map_err(io(&to))?;
        self.committed = true;
        std::fs::remove_dir_all(&self.staging).map_err(io(&self.staging))?;
        Ok(written)
    }
}

impl Drop for PartitionWriter {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: nothing of a failed run stays behind.
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::write(dir.join(name), text).expect("write");
    }

    #[test]
    fn a_commit_replaces_exactly_the_declared_partitions() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        write(
            &root.join("gold/t/event_date=2026-03-01"),
            "old.parquet",
            "old",
        );
        write(
            &root.join("gold/t/event_date=2026-03-02"),
            "keep.parquet",
            "keep",
        );
        let mut w = PartitionWriter::create(root, "r1").expect("writer");
        w.replace("gold/t/event_date=2026-03-01").expect("replace");
        w.replace("gold/t/event_date=2026-03-03").expect("replace");
        write(
            &w.staging().join("gold/t/event_date=2026-03-01"),
            "new.parquet",
            "new",
        );
        w.commit("_runs/r1.json", b"{}").expect("commit");
        let names = |d: &str| {
            let mut v: Vec<String> = std::fs::read_dir(root.join(d))
                .expect("read")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names("gold/t/event_date=2026-03-01"), ["new.parquet"]);
        assert_eq!(names("gold/t/event_date=2026-03-02"), ["keep.parquet"]);
        assert!(names("gold/t/event_date=2026-03-03").is_empty());
        assert!(root.join("_runs/r1.json").exists());
        assert!(!root.join(".kidjamo-staging-r1").exists());
    }

    #[test]
    fn a_run_dropped_before_its_commit_changes_nothing() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        write(
            &root.join("silver/event_date=2026-03-01"),
            "old.parquet",
            "old",
        );
        {
            let mut w = PartitionWriter::create(root, "r2").expect("writer");
            w.replace("silver/event_date=2026-03-01").expect("replace");
            write(
                &w.staging().join("silver/event_date=2026-03-01"),
                "half.parquet",
                "x",
            );
        }
        let old = root.join("silver/event_date=2026-03-01/old.parquet");
        assert_eq!(std::fs::read_to_string(old).expect("old"), "old");
        assert!(!root.join(".kidjamo-staging-r2").exists());
    }
}
