//! What a generated secret value must look like: the catalog's format constraint (a named
//! charset or a `^[class]{min,max}$` pattern), narrowed by a strategy's `charset` and `length`.
//! The agent generates values from it; the control plane's preflight asks whether they are safe
//! in a URL.

/// Why a format cannot be used. Raised before anything changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
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

pub fn charset(name: &str) -> Option<Vec<u8>> {
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
    pub fn parse(format: Option<&str>) -> Result<ValueFormat, FormatError> {
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
        let unsupported = || FormatError::Unsupported(format.to_owned());
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
    pub fn with_charset(mut self, name: &str) -> Result<ValueFormat, FormatError> {
        let allowed = charset(name).ok_or_else(|| FormatError::Unsupported(name.to_owned()))?;
        self.alphabet.retain(|c| allowed.contains(c));
        if self.alphabet.is_empty() {
            return Err(FormatError::Unsupported(name.to_owned()));
        }
        Ok(self)
    }

    /// The length to generate: the requested one (checked), else the default clamped to the
    /// format's range.
    pub fn length(&self, requested: Option<usize>) -> Result<usize, FormatError> {
        match requested {
            Some(length) if length < self.min || length > self.max => {
                Err(FormatError::Length { length, min: self.min, max: self.max })
            }
            Some(length) => Ok(length),
            None => Ok(DEFAULT_LENGTH.clamp(self.min, self.max)),
        }
    }

    /// The characters a value may hold, sorted.
    pub fn alphabet(&self) -> &[u8] {
        &self.alphabet
    }

    /// Whether every value of this format can go into a URL or connection string as is: it
    /// holds only RFC 3986 unreserved characters (letters, digits, `-`, `.`, `_`, `~`).
    pub fn uri_safe(&self) -> bool {
        self.alphabet
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_catalog_pattern_and_narrowing() {
        let format = ValueFormat::parse(Some("^[A-Za-z0-9_-]{32,64}$")).unwrap();
        assert_eq!(format.length(None), Ok(32));
        assert_eq!(format.alphabet().len(), 64);
        assert_eq!(
            format.length(Some(16)),
            Err(FormatError::Length { length: 16, min: 32, max: 64 })
        );
        let narrowed = format.with_charset("numeric").unwrap();
        assert_eq!(narrowed.alphabet(), b"0123456789");
    }

    #[test]
    fn uri_safety_follows_the_alphabet() {
        for safe in ["^[A-Za-z0-9_-]{32,64}$", "alphanumeric", "hex", "base64url", "^[a-z.~]{4}$"] {
            assert!(ValueFormat::parse(Some(safe)).unwrap().uri_safe(), "{safe}");
        }
        for unsafe_ in ["base64", "ascii-printable", "^[a-z@]{4}$", "^[a-z%/]{4}$"] {
            assert!(!ValueFormat::parse(Some(unsafe_)).unwrap().uri_safe(), "{unsafe_}");
        }
        let narrowed =
            ValueFormat::parse(Some("ascii-printable")).unwrap().with_charset("alphanumeric");
        assert!(narrowed.unwrap().uri_safe());
    }

    #[test]
    fn unsupported_patterns_are_refused() {
        for format in ["^(a|b)+$", "^[a-z]+$", "^[z-a]{3}$", "^[a-z]{0,3}$", "nope"] {
            assert!(
                matches!(ValueFormat::parse(Some(format)), Err(FormatError::Unsupported(_))),
                "{format}"
            );
        }
    }
}
