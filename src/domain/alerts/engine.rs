//! Rule evaluation and alert state per patient.

use super::actions::{suggested_actions, title};
use super::{alert_id, Alert, AlertEvent, AlertStatus};
use crate::domain::heat_index::heat_index_c;
use crate::domain::rules::{Family, FamilySet, RuleKey};
use crate::domain::thresholds::{Combination, Condition, Severity, Thresholds, Tier, Vital};
use crate::domain::time::{UtcMillis, MS_PER_DAY, MS_PER_SECOND};
use crate::domain::{Measurement, Vitals};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use uuid::Uuid;

/// How long poor signal must last before it is reported (thresholds.yaml: "sustained 5 min").
const SIGNAL_SUSTAIN_S: i64 = 300;

/// What the engine needs to know about a patient besides the sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatientContext {
    pub patient_id: Uuid,
    pub birth_date: NaiveDate,
}

/// The tier of each vital of `Vital::ALL` for one sample, where it has one.
type Tiers = [Option<Tier>; Vital::ALL.len()];

/// A rule met by one sample. Rules of one family share inputs (`RuleKey::family`): when the
/// inputs are present and the rule is not met, its streak breaks and its open alert may resolve.
#[derive(Debug, Clone)]
struct Firing<'t> {
    rule: RuleKey,
    severity: Severity,
    /// Persistence already built into the rule (device rules carry their own).
    needs_persistence: bool,
    why: Why<'t>,
}

/// Why a rule fired, put into words only when an alert opens or is updated: most firing
/// samples only extend a streak, and wording each of them cost more than evaluating it.
#[derive(Debug, Clone)]
enum Why<'t> {
    Tier {
        vital: Vital,
        value: f64,
        tier: Tier,
        age_group: &'t str,
    },
    Spo2Below {
        spo2: f64,
        limit: f64,
    },
    Pain(i32),
    /// Every condition of the combination met by these vitals and tiers.
    Combination {
        combination: &'t Combination,
        vitals: Vitals,
        tiers: Tiers,
    },
    BatteryLow {
        battery: i32,
        limit: i32,
    },
    SignalPoor {
        limit: i32,
        seconds: i64,
    },
    Flatline {
        seconds: i64,
    },
}

impl Why<'_> {
    fn words(&self) -> Vec<String> {
        match self {
            Why::Tier {
                vital,
                value,
                tier,
                age_group,
            } => vec![format!(
                "{} {value} is {} for age group {age_group}",
                vital.field(),
                tier.as_str()
            )],
            Why::Spo2Below { spo2, limit } => vec![format!("spo2_pct {spo2} is below {limit}")],
            Why::Pain(pain) => vec![format!("pain_scale {pain}")],
            Why::Combination {
                combination,
                vitals,
                tiers,
            } => combination
                .all
                .iter()
                .filter_map(|condition| match condition {
                    Condition::AtLeast { vital, .. } => {
                        let tier = tier_of(tiers, *vital)?;
                        let v = vital_value(vitals, *vital)?;
                        Some(format!("{} {v} is {}", vital.field(), tier.as_str()))
                    }
                    Condition::Min { field, min } => {
                        let v = scalar_value(vitals, field)?;
                        Some(format!("{field} {v} >= {min}"))
                    }
                })
                .collect(),
            Why::BatteryLow { battery, limit } => {
                vec![format!("battery_pct {battery} < {limit}")]
            }
            Why::SignalPoor { limit, seconds } => {
                vec![format!("signal_quality_pct below {limit} for {seconds} s")]
            }
            Why::Flatline { seconds } => vec![format!(
                "identical readings on >= 2 of spo2/heart rate/respiratory rate for {seconds} s"
            )],
        }
    }
}

fn tier_of(tiers: &Tiers, vital: Vital) -> Option<Tier> {
    tiers.get(vital.index()).copied().flatten()
}

/// The scalar a `min` condition reads (`pain` or `activity_level`, checked at load).
fn scalar_value(vitals: &Vitals, field: &str) -> Option<f64> {
    match field {
        "pain" => vitals.pain_scale.map(f64::from),
        _ => vitals.activity_level.map(f64::from),
    }
}

/// The rules and families the engine names itself, interned once.
struct Known {
    /// `{family}_{tier}` of each vital and tier, by `Vital::index` and the tier's place in
    /// `Tier::ALL`.
    vital_rules: [[RuleKey; Tier::ALL.len()]; Vital::ALL.len()],
    vital_families: [Family; Vital::ALL.len()],
    spo2_critical: RuleKey,
    pain_critical: RuleKey,
    pain_alert: RuleKey,
    pain: Family,
    battery_low: RuleKey,
    signal_poor: RuleKey,
    flatline: RuleKey,
    silent: RuleKey,
}

fn known() -> &'static Known {
    static KNOWN: OnceLock<Known> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let rule = |v: Vital, t: Tier| {
            RuleKey::in_family(
                &format!("{}_{}", vital_family(v), t.as_str()),
                vital_family(v),
            )
        };
        Known {
            vital_rules: Vital::ALL.map(|v| Tier::ALL.map(|t| rule(v, t))),
            vital_families: Vital::ALL.map(|v| Family::named(vital_family(v))),
            spo2_critical: RuleKey::in_family("spo2_critical", "spo2"),
            pain_critical: RuleKey::in_family("pain_critical", "pain"),
            pain_alert: RuleKey::in_family("pain_alert", "pain"),
            pain: Family::named("pain"),
            battery_low: RuleKey::in_family("device_battery_low", "battery"),
            signal_poor: RuleKey::in_family("device_signal_poor", "signal"),
            flatline: RuleKey::in_family("device_flatline", "flatline"),
            silent: RuleKey::in_family("device_silent", "silent"),
        }
    })
}

impl Known {
    fn vital_rule(&self, vital: Vital, tier: Tier) -> RuleKey {
        let t = Tier::ALL.iter().position(|x| *x == tier).unwrap_or(0);
        self.vital_rules[vital.index()][t]
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct PatientState {
    /// rule → start of the current run of samples meeting it.
    streaks: Streaks,
    /// rule → its open alert.
    open: BTreeMap<RuleKey, Alert>,
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

/// rule → start of the current run of samples meeting it, in rule name order. A patient has
/// a few streaks at a time: a short vector searched by key identity beats a map. Serialised as
/// the map it was before (`{"spo2_alert": 1712…}`).
#[derive(Debug, Clone, Default, PartialEq)]
struct Streaks(Vec<(RuleKey, i64)>);

impl Streaks {
    fn get(&self, rule: RuleKey) -> Option<i64> {
        self.0
            .iter()
            .find(|(r, _)| *r == rule)
            .map(|(_, since)| *since)
    }

    /// Starts a streak of `rule` at `at`, keeping name order.
    fn start(&mut self, rule: RuleKey, at: i64) {
        let i = self.0.partition_point(|(r, _)| *r < rule);
        self.0.insert(i, (rule, at));
    }

    fn retain(&mut self, mut keep: impl FnMut(RuleKey) -> bool) {
        self.0.retain(|(r, _)| keep(*r));
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

impl Serialize for Streaks {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(r, since)| (r, since)))
    }
}

impl<'de> Deserialize<'de> for Streaks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<RuleKey, i64>::deserialize(d)?;
        Ok(Streaks(map.into_iter().collect()))
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

    /// The open alert `alert_id` of `patient`: the latest state of an alert an
    /// `AlertEvent::Updated` names.
    pub fn open_alert(&self, patient: &Uuid, alert_id: &Uuid) -> Option<&Alert> {
        self.patients
            .get(patient)?
            .open
            .values()
            .find(|a| a.alert_id == *alert_id)
    }

    pub fn open_alert_count(&self) -> usize {
        self.patients.values().map(|p| p.open.len()).sum()
    }
}

pub struct AlertEngine<'t> {
    thresholds: &'t Thresholds,
    state: EngineState,
    /// alert id → (patient, why it was last met): the open alerts whose `trigger_conditions`
    /// are not yet worded. A patient in a crisis updates an open alert with every sample, and
    /// wording each update cost more than evaluating the sample; the words are written when
    /// the alert is read (`state`, `into_state`, `open_alerts`) or leaves the open set.
    unworded: HashMap<Uuid, (Uuid, Why<'t>)>,
    /// The rules the current sample meets: a buffer kept between samples, as allocating it per
    /// sample showed in profiles.
    firings: Vec<Firing<'t>>,
    /// The last age group looked up: consecutive samples are mostly one patient's on one day.
    age_group_memo: Option<(PatientContext, i64, Option<usize>)>,
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

fn vital_value(x: &Vitals, v: Vital) -> Option<f64> {
    match v {
        Vital::TemperatureC => x.temperature_c,
        Vital::Spo2Pct => x.spo2_pct,
        Vital::HeartRateBpm => x.heart_rate_bpm.map(f64::from),
        Vital::RespiratoryRateMin => x.respiratory_rate_min.map(f64::from),
        Vital::HydrationPct => x.hydration_pct,
        Vital::HeatIndexC => heat_index_c(x.ambient_temperature_c, x.relative_humidity_pct)
            .map(crate::domain::rounding::round1),
        Vital::AmbientTemperatureC => x.ambient_temperature_c,
    }
}

impl<'t> AlertEngine<'t> {
    pub fn new(thresholds: &'t Thresholds) -> Self {
        Self::with_state(thresholds, EngineState::default())
    }

    /// Resumes from a checkpoint.
    pub fn with_state(thresholds: &'t Thresholds, state: EngineState) -> Self {
        AlertEngine {
            thresholds,
            state,
            unworded: HashMap::new(),
            firings: Vec::new(),
            age_group_memo: None,
        }
    }

    /// The patient's age group at the sample's date (`Thresholds::age_group_index`).
    fn age_group(&mut self, ctx: &PatientContext, at: UtcMillis) -> Option<usize> {
        let day = at.0.div_euclid(MS_PER_DAY);
        match self.age_group_memo {
            Some((memo_ctx, memo_day, group)) if memo_ctx == *ctx && memo_day == day => group,
            _ => {
                let group = self.thresholds.age_group_index(ctx.birth_date, at);
                self.age_group_memo = Some((*ctx, day, group));
                group
            }
        }
    }

    pub fn state(&mut self) -> &EngineState {
        self.word_all();
        &self.state
    }

    pub fn into_state(mut self) -> EngineState {
        self.word_all();
        self.state
    }

    pub fn open_alerts(&mut self) -> impl Iterator<Item = &Alert> {
        self.word_all();
        self.state.patients.values().flat_map(|p| p.open.values())
    }

    /// Writes the pending `trigger_conditions` of every open alert.
    fn word_all(&mut self) {
        for (alert_id, (patient, why)) in self.unworded.drain() {
            let open = self
                .state
                .patients
                .get_mut(&patient)
                .and_then(|p| p.open.values_mut().find(|a| a.alert_id == alert_id));
            if let Some(alert) = open {
                alert.trigger_conditions = why.words();
            }
        }
    }

    /// Writes the pending `trigger_conditions` of an alert leaving the open set.
    fn word(unworded: &mut HashMap<Uuid, (Uuid, Why<'t>)>, alert: &mut Alert) {
        if let Some((_, why)) = unworded.remove(&alert.alert_id) {
            alert.trigger_conditions = why.words();
        }
    }

    fn cooldown_ms(t: &Thresholds, s: Severity) -> i64 {
        let c = &t.cooldown_s;
        let secs = match s {
            Severity::Critical => c.critical,
            Severity::Alert => c.alert,
            Severity::Warn => c.warn,
            Severity::Info => c.info,
        };
        secs as i64 * MS_PER_SECOND
    }

    fn persistence_ms(t: &Thresholds, s: Severity) -> i64 {
        let p = &t.persistence;
        let secs = match s {
            Severity::Critical => p.critical_after_s,
            Severity::Alert => p.alert_after_s,
            Severity::Warn | Severity::Info => p.warn_after_s,
        };
        secs as i64 * MS_PER_SECOND
    }

    /// Fills `firings` with the rules this sample meets and `present` with the families
    /// whose inputs it carries. `group`: the patient's age group at the sample's time.
    fn evaluate(
        t: &'t Thresholds,
        group: Option<usize>,
        m: &Measurement,
        st: &mut PatientState,
        firings: &mut Vec<Firing<'t>>,
        present: &mut FamilySet,
    ) {
        let known = known();
        let at = m.recorded_at.0;
        // Excluded quality flags (SPEC §2.3) never feed vital rules; missing values never fire.
        if let (true, Some(g)) = (m.quality_flag.is_trend_eligible(), group) {
            let group_id = &t.age_groups[g].id;
            let mut tiers: Tiers = [None; Vital::ALL.len()];
            for (i, vital) in Vital::ALL.into_iter().enumerate() {
                let Some(value) = vital_value(&m.vitals, vital) else {
                    continue;
                };
                let Some(tier) = t.classify(vital, g, value) else {
                    continue;
                };
                tiers[i] = Some(tier);
                present.insert(known.vital_families[vital.index()]);
                if let Some(severity) = tier.severity() {
                    firings.push(Firing {
                        rule: known.vital_rule(vital, tier),
                        severity,
                        needs_persistence: true,
                        why: Why::Tier {
                            vital,
                            value,
                            tier,
                            age_group: group_id,
                        },
                    });
                }
            }
            if let (Some(spo2), Some(limit)) = (m.vitals.spo2_pct, t.spo2_critical_below()) {
                if spo2 < limit {
                    firings.push(Firing {
                        rule: known.spo2_critical,
                        severity: Severity::Critical,
                        needs_persistence: false,
                        why: Why::Spo2Below { spo2, limit },
                    });
                }
            }
            if let Some(pain) = m.vitals.pain_scale {
                present.insert(known.pain);
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
                        rule: if severity == Severity::Critical {
                            known.pain_critical
                        } else {
                            known.pain_alert
                        },
                        severity,
                        needs_persistence: false,
                        why: Why::Pain(pain),
                    });
                }
            }
            for combo in &t.combinations {
                // The words are written only if the combination opens or updates an alert
                // (`Why::words`): most samples meet a condition or two without firing.
                let mut all_present = true;
                let mut all_met = true;
                for cond in &combo.all {
                    match cond {
                        Condition::AtLeast { vital, level } => {
                            match (tier_of(&tiers, *vital), vital_value(&m.vitals, *vital)) {
                                (Some(tier), Some(_)) => {
                                    all_met &= tier.worse_side_level() >= level.level();
                                }
                                _ => all_present = false,
                            }
                        }
                        Condition::Min { field, min } => match scalar_value(&m.vitals, field) {
                            Some(v) => all_met &= v >= *min,
                            None => all_present = false,
                        },
                    }
                }
                if all_present {
                    present.insert(combo.family);
                    if all_met {
                        firings.push(Firing {
                            rule: combo.rule,
                            severity: combo.severity,
                            needs_persistence: false,
                            why: Why::Combination {
                                combination: combo,
                                vitals: m.vitals.clone(),
                                tiers,
                            },
                        });
                    }
                }
            }
        }
        // Device rules read every sample, whatever its quality flag.
        let d = t.device;
        if let Some(battery) = m.device.battery_pct {
            present.insert(known.battery_low.family());
            if battery < d.battery_low_pct {
                firings.push(device_firing(
                    known.battery_low,
                    Severity::Warn,
                    Why::BatteryLow {
                        battery,
                        limit: d.battery_low_pct,
                    },
                ));
            }
        }
        if let Some(signal) = m.device.signal_quality_pct {
            present.insert(known.signal_poor.family());
            if signal < d.signal_poor_pct {
                let since = *st.signal_poor_since.get_or_insert(at);
                if at - since >= SIGNAL_SUSTAIN_S * MS_PER_SECOND {
                    firings.push(device_firing(
                        known.signal_poor,
                        Severity::Warn,
                        Why::SignalPoor {
                            limit: d.signal_poor_pct,
                            seconds: (at - since) / MS_PER_SECOND,
                        },
                    ));
                }
            } else {
                st.signal_poor_since = None;
            }
        }
        let reading = Readings {
            spo2_tenths: m
                .vitals
                .spo2_pct
                .map(|v| crate::domain::rounding::round(v * 10.0) as i64),
            heart_rate: m.vitals.heart_rate_bpm,
            respiratory_rate: m.vitals.respiratory_rate_min,
        };
        if reading.present() >= 2 {
            present.insert(known.flatline.family());
            match st.flat {
                Some((since, previous)) if previous.frozen_with(&reading) => {
                    if at - since >= d.flatline_after_s as i64 * MS_PER_SECOND {
                        firings.push(device_firing(
                            known.flatline,
                            Severity::Alert,
                            Why::Flatline {
                                seconds: (at - since) / MS_PER_SECOND,
                            },
                        ));
                    }
                }
                _ => st.flat = Some((at, reading)),
            }
        }
    }

    /// Feeds one valid sample (in event-time order per patient) and returns what changed.
    pub fn on_sample(&mut self, ctx: &PatientContext, m: &Measurement) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        self.on_sample_into(ctx, m, &mut events);
        events
    }

    /// `on_sample`, appending what changed to `events`: a caller feeding many samples keeps
    /// one vector rather than receiving a new one for every sample that updates an alert.
    pub fn on_sample_into(
        &mut self,
        ctx: &PatientContext,
        m: &Measurement,
        events: &mut Vec<AlertEvent>,
    ) {
        let t = self.thresholds;
        let group = self.age_group(ctx, m.recorded_at);
        let mut firings = std::mem::take(&mut self.firings);
        // The rule families whose inputs the sample carries.
        let mut present = FamilySet::default();
        firings.clear();
        let silent = known().silent;
        // In place: taking the patient out of the map and putting them back cost a node
        // allocation per sample.
        let st = self.state.patients.entry(ctx.patient_id).or_default();
        let at = m.recorded_at.0;
        // A sample ends a silence.
        if let Some(mut silent) = st.open.remove(&silent) {
            Self::word(&mut self.unworded, &mut silent);
            silent.status = AlertStatus::AutoResolved;
            silent.last_seen_at = m.recorded_at;
            events.push(AlertEvent::AutoResolved(silent));
        }
        // A run of samples is consecutive only if the device did not fall silent in between.
        let silent_ms = t.device.silent_after_s as i64 * MS_PER_SECOND;
        if st.last_sample_at.is_some_and(|last| at - last > silent_ms) {
            st.streaks.clear();
            st.signal_poor_since = None;
            st.flat = None;
        }
        Self::evaluate(t, group, m, st, &mut firings, &mut present);
        let fired = |rule: RuleKey| firings.iter().any(|f| f.rule == rule);
        // Streaks break, and open alerts may resolve, for every rule whose inputs this sample
        // carries but which it does not meet.
        st.streaks
            .retain(|rule| fired(rule) || !present.contains(rule.family()));
        let quiet: Vec<RuleKey> = st
            .open
            .iter()
            .filter(|(rule, a)| {
                !fired(**rule)
                    && present.contains(rule.family())
                    && at - a.last_seen_at.0 >= Self::cooldown_ms(t, a.severity)
            })
            .map(|(rule, _)| *rule)
            .collect();
        for rule in quiet {
            if let Some(mut a) = st.open.remove(&rule) {
                Self::word(&mut self.unworded, &mut a);
                a.status = AlertStatus::AutoResolved;
                events.push(AlertEvent::AutoResolved(a));
            }
        }
        for f in firings.drain(..) {
            let since = match st.streaks.get(f.rule) {
                Some(since) => since,
                None => {
                    st.streaks.start(f.rule, at);
                    at
                }
            };
            let needed = if f.needs_persistence {
                Self::persistence_ms(t, f.severity)
            } else {
                0
            };
            if at - since < needed {
                continue;
            }
            match st.open.get_mut(&f.rule) {
                Some(open) => {
                    open.last_seen_at = m.recorded_at;
                    open.vitals_snapshot = m.vitals.clone();
                    self.unworded.insert(open.alert_id, (ctx.patient_id, f.why));
                    open.device_id = m.device_id;
                    open.occurrences += 1;
                    events.push(AlertEvent::Updated {
                        patient_id: ctx.patient_id,
                        alert_id: open.alert_id,
                    });
                }
                None => {
                    // The alert starts when the condition started, not when persistence was met.
                    let first = UtcMillis(since);
                    let triggers = f.why.words();
                    let family = f.rule.family().name();
                    let alert = Alert {
                        alert_id: alert_id(ctx.patient_id, f.rule.name(), first),
                        patient_id: ctx.patient_id,
                        device_id: m.device_id,
                        title: title(family, f.severity),
                        message: triggers.join("; "),
                        suggested_actions: suggested_actions(family, f.severity),
                        rule_id: f.rule.name().to_string(),
                        severity: f.severity,
                        first_seen_at: first,
                        last_seen_at: m.recorded_at,
                        vitals_snapshot: m.vitals.clone(),
                        trigger_conditions: triggers,
                        status: AlertStatus::Open,
                        escalation_level: 0,
                        occurrences: 1,
                    };
                    st.open.insert(f.rule, alert.clone());
                    events.push(AlertEvent::Opened(alert));
                }
            }
        }
        st.last_sample_at = Some(at.max(st.last_sample_at.unwrap_or(i64::MIN)));
        st.last_device_id = Some(m.device_id);
        self.firings = firings;
    }

    /// Event time has reached `watermark` for every device: reports devices silent for longer
    /// than `device.silent_after_s`.
    pub fn on_watermark(&mut self, watermark: UtcMillis) -> Vec<AlertEvent> {
        let silent_ms = self.thresholds.device.silent_after_s as i64 * MS_PER_SECOND;
        let silent = known().silent;
        let mut events = Vec::new();
        for (patient_id, st) in &mut self.state.patients {
            let (Some(last), Some(device_id)) = (st.last_sample_at, st.last_device_id) else {
                continue;
            };
            if watermark.0 - last < silent_ms || st.open.contains_key(&silent) {
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
                alert_id: alert_id(*patient_id, silent.name(), first),
                patient_id: *patient_id,
                device_id,
                rule_id: silent.name().into(),
                severity: Severity::Warn,
                title: title(silent.family().name(), Severity::Warn),
                message: triggers.join("; "),
                first_seen_at: first,
                last_seen_at: watermark,
                vitals_snapshot: Default::default(),
                trigger_conditions: triggers,
                suggested_actions: suggested_actions(silent.family().name(), Severity::Warn),
                status: AlertStatus::Open,
                escalation_level: 0,
                occurrences: 1,
            };
            st.open.insert(silent, alert.clone());
            events.push(AlertEvent::Opened(alert));
        }
        events
    }
}

fn device_firing(rule: RuleKey, severity: Severity, why: Why<'static>) -> Firing<'static> {
    Firing {
        rule,
        severity,
        needs_persistence: false,
        why,
    }
}
