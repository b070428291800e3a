//! `patient_key`: the keyed HMAC-SHA256 of a patient id that identifies patients in Gold and in
//! exports (SPEC §6). Without the key a Gold row cannot be traced back to a patient; with it,
//! the team that holds the key can. The key id (a digest of the key, not the key) goes in the
//! run manifest, so a reader knows which key made which partitions.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Shorter keys are refused: 16 bytes is the least HMAC-SHA256 should be given.
pub const MIN_KEY_BYTES: usize = 16;

#[derive(Clone)]
pub struct PatientKeyer {
    mac: Hmac<Sha256>,
    key_id: String,
}

impl std::fmt::Debug for PatientKeyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PatientKeyer({})", self.key_id)
    }
}

impl PatientKeyer {
    /// `key_id` names the key in manifests; when absent it is derived from the key.
    pub fn new(key: &[u8], key_id: Option<&str>) -> Result<PatientKeyer, String> {
        if key.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the pseudonymisation key has {} bytes; at least {MIN_KEY_BYTES} are needed",
                key.len()
            ));
        }
        let mac = Hmac::<Sha256>::new_from_slice(key).map_err(|e| e.to_string())?;
        let key_id = match key_id {
            Some(id) => id.to_string(),
            None => format!("sha256:{}", &hex::encode(Sha256::digest(key))[..16]),
        };
        Ok(PatientKeyer { mac, key_id })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// HMAC of any text, 64 hex characters (a research pseudonym of a `patient_key`).
    pub fn key_text(&self, text: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(text.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// 64 hex characters. The id is hashed in its canonical lower-case hyphenated text form,
    /// so other tools (SQL, Python) can compute the same key.
    pub fn key(&self, patient_id: &Uuid) -> String {
        let mut mac = self.mac.clone();
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        mac.update(patient_id.hyphenated().encode_lower(&mut buf).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_hmac_sha256() {
        // HMAC-SHA256 computed independently (Python: hmac.new(key, msg, sha256)).
        let keyer = PatientKeyer::new(b"0123456789abcdef", None).expect("key");
        let id = Uuid::parse_str("2f9a1c0e-7d33-4b7e-8f0e-6c1d2b3a4e5f").expect("uuid");
        assert_eq!(
            keyer.key(&id),
            "44d5153eaa67c099e060018e282cea74e57588fd363de3cb7fa58ea6e6582d64"
        );
    }

    #[test]
    fn another_key_gives_another_pseudonym_and_short_keys_are_refused() {
        let id = Uuid::from_u128(7);
        let a = PatientKeyer::new(b"0123456789abcdef", None).expect("key");
        let b = PatientKeyer::new(b"0123456789abcdeF", None).expect("key");
        assert_ne!(a.key(&id), b.key(&id));
        assert_ne!(a.key_id(), b.key_id());
        assert!(PatientKeyer::new(b"short", None).is_err());
    }
}
