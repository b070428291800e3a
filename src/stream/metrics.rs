//! Operational counters of `kidjamo stream`, served in the Prometheus text format
//! (`--metrics-addr`), and the one-line status the terminal shows.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Upper bounds (seconds) of the flush-latency histogram.
const FLUSH_BUCKETS: [f64; 8] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Default)]
pub struct Metrics {
    pub consumed: AtomicU64,
    pub written: AtomicU64,
    pub quarantined: AtomicU64,
    /// Records below a partition's checkpoint (already durable before a restart).
    pub skipped_durable: AtomicU64,
    pub stale: AtomicU64,
    pub batches: AtomicU64,
    pub consumer_lag: AtomicI64,
    pub open_alerts: AtomicI64,
    pub alert_delivery_failures: AtomicU64,
    /// (rule, severity) → alerts opened.
    alerts: Mutex<BTreeMap<(String, String), u64>>,
    /// Cumulative counts per bucket, then the sum and the count.
    flush: Mutex<([u64; FLUSH_BUCKETS.len()], f64, u64)>,
}

impl Metrics {
    pub fn alert_opened(&self, rule: &str, severity: &str) {
        if let Ok(mut m) = self.alerts.lock() {
            *m.entry((rule.to_string(), severity.to_string()))
                .or_insert(0) += 1;
        }
    }

    pub fn alerts_opened(&self) -> u64 {
        self.alerts.lock().map(|m| m.values().sum()).unwrap_or(0)
    }

    pub fn observe_flush(&self, seconds: f64) {
        if let Ok(mut h) = self.flush.lock() {
            for (i, bound) in FLUSH_BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    h.0[i] += 1;
                }
            }
            h.1 += seconds;
            h.2 += 1;
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            "kidjamo_stream_records_consumed_total",
            "Records read from Kafka.",
            get(&self.consumed),
        );
        counter(
            "kidjamo_stream_records_written_total",
            "Records written to Bronze.",
            get(&self.written),
        );
        counter(
            "kidjamo_stream_records_quarantined_total",
            "Records written to quarantine.",
            get(&self.quarantined),
        );
        counter(
            "kidjamo_stream_records_skipped_durable_total",
            "Records re-read after a restart that were already in the lake.",
            get(&self.skipped_durable),
        );
        counter(
            "kidjamo_stream_records_stale_total",
            "Valid records older than their patient's newest (stored, not alerted on).",
            get(&self.stale),
        );
        counter(
            "kidjamo_stream_batches_total",
            "Micro-batches flushed.",
            get(&self.batches),
        );
        counter(
            "kidjamo_stream_alert_delivery_failures_total",
            "Alerts the alerts topic did not acknowledge.",
            get(&self.alert_delivery_failures),
        );
        out.push_str("# HELP kidjamo_stream_alerts_total Alerts opened, by rule and severity.\n# TYPE kidjamo_stream_alerts_total counter\n");
        if let Ok(m) = self.alerts.lock() {
            for ((rule, severity), v) in m.iter() {
                out.push_str(&format!(
                    "kidjamo_stream_alerts_total{{rule=\"{rule}\",severity=\"{severity}\"}} {v}\n"
                ));
            }
        }
        for (name, help, v) in [
            (
                "kidjamo_stream_consumer_lag",
                "Records in the assigned partitions not yet read.",
                &self.consumer_lag,
            ),
            (
                "kidjamo_stream_open_alerts",
                "Alerts open in the engine.",
                &self.open_alerts,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}\n",
                v.load(Ordering::Relaxed)
            ));
        }
        out.push_str("# HELP kidjamo_stream_flush_seconds Time to make a micro-batch durable and commit it.\n# TYPE kidjamo_stream_flush_seconds histogram\n");
        if let Ok(h) = self.flush.lock() {
            for (i, bound) in FLUSH_BUCKETS.iter().enumerate() {
                out.push_str(&format!(
                    "kidjamo_stream_flush_seconds_bucket{{le=\"{bound}\"}} {}\n",
                    h.0[i]
                ));
            }
            out.push_str(&format!(
                "kidjamo_stream_flush_seconds_bucket{{le=\"+Inf\"}} {}\nkidjamo_stream_flush_seconds_sum {}\nkidjamo_stream_flush_seconds_count {}\n",
                h.2, h.1, h.2
            ));
        }
        out
    }
}

/// Serves `GET /metrics` on `addr` from a background thread; returns the bound address (port 0
/// picks a free one).
pub fn serve(addr: &str, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let mut request_line = String::new();
                let mut reader = BufReader::new(&stream);
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                // Read the headers to their end so the client sees a clean close.
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                    line.clear();
                }
                let (status, body) = if request_line.starts_with("GET /metrics") {
                    ("200 OK", metrics.render())
                } else {
                    ("404 Not Found", "try GET /metrics\n".to_string())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        })?;
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn metrics_are_served_in_prometheus_text() {
        let m = Arc::new(Metrics::default());
        m.consumed.fetch_add(5, Ordering::Relaxed);
        m.alert_opened("spo2_critical", "critical");
        m.observe_flush(0.03);
        let addr = serve("127.0.0.1:0", m.clone()).expect("serve");
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            .expect("send");
        let mut body = String::new();
        s.read_to_string(&mut body).expect("read");
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(body.contains("kidjamo_stream_records_consumed_total 5\n"));
        assert!(body.contains(
            "kidjamo_stream_alerts_total{rule=\"spo2_critical\",severity=\"critical\"} 1\n"
        ));
        assert!(body.contains("kidjamo_stream_flush_seconds_bucket{le=\"0.05\"} 1\n"));
        assert!(body.contains("kidjamo_stream_flush_seconds_bucket{le=\"0.025\"} 0\n"));
    }
}
