//! Where a run's output lands. Everything is first written into a private staging folder; only
//! a complete run is committed (renamed into a local lake, or uploaded to an object store with
//! the manifest last), so a failed run leaves nothing half-written behind.

use crate::output::WrittenFile;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0:?} is not a usable output location: {1}")]
    BadLocation(String, String),
    #[error("output directory {0} is not empty; choose an empty one or pass --overwrite to replace kidjamo's folders in it")]
    NotEmpty(PathBuf),
    #[error("cannot write to {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot upload to {url}: {message}")]
    Upload { url: String, message: String },
    #[error("{url}: {message}")]
    Remote { url: String, message: String },
}

pub(crate) fn io(path: &Path, source: std::io::Error) -> StorageError {
    StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An output location as the user wrote it.
#[derive(Debug, Clone)]
pub enum Destination {
    Local(PathBuf),
    /// `file://` or `s3://` through `object_store`.
    Remote {
        url: String,
        store: Arc<dyn ObjectStore>,
        prefix: ObjectPath,
    },
}

impl Destination {
    /// A plain path is local; `scheme://` goes through `object_store`, configured from
    /// `options` (for S3, the standard `AWS_*` settings the config module collects).
    pub fn parse(text: &str, options: &[(String, String)]) -> Result<Destination, StorageError> {
        if !text.contains("://") {
            return Ok(Destination::Local(PathBuf::from(text)));
        }
        let url = Url::parse(text)
            .map_err(|e| StorageError::BadLocation(text.to_string(), e.to_string()))?;
        let (store, prefix) = object_store::parse_url_opts(&url, options.iter().cloned())
            .map_err(|e| StorageError::BadLocation(text.to_string(), e.to_string()))?;
        Ok(Destination::Remote {
            url: text.to_string(),
            store: Arc::from(store),
            prefix,
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Destination::Local(p) => p.display().to_string(),
            Destination::Remote { url, .. } => url.clone(),
        }
    }
}

/// The private folder a run writes into before it commits.
pub struct Staging {
    dir: PathBuf,
    destination: Destination,
    committed: bool,
}

impl Staging {
    /// `tag` names the staging folder (the run id). `owned` are the top-level folders of the
    /// destination this kind of run may replace with `overwrite`.
    pub fn create(
        destination: Destination,
        tag: &str,
        overwrite: bool,
        owned: &[&str],
    ) -> Result<Staging, StorageError> {
        let dir = match &destination {
            Destination::Local(root) => {
                if root.exists() && !overwrite && !is_empty_dir(root)? {
                    return Err(StorageError::NotEmpty(root.clone()));
                }
                std::fs::create_dir_all(root).map_err(|e| io(root, e))?;
                if overwrite {
                    for folder in owned {
                        let p = root.join(folder);
                        if p.exists() {
                            std::fs::remove_dir_all(&p).map_err(|e| io(&p, e))?;
                        }
                    }
                }
                // Inside the destination, so that committing is a rename on the same disk.
                root.join(format!(".kidjamo-staging-{tag}"))
            }
            Destination::Remote { .. } => {
                std::env::temp_dir().join(format!("kidjamo-staging-{tag}-{}", std::process::id()))
            }
        };
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        Ok(Staging {
            dir,
            destination,
            committed: false,
        })
    }

    pub fn root(&self) -> &Path {
        &self.dir
    }

    /// Moves the files into the destination. `last` (the manifest) goes after all others, so
    /// a reader that sees a manifest sees every file it lists.
    pub fn commit(mut self, files: &[WrittenFile], last: &str) -> Result<(), StorageError> {
        let mut ordered: Vec<&str> = files
            .iter()
            .map(|f| f.path.as_str())
            .filter(|p| *p != last)
            .collect();
        ordered.push(last);
        match &self.destination {
            Destination::Local(root) => {
                for rel in ordered {
                    let (from, to) = (self.dir.join(rel), root.join(rel));
                    if let Some(parent) = to.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
                    }
                    std::fs::rename(&from, &to).map_err(|e| io(&to, e))?;
                }
            }
            Destination::Remote { url, store, prefix } => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StorageError::Upload {
                        url: url.clone(),
                        message: e.to_string(),
                    })?;
                runtime.block_on(upload_all(store.as_ref(), prefix, &self.dir, &ordered, url))?;
            }
        }
        self.committed = true;
        std::fs::remove_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a failed run must not leave partial files behind.
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn is_empty_dir(path: &Path) -> Result<bool, StorageError> {
    if !path.is_dir() {
        return Err(StorageError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("exists and is not a directory"),
        });
    }
    let mut entries = std::fs::read_dir(path).map_err(|e| io(path, e))?;
    Ok(entries.next().is_none())
}

async fn upload_all(
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    dir: &Path,
    files: &[&str],
    url: &str,
) -> Result<(), StorageError> {
    let fail = |e: String| StorageError::Upload {
        url: url.to_string(),
        message: e,
    };
    let mut done: Vec<ObjectPath> = Vec::new();
    for rel in files {
        let target = rel
            .split('/')
            .fold(prefix.clone(), |p, part| p.clone().join(part));
        let result = upload_file(store, &target, &dir.join(rel)).await;
        if let Err(e) = result {
            // Take back what this run already uploaded, so that no partial run is visible.
            for p in &done {
                let _ = store.delete(p).await;
            }
            return Err(fail(format!("{rel}: {e}")));
        }
        done.push(target);
    }
    Ok(())
}

/// Uploads one local file (in 8 MiB parts, at most 4 in flight).
pub(crate) async fn upload_file(
    store: &dyn ObjectStore,
    target: &ObjectPath,
    file: &Path,
) -> Result<(), String> {
    let mut f = std::fs::File::open(file).map_err(|e| e.to_string())?;
    let upload = store
        .put_multipart(target)
        .await
        .map_err(|e| e.to_string())?;
    let mut writer = WriteMultipart::new(upload);
    let mut buf = vec![0u8; 8 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        writer
            .wait_for_capacity(4)
            .await
            .map_err(|e| e.to_string())?;
        writer.write(&buf[..n]);
    }
    writer.finish().await.map_err(|e| e.to_string())?;
    Ok(())
}
