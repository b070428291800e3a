//! Device authentication, pure: token format, what is stored of a secret, and the check of a
//! request's bearer token or HMAC signature against it. No IO; the caller gives the time.
//!
//! A token is `kjd1.<device_id>.<secret>` with 32 random bytes of secret. The server keeps
//! only `SHA-256(secret)` (enough to check a bearer token) and the signing key
//! `HMAC-SHA256(secret, "kidjamo request signing v1")`, from which the secret cannot be
//! recovered. HMAC needs the verifier to hold the key, so a stolen credential table lets its
//! thief sign requests, never present a bearer token: keep the table as private as the lake.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

const TOKEN_PREFIX: &str = "kjd1";
const SIGNING_CONTEXT: &[u8] = b"kidjamo request signing v1";
/// A signed request older or newer than this is refused (replayed or badly clocked).
pub const SIGNATURE_MAX_SKEW_S: i64 = 300;

/// What the server knows of a device: whose data it may send, and how to check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCredential {
    pub device_id: Uuid,
    pub patient_id: Uuid,
    pub token_sha256: [u8; 32],
    pub signing_key: [u8; 32],
}

/// A freshly issued token, shown once, and what is stored of it.
pub struct IssuedToken {
    pub token: String,
    pub credential: DeviceCredential,
}

/// Builds a token from 32 random bytes (the caller draws them from the OS).
pub fn issue(device_id: Uuid, patient_id: Uuid, random: [u8; 32]) -> IssuedToken {
    let secret = hex::encode(random);
    IssuedToken {
        token: format!("{TOKEN_PREFIX}.{}.{secret}", device_id.simple()),
        credential: DeviceCredential {
            device_id,
            patient_id,
            token_sha256: sha256(secret.as_bytes()),
            signing_key: signing_key(&secret),
        },
    }
}

/// The key a device signs its requests with, derived from the secret part of its token.
pub fn signing_key(secret: &str) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .expect("invariant: HMAC takes any key length");
    mac.update(SIGNING_CONTEXT);
    mac.finalize().into_bytes().into()
}

/// The signature header value a device sends: `sha256=<hex>` over `<timestamp>.<body>`.
pub fn sign(signing_key: &[u8; 32], timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(signing_key).expect("invariant: HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The device a token names and its secret, if the token is well formed.
pub fn parse_token(token: &str) -> Option<(Uuid, &str)> {
    let mut parts = token.trim().splitn(3, '.');
    let (prefix, device, secret) = (parts.next()?, parts.next()?, parts.next()?);
    if prefix != TOKEN_PREFIX || secret.len() != 64 {
        return None;
    }
    Some((Uuid::try_parse(device).ok()?, secret))
}

/// What a request presents to prove who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented<'a> {
    Bearer(&'a str),
    Signature {
        device_id: &'a str,
        timestamp: &'a str,
        signature: &'a str,
    },
    Nothing,
}

/// Why authentication failed. Logged at debug level only; the client always gets the same
/// answer, so that it learns nothing about which part was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    NoCredentials,
    MalformedToken,
    UnknownDevice,
    WrongSecret,
    StaleSignature,
}

/// Checks what a request presents; `lookup` finds a device's stored credential.
pub fn authenticate<'c>(
    presented: &Presented<'_>,
    body: &[u8],
    now_s: i64,
    lookup: &dyn Fn(&Uuid) -> Option<&'c DeviceCredential>,
) -> Result<&'c DeviceCredential, AuthFailure> {
    match presented {
        Presented::Nothing => Err(AuthFailure::NoCredentials),
        Presented::Bearer(token) => {
            let (device, secret) = parse_token(token).ok_or(AuthFailure::MalformedToken)?;
            let credential = lookup(&device).ok_or(AuthFailure::UnknownDevice)?;
            if constant_time_eq(&sha256(secret.as_bytes()), &credential.token_sha256) {
                Ok(credential)
            } else {
                Err(AuthFailure::WrongSecret)
            }
        }
        Presented::Signature {
            device_id,
            timestamp,
            signature,
        } => {
            let device = Uuid::try_parse(device_id).map_err(|_| AuthFailure::MalformedToken)?;
            let ts: i64 = timestamp.parse().map_err(|_| AuthFailure::MalformedToken)?;
            let credential = lookup(&device).ok_or(AuthFailure::UnknownDevice)?;
            let expected = sign(&credential.signing_key, ts, body);
            if !constant_time_eq(expected.as_bytes(), signature.trim().as_bytes()) {
                return Err(AuthFailure::WrongSecret);
            }
            if (now_s - ts).abs() > SIGNATURE_MAX_SKEW_S {
                return Err(AuthFailure::StaleSignature);
            }
            Ok(credential)
        }
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> (IssuedToken, Uuid) {
        let d = Uuid::from_u128(0xd1);
        (issue(d, Uuid::from_u128(0xa1), [7u8; 32]), d)
    }

    #[test]
    fn bearer_tokens_are_checked_against_the_stored_hash() {
        let (issued, d) = device();
        let stored = issued.credential.clone();
        let lookup = |id: &Uuid| (*id == d).then_some(&stored);
        let ok = authenticate(&Presented::Bearer(&issued.token), b"", 0, &lookup);
        assert_eq!(ok.map(|c| c.patient_id), Ok(Uuid::from_u128(0xa1)));
        assert!(!issued.token.contains(&hex::encode(stored.token_sha256)));

        let mut wrong = issued.token.clone();
        wrong.pop();
        wrong.push('x');
        let other = issue(Uuid::from_u128(0xd2), Uuid::from_u128(0xa1), [8u8; 32]).token;
        for (token, failure) in [
            (wrong.as_str(), AuthFailure::WrongSecret),
            (other.as_str(), AuthFailure::UnknownDevice),
            ("kjd1.nope.abc", AuthFailure::MalformedToken),
            ("", AuthFailure::MalformedToken),
        ] {
            assert_eq!(
                authenticate(&Presented::Bearer(token), b"", 0, &lookup),
                Err(failure),
                "{token}"
            );
        }
        assert_eq!(
            authenticate(&Presented::Nothing, b"", 0, &lookup),
            Err(AuthFailure::NoCredentials)
        );
    }

    #[test]
    fn signatures_cover_the_body_and_the_time() {
        let (issued, d) = device();
        let stored = issued.credential.clone();
        let lookup = |id: &Uuid| (*id == d).then_some(&stored);
        // The device derives the key from its own token.
        let (_, secret) = parse_token(&issued.token).expect("well formed");
        let key = signing_key(secret);
        let now = 1_780_000_000;
        let signature = sign(&key, now, b"{\"a\":1}");
        let device_id = d.to_string();
        let ts = now.to_string();
        let presented = Presented::Signature {
            device_id: &device_id,
            timestamp: &ts,
            signature: &signature,
        };
        assert!(authenticate(&presented, b"{\"a\":1}", now + 10, &lookup).is_ok());
        assert_eq!(
            authenticate(&presented, b"{\"a\":2}", now, &lookup),
            Err(AuthFailure::WrongSecret),
            "another body"
        );
        assert_eq!(
            authenticate(&presented, b"{\"a\":1}", now + 301, &lookup),
            Err(AuthFailure::StaleSignature)
        );
    }
}
