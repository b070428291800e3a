//! Properties of the simulator: deterministic whatever the thread count, and every record the
//! fault injection did not break is valid.

use kidjamo::domain::time::{UtcMillis, MS_PER_DAY};
use kidjamo::domain::wire;
use kidjamo::simulate::{cohort, FaultKind, SimulationConfig, Simulator};
use proptest::prelude::*;
use std::collections::HashSet;

fn config(seed: u64, patients: u32, fault_scale: f64) -> SimulationConfig {
    let mut cfg = SimulationConfig::new(seed, patients, UtcMillis(1_772_323_200_000), 1); // 2026-03-01
    cfg.crisis_rate = 20.0;
    cfg.faults.malformed = (cfg.faults.malformed * fault_scale).min(0.2);
    cfg.faults.duplicate = (cfg.faults.duplicate * fault_scale).min(0.2);
    cfg.faults.late = (cfg.faults.late * fault_scale).min(0.2);
    cfg.faults.clock_skew_per_day *= fault_scale;
    cfg.faults.flatline_per_day *= fault_scale;
    cfg.faults.sensor_drop_per_day *= fault_scale;
    cfg
}

/// The wire bytes of every record, in delivery order, with the faults file rows.
fn run_in_pool(cfg: &SimulationConfig, threads: usize) -> (Vec<u8>, Vec<String>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    pool.install(|| {
        let cohort = cohort::generate(cfg);
        let mut sim = Simulator::new(cfg, &cohort);
        let (mut bytes, mut faults) = (Vec::new(), Vec::new());
        while let Some(chunk) = sim.next_chunk() {
            for r in chunk.iter() {
                r.write_wire(&mut bytes);
                bytes.push(b'\n');
            }
            faults.extend(chunk.faults.iter().map(|f| format!("{f:?}")));
        }
        (bytes, faults)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn simulation_is_identical_with_one_thread_or_several(seed in any::<u64>(), patients in 1u32..12) {
        let cfg = config(seed, patients, 20.0);
        let one = run_in_pool(&cfg, 1);
        let three = run_in_pool(&cfg, 3);
        prop_assert!(!one.0.is_empty());
        prop_assert_eq!(one, three);
    }

    #[test]
    fn simulation_records_are_valid_unless_a_listed_fault_broke_them(seed in any::<u64>(), patients in 1u32..10) {
        let cfg = config(seed, patients, 30.0);
        let cohort = cohort::generate(&cfg);
        let known: HashSet<_> = cohort.patients.iter().map(|p| p.patient_id).collect();
        let mut sim = Simulator::new(&cfg, &cohort);
        let mut chunks = Vec::new();
        let mut faults = Vec::new();
        while let Some(c) = sim.next_chunk() {
            faults.extend(c.faults.iter().cloned());
            chunks.push(c);
        }
        let breaking: HashSet<_> = faults.iter().filter(|f| f.kind.breaks_records()).filter_map(|f| f.message_id).collect();
        let skews: Vec<_> = faults.iter().filter(|f| f.kind == FaultKind::ClockSkew).collect();
        let mut checked = 0;
        for r in chunks.iter().flat_map(|c| c.iter()) {
            let mut raw = Vec::new();
            r.write_wire(&mut raw);
            let parsed = wire::parse_json(&raw);
            let problems: Vec<String> = match &parsed {
                Err(issues) => issues.iter().map(|i| i.qualified_code()).collect(),
                Ok(m) => {
                    let mut p: Vec<String> = m.validate(r.emit_at).iter().map(|i| i.qualified_code()).collect();
                    if !known.contains(&m.patient_id) { p.push("unknown_patient".into()); }
                    p
                }
            };
            let listed = breaking.contains(&r.measurement.message_id);
            if listed {
                prop_assert!(!problems.is_empty(), "a breaking fault left record {} valid", r.measurement.message_id);
            } else if !problems.is_empty() {
                // Only a skewed device clock may push a sample into the future without a per-record entry.
                let in_skew = problems.iter().all(|p| p == "future_timestamp:recorded_at")
                    && skews.iter().any(|s| s.device_id == r.measurement.device_id
                        && r.measurement.recorded_at.0 >= s.start.0 && r.measurement.recorded_at.0 <= s.end.0 + 10 * 60_000);
                prop_assert!(in_skew, "record {} invalid ({problems:?}) but no fault lists it", r.measurement.message_id);
            }
            if let Ok(m) = parsed {
                if !listed {
                    prop_assert_eq!(&m, &r.measurement, "wire round trip changed the record");
                }
            }
            checked += 1;
        }
        prop_assert!(checked as i64 >= i64::from(patients) * (MS_PER_DAY / cfg.interval_ms) / 2);
    }
}
