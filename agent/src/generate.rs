//! New secret values from the operating system's CSPRNG, shaped by a [`ValueFormat`] (the
//! catalog's format constraint and the strategy's `charset` and `length`).

use ring::rand::{SecureRandom, SystemRandom};

pub use dsops_config::value_format::{DEFAULT_LENGTH, FormatError, ValueFormat};

use crate::secret::SecretValue;

/// Why no value could be generated. Raised before anything changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    /// The format cannot be used.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The operating system's random source failed.
    #[error("the system random source failed")]
    Random,
}

/// Generating from a [`ValueFormat`].
pub trait Generate {
    /// A new uniformly random value of `length` characters.
    fn generate(&self, length: usize) -> Result<SecretValue, GenerateError>;
}

impl Generate for ValueFormat {
    fn generate(&self, length: usize) -> Result<SecretValue, GenerateError> {
        let random = SystemRandom::new();
        let alphabet = self.alphabet();
        let n = alphabet.len();
        // Rejection sampling: bytes at or above the largest multiple of n would bias the result.
        let limit = 256 - (256 % n);
        let mut out = String::with_capacity(length);
        let mut buffer = zeroize::Zeroizing::new([0u8; 64]);
        while out.len() < length {
            random.fill(buffer.as_mut()).map_err(|_| GenerateError::Random)?;
            for &byte in buffer.iter() {
                if (byte as usize) < limit && out.len() < length {
                    out.push(alphabet[byte as usize % n] as char);
                }
            }
        }
        Ok(SecretValue::new(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_from_the_postgres_catalog_pattern() {
        let format = ValueFormat::parse(Some("^[A-Za-z0-9_-]{32,64}$")).unwrap();
        let regex = regex::Regex::new("^[A-Za-z0-9_-]{32,64}$").unwrap();
        assert_eq!(format.length(None), Ok(32));
        for length in [32, 48, 64] {
            let value = format.generate(length).unwrap();
            assert!(regex.is_match(value.expose()), "{length}");
        }
        assert_eq!(
            format.length(Some(16)),
            Err(FormatError::Length { length: 16, min: 32, max: 64 })
        );
    }

    #[test]
    fn charsets_and_narrowing() {
        let hex = ValueFormat::parse(Some("hex")).unwrap().generate(100).unwrap();
        assert!(hex.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        let narrowed = ValueFormat::parse(Some("^[A-Za-z0-9_-]{8}$"))
            .unwrap()
            .with_charset("numeric")
            .unwrap();
        assert!(narrowed.generate(8).unwrap().expose().bytes().all(|c| c.is_ascii_digit()));
        let printable = ValueFormat::parse(Some("ascii-printable")).unwrap().generate(500).unwrap();
        assert!(!printable.expose().contains(['\'', '"', '\\', ' ']));
    }

    #[test]
    fn values_differ_and_use_the_whole_alphabet() {
        let format = ValueFormat::parse(Some("numeric")).unwrap();
        let a = format.generate(2000).unwrap();
        let b = format.generate(2000).unwrap();
        assert_ne!(a, b);
        for digit in '0'..='9' {
            let count = a.expose().chars().filter(|c| *c == digit).count();
            // Expected 200 each; a biased or broken generator falls far outside this band.
            assert!((120..=280).contains(&count), "{digit}: {count}");
        }
    }
}
