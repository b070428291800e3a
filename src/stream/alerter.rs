//! The alert engine as the stream drives it — and as anyone who wants the stream's alerts
//! offline drives it (`StreamAlerter` is the one place the policy lives).
//!
//! Policy, on top of the engine's contract (`etl::batch_alerts`):
//! - each patient is evaluated on their own, exactly as in batch: before a sample, event time
//!   advances to that sample for that patient;
//! - a sample not newer than the newest already evaluated for its patient (a late or resent
//!   record) is stored in Bronze but does not feed the rules: alerting on the present must not
//!   be rewritten by the past. Batch, which sees a whole day at once, does use late samples;
//!   the two differ only there;
//! - each time the newest event time seen on the partition crosses a whole minute, event time
//!   advances to that minute for every patient of the partition, so a device that fell silent
//!   is reported without waiting for its next sample. The tick depends only on the partition's
//!   records, in their Kafka order — not on batches, restarts or the wall clock — so the same
//!   records always give the same alerts, and anyone can recompute them offline.

use crate::domain::alerts::{Alert, AlertEngine, AlertEvent, EngineState, PatientContext};
use crate::domain::thresholds::Thresholds;
use crate::domain::time::UtcMillis;
use crate::domain::Measurement;
use std::collections::HashMap;
use uuid::Uuid;

/// Event-time step at which silent devices are looked for.
pub const TICK_MS: i64 = 60_000;

fn tick_of(t: UtcMillis) -> i64 {
    t.0.div_euclid(TICK_MS) * TICK_MS
}

pub struct StreamAlerter<'t> {
    thresholds: &'t Thresholds,
    /// One single-patient engine state per patient.
    patients: HashMap<Uuid, EngineState>,
    /// Newest event time seen (valid records only).
    watermark: Option<UtcMillis>,
}

/// What became of a sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Fed {
    Evaluated(Vec<AlertEvent>),
    /// Not newer than the patient's newest evaluated sample.
    Stale,
}

impl<'t> StreamAlerter<'t> {
    pub fn new(thresholds: &'t Thresholds) -> Self {
        Self::resume(thresholds, EngineState::default(), None)
    }

    pub fn resume(
        thresholds: &'t Thresholds,
        state: EngineState,
        watermark: Option<UtcMillis>,
    ) -> Self {
        StreamAlerter {
            thresholds,
            patients: state.into_patients().into_iter().collect(),
            watermark,
        }
    }

    pub fn watermark(&self) -> Option<UtcMillis> {
        self.watermark
    }

    pub fn on_measurement(&mut self, ctx: &PatientContext, m: &Measurement) -> Fed {
        if self
            .patients
            .get(&ctx.patient_id)
            .and_then(|state| state.last_sample_at(&ctx.patient_id))
            .is_some_and(|last| m.recorded_at <= last)
        {
            return Fed::Stale;
        }
        let mut events = Vec::new();
        let tick = tick_of(m.recorded_at);
        if self.watermark.is_some_and(|w| tick > tick_of(w)) {
            events.extend(self.advance_to(UtcMillis(tick)));
        }
        let state = self.patients.entry(ctx.patient_id).or_default();
        let mut engine = AlertEngine::with_state(self.thresholds, std::mem::take(state));
        events.extend(engine.on_watermark(m.recorded_at));
        events.extend(engine.on_sample(ctx, m));
        *state = engine.into_state();
        self.watermark = Some(
            self.watermark
                .map_or(m.recorded_at, |w| w.max(m.recorded_at)),
        );
        Fed::Evaluated(events)
    }

    /// Event time reaches `w` for every patient of the partition.
    fn advance_to(&mut self, w: UtcMillis) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let mut ids: Vec<Uuid> = self.patients.keys().copied().collect();
        // Sorted, so that the events come out in the same order every run.
        ids.sort();
        for id in ids {
            if let Some(state) = self.patients.remove(&id) {
                let mut engine = AlertEngine::with_state(self.thresholds, state);
                events.extend(engine.on_watermark(w));
                self.patients.insert(id, engine.into_state());
            }
        }
        events
    }

    /// The latest state of an open alert (what an `AlertEvent::Updated` names).
    pub fn open_alert(&self, patient: &Uuid, alert_id: &Uuid) -> Option<&Alert> {
        self.patients.get(patient)?.open_alert(patient, alert_id)
    }

    pub fn open_alerts(&self) -> usize {
        self.patients
            .values()
            .map(EngineState::open_alert_count)
            .sum()
    }

    /// The whole state, for the checkpoint.
    pub fn state(&self) -> EngineState {
        EngineState::merge(self.patients.values().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::measurement::{DeviceStatus, Vitals};
    use crate::domain::QualityFlag;
    use chrono::NaiveDate;

    fn sample(patient: Uuid, at_s: i64, spo2: f64) -> Measurement {
        Measurement {
            schema_version: 1,
            message_id: Uuid::new_v4(),
            patient_id: patient,
            device_id: Uuid::from_u128(9),
            recorded_at: UtcMillis(1_773_446_400_000 + at_s * 1000),
            vitals: Vitals {
                spo2_pct: Some(spo2),
                ..Vitals::default()
            },
            device: DeviceStatus::default(),
            quality_flag: QualityFlag::Ok,
        }
    }

    #[test]
    fn stale_and_resent_samples_do_not_feed_rules() {
        let t = Thresholds::reference();
        let p = Uuid::from_u128(1);
        let ctx = PatientContext {
            patient_id: p,
            birth_date: NaiveDate::from_ymd_opt(2000, 1, 1).expect("date"),
        };
        let mut a = StreamAlerter::new(&t);
        assert!(matches!(
            a.on_measurement(&ctx, &sample(p, 60, 97.0)),
            Fed::Evaluated(_)
        ));
        assert_eq!(
            a.on_measurement(&ctx, &sample(p, 60, 80.0)),
            Fed::Stale,
            "resent"
        );
        assert_eq!(
            a.on_measurement(&ctx, &sample(p, 30, 80.0)),
            Fed::Stale,
            "late"
        );
        let Fed::Evaluated(events) = a.on_measurement(&ctx, &sample(p, 90, 80.0)) else {
            panic!("a newer sample is evaluated");
        };
        assert!(
            events
                .iter()
                .any(|e| e.alert().is_some_and(|a| a.rule_id == "spo2_critical")),
            "{events:?}"
        );
        assert_eq!(a.watermark(), Some(UtcMillis(1_773_446_400_000 + 90_000)));
    }

    #[test]
    fn advance_reports_silent_devices_and_state_round_trips() {
        let t = Thresholds::reference();
        let (p, q) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let ctx = |id| PatientContext {
            patient_id: id,
            birth_date: NaiveDate::from_ymd_opt(2000, 1, 1).expect("date"),
        };
        let mut a = StreamAlerter::new(&t);
        a.on_measurement(&ctx(p), &sample(p, 0, 97.0));
        let silent = t.device.silent_after_s as i64;
        // q's samples move event time on; p fell silent after its first sample.
        let mut silent_events = Vec::new();
        for s in (30..=silent + 120).step_by(30) {
            if let Fed::Evaluated(events) = a.on_measurement(&ctx(q), &sample(q, s, 97.0)) {
                silent_events.extend(
                    events
                        .into_iter()
                        .filter(|e| e.alert().is_some_and(|a| a.rule_id == "device_silent")),
                );
            }
        }
        assert_eq!(silent_events.len(), 1, "{silent_events:?}");
        let alert = silent_events[0].alert().expect("an opened alert");
        assert_eq!(alert.patient_id, p);
        assert_eq!(
            alert.first_seen_at,
            UtcMillis(1_773_446_400_000 + silent * 1000)
        );
        assert_eq!(
            alert.last_seen_at.0 % TICK_MS,
            0,
            "reported at a minute tick"
        );
        let resumed = StreamAlerter::resume(&t, a.state(), a.watermark());
        assert_eq!(resumed.state(), a.state());
        assert_eq!(resumed.open_alerts(), 1);
    }
}
