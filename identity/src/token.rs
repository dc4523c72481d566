//! Join tokens: `DSJ1.<CA fingerprint>.<secret>` for nodes, `DSA1.<CA fingerprint>.<secret>` for
//! agents, `DSO1.<CA fingerprint>.<secret>` for operator invitations (a different prefix each, so
//! one kind is never accepted as another).
//!
//! The fingerprint (SHA-256 of the peer CA certificate) lets a joining node check it is talking
//! to the right cluster before it sends anything; the secret proves to the cluster that the node
//! was invited. The cluster stores only the secret's SHA-256, and accepts it once.

use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "DSJ1";
const AGENT_PREFIX: &str = "DSA1";
const OPERATOR_PREFIX: &str = "DSO1";

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the peer CA certificate (DER), hex.
    pub ca_fingerprint: String,
    /// 32 random bytes, hex.
    pub secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_fingerprint", &self.ca_fingerprint)
            .field("secret", &"***")
            .finish()
    }
}

fn is_hex64(text: &str) -> bool {
    text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit())
}

impl JoinToken {
    /// A new token for the cluster whose peer CA has `ca_fingerprint`.
    pub fn generate(ca_fingerprint: &str) -> JoinToken {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        JoinToken { ca_fingerprint: ca_fingerprint.to_owned(), secret: dsops_proto::hex(&secret) }
    }

    /// Parses the text form of a node join token.
    pub fn parse(text: &str) -> Result<JoinToken, String> {
        Self::parse_with(text, PREFIX).ok_or_else(|| "not a join token: expected DSJ1.<64 hex digits>.<64 hex digits> (from `dsops-server init` or `dsops cluster token`)".to_owned())
    }

    /// Parses the text form of an agent enrolment token.
    pub fn parse_agent(text: &str) -> Result<JoinToken, String> {
        Self::parse_with(text, AGENT_PREFIX).ok_or_else(|| "not an agent enrolment token: expected DSA1.<64 hex digits>.<64 hex digits> (from `dsops agent token create`)".to_owned())
    }

    /// Parses the text form of an operator invitation.
    pub fn parse_operator(text: &str) -> Result<JoinToken, String> {
        Self::parse_with(text, OPERATOR_PREFIX).ok_or_else(|| "not an operator invitation: expected DSO1.<64 hex digits>.<64 hex digits> (from `dsops operator invite`)".to_owned())
    }

    fn parse_with(text: &str, prefix: &str) -> Option<JoinToken> {
        let parts: Vec<&str> = text.trim().split('.').collect();
        match parts.as_slice() {
            [p, fingerprint, secret]
                if *p == prefix && is_hex64(fingerprint) && is_hex64(secret) =>
            {
                Some(JoinToken {
                    ca_fingerprint: fingerprint.to_ascii_lowercase(),
                    secret: secret.to_ascii_lowercase(),
                })
            }
            _ => None,
        }
    }

    /// The text form of a node join token.
    pub fn encode(&self) -> String {
        format!("{PREFIX}.{}.{}", self.ca_fingerprint, self.secret)
    }

    /// The text form of an agent enrolment token.
    pub fn encode_agent(&self) -> String {
        format!("{AGENT_PREFIX}.{}.{}", self.ca_fingerprint, self.secret)
    }

    /// The text form of an operator invitation.
    pub fn encode_operator(&self) -> String {
        format!("{OPERATOR_PREFIX}.{}.{}", self.ca_fingerprint, self.secret)
    }

    /// What the cluster stores: SHA-256 of the secret, hex.
    pub fn secret_hash(secret: &str) -> String {
        dsops_proto::hex(&Sha256::digest(secret.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let token = JoinToken::generate(&"ab".repeat(32));
        assert_eq!(JoinToken::parse(&token.encode()), Ok(token.clone()));
        assert!(!format!("{token:?}").contains(&token.secret));
        assert!(JoinToken::parse("DSJ1.abc.def").is_err());
        assert!(JoinToken::parse(&format!("DSJ2.{}.{}", "a".repeat(64), "b".repeat(64))).is_err());
        assert_ne!(JoinToken::secret_hash(&token.secret), token.secret);
        assert_eq!(JoinToken::parse_agent(&token.encode_agent()), Ok(token.clone()));
        assert!(JoinToken::parse_agent(&token.encode()).is_err(), "a node token is not an agent's");
        assert!(JoinToken::parse(&token.encode_agent()).is_err());
        assert_eq!(JoinToken::parse_operator(&token.encode_operator()), Ok(token.clone()));
        assert!(JoinToken::parse_operator(&token.encode_agent()).is_err());
        assert!(JoinToken::parse_agent(&token.encode_operator()).is_err());
    }
}
