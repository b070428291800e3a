//! The clinical alert engine of SPEC §4: per-vital tiers for the patient's age group, immediate
//! SpO₂ critical, pain, combinations C1–C5, device rules, persistence, cooldown and
//! auto-resolve — all on event time, so streaming and batch give the same alerts for the same
//! records. Pure: state is data (serialisable for checkpoints), time comes with the records.

mod actions;
mod engine;

pub use engine::{AlertEngine, EngineState, PatientContext};

use super::thresholds::Severity;
use super::time::UtcMillis;
use super::Vitals;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Open,
    Acknowledged,
    Escalated,
    Resolved,
    AutoResolved,
}

/// The alert record of SPEC §4.5.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: Uuid,
    pub patient_id: Uuid,
    pub device_id: Uuid,
    pub rule_id: String,
    pub severity: Severity,
    pub title: String,
    pub message: String,
    pub first_seen_at: UtcMillis,
    pub last_seen_at: UtcMillis,
    pub vitals_snapshot: Vitals,
    pub trigger_conditions: Vec<String>,
    pub suggested_actions: Vec<String>,
    pub status: AlertStatus,
    pub escalation_level: u8,
    /// Samples that met the condition while the alert was open.
    pub occurrences: u32,
}

/// What the engine tells its caller after a sample or a watermark.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertEvent {
    Opened(Alert),
    /// The condition came back inside the cooldown: the open alert was updated in place. The
    /// event carries no copy — its latest state is in the engine (`EngineState::open_alert`);
    /// copying it on every firing sample was most of the engine's cost.
    Updated {
        patient_id: Uuid,
        alert_id: Uuid,
    },
    AutoResolved(Alert),
}

impl AlertEvent {
    pub fn alert_id(&self) -> Uuid {
        match self {
            AlertEvent::Opened(a) | AlertEvent::AutoResolved(a) => a.alert_id,
            AlertEvent::Updated { alert_id, .. } => *alert_id,
        }
    }

    /// The alert as the event left it; `None` for an update (see `EngineState::open_alert`).
    pub fn alert(&self) -> Option<&Alert> {
        match self {
            AlertEvent::Opened(a) | AlertEvent::AutoResolved(a) => Some(a),
            AlertEvent::Updated { .. } => None,
        }
    }

    /// `alert`, by value.
    pub fn into_alert(self) -> Option<Alert> {
        match self {
            AlertEvent::Opened(a) | AlertEvent::AutoResolved(a) => Some(a),
            AlertEvent::Updated { .. } => None,
        }
    }
}

/// Namespace of alert ids (UUID v5 of patient, rule and first-fire time).
const ALERT_NAMESPACE: Uuid = Uuid::from_u128(0x6b1d_4c2e_9f0a_4d3b_8e7c_5a1f_2b3c_4d5e);

pub fn alert_id(patient_id: Uuid, rule_id: &str, first_seen_at: UtcMillis) -> Uuid {
    Uuid::new_v5(
        &ALERT_NAMESPACE,
        format!("{patient_id}/{rule_id}/{}", first_seen_at.0).as_bytes(),
    )
}

#[cfg(test)]
mod tests;
