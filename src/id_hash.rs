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
        // Whole words first, then the zero-padded rest: the same values as padding every
        // chunk, without a variable-length copy per word (a UUID is two words).
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(word);
            self.mix(u64::from_le_bytes(b));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(b));
        }
    }
    fn write_usize(&mut self, v: usize) {
        // What `write` makes of its little-endian bytes (slices hash their length first).
        self.mix(v as u64);
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
    fn word_writes_hash_as_padded_byte_writes() {
        // The fast paths must not change any hash (hash-map orders would change with them).
        fn padded(bytes: &[u8]) -> u64 {
            let mut h = IdHasher::default();
            for chunk in bytes.chunks(8) {
                let mut b = [0u8; 8];
                b[..chunk.len()].copy_from_slice(chunk);
                h.mix(u64::from_le_bytes(b));
            }
            h.finish()
        }
        let bytes: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37)).collect();
        for len in 0..bytes.len() {
            let mut h = IdHasher::default();
            h.write(&bytes[..len]);
            assert_eq!(h.finish(), padded(&bytes[..len]), "{len} bytes");
        }
        let mut h = IdHasher::default();
        h.write_usize(16);
        assert_eq!(h.finish(), padded(&16usize.to_le_bytes()));
    }

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
