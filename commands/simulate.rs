//! `kidjamo simulate`: flags over configuration, then the library's simulate job.

use crate::context::Context;
use crate::progress::Bar;
use anyhow::{anyhow, bail, Context as _, Result};
use chrono::{DateTime, NaiveDate, Utc};
use clap::ValueEnum;
use kidjamo::config::object_store_options;
use kidjamo::domain::people::Genotype;
use kidjamo::domain::time::{UtcMillis, MS_PER_DAY};
use kidjamo::jobs::simulate::{self as job, Flow, MeasurementFormat, SimulateJob};
use kidjamo::simulate::config::{EpisodeKind, SimulationConfig};
use kidjamo::storage::Destination;
use kidjamo::stream::kafka::{Compression, KafkaTarget};
use kidjamo::stream::produce::SimulatedToKafka;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// JSON Lines, the wire format (landing/measurements.jsonl).
    Jsonl,
    /// One flat CSV row per sample (landing/measurements.csv).
    Csv,
    /// Bronze Parquet partitioned by event_date, invalid records in quarantine.
    Parquet,
}

#[derive(clap::Args)]
pub struct Args {
    /// Number of patients.
    #[arg(long, allow_negative_numbers = true)]
    patients: Option<i64>,
    /// Days of data from --start.
    #[arg(long, allow_negative_numbers = true, conflicts_with = "end")]
    days: Option<i64>,
    /// First instant, RFC 3339 or YYYY-MM-DD (UTC midnight). With --live, defaults to now.
    #[arg(long)]
    start: Option<String>,
    /// End instant instead of --days (a whole number of days after --start).
    #[arg(long)]
    end: Option<String>,
    /// Random seed: the same seed and arguments give byte-identical files.
    #[arg(long)]
    seed: Option<u64>,
    /// Sampling interval per patient, e.g. 30s, 5s, 1m.
    #[arg(long, value_name = "DURATION")]
    interval: Option<String>,
    /// Measurement output format.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Output: a local folder, file://… or s3://bucket/prefix (default: lake.root).
    #[arg(long, value_name = "PATH_OR_URL")]
    out: Option<String>,
    /// Replace kidjamo's folders in a non-empty output folder.
    #[arg(long)]
    overwrite: bool,
    /// Send the measurements to kafka://host:port[/topic] instead of writing them (reference
    /// tables and ground truth still go to --out).
    #[arg(long, value_name = "URL")]
    to: Option<String>,
    /// Multiplies every episode onset rate (crises, infections, chest syndrome, heat stress).
    #[arg(long)]
    crisis_rate: Option<f64>,
    /// Share of malformed records (bad JSON, wrong types, out-of-range values, unknown patient).
    #[arg(long)]
    fault_rate: Option<f64>,
    /// Inject no device or delivery faults at all.
    #[arg(long, conflicts_with = "fault_rate")]
    no_faults: bool,
    /// Worker threads (default: all cores). Output does not depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// Pace output by the wall clock (for demos) instead of generating as fast as possible.
    /// Ctrl-C ends a live run and keeps what it generated; it ends any other run without output.
    #[arg(long)]
    live: bool,
}

pub fn run(args: Args, ctx: &Context) -> Result<ExitCode> {
    let started = Instant::now();
    if let Some(n) = args.threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("cannot set up worker threads")?;
    }
    let cfg = simulation_config(&args, ctx)?;
    let format = match args.format {
        Some(Format::Jsonl) => MeasurementFormat::Jsonl,
        Some(Format::Csv) => MeasurementFormat::Csv,
        Some(Format::Parquet) => MeasurementFormat::Parquet,
        None => match ctx.config.simulate.format.as_str() {
            "jsonl" => MeasurementFormat::Jsonl,
            "csv" => MeasurementFormat::Csv,
            "parquet" => MeasurementFormat::Parquet,
            other => bail!("simulate.format {other:?} is not one of jsonl, csv, parquet"),
        },
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| ctx.config.lake.root.clone());
    let destination = Destination::parse(&out, &object_store_options(&ctx.env))?;
    let live_window_ms = args.live.then_some(cfg.interval_ms);
    let measurements_to: Option<Box<dyn kidjamo::output::MeasurementSink>> = match &args.to {
        None => None,
        Some(to) => {
            let kafka = &ctx.config.kafka;
            let target = KafkaTarget::parse(to, &kafka.measurements_topic)?;
            Some(Box::new(
                SimulatedToKafka::connect(target, Compression::Lz4, kafka.partitions.max(1) as i32)
                    .context("simulate cannot start; nothing was written")?,
            ))
        }
    };
    let event_start = cfg.start;
    let wall_start = Instant::now();
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("cannot install the Ctrl-C handler")?;
    let mut pace = |window_end: UtcMillis| {
        if args.live {
            let due =
                wall_start + Duration::from_millis((window_end.0 - event_start.0).max(0) as u64);
            // Sleep in short steps so that Ctrl-C is honoured promptly.
            while !interrupted.load(Ordering::SeqCst) {
                match due.checked_duration_since(Instant::now()) {
                    Some(wait) => std::thread::sleep(wait.min(Duration::from_millis(100))),
                    None => break,
                }
            }
        }
        if interrupted.load(Ordering::SeqCst) {
            Flow::Stop
        } else {
            Flow::Continue
        }
    };
    tracing::info!(
        patients = cfg.patients,
        days = cfg.days,
        seed = cfg.seed,
        "simulating"
    );
    let bar = Bar::new("simulate", ctx.quiet, ctx.verbose);
    let report = job::run(
        SimulateJob {
            config: cfg.clone(),
            format,
            destination,
            overwrite: args.overwrite,
            thresholds_version: ctx.thresholds.version,
            live_window_ms,
            measurements_to,
        },
        &bar,
        &mut pace,
    )
    .with_context(|| format!("simulate into {out} failed; nothing was written there"))?;
    let c = |k: &str| report.counts.get(k).copied().unwrap_or(0);
    let faults: u64 = report
        .counts
        .iter()
        .filter(|(k, _)| k.starts_with("faults."))
        .map(|(_, v)| v)
        .sum();
    let episodes: u64 = report
        .counts
        .iter()
        .filter(|(k, _)| k.starts_with("episodes."))
        .map(|(_, v)| v)
        .sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "simulate {}: {} patients over {} days → {} measurements emitted ({}), {} written, {} quarantined; {} episodes, {} injected faults; {} files in {} in {:.1} s ({:.0} measurements/s).",
        report.run_id,
        cfg.patients,
        cfg.days,
        c("records.emitted"),
        args.to.as_deref().unwrap_or(format.as_str()),
        c("records.written"),
        c("records.quarantined"),
        episodes,
        faults,
        report.files.len(),
        report.destination,
        secs,
        c("records.emitted") as f64 / secs.max(1e-9),
    );
    Ok(ExitCode::SUCCESS)
}

fn parse_instant(flag: &str, text: &str) -> Result<UtcMillis> {
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(UtcMillis::from_date(d));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|dt| UtcMillis(dt.with_timezone(&Utc).timestamp_millis()))
        .map_err(|_| anyhow!("{flag} {text:?} is not a date (YYYY-MM-DD) or an RFC 3339 instant"))
}

/// `30s`, `5m`, `1h`, `500ms` or a number of seconds.
fn parse_interval(text: &str) -> Result<i64> {
    let t = text.trim();
    let (num, unit_ms) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        (t, 1000.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| anyhow!("--interval {text:?} is not a duration such as 30s, 1m or 5"))?;
    Ok((v * unit_ms).round() as i64)
}

fn simulation_config(args: &Args, ctx: &Context) -> Result<SimulationConfig> {
    let sc = &ctx.config.simulate;
    let patients = args.patients.unwrap_or(i64::from(sc.patients));
    if patients < 1 {
        bail!("--patients must be at least 1 (got {patients})");
    }
    let patients =
        u32::try_from(patients).map_err(|_| anyhow!("--patients {patients} is too large"))?;
    let start = match &args.start {
        Some(s) => parse_instant("--start", s)?,
        None if args.live => UtcMillis(Utc::now().timestamp() * 1000),
        None => parse_instant("simulate.start", &sc.start)?,
    };
    let days = match (&args.end, args.days) {
        (Some(end), _) => {
            let end = parse_instant("--end", end)?;
            if end.0 <= start.0 {
                bail!("--end {} is not after --start {}", end, start);
            }
            let span = end.0 - start.0;
            if span % MS_PER_DAY != 0 {
                bail!(
                    "--end must be a whole number of days after --start (got {:.2} days)",
                    span as f64 / MS_PER_DAY as f64
                );
            }
            span / MS_PER_DAY
        }
        (None, Some(d)) => d,
        (None, None) => i64::from(sc.days),
    };
    if days < 1 {
        bail!("--days must be at least 1 (got {days})");
    }
    let mut cfg = SimulationConfig::new(
        args.seed.unwrap_or(sc.seed),
        patients,
        start,
        u32::try_from(days).map_err(|_| anyhow!("--days {days} is too large"))?,
    );
    cfg.interval_ms = match &args.interval {
        Some(i) => parse_interval(i)?,
        None => (sc.interval_s * 1000.0).round() as i64,
    };
    cfg.crisis_rate = args.crisis_rate.unwrap_or(sc.crisis_rate);
    for (name, weight) in &sc.genotype_mix {
        let g = Genotype::parse(name).ok_or_else(|| {
            anyhow!(
                "simulate.genotype_mix: unknown genotype {name:?} (SS, SC, AS, Sβ0/Sb0, Sβ+/Sb+)"
            )
        })?;
        cfg.genotype_mix.insert(g, *weight);
    }
    for (kind, rates) in &sc.episode_rates {
        let k = EpisodeKind::parse(kind).ok_or_else(|| {
            anyhow!("simulate.episode_rates: unknown episode type {kind:?} (vaso_occlusive_crisis, infection_fever, acute_chest_syndrome, dehydration_heat)")
        })?;
        for (name, rate) in rates {
            let g = Genotype::parse(name).ok_or_else(|| {
                anyhow!("simulate.episode_rates.{kind}: unknown genotype {name:?}")
            })?;
            cfg.episode_rates.0.entry(k).or_default().insert(g, *rate);
        }
    }
    let f = &sc.faults;
    let d = &mut cfg.faults;
    for (slot, value) in [
        (&mut d.malformed, f.malformed),
        (&mut d.duplicate, f.duplicate),
        (&mut d.late, f.late),
        (&mut d.motion, f.motion),
        (&mut d.sensor_drop_per_day, f.sensor_drop_per_day),
        (&mut d.flatline_per_day, f.flatline_per_day),
        (&mut d.clock_skew_per_day, f.clock_skew_per_day),
    ] {
        if let Some(v) = value {
            *slot = v;
        }
    }
    if let Some(r) = args.fault_rate {
        cfg.faults.malformed = r;
    }
    if args.no_faults {
        cfg.faults = kidjamo::simulate::FaultRates::none();
    }
    cfg.validate()
        .map_err(|e| anyhow!("invalid simulation settings: {e}"))?;
    Ok(cfg)
}
