//! `kidjamo simulate` as a library call: cohort and ground truth tables, measurements through a
//! sink, a streamed faults file and a manifest, staged and then committed.

use super::simulate_tables::{cohort_tables, episodes_table};
use crate::domain::wire::push_uuid;
use crate::domain::UtcMillis;
use crate::lake::bronze_sink::BronzeSink;
use crate::lake::layout;
use crate::lake::manifest::Manifest;
use crate::output::csv::{csv_sink, push_csv_field};
use crate::output::lines::jsonl_sink;
use crate::output::{HashedFile, MeasurementSink, OutputError, WrittenFile};
use crate::progress::Progress;
use crate::simulate::config::ConfigError;
use crate::simulate::{cohort, FaultRecord, SimulationConfig, Simulator};
use crate::storage::{Destination, Staging, StorageError};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeasurementFormat {
    Jsonl,
    Csv,
    Parquet,
}

impl MeasurementFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            MeasurementFormat::Jsonl => "jsonl",
            MeasurementFormat::Csv => "csv",
            MeasurementFormat::Parquet => "parquet",
        }
    }
}

pub struct SimulateJob {
    pub config: SimulationConfig,
    pub format: MeasurementFormat,
    pub destination: Destination,
    pub overwrite: bool,
    pub thresholds_version: u32,
    /// Window length for `--live` (None: as fast as possible).
    pub live_window_ms: Option<i64>,
    /// Where the measurements go instead of a file in `format` (`--to kafka://…`).
    pub measurements_to: Option<Box<dyn MeasurementSink>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("invalid simulation settings: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("interrupted before the end of the range; nothing was written")]
    Interrupted,
}

/// What the caller wants after a window: go on, or stop (Ctrl-C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

#[derive(Debug, Clone)]
pub struct SimulateReport {
    pub run_id: String,
    pub destination: String,
    pub counts: BTreeMap<String, u64>,
    pub files: Vec<WrittenFile>,
}

/// A stable id for the run: same settings, same id, same file names.
pub fn run_id(cfg: &SimulationConfig, format: MeasurementFormat) -> String {
    let canonical = format!("{cfg:?}|{}", format.as_str());
    let digest = Sha256::digest(canonical.as_bytes());
    format!("sim-{}", &hex::encode(digest)[..12])
}

/// Runs the simulation. `pace` is called after each window with its end (event time); the
/// command line uses it to follow the wall clock with `--live` and to stop on Ctrl-C. A live
/// run that is stopped commits what it generated (its manifest says where it stopped); any
/// other stopped run writes nothing.
pub fn run(
    job: SimulateJob,
    progress: &dyn Progress,
    pace: &mut dyn FnMut(UtcMillis) -> Flow,
) -> Result<SimulateReport, SimulateError> {
    job.config.validate()?;
    let cfg = &job.config;
    let run_id = run_id(cfg, job.format);
    let destination = job.destination.describe();
    let staging = Staging::create(
        job.destination,
        &run_id,
        job.overwrite,
        &layout::SIMULATE_OWNED,
    )?;
    let root = staging.root().to_path_buf();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut files: Vec<WrittenFile> = Vec::new();

    let cohort = cohort::generate(cfg);
    for table in cohort_tables(&cohort) {
        counts.insert(format!("rows.{}", table.name), table.rows() as u64);
        files.extend(table.write(&root, layout::REFERENCE_DIR)?);
    }

    let mut sim = Simulator::new(cfg, &cohort);
    if let Some(w) = job.live_window_ms {
        sim.set_window(w);
    }
    let episodes: Vec<_> = sim.episodes().collect();
    for e in &episodes {
        *counts
            .entry(format!("episodes.{}", e.kind.as_str()))
            .or_insert(0) += 1;
    }
    let table = episodes_table(&episodes);
    counts.insert("rows.episodes".into(), table.rows() as u64);
    files.extend(table.write(&root, layout::GROUND_TRUTH_DIR)?);

    let mut sink: Box<dyn MeasurementSink> = match job.measurements_to {
        Some(sink) => sink,
        None => match job.format {
            MeasurementFormat::Jsonl => Box::new(jsonl_sink(
                &root,
                &format!("{}/measurements.jsonl", layout::LANDING_DIR),
            )?),
            MeasurementFormat::Csv => Box::new(csv_sink(
                &root,
                &format!("{}/measurements.csv", layout::LANDING_DIR),
            )?),
            MeasurementFormat::Parquet => {
                let patients = cohort.patients.iter().map(|p| p.patient_id).collect();
                Box::new(BronzeSink::new(&root, &run_id, "simulate", patients))
            }
        },
    };
    let mut faults = FaultsFile::create(&root)?;
    const PROGRESS_UNITS: u64 = 10_000;
    progress.on_start(PROGRESS_UNITS);
    let mut reported = 0;
    let mut stopped_at = None;
    // Generate the next window while the sink writes this one: the two overlap on two cores.
    let mut next = sim.next_chunk();
    while let Some(chunk) = next {
        let (following, written) = rayon::join(|| sim.next_chunk(), || sink.write_chunk(&chunk));
        written?;
        next = following;
        faults.write(&chunk.faults, &mut counts)?;
        let done = (sim.progress() * PROGRESS_UNITS as f64) as u64;
        progress.on_advance(done.saturating_sub(reported));
        reported = reported.max(done);
        if pace(chunk.window_end) == Flow::Stop && next.is_some() {
            if job.live_window_ms.is_none() {
                return Err(SimulateError::Interrupted);
            }
            stopped_at = Some(chunk.window_end);
            break;
        }
    }
    progress.on_finish();
    let report = sink.finish()?;
    files.extend(report.files);
    files.push(faults.finish()?);
    counts.insert("records.emitted".into(), report.records_in);
    counts.insert("records.written".into(), report.records_out);
    counts.insert("records.quarantined".into(), report.quarantined);

    files.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = Manifest {
        run_id: run_id.clone(),
        command: "simulate".into(),
        kidjamo_version: env!("CARGO_PKG_VERSION").into(),
        thresholds_version: job.thresholds_version,
        arguments: {
            let mut a = arguments(cfg, job.format);
            if let Some(t) = stopped_at {
                a.insert("stopped_at".into(), serde_json::json!(t.to_rfc3339()));
            }
            a
        },
        counts: counts.clone(),
        outputs: files.clone(),
    };
    let manifest_path = layout::manifest(&run_id);
    let mut mf = HashedFile::create(&root, &manifest_path)?;
    mf.write_all(&manifest.to_json())
        .map_err(|e| OutputError::io(&mf.absolute, e))?;
    let written = mf.finish(0)?;
    let mut all = files.clone();
    all.push(written);
    staging.commit(&all, &manifest_path)?;
    Ok(SimulateReport {
        run_id,
        destination,
        counts,
        files: all,
    })
}

fn arguments(
    cfg: &SimulationConfig,
    format: MeasurementFormat,
) -> BTreeMap<String, serde_json::Value> {
    use serde_json::json;
    let f = cfg.faults;
    BTreeMap::from([
        ("seed".to_string(), json!(cfg.seed)),
        ("patients".to_string(), json!(cfg.patients)),
        ("start".to_string(), json!(cfg.start.to_rfc3339())),
        ("days".to_string(), json!(cfg.days)),
        (
            "interval_s".to_string(),
            json!(cfg.interval_ms as f64 / 1000.0),
        ),
        ("format".to_string(), json!(format.as_str())),
        ("crisis_rate".to_string(), json!(cfg.crisis_rate)),
        (
            "genotype_mix".to_string(),
            json!(cfg
                .genotype_mix
                .iter()
                .map(|(g, w)| (g.as_str().to_string(), *w))
                .collect::<BTreeMap<_, _>>()),
        ),
        (
            "episode_rates".to_string(),
            json!(cfg
                .episode_rates
                .0
                .iter()
                .map(|(k, m)| (
                    k.as_str().to_string(),
                    m.iter()
                        .map(|(g, r)| (g.as_str().to_string(), *r))
                        .collect::<BTreeMap<_, _>>()
                ))
                .collect::<BTreeMap<_, _>>()),
        ),
        (
            "faults".to_string(),
            json!({
                "malformed": f.malformed, "duplicate": f.duplicate, "late": f.late, "motion": f.motion,
                "sensor_drop_per_day": f.sensor_drop_per_day, "flatline_per_day": f.flatline_per_day,
                "clock_skew_per_day": f.clock_skew_per_day,
            }),
        ),
    ])
}

/// `ground_truth/faults.csv`, streamed chunk by chunk so memory stays flat on long runs.
struct FaultsFile {
    file: HashedFile,
    rows: u64,
}

impl FaultsFile {
    fn create(root: &std::path::Path) -> Result<Self, OutputError> {
        let mut file =
            HashedFile::create(root, format!("{}/faults.csv", layout::GROUND_TRUTH_DIR))?;
        file.write_all(b"fault_type,patient_id,device_id,message_id,start_at,end_at,detail\n")
            .map_err(|e| OutputError::io(&file.absolute, e))?;
        Ok(FaultsFile { file, rows: 0 })
    }

    fn write(
        &mut self,
        faults: &[FaultRecord],
        counts: &mut BTreeMap<String, u64>,
    ) -> Result<(), OutputError> {
        let mut buf = Vec::with_capacity(faults.len() * 160);
        for f in faults {
            *counts
                .entry(format!("faults.{}", f.kind.as_str()))
                .or_insert(0) += 1;
            buf.extend_from_slice(f.kind.as_str().as_bytes());
            buf.push(b',');
            push_uuid(&mut buf, &f.patient_id);
            buf.push(b',');
            push_uuid(&mut buf, &f.device_id);
            buf.push(b',');
            if let Some(m) = f.message_id {
                push_uuid(&mut buf, &m);
            }
            buf.push(b',');
            f.start.write_rfc3339(&mut buf);
            buf.push(b',');
            f.end.write_rfc3339(&mut buf);
            buf.push(b',');
            push_csv_field(&mut buf, &f.detail);
            buf.push(b'\n');
        }
        self.rows += faults.len() as u64;
        self.file
            .write_all(&buf)
            .map_err(|e| OutputError::io(&self.file.absolute, e))
    }

    fn finish(self) -> Result<WrittenFile, OutputError> {
        self.file.finish(self.rows)
    }
}
