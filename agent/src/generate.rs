//! New secret values from the operating system's CSPRNG, shaped by the catalog's format
//! constraint (a named charset or a `^[class]{min,max}$` pattern) and the strategy's `length`.

use ring::rand::{SecureRandom, SystemRandom};

use crate::secret::SecretValue;

/// Why no value could be generated. Raised before anything changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    /// The format is a regular expression dsops cannot generate from.
    #[error(
        "cannot generate a value for format {0:?}: use a charset name or a pattern of the form ^[class]{{min,max}}$"
    )]
    Unsupported(String),
    /// The requested length is outside what the format allows.
    #[error("length {length} is outside the format's range {min}..={max}")]
    Length {
        /// Asked for.
        length: usize,
        /// Smallest allowed.
        min: usize,
        /// Largest allowed.
        max: usize,
    },
    /// The operating system's random source failed.
    #[error("the system random source failed")]
    Random,
}

/// What a value must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueFormat {
    alphabet: Vec<u8>,
    min: usize,
    max: usize,
}

/// The default length when neither the format nor the configuration fixes one.
pub const DEFAULT_LENGTH: usize = 32;

fn charset(name: &str) -> Option<Vec<u8>> {
    let range = |from: u8, to: u8| (from..=to).collect::<Vec<u8>>();
    let alpha = [range(b'A', b'Z'), range(b'a', b'z')].concat();
    let digits = range(b'0', b'9');
    Some(match name {
        "alphanumeric" => [alpha, digits].concat(),
        "alpha" => alpha,
        "numeric" => digits,
        "hex" => [digits, range(b'a', b'f')].concat(),
        "base64" => [alpha, digits, b"+/".to_vec()].concat(),
        "base64url" => [alpha, digits, b"-_".to_vec()].concat(),
        // Printable ASCII without space, quotes and backslash, which too many consumers mangle.
        "ascii-printable" => range(b'!', b'~')
            .into_iter()
            .filter(|c| !matches!(c, b'"' | b'\'' | b'\\' | b'`'))
            .collect(),
        _ => return None,
    })
}

/// Parses a bracket class body such as `A-Za-z0-9_-` into its bytes.
fn class(body: &str) -> Option<Vec<u8>> {
    let bytes = body.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let mut c = bytes[i];
        if c == b'\\' {
            i += 1;
            c = *bytes.get(i)?;
        } else if matches!(c, b'[' | b']' | b'^') {
            return None;
        }
        if bytes.get(i + 1) == Some(&b'-') && i + 2 < bytes.len() {
            let end = bytes[i + 2];
            if end < c {
                return None;
            }
            out.extend(c..=end);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out.retain(|c| c.is_ascii_graphic());
    out.sort_unstable();
    out.dedup();
    (!out.is_empty()).then_some(out)
}

impl ValueFormat {
    /// The format from a catalog constraint (`None`: alphanumeric of any length).
    pub fn parse(format: Option<&str>) -> Result<ValueFormat, GenerateError> {
        let Some(format) = format else {
            return Ok(ValueFormat {
                alphabet: charset("alphanumeric").unwrap_or_default(),
                min: 1,
                max: 4096,
            });
        };
        if let Some(alphabet) = charset(format) {
            return Ok(ValueFormat { alphabet, min: 1, max: 4096 });
        }
        let unsupported = || GenerateError::Unsupported(format.to_owned());
        let inner =
            format.strip_prefix("^[").and_then(|s| s.strip_suffix('$')).ok_or_else(unsupported)?;
        let (body, rest) = inner.rsplit_once(']').ok_or_else(unsupported)?;
        let alphabet = class(body).ok_or_else(unsupported)?;
        let counts =
            rest.strip_prefix('{').and_then(|s| s.strip_suffix('}')).ok_or_else(unsupported)?;
        let parse = |s: &str| s.trim().parse::<usize>().map_err(|_| unsupported());
        let (min, max) = match counts.split_once(',') {
            Some((min, max)) => (parse(min)?, parse(max)?),
            None => (parse(counts)?, parse(counts)?),
        };
        if min == 0 || min > max {
            return Err(unsupported());
        }
        Ok(ValueFormat { alphabet, min, max })
    }

    /// Narrows the alphabet to a named charset (the strategy's `charset`), keeping only
    /// characters the format also allows.
    pub fn with_charset(mut self, name: &str) -> Result<ValueFormat, GenerateError> {
        let allowed = charset(name).ok_or_else(|| GenerateError::Unsupported(name.to_owned()))?;
        self.alphabet.retain(|c| allowed.contains(c));
        if self.alphabet.is_empty() {
            return Err(GenerateError::Unsupported(name.to_owned()));
        }
        Ok(self)
    }

    /// The length to generate: the requested one (checked), else the default clamped to the
    /// format's range.
    pub fn length(&self, requested: Option<usize>) -> Result<usize, GenerateError> {
        match requested {
            Some(length) if length < self.min || length > self.max => {
                Err(GenerateError::Length { length, min: self.min, max: self.max })
            }
            Some(length) => Ok(length),
            None => Ok(DEFAULT_LENGTH.clamp(self.min, self.max)),
        }
    }

    /// A new uniformly random value of `length` characters.
    pub fn generate(&self, length: usize) -> Result<SecretValue, GenerateError> {
        let random = SystemRandom::new();
        let n = self.alphabet.len();
        // Rejection sampling: bytes at or above the largest multiple of n would bias the result.
        let limit = 256 - (256 % n);
        let mut out = String::with_capacity(length);
        let mut buffer = zeroize::Zeroizing::new([0u8; 64]);
        while out.len() < length {
            random.fill(buffer.as_mut()).map_err(|_| GenerateError::Random)?;
            for &byte in buffer.iter() {
                if (byte as usize) < limit && out.len() < length {
                    out.push(self.alphabet[byte as usize % n] as char);
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
            Err(GenerateError::Length { length: 16, min: 32, max: 64 })
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

    #[test]
    fn unsupported_patterns_are_refused() {
        for format in ["^(a|b)+$", "^[a-z]+$", "^[z-a]{3}$", "^[a-z]{0,3}$", "nope"] {
            assert!(
                matches!(ValueFormat::parse(Some(format)), Err(GenerateError::Unsupported(_))),
                "{format}"
            );
        }
    }
}
