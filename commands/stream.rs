//! `kidjamo stream`: the measurements topic into Bronze, quarantine and alerts, in micro-batches,
//! as a member of a consumer group.

use crate::context::Context;
use anyhow::{bail, Context as _, Result};
use clap::Args as ClapArgs;
use kidjamo::etl::silver::read_reference;
use kidjamo::stream::consume::{StreamSettings, Streamer};
use kidjamo::stream::kafka::{Compression, KafkaTarget};
use kidjamo::stream::metrics::{self, Metrics};
use kidjamo::stream::source::InputFormat;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(ClapArgs)]
pub struct Args {
    /// kafka://host:port[/topic] to consume (default: kafka.brokers and kafka.measurements_topic).
    #[arg(long, value_name = "URL")]
    from: Option<String>,
    /// Lake root (local path) for Bronze, quarantine, alerts and the checkpoint; its
    /// reference/patients.parquet gives each patient's birth date.
    #[arg(long)]
    lake: Option<PathBuf>,
    /// Consumer group (default: kafka.group). Processes of one group share the partitions.
    #[arg(long)]
    group: Option<String>,
    /// Topic the alerts are published to (default: kafka.alerts_topic).
    #[arg(long)]
    alerts_topic: Option<String>,
    /// Flush a micro-batch at least this often (seconds).
    #[arg(long, default_value_t = 5.0)]
    flush_interval: f64,
    /// Flush a micro-batch when it holds this many records.
    #[arg(long, default_value_t = 200_000)]
    flush_records: usize,
    /// Shape of the records on the topic.
    #[arg(long, value_enum, default_value_t = InputFormat::V1)]
    input_format: InputFormat,
    /// Compression of the alerts produced.
    #[arg(long, value_enum, default_value_t = Compression::Lz4)]
    compression: Compression,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464), at /metrics.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// Stop, after a last flush, once no record has come for this many seconds (draining a
    /// topic in a job; without it the stream runs until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECONDS")]
    until_idle: Option<f64>,
}

pub fn run(args: Args, ctx: &Context) -> Result<ExitCode> {
    let kafka = &ctx.config.kafka;
    let from = args
        .from
        .clone()
        .unwrap_or_else(|| format!("kafka://{}/{}", kafka.brokers, kafka.measurements_topic));
    let target = KafkaTarget::parse(&from, &kafka.measurements_topic)?;
    if !(args.flush_interval.is_finite() && args.flush_interval > 0.0) {
        bail!("--flush-interval must be a positive number of seconds");
    }
    if args.flush_records == 0 {
        bail!("--flush-records must be at least 1");
    }
    let lake = args
        .lake
        .clone()
        .unwrap_or_else(|| PathBuf::from(&ctx.config.lake.root));
    if lake.to_string_lossy().contains("://") {
        bail!(
            "stream writes to a local lake root; {} is a URL",
            lake.display()
        );
    }
    let reference = read_reference(&lake).context("stream needs the patients' birth dates")?;
    let settings = StreamSettings {
        brokers: target.brokers.clone(),
        topic: target.topic.clone(),
        alerts_topic: args
            .alerts_topic
            .clone()
            .unwrap_or_else(|| kafka.alerts_topic.clone()),
        group: args.group.clone().unwrap_or_else(|| kafka.group.clone()),
        lake: lake.clone(),
        flush_interval: Duration::from_secs_f64(args.flush_interval),
        flush_records: args.flush_records,
        input_format: args.input_format,
        compression: args.compression,
        partitions: kafka.partitions.max(1) as i32,
        until_idle: args.until_idle.map(Duration::from_secs_f64),
    };
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = &args.metrics_addr {
        let bound = metrics::serve(addr, metrics.clone())
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        eprintln!("metrics on http://{bound}/metrics");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("cannot install the SIGINT/SIGTERM handler")?;
    let streamer = Streamer::connect(&settings, &ctx.thresholds, &reference, metrics.clone())
        .context("stream cannot start")?;
    tracing::info!(run_id = streamer.run_id(), topic = %target, "streaming");
    let started = Instant::now();
    let show = !ctx.quiet && std::io::stderr().is_terminal();
    let mut status = |m: &Metrics| {
        if show {
            let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            eprint!(
                "\r\x1b[2K{:.0} s: {} consumed, {} in Bronze, {} quarantined, {} alerts opened, {} open, lag {}",
                started.elapsed().as_secs_f64(),
                get(&m.consumed),
                get(&m.written),
                get(&m.quarantined),
                m.alerts_opened(),
                m.open_alerts.load(Ordering::Relaxed),
                m.consumer_lag.load(Ordering::Relaxed),
            );
        }
    };
    let report = streamer.run(&stop, &mut status)?;
    if show {
        eprintln!();
    }
    let secs = started.elapsed().as_secs_f64();
    let reasons: Vec<String> = report
        .reasons
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    println!(
        "stream {}: {} records consumed in {:.1} s ({:.0}/s while busy) → {} Bronze, {} quarantined{}, {} already durable, {} stale (not alerted on); {} alerts opened; {} micro-batches.",
        report.run_id,
        report.consumed,
        secs,
        report.consumed as f64 / report.active_secs.max(1e-9),
        report.written,
        report.quarantined,
        if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) },
        report.skipped_durable,
        report.stale,
        report.alerts_opened,
        report.batches,
    );
    tracing::info!(
        polling_secs = report.polling_secs,
        waiting_secs = report.waiting_secs,
        flushing_secs = report.flushing_secs,
        flush_wait_secs = report.flush_wait_secs,
        "where the time went: inside the consumer's poll (polling thread), waiting for records (main loop), flushing (flushing thread), waiting for a flush (main loop)"
    );
    Ok(ExitCode::SUCCESS)
}
