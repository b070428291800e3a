//! The lake: its layout, the Bronze and quarantine writers, run manifests, and the local
//! mirror through which batch runs work on a lake in an object store.

pub mod alert_quality;
pub mod alerts;
pub mod bronze;
pub mod bronze_sink;
pub mod layout;
pub mod manifest;
pub mod patient_data;
pub mod remote;
