//! The lake: its layout, the Bronze and quarantine writers, run manifests.

pub mod alert_quality;
pub mod alerts;
pub mod bronze;
pub mod bronze_sink;
pub mod layout;
pub mod manifest;
pub mod patient_data;
