//! Batch ETL (SPEC §6): Bronze → Silver → Gold with Polars, one partition at a time, atomically.
//!
//! - `silver`: deduplication, enrichment and quarantine of one event day.
//! - `batch_alerts`: the stream's alert engine over Silver, day after day.
//! - `gold_daily`: `patient_daily`, `quality_daily`, `alerts_daily`.
//! - `window`: per-patient summaries over several days (`features_ml`, `patient_weekly`).
//! - `cohort`: `cohort_monthly`.
//! - `research`: the pseudonymised, k-anonymous research export.
//! - `daily`, `periodic`: the runs behind `kidjamo etl daily|weekly|monthly`, with manifests.
//! - `commit`: write aside, then swap partitions into place.

pub mod batch_alerts;
pub mod cohort;
pub mod commit;
pub mod daily;
pub mod frame;
pub mod gold_daily;
pub mod keys;
mod patient_summary;
pub mod periodic;
pub mod research;
pub mod rows;
mod scatter;
pub mod silver;
pub mod silver_plan;
pub mod window;

use std::path::{Path, PathBuf};

/// Logs, at debug level (`-v -v`), the seconds since this call each time the returned
/// function is called with the name of a step of `stage` just done.
pub(crate) fn step_timer(stage: &'static str) -> impl Fn(&str) {
    let started = std::time::Instant::now();
    move |step: &str| tracing::debug!(step, elapsed_s = started.elapsed().as_secs_f64(), "{stage}")
}

#[derive(Debug, thiserror::Error)]
pub enum EtlError {
    #[error("cannot read {path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error("{path} is missing; {hint}")]
    MissingInput { path: PathBuf, hint: String },
    #[error("{input}: {message}")]
    Schema { input: String, message: String },
    #[error("{stage}: {message}")]
    Polars { stage: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    #[error("{0}")]
    Argument(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl EtlError {
    pub fn input(path: &Path, e: impl std::fmt::Display) -> EtlError {
        EtlError::Input {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }

    pub fn polars(stage: &str, e: impl std::fmt::Display) -> EtlError {
        EtlError::Polars {
            stage: stage.to_string(),
            message: e.to_string(),
        }
    }
}
