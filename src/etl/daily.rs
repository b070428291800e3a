//! `kidjamo etl daily`: for each day, Bronze → Silver → alerts → daily Gold and `features_ml`,
//! committed atomically per day with a manifest (`_runs/<run_id>.json`).

use super::batch_alerts;
use super::commit::PartitionWriter;
use super::frame::{partition_files, read_files, read_files_in_chunks, Columns};
use super::gold_daily::{self, DaySettings};
use super::keys::PatientKeyer;
use super::silver::{self, Reference, SilverCounts};
use super::window::{self, DayFrame};
use super::EtlError;
use crate::domain::alerts::EngineState;
use crate::domain::thresholds::Thresholds;
use crate::domain::time::{UtcMillis, MS_PER_DAY};
use crate::lake::layout;
use crate::output::tables::write_parquet;
use crate::output::WrittenFile;
use crate::progress::Progress;
use chrono::NaiveDate;
use polars::prelude::DataFrame;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Days of `patient_daily` behind `features_ml`.
pub const FEATURE_WINDOW_DAYS: i64 = 7;

pub struct DailyJob<'a> {
    pub root: PathBuf,
    pub dates: Vec<NaiveDate>,
    pub thresholds: &'a Thresholds,
    pub keyer: &'a PatientKeyer,
    pub expected_interval_s: f64,
}

/// A Bronze file the run read (their rows together are `counts.bronze_rows`).
#[derive(Debug, Clone, Serialize)]
pub struct InputFile {
    pub path: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DayReport {
    pub run_id: String,
    pub command: String,
    pub date: String,
    pub kidjamo_version: String,
    pub thresholds_version: u32,
    pub patient_key_id: String,
    pub expected_interval_s: f64,
    /// `continued` from the previous day's engine state, or `cold` when there was none.
    pub alert_state: String,
    pub inputs: Vec<InputFile>,
    pub counts: BTreeMap<String, u64>,
    pub outputs: Vec<WrittenFile>,
    pub durations_ms: BTreeMap<String, u64>,
}

impl DayReport {
    pub fn quarantined(&self) -> u64 {
        self.counts.get("quarantined").copied().unwrap_or(0)
    }
    pub fn bronze_rows(&self) -> u64 {
        self.counts.get("bronze_rows").copied().unwrap_or(0)
    }
}

pub fn run(job: &DailyJob<'_>, progress: &dyn Progress) -> Result<Vec<DayReport>, EtlError> {
    let mut reference = silver::read_reference(&job.root)?;
    let erased = crate::lake::patient_data::tombstones(&job.root)?;
    // An erased patient is unknown to every stage, not only to Silver.
    reference.retain(|id, _| !erased.contains(&crate::lake::patient_data::digest(id)));
    progress.on_start(job.dates.len() as u64 * 4);
    let mut reports = Vec::new();
    let mut freeing: Option<std::thread::JoinHandle<()>> = None;
    for &date in &job.dates {
        // One day in memory at a time: the previous day's frames are gone before the next
        // day's Bronze is read.
        if let Some(previous) = freeing.take() {
            let _ = previous.join();
        }
        let (report, silver_day) = run_day(job, &reference, &erased, date, progress)?;
        reports.push(report);
        freeing = free_in_background(silver_day);
    }
    // The last day's frames are left to their thread: whoever called goes on meanwhile (the
    // command prints its summary and ends, and the kernel takes back whatever is left).
    progress.on_finish();
    Ok(reports)
}

/// Drops `value` on a thread of its own. Handing a day of Silver (~3 GB) back to the allocator
/// and the kernel took ~0.45 s after the manifest was written (perf: `free`, glibc's
/// consolidation of small blocks, the kernel's unmapping).
/// Without a thread to spare, `value` is dropped at once (`spawn` drops the closure it could
/// not start).
fn free_in_background<T: Send + 'static>(value: T) -> Option<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("kidjamo-free".into())
        .spawn(move || drop(value))
        .ok()
}

/// The lake folders a run over `dates` reads: what a lake in an object store must bring into
/// its local mirror (`lake::remote`). Kept beside the code that reads them.
pub fn inputs(dates: &[NaiveDate]) -> Vec<String> {
    let mut out = vec![
        layout::REFERENCE_DIR.to_string(),
        crate::lake::patient_data::tombstones_dir().to_string(),
    ];
    let (Some(&first), Some(&last)) = (dates.first(), dates.last()) else {
        return out;
    };
    for &d in dates {
        out.push(layout::day_partition(layout::BRONZE_MEASUREMENTS, d));
    }
    if let Some(before) = first.pred_opt() {
        out.push(layout::day_partition(layout::ALERT_ENGINE_STATE, before));
    }
    // `features_ml` looks back over the earlier days of `patient_daily`.
    let window_start = first
        .checked_sub_days(chrono::Days::new(FEATURE_WINDOW_DAYS as u64 - 1))
        .unwrap_or(first);
    out.extend(
        window_start
            .iter_days()
            .take_while(|d| *d <= last)
            .map(|d| layout::day_partition(&layout::gold("patient_daily"), d)),
    );
    out
}

fn run_id(job: &DailyJob<'_>, date: NaiveDate, inputs: &[InputFile]) -> String {
    let mut h = Sha256::new();
    for i in inputs {
        h.update(format!("{}:{};", i.path, i.bytes));
    }
    h.update(format!(
        "{}|{}|{}|{}",
        job.thresholds.version,
        job.keyer.key_id(),
        job.expected_interval_s,
        env!("CARGO_PKG_VERSION")
    ));
    format!("etl-daily-{date}-{}", &hex::encode(h.finalize())[..12])
}

fn previous_state(root: &Path, date: NaiveDate) -> Result<Option<EngineState>, EtlError> {
    let Some(prev) = date.pred_opt() else {
        return Ok(None);
    };
    let path = root
        .join(layout::day_partition(layout::ALERT_ENGINE_STATE, prev))
        .join("state.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read(&path).map_err(|source| EtlError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| EtlError::input(&path, e))
}

/// Earlier days of `patient_daily` from the lake, for the rolling features.
fn earlier_patient_daily(
    root: &Path,
    date: NaiveDate,
    days: i64,
) -> Result<Vec<DayFrame>, EtlError> {
    let mut out = Vec::new();
    for back in 1..days {
        let Some(d) = date.checked_sub_days(chrono::Days::new(back as u64)) else {
            continue;
        };
        let dir = root.join(layout::day_partition(&layout::gold("patient_daily"), d));
        if let Some(frame) = read_files(&partition_files(&dir)?)? {
            out.push(DayFrame {
                day_index: days - 1 - back,
                frame,
            });
        }
    }
    Ok(out)
}

/// The table a day partition belongs to, as the manifest's counts name it (`silver.measurements`).
fn table_of(partition: &str) -> String {
    partition
        .split("/event_date=")
        .next()
        .unwrap_or(partition)
        .replace('/', ".")
}

/// Stage durations for the manifest, each the time since the previous lap.
struct Laps {
    clock: Instant,
    durations: BTreeMap<String, u64>,
}

impl Laps {
    fn start() -> Self {
        Laps {
            clock: Instant::now(),
            durations: BTreeMap::new(),
        }
    }

    fn lap(&mut self, name: &str) {
        self.record(name, self.clock.elapsed());
        self.clock = Instant::now();
    }

    fn record(&mut self, name: &str, took: std::time::Duration) {
        self.durations
            .insert(name.to_string(), took.as_millis() as u64);
    }
}

/// What a day of Silver gives besides its own file: the alerts and the daily Gold tables.
struct Derived {
    alerts: batch_alerts::DayAlerts,
    /// `continued` from the previous day's engine state, or `cold`.
    alert_state: &'static str,
    gold: Option<gold_daily::DailyGold>,
    features: Option<DataFrame>,
}

/// The alerts of the day (continuing the previous day's engine), then the daily Gold tables
/// and `features_ml`.
fn derive(
    job: &DailyJob<'_>,
    reference: &Reference,
    date: NaiveDate,
    silver_frame: &DataFrame,
    laps: &mut Laps,
    progress: &dyn Progress,
) -> Result<Derived, EtlError> {
    let prior = previous_state(&job.root, date)?;
    let alert_state = if prior.is_some() { "continued" } else { "cold" };
    let day_end = UtcMillis(UtcMillis::from_date(date).0 + MS_PER_DAY);
    // Silver is sorted by patient: each patient's rows, found once for the alerts and Gold.
    let ranges = if silver_frame.height() > 0 {
        batch_alerts::patient_ranges(Columns::new(silver_frame, "Silver").str("patient_id")?)
    } else {
        Vec::new()
    };
    let day_alerts = if silver_frame.height() > 0 {
        batch_alerts::run_day_in_ranges(
            silver_frame,
            &ranges,
            reference,
            job.thresholds,
            prior.unwrap_or_default(),
            day_end,
        )?
    } else {
        batch_alerts::advance_only(job.thresholds, prior.unwrap_or_default(), day_end)
    };
    laps.lap("alerts");

    progress.on_stage(&format!("{date}: Gold"));
    let settings = DaySettings {
        date,
        expected_interval_s: job.expected_interval_s,
    };
    let gold = if silver_frame.height() > 0 {
        Some(gold_daily::build(
            silver_frame,
            &ranges,
            &day_alerts.alerts,
            reference,
            job.thresholds,
            job.keyer,
            settings,
        )?)
    } else {
        None
    };
    let features = match &gold {
        Some(g) => {
            let mut days = earlier_patient_daily(&job.root, date, FEATURE_WINDOW_DAYS)?;
            days.push(DayFrame {
                day_index: FEATURE_WINDOW_DAYS - 1,
                frame: g.patient_daily.clone(),
            });
            let windows = window::summarise(&days)?;
            // Features for the patients seen on the day itself.
            let today: std::collections::HashSet<String> = g
                .patient_daily
                .column("patient_key")
                .ok()
                .and_then(|c| c.str().ok().cloned())
                .map(|c| c.iter().flatten().map(str::to_string).collect())
                .unwrap_or_default();
            let windows: Vec<_> = windows
                .into_iter()
                .filter(|w| today.contains(&w.patient_key))
                .collect();
            Some(window::to_frame(
                &windows,
                FEATURE_WINDOW_DAYS,
                settings.expected_samples(),
                false,
            )?)
        }
        None => None,
    };
    laps.lap("gold");
    Ok(Derived {
        alerts: day_alerts,
        alert_state,
        gold,
        features,
    })
}

/// The day's files besides Silver's, written into the staging folder (their partitions
/// declared replaced), and the rows each received.
struct OtherOutputs {
    files: Vec<WrittenFile>,
    /// `rows.<table>` counts of the manifest.
    rows: Vec<(String, u64)>,
    alerts: u64,
    alert_state: &'static str,
}

/// Writes Silver's quarantine, the batch alerts, the daily Gold tables, `features_ml` and the
/// alert engine's state at the end of the day.
fn write_other_outputs(
    writer: &mut PartitionWriter,
    run_id: &str,
    date: NaiveDate,
    quarantine: Option<DataFrame>,
    derived: Derived,
) -> Result<OtherOutputs, EtlError> {
    let Derived {
        alerts: day_alerts,
        alert_state,
        gold,
        features,
    } = derived;
    let mut outputs: Vec<(String, Option<DataFrame>)> = vec![
        (
            layout::day_partition(layout::QUARANTINE_SILVER, date),
            quarantine,
        ),
        (
            layout::day_partition(layout::ALERTS_BATCH, date),
            Some(
                crate::lake::alerts::alerts_frame(&day_alerts.alerts)
                    .map_err(|e| EtlError::polars("alerts", e))?,
            )
            .filter(|a| a.height() > 0),
        ),
    ];
    if let Some(g) = gold {
        outputs.push((
            layout::day_partition(&layout::gold("patient_daily"), date),
            Some(g.patient_daily),
        ));
        outputs.push((
            layout::day_partition(&layout::gold("quality_daily"), date),
            Some(g.quality_daily),
        ));
        outputs.push((
            layout::day_partition(&layout::gold("alerts_daily"), date),
            Some(g.alerts_daily).filter(|a| a.height() > 0),
        ));
    } else {
        for t in ["patient_daily", "quality_daily", "alerts_daily"] {
            outputs.push((layout::day_partition(&layout::gold(t), date), None));
        }
    }
    outputs.push((
        layout::day_partition(&layout::gold("features_ml"), date),
        features,
    ));
    let staging = writer.staging().to_path_buf();
    let mut written = OtherOutputs {
        files: Vec::new(),
        rows: Vec::new(),
        alerts: day_alerts.alerts.len() as u64,
        alert_state,
    };
    for (partition, frame) in outputs {
        writer.replace(&partition)?;
        let rows = frame.as_ref().map_or(0, |f| f.height() as u64);
        written
            .rows
            .push((format!("rows.{}", table_of(&partition)), rows));
        if let Some(df) = frame {
            let file = write_parquet(&staging, layout::batch_part(&partition, run_id), df)?;
            written.files.push(file);
        }
    }
    let state_partition = layout::day_partition(layout::ALERT_ENGINE_STATE, date);
    writer.replace(&state_partition)?;
    let state_path = format!("{state_partition}/state.json");
    let mut state_file = crate::output::HashedFile::create(&staging, &state_path)?;
    std::io::Write::write_all(
        &mut state_file,
        &serde_json::to_vec(&day_alerts.state).map_err(|e| EtlError::Internal(e.to_string()))?,
    )
    .map_err(|source| EtlError::Io {
        path: staging.join(&state_path),
        source,
    })?;
    written
        .files
        .push(state_file.finish(day_alerts.state.patient_count() as u64)?);
    Ok(written)
}

fn run_day(
    job: &DailyJob<'_>,
    reference: &Reference,
    erased: &std::collections::BTreeSet<String>,
    date: NaiveDate,
    progress: &dyn Progress,
) -> Result<(DayReport, Option<silver::SilverDay>), EtlError> {
    let mut laps = Laps::start();
    progress.on_stage(&format!("{date}: reading Bronze"));
    let bronze_dir = job
        .root
        .join(layout::day_partition(layout::BRONZE_MEASUREMENTS, date));
    let files = partition_files(&bronze_dir)?;
    let bronze = read_files_in_chunks(&files)?;
    let mut inputs = Vec::new();
    for f in &files {
        let bytes = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        inputs.push(InputFile {
            path: f
                .strip_prefix(&job.root)
                .unwrap_or(f)
                .to_string_lossy()
                .into_owned(),
            bytes,
        });
    }
    let run_id = run_id(job, date, &inputs);
    laps.lap("read_bronze");
    progress.on_advance(1);

    progress.on_stage(&format!("{date}: Silver"));
    let (silver_day, counts) = match bronze {
        Some(df) => {
            let day = silver::build(df, date, reference, job.thresholds, erased)?;
            if !day.counts.reconciles() {
                return Err(EtlError::Internal(format!(
                    "{date}: Bronze rows do not reconcile: {:?}",
                    day.counts
                )));
            }
            let counts = day.counts.clone();
            (Some(day), counts)
        }
        None => (None, SilverCounts::default()),
    };
    laps.lap("silver");
    progress.on_advance(1);

    progress.on_stage(&format!("{date}: alerts"));
    // Write aside, then swap each partition into place.
    let mut writer = PartitionWriter::create(&job.root, &run_id)?;
    let staging = writer.staging().to_path_buf();
    let silver_partition = layout::day_partition(layout::SILVER_MEASUREMENTS, date);
    writer.replace(&silver_partition)?;
    let empty = DataFrame::empty();
    let silver_frame = silver_day.as_ref().map_or(&empty, |d| &d.silver);
    // Silver's file is encoded while the alerts and Gold are computed from the same frame and
    // written: the engine and Gold leave a core idle now and then, the encoder fills it, and
    // the smaller files are done by the time Silver's is.
    let (silver_file, others) = std::thread::scope(|scope| {
        let silver_file = scope.spawn(|| {
            let started = Instant::now();
            let file = silver_day
                .as_ref()
                .map(|d| {
                    let relative = layout::batch_part(&silver_partition, &run_id);
                    silver::write(&staging, relative, d, job.thresholds)
                })
                .transpose();
            (file, started.elapsed())
        });
        let others =
            derive(job, reference, date, silver_frame, &mut laps, progress).and_then(|derived| {
                progress.on_advance(1);
                progress.on_stage(&format!("{date}: writing"));
                let quarantine = silver_day
                    .as_ref()
                    .map(|d| d.quarantine.clone())
                    .filter(|q| q.height() > 0);
                let others = write_other_outputs(&mut writer, &run_id, date, quarantine, derived);
                laps.lap("write");
                others
            });
        let silver_file = silver_file
            .join()
            .map_err(|_| EtlError::Internal("the Silver writer panicked".into()));
        (silver_file, others)
    });
    let (silver_file, silver_took) = silver_file?;
    laps.record("silver_write", silver_took);
    let others = others?;
    if let Some(file) = silver_file? {
        writer.add(file);
    }
    for file in others.files {
        writer.add(file);
    }

    let mut counts: BTreeMap<String, u64> = BTreeMap::from([
        ("bronze_rows".into(), counts.bronze_rows),
        ("duplicate_message_id".into(), counts.duplicate_message_id),
        ("duplicate_device_time".into(), counts.duplicate_device_time),
        ("erased".into(), counts.erased),
        ("quarantined".into(), counts.quarantined_total()),
        ("silver_rows".into(), counts.silver_rows),
        ("alerts".into(), others.alerts),
    ]);
    if let Some(d) = &silver_day {
        for (reason, n) in &d.counts.quarantined {
            counts.insert(format!("quarantined.{reason}"), *n);
        }
    }
    counts.insert(
        format!("rows.{}", table_of(&silver_partition)),
        silver_day.as_ref().map_or(0, |d| d.silver.height() as u64),
    );
    counts.extend(others.rows);
    let alert_state = others.alert_state;

    let mut report = DayReport {
        run_id: run_id.clone(),
        command: "etl daily".into(),
        date: date.to_string(),
        kidjamo_version: env!("CARGO_PKG_VERSION").into(),
        thresholds_version: job.thresholds.version,
        patient_key_id: job.keyer.key_id().to_string(),
        expected_interval_s: job.expected_interval_s,
        alert_state: alert_state.into(),
        inputs,
        counts,
        outputs: writer.files().to_vec(),
        durations_ms: laps.durations,
    };
    let manifest_path = layout::manifest(&run_id);
    let mut json =
        serde_json::to_vec_pretty(&report).map_err(|e| EtlError::Internal(e.to_string()))?;
    json.push(b'\n');
    let manifest = writer.commit(&manifest_path, &json)?;
    report.outputs.push(manifest);
    progress.on_advance(1);
    Ok((report, silver_day))
}
