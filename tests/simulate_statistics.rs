//! Statistical checks on large cohorts: the configured mixes and rates come out within
//! tolerance, and crises look like crises in the vitals.

use kidjamo::domain::people::Genotype;
use kidjamo::domain::time::{UtcMillis, MS_PER_DAY};
use kidjamo::simulate::{cohort, episodes, EpisodeKind, SimulationConfig, Simulator};
use std::collections::BTreeMap;

const START: UtcMillis = UtcMillis(1_772_323_200_000); // 2026-03-01T00:00:00Z

#[test]
fn statistics_cohort_genotype_and_age_mix_match_the_configuration() {
    let cfg = SimulationConfig::new(7, 20_000, START, 1);
    let c = cohort::generate(&cfg);
    let n = c.patients.len() as f64;
    let mut genotypes: BTreeMap<Genotype, f64> = BTreeMap::new();
    for p in &c.patients {
        *genotypes.entry(p.genotype).or_default() += 1.0 / n;
    }
    for (g, share) in &cfg.genotype_mix {
        let got = genotypes.get(g).copied().unwrap_or(0.0);
        assert!((got - share).abs() < 0.015, "{g}: {got:.3} vs {share}");
    }
    let buckets = [
        (0, 6, 0.20),
        (6, 13, 0.30),
        (13, 18, 0.25),
        (18, 41, 0.15),
        (41, 81, 0.10),
    ];
    for (lo, hi, share) in buckets {
        let got = c
            .patients
            .iter()
            .filter(|p| {
                let age = START.date().years_since(p.birth_date).unwrap_or(0);
                age >= lo && age < hi
            })
            .count() as f64
            / n;
        assert!(
            (got - share).abs() < 0.015,
            "ages {lo}-{hi}: {got:.3} vs {share}"
        );
    }
    // Every minor has one or two caregivers; every patient a primary physician and a device.
    for p in &c.patients {
        let age = START.date().years_since(p.birth_date).unwrap_or(0);
        let caregivers = c
            .caregivers
            .iter()
            .filter(|l| l.patient_id == p.patient_id)
            .count();
        if age < 18 {
            assert!(
                (1..=2).contains(&caregivers),
                "minor with {caregivers} caregivers"
            );
        }
        assert!(
            p.weight_kg > 0.0 && p.weight_kg < 500.0 && p.height_cm > 0.0 && p.height_cm < 300.0
        );
        if c.patients.len() > 2000 {
            break;
        }
    }
    let replaced = c.devices.len() - c.patients.len();
    let share = replaced as f64 / n;
    assert!(
        (share - 0.10).abs() < 0.015,
        "device replacements {share:.3}"
    );
}

#[test]
fn statistics_episode_rates_match_the_configured_rates() {
    let mut cfg = SimulationConfig::new(11, 6_000, START, 365);
    cfg.crisis_rate = 1.0;
    let c = cohort::generate(&cfg);
    let mut observed: BTreeMap<(EpisodeKind, Genotype), f64> = BTreeMap::new();
    let mut patient_years: BTreeMap<Genotype, f64> = BTreeMap::new();
    for p in &c.profiles {
        *patient_years.entry(p.genotype).or_default() += 365.0 / 365.25;
        for e in episodes::generate(&cfg, p) {
            *observed.entry((e.kind, p.genotype)).or_default() += 1.0;
        }
    }
    // Infection rates are raised for children, so compare the unmodified kinds exactly.
    for kind in [
        EpisodeKind::VasoOcclusiveCrisis,
        EpisodeKind::DehydrationHeat,
    ] {
        for g in [Genotype::SS, Genotype::SC] {
            let expected = cfg.episode_rates.rate(kind, g) * patient_years[&g];
            let got = observed.get(&(kind, g)).copied().unwrap_or(0.0);
            let tolerance = 4.0 * expected.sqrt(); // four standard deviations of a Poisson count
            assert!(
                (got - expected).abs() < tolerance,
                "{} {g}: {got} vs {expected:.0}",
                kind.as_str()
            );
        }
    }
}

#[test]
fn statistics_spo2_is_lower_during_crises_than_outside() {
    let mut cfg = SimulationConfig::new(3, 150, START, 10);
    cfg.crisis_rate = 6.0;
    cfg.faults = kidjamo::simulate::FaultRates::none();
    let c = cohort::generate(&cfg);
    let mut sim = Simulator::new(&cfg, &c);
    let eps: Vec<_> = sim
        .episodes()
        .filter(|e| {
            matches!(
                e.kind,
                EpisodeKind::VasoOcclusiveCrisis | EpisodeKind::AcuteChestSyndrome
            )
        })
        .cloned()
        .collect();
    let (mut inside, mut outside) = ((0.0, 0u64), (0.0, 0u64));
    while let Some(chunk) = sim.next_chunk() {
        for r in chunk.iter() {
            let m = &r.measurement;
            let Some(spo2) = m.vitals.spo2_pct else {
                continue;
            };
            let t = m.recorded_at.0;
            let in_crisis = eps
                .iter()
                .any(|e| e.patient_id == m.patient_id && e.intensity(t) > 0.5);
            let slot = if in_crisis { &mut inside } else { &mut outside };
            slot.0 += spo2;
            slot.1 += 1;
        }
    }
    assert!(inside.1 > 1000, "too few crisis samples: {}", inside.1);
    let (mean_in, mean_out) = (inside.0 / inside.1 as f64, outside.0 / outside.1 as f64);
    assert!(
        mean_out - mean_in > 2.0,
        "SpO₂ in crisis {mean_in:.2} vs outside {mean_out:.2}"
    );
    let _ = MS_PER_DAY;
}
