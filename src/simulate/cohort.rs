//! The synthetic cohort (SPEC §5): patients with ages, genotypes, growth-curve weight and height,
//! caregivers, a clinician pool with assignments, devices (10 % replaced mid-run), and the
//! physiological baselines each patient's simulation starts from.

use super::config::SimulationConfig;
use super::rng::{self, SimRng, Stream};
use crate::domain::people::{
    CaregiverLink, Clinician, ClinicianLink, ClinicianRole, Device, Genotype, Patient,
    Relationship, Role, Sex, User,
};
use crate::domain::time::{UtcMillis, MS_PER_DAY};
use chrono::NaiveDate;
use fake::faker::name::raw::{FirstName, LastName};
use fake::locales::FR_FR;
use fake::Fake;
use rand::RngExt;
use rand_distr::StandardNormal;
use uuid::Uuid;

/// Age mix of SPEC §5: (min years, max years exclusive, share).
pub const AGE_MIX: [(f64, f64, f64); 5] = [
    (0.0, 6.0, 0.20),
    (6.0, 13.0, 0.30),
    (13.0, 18.0, 0.25),
    (18.0, 41.0, 0.15),
    (41.0, 81.0, 0.10),
];

/// Cameroonian cities with their mean temperature (°C), diurnal amplitude and mean humidity.
const CITIES: [(&str, f64, f64, f64); 12] = [
    ("Yaoundé", 24.0, 4.5, 78.0),
    ("Douala", 27.0, 3.5, 84.0),
    ("Garoua", 29.5, 6.5, 55.0),
    ("Maroua", 29.0, 7.0, 45.0),
    ("Bamenda", 21.0, 4.5, 75.0),
    ("Bafoussam", 21.5, 4.5, 74.0),
    ("Ngaoundéré", 22.5, 5.5, 65.0),
    ("Bertoua", 24.5, 4.5, 76.0),
    ("Kribi", 26.5, 3.0, 83.0),
    ("Limbé", 26.5, 3.0, 85.0),
    ("Ebolowa", 24.0, 4.0, 80.0),
    ("Buea", 23.5, 3.5, 82.0),
];

const HOSPITALS: [&str; 6] = [
    "Hôpital Central de Yaoundé",
    "Hôpital Laquintinie de Douala",
    "Centre Mère et Enfant de la Fondation Chantal Biya",
    "Hôpital Général de Douala",
    "Hôpital Régional de Garoua",
    "Hôpital Régional de Bamenda",
];

const SPECIALTIES: [&str; 4] = [
    "hematology",
    "pediatrics",
    "internal_medicine",
    "emergency_medicine",
];
const FIRMWARE: [&str; 3] = ["2.1.3", "2.1.4", "2.2.0"];
const DEVICE_MODEL: &str = "KJ-Band 2";
const REPLACEMENT_MODEL: &str = "KJ-Band 3";

/// What the physiology needs to know about one patient, fixed for the run.
#[derive(Debug, Clone)]
pub struct Profile {
    pub patient_index: u32,
    pub patient_id: Uuid,
    pub birth_date: NaiveDate,
    pub age_years_at_start: f64,
    pub genotype: Genotype,
    pub spo2_base: f64,
    pub heart_rate_base: f64,
    pub respiratory_rate_base: f64,
    pub temperature_base: f64,
    pub hydration_setpoint: f64,
    pub activity_propensity: f64,
    pub chronic_pain: f64,
    pub climate_mean_c: f64,
    pub climate_amplitude_c: f64,
    pub climate_humidity_pct: f64,
    /// Devices in order of use: (device_id, firmware, in use from).
    pub devices: Vec<(Uuid, std::sync::Arc<str>, UtcMillis)>,
    /// Offset of the device's sampling clock within one interval, ms.
    pub sampling_phase_ms: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Cohort {
    pub users: Vec<User>,
    pub patients: Vec<Patient>,
    pub caregivers: Vec<CaregiverLink>,
    pub clinicians: Vec<Clinician>,
    pub clinician_links: Vec<ClinicianLink>,
    pub devices: Vec<Device>,
    pub profiles: Vec<Profile>,
}

fn normal(rng: &mut SimRng) -> f64 {
    rng.sample::<f64, _>(StandardNormal)
}

fn pick_weighted<T: Copy>(rng: &mut SimRng, items: &[(T, f64)]) -> T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for &(item, w) in items {
        if x < w {
            return item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

fn phone(rng: &mut SimRng) -> String {
    format!(
        "+237 6{:02} {:03} {:03}",
        rng.random_range(50..100u32),
        rng.random_range(0..1000u32),
        rng.random_range(0..1000u32)
    )
}

fn person_name(rng: &mut SimRng) -> (String, String) {
    (
        FirstName(FR_FR).fake_with_rng(rng),
        LastName(FR_FR).fake_with_rng(rng),
    )
}

fn email(given: &str, family: &str, tag: &str, index: u32) -> String {
    let ascii = |s: &str| {
        deunicode_lower(s)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
    };
    // example.org is reserved for documentation: a simulated address can never reach anyone.
    format!(
        "{}.{}.{tag}{index}@example.org",
        ascii(given),
        ascii(family)
    )
}

fn deunicode_lower(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'à' | 'â' | 'ä' | 'á' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'î' | 'ï' => 'i',
            'ô' | 'ö' => 'o',
            'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            'ÿ' => 'y',
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Height (cm) from a simple growth curve; `z` is the patient's growth percentile as a z-score.
fn height_cm(age: f64, sex: Sex, z: f64) -> f64 {
    let adult = if sex == Sex::F { 160.0 } else { 172.0 };
    let median = if age < 1.0 {
        50.0 + 25.0 * age
    } else if age < 13.0 {
        75.0 + 6.0 * (age - 1.0)
    } else if age < 18.0 {
        147.0 + (adult - 147.0) * (age - 13.0) / 5.0
    } else {
        adult
    };
    (median * (1.0 + 0.04 * z)).clamp(45.0, 205.0)
}

fn weight_kg(age: f64, height: f64, genotype: Genotype, z: f64) -> f64 {
    if age < 1.0 {
        return (3.3 + 6.5 * age) * (1.0 + 0.08 * z);
    }
    let bmi = if age < 6.0 {
        16.0
    } else if age < 13.0 {
        16.0 + 0.3 * (age - 6.0)
    } else if age < 18.0 {
        18.1 + 0.6 * (age - 13.0)
    } else {
        22.0
    };
    // Severe genotypes are leaner on average (chronic haemolysis, higher energy expenditure).
    let severe = matches!(genotype, Genotype::SS | Genotype::SBeta0);
    let bmi = (bmi - if severe { 1.2 } else { 0.0 } + 2.0 * z).clamp(12.5, 35.0);
    bmi * (height / 100.0).powi(2)
}

fn round1(x: f64) -> f64 {
    crate::domain::rounding::round1(x)
}

/// Builds the whole cohort. Patient `i` depends only on the seed, `i`, the pool size and the
/// time range, never on thread count.
pub fn generate(cfg: &SimulationConfig) -> Cohort {
    let mut cohort = Cohort::default();
    let start_date = cfg.start.date();
    let end = cfg.end();
    let pool_size = cfg.patients.div_ceil(40).max(2);

    let mut crng = rng::stream(cfg.seed, Stream::Clinicians, 0);
    let admin_id = rng::uuid(&mut crng);
    let (g, f) = person_name(&mut crng);
    cohort.users.push(User {
        user_id: admin_id,
        role: Role::Admin,
        email: email(&g, &f, "admin", 0),
        given_name: g,
        family_name: f,
        phone: phone(&mut crng),
        created_at: UtcMillis(cfg.start.0 - 400 * MS_PER_DAY),
    });
    for j in 0..pool_size {
        let mut r = rng::stream(cfg.seed, Stream::Clinicians, u64::from(j) + 1);
        let user_id = rng::uuid(&mut r);
        let (g, f) = person_name(&mut r);
        cohort.users.push(User {
            user_id,
            role: Role::Clinician,
            email: email(&g, &f, "dr", j),
            given_name: g,
            family_name: f,
            phone: phone(&mut r),
            created_at: UtcMillis(cfg.start.0 - r.random_range(60..720) * MS_PER_DAY),
        });
        cohort.clinicians.push(Clinician {
            user_id,
            license_number: format!("CM-ONMC-{:06}", r.random_range(0..1_000_000u32)),
            specialty: SPECIALTIES[j as usize % SPECIALTIES.len()].to_string(),
            hospital: HOSPITALS[r.random_range(0..HOSPITALS.len())].to_string(),
        });
    }

    let genotype_weights: Vec<(Genotype, f64)> =
        cfg.genotype_mix.iter().map(|(g, w)| (*g, *w)).collect();
    for i in 0..cfg.patients {
        let mut r = rng::stream(cfg.seed, Stream::Cohort, u64::from(i));
        let patient_id = rng::uuid(&mut r);
        let user_id = rng::uuid(&mut r);
        let bucket = pick_weighted(&mut r, &AGE_MIX.map(|(lo, hi, w)| ((lo, hi), w)));
        // At least 30 days old: newborns are not fitted with a sensor.
        let age_days = r
            .random_range((bucket.0 * 365.25).max(30.0)..bucket.1 * 365.25)
            .floor();
        let birth_date = start_date - chrono::Duration::days(age_days as i64);
        let age = age_days / 365.25;
        let genotype = pick_weighted(&mut r, &genotype_weights);
        let sex = if r.random_bool(0.5) { Sex::F } else { Sex::M };
        let (given, family) = person_name(&mut r);
        let growth_z = normal(&mut r).clamp(-2.5, 2.5);
        let height = height_cm(age, sex, growth_z);
        let weight =
            weight_kg(age, height, genotype, normal(&mut r).clamp(-2.0, 2.5)).clamp(2.5, 150.0);
        let (city, climate_mean, climate_amp, humidity) = CITIES[r.random_range(0..CITIES.len())];
        let created_at = UtcMillis(cfg.start.0 - r.random_range(14..540) * MS_PER_DAY);
        cohort.users.push(User {
            user_id,
            role: Role::Patient,
            email: email(&given, &family, "p", i),
            given_name: given,
            family_name: family.clone(),
            phone: phone(&mut r),
            created_at,
        });

        // Caregivers: 1–2 per minor, an adult has a family member half of the time.
        let n_caregivers = if age < 18.0 {
            if r.random_bool(0.6) {
                2
            } else {
                1
            }
        } else if r.random_bool(0.5) {
            1
        } else {
            0
        };
        let mut emergency: Option<(String, String)> = None;
        for k in 0..n_caregivers {
            let cg_id = rng::uuid(&mut r);
            let (cg_given, _) = person_name(&mut r);
            let cg_phone = phone(&mut r);
            let relationship = if age < 18.0 {
                if k == 0 || r.random_bool(0.7) {
                    Relationship::Parent
                } else {
                    Relationship::Guardian
                }
            } else {
                Relationship::Family
            };
            cohort.users.push(User {
                user_id: cg_id,
                role: Role::Caregiver,
                email: email(&cg_given, &family, "c", i * 4 + k),
                given_name: cg_given.clone(),
                family_name: family.clone(),
                phone: cg_phone.clone(),
                created_at,
            });
            cohort.caregivers.push(CaregiverLink {
                caregiver_user_id: cg_id,
                patient_id,
                relationship,
                priority: (k + 1) as u8,
                can_acknowledge_alerts: k == 0 || r.random_bool(0.7),
            });
            if emergency.is_none() {
                emergency = Some((format!("{cg_given} {family}"), cg_phone));
            }
        }
        let (emergency_name, emergency_phone) = emergency.unwrap_or_else(|| {
            let (g, f) = person_name(&mut r);
            (format!("{g} {f}"), phone(&mut r))
        });

        // Clinicians: a primary physician, often a specialist, sometimes a consultant.
        let primary = r.random_range(0..pool_size) as usize;
        let mut linked = vec![(primary, ClinicianRole::PrimaryPhysician)];
        for (role, p) in [
            (ClinicianRole::Specialist, 0.5),
            (ClinicianRole::Consultant, 0.1),
        ] {
            let c = r.random_range(0..pool_size) as usize;
            if r.random_bool(p) && linked.iter().all(|(other, _)| *other != c) {
                linked.push((c, role));
            }
        }
        for (c, role) in linked {
            cohort.clinician_links.push(ClinicianLink {
                clinician_user_id: cohort.clinicians[c].user_id,
                patient_id,
                role,
                is_primary: role == ClinicianRole::PrimaryPhysician,
            });
        }

        // Devices: one each; 10 % are replaced at a random time inside the run.
        let first_device = rng::uuid(&mut r);
        let firmware: std::sync::Arc<str> = FIRMWARE[r.random_range(0..2)].into();
        let assigned_from = UtcMillis(created_at.0 + MS_PER_DAY);
        let replaced_at = r.random_bool(0.10).then(|| {
            UtcMillis(
                cfg.start.0 + ((end.0 - cfg.start.0) as f64 * r.random_range(0.1..0.9)) as i64,
            )
        });
        let mut devices = vec![(first_device, firmware.clone(), cfg.start)];
        cohort.devices.push(Device {
            device_id: first_device,
            model: DEVICE_MODEL.to_string(),
            firmware_version: firmware.to_string(),
            patient_id,
            assigned_from,
            assigned_to: replaced_at,
        });
        let mut current_device_id = first_device;
        if let Some(at) = replaced_at {
            let second = rng::uuid(&mut r);
            let fw: std::sync::Arc<str> = FIRMWARE[2].into();
            cohort.devices.push(Device {
                device_id: second,
                model: REPLACEMENT_MODEL.to_string(),
                firmware_version: fw.to_string(),
                patient_id,
                assigned_from: at,
                assigned_to: None,
            });
            devices.push((second, fw, at));
            current_device_id = second;
        }

        cohort.patients.push(Patient {
            patient_id,
            user_id,
            sex,
            birth_date,
            genotype,
            weight_kg: round1(weight),
            height_cm: round1(height),
            city: city.to_string(),
            country: "Cameroon".to_string(),
            emergency_contact_name: emergency_name,
            emergency_contact_phone: emergency_phone,
            current_device_id,
        });
        cohort.profiles.push(baseline_profile(
            &mut r,
            cfg,
            i,
            patient_id,
            birth_date,
            age,
            genotype,
            (climate_mean, climate_amp, humidity),
            devices,
        ));
    }
    cohort
}

#[allow(clippy::too_many_arguments)]
fn baseline_profile(
    r: &mut SimRng,
    cfg: &SimulationConfig,
    index: u32,
    patient_id: Uuid,
    birth_date: NaiveDate,
    age: f64,
    genotype: Genotype,
    climate: (f64, f64, f64),
    devices: Vec<(Uuid, std::sync::Arc<str>, UtcMillis)>,
) -> Profile {
    // SpO₂ baselines by genotype (SPEC §5).
    let (spo2_lo, spo2_hi): (f64, f64) = match genotype {
        Genotype::SS => (92.0, 96.0),
        Genotype::SC => (94.0, 98.0),
        Genotype::SBeta0 => (93.0, 97.0),
        Genotype::SBetaPlus => (94.0, 98.0),
        Genotype::AS => (96.0, 100.0),
    };
    // Resting heart and breathing rates fall with age; anaemia raises the heart rate.
    let (hr, rr) = match age {
        a if a < 1.0 => (130.0, 38.0),
        a if a < 6.0 => (108.0, 26.0),
        a if a < 13.0 => (90.0, 20.0),
        a if a < 18.0 => (78.0, 16.0),
        a if a < 60.0 => (72.0, 15.0),
        _ => (70.0, 16.0),
    };
    let anaemia = if matches!(genotype, Genotype::SS | Genotype::SBeta0) {
        5.0
    } else {
        0.0
    };
    Profile {
        patient_index: index,
        patient_id,
        birth_date,
        age_years_at_start: age,
        genotype,
        // Keep 1 point of head room below 100 so noise does not pin the value at the cap.
        spo2_base: r.random_range(spo2_lo..spo2_hi).min(99.0_f64),
        heart_rate_base: (hr + anaemia) * (1.0 + 0.06 * normal(r).clamp(-2.0, 2.0)),
        respiratory_rate_base: rr * (1.0 + 0.08 * normal(r).clamp(-2.0, 2.0)),
        temperature_base: 36.6 + 0.12 * normal(r).clamp(-2.0, 2.0),
        hydration_setpoint: 86.0 + 2.0 * normal(r).clamp(-2.0, 2.0),
        activity_propensity: r.random_range(0.7..1.3),
        chronic_pain: if matches!(genotype, Genotype::SS | Genotype::SBeta0) {
            r.random_range(0.5..2.5)
        } else {
            r.random_range(0.0..1.2)
        },
        climate_mean_c: climate.0,
        climate_amplitude_c: climate.1,
        climate_humidity_pct: climate.2,
        devices,
        sampling_phase_ms: r.random_range(0..cfg.interval_ms),
    }
}
