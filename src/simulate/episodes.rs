//! Clinical episodes as explicit processes: Poisson onsets at a per-patient-year rate, a
//! duration, and a ramp → plateau → recovery shape scaled by a peak severity. The list is also
//! the ground truth that alert quality is measured against.

use super::cohort::Profile;
use super::config::{EpisodeKind, SimulationConfig};
use super::rng::{self, SimRng, Stream};
use crate::domain::time::{UtcMillis, MS_PER_DAY, MS_PER_HOUR};
use rand::RngExt;
use uuid::Uuid;

const MS_PER_YEAR: f64 = 365.25 * MS_PER_DAY as f64;

#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    pub episode_id: Uuid,
    pub patient_index: u32,
    pub patient_id: Uuid,
    pub kind: EpisodeKind,
    pub start: UtcMillis,
    pub end: UtcMillis,
    /// 0.4–1.0: how strongly the episode moves the vitals at its plateau.
    pub peak_severity: f64,
    ramp_end: i64,
    plateau_end: i64,
}

fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

impl Episode {
    /// Effect strength at `t`, 0 outside the episode, `peak_severity` on the plateau.
    pub fn intensity(&self, t: i64) -> f64 {
        if t < self.start.0 || t >= self.end.0 {
            return 0.0;
        }
        let shape = if t < self.ramp_end {
            smoothstep((t - self.start.0) as f64 / (self.ramp_end - self.start.0).max(1) as f64)
        } else if t < self.plateau_end {
            1.0
        } else {
            1.0 - smoothstep(
                (t - self.plateau_end) as f64 / (self.end.0 - self.plateau_end).max(1) as f64,
            )
        };
        shape * self.peak_severity
    }
}

/// Episode onsets for one patient over the run, sorted by start. Same-kind episodes may
/// overlap (a pure Poisson process keeps the configured rate exact); the physiology takes the
/// strongest.
pub fn generate(cfg: &SimulationConfig, profile: &Profile) -> Vec<Episode> {
    let mut r: SimRng = rng::stream(cfg.seed, Stream::Episodes, u64::from(profile.patient_index));
    let mut out = Vec::new();
    let (start, end) = (cfg.start.0, cfg.end().0);
    for kind in EpisodeKind::ALL {
        let mut per_year = cfg.episode_rates.rate(kind, profile.genotype) * cfg.crisis_rate;
        if kind == EpisodeKind::InfectionFever && profile.age_years_at_start < 13.0 {
            // Children (and functionally asplenic SCD children above all) catch more infections.
            per_year *= 1.5;
        }
        if per_year <= 0.0 {
            continue;
        }
        let rate_per_ms = per_year / MS_PER_YEAR;
        let mut t = start as f64;
        loop {
            let u: f64 = r.random();
            t += -(1.0 - u).ln() / rate_per_ms;
            if t >= end as f64 {
                break;
            }
            let (lo, hi) = kind.duration_hours();
            let duration = (r.random_range(lo..hi) * MS_PER_HOUR as f64) as i64;
            let ramp = r.random_range(0.1..0.3);
            let plateau = r.random_range(0.3..0.5);
            let s = t as i64;
            out.push(Episode {
                episode_id: rng::uuid(&mut r),
                patient_index: profile.patient_index,
                patient_id: profile.patient_id,
                kind,
                start: UtcMillis(s),
                end: UtcMillis(s + duration),
                peak_severity: r.random_range(0.4..1.0),
                ramp_end: s + (duration as f64 * ramp) as i64,
                plateau_end: s + (duration as f64 * (ramp + plateau)) as i64,
            });
        }
    }
    out.sort_by_key(|e| (e.start, e.kind));
    out
}
