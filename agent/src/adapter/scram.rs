//! PostgreSQL SCRAM-SHA-256 password verifiers, computed on the agent so that the password itself
//! never travels in an SQL statement (where `log_statement` could write it to the server log),
//! and the client side of a SCRAM login (`pg_login`).
//!
//! Computing a verifier derives the password's `SaltedPassword` (4,096 rounds of
//! PBKDF2-HMAC-SHA256); the login that verifies the new password moments later would derive it
//! again from the salt the server hands back. [`SaltedKeys`] keeps the derived keys of the
//! verifiers this agent set, so that login costs no second derivation.

use std::collections::VecDeque;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::{digest, hmac};
use zeroize::{Zeroize, Zeroizing};

use crate::secret::{SecretValue, random_bytes};

/// PostgreSQL's default iteration count.
pub const ITERATIONS: u32 = 4096;
/// Keys kept: a rotation's login follows its verifier within seconds, so a few hundred cover
/// every rotation in flight on one target.
const KEPT_KEYS: usize = 256;

/// Whether `value` can be hashed here: SASLprep maps printable ASCII to itself, so for those
/// passwords the verifier equals what the server would compute.
pub fn supported(value: &SecretValue) -> bool {
    value.expose().bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// One derived key: for which salt and password (a hash of both, so a lookup with another
/// password, even under the same salt, never finds it), and the key.
struct Kept {
    salt: Vec<u8>,
    tag: [u8; 32],
    salted: Zeroizing<[u8; 32]>,
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.tag.zeroize();
    }
}

/// The `SaltedPassword`s of the latest verifiers set, [`KEPT_KEYS`] at most (oldest dropped).
#[derive(Default)]
pub struct SaltedKeys {
    kept: Mutex<VecDeque<Kept>>,
}

impl std::fmt::Debug for SaltedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SaltedKeys(..)")
    }
}

/// Byte strings compared without an early exit.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn tag(salt: &[u8], password: &[u8]) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(&(salt.len() as u64).to_be_bytes());
    context.update(salt);
    context.update(password);
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

impl SaltedKeys {
    fn keep(&self, salt: &[u8], password: &[u8], salted: &[u8; 32]) {
        let mut kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() >= KEPT_KEYS {
            kept.pop_front();
        }
        kept.push_back(Kept {
            salt: salt.to_vec(),
            tag: tag(salt, password),
            salted: Zeroizing::new(*salted),
        });
    }

    /// `SaltedPassword` of `password` under `salt` and `iterations`: a kept one when this agent
    /// set that verifier, derived otherwise.
    pub fn salted(&self, password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<[u8; 32]> {
        if iterations == ITERATIONS {
            let wanted = tag(salt, password);
            let kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(found) = kept.iter().rev().find(|k| k.salt == salt && same(&k.tag, &wanted))
            {
                return found.salted.clone();
            }
        }
        salted_password(password, salt, iterations)
    }
}

/// The verifier text `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`; its derived key is
/// kept in `keys` for the login that checks it.
pub fn verifier(
    value: &SecretValue,
    keys: &SaltedKeys,
) -> Result<String, ring::error::Unspecified> {
    let salt = random_bytes::<16>()?;
    let salted = salted_password(value.expose().as_bytes(), &salt, ITERATIONS);
    keys.keep(&salt, value.expose().as_bytes(), &salted);
    Ok(verifier_from(&salted, &salt))
}

#[cfg(test)]
fn verifier_with_salt(value: &SecretValue, salt: &[u8]) -> String {
    verifier_from(&salted_password(value.expose().as_bytes(), salt, ITERATIONS), salt)
}

fn verifier_from(salted: &[u8; 32], salt: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key.as_ref()),
        STANDARD.encode(server_key.as_ref())
    )
}

/// The client's proof and the signature the server must answer with, for `auth_message` (RFC
/// 5802: client-first-bare, server-first, client-final-without-proof, joined by commas).
pub fn proof(salted: &[u8; 32], auth_message: &[u8]) -> ([u8; 32], [u8; 32]) {
    let key = hmac::Key::new(hmac::HMAC_SHA256, salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let signature =
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, stored_key.as_ref()), auth_message);
    let mut proof = [0u8; 32];
    for ((p, k), s) in proof.iter_mut().zip(client_key.as_ref()).zip(signature.as_ref()) {
        *p = k ^ s;
    }
    let server_key = hmac::sign(&key, b"Server Key");
    let server = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, server_key.as_ref()), auth_message);
    let mut expected = [0u8; 32];
    expected.copy_from_slice(server.as_ref());
    (proof, expected)
}

/// SHA-256's initial state.
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// One 64-byte block holding a 32-byte message that follows a 64-byte key block: the message,
/// the `0x80` marker, zeros, and the length of the whole input (96 bytes) in bits.
fn padded(message: &[u8; 32]) -> [u8; 64] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(message);
    block[32] = 0x80;
    block[56..].copy_from_slice(&(96u64 * 8).to_be_bytes());
    block
}

fn state_bytes(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// PBKDF2-HMAC-SHA256 with a 32-byte output (SCRAM's `SaltedPassword`).
///
/// Every iteration after the first hashes a 32-byte value, so it is two SHA-256 block
/// compressions from the key's precomputed inner and outer states; a general HMAC re-pads and
/// finalises each time, which made this the agent's largest cost per password change.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 64]);
    if password.len() > 64 {
        key[..32].copy_from_slice(digest::digest(&digest::SHA256, password).as_ref());
    } else {
        key[..password.len()].copy_from_slice(password);
    }
    let keyed = |pad: u8| {
        let mut block = Zeroizing::new([0u8; 64]);
        for (b, k) in block.iter_mut().zip(key.iter()) {
            *b = k ^ pad;
        }
        let mut state = Zeroizing::new(IV);
        sha2::compress256(&mut state, &[(*block).into()]);
        state
    };
    let (inner, outer) = (keyed(0x36), keyed(0x5c));
    // U1 = HMAC(password, salt || INT(1)); the salt is of any length, so the general HMAC.
    let mac_key = hmac::Key::new(hmac::HMAC_SHA256, password);
    let mut first = Vec::with_capacity(salt.len() + 4);
    first.extend_from_slice(salt);
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = Zeroizing::new([0u8; 32]);
    u.copy_from_slice(hmac::sign(&mac_key, &first).as_ref());
    let mut result = Zeroizing::new(*u);
    let mut state = Zeroizing::new([0u32; 8]);
    let mut inner_hash = Zeroizing::new([0u8; 32]);
    for _ in 1..iterations {
        *state = *inner;
        sha2::compress256(&mut state, &[padded(&u).into()]);
        *inner_hash = state_bytes(&state);
        *state = *outer;
        sha2::compress256(&mut state, &[padded(&inner_hash).into()]);
        *u = state_bytes(&state);
        for (r, b) in result.iter_mut().zip(u.iter()) {
            *r ^= b;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_known_postgres_verifier() {
        // RFC 7677's example password and salt; the expected text was computed independently
        // with Python's hashlib/hmac from RFC 5802's definitions. That PostgreSQL accepts logins
        // with such verifiers is proven against a real server in the adapter tests.
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let text = verifier_with_salt(&SecretValue::new("pencil".to_owned()), &salt);
        assert_eq!(
            text,
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }

    #[test]
    fn salted_password_matches_ring_pbkdf2() {
        // Short, block-sized and longer-than-a-block passwords (the last are hashed to a key
        // first), with several salts and iteration counts.
        for (password, salt, iterations) in [
            (&b"pencil"[..], &b"salt"[..], 1u32),
            (b"pencil", b"salt", 2),
            (&[b'k'; 64], b"0123456789abcdef", 4096),
            (&[b'x'; 65], b"", 3),
            (&[b'y'; 200], &[7u8; 100], 100),
        ] {
            let mut expected = [0u8; 32];
            ring::pbkdf2::derive(
                ring::pbkdf2::PBKDF2_HMAC_SHA256,
                std::num::NonZeroU32::new(iterations).unwrap(),
                salt,
                password,
                &mut expected,
            );
            assert_eq!(
                *salted_password(password, salt, iterations),
                expected,
                "{} bytes, {iterations} iterations",
                password.len()
            );
        }
    }

    #[test]
    fn proof_matches_rfc_7677() {
        // RFC 7677 section 3: user "user", password "pencil".
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = salted_password(b"pencil", &salt, 4096);
        let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let auth = format!(
            "n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r={nonce}"
        );
        let (proof, server) = proof(&salted, auth.as_bytes());
        assert_eq!(STANDARD.encode(proof), "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        assert_eq!(STANDARD.encode(server), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn a_kept_key_serves_only_its_own_password_and_salt() {
        let keys = SaltedKeys::default();
        let value = SecretValue::new("the-new-password-0123456789".to_owned());
        let text = verifier(&value, &keys).unwrap();
        let salt = STANDARD.decode(text.split(['$', ':']).nth(2).unwrap()).unwrap();
        let derived = salted_password(value.expose().as_bytes(), &salt, ITERATIONS);
        // Kept: the same key, and it is the one the verifier was made from.
        assert_eq!(*keys.salted(value.expose().as_bytes(), &salt, ITERATIONS), *derived);
        assert_eq!(verifier_from(&derived, &salt), text);
        // Another password under the same salt is derived, not served the kept key.
        let other = keys.salted(b"another-password", &salt, ITERATIONS);
        assert_eq!(*other, *salted_password(b"another-password", &salt, ITERATIONS));
        assert_ne!(*other, *derived);
        // Another salt or iteration count: derived.
        assert_eq!(
            *keys.salted(value.expose().as_bytes(), b"other-salt", ITERATIONS),
            *salted_password(value.expose().as_bytes(), b"other-salt", ITERATIONS)
        );
        assert_eq!(
            *keys.salted(value.expose().as_bytes(), &salt, 10),
            *salted_password(value.expose().as_bytes(), &salt, 10)
        );
        // Bounded: the oldest go first.
        for i in 0..KEPT_KEYS {
            verifier(&SecretValue::new(format!("filler-{i}")), &keys).unwrap();
        }
        assert_eq!(keys.kept.lock().unwrap().len(), KEPT_KEYS);
        assert!(!keys.kept.lock().unwrap().iter().any(|k| k.salt == salt));
    }

    #[test]
    fn only_printable_ascii_is_hashed_here() {
        assert!(supported(&SecretValue::new("abc-XYZ_09 !~".to_owned())));
        assert!(!supported(&SecretValue::new("päss".to_owned())));
        assert!(!supported(&SecretValue::new("a\nb".to_owned())));
    }
}
