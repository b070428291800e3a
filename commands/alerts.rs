//! `kidjamo alerts quality`: the alerts the lake holds, measured against the simulator's ground
//! truth.

use crate::context::Context;
use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use kidjamo::lake::alert_quality::evaluate;
use kidjamo::lake::layout::ALERT_DIRS;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, ValueEnum)]
pub enum Source {
    /// alerts/stream, written by `kidjamo stream`.
    Stream,
    /// alerts/batch, written by `kidjamo etl daily`.
    Batch,
}

#[derive(Subcommand)]
pub enum AlertsCommand {
    /// Sensitivity per episode type, false alerts per patient-day and time to detection.
    Quality {
        /// Lake root holding ground_truth/episodes.parquet (from `simulate`) and the alerts.
        #[arg(long)]
        lake: Option<PathBuf>,
        /// Which alerts to measure.
        #[arg(long, value_enum, default_value_t = Source::Stream)]
        source: Source,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: AlertsCommand, ctx: &Context) -> Result<ExitCode> {
    let AlertsCommand::Quality { lake, source, json } = cmd;
    let lake = lake.unwrap_or_else(|| PathBuf::from(&ctx.config.lake.root));
    let dir = match source {
        Source::Stream => ALERT_DIRS[0],
        Source::Batch => ALERT_DIRS[1],
    };
    let q = evaluate(&lake, dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&q)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "alert quality of {dir} against ground_truth/episodes ({} patient-days)",
        q.patient_days
    );
    println!(
        "{:<22} {:>8} {:>8} {:>11} {:>22}",
        "episode type", "episodes", "detected", "sensitivity", "median min to detect"
    );
    for (kind, e) in &q.by_episode_type {
        println!(
            "{:<22} {:>8} {:>8} {:>10.1}% {:>22}",
            kind,
            e.episodes,
            e.detected,
            e.sensitivity * 100.0,
            e.median_minutes_to_detection
                .map(|m| format!("{m:.1}"))
                .unwrap_or_else(|| "-".into())
        );
    }
    println!(
        "clinical alerts (alert/critical): {}; outside any episode: {} = {:.2} per patient-day; warnings: {:.2} per patient-day",
        q.clinical_alerts, q.false_alerts, q.false_alerts_per_patient_day, q.warnings_per_patient_day
    );
    Ok(ExitCode::SUCCESS)
}
