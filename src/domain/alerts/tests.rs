use super::*;
use crate::domain::measurement::{DeviceStatus, Measurement, Vitals};
use crate::domain::thresholds::Thresholds;
use crate::domain::QualityFlag;
use chrono::NaiveDate;

const T0: i64 = 1_772_323_200_000; // 2026-03-01T00:00:00Z

fn adult() -> PatientContext {
    PatientContext {
        patient_id: Uuid::from_u128(7),
        birth_date: NaiveDate::from_ymd_opt(1990, 5, 1).expect("date"),
    }
}

fn child() -> PatientContext {
    PatientContext {
        patient_id: Uuid::from_u128(8),
        birth_date: NaiveDate::from_ymd_opt(2020, 5, 1).expect("date"),
    }
}

/// A calm adult sample at `T0 + secs`, with signal and battery fine and every vital normal.
fn sample(ctx: &PatientContext, secs: i64) -> Measurement {
    Measurement {
        schema_version: 1,
        message_id: Uuid::from_u128(1000 + secs as u128),
        patient_id: ctx.patient_id,
        device_id: Uuid::from_u128(99),
        recorded_at: UtcMillis(T0 + secs * 1000),
        vitals: Vitals {
            // Readings move from sample to sample, as real ones do (a frozen pair is a flatline).
            spo2_pct: Some(97.0 + (secs / 30 % 3) as f64 * 0.1),
            heart_rate_bpm: Some(70 + (secs / 30 % 3) as i32),
            respiratory_rate_min: Some(14 + (secs / 30 % 2) as i32),
            temperature_c: Some(36.8),
            ambient_temperature_c: Some(24.0),
            relative_humidity_pct: Some(60.0),
            hydration_pct: Some(80.0),
            activity_level: Some(2),
            pain_scale: None,
        },
        device: DeviceStatus {
            battery_pct: Some(80),
            signal_quality_pct: Some(90),
            firmware_version: None,
        },
        quality_flag: QualityFlag::Ok,
    }
}

fn rules(events: &[AlertEvent]) -> Vec<String> {
    let mut r: Vec<String> = events
        .iter()
        .map(|e| match e {
            AlertEvent::Opened(a) => format!("open {}", a.rule_id),
            AlertEvent::Updated { alert_id, .. } => format!("update {alert_id}"),
            AlertEvent::AutoResolved(a) => format!("resolve {}", a.rule_id),
        })
        .collect();
    r.sort();
    r
}

#[test]
fn alerts_normal_samples_raise_nothing() {
    let t = Thresholds::reference();
    let mut e = AlertEngine::new(&t);
    for s in (0..3600).step_by(30) {
        assert!(
            e.on_sample(&adult(), &sample(&adult(), s)).is_empty(),
            "at {s}s"
        );
    }
}

#[test]
fn alerts_spo2_tiers_follow_the_age_group_and_critical_fires_at_once() {
    let t = Thresholds::reference();
    // 89 % is "emergency" for a 5-year-old (G2: <= 90) but only "alert" for an adult (G5: <= 88).
    let mut e = AlertEngine::new(&t);
    let mut m = sample(&child(), 0);
    m.vitals.spo2_pct = Some(89.0);
    m.vitals.heart_rate_bpm = Some(100);
    m.vitals.respiratory_rate_min = Some(25);
    assert_eq!(rules(&e.on_sample(&child(), &m)), ["open spo2_emergency"]);
    let mut m = sample(&adult(), 0);
    m.vitals.spo2_pct = Some(89.0);
    assert!(
        e.on_sample(&adult(), &m).is_empty(),
        "an adult alert tier waits 60 s"
    );
    let mut m = sample(&adult(), 30);
    m.vitals.spo2_pct = Some(87.9);
    assert_eq!(
        rules(&e.on_sample(&adult(), &m)),
        ["open spo2_critical", "open spo2_emergency"]
    );
}

#[test]
fn alerts_persistence_needs_the_tier_held_over_consecutive_samples() {
    let t = Thresholds::reference();
    let mut e = AlertEngine::new(&t);
    let fast = |s: i64| {
        let mut m = sample(&adult(), s);
        m.vitals.heart_rate_bpm = Some(115); // adult alert tier: >= 110, < 130
        m
    };
    assert!(e.on_sample(&adult(), &fast(0)).is_empty());
    assert!(e.on_sample(&adult(), &fast(30)).is_empty());
    // A normal sample breaks the run: the 60 s start again.
    assert!(e.on_sample(&adult(), &sample(&adult(), 60)).is_empty());
    assert!(e.on_sample(&adult(), &fast(90)).is_empty());
    assert!(e.on_sample(&adult(), &fast(120)).is_empty());
    let events = e.on_sample(&adult(), &fast(150));
    assert_eq!(rules(&events), ["open heart_rate_alert"]);
    assert_eq!(
        events[0].alert().expect("alert").first_seen_at,
        UtcMillis(T0 + 90_000),
        "the alert starts when the condition did"
    );
    assert_eq!(events[0].alert().expect("alert").severity, Severity::Alert);
}

#[test]
fn alerts_missing_or_excluded_samples_neither_fire_nor_break_a_run() {
    let t = Thresholds::reference();
    let mut e = AlertEngine::new(&t);
    let low = |s: i64| {
        let mut m = sample(&adult(), s);
        m.vitals.spo2_pct = Some(91.0); // adult alert tier
        m
    };
    assert!(e.on_sample(&adult(), &low(0)).is_empty());
    let mut missing = sample(&adult(), 30);
    missing.vitals.spo2_pct = None;
    assert!(
        e.on_sample(&adult(), &missing).is_empty(),
        "no alert from missing data"
    );
    let mut motion = sample(&adult(), 45);
    motion.vitals.spo2_pct = Some(70.0);
    motion.quality_flag = QualityFlag::Motion;
    assert!(
        e.on_sample(&adult(), &motion).is_empty(),
        "a motion artefact does not feed vital rules"
    );
    assert_eq!(rules(&e.on_sample(&adult(), &low(60))), ["open spo2_alert"]);
}

#[test]
fn alerts_cooldown_updates_the_open_alert_then_auto_resolves() {
    let t = Thresholds::reference();
    let mut e = AlertEngine::new(&t);
    let feverish = |s: i64| {
        let mut m = sample(&adult(), s);
        m.vitals.temperature_c = Some(39.2); // emergency -> critical, fires at once
        m
    };
    let first = e.on_sample(&adult(), &feverish(0));
    assert_eq!(rules(&first), ["open temperature_emergency"]);
    let id = first[0].alert_id();
    let again = e.on_sample(&adult(), &feverish(60));
    assert_eq!(rules(&again), [format!("update {id}")]);
    let updated = e
        .state()
        .open_alert(&adult().patient_id, &id)
        .expect("open");
    assert_eq!(updated.occurrences, 2);
    assert_eq!(updated.last_seen_at, UtcMillis(T0 + 60_000));
    // Normal for less than the critical cooldown (120 s): still open.
    assert!(e.on_sample(&adult(), &sample(&adult(), 120)).is_empty());
    let resolved = e.on_sample(&adult(), &sample(&adult(), 180));
    assert_eq!(rules(&resolved), ["resolve temperature_emergency"]);
    assert_eq!(
        resolved[0].alert().expect("alert").status,
        AlertStatus::AutoResolved
    );
    let reopened = e.on_sample(&adult(), &feverish(600));
    assert_eq!(rules(&reopened), ["open temperature_emergency"]);
    assert_ne!(reopened[0].alert_id(), id, "a new episode is a new alert");
    assert_eq!(
        reopened[0].alert_id(),
        alert_id(
            adult().patient_id,
            "temperature_emergency",
            UtcMillis(T0 + 600_000)
        )
    );
}

#[test]
fn alerts_combinations_fire_critical_with_their_triggers() {
    let t = Thresholds::reference();
    let mut e = AlertEngine::new(&t);
    let mut m = sample(&adult(), 0);
    m.vitals.temperature_c = Some(38.2); // alert tier
    m.vitals.spo2_pct = Some(92.0); // alert tier (<= 92)
    m.vitals.respiratory_rate_min = Some(24); // alert tier (>= 23)
    let events = e.on_sample(&adult(), &m);
    let r = rules(&events);
    assert!(r.contains(&"open C1_fever_hypoxia".to_string()), "{r:?}");
    assert!(r.contains(&"open C5_fever_tachypnea".to_string()), "{r:?}");
    assert!(
        !r.iter().any(|x| x.contains("C2")),
        "C2 needs SpO₂ emergency: {r:?}"
    );
    let c1 = events
        .iter()
        .filter_map(AlertEvent::alert)
        .find(|a| a.rule_id == "C1_fever_hypoxia")
        .expect("C1");
    assert_eq!(c1.severity, Severity::Critical);
    // Worded from the sample when the alert opens, in the order of the rule's conditions.
    assert_eq!(
        c1.trigger_conditions,
        ["temperature_c 38.2 is alert", "spo2_pct 92 is alert"]
    );
    assert_eq!(
        c1.message,
        "temperature_c 38.2 is alert; spo2_pct 92 is alert"
    );
    assert!(!c1.suggested_actions.is_empty());
    // Hypothermia is not "fever": the low side never satisfies `at_least`.
    let mut e = AlertEngine::new(&t);
    let mut cold = sample(&adult(), 0);
    cold.vitals.temperature_c = Some(34.0);
    cold.vitals.spo2_pct = Some(92.0);
    assert!(!rules(&e.on_sample(&adult(), &cold))
        .iter()
        .any(|x| x.contains("C1")));
}

#[test]
fn alerts_pain_is_alert_at_7_and_critical_at_8() {
    let t = Thresholds::reference();
    let mut e = AlertEngine::new(&t);
    let mut m = sample(&adult(), 0);
    m.vitals.pain_scale = Some(6);
    assert!(e.on_sample(&adult(), &m).is_empty());
    let mut m = sample(&adult(), 30);
    m.vitals.pain_scale = Some(7);
    assert_eq!(rules(&e.on_sample(&adult(), &m)), ["open pain_alert"]);
    let mut m = sample(&adult(), 60);
    m.vitals.pain_scale = Some(8);
    assert_eq!(rules(&e.on_sample(&adult(), &m)), ["open pain_critical"]);
}

#[test]
fn alerts_device_rules_read_excluded_samples_too() {
    let t = Thresholds::reference();
    let mut e = AlertEngine::new(&t);
    let mut m = sample(&adult(), 0);
    m.device.battery_pct = Some(12);
    m.quality_flag = QualityFlag::UserRemoved;
    m.vitals = Vitals::default();
    let events = e.on_sample(&adult(), &m);
    assert_eq!(rules(&events), ["open device_battery_low"]);
    assert_eq!(
        events[0].alert().map(|a| a.trigger_conditions.clone()),
        Some(vec!["battery_pct 12 < 15".to_string()])
    );
    // An update is worded from the latest sample when the alert is read.
    let mut later = m.clone();
    later.recorded_at = UtcMillis(T0 + 30_000);
    later.device.battery_pct = Some(11);
    let update = e.on_sample(&adult(), &later);
    let [AlertEvent::Updated {
        patient_id,
        alert_id,
    }] = update.as_slice()
    else {
        panic!("expected one update, got {update:?}");
    };
    let open = e.state().open_alert(patient_id, alert_id).expect("open");
    assert_eq!(open.trigger_conditions, ["battery_pct 11 < 15"]);
    assert_eq!(open.occurrences, 2);
}

#[test]
fn alerts_flatline_needs_two_frozen_vitals_for_two_minutes() {
    let t = Thresholds::reference();
    let mut e = AlertEngine::new(&t);
    let frozen = |s: i64| {
        let mut m = sample(&adult(), s);
        m.vitals.spo2_pct = Some(96.0);
        m.vitals.heart_rate_bpm = Some(72);
        m
    };
    for s in [0, 30, 60, 90] {
        assert!(e.on_sample(&adult(), &frozen(s)).is_empty(), "at {s}s");
    }
    assert_eq!(
        rules(&e.on_sample(&adult(), &frozen(120))),
        ["open device_flatline"]
    );
}

#[test]
fn alerts_silent_device_opens_on_the_watermark_and_resolves_with_the_next_sample() {
    let t = Thresholds::reference();
    let mut e = AlertEngine::new(&t);
    e.on_sample(&adult(), &sample(&adult(), 0));
    assert!(e.on_watermark(UtcMillis(T0 + 599_000)).is_empty());
    let opened = e.on_watermark(UtcMillis(T0 + 600_000));
    assert_eq!(rules(&opened), ["open device_silent"]);
    assert!(
        e.on_watermark(UtcMillis(T0 + 900_000)).is_empty(),
        "opened once"
    );
    assert_eq!(
        rules(&e.on_sample(&adult(), &sample(&adult(), 1000))),
        ["resolve device_silent"]
    );
}

#[test]
fn alerts_state_survives_a_checkpoint() {
    let t = Thresholds::reference();
    let samples: Vec<Measurement> = (0..40)
        .map(|i| {
            let mut m = sample(&adult(), i * 30);
            m.vitals.heart_rate_bpm = Some(if i % 13 < 9 { 118 } else { 72 });
            m.vitals.temperature_c = Some(if i % 7 == 0 { 39.5 } else { 36.9 });
            m
        })
        .collect();
    let mut straight = AlertEngine::new(&t);
    let expected: Vec<AlertEvent> = samples
        .iter()
        .flat_map(|m| straight.on_sample(&adult(), m))
        .collect();
    assert!(expected.len() >= 4);
    let mut first = AlertEngine::new(&t);
    let mut got: Vec<AlertEvent> = samples[..17]
        .iter()
        .flat_map(|m| first.on_sample(&adult(), m))
        .collect();
    let checkpoint = serde_json::to_string(first.state()).expect("serialise");
    let state: EngineState = serde_json::from_str(&checkpoint).expect("deserialise");
    let mut resumed = AlertEngine::with_state(&t, state);
    got.extend(
        samples[17..]
            .iter()
            .flat_map(|m| resumed.on_sample(&adult(), m)),
    );
    assert_eq!(got, expected);
}

/// A patient of age group `g`, mid-way through its age range on `T0`.
fn patient_in_group(t: &Thresholds, g: usize) -> PatientContext {
    let group = &t.age_groups[g];
    let years = (group.min_years + group.max_years.min(group.min_years + 20)) / 2;
    let born = UtcMillis(T0).date() - chrono::Months::new(years * 12 + 6);
    let ctx = PatientContext {
        patient_id: Uuid::from_u128(500 + g as u128),
        birth_date: born,
    };
    assert_eq!(
        t.age_group_index(ctx.birth_date, UtcMillis(T0)),
        Some(g),
        "test patient in {}",
        group.id
    );
    ctx
}

/// A sample with every banded vital in the middle of its normal band for age group `g`, and
/// `vital` set to `value`.
fn sample_with(
    t: &Thresholds,
    ctx: &PatientContext,
    g: usize,
    secs: i64,
    vital: Vital,
    value: f64,
) -> Measurement {
    let mut m = sample(ctx, secs);
    let wobble = (secs / 30 % 2) as f64; // keeps the readings from looking frozen
    for v in [
        Vital::Spo2Pct,
        Vital::HeartRateBpm,
        Vital::RespiratoryRateMin,
        Vital::TemperatureC,
        Vital::HydrationPct,
    ] {
        let normal = match t.bands(v, g) {
            Some(Bands::HigherIsWorse {
                normal_lo,
                normal_hi,
                ..
            }) => (normal_lo + normal_hi) / 2.0,
            Some(Bands::LowerIsWorse { normal_min, .. }) => (normal_min + 100.0) / 2.0,
            None => continue,
        };
        let x = if v == vital {
            value
        } else {
            normal + wobble * 0.1
        };
        match v {
            Vital::Spo2Pct => m.vitals.spo2_pct = Some(x),
            Vital::HeartRateBpm => {
                m.vitals.heart_rate_bpm = Some(if v == vital {
                    x as i32
                } else {
                    x.round() as i32 + wobble as i32
                })
            }
            Vital::RespiratoryRateMin => {
                m.vitals.respiratory_rate_min = Some(if v == vital {
                    x as i32
                } else {
                    x.round() as i32 + wobble as i32
                })
            }
            Vital::TemperatureC => m.vitals.temperature_c = Some(x),
            Vital::HydrationPct => m.vitals.hydration_pct = Some(x),
            _ => {}
        }
    }
    m
}

/// The rules a value held for ten minutes opens.
fn opened_by(t: &Thresholds, g: usize, vital: Vital, value: f64) -> Vec<String> {
    let ctx = patient_in_group(t, g);
    let mut engine = AlertEngine::new(t);
    let mut opened = Vec::new();
    for secs in (0..=600).step_by(30) {
        for e in engine.on_sample(&ctx, &sample_with(t, &ctx, g, secs, vital, value)) {
            if let AlertEvent::Opened(a) = e {
                opened.push(a.rule_id);
            }
        }
    }
    opened.sort();
    opened.dedup();
    opened
}

use crate::domain::thresholds::{Bands, Vital};

#[test]
fn alerts_every_banded_vital_at_every_boundary_for_every_age_group() {
    let t = Thresholds::reference();
    let vitals = [
        (Vital::Spo2Pct, "spo2", 0.1),
        (Vital::HeartRateBpm, "heart_rate", 1.0),
        (Vital::RespiratoryRateMin, "respiratory_rate", 1.0),
        (Vital::TemperatureC, "temperature", 0.1),
        (Vital::HydrationPct, "hydration", 0.1),
    ];
    let mut checked = 0;
    for g in 0..t.age_groups.len() {
        for (vital, family, step) in vitals {
            let Some(bands) = t.bands(vital, g).copied() else {
                continue;
            };
            // (value, the one rule it must open; None: nothing)
            let mut cases: Vec<(f64, Option<&str>)> = Vec::new();
            match bands {
                Bands::HigherIsWorse {
                    normal_lo,
                    normal_hi,
                    alert,
                    emergency,
                    low_alert,
                    low_emergency,
                } => {
                    cases.push((emergency, Some("emergency")));
                    cases.push((emergency - step, Some("alert")));
                    cases.push((alert, Some("alert")));
                    if alert - step > normal_hi {
                        cases.push((alert - step, Some("vigilance")));
                    }
                    cases.push((normal_hi, None));
                    cases.push((normal_lo, None));
                    if let Some(le) = low_emergency {
                        cases.push((le - step, Some("low_emergency")));
                        cases.push((
                            le,
                            Some(if low_alert.is_some_and(|la| le < la) {
                                "low_alert"
                            } else {
                                "low_vigilance"
                            }),
                        ));
                    }
                    if let Some(la) = low_alert {
                        cases.push((
                            la - step,
                            Some(if low_emergency.is_some_and(|le| la - step < le) {
                                "low_emergency"
                            } else {
                                "low_alert"
                            }),
                        ));
                    }
                    if normal_lo - step >= low_alert.unwrap_or(f64::MIN) {
                        cases.push((normal_lo - step, Some("low_vigilance")));
                    }
                }
                Bands::LowerIsWorse {
                    normal_min,
                    alert_max,
                    emergency_max,
                } => {
                    cases.push((emergency_max, Some("emergency")));
                    cases.push((emergency_max + step, Some("alert")));
                    cases.push((alert_max, Some("alert")));
                    if alert_max + step < normal_min {
                        cases.push((alert_max + step, Some("vigilance")));
                    }
                    cases.push((normal_min, None));
                }
            }
            for (value, tier) in cases {
                let scale = (1.0 / step).round();
                let value = (value * scale).round() / scale;
                let mut got = opened_by(&t, g, vital, value);
                // SpO₂ below critical_below also opens the immediate rule; combinations need two
                // abnormal vitals and never fire here.
                got.retain(|r| r != "spo2_critical");
                let expected: Vec<String> =
                    tier.map(|x| format!("{family}_{x}")).into_iter().collect();
                assert_eq!(
                    got, expected,
                    "{family} {value} for age group {}",
                    t.age_groups[g].id
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 60, "{checked} boundary cases");
}

/// Checkpoints name rules by text, as they did before rules were interned: a checkpoint of an
/// earlier version resumes, and a new one reads the same way.
#[test]
fn alerts_checkpoints_name_rules_by_text() {
    let t = Thresholds::reference();
    let mut e = AlertEngine::new(&t);
    let mut m = sample(&adult(), 0);
    m.vitals.heart_rate_bpm = Some(105);
    e.on_sample(&adult(), &m);
    let json = serde_json::to_value(e.state()).expect("serialise");
    let patient = &json["patients"][adult().patient_id.to_string()];
    let streaks = patient["streaks"].as_object().expect("streaks is a map");
    assert_eq!(
        streaks.keys().collect::<Vec<_>>(),
        ["heart_rate_vigilance"],
        "{json}"
    );
    assert_eq!(streaks["heart_rate_vigilance"], T0);
    // The same map read back resumes the streak: 105 bpm held for the warn persistence opens the alert
    // from the streak's start, not from the resumed engine's first sample.
    let state: EngineState = serde_json::from_value(json).expect("deserialise");
    let mut resumed = AlertEngine::with_state(&t, state);
    let mut opened = Vec::new();
    for i in 1..40 {
        let mut m = sample(&adult(), i * 30);
        m.vitals.heart_rate_bpm = Some(105);
        opened.extend(
            resumed
                .on_sample(&adult(), &m)
                .into_iter()
                .filter_map(|e| match e {
                    AlertEvent::Opened(a) => Some(a),
                    _ => None,
                }),
        );
    }
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0].rule_id, "heart_rate_vigilance");
    assert_eq!(opened[0].first_seen_at, UtcMillis(T0));
}
