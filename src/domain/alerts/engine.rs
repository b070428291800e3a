//! Rule evaluation and alert state per patient.

use super::actions::{suggested_actions, title};
use super::{alert_id, Alert, AlertEvent, AlertStatus};
use crate::domain::heat_index::heat_index_c;
use crate::domain::thresholds::{Condition, Severity, Thresholds, Tier, Vital};
use crate::domain::time::{UtcMillis, MS_PER_SECOND};
use crate::domain::Measurement;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// How long poor signal must last before it is reported (thresholds.yaml: "sustained 5 min").
const SIGNAL_SUSTAIN_S: i64 = 300;

/// What the engine needs to know about a patient besides the sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatientContext {
    pub patient_id: Uuid,
    pub birth_date: NaiveDate,
}

/// A rule met by one sample.
#[derive(Debug, Clone)]
struct Firing {
    rule_id: String,
    /// Rules of one family share inputs: when the inputs are present and the rule is not met,
    /// its streak breaks and its open alert may resolve.
    family: String,
    severity: Severity,
    /// Persistence already built into the rule (device rules carry their own).
    needs_persistence: bool,
    triggers: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct PatientState {
    /// rule → start of the current run of samples meeting it.
    streaks: BTreeMap<String, i64>,
    /// rule → its open alert.
    open: BTreeMap<String, Alert>,
    last_sample_at: Option<i64>,
    last_device_id: Option<Uuid>,
    signal_poor_since: Option<i64>,
    /// Start and values of the current run of identical readings.
    flat: Option<(i64, Readings)>,
}

/// The readings a flatline compares (SpO₂ in tenths, so equality is exact).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Readings {
    spo2_tenths: Option<i64>,
    heart_rate: Option<i32>,
    respiratory_rate: Option<i32>,
}

impl Readings {
    fn present(&self) -> usize {
        [
            self.spo2_tenths.is_some(),
            self.heart_rate.is_some(),
            self.respiratory_rate.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count()
    }

    /// At least two of the three present in both and equal.
    fn frozen_with(&self, other: &Readings) -> bool {
        let same = [
            self.spo2_tenths.is_some() && self.spo2_tenths == other.spo2_tenths,
            self.heart_rate.is_some() && self.heart_rate == other.heart_rate,
            self.respiratory_rate.is_some() && self.respiratory_rate == other.respiratory_rate,
        ];
        same.iter().filter(|x| **x).count() >= 2
    }
}

/// The engine's whole state: checkpointed with the consumer offsets so a restart resumes
/// exactly where it stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    patients: BTreeMap<Uuid, PatientState>,
}

impl EngineState {
    /// The state split per patient: the engine evaluates each patient on their own, so the
    /// parts can run on separate threads and be merged back.
    pub fn into_patients(self) -> BTreeMap<Uuid, EngineState> {
        self.patients
            .into_iter()
            .map(|(id, st)| {
                (
                    id,
                    EngineState {
                        patients: BTreeMap::from([(id, st)]),
                    },
                )
            })
            .collect()
    }

    pub fn merge(parts: impl IntoIterator<Item = EngineState>) -> EngineState {
        let mut patients = BTreeMap::new();
        for part in parts {
            patients.extend(part.patients);
        }
        EngineState { patients }
    }

    pub fn patient_count(&self) -> usize {
        self.patients.len()
    }

    /// The newest sample the engine has seen for `patient`.
    pub fn last_sample_at(&self, patient: &Uuid) -> Option<UtcMillis> {
        self.patients
            .get(patient)
            .and_then(|p| p.last_sample_at)
            .map(UtcMillis)
    }

    pub fn open_alert_count(&self) -> usize {
        self.patients.values().map(|p| p.open.len()).sum()
    }
}

pub struct AlertEngine<'t> {
    thresholds: &'t Thresholds,
    state: EngineState,
}

fn vital_family(v: Vital) -> &'static str {
    match v {
        Vital::TemperatureC => "temperature",
        Vital::Spo2Pct => "spo2",
        Vital::HeartRateBpm => "heart_rate",
        Vital::RespiratoryRateMin => "respiratory_rate",
        Vital::HydrationPct => "hydration",
        Vital::HeatIndexC => "heat_index",
        Vital::AmbientTemperatureC => "ambient",
    }
}

fn vital_value(m: &Measurement, v: Vital) -> Option<f64> {
    let x = &m.vitals;
    match v {
        Vital::TemperatureC => x.temperature_c,
        Vital::Spo2Pct => x.spo2_pct,
        Vital::HeartRateBpm => x.heart_rate_bpm.map(f64::from),
        Vital::RespiratoryRateMin => x.respiratory_rate_min.map(f64::from),
        Vital::HydrationPct => x.hydration_pct,
        Vital::HeatIndexC => heat_index_c(x.ambient_temperature_c, x.relative_humidity_pct)
            .map(|h| (h * 10.0).round() / 10.0),
        Vital::AmbientTemperatureC => x.ambient_temperature_c,
    }
}

impl<'t> AlertEngine<'t> {
    pub fn new(thresholds: &'t Thresholds) -> Self {
        Self::with_state(thresholds, EngineState::default())
    }

    /// Resumes from a checkpoint.
    pub fn with_state(thresholds: &'t Thresholds, state: EngineState) -> Self {
        AlertEngine { thresholds, state }
    }

    pub fn state(&self) -> &EngineState {
        &self.state
    }

    pub fn into_state(self) -> EngineState {
        self.state
    }

    pub fn open_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.state.patients.values().flat_map(|p| p.open.values())
    }

    fn cooldown_ms(&self, s: Severity) -> i64 {
        let c = &self.thresholds.cooldown_s;
        let secs = match s {
            Severity::Critical => c.critical,
            Severity::Alert => c.alert,
            Severity::Warn => c.warn,
            Severity::Info => c.info,
        };
        secs as i64 * MS_PER_SECOND
    }

    fn persistence_ms(&self, s: Severity) -> i64 {
        let p = &self.thresholds.persistence;
        let secs = match s {
            Severity::Critical => p.critical_after_s,
            Severity::Alert => p.alert_after_s,
            Severity::Warn | Severity::Info => p.warn_after_s,
        };
        secs as i64 * MS_PER_SECOND
    }

    /// The rules this sample meets, and the families whose inputs it carries.
    fn evaluate(
        &self,
        ctx: &PatientContext,
        m: &Measurement,
        st: &mut PatientState,
    ) -> (Vec<Firing>, Vec<String>) {
        let t = self.thresholds;
        let at = m.recorded_at.0;
        let mut firings = Vec::new();
        let mut present: Vec<String> = Vec::new();
        let group = t.age_group_index(ctx.birth_date, m.recorded_at);
        // Excluded quality flags (SPEC §2.3) never feed vital rules; missing values never fire.
        if let (true, Some(g)) = (m.quality_flag.is_trend_eligible(), group) {
            let group_id = &t.age_groups[g].id;
            let mut tiers: BTreeMap<Vital, Tier> = BTreeMap::new();
            for vital in Vital::ALL {
                let Some(value) = vital_value(m, vital) else {
                    continue;
                };
                let Some(tier) = t.classify(vital, g, value) else {
                    continue;
                };
                tiers.insert(vital, tier);
                let family = vital_family(vital);
                present.push(family.into());
                if let Some(severity) = tier.severity() {
                    firings.push(Firing {
                        rule_id: format!("{family}_{}", tier.as_str()),
                        family: family.into(),
                        severity,
                        needs_persistence: true,
                        triggers: vec![format!(
                            "{} {value} is {} for age group {group_id}",
                            vital.field(),
                            tier.as_str()
                        )],
                    });
                }
            }
            if let (Some(spo2), Some(limit)) = (m.vitals.spo2_pct, t.spo2_critical_below()) {
                if spo2 < limit {
                    firings.push(Firing {
                        rule_id: "spo2_critical".into(),
                        family: "spo2".into(),
                        severity: Severity::Critical,
                        needs_persistence: false,
                        triggers: vec![format!("spo2_pct {spo2} is below {limit}")],
                    });
                }
            }
            if let Some(pain) = m.vitals.pain_scale {
                present.push("pain".into());
                let p = t.pain;
                let severity = if pain >= p.critical_min {
                    Some(Severity::Critical)
                } else if pain >= p.alert_min {
                    Some(Severity::Alert)
                } else {
                    None
                };
                if let Some(severity) = severity {
                    firings.push(Firing {
                        rule_id: format!("pain_{}", severity.as_str()),
                        family: "pain".into(),
                        severity,
                        needs_persistence: false,
                        triggers: vec![format!("pain_scale {pain}")],
                    });
                }
            }
            for combo in &t.combinations {
                let mut triggers = Vec::new();
                let mut all_present = true;
                let mut all_met = true;
                for cond in &combo.all {
                    match cond {
                        Condition::AtLeast { vital, level } => {
                            match (tiers.get(vital), vital_value(m, *vital)) {
                                (Some(tier), Some(v)) => {
                                    let met = tier.worse_side_level() >= level.level();
                                    all_met &= met;
                                    if met {
                                        triggers.push(format!(
                                            "{} {v} is {}",
                                            vital.field(),
                                            tier.as_str()
                                        ));
                                    }
                                }
                                _ => all_present = false,
                            }
                        }
                        Condition::Min { field, min } => {
                            let v = match field.as_str() {
                                "pain" => m.vitals.pain_scale.map(f64::from),
                                _ => m.vitals.activity_level.map(f64::from),
                            };
                            match v {
                                Some(v) => {
                                    all_met &= v >= *min;
                                    if v >= *min {
                                        triggers.push(format!("{field} {v} >= {min}"));
                                    }
                                }
                                None => all_present = false,
                            }
                        }
                    }
                }
                if all_present {
                    present.push(combo.id.clone());
                    if all_met {
                        firings.push(Firing {
                            rule_id: format!("{}_{}", combo.id, combo.name),
                            family: combo.id.clone(),
                            severity: combo.severity,
                            needs_persistence: false,
                            triggers,
                        });
                    }
                }
            }
        }
        // Device rules read every sample, whatever its quality flag.
        let d = t.device;
        if let Some(battery) = m.device.battery_pct {
            present.push("battery".into());
            if battery < d.battery_low_pct {
                firings.push(device_firing(
                    "device_battery_low",
                    "battery",
                    Severity::Warn,
                    format!("battery_pct {battery} < {}", d.battery_low_pct),
                ));
            }
        }
        if let Some(signal) = m.device.signal_quality_pct {
            present.push("signal".into());
            if signal < d.signal_poor_pct {
                let since = *st.signal_poor_since.get_or_insert(at);
                if at - since >= SIGNAL_SUSTAIN_S * MS_PER_SECOND {
                    firings.push(device_firing(
                        "device_signal_poor",
                        "signal",
                        Severity::Warn,
                        format!(
                            "signal_quality_pct below {} for {} s",
                            d.signal_poor_pct,
                            (at - since) / MS_PER_SECOND
                        ),
                    ));
                }
            } else {
                st.signal_poor_since = None;
            }
        }
        let reading = Readings {
            spo2_tenths: m.vitals.spo2_pct.map(|v| (v * 10.0).round() as i64),
            heart_rate: m.vitals.heart_rate_bpm,
            respiratory_rate: m.vitals.respiratory_rate_min,
        };
        if reading.present() >= 2 {
            present.push("flatline".into());
            match st.flat {
                Some((since, previous)) if previous.frozen_with(&reading) => {
                    if at - since >= d.flatline_after_s as i64 * MS_PER_SECOND {
                        firings.push(device_firing(
                            "device_flatline",
                            "flatline",
                            Severity::Alert,
                            format!("identical readings on >= 2 of spo2/heart rate/respiratory rate for {} s", (at - since) / MS_PER_SECOND),
                        ));
                    }
                }
                _ => st.flat = Some((at, reading)),
            }
        }
        (firings, present)
    }

    /// Feeds one valid sample (in event-time order per patient) and returns what changed.
    pub fn on_sample(&mut self, ctx: &PatientContext, m: &Measurement) -> Vec<AlertEvent> {
        let mut st = self
            .state
            .patients
            .remove(&ctx.patient_id)
            .unwrap_or_default();
        let at = m.recorded_at.0;
        let mut events = Vec::new();
        // A sample ends a silence.
        if let Some(mut silent) = st.open.remove("device_silent") {
            silent.status = AlertStatus::AutoResolved;
            silent.last_seen_at = m.recorded_at;
            events.push(AlertEvent::AutoResolved(silent));
        }
        // A run of samples is consecutive only if the device did not fall silent in between.
        let silent_ms = self.thresholds.device.silent_after_s as i64 * MS_PER_SECOND;
        if st.last_sample_at.is_some_and(|last| at - last > silent_ms) {
            st.streaks.clear();
            st.signal_poor_since = None;
            st.flat = None;
        }
        let (firings, present) = self.evaluate(ctx, m, &mut st);
        let fired: Vec<&str> = firings.iter().map(|f| f.rule_id.as_str()).collect();
        // Streaks break, and open alerts may resolve, for every rule whose inputs this sample
        // carries but which it does not meet.
        let families_present = |family: &str| present.iter().any(|p| p == family);
        let broken: Vec<String> = st
            .streaks
            .keys()
            .filter(|rule| !fired.contains(&rule.as_str()) && families_present(family_of(rule)))
            .cloned()
            .collect();
        for rule in broken {
            st.streaks.remove(&rule);
        }
        let quiet: Vec<String> = st
            .open
            .iter()
            .filter(|(rule, a)| {
                !fired.contains(&rule.as_str())
                    && families_present(family_of(rule))
                    && at - a.last_seen_at.0 >= self.cooldown_ms(a.severity)
            })
            .map(|(rule, _)| rule.clone())
            .collect();
        for rule in quiet {
            if let Some(mut a) = st.open.remove(&rule) {
                a.status = AlertStatus::AutoResolved;
                events.push(AlertEvent::AutoResolved(a));
            }
        }
        for f in firings {
            let since = *st.streaks.entry(f.rule_id.clone()).or_insert(at);
            let needed = if f.needs_persistence {
                self.persistence_ms(f.severity)
            } else {
                0
            };
            if at - since < needed {
                continue;
            }
            match st.open.get_mut(&f.rule_id) {
                Some(open) => {
                    open.last_seen_at = m.recorded_at;
                    open.vitals_snapshot = m.vitals.clone();
                    open.trigger_conditions = f.triggers;
                    open.device_id = m.device_id;
                    open.occurrences += 1;
                    events.push(AlertEvent::Updated(open.clone()));
                }
                None => {
                    // The alert starts when the condition started, not when persistence was met.
                    let first = UtcMillis(since);
                    let alert = Alert {
                        alert_id: alert_id(ctx.patient_id, &f.rule_id, first),
                        patient_id: ctx.patient_id,
                        device_id: m.device_id,
                        title: title(&f.family, f.severity),
                        message: f.triggers.join("; "),
                        suggested_actions: suggested_actions(&f.family, f.severity),
                        rule_id: f.rule_id.clone(),
                        severity: f.severity,
                        first_seen_at: first,
                        last_seen_at: m.recorded_at,
                        vitals_snapshot: m.vitals.clone(),
                        trigger_conditions: f.triggers,
                        status: AlertStatus::Open,
                        escalation_level: 0,
                        occurrences: 1,
                    };
                    st.open.insert(f.rule_id, alert.clone());
                    events.push(AlertEvent::Opened(alert));
                }
            }
        }
        st.last_sample_at = Some(at.max(st.last_sample_at.unwrap_or(i64::MIN)));
        st.last_device_id = Some(m.device_id);
        self.state.patients.insert(ctx.patient_id, st);
        events
    }

    /// Event time has reached `watermark` for every device: reports devices silent for longer
    /// than `device.silent_after_s`.
    pub fn on_watermark(&mut self, watermark: UtcMillis) -> Vec<AlertEvent> {
        let silent_ms = self.thresholds.device.silent_after_s as i64 * MS_PER_SECOND;
        let mut events = Vec::new();
        for (patient_id, st) in &mut self.state.patients {
            let (Some(last), Some(device_id)) = (st.last_sample_at, st.last_device_id) else {
                continue;
            };
            if watermark.0 - last < silent_ms || st.open.contains_key("device_silent") {
                continue;
            }
            let first = UtcMillis(last + silent_ms);
            // Worded without the watermark, so that the record does not depend on when the
            // caller happened to advance event time (stream and batch agree).
            let triggers = vec![format!(
                "no sample for more than {} s",
                self.thresholds.device.silent_after_s
            )];
            let alert = Alert {
                alert_id: alert_id(*patient_id, "device_silent", first),
                patient_id: *patient_id,
                device_id,
                rule_id: "device_silent".into(),
                severity: Severity::Warn,
                title: title("silent", Severity::Warn),
                message: triggers.join("; "),
                first_seen_at: first,
                last_seen_at: watermark,
                vitals_snapshot: Default::default(),
                trigger_conditions: triggers,
                suggested_actions: suggested_actions("silent", Severity::Warn),
                status: AlertStatus::Open,
                escalation_level: 0,
                occurrences: 1,
            };
            st.open.insert("device_silent".into(), alert.clone());
            events.push(AlertEvent::Opened(alert));
        }
        events
    }
}

fn device_firing(rule: &str, family: &str, severity: Severity, trigger: String) -> Firing {
    Firing {
        rule_id: rule.into(),
        family: family.into(),
        severity,
        needs_persistence: false,
        triggers: vec![trigger],
    }
}

/// The family of a rule id: its first word for vital rules (`spo2_alert` → `spo2`), the
/// combination id (`C1_fever_hypoxia` → `C1`), or the device part (`device_battery_low` → `battery`).
fn family_of(rule: &str) -> &str {
    if let Some(rest) = rule.strip_prefix("device_") {
        return rest.split('_').next().unwrap_or(rest);
    }
    for family in ["heart_rate", "respiratory_rate", "heat_index"] {
        if rule.starts_with(family) {
            return family;
        }
    }
    rule.split('_').next().unwrap_or(rule)
}
