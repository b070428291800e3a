//! `kidjamo serve`: the ingestion API. Devices POST measurements; valid ones go to the
//! measurements topic, rejected ones to the quarantine topic, and the answer waits for the broker.

use crate::context::Context;
use anyhow::{bail, Context as _, Result};
use clap::Args as ClapArgs;
use kidjamo::serve::http::{serve, App, ServeSettings};
use kidjamo::stream::kafka::{Compression, KafkaTarget};
use kidjamo::stream::source::InputFormat;
use kidjamo::stream::topics::ensure_topic;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(ClapArgs)]
pub struct Args {
    /// Address to listen on (default: serve.listen, 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// kafka://host:port[/topic] of the measurements (default: kafka.brokers and
    /// kafka.measurements_topic). Rejected records go to kafka.quarantine_topic on the same cluster.
    #[arg(long, value_name = "URL")]
    to: Option<String>,
    /// Also serve the earlier platform's routes, /iot/measurements and /ingest, whose bodies are
    /// mapped to schema_version 1.
    #[arg(long, value_enum, default_value_t = InputFormat::V1)]
    input_format: InputFormat,
    /// Device credentials file (default: serve.credentials_file; without one, the database's
    /// device_credentials table, from --database-url or database.url).
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
    /// PostgreSQL URL holding device_credentials (default: database.url or DATABASE_URL).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Largest request body in bytes (default: serve.max_body_bytes, 4 MiB).
    #[arg(long, value_name = "BYTES")]
    max_body_bytes: Option<usize>,
    /// Milliseconds a request waits for the broker before answering 503 (default:
    /// serve.ack_timeout_ms, 5000).
    #[arg(long, value_name = "MS")]
    ack_timeout_ms: Option<u64>,
    /// Compression of produced batches.
    #[arg(long, value_enum, default_value_t = Compression::Lz4)]
    compression: Compression,
    /// Threads answering requests (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(args: Args, ctx: &Context) -> Result<ExitCode> {
    let kafka = &ctx.config.kafka;
    let cfg = &ctx.config.serve;
    let to = args
        .to
        .clone()
        .unwrap_or_else(|| format!("kafka://{}/{}", kafka.brokers, kafka.measurements_topic));
    let target = KafkaTarget::parse(&to, &kafka.measurements_topic)?;
    let listen: SocketAddr = match args.listen {
        Some(a) => a,
        None => cfg
            .listen
            .parse()
            .with_context(|| format!("serve.listen {:?} is not host:port", cfg.listen))?,
    };
    let max_body_bytes = args.max_body_bytes.unwrap_or(cfg.max_body_bytes);
    let ack_timeout_ms = args.ack_timeout_ms.unwrap_or(cfg.ack_timeout_ms);
    if max_body_bytes == 0 || ack_timeout_ms == 0 {
        bail!("--max-body-bytes and --ack-timeout-ms must be positive");
    }
    let store = crate::context::credential_store(&args.credentials, &args.database_url, ctx)?;
    let partitions = kafka.partitions as i32;
    for topic in [&target.topic, &kafka.quarantine_topic] {
        ensure_topic(&target.brokers, topic, partitions, Duration::from_secs(10))
            .context("serve cannot start")?;
    }
    let settings = ServeSettings {
        listen,
        brokers: target.brokers.clone(),
        measurements_topic: target.topic.clone(),
        quarantine_topic: kafka.quarantine_topic.clone(),
        compression: args.compression,
        max_body_bytes,
        ack_timeout: Duration::from_millis(ack_timeout_ms),
        legacy_routes: args.input_format == InputFormat::Legacy,
        store: store.clone(),
    };
    let app = App::new(settings)
        .with_context(|| format!("serve cannot start (credentials: {})", store.describe()))?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads.filter(|n| *n > 0) {
        runtime.worker_threads(n);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    eprintln!(
        "kidjamo serve: http://{listen} → {target} (quarantine: {}), credentials: {}",
        kafka.quarantine_topic,
        store.describe()
    );
    runtime.block_on(serve(app, shutdown_signal()))?;
    eprintln!("kidjamo serve: stopped; in-flight requests answered and the producer flushed");
    Ok(ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
