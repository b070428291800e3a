//! The lake: its layout, the Bronze and quarantine writers, run manifests.

pub mod bronze;
pub mod bronze_sink;
pub mod layout;
pub mod manifest;
