//! `kidjamo audit report`: what an auditor or a data-protection officer asks for — who
//! changed or accessed which patient's data, the exports, backups, restores and erasures, the
//! security posture of the database, data quality from Gold and the pipeline runs — as
//! Markdown, a self-contained HTML page with charts, or JSON (`AuditReport`, documented in the
//! README; fields are only ever added).

pub mod activity;
pub mod lake;
pub mod posture;
pub mod render;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Bumped when a field changes meaning or disappears (never for an added field).
pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub report_version: u32,
    pub kidjamo_version: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub patient: Option<Uuid>,
    /// The day the posture checks were made for (partitions ahead are counted from it).
    pub as_of: NaiveDate,
    pub database: String,
    pub lake: Option<String>,
    pub security_checks: Vec<posture::Check>,
    pub failed_checks: usize,
    pub activity: Vec<activity::PatientActivity>,
    pub data_rights: Vec<activity::DataRightsEvent>,
    pub data_quality: Vec<lake::DayQuality>,
    pub pipeline_runs: Vec<lake::PipelineRun>,
}
