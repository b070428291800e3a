//! The `kidjamo` command line: parses arguments, sets up logging, loads configuration and
//! thresholds, dispatches to one subcommand, and maps the outcome to an exit code
//! (0 success, 1 "ran, and the answer is no", 2 error).

mod alerts;
mod audit;
mod config_cmd;
mod context;
mod db;
mod devices;
mod etl;
mod patient;
mod progress;
mod replay;
mod serve;
mod simulate;
mod stream;

use clap::{Parser, Subcommand};
use context::Context;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Data-engineering toolkit for remote monitoring of people living with sickle-cell disease.
#[derive(Parser)]
#[command(name = "kidjamo", version, about, propagate_version = true)]
struct Cli {
    /// Configuration file (default: ./kidjamo.yaml when present, or $KIDJAMO_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Clinical thresholds file (default: the shipped reference thresholds).
    #[arg(long, global = true, value_name = "FILE")]
    thresholds: Option<PathBuf>,
    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// No progress bar.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a synthetic cohort and its measurements, deterministically from --seed.
    Simulate(simulate::Args),
    /// Send measurements (JSONL or Bronze Parquet) to Kafka or a file, paced or as fast as possible.
    Replay(replay::Args),
    /// Consume measurements from Kafka into Bronze, quarantine and real-time alerts.
    Stream(stream::Args),
    /// HTTP ingestion API: devices POST measurements, validated, into Kafka.
    Serve(serve::Args),
    /// Device credentials for the ingestion API.
    #[command(subcommand)]
    Devices(devices::DevicesCommand),
    /// Batch ETL: Bronze → Silver → Gold (daily), and the weekly and monthly Gold tables.
    #[command(subcommand)]
    Etl(etl::EtlCommand),
    /// Inspect the effective configuration.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// PostgreSQL: migrations, partitions, dashboards, escalation, loading the lake.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Back up one patient's data to an archive.
    #[command(subcommand)]
    Backup(patient::BackupCommand),
    /// Restore one patient's data from an archive.
    #[command(subcommand)]
    Restore(patient::RestoreCommand),
    /// Erase one patient's data (right to erasure).
    #[command(subcommand)]
    Erase(patient::EraseCommand),
    /// Alert quality against the simulator's ground truth.
    #[command(subcommand)]
    Alerts(alerts::AlertsCommand),
    /// Audit reports: accesses, data rights, security posture, data quality, pipeline runs.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let outcome = Context::new(
        cli.config.as_deref(),
        cli.thresholds.as_deref(),
        cli.quiet,
        cli.verbose,
    )
    .and_then(|ctx| match cli.command {
        Command::Simulate(args) => simulate::run(args, &ctx),
        Command::Replay(args) => replay::run(args, &ctx),
        Command::Stream(args) => stream::run(args, &ctx),
        Command::Serve(args) => serve::run(args, &ctx),
        Command::Devices(cmd) => devices::run(cmd, &ctx),
        Command::Config(cmd) => config_cmd::run(cmd, &ctx),
        Command::Etl(cmd) => etl::run(cmd, &ctx),
        Command::Db(cmd) => db::run(cmd, &ctx),
        Command::Backup(cmd) => patient::backup(cmd, &ctx),
        Command::Restore(cmd) => patient::restore(cmd, &ctx),
        Command::Erase(cmd) => patient::erase(cmd, &ctx),
        Command::Audit(cmd) => audit::run(cmd, &ctx),
        Command::Alerts(cmd) => alerts::run(cmd, &ctx),
    });
    match outcome {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("caused by: {cause}");
            }
            if let Some(hint) = context::hint_for(&err) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
