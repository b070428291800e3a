//! Alerts in batch: the stream's engine (`domain::alerts`) run over a day of Silver.
//!
//! The engine's contract, which `kidjamo stream` follows too: samples of a patient in event-time
//! order; before each sample, event time advances to that sample (`on_watermark`), so a device
//! that fell silent is reported before the sample that ends the silence; at the end of a batch,
//! event time advances to its end. The engine's state at the end of day D is kept in the lake
//! (`_state/alert_engine/event_date=D.json`) and day D+1 starts from it, so running day after
//! day gives the same alerts as one continuous run — which is what the stream does.
//!
//! Patients are independent in the engine, so they run in parallel.

use super::frame::Columns;
use super::rows::{MeasurementRows, Repeats};
use super::silver::Reference;
use super::EtlError;
use crate::domain::alerts::{Alert, AlertEngine, AlertEvent, EngineState, PatientContext};
use crate::domain::thresholds::Thresholds;
use crate::domain::time::UtcMillis;
use polars::prelude::*;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::ops::Range;
use uuid::Uuid;

pub struct DayAlerts {
    /// The last state, during the day, of every alert the day opened, updated or resolved;
    /// sorted by patient, first fire time and rule.
    pub alerts: Vec<Alert>,
    /// The engine at the end of the day, for the next day.
    pub state: EngineState,
}

/// Each patient's id and rows in a frame sorted by patient, in the frame's order.
pub type PatientRanges = [(String, Range<usize>)];

/// Contiguous row ranges of each patient in a frame sorted by patient.
pub fn patient_ranges(patient: &StringChunked) -> Vec<(String, Range<usize>)> {
    let mut out: Vec<(String, Range<usize>)> = Vec::new();
    for (i, p) in patient.iter().enumerate() {
        let p = p.unwrap_or("");
        match out.last_mut() {
            Some((last, range)) if last == p => range.end = i + 1,
            _ => out.push((p.to_string(), i..i + 1)),
        }
    }
    out
}

/// Runs the engine over a day of Silver (sorted by patient and time), continuing `previous`.
pub fn run_day(
    silver: &DataFrame,
    reference: &Reference,
    thresholds: &Thresholds,
    previous: EngineState,
    day_end: UtcMillis,
) -> Result<DayAlerts, EtlError> {
    let ranges = patient_ranges(Columns::new(silver, "Silver").str("patient_id")?);
    run_day_in_ranges(silver, &ranges, reference, thresholds, previous, day_end)
}

/// `run_day`, given Silver's patient ranges (`patient_ranges`), which Gold reads too.
pub fn run_day_in_ranges(
    silver: &DataFrame,
    ranges: &PatientRanges,
    reference: &Reference,
    thresholds: &Thresholds,
    previous: EngineState,
    day_end: UtcMillis,
) -> Result<DayAlerts, EtlError> {
    let c = Columns::new(silver, "Silver");
    let rows = MeasurementRows::new(&c)?;
    let mut states = previous.into_patients();
    let mut work: Vec<(Uuid, EngineState, Option<Range<usize>>)> = Vec::new();
    for (patient, range) in ranges {
        let id = Uuid::try_parse(patient).map_err(|_| EtlError::Schema {
            input: "Silver".into(),
            message: format!("patient_id {patient:?} is not a UUID"),
        })?;
        let state = states.remove(&id).unwrap_or_default();
        work.push((id, state, Some(range.clone())));
    }
    // Patients without samples today still advance: their devices may have fallen silent.
    work.extend(states.into_iter().map(|(id, st)| (id, st, None)));

    let results: Vec<(EngineState, Vec<Alert>)> = work
        .into_par_iter()
        .map(|(id, state, range)| {
            let mut engine = AlertEngine::with_state(thresholds, state);
            // alert id → its latest state; `None` for an update, whose state is read from
            // the engine at the end.
            let mut touched: BTreeMap<Uuid, Option<Alert>> = BTreeMap::new();
            let mut keep = |events: &mut Vec<AlertEvent>| {
                for e in events.drain(..) {
                    touched.insert(e.alert_id(), e.into_alert());
                }
            };
            if let (Some(range), Some(p)) = (range, reference.get(&id)) {
                let ctx = PatientContext {
                    patient_id: id,
                    birth_date: p.birth_date,
                };
                let mut repeats = Repeats::default();
                let mut events = Vec::new();
                for i in range {
                    let m = rows.measurement(i, id, &mut repeats);
                    keep(&mut engine.on_watermark(m.recorded_at));
                    engine.on_sample_into(&ctx, &m, &mut events);
                    keep(&mut events);
                }
            }
            keep(&mut engine.on_watermark(day_end));
            let state = engine.into_state();
            let alerts = touched
                .into_iter()
                .filter_map(|(alert_id, alert)| {
                    alert.or_else(|| state.open_alert(&id, &alert_id).cloned())
                })
                .collect();
            (state, alerts)
        })
        .collect();

    let mut alerts = Vec::new();
    let mut parts = Vec::with_capacity(results.len());
    for (state, a) in results {
        parts.push(state);
        alerts.extend(a);
    }
    sort_alerts(&mut alerts);
    Ok(DayAlerts {
        alerts,
        state: EngineState::merge(parts),
    })
}

/// Patient, first fire time, rule: the order alerts are written in.
fn sort_alerts(alerts: &mut [Alert]) {
    alerts.sort_by(|a, b| {
        (a.patient_id, a.first_seen_at, &a.rule_id).cmp(&(
            b.patient_id,
            b.first_seen_at,
            &b.rule_id,
        ))
    });
}

/// A day without samples: event time still advances, so silent devices are reported.
pub fn advance_only(
    thresholds: &Thresholds,
    previous: EngineState,
    day_end: UtcMillis,
) -> DayAlerts {
    let mut engine = AlertEngine::with_state(thresholds, previous);
    let mut alerts: Vec<Alert> = engine
        .on_watermark(day_end)
        .iter()
        .filter_map(|e| e.alert().cloned())
        .collect();
    sort_alerts(&mut alerts);
    DayAlerts {
        alerts,
        state: engine.into_state(),
    }
}
