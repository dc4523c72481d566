//! Approvals: an operator's signed decision on a run, and the bytes it signs.
//!
//! A decision is signed by the operator's own key (the one its certificate certifies) over
//! [`decision_bytes`], so it can be checked later, offline, against the certificate kept with it:
//!
//! ```text
//! dsops-approval-v1
//! run=<run id>
//! round=<round>
//! plan=<plan digest, 64 hex>
//! decision=approve|deny
//! signed_at_ms=<ms since the epoch>
//! reason=<reason, to the end>
//! ```

use super::{ProtocolError, RequestId, RunId};
use crate::wire::admin as wire;

/// The bytes an approval decision signs.
pub fn decision_bytes(
    run_id: &str,
    round: u32,
    plan_digest: &str,
    approve: bool,
    signed_at_ms: u64,
    reason: &str,
) -> Vec<u8> {
    let decision = if approve { "approve" } else { "deny" };
    format!(
        "dsops-approval-v1\nrun={run_id}\nround={round}\nplan={plan_digest}\ndecision={decision}\nsigned_at_ms={signed_at_ms}\nreason={reason}"
    )
    .into_bytes()
}

/// The longest reason a decision (or a rotation request) may carry.
pub const MAX_REASON: usize = 1024;

/// `Decide`: an operator's signed decision on a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decide {
    /// Makes a retry apply once.
    pub request_id: RequestId,
    /// The run.
    pub run_id: RunId,
    /// Approve (true) or deny.
    pub approve: bool,
    /// Why; required to deny.
    pub reason: String,
    /// The plan digest reviewed (64 lower-case hex digits).
    pub plan_digest: String,
    /// The round of decisions.
    pub round: u32,
    /// When the operator signed, ms since the epoch.
    pub signed_at_ms: u64,
    /// The signature (DER).
    pub signature: Vec<u8>,
}

impl TryFrom<wire::DecideRequest> for Decide {
    type Error = ProtocolError;

    fn try_from(request: wire::DecideRequest) -> Result<Decide, ProtocolError> {
        let wire::DecideRequest {
            request_id,
            run_id,
            approve,
            reason,
            plan_digest,
            round,
            signed_at_ms,
            signature_hex,
        } = request;
        if reason.len() > MAX_REASON {
            return Err(ProtocolError::invalid("reason", "longer than 1 KiB"));
        }
        if !approve && reason.trim().is_empty() {
            return Err(ProtocolError::invalid("reason", "a denial needs a reason"));
        }
        if plan_digest.len() != 64 || !plan_digest.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ProtocolError::invalid("plan_digest", "expected 64 hex digits"));
        }
        if signed_at_ms == 0 {
            return Err(ProtocolError::missing("signed_at_ms"));
        }
        let signature = (signature_hex.len() <= 512)
            .then(|| crate::hex_decode(&signature_hex))
            .flatten()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ProtocolError::invalid("signature_hex", "expected a hex signature"))?;
        Ok(Decide {
            request_id: RequestId::parse(&request_id, "request_id")?,
            run_id: RunId::parse(&run_id, "run_id")?,
            approve,
            reason,
            plan_digest: plan_digest.to_ascii_lowercase(),
            round,
            signed_at_ms,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_validated_and_their_bytes_fixed() {
        let request = |approve: bool, reason: &str, digest: &str, signature: &str| {
            Decide::try_from(wire::DecideRequest {
                request_id: "req-0123456789abcdef".into(),
                run_id: "run-1".into(),
                approve,
                reason: reason.into(),
                plan_digest: digest.into(),
                round: 0,
                signed_at_ms: 5,
                signature_hex: signature.into(),
            })
        };
        let digest = "ab".repeat(32);
        assert!(request(true, "", &digest, "3045").is_ok());
        assert_eq!(request(false, " ", &digest, "3045").unwrap_err().field, "reason");
        assert_eq!(request(true, "", "abc", "3045").unwrap_err().field, "plan_digest");
        assert_eq!(request(true, "", &digest, "zz").unwrap_err().field, "signature_hex");
        assert_eq!(request(true, "", &digest, "").unwrap_err().field, "signature_hex");
        let bytes = decision_bytes("run-1", 2, &digest, false, 7, "no\nway");
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(
            text,
            format!(
                "dsops-approval-v1\nrun=run-1\nround=2\nplan={digest}\ndecision=deny\nsigned_at_ms=7\nreason=no\nway"
            )
        );
    }
}
