use std::time::SystemTime;

use super::{ProtocolError, required_time};
use crate::wire::agent as wire;

/// Names in a capability list: non-empty, no duplicates.
fn names(values: Vec<String>, field: &str) -> Result<Vec<String>, ProtocolError> {
    let mut seen = std::collections::BTreeSet::new();
    for (index, value) in values.iter().enumerate() {
        if value.is_empty() {
            return Err(ProtocolError::invalid(format!("{field}[{index}]"), "must not be empty"));
        }
        if !seen.insert(value.as_str()) {
            return Err(ProtocolError::invalid(
                format!("{field}[{index}]"),
                format!("{value:?} is listed twice"),
            ));
        }
    }
    Ok(values)
}

/// What an agent can do, declared at connect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Adapter names.
    pub adapters: Vec<String>,
    /// Secret store names.
    pub stores: Vec<String>,
    /// Reachable service names.
    pub services: Vec<String>,
}

impl TryFrom<wire::Capabilities> for Capabilities {
    type Error = ProtocolError;

    fn try_from(caps: wire::Capabilities) -> Result<Capabilities, ProtocolError> {
        let wire::Capabilities { adapters, stores, services } = caps;
        Ok(Capabilities {
            adapters: names(adapters, "adapters")?,
            stores: names(stores, "stores")?,
            services: names(services, "services")?,
        })
    }
}

impl From<&Capabilities> for wire::Capabilities {
    fn from(caps: &Capabilities) -> wire::Capabilities {
        wire::Capabilities {
            adapters: caps.adapters.clone(),
            stores: caps.stores.clone(),
            services: caps.services.clone(),
        }
    }
}

/// The first message of an agent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The agent's version.
    pub version: String,
    /// What it can do.
    pub capabilities: Capabilities,
    /// Runs it still holds from an earlier session.
    pub jobs_in_flight: Vec<String>,
}

impl TryFrom<wire::Hello> for Hello {
    type Error = ProtocolError;

    fn try_from(hello: wire::Hello) -> Result<Hello, ProtocolError> {
        let wire::Hello { version, capabilities, jobs_in_flight } = hello;
        if version.is_empty() {
            return Err(ProtocolError::missing("version"));
        }
        let capabilities = capabilities.ok_or_else(|| ProtocolError::missing("capabilities"))?;
        Ok(Hello {
            version,
            capabilities: Capabilities::try_from(capabilities)
                .map_err(|error| error.within("capabilities"))?,
            jobs_in_flight: names(jobs_in_flight, "jobs_in_flight")?,
        })
    }
}

/// A liveness signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// Sequence number within the session, from 1.
    pub sequence: u64,
    /// The agent's clock.
    pub sent_at: SystemTime,
    /// Jobs running now.
    pub running_jobs: u32,
}

impl TryFrom<wire::Heartbeat> for Heartbeat {
    type Error = ProtocolError;

    fn try_from(heartbeat: wire::Heartbeat) -> Result<Heartbeat, ProtocolError> {
        let wire::Heartbeat { sequence, sent_at, running_jobs } = heartbeat;
        if sequence == 0 {
            return Err(ProtocolError::missing("sequence"));
        }
        Ok(Heartbeat { sequence, sent_at: required_time(sent_at, "sent_at")?, running_jobs })
    }
}

/// An enrolment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollRequest {
    /// The one-time join token.
    pub token: String,
    /// The CSR, PEM.
    pub csr_pem: String,
    /// The agent's Ed25519 public key.
    pub signing_public_key: [u8; 32],
    /// Host name, for operators.
    pub hostname: String,
    /// Agent version.
    pub version: String,
}

impl TryFrom<wire::EnrollRequest> for EnrollRequest {
    type Error = ProtocolError;

    fn try_from(request: wire::EnrollRequest) -> Result<EnrollRequest, ProtocolError> {
        let wire::EnrollRequest { token, csr_pem, signing_public_key, hostname, version } = request;
        if token.is_empty() {
            return Err(ProtocolError::missing("token"));
        }
        if !csr_pem.contains("-----BEGIN CERTIFICATE REQUEST-----") {
            return Err(ProtocolError::invalid("csr_pem", "is not a PEM certificate request"));
        }
        let signing_public_key: [u8; 32] =
            signing_public_key.as_slice().try_into().map_err(|_| {
                ProtocolError::invalid(
                    "signing_public_key",
                    format!("must be 32 bytes, got {}", signing_public_key.len()),
                )
            })?;
        if version.is_empty() {
            return Err(ProtocolError::missing("version"));
        }
        if version.len() > 64 {
            return Err(ProtocolError::invalid("version", "longer than 64 characters"));
        }
        if hostname.len() > 253 || hostname.chars().any(char::is_control) {
            return Err(ProtocolError::invalid(
                "hostname",
                "not a host name (at most 253 characters)",
            ));
        }
        if csr_pem.len() > 16 * 1024 {
            return Err(ProtocolError::invalid("csr_pem", "larger than 16 KiB"));
        }
        Ok(EnrollRequest { token, csr_pem, signing_public_key, hostname, version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_requires_capabilities_and_rejects_duplicates() {
        let hello =
            wire::Hello { version: "0.1.0".into(), capabilities: None, jobs_in_flight: vec![] };
        assert_eq!(Hello::try_from(hello).unwrap_err().field, "capabilities");
        let caps = wire::Capabilities {
            adapters: vec!["postgresql".into(), "postgresql".into()],
            stores: vec![],
            services: vec![],
        };
        let hello = wire::Hello {
            version: "0.1.0".into(),
            capabilities: Some(caps),
            jobs_in_flight: vec![],
        };
        let error = Hello::try_from(hello).unwrap_err();
        assert_eq!(error.field, "capabilities.adapters[1]");
        assert!(error.reason.contains("listed twice"));
    }

    #[test]
    fn enroll_checks_key_length_and_csr() {
        let request = wire::EnrollRequest {
            token: "t".into(),
            csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\n...".into(),
            signing_public_key: vec![0; 31],
            hostname: "bastion-1".into(),
            version: "0.1.0".into(),
        };
        assert_eq!(
            EnrollRequest::try_from(request.clone()).unwrap_err().field,
            "signing_public_key"
        );
        let mut ok = request.clone();
        ok.signing_public_key = vec![0; 32];
        assert!(EnrollRequest::try_from(ok.clone()).is_ok());
        ok.csr_pem = "nope".into();
        assert_eq!(EnrollRequest::try_from(ok).unwrap_err().field, "csr_pem");
    }

    #[test]
    fn heartbeat_needs_a_sequence_and_time() {
        let beat = wire::Heartbeat { sequence: 0, sent_at: None, running_jobs: 0 };
        assert_eq!(Heartbeat::try_from(beat).unwrap_err().field, "sequence");
        let beat = wire::Heartbeat { sequence: 1, sent_at: None, running_jobs: 0 };
        assert_eq!(Heartbeat::try_from(beat).unwrap_err().field, "sent_at");
    }
}
