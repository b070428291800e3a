//! The ingestion API against a real broker (tansu) and a real PostgreSQL: records posted arrive
//! on the topic exactly as `replay` would send them; bad bodies, bad records, bad credentials
//! and a device posting for another patient are refused; a broker that is down gives 503.

mod support;

use assert_cmd::Command;
use kidjamo::domain::wire;
use kidjamo::serve::auth::{parse_token, sign, signing_key};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::kafka::{free_port, Broker};
use support::TestDb;

fn kidjamo() -> Command {
    let mut c = Command::cargo_bin("kidjamo").expect("binary built");
    c.env_remove("KIDJAMO_CONFIG").env_remove("RUST_LOG");
    c
}

/// One HTTP/1.1 exchange over a fresh connection: (status, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("serve listens");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send head");
    // A server may answer (413) before reading a large body; a failed write is not an error.
    let _ = s.write_all(body);
    read_response(s)
}

/// Status and body of the answer on a `Connection: close` exchange.
fn read_response(mut s: TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A POST announcing a body of `length` bytes and sending none of it.
fn head_only(port: u16, token: &str, length: usize) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("serve listens");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "POST /v1/measurements HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).expect("send head");
    read_response(s)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A running `kidjamo serve`, stopped (SIGTERM) when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(broker: &Broker, credential_args: &[String], extra: &[&str]) -> Server {
        let port = free_port();
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kidjamo"))
            .env_remove("KIDJAMO_CONFIG")
            .env("KIDJAMO_KAFKA__QUARANTINE_TOPIC", "q")
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--to",
                &broker.url("m"),
            ])
            .args(credential_args)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start kidjamo serve");
        let mut server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("kidjamo serve exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "serve did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server.wait_healthy();
        server
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(self.port, "GET", "/health", &[], b"").0 != 200 {
            assert!(Instant::now() < deadline, "serve not healthy within 30 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn post(&self, path: &str, token: &str, content_type: &str, body: &[u8]) -> (u16, String) {
        let auth = format!("Bearer {token}");
        http(
            self.port,
            "POST",
            path,
            &[("Authorization", &auth), ("Content-Type", content_type)],
            body,
        )
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A record read back from a topic: key, value, timestamp and headers.
#[derive(Debug, Clone, PartialEq)]
struct TopicRecord {
    key: Option<String>,
    payload: Vec<u8>,
    timestamp: Option<i64>,
    headers: Vec<(String, String)>,
}

impl TopicRecord {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).expect("a JSON payload")
    }
}

/// Every record of `topic` (all partitions, partition by partition in offset order), waiting
/// until `expected` have come or 30 s have passed.
fn read_topic(broker: &Broker, topic: &str, expected: usize) -> Vec<TopicRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .set("group.id", "kidjamo-serve-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut list = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            list.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition");
        }
    }
    consumer.assign(&list).expect("assign");
    let mut by_partition: std::collections::BTreeMap<i32, Vec<(i64, TopicRecord)>> =
        Default::default();
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while count < expected && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = message.expect("a readable message");
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| {
                        (
                            x.key.to_string(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        by_partition.entry(m.partition()).or_default().push((
            m.offset(),
            TopicRecord {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: m.payload().unwrap_or_default().to_vec(),
                timestamp: m.timestamp().to_millis(),
                headers,
            },
        ));
        count += 1;
    }
    by_partition
        .into_values()
        .flat_map(|mut v| {
            v.sort_by_key(|(o, _)| *o);
            v.into_iter().map(|(_, r)| r)
        })
        .collect()
}

/// A small simulated lake (JSONL landing file and reference tables) and a token per device.
struct Cohort {
    _dir: tempfile::TempDir,
    lake: PathBuf,
    credentials: PathBuf,
    /// (device_id, patient_id, token)
    devices: Vec<(String, String, String)>,
}

fn cohort() -> Cohort {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    kidjamo()
        .args([
            "simulate",
            "--patients",
            "2",
            "--days",
            "1",
            "--start",
            "2026-03-02",
            "--seed",
            "5",
            "--format",
            "jsonl",
            "--fault-rate",
            "0.02",
            "--out",
        ])
        .arg(&lake)
        .assert()
        .success();
    let credentials = dir.path().join("secrets/devices.jsonl");
    let df = kidjamo::etl::frame::read_files(&[lake.join("reference/devices.parquet")])
        .expect("devices")
        .expect("rows");
    let cols = kidjamo::etl::frame::Columns::new(&df, "devices");
    let ids: Vec<(String, String)> = cols
        .str("device_id")
        .expect("device_id")
        .iter()
        .zip(cols.str("patient_id").expect("patient_id").iter())
        .map(|(d, p)| (d.expect("id").to_string(), p.expect("id").to_string()))
        .collect();
    let mut devices = Vec::new();
    for (device, patient) in ids {
        let token = issue_token(&[
            "devices".as_ref(),
            "issue-token".as_ref(),
            device.as_ref(),
            "--credentials".as_ref(),
            credentials.as_os_str(),
            "--lake".as_ref(),
            lake.as_os_str(),
        ]);
        assert!(token.starts_with("kjd1."), "{token}");
        let stored = std::fs::read_to_string(&credentials).expect("credentials");
        assert!(
            !stored.contains(token.rsplit('.').next().expect("secret")),
            "the secret is not stored"
        );
        devices.push((device, patient, token));
    }
    Cohort {
        _dir: dir,
        lake,
        credentials,
        devices,
    }
}

impl Cohort {
    fn credential_args(&self) -> Vec<String> {
        vec![
            "--credentials".into(),
            self.credentials.display().to_string(),
        ]
    }

    /// The landing lines a device sent for its own patient (lines too broken to tell, and
    /// the simulator's unknown-patient faults, which a device would get a 403 for, are left out).
    fn lines_of(&self, device: &str) -> Vec<String> {
        let patient = &self
            .devices
            .iter()
            .find(|(d, _, _)| d == device)
            .expect("a cohort device")
            .1;
        std::fs::read_to_string(self.lake.join("landing/measurements.jsonl"))
            .expect("landing file")
            .lines()
            .filter(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .is_some_and(|v| v["device_id"] == device && v["patient_id"] == *patient)
            })
            .map(str::to_string)
            .collect()
    }
}

/// Runs `kidjamo devices issue-token …` and returns the token it prints.
fn issue_token(args: &[&std::ffi::OsStr]) -> String {
    let out = kidjamo().args(args).output().expect("issue-token runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

fn now_ms() -> kidjamo::domain::time::UtcMillis {
    kidjamo::domain::time::UtcMillis(chrono::Utc::now().timestamp_millis())
}

#[test]
fn serve_posted_records_arrive_as_replay_would_send_them() {
    let broker = Broker::start();
    let cohort = cohort();
    let server = Server::start(&broker, &cohort.credential_args(), &[]);
    let (device, _patient, token) = &cohort.devices[0];
    let lines = cohort.lines_of(device);
    assert!(lines.len() > 1000, "a day of samples: {}", lines.len());

    // Independently of the server: which lines the domain's validation accepts.
    let received = now_ms();
    let expected_valid: Vec<bool> = lines
        .iter()
        .map(|l| wire::parse_json(l.as_bytes()).is_ok_and(|m| m.validate(received).is_empty()))
        .collect();
    assert!(
        expected_valid.iter().any(|v| !v),
        "the simulator injects faults"
    );

    // Half as NDJSON batches of 500, the rest as JSON arrays and single objects.
    let mut accepted_index = Vec::new();
    let mut rejected = 0;
    let mut offset = 0;
    for (n, batch) in lines.chunks(500).enumerate() {
        let (status, body) = if n % 2 == 0 {
            server.post(
                "/v1/measurements",
                token,
                "application/x-ndjson",
                batch.join("\n").as_bytes(),
            )
        } else {
            let array = format!("[{}]", batch.join(","));
            server.post(
                "/v1/measurements",
                token,
                "application/json",
                array.as_bytes(),
            )
        };
        assert_eq!(status, 202, "{body}");
        let v = json(&body);
        let refused: Vec<usize> = v["rejections"]
            .as_array()
            .expect("rejections")
            .iter()
            .map(|r| {
                assert!(!r["reasons"].as_array().expect("reasons").is_empty());
                r["index"].as_u64().expect("index") as usize
            })
            .collect();
        assert_eq!(
            v["accepted"].as_u64(),
            Some((batch.len() - refused.len()) as u64)
        );
        assert_eq!(
            v["message_ids"].as_array().expect("ids").len(),
            batch.len() - refused.len()
        );
        rejected += refused.len();
        for i in 0..batch.len() {
            if !refused.contains(&i) {
                accepted_index.push(offset + i);
            }
        }
        offset += batch.len();
    }
    let served_valid: Vec<bool> = (0..lines.len())
        .map(|i| accepted_index.contains(&i))
        .collect();
    assert_eq!(
        served_valid, expected_valid,
        "serve validates as the domain does"
    );

    // The same lines through replay, to another topic.
    let file = cohort.lake.join("device.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write");
    kidjamo()
        .arg("replay")
        .arg("--input")
        .arg(&file)
        .args(["--to", &broker.url("r")])
        .assert()
        .success();
    let replayed = read_topic(&broker, "r", lines.len());
    assert_eq!(replayed.len(), lines.len());
    let expected: Vec<TopicRecord> = accepted_index
        .iter()
        .map(|i| replayed[*i].clone())
        .collect();
    let served = read_topic(&broker, "m", expected.len());
    assert_eq!(served.len(), expected.len());
    assert!(
        served == expected,
        "key, value, timestamp and headers equal replay's"
    );

    let quarantined = read_topic(&broker, "q", rejected);
    assert_eq!(
        quarantined.len(),
        rejected,
        "every rejected record is on the quarantine topic"
    );
}

#[test]
fn serve_refuses_bad_bodies_records_and_credentials() {
    let broker = Broker::start();
    let cohort = cohort();
    let server = Server::start(
        &broker,
        &cohort.credential_args(),
        &["--input-format", "legacy", "--max-body-bytes", "20000"],
    );
    let (device, patient, token) = cohort.devices[0].clone();
    let (_, _, other_token) = cohort.devices[1].clone();
    let good = |message: &str, spo2: &str| {
        format!(
            r#"{{"schema_version":1,"message_id":"{message}","patient_id":"{patient}","device_id":"{device}","recorded_at":"2026-03-02T08:00:00Z","vitals":{{"spo2_pct":{spo2}}},"device":{{}},"quality_flag":"ok"}}"#
        )
    };
    let ok = good("5b0c3f6e-4d7b-4e61-9a4e-0f4a1f3c2d10", "96.5");

    // Mixed batch: one good, one out of range, one missing its fields.
    let batch = format!(
        "[{ok},{},{{\"schema_version\":1}}]",
        good("5b0c3f6e-4d7b-4e61-9a4e-0f4a1f3c2d11", "130")
    );
    let (status, body) = server.post(
        "/v1/measurements",
        &token,
        "application/json",
        batch.as_bytes(),
    );
    assert_eq!(status, 202, "{body}");
    let v = json(&body);
    assert_eq!(v["accepted"], 1);
    assert_eq!(v["rejected"], 2);
    assert_eq!(v["rejections"][0]["index"], 1);
    assert_eq!(v["rejections"][0]["reasons"][0]["code"], "out_of_range");
    assert_eq!(v["rejections"][0]["reasons"][0]["field"], "spo2_pct");
    assert_eq!(v["rejections"][1]["index"], 2);
    let quarantined = read_topic(&broker, "q", 2);
    assert_eq!(quarantined.len(), 2);
    let q = quarantined
        .iter()
        .map(TopicRecord::json)
        .find(|q| q["index"] == 1)
        .expect("index 1");
    assert!(q["raw_payload"].as_str().expect("raw").contains("130"));
    assert_eq!(q["reasons"][0]["code"], "out_of_range");

    // NDJSON with a line that is not JSON: that record is rejected, the others taken.
    let nd = format!("{ok}\nnot json at all\n");
    let (status, body) = server.post(
        "/v1/measurements",
        &token,
        "application/x-ndjson",
        nd.as_bytes(),
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        json(&body)["rejections"][0]["reasons"][0]["code"],
        "malformed_json"
    );

    // Bodies: unparsable, oversize, wrong media type.
    let (status, body) = server.post("/v1/measurements", &token, "application/json", b"{\"a\":");
    assert_eq!(status, 400, "{body}");
    assert!(json(&body)["error"]
        .as_str()
        .expect("error")
        .contains("unparsable body"));
    // Refused on its announced length, before the body is read (the client sends only the
    // head, so no unread bytes make the server's close a reset that could eat the answer).
    let (status, body) = head_only(server.port, &token, 70_000);
    assert_eq!(status, 413, "{body}");
    assert!(json(&body)["error"]
        .as_str()
        .expect("error")
        .contains("20000 bytes"));
    let (status, _) = server.post("/v1/measurements", &token, "text/plain", ok.as_bytes());
    assert_eq!(status, 415);

    // Credentials: all failures look the same.
    let mut wrong = token.clone();
    wrong.pop();
    wrong.push(if token.ends_with('0') { '1' } else { '0' });
    let unknown = format!(
        "kjd1.{}.{}",
        uuid::Uuid::from_u128(9).simple(),
        "ab".repeat(32)
    );
    let mut answers = Vec::new();
    for auth in [
        None,
        Some(wrong.as_str()),
        Some(unknown.as_str()),
        Some("garbage"),
    ] {
        let headers: Vec<(&str, String)> = match auth {
            None => vec![],
            Some(t) => vec![("Authorization", format!("Bearer {t}"))],
        };
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain([("Content-Type", "application/json")])
            .collect();
        let (status, body) = http(server.port, "POST", "/v1/measurements", &h, ok.as_bytes());
        assert_eq!(status, 401, "{auth:?}: {body}");
        answers.push(body);
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "401s do not say which part failed"
    );

    // A device posting for another patient is refused, and nothing of the request is taken.
    let (status, body) = server.post(
        "/v1/measurements",
        &other_token,
        "application/json",
        ok.as_bytes(),
    );
    assert_eq!(status, 403, "{body}");

    // HMAC signature instead of a bearer token.
    let (_, secret) = parse_token(&token).expect("token");
    let key = signing_key(secret);
    let ts = (now_ms().0 / 1000).to_string();
    let signed = good("5b0c3f6e-4d7b-4e61-9a4e-0f4a1f3c2d12", "97.0");
    let signature = sign(&key, ts.parse().expect("ts"), signed.as_bytes());
    let signed_headers = [
        ("Content-Type", "application/json"),
        ("X-Kidjamo-Device", device.as_str()),
        ("X-Kidjamo-Timestamp", ts.as_str()),
        ("X-Kidjamo-Signature", signature.as_str()),
    ];
    let post_signed = |body: &str| {
        http(
            server.port,
            "POST",
            "/v1/measurements",
            &signed_headers,
            body.as_bytes(),
        )
    };
    let (status, body) = post_signed(&signed);
    assert_eq!(status, 202, "{body}");
    let (status, _) = post_signed(&ok);
    assert_eq!(status, 401, "a signature covers its own body only");

    // Legacy shapes on the legacy routes, mapped to schema 1.
    let flat = format!(
        r#"{{"patient_id":"{patient}","device_id":"{device}","timestamp":"2026-03-02T09:00:00Z","freq_card":80,"freq_resp":16,"spo2_pct":97.0,"temp_corp":36.8,"temp_ambiante":27.0,"pct_hydratation":70.0,"activity":30,"heat_index":28.0,"quality_flag":"ok"}}"#
    );
    let (status, body) = server.post("/ingest", &token, "application/json", flat.as_bytes());
    assert_eq!(status, 202, "{body}");
    let kafka_api = format!(
        r#"{{"device_id":"{device}","patient_id":"{patient}","timestamp":"2026-03-02T09:01:00Z","measurements":{{"freq_card":81,"freq_resp":16,"spo2_pct":96.0,"temp_corp":36.9,"temp_ambiente":27.5,"pct_hydratation":71.0,"activity":20}},"device_info":{{"battery_level":80,"signal_strength":90,"firmware_version":"2.1.3"}},"quality_indicators":{{"quality_flag":"ok"}}}}"#
    );
    let (status, body) = server.post(
        "/iot/measurements",
        &token,
        "application/json",
        kafka_api.as_bytes(),
    );
    assert_eq!(status, 202, "{body}");

    // Taken so far: 1 (mixed) + 1 (ndjson) + 1 (signed) + 2 (legacy), all valid schema 1.
    let measurements = read_topic(&broker, "m", 5);
    assert_eq!(measurements.len(), 5);
    for r in &measurements {
        let m = wire::parse_json(&r.payload).expect("schema 1 on the topic");
        assert_eq!(m.patient_id.to_string(), patient);
        assert_eq!(r.key.as_deref(), Some(patient.as_str()));
    }
    assert!(measurements
        .iter()
        .any(|r| wire::parse_json(&r.payload).is_ok_and(
            |m| m.vitals.heart_rate_bpm == Some(80) && m.vitals.activity_level == Some(3)
        )));

    // The rest of the API.
    let (status, body) = http(server.port, "GET", "/openapi.json", &[], b"");
    assert_eq!(status, 200);
    assert!(json(&body)["paths"]["/v1/measurements"].is_object());
    let (status, metrics) = http(server.port, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("kidjamo_serve_records_accepted_total 5"),
        "{metrics}"
    );
    assert!(metrics.contains("kidjamo_serve_records_rejected_total{reason=\"out_of_range\"} 1"));
    assert!(metrics.contains("status=\"401\"} 5"), "{metrics}");
    assert!(metrics.contains("kidjamo_serve_request_duration_seconds_count"));
}

#[test]
fn serve_answers_503_when_the_broker_is_down_and_stops_gracefully() {
    let mut broker = Broker::start();
    let cohort = cohort();
    let mut server = Server::start(
        &broker,
        &cohort.credential_args(),
        &["--ack-timeout-ms", "2000"],
    );
    let (device, _, token) = &cohort.devices[0];
    let lines = cohort.lines_of(device);
    let (status, body) = server.post(
        "/v1/measurements",
        token,
        "application/x-ndjson",
        lines[..10].join("\n").as_bytes(),
    );
    assert_eq!(status, 202, "{body}");

    broker.stop();
    let started = Instant::now();
    let (status, body) = server.post(
        "/v1/measurements",
        token,
        "application/x-ndjson",
        lines[10..20].join("\n").as_bytes(),
    );
    assert_eq!(status, 503, "{body}");
    let v = json(&body);
    assert_eq!(v["acknowledged"], 0, "nothing is claimed as stored: {body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered within the ack timeout"
    );
    let (status, body) = http(server.port, "GET", "/health", &[], b"");
    assert_eq!(status, 503, "health checks the broker for real: {body}");
    assert_eq!(json(&body)["broker"], "unreachable");

    // A request in flight when SIGTERM comes still gets its answer before the process exits.
    let port = server.port;
    let auth = format!("Bearer {token}");
    let body = lines[20..30].join("\n");
    let in_flight = std::thread::spawn(move || {
        http(
            port,
            "POST",
            "/v1/measurements",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/x-ndjson"),
            ],
            body.as_bytes(),
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let exit = server.terminate();
    assert!(exit.success(), "SIGTERM drains and exits 0: {exit}");
    let (status, body) = in_flight.join().expect("the in-flight request returns");
    assert_eq!(status, 503, "answered, not cut off: {body}");
}

#[test]
fn serve_takes_device_credentials_from_postgresql() {
    let broker = Broker::start();
    let db = TestDb::migrated("serve");
    let device = "00000000-0000-0000-0000-0000000000e1";
    let patient = "00000000-0000-0000-0000-00000000aaaa";
    db.client()
        .batch_execute(&format!(
            "SET ROLE kidjamo_owner;
             INSERT INTO users (user_id, role, given_name, family_name, email, password_hash, created_at)
               VALUES ('00000000-0000-0000-0000-0000000000a1', 'patient', 'Ann', 'One', NULL, NULL, '2026-01-01Z');
             INSERT INTO devices VALUES ('{device}', 'KJ-Band 2', '2.1.3');
             INSERT INTO patients (patient_id, user_id, sex, birth_date, genotype, country)
               VALUES ('{patient}', '00000000-0000-0000-0000-0000000000a1', 'F', '2015-06-01', 'SS', 'CM');
             INSERT INTO device_assignments VALUES ('{device}', '{patient}', '2026-01-01Z', NULL);"
        ))
        .expect("seed");
    let token = issue_token(&[
        "devices".as_ref(),
        "issue-token".as_ref(),
        device.as_ref(),
        "--database-url".as_ref(),
        db.url.as_ref(),
    ]);
    let stored: Vec<u8> = db
        .client()
        .query_one(
            "SELECT token_sha256 FROM device_credentials WHERE device_id = $1",
            &[&uuid::Uuid::try_parse(device).expect("uuid")],
        )
        .expect("stored")
        .get(0);
    assert_eq!(stored.len(), 32, "a hash, not the token");

    let server = Server::start(
        &broker,
        &["--database-url".to_string(), db.url.clone()],
        &[],
    );
    let record = format!(
        r#"{{"schema_version":1,"message_id":"5b0c3f6e-4d7b-4e61-9a4e-0f4a1f3c2d10","patient_id":"{patient}","device_id":"{device}","recorded_at":"2026-03-02T08:00:00Z","vitals":{{"spo2_pct":96.5}},"device":{{}},"quality_flag":"ok"}}"#
    );
    let (status, body) = server.post(
        "/v1/measurements",
        &token,
        "application/json",
        record.as_bytes(),
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(read_topic(&broker, "m", 1).len(), 1);

    // A device whose assignment ended may not post any more (its credential no longer loads).
    db.client()
        .batch_execute(&format!(
            "UPDATE device_assignments SET assigned_to = now() - interval '1 second' WHERE device_id = '{device}'"
        ))
        .expect("end assignment");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = server.post(
            "/v1/measurements",
            &token,
            "application/json",
            record.as_bytes(),
        );
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "credentials are reloaded within seconds"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn serve_and_issue_token_refuse_to_start_with_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No credential store named anywhere.
    kidjamo()
        .env_remove("DATABASE_URL")
        .args(["serve", "--to", "kafka://127.0.0.1:1/m"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no device credential store"));
    // A broker that is not there: named, within the 10 s connection timeout.
    let port = free_port();
    let started = Instant::now();
    kidjamo()
        .args([
            "serve",
            "--to",
            &format!("kafka://127.0.0.1:{port}/m"),
            "--credentials",
        ])
        .arg(dir.path().join("devices.jsonl"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains(format!("127.0.0.1:{port}")))
        .stderr(predicates::str::contains("serve cannot start"));
    assert!(started.elapsed() < Duration::from_secs(20));
    // A device the lake does not know, and a corrupt credentials file.
    let lake = dir.path().join("lake");
    kidjamo()
        .args([
            "simulate",
            "--patients",
            "1",
            "--days",
            "1",
            "--format",
            "jsonl",
            "--out",
        ])
        .arg(&lake)
        .assert()
        .success();
    kidjamo()
        .args([
            "devices",
            "issue-token",
            "00000000-0000-0000-0000-000000000001",
            "--credentials",
        ])
        .arg(dir.path().join("devices.jsonl"))
        .arg("--lake")
        .arg(&lake)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("pass --patient"));
    let corrupt = dir.path().join("corrupt.jsonl");
    std::fs::write(&corrupt, "{\"device_id\":\"x\"}\n").expect("write");
    let broker = Broker::start();
    kidjamo()
        .args(["serve", "--to", &broker.url("m"), "--credentials"])
        .arg(&corrupt)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("corrupt.jsonl: line 1"));
}
