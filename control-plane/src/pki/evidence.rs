//! The cluster's evidence key: the Ed25519 key that signs audit checkpoints, with a
//! certificate under the cluster CA so anyone holding the root certificate can check a
//! checkpoint offline.
//!
//! Every voter can sign: the key of each generation is derived (HKDF-SHA256) from the peer CA
//! key that voters hold, so a new leader signs with the same key and no new secret travels at
//! join. Its certificate, issued by the peer CA with the time-stamping purpose only (never a TLS
//! client or server), is registered in the replicated state with the public key.

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

use dsops_identity::{PkiError, distinguished_name as name};

use super::ClusterPki;
use super::authority::BACKDATE;

/// How long an evidence certificate is valid: checkpoints are verified years later.
const EVIDENCE_CERT_DAYS: i64 = 3650;

/// The PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410), followed by the 32-byte seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

impl ClusterPki {
    /// The evidence signing key of `generation`, derived from the peer CA key (voters only).
    pub fn evidence_key(&self, generation: u32) -> Result<ed25519_dalek::SigningKey, PkiError> {
        if !self.peer.can_issue() {
            return Err(PkiError::Invalid(
                "this node does not hold the peer CA key, so it cannot sign evidence".into(),
            ));
        }
        let ca_key = KeyPair::from_pem(&self.peer.key_pem)?;
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, self.cluster_id.as_bytes());
        let info = format!("dsops evidence key generation {generation}");
        let info = [info.as_bytes()];
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        salt.extract(ca_key.serialized_der())
            .expand(&info, ring::hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(seed.as_mut()))
            .map_err(|_| PkiError::Invalid("deriving the evidence key failed".into()))?;
        Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// A certificate for `key` as evidence key `generation`, issued by the peer CA.
    pub fn issue_evidence_certificate(
        &self,
        generation: u32,
        key: &ed25519_dalek::SigningKey,
    ) -> Result<String, PkiError> {
        let mut pkcs8 = zeroize::Zeroizing::new(ED25519_PKCS8_PREFIX.to_vec());
        pkcs8.extend_from_slice(&key.to_bytes());
        let subject = KeyPair::try_from(pkcs8.as_slice())?;
        let mut params = CertificateParams::default();
        params.distinguished_name =
            name(&format!("dsops evidence key {} generation {generation}", self.cluster_id));
        params.key_usages =
            vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::ContentCommitment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::TimeStamping];
        params.not_before = OffsetDateTime::now_utc() - BACKDATE;
        params.not_after = OffsetDateTime::now_utc() + Duration::days(EVIDENCE_CERT_DAYS);
        Ok(params.signed_by(&subject, self.peer.issuer()?)?.pem())
    }
}
