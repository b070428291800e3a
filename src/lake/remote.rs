//! A lake on an object store (`s3://bucket/prefix`, `file://…`), worked on through a local
//! mirror. A batch run downloads what it reads (the prefixes its job declares) into a private
//! folder, runs there exactly as on a local lake, and publishes back what changed:
//!
//! - nothing is written to the store before the run has completed locally, so a run that
//!   fails or is killed while computing leaves the store as it was;
//! - publishing goes partition by partition: the partition's new files are uploaded, then the
//!   files it no longer has are deleted; the run's manifests (`_runs/`) go last, so a manifest
//!   in the store means every partition it lists is there.
//!
//! An object store has no rename: between the upload of a partition's new file and the deletion
//! of the old one, a reader listing that partition sees both (Silver removes duplicates by
//! `message_id`; Gold readers should wait for the manifest). A run killed while publishing
//! leaves some partitions new and the others old, and no manifest: run it again.

use crate::storage::{io, upload_file, Destination, StorageError};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Downloads in flight at once.
const TRANSFERS: usize = 8;

/// What a file looked like when it was downloaded: a file the run rewrote differs in one.
type Stamp = (u64, Option<SystemTime>);

pub struct Mirror {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    fetched: BTreeMap<String, Stamp>,
}

/// What `publish` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    pub uploaded: usize,
    pub deleted: usize,
}

impl Mirror {
    /// Downloads every object under each of `prefixes` (lake-relative folders, such as
    /// `bronze/measurements/event_date=2026-03-02`) into a fresh local folder.
    pub fn open(
        url: &str,
        options: &[(String, String)],
        prefixes: &[String],
    ) -> Result<Mirror, StorageError> {
        let Destination::Remote { store, prefix, .. } = Destination::parse(url, options)? else {
            return Err(StorageError::BadLocation(
                url.to_string(),
                "not an object-store URL (scheme://…)".into(),
            ));
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(url, e))?;
        let dir = tempfile::Builder::new()
            .prefix("kidjamo-lake-mirror-")
            .tempdir()
            .map_err(|e| fail(url, e))?;
        let mut mirror = Mirror {
            url: url.to_string(),
            store,
            prefix,
            runtime,
            dir,
            fetched: BTreeMap::new(),
        };
        for p in prefixes {
            mirror.download(p)?;
        }
        Ok(mirror)
    }

    /// The local folder to run the job in.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Files downloaded.
    pub fn fetched(&self) -> usize {
        self.fetched.len()
    }

    fn object(&self, relative: &str) -> ObjectPath {
        relative
            .split('/')
            .filter(|s| !s.is_empty())
            .fold(self.prefix.clone(), |p, part| p.clone().join(part))
    }

    fn download(&mut self, relative_prefix: &str) -> Result<(), StorageError> {
        let base = self.prefix.clone();
        let mut folders = vec![self.object(relative_prefix)];
        let mut objects: Vec<(ObjectPath, String)> = Vec::new();
        while let Some(folder) = folders.pop() {
            let listing = self
                .runtime
                .block_on(self.store.list_with_delimiter(Some(&folder)))
                .map_err(|e| fail(&self.url, format!("cannot list {folder}: {e}")))?;
            folders.extend(listing.common_prefixes);
            for meta in listing.objects {
                let Some(parts) = meta.location.prefix_match(&base) else {
                    continue;
                };
                let relative: Vec<String> = parts.map(|p| p.as_ref().to_string()).collect();
                objects.push((meta.location, relative.join("/")));
            }
        }
        // A few transfers at once: an object store answers each request with some latency.
        let mut pending = objects.into_iter();
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < TRANSFERS {
                let Some((location, relative)) = pending.next() else {
                    break;
                };
                let store = self.store.clone();
                // The tasks run while `join_next` below is driven by the runtime.
                running.spawn_on(
                    async move {
                        let got = async { store.get(&location).await?.bytes().await }.await;
                        (relative, got)
                    },
                    self.runtime.handle(),
                );
            }
            let Some(done) = self.runtime.block_on(running.join_next()) else {
                break;
            };
            let (relative, got) = done.map_err(|e| fail(&self.url, e))?;
            let bytes =
                got.map_err(|e| fail(&self.url, format!("cannot download {relative}: {e}")))?;
            let target = self.dir.path().join(&relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            }
            std::fs::write(&target, &bytes).map_err(|e| io(&target, e))?;
            let stamp = stamp(&target)?;
            self.fetched.insert(relative, stamp);
        }
        Ok(())
    }

    /// Uploads what the run wrote and deletes what it replaced (see the module notes for the
    /// order). Consumes the mirror: its folder is removed afterwards.
    pub fn publish(self) -> Result<Published, StorageError> {
        let mut present = BTreeMap::new();
        walk(self.dir.path(), self.dir.path(), &mut present)?;
        // Per folder: files to upload (new or rewritten) and to delete (gone).
        let mut folders: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
        let folder_of = |rel: &str| rel.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        for (rel, st) in &present {
            if self.fetched.get(rel) != Some(st) {
                folders
                    .entry(folder_of(rel))
                    .or_default()
                    .0
                    .push(rel.clone());
            }
        }
        let gone: BTreeSet<&String> = self
            .fetched
            .keys()
            .filter(|rel| !present.contains_key(*rel))
            .collect();
        for rel in gone {
            folders
                .entry(folder_of(rel))
                .or_default()
                .1
                .push(rel.clone());
        }
        let runs = crate::lake::layout::RUNS_DIR;
        let (last, first): (Vec<_>, Vec<_>) = folders
            .into_iter()
            .partition(|(folder, _)| folder == runs || folder.starts_with(&format!("{runs}/")));
        let mut done = Published::default();
        for (_, (uploads, deletes)) in first.into_iter().chain(last) {
            for rel in uploads {
                let target = self.object(&rel);
                let file = self.dir.path().join(&rel);
                self.runtime
                    .block_on(upload_file(self.store.as_ref(), &target, &file))
                    .map_err(|e| fail(&self.url, format!("cannot upload {rel}: {e}")))?;
                done.uploaded += 1;
            }
            for rel in deletes {
                let target = self.object(&rel);
                self.runtime
                    .block_on(self.store.delete(&target))
                    .map_err(|e| fail(&self.url, format!("cannot delete {rel}: {e}")))?;
                done.deleted += 1;
            }
        }
        Ok(done)
    }
}

fn fail(url: &str, message: impl std::fmt::Display) -> StorageError {
    StorageError::Remote {
        url: url.to_string(),
        message: message.to_string(),
    }
}

fn stamp(path: &Path) -> Result<Stamp, StorageError> {
    let m = std::fs::metadata(path).map_err(|e| io(path, e))?;
    Ok((m.len(), m.modified().ok()))
}

/// Every file under `dir`, by path relative to `root` with `/` separators. Staging folders
/// of a run (dot-prefixed) are not part of the lake.
fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Stamp>) -> Result<(), StorageError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path: PathBuf = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = entry.file_type().map_err(|e| io(&path, e))?;
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() {
            let relative = path
                .strip_prefix(root)
                .map_err(|e| io(&path, std::io::Error::other(e.to_string())))?
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.insert(relative, stamp(&path)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `file://` goes through the same object-store code as `s3://`.
    #[test]
    fn a_mirror_publishes_new_and_rewritten_files_and_deletes_replaced_ones() {
        let store = tempfile::tempdir().expect("tmp");
        let write = |rel: &str, text: &str| {
            let p = store.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        };
        write(
            "lake/gold/t/event_date=2026-03-01/part-old-0.parquet",
            "old",
        );
        write(
            "lake/gold/t/event_date=2026-03-02/part-keep-0.parquet",
            "keep",
        );
        write(
            "lake/bronze/measurements/event_date=2026-03-01/b.parquet",
            "bronze",
        );
        write("lake/other/x.txt", "not downloaded");
        let url = format!("file://{}/lake", store.path().display());
        let mirror = Mirror::open(
            &url,
            &[],
            &[
                "gold/t".into(),
                "bronze/measurements/event_date=2026-03-01".into(),
            ],
        )
        .expect("mirror");
        assert_eq!(mirror.fetched(), 3);
        let root = mirror.root().to_path_buf();
        assert!(
            !root.join("other/x.txt").exists(),
            "only what the job reads"
        );
        let day1 = root.join("gold/t/event_date=2026-03-01");
        std::fs::remove_file(day1.join("part-old-0.parquet")).expect("replace");
        std::fs::write(day1.join("part-new-0.parquet"), "new").expect("new");
        std::fs::create_dir_all(root.join("_runs")).expect("runs");
        std::fs::write(root.join("_runs/r.json"), "{}").expect("manifest");
        std::fs::write(root.join(".kidjamo-staging-x"), "litter").expect("staging");
        let done = mirror.publish().expect("publish");
        assert_eq!(
            done,
            Published {
                uploaded: 2,
                deleted: 1
            }
        );
        let lake = store.path().join("lake");
        assert!(!lake
            .join("gold/t/event_date=2026-03-01/part-old-0.parquet")
            .exists());
        assert_eq!(
            std::fs::read_to_string(lake.join("gold/t/event_date=2026-03-01/part-new-0.parquet"))
                .expect("uploaded"),
            "new"
        );
        assert!(lake
            .join("gold/t/event_date=2026-03-02/part-keep-0.parquet")
            .exists());
        assert!(lake.join("_runs/r.json").exists());
        assert!(lake.join("other/x.txt").exists(), "untouched");
        assert!(!lake.join(".kidjamo-staging-x").exists());
    }

    #[test]
    fn a_plain_path_is_not_a_mirror() {
        let e = Mirror::open("/tmp/lake", &[], &[]).err().expect("refused");
        assert!(e.to_string().contains("/tmp/lake"), "{e}");
    }
}
