//! The live path against a real Kafka-protocol broker (tansu): simulate → replay → stream, a
//! kill -9 in the middle, bad records, and a broker that is down or restarts.

mod support;

use assert_cmd::Command;
use kidjamo::domain::alerts::{Alert, PatientContext};
use kidjamo::domain::thresholds::Thresholds;
use kidjamo::etl::frame::{read_files, Columns};
use kidjamo::etl::rows::MeasurementRows;
use kidjamo::etl::silver::read_reference;
use kidjamo::stream::alerter::{Fed, StreamAlerter};
use kidjamo::stream::source::{for_each_record, Flow, Input, InputFormat};
use polars::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::kafka::Broker;
use uuid::Uuid;

fn kidjamo() -> Command {
    let mut c = Command::cargo_bin("kidjamo").expect("binary built");
    c.env_remove("KIDJAMO_CONFIG").env_remove("RUST_LOG");
    c
}

fn std_kidjamo() -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("kidjamo"));
    c.env_remove("KIDJAMO_CONFIG").env_remove("RUST_LOG");
    c
}

/// Clock-skew faults are turned off: whether a skewed sample is "in the future" depends on when
/// it is ingested, and this comparison wants the same verdicts from simulate and stream.
const NO_SKEW: &str = "simulate:\n  faults:\n    clock_skew_per_day: 0.0\n";

fn simulate(root: &Path, format: &str, patients: u32, hours_days: u32) {
    simulate_from(root, format, patients, hours_days, "2026-03-02");
}

fn simulate_from(root: &Path, format: &str, patients: u32, hours_days: u32, start: &str) {
    let config = root.with_extension("yaml");
    std::fs::write(&config, NO_SKEW).expect("config");
    kidjamo()
        .args(["--config"])
        .arg(&config)
        .args([
            "simulate",
            "--patients",
            &patients.to_string(),
            "--days",
            &hours_days.to_string(),
            "--start",
            start,
            "--seed",
            "11",
            "--format",
            format,
            "--out",
        ])
        .arg(root)
        .assert()
        .success();
}

fn parquet_under(dir: &Path) -> Vec<PathBuf> {
    kidjamo::etl::frame::parquet_files_under(dir).expect("readable folder")
}

/// Bronze rows as wire JSON (what was received, without ingest metadata), as a multiset.
fn bronze_content(root: &Path) -> BTreeMap<String, u32> {
    let files = parquet_under(&root.join("bronze/measurements"));
    let mut out = BTreeMap::new();
    if files.is_empty() {
        return out;
    }
    for_each_record(
        &Input::Parquet(files),
        InputFormat::V1,
        &mut |_| {},
        &mut |r| {
            *out.entry(String::from_utf8(r.payload).expect("utf-8"))
                .or_insert(0) += 1;
            Ok(Flow::Continue)
        },
    )
    .expect("Bronze readable");
    out
}

/// Quarantine as (reason codes, raw payload), as a multiset.
fn quarantine_content(root: &Path) -> BTreeMap<(String, String), u32> {
    let files = parquet_under(&root.join("quarantine/measurements"));
    let mut out = BTreeMap::new();
    let Some(df) = read_files(&files).expect("quarantine readable") else {
        return out;
    };
    let reasons = df
        .column("reason_codes")
        .expect("col")
        .str()
        .expect("str")
        .clone();
    let raw = df
        .column("raw_payload")
        .expect("col")
        .str()
        .expect("str")
        .clone();
    for (r, p) in reasons.iter().zip(raw.iter()) {
        *out.entry((r.unwrap_or("").to_string(), p.unwrap_or("").to_string()))
            .or_insert(0) += 1;
    }
    out
}

/// The final state of every alert the stream wrote: for each alert id, its row from the last
/// micro-batch that touched it.
fn stream_alerts(root: &Path) -> BTreeMap<Uuid, (String, String, i64, i64, u32)> {
    let mut files = parquet_under(&root.join("alerts/stream"));
    // part-<run>-<batch>-0.parquet: order by run (start order is the test's) then batch number.
    let batch_of = |p: &PathBuf| -> (u64, String) {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let parts: Vec<&str> = name
            .trim_end_matches("-0.parquet")
            .rsplitn(2, '-')
            .collect();
        let seq = parts.first().and_then(|s| s.parse().ok()).unwrap_or(0);
        let modified = std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let run_started = modified.map(|m| format!("{m:?}")).unwrap_or_default();
        (seq, run_started)
    };
    files.sort_by_key(|p| {
        let (seq, _) = batch_of(p);
        (std::fs::metadata(p).and_then(|m| m.modified()).ok(), seq)
    });
    let mut out = BTreeMap::new();
    for f in files {
        let df = read_files(&[f]).expect("alerts readable").expect("rows");
        let c = Columns::new(&df, "alerts");
        let id = c.str("alert_id").expect("id");
        let rule = c.str("rule_id").expect("rule");
        let status = c.str("status").expect("status");
        let first = c.millis("first_seen_at").expect("first");
        let last = c.millis("last_seen_at").expect("last");
        let occ = c.i64("occurrences").expect("occ");
        for i in 0..df.height() {
            let key = Uuid::try_parse(id.get(i).expect("id")).expect("uuid");
            out.insert(
                key,
                (
                    rule.get(i).expect("rule").to_string(),
                    status.get(i).expect("status").to_string(),
                    first.get(i).expect("first"),
                    last.get(i).expect("last"),
                    occ.get(i).expect("occ") as u32,
                ),
            );
        }
    }
    out
}

/// The alerts the stream's policy gives for the valid records it stored, recomputed offline:
/// per partition (from Bronze's `source`), in Kafka offset order.
fn offline_alerts(
    root: &Path,
    thresholds: &Thresholds,
) -> BTreeMap<Uuid, (String, String, i64, i64, u32)> {
    let files = parquet_under(&root.join("bronze/measurements"));
    let df = read_files(&files).expect("Bronze").expect("rows");
    let df = df
        .lazy()
        .unique_stable(
            Some(cols(["source", "source_offset"])),
            UniqueKeepStrategy::First,
        )
        .sort(["source", "source_offset"], SortMultipleOptions::default())
        .collect()
        .expect("sorted");
    let reference = read_reference(root).expect("reference");
    let c = Columns::new(&df, "Bronze");
    let rows = MeasurementRows::with_message_ids(&c).expect("rows");
    let source = c.str("source").expect("source");
    let mut alerters: HashMap<String, StreamAlerter<'_>> = HashMap::new();
    let mut finals: BTreeMap<Uuid, Alert> = BTreeMap::new();
    let mut repeats = kidjamo::etl::rows::Repeats::default();
    for i in 0..df.height() {
        let patient = Uuid::try_parse(rows.patient.get(i).expect("p")).expect("uuid");
        let m = rows.measurement(i, patient, &mut repeats);
        let ctx = PatientContext {
            patient_id: patient,
            birth_date: reference[&patient].birth_date,
        };
        let a = alerters
            .entry(source.get(i).expect("source").to_string())
            .or_insert_with(|| StreamAlerter::new(thresholds));
        if let Fed::Evaluated(events) = a.on_measurement(&ctx, &m) {
            for e in events {
                let latest = match e.alert() {
                    Some(alert) => alert.clone(),
                    None => a
                        .open_alert(&patient, &e.alert_id())
                        .expect("an updated alert is open")
                        .clone(),
                };
                finals.insert(e.alert_id(), latest);
            }
        }
    }
    finals
        .into_iter()
        .map(|(id, a)| {
            (
                id,
                (
                    a.rule_id.clone(),
                    kidjamo::lake::alerts::status_str(a.status).to_string(),
                    a.first_seen_at.0,
                    a.last_seen_at.0,
                    a.occurrences,
                ),
            )
        })
        .collect()
}

fn replay(broker: &Broker, input: &Path, topic: &str) {
    kidjamo()
        .args(["replay", "--input"])
        .arg(input)
        .args(["--to", &broker.url(topic), "--partitions", "3"])
        .assert()
        .success();
}

fn stream_until_idle(broker: &Broker, lake: &Path, topic: &str, extra: &[&str]) -> String {
    stream_until_idle_with(broker, lake, topic, "g1", extra)
}

/// A member of `group` reading `topic` into `lake` until the topic has been quiet for 4 s.
fn stream_until_idle_in(broker: &Broker, lake: &Path, topic: &str, group: &str) -> String {
    stream_until_idle_with(broker, lake, topic, group, &[])
}

fn stream_until_idle_with(
    broker: &Broker,
    lake: &Path,
    topic: &str,
    group: &str,
    extra: &[&str],
) -> String {
    let out = kidjamo()
        .args(["stream", "--from", &broker.url(topic), "--lake"])
        .arg(lake)
        .args([
            "--group",
            group,
            "--alerts-topic",
            &format!("{topic}.alerts"),
            "--until-idle",
            "4",
        ])
        .args(extra)
        .timeout(Duration::from_secs(300))
        .assert()
        .success();
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

/// A simulated day of `patients` as JSON Lines (what is replayed) and as Bronze (what the lake
/// should end up holding), and a lake holding only the reference tables.
fn simulated_day(dir: &Path, patients: u32) -> (PathBuf, PathBuf, PathBuf) {
    let (sim_jsonl, sim_bronze, lake) = (dir.join("sim"), dir.join("simpq"), dir.join("lake"));
    simulate(&sim_jsonl, "jsonl", patients, 1);
    simulate(&sim_bronze, "parquet", patients, 1);
    lake_with_reference(&sim_jsonl, &lake);
    (sim_jsonl, sim_bronze, lake)
}

/// Copies the reference tables of `from` into a fresh lake `to` (what `stream` reads).
fn lake_with_reference(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("reference")).expect("mkdir");
    for e in std::fs::read_dir(from.join("reference"))
        .expect("reference")
        .flatten()
    {
        std::fs::copy(e.path(), to.join("reference").join(e.file_name())).expect("copy");
    }
}

#[test]
fn simulate_replay_stream_gives_simulated_bronze_quarantine_and_the_offline_alerts() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim_jsonl, sim_bronze, lake) = simulated_day(dir.path(), 12);
    replay(&broker, &sim_jsonl, "m1");
    let summary = stream_until_idle(&broker, &lake, "m1", &[]);
    assert!(summary.contains("0 already durable"), "{summary}");

    let expected = bronze_content(&sim_bronze);
    let got = bronze_content(&lake);
    assert!(
        expected.values().sum::<u32>() > 30_000,
        "a day of 12 patients"
    );
    assert!(
        expected.values().any(|n| *n > 1),
        "the simulation resends duplicates"
    );
    assert_eq!(got.len(), expected.len(), "distinct Bronze records");
    assert!(
        got == expected,
        "stream Bronze equals simulate's Bronze, duplicates included"
    );

    let q_expected = quarantine_content(&sim_bronze);
    assert!(
        !q_expected.is_empty(),
        "the simulation injects malformed records"
    );
    assert_eq!(
        quarantine_content(&lake),
        q_expected,
        "same records quarantined, same reasons"
    );

    let thresholds = Thresholds::reference();
    let offline = offline_alerts(&lake, &thresholds);
    let streamed = stream_alerts(&lake);
    assert!(
        offline.len() > 10,
        "the day raises alerts: {}",
        offline.len()
    );
    assert_eq!(
        streamed, offline,
        "the stream's alerts are the engine's alerts over the same records"
    );
}

/// `lake` holds what the uninterrupted run in `reference_run` holds: every record (copies
/// allowed: Silver removes them by `message_id`), the same alerts, the same quarantined records.
fn assert_same_as_uninterrupted(lake: &Path, reference_run: &Path) {
    let expected = bronze_content(reference_run);
    let got = bronze_content(lake);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "nothing lost"
    );
    for (record, n) in &expected {
        assert!(got[record] >= *n, "a record lost a copy");
    }
    assert_eq!(
        stream_alerts(lake),
        stream_alerts(reference_run),
        "same alerts as an uninterrupted run"
    );
    assert_eq!(
        quarantine_content(lake).keys().collect::<Vec<_>>(),
        quarantine_content(reference_run).keys().collect::<Vec<_>>()
    );
}

/// A simulated day of `patients` as JSON Lines in `sim`, and two lakes holding only its
/// reference tables: one for the run under test, one for an uninterrupted reference run.
fn day_and_two_lakes(dir: &Path, patients: u32) -> (PathBuf, PathBuf, PathBuf) {
    let (sim, lake, reference_run) = (dir.join("sim"), dir.join("lake"), dir.join("ref"));
    simulate(&sim, "jsonl", patients, 1);
    lake_with_reference(&sim, &lake);
    lake_with_reference(&sim, &reference_run);
    (sim, lake, reference_run)
}

#[test]
fn kill_9_mid_stream_then_restart_loses_and_duplicates_nothing() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, lake, reference_run) = day_and_two_lakes(dir.path(), 12);
    replay(&broker, &sim, "m2");
    // An uninterrupted run in another group gives the reference.
    kidjamo()
        .args(["stream", "--from", &broker.url("m2"), "--lake"])
        .arg(&reference_run)
        .args([
            "--group",
            "reference",
            "--alerts-topic",
            "m2.alerts.ref",
            "--until-idle",
            "4",
        ])
        .assert()
        .success();

    // Small batches, so that the kill lands between checkpoints.
    let mut child = std_kidjamo()
        .args(["stream", "--from", &broker.url("m2"), "--lake"])
        .arg(&lake)
        .args([
            "--group",
            "g2",
            "--alerts-topic",
            "m2.alerts",
            "--flush-records",
            "3000",
            "--flush-interval",
            "0.2",
            "-q",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("stream starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while parquet_under(&lake.join("bronze/measurements")).len() < 3 {
        assert!(Instant::now() < deadline, "stream wrote nothing in 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    let before = bronze_content(&lake).values().sum::<u32>();
    let summary = stream_until_idle(&broker, &lake, "m2", &["--flush-records", "3000"]);
    let expected = bronze_content(&reference_run);
    assert!(
        before > 0 && before < expected.values().sum::<u32>(),
        "killed mid-stream: {before}"
    );
    assert!(summary.contains("stream "), "{summary}");
    // A record is in Bronze more often than it was sent only when the kill fell inside a flush.
    assert_same_as_uninterrupted(&lake, &reference_run);
}

/// Records in a simulation's JSON Lines.
fn input_records(sim: &Path) -> usize {
    std::fs::read_to_string(sim.join("landing/measurements.jsonl"))
        .expect("input")
        .lines()
        .count()
}

/// A `kidjamo stream` process of `group` reading `topic` into `lake` (alerts to
/// `<topic>.alerts`), its output captured.
fn spawn_stream(
    broker: &Broker,
    lake: &Path,
    topic: &str,
    group: &str,
    extra: &[&str],
) -> std::process::Child {
    std_kidjamo()
        .args(["stream", "--from", &broker.url(topic), "--lake"])
        .arg(lake)
        .args([
            "--group",
            group,
            "--alerts-topic",
            &format!("{topic}.alerts"),
        ])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("stream starts")
}

/// Two `kidjamo stream` processes in one group share the partitions: the second joins while the
/// first is consuming a paced replay, the group rebalances (the first gives up partitions it
/// holds unflushed records of), and between them they write every record and the same alerts
/// as one uninterrupted run.
#[test]
fn two_streams_in_one_group_share_the_partitions_and_lose_nothing() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, lake, reference_run) = day_and_two_lakes(dir.path(), 8);
    let input = sim.join("landing/measurements.jsonl");
    let records = input_records(&sim);
    // About 6 s of records, so that the second member joins mid-stream.
    let rate = (records / 6).to_string();
    let mut replaying = std_kidjamo()
        .args(["replay", "--rate", &rate, "--partitions", "3", "--input"])
        .arg(&input)
        .args(["--to", &broker.url("m9"), "-q"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("replay starts");
    // The first member logs (-v) what the rebalance took from it.
    let member = |log: &str| {
        spawn_stream(
            &broker,
            &lake,
            "m9",
            "shared",
            &["--until-idle", "8", "--flush-interval", "0.5", log],
        )
    };
    let first = member("-v");
    std::thread::sleep(Duration::from_secs(2));
    let second = member("-q");
    assert!(replaying.wait().expect("replay ends").success());
    // (records consumed, log) of a member.
    let consumed = |child: std::process::Child| {
        let out = child.wait_with_output().expect("stream ends");
        assert!(out.status.success());
        let summary = String::from_utf8_lossy(&out.stdout).into_owned();
        let n: u64 = summary
            .split(" records consumed")
            .next()
            .and_then(|head| head.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {summary}"));
        (n, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let ((by_first, first_log), (by_second, _)) = (consumed(first), consumed(second));
    assert!(
        first_log.contains("partitions revoked"),
        "the second member's arrival took partitions from the first: {first_log}"
    );
    assert!(
        by_first > 0 && by_second > 0,
        "both members consumed: {by_first} and {by_second}"
    );
    assert!(
        by_first + by_second >= records as u64,
        "every record read at least once: {by_first} + {by_second} of {records}"
    );
    // One uninterrupted member of another group over the same topic gives the reference.
    stream_until_idle_in(&broker, &reference_run, "m9", "reference");
    // A record is in Bronze twice when a revoked partition's batch was being flushed.
    assert_same_as_uninterrupted(&lake, &reference_run);
}

/// SIGTERM makes the stream flush what it holds, commit and exit 0: with a flush interval far
/// longer than the run, every record reaches Bronze only through that last flush, and a new
/// member of the group afterwards finds nothing left to read.
#[test]
fn sigterm_flushes_commits_and_exits_0() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, lake, _) = day_and_two_lakes(dir.path(), 3);
    replay(&broker, &sim, "m10");
    let records = input_records(&sim) as f64;
    let port = support::kafka::free_port();
    let stream = spawn_stream(
        &broker,
        &lake,
        "m10",
        "g10",
        &[
            "--flush-interval",
            "600",
            "-q",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let consumed = try_scrape(port)
            .map(|m| metric(&m, "kidjamo_stream_records_consumed_total"))
            .unwrap_or(0.0);
        if consumed >= records {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "consumed {consumed} of {records}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        parquet_under(&lake.join("bronze/measurements")).is_empty(),
        "nothing flushed before the signal"
    );
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &stream.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = stream.wait_with_output().expect("stream ends");
    assert!(out.status.success(), "SIGTERM exits 0: {}", out.status);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("1 micro-batches"), "{summary}");
    let in_lake = bronze_content(&lake).values().sum::<u32>() as f64
        + quarantine_content(&lake).values().sum::<u32>() as f64;
    assert_eq!(in_lake, records, "every record flushed at the signal");
    let again = stream_until_idle_in(&broker, &lake, "m10", "g10");
    assert!(again.contains(" 0 records consumed"), "{again}");
}

/// A broker restarts with its log intact: here tansu keeping its log in a bucket of an
/// S3-protocol server, killed with SIGKILL in the middle of a paced replay that a running stream
/// is consuming, and started again on the same port and bucket. The producer retries until the
/// broker is back, the consumer reconnects and resumes where it was, both exit 0, and the lake
/// holds every record the topic holds — what a fresh consumer group reads from it afterwards —
/// with the alerts of those records. (tansu acknowledges some records it has not yet stored:
/// the few dozen acknowledged just before the kill are not in the topic after the restart. A
/// broker that stores before it acknowledges, as Kafka with acks=all does, keeps them.)
#[test]
fn a_broker_restart_mid_run_loses_nothing() {
    let s3 = support::s3::S3Server::start("tansu");
    let mut broker = Broker::start_durable(&s3);
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim_jsonl, sim_bronze, lake) = simulated_day(dir.path(), 6);
    let mut stream = std_kidjamo();
    stream
        .args(["stream", "--from", &broker.url("m8"), "--lake"])
        .arg(&lake)
        .args([
            "--group",
            "g8",
            "--alerts-topic",
            "m8.alerts",
            "--flush-interval",
            "0.5",
            // Longer than the outage: no record arrives while the broker is down.
            "--until-idle",
            "15",
            "-q",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let stream = stream.spawn().expect("stream starts");
    let mut replay = std_kidjamo();
    replay
        .args(["replay", "--input"])
        .arg(&sim_jsonl)
        .args(["--to", &broker.url("m8"), "--partitions", "3"])
        .args(["--rate", "2500", "-q"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let replay = replay.spawn().expect("replay starts");

    let deadline = Instant::now() + Duration::from_secs(120);
    while bronze_content(&lake).values().sum::<u32>() < 2_000 {
        assert!(Instant::now() < deadline, "stream wrote nothing in 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    broker.restart();

    let replayed = replay.wait_with_output().expect("replay ends");
    assert!(
        replayed.status.success(),
        "replay survives the restart: {}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    let streamed = stream.wait_with_output().expect("stream ends");
    assert!(
        streamed.status.success(),
        "stream survives the restart: {}",
        String::from_utf8_lossy(&streamed.stderr)
    );
    // What the topic holds after the restart, read by a fresh group into a lake of its own.
    let reference_lake = dir.path().join("reference");
    lake_with_reference(&sim_jsonl, &reference_lake);
    kidjamo()
        .args(["stream", "--from", &broker.url("m8"), "--lake"])
        .arg(&reference_lake)
        .args(["--group", "fresh", "--alerts-topic", "m8.alerts.ref"])
        .args(["--until-idle", "5", "-q"])
        .timeout(Duration::from_secs(300))
        .assert()
        .success();
    let held = bronze_content(&reference_lake);
    let simulated = bronze_content(&sim_bronze);
    let got = bronze_content(&lake);
    assert!(
        held.len() * 100 >= simulated.len() * 95 && held.keys().all(|k| simulated.contains_key(k)),
        "the restarted broker holds most simulated records: {} of {}",
        held.len(),
        simulated.len()
    );
    let missing = held.keys().filter(|k| !got.contains_key(*k)).count();
    let extra = got.keys().filter(|k| !held.contains_key(*k)).count();
    assert!(
        missing == 0 && extra == 0,
        "nothing the topic holds is lost: {missing} of {} records missing, {extra} unexpected; stream said {}",
        held.len(),
        String::from_utf8_lossy(&streamed.stdout)
    );
    assert_eq!(
        stream_alerts(&lake),
        offline_alerts(&lake, &Thresholds::reference()),
        "the alerts of the records received"
    );
}

/// A topic deleted and created again (here: a memory broker restarted) numbers its records
/// from 0 afresh. When it has grown past the stream's checkpoint before the stream comes back,
/// its offsets alone look like records already durable; the checkpoint's record mark shows the
/// topic is another one, and every new record reaches the lake.
#[test]
fn a_topic_recreated_past_its_checkpoint_is_read_from_its_start() {
    let mut broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, first_pq, second, second_pq, lake) = (
        dir.path().join("first"),
        dir.path().join("firstpq"),
        dir.path().join("second"),
        dir.path().join("secondpq"),
        dir.path().join("lake"),
    );
    simulate_from(&first, "jsonl", 3, 1, "2026-03-02");
    simulate_from(&first_pq, "parquet", 3, 1, "2026-03-02");
    // Two later days of the same cohort: more records than the first topic had.
    simulate_from(&second, "jsonl", 3, 2, "2026-03-05");
    simulate_from(&second_pq, "parquet", 3, 2, "2026-03-05");
    lake_with_reference(&first, &lake);
    replay(&broker, &first, "m7");
    stream_until_idle(&broker, &lake, "m7", &[]);
    assert_eq!(bronze_content(&lake), bronze_content(&first_pq));

    broker.restart();
    replay(&broker, &second, "m7");
    let summary = stream_until_idle(&broker, &lake, "m7", &[]);
    assert!(summary.contains("0 already durable"), "{summary}");
    let mut expected = bronze_content(&first_pq);
    for (record, n) in bronze_content(&second_pq) {
        *expected.entry(record).or_insert(0) += n;
    }
    let got = bronze_content(&lake);
    assert!(
        got == expected,
        "the first topic's records once, and every record of the recreated topic: {} of {} records",
        got.values().sum::<u32>(),
        expected.values().sum::<u32>()
    );
}

#[test]
fn bad_records_are_quarantined_with_one_reason_per_rule_and_counts_reconcile() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, lake) = (dir.path().join("sim"), dir.path().join("lake"));
    simulate(&sim, "jsonl", 2, 1);
    lake_with_reference(&sim, &lake);
    let reference = read_reference(&lake).expect("reference");
    let patient = *reference.keys().next().expect("a patient");
    let good = |id: u128, spo2: &str| {
        format!(
            r#"{{"schema_version":1,"message_id":"{}","patient_id":"{patient}","device_id":"d4c2b1a0-1111-4222-8333-944455556666","recorded_at":"2026-03-02T08:30:05Z","vitals":{{"spo2_pct":{spo2},"heart_rate_bpm":88}},"device":{{"battery_pct":77}},"quality_flag":"ok"}}"#,
            Uuid::from_u128(id)
        )
    };
    let lines = [
        good(1, "95.4"),
        good(1, "95.4"), // resent: same message_id, kept in Bronze, removed by Silver
        "{\"schema_version\":1,\"message_id\":".to_string(), // malformed JSON
        good(2, "\"high\""), // wrong type
        good(3, "130"),  // out of range
        good(4, "95").replace(&patient.to_string(), "00000000-0000-4000-8000-000000000000"), // unknown patient
        good(5, "95").replace("\"ok\"", "\"sparkly\""), // unknown quality flag
    ];
    let input = dir.path().join("bad.jsonl");
    std::fs::write(&input, lines.join("\n")).expect("write");
    replay(&broker, &input, "m3");
    let summary = stream_until_idle(&broker, &lake, "m3", &[]);
    assert!(summary.contains("7 records consumed"), "{summary}");
    assert!(summary.contains("→ 2 Bronze, 5 quarantined"), "{summary}");
    let q = quarantine_content(&lake);
    let reasons: Vec<&str> = q.keys().map(|(r, _)| r.as_str()).collect();
    for expected in [
        "malformed_json",
        "spo2_pct",
        "out_of_range:spo2_pct",
        "unknown_patient:patient_id",
        "unknown_quality_flag",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "{expected} in {reasons:?}"
        );
    }
    assert!(
        q.keys().any(|(_, raw)| raw == &lines[2]),
        "the raw payload is kept"
    );
    let bronze = bronze_content(&lake);
    assert_eq!(bronze.values().sum::<u32>(), 2);
}

#[test]
fn a_broker_that_is_down_at_start_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = dir.path().join("sim");
    simulate(&sim, "jsonl", 2, 1);
    // Down at start: nothing listens on the port.
    let mut down = Broker::start();
    let url = down.url("m4");
    down.stop();
    for cmd in [
        vec![
            "replay",
            "--input",
            sim.to_str().expect("path"),
            "--to",
            &url,
        ],
        vec![
            "stream",
            "--from",
            &url,
            "--lake",
            sim.to_str().expect("path"),
        ],
    ] {
        let started = Instant::now();
        let out = kidjamo()
            .args(&cmd)
            .timeout(Duration::from_secs(60))
            .assert()
            .code(2);
        let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            err.contains(&down.address()) && err.contains("does not answer"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(30), "fails fast");
    }
}

/// Waits (up to 2 minutes) until the stream has drained the topic into Bronze.
fn bronze_content_when(lake: &Path, ready: impl Fn(u32) -> bool) -> BTreeMap<String, u32> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = 0;
    let mut stable_since = Instant::now();
    loop {
        let n: u32 = bronze_content(lake).values().sum();
        if n != last {
            last = n;
            stable_since = Instant::now();
        }
        if ready(n) && stable_since.elapsed() > Duration::from_secs(3) {
            return bronze_content(lake);
        }
        if Instant::now() >= deadline {
            return bronze_content(lake);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn simulate_to_kafka_legacy_input_bronze_replay_to_file_and_metrics() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim, lake) = (dir.path().join("sim"), dir.path().join("lake"));
    // simulate straight into Kafka: reference tables on disk, measurements on the topic.
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, NO_SKEW).expect("config");
    let out = kidjamo()
        .arg("--config")
        .arg(&config)
        .args([
            "simulate",
            "--patients",
            "3",
            "--days",
            "1",
            "--start",
            "2026-03-02",
            "--seed",
            "11",
            "--to",
            &broker.url("m6"),
            "--out",
        ])
        .arg(&sim)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains(&broker.url("m6")), "{text}");
    assert!(
        !sim.join("landing").exists(),
        "no measurement file when sending to Kafka"
    );
    lake_with_reference(&sim, &lake);

    // The stream serves metrics while it runs.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let stream = std_kidjamo()
        .args(["stream", "--from", &broker.url("m6"), "--lake"])
        .arg(&lake)
        .args([
            "--group",
            "g6",
            "--alerts-topic",
            "m6.alerts",
            "--until-idle",
            "10",
            "--flush-interval",
            "0.5",
            "-q",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("stream starts");
    bronze_content_when(&lake, |n| n > 8000);
    let metrics = scrape(port);
    let consumed: f64 = metric(&metrics, "kidjamo_stream_records_consumed_total");
    assert!(consumed > 8000.0, "{metrics}");
    assert!(
        metrics.contains("kidjamo_stream_alerts_total{rule="),
        "{metrics}"
    );
    assert!(
        metrics.contains("kidjamo_stream_flush_seconds_count"),
        "{metrics}"
    );
    // The lag comes from librdkafka's statistics, once a second: it reaches 0 once every
    // record has been read.
    let lag_read_out = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        scrape(port).contains("kidjamo_stream_consumer_lag 0")
    });
    assert!(lag_read_out, "{}", scrape(port));
    let done = stream.wait_with_output().expect("stream ends");
    assert!(done.status.success());
    let written = metric(&metrics, "kidjamo_stream_records_written_total");
    let quarantined = metric(&metrics, "kidjamo_stream_records_quarantined_total");
    assert_eq!(written + quarantined, consumed, "counts reconcile");

    // Bronze replayed to a file gives back the same records, in arrival order.
    let copy = dir.path().join("copy.jsonl");
    kidjamo()
        .args(["replay", "--input"])
        .arg(lake.join("bronze/measurements"))
        .arg("--to")
        .arg(format!("file://{}", copy.display()))
        .assert()
        .success();
    let mut from_file: BTreeMap<String, u32> = BTreeMap::new();
    for line in std::fs::read_to_string(&copy).expect("copy").lines() {
        *from_file.entry(line.to_string()).or_insert(0) += 1;
    }
    assert_eq!(from_file, bronze_content(&lake));

    // Legacy shapes, mapped to schema 1 by replay.
    let patient = *read_reference(&lake)
        .expect("reference")
        .keys()
        .next()
        .expect("patient");
    let legacy = format!(
        "{{\"device_id\":\"d4c2b1a0-1111-4222-8333-944455556666\",\"patient_id\":\"{patient}\",\"timestamp\":\"2026-03-03T10:00:00Z\",\"measurements\":{{\"freq_card\":88,\"freq_resp\":18,\"spo2_pct\":95.4,\"temp_corp\":36.9,\"temp_ambiente\":29.5,\"pct_hydratation\":78.5,\"activity\":34,\"heat_index\":31.2}},\"device_info\":{{\"battery_level\":77,\"signal_strength\":93,\"firmware_version\":\"2.1.3\"}},\"quality_indicators\":{{\"quality_flag\":\"ok\"}}}}\n"
    );
    let legacy_in = dir.path().join("legacy.jsonl");
    std::fs::write(&legacy_in, legacy).expect("write");
    let legacy_out = dir.path().join("legacy-out.jsonl");
    kidjamo()
        .args(["replay", "--input-format", "legacy", "--input"])
        .arg(&legacy_in)
        .arg("--to")
        .arg(format!("file://{}", legacy_out.display()))
        .assert()
        .success();
    let mapped = std::fs::read(&legacy_out).expect("out");
    let m = kidjamo::domain::wire::parse_json(mapped.trim_ascii_end()).expect("schema 1");
    assert_eq!(
        (
            m.vitals.heart_rate_bpm,
            m.vitals.activity_level,
            m.device.battery_pct
        ),
        (Some(88), Some(3), Some(77))
    );
}

fn scrape(port: u16) -> String {
    try_scrape(port).expect("metrics endpoint answers")
}

/// The metrics page, or `None` while nothing answers on `port`.
fn try_scrape(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in {text}"))
}

#[test]
fn replay_paces_by_rate_and_by_event_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let line = |i: u32, secs: u32| {
        format!(
            r#"{{"schema_version":1,"message_id":"{}","patient_id":"2f9a1c0e-7d33-4b7e-8f0e-6c1d2b3a4e5f","device_id":"d4c2b1a0-1111-4222-8333-944455556666","recorded_at":"2026-03-02T08:{:02}:{:02}Z","vitals":{{}},"device":{{}},"quality_flag":"ok"}}"#,
            Uuid::from_u128(i as u128),
            secs / 60,
            secs % 60
        )
    };
    let input = dir.path().join("in.jsonl");
    let out = dir.path().join("out.jsonl");
    // 300 records at 200/s: the last is due 1.495 s after the first.
    let lines: Vec<String> = (0..300).map(|i| line(i, 0)).collect();
    // Lines of `lines` replayed to a file with one pacing flag; the wall time it took.
    let paced_replay = |lines: &[String], flag: &str, value: &str| {
        std::fs::write(&input, lines.join("\n")).expect("write");
        let started = Instant::now();
        kidjamo()
            .args(["replay", flag, value, "--input"])
            .arg(&input)
            .arg("--to")
            .arg(format!("file://{}", out.display()))
            .assert()
            .success();
        started.elapsed()
    };
    let took = paced_replay(&lines, "--rate", "200");
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    assert_eq!(
        std::fs::read_to_string(&out).expect("out").lines().count(),
        300
    );
    // Event time 0, 60 and 120 s at 60×: two wall seconds.
    let lines: Vec<String> = [0, 60, 120]
        .iter()
        .enumerate()
        .map(|(i, s)| line(i as u32, *s))
        .collect();
    let took = paced_replay(&lines, "--speed", "60");
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    // Bad pacing is refused with the flag named.
    let bad = kidjamo()
        .args(["replay", "--rate", "0", "--input"])
        .arg(&input)
        .assert()
        .code(2);
    assert!(String::from_utf8_lossy(&bad.get_output().stderr).contains("--rate"));
}
