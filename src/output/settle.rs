//! Settling a large file that is still being written: syncing what was written so far and
//! telling the kernel those pages will not be read again, on a thread of its own.
//!
//! Why a thread: a multi-gigabyte file left to the page cache makes the kernel spend as much
//! time reclaiming it as we spend formatting; syncing it inline stops the writer while the disk
//! works (a 2.8 GB JSONL file: the disk busy ~4 s, the cores idle meanwhile). Here the disk
//! writes one window while the writer fills the next.

use std::fs::File;
use std::io;
use std::num::NonZeroU64;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Syncs and drops a file's pages up to the offsets it is asked for, in order.
pub struct BackgroundSettle {
    requests: Option<mpsc::SyncSender<u64>>,
    worker: Option<JoinHandle<io::Result<()>>>,
}

impl BackgroundSettle {
    /// `file` is a second handle (`try_clone`) of the file being written.
    pub fn start(file: File) -> io::Result<Self> {
        // One request may wait while another runs: the writer is then at most about two
        // windows ahead of the disk, and waits (back-pressure) rather than filling the cache.
        let (requests, received) = mpsc::sync_channel::<u64>(1);
        let worker = std::thread::Builder::new().name("settle".into()).spawn(
            move || -> io::Result<()> {
                let mut settled = 0u64;
                while let Ok(upto) = received.recv() {
                    file.sync_data()?;
                    if let Some(len) = NonZeroU64::new(upto.saturating_sub(settled)) {
                        rustix::fs::fadvise(
                            &file,
                            settled,
                            Some(len),
                            rustix::fs::Advice::DontNeed,
                        )?;
                    }
                    settled = settled.max(upto);
                }
                Ok(())
            },
        )?;
        Ok(BackgroundSettle {
            requests: Some(requests),
            worker: Some(worker),
        })
    }

    /// Asks for the bytes before `upto` (already handed to the kernel) to be settled. Waits
    /// while an earlier request is still queued. An error of an earlier settle shows here.
    pub fn request(&mut self, upto: u64) -> io::Result<()> {
        let sent = match &self.requests {
            Some(requests) => requests.send(upto).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            // The worker stopped: only an error stops it before `finish`.
            self.stop()?;
            Err(io::Error::other("the settling thread stopped"))
        }
    }

    /// Waits for every request to be done; reports the first error.
    pub fn finish(mut self) -> io::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<()> {
        self.requests = None; // the worker's `recv` fails once the queue is drained
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the settling thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for BackgroundSettle {
    fn drop(&mut self) {
        // Dropped on an error path: let the worker finish its queue on its own.
        self.requests = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn settles_while_the_file_grows_and_reports_done() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut file = File::create(&path).expect("create");
        let mut settle = BackgroundSettle::start(file.try_clone().expect("clone")).expect("start");
        let chunk = vec![3u8; 1 << 20];
        for i in 1..=8u64 {
            file.write_all(&chunk).expect("write");
            settle.request(i << 20).expect("request");
        }
        settle.finish().expect("finish");
        assert_eq!(std::fs::read(&path).expect("read"), chunk.repeat(8));
    }
}
