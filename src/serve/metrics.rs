//! Counters of `kidjamo serve`, rendered in the Prometheus text format at `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the request-latency histogram.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Default)]
pub struct ServeMetrics {
    /// (route, status) → requests.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    pub records_accepted: AtomicU64,
    /// Reason code → records rejected.
    rejected: Mutex<BTreeMap<String, u64>>,
    /// Per-bucket counts (not cumulative; rendered cumulatively).
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
}

impl ServeMetrics {
    pub fn request(&self, route: &'static str, status: u16, seconds: f64) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route, status)).or_insert(0) += 1;
        }
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self, code: &str) {
        if let Ok(mut m) = self.rejected.lock() {
            match m.get_mut(code) {
                Some(n) => *n += 1,
                None => {
                    m.insert(code.to_string(), 1);
                }
            }
        }
    }

    /// The Prometheus text exposition; `queue_depth` is the producer's unacknowledged records.
    pub fn render(&self, queue_depth: i32) -> String {
        let mut out = String::new();
        out.push_str("# HELP kidjamo_serve_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE kidjamo_serve_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "kidjamo_serve_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let _ = write!(
            out,
            "# HELP kidjamo_serve_records_accepted_total Records acknowledged by the broker.\n\
             # TYPE kidjamo_serve_records_accepted_total counter\n\
             kidjamo_serve_records_accepted_total {}\n",
            self.records_accepted.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP kidjamo_serve_records_rejected_total Records rejected, by reason code.\n",
        );
        out.push_str("# TYPE kidjamo_serve_records_rejected_total counter\n");
        if let Ok(m) = self.rejected.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "kidjamo_serve_records_rejected_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP kidjamo_serve_request_duration_seconds Time from request to response.\n",
        );
        out.push_str("# TYPE kidjamo_serve_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "kidjamo_serve_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "kidjamo_serve_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             kidjamo_serve_request_duration_seconds_sum {}\n\
             kidjamo_serve_request_duration_seconds_count {count}\n",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = write!(
            out,
            "# HELP kidjamo_serve_producer_queue_depth Records handed to the producer and not yet acknowledged.\n\
             # TYPE kidjamo_serve_producer_queue_depth gauge\n\
             kidjamo_serve_producer_queue_depth {queue_depth}\n"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_reconcile() {
        let m = ServeMetrics::default();
        m.request("measurements", 202, 0.0015);
        m.request("measurements", 202, 0.03);
        m.request("measurements", 400, 9.0);
        m.rejected("out_of_range");
        let text = m.render(3);
        assert!(
            text.contains("kidjamo_serve_requests_total{route=\"measurements\",status=\"202\"} 2")
        );
        assert!(text.contains("kidjamo_serve_request_duration_seconds_bucket{le=\"0.002\"} 1"));
        assert!(text.contains("kidjamo_serve_request_duration_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("kidjamo_serve_request_duration_seconds_bucket{le=\"5\"} 2"));
        assert!(text.contains("kidjamo_serve_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("kidjamo_serve_records_rejected_total{reason=\"out_of_range\"} 1"));
        assert!(text.contains("kidjamo_serve_producer_queue_depth 3"));
    }
}
