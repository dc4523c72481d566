//! Secret values in memory: a type that never prints its contents and wipes them when dropped,
//! and the keyed fingerprint that stands for a value everywhere outside the agent.

use std::fmt;

use dsops_proto::domain::Fingerprint;
use ring::hmac;
use zeroize::Zeroizing;

/// A secret value (password, key, token). `Debug` and `Display` print `***`; the bytes are
/// zeroized on drop. The only way to see the value is [`SecretValue::expose`], so every place
/// that does is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    /// Wraps a value.
    pub fn new(value: String) -> SecretValue {
        SecretValue(Zeroizing::new(value))
    }

    /// The value itself, for the adapter or store that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its length in bytes (safe to log).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Computes keyed fingerprints (HMAC-SHA-256) of values. The key stays with the agent, so a
/// fingerprint in the control plane cannot be used to test guesses of the value offline.
#[derive(Clone)]
pub struct Fingerprinter {
    key: hmac::Key,
}

impl Fingerprinter {
    /// A fingerprinter with the given 32-byte key.
    pub fn new(key: &[u8; 32]) -> Fingerprinter {
        Fingerprinter { key: hmac::Key::new(hmac::HMAC_SHA256, key) }
    }

    /// The fingerprint of `value`.
    pub fn fingerprint(&self, value: &SecretValue) -> Fingerprint {
        let tag = hmac::sign(&self.key, value.expose().as_bytes());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(tag.as_ref());
        Fingerprint(bytes)
    }
}

impl fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprinter(***)")
    }
}

/// Fills a buffer from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], ring::error::Unspecified> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new().fill(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_print() {
        let value = SecretValue::new("hunter2-canary".to_owned());
        assert_eq!(format!("{value:?} {value}"), "*** ***");
        assert_eq!(format!("{:?}", Some(value.clone())), "Some(***)");
        assert_eq!(value.expose(), "hunter2-canary");
    }

    #[test]
    fn fingerprints_depend_on_key_and_value() {
        let a = Fingerprinter::new(&[1; 32]);
        let b = Fingerprinter::new(&[2; 32]);
        let one = SecretValue::new("one".to_owned());
        let two = SecretValue::new("two".to_owned());
        assert_eq!(a.fingerprint(&one), a.fingerprint(&one.clone()));
        assert_ne!(a.fingerprint(&one), a.fingerprint(&two));
        assert_ne!(a.fingerprint(&one), b.fingerprint(&one));
    }
}
