//! `kidjamo replay`: measurements from JSON Lines or Bronze Parquet to a Kafka topic (or a
//! file), as fast as possible or paced, with every record accounted for.

use crate::context::Context;
use crate::progress::Bar;
use anyhow::{bail, Context as _, Result};
use clap::Args as ClapArgs;
use kidjamo::progress::Progress;
use kidjamo::stream::kafka::{Compression, KafkaTarget};
use kidjamo::stream::pacing::{Pace, Pacer};
use kidjamo::stream::produce::{FileSink, KafkaSink, RecordSink};
use kidjamo::stream::source::{for_each_record, Flow, Input, InputFormat};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(ClapArgs)]
pub struct Args {
    /// A .jsonl file, a Bronze .parquet file or folder, or a lake root (its
    /// landing/measurements.jsonl, else its bronze/measurements).
    #[arg(long, value_name = "PATH")]
    input: PathBuf,
    /// kafka://host:port[/topic] (default: kafka.brokers and kafka.measurements_topic), or
    /// file:///path/out.jsonl to write the same stream to a file.
    #[arg(long, value_name = "URL")]
    to: Option<String>,
    /// Shape of the input records.
    #[arg(long, value_enum, default_value_t = InputFormat::V1)]
    input_format: InputFormat,
    /// Event-time pacing: N× real time (60 = one simulated minute per second).
    #[arg(long, conflicts_with = "rate")]
    speed: Option<f64>,
    /// Fixed pacing: records per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Compression of produced batches.
    #[arg(long, value_enum, default_value_t = Compression::Lz4)]
    compression: Compression,
    /// Partitions of the topic when replay creates it (default: kafka.partitions).
    #[arg(long)]
    partitions: Option<u32>,
}

pub fn run(args: Args, ctx: &Context) -> Result<ExitCode> {
    let pace = match (args.speed, args.rate) {
        (Some(s), _) if !(s.is_finite() && s > 0.0) => {
            bail!("--speed must be a positive number, got {s}")
        }
        (_, Some(r)) if !(r.is_finite() && r > 0.0) => {
            bail!("--rate must be a positive number, got {r}")
        }
        (Some(s), _) => Pace::Speed(s),
        (_, Some(r)) => Pace::Rate(r),
        _ => Pace::AsFastAsPossible,
    };
    let input = Input::resolve(&args.input)?;
    let kafka = &ctx.config.kafka;
    let to = args
        .to
        .clone()
        .unwrap_or_else(|| format!("kafka://{}/{}", kafka.brokers, kafka.measurements_topic));
    let partitions = args.partitions.unwrap_or(kafka.partitions);
    if partitions == 0 {
        bail!("--partitions must be at least 1");
    }
    let mut sink: Box<dyn RecordSink> = if let Some(path) = to.strip_prefix("file://") {
        Box::new(FileSink::create(std::path::Path::new(path))?)
    } else {
        let target = KafkaTarget::parse(&to, &kafka.measurements_topic)?;
        Box::new(
            KafkaSink::connect(target, args.compression, partitions as i32)
                .context("replay cannot start; nothing was sent")?,
        )
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("cannot install the Ctrl-C handler")?;

    let bar = Bar::new("replay", ctx.quiet, ctx.verbose);
    bar.on_start(input.size_hint());
    let started = Instant::now();
    let mut pacer = Pacer::new(pace);
    let mut sent = 0u64;
    let mut last_status = Instant::now();
    for_each_record(
        &input,
        args.input_format,
        &mut |units| bar.on_advance(units),
        &mut |record| {
            pacer.wait(record.timestamp_ms);
            sink.send(&record)?;
            sent += 1;
            if last_status.elapsed().as_millis() >= 250 {
                let secs = started.elapsed().as_secs_f64().max(1e-9);
                bar.on_stage(&format!(
                    "{sent} sent, {:.0}/s, {} unacknowledged, {:.1} s behind schedule",
                    sent as f64 / secs,
                    sink.in_flight(),
                    pacer.behind.as_secs_f64()
                ));
                last_status = Instant::now();
            }
            Ok(if interrupted.load(Ordering::SeqCst) {
                Flow::Stop
            } else {
                Flow::Continue
            })
        },
    )?;
    bar.on_stage("waiting for the last acknowledgements");
    let delivery = sink.finish()?;
    bar.on_finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replay: {} records from {} to {} in {:.1} s ({:.0} records/s): {} acknowledged, {} failed{}{}.",
        delivery.sent,
        input.describe(),
        to,
        secs,
        delivery.sent as f64 / secs.max(1e-9),
        delivery.acknowledged,
        delivery.failed,
        if delivery.resent > 0 {
            format!(
                " ({} sent again after the broker refused the producer's sequence)",
                delivery.resent
            )
        } else {
            String::new()
        },
        if interrupted.load(Ordering::SeqCst) {
            " (interrupted)"
        } else {
            ""
        }
    );
    if let Some(loss) = delivery.loss() {
        eprintln!("error: {loss}");
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}
