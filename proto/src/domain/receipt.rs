use std::fmt;
use std::time::{Duration, SystemTime};

use prost::Message;

use super::{
    AgentId, Generation, ProtocolError, RunId, Step, StepOutcome, required_time, wire_time,
};
use crate::wire::common as wire;

/// A keyed fingerprint of a secret value (HMAC-SHA-256, 32 bytes). It identifies a value in
/// receipts and the audit log without revealing it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Converts wire bytes, which must be exactly 32 long.
    pub fn from_wire(bytes: &[u8], field: &str) -> Result<Fingerprint, ProtocolError> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| {
            ProtocolError::invalid(field, format!("must be 32 bytes, got {}", bytes.len()))
        })?;
        Ok(Fingerprint(array))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// What one agent did for one step of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptBody {
    /// The run.
    pub run_id: RunId,
    /// The generation the run was dispatched with.
    pub generation: Generation,
    /// The step performed.
    pub step: Step,
    /// The target, `svc://...` or `store://...`.
    pub target: String,
    /// Fingerprint of the new value, if the step involved one.
    pub value_fingerprint: Option<Fingerprint>,
    /// When the agent finished the step.
    pub performed_at: SystemTime,
    /// What happened.
    pub outcome: StepOutcome,
    /// Explanation for failures; never a secret value.
    pub detail: String,
    /// Who performed it.
    pub agent_id: AgentId,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// A failed step: how long the target asked to be left alone (at most
    /// [`MAX_RETRY_AFTER`]).
    pub retry_after: Option<Duration>,
    /// A certificate's stage: when its issuer suggests renewing it (at most
    /// [`MAX_RENEW_AHEAD`] after `performed_at`).
    pub renew_at: Option<SystemTime>,
}

/// The longest wait a receipt may ask for before the next attempt.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// The furthest ahead of its step a receipt may put a renewal (a certificate lives at most 398
/// days under the CA/Browser Forum's rules).
pub const MAX_RENEW_AHEAD: Duration = Duration::from_secs(400 * 86_400);

impl TryFrom<wire::ReceiptBody> for ReceiptBody {
    type Error = ProtocolError;

    fn try_from(body: wire::ReceiptBody) -> Result<ReceiptBody, ProtocolError> {
        let wire::ReceiptBody {
            run_id,
            generation,
            step,
            target,
            value_fingerprint,
            performed_at,
            outcome,
            detail,
            agent_id,
            attempt,
            retry_after_ms,
            renew_at,
        } = body;
        if target.is_empty() {
            return Err(ProtocolError::missing("target"));
        }
        if attempt == 0 {
            return Err(ProtocolError::missing("attempt"));
        }
        if detail.len() > MAX_DETAIL_BYTES {
            return Err(ProtocolError::invalid(
                "detail",
                format!("is {} bytes; at most {MAX_DETAIL_BYTES} are accepted", detail.len()),
            ));
        }
        if target.len() > 512 {
            return Err(ProtocolError::invalid("target", "longer than 512 bytes"));
        }
        let retry_after = match Duration::from_millis(retry_after_ms) {
            wait if wait.is_zero() => None,
            wait if wait > MAX_RETRY_AFTER => {
                return Err(ProtocolError::invalid(
                    "retry_after_ms",
                    format!(
                        "is {retry_after_ms}; at most {} (24 h) is accepted",
                        MAX_RETRY_AFTER.as_millis()
                    ),
                ));
            }
            wait => Some(wait),
        };
        let performed_at = required_time(performed_at, "performed_at")?;
        let renew_at = match renew_at {
            None => None,
            Some(at) => {
                let at = required_time(Some(at), "renew_at")?;
                if at.duration_since(performed_at).is_ok_and(|ahead| ahead > MAX_RENEW_AHEAD) {
                    return Err(ProtocolError::invalid(
                        "renew_at",
                        "is more than 400 days after the step; no certificate lives that long",
                    ));
                }
                Some(at)
            }
        };
        Ok(ReceiptBody {
            run_id: RunId::parse(&run_id, "run_id")?,
            generation: Generation::parse(generation, "generation")?,
            step: Step::from_wire(step, "step")?,
            target,
            value_fingerprint: if value_fingerprint.is_empty() {
                None
            } else {
                Some(Fingerprint::from_wire(&value_fingerprint, "value_fingerprint")?)
            },
            performed_at,
            outcome: StepOutcome::from_wire(outcome, "outcome")?,
            detail,
            agent_id: AgentId::parse(&agent_id, "agent_id")?,
            attempt,
            retry_after,
            renew_at,
        })
    }
}

impl From<&ReceiptBody> for wire::ReceiptBody {
    fn from(body: &ReceiptBody) -> wire::ReceiptBody {
        wire::ReceiptBody {
            run_id: body.run_id.to_string(),
            generation: body.generation.get(),
            step: body.step.to_wire(),
            target: body.target.clone(),
            value_fingerprint: body.value_fingerprint.map(|f| f.0.to_vec()).unwrap_or_default(),
            performed_at: Some(wire_time(body.performed_at)),
            outcome: body.outcome.to_wire(),
            detail: body.detail.clone(),
            agent_id: body.agent_id.to_string(),
            attempt: body.attempt,
            retry_after_ms: body
                .retry_after
                .map_or(0, |wait| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
            renew_at: body.renew_at.map(wire_time),
        }
    }
}

/// A receipt as received: the exact signed bytes, the signature, and the decoded body. The
/// signature is checked against `body_bytes` (never a re-encoding) by the receiver, which knows
/// the agent's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReceipt {
    /// The protobuf encoding of the body, as signed.
    pub body_bytes: Vec<u8>,
    /// The Ed25519 signature over `body_bytes`.
    pub signature: [u8; 64],
    /// The decoded body.
    pub body: ReceiptBody,
}

/// Why a receipt's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The public key is not a valid Ed25519 key.
    #[error("the agent's public key is not a valid Ed25519 key")]
    BadKey,
    /// The signature does not verify over the body with that key.
    #[error("the signature does not verify with the agent's key")]
    Mismatch,
}

impl SignedReceipt {
    /// Encodes and signs `body` with an agent's signing key.
    pub fn sign(body: ReceiptBody, key: &ed25519_dalek::SigningKey) -> SignedReceipt {
        use ed25519_dalek::Signer as _;
        let body_bytes = wire::ReceiptBody::from(&body).encode_to_vec();
        let signature = key.sign(&body_bytes).to_bytes();
        SignedReceipt { body_bytes, signature, body }
    }

    /// Checks the signature over the exact received bytes with the agent's public key. Pure: no
    /// clock, no I/O, so the replicated state machine may call it.
    pub fn verify(&self, public_key: &[u8; 32]) -> Result<(), SignatureError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(public_key)
            .map_err(|_| SignatureError::BadKey)?;
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature);
        key.verify_strict(&self.body_bytes, &signature).map_err(|_| SignatureError::Mismatch)
    }
}

/// The longest `detail` a receipt may carry, in bytes. Agents cut longer text (marking the cut);
/// the control plane refuses a receipt over it, before it costs a raft write.
pub const MAX_DETAIL_BYTES: usize = 2048;
/// The largest signed receipt body, in bytes.
pub const MAX_RECEIPT_BYTES: usize = 4096;

/// `detail` cut to at most [`MAX_DETAIL_BYTES`] on a character boundary, saying how much was cut.
pub fn truncate_detail(detail: &str) -> String {
    if detail.len() <= MAX_DETAIL_BYTES {
        return detail.to_owned();
    }
    let marker_room = 40;
    let mut cut = MAX_DETAIL_BYTES - marker_room;
    while !detail.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{} [… {} bytes cut]", &detail[..cut], detail.len() - cut)
}

impl TryFrom<wire::Receipt> for SignedReceipt {
    type Error = ProtocolError;

    fn try_from(receipt: wire::Receipt) -> Result<SignedReceipt, ProtocolError> {
        let wire::Receipt { body, signature } = receipt;
        let signature: [u8; 64] = signature.as_slice().try_into().map_err(|_| {
            ProtocolError::invalid(
                "signature",
                format!("must be 64 bytes, got {}", signature.len()),
            )
        })?;
        if body.is_empty() {
            return Err(ProtocolError::missing("body"));
        }
        if body.len() > MAX_RECEIPT_BYTES {
            return Err(ProtocolError::invalid(
                "body",
                format!("is {} bytes; at most {MAX_RECEIPT_BYTES} are accepted", body.len()),
            ));
        }
        let decoded = wire::ReceiptBody::decode(body.as_slice()).map_err(|error| {
            ProtocolError::invalid("body", format!("not a ReceiptBody: {error}"))
        })?;
        let decoded = ReceiptBody::try_from(decoded).map_err(|error| error.within("body"))?;
        Ok(SignedReceipt { body_bytes: body, signature, body: decoded })
    }
}

impl From<&SignedReceipt> for wire::Receipt {
    fn from(receipt: &SignedReceipt) -> wire::Receipt {
        wire::Receipt { body: receipt.body_bytes.clone(), signature: receipt.signature.to_vec() }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn sample() -> ReceiptBody {
        ReceiptBody {
            run_id: RunId::parse("run-1", "run_id").unwrap(),
            generation: Generation::parse(7, "generation").unwrap(),
            step: Step::Apply,
            target: "svc://pg?kind=db_password".to_owned(),
            value_fingerprint: Some(Fingerprint([0xab; 32])),
            performed_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            outcome: StepOutcome::Succeeded,
            detail: String::new(),
            agent_id: AgentId::parse("agent-a", "agent_id").unwrap(),
            attempt: 1,
            retry_after: None,
            renew_at: None,
        }
    }

    #[test]
    fn signed_receipt_round_trips_through_the_wire() {
        let body = sample();
        let bytes = wire::ReceiptBody::from(&body).encode_to_vec();
        let receipt = wire::Receipt { body: bytes.clone(), signature: vec![1; 64] };
        let signed = SignedReceipt::try_from(receipt).unwrap();
        assert_eq!(signed.body, body);
        assert_eq!(signed.body_bytes, bytes);
        assert_eq!(wire::Receipt::from(&signed).body, bytes);
    }

    #[test]
    fn hints_round_trip_and_out_of_range_ones_are_refused() {
        let mut body = sample();
        body.outcome = StepOutcome::Retryable;
        body.retry_after = Some(Duration::from_secs(120));
        body.renew_at = Some(body.performed_at + Duration::from_secs(60 * 86_400));
        let bytes = wire::ReceiptBody::from(&body).encode_to_vec();
        let signed =
            SignedReceipt::try_from(wire::Receipt { body: bytes, signature: vec![1; 64] }).unwrap();
        assert_eq!(signed.body, body);

        let refused = |body: &ReceiptBody| {
            let bytes = wire::ReceiptBody::from(body).encode_to_vec();
            SignedReceipt::try_from(wire::Receipt { body: bytes, signature: vec![1; 64] })
                .unwrap_err()
        };
        let mut long_wait = body.clone();
        long_wait.retry_after = Some(MAX_RETRY_AFTER + Duration::from_millis(1));
        assert_eq!(refused(&long_wait).field, "body.retry_after_ms");
        let mut far = body.clone();
        far.renew_at = Some(far.performed_at + MAX_RENEW_AHEAD + Duration::from_secs(1));
        assert_eq!(refused(&far).field, "body.renew_at");
        // A window that already began (renew now) is fine.
        let mut past = body;
        past.renew_at = Some(past.performed_at - Duration::from_secs(3600));
        let bytes = wire::ReceiptBody::from(&past).encode_to_vec();
        assert!(
            SignedReceipt::try_from(wire::Receipt { body: bytes, signature: vec![1; 64] }).is_ok()
        );
    }

    #[test]
    fn details_are_cut_to_the_limit_and_big_receipts_refused() {
        let long = "é".repeat(3000);
        let cut = truncate_detail(&long);
        assert!(cut.len() <= MAX_DETAIL_BYTES, "{}", cut.len());
        assert!(cut.ends_with("bytes cut]"), "{cut}");
        assert_eq!(truncate_detail("short"), "short");
        let mut body = sample();
        body.detail = long;
        let bytes = wire::ReceiptBody::from(&body).encode_to_vec();
        let big = wire::Receipt { body: bytes, signature: vec![1; 64] };
        let error = SignedReceipt::try_from(big).unwrap_err();
        assert_eq!(error.field, "body");
        body.detail = "x".repeat(MAX_DETAIL_BYTES + 1);
        let bytes = wire::ReceiptBody::from(&body).encode_to_vec();
        let error = SignedReceipt::try_from(wire::Receipt { body: bytes, signature: vec![1; 64] })
            .unwrap_err();
        assert_eq!(error.field, "body.detail");
    }

    #[test]
    fn malformed_receipts_name_the_field() {
        let bytes = wire::ReceiptBody::from(&sample()).encode_to_vec();
        let short = wire::Receipt { body: bytes.clone(), signature: vec![1; 10] };
        assert_eq!(SignedReceipt::try_from(short).unwrap_err().field, "signature");
        let garbage = wire::Receipt { body: vec![0xff, 0xff, 0xff], signature: vec![1; 64] };
        assert_eq!(SignedReceipt::try_from(garbage).unwrap_err().field, "body");
        let mut body = wire::ReceiptBody::from(&sample());
        body.generation = 0;
        let stale = wire::Receipt { body: body.encode_to_vec(), signature: vec![1; 64] };
        assert_eq!(SignedReceipt::try_from(stale).unwrap_err().field, "body.generation");
        let mut body = wire::ReceiptBody::from(&sample());
        body.value_fingerprint = vec![1, 2, 3];
        assert!(ReceiptBody::try_from(body).unwrap_err().reason.contains("32 bytes"));
    }

    #[test]
    fn signatures_verify_only_with_the_signing_key_and_exact_bytes() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let signed = SignedReceipt::sign(sample(), &key);
        let public = key.verifying_key().to_bytes();
        assert_eq!(signed.verify(&public), Ok(()));
        assert_eq!(signed.verify(&other.verifying_key().to_bytes()), Err(SignatureError::Mismatch));
        let mut tampered = signed.clone();
        let last = tampered.body_bytes.len() - 1;
        tampered.body_bytes[last] ^= 1;
        assert_eq!(tampered.verify(&public), Err(SignatureError::Mismatch));
        // Through the wire and back, the same bytes still verify.
        let received = SignedReceipt::try_from(wire::Receipt::from(&signed)).unwrap();
        assert_eq!(received.verify(&public), Ok(()));
    }

    #[test]
    fn fingerprint_prints_hex_only() {
        let text = format!("{:?}", Fingerprint([0x0f; 32]));
        assert!(text.starts_with("Fingerprint(0f0f"));
    }
}
