//! A fast hasher for keys that are random already (UUIDs, packed ids): SipHash, the standard
//! one, showed in the profiles of the stream and of Silver's deduplication.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Ids are random (UUID v4) or already mixed: a multiply-and-fold is enough of a hash.
#[derive(Default)]
pub struct IdHasher(u64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl IdHasher {
    fn mix(&mut self, v: u64) {
        let x = (self.0 ^ v).wrapping_mul(GOLDEN);
        // Fold the high half down: the table picks buckets by the low bits, and the low bits
        // of a product depend only on the low bits of its input (sample times are multiples
        // of whole seconds: their low bits are all alike).
        self.0 = x ^ (x >> 32);
    }
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(b));
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.mix(v as u64 ^ (v >> 64) as u64);
    }
    fn write_u64(&mut self, v: u64) {
        self.mix(v);
    }
}

/// Builds `IdHasher`s.
pub type FastState = BuildHasherDefault<IdHasher>;
pub type FastSet<K> = HashSet<K, FastState>;
pub type FastMap<K, V> = HashMap<K, V, FastState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_spreads_sample_keys_whose_low_bits_are_alike() {
        use std::hash::BuildHasher;
        let build = FastState::default();
        let buckets: HashSet<u64> = (0..4096u64)
            .map(|k| build.hash_one((7u64 << 32) | (k * 30_000)) & 4095)
            .collect();
        assert!(buckets.len() > 2000, "{} buckets of 4096", buckets.len());
    }
}
