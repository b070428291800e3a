use super::*;

fn reference() -> Thresholds {
    Thresholds::reference()
}

fn group(t: &Thresholds, id: &str) -> usize {
    t.age_groups
        .iter()
        .position(|g| g.id == id)
        .expect("group exists")
}

fn at(date: &str) -> UtcMillis {
    UtcMillis::parse_rfc3339(&format!("{date}T12:00:00Z")).expect("date")
}

fn born(date: &str) -> NaiveDate {
    NaiveDate::parse_from_str(date, "%Y-%m-%d").expect("date")
}

#[test]
fn thresholds_reference_file_is_valid() {
    let t = reference();
    assert_eq!(t.version, 2);
    let ids: Vec<_> = t.age_groups.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, ["G1", "G2", "G3", "G4", "G5", "G6"]);
    assert_eq!(t.combinations.len(), 5);
    assert_eq!(t.spo2_critical_below(), Some(88.0));
    assert_eq!(t.activity_band(4), Some("moderate"));
}

#[test]
fn age_group_uses_the_sample_time_and_half_open_intervals() {
    let t = reference();
    let b = born("2020-03-15");
    let id = |date: &str| t.age_group(b, at(date)).map(|g| g.id.clone());
    assert_eq!(id("2020-03-15").as_deref(), Some("G1"));
    assert_eq!(
        id("2021-03-14").as_deref(),
        Some("G1"),
        "the day before the first birthday"
    );
    assert_eq!(
        id("2021-03-15").as_deref(),
        Some("G2"),
        "first birthday opens G2"
    );
    assert_eq!(id("2026-03-14").as_deref(), Some("G2"), "5 years 364 days");
    assert_eq!(id("2026-03-15").as_deref(), Some("G3"));
    assert_eq!(id("2033-03-15").as_deref(), Some("G4"));
    assert_eq!(id("2038-03-15").as_deref(), Some("G5"));
    assert_eq!(id("2080-03-15").as_deref(), Some("G6"));
    assert_eq!(
        id("2019-01-01"),
        None,
        "a sample before birth has no age group"
    );
}

#[test]
fn age_group_handles_leap_day_birthdays() {
    let t = reference();
    let b = born("2020-02-29");
    assert_eq!(
        t.age_group(b, at("2021-02-28")).map(|g| g.id.as_str()),
        Some("G1")
    );
    assert_eq!(
        t.age_group(b, at("2021-03-01")).map(|g| g.id.as_str()),
        Some("G2")
    );
}

/// (vital, group, value, expected tier) on and around every boundary of the reference file.
#[test]
fn tiers_classify_boundaries_per_age_group() {
    let t = reference();
    let cases: &[(Vital, &str, f64, Tier)] = &[
        // temperature G1: normal [36.4, 37.5], alert 38.0, emergency 38.5, low 36.0 / 35.0
        (Vital::TemperatureC, "G1", 37.5, Tier::Normal),
        (Vital::TemperatureC, "G1", 37.6, Tier::Vigilance),
        (Vital::TemperatureC, "G1", 37.99, Tier::Vigilance),
        (Vital::TemperatureC, "G1", 38.0, Tier::Alert),
        (Vital::TemperatureC, "G1", 38.5, Tier::Emergency),
        (Vital::TemperatureC, "G5", 38.5, Tier::Alert),
        (Vital::TemperatureC, "G5", 39.0, Tier::Emergency),
        (Vital::TemperatureC, "G1", 36.4, Tier::Normal),
        (Vital::TemperatureC, "G1", 36.3, Tier::LowVigilance),
        (Vital::TemperatureC, "G1", 36.0, Tier::LowVigilance),
        (Vital::TemperatureC, "G1", 35.9, Tier::LowAlert),
        (Vital::TemperatureC, "G1", 35.0, Tier::LowAlert),
        (Vital::TemperatureC, "G1", 34.9, Tier::LowEmergency),
        // SpO₂ G4: normal >= 94, alert <= 92, emergency <= 88
        (Vital::Spo2Pct, "G4", 94.0, Tier::Normal),
        (Vital::Spo2Pct, "G4", 93.9, Tier::Vigilance),
        (Vital::Spo2Pct, "G4", 92.1, Tier::Vigilance),
        (Vital::Spo2Pct, "G4", 92.0, Tier::Alert),
        (Vital::Spo2Pct, "G4", 88.1, Tier::Alert),
        (Vital::Spo2Pct, "G4", 88.0, Tier::Emergency),
        (Vital::Spo2Pct, "G3", 89.0, Tier::Emergency),
        (Vital::Spo2Pct, "G1", 93.0, Tier::Alert),
        (Vital::Spo2Pct, "G1", 90.0, Tier::Emergency),
        // heart rate G3: normal [75, 118], alert 121, emergency 140, low_alert 60
        (Vital::HeartRateBpm, "G3", 118.0, Tier::Normal),
        (Vital::HeartRateBpm, "G3", 119.0, Tier::Vigilance),
        (Vital::HeartRateBpm, "G3", 121.0, Tier::Alert),
        (Vital::HeartRateBpm, "G3", 140.0, Tier::Emergency),
        (Vital::HeartRateBpm, "G3", 74.0, Tier::LowVigilance),
        (Vital::HeartRateBpm, "G3", 59.0, Tier::LowAlert),
        // respiratory rate G5: normal [12, 20], alert 23, emergency 28
        (Vital::RespiratoryRateMin, "G5", 20.0, Tier::Normal),
        (Vital::RespiratoryRateMin, "G5", 22.0, Tier::Vigilance),
        (Vital::RespiratoryRateMin, "G5", 23.0, Tier::Alert),
        (Vital::RespiratoryRateMin, "G5", 28.0, Tier::Emergency),
        (Vital::RespiratoryRateMin, "G1", 53.0, Tier::Normal),
        (Vital::RespiratoryRateMin, "G1", 9.0, Tier::LowAlert),
        // hydration (all ages): normal >= 70, alert <= 50, emergency <= 40
        (Vital::HydrationPct, "G2", 70.0, Tier::Normal),
        (Vital::HydrationPct, "G6", 69.9, Tier::Vigilance),
        (Vital::HydrationPct, "G6", 50.0, Tier::Alert),
        (Vital::HydrationPct, "G6", 40.0, Tier::Emergency),
        // heat index (all ages): normal <= 32, alert 36, emergency 41, no low side
        (Vital::HeatIndexC, "G3", 32.0, Tier::Normal),
        (Vital::HeatIndexC, "G3", 35.9, Tier::Vigilance),
        (Vital::HeatIndexC, "G3", 41.0, Tier::Emergency),
        (Vital::HeatIndexC, "G3", -60.0, Tier::LowVigilance),
        // ambient: cold side
        (Vital::AmbientTemperatureC, "G5", 9.9, Tier::LowAlert),
        (Vital::AmbientTemperatureC, "G5", 4.9, Tier::LowEmergency),
    ];
    for &(vital, g, value, expected) in cases {
        let got = t
            .classify(vital, group(&t, g), value)
            .expect("table exists");
        assert_eq!(got, expected, "{} {g} {value}", vital.field());
    }
}

#[test]
fn tiers_map_to_rule_severities() {
    assert_eq!(Tier::Normal.severity(), None);
    assert_eq!(Tier::Vigilance.severity(), Some(Severity::Warn));
    assert_eq!(Tier::LowAlert.severity(), Some(Severity::Alert));
    assert_eq!(Tier::Emergency.severity(), Some(Severity::Critical));
    assert_eq!(Tier::LowEmergency.worse_side_level(), 0);
    assert_eq!(Tier::Alert.worse_side_level(), TierLevel::Alert.level());
}

fn edited(from: &str, to: &str) -> String {
    assert!(
        DEFAULT_THRESHOLDS_YAML.contains(from),
        "fixture lacks {from:?}"
    );
    DEFAULT_THRESHOLDS_YAML.replacen(from, to, 1)
}

fn error_of(text: &str) -> String {
    Thresholds::from_yaml(text)
        .expect_err("must be refused")
        .to_string()
}

#[test]
fn thresholds_refuse_unordered_tiers_naming_the_key() {
    let e = error_of(&edited(
        "G2: { normal: [90, 140],  alert: 145, emergency: 160",
        "G2: { normal: [90, 140],  alert: 165, emergency: 160",
    ));
    assert!(
        e.starts_with("vitals.heart_rate_bpm.groups.G2.alert:"),
        "{e}"
    );
    let e = error_of(&edited(
        "G4: { normal_min: 94, alert_max: 92, emergency_max: 88 }",
        "G4: { normal_min: 94, alert_max: 95, emergency_max: 88 }",
    ));
    assert!(e.starts_with("vitals.spo2_pct.groups.G4.alert_max:"), "{e}");
}

#[test]
fn thresholds_refuse_a_missing_age_group_table() {
    let e = error_of(&edited(
        "      G3: { normal: [18, 28], alert: 32, emergency: 36, low_alert: 14 }\n",
        "",
    ));
    assert!(
        e.starts_with("vitals.respiratory_rate_min.groups.G3: missing"),
        "{e}"
    );
}

#[test]
fn thresholds_refuse_gaps_between_age_groups() {
    let e = error_of(&edited("G3: { min_years: 6,", "G3: { min_years: 7,"));
    assert!(e.starts_with("age_groups.G3: gap"), "{e}");
}

#[test]
fn thresholds_refuse_unknown_keys_and_vitals() {
    let e = error_of(&edited(
        "  battery_low_pct: 15",
        "  battery_low_pct: 15\n  batery_low: 3",
    ));
    assert!(e.contains("batery_low"), "{e}");
    let e = error_of(&edited("  heat_index_c:\n", "  heat_indx_c:\n"));
    assert!(e.starts_with("vitals.heat_indx_c: unknown vital"), "{e}");
    let e = error_of(&edited(
        "{ vital: respiratory_rate_min, at_least: alert } ]\n  - id: C3",
        "{ vital: resp_rate, at_least: alert } ]\n  - id: C3",
    ));
    assert!(e.starts_with("combinations[1].all[1].vital"), "{e}");
}

#[test]
fn thresholds_refuse_fields_of_the_wrong_kind_and_bad_pain() {
    let e = error_of(&edited(
        "critical_below: 88",
        "critical_below: 88\n    normal: [1, 2]",
    ));
    assert!(e.contains("normal"), "{e}");
    let e = error_of(&edited("alert_min: 7 ", "alert_min: 9 "));
    assert!(e.starts_with("pain.alert_min"), "{e}");
    assert!(matches!(
        Thresholds::from_yaml("version: [1"),
        Err(ThresholdsError::Parse(_))
    ));
}

#[test]
fn a_vital_s_index_is_its_place_in_all() {
    for (i, vital) in Vital::ALL.into_iter().enumerate() {
        assert_eq!(vital.index(), i, "{vital:?}");
    }
    // Each vital finds its own table: SpO₂ is the lower-is-worse one among the first three.
    let t = reference();
    assert_eq!(t.kind(Vital::Spo2Pct), Some(VitalKind::LowerIsWorse));
    assert_eq!(t.kind(Vital::TemperatureC), Some(VitalKind::HigherIsWorse));
    assert_eq!(t.kind(Vital::HeartRateBpm), Some(VitalKind::HigherIsWorse));
}

#[test]
fn thresholds_refuse_more_combinations_than_the_engine_tells_apart() {
    // 5 in the reference file, 44 more: one over the limit. Refused before any is interned.
    let extra: String = (0..44)
        .map(|i| {
            format!(
                "  - id: X{i}\n    name: extra\n    severity: warn\n    all: [ {{ vital: spo2_pct, at_least: alert }} ]\n"
            )
        })
        .collect();
    let e = error_of(&edited(
        "combinations:\n",
        &format!("combinations:\n{extra}"),
    ));
    assert!(
        e.starts_with("combinations: 49 declared, at most 48"),
        "{e}"
    );
}
