//! One patient's sensor over time: physiology (circadian rhythm, activity, tropical weather,
//! hydration balance, autocorrelated noise, episodes), the device (battery, charging, signal,
//! quality flags) and the faults injected into its data and its delivery.

use super::cohort::Profile;
use super::config::{EpisodeKind, FaultRates, SimulationConfig};
use super::episodes::Episode;
use super::record::{Corruption, FaultKind, FaultRecord, SimRecord};
use super::rng::{self, SimRng, Stream};
use crate::domain::heat_index::heat_index_c;
use crate::domain::rounding::{round, round1};
use crate::domain::time::{UtcMillis, MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE, MS_PER_SECOND};
use crate::domain::{DeviceStatus, Measurement, QualityFlag, Vitals};
use rand::RngExt;
use rand_distr::StandardNormal;
use std::f64::consts::TAU;
use uuid::Uuid;

/// Cameroon keeps West Africa Time (UTC+1) all year: daily rhythms follow local time.
const LOCAL_OFFSET_MS: i64 = MS_PER_HOUR;

/// A first-order autoregressive process: smooth noise with a time constant, stationary
/// standard deviation `sigma`.
#[derive(Debug, Clone, Copy)]
struct Ar1 {
    value: f64,
    phi: f64,
    innovation: f64,
}

impl Ar1 {
    fn new(tau_ms: f64, sigma: f64, step_ms: i64) -> Self {
        let phi = (-(step_ms as f64) / tau_ms).exp();
        Ar1 {
            value: 0.0,
            phi,
            innovation: sigma * (1.0 - phi * phi).sqrt(),
        }
    }

    fn start(mut self, rng: &mut SimRng) -> Self {
        self.value = self.innovation / (1.0 - self.phi * self.phi).sqrt() * gauss(rng);
        self
    }

    fn step(&mut self, rng: &mut SimRng) -> f64 {
        self.value = self.phi * self.value + self.innovation * gauss(rng);
        self.value
    }
}

fn gauss(rng: &mut SimRng) -> f64 {
    rng.sample::<f64, _>(StandardNormal)
}

#[derive(Debug, Clone, Copy, Default)]
struct EpisodeLoad {
    voc: f64,
    infection: f64,
    acs: f64,
    dehydration: f64,
}

#[derive(Debug, Clone, Copy)]
struct Flatline {
    until: i64,
    spo2: Option<f64>,
    heart_rate: Option<i32>,
    respiratory_rate: Option<i32>,
}

pub struct PatientSim {
    profile: Profile,
    episodes: Vec<Episode>,
    next_episode: usize,
    live_episodes: Vec<usize>,
    rng: SimRng,
    faults_rng: SimRng,
    rates: FaultRates,
    interval_ms: i64,
    /// Index of the next nominal sample: nominal time = origin + k × interval.
    k: i64,
    origin: i64,
    seq: u32,
    spo2_noise: Ar1,
    hr_noise: Ar1,
    rr_noise: Ar1,
    temp_noise: Ar1,
    activity_noise: Ar1,
    signal_noise: Ar1,
    ambient_day: Ar1,
    ambient_fast: Ar1,
    humidity_noise: Ar1,
    hydration: f64,
    battery: f64,
    charging: bool,
    dead: bool,
    calibrating_left: u8,
    drop_until: i64,
    skew_until: i64,
    skew_ms: i64,
    flatline: Option<Flatline>,
    /// The device the last sample came from: a replacement device starts with a correct clock,
    /// live sensors and no frozen firmware, so the device-side spans end when it is swapped in.
    device_in_use: Option<Uuid>,
}

impl PatientSim {
    pub fn new(cfg: &SimulationConfig, profile: Profile, episodes: Vec<Episode>) -> Self {
        let mut rng = rng::stream(cfg.seed, Stream::Vitals, u64::from(profile.patient_index));
        let faults_rng = rng::stream(cfg.seed, Stream::Faults, u64::from(profile.patient_index));
        let step = cfg.interval_ms;
        let ar = |tau_min: f64, sigma: f64, rng: &mut SimRng| {
            Ar1::new(tau_min * MS_PER_MINUTE as f64, sigma, step).start(rng)
        };
        let spo2_noise = ar(10.0, 0.6, &mut rng);
        let hr_noise = ar(3.0, 3.0, &mut rng);
        let rr_noise = ar(5.0, 1.0, &mut rng);
        let temp_noise = ar(20.0, 0.1, &mut rng);
        let activity_noise = ar(15.0, 1.3, &mut rng);
        let signal_noise = ar(2.0, 5.0, &mut rng);
        let ambient_day = ar(24.0 * 60.0, 1.2, &mut rng);
        let ambient_fast = ar(30.0, 0.4, &mut rng);
        let humidity_noise = ar(120.0, 4.0, &mut rng);
        let battery = rng.random_range(40.0..100.0);
        let hydration = profile.hydration_setpoint - 6.0 + gauss(&mut rng);
        PatientSim {
            origin: cfg.start.0 + profile.sampling_phase_ms,
            profile,
            episodes,
            next_episode: 0,
            live_episodes: Vec::new(),
            rng,
            faults_rng,
            rates: cfg.faults,
            interval_ms: step,
            k: 0,
            seq: 0,
            spo2_noise,
            hr_noise,
            rr_noise,
            temp_noise,
            activity_noise,
            signal_noise,
            ambient_day,
            ambient_fast,
            humidity_noise,
            hydration,
            battery,
            charging: false,
            dead: false,
            calibrating_left: 0,
            drop_until: i64::MIN,
            skew_until: i64::MIN,
            skew_ms: 0,
            flatline: None,
            device_in_use: None,
        }
    }

    pub fn episodes(&self) -> &[Episode] {
        &self.episodes
    }

    fn episode_load(&mut self, t: i64) -> EpisodeLoad {
        while self.next_episode < self.episodes.len()
            && self.episodes[self.next_episode].start.0 <= t
        {
            self.live_episodes.push(self.next_episode);
            self.next_episode += 1;
        }
        let episodes = &self.episodes;
        self.live_episodes.retain(|&i| episodes[i].end.0 > t);
        let mut load = EpisodeLoad::default();
        for &i in &self.live_episodes {
            let e = &self.episodes[i];
            let x = e.intensity(t);
            let slot = match e.kind {
                EpisodeKind::VasoOcclusiveCrisis => &mut load.voc,
                EpisodeKind::InfectionFever => &mut load.infection,
                EpisodeKind::AcuteChestSyndrome => &mut load.acs,
                EpisodeKind::DehydrationHeat => &mut load.dehydration,
            };
            *slot = slot.max(x);
        }
        load
    }

    fn device_at(&self, t: i64) -> (Uuid, std::sync::Arc<str>) {
        let (id, fw, _) = self
            .profile
            .devices
            .iter()
            .rev()
            .find(|(_, _, from)| from.0 <= t)
            .unwrap_or(&self.profile.devices[0]);
        (*id, fw.clone())
    }

    /// Generates every sample whose nominal time is before `until`.
    pub fn advance(&mut self, until: i64, out: &mut Vec<SimRecord>, faults: &mut Vec<FaultRecord>) {
        loop {
            let nominal = self.origin + self.k * self.interval_ms;
            if nominal >= until {
                break;
            }
            self.k += 1;
            self.sample(nominal, out, faults);
        }
    }

    fn sample(&mut self, nominal: i64, out: &mut Vec<SimRecord>, faults: &mut Vec<FaultRecord>) {
        let step_h = self.interval_ms as f64 / MS_PER_HOUR as f64;
        let jitter = (gauss(&mut self.rng) * 300.0).clamp(-1000.0, 1000.0) as i64;
        let t = nominal + jitter;
        let p = &self.profile;
        let local_h = (t + LOCAL_OFFSET_MS).rem_euclid(MS_PER_DAY) as f64 / MS_PER_HOUR as f64;
        let circadian = (TAU * (local_h - 17.0) / 24.0).cos();
        let bedtime = if p.age_years_at_start < 13.0 {
            20.5
        } else {
            22.5
        };
        let asleep = !(6.5..bedtime).contains(&local_h);
        let load = self.episode_load(t);
        let p = &self.profile;

        // Weather: a daily cycle peaking mid-afternoon, day-to-day variation and short noise.
        let ambient = p.climate_mean_c
            + p.climate_amplitude_c * (TAU * (local_h - 14.5) / 24.0).cos()
            + self.ambient_day.step(&mut self.rng)
            + self.ambient_fast.step(&mut self.rng);
        let humidity = (p.climate_humidity_pct - 3.0 * (ambient - p.climate_mean_c)
            + self.humidity_noise.step(&mut self.rng))
        .clamp(15.0, 100.0);
        let heat_index = heat_index_c(Some(ambient), Some(humidity)).unwrap_or(ambient);

        let sickness = load.voc.max(load.acs).max(load.infection * 0.7);
        let activity_target = if asleep {
            0.3
        } else {
            let by_hour = match local_h {
                h if h < 9.0 => 3.5,
                h if h < 12.0 => 4.5,
                h if h < 14.0 => 3.0,
                h if h < 18.0 => 4.5,
                _ => 3.0,
            };
            by_hour * p.activity_propensity * (1.0 - 0.6 * sickness)
        };
        let activity =
            round(activity_target + self.activity_noise.step(&mut self.rng)).clamp(0.0, 10.0);

        // Hydration balance (%/h): losses grow with heat, activity, fever and heat stress;
        // drinking pulls the level back towards the patient's set point while awake.
        let fever = 2.3 * load.infection + 1.7 * load.acs + 0.5 * load.voc + 0.6 * load.dehydration;
        let loss = 0.6
            + 0.18 * (heat_index - 26.0).max(0.0)
            + 0.12 * activity
            + 1.2 * fever
            + 2.5 * load.dehydration;
        let intake_rate = if asleep { 0.04 } else { 0.30 } * (1.0 - 0.85 * load.dehydration);
        self.hydration = (self.hydration
            + step_h * (intake_rate * (p.hydration_setpoint - self.hydration) - loss))
            .clamp(5.0, 100.0);
        let hydration = self.hydration;

        let temperature = p.temperature_base
            + 0.3 * circadian
            + fever
            + 0.04 * activity
            + self.temp_noise.step(&mut self.rng)
            + 0.02 * (60.0 - hydration).max(0.0);
        let mut heart_rate = p.heart_rate_base * (1.0 + 0.05 * activity)
            + 4.0 * circadian
            + 9.0 * fever
            + 28.0 * load.voc
            + 30.0 * load.acs
            + 20.0 * load.dehydration
            + 0.4 * (75.0 - hydration).max(0.0)
            + self.hr_noise.step(&mut self.rng)
            - if asleep { 6.0 } else { 0.0 };
        let respiratory_rate = p.respiratory_rate_base * (1.0 + 0.035 * activity + 0.7 * load.acs)
            + 0.8 * circadian
            + 2.5 * fever
            + 3.0 * load.voc
            + self.rr_noise.step(&mut self.rng)
            - if asleep { 1.0 } else { 0.0 };
        let mut spo2 = p.spo2_base
            - if asleep { 0.7 } else { 0.0 }
            - 3.5 * load.voc
            - 9.5 * load.acs
            - 1.5 * load.infection
            - 0.5 * load.dehydration
            + self.spo2_noise.step(&mut self.rng);
        // Sensor measurement noise, independent per sample, on top of the smooth physiology:
        // without it consecutive integer readings repeat often enough to look like flatlines.
        heart_rate += 1.5 * gauss(&mut self.rng);
        let respiratory_rate = respiratory_rate + 0.7 * gauss(&mut self.rng);
        spo2 += 0.3 * gauss(&mut self.rng);
        let temperature = temperature + 0.03 * gauss(&mut self.rng);
        let signal =
            round(90.0 - 2.5 * activity + self.signal_noise.step(&mut self.rng)).clamp(0.0, 100.0);

        // Pain is patient-reported: every few waking hours, far more often during a crisis.
        let report_every_h = if load.voc > 0.1 {
            0.5
        } else if load.acs > 0.1 {
            1.0
        } else {
            4.0
        };
        let pain = (!asleep && self.rng.random::<f64>() < step_h / report_every_h).then(|| {
            round(
                p.chronic_pain
                    + 8.0 * load.voc
                    + 4.0 * load.acs
                    + 1.0 * load.infection
                    + 0.8 * gauss(&mut self.rng),
            )
            .clamp(0.0, 10.0) as i32
        });

        // Battery: a day and a bit per charge; charged in the evening, sometimes forgotten.
        if self.charging {
            self.battery += 45.0 * step_h;
            if self.battery >= 100.0 {
                self.battery = 100.0;
                self.charging = false;
                self.calibrating_left = 2;
            }
        } else {
            self.battery -= (3.2 + 0.15 * activity) * step_h;
            let evening = (20.5..23.5).contains(&local_h) && self.battery < 70.0;
            let charge_p = if self.dead {
                0.006
            } else if evening {
                0.012
            } else if self.battery < 15.0 && !asleep {
                0.005
            } else {
                0.0
            };
            if self.battery <= 0.0 {
                self.battery = 0.0;
                self.dead = true;
            }
            if charge_p > 0.0 && self.rng.random::<f64>() < charge_p {
                self.charging = true;
                self.dead = false;
            }
        }
        let battery = round(self.battery) as i32;
        let (device_id, firmware) = self.device_at(t);
        if self.device_in_use != Some(device_id) {
            // The faults file names each span's device, so a span cut short here stays true of
            // the samples that carry that device's id.
            self.device_in_use = Some(device_id);
            self.drop_until = i64::MIN;
            self.skew_until = i64::MIN;
            self.flatline = None;
        }
        let patient_id = self.profile.patient_id;

        // --- span faults (device side) ---
        let per_sample_day = self.interval_ms as f64 / MS_PER_DAY as f64;
        let r = &self.rates;
        let (drop_p, flat_p, skew_p, motion_p) = (
            r.sensor_drop_per_day * per_sample_day,
            r.flatline_per_day * per_sample_day,
            r.clock_skew_per_day * per_sample_day,
            r.motion,
        );
        if t >= self.drop_until && self.faults_rng.random::<f64>() < drop_p {
            let len = self.faults_rng.random_range(5..90) * MS_PER_MINUTE;
            self.drop_until = t + len;
            faults.push(span_fault(
                FaultKind::SensorDrop,
                patient_id,
                device_id,
                t,
                t + len,
                "no samples: sensor lost contact",
            ));
        }
        if self.dead || t < self.drop_until {
            // A dead battery or a dropped sensor sends nothing: the gap is the symptom.
            return;
        }
        let wearing = !self.charging;
        if self.flatline.is_none() && wearing && self.faults_rng.random::<f64>() < flat_p {
            let len = self.faults_rng.random_range(3..20) * MS_PER_MINUTE;
            self.flatline = Some(Flatline {
                until: t + len,
                spo2: Some(round1(spo2.clamp(50.0, 100.0))),
                heart_rate: Some(round(heart_rate).clamp(20.0, 260.0) as i32),
                respiratory_rate: Some(round(respiratory_rate).clamp(4.0, 90.0) as i32),
            });
            faults.push(span_fault(
                FaultKind::Flatline,
                patient_id,
                device_id,
                t,
                t + len,
                "spo2, heart rate and respiratory rate frozen",
            ));
        }
        if t >= self.skew_until && self.faults_rng.random::<f64>() < skew_p {
            let len = self.faults_rng.random_range(1..6) * MS_PER_HOUR;
            self.skew_ms = self.faults_rng.random_range(-240..420) * MS_PER_SECOND;
            self.skew_until = t + len;
            faults.push(span_fault(
                FaultKind::ClockSkew,
                patient_id,
                device_id,
                t,
                t + len,
                &format!("device clock off by {} s", self.skew_ms / MS_PER_SECOND),
            ));
        }

        let mut quality = QualityFlag::Ok;
        let mut motion = false;
        if !wearing {
            quality = QualityFlag::UserRemoved;
        } else if self.calibrating_left > 0 {
            self.calibrating_left -= 1;
            quality = QualityFlag::Calibrating;
        } else if activity >= 6.0 && self.faults_rng.random::<f64>() < motion_p {
            spo2 -= self.faults_rng.random_range(4.0..15.0);
            heart_rate += self.faults_rng.random_range(5.0..25.0);
            quality = QualityFlag::Motion;
            motion = true;
        } else if signal < 30.0 {
            spo2 += 2.0 * gauss(&mut self.rng);
            quality = QualityFlag::LowSignal;
        } else if battery < 10 {
            quality = QualityFlag::BatteryLow;
        }

        let mut vitals = Vitals {
            ambient_temperature_c: Some(round1(ambient.clamp(-30.0, 60.0))),
            relative_humidity_pct: Some(round1(humidity)),
            ..Vitals::default()
        };
        if wearing {
            vitals.spo2_pct = Some(round1(spo2.clamp(50.0, 100.0)));
            vitals.heart_rate_bpm = Some(round(heart_rate).clamp(20.0, 260.0) as i32);
            vitals.respiratory_rate_min = Some(round(respiratory_rate).clamp(4.0, 90.0) as i32);
            vitals.temperature_c = Some(round1(temperature.clamp(30.0, 45.0)));
            vitals.hydration_pct = Some(round1(hydration));
            vitals.activity_level = Some(activity as i32);
            vitals.pain_scale = pain;
            if let Some(f) = self.flatline {
                if t < f.until {
                    vitals.spo2_pct = f.spo2;
                    vitals.heart_rate_bpm = f.heart_rate;
                    vitals.respiratory_rate_min = f.respiratory_rate;
                } else {
                    self.flatline = None;
                }
            }
        }
        let recorded_at = if t < self.skew_until {
            t + self.skew_ms
        } else {
            t
        };
        let mut m = Measurement {
            schema_version: crate::domain::measurement::SCHEMA_VERSION,
            message_id: rng::uuid(&mut self.faults_rng),
            patient_id,
            device_id,
            recorded_at: UtcMillis(recorded_at),
            vitals,
            device: DeviceStatus {
                battery_pct: Some(battery),
                signal_quality_pct: Some(if wearing { signal as i32 } else { 0 }),
                firmware_version: Some(firmware),
            },
            quality_flag: quality,
        };
        if motion {
            faults.push(record_fault(
                FaultKind::Motion,
                &m,
                patient_id,
                "spurious desaturation flagged motion",
            ));
        }

        // --- delivery faults ---
        let mut emit_at = t + self.faults_rng.random_range(200..2000);
        let mut corruption = None;
        let u: f64 = self.faults_rng.random();
        if u < r.malformed {
            let which: f64 = self.faults_rng.random();
            let (kind, detail) = if which < 0.35 {
                corruption = Some(Corruption::TruncatedJson {
                    keep_pct: self.faults_rng.random_range(20..90),
                });
                (FaultKind::MalformedJson, "JSON text truncated".to_string())
            } else if which < 0.50 {
                corruption = Some(Corruption::WrongType);
                (
                    FaultKind::WrongType,
                    "a number sent as a string".to_string(),
                )
            } else if which < 0.80 {
                let d = if self.faults_rng.random_bool(0.5) {
                    let v = round1(self.faults_rng.random_range(101.0..140.0));
                    m.vitals.spo2_pct = Some(v);
                    format!("spo2_pct set to {v}")
                } else {
                    let v = self.faults_rng.random_range(261..400);
                    m.vitals.heart_rate_bpm = Some(v);
                    format!("heart_rate_bpm set to {v}")
                };
                (FaultKind::OutOfRange, d)
            } else {
                m.patient_id = rng::uuid(&mut self.faults_rng);
                (
                    FaultKind::UnknownPatient,
                    format!("patient_id replaced by {}", m.patient_id),
                )
            };
            faults.push(record_fault(kind, &m, patient_id, &detail));
        } else if u < r.malformed + r.late {
            emit_at = t + self
                .faults_rng
                .random_range(2 * MS_PER_MINUTE..6 * MS_PER_HOUR);
            faults.push(record_fault(
                FaultKind::Late,
                &m,
                patient_id,
                &format!(
                    "delivered {} s after recording",
                    (emit_at - t) / MS_PER_SECOND
                ),
            ));
        } else if u < r.malformed + r.late + r.duplicate {
            let resend = emit_at
                + self
                    .faults_rng
                    .random_range(MS_PER_SECOND..120 * MS_PER_SECOND);
            faults.push(record_fault(
                FaultKind::Duplicate,
                &m,
                patient_id,
                "resent with the same message_id",
            ));
            out.push(SimRecord {
                emit_at: UtcMillis(resend),
                patient_index: self.profile.patient_index,
                seq: self.seq,
                copy: 1,
                measurement: m.clone(),
                corruption: None,
            });
        }
        out.push(SimRecord {
            emit_at: UtcMillis(emit_at),
            patient_index: self.profile.patient_index,
            seq: self.seq,
            copy: 0,
            measurement: m,
            corruption,
        });
        self.seq += 1;
    }
}

fn span_fault(
    kind: FaultKind,
    patient_id: Uuid,
    device_id: Uuid,
    start: i64,
    end: i64,
    detail: &str,
) -> FaultRecord {
    FaultRecord {
        kind,
        patient_id,
        device_id,
        message_id: None,
        start: UtcMillis(start),
        end: UtcMillis(end),
        detail: detail.to_string(),
    }
}

fn record_fault(kind: FaultKind, m: &Measurement, patient_id: Uuid, detail: &str) -> FaultRecord {
    FaultRecord {
        kind,
        patient_id,
        device_id: m.device_id,
        message_id: Some(m.message_id),
        start: m.recorded_at,
        end: m.recorded_at,
        detail: detail.to_string(),
    }
}
