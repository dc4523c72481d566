//! PostgreSQL SCRAM-SHA-256 password verifiers, computed on the agent so that the password itself
//! never travels in an SQL statement (where `log_statement` could write it to the server log).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::{digest, hmac, pbkdf2};

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
    let mut salted = zeroize::Zeroizing::new([0u8; 32]);
    let iterations = std::num::NonZeroU32::new(ITERATIONS).expect("non-zero");
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        value.expose().as_bytes(),
        salted.as_mut(),
    );
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
    fn only_printable_ascii_is_hashed_here() {
        assert!(supported(&SecretValue::new("abc-XYZ_09 !~".to_owned())));
        assert!(!supported(&SecretValue::new("päss".to_owned())));
        assert!(!supported(&SecretValue::new("a\nb".to_owned())));
    }
}
