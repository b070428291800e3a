//! How fast `replay` sends: as fast as it can, at N× event time, or at a fixed rate.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    AsFastAsPossible,
    /// Event-time pacing: one second of `recorded_at` takes 1/N s.
    Speed(f64),
    /// Records per second.
    Rate(f64),
}

/// Tells each record when it is due, and how far behind schedule the sender is.
pub struct Pacer {
    pace: Pace,
    started: Instant,
    first_event_ms: Option<i64>,
    sent: u64,
    /// How late the last paced record went out.
    pub behind: Duration,
}

impl Pacer {
    pub fn new(pace: Pace) -> Pacer {
        Pacer {
            pace,
            started: Instant::now(),
            first_event_ms: None,
            sent: 0,
            behind: Duration::ZERO,
        }
    }

    /// When the next record (with event time `event_ms`, if known) is due; None: now.
    pub fn due(&mut self, event_ms: Option<i64>) -> Option<Instant> {
        self.sent += 1;
        match self.pace {
            Pace::AsFastAsPossible => None,
            Pace::Rate(r) => {
                Some(self.started + Duration::from_secs_f64((self.sent - 1) as f64 / r))
            }
            Pace::Speed(n) => {
                let t = event_ms?;
                let first = *self.first_event_ms.get_or_insert(t);
                // A late record (event time before the first) is due at once.
                let offset_ms = (t - first).max(0) as f64 / n;
                Some(self.started + Duration::from_secs_f64(offset_ms / 1000.0))
            }
        }
    }

    /// Sleeps until the record is due; records how late it is when it is already past.
    pub fn wait(&mut self, event_ms: Option<i64>) {
        let Some(due) = self.due(event_ms) else {
            return;
        };
        let now = Instant::now();
        match due.checked_duration_since(now) {
            // Sleeping for less than a millisecond costs more than it paces.
            Some(wait) if wait >= Duration::from_millis(1) => {
                std::thread::sleep(wait);
                self.behind = Duration::ZERO;
            }
            Some(_) => self.behind = Duration::ZERO,
            None => self.behind = now - due,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_maps_event_time_to_wall_time() {
        let mut p = Pacer::new(Pace::Speed(60.0));
        let start = p.started;
        assert_eq!(p.due(Some(1_000_000)), Some(start));
        // One event-time minute at 60× is one wall second.
        assert_eq!(p.due(Some(1_060_000)), Some(start + Duration::from_secs(1)));
        assert_eq!(p.due(Some(0)), Some(start), "late records are due at once");
        assert_eq!(p.due(None), None, "no event time: no wait");
    }

    #[test]
    fn rate_spaces_records_evenly() {
        let mut p = Pacer::new(Pace::Rate(4.0));
        let start = p.started;
        let dues: Vec<_> = (0..3).map(|_| p.due(None)).collect();
        assert_eq!(
            dues,
            vec![
                Some(start),
                Some(start + Duration::from_millis(250)),
                Some(start + Duration::from_millis(500))
            ]
        );
        assert_eq!(Pacer::new(Pace::AsFastAsPossible).due(Some(5)), None);
    }
}
