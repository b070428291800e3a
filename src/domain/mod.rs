//! Pure types and rules of the platform: measurements and their validity, quality codes,
//! people, age groups, thresholds and tiers, heat index. No IO, no clock, no async.

pub mod alerts;
pub mod heat_index;
pub mod measurement;
pub mod people;
pub mod quality;
pub mod rounding;
pub mod rules;
pub mod thresholds;
pub mod time;
pub mod wire;

pub use measurement::{DeviceStatus, Measurement, RejectReason, Rejection, Vitals};
pub use quality::QualityFlag;
pub use thresholds::{Severity, Thresholds, Tier, Vital};
pub use time::UtcMillis;
