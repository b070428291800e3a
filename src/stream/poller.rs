//! Taking records off the consumer on a thread of its own: librdkafka hands over one record
//! per `poll`, and those calls were a quarter of the stream's time on its main thread; here
//! they overlap with judging, alerting and flushing.
//!
//! Rebalances are served inside `poll`, so they happen on this thread. Each revocation is
//! appended to a log in the consumer's context, and every chunk handed over says how long that
//! log was when the chunk ended: the main loop applies revocations in order with the records.
//! A record `poll` returns is always current (librdkafka discards what was fetched for a
//! partition before it was revoked), but records taken *before* a revocation, of a revoked
//! partition, are not ours any more: they are left out, and the chunk ends at the revocation.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::statistics::{Statistics, Topic};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Records taken per chunk: enough to keep both cores busy judging, few enough that latency
/// stays low at low rates.
pub const CHUNK: usize = 4096;

/// Chunks waiting for the main loop (beyond them, the poller waits: memory stays bounded, at
/// about 50 MiB). Enough to keep taking records through a flush at 200,000 records/s.
const QUEUED_CHUNKS: usize = 32;

/// How long one `poll` waits for a first record before the chunk is handed over empty-handed
/// (it also bounds how long a flush waits for the poll gate).
const FIRST_RECORD_WAIT: Duration = Duration::from_millis(20);

/// A record as it came off the topic.
pub struct Taken {
    pub partition: i32,
    pub offset: i64,
    pub raw: Vec<u8>,
}

/// What librdkafka tells the stream through its callbacks (inside `poll`, on the poller's
/// thread): revocations, and the consumer lag from its statistics.
#[derive(Default)]
pub struct ConsumerNotes {
    /// The measurements topic (statistics cover every topic the client knows).
    topic: String,
    /// Every partition revoked during the run, in order (rebalances are rare: it stays short).
    revoked: Mutex<Vec<i32>>,
    /// Records in the assigned partitions not yet handed to the stream, from the last
    /// statistics (asking the broker for watermarks instead took 50–100 ms per partition).
    lag: AtomicI64,
}

impl ConsumerNotes {
    pub fn new(topic: &str) -> Self {
        ConsumerNotes {
            topic: topic.to_string(),
            ..ConsumerNotes::default()
        }
    }

    /// The lag from librdkafka's last statistics (0 before the first).
    pub fn lag(&self) -> i64 {
        self.lag.load(Ordering::Relaxed)
    }

    fn log(&self) -> MutexGuard<'_, Vec<i32>> {
        // A panic while holding this lock cannot leave the log half-written (push only).
        self.revoked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The length of the revocation log.
    pub fn revocations(&self) -> usize {
        self.log().len()
    }

    /// The partitions revoked at log positions `from..to`.
    pub fn revoked_between(&self, from: usize, to: usize) -> Vec<i32> {
        let log = self.log();
        log.get(from..to.min(log.len()))
            .map(<[i32]>::to_vec)
            .unwrap_or_default()
    }
}

impl ClientContext for ConsumerNotes {
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            self.lag.store(fetch_lag(topic), Ordering::Relaxed);
        }
    }
}

/// Records not yet handed to the application in the partitions being fetched: the high
/// watermark less the application's position (or, before the first record, the last commit).
fn fetch_lag(topic: &Topic) -> i64 {
    topic
        .partitions
        .values()
        .filter(|p| p.partition >= 0 && p.fetch_state == "active" && p.hi_offset >= 0)
        .map(|p| {
            let position = [p.app_offset, p.committed_offset, p.lo_offset, 0]
                .into_iter()
                .find(|o| *o >= 0)
                .unwrap_or(0);
            (p.hi_offset - position).max(0)
        })
        .sum()
}

impl ConsumerContext for ConsumerNotes {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.log()
                .extend(tpl.elements().iter().map(|e| e.partition()));
        }
    }
}

pub type StreamConsumer = BaseConsumer<ConsumerNotes>;

/// What the poller hands to the main loop.
pub struct Polled {
    pub records: Vec<Taken>,
    /// The revocation log's length when the chunk ended: revocations up to there are to be
    /// applied before these records.
    pub revocations: usize,
}

/// The consumer, polled on its own thread.
pub struct Poller {
    /// Held by the poller around its `poll` calls and by a flush around checkpoints and
    /// commits: no rebalance happens while offsets are committed.
    gate: Arc<Mutex<()>>,
    stop: Arc<AtomicBool>,
    /// Time spent inside `poll` (waiting for records or taking them), in nanoseconds.
    polling_nanos: Arc<AtomicU64>,
    chunks: Option<Receiver<Polled>>,
    thread: Option<JoinHandle<()>>,
}

impl Poller {
    pub fn start(consumer: Arc<StreamConsumer>) -> Self {
        let gate = Arc::new(Mutex::new(()));
        let stop = Arc::new(AtomicBool::new(false));
        let polling_nanos = Arc::new(AtomicU64::new(0));
        let (sender, chunks) = sync_channel(QUEUED_CHUNKS);
        let thread = {
            let shared = Shared {
                consumer,
                gate: gate.clone(),
                stop: stop.clone(),
                polling_nanos: polling_nanos.clone(),
            };
            std::thread::Builder::new()
                .name("kidjamo-poll".into())
                .spawn(move || poll_until_stopped(&shared, &sender))
        };
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                // Without a thread the stream cannot run; the main loop sees a closed channel.
                tracing::error!(error = %e, "cannot start the polling thread");
                None
            }
        };
        Poller {
            gate,
            stop,
            polling_nanos,
            chunks: Some(chunks),
            thread,
        }
    }

    /// Seconds spent inside the consumer's `poll` so far.
    pub fn polling_secs(&self) -> f64 {
        self.polling_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// The next chunk, waiting at most `wait`; `Err` once the polling thread has ended.
    pub fn next(&self, wait: Duration) -> Result<Option<Polled>, PollerGone> {
        let Some(chunks) = &self.chunks else {
            return Err(PollerGone);
        };
        match chunks.recv_timeout(wait) {
            Ok(polled) => Ok(Some(polled)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(PollerGone),
        }
    }

    /// The gate the poller holds around its `poll` calls: whoever holds it keeps rebalances
    /// from happening.
    pub fn gate(&self) -> Arc<Mutex<()>> {
        self.gate.clone()
    }

    /// Stops polling and returns the chunks already taken (their records have left the
    /// consumer: dropping them would only mean reading them again after a restart, but the
    /// last flush can still make them durable).
    pub fn stop(mut self) -> Vec<Polled> {
        self.stop.store(true, Ordering::SeqCst);
        let mut left = Vec::new();
        if let Some(chunks) = self.chunks.take() {
            // Receiving until the sender is dropped also frees a poller blocked on a full queue.
            while let Ok(polled) = chunks.recv() {
                left.push(polled);
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        left
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        // An early return of the main loop (an error): the poller ends at its next send.
        self.stop.store(true, Ordering::SeqCst);
        self.chunks.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The polling thread ended (it could not start, or it panicked).
#[derive(Debug)]
pub struct PollerGone;

/// What the polling thread shares with the main loop.
struct Shared {
    consumer: Arc<StreamConsumer>,
    gate: Arc<Mutex<()>>,
    stop: Arc<AtomicBool>,
    polling_nanos: Arc<AtomicU64>,
}

fn poll_until_stopped(shared: &Shared, sender: &SyncSender<Polled>) {
    let mut handed_revocations = shared.consumer.context().revocations();
    while !shared.stop.load(Ordering::SeqCst) {
        let (polled, polling) = {
            let _gate = shared.gate.lock().unwrap_or_else(|e| e.into_inner());
            take_chunk(&shared.consumer)
        };
        shared
            .polling_nanos
            .fetch_add(polling.as_nanos() as u64, Ordering::Relaxed);
        // An empty chunk is only worth a message when it carries revocations.
        if polled.records.is_empty() && polled.revocations == handed_revocations {
            continue;
        }
        handed_revocations = polled.revocations;
        if sender.send(polled).is_err() {
            return;
        }
    }
}

/// Polls up to `CHUNK` records: waits for the first, then takes what has already been
/// fetched; ends early at a revocation. Also returns the time spent inside `poll`.
fn take_chunk(consumer: &StreamConsumer) -> (Polled, Duration) {
    let notes = consumer.context();
    let revocations_before = notes.revocations();
    let mut records: Vec<Taken> = Vec::with_capacity(CHUNK);
    let mut timeout = FIRST_RECORD_WAIT;
    let mut polling = Duration::ZERO;
    let mut revocations = revocations_before;
    while records.len() < CHUNK {
        let waited = Instant::now();
        let polled = consumer.poll(timeout);
        polling += waited.elapsed();
        timeout = Duration::ZERO;
        let now = notes.revocations();
        if now != revocations {
            // Records taken before the revocation, of a revoked partition, are not ours.
            let revoked = notes.revoked_between(revocations, now);
            records.retain(|t| !revoked.contains(&t.partition));
            revocations = now;
        }
        let ends_chunk = revocations != revocations_before;
        match polled {
            None => break,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error (librdkafka retries)");
                break;
            }
            Some(Ok(msg)) => records.push(Taken {
                partition: msg.partition(),
                offset: msg.offset(),
                raw: msg.payload().unwrap_or_default().to_vec(),
            }),
        }
        if ends_chunk {
            break;
        }
    }
    (
        Polled {
            records,
            revocations,
        },
        polling,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_active_partitions_from_the_application_position() {
        use rdkafka::statistics::Partition;
        let part =
            |partition, fetch_state: &str, app_offset, committed_offset, hi_offset| Partition {
                partition,
                fetch_state: fetch_state.into(),
                app_offset,
                committed_offset,
                lo_offset: 0,
                hi_offset,
                ..Partition::default()
            };
        let topic = Topic {
            partitions: [
                part(0, "active", 90, 50, 100),     // 10 not yet read
                part(1, "active", -1001, 30, 40),   // nothing read yet: from the commit, 10
                part(2, "active", -1001, -1001, 7), // nothing read nor committed: 7
                part(3, "stopped", 0, 0, 500),      // not ours any more
                part(-1, "none", -1, -1, -1),       // librdkafka's internal partition
            ]
            .into_iter()
            .map(|p| (p.partition, p))
            .collect(),
            ..Topic::default()
        };
        assert_eq!(fetch_lag(&topic), 27);
    }

    #[test]
    fn the_revocation_log_reads_by_position() {
        let notes = ConsumerNotes::new("t");
        notes.log().extend([3, 1]);
        notes.log().push(3);
        assert_eq!(notes.revocations(), 3);
        assert_eq!(notes.revoked_between(0, 2), vec![3, 1]);
        assert_eq!(notes.revoked_between(1, 3), vec![1, 3]);
        assert_eq!(notes.revoked_between(2, 9), vec![3], "clamped to the log");
        assert!(notes.revoked_between(3, 3).is_empty());
        assert!(notes.revoked_between(5, 9).is_empty(), "past the end");
    }
}
