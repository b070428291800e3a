//! The figures of `patient_daily` that come from Silver's rows, in one pass over each patient's
//! run of rows (Silver is sorted by patient), patients shared out among the cores.
//!
//! Polars' group-by evaluated each of the 25 vital statistics as its own expression: a cast,
//! a filter on `trend_eligible` and a gather of the group's rows per statistic, then a
//! quickselect per quantile. Here each patient's eligible values of a vital are copied once
//! into a buffer that serves all five statistics.

use super::batch_alerts::PatientRanges;
use super::frame::Columns;
use super::gold_daily::VITAL_STATS;
use super::rows::Rows;
use super::EtlError;
use polars::prelude::*;
use rayon::prelude::*;
use std::ops::Range;

/// Minimum, mean, 5th and 95th percentiles and maximum of one vital over a patient's
/// trend-eligible samples; all `None` when none carried the vital.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VitalStats {
    pub min: Option<f64>,
    pub mean: Option<f64>,
    pub p5: Option<f64>,
    pub p95: Option<f64>,
    pub max: Option<f64>,
}

impl VitalStats {
    /// The statistics of `values` (reordered in place by the quantile selections).
    fn of(values: &mut [f64]) -> VitalStats {
        if values.is_empty() {
            return VitalStats::default();
        }
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        // Neumaier's compensated sum: a day of one-decimal readings summed one by one drifts
        // in the last digits, and the mean should not depend on the order of the rows.
        let (mut sum, mut lost) = (0.0f64, 0.0f64);
        for &v in values.iter() {
            min = min.min(v);
            max = max.max(v);
            let next = sum + v;
            lost += if sum.abs() >= v.abs() {
                (sum - next) + v
            } else {
                (v - next) + sum
            };
            sum = next;
        }
        VitalStats {
            min: Some(min),
            mean: Some((sum + lost) / values.len() as f64),
            p5: quantile_linear(values, 0.05),
            p95: quantile_linear(values, 0.95),
            max: Some(max),
        }
    }
}

/// The `q` quantile of `values`, interpolated linearly between the two nearest ranks: Polars'
/// `QuantileMethod::Linear`, with its arithmetic, so a patient without missing values gets
/// the same bits as `quantile(q, Linear)` gave. (Where some eligible samples lack the vital,
/// Polars offsets its rank by the nulls and may differ in the last bit.)
fn quantile_linear(values: &mut [f64], q: f64) -> Option<f64> {
    let n = values.len();
    if n <= 1 {
        return values.first().copied();
    }
    let rank = (n as f64 - 1.0) * q;
    let below = (rank as usize).min(n - 1);
    let above = rank.ceil() as usize;
    let (_, lower, rest) = values.select_nth_unstable_by(below, f64::total_cmp);
    let lower = *lower;
    if below == above {
        return Some(lower);
    }
    let upper = rest.iter().copied().min_by(f64::total_cmp)?;
    Some(if lower == upper {
        lower
    } else {
        (rank - below as f64) * (upper - lower) + lower
    })
}

/// One patient's day as `patient_daily` reports it, besides keys, reference data and alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientDay {
    pub samples: i64,
    pub trend_eligible_samples: i64,
    /// The age-group code of the patient's last row of the day.
    pub age_group: Option<i16>,
    /// In `VITAL_STATS` order.
    pub vitals: [VitalStats; VITAL_STATS.len()],
    /// Eligible samples per worst tier level (normal, vigilance, alert, emergency).
    pub tier_samples: [i64; 4],
    /// Mean |ΔHR| between consecutive eligible samples at most `max_gap_ms` apart.
    pub hr_variability: Option<f64>,
    pub battery_min: Option<i16>,
    pub battery_mean: Option<f64>,
    pub signal_mean: Option<f64>,
    /// Share of the samples with a signal quality below `signal_poor_pct`.
    pub signal_poor_share: Option<f64>,
}

/// The tier columns that describe the patient (heat index describes the weather).
const PATIENT_TIERS: [&str; 5] = [
    "spo2_tier",
    "heart_rate_tier",
    "respiratory_rate_tier",
    "temperature_tier",
    "hydration_tier",
];

/// A vital column, whichever numeric type Silver keeps it in.
enum Vital<'a> {
    Decimal(Rows<'a, Float64Type>),
    Whole(Rows<'a, Int16Type>),
}

impl Vital<'_> {
    fn get(&self, i: usize) -> Option<f64> {
        match self {
            Vital::Decimal(rows) => rows.get(i),
            Vital::Whole(rows) => rows.get(i).map(f64::from),
        }
    }
}

/// The Silver columns the summary reads, fetched once.
struct SilverRows<'a> {
    eligible: Rows<'a, BooleanType>,
    recorded: Rows<'a, Int64Type>,
    age_group: Rows<'a, Int16Type>,
    vitals: Vec<Vital<'a>>,
    heart_rate: Rows<'a, Int16Type>,
    tiers: Vec<Rows<'a, Int16Type>>,
    battery: Rows<'a, Int16Type>,
    signal: Rows<'a, Int16Type>,
}

impl<'a> SilverRows<'a> {
    fn new(c: &Columns<'a>) -> Result<Self, EtlError> {
        let vitals = VITAL_STATS
            .iter()
            .map(|(name, _)| match c.f64(name) {
                Ok(values) => Ok(Vital::Decimal(Rows::new(values))),
                Err(_) => c.i16(name).map(|values| Vital::Whole(Rows::new(values))),
            })
            .collect::<Result<_, _>>()?;
        Ok(SilverRows {
            eligible: Rows::new(c.bool("trend_eligible")?),
            recorded: Rows::new(c.millis("recorded_at")?),
            age_group: Rows::new(c.i16("age_group")?),
            vitals,
            heart_rate: Rows::new(c.i16("heart_rate_bpm")?),
            tiers: PATIENT_TIERS
                .iter()
                .map(|t| c.i16(t).map(Rows::new))
                .collect::<Result<_, _>>()?,
            battery: Rows::new(c.i16("battery_pct")?),
            signal: Rows::new(c.i16("signal_quality_pct")?),
        })
    }
}

/// How bad a Silver tier code is: 0 normal … 3 emergency, on either side.
fn tier_level(code: i16) -> Option<usize> {
    use crate::domain::thresholds::Tier;
    Some(match super::silver::tier_from_code(code)? {
        Tier::Normal => 0,
        Tier::Vigilance | Tier::LowVigilance => 1,
        Tier::Alert | Tier::LowAlert => 2,
        Tier::Emergency | Tier::LowEmergency => 3,
    })
}

/// Sum and count of the present values of a column.
#[derive(Default)]
struct Mean {
    sum: f64,
    count: u32,
}

impl Mean {
    fn add(&mut self, value: Option<f64>) {
        if let Some(v) = value {
            self.sum += v;
            self.count += 1;
        }
    }

    fn get(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / f64::from(self.count))
    }
}

/// Each patient's day, in the order of `ranges`.
pub fn summarise(
    silver: &DataFrame,
    ranges: &PatientRanges,
    signal_poor_pct: i32,
    max_gap_ms: i64,
) -> Result<Vec<PatientDay>, EtlError> {
    let rows = SilverRows::new(&Columns::new(silver, "Silver"))?;
    Ok(ranges
        .par_iter()
        .map_init(
            || vec![Vec::new(); VITAL_STATS.len()],
            |buffers, (_, range)| {
                patient_day(&rows, range.clone(), buffers, signal_poor_pct, max_gap_ms)
            },
        )
        .collect())
}

fn patient_day(
    rows: &SilverRows<'_>,
    range: Range<usize>,
    buffers: &mut [Vec<f64>],
    signal_poor_pct: i32,
    max_gap_ms: i64,
) -> PatientDay {
    for b in buffers.iter_mut() {
        b.clear();
    }
    let mut tier_samples = [0i64; 4];
    let (mut hr_steps, mut previous_hr) = (Mean::default(), None::<(i64, i16)>);
    let (mut battery_min, mut battery) = (None::<i16>, Mean::default());
    let (mut signal, mut signal_poor) = (Mean::default(), Mean::default());
    let mut eligible_samples = 0;
    for i in range.clone() {
        let b = rows.battery.get(i);
        battery.add(b.map(f64::from));
        battery_min = match (battery_min, b) {
            (Some(m), Some(b)) => Some(m.min(b)),
            (m, b) => m.or(b),
        };
        let s = rows.signal.get(i);
        signal.add(s.map(f64::from));
        signal_poor.add(s.map(|s| f64::from(u8::from(i32::from(s) < signal_poor_pct))));
        if rows.eligible.flag(i) != Some(true) {
            continue;
        }
        eligible_samples += 1;
        for (vital, buffer) in rows.vitals.iter().zip(buffers.iter_mut()) {
            if let Some(v) = vital.get(i) {
                buffer.push(v);
            }
        }
        let worst = rows
            .tiers
            .iter()
            .filter_map(|t| t.get(i).and_then(tier_level))
            .max();
        if let Some(level) = worst {
            tier_samples[level] += 1;
        }
        let at = rows.recorded.get(i).unwrap_or_default();
        if let Some(hr) = rows.heart_rate.get(i) {
            if let Some((t0, hr0)) = previous_hr {
                if at - t0 <= max_gap_ms {
                    hr_steps.add(Some(f64::from((hr - hr0).abs())));
                }
            }
            previous_hr = Some((at, hr));
        }
    }
    let mut vitals = [VitalStats::default(); VITAL_STATS.len()];
    for (stats, buffer) in vitals.iter_mut().zip(buffers.iter_mut()) {
        *stats = VitalStats::of(buffer);
    }
    PatientDay {
        samples: range.len() as i64,
        trend_eligible_samples: eligible_samples,
        age_group: range.clone().last().and_then(|i| rows.age_group.get(i)),
        vitals,
        tier_samples,
        hr_variability: hr_steps.get(),
        battery_min,
        battery_mean: battery.get(),
        signal_mean: signal.get(),
        signal_poor_share: signal_poor.get(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polars' own quantile, the reference the selection must agree with bit for bit.
    fn polars_quantile(values: &[f64], q: f64) -> Option<f64> {
        Float64Chunked::from_slice("v".into(), values)
            .quantile(q, QuantileMethod::Linear)
            .expect("quantile")
    }

    #[test]
    fn quantiles_are_polars_linear_quantiles_bit_for_bit() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for n in [0usize, 1, 2, 3, 7, 20, 21, 101, 2_880] {
            // Tenths in a narrow band, as vitals are: many ties.
            let values: Vec<f64> = (0..n)
                .map(|_| 900.0 / 10.0 + (next() % 100) as f64 / 10.0)
                .collect();
            for q in [0.0, 0.05, 0.5, 0.95, 1.0] {
                let mut ours = values.clone();
                let got = quantile_linear(&mut ours, q);
                let want = polars_quantile(&values, q);
                assert_eq!(
                    got.map(f64::to_bits),
                    want.map(f64::to_bits),
                    "n={n} q={q}: {got:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn stats_of_hand_computed_values() {
        // Sorted: 93, 94, 95, 96, 97 → p5 at rank 0.2, p95 at rank 3.8.
        let mut values = vec![97.0, 93.0, 96.0, 94.0, 95.0];
        let s = VitalStats::of(&mut values);
        assert_eq!(s.min, Some(93.0));
        assert_eq!(s.max, Some(97.0));
        assert_eq!(s.mean, Some(95.0));
        assert!((s.p5.expect("p5") - 93.2).abs() < 1e-12);
        assert!((s.p95.expect("p95") - 96.8).abs() < 1e-12);
        assert_eq!(VitalStats::of(&mut []), VitalStats::default());

        // A day of tenths: the compensated mean is the decimal mean, whatever the row order.
        let mut day: Vec<f64> = (0..2_880).map(|i| f64::from(900 + i % 97) / 10.0).collect();
        let exact_tenths: i64 = (0..2_880).map(|i| i64::from(900 + i % 97)).sum();
        let want = exact_tenths as f64 / 10.0 / 2_880.0;
        let forward = VitalStats::of(&mut day.clone()).mean.expect("mean");
        day.reverse();
        let backward = VitalStats::of(&mut day).mean.expect("mean");
        assert!((forward - want).abs() < 1e-12, "{forward} vs {want}");
        assert_eq!(forward.to_bits(), backward.to_bits());
    }
}
