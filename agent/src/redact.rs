//! Keeping values out of the text an agent sends. A receipt's detail comes from servers,
//! programs and endpoints the agent does not control; any of them may echo a value, plainly or
//! encoded. Every known form of every value the job could reach — exact, base64 (standard and
//! URL-safe, with and without padding), hex (either case) and URL-encoded — is replaced by `***`.

use base64::Engine;
use zeroize::Zeroizing;

use crate::secret::SecretValue;

/// Forms shorter than this are left alone: a two-letter value would otherwise blank out every
/// word that contains it, and says nothing useful to an attacker.
const SHORTEST: usize = 4;

/// The encodings of `value` that text may carry.
fn forms(value: &str) -> Vec<Zeroizing<String>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = value.as_bytes();
    let hex = dsops_proto::hex(bytes);
    let mut forms = vec![
        Zeroizing::new(value.to_owned()),
        Zeroizing::new(STANDARD.encode(bytes)),
        Zeroizing::new(STANDARD_NO_PAD.encode(bytes)),
        Zeroizing::new(URL_SAFE.encode(bytes)),
        Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes)),
        Zeroizing::new(hex.to_uppercase()),
        Zeroizing::new(hex),
        Zeroizing::new(url_encoded(value)),
        Zeroizing::new(url_encoded(value).replace("%20", "+")),
    ];
    // Longest first, so a form that contains another is replaced whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    forms.retain(|f| f.len() >= SHORTEST);
    forms
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
fn url_encoded(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `text` with every form of every value replaced by `***`.
pub fn redact<'a>(text: &str, values: impl IntoIterator<Item = &'a SecretValue>) -> String {
    let mut out = text.to_owned();
    for value in values {
        for form in forms(value.expose()) {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), "***");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_a_value_is_replaced() {
        let value = SecretValue::new("p@ss w/rd+ÿ".to_owned());
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let encoded = [
            value.expose().to_owned(),
            STANDARD.encode(value.expose()),
            URL_SAFE_NO_PAD.encode(value.expose()),
            dsops_proto::hex(value.expose().as_bytes()),
            dsops_proto::hex(value.expose().as_bytes()).to_uppercase(),
            "p%40ss%20w%2Frd%2B%C3%BF".to_owned(),
            "p%40ss+w%2Frd%2B%C3%BF".to_owned(),
        ];
        for form in &encoded {
            let text = format!("server said: bad password {form} for user app");
            assert_eq!(
                redact(&text, [&value]),
                "server said: bad password *** for user app",
                "{form}"
            );
        }
    }

    #[test]
    fn short_values_and_clean_text_are_left_alone() {
        let short = SecretValue::new("ab".to_owned());
        assert_eq!(redact("a table about abc", [&short]), "a table about abc");
        let value = SecretValue::new("correct-horse".to_owned());
        assert_eq!(redact("login refused", [&value]), "login refused");
    }
}
