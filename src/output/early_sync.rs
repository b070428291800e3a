//! Syncing a file to disk on another thread while it is still being written, so that the sync
//! that makes it durable at the end finds little left to write: the disk works while the
//! producer (a database export) does. Without it the kernel holds the whole file in the page
//! cache until that last sync (measured: 0.8–1.7 s of a 190 MiB backup's time).

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Bytes written between two requests for a sync.
const NUDGE_EVERY: u64 = 16 << 20;

/// A writer that asks a syncing thread to sync `file` every `NUDGE_EVERY` bytes; requests made
/// while a sync runs are merged into the next one. `finish` stops the thread and reports its
/// error, if any; the caller still syncs at the end. Dropped without `finish`, the thread ends
/// by itself after its current sync.
pub struct EarlySync<W> {
    inner: W,
    unsynced: u64,
    nudge: Option<mpsc::SyncSender<()>>,
    syncer: Option<JoinHandle<io::Result<()>>>,
}

impl<W: Write> EarlySync<W> {
    /// `file` is a second handle (`try_clone`) of the file that `inner` writes to.
    pub fn new(inner: W, file: File) -> io::Result<Self> {
        let (nudge, nudged) = mpsc::sync_channel::<()>(1);
        let syncer = std::thread::Builder::new()
            .name("early-sync".into())
            .spawn(move || -> io::Result<()> {
                while nudged.recv().is_ok() {
                    file.sync_data()?;
                }
                Ok(())
            })?;
        Ok(EarlySync {
            inner,
            unsynced: 0,
            nudge: Some(nudge),
            syncer: Some(syncer),
        })
    }

    /// Stops the syncing thread; the writer goes on without it.
    pub fn finish(mut self) -> io::Result<W> {
        self.stop()?;
        Ok(self.inner)
    }

    fn stop(&mut self) -> io::Result<()> {
        self.nudge = None; // the thread's `recv` fails once its current sync is done
        match self.syncer.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the syncing thread failed")),
            None => Ok(()),
        }
    }
}

impl<W: Write> Write for EarlySync<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= NUDGE_EVERY {
            self.unsynced = 0;
            if let Some(nudge) = &self.nudge {
                // Full means a sync is already asked for: it will take these bytes too.
                let _ = nudge.try_send(());
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_reaches_the_file_and_the_thread_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let file = File::create(&path).expect("create");
        let mut w = EarlySync::new(&file, file.try_clone().expect("clone")).expect("start");
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..40 {
            w.write_all(&chunk).expect("write");
        }
        w.finish().expect("finish");
        assert_eq!(std::fs::metadata(&path).expect("size").len(), 40 << 20);
    }
}
