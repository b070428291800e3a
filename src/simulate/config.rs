//! Parameters of a simulation run. Validated once, so the generators can assume sane values.

use crate::domain::people::Genotype;
use crate::domain::time::{UtcMillis, MS_PER_DAY, MS_PER_SECOND};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EpisodeKind {
    VasoOcclusiveCrisis,
    InfectionFever,
    AcuteChestSyndrome,
    DehydrationHeat,
}

impl EpisodeKind {
    pub const ALL: [EpisodeKind; 4] = [
        EpisodeKind::VasoOcclusiveCrisis,
        EpisodeKind::InfectionFever,
        EpisodeKind::AcuteChestSyndrome,
        EpisodeKind::DehydrationHeat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EpisodeKind::VasoOcclusiveCrisis => "vaso_occlusive_crisis",
            EpisodeKind::InfectionFever => "infection_fever",
            EpisodeKind::AcuteChestSyndrome => "acute_chest_syndrome",
            EpisodeKind::DehydrationHeat => "dehydration_heat",
        }
    }

    pub fn parse(s: &str) -> Option<EpisodeKind> {
        EpisodeKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Duration range in hours (uniform). Home-monitored painful crises last days; heat stress
    /// hours.
    pub fn duration_hours(self) -> (f64, f64) {
        match self {
            EpisodeKind::VasoOcclusiveCrisis => (24.0, 144.0),
            EpisodeKind::InfectionFever => (36.0, 120.0),
            EpisodeKind::AcuteChestSyndrome => (48.0, 168.0),
            EpisodeKind::DehydrationHeat => (3.0, 12.0),
        }
    }
}

/// Onset rates per patient-year, by episode kind and genotype.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeRates(pub BTreeMap<EpisodeKind, BTreeMap<Genotype, f64>>);

impl Default for EpisodeRates {
    /// Severe genotypes (SS, Sβ0) have the most crises; AS carriers almost none. Rates are for
    /// home-monitored episodes, higher than hospital admission rates.
    fn default() -> Self {
        use Genotype::*;
        let table = |ss, sc, as_, sb0, sbp| {
            BTreeMap::from([
                (SS, ss),
                (SC, sc),
                (AS, as_),
                (SBeta0, sb0),
                (SBetaPlus, sbp),
            ])
        };
        EpisodeRates(BTreeMap::from([
            (
                EpisodeKind::VasoOcclusiveCrisis,
                table(4.0, 1.5, 0.2, 3.5, 1.5),
            ),
            (EpisodeKind::InfectionFever, table(3.0, 2.5, 2.0, 3.0, 2.5)),
            (
                EpisodeKind::AcuteChestSyndrome,
                table(0.5, 0.15, 0.02, 0.4, 0.15),
            ),
            (EpisodeKind::DehydrationHeat, table(2.0, 2.0, 2.0, 2.0, 2.0)),
        ]))
    }
}

impl EpisodeRates {
    pub fn rate(&self, kind: EpisodeKind, genotype: Genotype) -> f64 {
        self.0
            .get(&kind)
            .and_then(|m| m.get(&genotype))
            .copied()
            .unwrap_or(0.0)
    }
}

/// Fault-injection rates. Per-record rates are probabilities per emitted sample; span faults
/// are expected occurrences per patient-day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultRates {
    /// Bad JSON, wrong types, out-of-range values, unknown patient (`--fault-rate`).
    pub malformed: f64,
    /// Same sample resent with the same message_id.
    pub duplicate: f64,
    /// Delivered minutes to hours after it was recorded (store and forward).
    pub late: f64,
    /// Spurious desaturation flagged `motion`, per sample while active.
    pub motion: f64,
    pub sensor_drop_per_day: f64,
    pub flatline_per_day: f64,
    pub clock_skew_per_day: f64,
}

impl Default for FaultRates {
    fn default() -> Self {
        FaultRates {
            malformed: 0.0005,
            duplicate: 0.002,
            late: 0.003,
            motion: 0.02,
            sensor_drop_per_day: 0.3,
            flatline_per_day: 0.05,
            clock_skew_per_day: 0.02,
        }
    }
}

impl FaultRates {
    pub fn none() -> Self {
        FaultRates {
            malformed: 0.0,
            duplicate: 0.0,
            late: 0.0,
            motion: 0.0,
            sensor_drop_per_day: 0.0,
            flatline_per_day: 0.0,
            clock_skew_per_day: 0.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimulationConfig {
    pub seed: u64,
    pub patients: u32,
    pub start: UtcMillis,
    pub days: u32,
    pub interval_ms: i64,
    /// Weights, normalised at use.
    pub genotype_mix: BTreeMap<Genotype, f64>,
    pub episode_rates: EpisodeRates,
    /// Multiplies every episode onset rate (`--crisis-rate`).
    pub crisis_rate: f64,
    pub faults: FaultRates,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        message: message.into(),
    }
}

pub fn default_genotype_mix() -> BTreeMap<Genotype, f64> {
    BTreeMap::from([
        (Genotype::SS, 0.55),
        (Genotype::SC, 0.20),
        (Genotype::SBeta0, 0.10),
        (Genotype::SBetaPlus, 0.10),
        (Genotype::AS, 0.05),
    ])
}

impl SimulationConfig {
    pub fn new(seed: u64, patients: u32, start: UtcMillis, days: u32) -> Self {
        SimulationConfig {
            seed,
            patients,
            start,
            days,
            interval_ms: 30 * MS_PER_SECOND,
            genotype_mix: default_genotype_mix(),
            episode_rates: EpisodeRates::default(),
            crisis_rate: 1.0,
            faults: FaultRates::default(),
        }
    }

    pub fn end(&self) -> UtcMillis {
        UtcMillis(self.start.0 + i64::from(self.days) * MS_PER_DAY)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.patients == 0 {
            return Err(err("patients", "must be at least 1"));
        }
        if self.patients > 10_000_000 {
            return Err(err("patients", "at most 10,000,000"));
        }
        if self.days == 0 {
            return Err(err("days", "must be at least 1"));
        }
        if self.days > 3660 {
            return Err(err("days", "at most 3660 (ten years)"));
        }
        // Four-digit years keep every timestamp expressible in RFC 3339.
        const YEAR_1970: i64 = 0;
        const YEAR_2200: i64 = 7_258_118_400_000;
        if self.start.0 < YEAR_1970 || self.end().0 > YEAR_2200 {
            return Err(err(
                "start",
                format!("{} is outside 1970..2200", self.start),
            ));
        }
        if !(MS_PER_SECOND..=3_600 * MS_PER_SECOND).contains(&self.interval_ms) {
            return Err(err("interval", "must be between 1 s and 1 h"));
        }
        if self
            .genotype_mix
            .values()
            .any(|w| !w.is_finite() || *w < 0.0)
            || self.genotype_mix.values().sum::<f64>() <= 0.0
        {
            return Err(err(
                "genotype_mix",
                "weights must be non-negative and not all zero",
            ));
        }
        // Bounded so that an episode process always moves forward in time (an infinite rate
        // would never leave its first instant).
        if !self.crisis_rate.is_finite() || !(0.0..=1000.0).contains(&self.crisis_rate) {
            return Err(err(
                "crisis_rate",
                format!("{:?} must be a number in 0..=1000", self.crisis_rate),
            ));
        }
        for rates in self.episode_rates.0.values() {
            if rates
                .values()
                .any(|r| !r.is_finite() || !(0.0..=1000.0).contains(r))
            {
                return Err(err(
                    "episode_rates",
                    "rates must be numbers in 0..=1000 per patient-year",
                ));
            }
        }
        let f = self.faults;
        for (name, p) in [
            ("faults.malformed (--fault-rate)", f.malformed),
            ("faults.duplicate", f.duplicate),
            ("faults.late", f.late),
            ("faults.motion", f.motion),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(ConfigError {
                    field: "faults",
                    message: format!("{name} {p} must be a probability in 0..=1"),
                });
            }
        }
        for (name, r) in [
            ("sensor_drop_per_day", f.sensor_drop_per_day),
            ("flatline_per_day", f.flatline_per_day),
            ("clock_skew_per_day", f.clock_skew_per_day),
        ] {
            if !r.is_finite() || r < 0.0 {
                return Err(ConfigError {
                    field: "faults",
                    message: format!("{name} {r} must be a non-negative number"),
                });
            }
        }
        if f.malformed + f.duplicate + f.late > 1.0 {
            return Err(err(
                "faults",
                "malformed + duplicate + late must not exceed 1",
            ));
        }
        Ok(())
    }
}
