//! Clinical thresholds loaded from a YAML file shaped like `fixtures/thresholds.yaml` (SPEC
//! §4.1), validated at load so that a bad file is refused with the offending key named. Every
//! rule reads its numbers from here; no clinical threshold is written anywhere else.

use super::rules::{Family, RuleKey, MAX_COMBINATIONS};
use super::time::UtcMillis;
use chrono::NaiveDate;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// The reference thresholds shipped with kidjamo, used when no file is configured.
pub const DEFAULT_THRESHOLDS_YAML: &str = include_str!("../../fixtures/thresholds.yaml");

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdsError {
    #[error("not a valid thresholds document: {0}")]
    Parse(String),
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ThresholdsError {
    ThresholdsError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Alert severity, one scale for every rule: info < warn < alert < critical.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warn,
    Alert,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Alert => "alert",
            Severity::Critical => "critical",
        }
    }
}

/// The vitals that have a tier table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Vital {
    TemperatureC,
    Spo2Pct,
    HeartRateBpm,
    RespiratoryRateMin,
    HydrationPct,
    HeatIndexC,
    AmbientTemperatureC,
}

impl Vital {
    pub const ALL: [Vital; 7] = [
        Vital::TemperatureC,
        Vital::Spo2Pct,
        Vital::HeartRateBpm,
        Vital::RespiratoryRateMin,
        Vital::HydrationPct,
        Vital::HeatIndexC,
        Vital::AmbientTemperatureC,
    ];

    /// The vital's position in `ALL`.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn field(self) -> &'static str {
        match self {
            Vital::TemperatureC => "temperature_c",
            Vital::Spo2Pct => "spo2_pct",
            Vital::HeartRateBpm => "heart_rate_bpm",
            Vital::RespiratoryRateMin => "respiratory_rate_min",
            Vital::HydrationPct => "hydration_pct",
            Vital::HeatIndexC => "heat_index_c",
            Vital::AmbientTemperatureC => "ambient_temperature_c",
        }
    }

    pub fn from_field(field: &str) -> Option<Vital> {
        Vital::ALL.into_iter().find(|v| v.field() == field)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitalKind {
    HigherIsWorse,
    LowerIsWorse,
}

/// Tier of one reading. For a lower-is-worse vital (SpO₂, hydration) the worse side is low and
/// its tiers are `Vigilance`/`Alert`/`Emergency`; the `Low*` tiers are the low side of a
/// higher-is-worse vital (hypothermia, bradycardia, bradypnoea).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    Normal,
    Vigilance,
    Alert,
    Emergency,
    LowVigilance,
    LowAlert,
    LowEmergency,
}

impl Tier {
    pub const ALL: [Tier; 7] = [
        Tier::Normal,
        Tier::Vigilance,
        Tier::Alert,
        Tier::Emergency,
        Tier::LowVigilance,
        Tier::LowAlert,
        Tier::LowEmergency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Normal => "normal",
            Tier::Vigilance => "vigilance",
            Tier::Alert => "alert",
            Tier::Emergency => "emergency",
            Tier::LowVigilance => "low_vigilance",
            Tier::LowAlert => "low_alert",
            Tier::LowEmergency => "low_emergency",
        }
    }

    /// The severity a single-vital rule gives this tier (SPEC §4.3).
    pub fn severity(self) -> Option<Severity> {
        match self {
            Tier::Normal => None,
            Tier::Vigilance | Tier::LowVigilance => Some(Severity::Warn),
            Tier::Alert | Tier::LowAlert => Some(Severity::Alert),
            Tier::Emergency | Tier::LowEmergency => Some(Severity::Critical),
        }
    }

    /// How bad the tier is on the vital's worse side (0 normal … 3 emergency); low-side tiers
    /// of a higher-is-worse vital count 0 here (a fever combination is not met by hypothermia).
    pub fn worse_side_level(self) -> u8 {
        match self {
            Tier::Vigilance => 1,
            Tier::Alert => 2,
            Tier::Emergency => 3,
            _ => 0,
        }
    }
}

/// The tier names a combination condition may use with `at_least`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TierLevel {
    Vigilance,
    Alert,
    Emergency,
}

impl TierLevel {
    pub fn level(self) -> u8 {
        match self {
            TierLevel::Vigilance => 1,
            TierLevel::Alert => 2,
            TierLevel::Emergency => 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bands {
    HigherIsWorse {
        normal_lo: f64,
        normal_hi: f64,
        alert: f64,
        emergency: f64,
        low_alert: Option<f64>,
        low_emergency: Option<f64>,
    },
    LowerIsWorse {
        normal_min: f64,
        alert_max: f64,
        emergency_max: f64,
    },
}

impl Bands {
    /// Tier semantics of `thresholds.yaml` (its header comment is the reference).
    pub fn classify(&self, value: f64) -> Tier {
        match *self {
            Bands::HigherIsWorse {
                normal_lo,
                normal_hi,
                alert,
                emergency,
                low_alert,
                low_emergency,
            } => {
                if value >= emergency {
                    Tier::Emergency
                } else if value >= alert {
                    Tier::Alert
                } else if value > normal_hi {
                    Tier::Vigilance
                } else if value >= normal_lo {
                    Tier::Normal
                } else if low_emergency.is_some_and(|le| value < le) {
                    Tier::LowEmergency
                } else if low_alert.is_some_and(|la| value < la) {
                    Tier::LowAlert
                } else {
                    Tier::LowVigilance
                }
            }
            Bands::LowerIsWorse {
                normal_min,
                alert_max,
                emergency_max,
            } => {
                if value <= emergency_max {
                    Tier::Emergency
                } else if value <= alert_max {
                    Tier::Alert
                } else if value < normal_min {
                    Tier::Vigilance
                } else {
                    Tier::Normal
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgeGroup {
    pub id: String,
    pub min_years: u32,
    pub max_years: u32,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq)]
struct VitalTable {
    kind: VitalKind,
    /// One entry per age group (index = age-group index); an `all` table is repeated.
    bands: Vec<Bands>,
    critical_below: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PainThresholds {
    pub alert_min: i32,
    pub critical_min: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The vital is in this tier or worse, on its worse side.
    AtLeast { vital: Vital, level: TierLevel },
    /// A scalar (`pain`, `activity_level`) is at least this value.
    Min { field: String, min: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Combination {
    pub id: String,
    pub name: String,
    pub severity: Severity,
    pub all: Vec<Condition>,
    /// `{id}_{name}`: the alert engine's rule, interned once rather than named per sample.
    pub rule: RuleKey,
    /// `id`, the family of `rule`.
    pub family: Family,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persistence {
    pub critical_after_s: u64,
    pub alert_after_s: u64,
    pub warn_after_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cooldowns {
    pub critical: u64,
    pub alert: u64,
    pub warn: u64,
    pub info: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRules {
    pub battery_low_pct: i32,
    pub signal_poor_pct: i32,
    pub silent_after_s: u64,
    pub flatline_after_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    pub critical_unacknowledged_after_s: u64,
}

/// Validated thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub version: u32,
    /// Sorted by age, contiguous from 0.
    pub age_groups: Vec<AgeGroup>,
    /// Indexed by `Vital::index`: looked up for every vital of every sample, where a map's
    /// search showed in profiles.
    vitals: Vec<VitalTable>,
    pub pain: PainThresholds,
    /// (name, lo, hi) inclusive, sorted, covering 0..=10.
    pub activity_bands: Vec<(String, i32, i32)>,
    pub combinations: Vec<Combination>,
    pub persistence: Persistence,
    pub cooldown_s: Cooldowns,
    pub device: DeviceRules,
    pub escalation: Escalation,
}

// ---- the file as written -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThresholds {
    version: u32,
    age_groups: BTreeMap<String, RawAgeGroup>,
    vitals: BTreeMap<String, RawVital>,
    pain: PainThresholds,
    activity_bands: BTreeMap<String, [i32; 2]>,
    combinations: Vec<RawCombination>,
    persistence: Persistence,
    cooldown_s: Cooldowns,
    device: DeviceRules,
    escalation: Escalation,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgeGroup {
    min_years: u32,
    max_years: u32,
    label: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVital {
    kind: VitalKind,
    groups: BTreeMap<String, RawBands>,
    critical_below: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBands {
    normal: Option<[f64; 2]>,
    alert: Option<f64>,
    emergency: Option<f64>,
    low_alert: Option<f64>,
    low_emergency: Option<f64>,
    normal_min: Option<f64>,
    alert_max: Option<f64>,
    emergency_max: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCombination {
    id: String,
    name: String,
    severity: Severity,
    all: Vec<RawCondition>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    vital: String,
    at_least: Option<TierLevel>,
    min: Option<f64>,
}

/// Scalars a combination may test with `min`.
const SCALAR_CONDITION_FIELDS: [&str; 2] = ["pain", "activity_level"];

impl Thresholds {
    /// The shipped reference thresholds.
    pub fn reference() -> Thresholds {
        Thresholds::from_yaml(DEFAULT_THRESHOLDS_YAML)
            .expect("invariant: the embedded thresholds file is valid (tested)")
    }

    pub fn from_yaml(text: &str) -> Result<Thresholds, ThresholdsError> {
        let raw: RawThresholds =
            serde_yaml_ng::from_str(text).map_err(|e| ThresholdsError::Parse(e.to_string()))?;
        raw.validate()
    }

    pub fn age_group_index(&self, birth_date: NaiveDate, at: UtcMillis) -> Option<usize> {
        let years = at.date().years_since(birth_date)?;
        self.age_groups
            .iter()
            .position(|g| years >= g.min_years && years < g.max_years)
    }

    pub fn age_group(&self, birth_date: NaiveDate, at: UtcMillis) -> Option<&AgeGroup> {
        self.age_group_index(birth_date, at)
            .map(|i| &self.age_groups[i])
    }

    pub fn bands(&self, vital: Vital, age_group_index: usize) -> Option<&Bands> {
        self.vitals.get(vital.index())?.bands.get(age_group_index)
    }

    pub fn kind(&self, vital: Vital) -> Option<VitalKind> {
        self.vitals.get(vital.index()).map(|t| t.kind)
    }

    /// Tier of `value` for the age group; `None` when the vital has no table.
    pub fn classify(&self, vital: Vital, age_group_index: usize, value: f64) -> Option<Tier> {
        self.bands(vital, age_group_index)
            .map(|b| b.classify(value))
    }

    /// SpO₂ below this is critical at once, whatever the persistence rules say.
    pub fn spo2_critical_below(&self) -> Option<f64> {
        self.vitals.get(Vital::Spo2Pct.index())?.critical_below
    }

    pub fn activity_band(&self, level: i32) -> Option<&str> {
        self.activity_bands
            .iter()
            .find(|(_, lo, hi)| level >= *lo && level <= *hi)
            .map(|(name, _, _)| name.as_str())
    }
}

impl RawThresholds {
    fn validate(self) -> Result<Thresholds, ThresholdsError> {
        if self.version == 0 {
            return Err(invalid("version", "must be 1 or more"));
        }
        let age_groups = validate_age_groups(self.age_groups)?;
        let mut vitals = BTreeMap::new();
        for (name, raw) in self.vitals {
            let key = format!("vitals.{name}");
            let vital = Vital::from_field(&name).ok_or_else(|| {
                invalid(
                    &key,
                    format!("unknown vital; expected one of {}", vital_names()),
                )
            })?;
            vitals.insert(vital, validate_vital(&key, raw, &age_groups)?);
        }
        let vitals = Vital::ALL
            .iter()
            .map(|vital| {
                vitals
                    .remove(vital)
                    .ok_or_else(|| invalid(format!("vitals.{}", vital.field()), "missing"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pain = self.pain;
        if !(0..=10).contains(&pain.alert_min) || !(0..=10).contains(&pain.critical_min) {
            return Err(invalid(
                "pain",
                "alert_min and critical_min must be within 0..=10",
            ));
        }
        if pain.alert_min > pain.critical_min {
            return Err(invalid(
                "pain.alert_min",
                format!(
                    "{} must not exceed critical_min {}",
                    pain.alert_min, pain.critical_min
                ),
            ));
        }
        let activity_bands = validate_activity_bands(self.activity_bands)?;
        let combinations = validate_combinations(self.combinations)?;
        let d = self.device;
        for (key, v) in [
            ("device.battery_low_pct", d.battery_low_pct),
            ("device.signal_poor_pct", d.signal_poor_pct),
        ] {
            if !(0..=100).contains(&v) {
                return Err(invalid(key, format!("{v} is outside 0..=100")));
            }
        }
        let p = self.persistence;
        if !(p.critical_after_s <= p.alert_after_s && p.alert_after_s <= p.warn_after_s) {
            return Err(invalid(
                "persistence",
                "critical_after_s <= alert_after_s <= warn_after_s must hold (worse fires sooner)",
            ));
        }
        Ok(Thresholds {
            version: self.version,
            age_groups,
            vitals,
            pain,
            activity_bands,
            combinations,
            persistence: p,
            cooldown_s: self.cooldown_s,
            device: d,
            escalation: self.escalation,
        })
    }
}

fn vital_names() -> String {
    Vital::ALL.map(Vital::field).join(", ")
}

fn validate_age_groups(
    raw: BTreeMap<String, RawAgeGroup>,
) -> Result<Vec<AgeGroup>, ThresholdsError> {
    if raw.is_empty() {
        return Err(invalid("age_groups", "at least one group is required"));
    }
    let mut groups: Vec<AgeGroup> = raw
        .into_iter()
        .map(|(id, g)| AgeGroup {
            id,
            min_years: g.min_years,
            max_years: g.max_years,
            label: g.label,
        })
        .collect();
    if let Some(g) = groups.iter().find(|g| g.id == "all") {
        return Err(invalid(
            format!("age_groups.{}", g.id),
            "`all` is reserved for tables that apply to every group",
        ));
    }
    groups.sort_by_key(|g| (g.min_years, g.max_years));
    let mut expected_min = 0;
    for g in &groups {
        let key = format!("age_groups.{}", g.id);
        if g.min_years >= g.max_years {
            return Err(invalid(
                key,
                format!(
                    "min_years {} must be below max_years {}",
                    g.min_years, g.max_years
                ),
            ));
        }
        if g.min_years != expected_min {
            let what = if g.min_years > expected_min {
                "gap"
            } else {
                "overlap"
            };
            return Err(invalid(key, format!(
                "{what}: starts at {} but the previous group ends at {expected_min} (intervals are [min_years, max_years))",
                g.min_years
            )));
        }
        expected_min = g.max_years;
    }
    Ok(groups)
}

fn validate_vital(
    key: &str,
    raw: RawVital,
    groups: &[AgeGroup],
) -> Result<VitalTable, ThresholdsError> {
    let mut parsed = BTreeMap::new();
    for (group, bands) in raw.groups {
        let gkey = format!("{key}.groups.{group}");
        if group != "all" && !groups.iter().any(|g| g.id == group) {
            return Err(invalid(gkey, "unknown age group"));
        }
        parsed.insert(group, validate_bands(&gkey, raw.kind, bands)?);
    }
    let bands: Vec<Bands> = if let Some(all) = parsed.get("all") {
        if parsed.len() > 1 {
            return Err(invalid(
                format!("{key}.groups"),
                "`all` cannot be mixed with per-group tables",
            ));
        }
        vec![*all; groups.len()]
    } else {
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let b = parsed.get(&g.id).ok_or_else(|| {
                invalid(
                    format!("{key}.groups.{}", g.id),
                    "missing (every age group needs a table, or use `all`)",
                )
            })?;
            out.push(*b);
        }
        out
    };
    if let Some(cb) = raw.critical_below {
        if raw.kind != VitalKind::LowerIsWorse {
            return Err(invalid(
                format!("{key}.critical_below"),
                "only a lower_is_worse vital can have critical_below",
            ));
        }
        if !cb.is_finite() {
            return Err(invalid(format!("{key}.critical_below"), "must be a number"));
        }
    }
    Ok(VitalTable {
        kind: raw.kind,
        bands,
        critical_below: raw.critical_below,
    })
}

fn validate_bands(key: &str, kind: VitalKind, b: RawBands) -> Result<Bands, ThresholdsError> {
    let require = |name: &str, v: Option<f64>| {
        v.filter(|x| x.is_finite())
            .ok_or_else(|| invalid(format!("{key}.{name}"), "missing"))
    };
    let forbid = |name: &str, present: bool| {
        if present {
            Err(invalid(
                format!("{key}.{name}"),
                format!("not used by a {kind:?} vital"),
            ))
        } else {
            Ok(())
        }
    };
    let ascending = |names: &[(&str, f64)], strict: bool| -> Result<(), ThresholdsError> {
        for pair in names.windows(2) {
            let ((a, x), (b, y)) = (pair[0], pair[1]);
            let ok = if strict { x < y } else { x <= y };
            if !ok {
                let op = if strict { "below" } else { "at most" };
                return Err(invalid(
                    format!("{key}.{a}"),
                    format!("{x} must be {op} {b} ({y}): tiers must be ordered"),
                ));
            }
        }
        Ok(())
    };
    match kind {
        VitalKind::HigherIsWorse => {
            forbid("normal_min", b.normal_min.is_some())?;
            forbid("alert_max", b.alert_max.is_some())?;
            forbid("emergency_max", b.emergency_max.is_some())?;
            let [lo, hi] = b
                .normal
                .ok_or_else(|| invalid(format!("{key}.normal"), "missing"))?;
            let alert = require("alert", b.alert)?;
            let emergency = require("emergency", b.emergency)?;
            ascending(&[("normal[0]", lo), ("normal[1]", hi)], false)?;
            ascending(
                &[
                    ("normal[1]", hi),
                    ("alert", alert),
                    ("emergency", emergency),
                ],
                true,
            )?;
            if let Some(la) = b.low_alert {
                ascending(&[("low_alert", la), ("normal[0]", lo)], false)?;
            }
            if let Some(le) = b.low_emergency {
                let la = b
                    .low_alert
                    .ok_or_else(|| invalid(format!("{key}.low_emergency"), "needs low_alert"))?;
                ascending(&[("low_emergency", le), ("low_alert", la)], true)?;
            }
            Ok(Bands::HigherIsWorse {
                normal_lo: lo,
                normal_hi: hi,
                alert,
                emergency,
                low_alert: b.low_alert,
                low_emergency: b.low_emergency,
            })
        }
        VitalKind::LowerIsWorse => {
            forbid("normal", b.normal.is_some())?;
            forbid("alert", b.alert.is_some())?;
            forbid("emergency", b.emergency.is_some())?;
            forbid("low_alert", b.low_alert.is_some())?;
            forbid("low_emergency", b.low_emergency.is_some())?;
            let normal_min = require("normal_min", b.normal_min)?;
            let alert_max = require("alert_max", b.alert_max)?;
            let emergency_max = require("emergency_max", b.emergency_max)?;
            ascending(
                &[
                    ("emergency_max", emergency_max),
                    ("alert_max", alert_max),
                    ("normal_min", normal_min),
                ],
                true,
            )?;
            Ok(Bands::LowerIsWorse {
                normal_min,
                alert_max,
                emergency_max,
            })
        }
    }
}

fn validate_activity_bands(
    raw: BTreeMap<String, [i32; 2]>,
) -> Result<Vec<(String, i32, i32)>, ThresholdsError> {
    let mut bands: Vec<(String, i32, i32)> =
        raw.into_iter().map(|(n, [lo, hi])| (n, lo, hi)).collect();
    bands.sort_by_key(|b| b.1);
    let mut next = 0;
    for (name, lo, hi) in &bands {
        let key = format!("activity_bands.{name}");
        if lo > hi {
            return Err(invalid(key, format!("[{lo}, {hi}] is empty")));
        }
        if *lo != next {
            return Err(invalid(key, format!("starts at {lo}, expected {next}: bands must cover 0..=10 without gaps or overlaps")));
        }
        next = hi + 1;
    }
    if next != 11 {
        return Err(invalid(
            "activity_bands",
            "bands must cover activity levels 0..=10",
        ));
    }
    Ok(bands)
}

fn validate_combinations(raw: Vec<RawCombination>) -> Result<Vec<Combination>, ThresholdsError> {
    if raw.len() > MAX_COMBINATIONS {
        return Err(invalid(
            "combinations",
            format!(
                "{} declared, at most {MAX_COMBINATIONS} are supported",
                raw.len()
            ),
        ));
    }
    let mut out: Vec<Combination> = Vec::with_capacity(raw.len());
    for (i, c) in raw.into_iter().enumerate() {
        let key = format!("combinations[{i}]");
        if out.iter().any(|o| o.id == c.id) {
            return Err(invalid(
                format!("{key}.id"),
                format!("duplicate id {}", c.id),
            ));
        }
        if c.all.is_empty() {
            return Err(invalid(
                format!("{key}.all"),
                "needs at least one condition",
            ));
        }
        let mut all = Vec::with_capacity(c.all.len());
        for (j, cond) in c.all.into_iter().enumerate() {
            let ckey = format!("{key}.all[{j}]");
            let parsed = match (cond.at_least, cond.min) {
                (Some(level), None) => {
                    let vital = Vital::from_field(&cond.vital).ok_or_else(|| {
                        invalid(
                            format!("{ckey}.vital"),
                            format!(
                                "{:?} has no tier table; expected one of {}",
                                cond.vital,
                                vital_names()
                            ),
                        )
                    })?;
                    Condition::AtLeast { vital, level }
                }
                (None, Some(min)) => {
                    if !SCALAR_CONDITION_FIELDS.contains(&cond.vital.as_str()) {
                        return Err(invalid(
                            format!("{ckey}.vital"),
                            format!(
                                "`min` applies to {}, not {:?}",
                                SCALAR_CONDITION_FIELDS.join(" or "),
                                cond.vital
                            ),
                        ));
                    }
                    Condition::Min {
                        field: cond.vital,
                        min,
                    }
                }
                _ => return Err(invalid(ckey, "needs exactly one of `at_least` or `min`")),
            };
            all.push(parsed);
        }
        out.push(Combination {
            rule: RuleKey::in_family(&format!("{}_{}", c.id, c.name), &c.id),
            family: Family::named(&c.id),
            id: c.id,
            name: c.name,
            severity: c.severity,
            all,
        });
    }
    Ok(out)
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
