//! Writers of local files: simulated measurements as JSONL or CSV, reference and ground-truth
//! tables as CSV and Parquet, each hashed while it is written, for the run manifest; and
//! syncing a file while it is written (`early_sync`).

pub mod csv;
pub mod decimal_dictionary;
pub mod dictionary_column;
pub mod early_sync;
pub mod lines;
pub mod parquet_groups;
pub mod settle;
pub mod sink;
pub mod tables;
pub mod uuid_column;

pub use sink::{MeasurementSink, SinkReport, WrittenFile};

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot write Parquet file {path}: {message}")]
    Parquet { path: PathBuf, message: String },
    #[error("delivery failed: {0}")]
    Delivery(String),
}

impl OutputError {
    pub fn io(path: &Path, source: io::Error) -> Self {
        OutputError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Large sequential files are synced and dropped from the page cache every this many bytes.
const SETTLE_BYTES: u64 = 256 << 20;

/// A buffered file that counts and hashes what goes through it.
pub struct HashedFile {
    inner: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
    /// Bytes handed to `settler` to be synced to disk and dropped from the page cache.
    settled: u64,
    settle_every: u64,
    /// Started at the first settle (most files never reach one).
    settler: Option<settle::BackgroundSettle>,
    /// Path relative to the output root (what the manifest records).
    pub relative: PathBuf,
    pub absolute: PathBuf,
}

impl HashedFile {
    pub fn create(root: &Path, relative: impl Into<PathBuf>) -> Result<Self, OutputError> {
        let relative = relative.into();
        let absolute = root.join(&relative);
        if let Some(parent) = absolute.parent() {
            std::fs::create_dir_all(parent).map_err(|e| OutputError::io(parent, e))?;
        }
        let file = File::create(&absolute).map_err(|e| OutputError::io(&absolute, e))?;
        Ok(HashedFile {
            inner: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            bytes: 0,
            settled: 0,
            settle_every: SETTLE_BYTES,
            settler: None,
            relative,
            absolute,
        })
    }

    /// Writes the buffers in order while hashing them on another worker: the hash (SHA-256
    /// runs at ~1.5 GB/s) and the kernel's copy into the page cache then overlap.
    pub fn write_all_overlapped(&mut self, buffers: &[Vec<u8>]) -> Result<(), OutputError> {
        let (hasher, inner) = (&mut self.hasher, &mut self.inner);
        let ((), written) = rayon::join(
            || buffers.iter().for_each(|b| hasher.update(b)),
            || buffers.iter().try_for_each(|b| inner.write_all(b)),
        );
        written.map_err(|e| OutputError::io(&self.absolute, e))?;
        self.bytes += buffers.iter().map(|b| b.len() as u64).sum::<u64>();
        if self.bytes - self.settled >= self.settle_every {
            self.settle()
                .map_err(|e| OutputError::io(&self.absolute, e))?;
        }
        Ok(())
    }

    /// Has what was written so far synced and dropped from the page cache, on the settling
    /// thread: a multi-gigabyte file otherwise fills the page cache and the kernel spends more
    /// time reclaiming it than we spend formatting (measured: as much system as user time).
    fn settle(&mut self) -> io::Result<()> {
        self.inner.flush()?;
        let settler = match &mut self.settler {
            Some(s) => s,
            None => self.settler.insert(settle::BackgroundSettle::start(
                self.inner.get_ref().try_clone()?,
            )?),
        };
        settler.request(self.bytes)?;
        self.settled = self.bytes;
        Ok(())
    }

    pub fn finish(mut self, rows: u64) -> Result<WrittenFile, OutputError> {
        self.inner
            .flush()
            .map_err(|e| OutputError::io(&self.absolute, e))?;
        let file = self
            .inner
            .into_inner()
            .map_err(|e| OutputError::io(&self.absolute, e.into_error()))?;
        if let Some(settler) = self.settler.take() {
            settler
                .finish()
                .map_err(|e| OutputError::io(&self.absolute, e))?;
        }
        file.sync_all()
            .map_err(|e| OutputError::io(&self.absolute, e))?;
        Ok(WrittenFile {
            path: self.relative.to_string_lossy().replace('\\', "/"),
            rows,
            bytes: self.bytes,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

impl Write for HashedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A handle to a `HashedFile` that a writer can own (Polars' batched writer never gives its
/// sink back), while the caller keeps the file to read its hash afterwards.
#[derive(Clone)]
pub struct SharedFile(std::sync::Arc<std::sync::Mutex<HashedFile>>);

impl SharedFile {
    pub fn new(file: HashedFile) -> Self {
        SharedFile(std::sync::Arc::new(std::sync::Mutex::new(file)))
    }

    /// The file back, once every other handle has been dropped.
    pub fn into_inner(self) -> Option<HashedFile> {
        std::sync::Arc::try_unwrap(self.0)
            .ok()
            .and_then(|m| m.into_inner().ok())
    }
}

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("file lock poisoned"))?
            .write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("file lock poisoned"))?
            .flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_file_settling_keeps_content_and_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut f = HashedFile::create(dir.path(), "a/b.jsonl").expect("create");
        f.settle_every = 1024;
        let buffers: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b'a' + i; 700]).collect();
        f.write_all_overlapped(&buffers).expect("write");
        f.write_all_overlapped(&buffers).expect("write");
        assert!(f.settled > 0, "settled at least once");
        let written = f.finish(10).expect("finish");
        let content = std::fs::read(dir.path().join("a/b.jsonl")).expect("read");
        let expected: Vec<u8> = buffers.concat().repeat(2);
        assert_eq!(content, expected);
        assert_eq!(written.bytes, expected.len() as u64);
        assert_eq!(written.sha256, hex::encode(Sha256::digest(&expected)));
        assert_eq!(written.path, "a/b.jsonl");
    }
}
