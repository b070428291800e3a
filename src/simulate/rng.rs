//! Independent, reproducible random streams. Every patient (and every concern within a patient:
//! cohort, episodes, vitals, faults) gets its own stream derived from the run seed and its
//! index, so the output does not depend on thread scheduling or on other patients.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

pub type SimRng = Xoshiro256PlusPlus;

#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub enum Stream {
    Cohort = 1,
    Episodes = 2,
    Vitals = 3,
    Faults = 4,
    Clinicians = 5,
    Run = 6,
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn stream(seed: u64, which: Stream, index: u64) -> SimRng {
    let mixed = splitmix64(splitmix64(splitmix64(seed) ^ which as u64) ^ index);
    SimRng::seed_from_u64(mixed)
}

/// A v4-shaped UUID from the stream (deterministic, unlike `Uuid::new_v4`).
pub fn uuid(rng: &mut SimRng) -> uuid::Uuid {
    use rand::RngExt;
    let bytes: [u8; 16] = rng.random();
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}
