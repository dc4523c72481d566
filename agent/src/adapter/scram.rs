//! PostgreSQL SCRAM-SHA-256 password verifiers, computed on the agent so that the password itself
//! never travels in an SQL statement (where `log_statement` could write it to the server log).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::{digest, hmac};

use crate::secret::{SecretValue, random_bytes};

/// PostgreSQL's default iteration count.
const ITERATIONS: u32 = 4096;

/// Whether `value` can be hashed here: SASLprep maps printable ASCII to itself, so for those
/// passwords the verifier equals what the server would compute.
pub fn supported(value: &SecretValue) -> bool {
    value.expose().bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The verifier text `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
pub fn verifier(value: &SecretValue) -> Result<String, ring::error::Unspecified> {
    let salt = random_bytes::<16>()?;
    Ok(verifier_with_salt(value, &salt))
}

fn verifier_with_salt(value: &SecretValue, salt: &[u8]) -> String {
    let salted = salted_password(value.expose().as_bytes(), salt, ITERATIONS);
    let key = hmac::Key::new(hmac::HMAC_SHA256, salted.as_ref());
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
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> zeroize::Zeroizing<[u8; 32]> {
    let mut key = zeroize::Zeroizing::new([0u8; 64]);
    if password.len() > 64 {
        key[..32].copy_from_slice(digest::digest(&digest::SHA256, password).as_ref());
    } else {
        key[..password.len()].copy_from_slice(password);
    }
    let keyed = |pad: u8| {
        let mut block = zeroize::Zeroizing::new([0u8; 64]);
        for (b, k) in block.iter_mut().zip(key.iter()) {
            *b = k ^ pad;
        }
        let mut state = zeroize::Zeroizing::new(IV);
        sha2::compress256(&mut state, &[(*block).into()]);
        state
    };
    let (inner, outer) = (keyed(0x36), keyed(0x5c));
    // U1 = HMAC(password, salt || INT(1)); the salt is of any length, so the general HMAC.
    let mac_key = hmac::Key::new(hmac::HMAC_SHA256, password);
    let mut first = Vec::with_capacity(salt.len() + 4);
    first.extend_from_slice(salt);
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = zeroize::Zeroizing::new([0u8; 32]);
    u.copy_from_slice(hmac::sign(&mac_key, &first).as_ref());
    let mut result = zeroize::Zeroizing::new(*u);
    let mut state = zeroize::Zeroizing::new([0u32; 8]);
    let mut inner_hash = zeroize::Zeroizing::new([0u8; 32]);
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
    fn only_printable_ascii_is_hashed_here() {
        assert!(supported(&SecretValue::new("abc-XYZ_09 !~".to_owned())));
        assert!(!supported(&SecretValue::new("päss".to_owned())));
        assert!(!supported(&SecretValue::new("a\nb".to_owned())));
    }
}
